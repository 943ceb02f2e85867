//! `forklane run`: the controller process — leader election, the controller while leading,
//! `/metrics`, `/healthz`, `/readyz`, structured logs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use forklane_core::clock::Clock;
use forklane_core::controller::analyst::{PrometheusAddresses, SourceAnalyst};
use forklane_core::controller::fence::{Fence, fenced_client};
use forklane_core::controller::leader::{LeaseSettings, lead};
use forklane_core::controller::shards::Shard;
use forklane_core::controller::telemetry::{Metrics, STALE_AFTER};
use forklane_core::controller::throttle::{RateLimit, Throttle};
use forklane_core::controller::{Context, DEFAULT_CONCURRENCY, Scope};

use super::{KUBE_TIMEOUT, client_config};

/// How much sooner than the client's read timeout the API server ends a watch.
const WATCH_MARGIN: u64 = 5;

#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Watch one namespace only (default: all).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Also serve the read-only dashboard of the experiments (of --namespace) here.
    #[arg(long)]
    pub dashboard_addr: Option<SocketAddr>,
    /// Log as JSON lines.
    #[arg(long)]
    pub log_json: bool,
    /// Namespace of the leader-election Lease (default: $POD_NAMESPACE, else `default`).
    #[arg(long)]
    pub lease_namespace: Option<String>,
    /// Seconds a leader's lease stays valid without renewal: how long a crashed leader keeps a
    /// standby waiting (a leader that shuts down releases it at once).
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(3..))]
    pub lease_duration: u64,
    /// Seconds the Kubernetes client waits to connect, to send a request and for each read of
    /// an answer; the API server ends the controller's watches 5 s sooner (they then resume).
    #[arg(long, default_value_t = KUBE_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(10..=3600))]
    pub kube_timeout: u64,
    /// Prometheus for experiments that name no provider; experiments may also name it.
    #[arg(long)]
    pub prometheus_url: Option<String>,
    /// A further Prometheus address experiments may name in spec.analysis.provider.prometheus
    /// (repeat the flag, or separate with commas). Experiments naming any other address fail
    /// with AnalysisConfigInvalid: the controller never fetches an address its operator did not
    /// allow.
    #[arg(long, value_delimiter = ',')]
    pub allowed_prometheus_address: Vec<String>,
    /// Requests per second the controller sends to the API server on average (as client-go's
    /// QPS); requests beyond wait their turn. Lease renewals are not counted.
    #[arg(long, default_value_t = DEFAULT_KUBE_QPS)]
    pub kube_qps: f64,
    /// Requests the controller may send at once after a quiet spell (as client-go's burst).
    #[arg(long, default_value_t = DEFAULT_KUBE_BURST)]
    pub kube_burst: u32,
    /// Reconciles running at once; experiments with a timer due go first.
    #[arg(long, default_value_t = DEFAULT_CONCURRENCY, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=4096))]
    pub max_concurrent_reconciles: usize,
    /// Splits the experiments into this many shards by a hash of namespace/name, each led
    /// through its own Lease, so that several replicas share the work. Every replica must be
    /// given the same number.
    #[arg(long, default_value_t = 1, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=256))]
    pub shards: usize,
}

/// The client-side rate limit's defaults (Karpenter's rate; Flagger's is 100): an experiment's
/// first step takes eight writes (finalizer, DestinationRule, VirtualService, two status patches,
/// three events), so 1,000 experiments reach it within a minute (39 s measured by
/// `cargo bench --bench controller_scale`; 79 s at 100 a second), and a storm of retries still
/// cannot flood the API server.
const DEFAULT_KUBE_QPS: f64 = 200.0;
const DEFAULT_KUBE_BURST: u32 = 400;

pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,kube=warn".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}

