//! A seeded model of real traffic, as pure sampling code: how many times each user visits and
//! when they come back, how likely each user is to convert, how the arrival rate moves by the
//! minute and over the day, and how pods of one version differ. The load generator
//! ([`super::loadgen`]) and the seeded study (`crate::study`) draw from it.
//!
//! Visits per user k ≥ 1 are `1 + Poisson(Λ)` with Λ ~ Gamma (a negative binomial), chosen so
//! that E[k] and E[k²]/E[k] are what is asked. E[k²]/E[k] is the variance inflation of a
//! per-request metric whose users differ (the design effect with every user at the extreme
//! propensity): 1 for independent requests, ≥ 25 for heavy-tailed users.

use std::f64::consts::TAU;
use std::time::Duration;

use rand::Rng;
use statrs::function::gamma::ln_gamma;

/// Errors name the field and the value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field} = {value}: {why}")]
pub struct ModelError {
    pub field: &'static str,
    pub value: f64,
    pub why: &'static str,
}

fn check(field: &'static str, value: f64, ok: bool, why: &'static str) -> Result<(), ModelError> {
    if ok && value.is_finite() { Ok(()) } else { Err(ModelError { field, value, why }) }
}

/// Gamma(shape, scale) by Marsaglia–Tsang, boosted for shape < 1.
pub fn gamma<R: Rng>(rng: &mut R, shape: f64, scale: f64) -> f64 {
    if shape < 1.0 {
        let u: f64 = 1.0 - rng.random::<f64>();
        return gamma(rng, shape + 1.0, scale) * u.powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = standard_normal(rng);
        let v = (1.0 + c * x).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u: f64 = 1.0 - rng.random::<f64>();
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v * scale;
        }
    }
}

/// Box–Muller.
pub fn standard_normal<R: Rng>(rng: &mut R) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (TAU * u2).cos()
}

/// Exact Poisson(λ): multiplication for small λ, Hörmann's transformed rejection (PTRS) above.
pub fn poisson<R: Rng>(rng: &mut R, lambda: f64) -> u64 {
    if lambda <= 0.0 || !lambda.is_finite() {
        return 0;
    }
    if lambda < 10.0 {
        let (limit, mut product, mut k) = ((-lambda).exp(), rng.random::<f64>(), 0);
        while product > limit {
            product *= rng.random::<f64>();
            k += 1;
        }
        return k;
    }
    let (slam, loglam) = (lambda.sqrt(), lambda.ln());
    let b = 0.931 + 2.53 * slam;
    let a = -0.059 + 0.02483 * b;
    let inv_alpha = 1.1239 + 1.1328 / (b - 3.4);
    let vr = 0.9277 - 3.6224 / (b - 2.0);
    loop {
        let u = rng.random::<f64>() - 0.5;
        let v: f64 = rng.random();
        let us = 0.5 - u.abs();
        let k = ((2.0 * a / us + b) * u + lambda + 0.43).floor();
        if us >= 0.07 && v <= vr {
            return k as u64;
        }
        if k < 0.0 || (us < 0.013 && v > us) {
            continue;
        }
        if v.ln() + inv_alpha.ln() - (a / (us * us) + b).ln() <= -lambda + k * loglam - ln_gamma(k + 1.0) {
            return k as u64;
        }
    }
}

/// Visits per user: `1 + Poisson(Λ)`, Λ ~ Gamma(shape, mean / shape) with mean = E[k] − 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Visits {
    mean: f64,
    /// Gamma shape; infinite: Λ is the constant mean (k − 1 Poisson).
    shape: f64,
}

impl Visits {
    /// Every user visits once: independent requests.
    pub const ONCE: Visits = Visits { mean: 0.0, shape: f64::INFINITY };

