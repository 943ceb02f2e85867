//! The controller at scale on the sandbox, and the proof that a steady-state reconcile makes no
//! API call. [`run`] runs the in-process controller for `tests/controller_steady_state.rs`; the
//! scenario's pieces also serve `cargo bench --bench controller_scale` (which includes this file
//! and `scale_process.rs` with `#[path]` and runs `forklane run` as a child process). It uses
//! nothing else of `tests/support`.
//!
//! The scenario: N canary experiments in Istio mode, steps `[setWeight 20, pause]` (an indefinite
//! pause), spread over a few namespaces, each with its own Service and two 1-replica Deployments
//! (`app-{i}-v1`, `app-{i}-v2`). Everything is created and every pod is ready before the
//! controller starts, so the first figure is the controller's own: the time from its start until
//! every experiment is Paused at its pause (step 1), every first step applied.
//!
//! Then the steady state: after the controller has been quiet for a moment, a window (real
//! seconds) in which the test touches every Experiment (an annotation) and then every Deployment
//! (an annotation): changes the controller watches and reconciles on, but that change nothing in
//! any plan. The controller runs with its own client (its own User-Agent), and the cluster's
//! request audit counts its requests by verb: `get`/`list` are reads, `watch` is counted apart,
//! everything else is a write (events included). A steady state must read 0 and write 0 while
//! the reconcile counter rises by at least N per round of touches.
//!
//! Its pieces (the workloads, the controller's own client, the request counts) also serve
//! `tests/controller_crowd.rs`, which sets up a mix of experiments of its own.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use forklane_core::api::{Experiment, MeshMode, Phase};
use forklane_core::fixtures::{ExperimentBuilder, pause, set_weight};
use forklane_sim::cluster::AuditRecord;
use forklane_sim::sandbox::Sandbox;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};

/// The controller's User-Agent: how the audit tells its requests from the test's own.
pub const CONTROLLER_AGENT: &str = "forklane-scale-controller";

/// Where the experiments live: `forklane-scale-0`, `forklane-scale-1`, …
pub const NAMESPACE_PREFIX: &str = "forklane-scale-";

/// The annotation the steady-state window touches (nothing reads it).
pub const TOUCH: &str = "scale.forklane.io/touched";

/// Requests in flight while the test sets up and touches objects.
const IN_FLIGHT: usize = 16;

#[derive(Clone, Debug)]
pub struct Config {
    /// Experiments (N).
    pub experiments: usize,
    pub namespaces: usize,
    /// Simulated seconds per real second.
    pub speed: f64,
    /// The steady-state window, in real time.
    pub window: Duration,
    /// Longest real wait for pods, for the first pauses and for each round of reconciles.
    pub timeout: Duration,
}

impl Config {
    pub fn new(experiments: usize) -> Self {
        Config {
            experiments,
            namespaces: 4.min(experiments.max(1)),
            speed: 100.0,
            window: Duration::from_secs(20),
            timeout: Duration::from_secs(300),
        }
    }
}

/// The controller's requests, by kind.
#[derive(Clone, Debug, Default)]
pub struct Requests {
    /// `get` and `list`.
    pub reads: u64,
    /// Everything but reads and watches: create, update, patch, delete (events included).
    pub writes: u64,
    /// Watches (re)started.
    pub watches: u64,
    /// Count per `verb resource[/subresource]` (and the response code when it failed), for the
    /// breakdown of what was sent.
    pub by_kind: BTreeMap<String, u64>,
}

impl Requests {
    /// The controller's requests among `records`.
    pub fn of_controller(records: &[AuditRecord]) -> Requests {
        Self::of_controller_where(records, |_| true)
    }

    /// The controller's requests among `records` that `pick` keeps (one namespace's, say).
    pub fn of_controller_where(records: &[AuditRecord], pick: impl Fn(&AuditRecord) -> bool) -> Requests {
        Self::of_agent_where(records, CONTROLLER_AGENT, pick)
    }

    /// The requests of the client whose User-Agent is `agent` among `records` that `pick` keeps
    /// (a controller run as its own process sends its own).
    pub fn of_agent_where(records: &[AuditRecord], agent: &str, pick: impl Fn(&AuditRecord) -> bool) -> Requests {
        let mut out = Requests::default();
        for r in records.iter().filter(|r| r.user_agent == agent && pick(r)) {
            match r.verb.as_str() {
                "get" | "list" => out.reads += 1,
                "watch" => out.watches += 1,
                _ => out.writes += 1,
            }
            let failed = if r.code >= 400 { format!(" ({})", r.code) } else { String::new() };
            *out.by_kind.entry(format!("{} {}{failed}", r.verb, r.rbac_resource())).or_default() += 1;
        }
        out
    }

