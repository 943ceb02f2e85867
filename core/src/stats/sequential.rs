//! Always-valid inference with the normal-mixture mSPRT (Johari, Pekelis & Walsh,
//! "Always valid inference", 2022).
//!
//! With an estimate θ̂ of variance V and a N(θ₀, τ²) mixture over the alternative,
//! Λ = sqrt(V/(V+τ²))·exp(τ²(θ̂−θ₀)²/(2V(V+τ²))) is a test martingale under θ = θ₀, so
//! P(Λ ever ≥ 1/α) ≤ α however often it is checked. p = min(1, 1/Λ) at each look; the
//! always-valid p-value is its running minimum.

use super::{Result, invalid, normal};
use serde::Serialize;

/// Estimate of a difference (treatment − control) and its variance.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Difference {
    pub estimate: f64,
    pub variance: f64,
}

/// pT − pC with the unpooled variance pC(1−pC)/nC + pT(1−pT)/nT.
pub(crate) fn proportion_difference(xc: u64, nc: u64, xt: u64, nt: u64) -> Result<Difference> {
    super::proportions::check_counts(xc, nc, "control")?;
    super::proportions::check_counts(xt, nt, "treatment")?;
    let (pc, pt) = (xc as f64 / nc as f64, xt as f64 / nt as f64);
    Ok(Difference { estimate: pt - pc, variance: pc * (1.0 - pc) / nc as f64 + pt * (1.0 - pt) / nt as f64 })
}

/// Mixing variance from a planned sample size N* (GrowthBook's tuning):
/// ρ² = (−2 ln α + ln(−2 ln α + 1)) / N*, τ² = ρ²·n·V, where n·V is the per-unit variance
/// of the difference and n the units behind it. This choice makes the confidence sequence
/// narrowest at n = N*.
pub(crate) fn tau2_from_planned(alpha: f64, planned_n: f64, n: f64, variance: f64) -> f64 {
    let l = -2.0 * alpha.ln();
    (l + (l + 1.0).ln()) / planned_n * n * variance
}

fn check(d: Difference, tau2: f64, alpha: f64) -> Result<()> {
    if !(d.estimate.is_finite() && d.variance.is_finite() && d.variance > 0.0) {
        return invalid("the estimate needs a finite, positive variance");
    }
    if !(tau2.is_finite() && tau2 > 0.0) {
        return invalid("tau² must be positive and finite");
    }
    if !(alpha > 0.0 && alpha < 1.0) {
        return invalid("alpha must lie in (0, 1)");
    }
    Ok(())
}

