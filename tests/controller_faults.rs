//! The fault-injection suite: one canary (20%, pause, 50%, pause, 100%) carried by the controller
//! on the embedded cluster under each fault the API server or the data plane can inject, with
//! background traffic through lagging proxies the whole time. Invariants, checked on every
//! VirtualService written and every simulated request:
//! - every route's weights sum to 100;
//! - v2's successive weights are exactly the steps (none skipped or repeated);
//! - the canary ends Succeeded with v2 (no promotion without its steps);
//! - no request fails: no 503 (NR, NC, UH, UF) and no refused connection.
//!
//! Under 429s the controller also asks no more often than without them (it waits as told).
//!
//! And the controller killed after its N-th write (any request but a GET), for every N through a
//! whole canary, then a fresh one started: the same outcome and step history.
//!
//! `cargo test --test controller_faults -- --nocapture` prints the README's reliability table;
//! `the_readme_shows_every_fault_of_the_suite` keeps the two in step.

// Each test binary uses only some of the shared helpers.
#[allow(dead_code)]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use forklane_core::api::{MeshMode, Phase};
use forklane_core::fixtures::{ExperimentBuilder, pause_for, set_weight};
use forklane_sim::cluster::FaultSettings;
use forklane_sim::traffic::{Lag, LoadSpec, ServiceKey};
use support::e2e::*;
use support::refusing::refusing_client;

/// The row of the controller-kill case: its runs are the writes of one whole canary.
const KILLED: &str = "the controller killed after its N-th write, for every N through a whole canary";

const AGENT: &str = "forklane-controller";
const ENDED: &[Phase] = &[Phase::Succeeded, Phase::RolledBack, Phase::Failed];
const STEPS: [i64; 4] = [0, 20, 50, 100];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    None,
    WritesFail500,
    WritesConflict409,
    Throttled429,
    WatchesCutAndCompacted,
}

impl Fault {
    const ALL: [Fault; 5] = [
        Fault::None,
        Fault::WritesFail500,
        Fault::WritesConflict409,
        Fault::Throttled429,
        Fault::WatchesCutAndCompacted,
    ];

    /// The row's name in the README.
    fn name(self) -> &'static str {
        match self {
            Fault::None => "none (baseline)",
            Fault::WritesFail500 => "30% of API writes fail with 500",
            Fault::WritesConflict409 => "30% of API writes fail with 409",
            Fault::Throttled429 => "30% of API requests throttled: 429, Retry-After 1 s",
            Fault::WatchesCutAndCompacted => "every watch cut and the history compacted (410) at every step",
        }
    }

    fn settings(self) -> FaultSettings {
        let writes = |code| FaultSettings { write_error_rate: 0.3, write_error_code: code, ..Default::default() };
        match self {
            Fault::None | Fault::WatchesCutAndCompacted => FaultSettings::default(),
            Fault::WritesFail500 => writes(500),
            Fault::WritesConflict409 => writes(409),
            Fault::Throttled429 => FaultSettings { throttle_rate: 0.3, retry_after_seconds: 1, ..Default::default() },
        }
    }
}

/// What one run under a fault gave.
struct Run {
    violations: Vec<String>,
    outcome: String,
    /// The controller's API requests per real second.
    rate: f64,
    requests: u64,
}

