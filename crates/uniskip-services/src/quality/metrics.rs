//! The arithmetic of quality: log-softmax, KL divergence, perplexity, percentiles.
//!
//! Pure functions on logit rows; nothing here knows about models. Sums run in `f64`; a
//! log-probability is computed by one expression ([`log_prob_of`]) wherever it is needed,
//! so two identical logit rows give bit-identical log-probabilities and a KL divergence of
//! exactly 0.

use serde::Serialize;

/// `ln(sum(exp(z)))` of a logit row, computed stably (shifted by the maximum). `-inf` for
/// an empty row.
pub fn log_sum_exp(logits: &[f32]) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return f64::from(max);
    }
    let sum: f64 = logits.iter().map(|&z| f64::from((z - max).exp())).sum();
    f64::from(max) + sum.ln()
}

/// The log-probability of a token with logit `z` in a row whose [`log_sum_exp`] is `lse`.
#[inline]
pub fn log_prob_of(z: f32, lse: f64) -> f32 {
    (f64::from(z) - lse) as f32
}

/// Log-softmax of a logit row: `z_i - ln(sum_j exp(z_j))`.
pub fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let lse = log_sum_exp(logits);
    logits.iter().map(|&z| log_prob_of(z, lse)).collect()
}

/// The index of the largest value (the first on ties; 0 for an empty row).
pub fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in values.iter().enumerate() {
        if x > values[best] {
            best = i;
        }
    }
    best
}

/// The largest absolute difference between two logit rows of the same length; infinite
/// if either holds a NaN (which `f32::max` would silently drop, passing any oracle).
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "logit rows differ in length");
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let d = (x - y).abs();
            if d.is_nan() { f32::INFINITY } else { d }
        })
        .fold(0.0, f32::max)
}

/// A reference next-token distribution (full depth), kept in the form that makes
/// comparing another row against it cheap: log-probabilities and probabilities.
#[derive(Debug, Clone)]
pub struct Distribution {
    logp: Vec<f32>,
    p: Vec<f32>,
    argmax: usize,
}

impl Distribution {
    /// The softmax of a logit row.
    pub fn from_logits(logits: &[f32]) -> Distribution {
        let logp = log_softmax(logits);
        let p = logp.iter().map(|&l| l.exp()).collect();
        Distribution {
            logp,
            p,
            argmax: argmax(logits),
        }
    }

    /// Vocabulary size.
    pub fn len(&self) -> usize {
        self.logp.len()
    }

    /// True for an empty vocabulary.
    pub fn is_empty(&self) -> bool {
        self.logp.is_empty()
    }

    /// `ln p(token)`.
    pub fn log_prob(&self, token: usize) -> f32 {
        self.logp[token]
    }

    /// The most likely token.
    pub fn argmax(&self) -> usize {
        self.argmax
    }

    /// Scores the logit row `logits` (same vocabulary) against this distribution as the
    /// reference, `target` being the token that actually came next.
    pub fn score(&self, logits: &[f32], target: usize) -> TokenScore {
        assert_eq!(logits.len(), self.len(), "logit rows differ in length");
        let lse = log_sum_exp(logits);
        TokenScore {
            nll: -f64::from(log_prob_of(logits[target], lse)),
            kl: self.kl_to(logits, lse),
            agrees: argmax(logits) == self.argmax,
        }
    }

    /// `KL(self || q) = sum_i p_i (ln p_i - ln q_i)` for the row `logits` of `q`, whose
    /// [`log_sum_exp`] is `lse`. Terms with `p_i = 0` contribute 0.
    fn kl_to(&self, logits: &[f32], lse: f64) -> f64 {
        let mut kl = 0.0f64;
        for ((&p, &lp), &z) in self.p.iter().zip(&self.logp).zip(logits) {
            if p > 0.0 {
                kl += f64::from(p) * f64::from(lp - log_prob_of(z, lse));
            }
        }
        // Rounding can leave a tiny negative value where the rows are nearly equal.
        kl.max(0.0)
    }
}

