//! `forklane promote|abort|pause|resume NAME -n NS`: annotate the Experiment; the controller acts.

use std::path::PathBuf;
use std::process::ExitCode;

use kube::api::{Api, Patch, PatchParams};

use forklane_core::api::Experiment;
use forklane_core::controller::commands::{Command, Promote, patch};

use super::{KUBE_TIMEOUT, connect};

#[derive(Debug, clap::Args)]
pub(crate) struct Target {
    /// The Experiment's name.
    pub name: String,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct PromoteArgs {
    #[command(flatten)]
    pub target: Target,
    /// Skip every remaining step: all traffic to the candidate (or the analysis' choice) now.
    #[arg(long, conflicts_with = "arm")]
    pub full: bool,
    /// All traffic to this arm (A/B tests).
    #[arg(long)]
    pub arm: Option<String>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct AbortArgs {
    #[command(flatten)]
    pub target: Target,
    /// Why, for the status and the events.
    #[arg(long)]
    pub reason: Option<String>,
}

pub(crate) async fn send(target: &Target, command: Command) -> ExitCode {
    let client = match connect(target.kubeconfig.as_deref(), KUBE_TIMEOUT).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let api: Api<Experiment> = Api::namespaced(client, &target.namespace);
    match api.patch(&target.name, &PatchParams::default(), &Patch::Merge(patch(&command))).await {
        Ok(_) => {
            println!("experiment.forklane.io/{} {}", target.name, describe(&command));
            ExitCode::SUCCESS
        }
        Err(kube::Error::Api(status)) if status.code == 404 => {
            eprintln!("Experiment {}/{} not found", target.namespace, target.name);
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

pub(crate) fn promote_command(args: &PromoteArgs) -> Command {
    Command::Promote(match (&args.arm, args.full) {
        (Some(arm), _) => Promote::Arm(arm.clone()),
        (None, true) => Promote::Full,
        (None, false) => Promote::Next,
    })
}

fn describe(command: &Command) -> &'static str {
    match command {
        Command::Pause => "paused",
        Command::Resume => "resumed",
        Command::Promote(_) => "promoted",
        Command::Abort(_) => "aborted",
    }
}
