//! Skipping strategies and the planner that turns one into a [`Mask`].
//!
//! Every strategy answers the same question — which blocks to compute for the
//! token at decode step `step` — so they share one entry point, [`plan`]. How
//! deep to go is given separately as a [`Depth`]: either the paper's target
//! ratio `r` (keep `floor(L / r)` blocks) or an explicit kept count, which is
//! what a measured [`super::CostModel`] produces.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{Mask, ParseNameError};

/// Slack when flooring `L / r`: `30.0 / 1.5` is exactly 20 in binary, but a
/// ratio typed as a decimal (say `30.0 / 0.3 * 0.1`) may land a hair below an
/// integer, and dropping a whole block for a rounding error would be wrong.
const RATIO_SLACK: f64 = 1e-9;

/// The names of the strategies, as used on the command line and in reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Unified Layer Skipping: keep the first and last block and spread the
    /// other kept blocks evenly between them.
    Unified,
    /// Keep the bottom blocks only, as if the model stopped early.
    EarlyExit,
    /// SkipDecode (Del Corro et al. 2023): depth shrinks linearly with the
    /// generated position; the skipped blocks are the bottom ones after block 0.
    #[serde(rename = "skipdecode")]
    SkipDecode,
    /// Skip one contiguous run of blocks.
    Block,
    /// Keep blocks chosen at random with a seed (a control for the others).
    Random,
    /// An explicit mask given by the caller.
    Manual,
    /// Kept blocks chosen per kept count by measuring, on calibration text, what
    /// each choice costs in KL divergence from full depth (`uniskip calibrate`).
    Calibrated,
}

impl Strategy {
    /// Every strategy, in the order they are listed in help texts.
    pub const ALL: [Strategy; 7] = [
        Strategy::Unified,
        Strategy::EarlyExit,
        Strategy::SkipDecode,
        Strategy::Block,
        Strategy::Random,
        Strategy::Manual,
        Strategy::Calibrated,
    ];

    /// The name used on the command line (`early-exit`, `skipdecode`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Unified => "unified",
            Strategy::EarlyExit => "early-exit",
            Strategy::SkipDecode => "skipdecode",
            Strategy::Block => "block",
            Strategy::Random => "random",
            Strategy::Manual => "manual",
            Strategy::Calibrated => "calibrated",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Strategy {
    type Err = ParseNameError;

    fn from_str(s: &str) -> Result<Strategy, ParseNameError> {
        Strategy::ALL
            .into_iter()
            .find(|st| st.name() == s)
            .ok_or_else(|| ParseNameError {
                what: "strategy",
                value: s.to_owned(),
                expected: "unified, early-exit, skipdecode, block, random, manual, calibrated",
            })
    }
}

/// Where the [`Strategy::Block`] strategy puts its skipped run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BlockPlacement {
    /// The run ends just below the last block, which stays computed: deep
    /// blocks are the most redundant in most models, and the last one shapes
    /// the hidden state for the output head.
    #[default]
    Deepest,
    /// The run starts at this block index.
    Start(usize),
}

impl fmt::Display for BlockPlacement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockPlacement::Deepest => f.write_str("deepest"),
            BlockPlacement::Start(i) => write!(f, "{i}"),
        }
    }
}

impl FromStr for BlockPlacement {
    type Err = ParseNameError;

    /// `deepest`, or a block index at which the run starts.
    fn from_str(s: &str) -> Result<BlockPlacement, ParseNameError> {
        if s == "deepest" {
            return Ok(BlockPlacement::Deepest);
        }
        s.parse()
            .map(BlockPlacement::Start)
            .map_err(|_| ParseNameError {
                what: "block placement",
                value: s.to_owned(),
                expected: "deepest, or a start block index",
            })
    }
}

/// A strategy together with its parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "strategy", rename_all = "kebab-case")]
pub enum StrategySpec {
    /// See [`Strategy::Unified`].
    Unified,
    /// See [`Strategy::EarlyExit`].
    EarlyExit,
    /// See [`Strategy::SkipDecode`].
    #[serde(rename = "skipdecode")]
    SkipDecode {
        /// Number of generated tokens the depth ramp spans (usually
        /// `max_new_tokens`). The mean depth over these steps meets the target;
        /// later steps stay at the minimum depth.
        planned_len: usize,
    },
    /// See [`Strategy::Block`].
    Block {
        /// Where the skipped run goes.
        placement: BlockPlacement,
    },
    /// See [`Strategy::Random`].
    Random {
        /// Seed of the choice; the same seed always gives the same mask.
        seed: u64,
    },
    /// See [`Strategy::Manual`]. The target depth is ignored: the mask says it all.
    Manual {
        /// The mask to use for every token.
        mask: Mask,
    },
    /// See [`Strategy::Calibrated`]: the kept count comes from the depth, the
    /// placement from a calibration profile.
    Calibrated {
        /// One mask per calibrated kept count (a profile need not cover them all).
        masks: Vec<Mask>,
    },
}

