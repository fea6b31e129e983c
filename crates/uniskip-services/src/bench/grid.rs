//! The rows of a benchmark: full depth, then every strategy at every target, each planned
//! for the model or marked impossible with the planner's reason.

use uniskip_skip::{Mask, Plan, PlanSettings, Strategy};

/// What a row runs.
#[derive(Debug, Clone, PartialEq)]
pub enum RowKind {
    /// Full depth through the hook: the reference.
    Full,
    /// Full depth with the hook unset (llama.cpp's own path): speed only, to show that the
    /// hook costs nothing.
    Unset,
    /// A strategy at a target (SkipDecode's ramp length is set per use).
    Planned(PlanSettings),
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

    /// The plan for `generated` generated tokens (SkipDecode's ramp spans them). `None`
    /// for the hook-unset and impossible rows.
    pub fn plan(&self, n_layer: usize, generated: usize) -> Option<Plan> {
        match self.kind.as_ref().ok()? {
            RowKind::Unset => None,
            RowKind::Full => Some(Plan::full(n_layer)),
            RowKind::Planned(settings) => {
                let settings = PlanSettings {
                    planned_len: generated.max(1),
                    ..settings.clone()
                };
                Plan::new(settings, n_layer).ok()
            }
        }
    }

    /// The masks for `generated` generated tokens: `masks[s]` for decode step `s`
    /// (`0..generated`; step 0 is the prefill's, unused with a full prefill).
    pub fn masks(&self, n_layer: usize, generated: usize) -> Option<Vec<Mask>> {
        let plan = self.plan(n_layer, generated)?;
        Some((0..generated).map(|s| plan.mask(s).clone()).collect())
    }

    /// Whether the masks change from step to step.
    pub fn varies(&self) -> bool {
        matches!(&self.kind, Ok(RowKind::Planned(s)) if s.strategy == Strategy::SkipDecode)
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
            let settings = match strategy {
                Strategy::Calibrated => calibrated.clone().map(|masks| PlanSettings {
                    profile: Some(masks),
                    ..PlanSettings::new(strategy, target)
                }),
                Strategy::Manual => Err(format!("{strategy} needs a mask: use --skip-layers")),
                _ => Ok(PlanSettings::new(strategy, target)),
            };
            let kind = settings.and_then(|settings| {
                // Planned once here so an impossible target is reported with its reason.
                Plan::new(settings.clone(), n_layer)
                    .map(|_| RowKind::Planned(settings))
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
            kind: Ok(RowKind::Planned(PlanSettings::manual(mask.clone()))),
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
        let unified = rows[2].plan(30, 8).unwrap();
        assert!(!unified.varies());
        assert_eq!(unified.mask(0).n_active(), 15);
        assert_eq!(rows[0].plan(30, 8), Some(Plan::full(30)));
    }
}