/// KL divergence `KL(P || Q)` between the distributions of two logit rows (P the
/// reference).
pub fn kl_divergence(reference: &[f32], other: &[f32]) -> f64 {
    Distribution::from_logits(reference).score(other, 0).kl
}

/// How one predicted token compares with the reference and with the text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenScore {
    /// Negative log-likelihood of the actual next token, in nats.
    pub nll: f64,
    /// KL divergence from the reference distribution, in nats.
    pub kl: f64,
    /// Whether the most likely token is the reference's most likely token.
    pub agrees: bool,
}

/// Accumulates [`TokenScore`]s into the numbers a report shows.
#[derive(Debug, Clone, Default)]
pub struct QualityAccumulator {
    nll_sum: f64,
    kls: Vec<f64>,
    agreed: usize,
}

impl QualityAccumulator {
    /// Adds one scored token.
    pub fn push(&mut self, score: TokenScore) {
        self.nll_sum += score.nll;
        self.kls.push(score.kl);
        self.agreed += usize::from(score.agrees);
    }

    /// Adds everything `other` holds.
    pub fn merge(&mut self, other: &QualityAccumulator) {
        self.nll_sum += other.nll_sum;
        self.kls.extend_from_slice(&other.kls);
        self.agreed += other.agreed;
    }

    /// Tokens scored.
    pub fn tokens(&self) -> usize {
        self.kls.len()
    }

    /// Mean KL divergence (0 when nothing was scored).
    pub fn kl_mean(&self) -> f64 {
        mean(&self.kls)
    }

    /// The summary statistics.
    pub fn summary(&self) -> QualitySummary {
        let n = self.tokens();
        QualitySummary {
            tokens: n,
            perplexity: perplexity(self.nll_sum, n),
            kl_mean: self.kl_mean(),
            kl_p99: percentile(&self.kls, 99.0),
            kl_max: self.kls.iter().copied().fold(0.0, f64::max),
            top1_agreement: if n == 0 {
                0.0
            } else {
                self.agreed as f64 / n as f64
            },
        }
    }
}

/// Quality of one configuration against full depth, over the scored tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct QualitySummary {
    /// Tokens scored.
    pub tokens: usize,
    /// `exp(mean NLL)` of the actual next tokens.
    pub perplexity: f64,
    /// Mean per-token KL divergence from full depth, in nats.
    pub kl_mean: f64,
    /// 99th percentile of the per-token KL divergence, in nats.
    pub kl_p99: f64,
    /// Largest per-token KL divergence, in nats.
    pub kl_max: f64,
    /// Fraction of tokens whose most likely token equals full depth's.
    pub top1_agreement: f64,
}

/// `exp(nll_sum / n)`: perplexity from summed negative log-likelihoods (NaN for `n = 0`).
pub fn perplexity(nll_sum: f64, n: usize) -> f64 {
    if n == 0 {
        return f64::NAN;
    }
    (nll_sum / n as f64).exp()
}

/// Arithmetic mean (0 for no values).
pub fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

