//! Tests of the strategies and the planner.

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
