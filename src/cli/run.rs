//! `forklane run`: the controller process — leader election, the controller while leading,
//! `/metrics`, `/healthz`, `/readyz`, structured logs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;

use crate::clock::Clock;
use crate::controller::observe::istio_installed;
use crate::controller::telemetry::{Metrics, router};
use crate::controller::analyst::SourceAnalyst;
use crate::controller::{Context, Scope, run_controller};

use super::connect;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Watch one namespace only (default: all).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Log as JSON lines.
    #[arg(long)]
    pub log_json: bool,
    /// Namespace of the leader-election Lease (default: $POD_NAMESPACE, else `default`).
    #[arg(long)]
    pub lease_namespace: Option<String>,
    /// Prometheus for experiments that name no provider.
    #[arg(long)]
    pub prometheus_url: Option<String>,
}

pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,kube=warn".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}

pub async fn run(args: RunArgs) -> ExitCode {
    init_logging(args.log_json);
    let client = match connect(args.kubeconfig.as_deref()).await {
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
    tokio::spawn(async move { axum::serve(listener, router(served)).await });
    let lease_ns = args.lease_namespace.clone().or_else(|| std::env::var("POD_NAMESPACE").ok()).unwrap_or_else(|| "default".into());
    let ctx = Arc::new(Context::new(client.clone(), Clock::real(), Arc::new(SourceAnalyst::prometheus(args.prometheus_url.clone())), metrics.clone()));
    match lead(client, lease_ns, ctx, Scope { namespace: args.namespace }).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the controller while this replica holds the Lease; stops it when the lease is lost and
/// restarts it when Istio is installed or removed (the watched kinds change).
async fn lead(client: Client, lease_ns: String, ctx: Arc<Context>, scope: Scope) -> Result<(), String> {
    let manager = LeaseManagerBuilder::new(client.clone(), "forklane-controller")
        .with_namespace(lease_ns)
        .with_field_manager("forklane-leader-election")
        .build()
        .await
        .map_err(|e| format!("leader election: {e}"))?;
    let (mut leading, _task) = manager.watch().await;
    loop {
        while !*leading.borrow_and_update() {
            tracing::info!("waiting for leadership");
            tokio::select! {
                changed = leading.changed() => changed.map_err(|_| "lease manager stopped".to_string())?,
                _ = tokio::signal::ctrl_c() => return Ok(()),
            }
        }
        let istio = istio_installed(&client).await.map_err(|e| e.to_string())?;
        tracing::info!(istio, "leading: controller starts");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let controller = tokio::spawn(run_controller(ctx.clone(), scope.clone(), istio, async move {
            let _ = stop_rx.await;
        }));
        let reason = loop {
            tokio::select! {
                _ = leading.changed() => if !*leading.borrow_and_update() { break "lost leadership" },
                _ = tokio::time::sleep(Duration::from_secs(10)) => {
                    if istio_installed(&client).await.unwrap_or(istio) != istio { break "Istio appeared or disappeared" }
                }
                _ = tokio::signal::ctrl_c() => { let _ = stop_tx.send(()); let _ = controller.await; return Ok(()) }
            }
        };
        tracing::info!(reason, "controller stops");
        let _ = stop_tx.send(());
        let _ = controller.await;
    }
}
