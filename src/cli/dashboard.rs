//! `forklane dashboard [--addr 127.0.0.1:3000] [-n NS] [--kubeconfig F]`: serves the read-only
//! dashboard locally, reading the cluster of the kubeconfig (so `kubectl forklane dashboard`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::view::dashboard;

use super::{KUBE_TIMEOUT, connect};

#[derive(Debug, clap::Args)]
pub(crate) struct DashboardArgs {
    /// Where to listen (port 0: any free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:3000")]
    pub addr: SocketAddr,
    /// Show this namespace's experiments only (default: all).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
}

pub(crate) async fn run(args: DashboardArgs) -> ExitCode {
    let client = match connect(args.kubeconfig.as_deref(), KUBE_TIMEOUT).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(args.addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {} (--addr): {e}", args.addr);
            return ExitCode::FAILURE;
        }
    };
    match listener.local_addr() {
        Ok(addr) => println!("Forklane dashboard on http://{addr}/"),
        Err(e) => eprintln!("listening, at an address the system does not tell: {e}"),
    }
    let served = axum::serve(listener, dashboard::router(client, args.namespace))
        .with_graceful_shutdown(async { drop(tokio::signal::ctrl_c().await) })
        .await;
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
