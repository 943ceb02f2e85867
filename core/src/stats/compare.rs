//! Per-arm, per-metric numbers behind a decision: estimate, interval, p-values and
//! posterior probabilities under each method, then the multiplicity adjustment.

use super::bayes::{self, BetaPosterior};
use super::decision::{
    Comparison, DEFAULT_PLANNED_SAMPLES_PER_ARM, DecisionConfig, Direction, Guardrail, Margin, Method, Metric,
    Observation, Role, Verdict,
};
use super::sequential::{self, Difference};
use super::welch::{self, Summary};
use super::{Alternative, Result, batches, invalid, multiple, noninferiority, normal, proportions};

/// Rejects observations no experiment can produce.
pub(crate) fn check_observation(obs: &Observation) -> std::result::Result<(), String> {
    match *obs {
        Observation::Proportion { successes, trials } if successes > trials => {
            Err(format!("{successes} successes out of {trials} trials"))
        }
        Observation::Mean { mean, variance, .. } if !(mean.is_finite() && variance.is_finite() && variance >= 0.0) => {
            Err("mean and variance must be finite, variance ≥ 0".into())
        }
        _ => Ok(()),
    }
}

/// Control and treatment data for one metric.
pub(crate) struct Pair {
    pub arm: String,
    control: Observation,
    treatment: Observation,
    pub control_value: f64,
    pub arm_value: f64,
    /// Raw difference arm − control, with the variance the tests use.
    pub diff: Difference,
    /// Units behind the difference (both arms), for tuning τ².
    units: f64,
    /// How much the batches widen the variance over the iid one (≥ 1; 1 without batches).
    inflation: f64,
}

impl Pair {
    /// `None` when the difference has no variance yet (means with constant values).
    pub(crate) fn new(metric: &Metric, control: &str, arm: &str) -> Result<Option<Self>> {
        let find = |name: &str| metric.arms.iter().find(|a| a.arm == name);
        let (Some(control_obs), Some(arm_obs)) = (find(control), find(arm)) else {
            return invalid(format!("`{}` lacks arm `{control}` or `{arm}`", metric.name));
        };
        let (c, t) = (control_obs.value, arm_obs.value);
        let (cv, tv, variance) = match (c, t) {
            (
                Observation::Proportion { successes: xc, trials: nc },
                Observation::Proportion { successes: xt, trials: nt },
            ) => {
                // Agresti–Caffo: one success and one failure added per arm keeps the variance
                // positive with 0 or all conversions; at decision sizes it is the plain one.
                let adj = |x: u64, n: u64| {
                    let p = (x as f64 + 1.0) / (n as f64 + 2.0);
                    p * (1.0 - p) / (n as f64 + 2.0)
                };
                (xc as f64 / nc as f64, xt as f64 / nt as f64, adj(xc, nc) + adj(xt, nt))
            }
            (
                Observation::Mean { mean: mc, variance: vc, n: nc },
                Observation::Mean { mean: mt, variance: vt, n: nt },
            ) => (mc, mt, vc / nc as f64 + vt / nt as f64),
            _ => return invalid(format!("`{}` mixes proportions and means", metric.name)),
        };
        if variance <= 0.0 {
            return Ok(None);
        }
        // With batches: the stratified estimate, and a variance never below the iid one.
        let (estimate, variance, inflation) = match batches::mantel_haenszel(&control_obs.batches, &arm_obs.batches) {
            Some(s) => (s.estimate, s.variance.max(variance), (s.variance / variance).max(1.0)),
            None => (tv - cv, variance, 1.0),
        };
        let units = c.samples() as f64 + t.samples() as f64;
        Ok(Some(Self {
            arm: arm.to_string(),
            control: c,
            treatment: t,
            control_value: cv,
            arm_value: tv,
            diff: Difference { estimate, variance },
            units,
            inflation,
        }))
    }

    fn sd(&self) -> f64 {
        self.diff.variance.sqrt()
    }

    fn tau2(&self, config: &DecisionConfig) -> f64 {
        self.tau2_for(config, self.diff.variance)
    }

    /// τ² for a test of the same difference with another variance (the null-restricted one).
    fn tau2_for(&self, config: &DecisionConfig, variance: f64) -> f64 {
        let planned = config.planned_samples_per_arm.unwrap_or(DEFAULT_PLANNED_SAMPLES_PER_ARM) as f64;
        sequential::tau2_from_planned(config.alpha, 2.0 * planned, self.units, variance)
    }

