//! Prefill and decode speed of several configurations, measured in one run, interleaved.
//!
//! Each measurement starts from an empty cache, prefills the same prompt for each of the
//! batch's sequences at full depth (the paper's rule, the same for every strategy) as one
//! batch, then decodes a fixed number of tokens per sequence one step at a time, all
//! sequences together under the step's mask, feeding back the most likely token and
//! ignoring end-of-generation (so every configuration runs exactly the same number of
//! steps). Decode step `s` (1-based, as in [`uniskip_engine::generate`]) uses the plan's
//! mask for step `s`. Rounds rotate the order of the configurations, so slow drifts of a
//! shared machine hit all of them alike; a warm-up round is run first and discarded.

use std::time::{Duration, Instant};

use uniskip_engine::{BatchToken, LlamaToken, Result, Session};
use uniskip_skip::{Mask, Plan};

/// Decode steps per configuration in the warm-up round (at most the measured steps).
pub const WARMUP_STEPS: usize = 8;

/// One configuration to measure.
#[derive(Debug, Clone)]
pub struct Config {
    /// Label in reports and progress lines.
    pub label: String,
    /// Sequences decoded together (a session with that many sequences must be given).
    pub batch: usize,
    /// The masks per decode step; `None` leaves the hook unset (llama.cpp's own path, to
    /// compare with full depth through the hook).
    pub plan: Option<Plan>,
}

/// Measured speed of one configuration, per round (warm-up excluded).
#[derive(Debug, Clone, Default)]
pub struct Measurement {
    /// Prompt tokens per second (all sequences), per round.
    pub prefill: Vec<f64>,
    /// Generated tokens per second (all sequences), per round.
    pub decode: Vec<f64>,
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

/// Lowest and highest of `values` (`(0, 0)` for none).
pub fn spread(values: &[f64]) -> (f64, f64) {
    if values.is_empty() {
        return (0.0, 0.0);
    }
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lo, hi)
}

/// Prefills `prompt` for every sequence of the session at full depth, then decodes `steps`
/// tokens per sequence under `plan` (`None`: hook unset); returns the prefill and the
/// decode time.
///
/// The session's batch size must hold the prompt of every sequence at once.
pub fn time_once(
    session: &mut Session<'_>,
    prompt: &[LlamaToken],
    steps: usize,
    plan: Option<&Plan>,
) -> Result<(Duration, Duration)> {
    session.clear();
    let n_seq = session.n_seq();
    let full = Mask::full(session.model().n_layer());
    let prefill: Vec<BatchToken> = (0..n_seq as i32)
        .flat_map(|seq| {
            prompt
                .iter()
                .enumerate()
                .map(move |(i, &token)| BatchToken {
                    seq,
                    token,
                    logits: i + 1 == prompt.len(),
                })
        })
        .collect();
    // One batch (the session's batch size must hold it), so that every sequence's last
    // token has its logits at once.
    let start = Instant::now();
    let mut outputs = session.decode(&prefill, Some(&full))?;
    let prefill_time = start.elapsed();
    let mut batch: Vec<BatchToken> = (0..n_seq as i32)
        .map(|seq| BatchToken {
            seq,
            token: LlamaToken(0),
            logits: true,
        })
        .collect();
    let start = Instant::now();
    for step in 1..=steps {
        for (t, &i) in batch.iter_mut().zip(&outputs) {
            t.token = argmax(session.logits(i));
        }
        outputs = session.decode(&batch, plan.map(|p| p.mask(step)))?;
    }
    Ok((prefill_time, start.elapsed()))
}

/// The decode time of `steps` tokens under one mask (`None`: hook unset) after a
/// full-depth prefill of `prompt`.
pub fn time_decode(
    session: &mut Session<'_>,
    prompt: &[LlamaToken],
    steps: usize,
    mask: Option<&Mask>,
) -> Result<Duration> {
    let plan = mask.map(|m| Plan::fixed(m.clone()));
    time_once(session, prompt, steps, plan.as_ref()).map(|(_, decode)| decode)
}

fn argmax(logits: &[f32]) -> LlamaToken {
    LlamaToken(crate::quality::metrics::argmax(logits) as i32)
}

/// Measures every configuration `rounds` times after a warm-up round, interleaved, on
/// the session whose sequence count is the configuration's batch size.
/// `progress(done, total)` is called after each measurement (in tokens processed).
pub fn measure(
    sessions: &mut [Session<'_>],
    prompt: &[LlamaToken],
    steps: usize,
    configs: &[Config],
    rounds: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Measurement>> {
    assert!(
        !prompt.is_empty(),
        "the prompt must hold at least one token"
    );
    let session_of: Vec<usize> = configs
        .iter()
        .map(|c| {
            sessions
                .iter()
                .position(|s| s.n_seq() == c.batch)
                .unwrap_or_else(|| panic!("no session with {} sequences", c.batch))
        })
        .collect();
    let mut out = vec![Measurement::default(); configs.len()];
    // Progress in tokens processed, so that the time left is right from the start.
    let work = |c: &Config, n: usize| c.batch * (prompt.len() + n);
    let warmup = steps.min(WARMUP_STEPS);
    let total: usize = configs
        .iter()
        .map(|c| work(c, warmup) + rounds * work(c, steps))
        .sum();
    let mut done = 0;
    progress(0, total);
    for round in 0..=rounds {
        for k in 0..configs.len() {
            // The order rotates each round and runs backwards every other round, so no
            // configuration always runs first or always next to the same neighbours.
            let n_cfg = configs.len();
            let c = if round % 2 == 0 {
                (k + round) % n_cfg
            } else {
                (n_cfg - 1 - k + round) % n_cfg
            };
            let session = &mut sessions[session_of[c]];
            let n = if round == 0 {
                steps.min(WARMUP_STEPS)
            } else {
                steps
            };
            let (pt, dt) = time_once(session, prompt, n, configs[c].plan.as_ref())?;
            if round > 0 {
                let n_seq = configs[c].batch as f64;
                out[c]
                    .prefill
                    .push(n_seq * prompt.len() as f64 / pt.as_secs_f64());
                out[c].decode.push(n_seq * steps as f64 / dt.as_secs_f64());
            }
            done += work(&configs[c], n);
            progress(done, total);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
        assert_eq!(spread(&[3.0, 1.0, 2.0]), (1.0, 3.0));
    }
}