impl StrategySpec {
    /// Planned length used by [`StrategySpec::default_for`] for SkipDecode.
    pub const DEFAULT_PLANNED_LEN: usize = 128;

    /// The strategy with its default parameters, or `None` for
    /// [`Strategy::Manual`] and [`Strategy::Calibrated`], which need a mask or a
    /// calibration profile.
    pub fn default_for(strategy: Strategy) -> Option<StrategySpec> {
        Some(match strategy {
            Strategy::Unified => StrategySpec::Unified,
            Strategy::EarlyExit => StrategySpec::EarlyExit,
            Strategy::SkipDecode => StrategySpec::SkipDecode {
                planned_len: Self::DEFAULT_PLANNED_LEN,
            },
            Strategy::Block => StrategySpec::Block {
                placement: BlockPlacement::Deepest,
            },
            Strategy::Random => StrategySpec::Random { seed: 0 },
            Strategy::Manual | Strategy::Calibrated => return None,
        })
    }

    /// Which strategy this is.
    pub fn strategy(&self) -> Strategy {
        match self {
            StrategySpec::Unified => Strategy::Unified,
            StrategySpec::EarlyExit => Strategy::EarlyExit,
            StrategySpec::SkipDecode { .. } => Strategy::SkipDecode,
            StrategySpec::Block { .. } => Strategy::Block,
            StrategySpec::Random { .. } => Strategy::Random,
            StrategySpec::Manual { .. } => Strategy::Manual,
            StrategySpec::Calibrated { .. } => Strategy::Calibrated,
        }
    }

    /// Whether the mask changes from one decode step to the next, so the
    /// engine must re-plan every token instead of once per run.
    pub fn depends_on_step(&self) -> bool {
        matches!(self, StrategySpec::SkipDecode { .. })
    }
}

/// How deep the model should run.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Depth {
    /// Target speedup `r` counted in blocks, as in the paper: keep
    /// `floor(L / r)` blocks. Valid for finite `r` in `[1, L / 2]`.
    Ratio(f64),
    /// Keep exactly this many blocks (2 to `L`), e.g. as chosen by a
    /// measured cost model.
    Kept(usize),
}

impl Depth {
    /// Number of blocks the count-based strategies keep on an
    /// `n_layer`-block model, or why this depth is impossible there.
    pub fn kept(self, n_layer: usize) -> Result<usize, PlanError> {
        check_n_layer(n_layer)?;
        match self {
            Depth::Ratio(r) => {
                let out_of_range = || PlanError::RatioOutOfRange {
                    target: r,
                    n_layer,
                    max: n_layer as f64 / 2.0,
                };
                // Written so that NaN fails the test instead of passing it.
                if !(r.is_finite() && r >= 1.0) {
                    return Err(out_of_range());
                }
                let k = (n_layer as f64 / r + RATIO_SLACK).floor() as usize;
                if k < 2 {
                    return Err(out_of_range());
                }
                Ok(k.min(n_layer))
            }
            Depth::Kept(k) if (2..=n_layer).contains(&k) => Ok(k),
            Depth::Kept(kept) => Err(PlanError::KeptOutOfRange { kept, n_layer }),
        }
    }

    /// The mean number of computed blocks SkipDecode aims for: `L / r`
    /// unrounded (its schedule averages over many steps, so a fractional
    /// mean is reachable), or the kept count itself.
    pub fn mean_active(self, n_layer: usize) -> Result<f64, PlanError> {
        // Same validation as the count-based strategies, so every strategy
        // accepts exactly the same targets.
        let k = self.kept(n_layer)?;
        Ok(match self {
            Depth::Ratio(r) => n_layer as f64 / r,
            Depth::Kept(_) => k as f64,
        })
    }
}