    /// Visits with E[k] = `mean` and E[k²]/E[k] = `inflation`. With E[k] = m and μ = m − 1 the
    /// negative binomial needs `inflation` > m + μ/m (the Poisson's own spread).
    pub fn new(mean: f64, inflation: f64) -> Result<Self, ModelError> {
        check("visitsPerUser.mean", mean, mean >= 1.0, "must be at least 1")?;
        let mu = mean - 1.0;
        if mu == 0.0 {
            check("visitsPerUser.inflation", inflation, inflation == 1.0, "must be 1 when every user visits once")?;
            return Ok(Visits::ONCE);
        }
        let excess = inflation * mean - mean * mean - mu;
        check(
            "visitsPerUser.inflation",
            inflation,
            excess > 0.0,
            "must exceed E[k] + (E[k] − 1)/E[k], the spread of Poisson returns",
        )?;
        Ok(Visits { mean: mu, shape: mu * mu / excess })
    }

    pub fn mean(&self) -> f64 {
        1.0 + self.mean
    }

    /// E[k²]/E[k].
    pub fn inflation(&self) -> f64 {
        let m = 1.0 + self.mean;
        let var = self.mean + if self.shape.is_finite() { self.mean * self.mean / self.shape } else { 0.0 };
        (var + m * m) / m
    }

    pub fn sample<R: Rng>(&self, rng: &mut R) -> u64 {
        if self.mean == 0.0 {
            return 1;
        }
        let lambda = if self.shape.is_finite() { gamma(rng, self.shape, self.mean / self.shape) } else { self.mean };
        1 + poisson(rng, lambda)
    }
}

/// When a user's later visits come: each one continues the current session with probability
/// `same_session` (after an exponential gap of mean `session_gap`) or starts a new session after
/// an exponential gap of mean `return_gap` — real users come back hours later.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Returns {
    pub same_session: f64,
    pub session_gap: Duration,
    pub return_gap: Duration,
}

impl Default for Returns {
    fn default() -> Self {
        Returns { same_session: 0.6, session_gap: Duration::from_secs(90), return_gap: Duration::from_secs(6 * 3600) }
    }
}

impl Returns {
    /// The offsets after the first visit of the `visits − 1` later ones, in order.
    pub fn offsets<R: Rng>(&self, rng: &mut R, visits: u64) -> Vec<Duration> {
        let mut at = 0.0;
        (1..visits)
            .map(|_| {
                let same = rng.random_bool(self.same_session.clamp(0.0, 1.0));
                let mean = if same { self.session_gap } else { self.return_gap };
                at += -mean.as_secs_f64() * (1.0 - rng.random::<f64>()).ln();
                Duration::from_secs_f64(at)
            })
            .collect()
    }
}

/// A user's conversion propensity: Beta with the given mean and concentration α + β (infinite:
/// every user converts at the mean).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Propensity {
    pub mean: f64,
    pub concentration: f64,
}

impl Propensity {
    pub fn new(mean: f64, concentration: f64) -> Result<Self, ModelError> {
        check("propensity.mean", mean, (0.0..=1.0).contains(&mean), "must lie in [0, 1]")?;
        if concentration != f64::INFINITY {
            check("propensity.concentration", concentration, concentration > 0.0, "must be positive")?;
        }
        Ok(Propensity { mean, concentration })
    }

    pub fn sample<R: Rng>(&self, rng: &mut R) -> f64 {
        if !self.concentration.is_finite() || self.mean <= 0.0 || self.mean >= 1.0 {
            return self.mean;
        }
        let x = gamma(rng, self.mean * self.concentration, 1.0);
        let y = gamma(rng, (1.0 - self.mean) * self.concentration, 1.0);
        if x + y > 0.0 { x / (x + y) } else { self.mean }
    }
}

/// The arrival rate's multiplier over time: a diurnal sine (amplitude 0 … < 1, lowest at 04:00)
/// times an independent Gamma(mean 1, coefficient of variation `minute_cv`) per minute.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Modulation {
    pub minute_cv: f64,
    pub diurnal_amplitude: f64,
}

