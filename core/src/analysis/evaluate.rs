//! One look at an experiment: render the queries, read the counts, turn them into the
//! statistics engine's input. `measure` is the only I/O; the rest is pure.
//!
//! The controller calls `measure` → `decision_input` → `stats::decision::decide`, with
//! `decision_config` for the method and thresholds.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::join_all;

use crate::api::Routing;
use crate::api::{Analysis, Direction, Experiment, Method, Metric, Role, Strategy};
use crate::stats::decision::{self as stats, DecisionConfig, DecisionInput};

use super::builtins::{self, QueryPair};
use super::error::{AnalysisError, ConfigError};
use super::source::{Counts, MetricSource, SourceError, combine, count_or_zero};
use super::template::{self, Cohorts, Context};

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
    /// The SRM check's units per arm when they have their own query ([`assignment_queries`]);
    /// `None`: the primary metric's trials are the units.
    pub assignment: Option<Vec<(String, f64)>>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MetricCounts {
    pub metric: String,
    pub arms: Vec<(String, Counts)>,
    /// Per arm (in `arms` order), the counts of each analysis interval, oldest first, with the same
    /// boundaries for every arm. Empty when the look spans too few intervals ([`batch_plan`]), or
    /// when some interval has no data for an arm (a trial query without a point, or a success
    /// query without data while the totals have successes): the metric is then analysed on its
    /// totals alone.
    pub batches: Vec<Vec<Counts>>,
}

/// At most this many batches per look: enough degrees of freedom for the batch-means variance,
/// few enough that each batch holds many units.
const MAX_BATCHES: u64 = 16;

/// Number and length of a look's batches: B = min(16, whole analysis intervals since the
/// start) batches of since_start / B (whole seconds), the last one ending now. `None` below 2.
pub(crate) fn batch_plan(since_start: Duration, interval: Duration) -> Option<(usize, Duration)> {
    let intervals = since_start.as_secs() / interval.as_secs().max(1);
    let count = intervals.min(MAX_BATCHES);
    (count >= 2).then(|| (count as usize, Duration::from_secs(since_start.as_secs() / count)))
}

fn analysis(exp: &Experiment) -> Result<&Analysis, ConfigError> {
    exp.spec.analysis.as_ref().ok_or(ConfigError::NoAnalysis)
}

/// Renders every metric's queries for every arm; `since_start` becomes `{{ window }}`.
pub fn queries(exp: &Experiment, mode: Routing, since_start: Duration) -> Result<Vec<MetricQueries>, ConfigError> {
    let namespace = exp.metadata.namespace.as_deref().unwrap_or("default");
    let experiment = exp.metadata.name.as_deref().unwrap_or_default();
    let mut out = Vec::new();
    let cohort = Cohorts::analysed(mode, exp.spec.analysis_unit());
    for metric in &analysis(exp)?.metrics {
        let mut arms = Vec::with_capacity(exp.spec.arms.len());
        for arm in &exp.spec.arms {
            let pair = match metric.builtin {
                Some(b) => builtins::templates(b, metric, mode, cohort, arm)?,
                // Validation guarantees both queries when there is no builtin.
                None => QueryPair {
                    success: metric.success_query.clone().unwrap_or_default(),
                    trial: metric.trial_query.clone().unwrap_or_default(),
                },
            };
            let ctx =
                Context { arm, service: &exp.spec.service.name, namespace, experiment, window: since_start, cohort };
            let render = |t: &str| template::render(t, &ctx, &metric.name);
            arms.push((arm.name.clone(), QueryPair { success: render(&pair.success)?, trial: render(&pair.trial)? }));
        }
        out.push(MetricQueries { metric: metric.name.clone(), arms });
    }
    Ok(out)
}