/// The `q`-th percentile (`0..=100`) by linear interpolation between the closest ranks
/// (the common default): rank `q/100 * (n - 1)` in the sorted values. 0 for no values.
pub fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = (q.clamp(0.0, 100.0) / 100.0) * (v.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    v[lo] + (v[hi] - v[lo]) * (rank - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nan_is_an_infinite_difference() {
        assert_eq!(max_abs_diff(&[1.0, 2.0], &[1.5, 2.0]), 0.5);
        assert_eq!(max_abs_diff(&[1.0, f32::NAN], &[1.0, 2.0]), f32::INFINITY);
        assert_eq!(max_abs_diff(&[f32::NAN], &[f32::NAN]), f32::INFINITY);
    }

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn log_softmax_of_equal_logits_is_minus_log_n() {
        let l = log_softmax(&[3.0; 4]);
        for x in l {
            assert!(close(f64::from(x), -(4f64.ln()), 1e-6));
        }
    }

    #[test]
    fn log_softmax_is_shift_invariant_and_stable_for_huge_logits() {
        let a = log_softmax(&[1.0, 2.0, 3.0]);
        let b = log_softmax(&[1001.0, 1002.0, 1003.0]);
        for (x, y) in a.iter().zip(&b) {
            assert!(close(f64::from(*x), f64::from(*y), 1e-5), "{a:?} vs {b:?}");
        }
        let total: f64 = b.iter().map(|&l| f64::from(l).exp()).sum();
        assert!(close(total, 1.0, 1e-6));
    }

    #[test]
    fn log_softmax_matches_the_textbook_formula() {
        let z = [0.5f32, -1.0, 2.0, 0.0];
        let denom: f64 = z.iter().map(|&x| f64::from(x).exp()).sum();
        for (i, l) in log_softmax(&z).into_iter().enumerate() {
            let want = (f64::from(z[i]).exp() / denom).ln();
            assert!(close(f64::from(l), want, 1e-6));
        }
    }

    #[test]
    fn kl_of_a_row_against_itself_is_exactly_zero() {
        let z = [0.3f32, -2.0, 5.0, 1.25, 0.0];
        assert_eq!(kl_divergence(&z, &z), 0.0);
    }

    #[test]
    fn kl_matches_the_definition_and_is_asymmetric() {
        // P = (0.5, 0.5), Q = (0.9, 0.1) as logits ln p.
        let p = [0.5f32.ln(), 0.5f32.ln()];
        let q = [0.9f32.ln(), 0.1f32.ln()];
        let want_pq = 0.5 * (0.5f64 / 0.9).ln() + 0.5 * (0.5f64 / 0.1).ln();
        let want_qp = 0.9 * (0.9f64 / 0.5).ln() + 0.1 * (0.1f64 / 0.5).ln();
        assert!(close(kl_divergence(&p, &q), want_pq, 1e-6));
        assert!(close(kl_divergence(&q, &p), want_qp, 1e-6));
        assert!(kl_divergence(&p, &q) > 0.0);
    }

    #[test]
    fn a_score_has_the_nll_of_the_target_and_top1_agreement() {
        let reference = Distribution::from_logits(&[0.0, 2.0, 1.0]);
        let s = reference.score(&[0.0, 0.0, 3.0], 1);
        let lse = (1.0f64 + 1.0 + 3f64.exp()).ln();
        assert!(close(s.nll, lse, 1e-6));
        assert!(!s.agrees);
        assert!(reference.score(&[0.0, 2.0, 1.0], 1).agrees);
    }

    #[test]
    fn perplexity_of_a_uniform_guess_is_the_vocabulary_size() {
        let n = 10;
        let nll = n as f64 * 50f64.ln();
        assert!(close(perplexity(nll, n), 50.0, 1e-9));
        assert!(perplexity(0.0, 0).is_nan());
    }

    #[test]
    fn percentiles_interpolate_between_ranks() {
        let v: Vec<f64> = (1..=101).map(f64::from).collect();
        assert_eq!(percentile(&v, 99.0), 100.0);
        assert_eq!(percentile(&v, 50.0), 51.0);
        assert_eq!(percentile(&[1.0, 2.0], 50.0), 1.5);
        assert_eq!(percentile(&[4.0, 1.0, 3.0, 2.0], 100.0), 4.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert_eq!(percentile(&[], 99.0), 0.0);
    }

    #[test]
    fn the_accumulator_summarises_and_merges() {
        let mut a = QualityAccumulator::default();
        a.push(TokenScore {
            nll: 1.0,
            kl: 0.0,
            agrees: true,
        });
        let mut b = QualityAccumulator::default();
        b.push(TokenScore {
            nll: 3.0,
            kl: 0.4,
            agrees: false,
        });
        a.merge(&b);
        let s = a.summary();
        assert_eq!(s.tokens, 2);
        assert!(close(s.perplexity, 2f64.exp(), 1e-12));
        assert!(close(s.kl_mean, 0.2, 1e-12));
        assert_eq!(s.kl_max, 0.4);
        assert_eq!(s.top1_agreement, 0.5);
    }
}
