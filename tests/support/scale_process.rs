//! The controller at scale as it ships: `forklane run` as a child process against the embedded
//! cluster of this process. `cargo bench --bench controller_scale` (which includes this file and
//! `scale.rs` with `#[path]`) prints what it measures; `tests/controller_scale_readme.rs` runs it
//! small and checks that the README's table is the one the bench prints.
//!
//! The scenario is `scale.rs`'s (N canaries, Istio, `[setWeight 20, pause]`, every pod ready
//! before the controller starts). Measured, in order:
//! - the time from the process's start until every experiment is Paused at its pause, every first
//!   step applied, and the requests it sent on the way (which ones dominate);
//! - an idle window (nothing changes): the requests per experiment per minute (lease renewals
//!   included, counted apart), the controller's RSS (`VmRSS`) and CPU (utime + stime over the
//!   window, as a share of one core) from `/proc/PID`, and the same of this process (the embedded
//!   server, its workload simulator and data plane, and the bench's own client);
//! - a touch window as `scale.rs`'s: every Experiment and every Deployment annotated, which the
//!   controller reconciles (its `forklane_reconciles_total`) with no API read and no write;
//! - spec edits, one at a time: the first `setWeight` of an experiment raised, and the time until
//!   the cluster's store holds its VirtualService with the new weight.
//!
//! The controller's requests are told apart by its User-Agent, `forklane/{version} ({identity})`.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use forklane_core::api::{Experiment, HumanDuration, RoutingOptions};
use forklane_sim::cluster::AuditRecord;
use forklane_sim::sandbox::Sandbox;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::forklane_run::ForklaneRun;
use super::scale::{self, Config, Requests, each, namespace_of, paused_at_first_pause};

/// The controller's name (`POD_NAME`), in its User-Agent.
const IDENTITY: &str = "forklane-scale";

/// The leader-election Lease's namespace.
const LEASE_NAMESPACE: &str = "default";

/// Seconds between the leader's looks at its Lease with `forklane run`'s default 15 s lease.
const DEFAULT_LOOK_SECS: u64 = 5;

/// Clock ticks per second of `/proc/PID/stat` (`getconf CLK_TCK`; 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

#[derive(Clone, Debug)]
pub struct Settings {
    pub config: Config,
    /// Spec edits measured one at a time.
    pub edits: usize,
    /// Further arguments of `forklane run` (`--kube-qps 200`, say).
    pub args: Vec<String>,
    /// `spec.routing.propagationDelay` of every experiment (default 8 s, and a first step waits
    /// it twice: the DestinationRule before the VirtualService, the VirtualService before the
    /// pause). Shorter in the test, which measures no figure.
    pub propagation_delay: Option<HumanDuration>,
}

/// Memory and CPU of a process over a window.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    /// `VmRSS` at the window's end, MiB.
    pub rss_mib: u64,
    /// CPU time (user + system) over the window's length: 1.0 is one core busy.
    pub cpu: f64,
}

/// What one run measured.
#[derive(Clone, Debug)]
pub struct Figures {
    pub settings: Settings,
    pub setup: Duration,
    /// From the process's start until every experiment is Paused at its pause.
    pub to_first_step: Duration,
    /// The controller's requests until then (lease requests included).
    pub ramp: Requests,
    pub settle: Duration,
    /// The idle window, its requests (leases apart), its lease requests and the usage in it.
    pub idle: Duration,
    pub idle_requests: Requests,
    pub idle_leases: Requests,
    pub controller: Usage,
    pub server: Usage,
    /// The touch window, its requests (leases apart), its reconciles after each round.
    pub touch: Duration,
    pub touch_requests: Requests,
    pub reconciles_after_experiments: u64,
    pub reconciles_after_deployments: u64,
    pub errors: u64,
    /// Spec edit → VirtualService, sorted.
    pub edits: Vec<Duration>,
    /// The controller's requests while it followed the edits (leases apart).
    pub edit_requests: Requests,
}

