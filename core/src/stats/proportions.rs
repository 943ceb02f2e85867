//! Pooled two-proportion z-test.

use super::{Alternative, Result, invalid};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ZTest {
    pub z: f64,
    pub p_value: f64,
    /// (x1 + x2) / (n1 + n2), the common rate under the null.
    pub pooled_p: f64,
    /// Standard error of p1 - p2 under the null.
    pub se: f64,
}

/// Checks `x ≤ n` and `n > 0` for one arm.
pub(crate) fn check_counts(x: u64, n: u64, arm: &str) -> Result<()> {
    if n == 0 {
        return invalid(format!("{arm}: no trials"));
    }
    if x > n {
        return invalid(format!("{arm}: {x} successes out of {n} trials"));
    }
    Ok(())
}

/// z = (x1/n1 − x2/n2) / sqrt(p(1−p)(1/n1 + 1/n2)) with p the pooled rate
/// (statsmodels `proportions_ztest`, `prop_var=False`). When every trial in both arms
/// has the same outcome the variance is zero; the arms are then indistinguishable and
/// the result is z = 0, p = 1 rather than NaN.
pub(crate) fn two_proportion_ztest(x1: u64, n1: u64, x2: u64, n2: u64, alt: Alternative) -> Result<ZTest> {
    check_counts(x1, n1, "sample 1")?;
    check_counts(x2, n2, "sample 2")?;
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let pooled_p = (x1 as f64 + x2 as f64) / (n1f + n2f);
    let se = (pooled_p * (1.0 - pooled_p) * (1.0 / n1f + 1.0 / n2f)).sqrt();
    let diff = x1 as f64 / n1f - x2 as f64 / n2f;
    let z = if se > 0.0 { diff / se } else { 0.0 };
    Ok(ZTest { z, p_value: alt.p_from_z(z), pooled_p, se })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degenerate_and_huge_counts_are_defined() {
        let all = two_proportion_ztest(10, 10, 5, 5, Alternative::TwoSided).unwrap();
        assert_eq!((all.z, all.p_value), (0.0, 1.0));
        let none = two_proportion_ztest(0, 7, 0, 1, Alternative::Greater).unwrap();
        assert_eq!(none.p_value, 0.5);
        let big = 1_000_000_000_000u64;
        let t = two_proportion_ztest(big / 2, big, big / 2 - 100_000_000, big, Alternative::TwoSided).unwrap();
        assert!(t.z.is_finite() && t.p_value < 1e-6);
    }

    #[test]
    fn rejects_impossible_counts() {
        assert!(two_proportion_ztest(3, 2, 1, 2, Alternative::TwoSided).is_err());
        assert!(two_proportion_ztest(0, 0, 1, 2, Alternative::TwoSided).is_err());
    }

    #[test]
    fn one_sided_halves_two_sided() {
        let two = two_proportion_ztest(150, 10_000, 120, 10_000, Alternative::TwoSided).unwrap();
        let gt = two_proportion_ztest(150, 10_000, 120, 10_000, Alternative::Greater).unwrap();
        let lt = two_proportion_ztest(150, 10_000, 120, 10_000, Alternative::Less).unwrap();
        assert!((gt.p_value * 2.0 - two.p_value).abs() < 1e-15);
        assert!((gt.p_value + lt.p_value - 1.0).abs() < 1e-15);
    }
}
