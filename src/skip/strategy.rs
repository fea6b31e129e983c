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
/// Only SkipDecode looks at `step`; its schedule is built once per thread and
/// settings (see [`skipdecode_schedule`]) and then read step by step.
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
/// SkipDecode's depth at `step` (past the planned length the ramp has bottomed out:
/// it stays there). The schedule is global (its rounding spreads over every step), so
/// building it costs O(planned_len log planned_len); generation asks for it once per
/// token with the same settings, so the last one built is kept.
fn skipdecode_depth(
    n_layer: usize,
    depth: Depth,
    planned_len: usize,
    step: usize,
) -> Result<usize, PlanError> {
    type Built = ((usize, Depth, usize), std::rc::Rc<Vec<usize>>);
    thread_local! {
        static LAST: std::cell::RefCell<Option<Built>> = const { std::cell::RefCell::new(None) };
    }
    let key = (n_layer, depth, planned_len);
    let cached = LAST.with_borrow(|last| {
        last.as_ref()
            .filter(|(k, _)| *k == key)
            .map(|(_, s)| std::rc::Rc::clone(s))
    });
    let schedule = match cached {
        Some(s) => s,
        None => {
            let s = std::rc::Rc::new(skipdecode_schedule(n_layer, depth, planned_len)?);
            LAST.set(Some((key, std::rc::Rc::clone(&s))));
            s
        }
    };
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
mod tests {
    use super::*;
    // Both globs export a `Strategy`; ours is the one these tests mean.
    use super::Strategy;
    use proptest::prelude::*;
    use proptest::strategy::Strategy as _;

    fn kept_of(spec: &StrategySpec, n: usize, depth: Depth) -> Vec<usize> {
        plan(spec, n, depth, 0).unwrap().active_indices()
    }

    fn gaps(kept: &[usize]) -> Vec<usize> {
        kept.windows(2).map(|w| w[1] - w[0]).collect()
    }

    /// Oracle for the kept count: the largest k with k * r <= L, at least 2.
    fn expected_kept(n: usize, r: f64) -> usize {
        (1..=n)
            .filter(|&k| k as f64 * r <= n as f64 + 1e-9)
            .max()
            .unwrap()
            .max(2)
    }

    #[test]
    fn paper_example_30_blocks_at_5x() {
        assert_eq!(
            kept_of(&StrategySpec::Unified, 30, Depth::Ratio(5.0)),
            vec![0, 6, 12, 18, 24, 29]
        );
    }

    #[test]
    fn paper_example_24_blocks_at_2x_keeps_every_other_block() {
        let kept = kept_of(&StrategySpec::Unified, 24, Depth::Ratio(2.0));
        assert_eq!(kept.len(), 12);
        assert_eq!((kept[0], kept[11]), (0, 23));
        // 11 gaps spanning 23 blocks: ten of 2 (every other block) and one of 3.
        let g = gaps(&kept);
        assert_eq!(g.iter().filter(|&&x| x == 2).count(), 10);
        assert_eq!(g.iter().filter(|&&x| x == 3).count(), 1);
    }

    #[test]
    fn fractional_ratio_is_balanced_not_bunched_at_the_bottom() {
        let kept = kept_of(&StrategySpec::Unified, 30, Depth::Ratio(1.5));
        assert_eq!(kept.len(), 20);
        assert_eq!((kept[0], kept[19]), (0, 29));
        // 19 gaps over 29 blocks: ten of 2 and nine of 1, interleaved, so
        // both halves of the model lose about the same number of blocks.
        let g = gaps(&kept);
        assert!(g.iter().all(|&x| x == 1 || x == 2), "{g:?}");
        let bottom_half_kept = kept.iter().filter(|&&i| i < 15).count();
        assert!((9..=11).contains(&bottom_half_kept), "{kept:?}");
    }

    #[test]
    fn ratio_one_keeps_everything() {
        for spec in [
            StrategySpec::Unified,
            StrategySpec::EarlyExit,
            StrategySpec::Block {
                placement: BlockPlacement::Deepest,
            },
            StrategySpec::Random { seed: 7 },
            StrategySpec::SkipDecode { planned_len: 16 },
        ] {
            assert!(plan(&spec, 12, Depth::Ratio(1.0), 3).unwrap().is_full());
        }
    }

    #[test]
    fn ratio_range_errors_state_the_valid_range() {
        let err = Depth::Ratio(16.0).kept(30).unwrap_err();
        assert_eq!(
            err,
            PlanError::RatioOutOfRange {
                target: 16.0,
                n_layer: 30,
                max: 15.0
            }
        );
        let msg = err.to_string();
        assert!(msg.contains("from 1 to 15"), "{msg}");
        assert_eq!(Depth::Ratio(15.0).kept(30), Ok(2));
    }

    #[test]
    fn too_few_blocks_is_an_error() {
        for n in [0, 1] {
            for spec in [
                StrategySpec::Unified,
                StrategySpec::SkipDecode { planned_len: 8 },
            ] {
                assert_eq!(
                    plan(&spec, n, Depth::Ratio(1.0), 0),
                    Err(PlanError::TooFewBlocks { n_layer: n })
                );
            }
        }
    }

    #[test]
    fn kept_count_outside_two_to_l_is_an_error() {
        assert_eq!(
            Depth::Kept(1).kept(10),
            Err(PlanError::KeptOutOfRange {
                kept: 1,
                n_layer: 10
            })
        );
        assert_eq!(
            Depth::Kept(11).kept(10),
            Err(PlanError::KeptOutOfRange {
                kept: 11,
                n_layer: 10
            })
        );
        assert_eq!(Depth::Kept(10).kept(10), Ok(10));
    }

    #[test]
    fn block_deepest_keeps_the_last_block_and_skips_just_below_it() {
        let m = plan(
            &StrategySpec::Block {
                placement: BlockPlacement::Deepest,
            },
            10,
            Depth::Kept(6),
            0,
        )
        .unwrap();
        assert_eq!(m.skipped_indices(), vec![5, 6, 7, 8]);
    }

    #[test]
    fn block_with_explicit_start_skips_from_there() {
        let spec = |start| StrategySpec::Block {
            placement: BlockPlacement::Start(start),
        };
        let m = plan(&spec(2), 10, Depth::Kept(6), 0).unwrap();
        assert_eq!(m.skipped_indices(), vec![2, 3, 4, 5]);
        assert_eq!(
            plan(&spec(6), 10, Depth::Kept(6), 0)
                .unwrap()
                .skipped_indices(),
            vec![6, 7, 8, 9]
        );
        let err = plan(&spec(7), 10, Depth::Kept(6), 0).unwrap_err();
        assert_eq!(
            err,
            PlanError::BlockStart {
                start: 7,
                run: 4,
                n_layer: 10
            }
        );
        assert!(err.to_string().contains("at most 6"));
    }

    #[test]
    fn manual_mask_is_returned_as_given_and_checked_for_length() {
        let mask = Mask::from_skip_list("1-3", 8).unwrap();
        let spec = StrategySpec::Manual { mask: mask.clone() };
        assert_eq!(plan(&spec, 8, Depth::Ratio(1.0), 5), Ok(mask));
        assert_eq!(
            plan(&spec, 9, Depth::Ratio(1.0), 0),
            Err(PlanError::MaskLength {
                mask: 8,
                n_layer: 9
            })
        );
    }

    #[test]
    fn calibrated_picks_the_profile_mask_for_the_kept_count() {
        let five = Mask::from_skip_list("2-4", 8).unwrap();
        let four = Mask::from_skip_list("0,2-4", 8).unwrap();
        let spec = StrategySpec::Calibrated {
            masks: vec![five.clone(), four.clone()],
        };
        assert_eq!(plan(&spec, 8, Depth::Kept(5), 0), Ok(five));
        assert_eq!(plan(&spec, 8, Depth::Ratio(2.0), 0), Ok(four));
        assert!(plan(&spec, 8, Depth::Ratio(1.0), 0).unwrap().is_full());
        assert_eq!(
            plan(&spec, 8, Depth::Kept(3), 0),
            Err(PlanError::NotCalibrated {
                kept: 3,
                n_layer: 8
            })
        );
    }

    #[test]
    fn skipdecode_starts_full_and_skips_bottom_blocks_after_block_0() {
        let spec = StrategySpec::SkipDecode { planned_len: 11 };
        // L = 12 at 2x: mean 6, ideal ramp 10, 9.2, ..., 2.8, 2 (limited by
        // the floor of 2 blocks); the four largest fractions round up.
        let schedule = skipdecode_schedule(12, Depth::Ratio(2.0), 11).unwrap();
        assert_eq!(schedule, vec![10, 9, 8, 8, 7, 6, 5, 4, 4, 3, 2]);
        let m = plan(&spec, 12, Depth::Ratio(2.0), 0).unwrap();
        assert_eq!(m.skipped_indices(), vec![1, 2]);
        // Past the plan the minimum depth stays.
        let late = plan(&spec, 12, Depth::Ratio(2.0), 1_000).unwrap();
        assert_eq!(late.active_indices(), vec![0, 11]);
    }

    #[test]
    fn skipdecode_with_a_single_planned_step_uses_the_mean() {
        assert_eq!(skipdecode_schedule(30, Depth::Kept(7), 1).unwrap(), vec![7]);
        assert_eq!(
            skipdecode_schedule(30, Depth::Ratio(2.0), 0),
            Err(PlanError::ZeroPlannedLen)
        );
    }

    #[test]
    fn names_round_trip_through_from_str_display_and_serde() {
        for s in Strategy::ALL {
            assert_eq!(s.to_string().parse::<Strategy>(), Ok(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        let err = "skip-decode".parse::<Strategy>().unwrap_err();
        assert!(err.to_string().contains("skipdecode"), "{err}");
        assert_eq!("deepest".parse(), Ok(BlockPlacement::Deepest));
        assert_eq!("4".parse(), Ok(BlockPlacement::Start(4)));
        assert!("top".parse::<BlockPlacement>().is_err());
    }

    #[test]
    fn specs_serialize_with_a_strategy_tag() {
        let spec = StrategySpec::SkipDecode { planned_len: 64 };
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(json, r#"{"strategy":"skipdecode","planned_len":64}"#);
        assert_eq!(serde_json::from_str::<StrategySpec>(&json).unwrap(), spec);
        for s in Strategy::ALL {
            match StrategySpec::default_for(s) {
                Some(spec) => assert_eq!(spec.strategy(), s),
                None => assert!(matches!(s, Strategy::Manual | Strategy::Calibrated)),
            }
        }
    }

    /// An `(L, r)` pair with L in 2..=128 and r in [1, L/2].
    fn model_and_ratio() -> impl proptest::strategy::Strategy<Value = (usize, f64)> {
        (2usize..=128, 0.0f64..=1.0).prop_map(|(n, u)| (n, 1.0 + u * (n as f64 / 2.0 - 1.0)))
    }

    proptest! {
        #[test]
        fn unified_keeps_exact_count_first_last_and_balanced_gaps((n, r) in model_and_ratio()) {
            let kept = kept_of(&StrategySpec::Unified, n, Depth::Ratio(r));
            prop_assert_eq!(kept.len(), expected_kept(n, r));
            prop_assert_eq!(kept[0], 0);
            prop_assert_eq!(*kept.last().unwrap(), n - 1);
            let g = gaps(&kept);
            let (lo, hi) = (g.iter().min().unwrap(), g.iter().max().unwrap());
            prop_assert!(hi - lo <= 1, "gaps {:?}", g);
        }

        #[test]
        fn planning_is_deterministic((n, r) in model_and_ratio(), seed: u64, step in 0usize..300) {
            for spec in [
                StrategySpec::Unified,
                StrategySpec::EarlyExit,
                StrategySpec::SkipDecode { planned_len: 128 },
                StrategySpec::Block { placement: BlockPlacement::Deepest },
                StrategySpec::Random { seed },
            ] {
                let a = plan(&spec, n, Depth::Ratio(r), step).unwrap();
                let b = plan(&spec, n, Depth::Ratio(r), step).unwrap();
                prop_assert_eq!(a.n_layer(), n);
                prop_assert_eq!(a, b);
            }
        }

        #[test]
        fn random_keeps_exact_count_and_first_last((n, r) in model_and_ratio(), seed: u64) {
            let kept = kept_of(&StrategySpec::Random { seed }, n, Depth::Ratio(r));
            prop_assert_eq!(kept.len(), expected_kept(n, r));
            prop_assert_eq!(kept[0], 0);
            prop_assert_eq!(*kept.last().unwrap(), n - 1);
        }

        #[test]
        fn early_exit_keeps_the_bottom_blocks((n, r) in model_and_ratio()) {
            let kept = kept_of(&StrategySpec::EarlyExit, n, Depth::Ratio(r));
            prop_assert_eq!(kept, (0..expected_kept(n, r)).collect::<Vec<_>>());
        }

        #[test]
        fn block_skips_one_contiguous_run((n, r) in model_and_ratio(), start_frac in 0.0f64..=1.0) {
            let k = expected_kept(n, r);
            let deepest = plan(&StrategySpec::Block { placement: BlockPlacement::Deepest }, n, Depth::Ratio(r), 0).unwrap();
            let start = (start_frac * k as f64) as usize; // 0..=n - run
            let placed = plan(&StrategySpec::Block { placement: BlockPlacement::Start(start) }, n, Depth::Ratio(r), 0).unwrap();
            for m in [&deepest, &placed] {
                prop_assert_eq!(m.n_active(), k);
                let skipped = m.skipped_indices();
                prop_assert!(gaps(&skipped).iter().all(|&g| g == 1), "{:?}", skipped);
            }
            prop_assert!(deepest.is_active(n - 1));
            if k < n {
                prop_assert_eq!(deepest.skipped_indices().last().copied(), Some(n - 2));
                prop_assert_eq!(placed.skipped_indices()[0], start);
            }
        }

        #[test]
        fn invalid_ratios_are_refused(n in 2usize..=128, below in 0.0f64..1.0, above in 1e-6f64..1e6) {
            let max = n as f64 / 2.0;
            for r in [below, max + above.max(1e-6 * max), f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
                let expected = PlanError::RatioOutOfRange { target: r, n_layer: n, max };
                for spec in [StrategySpec::Unified, StrategySpec::SkipDecode { planned_len: 4 }] {
                    match plan(&spec, n, Depth::Ratio(r), 0) {
                        // NaN != NaN, so compare the message instead.
                        Err(e) => prop_assert_eq!(e.to_string(), expected.to_string()),
                        Ok(m) => prop_assert!(false, "r = {} accepted: {}", r, m),
                    }
                }
            }
        }

        #[test]
        fn skipdecode_is_monotone_and_meets_the_mean(
            (n, r) in model_and_ratio(),
            planned_len in 1usize..300,
        ) {
            let spec = StrategySpec::SkipDecode { planned_len };
            let schedule = skipdecode_schedule(n, Depth::Ratio(r), planned_len).unwrap();
            prop_assert!(schedule.windows(2).all(|w| w[0] >= w[1]), "{:?}", schedule);
            let mean = schedule.iter().sum::<usize>() as f64 / planned_len as f64;
            let target = n as f64 / r;
            prop_assert!((mean - target).abs() <= 1.0);
            // As close as integers allow: the total is off by at most half a block.
            prop_assert!((mean - target).abs() <= 0.5 / planned_len as f64 + 1e-9, "mean {} target {}", mean, target);
            let mut previous = usize::MAX;
            for step in 0..planned_len + 5 {
                let m = plan(&spec, n, Depth::Ratio(r), step).unwrap();
                prop_assert_eq!(m.n_layer(), n);
                prop_assert!(m.is_active(0) && m.is_active(n - 1));
                prop_assert!(m.n_active() >= 2 && m.n_active() <= previous);
                // Bottom skip after the warm-up block: skipped = 1..=s.
                let skipped = m.skipped_indices();
                prop_assert_eq!(skipped, (1..=n - m.n_active()).collect::<Vec<_>>());
                previous = m.n_active();
            }
        }

        #[test]
        fn skipdecode_kept_mode_mean_equals_the_count(
            n in 2usize..=128,
            k_frac in 0.0f64..=1.0,
            planned_len in 1usize..300,
        ) {
            let k = 2 + (k_frac * (n - 2) as f64) as usize;
            let schedule = skipdecode_schedule(n, Depth::Kept(k), planned_len).unwrap();
            let mean = schedule.iter().sum::<usize>() as f64 / planned_len as f64;
            prop_assert!((mean - k as f64).abs() <= 0.5 / planned_len as f64 + 1e-9, "mean {} k {}", mean, k);
            prop_assert!(schedule.windows(2).all(|w| w[0] >= w[1]));
            prop_assert!(schedule.iter().all(|&d| (2..=n).contains(&d)));
        }
    }
}