    /// Variance for the non-inferiority test of H0 harm ≥ margin, i.e. treatment − control =
    /// `boundary`: for proportions the Farrington–Manning variance at the restricted MLE, times
    /// the batch inflation; for means (and margins no rates can meet) the pair's own variance.
    fn null_variance(&self, boundary: f64) -> f64 {
        match (self.treatment, self.control) {
            (
                Observation::Proportion { successes: xt, trials: nt },
                Observation::Proportion { successes: xc, trials: nc },
            ) => noninferiority::null_variance(xt, nt, xc, nc, boundary)
                .map_or(self.diff.variance, |v| v * self.inflation),
            _ => self.diff.variance,
        }
    }

    fn comparison(&self, metric: &str, role: Role) -> Comparison {
        Comparison {
            arm: self.arm.clone(),
            metric: metric.to_string(),
            role,
            control_value: self.control_value,
            arm_value: self.arm_value,
            difference: self.diff.estimate,
            interval: [self.diff.estimate; 2],
            p_value: None,
            adjusted_p_value: None,
            prob_better: None,
            expected_loss: None,
            verdict: Verdict::Inconclusive,
        }
    }
}

/// The Bayesian goal's threshold of caring: an arm is chosen once the expected loss of choosing
/// it is at most this share of the control's value (0.1%: a conversion of 5% risks 0.005 points).
pub(crate) const BAYES_LOSS_THRESHOLD: f64 = 0.001;

fn sign(direction: Direction) -> f64 {
    if direction == Direction::HigherIsBetter { 1.0 } else { -1.0 }
}

/// P(arm better) and the expected loss of choosing it: exact Beta-Binomial for
/// proportions, a flat-prior normal posterior N(estimate, variance) for means.
fn posterior(pair: &Pair, s: f64, prior: [f64; 2]) -> Result<(f64, f64)> {
    if let (
        Observation::Proportion { successes: xc, trials: nc },
        Observation::Proportion { successes: xt, trials: nt },
    ) = (pair.control, pair.treatment)
    {
        let c = bayes::compare(BetaPosterior::from_counts(xc, nc, prior)?, BetaPosterior::from_counts(xt, nt, prior)?);
        return Ok(if s > 0.0 {
            (c.p_b_gt_a, c.expected_loss_choose_b)
        } else {
            (1.0 - c.p_b_gt_a, c.expected_loss_choose_a)
        });
    }
    let (m, sd) = (s * pair.diff.estimate, pair.sd());
    let loss = -m * normal::cdf(-m / sd) + sd * normal::pdf(m / sd);
    Ok((normal::cdf(m / sd), loss.max(0.0)))
}

/// Classical two-sided p-value: pooled z for proportions, Welch t for means.
fn fixed_p(pair: &Pair) -> Result<f64> {
    match (pair.treatment, pair.control) {
        (
            Observation::Proportion { successes: xt, trials: nt },
            Observation::Proportion { successes: xc, trials: nc },
        ) => Ok(proportions::two_proportion_ztest(xt, nt, xc, nc, Alternative::TwoSided)?.p_value),
        (Observation::Mean { mean: mt, variance: vt, n: nt }, Observation::Mean { mean: mc, variance: vc, n: nc }) => {
            let s = |mean, variance, n| Summary { mean, variance, n };
            Ok(welch::welch_ttest(s(mt, vt, nt), s(mc, vc, nc), Alternative::TwoSided)?.p_value)
        }
        _ => invalid("metric mixes proportions and means"),
    }
}

pub(crate) fn goal(pair: &Pair, metric: &Metric, config: &DecisionConfig) -> Result<Comparison> {
    let mut c = pair.comparison(&metric.name, Role::Goal);
    if config.method == Method::Bayesian {
        let (prob, loss) = posterior(pair, sign(metric.direction), config.prior)?;
        c.prob_better = Some(prob);
        c.expected_loss = Some(loss);
    }
    let est = pair.diff.estimate;
    let half = match config.method {
        Method::Sequential => {
            let m = sequential::msprt(pair.diff, pair.tau2(config), 0.0, config.alpha)?;
            c.p_value = Some(m.p_value);
            m.cs_halfwidth
        }
        Method::FixedHorizon => {
            c.p_value = Some(fixed_p(pair)?);
            normal::ppf(1.0 - config.alpha / 2.0) * pair.sd()
        }
        Method::Bayesian => normal::ppf(1.0 - config.alpha / 2.0) * pair.sd(),
    };
    c.interval = [est - half, est + half];
    Ok(c)
}

