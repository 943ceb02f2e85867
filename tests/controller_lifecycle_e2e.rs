//! The controller's lifecycle end to end on the embedded cluster: what deleting an experiment
//! leaves behind in every phase (and what it never writes), errors a person can see (a condition, one event, a
//! backoff), writes only when the world differs from the plan, and Istio installed while the
//! controller runs.

use crate::support;

use std::collections::BTreeMap;
use std::time::Duration;

use forklane_core::api::{Experiment, MeshMode, OnProgressDeadline, Phase, Routing};
use forklane_core::controller::commands::{Command, Promote, patch as command};
use forklane_core::fixtures::{ExperimentBuilder, pause, set_weight};
use forklane_sim::traffic::Lag;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event as CoreEvent, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use support::e2e::*;

const LONG: Duration = Duration::from_secs(40);

/// The e2e runs share two cores: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A VirtualService for my-app that Forklane did not write.
const HAND_MADE: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: hand-made, namespace: default}\nspec:\n  hosts: [my-app]\n  http:\n    - route:\n        - destination: {host: my-app}\n";

/// A canary through Istio with a progress deadline far away (these tests are not about it).
fn canary(name: &str, steps: impl IntoIterator<Item = forklane_core::api::CanaryStep>) -> ExperimentBuilder {
    ExperimentBuilder::canary(name)
        .mesh(MeshMode::Istio)
        .steps(steps)
        .progress_deadline("1h", OnProgressDeadline::Rollback)
}

fn condition(exp: &Experiment, type_: &str) -> Option<Condition> {
    exp.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_).cloned()
}

fn condition_is(exp: &Experiment, type_: &str, status: &str) -> bool {
    condition(exp, type_).is_some_and(|c| c.status == status)
}

/// Waits until the canary is paused at step `at`.
async fn paused_at(env: &Env, name: &str, at: i32) -> Experiment {
    env.wait_for(name, LONG, |e| phase(e) == Some(Phase::Paused) && step(e) == Some(at)).await
}

/// The Events about the experiment `name`, oldest first.
async fn events(env: &Env, name: &str) -> Vec<CoreEvent> {
    let api: Api<CoreEvent> = Api::namespaced(env.client.clone(), NS);
    let selector = format!("involvedObject.name={name},involvedObject.kind=Experiment");
    api.list(&ListParams::default().fields(&selector)).await.unwrap().items
}

/// Reasons of the Events about `name`, with their type.
async fn event_reasons(env: &Env, name: &str) -> Vec<(String, String)> {
    events(env, name).await.into_iter().map(|e| (e.reason.unwrap_or_default(), e.type_.unwrap_or_default())).collect()
}

/// Istio's `virtualservices` or `destinationrules`, untyped.
fn istio(env: &Env, resource: &str) -> Api<kube::api::DynamicObject> {
    let kind = if resource == "virtualservices" { "VirtualService" } else { "DestinationRule" };
    let gvk = kube::api::GroupVersionKind::gvk("networking.istio.io", "v1", kind);
    Api::namespaced_with(env.client.clone(), NS, &kube::api::ApiResource::from_gvk_with_plural(&gvk, resource))
}

/// A routing object as the API server has it now.
async fn routing(env: &Env, resource: &str, name: &str) -> Option<Value> {
    istio(env, resource).get_opt(name).await.unwrap().map(|o| serde_json::to_value(o).unwrap())
}

/// The arms the catch-all route sends traffic to, with their weights (zero weights left out).
fn served(vs: &Value) -> BTreeMap<String, i64> {
    split(vs).into_iter().filter(|(_, w)| *w > 0).collect()
}

fn all_on(arm: &str) -> BTreeMap<String, i64> {
    [(arm.to_string(), 100)].into()
}

fn split_of(v1: i64, v2: i64) -> BTreeMap<String, i64> {
    [("v1".to_string(), v1), ("v2".to_string(), v2)].into()
}

fn owners(object: &Value) -> usize {
    object["metadata"]["ownerReferences"].as_array().map_or(0, Vec::len)
}

/// Lets the simulated clock run `minutes` minutes.
async fn simulated_minutes(minutes: f64) {
    tokio::time::sleep(Duration::from_secs_f64(minutes * 60.0 / SPEED)).await;
}

/// Objects named `name` in the log, with their index in it.
fn named(log: &Log, name: &str) -> Vec<(usize, Value)> {
    log.objects().into_iter().enumerate().filter(|(_, o)| o["metadata"]["name"] == name).collect()
}

