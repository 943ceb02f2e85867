//! Pure evaluation of `RolloutPolicy` constraints against an Experiment.
//! Enforcement (refusing to change traffic) is the controller's; this module only judges.

pub mod admission;
mod cel;
pub(crate) mod cron;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::api::validate::Problem;
use crate::api::{Experiment, HumanDuration, RolloutPolicy, Strategy};
use crate::plan::steps;

/// One broken rule of one policy.
#[derive(Clone, Debug, PartialEq)]
pub struct Violation {
    pub policy: String,
    /// The policy field that was broken, e.g. `maxStepWeight`, or `rule NAME` for one of its rules.
    pub rule: String,
    /// The experiment field at fault.
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: violates RolloutPolicy {:?} ({}): {}", self.path, self.policy, self.rule, self.message)
    }
}

/// The labels a namespace carries at least: Kubernetes sets `kubernetes.io/metadata.name` on every one.
pub fn default_namespace_labels(namespace: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("kubernetes.io/metadata.name".to_string(), namespace.to_string())])
}

/// Problems of the policy itself (bad cron schedules, bad selectors; durations fail at load).
pub fn check_policy(policy: &RolloutPolicy) -> Vec<Problem> {
    let mut out = Vec::new();
    for (i, w) in policy.spec.freeze_windows.iter().enumerate() {
        if let Err(why) = cron::Schedule::parse(&w.schedule) {
            out.push(Problem { path: format!("spec.freezeWindows[{i}].schedule"), message: why });
        }
    }
    if let Err(problems) = admission::compile(policy) {
        out.extend(problems);
    }
    if let Some(selector) = &policy.spec.namespace_selector {
        for (i, e) in selector.match_expressions.iter().flatten().enumerate() {
            if !["In", "NotIn", "Exists", "DoesNotExist"].contains(&e.operator.as_str()) {
                out.push(Problem {
                    path: format!("spec.namespaceSelector.matchExpressions[{i}].operator"),
                    message: format!("{:?} is not In, NotIn, Exists or DoesNotExist", e.operator),
                });
            }
        }
    }
    out
}

/// Whether a label selector selects the given labels (an absent selector selects everything).
pub(crate) fn selects(selector: Option<&LabelSelector>, labels: &BTreeMap<String, String>) -> bool {
    let Some(selector) = selector else { return true };
    let by_labels = selector.match_labels.iter().flatten().all(|(k, v)| labels.get(k) == Some(v));
    let by_expressions = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        match (e.operator.as_str(), labels.get(&e.key)) {
            ("In", Some(v)) => values.contains(v),
            ("NotIn", Some(v)) => !values.contains(v),
            ("NotIn", None) | ("DoesNotExist", None) | ("Exists", Some(_)) => true,
            _ => false,
        }
    });
    by_labels && by_expressions
}

/// The policy fields in the order their violations are listed (a policy's rules after its
/// fixed fields, its freeze last).
const FIELD_ORDER: [&str; 8] = [
    "allowedStrategies",
    "maxStepWeight",
    "maxWeightWithoutAnalysis",
    "requiredGuardrails",
    "maxAlpha",
    "minExposure",
    "minAnalysisDuration",
    "rule",
];

/// Every violation of `policy` by `exp`; `now` (Unix seconds) enables the freeze-window check.
/// The checks compiled to CEL ([`admission`]) run as the API server runs them at admission; a
/// policy whose rules do not compile is itself a violation (admission would refuse too).
pub fn evaluate(
    policy: &RolloutPolicy,
    exp: &Experiment,
    namespace_labels: &BTreeMap<String, String>,
    now: Option<i64>,
) -> Vec<Violation> {
    if !selects(policy.spec.namespace_selector.as_ref(), namespace_labels) {
        return vec![];
    }
    let name = policy.metadata.name.clone().unwrap_or_default();
    let mut out = match admission::compile(policy) {
        Ok(compiled) => compiled.evaluate(&variables(exp, namespace_labels)),
        Err(problems) => problems
            .into_iter()
            .map(|p| Violation {
                policy: name.clone(),
                rule: "rules".into(),
                path: "spec".into(),
                message: format!("the policy's {} does not compile: {}", p.path, p.message),
            })
            .collect(),
    };
    out.extend(plan_checks(policy, exp));
    let position = |v: &Violation| FIELD_ORDER.iter().position(|f| v.rule.starts_with(f)).unwrap_or(FIELD_ORDER.len());
    out.sort_by_key(position);
    if let Some(now) = now
        && let Some((window, until)) = active_freeze(policy, now)
    {
        let reason = window.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
        let message = format!("traffic changes are frozen until {}{reason}", format_unix(until));
        out.push(Violation { policy: name, rule: "freezeWindows".into(), path: "spec".into(), message });
    }
    out
}

/// The violations the API server refuses at admission: the compiled checks, in the policy's
/// order (the controller's own [`evaluate`] includes them, from the same compiled CEL). Empty
/// for a policy that does not compile: it has no admission objects.
pub fn admission_violations(
    policy: &RolloutPolicy,
    exp: &Experiment,
    namespace_labels: &BTreeMap<String, String>,
) -> Vec<Violation> {
    if !selects(policy.spec.namespace_selector.as_ref(), namespace_labels) {
        return vec![];
    }
    admission::compile(policy).map(|c| c.evaluate(&variables(exp, namespace_labels))).unwrap_or_default()
}

