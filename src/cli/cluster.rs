//! `forklane cluster`: runs the embedded Kubernetes API server, with the workload simulator
//! and the traffic data plane (NodePorts on 127.0.0.1, metrics for Prometheus), until Ctrl-C.

use forklane_core::clock::Clock;
use forklane_sim::cluster::{Cluster, ClusterConfig};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub(crate) struct ClusterArgs {
    /// Port to listen on, on 127.0.0.1 only (0 picks a free port).
    #[arg(long, default_value_t = 6443)]
    pub port: u16,
    /// Where to write the kubeconfig (context `forklane`, CA and bearer token included).
    #[arg(long, default_value = "forklane.kubeconfig")]
    pub kubeconfig: PathBuf,
    /// Speed of the simulated clock (2 = two simulated seconds per second): rollouts, probe
    /// delays, grace periods and the API server's timestamps all follow it.
    #[arg(long, default_value_t = 1.0, value_parser = parse_speed)]
    pub speed: f64,
    /// Port on 127.0.0.1 serving the data plane's Prometheus `/metrics` (0 picks a free port).
    #[arg(long, default_value_t = 0)]
    pub metrics_port: u16,
    /// Install the Gateway API v1.6.1 CRDs (GatewayClass, Gateway, HTTPRoute, ReferenceGrant,
    /// GRPCRoute), served with their schemas and CEL rules: the standard channel, or with
    /// `--gateway-api=experimental` the experimental channel's HTTPRoute.
    #[arg(long, value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "standard")]
    pub gateway_api: Option<GatewayChannel>,
}

/// A Gateway API release channel, for `--gateway-api`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum GatewayChannel {
    Standard,
    Experimental,
}

fn parse_speed(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a positive number")),
    }
}

pub(crate) fn write_private(path: &PathBuf, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    // The file carries the bearer token.
    #[cfg(unix)]
    options.mode(0o600);
    options.open(path)?.write_all(contents.as_bytes())
}

/// Serves the data plane's `/metrics` on 127.0.0.1:`port`; returns the address and the server.
async fn serve_metrics(
    cluster: &Cluster,
    port: u16,
) -> std::io::Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>)> {
    let router = cluster.dataplane().expect("the data plane is on").dataplane.metrics.router();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            eprintln!("forklane cluster: metrics server: {e}");
        }
    });
    Ok((addr, server))
}

pub(crate) async fn run(args: ClusterArgs) -> ExitCode {
    let config = ClusterConfig {
        port: args.port,
        clock: Clock::scaled(args.speed),
        workloads: true,
        dataplane: true,
        ..Default::default()
    };
    let cluster = match Cluster::start(config).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("forklane cluster: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(channel) = args.gateway_api {
        let experimental = channel == GatewayChannel::Experimental;
        if let Err(e) = forklane_sim::sandbox::install_gateway_api(&cluster.client(), experimental).await {
            eprintln!("forklane cluster: installing the Gateway API CRDs: {e}");
            cluster.shutdown().await;
            return ExitCode::FAILURE;
        }
    }
    if let Err(e) = write_private(&args.kubeconfig, cluster.kubeconfig_yaml()) {
        eprintln!("forklane cluster: writing {}: {e}", args.kubeconfig.display());
        cluster.shutdown().await;
        return ExitCode::FAILURE;
    }
    let metrics = match serve_metrics(&cluster, args.metrics_port).await {
        Ok(m) => m,
        Err(e) => {
            eprintln!("forklane cluster: metrics on 127.0.0.1:{}: {e}", args.metrics_port);
            cluster.shutdown().await;
            return ExitCode::FAILURE;
        }
    };
    let path = std::fs::canonicalize(&args.kubeconfig).unwrap_or(args.kubeconfig.clone());
    println!("Kubernetes API server (forklane, in memory) listening on {}", cluster.url());
    println!("Kubeconfig written to {} (context \"forklane\").", path.display());
    println!();
    println!("    export KUBECONFIG={}", path.display());
    println!("    kubectl get namespaces");
    println!();
    if let Some(channel) = args.gateway_api {
        let channel = if channel == GatewayChannel::Experimental { "experimental" } else { "standard" };
        println!("Gateway API v1.6.1 CRDs installed ({channel} channel).");
    }
    println!("Workloads run on a clock at {}x; NodePort Services answer on 127.0.0.1:<nodePort>.", args.speed);
    println!("Data plane metrics: http://{}/metrics", metrics.0);
    println!("Fault injection: {}/forklane/faults (same token). Press Ctrl-C to stop.", cluster.url());
    let stopped = tokio::signal::ctrl_c().await;
    println!("Stopping.");
    metrics.1.abort();
    cluster.shutdown().await;
    match stopped {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("forklane cluster: waiting for Ctrl-C: {e}");
            ExitCode::FAILURE
        }
    }
}
