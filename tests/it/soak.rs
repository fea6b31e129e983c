//! A short soak: random mask switches, repairs, and the exact replay oracle at checkpoints.

use crate::common;

use uniskip::bench::soak::{SoakOptions, soak};
use uniskip::engine::ContextOptions;

#[test]
fn random_mask_changes_keep_the_cache_equal_to_a_fresh_replay() {
    let model = common::load("smollm2");
    let options = SoakOptions {
        tokens: 160,
        checkpoint_every: 80,
        seed: 11,
        context: ContextOptions {
            n_ctx: 256,
            n_batch: 32,
            n_seq: 1,
            threads: 2,
        },
    };
    let report = soak(&model, &options, &mut |_| {}).unwrap();
    assert_eq!(report.generated, 160);
    assert!(report.checkpoints.len() >= 2);
    let last = report.checkpoints.last().unwrap();
    assert!(
        last.mask_changes >= 4,
        "the run must switch masks: {last:?}"
    );
    assert!(last.repair_tokens > 0, "the run must repair: {last:?}");
    for c in &report.checkpoints {
        assert!(c.checked_tokens > 0, "nothing was replayed: {c:?}");
        assert_eq!(
            c.oracle_max_diff, 0.0,
            "live state differs from the replay: {c:?}"
        );
    }
}
