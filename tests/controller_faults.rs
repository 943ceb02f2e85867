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
//! And an A/B test decided through the Prometheus metric source, with a proxy in front of
//! Prometheus that black-holes it, answers NaN, answers nothing for one arm, or answers 503: the
//! weights are held (no promotion, no rollback) with `MetricsUnavailable` naming the cause and
//! quoting no response body, and once the fault is lifted the test goes on to its decision; left
//! in place, the outage ends as documented, never with a promotion; and a deletion during a hanging
//! look completes once the look times out.
//!
//! `cargo test --test integration -- --nocapture --test-threads 1 controller_faults::` prints the README's reliability table;
//! `the_readme_shows_every_fault_of_the_suite` keeps the two in step.

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use forklane_core::api::{ExperimentStatus, MeshMode, OnInconclusive, Phase};
use forklane_core::controller::analyst::{PrometheusAddresses, SourceAnalyst};
use forklane_core::fixtures::{ExperimentBuilder, analysis, conversion, pause_for, set_weight};
use forklane_sim::cluster::FaultSettings;
use forklane_sim::metrics::EmbeddedSource;
use forklane_sim::traffic::{Lag, LoadSpec, ServiceKey};
use support::e2e::*;
use support::prometheus_faults::{FaultyPrometheus, GATEWAY_PAGE_MARKER, Mode};
use support::refusing::refusing_client;

/// The row of the controller-kill case: its runs are the writes of one whole canary.
const KILLED: &str = "the controller killed after its N-th write, for every N through a whole canary";

const AGENT: &str = "forklane-controller";
const ENDED: &[Phase] = &[Phase::Succeeded, Phase::RolledBack, Phase::Failed];
/// v2's weight in each VirtualService written: the start state (all on v1) lasts no time.
const STEPS: [i64; 3] = [20, 50, 100];

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
    let violations = routing_violations(&env, &routes, "faulty", &STEPS);
    let requests = env.traffic_tally().requests;
    let outcome =
        format!("{:?}, winner {}", done.phase.unwrap_or(Phase::Pending), done.winner.as_deref().unwrap_or("none"));
    let records: Vec<_> = env.cluster.audit().records().into_iter().filter(|r| r.user_agent == AGENT).collect();
    env.shutdown().await;
    Run { violations, outcome, rate: records.len() as f64 / elapsed, requests }
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
    let rows = support::reliability_rows();
    let named: Vec<&str> = rows.iter().map(|r| r.split(" | ").next().unwrap().trim_start_matches("| ")).collect();
    let faults: Vec<&str> = Fault::ALL
        .iter()
        .map(|f| f.name())
        .chain([KILLED, AUTOSCALED])
        .chain(PrometheusFault::ALL.iter().map(|f| f.name()))
        .chain([support::LEASE_RENEWALS_FAIL, support::LEADER_FROZEN, support::CROWD])
        .collect();
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

/// A fault of the metric source, injected by a proxy in front of it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum PrometheusFault {
    BlackHoled,
    NaN,
    EmptyForOneArm,
    ServerError,
}

impl PrometheusFault {
    const ALL: [PrometheusFault; 4] = [
        PrometheusFault::BlackHoled,
        PrometheusFault::NaN,
        PrometheusFault::EmptyForOneArm,
        PrometheusFault::ServerError,
    ];

    /// The row's name in the README.
    fn name(self) -> &'static str {
        match self {
            PrometheusFault::BlackHoled => "Prometheus black-holed past the 10 s query timeout, an A/B test analysing",
            PrometheusFault::NaN => "Prometheus answers NaN, an A/B test analysing",
            PrometheusFault::EmptyForOneArm => "Prometheus answers an empty result for one arm, an A/B test analysing",
            PrometheusFault::ServerError => "Prometheus behind a gateway answering 503, an A/B test analysing",
        }
    }

    fn mode(self) -> Mode {
        match self {
            PrometheusFault::BlackHoled => Mode::BlackHole,
            PrometheusFault::NaN => Mode::NaN,
            PrometheusFault::EmptyForOneArm => Mode::EmptyFor("v2".into()),
            PrometheusFault::ServerError => Mode::ServerError,
        }
    }

    /// What `MetricsUnavailable` must say: the cause.
    fn cause(self) -> &'static [&'static str] {
        match self {
            PrometheusFault::BlackHoled => &["is unreachable: no answer within 10s"],
            PrometheusFault::NaN => &["returned no data (NaN"],
            PrometheusFault::EmptyForOneArm => &["arm `v2`", "returned no data (empty result)"],
            PrometheusFault::ServerError => &["is unreachable", "503 Service Unavailable"],
        }
    }

    /// Looks in a row the fault lasts (a black-holed look takes the whole 10 s query timeout).
    fn looks(self) -> u32 {
        if self == PrometheusFault::BlackHoled { 1 } else { 3 }
    }
}

