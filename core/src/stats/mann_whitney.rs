//! Mann–Whitney U (asymptotic, midranks, tie and continuity corrections), from raw
//! samples or from grouped counts such as Prometheus histogram buckets.
//!
//! Both entry points reduce to ordered tie groups: each distinct value (or bucket) is one
//! group holding `x` observations of the first sample and `y` of the second. One pass over
//! the groups gives U and the tie correction, so histograms cost O(buckets).

use super::histogram::{Histogram, bucket_counts};
use super::{Alternative, Result, invalid, normal};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MannWhitney {
    /// U of the first sample: pairs (x, y) with x > y, ties counting one half.
    pub u1: f64,
    pub n1: f64,
    pub n2: f64,
    /// U1 − n1·n2/2, accumulated directly so it keeps its digits at huge counts.
    centred: f64,
    /// Standard deviation of U under the null, tie-corrected.
    sigma: f64,
}

impl MannWhitney {
    /// Asymptotic p-value (scipy `mannwhitneyu(method="asymptotic")`). All values tied
    /// (σ = 0) means no evidence either way: p = 1.
    pub(crate) fn p_value(&self, alt: Alternative, continuity: bool) -> f64 {
        if self.sigma <= 0.0 {
            return 1.0;
        }
        let cc = if continuity { 0.5 } else { 0.0 };
        // U2 − n1n2/2 = −centred, so max(U1, U2) − n1n2/2 = |centred|.
        let dev = match alt {
            Alternative::TwoSided => self.centred.abs(),
            Alternative::Greater => self.centred,
            Alternative::Less => -self.centred,
        };
        let z = (dev - cc) / self.sigma;
        match alt {
            Alternative::TwoSided => (2.0 * normal::sf(z)).clamp(0.0, 1.0),
            _ => normal::sf(z),
        }
    }

    /// U1 / (n1·n2): the probability that a draw of the first sample exceeds one of the
    /// second, ties counting one half.
    pub(crate) fn prob_superiority(&self) -> f64 {
        0.5 + self.centred / (self.n1 * self.n2)
    }
}

/// From ordered groups `(x_count, y_count)`; counts may be fractional (rates).
pub(crate) fn from_groups(groups: impl IntoIterator<Item = (f64, f64)>) -> Result<MannWhitney> {
    let groups: Vec<(f64, f64)> = groups.into_iter().collect();
    if groups.iter().any(|&(x, y)| !(x >= 0.0 && y >= 0.0 && x.is_finite() && y.is_finite())) {
        return invalid("counts must be finite and non-negative");
    }
    let n1: f64 = groups.iter().map(|g| g.0).sum();
    let n2: f64 = groups.iter().map(|g| g.1).sum();
    if n1 == 0.0 || n2 == 0.0 {
        return invalid("both samples need at least one observation");
    }
    let (mut y_below, mut centred, mut ties) = (0.0, 0.0, 0.0);
    for &(x, y) in &groups {
        // Each x here beats every y below and ties with the y in its group.
        centred += x * (y_below + 0.5 * y - 0.5 * n2);
        let t = x + y;
        ties += t * t * t - t;
        y_below += y;
    }
    let n = n1 + n2;
    let var = n1 * n2 / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)));
    let sigma = if n > 1.0 { var.max(0.0).sqrt() } else { 0.0 };
    Ok(MannWhitney { u1: centred + 0.5 * n1 * n2, n1, n2, centred, sigma })
}

/// From raw samples. NaN is rejected; equal values form one tie group.
pub(crate) fn from_samples(x: &[f64], y: &[f64]) -> Result<MannWhitney> {
    if x.iter().chain(y).any(|v| v.is_nan()) {
        return invalid("samples contain NaN");
    }
    let mut all: Vec<(f64, bool)> = x.iter().map(|&v| (v, true)).chain(y.iter().map(|&v| (v, false))).collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut groups: Vec<(f64, f64)> = Vec::new();
    let mut last: Option<f64> = None;
    for (v, first) in all {
        if last != Some(v) {
            groups.push((0.0, 0.0));
            last = Some(v);
        }
        if let Some(g) = groups.last_mut() {
            if first { g.0 += 1.0 } else { g.1 += 1.0 }
        }
    }
    from_groups(groups)
}

/// From two cumulative Prometheus histograms with the same `le` bounds; each bucket is
/// one tie group (values are only known up to their bucket).
pub(crate) fn from_histograms(x: &Histogram, y: &Histogram) -> Result<MannWhitney> {
    if x.le != y.le {
        return invalid("histograms must have the same bucket bounds");
    }
    from_groups(bucket_counts(&x.cumulative)?.into_iter().zip(bucket_counts(&y.cumulative)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouped_equals_raw() {
        let x = [1.0, 1.0, 2.0, 3.0, 3.0, 3.0];
        let y = [1.0, 2.0, 2.0, 4.0];
        let raw = from_samples(&x, &y).unwrap();
        let grouped = from_groups([(2.0, 1.0), (1.0, 2.0), (3.0, 0.0), (0.0, 1.0)]).unwrap();
        assert_eq!(raw, grouped);
        // U1 by brute force over pairs.
        let u: f64 = x
            .iter()
            .flat_map(|a| {
                y.iter().map(move |b| {
                    if a > b {
                        1.0
                    } else if a == b {
                        0.5
                    } else {
                        0.0
                    }
                })
            })
            .sum();
        assert_eq!(raw.u1, u);
    }

    #[test]
    fn all_tied_and_single_observations() {
        let t = from_samples(&[2.0, 2.0], &[2.0]).unwrap();
        assert_eq!(t.p_value(Alternative::TwoSided, true), 1.0);
        let one = from_samples(&[1.0], &[2.0]).unwrap();
        assert!(one.p_value(Alternative::TwoSided, true).is_finite());
        assert!(from_samples(&[], &[1.0]).is_err());
        assert!(from_samples(&[f64::NAN], &[1.0]).is_err());
    }

    #[test]
    fn huge_counts_stay_finite() {
        let m = from_groups([(1e12, 0.9e12), (1e12, 1.1e12)]).unwrap();
        let p = m.p_value(Alternative::TwoSided, true);
        assert!(p.is_finite() && p < 1e-10);
        assert!((m.prob_superiority() - 0.5).abs() < 0.1);
    }
}
