//! The `forklane` command line: one module per subcommand.

pub(crate) mod cluster;
pub(crate) mod command;
pub(crate) mod dashboard;
pub(crate) mod demo;
pub(crate) mod get;
pub(crate) mod list;
pub mod policy;
pub mod render;
pub(crate) mod report;
pub mod run;
pub(crate) mod stats;
pub(crate) mod stats_plan;
pub(crate) mod study;
pub(crate) mod traffic;
pub mod validate;
pub mod yaml;

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use forklane_core::api::load::{Document, load_documents};
use forklane_core::controller::commands::Command as Cmd;

/// Forklane: release experiments on a service mesh, decided with statistics.
#[derive(Parser)]
#[command(name = "forklane", version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the objects that route an experiment's traffic at a given step.
    Render(render::RenderArgs),
    /// Check experiments (and policies) and report every problem.
    Validate(validate::ValidateCommand),
    /// Print the CustomResourceDefinitions of Forklane's API.
    Crdgen,
    /// RolloutPolicies as the API server enforces them.
    Policy {
        #[command(subcommand)]
        cmd: policy::PolicyCommand,
    },
    /// Statistics: reproduce reference vectors, or compare arms by hand.
    Stats {
        #[command(subcommand)]
        cmd: stats::StatsCommand,
    },
    /// Run the controller.
    Run(run::RunArgs),
    /// Run an A/B experiment end to end in one process, on a sped-up clock.
    Demo(demo::DemoArgs),
    /// Serve an embedded Kubernetes API server for kubectl and the controller.
    Cluster(cluster::ClusterArgs),
    /// Send synthetic users' requests to a URL and count the answers per version.
    Traffic(traffic::TrafficArgs),
    /// An experiment's report: HTML with plots of its history (or Markdown, --format md).
    Report(report::ReportArgs),
    /// Serve the read-only dashboard of the experiments locally, from the kubeconfig's cluster.
    Dashboard(dashboard::DashboardArgs),
    /// Continue past a pause or analysis step (--full: straight to 100%; --arm: pick an A/B arm).
    Promote(command::PromoteArgs),
    /// Send all traffic back to the control and stop.
    Abort(command::AbortArgs),
    /// Show one experiment: steps, arms, analysis, conditions and events (--watch: keep showing).
    Get(get::GetArgs),
    /// List experiments: phase, strategy, weights, step and latest decision.
    List(list::ListArgs),
    /// Hold the experiment where it is.
    Pause(command::Target),
    /// Let a paused experiment go on.
    Resume(command::Target),
}

/// Runs the command line (`forklane …`, or `kubectl forklane …` through the plugin binary).
pub async fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Render(args) => render::run(args),
        Command::Validate(args) => validate::run(args),
        Command::Crdgen => {
            print!("{}", forklane_core::api::crds_yaml());
            ExitCode::SUCCESS
        }
        Command::Stats { cmd } => stats::run(cmd),
        Command::Policy { cmd } => policy::run(cmd),
        Command::Run(args) => run::run(args).await,
        Command::Cluster(args) => cluster::run(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Traffic(args) => traffic::run(args).await,
        Command::Report(args) => report::run(args).await,
        Command::Dashboard(args) => dashboard::run(args).await,
        Command::Promote(args) => command::send(&args.target, command::promote_command(&args)).await,
        Command::Abort(args) => command::send(&args.target, Cmd::Abort(args.reason.clone())).await,
        Command::Get(args) => get::run(args).await,
        Command::List(args) => list::run(args).await,
        Command::Pause(target) => command::send(&target, Cmd::Pause).await,
        Command::Resume(target) => command::send(&target, Cmd::Resume).await,
    }
}

/// How long the Kubernetes client waits to connect, to send a request and for each read of the
/// answer (`forklane run --kube-timeout`).
pub(crate) const KUBE_TIMEOUT: Duration = Duration::from_secs(30);

/// A client from a kubeconfig file, or the default chain (KUBECONFIG, ~/.kube/config, in-cluster),
/// whose connections, requests and answers each give up after `timeout`. A watch's answer is read
/// for as long as the watch runs: its server-side timeout must be shorter than `timeout`.
pub(crate) async fn connect(kubeconfig: Option<&Path>, timeout: Duration) -> Result<kube::Client, String> {
    kube::Client::try_from(client_config(kubeconfig, timeout).await?).map_err(|e| e.to_string())
}

/// The client configuration from `kubeconfig` (else the usual places), with `timeout` on every step.
pub(crate) async fn client_config(kubeconfig: Option<&Path>, timeout: Duration) -> Result<kube::Config, String> {
    let mut config = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path).map_err(|e| format!("{}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &Default::default())
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => kube::Config::infer().await.map_err(|e| format!("no Kubernetes configuration: {e}"))?,
    };
    config.connect_timeout = Some(timeout);
    config.write_timeout = Some(timeout);
    config.read_timeout = Some(timeout);
    // Count the read timeout from the request, not from when its pooled connection went idle.
    config.reset_reader_on_write = true;
    Ok(config)
}

/// Reads and parses a file of Forklane objects; the errors are ready to print.
pub(crate) fn read_documents(path: &Path) -> Result<Vec<Document>, Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| vec![format!("{}: {e}", path.display())])?;
    load_documents(&text).map_err(|errors| errors.iter().map(|e| format!("{}: {e}", path.display())).collect())
}

/// `namespace/name` of an object, for messages.
pub(crate) fn display_name(meta: &kube::api::ObjectMeta) -> String {
    let name = meta.name.as_deref().unwrap_or("<unnamed>");
    match &meta.namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}
