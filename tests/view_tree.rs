//! `forklane get`'s summary and tree and `forklane list`'s rows, on hand-built experiments: a
//! canary paused at step 1 of 3, an A/B test analysing with a goal and a guardrail, a rollback
//! for a sample ratio mismatch. Snapshots of the plain tree; colours only when asked for.

use std::collections::BTreeMap;

use forklane::view::list::{render_table, row};
use forklane::view::steps::StepState;
use forklane::view::{Observed, Style, render, summary};
use forklane_core::api::{Builtin, Experiment, ExperimentStatus};
use forklane_core::fixtures::{ExperimentBuilder, analysis, conversion, guardrail, pause, set_weight};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Event;
use serde_json::{Value, json};

const PLAIN: Style = Style { color: false };
const COLOR: Style = Style { color: true };

fn now() -> Timestamp {
    "2026-05-01T12:00:00Z".parse().unwrap()
}

fn with_status(builder: ExperimentBuilder, status: Value) -> Experiment {
    let mut exp = builder.build();
    exp.metadata.creation_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time("2026-05-01T11:00:00Z".parse().unwrap()));
    exp.status = Some(serde_json::from_value::<ExperimentStatus>(status).unwrap());
    exp
}

fn deployment(name: &str, ready: i32, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "resourceVersion": "7"},
        "status": {"replicas": replicas, "readyReplicas": ready}
    }))
    .unwrap()
}

fn event(at: &str, type_: &str, reason: &str, message: &str) -> Event {
    serde_json::from_value(json!({
        "metadata": {"name": format!("e-{reason}"), "namespace": "default"},
        "involvedObject": {"kind": "Experiment", "name": "x"},
        "lastTimestamp": at, "type": type_, "reason": reason, "message": message, "count": 1
    }))
    .unwrap()
}

fn observed(exp: Experiment, pods: &[(&str, i32, i32)], events: Vec<Event>) -> Observed {
    let deployments: BTreeMap<String, Deployment> = pods
        .iter()
        .map(|(arm, ready, total)| (arm.to_string(), deployment(&format!("my-app-{arm}"), *ready, *total)))
        .collect();
    Observed { experiment: exp, deployments, events }
}

fn paused_canary() -> Observed {
    let builder = ExperimentBuilder::canary("checkout").steps([set_weight(20), pause(), set_weight(50)]);
    let exp = with_status(
        builder,
        json!({
            "phase": "Paused", "strategy": "canary", "mesh": "istio", "currentStep": 1,
            "message": "paused until forklane promote",
            "weights": [{"arm": "v1", "desired": 80, "achieved": 79.6}, {"arm": "v2", "desired": 20, "achieved": 20.4}],
            "weightSummary": "v1=80,v2=20",
            "conditions": [{"type": "Ready", "status": "True", "reason": "Routed", "message": "routing in place",
                            "lastTransitionTime": "2026-05-01T11:01:00Z"}]
        }),
    );
    let events = vec![
        event("2026-05-01T11:00:05Z", "Normal", "Progressing", "started"),
        event("2026-05-01T11:01:00Z", "Normal", "StepAdvanced", "step 1: weight 20"),
        event("2026-05-01T11:01:00Z", "Normal", "Paused", "paused until forklane promote"),
    ];
    observed(exp, &[("v1", 2, 2), ("v2", 1, 2)], events)
}

fn analysing_ab_test() -> Observed {
    let metrics = [conversion(), guardrail("error-rate", Builtin::IstioErrorRate, 0.01)];
    let builder =
        ExperimentBuilder::ab_test("signup").split([("v1", 50), ("v2", 50)]).analysis(analysis(metrics).srm());
    let look = |at: &str, p: f64, outcome: &str| {
        json!({
            "at": at, "phase": "Analysing", "step": 0, "weights": {"v1": 50, "v2": 50},
            "samples": {"v1": 1210.0, "v2": 1190.0},
            "metrics": [
                {"metric": "conversion", "arm": "v2", "role": "goal", "estimate": 0.021, "low": -0.004, "high": 0.046,
                 "p": p, "verdict": "inconclusive"},
                {"metric": "error-rate", "arm": "v2", "role": "guardrail", "estimate": 0.0004, "low": -0.0021,
                 "high": 0.0029, "p": 0.0002, "verdict": "nonInferior"}
            ],
            "srmP": 0.61, "outcome": outcome
        })
    };
    let exp = with_status(
        builder,
        json!({
            "phase": "Analysing", "strategy": "abTest", "mesh": "istio", "currentStep": 0, "message": "analysis started",
            "weights": [{"arm": "v1", "desired": 50, "achieved": 50.2}, {"arm": "v2", "desired": 50, "achieved": 49.8}],
            "weightSummary": "v1=50,v2=50",
            "samples": [{"arm": "v1", "samples": 1210.0}, {"arm": "v2", "samples": 1190.0}],
            // The statistics are one look older than the history: the history's latest look wins.
            "statistics": {"outcome": {"action": "continue", "reason": "x"}, "comparisons": [], "srm": null},
            "history": [
                {"at": "2026-05-01T11:00:05Z", "phase": "Progressing", "step": 0, "weights": {"v1": 50, "v2": 50}},
                look("2026-05-01T11:50:00Z", 0.31, "continue"),
                look("2026-05-01T11:58:00Z", 0.12, "continue"),
            ]
        }),
    );
    observed(
        exp,
        &[("v1", 2, 2), ("v2", 2, 2)],
        vec![event("2026-05-01T11:10:00Z", "Normal", "Analysing", "analysis started")],
    )
}

