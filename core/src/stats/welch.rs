//! Welch's unequal-variance t-test from summary statistics.

use super::{Alternative, Result, invalid};
use serde::{Deserialize, Serialize};
use statrs::function::beta::beta_reg;

/// Mean, sample variance (ddof = 1) and size of one sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Summary {
    pub mean: f64,
    pub variance: f64,
    pub n: u64,
}

impl Summary {
    pub(crate) fn check(&self, what: &str) -> Result<()> {
        if !self.mean.is_finite() || !self.variance.is_finite() || self.variance < 0.0 {
            return invalid(format!("{what}: mean and variance must be finite, variance ≥ 0"));
        }
        if self.n < 2 {
            return invalid(format!("{what}: a sample variance needs n ≥ 2, got {}", self.n));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WelchTest {
    pub t: f64,
    /// Welch–Satterthwaite degrees of freedom.
    pub df: f64,
    pub p_value: f64,
    pub se: f64,
}

/// Two-sided tail P(|T| > |t|) for Student's t with `df` degrees of freedom, computed as
/// one regularised incomplete beta so small p-values keep their digits.
fn t_two_sided(t: f64, df: f64) -> f64 {
    beta_reg(df / 2.0, 0.5, df / (df + t * t))
}

/// p-value of a t statistic.
pub(crate) fn t_p_value(t: f64, df: f64, alt: Alternative) -> f64 {
    let half = 0.5 * t_two_sided(t, df);
    match alt {
        Alternative::TwoSided => t_two_sided(t, df),
        Alternative::Greater if t > 0.0 => half,
        Alternative::Less if t < 0.0 => half,
        _ => 1.0 - half,
    }
}

/// Welch's t-test of mean1 − mean2 (scipy `ttest_ind_from_stats(equal_var=False)`).
/// Zero variance in both samples gives t = 0, p = 1 and df = n1 + n2 − 2.
pub(crate) fn welch_ttest(a: Summary, b: Summary, alt: Alternative) -> Result<WelchTest> {
    a.check("sample 1")?;
    b.check("sample 2")?;
    let va = a.variance / a.n as f64;
    let vb = b.variance / b.n as f64;
    let se2 = va + vb;
    if se2 == 0.0 {
        return Ok(WelchTest { t: 0.0, df: a.n as f64 + b.n as f64 - 2.0, p_value: 1.0, se: 0.0 });
    }
    let df = se2 * se2 / (va * va / (a.n - 1) as f64 + vb * vb / (b.n - 1) as f64);
    let se = se2.sqrt();
    let t = (a.mean - b.mean) / se;
    Ok(WelchTest { t, df, p_value: t_p_value(t, df, alt), se })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(mean: f64, variance: f64, n: u64) -> Summary {
        Summary { mean, variance, n }
    }

    #[test]
    fn one_sided_p_values_are_complementary() {
        let g = welch_ttest(s(1.0, 2.0, 30), s(0.5, 1.0, 40), Alternative::Greater).unwrap();
        let l = welch_ttest(s(1.0, 2.0, 30), s(0.5, 1.0, 40), Alternative::Less).unwrap();
        assert!((g.p_value + l.p_value - 1.0).abs() < 1e-14);
        assert!(g.p_value < 0.5);
    }

    #[test]
    fn degenerate_inputs() {
        let z = welch_ttest(s(3.0, 0.0, 5), s(3.0, 0.0, 9), Alternative::TwoSided).unwrap();
        assert_eq!((z.t, z.p_value, z.df), (0.0, 1.0, 12.0));
        assert!(welch_ttest(s(1.0, 1.0, 1), s(1.0, 1.0, 5), Alternative::TwoSided).is_err());
        assert!(welch_ttest(s(f64::NAN, 1.0, 3), s(1.0, 1.0, 5), Alternative::TwoSided).is_err());
        let big = welch_ttest(s(1.0, 1.0, 1_000_000_000_000), s(1.0 + 1e-6, 1.0, 2), Alternative::TwoSided).unwrap();
        assert!(big.p_value.is_finite() && big.df.is_finite());
    }
}
