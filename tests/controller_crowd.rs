//! Fault case of the reliability table: a crowd of experiments that never finish beside healthy
//! ones. 40 stuck (20 paused indefinitely, 20 waiting for a candidate whose pods never become
//! ready, with a day's progress deadline) and 40 failing (blue-green without a mesh, switching a
//! Service that does not exist: the API server refuses every reconcile's write with 422, reported
//! as a `ReconcileError` condition) are left to the controller until they keep still and have
//! failed for 10 simulated minutes; then 20 healthy canaries (Istio, 50%, a minute's pause, 100%)
//! are created beside them. Compared with a baseline run of the same 20 canaries alone, on the
//! same 25× clock:
//! - the controller's API requests per simulated second while the canaries run stay within what
//!   the backoff allows on top of the baseline (the bound is derived at [`crowd_bound`]);
//! - every failing experiment backs off: its requests per second fall from window to window, and
//!   once it keeps failing, each retry is the one refused write and nothing else;
//! - a stuck experiment sends nothing in steady state, read or write;
//! - every healthy canary ends Succeeded with v2 within 1.5× its baseline time plus
//!   [`SLACK`].
//!
//! The controller runs with its own User-Agent and the cluster's request audit counts its requests
//! (`tests/support/scale.rs`); each kind of experiment lives in its own namespace, so requests are
//! told apart by namespace. Every Deployment has one replica and there is no traffic.

use crate::support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use forklane_core::api::{Experiment, MeshMode, OnProgressDeadline, Phase};
use forklane_core::clock::{Time, parse_time};
use forklane_core::fixtures::{ExperimentBuilder, pause, pause_for, set_weight};
use forklane_sim::cluster::AuditRecord;
use forklane_sim::sandbox::Sandbox;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::{Api, ListParams, Patch};
use serde_json::json;
use support::scale::{self, Requests};

/// Simulated seconds per real second.
const SPEED: f64 = 25.0;

/// A healthy canary may take 1.5× its baseline time plus this long (simulated): the process (the
/// simulated cluster with it) has five times the objects to go through, and the clock runs on
/// while it works.
const SLACK: Duration = Duration::from_secs(60);

/// How long the crowd fails, once every experiment of it keeps still, before the canaries come
/// (simulated): by then a failing experiment waits at least [`RETRY_GAP`] between retries.
const SETTLE: Duration = Duration::from_secs(600);

/// The shortest wait between two retries of an experiment that has failed for [`SETTLE`]: its
/// `k`-th failure comes at most 1.2 × (2^(k-1) − 1) s after its first (each wait is the doubled
/// backoff ±20%), so within 600 s it has failed at least 9 times, and the wait after the 9th
/// failure is at least 0.8 × 256 s (then 0.8 × 300 s, the cap).
const RETRY_GAP: Duration = Duration::from_millis(204_800);

/// How long after the last stuck experiment keeps still its steady state begins (simulated): the
/// events that follow a status write are sent after it.
const QUIET: Duration = Duration::from_secs(60);

/// A readiness probe's initial delay that outlasts the test: pods that never become ready.
const NEVER_READY_SECONDS: i64 = 30 * 24 * 3600;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Healthy,
    /// Paused indefinitely after its first step.
    Paused,
    /// Waiting for a candidate whose pods never become ready.
    Unready,
    /// Every reconcile refused by the API server.
    Failing,
}

impl Kind {
    const BAD: [Kind; 3] = [Kind::Paused, Kind::Unready, Kind::Failing];

    /// A fifth of the 100 healthy, 200 stuck and 200 failing the case was written for: on the
    /// sandbox the simulator's own work (the data plane's snapshots, the workload controllers'
    /// passes) grows with every object, and at half that size the crowd alone took a minute to
    /// settle on this 2-core machine (see the README).
    fn count(self) -> usize {
        match self {
            Kind::Healthy | Kind::Paused | Kind::Unready => 20,
            Kind::Failing => 40,
        }
    }