impl Figures {
    pub fn problems(&self) -> Vec<String> {
        let windows = [("idle", &self.idle_requests), ("touch", &self.touch_requests)];
        let reconciles = (self.reconciles_after_experiments, self.reconciles_after_deployments);
        let mut out = scale::quiet_problems(self.settings.config.experiments, &windows, reconciles, self.errors);
        // With the default 15 s lease the leader looks (get, patch) every 5 s.
        let looks = (self.idle.as_secs() / DEFAULT_LOOK_SECS).saturating_sub(1);
        let default_lease = !self.settings.args.iter().any(|a| a.starts_with("--lease-duration"));
        if default_lease && self.idle_leases.writes < looks {
            out.push(format!(
                "the leader renewed its lease {} times in the idle window ({:.0?}), not at least {looks}",
                self.idle_leases.writes, self.idle
            ));
        }
        out
    }

    /// Requests per experiment per minute in the idle window, everything counted (lease
    /// renewals and watches restarted included).
    pub fn idle_per_experiment_minute(&self) -> f64 {
        let all = self.idle_requests.reads
            + self.idle_requests.writes
            + self.idle_requests.watches
            + self.idle_leases.reads
            + self.idle_leases.writes;
        all as f64 / self.settings.config.experiments as f64 / (self.idle.as_secs_f64() / 60.0)
    }

    /// The `q` quantile of the edits' latencies (nearest rank).
    pub fn edit_quantile(&self, q: f64) -> Duration {
        let rank = ((q * self.edits.len() as f64).ceil() as usize).clamp(1, self.edits.len().max(1));
        self.edits.get(rank - 1).copied().unwrap_or_default()
    }

    pub fn readme_row(&self) -> ReadmeRow {
        ReadmeRow {
            experiments: self.settings.config.experiments,
            to_first_step_s: self.to_first_step.as_secs_f64(),
            edit_p50_ms: self.edit_quantile(0.5).as_secs_f64() * 1e3,
            edit_p99_ms: self.edit_quantile(0.99).as_secs_f64() * 1e3,
            per_minute: self.idle_per_experiment_minute(),
            controller_rss_mib: self.controller.rss_mib,
            controller_cpu_pct: self.controller.cpu * 100.0,
            server_rss_mib: self.server.rss_mib,
            server_cpu_pct: self.server.cpu * 100.0,
        }
    }

