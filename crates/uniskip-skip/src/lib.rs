//! Which transformer blocks to compute for each decoded token.
//!
//! This module is pure planning: it knows nothing about llama.cpp. A [`Plan`], built once
//! from [`PlanSettings`], gives the [`Mask`] of every decode step; underneath, [`plan`]
//! turns a [`Strategy`] plus a target depth into a per-block mask, and a [`CostModel`]
//! converts a wanted wall-clock speedup into a kept block count. The engine applies the
//! mask; nothing here touches a model.
//!
//! The main method is Unified Layer Skipping (Liu et al. 2024, arXiv
//! 2404.06954): for a target speedup `r` on an `L`-block model, keep
//! `floor(L / r)` blocks spread evenly between the first and the last.

mod cost;
mod layers;
mod plan;
mod strategy;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use cost::{CostError, CostModel, SpeedupMode, speedup_by_layers};
pub use layers::{LayerListError, parse_layer_list};
pub use plan::{DEFAULT_DRAFT_SPEEDUP, Plan, PlanSettings, SettingsError};
pub use strategy::{
    BlockPlacement, Depth, PlanError, SplitMix64, Strategy, StrategySpec, plan, skipdecode_schedule,
};

/// Which blocks of the model are computed for a token: one entry per block,
/// `true` when the block runs, `false` when its input passes straight through.
///
/// Invariant: at least one block is computed. A mask that skips every block
/// would turn the model into its embedding table feeding the output head,
/// which is never what a caller means, so it cannot be built.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "Vec<bool>", into = "Vec<bool>")]
pub struct Mask(Vec<bool>);

/// Why a [`Mask`] could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MaskError {
    /// The mask has no entries; a model always has at least one block.
    #[error("a mask needs at least one block, got an empty one")]
    Empty,
    /// Every block would be skipped.
    #[error("a mask must compute at least one block, but all {n_layer} are skipped")]
    AllSkipped {
        /// Number of blocks in the refused mask.
        n_layer: usize,
    },
}

/// A name given on the command line or in a config did not match any variant.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{value}`; expected one of: {expected}")]
pub struct ParseNameError {
    /// What was being parsed, e.g. "strategy".
    pub what: &'static str,
    /// The text that did not match.
    pub value: String,
    /// The accepted names, comma separated.
    pub expected: &'static str,
}

impl Mask {
    /// A mask that computes all `n_layer` blocks (no skipping).
    ///
    /// # Panics
    /// If `n_layer` is 0: such a mask would compute nothing, breaking the
    /// type's invariant, and no real model has zero blocks.
    pub fn full(n_layer: usize) -> Mask {
        assert!(n_layer > 0, "a full mask needs at least one block");
        Mask(vec![true; n_layer])
    }

    /// Wraps an explicit per-block list (`true` = computed).
    ///
    /// Fails when the list is empty or computes no block.
    pub fn from_active(active: Vec<bool>) -> Result<Mask, MaskError> {
        if active.is_empty() {
            return Err(MaskError::Empty);
        }
        if !active.contains(&true) {
            return Err(MaskError::AllSkipped {
                n_layer: active.len(),
            });
        }
        Ok(Mask(active))
    }

    /// Builds a mask computing exactly the blocks in `kept` (indices must be
    /// below `n_layer`; duplicates are harmless). Internal: planners only call
    /// it with valid, non-empty index sets.
    fn from_kept(n_layer: usize, kept: impl IntoIterator<Item = usize>) -> Mask {
        let mut active = vec![false; n_layer];
        for i in kept {
            active[i] = true;
        }
        debug_assert!(active.contains(&true), "planner produced an empty mask");
        Mask(active)
    }

    /// Number of blocks in the model this mask is for.
    pub fn n_layer(&self) -> usize {
        self.0.len()
    }

    /// Number of computed blocks.
    pub fn n_active(&self) -> usize {
        self.0.iter().filter(|&&a| a).count()
    }

    /// Whether block `index` is computed (`false` for an index past the end).
    pub fn is_active(&self, index: usize) -> bool {
        self.0.get(index).copied().unwrap_or(false)
    }

    /// Indices of the computed blocks, ascending.
    pub fn active_indices(&self) -> Vec<usize> {
        self.indices_where(true)
    }

    /// Indices of the skipped blocks, ascending.
    pub fn skipped_indices(&self) -> Vec<usize> {
        self.indices_where(false)
    }

    /// Whether every block is computed, i.e. the mask changes nothing.
    pub fn is_full(&self) -> bool {
        self.0.iter().all(|&a| a)
    }

    /// The per-block flags, `true` = computed.
    pub fn as_slice(&self) -> &[bool] {
        &self.0
    }

    /// The per-block flags as bytes (1 = computed, 0 = skipped), the layout a
    /// C-side hook reads.
    pub fn as_bytes(&self) -> Vec<u8> {
        self.0.iter().map(|&a| u8::from(a)).collect()
    }

    fn indices_where(&self, value: bool) -> Vec<usize> {
        self.0
            .iter()
            .enumerate()
            .filter_map(|(i, &a)| (a == value).then_some(i))
            .collect()
    }
}

/// One cell per block, bottom block first: `█` computed, `·` skipped.
impl fmt::Display for Mask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &a in &self.0 {
            f.write_str(if a { "█" } else { "·" })?;
        }
        Ok(())
    }
}

impl TryFrom<Vec<bool>> for Mask {
    type Error = MaskError;

    /// Same as [`Mask::from_active`]; lets serde validate deserialized masks.
    fn try_from(active: Vec<bool>) -> Result<Mask, MaskError> {
        Mask::from_active(active)
    }
}

impl From<Mask> for Vec<bool> {
    fn from(mask: Mask) -> Vec<bool> {
        mask.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_mask_computes_every_block() {
        let m = Mask::full(4);
        assert_eq!(m.n_layer(), 4);
        assert_eq!(m.n_active(), 4);
        assert!(m.is_full());
        assert_eq!(m.skipped_indices(), Vec::<usize>::new());
    }

    #[test]
    #[should_panic(expected = "at least one block")]
    fn full_mask_of_zero_blocks_panics() {
        let _ = Mask::full(0);
    }

    #[test]
    fn from_active_reports_indices_and_bytes() {
        let m = Mask::from_active(vec![true, false, false, true, true]).unwrap();
        assert_eq!(m.active_indices(), vec![0, 3, 4]);
        assert_eq!(m.skipped_indices(), vec![1, 2]);
        assert_eq!(m.as_bytes(), vec![1, 0, 0, 1, 1]);
        assert_eq!(m.n_active(), 3);
        assert!(!m.is_full());
        assert!(m.is_active(3) && !m.is_active(1) && !m.is_active(99));
    }

    #[test]
    fn from_active_refuses_empty_and_all_skipped() {
        assert_eq!(Mask::from_active(vec![]), Err(MaskError::Empty));
        assert_eq!(
            Mask::from_active(vec![false; 3]),
            Err(MaskError::AllSkipped { n_layer: 3 })
        );
    }

    #[test]
    fn display_draws_one_cell_per_block() {
        let m = Mask::from_active(vec![true, false, true]).unwrap();
        assert_eq!(m.to_string(), "█·█");
    }

    #[test]
    fn serde_round_trips_and_refuses_all_skipped() {
        let m = Mask::from_active(vec![true, false, true]).unwrap();
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, "[true,false,true]");
        assert_eq!(serde_json::from_str::<Mask>(&json).unwrap(), m);
        assert!(serde_json::from_str::<Mask>("[false,false]").is_err());
    }
}
