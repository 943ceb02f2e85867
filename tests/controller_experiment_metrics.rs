//! The per-experiment series of the controller's `/metrics` (weights, phase, last decision) on the
//! embedded cluster: set from the status the controller wrote, gone with the experiment.

use crate::support;

use std::time::Duration;

use forklane_core::api::{Builtin, Metric, MetricKind, Phase};
use forklane_core::fixtures::{self, analysis, guardrail};
use kube::api::DeleteParams;
use support::e2e::*;

/// The sample lines of `/metrics` that belong to the experiment `name` in the default namespace.
fn series_of(env: &Env, name: &str) -> Vec<String> {
    let of = format!("namespace=\"{NS}\",name=\"{name}\"");
    env.controller_metrics.encode().lines().filter(|l| l.contains(&of)).map(str::to_string).collect()
}

/// The value of the one series whose line starts with `series`.
fn value(series: &[String], labels: &str) -> f64 {
    let line = series.iter().find(|l| l.starts_with(labels)).unwrap_or_else(|| panic!("{labels} in {series:#?}"));
    line.rsplit_once(' ').unwrap().1.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_experiments_series_show_its_decision_and_go_with_it() {
    let mut env = Env::start(true, false).await;
    let conversion = Metric { kind: Some(MetricKind::Proportion), ..fixtures::conversion() };
    let metrics = [conversion, guardrail("error-rate", Builtin::IstioErrorRate, 0.01)];
    let analysis = analysis(metrics).interval("1m").min_samples_per_arm(500).max_duration("2h");
    start_ab_test_with_a_true_winner(&mut env, analysis).await;
    let exp = env.wait_for_phase("ab", Duration::from_secs(90), &[Phase::Succeeded, Phase::RolledBack]).await;
    let status = exp.status.unwrap();
    assert_eq!(status.winner.as_deref(), Some("v2"), "{:?}", status.message);

    let ours = format!("namespace=\"{NS}\",name=\"ab\"");
    let series = series_of(&env, "ab");
    assert_eq!(value(&series, &format!("forklane_experiment_weight{{{ours},arm=\"v2\"}}")), 100.0);
    assert_eq!(value(&series, &format!("forklane_experiment_phase{{{ours},phase=\"Succeeded\"}}")), 1.0);
    let phases = series.iter().filter(|l| l.starts_with("forklane_experiment_phase")).count();
    assert_eq!(phases, 1, "only the current phase has a series: {series:#?}");
    assert_eq!(value(&series, &format!("forklane_experiment_decision{{{ours},outcome=\"promote\"}}")), 1.0);
    let p = value(&series, &format!("forklane_experiment_decision_p_value{{{ours},metric=\"conversion\",arm=\"v2\"}}"));
    assert!(p < 0.05, "the promotion's p-value, from the status' last look: {p}");
    let last = status.history.iter().rev().find(|l| l.outcome.is_some()).expect("a decision in the history");
    let in_status = last.metrics.iter().find(|m| m.metric == "conversion").and_then(|m| m.p);
    assert_eq!(in_status, Some(p));
    assert!(value(&series, &format!("forklane_experiment_samples{{{ours},arm=\"v1\"}}")) >= 500.0);

    env.experiments().delete("ab", &DeleteParams::default()).await.unwrap();
    env.wait_gone("ab", Duration::from_secs(30)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !series_of(&env, "ab").is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "stale series: {:#?}", series_of(&env, "ab"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    env.shutdown().await;
}
