//! deploy/grafana/forklane-dashboard.json: importable, and every query names only metrics the
//! controller exports (read from its encoded registry, so a renamed metric fails here).

use std::collections::BTreeSet;

use forklane_core::api::{ArmWeightStatus, ExperimentStatus, Look, MetricLook, Phase};
use forklane_core::controller::telemetry::{Metrics, OutcomeLabel, PhaseLabel};
use regex::Regex;
use serde_json::Value;

fn dashboard() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana/forklane-dashboard.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).expect("valid JSON")
}

/// The names of the samples a controller with a decided experiment exposes.
fn exported() -> BTreeSet<String> {
    let metrics = Metrics::default();
    metrics.reconciles.inc();
    metrics.errors.inc();
    metrics.decisions.get_or_create(&OutcomeLabel { outcome: "promote".into() }).inc();
    metrics.experiments.get_or_create(&PhaseLabel { phase: "Succeeded".into() }).inc();
    metrics.reconcile_seconds.observe(0.01);
    let decided = Look {
        outcome: Some("promote".into()),
        samples: [("v1".to_string(), 900.0)].into(),
        metrics: vec![MetricLook {
            metric: "conversion".into(),
            arm: "v2".into(),
            p: Some(0.01),
            ..Default::default()
        }],
        ..Default::default()
    };
    let weights = vec![ArmWeightStatus { arm: "v2".into(), desired: 100, achieved: 100.0 }];
    let status =
        ExperimentStatus { phase: Some(Phase::Succeeded), weights, history: vec![decided], ..Default::default() };
    metrics.experiment_series.show("shop", "checkout", &status);
    let text = metrics.encode();
    text.lines().filter(|l| !l.starts_with('#')).map(|l| l.split(['{', ' ']).next().unwrap().to_string()).collect()
}

/// The metric names in a PromQL expression: identifiers left once strings, label matchers,
/// ranges, variables, grouping clauses, functions and keywords are taken out.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut rest = expr.to_string();
    for taken_out in [
        r#""[^"]*""#,
        r"\{[^}]*\}",
        r"\[[^\]]*\]",
        r"\$\w+",
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)",
        r"[A-Za-z_][A-Za-z0-9_]*\s*\(",
        r"\b(and|or|unless|bool|offset)\b",
    ] {
        rest = Regex::new(taken_out).unwrap().replace_all(&rest, " ").into_owned();
    }
    Regex::new(r"[A-Za-z_:][A-Za-z0-9_:]*").unwrap().find_iter(&rest).map(|m| m.as_str().to_string()).collect()
}

#[test]
fn metric_names_are_read_from_promql() {
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (le) (rate(forklane_reconcile_duration_seconds_bucket{namespace=~"$namespace"}[$__rate_interval]))) > bool on (x) up"#,
    );
    assert_eq!(names, BTreeSet::from(["forklane_reconcile_duration_seconds_bucket".into(), "up".into()]));
}

/// Every panel, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let top = dashboard["panels"].as_array().expect("panels");
    top.iter().chain(top.iter().flat_map(|p| p["panels"].as_array().into_iter().flatten())).collect()
}

#[test]
fn every_panel_queries_metrics_the_controller_exports() {
    let dashboard = dashboard();
    let exported = exported();
    assert!(exported.contains("forklane_experiment_weight"), "the registry is read: {exported:?}");
    let mut queried = BTreeSet::new();
    for panel in panels(&dashboard) {
        let title = panel["title"].as_str().unwrap_or_default();
        let targets = panel["targets"].as_array().unwrap_or_else(|| panic!("panel {title} has no targets"));
        for target in targets {
            let expr = target["expr"].as_str().unwrap_or_else(|| panic!("{title}: a PromQL expr"));
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{title}: {expr} names no metric");
            for name in names {
                assert!(exported.contains(&name), "{title}: {name} is not exported ({exported:?})");
                queried.insert(name);
            }
        }
    }
    for shown in ["forklane_experiment_weight", "forklane_experiment_phase", "forklane_experiment_decision_p_value"] {
        assert!(queried.contains(shown), "a panel shows {shown}");
    }
    assert!(queried.contains("forklane_reconcile_errors_total"), "a panel shows reconcile errors");
}

#[test]
fn the_dashboard_is_importable_and_filters_by_namespace_and_experiment() {
    let dashboard = dashboard();
    assert_eq!(dashboard["uid"], "forklane-experiments");
    assert!(dashboard["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(dashboard.get("id").is_none_or(Value::is_null), "no instance id: importable anywhere");
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    let variable = |name: &str| variables.iter().find(|v| v["name"] == name).unwrap_or_else(|| panic!("${name}"));
    assert_eq!(variable("datasource")["type"], "datasource");
    let exported = exported();
    let label_values = Regex::new(r"^label_values\((\w+)(\{.*\})?, (\w+)\)$").unwrap();
    for (name, label) in [("namespace", "namespace"), ("experiment", "name")] {
        let query = variable(name)["query"]["query"].as_str().unwrap();
        let of = label_values.captures(query).expect(query);
        assert!(exported.contains(&of[1]), "{query}");
        assert_eq!(&of[3], label, "{query}");
    }
    let mut ids = BTreeSet::new();
    for panel in panels(&dashboard) {
        assert!(ids.insert(panel["id"].as_i64().unwrap()), "panel ids are unique");
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{}", panel["title"]);
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            if expr.contains("forklane_experiment_") {
                assert!(expr.contains(r#"namespace=~"$namespace",name=~"$experiment""#), "{expr}");
            }
        }
    }
}