/// Deletes the experiment and waits until it is gone.
async fn delete(env: &Env, name: &str) {
    env.experiments().delete(name, &DeleteParams::default()).await.unwrap();
    env.wait_gone(name, LONG).await;
}

/// After a deletion: a few simulated minutes later the routing objects are still there, released
/// (no owner left for garbage collection), and every request is answered by `arm`.
async fn routing_stays_on(env: &Env, name: &str, arm: &str) {
    simulated_minutes(3.0).await;
    let object = format!("{name}-forklane");
    let vs = routing(env, "virtualservices", &object).await.unwrap_or_else(|| panic!("{object} was removed"));
    assert_eq!(served(&vs), all_on(arm), "{object} sends all traffic to {arm}");
    assert_eq!(owners(&vs), 0, "{object} is released from the deleted experiment");
    let dr =
        routing(env, "destinationrules", &object).await.unwrap_or_else(|| panic!("{object}'s subsets were removed"));
    assert_eq!(owners(&dr), 0, "the DestinationRule {object} is released from the deleted experiment");
    let answers: Vec<Option<String>> = (0..200).map(|_| env.request(&[])).collect();
    assert!(answers.iter().all(|v| v.as_deref() == Some(arm)), "every request answered by {arm}");
}

/// Objects of several resources written to the store, in the one order the store wrote them.
#[derive(Clone, Default)]
struct Timeline(std::sync::Arc<std::sync::Mutex<Vec<(String, Value)>>>);

impl Timeline {
    fn record(env: &Env, resources: &[&str]) -> Timeline {
        let timeline = Timeline::default();
        let resources: Vec<String> = resources.iter().map(|r| r.to_string()).collect();
        let (sink, mut changes) = (timeline.clone(), env.cluster.store().changes());
        tokio::spawn(async move {
            while let Ok(change) = changes.recv().await {
                if resources.contains(&change.resource.resource) {
                    let mut object = (*change.object).clone();
                    if change.kind == forklane_sim::cluster::store::ChangeKind::Deleted {
                        object["deleted"] = Value::Bool(true);
                    }
                    sink.0.lock().unwrap().push((change.resource.resource.clone(), object));
                }
            }
        });
        timeline
    }