    fn namespace(self) -> &'static str {
        match self {
            Kind::Healthy => "crowd-healthy",
            Kind::Paused => "crowd-paused",
            Kind::Unready => "crowd-unready",
            Kind::Failing => "crowd-failing",
        }
    }

    fn experiment(self, i: usize) -> Experiment {
        let canary = || {
            ExperimentBuilder::canary(&format!("exp-{i}"))
                .namespace(self.namespace())
                .service(&format!("app-{i}"))
                .port(80)
                .mesh(MeshMode::Istio)
        };
        let stuck_for_a_day = |b: ExperimentBuilder| b.progress_deadline("24h", OnProgressDeadline::Rollback);
        match self {
            Kind::Healthy => canary().steps([set_weight(50), pause_for("1m")]),
            Kind::Paused => canary().steps([set_weight(20), pause()]),
            Kind::Unready => stuck_for_a_day(canary().steps([set_weight(20), pause_for("1m")])),
            // No Service `app-{i}`: without a mesh the experiment switches a Service that is not
            // there, and the API server refuses to create one from a selector alone.
            Kind::Failing => stuck_for_a_day(
                ExperimentBuilder::blue_green(&format!("exp-{i}"))
                    .namespace(self.namespace())
                    .service(&format!("app-{i}"))
                    .port(80)
                    .mesh(MeshMode::None),
            ),
        }
        .build()
    }

    /// Whether the experiment is where it stays.
    fn keeps_still(self, e: &Experiment) -> bool {
        let status = e.status.clone().unwrap_or_default();
        match self {
            Kind::Healthy => status.phase == Some(Phase::Succeeded),
            Kind::Paused => scale::paused_at_first_pause(e),
            Kind::Unready => status.waiting_since.is_some(),
            Kind::Failing => status.conditions.iter().any(|c| c.type_ == "ReconcileError" && c.status == "True"),
        }
    }

    fn owns(self, r: &AuditRecord) -> bool {
        r.namespace.as_deref() == Some(self.namespace())
    }
}

/// The simulated seconds from `from` to `to`.
fn seconds(from: Time, to: Time) -> f64 {
    from.duration_until(to).as_secs_f64()
}

/// Services and Deployments of `kinds` (none for the failing ones' Services); returns once every
/// pod that can be ready is.
async fn workloads(env: &Sandbox, kinds: &[Kind]) {
    let namespaces: Api<Namespace> = Api::all(env.client.clone());
    for kind in kinds {
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": kind.namespace()}});
        namespaces.patch(kind.namespace(), &scale::apply(), &Patch::Apply(ns)).await.expect("namespace");
    }
    for &kind in kinds {
        scale::each(kind.count(), |i| async move {
            let (ns, name) = (kind.namespace(), format!("app-{i}"));
            if kind != Kind::Failing {
                let services: Api<Service> = Api::namespaced(env.client.clone(), ns);
                services
                    .patch(&name, &scale::apply(), &Patch::Apply(scale::service(ns, &name)))
                    .await
                    .expect("service");
            }
            let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), ns);
            for version in ["v1", "v2"] {
                let mut d = scale::deployment(ns, &name, version);
                if kind == Kind::Unready && version == "v2" {
                    d["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["initialDelaySeconds"] =
                        json!(NEVER_READY_SECONDS);
                }
                deployments
                    .patch(&format!("{name}-{version}"), &scale::apply(), &Patch::Apply(d))
                    .await
                    .expect("deployment");
            }
        })
        .await;
    }
    let wanted: usize = kinds.iter().map(|k| 2 * k.count() - if *k == Kind::Unready { k.count() } else { 0 }).sum();
    let all: Api<Deployment> = Api::all(env.client.clone());
    scale::until("every pod that can be ready", Duration::from_secs(120), Duration::from_millis(500), || async {
        let list = all.list(&ListParams::default()).await.expect("list deployments");
        let ready = list.items.iter().filter(|d| d.status.as_ref().and_then(|s| s.ready_replicas) == Some(1)).count();
        if ready == wanted { Ok(()) } else { Err(format!("{ready} of {wanted} ready")) }
    })
    .await;
}

/// Creates the experiments of `kind`; returns when each was created (simulated).
async fn create(env: &Sandbox, kind: Kind) -> BTreeMap<String, Time> {
    let created = Mutex::new(BTreeMap::new());
    scale::each(kind.count(), |i| {
        let created = &created;
        async move {
            let exp = kind.experiment(i);
            let name = exp.metadata.name.clone().expect("named");
            let api: Api<Experiment> = Api::namespaced(env.client.clone(), kind.namespace());
            let at = env.clock.now();
            api.patch(&name, &scale::apply(), &Patch::Apply(&exp)).await.expect("experiment");
            created.lock().unwrap().insert(name, at);
        }
    })
    .await;
    created.into_inner().unwrap()
}

