//! `forklane list`: the experiments of a namespace (or of all, `-A`), one line each.

use std::path::PathBuf;
use std::process::ExitCode;

use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

use forklane_core::api::Experiment;

use super::{KUBE_TIMEOUT, connect};
use crate::view::Style;
use crate::view::list::{render_table, row};

#[derive(Debug, clap::Args)]
pub(crate) struct ListArgs {
    /// Default: the kubeconfig context's namespace, else `default`.
    #[arg(short = 'n', long, conflicts_with = "all_namespaces")]
    pub namespace: Option<String>,
    /// Every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: Output,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Output {
    Table,
    Json,
}

pub(crate) async fn run(args: ListArgs) -> ExitCode {
    match list(&args).await {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn list(args: &ListArgs) -> Result<String, String> {
    let client: Client = connect(args.kubeconfig.as_deref(), KUBE_TIMEOUT).await?;
    let namespace = args.namespace.clone().unwrap_or_else(|| client.default_namespace().to_string());
    let (api, scope): (Api<Experiment>, String) = if args.all_namespaces {
        (Api::all(client), "all namespaces".into())
    } else {
        (Api::namespaced(client, &namespace), format!("namespace {namespace}"))
    };
    let mut experiments =
        api.list(&ListParams::default()).await.map_err(|e| format!("listing Experiments in {scope}: {e}"))?.items;
    experiments.sort_by_key(|e| (e.namespace(), e.name_any()));
    let now = jiff::Timestamp::now();
    let rows: Vec<_> = experiments.iter().map(|e| row(e, now)).collect();
    Ok(match args.output {
        Output::Json => serde_json::to_string_pretty(&rows).expect("rows serialise") + "\n",
        Output::Table if rows.is_empty() => format!("No experiments found in {scope}.\n"),
        Output::Table => render_table(&rows, args.all_namespaces, Style::for_stdout()),
    })
}