/// The SRM check's unit query per arm (in `spec.arms` order) when the check is on and Istio or the
/// Gateway API routes: each arm's first exposures (cohort `assigned`). `None` without a mesh, where
/// the primary metric's trials are the units, or when the check is off.
pub fn assignment_queries(
    exp: &Experiment,
    mode: Routing,
    since_start: Duration,
) -> Result<Option<Vec<(String, String)>>, ConfigError> {
    let srm = analysis(exp)?.srm.as_ref().is_some_and(|s| s.enabled);
    if !srm {
        return Ok(None);
    }
    let namespace = exp.metadata.namespace.as_deref().unwrap_or("default");
    let experiment = exp.metadata.name.as_deref().unwrap_or_default();
    let cohort = Cohorts::analysed(mode, exp.spec.analysis_unit());
    let mut queries = Vec::with_capacity(exp.spec.arms.len());
    for arm in &exp.spec.arms {
        let Some(template) = builtins::assignment_template(mode, arm) else { return Ok(None) };
        let ctx = Context { arm, service: &exp.spec.service.name, namespace, experiment, window: since_start, cohort };
        queries.push((arm.name.clone(), template::render(&template, &ctx, SRM)?));
    }
    Ok(Some(queries))
}

/// The name the SRM check's reads go by in errors.
const SRM: &str = "srm";

/// Reads the SRM check's units per arm, by the `deadline` of the look. No data is no units yet.
async fn read_assignment(
    queries: Option<Vec<(String, String)>>,
    source: &dyn MetricSource,
    deadline: tokio::time::Instant,
    limit: Duration,
) -> Result<Option<Vec<(String, f64)>>, AnalysisError> {
    let Some(queries) = queries else { return Ok(None) };
    let read = |query| async move { count_or_zero(query, within(deadline, limit, source.value(query)).await) };
    let values = join_all(queries.iter().map(|(_, q)| read(q))).await;
    let units = queries.into_iter().zip(values).map(|((arm, _), read)| match read {
        Ok(v) => Ok((arm, v)),
        Err(error) => Err(AnalysisError::reading(SRM, &arm, error)),
    });
    units.collect::<Result<_, _>>().map(Some)
}

/// Reads every metric for every arm from `source`, all at once, with its per-interval batches
/// ([`batch_plan`]: one `values` read per query); a read that has not answered within `limit`
/// fails with [`SourceError::Deadline`]. The first failure in spec order is the error; a batch
/// read fails the look as a count read does, except that one without data only leaves the metric
/// without batches.
pub async fn measure(
    exp: &Experiment,
    mode: Routing,
    since_start: Duration,
    source: &dyn MetricSource,
    limit: Duration,
) -> Result<Measurements, AnalysisError> {
    let queries = queries(exp, mode, since_start)?;
    let assignment_queries = assignment_queries(exp, mode, since_start)?;
    let plan = batch_plan(since_start, analysis(exp)?.interval());
    let batch_queries = match plan {
        Some((_, length)) => self::queries(exp, mode, length)?,
        None => Vec::new(),
    };
    let deadline = tokio::time::Instant::now() + limit;
    let read = |pair| within(deadline, limit, source.counts(pair));
    let read_batches = |pair| {
        let (count, length) = plan.unwrap_or_default();
        within(deadline, limit, batch_counts(source, pair, length, count))
    };
    let (counts, batches, units) = futures::join!(
        join_all(queries.iter().map(|mq| join_all(mq.arms.iter().map(|(_, pair)| read(pair))))),
        join_all(batch_queries.iter().map(|mq| join_all(mq.arms.iter().map(|(_, pair)| read_batches(pair))))),
        read_assignment(assignment_queries, source, deadline, limit)
    );
    let mut batches = batches.into_iter();
    let mut metrics = Vec::with_capacity(queries.len());
    for (mq, counts) in queries.into_iter().zip(counts) {
        let mut arms = Vec::with_capacity(mq.arms.len());
        let mut batches_of = batches.next().unwrap_or_default().into_iter();
        let mut per_arm = Vec::with_capacity(mq.arms.len());
        for ((arm, _), read) in mq.arms.into_iter().zip(counts) {
            let counts = read.map_err(|error| AnalysisError::reading(&mq.metric, &arm, error))?;
            match batches_of.next() {
                // Successes in total but none in the intervals' answer: the split is unknown.
                Some(Ok((split, no_successes))) => {
                    per_arm.push((!no_successes || counts.successes == 0.0).then_some(split))
                }
                // An interval without data (series born since the start, a scrape gap) while the
                // totals have data: the metric is analysed on its totals.
                Some(Err(SourceError::NoData { .. })) => per_arm.push(None),
                Some(Err(error)) => return Err(AnalysisError::reading(&mq.metric, &arm, error)),
                None => {}
            }
            arms.push((arm, counts));
        }
        let batches = per_arm.into_iter().collect::<Option<Vec<_>>>().unwrap_or_default();
        metrics.push(MetricCounts { metric: mq.metric, arms, batches });
    }
    Ok(Measurements { metrics, assignment: units? })
}