    /// The figures as a small plain table, then the README's row.
    pub fn table(&self) -> String {
        let c = &self.settings.config;
        let n = c.experiments as f64;
        let per = |k: u64| format!("{k} ({:.1} per experiment)", k as f64 / n);
        let usage = |u: Usage| format!("{} MiB, CPU {:.1} % of a core", u.rss_mib, u.cpu * 100.0);
        let args = if self.settings.args.is_empty() { "defaults".into() } else { self.settings.args.join(" ") };
        let rows = [
            (
                "experiments (N)",
                format!("{} in {} namespaces, Istio, [setWeight 20, pause]", c.experiments, c.namespaces),
            ),
            ("Deployments", format!("{} (two of 1 replica per experiment)", 2 * c.experiments)),
            ("clock", format!("{}× for the cluster; the controller on the real clock", c.speed)),
            ("controller", format!("`forklane run` as a child process, flags: {args}")),
            ("setup, every pod ready", secs(self.setup)),
            ("time to every first step applied", secs(self.to_first_step)),
            ("  controller reads", per(self.ramp.reads)),
            ("  controller writes", per(self.ramp.writes)),
            ("  controller watches", self.ramp.watches.to_string()),
            ("settle (2 s quiet)", secs(self.settle)),
            ("idle window (real)", secs(self.idle)),
            ("  controller reads / writes", format!("{} / {}", self.idle_requests.reads, self.idle_requests.writes)),
            ("  lease requests", (self.idle_leases.reads + self.idle_leases.writes).to_string()),
            ("  watches restarted", self.idle_requests.watches.to_string()),
            ("  requests per experiment per minute", format!("{:.4}", self.idle_per_experiment_minute())),
            ("  controller process", usage(self.controller)),
            ("  this process (server, simulator, bench client)", usage(self.server)),
            ("touch window (real)", secs(self.touch)),
            ("  objects touched", (3 * c.experiments).to_string()),
            ("    reconciles after touching Experiments", self.reconciles_after_experiments.to_string()),
            ("    reconciles after touching Deployments", self.reconciles_after_deployments.to_string()),
            ("  reconcile errors", self.errors.to_string()),
            ("  controller reads / writes", format!("{} / {}", self.touch_requests.reads, self.touch_requests.writes)),
            (
                "spec edit → VirtualService",
                format!(
                    "p50 {:.1} ms, p99 {:.1} ms, longest {:.1} ms ({} edits, one at a time)",
                    self.edit_quantile(0.5).as_secs_f64() * 1e3,
                    self.edit_quantile(0.99).as_secs_f64() * 1e3,
                    self.edits.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
                    self.edits.len()
                ),
            ),
            (
                "  controller requests per edit",
                format!(
                    "{:.1}",
                    self.edit_requests.by_kind.values().sum::<u64>() as f64 / self.edits.len().max(1) as f64
                ),
            ),
        ];
        let width = rows.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
        let mut out = String::new();
        for (k, v) in rows {
            let _ = writeln!(out, "{k:<width$}  {v}");
        }
        let _ = writeln!(out, "ramp requests: {}", self.ramp.breakdown());
        if !self.idle_requests.by_kind.is_empty() {
            let _ = writeln!(out, "idle requests: {}", self.idle_requests.breakdown());
        }
        if !self.touch_requests.by_kind.is_empty() {
            let _ = writeln!(out, "touch requests: {}", self.touch_requests.breakdown());
        }
        let _ = writeln!(out, "edit requests: {}", self.edit_requests.breakdown());
        let slowest: Vec<String> =
            self.edits.iter().rev().take(5).map(|d| format!("{:.1} ms", d.as_secs_f64() * 1e3)).collect();
        let _ = writeln!(out, "slowest edits: {}", slowest.join(", "));
        let _ = writeln!(out, "README row (this process's figures include the bench's own client):");
        let _ = writeln!(out, "{README_HEADER}");
        let _ = writeln!(out, "{}", self.readme_row().format());
        out
    }
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// The README's controller-scale table header (between its `<!-- controller-scale -->` markers).
pub const README_HEADER: &str = "| experiments | start → every first step applied | spec edit → VirtualService, p50 / p99 | requests per experiment per minute, idle | controller RSS | controller CPU, idle | server RSS | server CPU, idle |";

/// One row of the README's controller-scale table, as the bench prints it.
#[derive(Clone, Debug)]
pub struct ReadmeRow {
    pub experiments: usize,
    pub to_first_step_s: f64,
    pub edit_p50_ms: f64,
    pub edit_p99_ms: f64,
    pub per_minute: f64,
    pub controller_rss_mib: u64,
    pub controller_cpu_pct: f64,
    pub server_rss_mib: u64,
    pub server_cpu_pct: f64,
}

impl ReadmeRow {
    pub fn format(&self) -> String {
        format!(
            "| {} | {:.1} s | {:.1} ms / {:.1} ms | {:.3} | {} MiB | {:.1} % | {} MiB | {:.1} % |",
            thousands(self.experiments),
            self.to_first_step_s,
            self.edit_p50_ms,
            self.edit_p99_ms,
            self.per_minute,
            self.controller_rss_mib,
            self.controller_cpu_pct,
            self.server_rss_mib,
            self.server_cpu_pct
        )
    }