pub(crate) async fn run(args: RunArgs) -> ExitCode {
    init_logging(args.log_json);
    let limit = match RateLimit::new(args.kube_qps, args.kube_burst) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    // One client for the elections, and one per shard whose writes pass only while this replica
    // holds the shard's lease. The shards' clients share one rate limit; the elections' client
    // has none, so that a queue of reconciles never delays a renewal.
    let identity = identity();
    let throttle = Throttle::new(limit);
    let clients = client_config(args.kubeconfig.as_deref(), Duration::from_secs(args.kube_timeout)).await.and_then(
        |mut config| {
            config.headers.push((axum::http::header::USER_AGENT, user_agent(&identity)?));
            let election = kube::Client::try_from(config.clone()).map_err(|e| e.to_string())?;
            let fenced = (0..args.shards)
                .map(|_| {
                    let fence = Fence::new();
                    let client = fenced_client(config.clone(), fence.clone(), Some(throttle.clone()));
                    client.map(|c| (c, fence)).map_err(|e| e.to_string())
                })
                .collect::<Result<Vec<_>, String>>()?;
            Ok((election, fenced))
        },
    );
    let (client, fenced) = match clients {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let metrics = Arc::new(Metrics::default());
    let listener = match tokio::net::TcpListener::bind(args.metrics_addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("cannot listen on {}: {e}", args.metrics_addr);
            return ExitCode::FAILURE;
        }
    };
    let served = metrics.clone();
    tokio::spawn(async move { axum::serve(listener, router(served, STALE_AFTER)).await });
    if let Some(addr) = args.dashboard_addr {
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("cannot listen on {addr} (--dashboard-addr): {e}");
                return ExitCode::FAILURE;
            }
        };
        let dashboard = crate::view::dashboard::router(client.clone(), args.namespace.clone());
        tokio::spawn(async move { axum::serve(listener, dashboard).await });
    }
    let lease = LeaseSettings {
        namespace: args
            .lease_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "default".into()),
        name: "forklane-controller".into(),
        identity,
        duration: args.lease_duration,
        grace: (args.lease_duration / 3).max(1),
    };
    let analyst = Arc::new(SourceAnalyst::prometheus(PrometheusAddresses {
        default: args.prometheus_url.clone(),
        allowed: args.allowed_prometheus_address.clone(),
    }));
    let shards = fenced
        .into_iter()
        .map(|(client, fence)| {
            let ctx = Context::new(client, Clock::real(), analyst.clone(), metrics.clone());
            Shard::fenced(Arc::new(ctx), fence)
        })
        .collect();
    let scope = Scope {
        namespace: args.namespace,
        watch_timeout: Some((args.kube_timeout - WATCH_MARGIN) as u32),
        concurrency: args.max_concurrent_reconciles,
    };
    match lead(client, lease, shards, scope, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Names the replica in every request, so that an audit log tells the replicas apart (which one
/// wrote, and when).
fn user_agent(identity: &str) -> Result<axum::http::HeaderValue, String> {
    axum::http::HeaderValue::try_from(format!("forklane/{} ({identity})", env!("CARGO_PKG_VERSION")))
        .map_err(|_| format!("the replica's name {identity:?} cannot be sent in a User-Agent header"))
}

/// This replica's name among the others: the pod's name, else the host's, else a random one.
fn identity() -> String {
    std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| format!("forklane-{:016x}", rand::random::<u64>()))
}

/// Ctrl-C, or the SIGTERM Kubernetes sends before it kills the pod.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let terminated = async move {
        match term.as_mut() {
            Some(t) => drop(t.recv().await),
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminated => {}
    }
}

/// `/metrics`, `/healthz` (no running loop has been silent for longer than `stale_after`) and
/// `/readyz` (the process has reached the API server and competes for the lease).
pub fn router(metrics: Arc<Metrics>, stale_after: Duration) -> Router {
    Router::new()
        .route("/metrics", get(|State(m): State<Arc<Metrics>>| async move { m.encode() }))
        .route(
            "/healthz",
            get(move |State(m): State<Arc<Metrics>>| async move {
                match m.unhealthy(stale_after) {
                    None => (StatusCode::OK, "ok".to_string()),
                    Some(why) => (StatusCode::INTERNAL_SERVER_ERROR, why),
                }
            }),
        )
        .route(
            "/readyz",
            get(|State(m): State<Arc<Metrics>>| async move {
                if m.ready.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ok")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not ready")
                }
            }),
        )
        .with_state(metrics)
}
