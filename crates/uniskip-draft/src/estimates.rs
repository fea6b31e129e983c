//! The running estimates the drafting controller decides on: decayed rates and acceptances,
//! and the recent timings of a decode shape. Pure arithmetic on counts and times.

use std::collections::VecDeque;
use std::time::Duration;

/// Weight of the past in the running sums (per round): about the last 16 rounds count.
pub(super) const DECAY: f64 = 0.94;

/// Decayed sums of produced tokens and time.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Rate {
    pub(super) tokens: f64,
    pub(super) secs: f64,
}

impl Rate {
    pub(super) fn add(&mut self, tokens: f64, time: Duration) {
        self.tokens = self.tokens * DECAY + tokens;
        self.secs = self.secs * DECAY + time.as_secs_f64();
    }
    pub(super) fn per_s(&self) -> Option<f64> {
        (self.secs > 0.0 && self.tokens > 0.0).then(|| self.tokens / self.secs)
    }
}

/// Decayed accepted drafts and refusals: acceptance = accepted / (accepted + refused), the
/// chance that the next drafted token is kept, given the ones before it were.
#[derive(Debug, Clone, Copy)]
pub(super) struct Acceptance {
    accepted: f64,
    refused: f64,
}

impl Acceptance {
    /// A prior worth two rounds.
    pub(super) fn prior(a: f64) -> Self {
        Acceptance {
            accepted: a * 2.0,
            refused: (1.0 - a) * 2.0,
        }
    }
    pub(super) fn seen(&mut self, drafted: usize, accepted: usize) {
        self.accepted = self.accepted * DECAY + accepted as f64;
        self.refused = self.refused * DECAY + f64::from(u8::from(accepted < drafted));
    }
    pub(super) fn rate(&self) -> f64 {
        self.accepted / (self.accepted + self.refused)
    }
}

/// Timings a shape's cost is the median of: the latest few, so the cost follows the machine.
const TIMING_WINDOW: usize = 9;

/// The latest timings of one decode shape. Its cost is their median, not a running mean: on
/// a shared machine one decode now and then takes several times its usual time (another
/// process, a page fault), and a mean that starts from such a sample carries it for many
/// rounds, long enough to be kept as the shape's cost for later generations (seen: a 2-row
/// verification kept at 4.0 steps where it costs 1.6, which ruled lookup out for good).
#[derive(Debug, Clone, Default)]
pub(super) struct Timing {
    recent: VecDeque<f64>,
}

impl Timing {
    pub(super) fn add(&mut self, secs: f64) {
        if self.recent.len() == TIMING_WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(secs);
    }
    /// The median of the latest timings, once there is one.
    pub(super) fn get(&self) -> Option<f64> {
        let mut v: Vec<f64> = self.recent.iter().copied().collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        Some(if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        })
    }
    pub(super) fn samples(&self) -> usize {
        self.recent.len()
    }
    pub(super) fn clear(&mut self) {
        self.recent.clear();
    }
}
