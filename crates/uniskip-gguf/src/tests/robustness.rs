//! Random damage never panics and is always refused in one line.

use super::*;

// ---- robustness ---------------------------------------------------------------------------

/// xorshift64*: a tiny deterministic generator, so the test needs no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn random_flips_and_truncations_never_panic() {
    let mut nested = le32(TYPE_ARRAY);
    nested.extend(le64(2));
    for _ in 0..2 {
        nested.extend(le32(TYPE_STRING));
        nested.extend(le64(1));
        nested.extend(string(b"tok"));
    }
    let good = Builder::llama(2)
        .kv("test.nested", TYPE_ARRAY, nested)
        .kv("test.flag", TYPE_BOOL, vec![1])
        .build();
    validate_bytes(&good).expect("the seed is valid");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut refused = 0;
    for round in 0..30_000 {
        let mut b = good.clone();
        for _ in 0..=rng.below(4) {
            let at = rng.below(b.len());
            match rng.below(4) {
                0 => b[at] ^= 1 << rng.below(8),
                1 => b[at] = 0xff,
                2 => b[at] = rng.next() as u8,
                _ => b.truncate(at.max(1)),
            }
        }
        if let Err(p) = validate_bytes(&b) {
            refused += 1;
            let msg = p.to_string();
            assert!(!msg.contains('\n'), "round {round}: {msg}");
        }
    }
    assert!(refused > 20_000, "only {refused} of 30000 mutants refused");
}