fn srm_rollback() -> Observed {
    let builder = ExperimentBuilder::canary("search")
        .steps([set_weight(30), forklane_core::fixtures::analysis_step()])
        .analysis(analysis([conversion()]).srm());
    let reason = "sample ratio mismatch: traffic does not follow the configured weights (sequential p = 2.10e-6)";
    let exp = with_status(
        builder,
        json!({
            "phase": "RolledBack", "strategy": "canary", "mesh": "none", "currentStep": 1, "finalArm": "v1",
            "message": format!("rolling back: {reason}; all traffic on v1"),
            "weights": [{"arm": "v1", "desired": 100, "achieved": 100.0}, {"arm": "v2", "desired": 0, "achieved": 0.0}],
            "weightSummary": "v1=100,v2=0",
            "samples": [{"arm": "v1", "samples": 900.0}, {"arm": "v2", "samples": 100.0}],
            // Only statistics, no history: the view falls back to them.
            "statistics": {
                "outcome": {"action": "rollback", "reason": reason},
                "comparisons": [],
                "srm": {"pValue": 0.0000021, "lnBayesFactor": 13.1, "mismatch": true}
            },
            "lastAnalysisAt": "2026-05-01T11:40:00Z"
        }),
    );
    let events = vec![
        event("2026-05-01T11:40:00Z", "Warning", "RollingBack", reason),
        event("2026-05-01T11:40:30Z", "Warning", "RolledBack", "all traffic on v1"),
    ];
    observed(exp, &[("v1", 4, 4), ("v2", 0, 0)], events)
}

#[test]
fn a_paused_canary_marks_its_current_step_and_shows_pods_and_weights() {
    let s = summary(&paused_canary(), now());
    let states: Vec<StepState> = s.steps.iter().map(|st| st.state).collect();
    assert_eq!(states, [StepState::Done, StepState::Current, StepState::Pending]);
    let v2 = &s.arms[1];
    assert_eq!(
        (v2.ready_pods, v2.pods, v2.desired_weight, v2.achieved_weight),
        (Some(1), Some(2), Some(20), Some(20.4))
    );
    assert!(s.analysis.is_none());
    insta::assert_snapshot!("paused-canary", render(&s, PLAIN));
}

#[test]
fn an_ab_test_shows_the_latest_look_of_its_history_with_goal_and_guardrail() {
    let s = summary(&analysing_ab_test(), now());
    let analysis = s.analysis.as_ref().unwrap();
    assert_eq!((analysis.source, analysis.at.as_deref()), ("history", Some("2026-05-01T11:58:00Z")));
    assert_eq!(analysis.metrics.iter().map(|m| m.p).collect::<Vec<_>>(), [Some(0.12), Some(0.0002)]);
    assert_eq!(analysis.metrics[1].margin, Some(0.01), "the guardrail's margin from the spec");
    assert!(!analysis.srm.as_ref().unwrap().mismatch);
    insta::assert_snapshot!("analysing-ab-test", render(&s, PLAIN));
}

