//! Prometheus histograms: bucket counts, `histogram_quantile`, and χ² / G tests of
//! homogeneity between two histograms.

use super::{Result, invalid};
use serde::Serialize;
use statrs::distribution::{ChiSquared, ContinuousCDF};

/// A cumulative histogram: `cumulative[i]` observations ≤ `le[i]`; the last bound is +Inf.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Histogram {
    pub le: Vec<f64>,
    pub cumulative: Vec<f64>,
}

impl Histogram {
    pub(crate) fn new(le: Vec<f64>, cumulative: Vec<f64>) -> Result<Self> {
        if le.is_empty() || le.len() != cumulative.len() {
            return invalid("`le` and the cumulative counts must be non-empty and of equal length");
        }
        if le.last() != Some(&f64::INFINITY) {
            return invalid("the last bucket bound must be +Inf");
        }
        if le.iter().any(|b| b.is_nan()) || le.windows(2).any(|w| w[0] >= w[1]) {
            return invalid("bucket bounds must be strictly increasing");
        }
        if cumulative.iter().any(|c| !(c.is_finite() && *c >= 0.0)) {
            return invalid("bucket counts must be finite and non-negative");
        }
        Ok(Self { le, cumulative })
    }

    /// Prometheus `histogram_quantile(q, ...)`: linear interpolation inside the bucket,
    /// 0 as the lower bound of the first bucket (when its bound is positive), and the
    /// highest finite bound when the rank falls in the +Inf bucket. `None` for an empty
    /// histogram, where Prometheus would return NaN.
    pub(crate) fn quantile(&self, q: f64) -> Result<Option<f64>> {
        if !(0.0..=1.0).contains(&q) {
            return invalid(format!("quantile {q} is outside [0, 1]"));
        }
        let cum = monotonic(&self.cumulative);
        let total = *cum.last().unwrap_or(&0.0);
        if total == 0.0 {
            return Ok(None);
        }
        let rank = q * total;
        let b = cum[..cum.len() - 1].iter().position(|&c| c >= rank).unwrap_or(cum.len() - 1);
        if b == cum.len() - 1 {
            // Rank in the +Inf bucket; with a single bucket there is no finite bound.
            return Ok(if b == 0 { None } else { Some(self.le[b - 1]) });
        }
        if b == 0 && self.le[0] <= 0.0 {
            return Ok(Some(self.le[0]));
        }
        let (start, below) = if b == 0 { (0.0, 0.0) } else { (self.le[b - 1], cum[b - 1]) };
        let in_bucket = cum[b] - below;
        if in_bucket == 0.0 {
            return Ok(Some(self.le[b]));
        }
        Ok(Some(start + (self.le[b] - start) * (rank - below) / in_bucket))
    }
}

/// Prometheus tolerates small decreases in cumulative counts (scrape races) by taking
/// the running maximum; so do we.
fn monotonic(cumulative: &[f64]) -> Vec<f64> {
    cumulative
        .iter()
        .scan(0.0f64, |m, &c| {
            *m = m.max(c);
            Some(*m)
        })
        .collect()
}