/// Waits until every experiment of `kinds` keeps still; returns them as they are then.
async fn until_still(env: &Sandbox, kinds: &[Kind], timeout: Duration) -> BTreeMap<Kind, Vec<Experiment>> {
    let out = Mutex::new(BTreeMap::new());
    scale::until("every experiment where it stays", timeout, Duration::from_millis(250), || {
        let out = &out;
        async move {
            let mut waiting = Vec::new();
            for &kind in kinds {
                let api: Api<Experiment> = Api::namespaced(env.client.clone(), kind.namespace());
                let list = api.list(&ListParams::default()).await.expect("list experiments").items;
                let still = list.iter().filter(|e| kind.keeps_still(e)).count();
                if still < kind.count() {
                    waiting.push(format!("{kind:?}: {still} of {}: {}", kind.count(), scale::where_they_are(&list)));
                }
                out.lock().unwrap().insert(kind, list);
            }
            if waiting.is_empty() { Ok(()) } else { Err(waiting.join("; ")) }
        }
    })
    .await;
    out.into_inner().unwrap()
}

/// The audit's length over (simulated) time, sampled by a background task: a request at index
/// `k` happened before the first sample longer than `k`.
#[derive(Clone, Default)]
struct Timeline(Arc<Mutex<Vec<(Time, usize)>>>);

