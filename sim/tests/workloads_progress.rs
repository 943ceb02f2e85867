//! The workload simulator must make progress on its own timers: with nobody but the test
//! writing to the cluster (and the test writing only to start each step), every step of a
//! Deployment's life reaches its end state within the simulated time its probe, start and
//! termination settings imply, not after the simulator's idle fallback.
//!
//! Simulated time is read from the cluster's clock; each test is bounded in real time too.
//! Besides the total, each step reports the longest simulated time without any change
//! while it was unfinished: a lost wake-up shows there (the simulator sits idle until a
//! fallback or a progress deadline fires), whereas a slow machine only stretches the total,
//! because at 100× every 10 ms the simulator computes is a simulated second.

use forklane_core::clock::{Clock, Time};
use forklane_sim::cluster::store::{DeleteOptions, ListParams, Patch, Store, WriteOptions};
use forklane_sim::cluster::{Cluster, ClusterConfig, Gvr};
use serde_json::{Value, json};
use std::future::Future;
use std::time::Duration;

/// The end-to-end tests' speed: 100 simulated seconds per real second.
const SPEED: f64 = 100.0;
/// The longest a step may take before the test gives up measuring it (simulated), far
/// beyond any bound below so that a stall shows as a number rather than a timeout.
const GIVE_UP_SECS: f64 = 900.0;
/// Each test as a whole, in real time.
const REAL_LIMIT: Duration = Duration::from_secs(90);

fn gvr(group: &str, resource: &str) -> Gvr {
    Gvr::new(group, "v1", resource)
}

fn opts() -> WriteOptions {
    WriteOptions { field_manager: Some("workloads-progress-test".into()), ..Default::default() }
}

async fn cluster() -> Cluster {
    Cluster::start(ClusterConfig { clock: Clock::scaled(SPEED), workloads: true, ..Default::default() })
        .await
        .expect("cluster starts")
}

/// The end-to-end tests' app (`tests/support/e2e.rs`): a readiness probe every 5 s, with an
/// optional initial delay.
fn deployment(name: &str, replicas: i64, version: &str, strategy: Value, initial_delay: i64) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "strategy": strategy,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name, "version": version}},
                "spec": {"containers": [{
                    "name": "my-app",
                    "image": "containersol/k8s-deployment-strategies",
                    "ports": [{"name": "http", "containerPort": 8080}, {"name": "probe", "containerPort": 8086}],
                    "env": [{"name": "VERSION", "value": version}],
                    "readinessProbe": {"httpGet": {"path": "/ready", "port": "probe"}, "initialDelaySeconds": initial_delay, "periodSeconds": 5},
                }]},
            },
        },
    })
}

fn service(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": "http"}], "selector": {"app": name}},
    })
}

fn items(store: &Store, group: &str, resource: &str) -> Vec<Value> {
    let list = store.list(&gvr(group, resource), Some("default"), &ListParams::default()).unwrap();
    list["items"].as_array().cloned().unwrap_or_default()
}

fn labelled<'a>(objs: &'a [Value], app: &str) -> impl Iterator<Item = &'a Value> {
    objs.iter().filter(move |o| o["metadata"]["labels"]["app"] == app)
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().into_iter().flatten().any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// Everything a finished rollout of `name` to `version` shows: the Deployment's status
/// (what `kubectl rollout status` waits for, and Progressing done), exactly `replicas`
/// ready pods of that version and no others (terminating ones included), and all of them
/// ready in the Service's Endpoints.
fn settled(store: &Store, name: &str, version: &str) -> Result<(), String> {
    let d = store.get(&gvr("apps", "deployments"), Some("default"), name).map_err(|e| e.to_string())?;
    let (s, want) = (&d["status"], d["spec"]["replicas"].as_i64().unwrap());
    let get = |k: &str| s[k].as_i64().unwrap_or(0);
    let progressing = s["conditions"].as_array().into_iter().flatten().find(|c| c["type"] == "Progressing");
    if get("observedGeneration") < d["metadata"]["generation"].as_i64().unwrap()
        || [get("replicas"), get("updatedReplicas"), get("readyReplicas"), get("availableReplicas")] != [want; 4]
        || progressing.is_none_or(|c| c["reason"] != "NewReplicaSetAvailable")
    {
        return Err(format!("deployment status {s}"));
    }
    let pods = items(store, "", "pods");
    let pods: Vec<&Value> = labelled(&pods, name).collect();
    let good = pods
        .iter()
        .filter(|p| p["metadata"]["labels"]["version"] == version && p["metadata"]["deletionTimestamp"].is_null())
        .filter(|p| is_ready(p))
        .count();
    if pods.len() != want as usize || good != want as usize {
        return Err(format!("{} pods, {good} ready of {version}", pods.len()));
    }
    let ep = store.get(&gvr("", "endpoints"), Some("default"), name).map_err(|e| e.to_string())?;
    let count = |k: &str| ep["subsets"][0][k].as_array().map_or(0, Vec::len);
    if count("addresses") != want as usize || count("notReadyAddresses") != 0 {
        return Err(format!("endpoints {}", ep["subsets"]));
    }
    Ok(())
}