    pub fn breakdown(&self) -> String {
        self.by_kind.iter().map(|(k, n)| format!("{k} ×{n}")).collect::<Vec<_>>().join(", ")
    }
}

/// What one run measured.
#[derive(Clone, Debug)]
pub struct Figures {
    pub config: Config,
    /// Namespaces, Services, Deployments and Experiments created, every pod ready (real time).
    pub setup: Duration,
    /// From the controller's start until every experiment is Paused at its pause (real time).
    pub to_first_pause: Duration,
    /// The controller's requests until then.
    pub ramp: Requests,
    /// Real time the controller needed to fall quiet after the last first pause.
    pub settle: Duration,
    /// The controller's requests while it fell quiet.
    pub tail: Requests,
    /// The steady-state window as it ran (real time; ≥ `config.window` when reconciles were slow).
    pub window: Duration,
    /// The controller's requests in the window.
    pub steady: Requests,
    /// Objects the test touched in the window (every Experiment, then every Deployment).
    pub touched: usize,
    /// Reconciles in the window: after touching the Experiments, after touching the
    /// Deployments, and in the whole window.
    pub reconciles_after_experiments: u64,
    pub reconciles_after_deployments: u64,
    pub reconciles: u64,
    /// Reconciles that failed in the window.
    pub errors: u64,
}

impl Figures {
    /// Whether the steady state made no API read or write, with each round of touches
    /// reconciling at least N experiments and no reconcile failing.
    pub fn steady(&self) -> bool {
        self.problems().is_empty()
    }

    pub fn problems(&self) -> Vec<String> {
        let reconciles = (self.reconciles_after_experiments, self.reconciles_after_deployments);
        quiet_problems(self.config.experiments, &[("steady state", &self.steady)], reconciles, self.errors)
    }

    /// The figures as a small plain table.
    pub fn table(&self) -> String {
        let c = &self.config;
        let per = |n: u64| format!("{n} ({:.1} per experiment)", n as f64 / c.experiments.max(1) as f64);
        let rows = [
            (
                "experiments (N)",
                format!("{} in {} namespaces, Istio, [setWeight 20, pause]", c.experiments, c.namespaces),
            ),
            ("Deployments", format!("{} (two of 1 replica per experiment)", 2 * c.experiments)),
            ("clock", format!("{}× (simulated seconds per real second)", c.speed)),
            ("setup, every pod ready", secs(self.setup)),
            ("time to first pause (all)", secs(self.to_first_pause)),
            ("  controller reads", per(self.ramp.reads)),
            ("  controller writes", per(self.ramp.writes)),
            ("  controller watches", self.ramp.watches.to_string()),
            ("settle (2 s quiet)", secs(self.settle)),
            ("  controller reads", self.tail.reads.to_string()),
            ("  controller writes", self.tail.writes.to_string()),
            ("steady window (real)", secs(self.window)),
            ("  objects touched", self.touched.to_string()),
            ("  reconciles", self.reconciles.to_string()),
            ("    after touching Experiments", self.reconciles_after_experiments.to_string()),
            ("    after touching Deployments", self.reconciles_after_deployments.to_string()),
            ("  reconcile errors", self.errors.to_string()),
            ("  controller reads", self.steady.reads.to_string()),
            ("  controller writes", self.steady.writes.to_string()),
            ("  controller watches", self.steady.watches.to_string()),
        ];
        let width = rows.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
        let mut out = String::new();
        for (k, v) in rows {
            let _ = writeln!(out, "{k:<width$}  {v}");
        }
        let _ = writeln!(out, "ramp requests: {}", self.ramp.breakdown());
        if !self.tail.by_kind.is_empty() {
            let _ = writeln!(out, "settle requests: {}", self.tail.breakdown());
        }
        if !self.steady.by_kind.is_empty() {
            let _ = writeln!(out, "steady requests: {}", self.steady.breakdown());
        }
        out
    }
}

