use std::process::ExitCode;

use clap::{Parser, Subcommand};
use forklane::cli;

/// Forklane: release experiments on a service mesh, decided with statistics.
#[derive(Parser)]
#[command(name = "forklane", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the objects that route an experiment's traffic at a given step.
    Render(cli::render::RenderArgs),
    /// Check experiments (and policies) and report every problem.
    Validate(cli::validate::ValidateArgs),
    /// Print the CustomResourceDefinitions of Forklane's API.
    Crdgen,
    /// Statistics: reproduce reference vectors, or compare arms by hand.
    Stats {
        #[command(subcommand)]
        cmd: cli::stats::StatsCommand,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Render(args) => cli::render::run(args),
        Command::Validate(args) => cli::validate::run(args),
        Command::Crdgen => {
            print!("{}", forklane::api::crds_yaml());
            ExitCode::SUCCESS
        }
        Command::Stats { cmd } => cli::stats::run(cmd),
    }
}