/// `read`, or [`SourceError::Deadline`] once the look's deadline passes.
async fn within<T>(
    deadline: tokio::time::Instant,
    limit: Duration,
    read: impl std::future::Future<Output = Result<T, SourceError>>,
) -> Result<T, SourceError> {
    tokio::time::timeout_at(deadline, read).await.unwrap_or(Err(SourceError::Deadline(limit)))
}

/// One arm's per-batch counts: `count` values of the trial and success queries, `length` apart.
/// A success query without data (in some interval: the source cannot say which) reads as zero
/// successes in every interval, flagged `true` for [`measure`] to check against the totals.
async fn batch_counts(
    source: &dyn MetricSource,
    pair: &QueryPair,
    length: Duration,
    count: usize,
) -> Result<(Vec<Counts>, bool), SourceError> {
    let (trials, successes) =
        futures::join!(source.values(&pair.trial, length, count), source.values(&pair.success, length, count));
    let trials = trials?;
    let (successes, missing) = match successes {
        Err(SourceError::NoData { .. }) => (vec![0.0; trials.len()], true),
        other => (other?, false),
    };
    for (query, values) in [(&pair.trial, &trials), (&pair.success, &successes)] {
        if values.len() != count {
            return Err(SourceError::Query {
                query: query.clone(),
                message: format!("returned {} values for {count} intervals", values.len()),
            });
        }
    }
    let split =
        trials.into_iter().zip(successes).map(|(t, s)| combine(pair, Ok(t), Ok(s))).collect::<Result<_, _>>()?;
    Ok((split, missing))
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
fn whole(c: &Counts) -> (u64, u64) {
    let trials = c.trials.round().max(0.0) as u64;
    ((c.successes.round().max(0.0) as u64).min(trials), trials)
}

fn observation(c: &Counts) -> stats::Observation {
    let (successes, trials) = whole(c);
    stats::Observation::Proportion { successes, trials }
}

fn batch(c: &Counts) -> stats::Batch {
    let (successes, trials) = whole(c);
    stats::Batch { successes, trials }
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
            .enumerate()
            .map(|(i, (arm, c))| stats::ArmObservation {
                arm: arm.clone(),
                value: observation(c),
                batches: counts.batches.get(i).map_or(Vec::new(), |b| b.iter().map(batch).collect()),
            })
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
    // With Istio the units are each arm's first exposures, read by their own query.
    let units = |arm: &str, trials: u64| {
        let read = m.assignment.as_ref().and_then(|units| units.iter().find(|(a, _)| a == arm));
        read.map_or(trials, |(_, n)| n.round().max(0.0) as u64)
    };
    let assignment = match &analysis.srm {
        Some(srm) if srm.enabled => primary
            .arms
            .iter()
            .map(|a| match weights.get(&a.arm) {
                Some(&weight) if weight > 0.0 && weight.is_finite() => {
                    Ok(stats::Assignment { arm: a.arm.clone(), weight, units: units(&a.arm, a.value.samples()) })
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

/// The configuration of one look at `exp`, `since_start` into its analysis:
/// [`decision_config_at`], except that a canary shares α and srmAlpha evenly among its analysis
/// steps. Each step is a test of its own data, and the canary rolls back if any one step does: at
/// α/K and srmAlpha/K for K analysed steps, a false rollback over the whole canary stays
/// ≤ α + srmAlpha (Bonferroni, whatever the steps' dependence). A false promotion needs every
/// step's gate to pass wrongly, which is ≤ α/K.
pub fn look_config(exp: &Experiment, since_start: Duration) -> Result<DecisionConfig, ConfigError> {
    let config = decision_config_at(analysis(exp)?, since_start);
    let steps = match &exp.spec.strategy {
        Strategy::Canary(c) => c.steps.iter().filter(|s| s.analysis.is_some()).count().max(1),
        _ => 1,
    };
    Ok(DecisionConfig { alpha: config.alpha / steps as f64, srm_alpha: config.srm_alpha / steps as f64, ..config })
}

#[cfg(test)]
#[path = "evaluate_tests.rs"]
mod tests;