/// v2's successive weights in an A/B test that promotes v2: the split, then all traffic.
const AB_STEPS: [i64; 2] = [50, 100];

/// An A/B test (conversion 20% on v1, 30% on v2) decided through the Prometheus source, looking
/// every 30 simulated seconds, with `max_unavailable` looks in a row without metrics allowed.
fn ab_test(max_unavailable: u32) -> ExperimentBuilder {
    let analysis = analysis([conversion()])
        .interval("30s")
        .min_samples_per_arm(500)
        .max_duration("6h")
        .max_consecutive_unavailable(max_unavailable);
    ExperimentBuilder::ab_test("ab").mesh(MeshMode::Istio).split([("v1", 50), ("v2", 50)]).analysis(analysis)
}

/// The sandbox with two versions of different conversion, traffic, and the controller reading its
/// metrics from the Prometheus API over the embedded source, behind the fault proxy in `mode`.
async fn through_prometheus(mode: Mode) -> (Env, FaultyPrometheus, Log) {
    let mut env = Env::start(true, false).await;
    env.apply(&service("{app: my-app}")).await;
    env.apply(&app("v1", 2, &[("sim.forklane.io/conversion-rate", "0.20")])).await;
    env.apply(&app("v2", 2, &[("sim.forklane.io/conversion-rate", "0.30")])).await;
    env.wait_ready("my-app-v1", 2).await;
    env.wait_ready("my-app-v2", 2).await;
    let routes = env.record("virtualservices");
    let prometheus = FaultyPrometheus::start(Arc::new(EmbeddedSource::new(env.history.clone()))).await;
    prometheus.set(mode);
    let addresses = PrometheusAddresses { default: Some(prometheus.url.clone()), allowed: vec![] };
    env.analyst = Arc::new(SourceAnalyst::prometheus(addresses));
    env.start_traffic(1000.0, 200);
    env.start_controller();
    (env, prometheus, routes)
}

fn condition<'a>(
    status: &'a ExperimentStatus,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

