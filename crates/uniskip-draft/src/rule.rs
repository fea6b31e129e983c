//! The speculative acceptance rule on explicit distributions, and the random source it
//! draws from. Pure: no llama.cpp here, so the rule can be tested on synthetic
//! distributions (and shown to fail when it is changed).
//!
//! Drafting from q and verifying against p with this rule yields tokens distributed
//! exactly as p: a drafted token d is kept with probability min(1, p(d)/q(d)); otherwise a
//! token is drawn from normalise(max(0, p - q)).

/// A probability distribution over token ids, holding only tokens of non-zero mass.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Dist {
    tokens: Vec<i32>,
    probs: Vec<f64>,
}

impl Dist {
    /// The softmax of `logits` per token (entries at minus infinity get no mass).
    pub fn softmax(entries: impl IntoIterator<Item = (i32, f32)>) -> Dist {
        let (tokens, logits): (Vec<i32>, Vec<f64>) = entries
            .into_iter()
            .filter(|(_, l)| l.is_finite())
            .map(|(t, l)| (t, f64::from(l)))
            .unzip();
        let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let exps: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
        let sum: f64 = exps.iter().sum();
        Dist {
            tokens,
            probs: exps.iter().map(|e| e / sum).collect(),
        }
    }

    /// A distribution from `(token, weight)` pairs, normalised (weights must be >= 0).
    pub fn from_weights(entries: impl IntoIterator<Item = (i32, f64)>) -> Dist {
        let (tokens, weights): (Vec<i32>, Vec<f64>) =
            entries.into_iter().filter(|(_, w)| *w > 0.0).unzip();
        let sum: f64 = weights.iter().sum();
        Dist {
            tokens,
            probs: weights.iter().map(|w| w / sum).collect(),
        }
    }

    /// All mass on `token` (what the lookup drafter proposes).
    pub fn point(token: i32) -> Dist {
        Dist {
            tokens: vec![token],
            probs: vec![1.0],
        }
    }

    /// The probability of `token`.
    pub fn prob(&self, token: i32) -> f64 {
        self.tokens
            .iter()
            .position(|&t| t == token)
            .map_or(0.0, |i| self.probs[i])
    }

    /// The tokens of non-zero mass with their probabilities.
    pub fn iter(&self) -> impl Iterator<Item = (i32, f64)> + '_ {
        self.tokens.iter().copied().zip(self.probs.iter().copied())
    }

    /// True when no token has mass.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The token at cumulative probability `u` in `[0, 1)`.
    pub fn sample(&self, u: f64) -> i32 {
        let mut acc = 0.0;
        for (t, p) in self.iter() {
            acc += p;
            if u < acc {
                return t;
            }
        }
        // Rounding left the cumulative sum a hair below 1.
        *self.tokens.last().expect("a distribution with mass")
    }
}

/// A small, fast, seedable random source (SplitMix64): reproducible per seed, and enough
/// for choosing among tokens.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A source seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5851_F42D_4C95_7F2D)
    }

    /// A uniform number in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What verification decided about one drafted token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The drafted token is kept.
    Accept,
    /// The drafted token is refused; this token (drawn from the residual) replaces it.
    Replace(i32),
}

