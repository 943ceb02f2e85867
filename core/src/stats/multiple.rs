//! Multiple-comparison adjustments (statsmodels `multipletests` conventions).
//! Adjusted p-values are returned in input order; reject where adjusted ≤ α.

use super::{Result, invalid};

fn check(p: &[f64]) -> Result<()> {
    if p.iter().any(|v| !(0.0..=1.0).contains(v)) {
        return invalid("p-values must lie in [0, 1]");
    }
    Ok(())
}

/// Indices that sort `p` ascending (stable, so equal p keep their input order).
fn ascending(p: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..p.len()).collect();
    idx.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    idx
}

/// Bonferroni: min(1, m·p).
pub(crate) fn bonferroni(p: &[f64]) -> Result<Vec<f64>> {
    check(p)?;
    let m = p.len() as f64;
    Ok(p.iter().map(|v| (v * m).min(1.0)).collect())
}

/// Holm step-down: adj_(i) = max_{j ≤ i} min(1, (m − j + 1)·p_(j)).
pub(crate) fn holm(p: &[f64]) -> Result<Vec<f64>> {
    check(p)?;
    let m = p.len();
    let mut out = vec![0.0; m];
    let mut running = 0.0f64;
    for (rank, &i) in ascending(p).iter().enumerate() {
        running = running.max(((m - rank) as f64 * p[i]).min(1.0));
        out[i] = running;
    }
    Ok(out)
}

/// Benjamini–Hochberg step-up: adj_(i) = min_{j ≥ i} min(1, m·p_(j)/j).
pub(crate) fn benjamini_hochberg(p: &[f64]) -> Result<Vec<f64>> {
    check(p)?;
    let m = p.len();
    let mut out = vec![0.0; m];
    let mut running = 1.0f64;
    for (rank, &i) in ascending(p).iter().enumerate().rev() {
        running = running.min(m as f64 * p[i] / (rank + 1) as f64);
        out[i] = running;
    }
    Ok(out)
}

/// Which adjusted p-values reject at level α.
pub(crate) fn rejections(adjusted: &[f64], alpha: f64) -> Vec<bool> {
    adjusted.iter().map(|&p| p <= alpha).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orderings_between_methods() {
        let p = [0.001, 0.02, 0.02, 0.3, 0.04];
        let (h, b, bh) = (holm(&p).unwrap(), bonferroni(&p).unwrap(), benjamini_hochberg(&p).unwrap());
        for i in 0..p.len() {
            assert!(bh[i] <= h[i] && h[i] <= b[i] && p[i] <= bh[i]);
        }
        assert_eq!(h[1], h[2]); // ties share an adjusted value
    }

    #[test]
    fn edge_cases() {
        assert!(holm(&[]).unwrap().is_empty());
        assert_eq!(holm(&[0.3]).unwrap(), vec![0.3]);
        assert!(holm(&[f64::NAN]).is_err());
        assert!(benjamini_hochberg(&[1.5]).is_err());
    }
}