    /// A row in [`ReadmeRow::format`]'s format, or what is wrong with it.
    pub fn parse(line: &str) -> Result<ReadmeRow, String> {
        let cells: Vec<&str> =
            line.strip_prefix("| ").and_then(|l| l.strip_suffix(" |")).ok_or("not a table row")?.split(" | ").collect();
        let [n, first, edit, per_minute, rss, cpu, server_rss, server_cpu] = cells[..] else {
            return Err(format!("{} cells, not 8", cells.len()));
        };
        let unit = |cell: &str, unit: &str| -> Result<f64, String> {
            let number = cell.strip_suffix(unit).ok_or(format!("{cell:?} does not end in {unit:?}"))?;
            number.parse().map_err(|_| format!("{number:?} is not a number"))
        };
        let (p50, p99) = edit.split_once(" / ").ok_or(format!("{edit:?} is not p50 / p99"))?;
        let row = ReadmeRow {
            experiments: n.replace(',', "").parse().map_err(|_| format!("{n:?} is not a count"))?,
            to_first_step_s: unit(first, " s")?,
            edit_p50_ms: unit(p50, " ms")?,
            edit_p99_ms: unit(p99, " ms")?,
            per_minute: unit(per_minute, "")?,
            controller_rss_mib: unit(rss, " MiB")? as u64,
            controller_cpu_pct: unit(cpu, " %")?,
            server_rss_mib: unit(server_rss, " MiB")? as u64,
            server_cpu_pct: unit(server_cpu, " %")?,
        };
        if row.format() == line { Ok(row) } else { Err(format!("printed back as {:?}", row.format())) }
    }
}

fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The rows of the README's controller-scale table (between its `<!-- controller-scale -->`
/// markers): the header, then the data rows.
pub fn readme_table() -> (String, Vec<String>) {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let table = readme.split("<!-- controller-scale -->").nth(1).expect("the README has the controller-scale table");
    let table = table.split("<!-- /controller-scale -->").next().expect("split");
    let mut rows = table.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| ---")).map(String::from);
    let header = rows.next().unwrap_or_default();
    (header, rows.collect())
}

/// `forklane run` as a child process.
struct Process {
    run: ForklaneRun,
    metrics: std::net::SocketAddr,
}

impl Process {
    fn start(kubeconfig: &std::path::Path, args: &[String]) -> Process {
        // A free port for its metrics (`/metrics` carries the reconcile counter).
        let metrics = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port");
        let lease = ["--lease-namespace".to_string(), LEASE_NAMESPACE.to_string()];
        let args: Vec<String> = lease.into_iter().chain(args.iter().cloned()).collect();
        Process { run: ForklaneRun::start(kubeconfig, IDENTITY, &metrics.to_string(), &args), metrics }
    }

    /// Its requests among `records`, lease requests apart: (the others, the leases').
    fn requests(&self, records: &[AuditRecord]) -> (Requests, Requests) {
        let lease = |r: &AuditRecord| r.group == "coordination.k8s.io";
        (
            Requests::of_agent_where(records, &self.run.agent, |r| !lease(r)),
            Requests::of_agent_where(records, &self.run.agent, lease),
        )
    }

    /// A counter of its `/metrics` (0 while it does not answer).
    async fn counter(&self, name: &str) -> u64 {
        let text = async {
            let mut stream = tokio::net::TcpStream::connect(self.metrics).await.ok()?;
            stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.ok()?;
            let mut text = String::new();
            stream.read_to_string(&mut text).await.ok()?;
            Some(text)
        };
        let text = text.await.unwrap_or_default();
        let line = text.lines().find(|l| l.split_whitespace().next() == Some(name));
        line.and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse::<f64>().ok()).map_or(0, |v| v as u64)
    }

    async fn stop(mut self) {
        self.run.stop("-TERM", Duration::from_secs(10)).await;
    }
}

/// CPU seconds (user + system) of `/proc/{pid}` (`self` for this process).
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // The fields after the command name (which may hold spaces) in parentheses.
    let fields: Vec<&str> = stat.rsplit_once(')').expect("(comm)").1.split_whitespace().collect();
    let ticks = |i: usize| fields[i].parse::<f64>().expect("ticks");
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    (ticks(11) + ticks(12)) / TICKS_PER_SECOND
}

fn rss_mib(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).and_then(|k| k.parse::<u64>().ok()).expect("kB") / 1024
}

