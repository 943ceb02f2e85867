//! Error rates of a fixed-threshold canary rule (the rule Flagger-style analyses use):
//! each check fails when the canary's success rate is below a threshold; the rollout rolls
//! back after T failed checks and promotes after K passed ones. This is the baseline the
//! decision function is measured against, not a method Forklane uses.

use super::{Result, invalid};
use serde::Serialize;
use statrs::function::beta::beta_reg;
use statrs::function::factorial::ln_binomial;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ThresholdRule {
    pub per_check_fail_prob: f64,
    pub p_rollback: f64,
    pub p_promote: f64,
}

/// P(X > k) and P(X ≤ k) for X ~ Binomial(n, p), each as one incomplete beta so the
/// smaller of the two keeps full relative precision.
fn binomial_tails(k: u64, n: u64, p: f64) -> (f64, f64) {
    if k >= n {
        return (0.0, 1.0);
    }
    let (kf, nf) = (k as f64, n as f64);
    (beta_reg(kf + 1.0, nf - kf, p), beta_reg(nf - kf, kf + 1.0, 1.0 - p))
}

/// Bounds the O(K + T) sum; real rollouts use a handful of checks.
const MAX_CHECKS: u64 = 100_000;

pub(crate) fn threshold_rule(
    requests: u64,
    error_rate: f64,
    min_success_pct: f64,
    passes_k: u64,
    fails_t: u64,
) -> Result<ThresholdRule> {
    if requests == 0 || !(1..=MAX_CHECKS).contains(&passes_k) || !(1..=MAX_CHECKS).contains(&fails_t) {
        return invalid(format!("requests must be positive and K, T between 1 and {MAX_CHECKS}"));
    }
    if !(0.0..=1.0).contains(&error_rate) || !(0.0..=100.0).contains(&min_success_pct) {
        return invalid("error rate must lie in [0, 1] and the threshold in [0, 100] %");
    }
    // A check fails iff errors > floor(n(1 − thr/100)); the epsilon keeps 6000·1% at 60
    // despite binary rounding of the percentage.
    let allowed = (requests as f64 * (100.0 - min_success_pct) / 100.0 + 1e-9).floor() as u64;
    let (fail, pass) = binomial_tails(allowed, requests, error_rate);
    // The race ends within T + K − 1 checks: roll back iff at least T of them fail.
    let m = fails_t + passes_k - 1;
    // k·ln p with 0·ln 0 = 0, so certain failure or success gives 1 and 0, not NaN.
    let xlny = |k: u64, p: f64| if k == 0 { 0.0 } else { k as f64 * p.ln() };
    let term = |j: u64| (ln_binomial(m, j) + xlny(j, fail) + xlny(m - j, pass)).exp();
    let p_rollback: f64 = (fails_t..=m).map(term).sum();
    let p_promote: f64 = (0..fails_t).map(term).sum();
    Ok(ThresholdRule { per_check_fail_prob: fail, p_rollback, p_promote })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probabilities_sum_to_one_and_extremes_are_defined() {
        let r = threshold_rule(1000, 0.02, 99.0, 3, 2).unwrap();
        assert!((r.p_rollback + r.p_promote - 1.0).abs() < 1e-12);
        let perfect = threshold_rule(1000, 0.0, 99.0, 3, 2).unwrap();
        assert_eq!((perfect.per_check_fail_prob, perfect.p_promote), (0.0, 1.0));
        let broken = threshold_rule(1000, 1.0, 99.0, 3, 2).unwrap();
        assert_eq!(broken.p_rollback, 1.0);
        assert!(threshold_rule(0, 0.1, 99.0, 1, 1).is_err());
        assert!(threshold_rule(10, 0.1, 99.0, u64::MAX, 1).is_err());
    }
}
