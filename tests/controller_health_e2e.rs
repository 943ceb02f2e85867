//! The controller's continuous health checks and hands-off rules end to end on the embedded
//! cluster: arms that lose their pods mid-run, an abort while the control cannot serve, steps that
//! wait for every replica, finished experiments left to people, and edits while analysing. Every
//! test asserts on every VirtualService written (with the ready pods of each version at the moment
//! it was written), the phase, the conditions, the Events and the replicas.

use crate::support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use forklane_core::api::{Experiment, MeshMode, OnProgressDeadline, Phase};
use forklane_core::controller::commands::{self, Command, Promote};
use forklane_core::fixtures::{ExperimentBuilder, analysis, conversion, pause, set_weight};
use forklane_core::istio::VirtualService;
use forklane_sim::cluster::store::ChangeKind;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use support::e2e::*;

const ENDED: &[Phase] = &[Phase::Succeeded, Phase::RolledBack, Phase::Failed];
/// A bound on every wait (real time); the whole test stays well under a minute.
const LONG: Duration = Duration::from_secs(30);
/// For tests not about the deadline: far longer than any wait for pods.
const NO_DEADLINE: &str = "1h";

/// The e2e runs share two cores: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Real time for `seconds` of simulated time.
fn simulated(seconds: f64) -> Duration {
    Duration::from_secs_f64(seconds / SPEED)
}

/// The condition's status ("True"/"False") and message.
fn condition(exp: &Experiment, type_: &str) -> Option<(String, String)> {
    let c = exp.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.message.clone()))
}

fn condition_is_true(exp: &Experiment, type_: &str) -> bool {
    condition(exp, type_).is_some_and(|(s, _)| s == "True")
}

fn since(exp: &Experiment, type_: &str) -> jiff::Timestamp {
    let c = exp.status.as_ref().unwrap().conditions.iter().find(|c| c.type_ == type_).unwrap();
    c.last_transition_time.0
}

fn analysis_started_at(exp: &Experiment) -> Option<jiff::Timestamp> {
    exp.status.as_ref().and_then(|s| s.analysis_started_at.as_deref()).map(|at| at.parse().unwrap())
}

/// Simulated seconds `analysis_started_at` moved from `before` to `after`.
fn moved(before: &Experiment, after: &Experiment) -> f64 {
    let (from, to) = (analysis_started_at(before).unwrap(), analysis_started_at(after).unwrap());
    to.duration_since(from).as_secs_f64()
}

fn deployments(env: &Env) -> Api<Deployment> {
    Api::namespaced(env.client.clone(), NS)
}

async fn scale(env: &Env, deployment: &str, replicas: i32) {
    let patch = Patch::Merge(json!({"spec": {"replicas": replicas}}));
    deployments(env).patch(deployment, &PatchParams::default(), &patch).await.unwrap();
}

async fn command(env: &Env, name: &str, command: &Command) {
    let patch = Patch::Merge(commands::patch(command));
    env.experiments().patch(name, &PatchParams::default(), &patch).await.unwrap();
}

async fn edit(env: &Env, name: &str, spec: Value) {
    let patch = Patch::Merge(json!({ "spec": spec }));
    env.experiments().patch(name, &PatchParams::default(), &patch).await.unwrap();
}

/// One Event the controller published about an experiment (read as core/v1: the Recorder writes
/// events.k8s.io/v1, the same resource).
#[derive(Debug)]
struct Published {
    type_: String,
    reason: String,
    message: String,
}

async fn events(env: &Env, experiment: &str) -> Vec<Published> {
    let api: Api<Event> = Api::namespaced(env.client.clone(), NS);
    let list = api.list(&ListParams::default()).await.unwrap();
    list.items
        .into_iter()
        .filter(|e| e.involved_object.kind.as_deref() == Some("Experiment"))
        .filter(|e| e.involved_object.name.as_deref() == Some(experiment))
        .map(|e| Published {
            type_: e.type_.unwrap_or_default(),
            reason: e.reason.unwrap_or_default(),
            message: e.message.unwrap_or_default(),
        })
        .collect()
}

