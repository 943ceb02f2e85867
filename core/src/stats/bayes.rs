//! Beta-Binomial comparison of two conversion rates: posteriors, exact P(B > A) and the
//! expected loss of choosing either arm.

use super::{Result, invalid, normal};
use serde::Serialize;
use statrs::function::beta::ln_beta;

/// Beyond this many terms the exact sum is replaced by a normal approximation; by then
/// every posterior parameter exceeds it, so each Beta has skewness below 2/√limit ≈ 0.006.
const EXACT_LIMIT: f64 = 100_000.0;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct BetaPosterior {
    pub alpha: f64,
    pub beta: f64,
}

impl BetaPosterior {
    /// Posterior Beta(prior_a + conversions, prior_b + failures). Prior parameters must be
    /// positive integers: the exact P(B > A) sums over an integer parameter.
    pub(crate) fn from_counts(conversions: u64, trials: u64, prior: [f64; 2]) -> Result<Self> {
        if conversions > trials {
            return invalid(format!("{conversions} conversions out of {trials} trials"));
        }
        if prior.iter().any(|p| !(*p >= 1.0 && p.fract() == 0.0 && p.is_finite())) {
            return invalid("prior parameters must be positive integers");
        }
        Ok(Self { alpha: prior[0] + conversions as f64, beta: prior[1] + (trials - conversions) as f64 })
    }

    fn mean(&self) -> f64 {
        self.alpha / (self.alpha + self.beta)
    }

    fn variance(&self) -> f64 {
        let s = self.alpha + self.beta;
        self.alpha * self.beta / (s * s * (s + 1.0))
    }

    fn shifted(&self) -> Self {
        Self { alpha: self.alpha + 1.0, beta: self.beta }
    }
}

/// P(X > Y) for X ~ Beta(a, b), Y ~ Beta(c, d) with integer `a`, as the finite sum
/// Σ_{i<a} B(c+i, b+d) / ((b+i) B(1+i, b) B(c, d)) (Evan Miller). Consecutive terms have
/// the ratio (c+i)(b+i) / ((1+i)(b+c+d+i)), so the sum runs in log space without any
/// further special functions.
fn exact_sum(a: f64, b: f64, c: f64, d: f64) -> f64 {
    let mut ln_term = ln_beta(c, b + d) - ln_beta(c, d);
    let (mut max, mut scaled) = (ln_term, 0.0);
    let mut i = 0.0;
    while i < a {
        if ln_term > max {
            scaled *= (max - ln_term).exp();
            max = ln_term;
        }
        scaled += (ln_term - max).exp();
        ln_term += ((c + i) * (b + i) / ((1.0 + i) * (b + c + d + i))).ln();
        i += 1.0;
    }
    (max + scaled.ln()).exp().clamp(0.0, 1.0)
}