/// What the CEL checks read: the Experiment and its Namespace (as much of it as is known here:
/// its name and labels).
pub(crate) fn variables(exp: &Experiment, namespace_labels: &BTreeMap<String, String>) -> cel::Variables {
    let object = serde_json::to_value(exp).unwrap_or_default();
    let name = namespace_labels.get("kubernetes.io/metadata.name").cloned().or_else(|| exp.metadata.namespace.clone());
    let namespace = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": namespace_labels},
    });
    cel::Variables::new(&object, None, &namespace)
}

/// The fixed fields that need the plan's states or read durations: the controller's alone.
fn plan_checks(policy: &RolloutPolicy, exp: &Experiment) -> Vec<Violation> {
    let spec = &policy.spec;
    let name = policy.metadata.name.clone().unwrap_or_default();
    let mut out = Vec::new();
    let mut add = |rule: &str, path: &str, message: String| {
        out.push(Violation { policy: name.clone(), rule: rule.into(), path: path.into(), message })
    };
    let candidate_weights = candidate_weight_path(exp);
    if let Some(max) = spec.max_step_weight {
        let mut previous = 0;
        for (i, weight) in candidate_weights.iter().map(|(w, _)| *w).enumerate() {
            if weight - previous > max {
                add(
                    "maxStepWeight",
                    "spec.strategy",
                    format!(
                        "state {i} raises a candidate's weight from {previous} to {weight}, a step of {}; at most {max} allowed",
                        weight - previous
                    ),
                );
                break;
            }
            previous = weight;
        }
    }
    if let Some(max) = spec.max_weight_without_analysis {
        let before_analysis =
            candidate_weights.iter().take_while(|(_, analysed)| !analysed).map(|(w, _)| *w).max().unwrap_or(0);
        if before_analysis > max {
            add(
                "maxWeightWithoutAnalysis",
                "spec.analysis",
                format!(
                    "a candidate reaches weight {before_analysis} before any analysis has run; at most {max} allowed"
                ),
            );
        }
    }
    let analysis = exp.spec.analysis.as_ref();
    if let Some(min) = spec.min_exposure {
        match analysis.and_then(|a| a.min_duration) {
            Some(set) if set.get() >= min.get() => {}
            set => add(
                "minExposure",
                "spec.analysis.minDuration",
                format!("{} is shorter than the required {min}", set.map_or("unset".to_string(), |s| s.to_string())),
            ),
        }
    }
    if let Some(min) = spec.min_analysis_duration {
        match analysis.map(|a| HumanDuration::from(a.max_duration())) {
            None => add("minAnalysisDuration", "spec.analysis", format!("an analysis of at least {min} is required")),
            Some(max) if max < min => add(
                "minAnalysisDuration",
                "spec.analysis.maxDuration",
                format!("{max} is shorter than the required {min}"),
            ),
            _ => {}
        }
    }
    out
}

/// The highest candidate weight of each strategy state, and whether an analysis has run by then.
fn candidate_weight_path(exp: &Experiment) -> Vec<(i32, bool)> {
    let spec = &exp.spec;
    let Ok(states) = steps::states(spec, &steps::Replicas { control: Some(100) }) else { return vec![] };
    let mut analysed_after = vec![false; states.len()];
    if let Strategy::Canary(canary) = &spec.strategy {
        // State i+1 follows step i; an analysis step guards the states after it.
        let mut seen = false;
        for (i, step) in canary.steps.iter().enumerate() {
            seen |= step.analysis.is_some();
            analysed_after[i + 1] = seen;
        }
    } else if spec.analysis.is_some() && spec.strategy.ab_test().is_none() {
        // Blue/green and the replica strategies run their analysis before leaving the start.
        analysed_after.iter_mut().skip(1).for_each(|a| *a = true);
    }
    let candidate_max = |s: &steps::State| {
        s.weights
            .iter()
            .filter(|(arm, _)| spec.candidates().any(|a| &a.name == arm))
            .map(|(_, w)| *w)
            .max()
            .unwrap_or(0)
    };
    states.iter().zip(analysed_after).map(|(s, analysed)| (candidate_max(s), analysed)).collect()
}

/// The freeze window `now` falls in, and when it ends.
pub(crate) fn active_freeze(policy: &RolloutPolicy, now: i64) -> Option<(&crate::api::FreezeWindow, i64)> {
    policy.spec.freeze_windows.iter().find_map(|w| {
        let schedule = cron::Schedule::parse(&w.schedule).ok()?;
        let length = w.duration.get().as_secs() as i64;
        let this_minute = now - now.rem_euclid(60);
        // A window opened at a matching minute no longer ago than its length.
        (0..=length / 60)
            .map(|k| this_minute - 60 * k)
            .find(|start| start + length > now && schedule.matches(cron::Minute::from_unix(*start)))
            .map(|start| (w, start + length))
    })
}

fn format_unix(secs: i64) -> String {
    let m = cron::Minute::from_unix(secs);
    format!("{:02}-{:02} {:02}:{:02} UTC", m.month, m.day, m.hour, m.minute)
}
