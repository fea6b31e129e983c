//! Decode speed of several masks, measured in one run, interleaved round by round.
//!
//! Each measurement prefills the same prompt at full depth into an empty cache, then
//! decodes a fixed number of tokens one at a time under the configuration's mask, feeding
//! back the most likely token and ignoring end-of-generation (so every configuration runs
//! exactly the same number of steps). Rounds rotate the order of the configurations, so
//! slow drifts of a shared machine hit all of them alike; medians are reported.

use std::time::{Duration, Instant};

use crate::engine::{BatchToken, LlamaToken, Result, Session};
use crate::skip::Mask;

/// One configuration to measure.
#[derive(Debug, Clone)]
pub struct Config {
    /// Label in reports.
    pub label: String,
    /// The mask; `None` leaves the hook unset (llama.cpp's own path).
    pub mask: Option<Mask>,
}

/// Measured decode speed of one configuration.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// The configuration.
    pub config: Config,
    /// Tokens/s of each round, sequence-summed, in round order.
    pub rounds: Vec<f64>,
}

impl Measurement {
    /// Median tokens/s over the rounds.
    pub fn median(&self) -> f64 {
        median(&self.rounds)
    }
    /// Lowest and highest tokens/s over the rounds.
    pub fn spread(&self) -> (f64, f64) {
        let lo = self.rounds.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = self
            .rounds
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        (lo, hi)
    }
}

/// The median of `values` (0 for none).
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// Decodes `steps` tokens for each of the session's sequences under `mask` after a
/// full-depth prefill of `prompt`, and returns the decode time.
pub fn time_decode(
    session: &mut Session<'_>,
    prompt: &[LlamaToken],
    steps: usize,
    mask: Option<&Mask>,
) -> Result<Duration> {
    session.clear();
    let n_seq = session.n_seq();
    let full = Mask::full(session.model().n_layer());
    for seq in 0..n_seq as i32 {
        session.prefill(seq, &prompt[..prompt.len() - 1], Some(&full))?;
    }
    let mut batch: Vec<BatchToken> = (0..n_seq as i32)
        .map(|seq| BatchToken {
            seq,
            token: *prompt.last().expect("non-empty prompt"),
            logits: true,
        })
        .collect();
    let mut outputs = session.decode(&batch, Some(&full))?;
    let start = Instant::now();
    for _ in 0..steps {
        for (t, &i) in batch.iter_mut().zip(&outputs) {
            t.token = argmax(session.logits(i));
        }
        outputs = session.decode(&batch, mask)?;
    }
    Ok(start.elapsed())
}

fn argmax(logits: &[f32]) -> LlamaToken {
    let (best, _) = logits
        .iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |acc, (i, &x)| if x > acc.1 { (i, x) } else { acc },
        );
    LlamaToken(best as i32)
}

/// Measures every configuration `rounds` times, interleaved, after one warm-up pass;
/// `progress(done, total)` is called after each measurement.
pub fn measure(
    session: &mut Session<'_>,
    prompt: &[LlamaToken],
    steps: usize,
    configs: &[Config],
    rounds: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Measurement>> {
    let mut out: Vec<Measurement> = configs
        .iter()
        .map(|c| Measurement {
            config: c.clone(),
            rounds: Vec::new(),
        })
        .collect();
    let total = configs.len() * (rounds + 1);
    let mut done = 0;
    for round in 0..=rounds {
        for k in 0..configs.len() {
            // Rotate the order each round so no configuration always runs first.
            let c = (k + round) % configs.len();
            let t = time_decode(session, prompt, steps, configs[c].mask.as_ref())?;
            if round > 0 {
                let tokens = (steps * session.n_seq()) as f64;
                out[c].rounds.push(tokens / t.as_secs_f64());
            }
            done += 1;
            progress(done, total);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }
}
