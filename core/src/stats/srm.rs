//! Sample ratio mismatch: is traffic reaching the arms in the configured proportions?

use super::histogram::chi2_sf;
use super::{Result, invalid};
use serde::Serialize;
use statrs::function::gamma::ln_gamma;

/// Default Dirichlet concentration of the sequential test's alternative: the prior is
/// Dirichlet(c·w), centred on the configured weights w (Lindon & Malek use c = 100).
pub(crate) const DEFAULT_CONCENTRATION: f64 = 100.0;

/// Normalised weights; every weight must be positive so each arm can receive traffic.
fn normalise(observed: &[u64], weights: &[f64]) -> Result<Vec<f64>> {
    if observed.len() != weights.len() || observed.len() < 2 {
        return invalid("need at least two arms and one weight per arm");
    }
    if weights.iter().any(|w| !(w.is_finite() && *w > 0.0)) {
        return invalid("weights must be positive and finite");
    }
    let total: f64 = weights.iter().sum();
    Ok(weights.iter().map(|w| w / total).collect())
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Gof {
    pub chi2: f64,
    pub dof: u64,
    pub p_value: f64,
}

/// Pearson χ² goodness of fit of the assignment counts to the weights. Valid for one look
/// only; the controller uses [`sequential`]. No traffic at all gives p = 1.
pub(crate) fn chi2_gof(observed: &[u64], weights: &[f64]) -> Result<Gof> {
    let w = normalise(observed, weights)?;
    let total: f64 = observed.iter().map(|&o| o as f64).sum();
    let dof = observed.len() as u64 - 1;
    if total == 0.0 {
        return Ok(Gof { chi2: 0.0, dof, p_value: 1.0 });
    }
    let chi2: f64 = observed
        .iter()
        .zip(&w)
        .map(|(&o, &p)| {
            let e = total * p;
            (o as f64 - e).powi(2) / e
        })
        .sum();
    Ok(Gof { chi2, dof, p_value: chi2_sf(chi2, dof) })
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SequentialSrm {
    /// ln of the Dirichlet-multinomial Bayes factor against the configured weights.
    pub ln_bayes_factor: f64,
    /// min(1, 1/BF) at this look. The always-valid p-value is the running minimum over
    /// looks; rejecting at the first look where this is ≤ α is the same decision.
    pub p_value: f64,
}

/// ln of the multivariate beta function Π Γ(v_i) / Γ(Σ v_i).
fn ln_multi_beta(v: impl Iterator<Item = f64>) -> f64 {
    let (sum, lg) = v.fold((0.0, 0.0), |(s, l), x| (s + x, l + ln_gamma(x)));
    lg - ln_gamma(sum)
}

/// Sequential SRM test of Lindon & Malek (2022, "Anytime-valid inference for multinomial
/// count data"): BF = [B(c·w + x) / B(c·w)] / Π w_i^{x_i} with B the multivariate beta.
/// The Bayes factor depends only on the cumulative counts and is a martingale under the
/// null unit by unit, so checking it at any interval keeps P(ever ≤ α) ≤ α (Ville).
pub(crate) fn sequential(observed: &[u64], weights: &[f64], concentration: f64) -> Result<SequentialSrm> {
    let w = normalise(observed, weights)?;
    if !(concentration.is_finite() && concentration > 0.0) {
        return invalid("concentration must be positive");
    }
    let prior = || w.iter().map(|p| concentration * p);
    let posterior = observed.iter().zip(prior()).map(|(&x, a)| a + x as f64);
    let null: f64 = observed.iter().zip(&w).map(|(&x, p)| x as f64 * p.ln()).sum();
    let ln_bf = ln_multi_beta(posterior) - ln_multi_beta(prior()) - null;
    Ok(SequentialSrm { ln_bayes_factor: ln_bf, p_value: (-ln_bf).exp().min(1.0) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balanced_traffic_is_not_flagged_and_skew_is() {
        let ok = sequential(&[5_000, 5_030], &[1.0, 1.0], DEFAULT_CONCENTRATION).unwrap();
        assert!(ok.p_value > 0.5, "{ok:?}");
        let bad = sequential(&[5_000, 5_600], &[1.0, 1.0], DEFAULT_CONCENTRATION).unwrap();
        assert!(bad.p_value < 1e-3, "{bad:?}");
        assert_eq!(sequential(&[0, 0], &[1.0, 1.0], DEFAULT_CONCENTRATION).unwrap().p_value, 1.0);
    }

    #[test]
    fn extremes_are_defined() {
        let huge = sequential(&[1_000_000_000_000, 1_000_000_000_000], &[0.5, 0.5], DEFAULT_CONCENTRATION).unwrap();
        assert!(huge.p_value.is_finite() && huge.p_value > 0.01, "{huge:?}");
        let lopsided = sequential(&[1_000_000, 1], &[0.5, 0.5], DEFAULT_CONCENTRATION).unwrap();
        assert_eq!(lopsided.p_value, 0.0);
        assert!(chi2_gof(&[1_000_000, 1], &[0.5, 0.5]).unwrap().p_value < 1e-100);
        assert!(sequential(&[1, 2], &[0.0, 1.0], DEFAULT_CONCENTRATION).is_err());
        assert!(chi2_gof(&[1], &[1.0]).is_err());
    }
}