/// Why no mask could be planned.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PlanError {
    /// The model is too shallow to skip anything.
    #[error("a model with {n_layer} block(s) cannot skip any: at least 2 are needed")]
    TooFewBlocks {
        /// Number of blocks in the model.
        n_layer: usize,
    },
    /// The target speedup is not finite, below 1, or asks for fewer than 2 blocks.
    #[error(
        "target speedup {target} is out of range for this {n_layer}-block model: \
         it must be a finite number from 1 to {max} (= {n_layer}/2, keeping 2 blocks)"
    )]
    RatioOutOfRange {
        /// The refused target.
        target: f64,
        /// Number of blocks in the model.
        n_layer: usize,
        /// The largest valid target, `n_layer / 2`.
        max: f64,
    },
    /// The kept count is outside `2..=n_layer`.
    #[error("cannot keep {kept} of {n_layer} blocks: the kept count must be from 2 to {n_layer}")]
    KeptOutOfRange {
        /// The refused count.
        kept: usize,
        /// Number of blocks in the model.
        n_layer: usize,
    },
    /// A manual mask was made for a different model.
    #[error("the manual mask has {mask} blocks but the model has {n_layer}")]
    MaskLength {
        /// Blocks in the mask.
        mask: usize,
        /// Blocks in the model.
        n_layer: usize,
    },
    /// The explicit start of a block run leaves no room for the run.
    #[error(
        "a skipped run of {run} blocks starting at block {start} does not fit in \
         {n_layer} blocks: the start must be at most {max_start}",
        max_start = n_layer - run
    )]
    BlockStart {
        /// The requested start.
        start: usize,
        /// Length of the skipped run.
        run: usize,
        /// Number of blocks in the model.
        n_layer: usize,
    },
    /// SkipDecode was asked to plan over zero tokens.
    #[error("skipdecode needs a planned length of at least 1 token")]
    ZeroPlannedLen,
    /// The calibration profile has no mask for this kept count.
    #[error(
        "the calibration profile has no placement for {kept} of {n_layer} blocks \
         (run `uniskip calibrate` to complete it)"
    )]
    NotCalibrated {
        /// The kept count asked for.
        kept: usize,
        /// Number of blocks in the model.
        n_layer: usize,
    },
}

impl PlanError {
    /// Always the input's fault (exit code 2): the target or mask does not fit the model.
    pub fn is_user_error(&self) -> bool {
        true
    }
}

fn check_n_layer(n_layer: usize) -> Result<(), PlanError> {
    if n_layer < 2 {
        return Err(PlanError::TooFewBlocks { n_layer });
    }
    Ok(())
}

/// Plans the mask for decode step `step` (0-based index of the generated
/// token) of an `n_layer`-block model.
///
/// Every result has exactly `n_layer` entries; the count-based strategies
/// keep `depth.kept(n_layer)` blocks, SkipDecode averages `depth` over its
/// planned length, and a manual mask is returned as given (`depth` unused).
/// A calibrated spec returns its mask for the kept count (full depth needs none).
/// Only SkipDecode looks at `step`; it builds its whole schedule on each call, so a run
/// plans through [`super::Plan`], which builds it once.
pub fn plan(
    spec: &StrategySpec,
    n_layer: usize,
    depth: Depth,
    step: usize,
) -> Result<Mask, PlanError> {
    check_n_layer(n_layer)?;
    match spec {
        StrategySpec::Manual { mask } => {
            if mask.n_layer() != n_layer {
                return Err(PlanError::MaskLength {
                    mask: mask.n_layer(),
                    n_layer,
                });
            }
            Ok(mask.clone())
        }
        StrategySpec::SkipDecode { planned_len } => {
            let active = skipdecode_depth(n_layer, depth, *planned_len, step)?;
            Ok(bottom_skip(n_layer, active))
        }
        StrategySpec::Unified => Ok(unified(n_layer, depth.kept(n_layer)?)),
        StrategySpec::EarlyExit => Ok(Mask::from_kept(n_layer, 0..depth.kept(n_layer)?)),
        StrategySpec::Block { placement } => block(n_layer, depth.kept(n_layer)?, *placement),
        StrategySpec::Random { seed } => Ok(random(n_layer, depth.kept(n_layer)?, *seed)),
        StrategySpec::Calibrated { masks } => {
            let kept = depth.kept(n_layer)?;
            if kept == n_layer {
                return Ok(Mask::full(n_layer));
            }
            masks
                .iter()
                .find(|m| m.n_layer() == n_layer && m.n_active() == kept)
                .cloned()
                .ok_or(PlanError::NotCalibrated { kept, n_layer })
        }
    }
}

/// Keeps `k` blocks (`2 <= k <= n`) at `ceil(i * (n - 1) / (k - 1))`.
///
/// Consecutive kept positions are `(n - 1) / (k - 1) >= 1` apart before
/// rounding, so rounding keeps them distinct and every gap is the floor or
/// the ceiling of that step: gaps differ by at most one, for any real ratio.
/// Rounding up (not to nearest) puts the short gaps at the top, which is what
/// reproduces the paper's 30-block, 5x example `[0, 6, 12, 18, 24, 29]`.
fn unified(n: usize, k: usize) -> Mask {
    let span = n - 1;
    let gaps = k - 1;
    Mask::from_kept(n, (0..k).map(|i| (i * span).div_ceil(gaps)))
}

/// Skips one run of `n - k` blocks placed by `placement`.
fn block(n: usize, k: usize, placement: BlockPlacement) -> Result<Mask, PlanError> {
    let run = n - k;
    let start = match placement {
        // Ends at block n - 2: the last block stays computed.
        BlockPlacement::Deepest => n - 1 - run,
        BlockPlacement::Start(start) => start,
    };
    if start > n - run {
        return Err(PlanError::BlockStart {
            start,
            run,
            n_layer: n,
        });
    }
    Ok(Mask::from_kept(n, (0..start).chain(start + run..n)))
}

