//! `forklane get NAME`: one experiment as a tree (or JSON), once or on every change (`--watch`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use futures::StreamExt;
use kube::Client;
use kube::api::Api;
use kube::runtime::watcher;

use forklane_core::api::Experiment;

use super::{KUBE_TIMEOUT, connect};
use crate::view::{Observed, Style, observe, render, summary};

/// How often `--watch` reads the pods and events again, which the watch on the experiment misses.
const REFRESH: Duration = Duration::from_secs(2);

#[derive(Debug, clap::Args)]
pub(crate) struct GetArgs {
    /// The Experiment's name.
    pub name: String,
    /// Default: the kubeconfig context's namespace, else `default`.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Print again whenever the experiment changes (and its pods and events every 2s); Ctrl-C ends.
    #[arg(short = 'w', long)]
    pub watch: bool,
    #[arg(short = 'o', long, value_enum, default_value = "tree")]
    pub output: Output,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Output {
    Tree,
    Json,
}

pub(crate) async fn run(args: GetArgs) -> ExitCode {
    match get(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn get(args: &GetArgs) -> Result<(), String> {
    let client = connect(args.kubeconfig.as_deref(), KUBE_TIMEOUT).await?;
    let namespace = args.namespace.clone().unwrap_or_else(|| client.default_namespace().to_string());
    let style = Style::for_stdout();
    let observed = read(&client, &namespace, &args.name).await?;
    if !args.watch {
        print!("{}", show(&observed, args.output, style));
        return Ok(());
    }
    watch(&client, &namespace, args, observed, style).await
}

/// The experiment with its surroundings; a missing one is named.
pub(crate) async fn read(client: &Client, namespace: &str, name: &str) -> Result<Observed, String> {
    observe(client, namespace, name).await.map_err(|e| match e {
        kube::Error::Api(status) if status.code == 404 => format!("Experiment {namespace}/{name} not found"),
        e => format!("reading Experiment {namespace}/{name}: {e}"),
    })
}

fn show(observed: &Observed, output: Output, style: Style) -> String {
    let summary = summary(observed, jiff::Timestamp::now());
    match output {
        Output::Tree => render(&summary, style),
        Output::Json => serde_json::to_string_pretty(&summary).expect("a summary serialises") + "\n",
    }
}

/// Prints on every change of the experiment (a watch on it) and of its Deployments or Events
/// (read again every [`REFRESH`]); on a terminal the screen is cleared first, else a separator
/// line comes between prints.
async fn watch(client: &Client, namespace: &str, args: &GetArgs, first: Observed, style: Style) -> Result<(), String> {
    let api: Api<Experiment> = Api::namespaced(client.clone(), namespace);
    // Ended server-side well within the client's read timeout; the watcher starts it again.
    let config = watcher::Config::default().fields(&format!("metadata.name={}", args.name)).timeout(20);
    let mut changes = watcher(api, config).boxed();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + REFRESH, REFRESH);
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut last: Option<Vec<String>> = None;
    let mut observed = first;
    loop {
        // On a terminal every print refreshes the ages; piped, only a change is printed again.
        let versions = versions(&observed);
        if terminal || last.as_ref() != Some(&versions) {
            let text = show(&observed, args.output, style);
            let mut out = std::io::stdout().lock();
            let lead = match (&last, terminal) {
                (_, true) => "\x1b[2J\x1b[H",
                (Some(_), false) => "---\n",
                (None, false) => "",
            };
            let _ = write!(out, "{lead}{text}");
            let _ = out.flush();
            last = Some(versions);
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = tick.tick() => {}
            event = changes.next() => match event {
                Some(Ok(_)) => {}
                Some(Err(e)) => eprintln!("watching Experiment {namespace}/{}: {e}", args.name),
                None => return Ok(()),
            },
        }
        observed = read(client, namespace, &args.name).await?;
    }
}

/// The resource versions of everything shown: equal versions, equal view (but for ages).
fn versions(observed: &Observed) -> Vec<String> {
    let of = |meta: &kube::api::ObjectMeta| meta.resource_version.clone().unwrap_or_default();
    let mut out = vec![of(&observed.experiment.metadata)];
    out.extend(observed.deployments.values().map(|d| of(&d.metadata)));
    out.extend(observed.events.iter().map(|e| of(&e.metadata)));
    out
}
