//! The rows of a benchmark: full depth, then every strategy at every target, each planned
//! for the model or marked impossible with the planner's reason.

use crate::skip::{BlockPlacement, Depth, Mask, Strategy, StrategySpec, plan};

use super::speed::Schedule;

/// What a row runs.
#[derive(Debug, Clone, PartialEq)]
pub enum RowKind {
    /// Full depth through the hook: the reference.
    Full,
    /// Full depth with the hook unset (llama.cpp's own path): speed only, to show that the
    /// hook costs nothing.
    Unset,
    /// A strategy at a depth.
    Planned {
        /// The strategy and its parameters (SkipDecode's length is set per use).
        spec: StrategySpec,
        /// The target.
        depth: Depth,
    },
}

/// One row of the grid.
#[derive(Debug, Clone)]
pub struct Row {
    /// Strategy name as reported (`full`, `unified`, `manual 8-22`, ...).
    pub strategy: String,
    /// The target speedup (`None` for the full-depth rows and manual masks).
    pub target: Option<f64>,
    /// What runs, or why the row is impossible on this model.
    pub kind: Result<RowKind, String>,
}

impl Row {
    /// A possible row.
    pub fn is_possible(&self) -> bool {
        self.kind.is_ok()
    }

    /// The masks for `generated` generated tokens: `masks[s]` for decode step `s`
    /// (`0..generated`; step 0 is the prefill's, unused with a full prefill). SkipDecode's
    /// ramp spans the generated tokens. `None` for the hook-unset and impossible rows.
    pub fn masks(&self, n_layer: usize, generated: usize) -> Option<Vec<Mask>> {
        match self.kind.as_ref().ok()? {
            RowKind::Unset => None,
            RowKind::Full => Some(vec![Mask::full(n_layer); generated]),
            RowKind::Planned { spec, depth } => {
                let spec = with_planned_len(spec, generated);
                (0..generated)
                    .map(|s| plan(&spec, n_layer, *depth, s).ok())
                    .collect()
            }
        }
    }

    /// The speed schedule for decoding `steps` tokens (after the prefill's token).
    pub fn schedule(&self, n_layer: usize, steps: usize) -> Option<Schedule> {
        match self.kind.as_ref().ok()? {
            RowKind::Unset => Some(Schedule::Unset),
            RowKind::Full => Some(Schedule::Fixed(Mask::full(n_layer))),
            RowKind::Planned { spec, .. } if spec.depends_on_step() => {
                Some(Schedule::Steps(self.masks(n_layer, steps + 1)?))
            }
            RowKind::Planned { .. } => Some(Schedule::Fixed(self.masks(n_layer, 1)?.remove(0))),
        }
    }

    /// Whether the masks change from step to step.
    pub fn varies(&self) -> bool {
        matches!(&self.kind, Ok(RowKind::Planned { spec, .. }) if spec.depends_on_step())
    }
}

fn with_planned_len(spec: &StrategySpec, planned_len: usize) -> StrategySpec {
    match spec {
        StrategySpec::SkipDecode { .. } => StrategySpec::SkipDecode {
            planned_len: planned_len.max(1),
        },
        other => other.clone(),
    }
}

/// Builds the grid: full depth (through the hook and, when `unset_row`, without it), then
/// each strategy at each target, then each manual mask. `calibrated` holds the masks of the
/// model's calibration profile, if there is one (else calibrated rows are impossible with
/// `no_profile` as the reason).
pub fn build(
    n_layer: usize,
    strategies: &[Strategy],
    targets: &[f64],
    manual: &[(String, Mask)],
    calibrated: Result<Vec<Mask>, String>,
    unset_row: bool,
) -> Vec<Row> {
    let mut rows = vec![Row {
        strategy: "full".into(),
        target: Some(1.0),
        kind: Ok(RowKind::Full),
    }];
    if unset_row {
        rows.push(Row {
            strategy: "full, hook unset".into(),
            target: Some(1.0),
            kind: Ok(RowKind::Unset),
        });
    }
    for &strategy in strategies {
        for &target in targets {
            let depth = Depth::Ratio(target);
            let spec = match strategy {
                Strategy::Calibrated => calibrated
                    .clone()
                    .map(|masks| StrategySpec::Calibrated { masks }),
                Strategy::Block => Ok(StrategySpec::Block {
                    placement: BlockPlacement::Deepest,
                }),
                other => StrategySpec::default_for(other)
                    .ok_or_else(|| format!("{other} needs a mask: use --skip-layers")),
            };
            let kind = spec.and_then(|spec| {
                // Planned once here so an impossible target is reported with its reason.
                plan(&with_planned_len(&spec, 1), n_layer, depth, 0)
                    .map(|_| RowKind::Planned { spec, depth })
                    .map_err(|e| e.to_string())
            });
            rows.push(Row {
                strategy: strategy.name().into(),
                target: Some(target),
                kind,
            });
        }
    }
    for (label, mask) in manual {
        rows.push(Row {
            strategy: format!("manual {label}"),
            target: None,
            kind: Ok(RowKind::Planned {
                spec: StrategySpec::Manual { mask: mask.clone() },
                depth: Depth::Kept(mask.n_active().clamp(2, n_layer)),
            }),
        });
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impossible_targets_stay_in_the_grid_with_the_reason() {
        let rows = build(
            30,
            &[Strategy::Unified],
            &[2.0, 20.0],
            &[],
            Err("no profile".into()),
            true,
        );
        let labels: Vec<_> = rows.iter().map(|r| r.strategy.as_str()).collect();
        assert_eq!(labels, ["full", "full, hook unset", "unified", "unified"]);
        assert!(rows[2].is_possible());
        let reason = rows[3].kind.as_ref().unwrap_err();
        assert!(reason.contains("out of range"), "{reason}");
    }

    #[test]
    fn calibrated_rows_without_a_profile_say_why() {
        let rows = build(
            30,
            &[Strategy::Calibrated],
            &[2.0],
            &[],
            Err("no calibration profile".into()),
            false,
        );
        assert_eq!(rows[1].kind.as_ref().unwrap_err(), "no calibration profile");
    }

    #[test]
    fn skipdecode_ramps_over_the_generated_tokens_and_others_stay_fixed() {
        let rows = build(
            30,
            &[Strategy::SkipDecode, Strategy::Unified],
            &[2.0],
            &[],
            Err(String::new()),
            false,
        );
        let sd = &rows[1];
        assert!(sd.varies());
        let masks = sd.masks(30, 33).unwrap();
        assert_eq!(masks.len(), 33);
        let mean = masks.iter().map(|m| m.n_active() as f64).sum::<f64>() / 33.0;
        assert!((mean - 15.0).abs() < 0.1, "{mean}");
        assert!(masks.windows(2).all(|w| w[1].n_active() <= w[0].n_active()));
        match rows[2].schedule(30, 8).unwrap() {
            Schedule::Fixed(m) => assert_eq!(m.n_active(), 15),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            rows[0].schedule(30, 8),
            Some(Schedule::Fixed(Mask::full(30)))
        );
    }
}
