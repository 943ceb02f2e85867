//! The null-restricted variance of a difference of proportions (Farrington & Manning, 1990;
//! Miettinen & Nurminen, 1985) for tests of H0: p_t − p_c = δ at a margin δ ≠ 0.
//!
//! The unpooled variance p̂(1 − p̂)/n is estimated from the data it judges: for rare events in
//! a small arm, an arm that happened to see few events also looks precise, and the
//! non-inferiority test rejects too often (0.06–0.09 at α = 0.05 for p ≈ 0.2–1% at a 9:1
//! split). Evaluating the variance at the maximum-likelihood rates under the null removes
//! that dependence.

use std::f64::consts::PI;

/// Maximum-likelihood rates (p̃_t, p̃_c) of two binomial samples under p_t − p_c = `delta`
/// (|delta| < 1), by Farrington & Manning's closed form: p̃_t is the root in the feasible range
/// of the cubic a·p³ + b·p² + c·p + d = 0 with θ = n_c/n_t,
/// a = 1 + θ, b = −(1 + θ + p̂_t + θ·p̂_c + δ(θ + 2)), c = δ² + δ(2p̂_t + θ + 1) + p̂_t + θ·p̂_c,
/// d = −p̂_t·δ(1 + δ), taken in trigonometric form.
pub(crate) fn restricted_mle(xt: u64, nt: u64, xc: u64, nc: u64, delta: f64) -> (f64, f64) {
    let (pt, pc) = (xt as f64 / nt as f64, xc as f64 / nc as f64);
    let theta = nc as f64 / nt as f64;
    let a = 1.0 + theta;
    let b = -(1.0 + theta + pt + theta * pc + delta * (theta + 2.0));
    let c = delta * delta + delta * (2.0 * pt + theta + 1.0) + pt + theta * pc;
    let d = -pt * delta * (1.0 + delta);
    let v = b.powi(3) / (27.0 * a.powi(3)) - b * c / (6.0 * a * a) + d / (2.0 * a);
    let u = v.signum() * (b * b / (9.0 * a * a) - c / (3.0 * a)).max(0.0).sqrt();
    let cos = if u == 0.0 { 0.0 } else { (v / u.powi(3)).clamp(-1.0, 1.0) };
    let w = (PI + cos.acos()) / 3.0;
    // Rounding can leave the root a hair outside the range where both rates are probabilities.
    let p_t = (2.0 * u * w.cos() - b / (3.0 * a)).clamp(delta.max(0.0), (1.0 + delta).min(1.0));
    (p_t, p_t - delta)
}

/// Variance of p̂_t − p̂_c at the restricted MLE under p_t − p_c = `delta`:
/// p̃_t(1 − p̃_t)/n_t + p̃_c(1 − p̃_c)/n_c. `None` for a margin no pair of rates can meet, or
/// when that variance is zero (no events at a zero margin): the caller then keeps the
/// unrestricted one.
pub(crate) fn null_variance(xt: u64, nt: u64, xc: u64, nc: u64, delta: f64) -> Option<f64> {
    if nt == 0 || nc == 0 || delta.is_nan() || delta.abs() >= 1.0 {
        return None;
    }
    let (p_t, p_c) = restricted_mle(xt, nt, xc, nc, delta);
    let v = p_t * (1.0 - p_t) / nt as f64 + p_c * (1.0 - p_c) / nc as f64;
    (v > 0.0).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Log-likelihood of the control rate p (treatment p + δ).
    fn loglik(xt: u64, nt: u64, xc: u64, nc: u64, delta: f64, p: f64) -> f64 {
        let term = |x: u64, n: u64, q: f64| {
            let ln = |k: u64, r: f64| if k == 0 { 0.0 } else { k as f64 * r.ln() };
            ln(x, q) + ln(n - x, 1.0 - q)
        };
        term(xt, nt, p + delta) + term(xc, nc, p)
    }

    /// Brute force: a fine grid over the feasible control rates, then golden sections.
    fn brute(xt: u64, nt: u64, xc: u64, nc: u64, delta: f64) -> f64 {
        let (lo, hi) = ((-delta).max(0.0), (1.0 - delta).min(1.0));
        let f = |p: f64| loglik(xt, nt, xc, nc, delta, p);
        let grid = 20_000;
        let best = (0..=grid).map(|i| lo + (hi - lo) * i as f64 / grid as f64).max_by(|a, b| f(*a).total_cmp(&f(*b)));
        let step = (hi - lo) / grid as f64;
        let (mut a, mut b) = ((best.unwrap() - step).max(lo), (best.unwrap() + step).min(hi));
        let g = (5f64.sqrt() - 1.0) / 2.0;
        for _ in 0..200 {
            let (m1, m2) = (b - g * (b - a), a + g * (b - a));
            if f(m1) < f(m2) { a = m1 } else { b = m2 }
        }
        (a + b) / 2.0
    }

    #[test]
    fn closed_form_matches_brute_force_maximisation() {
        let cases = [
            (8, 2000, 72, 18_000, 0.004),
            (3, 2000, 36, 18_000, -0.004),
            (0, 1000, 5, 9000, 0.003),
            (0, 1000, 0, 9000, 0.002),
            (50, 100, 40, 100, 0.1),
            (99, 100, 90, 100, -0.05),
            (12, 500, 30, 500, 0.02),
        ];
        for (xt, nt, xc, nc, delta) in cases {
            let (p_t, p_c) = restricted_mle(xt, nt, xc, nc, delta);
            assert!((p_t - p_c - delta).abs() < 1e-12);
            let p = brute(xt, nt, xc, nc, delta);
            assert!((p_c - p).abs() < 1e-7, "{xt}/{nt} vs {xc}/{nc} at {delta}: closed form {p_c}, brute force {p}");
        }
    }

    #[test]
    fn at_the_observed_difference_the_restricted_mle_is_the_unrestricted_one() {
        let (p_t, p_c) = restricted_mle(30, 1000, 90, 9000, 0.03 - 0.01);
        assert!((p_t - 0.03).abs() < 1e-12 && (p_c - 0.01).abs() < 1e-12, "{p_t} {p_c}");
    }

    /// At δ = 0 the restriction is a common rate: its MLE is the pooled rate.
    #[test]
    fn at_zero_margin_the_restricted_mle_is_the_pooled_rate() {
        let (p_t, p_c) = restricted_mle(7, 1000, 81, 9000, 0.0);
        assert!((p_t - 88.0 / 10_000.0).abs() < 1e-12 && p_t == p_c, "{p_t} {p_c}");
    }

    #[test]
    fn impossible_margins_and_zero_variance_have_none() {
        assert_eq!(null_variance(1, 10, 1, 10, 1.0), None);
        assert_eq!(null_variance(1, 10, 1, 10, f64::NAN), None);
        assert_eq!(null_variance(0, 10, 0, 10, 0.0), None);
        assert!(null_variance(0, 10, 0, 10, 0.01).is_some_and(|v| v > 0.0));
    }
}
