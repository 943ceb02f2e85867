//! [`Summary`]: what `forklane get` shows of one experiment, computed from an [`Observed`] read at a
//! given time. Serialised, it is the `-o json` document; [`super::tree`] renders it for a terminal.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use serde::Serialize;

use forklane_core::api::{Experiment, Look, Phase, Strategy};
use forklane_core::clock::parse_time;

use super::observed::{Observed, event_time};
use super::steps::{Step, steps};

/// How many of the latest Events the summary keeps.
const EVENTS_SHOWN: usize = 8;

/// The p-value at or below which the SRM check reports a mismatch (the controller's `srmAlpha`).
const SRM_ALPHA: f64 = 0.001;

#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub name: String,
    pub namespace: String,
    /// `Pending` until the controller has seen the experiment.
    pub phase: String,
    pub message: Option<String>,
    pub strategy: &'static str,
    /// The routing in use (`status.mesh`): `istio`, `gatewayAPI` or `none`.
    pub routing: Option<&'static str>,
    pub winner: Option<String>,
    pub final_arm: Option<String>,
    pub created: Option<String>,
    pub age: Option<String>,
    pub steps: Vec<Step>,
    pub arms: Vec<ArmSummary>,
    pub analysis: Option<AnalysisSummary>,
    pub conditions: Vec<ConditionSummary>,
    /// The latest Events, oldest first.
    pub events: Vec<EventSummary>,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ArmSummary {
    pub name: String,
    pub control: bool,
    pub deployment: Option<String>,
    /// Whether the named Deployment exists (`false` without one).
    pub deployment_found: bool,
    pub ready_pods: Option<i32>,
    pub pods: Option<i32>,
    /// The weight the experiment routes to the arm now (percent).
    pub desired_weight: Option<i32>,
    /// The share the data plane is measured to give it (percent).
    pub achieved_weight: Option<f64>,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisSummary {
    /// `history` (the latest look of `status.history`) or `statistics` (`status.statistics`).
    pub source: &'static str,
    /// When the latest look was taken (for `statistics`: `status.lastAnalysisAt`).
    pub at: Option<String>,
    pub age: Option<String>,
    /// `continue`, `promote` or `rollback`.
    pub outcome: Option<String>,
    pub metrics: Vec<MetricSummary>,
    pub srm: Option<SrmSummary>,
    pub samples: BTreeMap<String, f64>,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MetricSummary {
    pub metric: String,
    /// The treatment arm, compared with the control.
    pub arm: String,
    /// `goal` or `guardrail`.
    pub role: String,
    /// A guardrail's largest acceptable harm, from the spec.
    pub margin: Option<f64>,
    /// arm − control, in the metric's units.
    pub estimate: Option<f64>,
    /// The always-valid interval of the estimate; an unbounded side is absent.
    pub low: Option<f64>,
    pub high: Option<f64>,
    pub p: Option<f64>,
    /// `better`, `worse`, `nonInferior`, `inferior` or `inconclusive`.
    pub verdict: String,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SrmSummary {
    pub p: f64,
    pub mismatch: bool,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConditionSummary {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EventSummary {
    pub at: Option<String>,
    pub age: Option<String>,
    /// `Normal` or `Warning`.
    #[serde(rename = "type")]
    pub type_: String,
    pub reason: String,
    pub message: String,
    pub count: i32,
}

/// The summary of `observed` as of `now` (ages count to it).
pub fn summary(observed: &Observed, now: Timestamp) -> Summary {
    let exp = &observed.experiment;
    let status = exp.status.clone().unwrap_or_default();
    let created = exp.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let events = observed.events.iter().rev().take(EVENTS_SHOWN).rev();
    Summary {
        name: observed.name(),
        namespace: observed.namespace(),
        phase: phase_name(status.phase).to_string(),
        message: status.message.clone(),
        strategy: strategy_name(&exp.spec.strategy),
        routing: status.mesh.map(|m| m.as_str()),
        winner: status.winner.clone(),
        final_arm: status.final_arm.clone(),
        created: created.map(|t| t.to_string()),
        age: created.map(|t| age(t, now)),
        steps: steps(exp),
        arms: arms(observed),
        analysis: analysis(exp, now),
        conditions: status
            .conditions
            .iter()
            .map(|c| ConditionSummary {
                type_: c.type_.clone(),
                status: c.status.clone(),
                reason: c.reason.clone(),
                message: c.message.clone(),
            })
            .collect(),
        events: events
            .map(|e| {
                let at = event_time(e);
                EventSummary {
                    at: at.map(|t| t.to_string()),
                    age: at.map(|t| age(t, now)),
                    type_: e.type_.clone().unwrap_or_else(|| "Normal".into()),
                    reason: e.reason.clone().unwrap_or_default(),
                    message: e.message.clone().unwrap_or_default(),
                    count: e.count.unwrap_or(1),
                }
            })
            .collect(),
    }
}

pub(crate) fn phase_name(phase: Option<Phase>) -> &'static str {
    match phase {
        None | Some(Phase::Pending) => "Pending",
        Some(Phase::Progressing) => "Progressing",
        Some(Phase::Paused) => "Paused",
        Some(Phase::Analysing) => "Analysing",
        Some(Phase::Promoting) => "Promoting",
        Some(Phase::Succeeded) => "Succeeded",
        Some(Phase::RolledBack) => "RolledBack",
        Some(Phase::Failed) => "Failed",
    }
}

pub(crate) fn strategy_name(strategy: &Strategy) -> &'static str {
    match strategy {
        Strategy::Recreate(_) => "recreate",
        Strategy::RollingUpdate(_) => "rollingUpdate",
        Strategy::BlueGreen(_) => "blueGreen",
        Strategy::Canary(_) => "canary",
        Strategy::AbTest(_) => "abTest",
    }
}

/// How long ago `then` was, as kubectl writes ages (`45s`, `12m`, `3h`, `2d`). A time after `now`
/// (the controller's clock ahead of ours) is `0s`.
pub(crate) fn age(then: Timestamp, now: Timestamp) -> String {
    let s = then.duration_until(now).as_secs().max(0);
    match s {
        0..120 => format!("{s}s"),
        120..7_200 => format!("{}m", s / 60),
        7_200..172_800 => format!("{}h", s / 3_600),
        _ => format!("{}d", s / 86_400),
    }
}

fn arms(observed: &Observed) -> Vec<ArmSummary> {
    let status = observed.experiment.status.clone().unwrap_or_default();
    observed
        .experiment
        .spec
        .arms
        .iter()
        .map(|arm| {
            let deployment = observed.deployments.get(&arm.name);
            let weight = status.weights.iter().find(|w| w.arm == arm.name);
            let (ready_pods, pods) = deployment.map(pods).unzip();
            ArmSummary {
                name: arm.name.clone(),
                control: arm.control,
                deployment: arm.deployment.clone(),
                deployment_found: deployment.is_some(),
                ready_pods,
                pods,
                desired_weight: weight.map(|w| w.desired),
                achieved_weight: weight.map(|w| w.achieved),
            }
        })
        .collect()
}

/// Ready and total pods, as the Deployment's status counts them.
fn pods(deployment: &Deployment) -> (i32, i32) {
    let status = deployment.status.as_ref();
    (status.and_then(|s| s.ready_replicas).unwrap_or(0), status.and_then(|s| s.replicas).unwrap_or(0))
}

/// The latest analysis: the last look of the history that analysed (its metrics, or those of the
/// last look that had any: a look stopped by an SRM mismatch compares nothing), else
/// `status.statistics`.
fn analysis(exp: &Experiment, now: Timestamp) -> Option<AnalysisSummary> {
    let status = exp.status.as_ref()?;
    let margins = margins(exp);
    let latest = status.history.iter().rev().find(|l| l.outcome.is_some());
    let Some(latest) = latest else { return from_statistics(exp, &margins, now) };
    let with_metrics = status.history.iter().rev().find(|l| !l.metrics.is_empty()).unwrap_or(latest);
    let samples = if latest.samples.is_empty() {
        status.samples.iter().map(|s| (s.arm.clone(), s.samples)).collect()
    } else {
        latest.samples.clone()
    };
    Some(AnalysisSummary {
        source: "history",
        at: Some(latest.at.clone()),
        age: age_of(&latest.at, now),
        outcome: latest.outcome.clone(),
        metrics: metrics_of(with_metrics, &margins),
        srm: latest.srm_p.map(|p| SrmSummary { p, mismatch: p <= SRM_ALPHA }),
        samples,
    })
}

fn metrics_of(look: &Look, margins: &BTreeMap<String, f64>) -> Vec<MetricSummary> {
    look.metrics
        .iter()
        .map(|m| MetricSummary {
            metric: m.metric.clone(),
            arm: m.arm.clone(),
            role: m.role.clone(),
            margin: margins.get(&m.metric).copied(),
            estimate: m.estimate,
            low: m.low,
            high: m.high,
            p: m.p,
            verdict: m.verdict.clone(),
        })
        .collect()
}

/// Guardrail margins by metric name.
fn margins(exp: &Experiment) -> BTreeMap<String, f64> {
    let metrics = exp.spec.analysis.iter().flat_map(|a| &a.metrics);
    metrics.filter_map(|m| Some((m.name.clone(), m.margin?))).collect()
}

/// `status.statistics`, the last decision as the controller wrote it (free-form JSON: what does
/// not read as expected is left out).
fn from_statistics(exp: &Experiment, margins: &BTreeMap<String, f64>, now: Timestamp) -> Option<AnalysisSummary> {
    let status = exp.status.as_ref()?;
    let stats = status.statistics.as_ref()?;
    let text = |v: &serde_json::Value| v.as_str().map(String::from);
    let finite = |v: &serde_json::Value| v.as_f64().filter(|x| x.is_finite());
    let comparisons = stats["comparisons"].as_array().map(Vec::as_slice).unwrap_or_default();
    let metrics = comparisons
        .iter()
        .filter_map(|c| {
            let metric = text(&c["metric"])?;
            Some(MetricSummary {
                margin: margins.get(&metric).copied(),
                metric,
                arm: text(&c["arm"])?,
                role: text(&c["role"])?,
                estimate: finite(&c["difference"]),
                low: finite(&c["interval"][0]),
                high: finite(&c["interval"][1]),
                p: finite(&c["pValue"]),
                verdict: text(&c["verdict"]).unwrap_or_default(),
            })
        })
        .collect();
    let srm = stats["srm"]["pValue"]
        .as_f64()
        .map(|p| SrmSummary { p, mismatch: stats["srm"]["mismatch"].as_bool().unwrap_or(p <= SRM_ALPHA) });
    Some(AnalysisSummary {
        source: "statistics",
        at: status.last_analysis_at.clone(),
        age: status.last_analysis_at.as_deref().and_then(|t| age_of(t, now)),
        outcome: text(&stats["outcome"]["action"]),
        metrics,
        srm,
        samples: status.samples.iter().map(|s| (s.arm.clone(), s.samples)).collect(),
    })
}

/// The age of an RFC 3339 time.
fn age_of(text: &str, now: Timestamp) -> Option<String> {
    parse_time(text).map(|t| age(t, now))
}
