//! `forklane list`: one row per experiment. The rows serialised are the `-o json` document.

use jiff::Timestamp;
use kube::ResourceExt;
use serde::Serialize;

use forklane_core::api::{Experiment, Strategy};

use super::style::{Cell, Style, plain, table};
use super::summary::{age, phase_name, strategy_name};
use super::tree::{p_value, phase_look};

#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub namespace: String,
    pub name: String,
    pub phase: String,
    pub strategy: &'static str,
    /// `status.weightSummary`.
    pub weights: Option<String>,
    /// `current/steps` for a canary, else the state index.
    pub step: Option<String>,
    /// The outcome of the latest analysis look…
    pub last_decision: Option<String>,
    /// …and the smallest p-value of its goal comparisons.
    pub goal_p: Option<f64>,
    pub age: Option<String>,
}

pub fn row(exp: &Experiment, now: Timestamp) -> Row {
    let status = exp.status.clone().unwrap_or_default();
    let step = status.current_step.map(|k| match &exp.spec.strategy {
        Strategy::Canary(c) => format!("{k}/{}", c.steps.len()),
        _ => k.to_string(),
    });
    let look = status.history.iter().rev().find(|l| l.outcome.is_some());
    let goal_p = look.and_then(|l| {
        let goals = l.metrics.iter().filter(|m| m.role == "goal").filter_map(|m| m.p);
        goals.reduce(f64::min)
    });
    let last_decision = look.and_then(|l| l.outcome.clone()).or_else(|| {
        let stats = status.statistics.as_ref()?;
        stats["outcome"]["action"].as_str().map(String::from)
    });
    Row {
        namespace: exp.namespace().unwrap_or_default(),
        name: exp.name_any(),
        phase: phase_name(status.phase).to_string(),
        strategy: strategy_name(&exp.spec.strategy),
        weights: status.weight_summary.clone(),
        step,
        last_decision,
        goal_p,
        age: exp.metadata.creation_timestamp.as_ref().map(|t| age(t.0, now)),
    }
}

/// The table, with a NAMESPACE column when `all_namespaces`.
pub fn render_table(rows: &[Row], all_namespaces: bool, style: Style) -> String {
    let mut header = vec!["NAME", "PHASE", "STRATEGY", "WEIGHTS", "STEP", "LAST DECISION", "AGE"];
    if all_namespaces {
        header.insert(0, "NAMESPACE");
    }
    let dash = |v: &Option<String>| plain(v.clone().unwrap_or_else(|| "-".into()));
    let cells: Vec<Vec<Cell>> = rows
        .iter()
        .map(|r| {
            let decision = match (&r.last_decision, r.goal_p) {
                (Some(outcome), Some(p)) => Some(format!("{outcome} (p {})", p_value(p))),
                (outcome, _) => outcome.clone(),
            };
            let mut line = vec![
                plain(&r.name),
                (format!("{} {}", phase_look(&r.phase).0, r.phase), phase_look(&r.phase).1),
                plain(r.strategy),
                dash(&r.weights),
                dash(&r.step),
                dash(&decision),
                dash(&r.age),
            ];
            if all_namespaces {
                line.insert(0, plain(&r.namespace));
            }
            line
        })
        .collect();
    table(style, "", &header, &cells)
}