    fn entries(&self) -> Vec<(String, Value)> {
        self.0.lock().unwrap().clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_experiment_that_never_routed_writes_no_routing() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut env = Env::start(true, false).await;
    let (routes, rules) = (env.record("virtualservices"), env.record("destinationrules"));
    two_versions(&env, 1, &[], &[]).await;
    env.apply(HAND_MADE).await;
    env.start_controller();
    env.apply_experiment(canary("blocked", [set_weight(10), pause()])).await;
    let exp = env
        .wait_for("blocked", LONG, |e| {
            condition(e, "Ready").is_some_and(|c| c.reason == "ConflictingVirtualService")
                && e.metadata.finalizers.iter().flatten().any(|f| f == "forklane.io/routing")
        })
        .await;
    assert_eq!(phase(&exp), Some(Phase::Pending));
    assert!(condition(&exp, "Ready").unwrap().message.contains("VirtualService default/hand-made"));
    delete(&env, "blocked").await;
    simulated_minutes(2.0).await;
    let written: Vec<Value> = routes.objects().into_iter().map(|o| o["metadata"]["name"].clone()).collect();
    assert_eq!(written, [json!("hand-made")], "only the hand-made VirtualService was ever written");
    assert!(rules.objects().is_empty(), "no DestinationRule was ever written");
    assert_eq!(env.controller_writes(), 0);
    let reasons = event_reasons(&env, "blocked").await;
    assert!(!reasons.iter().any(|(r, _)| r == "RoutingRestored"), "{reasons:?}");
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_running_canary_restores_the_control_and_the_next_experiment_clears_what_it_left() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut env = Env::start(true, false).await;
    let (routes, rules) = (env.record("virtualservices"), env.record("destinationrules"));
    let timeline = Timeline::record(&env, &["virtualservices", "experiments"]);
    two_versions(&env, 2, &[], &[]).await;
    env.start_traffic(500.0, 100);
    env.start_controller();
    env.apply_experiment(canary("first", [set_weight(20), pause(), set_weight(50)])).await;
    let running = paused_at(&env, "first", 1).await;
    let uid = running.metadata.uid.clone().unwrap();
    let vs = routing(&env, "virtualservices", "first-forklane").await.unwrap();
    assert_eq!(served(&vs), split_of(80, 20));
    assert_eq!(vs["metadata"]["ownerReferences"][0]["uid"], uid.as_str(), "owned while the experiment runs");

    delete(&env, "first").await;
    // The restore (all to v1, released) was written before the finalizer went.
    let written: Vec<Value> = named(&routes, "first-forklane").into_iter().map(|(_, o)| o).collect();
    assert_eq!(written.iter().map(served).collect::<Vec<_>>(), [split_of(80, 20), all_on("v1")]);
    let restored = &written[1];
    assert_eq!(owners(restored), 0, "the restore releases the VirtualService");
    let order = timeline.entries();
    let restore = order.iter().position(|(r, o)| r == "virtualservices" && o == restored).unwrap();
    let gone = order.iter().position(|(r, o)| r == "experiments" && o.get("deleted").is_some()).unwrap();
    let unfinalized = order
        .iter()
        .position(|(r, o)| {
            r == "experiments"
                && o["metadata"]["deletionTimestamp"].is_string()
                && o["metadata"]["finalizers"].as_array().is_none_or(Vec::is_empty)
        })
        .unwrap();
    assert!(restore < unfinalized && unfinalized <= gone, "the finalizer went only after the restore");
    let reasons = event_reasons(&env, "first").await;
    assert!(reasons.contains(&("RoutingRestored".into(), "Normal".into())), "{reasons:?}");
    routing_stays_on(&env, "first", "v1").await;

    // A new experiment on the same host starts, and once its routing is in place the objects the
    // first one left are deleted.
    env.apply_experiment(canary("second", [set_weight(30), pause()])).await;
    let second = paused_at(&env, "second", 1).await;
    assert!(
        !second.status.unwrap().conditions.iter().any(|c| c.reason == "ConflictingVirtualService"),
        "the leftovers never block the next experiment"
    );
    let deadline = tokio::time::Instant::now() + LONG;
    while routing(&env, "virtualservices", "first-forklane").await.is_some()
        || routing(&env, "destinationrules", "first-forklane").await.is_some()
    {
        assert!(tokio::time::Instant::now() < deadline, "the leftovers of first were never deleted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let second_routes: Vec<Value> = named(&routes, "second-forklane").into_iter().map(|(_, o)| o).collect();
    assert_eq!(second_routes.iter().map(served).collect::<Vec<_>>(), [all_on("v1"), split_of(70, 30)]);
    let (own, _) = named(&routes, "second-forklane")[0].clone();
    let removed = named(&routes, "first-forklane").into_iter().find(|(_, o)| o.get("deleted").is_some()).unwrap().0;
    assert!(own < removed, "the leftover VirtualService goes only once the new one is in place");
    assert!(named(&rules, "first-forklane").iter().any(|(_, o)| o.get("deleted").is_some()));
    assert_weights_sum_to_100(&routes);
    env.assert_no_routing_503();
    env.shutdown().await;
}

fn promote_next() -> Value {
    command(&Command::Promote(Promote::Next))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_finished_experiment_leaves_its_final_routing_in_place() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut env = Env::start(true, false).await;
    let routes = env.record("virtualservices");
    two_versions(&env, 1, &[], &[]).await;
    env.start_traffic(300.0, 50);
    env.start_controller();
    let patch = |name: &'static str, body: Value| {
        let api = env.experiments();
        async move { api.patch(name, &PatchParams::default(), &Patch::Merge(body)).await.unwrap() }
    };

    // Succeeded: the winner keeps all traffic.
    env.apply_experiment(canary("won", [set_weight(20), pause()])).await;
    paused_at(&env, "won", 1).await;
    patch("won", promote_next()).await;
    let won = env.wait_for_phase("won", LONG, &[Phase::Succeeded]).await;
    assert_eq!(won.status.unwrap().winner.as_deref(), Some("v2"));
    delete(&env, "won").await;
    let reasons = event_reasons(&env, "won").await;
    assert!(reasons.contains(&("RoutingRestored".into(), "Normal".into())), "{reasons:?}");
    routing_stays_on(&env, "won", "v2").await;

    // Rolled back: the control keeps all traffic.
    env.apply_experiment(canary("aborted", [set_weight(20), pause()])).await;
    paused_at(&env, "aborted", 1).await;
    patch("aborted", command(&Command::Abort(Some("QA said no".into())))).await;
    env.wait_for_phase("aborted", LONG, &[Phase::RolledBack]).await;
    assert!(routing(&env, "virtualservices", "won-forklane").await.is_none(), "won's leftovers were cleared");
    delete(&env, "aborted").await;
    routing_stays_on(&env, "aborted", "v1").await;

    // Failed: an edit no plan can follow (a step lowers the weight without an analysis before
    // it) sends all traffic back to the control, and the experiment fails.
    env.apply_experiment(canary("broken", [set_weight(20), pause()])).await;
    paused_at(&env, "broken", 1).await;
    let steps = serde_json::to_value([set_weight(20), pause(), set_weight(10)]).unwrap();
    patch("broken", json!({"spec": {"strategy": {"canary": {"steps": steps}}}})).await;
    let failed = env.wait_for_phase("broken", LONG, &[Phase::Failed]).await;
    assert_eq!(failed.status.unwrap().final_arm.as_deref(), Some("v1"));
    delete(&env, "broken").await;
    routing_stays_on(&env, "broken", "v1").await;

    // (503s during the hand-overs between these experiments: see the ignored test below.)
    assert_weights_sum_to_100(&routes);
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_experiment_takes_over_routing_left_on_another_arm_without_503s() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut env = Env::start(true, false).await;
    // Proxies lag, one by 5 s: for a while some route by the leftovers and some by the new routing.
    let (_, lag) = Lag::scenarios().pop().unwrap();
    env.set_lag(lag.clone());
    two_versions(&env, 1, &[], &[]).await;
    env.start_traffic(1000.0, 100);
    env.start_controller();
    env.apply_experiment(canary("won", [set_weight(20), pause()])).await;
    paused_at(&env, "won", 1).await;
    let api = env.experiments();
    api.patch("won", &PatchParams::default(), &Patch::Merge(promote_next())).await.unwrap();
    env.wait_for_phase("won", LONG, &[Phase::Succeeded]).await;
    delete(&env, "won").await;
    routing_stays_on(&env, "won", "v2").await;
    env.assert_no_routing_503();
    // The leftovers send everything to v2 (subset v2); the next experiment starts on v1 (subset v1).
    env.apply_experiment(canary("next", [set_weight(20), pause()])).await;
    paused_at(&env, "next", 1).await;
    let deadline = tokio::time::Instant::now() + LONG;
    while routing(&env, "destinationrules", "won-forklane").await.is_some() {
        assert!(tokio::time::Instant::now() < deadline, "the leftovers of won were never deleted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    env.until_proxies_catch_up(&lag).await;
    env.assert_no_routing_503();
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_waits_while_no_arm_can_serve_until_a_person_forces_it() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut env = Env::start(true, false).await;
    two_versions(&env, 1, &[], &[]).await;
    env.start_controller();
    env.apply_experiment(canary("stuck", [set_weight(20), pause()])).await;
    paused_at(&env, "stuck", 1).await;
    // The control's pods go away while the experiment runs: its traffic detours to v2.
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), NS);
    deployments.delete("my-app-v1", &DeleteParams::default()).await.unwrap();
    env.wait_for("stuck", LONG, |e| condition_is(e, "ArmUnhealthy", "True")).await;

    env.experiments().delete("stuck", &DeleteParams::default()).await.unwrap();
    let blocked = env.wait_for("stuck", LONG, |e| condition_is(e, "DeletionBlocked", "True")).await;
    let message = condition(&blocked, "DeletionBlocked").unwrap().message;
    assert!(message.contains("v1 has no ready pods") && message.contains("forklane.io/force-delete=true"), "{message}");
    simulated_minutes(5.0).await;
    let still = env.experiments().get_opt("stuck").await.unwrap().expect("the deletion waits");
    assert!(still.metadata.deletion_timestamp.is_some());
    let warnings: Vec<CoreEvent> =
        events(&env, "stuck").await.into_iter().filter(|e| e.reason.as_deref() == Some("DeletionBlocked")).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].type_.as_deref(), Some("Warning"));
    assert_eq!(warnings[0].count.unwrap_or(1), 1, "said once, not once per look");
    let vs = routing(&env, "virtualservices", "stuck-forklane").await.unwrap();
    assert_eq!(served(&vs), all_on("v2"), "traffic stays where it can be served");