impl Modulation {
    pub fn new(minute_cv: f64, diurnal_amplitude: f64) -> Result<Self, ModelError> {
        check("rate.minuteCv", minute_cv, minute_cv >= 0.0, "must be ≥ 0")?;
        check(
            "rate.diurnalAmplitude",
            diurnal_amplitude,
            (0.0..1.0).contains(&diurnal_amplitude),
            "must lie in [0, 1)",
        )?;
        Ok(Modulation { minute_cv, diurnal_amplitude })
    }

    /// The diurnal factor at `at` after midnight (mean 1 over a day).
    pub fn diurnal(&self, at: Duration) -> f64 {
        let day = at.as_secs_f64() / 86_400.0;
        1.0 - self.diurnal_amplitude * (TAU * (day - 4.0 / 24.0 + 0.25)).sin()
    }

    /// The multiplier of one minute starting at `at`.
    pub fn sample<R: Rng>(&self, rng: &mut R, at: Duration) -> f64 {
        let noise = if self.minute_cv > 0.0 {
            let shape = 1.0 / (self.minute_cv * self.minute_cv);
            gamma(rng, shape, 1.0 / shape)
        } else {
            1.0
        };
        self.diurnal(at) * noise
    }
}

/// How pods of one version differ: each pod's error rate and latency median are the version's
/// times a Gamma(mean 1, CV) factor drawn once per pod.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PodSpread {
    pub error_cv: f64,
    pub latency_cv: f64,
}

impl PodSpread {
    pub fn new(error_cv: f64, latency_cv: f64) -> Result<Self, ModelError> {
        check("pods.errorCv", error_cv, error_cv >= 0.0, "must be ≥ 0")?;
        check("pods.latencyCv", latency_cv, latency_cv >= 0.0, "must be ≥ 0")?;
        Ok(PodSpread { error_cv, latency_cv })
    }

    fn factor<R: Rng>(rng: &mut R, cv: f64) -> f64 {
        if cv == 0.0 {
            return 1.0;
        }
        let shape = 1.0 / (cv * cv);
        gamma(rng, shape, 1.0 / shape)
    }

    /// One pod's error rate (capped at 1) and latency median.
    pub fn pod<R: Rng>(&self, rng: &mut R, error_rate: f64, median_ms: f64) -> (f64, f64) {
        let e = (error_rate * Self::factor(rng, self.error_cv)).min(1.0);
        (e, median_ms * Self::factor(rng, self.latency_cv))
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn moments(xs: &[f64]) -> (f64, f64) {
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        (mean, xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0))
    }

    #[test]
    fn poisson_and_gamma_have_their_moments() {
        let mut rng = StdRng::seed_from_u64(3);
        for lambda in [0.3, 4.0, 25.0, 900.0] {
            let xs: Vec<f64> = (0..40_000).map(|_| poisson(&mut rng, lambda) as f64).collect();
            let (m, v) = moments(&xs);
            assert!((m - lambda).abs() < 4.0 * (lambda / 40_000.0).sqrt(), "λ {lambda}: mean {m}");
            assert!((v / lambda - 1.0).abs() < 0.05, "λ {lambda}: variance {v}");
        }
        for shape in [0.2, 1.0, 7.5] {
            let xs: Vec<f64> = (0..40_000).map(|_| gamma(&mut rng, shape, 2.0)).collect();
            let (m, v) = moments(&xs);
            assert!((m / (2.0 * shape) - 1.0).abs() < 0.04, "shape {shape}: mean {m}");
            assert!((v / (4.0 * shape) - 1.0).abs() < 0.1, "shape {shape}: variance {v}");
        }
    }