/// The Deployment, its ReplicaSets and pods are gone, and the Service has no endpoints.
fn gone(store: &Store, name: &str) -> Result<(), String> {
    let (rss, pods) = (items(store, "apps", "replicasets"), items(store, "", "pods"));
    let (rss, pods) = (labelled(&rss, name).count(), labelled(&pods, name).count());
    let deployment = store.get(&gvr("apps", "deployments"), Some("default"), name).is_ok();
    let ep = store.get(&gvr("", "endpoints"), Some("default"), name).map_err(|e| e.to_string())?;
    if deployment || rss > 0 || pods > 0 || !ep["subsets"].as_array().is_none_or(Vec::is_empty) {
        return Err(format!("deployment {deployment}, {rss} replica sets, {pods} pods, endpoints {}", ep["subsets"]));
    }
    Ok(())
}

/// How long a step took and the longest quiet spell in it, in simulated seconds.
struct Took {
    total: f64,
    longest_quiet: f64,
}

/// Waits until `done` holds. `done` is looked at after each burst of changes and every
/// simulated second without one (not more often, to keep the test's reads out of the
/// simulator's way).
async fn until(store: &Store, start: Time, done: impl Fn(&Store) -> Result<(), String>) -> Took {
    let clock = store.clock();
    let mut changes = store.changes();
    let since = |t: Time| t.duration_until(clock.now()).as_secs_f64();
    let (mut last_change, mut longest_quiet) = (start, 0.0f64);
    loop {
        let total = since(start);
        match done(store) {
            Ok(()) => return Took { total, longest_quiet: longest_quiet.max(since(last_change)) },
            Err(state) if total > GIVE_UP_SECS => {
                panic!("not done after {total:.1} simulated s (quiet for {:.1} s): {state}", since(last_change))
            }
            Err(_) => {}
        }
        let second = clock.real_duration(Duration::from_secs(1));
        if tokio::time::timeout(second, changes.recv()).await.is_ok() {
            longest_quiet = longest_quiet.max(since(last_change));
            tokio::time::sleep(second).await;
            while changes.try_recv().is_ok() {}
            last_change = clock.now();
        }
    }
}

/// Runs one step: `act` (the only write), then waits until `done`, which must take at most
/// `bound` simulated seconds with no quiet spell longer than `QUIET_BOUND`.
async fn step(
    store: &Store,
    what: &str,
    bound: f64,
    act: impl FnOnce(&Store),
    done: impl Fn(&Store) -> Result<(), String>,
) {
    let start = store.clock().now();
    act(store);
    let took = until(store, start, done).await;
    eprintln!("{what}: {:.1} simulated s (bound {bound} s), longest quiet {:.1} s", took.total, took.longest_quiet);
    assert!(took.longest_quiet <= QUIET_BOUND, "{what}: nothing happened for {:.1} simulated s", took.longest_quiet);
    assert!(took.total <= bound, "{what} took {:.1} simulated s, more than {bound} s", took.total);
}

/// The tests share two cores: one at a time, so that they do not slow each other down.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn within_real_limit(test: impl Future<Output = ()>) {
    let _one = ONE_AT_A_TIME.lock().await;
    tokio::time::timeout(REAL_LIMIT, test).await.expect("test finishes within its real-time limit");
}

fn create(store: &Store, group: &str, resource: &str, obj: Value) {
    store.create(&gvr(group, resource), Some("default"), obj, &opts()).unwrap();
}

fn patch(store: &Store, name: &str, patch: Value) {
    store.patch(&gvr("apps", "deployments"), Some("default"), name, Patch::Strategic(patch), &opts()).unwrap();
}

fn new_version(version: &str) -> Value {
    json!({"spec": {"template": {"metadata": {"labels": {"version": version}},
        "spec": {"containers": [{"name": "my-app", "env": [{"name": "VERSION", "value": version}]}]}}}})
}

fn rolling() -> Value {
    json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
}

