//! The promotion decision: given per-arm data for the goal metric and the guardrails,
//! answer `Promote(arm) | Rollback(reason) | Continue(reason)` with the numbers behind it.
//!
//! Rules (frequentist methods; the Bayesian method swaps p ≤ α for probability ≥ 1 − α):
//! - Too little data in any arm (`minSamplesPerArm`), or a mean metric without variance yet:
//!   Continue — except that the sequential method runs the guardrails' harm tests from the first
//!   look (they are valid at every look), so a harmful arm is rolled back without waiting.
//! - Sample ratio mismatch (sequential test at `srmAlpha`): Rollback — nothing measured
//!   on a broken split can be trusted.
//! - Guardrails are one-sided with a margin m ≥ 0 of tolerated harm. An arm is `inferior`
//!   when harm > m is shown (Holm across all arm × guardrail pairs, at α/2 next to a goal
//!   metric and α in a guardrail-only gate: see [`harm_alpha`]) — then Rollback. It is `nonInferior` when harm < m is shown;
//!   promotion needs every guardrail non-inferior (an intersection–union test: no
//!   correction needed).
//! - The goal metric is tested two-sided for every treatment arm against the control,
//!   Holm-adjusted across arms. Promote the best arm that is significantly better and
//!   non-inferior on every guardrail. If every arm is significantly worse: Rollback.
//! - Fixed horizon: nothing is decided before `plannedSamplesPerArm` (or, with a horizon
//!   duration, before `horizonWait` is zero); at that look the test is over, so anything short
//!   of a promotion is a Rollback.

use super::compare::{self, Pair};
use super::{Result, invalid, srm};
use serde::{Deserialize, Serialize};

/// Planned samples per arm used to tune the sequential test when none is configured.
pub(crate) const DEFAULT_PLANNED_SAMPLES_PER_ARM: u64 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Method {
    /// mSPRT: valid however often the controller looks.
    #[default]
    Sequential,
    /// Classical z/t tests, valid only when evaluated once at the planned sample size.
    FixedHorizon,
    /// Beta-Binomial / normal posteriors; no error-rate guarantee under peeking.
    Bayesian,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Direction {
    #[default]
    HigherIsBetter,
    LowerIsBetter,
}

/// One arm's data for one metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Observation {
    Proportion { successes: u64, trials: u64 },
    Mean { mean: f64, variance: f64, n: u64 },
}

