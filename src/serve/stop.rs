//! The `stop` strings of a request: text is cut before the first one, and text that could
//! still become one is held back from the stream until it is known not to.

/// Watches a generation's text for a request's stop strings.
#[derive(Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
}

impl StopMatcher {
    /// A matcher for `stops` (empty strings are ignored: they would match at once).
    pub fn new(stops: Vec<String>) -> Self {
        StopMatcher {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            held: String::new(),
        }
    }

    /// Adds generated `text`; returns the text that may be sent now and whether a stop
    /// string was found (the returned text then ends just before it, and the rest is
    /// dropped).
    pub fn push(&mut self, text: &str) -> (String, bool) {
        if self.stops.is_empty() {
            return (text.to_string(), false);
        }
        self.held.push_str(text);
        let found = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min();
        if let Some(at) = found {
            let out = self.held[..at].to_string();
            self.held.clear();
            return (out, true);
        }
        // Hold back the longest tail that begins some stop string.
        let keep = self
            .held
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| {
                let tail = &self.held[i..];
                self.stops.iter().any(|s| s.starts_with(tail))
            })
            .unwrap_or(self.held.len());
        let out = self.held[..keep].to_string();
        self.held.drain(..keep);
        (out, false)
    }

    /// The text held back when the generation ends without a stop string.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_stop_strings_text_passes_through() {
        let mut m = StopMatcher::new(vec![]);
        assert_eq!(m.push("abc"), ("abc".into(), false));
        assert_eq!(m.finish(), "");
    }

    #[test]
    fn a_stop_string_split_across_pieces_is_cut_and_never_sent() {
        let mut m = StopMatcher::new(vec!["END".into()]);
        assert_eq!(m.push("one E"), ("one ".into(), false));
        assert_eq!(m.push("N"), ("".into(), false));
        assert_eq!(m.push("D two"), ("".into(), true));
    }

    #[test]
    fn held_text_that_is_not_a_stop_string_is_released() {
        let mut m = StopMatcher::new(vec!["END".into()]);
        assert_eq!(m.push("E"), ("".into(), false));
        assert_eq!(m.push("x"), ("Ex".into(), false));
        assert_eq!(m.push("EN"), ("".into(), false));
        assert_eq!(m.finish(), "EN");
    }

    #[test]
    fn the_earliest_of_several_stop_strings_wins() {
        let mut m = StopMatcher::new(vec!["zz".into(), "b".into()]);
        assert_eq!(m.push("a b zz"), ("a ".into(), true));
    }

    #[test]
    fn multibyte_text_is_cut_on_character_boundaries() {
        let mut m = StopMatcher::new(vec!["é!".into()]);
        assert_eq!(m.push("café"), ("caf".into(), false));
        assert_eq!(m.push("?"), ("é?".into(), false));
    }
}