/// The speculative rule: keep `draft` (drawn from `q`) with probability
/// min(1, p(draft)/q(draft)), else draw from normalise(max(0, p - q)).
pub fn verify(p: &Dist, q: &Dist, draft: i32, rng: &mut Rng) -> Verdict {
    let pd = p.prob(draft);
    let qd = q.prob(draft);
    // With u uniform in [0, 1), P(u * q(d) < p(d)) = min(1, p(d)/q(d)); a token of zero
    // mass under p is never kept.
    if qd > 0.0 && rng.uniform() * qd < pd {
        return Verdict::Accept;
    }
    let residual = Dist::from_weights(p.iter().map(|(t, pt)| (t, (pt - q.prob(t)).max(0.0))));
    // The residual is empty only when p == q up to rounding, where a refusal has
    // probability zero; drawing from p is then the exact answer.
    let from = if residual.is_empty() { p } else { &residual };
    Verdict::Replace(from.sample(rng.uniform()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Draws one token the speculative way: draft from q, verify against p.
    fn speculative_draw(
        p: &Dist,
        q: &Dist,
        rng: &mut Rng,
        rule: fn(&Dist, &Dist, i32, &mut Rng) -> Verdict,
    ) -> i32 {
        let d = q.sample(rng.uniform());
        match rule(p, q, d, rng) {
            Verdict::Accept => d,
            Verdict::Replace(t) => t,
        }
    }

    /// Pearson's chi-square statistic of observed counts against the distribution p.
    fn chi_square(counts: &[(i32, u64)], p: &Dist, n: u64) -> f64 {
        counts
            .iter()
            .map(|&(t, c)| {
                let e = p.prob(t) * n as f64;
                (c as f64 - e).powi(2) / e
            })
            .sum()
    }

    fn histogram(
        p: &Dist,
        q: &Dist,
        n: u64,
        rule: fn(&Dist, &Dist, i32, &mut Rng) -> Verdict,
    ) -> Vec<(i32, u64)> {
        let mut rng = Rng::new(7);
        let mut counts: Vec<(i32, u64)> = p.iter().map(|(t, _)| (t, 0)).collect();
        for _ in 0..n {
            let t = speculative_draw(p, q, &mut rng, rule);
            counts
                .iter_mut()
                .find(|(x, _)| *x == t)
                .expect("a token of p")
                .1 += 1;
        }
        counts
    }

    fn target() -> Dist {
        Dist::from_weights([(1, 0.5), (2, 0.3), (3, 0.15), (4, 0.05)])
    }
    fn drafter() -> Dist {
        Dist::from_weights([(1, 0.2), (2, 0.6), (3, 0.05), (4, 0.15)])
    }

    // 3 degrees of freedom: P(chi2 > 16.27) = 0.001.
    const CHI2_3DF_999: f64 = 16.27;

    #[test]
    fn the_rule_reproduces_the_target_distribution() {
        let n = 200_000;
        let counts = histogram(&target(), &drafter(), n, verify);
        let chi2 = chi_square(&counts, &target(), n);
        assert!(chi2 < CHI2_3DF_999, "chi2 {chi2:.1}, counts {counts:?}");
    }

    #[test]
    fn a_point_mass_draft_keeps_the_target_distribution() {
        let n = 200_000;
        let counts = histogram(&target(), &Dist::point(2), n, verify);
        let chi2 = chi_square(&counts, &target(), n);
        assert!(chi2 < CHI2_3DF_999, "chi2 {chi2:.1}, counts {counts:?}");
    }

    /// The same rule with one mistake: a refused draft is replaced by a draw from p
    /// instead of from the residual.
    fn mutated_resample_from_target(p: &Dist, q: &Dist, d: i32, rng: &mut Rng) -> Verdict {
        let (pd, qd) = (p.prob(d), q.prob(d));
        if rng.uniform() * qd < pd {
            Verdict::Accept
        } else {
            Verdict::Replace(p.sample(rng.uniform()))
        }
    }

    /// Another: accept with probability p(d) instead of p(d)/q(d).
    fn mutated_accept_by_target_only(p: &Dist, q: &Dist, d: i32, rng: &mut Rng) -> Verdict {
        if rng.uniform() <= p.prob(d) {
            return Verdict::Accept;
        }
        let residual = Dist::from_weights(p.iter().map(|(t, pt)| (t, (pt - q.prob(t)).max(0.0))));
        Verdict::Replace(residual.sample(rng.uniform()))
    }

    #[test]
    fn the_test_catches_a_mutated_rule() {
        let n = 200_000;
        for (name, rule) in [
            (
                "resample from p",
                mutated_resample_from_target as fn(&Dist, &Dist, i32, &mut Rng) -> Verdict,
            ),
            ("accept by p only", mutated_accept_by_target_only),
        ] {
            let counts = histogram(&target(), &drafter(), n, rule);
            let chi2 = chi_square(&counts, &target(), n);
            assert!(chi2 > CHI2_3DF_999, "{name}: chi2 {chi2:.1} passed");
        }
    }

    #[test]
    fn softmax_gives_no_mass_to_minus_infinity() {
        let d = Dist::softmax([(0, 0.0), (1, f32::NEG_INFINITY), (2, 0.0)]);
        assert_eq!(d.prob(1), 0.0);
        assert!((d.prob(0) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn uniform_numbers_stay_in_the_unit_interval() {
        let mut rng = Rng::new(1);
        for _ in 0..10_000 {
            let u = rng.uniform();
            assert!((0.0..1.0).contains(&u));
        }
    }
}