    let writes = env.controller_writes();
    let force = json!({"metadata": {"annotations": {"forklane.io/force-delete": "true"}}});
    env.experiments().patch("stuck", &PatchParams::default(), &Patch::Merge(force)).await.unwrap();
    env.wait_gone("stuck", LONG).await;
    // Forced: nothing restored, and the routing still owned by the experiment goes with it.
    simulated_minutes(1.0).await;
    assert_eq!(env.controller_writes(), writes, "a forced deletion writes nothing");
    assert!(routing(&env, "virtualservices", "stuck-forklane").await.is_none());
    assert!(routing(&env, "destinationrules", "stuck-forklane").await.is_none());
    env.shutdown().await;
}

/// Requests of the background traffic that failed so far: a 503 (NR, NC, UH, UF) or a refused
/// connection. Waits (bounded) for the traffic to have run a little first.
async fn failed_requests(env: &Env) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while env.traffic_tally().requests <= 100 {
        assert!(tokio::time::Instant::now() < deadline, "traffic runs: {:?}", env.traffic_tally());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    env.traffic_tally().failed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_canary_while_it_promotes_leaves_all_traffic_on_the_control() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut env = Env::start(true, false).await;
    let routes = env.record("virtualservices");
    two_versions(&env, 2, &[], &[]).await;
    env.start_traffic(500.0, 100);
    env.start_controller();
    // Each routing change counts as propagated after 5 simulated minutes: the promotion stays in
    // Promoting (all traffic written to v2, not yet known to be everywhere) that long.
    let slow = canary("promoting", [set_weight(20), pause()]).routing_delays("5m", "30s");
    env.apply_experiment(slow).await;
    paused_at(&env, "promoting", 1).await;
    let api = env.experiments();
    api.patch("promoting", &PatchParams::default(), &Patch::Merge(promote_next())).await.unwrap();
    let promoting = env.wait_for_phase("promoting", LONG, &[Phase::Promoting]).await;
    assert_eq!(promoting.status.as_ref().unwrap().final_arm.as_deref(), Some("v2"));
    let deadline = tokio::time::Instant::now() + LONG;
    while routing(&env, "virtualservices", "promoting-forklane").await.is_none_or(|vs| served(&vs) != all_on("v2")) {
        assert!(tokio::time::Instant::now() < deadline, "the promotion was never written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let started = tokio::time::Instant::now();
    let deleted = api.delete("promoting", &DeleteParams::default()).await.unwrap().left().expect("finalized later");
    assert_eq!(phase(&deleted), Some(Phase::Promoting), "deleted while promoting");
    env.wait_gone("promoting", LONG).await;
    // The restore waits for its own propagation (5 simulated minutes, 3 s) before the finalizer goes.
    assert!(started.elapsed() < Duration::from_secs(20), "deleted within a bound: {:?}", started.elapsed());
    let reasons = event_reasons(&env, "promoting").await;
    assert!(reasons.contains(&("RoutingRestored".into(), "Normal".into())), "{reasons:?}");
    // Unfinished, the promotion is not the experiment's outcome: all traffic goes back to the
    // control (the winner keeps it only once Succeeded), which has ready pods.
    routing_stays_on(&env, "promoting", "v1").await;
    assert_eq!(env.ready("my-app-v1").await, 2);
    assert_eq!(weight_history(&routes, "v2"), vec![20, 100, 0], "no step skipped, one restore");
    assert_weights_sum_to_100(&routes);
    env.assert_no_routing_503();
    assert_eq!(failed_requests(&env).await, 0, "{:?}", env.traffic_tally());
    env.shutdown().await;
}

/// Makes the control's pods never ready from now on (as a crash loop would), or ready again:
/// a new pod template, rolled out by replacing every pod.
async fn control_ready_after(env: &Env, seconds: i64) {
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), NS);
    let template = json!({"spec": {
        "strategy": {"type": "Recreate", "rollingUpdate": null},
        "template": {"spec": {"containers": [{"name": "my-app", "readinessProbe": {"initialDelaySeconds": seconds}}]}},
    }});
    let kubectl = PatchParams { field_manager: Some("kubectl".into()), ..Default::default() };
    deployments.patch("my-app-v1", &kubectl, &Patch::Strategic(template)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_native_canary_while_the_control_cannot_serve_waits_for_it_then_restores_it() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut env = Env::start(false, false).await;
    two_versions(&env, 1, &[], &[]).await;
    env.start_traffic(500.0, 100);
    env.start_controller();
    let native = ExperimentBuilder::canary("native")
        .total_replicas(4)
        .steps([set_weight(50), pause()])
        .progress_deadline("1h", OnProgressDeadline::Rollback);
    env.apply_experiment(native).await;
    paused_at(&env, "native", 1).await;
    env.wait_ready("my-app-v1", 2).await;
    env.wait_ready("my-app-v2", 2).await;
    control_ready_after(&env, 1_000_000).await;
    env.wait_ready("my-app-v1", 0).await;

    // Failures of the crash itself (pods that go) are not the deletion's.
    let failed_before = failed_requests(&env).await;
    env.experiments().delete("native", &DeleteParams::default()).await.unwrap();
    let blocked = env.wait_for("native", LONG, |e| condition_is(e, "DeletionBlocked", "True")).await;
    let message = condition(&blocked, "DeletionBlocked").unwrap().message;
    assert!(message.contains("v1 has no ready pods") && message.contains("forklane.io/force-delete=true"), "{message}");
    simulated_minutes(3.0).await;
    assert!(env.experiments().get_opt("native").await.unwrap().is_some(), "the deletion waits for the control");
    let answers: Vec<Option<String>> = (0..200).map(|_| env.request(&[])).collect();
    assert!(answers.iter().all(|v| v.as_deref() == Some("v2")), "v2's ready pods serve meanwhile");

    // The control can serve again: the deletion restores it and completes.
    control_ready_after(&env, 0).await;
    env.wait_gone("native", LONG).await;
    let reasons = event_reasons(&env, "native").await;
    assert!(reasons.contains(&("RoutingRestored".into(), "Normal".into())), "{reasons:?}");
    simulated_minutes(2.0).await;
    assert_eq!((env.ready("my-app-v1").await, env.ready("my-app-v2").await), (4, 0), "all replicas on the control");
    let services: Api<Service> = Api::namespaced(env.client.clone(), NS);
    let selector = services.get("my-app").await.unwrap().spec.unwrap().selector.unwrap_or_default();
    assert_eq!(selector, [("app".to_string(), "my-app".to_string())].into(), "the Service selects ready pods of v1");
    let answers: Vec<Option<String>> = (0..200).map(|_| env.request(&[])).collect();
    assert!(answers.iter().all(|v| v.as_deref() == Some("v1")), "every request answered by v1");
    assert_eq!(
        failed_requests(&env).await,
        failed_before,
        "no request failed since the deletion: {:?}",
        env.traffic_tally()
    );
    env.shutdown().await;
}

/// Write requests (create, update, patch, delete) a client with `agent` as its User-Agent made.
fn write_requests(env: &Env, agent: &str) -> Vec<String> {
    let writes = ["create", "update", "patch", "delete", "deletecollection"];
    env.cluster
        .audit()
        .records()
        .into_iter()
        .filter(|r| r.user_agent == agent && writes.contains(&r.verb.as_str()))
        .map(|r| format!("{} {} {}", r.verb, r.rbac_resource(), r.name.unwrap_or_default()))
        .collect()
}

const AGENT: &str = "forklane-controller-under-test/1.0";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settled_experiment_writes_nothing_until_a_person_changes_its_routing() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut env = Env::start(true, true).await;
    let routes = env.record("virtualservices");
    two_versions(&env, 2, &[], &[]).await;
    env.apply(&app("other", 1, &[]).replace("my-app", "other-app")).await;
    env.start_traffic(500.0, 100);
    let mut config = env.cluster.client_config();
    config.headers.push((http::header::USER_AGENT, http::HeaderValue::from_static(AGENT)));
    env.start_controller_with(kube::Client::try_from(config).unwrap());
    env.apply_experiment(canary("quiet", [set_weight(20), pause(), set_weight(50)])).await;
    paused_at(&env, "quiet", 1).await;
    simulated_minutes(1.0).await;
    let (objects, requests, versions) = (env.controller_writes(), write_requests(&env, AGENT), routes.objects().len());
    // Both arms serve: the DestinationRule defines both subsets at once, and the route (20% to
    // v2, the start state of all on v1 lasting no time) waits for it to propagate: the status
    // says so, once.
    let routing_writes: Vec<&String> = requests.iter().filter(|r| !r.contains("events")).collect();
    assert_eq!(
        routing_writes,
        [
            "patch experiments quiet",
            "patch destinationrules quiet-forklane",
            "patch experiments/status quiet",
            "patch virtualservices quiet-forklane",
            "patch experiments/status quiet",
        ],
        "the finalizer, then the routing and the status, each once"
    );
    assert_eq!(objects, 2);

    // Traffic runs and time passes: nothing to write.
    simulated_minutes(5.0).await;
    assert_eq!(env.controller_writes(), objects);
    assert_eq!(write_requests(&env, AGENT), requests, "no write request while nothing changes");

    // Unrelated changes: a label on another Deployment and one on the Experiment itself.
    let label = |key: &str| json!({"metadata": {"labels": {key: "yes"}}});
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), NS);
    deployments.patch("other-app-other", &PatchParams::default(), &Patch::Merge(label("touched"))).await.unwrap();
    env.experiments().patch("quiet", &PatchParams::default(), &Patch::Merge(label("team"))).await.unwrap();
    simulated_minutes(3.0).await;
    assert_eq!(env.controller_writes(), objects);
    assert_eq!(write_requests(&env, AGENT), requests, "no write request after unrelated changes");
    assert_eq!(routes.objects().len(), versions);

    // A person moves the weights: the live experiment puts its own back, with exactly one write.
    let mut vs = routing(&env, "virtualservices", "quiet-forklane").await.unwrap();
    let http = vs["spec"]["http"].as_array_mut().unwrap();
    for destination in http.last_mut().unwrap()["route"].as_array_mut().unwrap() {
        destination["weight"] = json!(50);
    }
    let edit = json!({"spec": {"http": http}});
    let routes_api = istio(&env, "virtualservices");
    routes_api.patch("quiet-forklane", &PatchParams::default(), &Patch::Merge(edit)).await.unwrap();
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        let vs = routing(&env, "virtualservices", "quiet-forklane").await.unwrap();
        if served(&vs) == split_of(80, 20) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the weights were never put back: {:?}", split(&vs));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    simulated_minutes(3.0).await;
    assert_eq!(env.controller_writes(), objects + 1, "one object written back");
    let after = write_requests(&env, AGENT);
    eprintln!(
        "EVENTS {:?}",
        events(&env, "quiet").await.iter().map(|e| (e.reason.clone(), e.message.clone(), e.count)).collect::<Vec<_>>()
    );
    // The restore is a routing write: the status records when (the propagation delay counts from
    // it), and an event says what was put back.
    let restore = ["patch virtualservices quiet-forklane", "patch experiments/status quiet", "create events "];
    assert_eq!(after[requests.len()..], restore.map(String::from), "{after:?}");
    let reasons = event_reasons(&env, "quiet").await;
    assert!(reasons.contains(&("DriftCorrected".into(), "Warning".into())), "{reasons:?}");
    assert_eq!(weight_history(&routes, "v2"), vec![20, 50, 20]);
    let quiet = env.experiments().get("quiet").await.unwrap();
    assert_eq!((phase(&quiet), step(&quiet)), (Some(Phase::Paused), Some(1)));
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_reconcile_is_reported_once_backs_off_and_clears_when_fixed() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut env = Env::start(false, false).await;
    let events_log = env.record("events");
    // The Deployments, but no Service: without a mesh the experiment switches a Service that
    // is not there, and the API server refuses to create one from a selector alone.
    env.apply(&app("v1", 1, &[])).await;
    env.apply(&app("v2", 1, &[])).await;
    env.wait_ready("my-app-v1", 1).await;
    env.wait_ready("my-app-v2", 1).await;
    env.start_controller();
    let bg = ExperimentBuilder::blue_green("bg").mesh(MeshMode::None);
    env.apply_experiment(bg.progress_deadline("1h", OnProgressDeadline::Rollback)).await;
    let failing = env.wait_for("bg", LONG, |e| condition_is(e, "ReconcileError", "True")).await;
    let reported = condition(&failing, "ReconcileError").unwrap();
    assert_eq!(
        reported.message,
        r#"Kubernetes API: Service "my-app" is invalid: spec.ports: Required value (422 Invalid)"#
    );
    let errors_then = env.controller_metrics.errors.get();
    // Backoff runs on the controller's clock (100× here): retried after about 1, 2, 4 … 256 s,
    // then every 5 minutes (±20%), so about 10 times in 16 simulated minutes; once per watch
    // event or per second would be hundreds.
    let since = env.clock.now();
    while since.duration_until(env.clock.now()).as_secs_f64() < 16.0 * 60.0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let errors = env.controller_metrics.errors.get();
    assert!(
        (6..=14).contains(&errors),
        "{errors} failed reconciles in 16 simulated minutes ({errors_then} when first reported)"
    );
    // The Recorder patches a repeated event's series: every publish is one write in the log.
    let published: Vec<Value> = events_log.objects().into_iter().filter(|e| e["reason"] == "ReconcileError").collect();
    assert_eq!(published.len(), 1, "one Warning event, not one per retry: {published:?}");
    assert_eq!(published[0]["type"], "Warning");
    assert_eq!(events(&env, "bg").await.iter().filter(|e| e.reason.as_deref() == Some("ReconcileError")).count(), 1);

    // The cause is fixed: the next reconcile succeeds, the condition clears, the experiment goes on.
    env.apply(&service("{app: my-app}")).await;
    let fixed = env
        .wait_for("bg", LONG, |e| condition_is(e, "ReconcileError", "False") && phase(e) == Some(Phase::Paused))
        .await;
    assert_eq!(condition(&fixed, "ReconcileError").unwrap().reason, "Succeeded");
    assert_eq!(fixed.status.unwrap().mesh, Some(Routing::Native));
    let services: Api<Service> = Api::namespaced(env.client.clone(), NS);
    let selector = services.get("my-app").await.unwrap().spec.unwrap().selector.unwrap();
    assert_eq!(selector.get("version").map(String::as_str), Some("v1"), "the control serves until the switch");
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_installed_while_the_controller_runs_is_used_by_the_next_experiment() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut env = Env::start(false, false).await;
    let routes = env.record("virtualservices");
    two_versions(&env, 1, &[], &[]).await;
    env.start_controller();
    // The controller has watched for a while without Istio's API.
    simulated_minutes(2.0).await;
    for crd in forklane_sim::sandbox::ISTIO_CRDS {
        forklane_sim::sandbox::apply_yaml(&env.client, crd, NS).await.unwrap();
    }
    // At once: the CRDs' watch events may reach the controller after the experiment's.
    let auto = ExperimentBuilder::canary("auto").steps([set_weight(20), pause()]);
    env.apply_experiment(auto.progress_deadline("1h", OnProgressDeadline::Rollback)).await;
    let exp = paused_at(&env, "auto", 1).await;
    assert_eq!(exp.status.unwrap().mesh, Some(Routing::Istio), "auto picks the mesh installed since the start");
    let vs = routing(&env, "virtualservices", "auto-forklane").await.expect("a VirtualService is written");
    assert_eq!(served(&vs), split_of(80, 20));
    assert!(routing(&env, "destinationrules", "auto-forklane").await.is_some());
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), NS);
    for (name, replicas) in [("my-app-v1", 1), ("my-app-v2", 1)] {
        let d = deployments.get(name).await.unwrap();
        assert_eq!(d.spec.unwrap().replicas, Some(replicas), "{name}: Istio routing scales nothing");
    }
    assert_weights_sum_to_100(&routes);
    env.shutdown().await;
}