/// The most simulated time any step here may take. The timings alone imply a few seconds
/// (pods run 1 s after creation, pass a probe at once or after the 5 s initial delay, stop
/// 2 s after deletion; a rolling update of 10 takes a few such waves); the rest is the real
/// time the simulator's passes take at this speed in a debug build on a busy two-core
/// machine, measured at 10 to 100 simulated seconds per step. A lost wake-up costs the
/// idle fallback or a 600 s progress deadline, far beyond it, and shows in the quiet spell.
const STEP_BOUND: f64 = 120.0;
/// The longest wait any timing here implies (an initial delay of 5 s, a 5 s period), with
/// room for a slow pass; below the simulator's 30 s safety net.
const QUIET_BOUND: f64 = 20.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_up_from_2_to_10_without_other_writers() {
    within_real_limit(async {
        let c = cluster().await;
        let s = c.store();
        create(s, "", "services", service("scale"));
        step(
            s,
            "create 2 replicas",
            STEP_BOUND,
            |s| create(s, "apps", "deployments", deployment("scale", 2, "v1", rolling(), 0)),
            |s| settled(s, "scale", "v1"),
        )
        .await;
        step(
            s,
            "scale 2 -> 10",
            STEP_BOUND,
            |s| patch(s, "scale", json!({"spec": {"replicas": 10}})),
            |s| settled(s, "scale", "v1"),
        )
        .await;
        step(
            s,
            "scale 10 -> 3",
            STEP_BOUND,
            |s| patch(s, "scale", json!({"spec": {"replicas": 3}})),
            |s| settled(s, "scale", "v1"),
        )
        .await;
        c.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_up_from_0_to_10_with_an_initial_delay() {
    within_real_limit(async {
        let c = cluster().await;
        let s = c.store();
        create(s, "", "services", service("zero"));
        step(
            s,
            "create 0 replicas",
            STEP_BOUND,
            |s| create(s, "apps", "deployments", deployment("zero", 0, "v1", rolling(), 5)),
            |s| settled(s, "zero", "v1"),
        )
        .await;
        step(
            s,
            "scale 0 -> 10 (initialDelaySeconds 5)",
            STEP_BOUND,
            |s| patch(s, "zero", json!({"spec": {"replicas": 10}})),
            |s| settled(s, "zero", "v1"),
        )
        .await;
        c.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_of_10_without_other_writers() {
    within_real_limit(async {
        let c = cluster().await;
        let s = c.store();
        create(s, "", "services", service("roll"));
        step(
            s,
            "create 10 replicas",
            STEP_BOUND,
            |s| create(s, "apps", "deployments", deployment("roll", 10, "v1", rolling(), 0)),
            |s| settled(s, "roll", "v1"),
        )
        .await;
        // 25% of 10: 3 surge, 2 unavailable; a few waves of pod starts and 2 s terminations.
        step(
            s,
            "rolling update v1 -> v2",
            STEP_BOUND,
            |s| patch(s, "roll", new_version("v2")),
            |s| settled(s, "roll", "v2"),
        )
        .await;
        step(s, "delete", STEP_BOUND, |s| delete(s, "roll"), |s| gone(s, "roll")).await;
        c.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_of_5_without_other_writers() {
    within_real_limit(async {
        let c = cluster().await;
        let s = c.store();
        create(s, "", "services", service("recreate"));
        let recreate = json!({"type": "Recreate"});
        step(
            s,
            "create 5 replicas (Recreate)",
            STEP_BOUND,
            |s| create(s, "apps", "deployments", deployment("recreate", 5, "v1", recreate, 0)),
            |s| settled(s, "recreate", "v1"),
        )
        .await;
        // Old pods terminate (2 s), then the new ones start (1 s) and pass the probe at once.
        step(
            s,
            "recreate v1 -> v2",
            STEP_BOUND,
            |s| patch(s, "recreate", new_version("v2")),
            |s| settled(s, "recreate", "v2"),
        )
        .await;
        step(s, "delete", STEP_BOUND, |s| delete(s, "recreate"), |s| gone(s, "recreate")).await;
        c.shutdown().await;
    })
    .await;
}

fn delete(store: &Store, name: &str) {
    store.delete(&gvr("apps", "deployments"), Some("default"), name, &DeleteOptions::default()).unwrap();
}

/// Another client busy with other resources (an operator's status updates, leases, events)
/// neither stalls nor slows the simulator: its changes do not cost a pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_up_while_another_client_writes_other_resources() {
    within_real_limit(async {
        let c = cluster().await;
        let s = c.store().clone();
        create(&s, "", "configmaps", json!({"metadata": {"name": "busy"}, "data": {"n": "0"}}));
        let busy = {
            let s = s.clone();
            tokio::spawn(async move {
                for n in 1u64.. {
                    let patch = Patch::Merge(json!({"data": {"n": n.to_string()}}));
                    s.patch(&gvr("", "configmaps"), Some("default"), "busy", patch, &opts()).unwrap();
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        };
        create(&s, "", "services", service("busy"));
        step(
            &s,
            "create 2 replicas (busy neighbour)",
            STEP_BOUND,
            |s| create(s, "apps", "deployments", deployment("busy", 2, "v1", rolling(), 0)),
            |s| settled(s, "busy", "v1"),
        )
        .await;
        step(
            &s,
            "scale 2 -> 10 (busy neighbour)",
            STEP_BOUND,
            |s| patch(s, "busy", json!({"spec": {"replicas": 10}})),
            |s| settled(s, "busy", "v1"),
        )
        .await;
        busy.abort();
        c.shutdown().await;
    })
    .await;
}
