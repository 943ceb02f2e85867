//! One look at an experiment: render the queries, read the counts, turn them into the
//! statistics engine's input. `measure` is the only I/O; the rest is pure.
//!
//! The controller calls `measure` → `decision_input` → `stats::decision::decide`, with
//! `decision_config` for the method and thresholds.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::join_all;

use crate::api::Routing;
use crate::api::{Analysis, Direction, Experiment, Method, Metric, Role};
use crate::stats::decision::{self as stats, DecisionConfig, DecisionInput};

use super::builtins::{self, QueryPair};
use super::error::{AnalysisError, ConfigError};
use super::source::{Counts, MetricSource, SourceError};
use super::template::{self, Context};

/// The rendered queries of one metric, per arm in `spec.arms` order.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricQueries {
    pub metric: String,
    pub arms: Vec<(String, QueryPair)>,
}

/// Counts per metric (in `spec.analysis.metrics` order) and arm (in `spec.arms` order).
#[derive(Clone, Debug, PartialEq)]
pub struct Measurements {
    pub metrics: Vec<MetricCounts>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MetricCounts {
    pub metric: String,
    pub arms: Vec<(String, Counts)>,
}

fn analysis(exp: &Experiment) -> Result<&Analysis, ConfigError> {
    exp.spec.analysis.as_ref().ok_or(ConfigError::NoAnalysis)
}

/// Renders every metric's queries for every arm; `since_start` becomes `{{ window }}`.
pub fn queries(exp: &Experiment, mode: Routing, since_start: Duration) -> Result<Vec<MetricQueries>, ConfigError> {
    let namespace = exp.metadata.namespace.as_deref().unwrap_or("default");
    let experiment = exp.metadata.name.as_deref().unwrap_or_default();
    let mut out = Vec::new();
    for metric in &analysis(exp)?.metrics {
        let mut arms = Vec::with_capacity(exp.spec.arms.len());
        for arm in &exp.spec.arms {
            let pair = match metric.builtin {
                Some(b) => builtins::templates(b, metric, mode, arm)?,
                // Validation guarantees both queries when there is no builtin.
                None => QueryPair {
                    success: metric.success_query.clone().unwrap_or_default(),
                    trial: metric.trial_query.clone().unwrap_or_default(),
                },
            };
            let ctx = Context { arm, service: &exp.spec.service.name, namespace, experiment, window: since_start };
            let render = |t: &str| template::render(t, &ctx, &metric.name);
            arms.push((arm.name.clone(), QueryPair { success: render(&pair.success)?, trial: render(&pair.trial)? }));
        }
        out.push(MetricQueries { metric: metric.name.clone(), arms });
    }
    Ok(out)
}

/// Reads every metric for every arm from `source`, all at once; a read that has not answered
/// within `limit` fails with [`SourceError::Deadline`]. The first failure in spec order is the error.
pub async fn measure(
    exp: &Experiment,
    mode: Routing,
    since_start: Duration,
    source: &dyn MetricSource,
    limit: Duration,
) -> Result<Measurements, AnalysisError> {
    let queries = queries(exp, mode, since_start)?;
    let deadline = tokio::time::Instant::now() + limit;
    let read = |pair| async move {
        tokio::time::timeout_at(deadline, source.counts(pair)).await.unwrap_or(Err(SourceError::Deadline(limit)))
    };
    let counts = join_all(queries.iter().map(|mq| join_all(mq.arms.iter().map(|(_, pair)| read(pair))))).await;
    let mut metrics = Vec::with_capacity(queries.len());
    for (mq, counts) in queries.into_iter().zip(counts) {
        let mut arms = Vec::with_capacity(mq.arms.len());
        for ((arm, _), read) in mq.arms.into_iter().zip(counts) {
            let counts = read.map_err(|error| AnalysisError::reading(&mq.metric, &arm, error))?;
            arms.push((arm, counts));
        }
        metrics.push(MetricCounts { metric: mq.metric, arms });
    }
    Ok(Measurements { metrics })
}

/// Whether larger values of a metric are better.
fn direction(metric: &Metric) -> Result<stats::Direction, ConfigError> {
    let lower_named = metric.name.contains("error") || metric.name.contains("latency");
    match (metric.direction, metric.role) {
        (Some(Direction::Increase), _) => Ok(stats::Direction::HigherIsBetter),
        (Some(Direction::Decrease), _) => Ok(stats::Direction::LowerIsBetter),
        (None, Role::Goal) => Ok(stats::Direction::HigherIsBetter),
        (None, Role::Guardrail) if metric.builtin.is_some() || lower_named => Ok(stats::Direction::LowerIsBetter),
        // Guessing would silently invert a guardrail: it would roll back on improvement.
        (None, Role::Guardrail) => Err(ConfigError::Direction(metric.name.clone())),
    }
}

/// Rounds extrapolated counts to whole ones; successes are clamped into [0, trials]
/// because two `increase()`s (or `_count − _bucket`) extrapolate independently.
fn observation(c: &Counts) -> stats::Observation {
    let trials = c.trials.round().max(0.0) as u64;
    let successes = (c.successes.round().max(0.0) as u64).min(trials);
    stats::Observation::Proportion { successes, trials }
}

/// The statistics engine's input from the counts `measure` read for the same experiment.
/// `weights` are the arms' current traffic weights, for the SRM check (when `srm.enabled`).
pub fn decision_input(
    exp: &Experiment,
    m: &Measurements,
    weights: &BTreeMap<String, f64>,
) -> Result<DecisionInput, ConfigError> {
    let analysis = analysis(exp)?;
    let goals = analysis.metrics.iter().filter(|x| x.role == Role::Goal).count();
    if goals > 1 {
        return Err(ConfigError::Goals(goals));
    }
    let mut goal = None;
    let mut guardrails = Vec::new();
    for (spec, counts) in analysis.metrics.iter().zip(&m.metrics) {
        let arms = counts
            .arms
            .iter()
            .map(|(arm, c)| stats::ArmObservation { arm: arm.clone(), value: observation(c) })
            .collect();
        let metric = stats::Metric { name: spec.name.clone(), direction: direction(spec)?, arms };
        match spec.role {
            Role::Goal => goal = Some(metric),
            // No margin: harm must be shown below zero, so promotion waits (conservative).
            Role::Guardrail => guardrails
                .push(stats::Guardrail { metric, margin: stats::Margin::Absolute(spec.margin.unwrap_or(0.0)) }),
        }
    }
    // Units for the SRM check: the goal's trials, or the first guardrail's in a
    // guardrail-only gate (a canary's analysis step).
    let primary = goal.as_ref().or(guardrails.first().map(|g| &g.metric)).ok_or(ConfigError::NoMetrics)?;
    let control = exp.spec.control_arm().map(|a| a.name.clone()).unwrap_or_default();
    let assignment = match &analysis.srm {
        Some(srm) if srm.enabled => primary
            .arms
            .iter()
            .map(|a| match weights.get(&a.arm) {
                Some(&weight) if weight > 0.0 && weight.is_finite() => {
                    Ok(stats::Assignment { arm: a.arm.clone(), weight, units: a.value.samples() })
                }
                other => Err(ConfigError::Weight { arm: a.arm.clone(), weight: other.copied() }),
            })
            .collect::<Result<_, _>>()?,
        _ => Vec::new(),
    };
    Ok(DecisionInput { control, goal, guardrails, assignment })
}

/// Method, α and the sample floor from `spec.analysis`; the engine's defaults otherwise.
pub fn decision_config(analysis: &Analysis) -> DecisionConfig {
    let defaults = DecisionConfig::default();
    DecisionConfig {
        method: match analysis.method {
            Method::Sequential => stats::Method::Sequential,
            Method::FixedHorizon => stats::Method::FixedHorizon,
            Method::Bayesian => stats::Method::Bayesian,
        },
        alpha: analysis.alpha(),
        min_samples_per_arm: analysis.min_samples_per_arm.map_or(defaults.min_samples_per_arm, |n| n.max(0) as u64),
        planned_samples_per_arm: analysis.horizon.as_ref().and_then(|h| h.samples_per_arm).map(|n| n.max(1) as u64),
        ..defaults
    }
}

/// [`decision_config`] for a look `since_start` into the analysis: a fixed horizon given as a
/// duration becomes the time still to wait (zero once it has elapsed: the one test runs then).
pub fn decision_config_at(analysis: &Analysis, since_start: Duration) -> DecisionConfig {
    let horizon =
        analysis.horizon.as_ref().and_then(|h| h.duration).filter(|_| analysis.method == Method::FixedHorizon);
    DecisionConfig { horizon_wait: horizon.map(|d| d.get().saturating_sub(since_start)), ..decision_config(analysis) }
}

#[cfg(test)]
#[path = "evaluate_tests.rs"]
mod tests;