async fn canary(fault: Fault) -> Run {
    let mut env = Env::start(true, true).await;
    let lag = Lag::scenarios().pop().expect("a straggler scenario").1;
    env.set_lag(lag.clone());
    two_versions(&env, 2, &[], &[]).await;
    env.until_proxies_catch_up(&lag).await;
    let routes = env.record("virtualservices");
    env.start_traffic_with(ServiceKey::new(NS, "my-app"), 1000.0, LoadSpec { users: 200, ..Default::default() });
    if fault == Fault::WatchesCutAndCompacted {
        // At every routing write (every step), every watch ends and resuming one gets 410 Gone.
        let (store, faults, mut changes) =
            (env.cluster.store().clone(), env.cluster.faults().clone(), env.cluster.store().changes());
        tokio::spawn(async move {
            while let Ok(change) = changes.recv().await {
                if change.resource.resource == "virtualservices" {
                    store.compact();
                    faults.cut_watches();
                }
            }
        });
    }
    let mut config = env.cluster.client_config();
    config.headers.push((http::header::USER_AGENT, http::HeaderValue::from_static(AGENT)));
    // The experiment is in before the fault (the test's own requests would suffer it too).
    let steps = [set_weight(20), pause_for("2m"), set_weight(50), pause_for("2m")];
    env.apply_experiment(ExperimentBuilder::canary("faulty").mesh(MeshMode::Istio).steps(steps)).await;
    env.cluster.faults().set(fault.settings()).unwrap();
    let started = tokio::time::Instant::now();
    env.start_controller_with(kube::Client::try_from(config).unwrap());
    let done = env.wait_for_phase("faulty", Duration::from_secs(120), ENDED).await.status.unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    env.stop_controller().await;
    env.cluster.faults().clear();
    // The slowest proxy and the scale-down delay past: the last change everywhere.
    tokio::time::sleep(env.clock.real_duration(Duration::from_secs(10))).await;
    let tally = env.traffic_tally();
    let mut violations = Vec::new();
    for vs in routes.objects().iter().filter(|o| o.get("deleted").is_none()) {
        let sum: i64 = split(vs).values().sum();
        if sum != 100 {
            violations.push(format!("a route's weights sum to {sum}: {:?}", split(vs)));
        }
    }
    let weights = v2_weights(&routes, "faulty");
    if weights != STEPS {
        violations.push(format!("v2's weights went {weights:?}, not {STEPS:?}"));
    }
    let failed = tally.unavailable_by_flag.values().sum::<u64>() + tally.refused;
    if failed > 0 {
        violations.push(format!("{failed} requests failed: {tally:?}"));
    }
    let outcome =
        format!("{:?}, winner {}", done.phase.unwrap_or(Phase::Pending), done.winner.as_deref().unwrap_or("none"));
    let records: Vec<_> = env.cluster.audit().records().into_iter().filter(|r| r.user_agent == AGENT).collect();
    env.shutdown().await;
    Run { violations, outcome, rate: records.len() as f64 / elapsed, requests: tally.requests }
}

fn row(fault: Fault, run: &Run) -> String {
    format!("| {} | 1 | {} | {} |", fault.name(), run.violations.len(), run.outcome)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_keeps_every_invariant() {
    tokio::time::timeout(Duration::from_secs(600), async {
        let mut baseline_rate = None;
        for fault in Fault::ALL {
            let run = canary(fault).await;
            println!("{}", row(fault, &run));
            assert!(run.requests > 1_000, "{fault:?}: traffic ran ({} requests)", run.requests);
            assert_eq!(run.violations, Vec::<String>::new(), "{fault:?}");
            assert_eq!(run.outcome, "Succeeded, winner v2", "{fault:?}");
            match fault {
                Fault::None => baseline_rate = Some(run.rate),
                Fault::Throttled429 => {
                    let calm = baseline_rate.expect("the baseline runs first");
                    assert!(run.rate <= calm, "{:.1} requests/s under 429s, {calm:.1} without", run.rate);
                }
                _ => {}
            }
        }
    })
    .await
    .expect("bounded");
}

#[test]
fn the_readme_shows_every_fault_of_the_suite() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let table = readme.split("<!-- reliability -->").nth(1).expect("the README has the reliability table");
    let table = table.split("<!-- /reliability -->").next().unwrap();
    let rows: Vec<&str> =
        table.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| fault") && !l.starts_with("| ---")).collect();
    let named: Vec<&str> = rows.iter().map(|r| r.split(" | ").next().unwrap().trim_start_matches("| ")).collect();
    let faults: Vec<&str> = Fault::ALL.iter().map(|f| f.name()).chain([KILLED, AUTOSCALED, CROWD]).collect();
    assert_eq!(named, faults, "the README lists exactly the suite's faults, in order");
    for r in rows {
        assert!(r.ends_with(" | 0 | Succeeded, winner v2 |"), "what the suite asserts: {r}");
    }
}

