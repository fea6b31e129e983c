//! The texts a tokenizer check runs on: hand-made edge cases and a spread-out slice of a
//! corpus.

/// One text to tokenize both ways, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    /// What kind of text this is (`whitespace`, `unicode`, `corpus`, ...).
    pub kind: &'static str,
    /// The text itself.
    pub text: String,
}

impl Case {
    fn new(kind: &'static str, text: impl Into<String>) -> Case {
        Case {
            kind,
            text: text.into(),
        }
    }
}

/// Edge cases where pre-tokenizers differ most often. The texts are fixed, so a report
/// names the same case on every machine.
pub fn edge_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut add = |kind, texts: &[&str]| {
        for t in texts {
            cases.push(Case::new(kind, *t));
        }
    };
    add(
        "whitespace",
        &[
            "Hello world",
            " Hello world",
            "Hello world ",
            "   three leading spaces",
            "trailing spaces   ",
            "a  b   c    d     e",
            "line one\nline two",
            "paragraph\n\nparagraph\n\n\n\nparagraph",
            "\ttab\tseparated\t\tvalues\t",
            " \n \n mixed \r\n endings \r\n",
            "\n",
            "   ",
            "\n\n\n",
            "word\u{00a0}with\u{00a0}no-break\u{2003}spaces",
        ],
    );
    add(
        "digits",
        &[
            "1234567890",
            "3.14159 2.71828 1,000,000 1e-9",
            "On 2026-12-01 at 23:05 the total was $12,345.67 (+8.5%).",
            "007 0x1F 0b1010 42nd 1st 22222222222222",
        ],
    );
    add(
        "case and punctuation",
        &[
            "I'm sure you'll see they've done it; don't we?",
            "HELLO World hElLo wORLD",
            "Wait... what?!?! Yes!!! No???",
            "\u{201c}Curly quotes\u{201d}, \u{2018}single\u{2019} \u{2014} dash \u{2013} \u{ab}guillemets\u{bb}",
        ],
    );
    add(
        "unicode",
        &[
            "caf\u{e9} na\u{ef}ve r\u{e9}sum\u{e9} fa\u{e7}ade \u{c6}r\u{f8}sk\u{f8}bing Stra\u{df}e",
            "e\u{301} (combining accent) vs \u{e9}",
            "\u{65e5}\u{672c}\u{8a9e}\u{306e}\u{30c6}\u{30ad}\u{30b9}\u{30c8}\u{3067}\u{3059}\u{3002}",
            "\u{4e2d}\u{6587}\u{5206}\u{8bcd}\u{6d4b}\u{8bd5}\u{ff0c}\u{5341}\u{4e2a}\u{5b57}",
            "\u{d55c}\u{ad6d}\u{c5b4} \u{bb38}\u{c7a5}\u{c785}\u{b2c8}\u{b2e4}",
            "\u{41f}\u{440}\u{438}\u{432}\u{435}\u{442}, \u{43c}\u{438}\u{440}! \u{393}\u{3b5}\u{3b9}\u{3ac} \u{3c3}\u{3bf}\u{3c5}",
            "\u{645}\u{631}\u{62d}\u{628}\u{627} \u{628}\u{627}\u{644}\u{639}\u{627}\u{644}\u{645}",
            "I \u{2764}\u{fe0f} \u{1f980} and \u{1f469}\u{200d}\u{1f469}\u{200d}\u{1f467}\u{200d}\u{1f466}!",
            "\u{1f642}\u{1f642}\u{1f642} \u{1f1eb}\u{1f1f7} \u{1f44d}\u{1f3fd}",
        ],
    );
    add(
        "code",
        &[
            "fn main() {\n    println!(\"Hello, {}!\", name);\n}\n",
            "def square(x):\n\treturn x ** 2  # comment\n\n\nprint(square(12))",
            "if (a && b || !c) { return -1; } // done\n",
            "<div class=\"note\">&amp; &lt;tag&gt;</div>",
            "SELECT id, name FROM users WHERE id = '5' AND x <> 3;",
            "    indented four\n        indented eight\n",
            "{\"key\": [1, 2.5, null, true], \"nested\": {\"a\": \"b\"}}",
        ],
    );
    cases
}

/// Texts with the tokenizer's special tokens written inside them, e.g.
/// `before <|im_start|>user after`, one per token in `specials` (at most eight).
pub fn special_token_cases(specials: &[String]) -> Vec<Case> {
    specials
        .iter()
        .take(8)
        .map(|s| Case::new("special tokens", format!("before {s}user\nHello{s} after")))
        .collect()
}

/// `n` paragraphs spread evenly over `text` (split at blank lines), each at most
/// `max_chars` characters, skipping blank ones.
pub fn corpus_cases(text: &str, n: usize, max_chars: usize) -> Vec<Case> {
    let paragraphs: Vec<&str> = text
        .split("\n\n")
        .filter(|p| !p.trim().is_empty())
        .collect();
    if n == 0 || paragraphs.is_empty() {
        return Vec::new();
    }
    let step = (paragraphs.len() / n).max(1);
    paragraphs
        .iter()
        .step_by(step)
        .take(n)
        .map(|p| {
            let cut: String = p.chars().take(max_chars).collect();
            Case::new("corpus", cut)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_cases_cover_every_area_the_check_promises() {
        let kinds: Vec<&str> = edge_cases().iter().map(|c| c.kind).collect();
        for kind in ["whitespace", "digits", "unicode", "code"] {
            assert!(kinds.contains(&kind), "{kind}");
        }
        let texts: Vec<String> = edge_cases().into_iter().map(|c| c.text).collect();
        assert!(texts.iter().any(|t| t.starts_with(' ')), "leading space");
        assert!(texts.iter().any(|t| t.ends_with(' ')), "trailing space");
        assert!(texts.iter().any(|t| t.contains("\n\n\n")), "newline runs");
        assert!(
            texts.iter().any(|t| t.chars().any(|c| c as u32 > 0x1f000)),
            "emoji"
        );
    }

    #[test]
    fn corpus_cases_are_spread_and_bounded() {
        let text: String = (0..100).map(|i| format!("para {i}\n\n")).collect();
        let cases = corpus_cases(&text, 10, 5);
        assert_eq!(cases.len(), 10);
        assert_eq!(cases[0].text, "para ");
        assert_eq!(cases[1].text, "para ", "cut to 5 chars");
        let full = corpus_cases(&text, 10, 100);
        assert_eq!(full[1].text, "para 10", "every tenth paragraph");
        assert!(corpus_cases("", 10, 10).is_empty());
        assert!(corpus_cases(&text, 0, 10).is_empty());
    }

    #[test]
    fn special_cases_write_each_token_into_text() {
        let cases = special_token_cases(&["<|im_start|>".into()]);
        assert_eq!(cases.len(), 1);
        assert!(cases[0].text.contains("<|im_start|>user"));
    }
}