/// Per-bucket counts from cumulative counts.
pub(crate) fn bucket_counts(cumulative: &[f64]) -> Result<Vec<f64>> {
    if cumulative.iter().any(|c| !(c.is_finite() && *c >= 0.0)) {
        return invalid("bucket counts must be finite and non-negative");
    }
    let cum = monotonic(cumulative);
    Ok(cum.iter().enumerate().map(|(i, &c)| if i == 0 { c } else { c - cum[i - 1] }).collect())
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Homogeneity {
    /// Pearson χ².
    pub chi2: f64,
    pub dof: u64,
    pub p_value: f64,
    /// Likelihood-ratio statistic G = 2 Σ O ln(O/E).
    pub g: f64,
    pub p_value_g: f64,
}

/// χ² and G tests that two rows of bucket counts come from one distribution. Columns
/// with zero total are dropped (they carry no information and would divide by zero).
/// `yates` applies scipy's continuity correction, which only acts when dof = 1.
pub(crate) fn homogeneity(a: &[f64], b: &[f64], yates: bool) -> Result<Homogeneity> {
    if a.len() != b.len() {
        return invalid("both rows need the same number of buckets");
    }
    if a.iter().chain(b).any(|c| !(c.is_finite() && *c >= 0.0)) {
        return invalid("bucket counts must be finite and non-negative");
    }
    let cols: Vec<(f64, f64)> = a.iter().zip(b).map(|(&x, &y)| (x, y)).filter(|(x, y)| x + y > 0.0).collect();
    let (ra, rb) = cols.iter().fold((0.0, 0.0), |(p, q), (x, y)| (p + x, q + y));
    let total = ra + rb;
    let dof = cols.len().saturating_sub(1) as u64;
    if dof == 0 || ra == 0.0 || rb == 0.0 {
        return Ok(Homogeneity { chi2: 0.0, dof, p_value: 1.0, g: 0.0, p_value_g: 1.0 });
    }
    let correction = if yates && dof == 1 { 0.5 } else { 0.0 };
    let (mut chi2, mut g) = (0.0, 0.0);
    for &(x, y) in &cols {
        for (obs, row) in [(x, ra), (y, rb)] {
            let exp = row * (x + y) / total;
            let dev = ((obs - exp).abs() - correction).max(0.0);
            chi2 += dev * dev / exp;
            let obs_c = if obs > exp { obs - (obs - exp).min(correction) } else { obs + (exp - obs).min(correction) };
            if obs_c > 0.0 {
                g += 2.0 * obs_c * (obs_c / exp).ln();
            }
        }
    }
    Ok(Homogeneity { chi2, dof, p_value: chi2_sf(chi2, dof), g, p_value_g: chi2_sf(g.max(0.0), dof) })
}

/// Upper tail of χ² with `dof` ≥ 1 degrees of freedom.
pub(crate) fn chi2_sf(x: f64, dof: u64) -> f64 {
    match ChiSquared::new(dof as f64) {
        Ok(d) if x.is_finite() => d.sf(x),
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const INF: f64 = f64::INFINITY;

    #[test]
    fn quantile_edges() {
        let h = Histogram::new(vec![1.0, 2.0, INF], vec![0.0, 10.0, 20.0]).unwrap();
        assert_eq!(h.quantile(0.25).unwrap(), Some(1.5));
        assert_eq!(h.quantile(0.9).unwrap(), Some(2.0)); // +Inf bucket
        let empty = Histogram::new(vec![1.0, INF], vec![0.0, 0.0]).unwrap();
        assert_eq!(empty.quantile(0.5).unwrap(), None);
        assert!(h.quantile(1.5).is_err());
        assert!(Histogram::new(vec![1.0, 2.0], vec![1.0, 2.0]).is_err());
        let neg = Histogram::new(vec![-1.0, INF], vec![4.0, 4.0]).unwrap();
        assert_eq!(neg.quantile(0.5).unwrap(), Some(-1.0));
    }

    #[test]
    fn identical_rows_are_homogeneous() {
        let r = homogeneity(&[10.0, 20.0, 0.0], &[10.0, 20.0, 0.0], false).unwrap();
        assert_eq!((r.chi2, r.dof), (0.0, 1));
        assert!((r.p_value - 1.0).abs() < 1e-12);
        let empty = homogeneity(&[0.0, 0.0], &[0.0, 0.0], false).unwrap();
        assert_eq!(empty.p_value, 1.0);
    }

    #[test]
    fn yates_shrinks_a_two_by_two() {
        let plain = homogeneity(&[12.0, 5.0], &[7.0, 9.0], false).unwrap();
        let yates = homogeneity(&[12.0, 5.0], &[7.0, 9.0], true).unwrap();
        assert!(yates.chi2 < plain.chi2 && yates.p_value > plain.p_value);
    }
}