#[test]
fn a_rollback_for_srm_falls_back_to_the_statistics_and_ends_in_the_rollback_step() {
    let s = summary(&srm_rollback(), now());
    let analysis = s.analysis.as_ref().unwrap();
    assert_eq!((analysis.source, analysis.outcome.as_deref()), ("statistics", Some("rollback")));
    assert!(analysis.srm.as_ref().unwrap().mismatch);
    let steps: Vec<(&str, StepState)> = s.steps.iter().map(|st| (st.description.as_str(), st.state)).collect();
    assert_eq!(
        steps,
        [
            ("setWeight 30", StepState::Done),
            ("analysis", StepState::Interrupted),
            ("rollback: all traffic to v1", StepState::Done)
        ]
    );
    insta::assert_snapshot!("srm-rollback", render(&s, PLAIN));
}

fn states(exp: Experiment) -> Vec<(String, StepState)> {
    summary(&Observed::of(exp), now()).steps.into_iter().map(|s| (s.description, s.state)).collect()
}

#[test]
fn blue_green_previews_then_switches_as_its_final_step() {
    let bg = || ExperimentBuilder::blue_green("bg").preview_header("x-preview", "yes");
    let preview = "preview: all traffic on v1, header x-preview: yes to v2".to_string();
    let switch = "switch: all traffic to v2".to_string();
    let waiting = states(with_status(bg(), json!({"phase": "Paused", "currentStep": 0})));
    assert_eq!(waiting, [(preview.clone(), StepState::Current), (switch.clone(), StepState::Pending)]);
    let switched =
        states(with_status(bg(), json!({"phase": "Succeeded", "currentStep": 0, "finalArm": "v2", "winner": "v2"})));
    assert_eq!(switched, [(preview.clone(), StepState::Done), (switch.clone(), StepState::Done)]);
    let aborted = states(with_status(bg(), json!({"phase": "Progressing", "currentStep": 0, "finalArm": "v1"})));
    assert_eq!(
        aborted,
        [
            (preview, StepState::Interrupted),
            (switch, StepState::Skipped),
            ("rollback: all traffic to v1".into(), StepState::Current)
        ]
    );
}

#[test]
fn a_canary_promoted_in_full_skips_its_remaining_steps_and_an_unstarted_one_has_none_current() {
    let canary = || ExperimentBuilder::canary("c").steps([set_weight(20), pause(), set_weight(50)]);
    let status = json!({"phase": "Promoting", "currentStep": 1, "finalArm": "v2", "winner": "v2"});
    let got: Vec<StepState> = states(with_status(canary(), status)).into_iter().map(|s| s.1).collect();
    assert_eq!(got, [StepState::Done, StepState::Interrupted, StepState::Skipped, StepState::Current]);
    let pending = states(canary().build());
    assert!(pending.iter().all(|s| s.1 == StepState::Pending), "{pending:?}");
}

#[test]
fn colours_only_when_asked_for() {
    let escape = regex::Regex::new("\x1b\\[[0-9;]*m").unwrap();
    for observed in [paused_canary(), analysing_ab_test(), srm_rollback()] {
        let s = summary(&observed, now());
        assert!(!render(&s, PLAIN).contains('\x1b'), "plain output has no escape codes");
        let coloured = render(&s, COLOR);
        assert!(coloured.contains("\x1b["), "coloured output has them");
        // The same text once the escape codes are gone: colours never change the layout.
        let stripped = escape.replace_all(&coloured, "");
        assert_eq!(stripped, render(&s, PLAIN));
    }
}

#[test]
fn the_json_document_is_the_summary() {
    let s = summary(&analysing_ab_test(), now());
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["phase"], "Analysing");
    assert_eq!(json["arms"][1]["desiredWeight"], 50);
    assert_eq!(json["analysis"]["metrics"][0]["verdict"], "inconclusive");
    assert_eq!(json["analysis"]["srm"]["p"], 0.61);
    assert_eq!(json["steps"][0]["state"], "current");
    assert_eq!(json["events"][0]["type"], "Normal");
}

#[test]
fn list_rows_give_step_weights_and_the_latest_decision_with_its_goal_p() {
    let rows: Vec<_> =
        [paused_canary(), analysing_ab_test(), srm_rollback()].into_iter().map(|o| row(&o.experiment, now())).collect();
    assert_eq!(rows[0].step.as_deref(), Some("1/3"));
    assert_eq!((rows[1].last_decision.as_deref(), rows[1].goal_p), (Some("continue"), Some(0.12)));
    assert_eq!((rows[2].last_decision.as_deref(), rows[2].goal_p), (Some("rollback"), None));
    insta::assert_snapshot!("list-all-namespaces", render_table(&rows, true, PLAIN));
    assert!(!render_table(&rows, false, PLAIN).contains("NAMESPACE"));
}