/// The A/B test under `fault` until it has held the weights for the fault's looks, then with the
/// fault lifted until it ends.
async fn analysed_through(fault: PrometheusFault) -> (Vec<String>, String) {
    let (env, prometheus, routes) = through_prometheus(fault.mode()).await;
    env.apply_experiment(ab_test(1_000)).await;
    let mut violations = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    let held = loop {
        let status = env.experiments().get("ab").await.unwrap().status.unwrap_or_default();
        if status.final_arm.is_some() || status.winner.is_some() || status.phase.is_some_and(|p| ENDED.contains(&p)) {
            violations.push(format!("decided without metrics: {:?}, {:?}", status.phase, status.message));
            break status;
        }
        if status.consecutive_unavailable.unwrap_or(0) >= fault.looks() {
            break status;
        }
        if tokio::time::Instant::now() > deadline {
            violations.push(format!("never held for {} looks: {:?}", fault.looks(), status.message));
            break status;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let unavailable = condition(&held, "MetricsUnavailable").map(|c| (c.status.clone(), c.message.clone()));
    match &unavailable {
        Some((status, message)) if status == "True" => {
            for cause in fault.cause() {
                if !message.contains(cause) {
                    violations.push(format!("MetricsUnavailable does not say {cause:?}: {message}"));
                }
            }
        }
        other => violations.push(format!("MetricsUnavailable is not True: {other:?}")),
    }
    let message = held.message.clone().unwrap_or_default();
    if !message.starts_with("weights held: ") || held.phase != Some(Phase::Analysing) {
        violations.push(format!("not held while analysing: {:?}, {message}", held.phase));
    }
    if serde_json::to_string(&held).unwrap().contains(GATEWAY_PAGE_MARKER) {
        violations.push("the status quotes the gateway's page".into());
    }
    prometheus.set(Mode::Pass);
    let done = env.wait_for_phase("ab", Duration::from_secs(40), ENDED).await.status.unwrap();
    if condition(&done, "MetricsUnavailable").is_none_or(|c| c.status != "False") {
        violations
            .push(format!("MetricsUnavailable stays after the fault: {:?}", condition(&done, "MetricsUnavailable")));
    }
    violations.extend(routing_violations(&env, &routes, "ab", &AB_STEPS));
    let outcome =
        format!("{:?}, winner {}", done.phase.unwrap_or(Phase::Pending), done.winner.as_deref().unwrap_or("none"));
    drop(prometheus);
    env.shutdown().await;
    (violations, outcome)
}

/// Every route's weights sum to 100, v2's weights went exactly `steps`, and no request failed.
fn routing_violations(env: &Env, routes: &Log, experiment: &str, steps: &[i64]) -> Vec<String> {
    let mut violations = Vec::new();
    for vs in routes.objects().iter().filter(|o| o.get("deleted").is_none()) {
        let sum: i64 = split(vs).values().sum();
        if sum != 100 {
            violations.push(format!("a route's weights sum to {sum}: {:?}", split(vs)));
        }
    }
    let weights = v2_weights(routes, experiment);
    if weights != steps {
        violations.push(format!("v2's weights went {weights:?}, not {steps:?}"));
    }
    let tally = env.traffic_tally();
    let failed = tally.failed();
    if failed > 0 {
        violations.push(format!("{failed} requests failed: {tally:?}"));
    }
    violations
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_source_fault_holds_the_weights_until_it_is_lifted() {
    tokio::time::timeout(Duration::from_secs(300), async {
        for fault in PrometheusFault::ALL {
            let (violations, outcome) =
                tokio::time::timeout(Duration::from_secs(90), analysed_through(fault)).await.expect("bounded");
            println!("| {} | 1 | {} | {outcome} |", fault.name(), violations.len());
            assert_eq!(violations, Vec::<String>::new(), "{fault:?}");
            assert_eq!(outcome, "Succeeded, winner v2", "{fault:?}");
        }
    })
    .await
    .expect("bounded");
}

/// The documented end of an outage that outlasts `maxConsecutiveUnavailable`: `onInconclusive`,
/// except that `promote` keeps the control (never a promotion on missing data).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metric_source_down_for_max_consecutive_unavailable_looks_ends_on_the_control() {
    tokio::time::timeout(Duration::from_secs(90), async {
        let (env, prometheus, routes) = through_prometheus(Mode::ServerError).await;
        env.apply_experiment(ab_test(3).on_inconclusive(OnInconclusive::Promote)).await;
        let done = env.wait_for_phase("ab", Duration::from_secs(60), ENDED).await.status.unwrap();
        let message = done.message.clone().unwrap_or_default();
        assert_eq!((done.phase, done.winner.as_deref()), (Some(Phase::Succeeded), Some("v1")), "{message}");
        assert!(message.contains("metrics unavailable at 3 looks in a row: kept the control"), "{message}");
        assert!(!serde_json::to_string(&done).unwrap().contains(GATEWAY_PAGE_MARKER), "no response body quoted");
        assert_eq!(routing_violations(&env, &routes, "ab", &[50, 0]), Vec::<String>::new());
        drop(prometheus);
        env.shutdown().await;
    })
    .await
    .expect("bounded");
}

/// Deleted while a look hangs on a black-holed metric source: the deletion waits at most for that
/// look's query timeout, and leaves all traffic on the control.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_experiment_deleted_while_its_metric_source_is_black_holed_restores_the_control() {
    tokio::time::timeout(Duration::from_secs(90), async {
        let (env, prometheus, routes) = through_prometheus(Mode::BlackHole).await;
        env.apply_experiment(ab_test(1_000)).await;
        let unavailable = |e: &forklane_core::api::Experiment| {
            e.status.as_ref().is_some_and(|s| s.consecutive_unavailable.unwrap_or(0) >= 1)
        };
        let held = env.wait_for("ab", Duration::from_secs(40), unavailable).await;
        assert_eq!(phase(&held), Some(Phase::Analysing));
        let started = tokio::time::Instant::now();
        env.experiments().delete("ab", &kube::api::DeleteParams::default()).await.unwrap();
        env.wait_gone("ab", Duration::from_secs(40)).await;
        // One look's 10 s query timeout, and the restore's propagation delay (8 simulated seconds).
        assert!(started.elapsed() < Duration::from_secs(20), "deleted within a bound: {:?}", started.elapsed());
        tokio::time::sleep(env.clock.real_duration(Duration::from_secs(60))).await;
        assert_eq!(weight_history(&routes, "v2"), [50, 0], "all traffic back on the control, once");
        assert_eq!(routing_violations(&env, &routes, "ab", &[50]), Vec::<String>::new());
        let answers: Vec<Option<String>> = (0..200).map(|_| env.request(&[])).collect();
        assert!(answers.iter().all(|v| v.as_deref() == Some("v1")), "every request answered by v1");
        drop(prometheus);
        env.shutdown().await;
    })
    .await
    .expect("bounded");
}
