//! A difference of proportions from per-interval batches: the Mantel–Haenszel risk difference
//! (stratified by batch) and its batch-means variance.
//!
//! Pooled totals are biased when the arms' weights change between batches (canary steps) while
//! the rates drift: the arm that got more traffic late carries more of the late rate. Comparing
//! the arms within each batch and averaging with the weights w_k = n_tk·n_ck/(n_tk + n_ck) removes
//! that bias. The variance comes from the spread of the per-batch contributions, paired across
//! the arms (drift common to both arms cancels in each batch's difference), so it stays honest
//! when units within a batch are correlated, as long as the batches are independent.

use super::decision::Batch;

/// Fewer informative batches than this leave the variance estimate with too few degrees of
/// freedom; the caller then uses the totals alone.
pub(crate) const MIN_BATCHES: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Stratified {
    /// Mantel–Haenszel estimate of p_treatment − p_control.
    pub estimate: f64,
    /// Batch-means variance of the estimate, with the small-sample factor B/(B − 1).
    pub variance: f64,
    /// Batches with trials in both arms (B).
    pub batches: usize,
}

/// The stratified difference treatment − control, or `None` when the arms do not have the same
/// number of batches or fewer than [`MIN_BATCHES`] of them have trials in both arms.
///
/// RD = Σ A_k / Σ W_k with A_k = (x_tk·n_ck − x_ck·n_tk)/N_k and W_k = n_tk·n_ck/N_k. Linearised,
/// RD − δ ≈ Σ (A_k − δ·W_k) / Σ W_k, a sum of independent per-batch terms, so
/// Var(RD) ≈ B/(B − 1) · Σ (A_k − RD·W_k)² / (Σ W_k)².
pub(crate) fn mantel_haenszel(control: &[Batch], treatment: &[Batch]) -> Option<Stratified> {
    if control.len() != treatment.len() {
        return None;
    }
    let terms: Vec<(f64, f64)> = control
        .iter()
        .zip(treatment)
        .filter(|(c, t)| c.trials > 0 && t.trials > 0)
        .map(|(c, t)| {
            let (xc, nc, xt, nt) = (c.successes as f64, c.trials as f64, t.successes as f64, t.trials as f64);
            let total = nc + nt;
            ((xt * nc - xc * nt) / total, nt * nc / total)
        })
        .collect();
    let b = terms.len();
    if b < MIN_BATCHES {
        return None;
    }
    let weight: f64 = terms.iter().map(|t| t.1).sum();
    let estimate = terms.iter().map(|t| t.0).sum::<f64>() / weight;
    let spread: f64 = terms.iter().map(|(a, w)| (a - estimate * w).powi(2)).sum();
    let variance = b as f64 / (b as f64 - 1.0) * spread / (weight * weight);
    Some(Stratified { estimate, variance, batches: b })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::simulation::binomial;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn batch(successes: u64, trials: u64) -> Batch {
        Batch { successes, trials }
    }

    #[test]
    fn equal_rates_within_every_batch_give_zero_whatever_the_weights() {
        // Rates drift 1% → 5% while the treatment's share grows 10% → 50%: pooled totals show
        // the treatment a point worse; within each batch the arms are equal.
        let rates: [f64; 4] = [0.01, 0.02, 0.03, 0.05];
        let shares = [0.1, 0.2, 0.3, 0.5];
        let (mut c, mut t) = (vec![], vec![]);
        for (&r, s) in rates.iter().zip(shares) {
            let (nt, nc) = (10_000.0 * s, 10_000.0 * (1.0 - s));
            t.push(batch((nt * r).round() as u64, nt as u64));
            c.push(batch((nc * r).round() as u64, nc as u64));
        }
        let total = |v: &[Batch]| {
            let (x, n) = v.iter().fold((0, 0), |(x, n), b| (x + b.successes, n + b.trials));
            x as f64 / n as f64
        };
        assert!(total(&t) - total(&c) > 0.005);
        let s = mantel_haenszel(&c, &t).unwrap();
        assert!(s.estimate.abs() < 1e-12, "{s:?}");
        assert_eq!(s.batches, 4);
    }

    #[test]
    fn hand_computed_two_by_two_tables() {
        // Batches (x_t/n_t, x_c/n_c): 3/10 vs 1/10, 2/10 vs 2/10, 5/20 vs 1/20, 1/10 vs 1/10.
        let t = [batch(3, 10), batch(2, 10), batch(5, 20), batch(1, 10)];
        let c = [batch(1, 10), batch(2, 10), batch(1, 20), batch(1, 10)];
        // A = (20/20, 0, 80/40, 0) = (1, 0, 2, 0); W = (5, 5, 10, 5).
        let s = mantel_haenszel(&c, &t).unwrap();
        assert!((s.estimate - 3.0 / 25.0).abs() < 1e-15);
        let rd: f64 = 3.0 / 25.0;
        let spread = (1.0 - 5.0 * rd).powi(2) + (5.0 * rd).powi(2) + (2.0 - 10.0 * rd).powi(2) + (5.0 * rd).powi(2);
        assert!((s.variance - 4.0 / 3.0 * spread / 625.0).abs() < 1e-15, "{s:?}");
    }

    #[test]
    fn too_few_or_mismatched_batches_are_not_used() {
        let three = [batch(1, 10); 3];
        assert_eq!(mantel_haenszel(&three, &three), None);
        let four = [batch(1, 10); 4];
        assert_eq!(mantel_haenszel(&three, &four), None);
        // A batch without trials in one arm carries no comparison.
        let gap = [batch(1, 10), batch(1, 10), batch(1, 10), batch(0, 0)];
        assert_eq!(mantel_haenszel(&four, &gap), None);
        assert_eq!(mantel_haenszel(&four, &four).unwrap().estimate, 0.0);
    }

    /// Under independent binomial batches the batch-means variance estimates the estimator's
    /// true variance (the average estimate is close to the spread of the estimates).
    #[test]
    fn batch_means_variance_matches_the_spread_of_the_estimate() {
        let mut rng = StdRng::seed_from_u64(11);
        let (shares, runs) = ([0.1, 0.1, 0.2, 0.2, 0.3, 0.5, 0.5, 0.5], 4000);
        let (mut estimates, mut variances) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let (mut c, mut t) = (vec![], vec![]);
            for s in shares {
                let (nt, nc) = ((2000.0 * s) as u64, (2000.0 * (1.0 - s)) as u64);
                t.push(batch(binomial(&mut rng, nt, 0.1), nt));
                c.push(batch(binomial(&mut rng, nc, 0.1), nc));
            }
            let s = mantel_haenszel(&c, &t).unwrap();
            estimates.push(s.estimate);
            variances.push(s.variance);
        }
        let mean = estimates.iter().sum::<f64>() / runs as f64;
        let spread = estimates.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / (runs - 1) as f64;
        let estimated = variances.iter().sum::<f64>() / runs as f64;
        assert!(mean.abs() < 4.0 * (spread / runs as f64).sqrt(), "bias {mean}");
        assert!((estimated / spread - 1.0).abs() < 0.1, "estimated {estimated} vs spread {spread}");
    }
}
