//! `forklane cluster`: runs the embedded Kubernetes API server until Ctrl-C.

use crate::cluster::{Cluster, ClusterConfig};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct ClusterArgs {
    /// Port to listen on, on 127.0.0.1 only (0 picks a free port).
    #[arg(long, default_value_t = 6443)]
    pub port: u16,
    /// Where to write the kubeconfig (context `forklane`, CA and bearer token included).
    #[arg(long, default_value = "forklane.kubeconfig")]
    pub kubeconfig: PathBuf,
}

fn write_private(path: &PathBuf, contents: &str) -> std::io::Result<()> {
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

pub async fn run(args: ClusterArgs) -> ExitCode {
    let cluster = match Cluster::start(ClusterConfig { port: args.port, ..Default::default() }).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("forklane cluster: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = write_private(&args.kubeconfig, cluster.kubeconfig_yaml()) {
        eprintln!("forklane cluster: writing {}: {e}", args.kubeconfig.display());
        cluster.shutdown().await;
        return ExitCode::FAILURE;
    }
    let path = std::fs::canonicalize(&args.kubeconfig).unwrap_or(args.kubeconfig.clone());
    println!("Kubernetes API server (forklane, in memory) listening on {}", cluster.url());
    println!("Kubeconfig written to {} (context \"forklane\").", path.display());
    println!();
    println!("    export KUBECONFIG={}", path.display());
    println!("    kubectl get namespaces");
    println!();
    println!("Fault injection: {}/forklane/faults (same token). Press Ctrl-C to stop.", cluster.url());
    let stopped = tokio::signal::ctrl_c().await;
    println!("Stopping.");
    cluster.shutdown().await;
    match stopped {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("forklane cluster: waiting for Ctrl-C: {e}");
            ExitCode::FAILURE
        }
    }
}
