//! Sample size and power of the fixed-horizon two-proportion z-test, equal arms.
//! Uses the pooled variance under the null and the unpooled one under the alternative
//! (Fleiss), matching [`super::proportions::two_proportion_ztest`].

use super::{Alternative, Result, invalid, normal};

fn check(p1: f64, p2: f64, alpha: f64) -> Result<()> {
    if !(p1 > 0.0 && p1 < 1.0 && p2 > 0.0 && p2 < 1.0) {
        return invalid("rates must lie strictly between 0 and 1");
    }
    if p1 == p2 {
        return invalid("the rates must differ");
    }
    if !(alpha > 0.0 && alpha < 1.0) {
        return invalid("alpha must lie in (0, 1)");
    }
    Ok(())
}

fn z_alpha(alpha: f64, alt: Alternative) -> f64 {
    match alt {
        Alternative::TwoSided => normal::ppf(1.0 - alpha / 2.0),
        _ => normal::ppf(1.0 - alpha),
    }
}

/// Samples per arm for the test of rate `p1` (control) against `p2` to reach `power`.
pub(crate) fn sample_size_per_arm(p1: f64, p2: f64, alpha: f64, power: f64, alt: Alternative) -> Result<u64> {
    check(p1, p2, alpha)?;
    if !(power > 0.0 && power < 1.0) {
        return invalid("power must lie in (0, 1)");
    }
    let pbar = (p1 + p2) / 2.0;
    let null_sd = (2.0 * pbar * (1.0 - pbar)).sqrt();
    let alt_sd = (p1 * (1.0 - p1) + p2 * (1.0 - p2)).sqrt();
    let num = z_alpha(alpha, alt) * null_sd + normal::ppf(power) * alt_sd;
    Ok((num * num / ((p2 - p1) * (p2 - p1))).ceil() as u64)
}

/// Power with `n` samples per arm (the far tail of a two-sided test is ignored, as in
/// the sample-size formula).
pub(crate) fn power_per_arm(p1: f64, p2: f64, n: u64, alpha: f64, alt: Alternative) -> Result<f64> {
    check(p1, p2, alpha)?;
    if n == 0 {
        return Ok(0.0);
    }
    let nf = n as f64;
    let pbar = (p1 + p2) / 2.0;
    let null_se = (2.0 * pbar * (1.0 - pbar) / nf).sqrt();
    let alt_se = ((p1 * (1.0 - p1) + p2 * (1.0 - p2)) / nf).sqrt();
    Ok(normal::cdf(((p2 - p1).abs() - z_alpha(alpha, alt) * null_se) / alt_se))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_and_power_agree() {
        let n = sample_size_per_arm(0.05, 0.055, 0.05, 0.8, Alternative::TwoSided).unwrap();
        assert!((30_000..33_000).contains(&n), "{n}");
        let at_n = power_per_arm(0.05, 0.055, n, 0.05, Alternative::TwoSided).unwrap();
        let below = power_per_arm(0.05, 0.055, n - 100, 0.05, Alternative::TwoSided).unwrap();
        assert!(at_n >= 0.8 && below < 0.8, "{at_n} {below}");
        assert!(sample_size_per_arm(0.05, 0.05, 0.05, 0.8, Alternative::TwoSided).is_err());
        assert!(sample_size_per_arm(0.0, 0.05, 0.05, 0.8, Alternative::TwoSided).is_err());
    }
}