/// Guardrail in terms of harm h (positive = worse) against the tolerated margin m:
/// `p_value` tests H0 h ≥ m (non-inferiority, with the variance restricted to the null for
/// proportions), the raw rollback test H0 h ≤ m goes into `adjusted_p_value` until [`adjust`]
/// applies Holm. The interval uses the pair's own variance.
pub(crate) fn guardrail(pair: &Pair, g: &Guardrail, config: &DecisionConfig) -> Result<Comparison> {
    let mut c = pair.comparison(&g.metric.name, Role::Guardrail);
    let hs = -sign(g.metric.direction);
    let h = hs * pair.diff.estimate;
    let m = match g.margin {
        Margin::Absolute(a) => a,
        Margin::Relative(r) => r * pair.control_value.abs(),
    };
    let sd = pair.sd();
    if config.method == Method::Bayesian {
        c.prob_better = Some(normal::cdf((m - h) / sd));
    }
    // treatment − control at the null of the non-inferiority test
    let null_variance = pair.null_variance(hs * m);
    let (lo, hi) = match config.method {
        Method::Sequential => {
            let tau2 = pair.tau2(config);
            let harm = |estimate, variance| Difference { estimate, variance };
            let ni = sequential::msprt_one_sided(
                harm(-h, null_variance),
                pair.tau2_for(config, null_variance),
                -m,
                config.alpha,
            )?;
            let upper = sequential::msprt_one_sided(harm(-h, pair.diff.variance), tau2, -m, config.alpha)?;
            let inf = sequential::msprt_one_sided(harm(h, pair.diff.variance), tau2, m, config.alpha)?;
            c.p_value = Some(ni.p_value);
            c.adjusted_p_value = Some(inf.p_value);
            (inf.lower_bound, -upper.lower_bound)
        }
        Method::FixedHorizon | Method::Bayesian => {
            if config.method == Method::FixedHorizon {
                c.p_value = Some(normal::cdf((h - m) / null_variance.sqrt()));
                c.adjusted_p_value = Some(normal::sf((h - m) / sd));
            }
            let half = normal::ppf(1.0 - config.alpha) * sd;
            (h - half, h + half)
        }
    };
    c.interval = if hs > 0.0 { [lo, hi] } else { [-hi, -lo] };
    Ok(c)
}

/// Holm across the goal's arms (at α) and across all guardrail rollback tests (at `harm_alpha`),
/// then verdicts.
pub(crate) fn adjust(
    goal: &mut [Comparison],
    guard: &mut [Comparison],
    config: &DecisionConfig,
    direction: Direction,
    harm_alpha: f64,
) -> Result<()> {
    let a = config.alpha;
    if config.method == Method::Bayesian {
        let by_probability = |c: &Comparison, yes, no| match c.prob_better.unwrap_or(0.5) {
            p if p >= 1.0 - a => yes,
            p if p <= a => no,
            _ => Verdict::Inconclusive,
        };
        // The goal is decided on expected loss: choose the arm once what choosing it wrongly is
        // expected to cost is below the threshold of caring (docs/statistics.md).
        for c in goal.iter_mut() {
            let threshold = BAYES_LOSS_THRESHOLD * c.control_value.abs();
            let cheap = c.expected_loss.is_some_and(|loss| loss <= threshold);
            c.verdict = match c.prob_better.unwrap_or(0.5) {
                p if p <= a => Verdict::Worse,
                p if p > 0.5 && cheap => Verdict::Better,
                _ => Verdict::Inconclusive,
            };
        }
        for c in guard.iter_mut() {
            c.verdict = by_probability(c, Verdict::NonInferior, Verdict::Inferior);
        }
        return Ok(());
    }
    let raw: Vec<f64> = goal.iter().map(|c| c.p_value.unwrap_or(1.0)).collect();
    for (c, adj) in goal.iter_mut().zip(multiple::holm(&raw)?) {
        c.adjusted_p_value = Some(adj);
        let better = sign(direction) * c.difference > 0.0;
        c.verdict = match (adj <= a, better) {
            (false, _) => Verdict::Inconclusive,
            (true, true) => Verdict::Better,
            (true, false) => Verdict::Worse,
        };
    }
    let raw: Vec<f64> = guard.iter().map(|c| c.adjusted_p_value.unwrap_or(1.0)).collect();
    for (c, adj) in guard.iter_mut().zip(multiple::holm(&raw)?) {
        c.adjusted_p_value = Some(adj);
        c.verdict = if adj <= harm_alpha {
            Verdict::Inferior
        } else if c.p_value.is_some_and(|p| p <= a) {
            Verdict::NonInferior
        } else {
            Verdict::Inconclusive
        };
    }
    Ok(())
}
