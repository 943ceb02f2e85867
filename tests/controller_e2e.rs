//! The controller end to end on the embedded cluster, with simulated traffic whose true effects
//! are set per version: each test asserts the final state and what was observed on the way, and
//! every run checks that routing never answered 503 NR/NC/UH/UF and that every VirtualService written
//! had weights summing to 100.

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use forklane_core::analysis::{AnalysisError, SourceError};
use forklane_core::api::{Builtin, Experiment, MeshMode, Metric, MetricKind, OnInconclusive, Phase, Routing};
use forklane_core::controller::{Analyst, Decided};
use forklane_core::fixtures::{
    self, ExperimentBuilder, analysis, analysis_step, guardrail, pause, pause_for, set_weight,
};
use kube::api::{Patch, PatchParams};
use support::e2e::*;

const ENDED: &[Phase] = &[Phase::Succeeded, Phase::RolledBack, Phase::Failed];
const LONG: Duration = Duration::from_secs(90);

/// The e2e runs share two cores: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The conversion goal, measured as a proportion.
fn conversion() -> Metric {
    Metric { kind: Some(MetricKind::Proportion), ..fixtures::conversion() }
}

/// Two Deployments of my-app (`v1`, `v2`) with the given annotations, ready, behind one Service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ab_test_with_a_true_winner_promotes_it() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut env = Env::start(true, false).await;
    let routes = env.record("virtualservices");
    let metrics = [conversion(), guardrail("error-rate", Builtin::IstioErrorRate, 0.01)];
    let analysis = analysis(metrics).interval("1m").min_samples_per_arm(500).max_duration("2h").srm();
    start_ab_test_with_a_true_winner(&mut env, analysis).await;
    let exp = env.wait_for_phase("ab", LONG, ENDED).await;
    let status = exp.status.unwrap();
    assert_eq!((status.phase, status.winner.as_deref()), (Some(Phase::Succeeded), Some("v2")), "{:?}", status.message);
    assert_eq!(status.mesh, Some(Routing::Istio));
    let stats = status.statistics.expect("the numbers behind the decision are in the status");
    assert_eq!(stats["outcome"]["action"], "promote");
    assert!(status.samples.iter().all(|s| s.samples >= 500.0), "{:?}", status.samples);
    assert_eq!(weight_history(&routes, "v2"), vec![50, 100], "50/50 while analysing, then all to the winner");
    assert_weights_sum_to_100(&routes);
    env.assert_no_routing_503();
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ab_test_with_identical_arms_ends_inconclusive_and_keeps_the_control() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut env = Env::start(true, false).await;
    let routes = env.record("virtualservices");
    let same = [("sim.forklane.io/conversion-rate", "0.20")];
    two_versions(&env, 2, &same, &same).await;
    env.start_traffic(1500.0, 300);
    env.start_controller();
    let analysis = analysis([conversion()]).interval("1m").alpha(0.01).min_samples_per_arm(500).max_duration("15m");
    let aa = ExperimentBuilder::ab_test("aa").mesh(MeshMode::Istio).split([("v1", 50), ("v2", 50)]);
    env.apply_experiment(aa.analysis(analysis).on_inconclusive(OnInconclusive::KeepControl)).await;
    let analysing = env.wait_for_phase("aa", LONG, &[Phase::Analysing]).await;
    assert_eq!(analysing.status.unwrap().final_arm, None);
    let exp = env.wait_for_phase("aa", LONG, ENDED).await;
    let status = exp.status.unwrap();
    assert_eq!(
        (status.phase, status.final_arm.as_deref()),
        (Some(Phase::Succeeded), Some("v1")),
        "{:?}",
        status.message
    );
    assert!(status.message.unwrap_or_default().contains("no decision within maxDuration"));
    assert_eq!(status.statistics.unwrap()["outcome"]["action"], "continue", "the last look found no difference");
    assert_eq!(weight_history(&routes, "v2"), vec![50, 0]);
    assert_weights_sum_to_100(&routes);
    env.assert_no_routing_503();
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guardrail_breach_rolls_back_before_the_next_weight_step() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut env = Env::start(true, false).await;
    let routes = env.record("virtualservices");
    two_versions(&env, 2, &[("sim.forklane.io/error-rate", "0.01")], &[("sim.forklane.io/error-rate", "0.05")]).await;
    env.start_traffic(1500.0, 300);
    env.start_controller();
    let guarded = analysis([guardrail("error-rate", Builtin::IstioErrorRate, 0.005)]);
    let guarded = guarded.interval("1m").min_samples_per_arm(300).max_duration("1h");
    let steps = [set_weight(30), analysis_step(), set_weight(60), analysis_step()];
    env.apply_experiment(ExperimentBuilder::canary("guard").mesh(MeshMode::Istio).steps(steps).analysis(guarded)).await;
    let exp = env.wait_for_phase("guard", LONG, ENDED).await;
    let status = exp.status.unwrap();
    assert_eq!(
        (status.phase, status.final_arm.as_deref()),
        (Some(Phase::RolledBack), Some("v1")),
        "{:?}",
        status.message
    );
    assert!(status.message.unwrap_or_default().contains("error-rate"));
    assert_eq!(weight_history(&routes, "v2"), vec![30, 0], "never reached 60");
    assert_weights_sum_to_100(&routes);
    env.assert_no_routing_503();
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_steps_move_weights_in_order_and_pause_where_told() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut env = Env::start(true, false).await;
    let routes = env.record("virtualservices");
    two_versions(&env, 2, &[], &[]).await;
    env.start_controller();
    let steps = [set_weight(10), pause_for("2m"), set_weight(30), pause(), set_weight(60)];
    env.apply_experiment(ExperimentBuilder::canary("steps").mesh(MeshMode::Istio).steps(steps)).await;
    let paused = env
        .wait_for("steps", LONG, |e| {
            phase(e) == Some(Phase::Paused) && e.status.as_ref().and_then(|s| s.current_step) == Some(3)
        })
        .await;
    assert_eq!(paused.status.unwrap().weight_summary.as_deref(), Some("v1=70,v2=30"));
    // An indefinite pause holds: 300 simulated seconds later nothing moved.
    tokio::time::sleep(Duration::from_secs_f64(300.0 / SPEED)).await;
    assert_eq!(env.experiments().get("steps").await.unwrap().status.unwrap().current_step, Some(3));
    assert_eq!(weight_history(&routes, "v2"), vec![10, 30]);
    let promote = forklane_core::controller::commands::patch(&forklane_core::controller::commands::Command::Promote(
        forklane_core::controller::commands::Promote::Next,
    ));
    env.experiments().patch("steps", &PatchParams::default(), &Patch::Merge(promote)).await.unwrap();
    let exp = env.wait_for_phase("steps", LONG, ENDED).await;
    assert_eq!(exp.status.as_ref().unwrap().winner.as_deref(), Some("v2"));
    assert!(
        !exp.metadata.annotations.unwrap_or_default().contains_key("forklane.io/promote"),
        "the one-shot command is cleared"
    );
    assert_eq!(weight_history(&routes, "v2"), vec![10, 30, 60, 100]);
    assert_weights_sum_to_100(&routes);
    env.assert_no_routing_503();
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_serves_the_preview_header_before_the_switch_and_nothing_after_rollback() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut env = Env::start(true, false).await;
    let routes = env.record("virtualservices");
    two_versions(&env, 2, &[], &[]).await;
    env.start_controller();
    env.apply_experiment(ExperimentBuilder::blue_green("bg").mesh(MeshMode::Istio).preview_header("x-preview", "true"))
        .await;
    env.wait_for_phase("bg", LONG, &[Phase::Paused]).await;
    let preview: Vec<Option<String>> = (0..200).map(|_| env.request(&[("x-preview", "true")])).collect();
    let live: Vec<Option<String>> = (0..200).map(|_| env.request(&[])).collect();
    assert!(preview.iter().all(|v| v.as_deref() == Some("v2")), "preview header reaches v2 only");
    assert!(live.iter().all(|v| v.as_deref() == Some("v1")), "everyone else stays on v1");
    let abort = forklane_core::controller::commands::patch(&forklane_core::controller::commands::Command::Abort(Some(
        "preview failed QA".into(),
    )));
    env.experiments().patch("bg", &PatchParams::default(), &Patch::Merge(abort)).await.unwrap();
    let exp = env.wait_for_phase("bg", LONG, ENDED).await;
    assert_eq!(exp.status.as_ref().unwrap().phase, Some(Phase::RolledBack));
    env.wait_for("bg", LONG, |_| {
        routes.objects().last().is_some_and(|vs| vs["spec"]["http"].as_array().map(Vec::len) == Some(1))
    })
    .await;
    let after: Vec<Option<String>> = (0..200).map(|_| env.request(&[("x-preview", "true")])).collect();
    assert!(after.iter().all(|v| v.as_deref() == Some("v1")), "after the rollback nothing reaches v2");
    assert_weights_sum_to_100(&routes);
    env.assert_no_routing_503();
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirroring_reaches_v2_without_answering_from_it() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut env = Env::start(true, false).await;
    two_versions(&env, 2, &[], &[]).await;
    env.start_controller();
    env.apply_experiment(ExperimentBuilder::blue_green("shadow").mesh(MeshMode::Istio).mirror("v2", 100.0)).await;
    env.wait_for_phase("shadow", LONG, &[Phase::Paused]).await;
    let answers: Vec<Option<String>> = (0..300).map(|_| env.request(&[])).collect();
    assert!(answers.iter().all(|v| v.as_deref() == Some("v1")), "only v1 answers");
    let recorded = env.net().dataplane.metrics.recorded();
    let v2 = recorded.versions.get("v2").cloned().unwrap_or_default();
    assert!(v2.mirrored >= 300, "every request copied to v2: {v2:?}");
    assert_eq!(v2.visits, 0, "no user saw an answer of v2");
    env.assert_no_routing_503();
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_canary_hits_the_replica_ratios() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut env = Env::start(false, false).await;
    two_versions(&env, 1, &[], &[]).await;
    env.start_controller();
    let steps = [set_weight(10), pause(), set_weight(50), pause()];
    env.apply_experiment(ExperimentBuilder::canary("native").total_replicas(10).steps(steps)).await;
    let exp = env
        .wait_for("native", LONG, |e| {
            phase(e) == Some(Phase::Paused) && e.status.as_ref().and_then(|s| s.current_step) == Some(1)
        })
        .await;
    let status = exp.status.unwrap();
    assert_eq!(status.mesh, Some(Routing::Native));
    env.wait_ready("my-app-v1", 9).await;
    env.wait_ready("my-app-v2", 1).await;
    // kube-proxy picks endpoints uniformly: v2 answers about 1 in 10.
    let n = 4000;
    let v2 = (0..n).filter(|_| env.request(&[]).as_deref() == Some("v2")).count() as f64 / n as f64;
    let se = (0.1f64 * 0.9 / n as f64).sqrt();
    assert!((v2 - 0.1).abs() < 3.0 * se, "v2 share {v2}");
    env.experiments()
        .patch(
            "native",
            &PatchParams::default(),
            &Patch::Merge(forklane_core::controller::commands::patch(
                &forklane_core::controller::commands::Command::Promote(
                    forklane_core::controller::commands::Promote::Next,
                ),
            )),
        )
        .await
        .unwrap();
    env.wait_for("native", LONG, |e| {
        phase(e) == Some(Phase::Paused) && e.status.as_ref().and_then(|s| s.current_step) == Some(3)
    })
    .await;
    env.wait_ready("my-app-v1", 5).await;
    env.wait_ready("my-app-v2", 5).await;
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_and_rolling_update_complete_without_a_mesh() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut env = Env::start(false, false).await;
    let pods = env.record("pods");
    env.apply(&service("{app: my-app}")).await;
    env.apply(&app("v1", 3, &[])).await;
    env.apply(&app("v2", 0, &[])).await;
    env.wait_ready("my-app-v1", 3).await;
    env.start_controller();
    env.apply_experiment(ExperimentBuilder::recreate("recreate").mesh(MeshMode::None).replicas(3)).await;
    let exp = env.wait_for_phase("recreate", LONG, ENDED).await;
    assert_eq!(exp.status.unwrap().phase, Some(Phase::Succeeded));
    env.wait_ready("my-app-v1", 0).await;
    env.wait_ready("my-app-v2", 3).await;
    // Recreate: no moment with pods of both versions alive.
    let mut alive = std::collections::BTreeMap::<String, String>::new();
    for pod in pods.objects() {
        let name = pod["metadata"]["name"].as_str().unwrap().to_string();
        let version = pod["metadata"]["labels"]["version"].as_str().unwrap_or_default().to_string();
        if pod.get("deleted").is_some()
            || pod["status"]["phase"] == "Succeeded"
            || pod["metadata"]["deletionTimestamp"].is_string()
        {
            alive.remove(&name);
        } else {
            alive.insert(name, version);
        }
        let versions: std::collections::BTreeSet<&String> = alive.values().collect();
        assert!(versions.len() <= 1, "pods of two versions at once: {alive:?}");
    }

    // The control is now the v2 Deployment; the candidate "v3" runs v1's.
    let back =
        ExperimentBuilder::rolling_update("rolling").mesh(MeshMode::None).control_on("v1", "v2").arm_on("v3", "v1");
    env.apply_experiment(back.replicas(3).max_surge_and_unavailable(1, 0)).await;
    let exp = env.wait_for_phase("rolling", LONG, ENDED).await;
    assert_eq!(exp.status.unwrap().phase, Some(Phase::Succeeded));
    // Back to v1 by rolling replacement.
    env.wait_ready("my-app-v2", 0).await;
    env.wait_ready("my-app-v1", 3).await;
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_violating_experiment_never_changes_traffic_and_names_the_policy() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut env = Env::start(true, false).await;
    two_versions(&env, 1, &[], &[]).await;
    env.apply("apiVersion: forklane.io/v1alpha1\nkind: RolloutPolicy\nmetadata: {name: canary-only}\nspec:\n  allowedStrategies: [canary]\n").await;
    env.start_controller();
    env.apply_experiment(ExperimentBuilder::ab_test("forbidden").mesh(MeshMode::Istio).split([("v1", 50), ("v2", 50)]))
        .await;
    let exp = env
        .wait_for("forbidden", LONG, |e| {
            e.status
                .as_ref()
                .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "PolicyViolation" && c.status == "True"))
        })
        .await;
    let status = exp.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Pending));
    let condition = status.conditions.iter().find(|c| c.type_ == "PolicyViolation").unwrap();
    assert!(condition.message.contains("RolloutPolicy \"canary-only\" (allowedStrategies)"), "{}", condition.message);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let vs: kube::Api<forklane_core::istio::VirtualService> = kube::Api::namespaced(env.client.clone(), NS);
    assert!(vs.list(&Default::default()).await.unwrap().items.is_empty(), "no routing was written");
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_virtual_service_for_the_host_blocks_the_start() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut env = Env::start(true, false).await;
    two_versions(&env, 1, &[], &[]).await;
    env.apply("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: hand-made, namespace: default}\nspec:\n  hosts: [my-app]\n  http:\n    - route:\n        - destination: {host: my-app}\n").await;
    env.start_controller();
    env.apply_experiment(ExperimentBuilder::canary("blocked").mesh(MeshMode::Istio).steps([set_weight(10)])).await;
    let exp = env
        .wait_for("blocked", LONG, |e| {
            e.status.as_ref().is_some_and(|s| s.message.as_deref().unwrap_or_default().contains("hand-made"))
        })
        .await;
    assert_eq!(exp.status.unwrap().phase, Some(Phase::Pending));
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_the_controller_after_each_write_ends_in_the_same_state() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut env = Env::start(true, false).await;
    let routes = env.record("virtualservices");
    two_versions(&env, 2, &[], &[]).await;
    let steps = [set_weight(20), set_weight(50), set_weight(80)];
    env.apply_experiment(ExperimentBuilder::canary("restart").mesh(MeshMode::Istio).steps(steps)).await;
    // Kill the controller right after each of its first writes, then let it finish.
    for _ in 0..6 {
        env.start_controller();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while env.controller_writes() == 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        env.stop_controller().await;
    }
    env.start_controller();
    let exp = env.wait_for_phase("restart", LONG, ENDED).await;
    assert_eq!(exp.status.as_ref().unwrap().winner.as_deref(), Some("v2"));
    assert_eq!(weight_history(&routes, "v2"), vec![20, 50, 80, 100], "no step lost, repeated out of order or skipped");
    assert_weights_sum_to_100(&routes);
    env.assert_no_routing_503();
    env.shutdown().await;
}

