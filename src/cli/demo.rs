//! `forklane demo`: an A/B experiment from the first request to the promotion of the winner, in
//! one process — the embedded cluster with Istio's CRDs, the article's app as two Deployments whose
//! simulated versions differ by a true effect (v2 converts 10% better), synthetic users, the
//! controller and the embedded metric source — on a sped-up clock.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use kube::api::Api;

use forklane_core::api::{Experiment, Phase};
use forklane_sim::sandbox::{Sandbox, apply_yaml};
use forklane_sim::traffic::ServiceKey;

use crate::view::{Style, observe, render, report, summary};

#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Simulated seconds per real second.
    #[arg(long, default_value_t = 200.0)]
    pub speed: f64,
    /// Synthetic requests per second (real time).
    #[arg(long, default_value_t = 3000.0)]
    pub rps: f64,
    /// Give up after this many real seconds.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    /// Where to write the experiment's report (HTML, as `forklane report` writes it).
    #[arg(long, default_value = "forklane-demo-report.html")]
    pub report: PathBuf,
    /// Keep the embedded cluster serving after the end (until Ctrl-C), with a kubeconfig written
    /// here, for `kubectl forklane get checkout --kubeconfig FILE` and the dashboard.
    #[arg(long, value_name = "KUBECONFIG")]
    pub serve: Option<PathBuf>,
}

const APP: &str = include_str!("demo/app.yaml");
const EXPERIMENT: &str = include_str!("demo/experiment.yaml");

pub(crate) async fn run(args: DemoArgs) -> ExitCode {
    match demo(&args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn demo(args: &DemoArgs) -> Result<bool, String> {
    let started = Instant::now();
    let elapsed = || format!("{:>5.1}s", started.elapsed().as_secs_f64());
    println!("{} embedded cluster with Istio's CRDs, clock ×{}", elapsed(), args.speed);
    let mut sandbox = Sandbox::start(true, args.speed, false).await?;
    apply_yaml(&sandbox.client, APP, "default").await?;
    println!("{} my-app v1 (conversion 10.0%) and v2 (conversion 11.0%), 4 pods each", elapsed());
    sandbox.start_traffic(ServiceKey::new("default", "my-app"), args.rps, 2000);
    sandbox.start_controller();
    apply_yaml(&sandbox.client, EXPERIMENT, "default").await?;
    println!("{} Experiment checkout: A/B 50/50, sequential test, α = 0.05, guardrail on errors", elapsed());
    let api: Api<Experiment> = Api::namespaced(sandbox.client.clone(), "default");
    let deadline = started + Duration::from_secs(args.timeout);
    let mut last = String::new();
    let outcome = loop {
        if Instant::now() > deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let Ok(exp) = api.get("checkout").await else { continue };
        let status = exp.status.unwrap_or_default();
        let line = describe(&status);
        if line != last {
            println!("{} {line}", elapsed());
            last = line;
        }
        if matches!(status.phase, Some(Phase::Succeeded | Phase::RolledBack | Phase::Failed)) {
            break Some(status);
        }
    };
    let recorded = sandbox.net().dataplane.metrics.recorded();
    for (version, counts) in &recorded.versions {
        println!("        {version}: {} requests, {} visits, {} orders", counts.requests, counts.visits, counts.orders);
    }
    let promoted = match &outcome {
        Some(status) if status.winner.as_deref() == Some("v2") && status.phase == Some(Phase::Succeeded) => {
            println!("{} v2 promoted: all traffic on v2", elapsed());
            true
        }
        Some(status) => {
            println!("{} ended {:?}: {}", elapsed(), status.phase, status.message.clone().unwrap_or_default());
            false
        }
        None => {
            sandbox.shutdown().await;
            return Err(format!("no decision within {} s", args.timeout));
        }
    };
    let shown = show(&sandbox, &args.report).await;
    if let (Ok(()), Some(kubeconfig)) = (&shown, &args.serve) {
        serve(&sandbox, kubeconfig).await?;
    }
    sandbox.shutdown().await;
    shown.map(|()| promoted)
}

/// Prints the experiment as `forklane get` shows it and writes its report to `path`.
async fn show(sandbox: &Sandbox, path: &Path) -> Result<(), String> {
    let observed = observe(&sandbox.client, "default", "checkout").await.map_err(|e| e.to_string())?;
    // The experiment's times are the sandbox's sped-up clock: ages are counted on it.
    let now = sandbox.clock.now();
    println!("\nkubectl forklane get checkout:\n{}", render(&summary(&observed, now), Style::for_stdout()));
    std::fs::write(path, report::html(&observed, now)).map_err(|e| format!("{}: {e}", path.display()))?;
    let shown = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    println!("report of the experiment written to {}", shown.display());
    Ok(())
}

/// Serves the embedded cluster until Ctrl-C, with its kubeconfig at `path`.
async fn serve(sandbox: &Sandbox, path: &Path) -> Result<(), String> {
    super::cluster::write_private(&path.to_path_buf(), sandbox.cluster.kubeconfig_yaml())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    println!("the cluster serves at {} until Ctrl-C; try:", sandbox.cluster.url());
    println!("  kubectl forklane get checkout --kubeconfig {}", path.display());
    println!("  kubectl forklane dashboard --kubeconfig {}", path.display());
    tokio::signal::ctrl_c().await.map_err(|e| e.to_string())
}

/// One line per state: phase, weights, samples and the latest statistics.
fn describe(status: &forklane_core::api::ExperimentStatus) -> String {
    let phase = status.phase.map(|p| format!("{p:?}")).unwrap_or_else(|| "Pending".into());
    let weights = status.weight_summary.clone().unwrap_or_default();
    let samples: Vec<String> = status.samples.iter().map(|s| format!("{}={}", s.arm, s.samples)).collect();
    let stats = status
        .statistics
        .as_ref()
        .and_then(|s| s["comparisons"].as_array().and_then(|c| c.first().cloned()))
        .map(|c| {
            format!(
                " | v2−v1 {:+.4} [{:+.4}, {:+.4}], always-valid p {:.3}",
                c["difference"].as_f64().unwrap_or(f64::NAN),
                c["interval"][0].as_f64().unwrap_or(f64::NAN),
                c["interval"][1].as_f64().unwrap_or(f64::NAN),
                c["adjustedPValue"].as_f64().unwrap_or(f64::NAN)
            )
        })
        .unwrap_or_default();
    format!(
        "{phase:<11} {weights:<12} samples [{}]{stats} — {}",
        samples.join(" "),
        status.message.clone().unwrap_or_default()
    )
}
