//! Standard normal helpers. `erfc` keeps full relative precision far into the tails,
//! which `1 - cdf` would not (the histogram vectors need p ≈ 1e-19).

use statrs::distribution::{ContinuousCDF, Normal};
use statrs::function::erf::erfc;

/// P(Z > z).
pub(crate) fn sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// P(Z ≤ z).
pub(crate) fn cdf(z: f64) -> f64 {
    sf(-z)
}

/// Standard normal density.
pub(crate) fn pdf(z: f64) -> f64 {
    (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

/// Quantile: z with P(Z ≤ z) = p, for p in (0, 1).
pub(crate) fn ppf(p: f64) -> f64 {
    Normal::standard().inverse_cdf(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_keep_relative_precision() {
        // 2*sf(8.9) must not collapse to 0 or lose digits.
        let p = sf(9.0);
        assert!(p > 1e-19 && p < 1.2e-19, "{p}");
        assert!((ppf(0.975) - 1.959963984540054).abs() < 1e-12);
        assert!((cdf(0.0) - 0.5).abs() < 1e-16);
    }
}