/// ln Λ of the two-sided normal mixture.
fn ln_lambda(delta: f64, v: f64, tau2: f64) -> f64 {
    0.5 * (v / (v + tau2)).ln() + tau2 * delta * delta / (2.0 * v * (v + tau2))
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Msprt {
    pub ln_lambda: f64,
    /// min(1, 1/Λ) at this look.
    pub p_value: f64,
    /// Half-width of the (1 − α) confidence sequence around the estimate.
    pub cs_halfwidth: f64,
}

/// Two-sided test of θ = θ₀ and the confidence sequence
/// θ̂ ± sqrt(V(V+τ²)/τ² · (2 ln(1/α) + ln((V+τ²)/V))).
pub(crate) fn msprt(d: Difference, tau2: f64, theta0: f64, alpha: f64) -> Result<Msprt> {
    check(d, tau2, alpha)?;
    let v = d.variance;
    let ln_l = ln_lambda(d.estimate - theta0, v, tau2);
    Ok(Msprt { ln_lambda: ln_l, p_value: (-ln_l).exp().min(1.0), cs_halfwidth: halfwidth(v, tau2, alpha) })
}

fn halfwidth(v: f64, tau2: f64, alpha: f64) -> f64 {
    (v * (v + tau2) / tau2 * (-2.0 * alpha.ln() + ((v + tau2) / v).ln())).sqrt()
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OneSided {
    /// Always-valid p-value (this look) of H0: θ ≤ θ₀ against H1: θ > θ₀.
    pub p_value: f64,
    /// Lower confidence-sequence bound: θ ≥ bound for all looks with probability 1 − α.
    pub lower_bound: f64,
}

/// ln Λ⁺ of the one-sided mixture over θ > θ₀ with a half-normal N(0, τ²) weight:
/// Λ⁺ = 2Λ·Φ(δτ / sqrt(V(V+τ²))), δ = θ̂ − θ₀. Each component exp((θδ − θ²/2)/V) has
/// expectation ≤ 1 whenever the true θ ≤ θ₀, so Λ⁺ is a test supermartingale there.
fn ln_lambda_plus(delta: f64, v: f64, tau2: f64) -> f64 {
    let arg = delta * tau2.sqrt() / (v * (v + tau2)).sqrt();
    // ln Φ(arg) through erfc keeps its digits for very negative arguments.
    std::f64::consts::LN_2 + ln_lambda(delta, v, tau2) + normal::cdf(arg).ln()
}

/// One-sided test for guardrails and non-inferiority: H0 θ ≤ θ₀. For the mirror
/// hypothesis H0 θ ≥ θ₀ negate the estimate and θ₀ (the bound then becomes an upper one).
pub(crate) fn msprt_one_sided(d: Difference, tau2: f64, theta0: f64, alpha: f64) -> Result<OneSided> {
    let p_value = msprt_one_sided_p(d, tau2, theta0, alpha)?;
    let v = d.variance;
    // Λ⁺ increases with δ; the bound is θ̂ − δ* with Λ⁺(δ*) = 1/α. Λ⁺(0) < 1 and, for δ ≥ 0,
    // Λ⁺ ≥ Λ, so δ* lies between 0 and the two-sided half-width at α.
    let target = -alpha.ln();
    let (mut lo, mut hi) = (0.0, halfwidth(v, tau2, alpha));
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if ln_lambda_plus(mid, v, tau2) < target {
            lo = mid
        } else {
            hi = mid
        }
        if hi - lo <= 1e-15 * hi {
            break;
        }
    }
    Ok(OneSided { p_value, lower_bound: d.estimate - hi })
}

/// The p-value of [`msprt_one_sided`] alone, without the bound's search (for simulations).
pub(crate) fn msprt_one_sided_p(d: Difference, tau2: f64, theta0: f64, alpha: f64) -> Result<f64> {
    check(d, tau2, alpha)?;
    Ok((-ln_lambda_plus(d.estimate - theta0, d.variance, tau2)).exp().min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(estimate: f64, variance: f64) -> Difference {
        Difference { estimate, variance }
    }

    #[test]
    fn one_sided_bound_inverts_its_own_test() {
        let diff = d(0.004, 1e-6);
        let tau2 = 4e-6;
        let one = msprt_one_sided(diff, tau2, 0.0, 0.05).unwrap();
        // Testing exactly at the bound gives p = α.
        let at = msprt_one_sided(diff, tau2, one.lower_bound, 0.05).unwrap();
        assert!((at.p_value - 0.05).abs() < 1e-9, "{at:?}");
        // The one-sided bound is tighter than the two-sided sequence at the same α.
        let two = msprt(diff, tau2, 0.0, 0.05).unwrap();
        assert!(one.lower_bound > diff.estimate - two.cs_halfwidth);
        // and the one-sided test is more powerful in its direction.
        assert!(one.p_value < two.p_value);
    }

    #[test]
    fn one_sided_test_ignores_the_other_direction() {
        let neg = msprt_one_sided(d(-0.01, 1e-6), 1e-5, 0.0, 0.05).unwrap();
        assert_eq!(neg.p_value, 1.0);
        assert!(neg.lower_bound < -0.01);
    }

    #[test]
    fn degenerate_inputs_are_errors_not_nan() {
        assert!(msprt(d(0.0, 0.0), 1e-4, 0.0, 0.05).is_err());
        assert!(msprt(d(0.1, 1e-4), 0.0, 0.0, 0.05).is_err());
        assert!(msprt(d(0.1, 1e-4), 1e-4, 0.0, 1.0).is_err());
        let tiny = msprt(d(1e-7, 1e-26), 1e-14, 0.0, 0.05).unwrap();
        assert!(tiny.p_value.is_finite() && tiny.cs_halfwidth.is_finite());
    }
}