/// Waits until `process` has sent no request but watches and lease requests for `quiet`.
async fn settle(env: &Sandbox, process: &Process, quiet: Duration, timeout: Duration) -> Duration {
    let started = Instant::now();
    let count = || {
        let (r, _) = process.requests(&env.cluster.audit().records());
        (r.reads, r.writes)
    };
    let mut last = count();
    let mut since = Instant::now();
    while since.elapsed() < quiet && started.elapsed() < timeout {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = count();
        if now != last {
            since = Instant::now();
        }
        last = now;
    }
    started.elapsed()
}

/// Annotates the objects of kind `K` that `object(i)` names for each experiment `i`.
async fn touch<K>(env: &Sandbox, config: &Config, object: impl Fn(usize) -> Vec<String>)
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
            let patch = json!({"metadata": {"annotations": {scale::TOUCH: "1"}}});
            api.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await.expect("touch");
        }
    })
    .await;
}

/// Waits until the process's reconcile counter reached `from + n`; returns how many ran since `from`.
async fn reconciled(process: &Process, from: u64, n: u64, timeout: Duration) -> u64 {
    let deadline = Instant::now() + timeout;
    loop {
        let now = process.counter("forklane_reconciles_total").await;
        if now >= from + n || Instant::now() >= deadline {
            return now.saturating_sub(from);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The v2 weight of the catch-all route of a VirtualService.
fn v2_weight(vs: &Value) -> Option<i64> {
    let routes = vs["spec"]["http"].as_array()?;
    let route = routes.last()?["route"].as_array()?;
    route.iter().find(|d| d["destination"]["subset"] == "v2").and_then(|d| d["weight"].as_i64())
}

/// Edits experiments one at a time (the first `setWeight` raised) and returns each edit's time
/// until the store holds its VirtualService with the new weight, sorted.
async fn edit(env: &Sandbox, config: &Config, edits: usize) -> Vec<Duration> {
    let n = config.experiments;
    let mut changes = env.cluster.store().changes();
    let mut out = Vec::with_capacity(edits);
    for k in 0..edits {
        // Spread over the experiments; each edit raises its experiment's weight (a lower one
        // without an analysis before it would fail the experiment).
        let i = (k * 7919) % n;
        let weight = 21 + (k / n) as i64;
        let ns = namespace_of(config, i);
        let name = format!("exp-{i}");
        let steps = json!([{"setWeight": weight}, {"pause": {}}]);
        let patch = json!({"spec": {"strategy": {"canary": {"steps": steps}}}});
        let api: Api<Experiment> = Api::namespaced(env.client.clone(), &ns);
        let started = Instant::now();
        api.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await.expect("edit");
        let carried = async {
            loop {
                let change = match changes.recv().await {
                    Ok(c) => c,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(e) => panic!("the store's changes ended: {e}"),
                };
                let o = &change.object;
                if change.resource.resource == "virtualservices"
                    && o["metadata"]["namespace"] == ns.as_str()
                    && o["metadata"]["ownerReferences"][0]["name"] == name.as_str()
                    && v2_weight(o) == Some(weight)
                {
                    return;
                }
            }
        };
        tokio::time::timeout(config.timeout, carried)
            .await
            .unwrap_or_else(|_| panic!("{name} edited to setWeight {weight}: no VirtualService carried it"));
        out.push(started.elapsed());
    }
    out.sort();
    out
}

/// Runs the scenario on a fresh sandbox with `forklane run` as a child process.
pub async fn run(settings: Settings) -> Figures {
    let config = settings.config.clone();
    assert!(config.experiments > 0 && config.namespaces > 0 && settings.edits > 0, "{settings:?}");
    let env = Sandbox::start(true, config.speed, true).await.expect("sandbox starts");
    let started = Instant::now();
    scale::workloads(&env, &config).await;
    let (cfg, client, delay) = (&config, &env.client, settings.propagation_delay);
    each(config.experiments, |i| async move {
        let ns = namespace_of(cfg, i);
        let mut exp = scale::experiment(&ns, i);
        if delay.is_some() {
            exp.spec.routing = Some(RoutingOptions { propagation_delay: delay, ..RoutingOptions::default() });
        }
        let api: Api<Experiment> = Api::namespaced(client.clone(), &ns);
        let name = exp.metadata.name.clone().expect("named");
        api.patch(&name, &scale::apply(), &Patch::Apply(&exp)).await.expect("experiment");
    })
    .await;
    let setup = started.elapsed();
    eprintln!("scale: {} experiments set up in {setup:.2?}; starting `forklane run`", config.experiments);

    let kubeconfig: PathBuf = std::env::temp_dir().join(format!("forklane-scale-{}.kubeconfig", rand::random::<u64>()));
    std::fs::write(&kubeconfig, env.cluster.kubeconfig_yaml()).expect("kubeconfig written");
    env.cluster.audit().clear();
    let started = Instant::now();
    let process = Process::start(&kubeconfig, &settings.args);
    let experiments: Api<Experiment> = Api::all(env.client.clone());
    let n = config.experiments;
    if let Err(progress) = scale::until_first_pauses(&env, n, config.timeout).await {
        let (sent, _) = process.requests(&env.cluster.audit().records());
        panic!("{progress}; the controller sent: {}", sent.breakdown());
    }
    let to_first_step = started.elapsed();
    let ramp = Requests::of_agent_where(&env.cluster.audit().records(), &process.run.agent, |_| true);
    eprintln!("scale: every first step applied after {to_first_step:.2?}; idle window");

    let settle = settle(&env, &process, Duration::from_secs(2), Duration::from_secs(60)).await;

    // The idle window: nothing changes.
    env.cluster.audit().clear();
    let pid = process.run.pid.to_string();
    let (controller_cpu, server_cpu) = (cpu_seconds(&pid), cpu_seconds("self"));
    let started = Instant::now();
    tokio::time::sleep(config.window).await;
    let idle = started.elapsed();
    let share = |cpu: f64| cpu / idle.as_secs_f64();
    let controller = Usage { rss_mib: rss_mib(&pid), cpu: share(cpu_seconds(&pid) - controller_cpu) };
    let server = Usage { rss_mib: rss_mib("self"), cpu: share(cpu_seconds("self") - server_cpu) };
    let (idle_requests, idle_leases) = process.requests(&env.cluster.audit().records());

    // The touch window.
    eprintln!("scale: touch window");
    env.cluster.audit().clear();
    let reconciles_before = process.counter("forklane_reconciles_total").await;
    let errors_before = process.counter("forklane_reconcile_errors_total").await;
    let started = Instant::now();
    touch::<Experiment>(&env, &config, |i| vec![format!("exp-{i}")]).await;
    let reconciles_after_experiments = reconciled(&process, reconciles_before, n as u64, config.timeout).await;
    let from = reconciles_before + reconciles_after_experiments;
    touch::<Deployment>(&env, &config, |i| vec![format!("app-{i}-v1"), format!("app-{i}-v2")]).await;
    let reconciles_after_deployments = reconciled(&process, from, n as u64, config.timeout).await;
    // A moment for any request the touches would cause.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let touch = started.elapsed();
    let (touch_requests, _) = process.requests(&env.cluster.audit().records());
    let errors = process.counter("forklane_reconcile_errors_total").await.saturating_sub(errors_before);

    // The spec edits.
    eprintln!("scale: {} spec edits", settings.edits);
    env.cluster.audit().clear();
    let edits = edit(&env, &config, settings.edits).await;
    let (edit_requests, _) = process.requests(&env.cluster.audit().records());
    let list = experiments.list(&ListParams::default()).await.expect("list experiments");
    assert_eq!(list.items.iter().filter(|e| paused_at_first_pause(e)).count(), n, "an experiment moved on");

    process.stop().await;
    let _ = std::fs::remove_file(&kubeconfig);
    env.shutdown().await;
    Figures {
        settings,
        setup,
        to_first_step,
        ramp,
        settle,
        idle,
        idle_requests,
        idle_leases,
        controller,
        server,
        touch,
        touch_requests,
        reconciles_after_experiments,
        reconciles_after_deployments,
        errors,
        edits,
        edit_requests,
    }
}