/// Keeps the first and last block plus `k - 2` of the others drawn uniformly
/// without replacement.
fn random(n: usize, k: usize, seed: u64) -> Mask {
    // Partial Fisher-Yates over the interior blocks 1..n-1.
    let mut interior: Vec<usize> = (1..n - 1).collect();
    let mut rng = SplitMix64(seed);
    let picks = k - 2;
    for i in 0..picks {
        let j = i + rng.below((interior.len() - i) as u64) as usize;
        interior.swap(i, j);
    }
    Mask::from_kept(
        n,
        [0, n - 1]
            .into_iter()
            .chain(interior[..picks].iter().copied()),
    )
}

/// SplitMix64 (Steele et al. 2014). A tiny generator written out here rather
/// than taken from a crate so that a seed names the same random mask forever:
/// general-purpose RNG crates reserve the right to change their sampling
/// algorithms between versions, which would silently change a control.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`). Draws below `2^64 mod n` are rejected so
    /// the accepted range is a whole number of copies of `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        let threshold = n.wrapping_neg() % n;
        loop {
            let x = self.next_u64();
            if x >= threshold {
                return x % n;
            }
        }
    }
}

/// Computes block 0, skips blocks `1..=n - active`, computes the rest: the
/// SkipDecode layout, where block 0 acts as a warm-up before the skip.
/// SkipDecode's depth at `step` (past the planned length the ramp has bottomed out: it
/// stays there). The schedule is global (its rounding spreads over every step), so this
/// builds it whole, in O(planned_len log planned_len): a run plans it once, through
/// [`super::Plan`], which keeps every step's mask.
fn skipdecode_depth(
    n_layer: usize,
    depth: Depth,
    planned_len: usize,
    step: usize,
) -> Result<usize, PlanError> {
    let schedule = skipdecode_schedule(n_layer, depth, planned_len)?;
    Ok(schedule[step.min(schedule.len() - 1)])
}

fn bottom_skip(n: usize, active: usize) -> Mask {
    let skipped = n - active;
    Mask::from_kept(n, std::iter::once(0).chain(skipped + 1..n))
}

/// The SkipDecode depth schedule: the number of computed blocks for each of
/// the `planned_len` steps, non-increasing, in `2..=n_layer`, with a mean
/// within `0.5 / planned_len` of `depth.mean_active(n_layer)`.
///
/// The ramp is the widest linear one centred on the target mean `c`: it runs
/// from `c + d` down to `c - d` with `d = min(L - c, c - 2)`, so it starts at
/// full depth when the target allows (early tokens set the course of the
/// answer and get the most compute) and never drops below 2 blocks. A
/// symmetric ramp has mean exactly `c`; integer depths are then chosen by
/// flooring and rounding up the steps with the largest fractional parts —
/// earliest first on ties, which keeps the schedule non-increasing — until
/// the sum is as close to `c * planned_len` as integers allow.
pub fn skipdecode_schedule(
    n_layer: usize,
    depth: Depth,
    planned_len: usize,
) -> Result<Vec<usize>, PlanError> {
    let c = depth.mean_active(n_layer)?;
    if planned_len == 0 {
        return Err(PlanError::ZeroPlannedLen);
    }
    let (lo, hi) = (2.0, n_layer as f64);
    // A one-step ramp is just its mean.
    let d = if planned_len == 1 {
        0.0
    } else {
        (hi - c).min(c - lo).max(0.0)
    };
    let top = c + d;
    let last = (planned_len - 1).max(1) as f64;
    // Clamped so float error cannot push a step past the valid depths;
    // `top - span * t / last` is monotone in t even in floating point.
    let ideal: Vec<f64> = (0..planned_len)
        .map(|t| (top - 2.0 * d * t as f64 / last).clamp(lo, hi))
        .collect();
    let mut schedule: Vec<usize> = ideal.iter().map(|f| f.floor() as usize).collect();
    let frac = |t: usize| ideal[t] - ideal[t].floor();
    let floor_sum: usize = schedule.iter().sum();
    let missing = (c * planned_len as f64 - floor_sum as f64).round().max(0.0) as usize;
    let mut order: Vec<usize> = (0..planned_len).filter(|&t| frac(t) > 0.0).collect();
    order.sort_by(|&a, &b| frac(b).total_cmp(&frac(a)).then(a.cmp(&b)));
    for &t in order.iter().take(missing) {
        schedule[t] += 1;
    }
    Ok(schedule)
}

#[cfg(test)]
#[path = "strategy_tests.rs"]
mod tests;