/// The canary with its controller killed after its `n`-th write and a fresh one started: its
/// outcome and v2's successive weights, and whether the kill happened before the end.
async fn killed_after(n: i64) -> (String, Vec<i64>, bool) {
    let mut env = Env::start(true, false).await;
    two_versions(&env, 1, &[], &[]).await;
    let routes = env.record("virtualservices");
    let steps = [set_weight(20), pause_for("30s"), set_weight(50), pause_for("30s")];
    env.apply_experiment(ExperimentBuilder::canary("killed").mesh(MeshMode::Istio).steps(steps)).await;
    // Once `n` write requests (anything but a GET) have gone out, the process is gone: nothing
    // more leaves, reads included.
    let left = Arc::new(AtomicI64::new(n));
    let counted = left.clone();
    let client =
        refusing_client(env.cluster.client_config(), "killed: this controller process is gone", move |method, _| {
            let dead = counted.load(Ordering::SeqCst) <= 0;
            dead || (*method != http::Method::GET && counted.fetch_sub(1, Ordering::SeqCst) <= 0)
        });
    env.start_controller_with(client);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let ended = |e: &forklane_core::api::Experiment| phase(e).is_some_and(|p| ENDED.contains(&p));
    loop {
        let exp = env.experiments().get("killed").await.unwrap();
        if left.load(Ordering::SeqCst) <= 0 || ended(&exp) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the first controller neither wrote {n} times nor finished");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let killed = left.load(Ordering::SeqCst) <= 0;
    env.stop_controller().await;
    env.start_controller();
    let done = env.wait_for_phase("killed", Duration::from_secs(60), ENDED).await.status.unwrap();
    let outcome =
        format!("{:?}, winner {}", done.phase.unwrap_or(Phase::Pending), done.winner.as_deref().unwrap_or("none"));
    let weights = v2_weights(&routes, "killed");
    env.shutdown().await;
    (outcome, weights, killed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_killed_after_any_write_is_finished_by_the_next_the_same_way() {
    tokio::time::timeout(Duration::from_secs(600), async {
        let mut n = 1;
        loop {
            let (outcome, weights, killed) = killed_after(n).await;
            assert_eq!(outcome, "Succeeded, winner v2", "killed after write {n}");
            assert_eq!(weights, STEPS, "killed after write {n}: no step lost or repeated");
            if !killed {
                // The first controller finished before its n-th write: every write was covered.
                println!("| {KILLED} | {} | 0 | {outcome} |", n - 1);
                assert!(n > 10, "a whole canary takes more than a few writes");
                break;
            }
            n += 1;
        }
    })
    .await
    .expect("bounded");
}

/// The row of `tests/controller_crowd.rs`, which checks its figures.
const CROWD: &str = "40 stuck and 40 failing experiments beside 20 healthy canaries";

/// The row of the autoscaler case.
const AUTOSCALED: &str = "a finished canary's winner scaled by an HPA, 10 minutes watched";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_experiment_leaves_an_autoscaled_winner_alone() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let mut env = Env::start(true, true).await;
        two_versions(&env, 1, &[], &[]).await;
        let mut config = env.cluster.client_config();
        config.headers.push((http::header::USER_AGENT, http::HeaderValue::from_static(AGENT)));
        env.start_controller_with(kube::Client::try_from(config).unwrap());
        let steps = [set_weight(50), pause_for("30s")];
        env.apply_experiment(ExperimentBuilder::canary("scaled").mesh(MeshMode::Istio).steps(steps)).await;
        let done = env.wait_for_phase("scaled", Duration::from_secs(60), ENDED).await.status.unwrap();
        assert_eq!(done.phase, Some(Phase::Succeeded));
        let writes_at_end = env.cluster.audit().records().len();
        // The HPA scales the winner up through the scale subresource, as kube-controller-manager does.
        let deployments: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
            kube::Api::namespaced(env.client.clone(), NS);
        let scale = serde_json::json!({"spec": {"replicas": 4}});
        let hpa =
            kube::api::PatchParams { field_manager: Some("horizontal-pod-autoscaler".into()), ..Default::default() };
        deployments.patch_scale("my-app-v2", &hpa, &kube::api::Patch::Merge(scale)).await.unwrap();
        tokio::time::sleep(env.clock.real_duration(Duration::from_secs(600))).await;
        let replicas = deployments.get("my-app-v2").await.unwrap().spec.unwrap().replicas;
        assert_eq!(replicas, Some(4), "the autoscaler's replicas stay");
        let records = env.cluster.audit().records();
        let touched: Vec<_> = records[writes_at_end..]
            .iter()
            .filter(|r| r.user_agent == AGENT && r.verb != "get" && r.verb != "list" && r.verb != "watch")
            .filter(|r| {
                r.resource == "deployments" || r.resource == "virtualservices" || r.resource == "destinationrules"
            })
            .collect();
        assert!(touched.is_empty(), "the controller wrote after the end: {touched:?}");
        println!("| {AUTOSCALED} | 1 | 0 | Succeeded, winner v2 |");
        env.shutdown().await;
    })
    .await
    .expect("bounded");
}