/// What a quiet controller must show, in the in-process run and the process bench alike: no read
/// and no write in any of `windows`, at least N reconciles after each round of touches
/// (`reconciles`: after the Experiments, after the Deployments), no failed reconcile.
pub fn quiet_problems(n: usize, windows: &[(&str, &Requests)], reconciles: (u64, u64), errors: u64) -> Vec<String> {
    let mut out = Vec::new();
    for (what, r) in windows {
        if r.reads != 0 || r.writes != 0 {
            let (reads, writes, breakdown) = (r.reads, r.writes, r.breakdown());
            out.push(format!(
                "the controller made {reads} reads and {writes} writes in the {what} window: {breakdown}"
            ));
        }
    }
    let (after_experiments, after_deployments) = reconciles;
    if after_experiments < n as u64 || after_deployments < n as u64 {
        out.push(format!(
            "touching reconciled too little: {after_experiments} after the Experiments, {after_deployments} after the Deployments (N = {n})"
        ));
    }
    if errors != 0 {
        out.push(format!("{errors} reconciles failed in the touch window"));
    }
    out
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

pub fn namespace_of(config: &Config, i: usize) -> String {
    format!("{NAMESPACE_PREFIX}{}", i % config.namespaces)
}

/// A 1-replica Deployment `{service}-{version}`, its pods ready as soon as they run.
pub fn deployment(ns: &str, service: &str, version: &str) -> Value {
    let labels = json!({"app": service, "version": version});
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": format!("{service}-{version}"), "namespace": ns, "labels": {"app": service}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{
                    "name": "app",
                    "image": "containersol/k8s-deployment-strategies",
                    "ports": [{"name": "http", "containerPort": 8080}, {"name": "probe", "containerPort": 8086}],
                    "env": [{"name": "VERSION", "value": version}],
                    "readinessProbe": {"httpGet": {"path": "/ready", "port": "probe"}, "periodSeconds": 5},
                }]},
            },
        },
    })
}

/// The Service `name` on port 80, selecting `app: name`.
pub fn service(ns: &str, name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": "http"}], "selector": {"app": name}},
    })
}

pub fn experiment(ns: &str, i: usize) -> Experiment {
    let service = format!("app-{i}");
    ExperimentBuilder::canary(&format!("exp-{i}"))
        .namespace(ns)
        .service(&service)
        .port(80)
        .mesh(MeshMode::Istio)
        .steps([set_weight(20), pause()])
        .build()
}

/// Server-side apply by the test (field manager `forklane-scale`).
pub fn apply() -> PatchParams {
    PatchParams::apply("forklane-scale").force()
}

/// Runs `f` over `0..n` with a few requests in flight.
pub async fn each<F, Fut>(n: usize, f: F)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    futures::stream::iter(0..n).for_each_concurrent(IN_FLIGHT, f).await;
}

/// Polls `check` every `every` until it returns `Ok`; panics after `timeout` with `what` and
/// the last `Err` (how far it got).
pub async fn until<F, Fut>(what: &str, timeout: Duration, every: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let progress = match check().await {
            Ok(()) => return,
            Err(progress) => progress,
        };
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}: {progress}");
        tokio::time::sleep(every).await;
    }
}

/// Namespaces, Services and Deployments; returns once every pod is ready.
pub async fn workloads(env: &Sandbox, config: &Config) {
    let namespaces: Api<Namespace> = Api::all(env.client.clone());
    for k in 0..config.namespaces {
        let name = format!("{NAMESPACE_PREFIX}{k}");
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        namespaces.patch(&name, &apply(), &Patch::Apply(ns)).await.expect("namespace");
    }
    each(config.experiments, |i| async move {
        let ns = namespace_of(config, i);
        let name = format!("app-{i}");
        let services: Api<Service> = Api::namespaced(env.client.clone(), &ns);
        services.patch(&name, &apply(), &Patch::Apply(service(&ns, &name))).await.expect("service");
        let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), &ns);
        for version in ["v1", "v2"] {
            let d = deployment(&ns, &name, version);
            deployments.patch(&format!("{name}-{version}"), &apply(), &Patch::Apply(d)).await.expect("deployment");
        }
    })
    .await;
    let all: Api<Deployment> = Api::all(env.client.clone());
    let list = || async { all.list(&ListParams::default()).await.expect("list deployments").items };
    let ready = |d: &Deployment| d.status.as_ref().and_then(|s| s.ready_replicas) == Some(1);
    if let Err(progress) = until_every(env, 2 * config.experiments, config.timeout, "ready", list, ready).await {
        panic!("timed out after {:?} waiting for every pod ready: {progress}", config.timeout);
    }
}