    #[test]
    fn visits_have_the_asked_mean_and_inflation() {
        let mut rng = StdRng::seed_from_u64(5);
        for (mean, inflation) in [(1.0, 1.0), (2.0, 4.0), (3.0, 25.0)] {
            let visits = Visits::new(mean, inflation).unwrap();
            assert!((visits.inflation() - inflation).abs() < 1e-9 && (visits.mean() - mean).abs() < 1e-12);
            let ks: Vec<f64> = (0..400_000).map(|_| visits.sample(&mut rng) as f64).collect();
            assert!(ks.iter().all(|&k| k >= 1.0));
            let m = ks.iter().sum::<f64>() / ks.len() as f64;
            let m2 = ks.iter().map(|k| k * k).sum::<f64>() / ks.len() as f64;
            assert!((m / mean - 1.0).abs() < 0.02, "E[k] {m} for {mean}");
            // E[k²] of a heavy tail converges slowly: 10% is several standard errors.
            assert!((m2 / m / inflation - 1.0).abs() < 0.1, "E[k²]/E[k] {} for {inflation}", m2 / m);
        }
        assert!(Visits::new(0.5, 1.0).unwrap_err().to_string().contains("visitsPerUser.mean = 0.5"));
        assert!(Visits::new(2.0, 2.0).unwrap_err().to_string().contains("visitsPerUser.inflation = 2"));
    }

    #[test]
    fn propensity_modulation_and_pods_have_their_moments() {
        let mut rng = StdRng::seed_from_u64(9);
        let p = Propensity::new(0.05, 20.0).unwrap();
        let qs: Vec<f64> = (0..100_000).map(|_| p.sample(&mut rng)).collect();
        let (m, v) = moments(&qs);
        assert!((m - 0.05).abs() < 0.001, "mean {m}");
        let beta_var = 0.05 * 0.95 / 21.0;
        assert!((v / beta_var - 1.0).abs() < 0.05, "variance {v} vs {beta_var}");
        assert_eq!(Propensity::new(0.05, f64::INFINITY).unwrap().sample(&mut rng), 0.05);
        assert!(Propensity::new(1.5, 1.0).unwrap_err().to_string().contains("propensity.mean = 1.5"));

        let flat = Modulation::new(0.5, 0.0).unwrap();
        let xs: Vec<f64> = (0..100_000).map(|i| flat.sample(&mut rng, Duration::from_secs(60 * i))).collect();
        let (m, v) = moments(&xs);
        assert!((m - 1.0).abs() < 0.01 && (v.sqrt() - 0.5).abs() < 0.01, "mean {m} cv {}", v.sqrt());
        let day = Modulation::new(0.0, 0.6).unwrap();
        let mean: f64 = (0..1440).map(|i| day.diurnal(Duration::from_secs(60 * i))).sum::<f64>() / 1440.0;
        assert!((mean - 1.0).abs() < 1e-9, "diurnal mean {mean}");
        assert!((day.diurnal(Duration::from_secs(4 * 3600)) - 0.4).abs() < 1e-9, "lowest at 04:00");
        assert!(Modulation::new(0.1, 1.0).unwrap_err().to_string().contains("rate.diurnalAmplitude = 1"));

        let pods = PodSpread::new(0.3, 0.0).unwrap();
        let es: Vec<f64> = (0..100_000).map(|_| pods.pod(&mut rng, 0.01, 40.0).0).collect();
        let (m, v) = moments(&es);
        assert!((m - 0.01).abs() < 0.0002 && (v.sqrt() / 0.01 - 0.3).abs() < 0.01, "pod error rates {m} {v}");
    }

    #[test]
    fn returns_come_in_order_and_hours_apart_on_average() {
        let mut rng = StdRng::seed_from_u64(11);
        let r = Returns::default();
        let offsets = r.offsets(&mut rng, 20_001);
        assert_eq!(offsets.len(), 20_000);
        assert!(offsets.windows(2).all(|w| w[0] <= w[1]));
        let mean_gap = offsets.last().unwrap().as_secs_f64() / 20_000.0;
        let expected = 0.6 * 90.0 + 0.4 * 6.0 * 3600.0;
        assert!((mean_gap / expected - 1.0).abs() < 0.05, "mean gap {mean_gap} vs {expected}");
    }
}
