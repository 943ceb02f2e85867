//! Per-version behaviour of a simulated app, read from its pod's annotations (set them on the
//! Deployment's pod template). The true effects an experiment should detect live here.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::Rng;

pub(crate) const ERROR_RATE: &str = "sim.forklane.io/error-rate";
pub(crate) const LATENCY_MS: &str = "sim.forklane.io/latency-ms";
pub(crate) const CONVERSION_RATE: &str = "sim.forklane.io/conversion-rate";

/// z such that P(Z <= z) = 0.99 for a standard normal.
const Z_99: f64 = 2.326_347_874_040_841;

#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Behaviour {
    /// Probability that a request is answered 500.
    pub error_rate: f64,
    pub latency: Latency,
    /// Probability that a visit (a 200 answer to a real, unmirrored request) becomes an order.
    pub conversion_rate: f64,
}

/// How long the app takes per request.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) enum Latency {
    #[default]
    Zero,
    Fixed(Duration),
    /// Log-normal with the given median and 99th percentile (in milliseconds).
    LogNormal {
        median_ms: f64,
        p99_ms: f64,
    },
}

impl Behaviour {
    /// Reads the `sim.forklane.io/*` annotations; absent ones keep their defaults (no errors,
    /// no latency, no conversions). Errors name the annotation.
    pub(crate) fn from_annotations(annotations: &BTreeMap<String, String>) -> Result<Self, String> {
        let mut out = Behaviour::default();
        if let Some(v) = annotations.get(ERROR_RATE) {
            out.error_rate = probability(ERROR_RATE, v)?;
        }
        if let Some(v) = annotations.get(CONVERSION_RATE) {
            out.conversion_rate = probability(CONVERSION_RATE, v)?;
        }
        if let Some(v) = annotations.get(LATENCY_MS) {
            out.latency = Latency::parse(v).map_err(|e| format!("{LATENCY_MS}: {e}"))?;
        }
        Ok(out)
    }
}

fn probability(name: &str, value: &str) -> Result<f64, String> {
    match value.trim().parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!("{name}: {value:?} is not a probability between 0 and 1")),
    }
}

impl Latency {
    /// `"25"` (fixed, ms) or `"lognormal:median=40,p99=250"` (ms).
    pub(crate) fn parse(spec: &str) -> Result<Self, String> {
        let spec = spec.trim();
        let Some(params) = spec.strip_prefix("lognormal:") else {
            return match spec.parse::<f64>() {
                Ok(ms) if ms >= 0.0 && ms.is_finite() => Ok(Latency::Fixed(Duration::from_secs_f64(ms / 1000.0))),
                _ => Err(format!("{spec:?}: expected milliseconds (\"25\") or \"lognormal:median=40,p99=250\"")),
            };
        };
        let (mut median, mut p99) = (None, None);
        for part in params.split(',') {
            let (key, value) = part.split_once('=').ok_or_else(|| format!("{part:?}: expected key=value"))?;
            let value: f64 = value.trim().parse().map_err(|_| format!("{part:?}: not a number"))?;
            match key.trim() {
                "median" => median = Some(value),
                "p99" => p99 = Some(value),
                other => return Err(format!("unknown parameter {other:?} (median, p99)")),
            }
        }
        match (median, p99) {
            (Some(m), Some(p)) if m > 0.0 && p >= m => Ok(Latency::LogNormal { median_ms: m, p99_ms: p }),
            _ => Err("lognormal needs median > 0 and p99 >= median".into()),
        }
    }

    pub(crate) fn sample(&self, rng: &mut impl Rng) -> Duration {
        match self {
            Latency::Zero => Duration::ZERO,
            Latency::Fixed(d) => *d,
            Latency::LogNormal { median_ms, p99_ms } => {
                let sigma = (p99_ms / median_ms).ln() / Z_99;
                let ms = (median_ms.ln() + sigma * standard_normal(rng)).exp();
                Duration::from_secs_f64(ms / 1000.0)
            }
        }
    }
}

/// Box–Muller (rand 0.9 has no normal distribution without rand_distr).
fn standard_normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]: ln stays finite
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn reads_the_annotations() {
        let a = BTreeMap::from([
            (ERROR_RATE.to_string(), "0.01".to_string()),
            (CONVERSION_RATE.to_string(), "0.2".to_string()),
            (LATENCY_MS.to_string(), "lognormal:median=40,p99=250".to_string()),
        ]);
        let b = Behaviour::from_annotations(&a).unwrap();
        assert_eq!(b.error_rate, 0.01);
        assert_eq!(b.conversion_rate, 0.2);
        assert_eq!(b.latency, Latency::LogNormal { median_ms: 40.0, p99_ms: 250.0 });
        assert_eq!(Behaviour::from_annotations(&BTreeMap::new()).unwrap(), Behaviour::default());
    }

    #[test]
    fn refuses_bad_values_naming_the_annotation() {
        let bad = |k: &str, v: &str| {
            Behaviour::from_annotations(&BTreeMap::from([(k.to_string(), v.to_string())])).unwrap_err()
        };
        assert!(bad(ERROR_RATE, "1.5").contains(ERROR_RATE));
        assert!(bad(LATENCY_MS, "lognormal:median=40").contains(LATENCY_MS));
        assert!(bad(LATENCY_MS, "fast").contains(LATENCY_MS));
    }

    #[test]
    fn lognormal_has_the_asked_median_and_p99() {
        let latency = Latency::parse("lognormal:median=40,p99=250").unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut ms: Vec<f64> = (0..40_000).map(|_| latency.sample(&mut rng).as_secs_f64() * 1000.0).collect();
        ms.sort_by(f64::total_cmp);
        let (median, p99) = (ms[ms.len() / 2], ms[ms.len() * 99 / 100]);
        assert!((median - 40.0).abs() < 1.5, "median {median}");
        assert!((p99 - 250.0).abs() < 20.0, "p99 {p99}");
    }
}