/// Waits until `want` objects of kind `K` in the scale namespaces are `done`, following the
/// store's change stream: `list` once at the start and again only when the stream dropped
/// changes, never a poll (a poll of thousands of objects would load the very server it
/// measures). Reports every 10 s as `label`; after `timeout`, `Err` says how many were done.
pub async fn until_every<K, L, Fut>(
    env: &Sandbox,
    want: usize,
    timeout: Duration,
    label: &str,
    list: L,
    done: impl Fn(&K) -> bool,
) -> Result<(), String>
where
    K: kube::Resource<DynamicType = ()> + serde::de::DeserializeOwned,
    L: Fn() -> Fut,
    Fut: std::future::Future<Output = Vec<K>>,
{
    let plural = K::plural(&());
    let started = Instant::now();
    let mut changes = env.cluster.store().changes();
    // Per object: its resourceVersion and whether it is done (a change older than what the list
    // showed must not undo it).
    let mut seen: BTreeMap<(String, String), (u64, bool)> = BTreeMap::new();
    let key = |m: &kube::api::ObjectMeta| (m.namespace.clone().unwrap_or_default(), m.name.clone().unwrap_or_default());
    let version = |m: &kube::api::ObjectMeta| m.resource_version.as_deref().and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut resync = true;
    let mut last_report = Instant::now();
    loop {
        if resync {
            resync = false;
            for o in list().await {
                let (k, rv) = (key(o.meta()), version(o.meta()));
                if k.0.starts_with(NAMESPACE_PREFIX) && seen.get(&k).is_none_or(|(known, _)| *known < rv) {
                    seen.insert(k, (rv, done(&o)));
                }
            }
        }
        let count = seen.values().filter(|(_, d)| *d).count();
        if count >= want {
            return Ok(());
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            eprintln!("scale: {count} of {want} {plural} {label} after {:.1?}", started.elapsed());
        }
        let left = timeout.saturating_sub(started.elapsed());
        let change = match tokio::time::timeout(left.min(Duration::from_secs(1)), changes.recv()).await {
            Ok(Ok(change)) => change,
            Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {
                resync = true;
                continue;
            }
            Ok(Err(e)) => panic!("the store's changes ended: {e}"),
            Err(_) if left.is_zero() => return Err(format!("{count} of {want} {plural} {label}")),
            Err(_) => continue,
        };
        if change.resource.resource != plural {
            continue;
        }
        let Ok(o) = serde_json::from_value::<K>((*change.object).clone()) else { continue };
        let (k, rv) = (key(o.meta()), version(o.meta()));
        if !k.0.starts_with(NAMESPACE_PREFIX) || seen.get(&k).is_some_and(|(known, _)| *known >= rv) {
            continue;
        }
        let deleted = matches!(change.kind, forklane_sim::cluster::store::ChangeKind::Deleted);
        seen.insert(k, (rv, !deleted && done(&o)));
    }
}

/// Waits until all `n` experiments are Paused at their first pause (`until_every`); after
/// `timeout`, `Err` says how many were and where the others are.
pub async fn until_first_pauses(env: &Sandbox, n: usize, timeout: Duration) -> Result<(), String> {
    let experiments: Api<Experiment> = Api::all(env.client.clone());
    let list = || async { experiments.list(&ListParams::default()).await.expect("list experiments").items };
    let Err(progress) = until_every(env, n, timeout, "at their first pause", list, paused_at_first_pause).await else {
        return Ok(());
    };
    Err(format!("{progress}: {}", where_they_are(&list().await)))
}

pub fn paused_at_first_pause(e: &Experiment) -> bool {
    let status = e.status.as_ref();
    status.and_then(|s| s.phase) == Some(Phase::Paused) && status.and_then(|s| s.current_step) == Some(1)
}

/// How many experiments are in each phase and step, and one message of each phase.
pub fn where_they_are(experiments: &[Experiment]) -> String {
    let mut by: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for e in experiments {
        let status = e.status.clone().unwrap_or_default();
        let key = format!("{:?} at step {:?}", status.phase, status.current_step);
        let entry = by.entry(key).or_insert((0, status.message.unwrap_or_default()));
        entry.0 += 1;
    }
    by.iter().map(|(k, (n, m))| format!("{n} {k} (e.g. {m:?})")).collect::<Vec<_>>().join("; ")
}

/// Waits until the controller has sent no request but watches for `quiet` (real time); returns
/// how long that took (the last quiet stretch included).
async fn settle(env: &Sandbox, quiet: Duration, timeout: Duration) -> Duration {
    let started = Instant::now();
    let count = || Requests::of_controller(&env.cluster.audit().records());
    let mut last = count();
    let mut since = Instant::now();
    while since.elapsed() < quiet && started.elapsed() < timeout {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = count();
        if (now.reads, now.writes) != (last.reads, last.writes) {
            since = Instant::now();
        }
        last = now;
    }
    started.elapsed()
}