impl Timeline {
    fn follow(env: &Sandbox) -> (Timeline, tokio::task::JoinHandle<()>) {
        let timeline = Timeline::default();
        let (samples, audit, clock) = (timeline.0.clone(), env.cluster.audit().clone(), env.clock);
        let task = tokio::spawn(async move {
            loop {
                let n = audit.records().len();
                samples.lock().unwrap().push((clock.now(), n));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        (timeline, task)
    }

    /// When each record happened, at the sampling's resolution (a tenth of a real second).
    fn times(&self, records: usize) -> Vec<Option<Time>> {
        let samples = self.0.lock().unwrap().clone();
        let mut out = Vec::with_capacity(records);
        let mut s = 0;
        for k in 0..records {
            while s < samples.len() && samples[s].1 <= k {
                s += 1;
            }
            out.push(samples.get(s).map(|(t, _)| *t));
        }
        out
    }
}

/// What one run of the canaries measured.
struct Canaries {
    /// Simulated seconds from each canary's creation to its `finishedAt`.
    durations: BTreeMap<String, f64>,
    /// Simulated seconds from the first creation to the last finish.
    window: f64,
    /// The controller's requests in that window: all, and by kind.
    all: Requests,
    by_kind: BTreeMap<Kind, Requests>,
}

impl Canaries {
    fn rate(&self, n: u64) -> f64 {
        n as f64 / self.window
    }
}

/// Creates the healthy canaries and waits until every one has Succeeded with v2.
async fn canaries(env: &Sandbox) -> Canaries {
    let from = env.cluster.audit().records().len();
    let started = env.clock.now();
    let created = create(env, Kind::Healthy).await;
    let done = until_still(env, &[Kind::Healthy], Duration::from_secs(120)).await.remove(&Kind::Healthy).unwrap();
    let records = env.cluster.audit().records().split_off(from);
    let mut durations = BTreeMap::new();
    let mut last = started;
    for e in &done {
        let status = e.status.clone().unwrap_or_default();
        assert_eq!(status.winner.as_deref(), Some("v2"), "{:?}", status.message);
        let name = e.metadata.name.clone().unwrap();
        let finished = status.finished_at.as_deref().and_then(parse_time).expect("finishedAt");
        durations.insert(name.clone(), seconds(created[&name], finished));
        last = last.max(finished);
    }
    let by_kind = [Kind::Healthy, Kind::Paused, Kind::Unready, Kind::Failing]
        .into_iter()
        .map(|k| (k, Requests::of_controller_where(&records, |r| k.owns(r))))
        .collect();
    Canaries { durations, window: seconds(started, last), all: Requests::of_controller(&records), by_kind }
}

/// The baseline: the healthy canaries alone.
async fn baseline() -> Canaries {
    let real = std::time::Instant::now();
    let mut env = Sandbox::start(true, SPEED, true).await.expect("sandbox starts");
    workloads(&env, &[Kind::Healthy]).await;
    eprintln!("crowd: baseline workloads ready after {:.1?}", real.elapsed());
    env.start_controller_with(scale::controller_client(&env));
    let run = canaries(&env).await;
    eprintln!("crowd: baseline canaries done after {:.1?}", real.elapsed());
    env.shutdown().await;
    run
}

/// What the crowd did before and while the canaries ran.
struct Crowd {
    canaries: Canaries,
    /// The failing experiments' refused writes per experiment and simulated second, in successive
    /// windows from each one's first ([`BACKOFF_WINDOWS`]).
    failing_rates: Vec<(String, f64)>,
    /// The stuck experiments' requests from when they all kept still until the canaries ended.
    stuck: Requests,
    /// Reconciles that failed, while the crowd settled and while the canaries ran.
    errors: (u64, u64),
}

/// Windows of a failing experiment's retries, in simulated seconds from its first failure. The
/// backoff retries after about 1, 3, 7, 15, 31, 63, 127, 255, 511 s (±20%): seven or eight in the
/// first window, two or three in the second (a loaded machine delays the first few, which only
/// moves them later); once per `SAFETY_NET` or per look would be as many per second in each.
const BACKOFF_WINDOWS: [(f64, f64); 2] = [(0.0, 150.0), (150.0, 600.0)];

/// The most refused writes of one failing experiment in its first 600 s: ten by the backoff (its
/// waits add up to at least 0.8 × (2^k − 1) s after k of them), and one more for each of its own
/// writes the watch brings back at once (the finalizer, the `ReconcileError` condition).
const MOST_RETRIES: usize = 12;

async fn crowd() -> Crowd {
    let mut env = Sandbox::start(true, SPEED, true).await.expect("sandbox starts");
    let kinds = [Kind::Healthy, Kind::Paused, Kind::Unready, Kind::Failing];
    let real = std::time::Instant::now();
    workloads(&env, &kinds).await;
    eprintln!("crowd: workloads ready after {:.1?}", real.elapsed());
    for kind in Kind::BAD {
        create(&env, kind).await;
    }
    eprintln!("crowd: experiments created after {:.1?}", real.elapsed());
    env.cluster.audit().clear();
    let (timeline, sampler) = Timeline::follow(&env);
    let started = env.clock.now();
    env.start_controller_with(scale::controller_client(&env));
    until_still(&env, &Kind::BAD, Duration::from_secs(120)).await;
    let still_at = env.clock.now();
    eprintln!(
        "crowd: every bad experiment keeps still {:.0} s after the controller's start",
        seconds(started, still_at)
    );
    // The events of the last status writes still on their way; steady state from then on.
    tokio::time::sleep(env.clock.real_duration(QUIET)).await;
    let still = env.cluster.audit().records().len();
    tokio::time::sleep(env.clock.real_until(still_at + SETTLE)).await;
    let errors_settling = env.controller_metrics.errors.get();
    let canaries = canaries(&env).await;
    let errors = (errors_settling, env.controller_metrics.errors.get() - errors_settling);
    sampler.abort();
    let records = env.cluster.audit().records();
    let times = timeline.times(records.len());
    // Each failing experiment's refused writes, by when they happened.
    let mut refused: BTreeMap<String, Vec<Time>> = BTreeMap::new();
    for (r, t) in records.iter().zip(&times) {
        if let (Some(t), Some(name)) = (t, &r.name)
            && r.user_agent == scale::CONTROLLER_AGENT
            && Kind::Failing.owns(r)
            && r.resource == "services"
            && r.code == 422
        {
            refused.entry(name.clone()).or_default().push(*t);
        }
    }
    assert_eq!(refused.len(), Kind::Failing.count(), "every failing experiment was refused");
    for (name, writes) in &refused {
        let early = writes.iter().filter(|t| seconds(writes[0], **t) < 600.0).count();
        assert!(early <= MOST_RETRIES, "{name} was retried {early} times in its first 600 s");
    }
    let end = times.iter().flatten().max().copied().unwrap_or(started);
    let failing_rates = BACKOFF_WINDOWS
        .iter()
        .map(|&(from, to)| {
            let mut n = 0;
            for (name, writes) in &refused {
                assert!(
                    seconds(writes[0], end) >= to,
                    "{name} refused first {:.0} s before the end",
                    seconds(writes[0], end)
                );
                n += writes.iter().filter(|t| (from..to).contains(&seconds(writes[0], **t))).count();
            }
            (format!("{from:.0}–{to:.0} s"), n as f64 / refused.len() as f64 / (to - from))
        })
        .collect();
    let stuck = Requests::of_controller_where(&records[still..], |r| Kind::Paused.owns(r) || Kind::Unready.owns(r));
    env.shutdown().await;
    Crowd { canaries, failing_rates, stuck, errors }
}

/// The most requests per simulated second the controller may send while the canaries run among the
/// crowd: the canaries' own, as in the baseline (a quarter more for timing: status writes and
/// events group differently), plus the failing experiments' retries. Stuck experiments send none.
/// A failing experiment has failed for [`SETTLE`] when the canaries come, so it retries at most
/// once per [`RETRY_GAP`], plus once at the window's start; each retry is one refused write (the
/// condition and the event were written at the first failure). A stuck experiment is looked at
/// every minute while it waits (at most every `SAFETY_NET`, 30 s real) or not at all while paused,
/// and a look that changes nothing sends nothing. A retry per look or per watch event would not be
/// bounded by this, nor would a stuck experiment writing its status at every look.
fn crowd_bound(baseline_rate: f64, window: f64) -> f64 {
    let failing = Kind::Failing.count() as f64;
    1.25 * baseline_rate + failing / RETRY_GAP.as_secs_f64() + failing / window
}

fn row(crowd: &Crowd) -> String {
    let wins = crowd.canaries.durations.len();
    format!("| {} | {wins} | 0 | Succeeded, winner v2 |", support::CROWD)
}

fn median(values: &BTreeMap<String, f64>) -> f64 {
    let mut v: Vec<f64> = values.values().copied().collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_of_stuck_and_failing_experiments_neither_floods_the_api_nor_delays_healthy_ones() {
    forklane::cli::run::init_logging(false);
    tokio::time::timeout(Duration::from_secs(400), async {
        let real = std::time::Instant::now();
        let base = baseline().await;
        eprintln!("crowd: baseline done after {:.1?}", real.elapsed());
        let crowd = crowd().await;
        eprintln!("crowd: crowd run done after {:.1?}", real.elapsed());
        let run = &crowd.canaries;
        let (base_rate, crowd_rate) = (base.rate(base.all.reads + base.all.writes), run.rate(run.all.reads + run.all.writes));
        let bound = crowd_bound(base_rate, run.window);
        println!(
            "canaries: baseline {:.0} s (median {:.0} s), among the crowd {:.0} s (median {:.0} s)",
            base.window,
            median(&base.durations),
            run.window,
            median(&run.durations)
        );
        println!(
            "requests per simulated second: baseline {base_rate:.2} ({} reads, {} writes), among the crowd {crowd_rate:.2} ({} reads, {} writes; bound {bound:.2}, {:.2}× the baseline)",
            base.all.reads,
            base.all.writes,
            run.all.reads,
            run.all.writes,
            bound / base_rate
        );
        for (kind, r) in &run.by_kind {
            println!("  {kind:?}: {} reads, {} writes: {}", r.reads, r.writes, r.breakdown());
        }
        println!("failing experiments' requests per experiment and simulated second: {:?}", crowd.failing_rates);
        println!("stuck experiments after keeping still: {} reads, {} writes", crowd.stuck.reads, crowd.stuck.writes);
        println!("reconcile errors: {} while the crowd settled, {} while the canaries ran", crowd.errors.0, crowd.errors.1);
        println!("{}", row(&crowd));

        // (b) The healthy canaries end on time.
        assert_eq!(run.durations.len(), Kind::Healthy.count());
        for (name, d) in &run.durations {
            let allowed = 1.5 * base.durations[name] + SLACK.as_secs_f64();
            assert!(*d <= allowed, "{name} took {d:.0} s among the crowd, {:.0} s alone", base.durations[name]);
        }
        // (a) The request rate, reads and writes each.
        assert!(crowd_rate <= bound, "{crowd_rate:.2} requests/s among the crowd, bound {bound:.2}");
        assert!(
            run.rate(run.all.reads) <= 1.25 * base.rate(base.all.reads) + 1.0 / run.window,
            "reads: {} among the crowd, {} alone",
            run.all.reads,
            base.all.reads
        );
        // Stuck experiments send nothing; failing ones only their refused write.
        assert_eq!((crowd.stuck.reads, crowd.stuck.writes), (0, 0), "{}", crowd.stuck.breakdown());
        for kind in [Kind::Paused, Kind::Unready] {
            assert_eq!(run.by_kind[&kind].reads + run.by_kind[&kind].writes, 0, "{kind:?}");
        }
        let failing = &run.by_kind[&Kind::Failing];
        // (Backing off, a failing experiment may not be retried at all while the canaries run.)
        let only_refused = failing.by_kind.keys().all(|k| k == "patch services (422)");
        assert!(only_refused, "{}", failing.breakdown());
        // Failing experiments back off: fewer requests per second in each later window.
        let rates: Vec<f64> = crowd.failing_rates.iter().map(|(_, r)| *r).collect();
        assert!(rates.windows(2).all(|w| w[1] < w[0] / 2.0), "{:?}", crowd.failing_rates);
    })
    .await
    .expect("bounded");
}

#[test]
fn the_readme_shows_the_crowd() {
    let wanted = format!("| {} | {} | 0 | Succeeded, winner v2 |", support::CROWD, Kind::Healthy.count());
    assert!(support::reliability_rows().contains(&wanted), "the reliability table has the row {wanted:?}");
}