/// P(X > Y), summing over whichever of the four parameters is smallest, using
/// P(X > Y) = 1 − P(Y > X) and P(X > Y) = P(1 − Y > 1 − X).
fn prob_greater(x: BetaPosterior, y: BetaPosterior) -> f64 {
    let (a, b, c, d) = (x.alpha, x.beta, y.alpha, y.beta);
    let smallest = a.min(b).min(c).min(d);
    if smallest == a {
        exact_sum(a, b, c, d)
    } else if smallest == c {
        1.0 - exact_sum(c, d, a, b)
    } else if smallest == d {
        exact_sum(d, c, b, a)
    } else {
        1.0 - exact_sum(b, a, d, c)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BetaComparison {
    pub posterior_a: BetaPosterior,
    pub posterior_b: BetaPosterior,
    pub p_b_gt_a: f64,
    /// E[max(pA − pB, 0)]: the rate given up, in expectation, by choosing B.
    pub expected_loss_choose_b: f64,
    /// E[max(pB − pA, 0)].
    pub expected_loss_choose_a: f64,
}

/// Compares posteriors A and B. The losses use x·f_{Beta(α,β)}(x) = mean·f_{Beta(α+1,β)}(x):
/// E[max(pA − pB, 0)] = mean_A·P(A⁺ > B) − mean_B·P(A > B⁺).
pub(crate) fn compare(a: BetaPosterior, b: BetaPosterior) -> BetaComparison {
    let smallest = a.alpha.min(a.beta).min(b.alpha).min(b.beta);
    let (p_b_gt_a, loss_b, loss_a) = if smallest <= EXACT_LIMIT {
        let (ma, mb) = (a.mean(), b.mean());
        (
            prob_greater(b, a),
            ma * prob_greater(a.shifted(), b) - mb * prob_greater(a, b.shifted()),
            mb * prob_greater(b.shifted(), a) - ma * prob_greater(b, a.shifted()),
        )
    } else {
        // pB − pA ≈ N(μ, s²); E[max(D, 0)] = μΦ(μ/s) + sφ(μ/s).
        let mu = b.mean() - a.mean();
        let s = (a.variance() + b.variance()).sqrt();
        let gain = |m: f64| if s > 0.0 { m * normal::cdf(m / s) + s * normal::pdf(m / s) } else { m.max(0.0) };
        let p = if s > 0.0 { normal::cdf(mu / s) } else { 0.5 };
        (p, gain(-mu), gain(mu))
    };
    // Cancellation can leave a loss of −1e-17; a loss is never negative.
    BetaComparison {
        posterior_a: a,
        posterior_b: b,
        p_b_gt_a,
        expected_loss_choose_b: loss_b.max(0.0),
        expected_loss_choose_a: loss_a.max(0.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(x: u64, n: u64) -> BetaPosterior {
        BetaPosterior::from_counts(x, n, [1.0, 1.0]).unwrap()
    }

    #[test]
    fn all_four_summation_forms_agree() {
        let (x, y) = (post(30, 200), post(25, 210));
        let direct = exact_sum(x.alpha, x.beta, y.alpha, y.beta);
        assert!((direct - (1.0 - exact_sum(y.alpha, y.beta, x.alpha, x.beta))).abs() < 1e-12);
        assert!((direct - exact_sum(y.beta, y.alpha, x.beta, x.alpha)).abs() < 1e-12);
        assert!((direct - (1.0 - exact_sum(x.beta, x.alpha, y.beta, y.alpha))).abs() < 1e-12);
    }

    #[test]
    fn matches_exact_rational_arithmetic() {
        // Computed with Python fractions: for integer parameters every quantity is rational.
        let c = compare(post(38, 2000), post(55, 2100));
        let exact = [0.9379857465691445, 0.0001265931078042674, 0.007287367632993635];
        for (got, want) in [c.p_b_gt_a, c.expected_loss_choose_b, c.expected_loss_choose_a].into_iter().zip(exact) {
            assert!(((got - want) / want).abs() < 1e-10, "{got} vs {want}");
        }
    }

    #[test]
    fn symmetric_arms_are_a_coin_flip() {
        let c = compare(post(10, 100), post(10, 100));
        assert!((c.p_b_gt_a - 0.5).abs() < 1e-12);
        assert!((c.expected_loss_choose_a - c.expected_loss_choose_b).abs() < 1e-12);
    }

    #[test]
    fn extremes_are_defined() {
        let cases = [
            (0, 0, 0, 0),
            (0, 1, 1, 1),
            (5, 5, 0, 7),
            (0, 1_000_000_000_000, 1, 1_000_000_000_000),
            (400_000_000_000, 1_000_000_000_000, 400_000_100_000, 1_000_000_000_000),
            (3, 1_000_000, 1, 1),
        ];
        for (xa, na, xb, nb) in cases {
            let c = compare(post(xa, na), post(xb, nb));
            for v in [c.p_b_gt_a, c.expected_loss_choose_a, c.expected_loss_choose_b] {
                assert!(v.is_finite() && (0.0..=1.0).contains(&v), "{xa}/{na} vs {xb}/{nb}: {c:?}");
            }
        }
        assert!(BetaPosterior::from_counts(1, 2, [0.5, 0.5]).is_err());
        assert!(BetaPosterior::from_counts(3, 2, [1.0, 1.0]).is_err());
    }
}