/// Annotates (`TOUCH` = `value`) the objects of kind `K` that `object(i)` names for each experiment `i`.
async fn touch<K>(env: &Sandbox, config: &Config, value: &str, object: impl Fn(usize) -> Vec<String>)
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let object = &object;
    each(config.experiments, |i| async move {
        let api: Api<K> = Api::namespaced(env.client.clone(), &namespace_of(config, i));
        for name in object(i) {
            let patch = json!({"metadata": {"annotations": {TOUCH: value}}});
            api.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await.expect("touch");
        }
    })
    .await;
}

/// Waits until the reconcile counter reached `from + n`; returns how many ran since `from`.
async fn reconciled(env: &Sandbox, from: u64, n: u64, timeout: Duration) -> u64 {
    let deadline = Instant::now() + timeout;
    while env.controller_metrics.reconciles.get() < from + n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    env.controller_metrics.reconciles.get() - from
}

/// A client for the controller with its own User-Agent ([`CONTROLLER_AGENT`]), so that the audit
/// tells its requests from the test's.
pub fn controller_client(env: &Sandbox) -> kube::Client {
    let mut config = env.cluster.client_config();
    config.headers.push((http::header::USER_AGENT, http::HeaderValue::from_static(CONTROLLER_AGENT)));
    kube::Client::try_from(config).expect("controller client")
}

/// Runs the scenario on a fresh sandbox and returns what it measured.
pub async fn run(config: Config) -> Figures {
    assert!(config.experiments > 0 && config.namespaces > 0, "{config:?}");
    let mut env = Sandbox::start(true, config.speed, true).await.expect("sandbox starts");
    let started = Instant::now();
    workloads(&env, &config).await;
    let cfg = &config;
    let client = &env.client;
    each(config.experiments, |i| async move {
        let ns = namespace_of(cfg, i);
        let exp = experiment(&ns, i);
        let api: Api<Experiment> = Api::namespaced(client.clone(), &ns);
        let name = exp.metadata.name.clone().expect("named");
        api.patch(&name, &apply(), &Patch::Apply(&exp)).await.expect("experiment");
    })
    .await;
    let setup = started.elapsed();
    eprintln!(
        "scale: {} experiments set up, every pod ready, in {setup:.2?}; starting the controller",
        config.experiments
    );

    env.cluster.audit().clear();
    let started = Instant::now();
    env.start_controller_with(controller_client(&env));
    let experiments: Api<Experiment> = Api::all(env.client.clone());
    let n = config.experiments;
    if let Err(progress) = until_first_pauses(&env, n, config.timeout).await {
        let sent = Requests::of_controller(&env.cluster.audit().records()).breakdown();
        panic!("timed out after {:?}: {progress}; the controller sent: {sent}", config.timeout);
    }
    let to_first_pause = started.elapsed();
    eprintln!("scale: every experiment at its first pause after {to_first_pause:.2?}; steady-state window");
    let ramp = Requests::of_controller(&env.cluster.audit().records());

    env.cluster.audit().clear();
    let settle = settle(&env, Duration::from_secs(2), Duration::from_secs(30)).await;
    let tail = Requests::of_controller(&env.cluster.audit().records());

    // The steady-state window.
    env.cluster.audit().clear();
    let metrics = env.controller_metrics.clone();
    let (reconciles_before, errors_before) = (metrics.reconciles.get(), metrics.errors.get());
    let started = Instant::now();
    touch::<Experiment>(&env, &config, "1", |i| vec![format!("exp-{i}")]).await;
    let reconciles_after_experiments = reconciled(&env, reconciles_before, n as u64, config.timeout).await;
    let from = metrics.reconciles.get();
    touch::<Deployment>(&env, &config, "1", |i| vec![format!("app-{i}-v1"), format!("app-{i}-v2")]).await;
    let reconciles_after_deployments = reconciled(&env, from, n as u64, config.timeout).await;
    let rest = config.window.saturating_sub(started.elapsed());
    tokio::time::sleep(rest).await;
    let window = started.elapsed();
    let steady = Requests::of_controller(&env.cluster.audit().records());
    let reconciles = metrics.reconciles.get() - reconciles_before;
    let errors = metrics.errors.get() - errors_before;
    // Still every experiment at its pause: the touches changed nothing.
    let list = experiments.list(&ListParams::default()).await.expect("list experiments");
    assert_eq!(list.items.iter().filter(|e| paused_at_first_pause(e)).count(), n, "the touches moved an experiment");
    env.shutdown().await;
    Figures {
        config,
        setup,
        to_first_pause,
        ramp,
        settle,
        tail,
        window,
        steady,
        touched: 3 * n,
        reconciles_after_experiments,
        reconciles_after_deployments,
        reconciles,
        errors,
    }
}