/// Counts the analyses the controller asks for.
struct Counting {
    inner: Arc<dyn Analyst>,
    calls: Arc<AtomicUsize>,
}

impl Analyst for Counting {
    fn decide<'a>(
        &'a self,
        exp: &'a Experiment,
        mode: Routing,
        window: Duration,
        weights: &'a [(String, i32)],
    ) -> Decided<'a> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.decide(exp, mode, window, weights)
    }
}

/// The mesh, two one-pod versions under traffic, and the controller with `analyst` (the
/// sandbox's own when `None`) counted: the environment, its VirtualService log and the count of
/// analyses asked for.
async fn counted_analysis(rps: f64, users: usize, analyst: Option<Arc<dyn Analyst>>) -> (Env, Log, Arc<AtomicUsize>) {
    let mut env = Env::start(true, false).await;
    let routes = env.record("virtualservices");
    two_versions(&env, 1, &[], &[]).await;
    env.start_traffic(rps, users);
    let calls = Arc::new(AtomicUsize::new(0));
    let inner = analyst.unwrap_or_else(|| env.analyst.clone());
    env.analyst = Arc::new(Counting { inner, calls: calls.clone() });
    env.start_controller();
    (env, routes, calls)
}

/// The last VirtualService written sends every request to `arm`.
fn assert_last_route_all_on(routes: &Log, arm: &str) {
    let last = routes.objects().into_iter().rfind(|o| o.get("deleted").is_none()).expect("a VirtualService");
    assert_eq!(split(&last), [(arm.to_string(), 100)].into(), "all traffic on {arm}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_analysis_template_rolls_back_once_instead_of_retrying() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (env, routes, calls) = counted_analysis(500.0, 100, None).await;
    // A template placeholder that does not exist: a configuration error, not a metrics outage.
    let trial = r#"sum(increase(visits_total{version="{{ arm.colour }}"}[{{ window }}]))"#;
    let bad = Metric { trial_query: Some(trial.into()), ..conversion() };
    let analysis = analysis([bad]).interval("1m").max_duration("2h");
    env.apply_experiment(
        ExperimentBuilder::ab_test("typo").mesh(MeshMode::Istio).split([("v1", 50), ("v2", 50)]).analysis(analysis),
    )
    .await;
    let exp = env.wait_for_phase("typo", LONG, ENDED).await;
    let status = exp.status.unwrap();
    assert_eq!(
        (status.phase, status.final_arm.as_deref()),
        (Some(Phase::RolledBack), Some("v1")),
        "{:?}",
        status.message
    );
    let invalid = status.conditions.iter().find(|c| c.type_ == "AnalysisConfigInvalid").expect("the condition is set");
    assert_eq!(invalid.status, "True");
    assert!(invalid.message.contains("unknown placeholder `{{ arm.colour }}`"), "{}", invalid.message);
    assert!(
        !status.conditions.iter().any(|c| c.type_ == "MetricsUnavailable" && c.status == "True"),
        "not reported as a metrics outage"
    );
    assert_last_route_all_on(&routes, "v1");
    // Five more intervals: the analysis is not asked again.
    tokio::time::sleep(Duration::from_secs_f64(5.0 * 60.0 / SPEED)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the analysis ran once");
    assert_weights_sum_to_100(&routes);
    env.assert_no_routing_503();
    env.shutdown().await;
}

/// A metric source that is never reachable, as a black-holed Prometheus.
struct Unreachable;

impl Analyst for Unreachable {
    fn decide<'a>(&'a self, _: &'a Experiment, _: Routing, _: Duration, _: &'a [(String, i32)]) -> Decided<'a> {
        let error = SourceError::Unreachable { source_name: "prometheus".into(), message: "connection refused".into() };
        Box::pin(
            async move { Err(AnalysisError::Unavailable { metric: "conversion".into(), arm: "v1".into(), error }) },
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metrics_outage_ends_the_experiment_and_never_promotes() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (env, routes, calls) = counted_analysis(200.0, 50, Some(Arc::new(Unreachable))).await;
    // Ten looks allowed in a row, but maxDuration (3m) passes first: time without metrics counts.
    let outage = analysis([conversion()]).interval("1m").max_duration("3m").max_consecutive_unavailable(10);
    env.apply_experiment(
        ExperimentBuilder::ab_test("outage")
            .mesh(MeshMode::Istio)
            .split([("v1", 50), ("v2", 50)])
            .analysis(outage)
            .on_inconclusive(OnInconclusive::Promote),
    )
    .await;
    let exp = env.wait_for_phase("outage", LONG, ENDED).await;
    let status = exp.status.unwrap();
    // onInconclusive: promote, but there is no data to promote on: the control keeps all traffic.
    assert_eq!(
        (status.phase, status.final_arm.as_deref(), status.winner.as_deref()),
        (Some(Phase::Succeeded), Some("v1"), Some("v1"))
    );
    let message = status.message.unwrap_or_default();
    assert!(message.contains("metrics unavailable") && message.contains("kept the control"), "{message}");
    let looks = calls.load(Ordering::SeqCst);
    assert!((2..=4).contains(&looks), "about one look a minute for 3 minutes, got {looks}");
    assert_last_route_all_on(&routes, "v1");
    assert_weights_sum_to_100(&routes);
    env.assert_no_routing_503();
    env.shutdown().await;
}
