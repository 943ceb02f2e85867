//! `forklane report NAME [-n NS] [-o FILE] [--format html|md]`: an experiment's report, as one
//! self-contained HTML page with plots or as Markdown for a pull-request comment.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::view::report;

use super::command::Target;
use super::{KUBE_TIMEOUT, connect};

#[derive(Debug, clap::Args)]
pub(crate) struct ReportArgs {
    #[command(flatten)]
    pub target: Target,
    /// Write the report to this file (default: standard output).
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Html)]
    pub format: Format,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(crate) enum Format {
    /// One HTML file with inline CSS and SVG plots.
    Html,
    /// Markdown: the summary, the latest estimates and the timeline.
    Md,
}

pub(crate) async fn run(args: ReportArgs) -> ExitCode {
    match write(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn write(args: &ReportArgs) -> Result<(), String> {
    let target = &args.target;
    let client = connect(target.kubeconfig.as_deref(), KUBE_TIMEOUT).await?;
    let observed = super::get::read(&client, &target.namespace, &target.name).await?;
    let now = jiff::Timestamp::now();
    let text = match args.format {
        Format::Html => report::html(&observed, now),
        Format::Md => report::markdown(&observed, now),
    };
    match &args.output {
        Some(path) => std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display())),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}