/// Waits until the controller published an Event with `reason` about `experiment`.
async fn wait_event(env: &Env, experiment: &str, reason: &str) -> Published {
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        if let Some(e) = events(env, experiment).await.into_iter().find(|e| e.reason == reason) {
            return e;
        }
        assert!(tokio::time::Instant::now() < deadline, "no {reason} event: {:?}", events(env, experiment).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One VirtualService written, and the ready (not terminating) pods of each version when it was.
#[derive(Clone, Debug)]
struct Written {
    split: BTreeMap<String, i64>,
    /// Subset → weight over every route (header rules included).
    routes: Vec<BTreeMap<String, i64>>,
    ready: BTreeMap<String, usize>,
    object: Value,
}

impl Written {
    fn weight(&self, arm: &str) -> i64 {
        self.split.get(arm).copied().unwrap_or(0)
    }

    fn ready(&self, version: &str) -> usize {
        self.ready.get(version).copied().unwrap_or(0)
    }
}

#[derive(Default)]
struct Seen {
    /// Ready pod → its version.
    ready_pods: BTreeMap<String, String>,
    routes: Vec<Written>,
    lagged: bool,
}

/// Every VirtualService written, in the store's order, interleaved with pod readiness: whether a
/// write sent traffic to a version without (enough) ready pods at that moment is checkable.
#[derive(Clone, Default)]
struct Timeline(Arc<Mutex<Seen>>);

fn pod_ready(pod: &Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_null()
        && pod["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

fn every_route(vs: &Value) -> Vec<BTreeMap<String, i64>> {
    let http = vs["spec"]["http"].as_array().cloned().unwrap_or_default();
    http.iter()
        .map(|h| {
            let mut out = BTreeMap::new();
            for d in h["route"].as_array().into_iter().flatten() {
                let subset = d["destination"]["subset"].as_str().unwrap_or_default().to_string();
                *out.entry(subset).or_insert(0) += d["weight"].as_i64().unwrap_or(100);
            }
            out
        })
        .collect()
}

impl Timeline {
    fn record(env: &Env) -> Timeline {
        let timeline = Timeline::default();
        let (sink, mut changes) = (timeline.clone(), env.cluster.store().changes());
        tokio::spawn(async move {
            loop {
                let change = match changes.recv().await {
                    Ok(change) => change,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        sink.0.lock().unwrap().lagged = true;
                        continue;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                let mut seen = sink.0.lock().unwrap();
                let object = change.object.as_ref();
                match change.resource.resource.as_str() {
                    "pods" => {
                        let name = object["metadata"]["name"].as_str().unwrap_or_default().to_string();
                        let version = object["metadata"]["labels"]["version"].as_str().unwrap_or_default();
                        if change.kind != ChangeKind::Deleted && pod_ready(object) {
                            seen.ready_pods.insert(name, version.to_string());
                        } else {
                            seen.ready_pods.remove(&name);
                        }
                    }
                    "virtualservices" if change.kind != ChangeKind::Deleted => {
                        let mut ready = BTreeMap::new();
                        for version in seen.ready_pods.values() {
                            *ready.entry(version.clone()).or_insert(0) += 1;
                        }
                        let written = Written {
                            split: split(object),
                            routes: every_route(object),
                            ready,
                            object: object.clone(),
                        };
                        seen.routes.push(written);
                    }
                    _ => {}
                }
            }
        });
        timeline
    }

    fn len(&self) -> usize {
        self.0.lock().unwrap().routes.len()
    }

    /// Waits (real time) until the timeline satisfies `done`: it follows the store a moment later.
    async fn wait(&self, what: &str, done: impl Fn(&Timeline) -> bool) {
        let deadline = tokio::time::Instant::now() + LONG;
        while !done(self) {
            assert!(tokio::time::Instant::now() < deadline, "never seen: {what}: {:?}", self.all());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The VirtualServices written from the `from`-th on.
    fn since(&self, from: usize) -> Vec<Written> {
        let seen = self.0.lock().unwrap();
        assert!(!seen.lagged, "the timeline fell behind the store");
        seen.routes[from..].to_vec()
    }

    fn all(&self) -> Vec<Written> {
        self.since(0)
    }

    fn last(&self) -> Written {
        self.all().pop().expect("a VirtualService was written")
    }

    /// The distinct successive weights of `arm` from the `from`-th write on.
    fn history(&self, from: usize, arm: &str) -> Vec<i64> {
        let mut out: Vec<i64> = Vec::new();
        for w in self.since(from) {
            if out.last() != Some(&w.weight(arm)) {
                out.push(w.weight(arm));
            }
        }
        out
    }
}

/// Every route of every VirtualService written has weights summing to 100.
fn assert_sums(timeline: &Timeline) {
    for w in timeline.all() {
        for route in &w.routes {
            assert_eq!(route.values().sum::<i64>(), 100, "{}", w.object);
        }
    }
}

/// All traffic of every route of the written VirtualService on `arm`.
fn all_on(w: &Written, arm: &str) -> bool {
    w.routes.iter().all(|r| r.iter().all(|(subset, weight)| *weight == 0 || subset == arm))
}

/// An Istio canary of `v1`/`v2` (2 pods each) paused at 20%: the environment and its timeline.
async fn canary_paused_at_20(name: &str, deadline: &str, on: OnProgressDeadline) -> (Env, Timeline) {
    let mut env = Env::start(true, false).await;
    let timeline = Timeline::record(&env);
    two_versions(&env, 2, &[], &[]).await;
    env.start_controller();
    let steps = [set_weight(20), pause(), set_weight(50)];
    let canary = ExperimentBuilder::canary(name).mesh(MeshMode::Istio).steps(steps).progress_deadline(deadline, on);
    env.apply_experiment(canary).await;
    env.wait_for(name, LONG, |e| phase(e) == Some(Phase::Paused) && step(e) == Some(1)).await;
    assert_eq!(timeline.last().split, [("v1".into(), 80), ("v2".into(), 20)].into());
    (env, timeline)
}

/// The candidate's Deployment is deleted at 20%: its share goes to the control at once and never
/// comes back; `ArmUnhealthy` and its Warning event; the deadline then passes. The environment,
/// its timeline and the index of the first write after the deletion.
async fn candidate_deleted_at_20(name: &str, on: OnProgressDeadline) -> (Env, Timeline, usize) {
    let (env, timeline) = canary_paused_at_20(name, "2m", on).await;
    let mark = timeline.len();
    deployments(&env).delete("my-app-v2", &DeleteParams::default()).await.unwrap();
    let unhealthy = env.wait_for(name, LONG, |e| condition_is_true(e, "ArmUnhealthy")).await;
    let (_, message) = condition(&unhealthy, "ArmUnhealthy").unwrap();
    assert!(message.contains("arm v2 has no ready pods") && message.contains("goes to v1"), "{message}");
    let warning = wait_event(&env, name, "ArmUnhealthy").await;
    assert_eq!(warning.type_, "Warning");
    assert!(warning.message.contains("v2"), "{}", warning.message);
    timeline.wait("the detour", |t| t.len() > mark).await;
    let detour = timeline.since(mark)[0].clone();
    assert_eq!(detour.split, [("v1".into(), 100), ("v2".into(), 0)].into(), "the 20% goes to the control");
    let overdue = env.wait_for(name, LONG, |e| condition_is_true(e, "ProgressDeadlineExceeded")).await;
    let waited = since(&overdue, "ProgressDeadlineExceeded").duration_since(since(&unhealthy, "ArmUnhealthy"));
    let waited = waited.as_secs_f64();
    assert!((120.0..180.0).contains(&waited), "the deadline (2m) passes {waited} s after the pods are gone");
    let (_, message) = condition(&overdue, "ProgressDeadlineExceeded").unwrap();
    assert!(message.contains("progress deadline (2m)") && message.contains("v2"), "{message}");
    assert_eq!(wait_event(&env, name, "ProgressDeadlineExceeded").await.type_, "Warning");
    (env, timeline, mark)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_whose_deployment_is_deleted_gets_no_traffic_again_and_rolls_back_at_the_deadline() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (env, timeline, mark) = candidate_deleted_at_20("gone", OnProgressDeadline::Rollback).await;
    let exp = env.wait_for_phase("gone", LONG, ENDED).await;
    let status = exp.status.clone().unwrap();
    assert_eq!(
        (status.phase, status.final_arm.as_deref(), status.winner.as_deref()),
        (Some(Phase::RolledBack), Some("v1"), None),
        "{:?}",
        status.message
    );
    let message = status.message.unwrap_or_default();
    assert!(message.contains("waited longer than the progress deadline (2m)"), "{message}");
    // A few more minutes: nothing changes and v2 never gets traffic again.
    tokio::time::sleep(simulated(300.0)).await;
    let after = env.experiments().get("gone").await.unwrap();
    assert_eq!(phase(&after), Some(Phase::RolledBack));
    assert!(condition_is_true(&after, "ProgressDeadlineExceeded"), "it still says why it rolled back");
    let since = timeline.since(mark);
    assert!(since.iter().all(|w| w.weight("v2") == 0), "never again to v2: {:?}", since);
    assert!(all_on(&timeline.last(), "v1"));
    let published = events(&env, "gone").await;
    assert!(published.iter().any(|e| e.reason == "RolledBack" && e.type_ == "Warning"), "{published:?}");
    assert!(!published.iter().any(|e| e.reason == "Succeeded" || e.reason == "Promoting"), "{published:?}");
    assert_sums(&timeline);
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_whose_deployment_is_deleted_is_held_at_the_deadline_with_on_progress_deadline_hold() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (env, timeline, mark) = candidate_deleted_at_20("held", OnProgressDeadline::Hold).await;
    // Five more minutes past the deadline: held, not rolled back.
    tokio::time::sleep(simulated(300.0)).await;
    let exp = env.experiments().get("held").await.unwrap();
    let status = exp.status.clone().unwrap();
    assert!(!ENDED.contains(&status.phase.unwrap()), "{:?}", status.phase);
    assert_eq!((status.final_arm.as_deref(), status.winner.as_deref()), (None, None));
    assert!(condition_is_true(&exp, "ProgressDeadlineExceeded"));
    assert!(condition_is_true(&exp, "ArmUnhealthy"));
    let since = timeline.since(mark);
    assert!(since.iter().all(|w| w.weight("v2") == 0), "never again to v2: {since:?}");
    assert_eq!(timeline.last().split, [("v1".into(), 100), ("v2".into(), 0)].into());
    let published = events(&env, "held").await;
    assert!(!published.iter().any(|e| ["RolledBack", "RollingBack"].contains(&e.reason.as_str())), "{published:?}");
    assert_sums(&timeline);
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_while_the_control_has_no_ready_pods_never_routes_to_it_and_completes_once_it_is_back() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (env, timeline) = canary_paused_at_20("abort", NO_DEADLINE, OnProgressDeadline::Rollback).await;
    let mark = timeline.len();
    scale(&env, "my-app-v1", 0).await;
    let unhealthy = env.wait_for("abort", LONG, |e| condition_is_true(e, "ArmUnhealthy")).await;
    let (_, message) = condition(&unhealthy, "ArmUnhealthy").unwrap();
    assert!(message.contains("arm v1 has no ready pods") && message.contains("goes to v2"), "{message}");
    assert_eq!(wait_event(&env, "abort", "ArmUnhealthy").await.type_, "Warning");
    command(&env, "abort", &Command::Abort(Some("bad release".into()))).await;
    // Three simulated minutes of outage with the abort asked for: not done, all on v2.
    let deadline = tokio::time::Instant::now() + simulated(180.0);
    while tokio::time::Instant::now() < deadline {
        let exp = env.experiments().get("abort").await.unwrap();
        assert_ne!(phase(&exp), Some(Phase::RolledBack), "not rolled back while the control cannot serve");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let exp = env.experiments().get("abort").await.unwrap();
    assert_eq!(exp.status.as_ref().unwrap().final_arm.as_deref(), Some("v1"), "the abort was taken");
    assert_eq!(timeline.last().split, [("v1".into(), 0), ("v2".into(), 100)].into());
    scale(&env, "my-app-v1", 2).await;
    let exp = env.wait_for_phase("abort", LONG, ENDED).await;
    let status = exp.status.clone().unwrap();
    assert_eq!(
        (status.phase, status.final_arm.as_deref(), status.winner.as_deref()),
        (Some(Phase::RolledBack), Some("v1"), None),
        "{:?}",
        status.message
    );
    let since = timeline.since(mark);
    assert!(since.iter().any(|w| w.ready("v1") == 0), "VirtualServices were written during the outage");
    for w in &since {
        assert!(w.ready("v1") > 0 || w.weight("v1") == 0, "traffic to v1 while it had no ready pods: {w:?}");
    }
    assert_eq!(timeline.history(mark, "v1"), vec![0, 100], "all on v2 during the outage, then all on v1");
    let last = timeline.last();
    assert!(all_on(&last, "v1") && last.ready("v1") == 2, "{last:?}");
    assert_eq!(condition(&exp, "ArmUnhealthy").unwrap().0, "False");
    assert_sums(&timeline);
    env.shutdown().await;
}

/// `app`, with readiness `initial_delay` simulated seconds after each pod starts.
fn slow_app(version: &str, replicas: i32, initial_delay: i64) -> String {
    let slow = format!("periodSeconds: 5\n            initialDelaySeconds: {initial_delay}");
    let yaml = app(version, replicas, &[]).replace("periodSeconds: 5", &slow);
    assert!(yaml.contains("initialDelaySeconds"));
    yaml
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_step_raises_the_candidates_weight_only_once_all_its_replicas_are_ready() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut env = Env::start(true, false).await;
    let timeline = Timeline::record(&env);
    env.apply(&service("{app: my-app}")).await;
    env.apply(&app("v1", 2, &[])).await;
    // Every v2 pod is ready 240 simulated seconds after it starts (2.4 s real).
    env.apply(&slow_app("v2", 1, 240)).await;
    env.wait_ready("my-app-v1", 2).await;
    env.wait_ready("my-app-v2", 1).await;
    env.start_controller();
    let steps = [set_weight(20), pause(), set_weight(50)];
    let canary = ExperimentBuilder::canary("slow").mesh(MeshMode::Istio).steps(steps);
    env.apply_experiment(canary.progress_deadline(NO_DEADLINE, OnProgressDeadline::Rollback)).await;
    env.wait_for("slow", LONG, |e| phase(e) == Some(Phase::Paused) && step(e) == Some(1)).await;
    // Two more v2 pods, not ready for a while; then promote past the pause.
    scale(&env, "my-app-v2", 3).await;
    let deadline = tokio::time::Instant::now() + LONG;
    while deployments(&env).get("my-app-v2").await.unwrap().status.and_then(|s| s.replicas) != Some(3) {
        assert!(tokio::time::Instant::now() < deadline, "v2 never had 3 pods");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(env.ready("my-app-v2").await, 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    command(&env, "slow", &Command::Promote(Promote::Next)).await;
    let waiting = env
        .wait_for("slow", LONG, |e| {
            e.status.as_ref().and_then(|s| s.message.as_deref()).is_some_and(|m| m.contains("waiting for 3 ready pods"))
        })
        .await;
    // Step 3 routes what step 2 (setWeight 50) set; the routing still holds step 1's 20%.
    let status = waiting.status.clone().unwrap();
    assert_eq!((status.current_step, status.phase), (Some(3), Some(Phase::Progressing)), "promoted past the pause");
    assert_eq!(status.weight_summary.as_deref(), Some("v1=50,v2=50"));
    assert!(env.ready("my-app-v2").await < 3);
    assert_eq!(timeline.last().split, [("v1".into(), 80), ("v2".into(), 20)].into(), "still 20% while waiting");
    let exp = env.wait_for_phase("slow", LONG, ENDED).await;
    assert_eq!(exp.status.as_ref().unwrap().winner.as_deref(), Some("v2"));
    for w in timeline.all() {
        let raised = w.weight("v2") > 20;
        assert!(!raised || w.ready("v2") >= 3, "v2 raised to {} with {} ready pods", w.weight("v2"), w.ready("v2"));
    }
    assert_eq!(timeline.history(0, "v2"), vec![20, 50, 100]);
    assert_sums(&timeline);
    env.shutdown().await;
}

fn virtual_services(env: &Env) -> Api<VirtualService> {
    Api::namespaced(env.client.clone(), NS)
}

/// The edit is acknowledged in the message and an `EditIgnored` event, and changes nothing else.
async fn assert_edit_ignored(env: &Env, name: &str, before: &Experiment) {
    let generation = before.metadata.generation.unwrap();
    edit(env, name, json!({"progressDeadline": "2h"})).await;
    let exp = env
        .wait_for(name, LONG, |e| e.status.as_ref().and_then(|s| s.observed_generation) == Some(generation + 1))
        .await;
    let (old, new) = (before.status.clone().unwrap(), exp.status.clone().unwrap());
    assert!(new.message.as_deref().unwrap_or_default().contains("edits do not restart it"), "{:?}", new.message);
    assert_eq!((new.phase, new.final_arm, new.winner), (old.phase, old.final_arm, old.winner));
    assert_eq!(new.current_step, old.current_step);
    let ignored = wait_event(env, name, "EditIgnored").await;
    assert_eq!(ignored.type_, "Normal");
    assert!(ignored.message.contains("edits do not restart it"), "{}", ignored.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_istio_canary_leaves_the_winner_and_the_routing_to_people() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (env, timeline) = canary_paused_at_20("done", NO_DEADLINE, OnProgressDeadline::Rollback).await;
    command(&env, "done", &Command::Promote(Promote::Full)).await;
    let finished = env.wait_for_phase("done", LONG, ENDED).await;
    let status = finished.status.clone().unwrap();
    assert_eq!((status.phase, status.winner.as_deref()), (Some(Phase::Succeeded), Some("v2")), "{:?}", status.message);
    assert!(all_on(&timeline.last(), "v2"));
    let deployment_log = env.record("deployments");
    // A person scales the winner and routes 10% back to v1 by hand.
    scale(&env, "my-app-v2", 5).await;
    let vs_name = timeline.last().object["metadata"]["name"].as_str().unwrap().to_string();
    let mut http = timeline.last().object["spec"]["http"].clone();
    let catch_all = http.as_array_mut().unwrap().last_mut().unwrap();
    let to_v2 = catch_all["route"].as_array().unwrap().iter().find(|d| d["destination"]["subset"] == "v2").cloned();
    let (mut v1, mut v2) = (to_v2.clone().unwrap(), to_v2.unwrap());
    v1["destination"]["subset"] = json!("v1");
    v1["weight"] = json!(10);
    v2["weight"] = json!(90);
    catch_all["route"] = json!([v1, v2]);
    let by_hand = Patch::Merge(json!({"spec": {"http": http}}));
    virtual_services(&env).patch(&vs_name, &PatchParams::default(), &by_hand).await.unwrap();
    env.wait_ready("my-app-v2", 5).await;
    let by_person: BTreeMap<String, i64> = [("v1".into(), 10), ("v2".into(), 90)].into();
    timeline.wait("the person's routing", |t| t.last().split == by_person).await;
    let edited = timeline.len();
    // Five simulated minutes later both are as the person left them.
    tokio::time::sleep(simulated(300.0)).await;
    assert_eq!(timeline.len(), edited, "no VirtualService written after the person's: {:?}", timeline.since(edited));
    let live = virtual_services(&env).get(&vs_name).await.unwrap();
    assert_eq!(split(&serde_json::to_value(&live).unwrap()), [("v1".into(), 10), ("v2".into(), 90)].into());
    let v2 = deployments(&env).get("my-app-v2").await.unwrap();
    assert_eq!(v2.spec.unwrap().replicas, Some(5));
    assert_eq!(env.ready("my-app-v2").await, 5);
    for d in deployment_log.objects().iter().filter(|d| d["metadata"]["name"] == "my-app-v2") {
        let replicas = d["spec"]["replicas"].as_i64();
        assert!(replicas == Some(5) || replicas == Some(2), "only the person scales v2: {replicas:?}");
    }
    let last_v2 = deployment_log.objects().into_iter().rfind(|d| d["metadata"]["name"] == "my-app-v2");
    assert_eq!(last_v2.map(|d| d["spec"]["replicas"].clone()), Some(json!(5)));
    // Editing the finished experiment restarts nothing.
    let before = env.experiments().get("done").await.unwrap();
    assert_edit_ignored(&env, "done", &before).await;
    tokio::time::sleep(simulated(120.0)).await;
    assert_eq!(timeline.len(), edited, "the edit wrote no routing");
    assert_eq!(deployments(&env).get("my-app-v2").await.unwrap().spec.unwrap().replicas, Some(5));
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_native_recreate_leaves_the_deployments_to_people() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut env = Env::start(false, false).await;
    env.apply(&service("{app: my-app}")).await;
    env.apply(&app("v1", 2, &[])).await;
    env.apply(&app("v2", 0, &[])).await;
    env.wait_ready("my-app-v1", 2).await;
    env.start_controller();
    let recreate = ExperimentBuilder::recreate("native").mesh(MeshMode::None).replicas(2);
    env.apply_experiment(recreate.progress_deadline(NO_DEADLINE, OnProgressDeadline::Rollback)).await;
    let finished = env.wait_for_phase("native", LONG, ENDED).await;
    let status = finished.status.clone().unwrap();
    assert_eq!((status.phase, status.winner.as_deref()), (Some(Phase::Succeeded), Some("v2")), "{:?}", status.message);
    env.wait_ready("my-app-v2", 2).await;
    env.wait_ready("my-app-v1", 0).await;
    let deployment_log = env.record("deployments");
    // A person scales the winner up and brings one pod of the old version back.
    scale(&env, "my-app-v2", 5).await;
    scale(&env, "my-app-v1", 1).await;
    env.wait_ready("my-app-v2", 5).await;
    env.wait_ready("my-app-v1", 1).await;
    tokio::time::sleep(simulated(300.0)).await;
    let replicas = |d: Deployment| d.spec.and_then(|s| s.replicas);
    assert_eq!(replicas(deployments(&env).get("my-app-v2").await.unwrap()), Some(5));
    assert_eq!(replicas(deployments(&env).get("my-app-v1").await.unwrap()), Some(1));
    assert_eq!((env.ready("my-app-v2").await, env.ready("my-app-v1").await), (5, 1));
    for d in deployment_log.objects() {
        let (name, replicas) = (d["metadata"]["name"].as_str().unwrap_or_default(), d["spec"]["replicas"].as_i64());
        let allowed: &[i64] = if name == "my-app-v2" { &[2, 5] } else { &[0, 1] };
        assert!(replicas.is_some_and(|r| allowed.contains(&r)), "{name} scaled to {replicas:?} by someone else");
    }
    let before = env.experiments().get("native").await.unwrap();
    assert_edit_ignored(&env, "native", &before).await;
    tokio::time::sleep(simulated(120.0)).await;
    assert_eq!(replicas(deployments(&env).get("my-app-v2").await.unwrap()), Some(5));
    assert_eq!(replicas(deployments(&env).get("my-app-v1").await.unwrap()), Some(1));
    env.shutdown().await;
}

/// An Istio A/B test of `v1`/`v2` (2 pods each) at 50/50, analysing, with the first look at the
/// metrics 30 simulated minutes away (no look during the test).
async fn ab_analysing(name: &str, builder: ExperimentBuilder) -> (Env, Timeline, Experiment) {
    let mut env = Env::start(true, false).await;
    let timeline = Timeline::record(&env);
    two_versions(&env, 2, &[], &[]).await;
    env.start_controller();
    let slow = analysis([conversion()]).interval("30m").max_duration("4h");
    let ab = builder.mesh(MeshMode::Istio).analysis(slow);
    env.apply_experiment(ab.progress_deadline(NO_DEADLINE, OnProgressDeadline::Rollback)).await;
    env.wait_for_phase(name, LONG, &[Phase::Analysing]).await;
    let exp = env.wait_for(name, LONG, |e| e.status.as_ref().is_some_and(|s| s.analysis_started_at.is_some())).await;
    assert_eq!(phase(&exp), Some(Phase::Analysing));
    assert_eq!(timeline.last().split, [("v1".into(), 50), ("v2".into(), 50)].into());
    (env, timeline, exp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_of_the_ab_split_while_analysing_routes_the_new_weights_and_restarts_the_analysis() {
    let _one = ONE_AT_A_TIME.lock().await;
    let ab = ExperimentBuilder::ab_test("split").split([("v1", 50), ("v2", 50)]);
    let (env, timeline, before) = ab_analysing("split", ab).await;
    tokio::time::sleep(simulated(120.0)).await;
    edit(&env, "split", json!({"strategy": {"abTest": {"split": {"v1": 70, "v2": 30}}}})).await;
    let restarted = wait_event(&env, "split", "AnalysisRestarted").await;
    assert_eq!(restarted.type_, "Normal");
    let exp = env
        .wait_for("split", LONG, |e| e.status.as_ref().and_then(|s| s.weight_summary.as_deref()) == Some("v1=70,v2=30"))
        .await;
    assert_eq!(phase(&exp), Some(Phase::Analysing));
    let moved = moved(&before, &exp);
    assert!(moved >= 120.0, "a new analysis window starts at the edit (moved {moved} s)");
    assert_eq!(timeline.last().split, [("v1".into(), 70), ("v2".into(), 30)].into());
    assert_eq!(timeline.history(0, "v2"), vec![50, 30], "straight from 50/50 to 70/30");
    assert_sums(&timeline);
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_pod_template_on_a_routed_arm_while_analysing_restarts_the_analysis() {
    let _one = ONE_AT_A_TIME.lock().await;
    let ab = ExperimentBuilder::ab_test("rev").split([("v1", 50), ("v2", 50)]);
    let (env, timeline, before) = ab_analysing("rev", ab).await;
    tokio::time::sleep(simulated(120.0)).await;
    let template = json!({"spec": {"template": {"metadata": {"annotations": {"example.com/build": "2"}}}}});
    deployments(&env).patch("my-app-v2", &PatchParams::default(), &Patch::Merge(template)).await.unwrap();
    let changed = wait_event(&env, "rev", "RevisionChanged").await;
    assert_eq!(changed.type_, "Normal");
    assert!(changed.message.contains("v2"), "{}", changed.message);
    let exp = env.wait_for("rev", LONG, |e| analysis_started_at(e) != analysis_started_at(&before)).await;
    assert_eq!(phase(&exp), Some(Phase::Analysing));
    let moved = moved(&before, &exp);
    assert!(moved >= 120.0, "the analysis starts over at the new template (moved {moved} s)");
    assert!(!events(&env, "rev").await.iter().any(|e| e.reason == "AnalysisRestarted"), "the weights did not change");
    assert_eq!(timeline.history(0, "v2"), vec![50], "the routing stays 50/50");
    assert_sums(&timeline);
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spec_made_invalid_mid_run_sends_all_traffic_back_to_the_control_and_fails() {
    let _one = ONE_AT_A_TIME.lock().await;
    let ab =
        ExperimentBuilder::ab_test("broken").split([("v1", 50), ("v2", 50)]).header_rule("beta", "x-beta", "1", "v2");
    let (env, timeline, _) = ab_analysing("broken", ab).await;
    let mark = timeline.len();
    assert_eq!(timeline.last().routes.len(), 2, "the beta rule and the split");
    // The CRD's schema and CEL rules accept a rule naming an arm that does not exist; the planner
    // does not.
    let rules = json!([
        {"name": "beta", "match": {"headers": {"x-beta": {"exact": "1"}}}, "arm": "v2"},
        {"name": "ghost", "match": {"headers": {"x-ghost": {"exact": "1"}}}, "arm": "v9"},
    ]);
    edit(&env, "broken", json!({"strategy": {"abTest": {"rules": rules}}})).await;
    let exp = env.wait_for_phase("broken", LONG, ENDED).await;
    let status = exp.status.clone().unwrap();
    assert_eq!(
        (status.phase, status.final_arm.as_deref(), status.winner.as_deref()),
        (Some(Phase::Failed), Some("v1"), None),
        "{:?}",
        status.message
    );
    assert!(status.message.as_deref().unwrap_or_default().contains("v9"), "{:?}", status.message);
    let since = timeline.since(mark);
    assert_eq!(since.len(), 1, "one write: everything back to v1: {since:?}");
    assert!(all_on(&since[0], "v1"), "every route, the beta rule too, on v1: {:?}", since[0].routes);
    let failed = wait_event(&env, "broken", "Failed").await;
    assert_eq!(failed.type_, "Warning");
    // Nothing more happens.
    tokio::time::sleep(simulated(120.0)).await;
    assert_eq!(timeline.len(), mark + 1);
    assert_eq!(phase(&env.experiments().get("broken").await.unwrap()), Some(Phase::Failed));
    assert_sums(&timeline);
    env.shutdown().await;
}