impl Observation {
    pub fn samples(&self) -> u64 {
        match *self {
            Self::Proportion { trials, .. } => trials,
            Self::Mean { n, .. } => n,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArmObservation {
    pub arm: String,
    pub value: Observation,
    /// Per-interval increments (oldest first, the same boundaries for every arm of a metric):
    /// with at least 4 in both arms of a pair, the difference and its variance are computed
    /// by batch (see `stats::batches`), which keeps them valid under drift and clustering.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub batches: Vec<Batch>,
}

/// One batch of a proportion metric: successes and trials within one interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Batch {
    pub successes: u64,
    pub trials: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metric {
    pub name: String,
    #[serde(default)]
    pub direction: Direction,
    pub arms: Vec<ArmObservation>,
}

/// Tolerated harm on a guardrail, absolute or relative to the control's value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Margin {
    Absolute(f64),
    Relative(f64),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Guardrail {
    #[serde(flatten)]
    pub metric: Metric,
    pub margin: Margin,
}

/// Units assigned to an arm and the arm's configured traffic weight, for the SRM check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Assignment {
    pub arm: String,
    pub weight: f64,
    pub units: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DecisionInput {
    pub control: String,
    /// `None`: a guardrail-only gate (a canary's analysis step), which passes for an arm once
    /// every guardrail shows it non-inferior.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal: Option<Metric>,
    #[serde(default)]
    pub guardrails: Vec<Guardrail>,
    /// Empty: no SRM check.
    #[serde(default)]
    pub assignment: Vec<Assignment>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DecisionConfig {
    pub method: Method,
    pub alpha: f64,
    pub min_samples_per_arm: u64,
    /// Tunes the sequential mixture; the decision point of the fixed-horizon method.
    pub planned_samples_per_arm: Option<u64>,
    pub srm_alpha: f64,
    /// Beta prior of the Bayesian method (positive integers).
    pub prior: [f64; 2],
    /// A fixed horizon given as a duration (`horizon.duration`): the time still to wait before
    /// the one test (zero: the horizon is reached, test now). Set per look by the caller.
    #[serde(skip)]
    pub horizon_wait: Option<std::time::Duration>,
}

impl DecisionConfig {
    /// The fixed-horizon test is at its one look: what it does not promote, it rolls back.
    fn at_horizon(&self) -> bool {
        self.method == Method::FixedHorizon && (self.planned_samples_per_arm.is_some() || self.horizon_wait.is_some())
    }
}

impl Default for DecisionConfig {
    fn default() -> Self {
        Self {
            method: Method::Sequential,
            alpha: 0.05,
            min_samples_per_arm: 100,
            planned_samples_per_arm: None,
            srm_alpha: 0.001,
            prior: [1.0, 1.0],
            horizon_wait: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "camelCase")]
pub enum Outcome {
    Promote { arm: String },
    Rollback { reason: String },
    Continue { reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    Goal,
    Guardrail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Verdict {
    Better,
    Worse,
    NonInferior,
    Inferior,
    Inconclusive,
}

/// The numbers behind a decision for one treatment arm and one metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Comparison {
    pub arm: String,
    pub metric: String,
    pub role: Role,
    pub control_value: f64,
    pub arm_value: f64,
    /// arm − control, in the metric's units.
    pub difference: f64,
    /// Interval for the difference: the (1 − α) confidence sequence (sequential),
    /// confidence interval (fixed horizon) or credible interval (Bayesian); for guardrails
    /// the two one-sided (1 − α) bounds.
    pub interval: [f64; 2],
    /// Goal: H0 no difference. Guardrail: H0 harm ≥ margin (non-inferiority test).
    pub p_value: Option<f64>,
    /// Goal: Holm across arms. Guardrail: H0 harm ≤ margin (the rollback test), Holm
    /// across all arm × guardrail pairs.
    pub adjusted_p_value: Option<f64>,
    /// Bayesian method only. Goal: P(arm better than control); guardrail: P(harm <
    /// margin). Exact Beta-Binomial for proportions, flat-prior normal otherwise.
    pub prob_better: Option<f64>,
    /// Bayesian method, goal only: expected loss of choosing the arm over the control.
    pub expected_loss: Option<f64>,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SrmCheck {
    pub p_value: f64,
    pub ln_bayes_factor: f64,
    /// `p_value` is at or below `srmAlpha`: traffic does not follow the weights, and the
    /// decision is a rollback for that reason.
    pub mismatch: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    pub outcome: Outcome,
    pub comparisons: Vec<Comparison>,
    pub srm: Option<SrmCheck>,
}

fn stop(outcome: Outcome, comparisons: Vec<Comparison>, srm: Option<SrmCheck>) -> Result<Decision> {
    Ok(Decision { outcome, comparisons, srm })
}

fn cont(reason: String) -> Outcome {
    Outcome::Continue { reason }
}

/// Decides one look at an experiment. Malformed input (unknown control, arms missing
/// from a metric, impossible counts, α outside (0, 1)) is an error; too little data is a
/// `Continue` with the reason.
pub fn decide(input: &DecisionInput, config: &DecisionConfig) -> Result<Decision> {
    let arms = validate(input, config)?;
    let short = too_few_samples(input, config);
    let srm = srm_check(input, config.srm_alpha)?;
    if let Some(s) = srm.filter(|s| s.mismatch) {
        let reason = format!(
            "sample ratio mismatch: traffic does not follow the configured weights (sequential p = {:.2e})",
            s.p_value
        );
        return stop(Outcome::Rollback { reason }, vec![], srm);
    }
    if let Some(reason) = short {
        // The sequential harm test is valid at every look, so a harmful arm is rolled back from
        // the first one: `minSamplesPerArm` delays promotions, never rollbacks.
        if config.method == Method::Sequential {
            let guard = early_harm(input, &arms, config)?;
            if let Some(rollback) = guard.iter().find(|c| c.verdict == Verdict::Inferior).map(|bad| harm(input, bad)) {
                return stop(rollback, guard, srm);
            }
        }
        return stop(cont(reason), vec![], srm);
    }
    if let (Method::FixedHorizon, Some(wait)) = (config.method, config.horizon_wait)
        && !wait.is_zero()
    {
        let wait = wait.as_secs();
        let left = format!("{}h{:02}m{:02}s", wait / 3600, wait / 60 % 60, wait % 60);
        return stop(cont(format!("fixed-horizon test waits for its horizon duration: {left} to go")), vec![], srm);
    }
    if let (Method::FixedHorizon, Some(planned)) = (config.method, config.planned_samples_per_arm) {
        let smallest = primary(input)?.arms.iter().map(|a| a.value.samples()).min().unwrap_or(0);
        if smallest < planned {
            return stop(
                cont(format!(
                    "fixed-horizon test waits for {planned} samples per arm; the smallest arm has {smallest}"
                )),
                vec![],
                srm,
            );
        }
    }
    let control = arms[0];
    let treatments = &arms[1..];
    let mut goal = Vec::with_capacity(treatments.len());
    for (&arm, metric) in treatments.iter().flat_map(|arm| input.goal.iter().map(move |m| (arm, m))) {
        match Pair::new(metric, control, arm)? {
            Some(pair) => goal.push(compare::goal(&pair, metric, config)?),
            None => {
                return stop(
                    cont(format!("`{}` has no variance yet in arm `{arm}` or `{control}`", metric.name)),
                    vec![],
                    srm,
                );
            }
        }
    }
    let mut guard = Vec::with_capacity(treatments.len() * input.guardrails.len());
    for g in &input.guardrails {
        for &arm in treatments {
            match Pair::new(&g.metric, control, arm)? {
                Some(pair) => guard.push(compare::guardrail(&pair, g, config)?),
                None => {
                    return stop(
                        cont(format!(
                            "guardrail `{}` has no variance yet in arm `{arm}` or `{control}`",
                            g.metric.name
                        )),
                        vec![],
                        srm,
                    );
                }
            }
        }
    }
    let direction = input.goal.as_ref().map_or(Direction::HigherIsBetter, |g| g.direction);
    compare::adjust(&mut goal, &mut guard, config, direction, harm_alpha(input, config))?;
    let outcome = match &input.goal {
        Some(metric) => outcome(input, metric, config, &goal, &guard),
        None => gate_outcome(input, treatments, config, &guard),
    };
    goal.extend(guard);
    stop(outcome, goal, srm)
}

/// Why there are too few samples to decide, if there are.
fn too_few_samples(input: &DecisionInput, config: &DecisionConfig) -> Option<String> {
    let metrics = input.goal.iter().chain(input.guardrails.iter().map(|g| &g.metric));
    for metric in metrics {
        for obs in &metric.arms {
            let floor = match obs.value {
                Observation::Proportion { .. } => 1,
                Observation::Mean { .. } => 2,
            };
            let needed = config.min_samples_per_arm.max(floor);
            if obs.value.samples() < needed {
                return Some(format!(
                    "arm `{}` has {} samples of `{}`; at least {needed} are needed",
                    obs.arm,
                    obs.value.samples(),
                    metric.name
                ));
            }
        }
    }
    None
}

/// The guardrails' harm tests on whatever data there is (pairs without variance yet are left out),
/// Holm-adjusted across the pairs tested.
fn early_harm(input: &DecisionInput, arms: &[&str], config: &DecisionConfig) -> Result<Vec<Comparison>> {
    let (control, treatments) = (arms[0], &arms[1..]);
    let mut guard = Vec::new();
    for g in &input.guardrails {
        for &arm in treatments {
            let has_data = |a: &str| g.metric.arms.iter().any(|o| o.arm == a && o.value.samples() > 0);
            if !has_data(arm) || !has_data(control) {
                continue;
            }
            if let Some(pair) = Pair::new(&g.metric, control, arm)? {
                guard.push(compare::guardrail(&pair, g, config)?);
            }
        }
    }
    let direction = input.goal.as_ref().map_or(Direction::HigherIsBetter, |g| g.direction);
    compare::adjust(&mut Vec::new(), &mut guard, config, direction, harm_alpha(input, config))?;
    Ok(guard)
}

/// Level of the guardrails' rollback tests (Holm across arm × guardrail). With a goal metric, a
/// rollback can also come from the goal's test showing every arm worse, which has probability
/// ≤ α/2 for an arm that is not (one side of a two-sided test at α); the harm tests get the other
/// α/2, so a false rollback stays ≤ α (+ srmAlpha). A guardrail-only gate has the whole α.
pub(crate) fn harm_alpha(input: &DecisionInput, config: &DecisionConfig) -> f64 {
    if input.goal.is_some() { config.alpha / 2.0 } else { config.alpha }
}

/// The rollback for an arm shown worse than the control by more than a guardrail's margin.
fn harm(input: &DecisionInput, bad: &Comparison) -> Outcome {
    Outcome::Rollback {
        reason: format!(
            "arm `{}` is worse than `{}` on guardrail `{}` by more than its margin (difference {:.4}, interval [{:.4}, {:.4}])",
            bad.arm, input.control, bad.metric, bad.difference, bad.interval[0], bad.interval[1]
        ),
    }
}

/// The goal metric, or for a guardrail-only gate the first guardrail: whose arms and samples count.
fn primary(input: &DecisionInput) -> Result<&Metric> {
    match input.goal.as_ref().or_else(|| input.guardrails.first().map(|g| &g.metric)) {
        Some(m) => Ok(m),
        None => invalid("a decision needs a goal metric or at least one guardrail"),
    }
}

/// A guardrail-only gate: harm rolls back; an arm shown non-inferior on every guardrail passes.
fn gate_outcome(input: &DecisionInput, treatments: &[&str], config: &DecisionConfig, guard: &[Comparison]) -> Outcome {
    if let Some(bad) = guard.iter().find(|c| c.verdict == Verdict::Inferior) {
        return harm(input, bad);
    }
    let passed = treatments
        .iter()
        .find(|arm| guard.iter().filter(|c| c.arm == **arm).all(|c| c.verdict == Verdict::NonInferior));
    match passed {
        Some(arm) => Outcome::Promote { arm: arm.to_string() },
        None if config.at_horizon() => {
            Outcome::Rollback { reason: "guardrails not shown non-inferior at the planned sample size".into() }
        }
        None => cont("guardrails are not yet shown non-inferior".into()),
    }
}

fn outcome(
    input: &DecisionInput,
    goal_metric: &Metric,
    config: &DecisionConfig,
    goal: &[Comparison],
    guard: &[Comparison],
) -> Outcome {
    if let Some(bad) = guard.iter().find(|c| c.verdict == Verdict::Inferior) {
        return harm(input, bad);
    }
    if goal.iter().all(|c| c.verdict == Verdict::Worse) {
        return Outcome::Rollback {
            reason: format!("every arm is worse than `{}` on `{}`", input.control, goal_metric.name),
        };
    }
    let sign = if goal_metric.direction == Direction::HigherIsBetter { 1.0 } else { -1.0 };
    let guard_ok = |arm: &str| guard.iter().filter(|c| c.arm == arm).all(|c| c.verdict == Verdict::NonInferior);
    let winners: Vec<&Comparison> = goal.iter().filter(|c| c.verdict == Verdict::Better).collect();
    let best = winners
        .iter()
        .filter(|c| guard_ok(&c.arm))
        .max_by(|a, b| (sign * a.difference).total_cmp(&(sign * b.difference)));
    let at_horizon = config.at_horizon();
    match (best, winners.first()) {
        (Some(best), _) => Outcome::Promote { arm: best.arm.clone() },
        (None, Some(w)) => {
            let pending: Vec<&str> = guard
                .iter()
                .filter(|c| c.arm == w.arm && c.verdict != Verdict::NonInferior)
                .map(|c| c.metric.as_str())
                .collect();
            let reason = format!(
                "arm `{}` beats `{}` on `{}` but guardrails {pending:?} are not yet shown non-inferior",
                w.arm, input.control, goal_metric.name
            );
            if at_horizon {
                Outcome::Rollback { reason: format!("{reason} at the planned horizon") }
            } else {
                cont(reason)
            }
        }
        (None, None) if at_horizon => Outcome::Rollback {
            reason: format!("no arm beat `{}` on `{}` at the planned sample size", input.control, goal_metric.name),
        },
        (None, None) => {
            let evidence = match config.method {
                Method::Bayesian => {
                    format!("highest P(better) {:.3}", goal.iter().filter_map(|c| c.prob_better).fold(0.0, f64::max))
                }
                _ => format!(
                    "smallest adjusted p-value {:.3}",
                    goal.iter().filter_map(|c| c.adjusted_p_value).fold(1.0, f64::min)
                ),
            };
            cont(format!("no arm differs from `{}` on `{}` yet ({evidence})", input.control, goal_metric.name))
        }
    }
}

/// Checks the input's shape and returns the arm names, control first.
fn validate<'a>(input: &'a DecisionInput, config: &DecisionConfig) -> Result<Vec<&'a str>> {
    if !(config.alpha > 0.0 && config.alpha < 1.0 && config.srm_alpha > 0.0 && config.srm_alpha < 1.0) {
        return invalid("alpha and srmAlpha must lie in (0, 1)");
    }
    if config.planned_samples_per_arm == Some(0) {
        return invalid("plannedSamplesPerArm must be positive");
    }
    let names: Vec<&str> = primary(input)?.arms.iter().map(|a| a.arm.as_str()).collect();
    if names.len() < 2 {
        return invalid("the goal metric (or first guardrail) needs the control and at least one other arm");
    }
    if (1..names.len()).any(|i| names[..i].contains(&names[i])) {
        return invalid("arm names must be unique");
    }
    if !names.contains(&input.control.as_str()) {
        return invalid(format!("control arm `{}` has no goal data", input.control));
    }
    for g in &input.guardrails {
        let mut theirs: Vec<&str> = g.metric.arms.iter().map(|a| a.arm.as_str()).collect();
        let mut ours = names.clone();
        theirs.sort_unstable();
        ours.sort_unstable();
        if theirs != ours {
            return invalid(format!("guardrail `{}` must have data for exactly the goal's arms", g.metric.name));
        }
        let m = match g.margin {
            Margin::Absolute(m) | Margin::Relative(m) => m,
        };
        if !(m.is_finite() && m >= 0.0) {
            return invalid(format!("guardrail `{}`: margin must be finite and ≥ 0", g.metric.name));
        }
    }
    let metrics = input.goal.iter().chain(input.guardrails.iter().map(|g| &g.metric));
    for m in metrics {
        for a in &m.arms {
            compare::check_observation(&a.value)
                .map_err(|e| super::StatsError::InvalidInput(format!("`{}` arm `{}`: {e}", m.name, a.arm)))?;
            if !a.batches.is_empty() && !matches!(a.value, Observation::Proportion { .. }) {
                return invalid(format!("`{}` arm `{}`: batches are for proportions only", m.name, a.arm));
            }
            if let Some((i, b)) = a.batches.iter().enumerate().find(|(_, b)| b.successes > b.trials) {
                return invalid(format!(
                    "`{}` arm `{}`: batches[{i}] has {} successes out of {} trials",
                    m.name, a.arm, b.successes, b.trials
                ));
            }
        }
    }
    let mut ordered = vec![input.control.as_str()];
    ordered.extend(names.into_iter().filter(|n| *n != input.control));
    Ok(ordered)
}

fn srm_check(input: &DecisionInput, srm_alpha: f64) -> Result<Option<SrmCheck>> {
    if input.assignment.is_empty() {
        return Ok(None);
    }
    let units: Vec<u64> = input.assignment.iter().map(|a| a.units).collect();
    let weights: Vec<f64> = input.assignment.iter().map(|a| a.weight).collect();
    let s = srm::sequential(&units, &weights, srm::DEFAULT_CONCENTRATION)?;
    Ok(Some(SrmCheck { p_value: s.p_value, ln_bayes_factor: s.ln_bayes_factor, mismatch: s.p_value <= srm_alpha }))
}

#[cfg(test)]
#[path = "decision_tests.rs"]
mod tests;