/// The state a crash between the controller's two writes of a promote leaves (status says the
/// promote was handled, the annotation is still there), made by hand: the promote does not act
/// again, the annotation is cleared, and the next promote acts once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promote_acts_exactly_once_even_when_its_annotation_outlives_a_crash() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut env = Env::start(true, false).await;
    two_versions(&env, 1, &[], &[]).await;
    env.start_controller();
    env.apply_experiment(canary("once", [set_weight(20), pause(), pause(), set_weight(50)])).await;
    paused_at(&env, "once", 1).await;
    // Handled already, as the status of a controller that stopped before clearing it says: its
    // whole status, applied as the controller applies it (field manager `forklane`).
    env.stop_controller().await;
    let mut status = env.experiments().get("once").await.unwrap().status.unwrap();
    status.handled_promote = Some("next".into());
    let body = json!({"apiVersion": "forklane.io/v1alpha1", "kind": "Experiment", "status": status});
    let as_controller = PatchParams::apply("forklane").force();
    env.experiments().patch_status("once", &as_controller, &Patch::Apply(body)).await.unwrap();
    let promote = command(&Command::Promote(Promote::Next));
    env.experiments().patch("once", &PatchParams::default(), &Patch::Merge(promote.clone())).await.unwrap();
    env.start_controller();
    let cleared = env
        .wait_for("once", LONG, |e| {
            e.metadata.annotations.as_ref().is_none_or(|a| !a.contains_key("forklane.io/promote"))
        })
        .await;
    assert_eq!(
        (phase(&cleared), step(&cleared)),
        (Some(Phase::Paused), Some(1)),
        "the handled promote did not act again"
    );
    simulated_minutes(2.0).await;
    let still = env.experiments().get("once").await.unwrap();
    assert_eq!((phase(&still), step(&still)), (Some(Phase::Paused), Some(1)));
    assert_eq!(still.status.as_ref().unwrap().handled_promote, None, "forgotten once the annotation is gone");
    // A new promote acts, once: past the first pause to the second, not beyond.
    env.experiments().patch("once", &PatchParams::default(), &Patch::Merge(promote)).await.unwrap();
    paused_at(&env, "once", 2).await;
    simulated_minutes(2.0).await;
    let after = env.experiments().get("once").await.unwrap();
    assert_eq!((phase(&after), step(&after)), (Some(Phase::Paused), Some(2)));
    env.shutdown().await;
}
