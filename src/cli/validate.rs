//! `forklane validate -f FILE [--policy FILE]...`

use std::path::PathBuf;
use std::process::ExitCode;

use forklane_core::api::load::Document;
use forklane_core::api::validate::{validate, warnings};
use forklane_core::api::{Experiment, RolloutPolicy, Routing, defaults};
use forklane_core::policy;

use super::{display_name, read_documents, stats_plan};

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// File of Experiments (and RolloutPolicies); multi-document YAML.
    #[arg(short = 'f', long = "filename")]
    pub file: PathBuf,
    /// RolloutPolicy files whose constraints the experiments must meet.
    #[arg(long = "policy")]
    pub policies: Vec<PathBuf>,
    /// Check for this routing provider instead of spec.routing.provider / spec.mesh (`auto`
    /// checks for Istio offline).
    #[arg(long, value_name = "istio|gateway-api|native")]
    pub provider: Option<Routing>,
}

/// `forklane validate`: the checks, and with `--traffic` the likely time to decision.
#[derive(Debug, clap::Args)]
pub(crate) struct ValidateCommand {
    #[command(flatten)]
    pub args: ValidateArgs,
    /// Requests per second the service gets: adds, per metric, the power and the likely time to
    /// decision, and a warning when maxDuration is too short for 80% power.
    #[arg(long, value_name = "RPS", value_parser = stats_plan::positive)]
    pub traffic: Option<f64>,
    /// The effects to plan for (with --traffic).
    #[command(flatten)]
    pub effect: stats_plan::EffectArgs,
}

/// Simulated experiments per planned metric.
const PLAN_RUNS: usize = 2000;

/// Every problem of every document, as printed lines (empty: valid).
pub fn problems(args: &ValidateArgs, now: Option<i64>) -> Vec<String> {
    report(args, now).0
}

/// Problems, then warnings (allowed but probably wrong), as printed lines.
fn report(args: &ValidateArgs, now: Option<i64>) -> (Vec<String>, Vec<String>) {
    let mut lines = Vec::new();
    let mut warned = Vec::new();
    let documents = match read_documents(&args.file) {
        Ok(d) => d,
        Err(errors) => return (errors, Vec::new()),
    };
    let mut policies: Vec<RolloutPolicy> = Vec::new();
    for path in &args.policies {
        match read_documents(path) {
            Ok(docs) => {
                for doc in docs {
                    match doc {
                        Document::RolloutPolicy(p) => policies.push(*p),
                        Document::Experiment(e) => lines.push(format!(
                            "{}: {} is an Experiment, not a RolloutPolicy",
                            path.display(),
                            display_name(&e.metadata)
                        )),
                    }
                }
            }
            Err(errors) => lines.extend(errors),
        }
    }
    let experiments: Vec<&Experiment> = documents
        .iter()
        .filter_map(|d| if let Document::Experiment(e) = d { Some(e.as_ref()) } else { None })
        .collect();
    let prefix_needed = documents.len() > 1;
    let named = |kind: &str, meta: &kube::api::ObjectMeta, line: String| {
        if prefix_needed { format!("{kind} {}: {line}", display_name(meta)) } else { line }
    };
    let mut report = |kind: &str, meta: &kube::api::ObjectMeta, line: String| lines.push(named(kind, meta, line));
    for doc in &documents {
        match doc {
            Document::Experiment(exp) => {
                let requested = args.provider.or(exp.spec.requested_routing().resolve(None));
                let routing = requested.unwrap_or(defaults::OFFLINE_ROUTING);
                for p in validate(&exp.spec, routing) {
                    report("Experiment", &exp.metadata, p.to_string());
                }
                for w in warnings(&exp.spec, routing) {
                    warned.push(format!("warning: {}", named("Experiment", &exp.metadata, w.to_string())));
                }
            }
            Document::RolloutPolicy(p) => {
                for problem in policy::check_policy(p) {
                    report("RolloutPolicy", &p.metadata, problem.to_string());
                }
            }
        }
    }
    for exp in experiments {
        let labels = policy::default_namespace_labels(exp.metadata.namespace.as_deref().unwrap_or("default"));
        for p in &policies {
            for v in policy::evaluate(p, exp, &labels, now) {
                report("Experiment", &exp.metadata, v.to_string());
            }
        }
    }
    (lines, warned)
}

pub(crate) fn run(cmd: ValidateCommand) -> ExitCode {
    let args = &cmd.args;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).ok();
    let (lines, warned) = report(args, now);
    for warning in warned {
        eprintln!("{warning}");
    }
    if lines.is_empty() {
        println!("valid");
        if let Some(traffic) = cmd.traffic {
            plan(args, traffic, &cmd.effect);
        }
        ExitCode::SUCCESS
    } else {
        for line in lines {
            eprintln!("{line}");
        }
        ExitCode::FAILURE
    }
}

/// Per metric of each (valid) experiment: power and time to decision at `traffic`; warnings on
/// stderr when maxDuration is too short for 80% power or the experiment cannot be planned.
fn plan(args: &ValidateArgs, traffic: f64, effect: &stats_plan::EffectArgs) {
    let Ok(documents) = read_documents(&args.file) else { return };
    for doc in documents {
        let Document::Experiment(exp) = doc else { continue };
        let name = display_name(&exp.metadata);
        match stats_plan::plan_experiment(&exp, traffic, effect, PLAN_RUNS, 1) {
            Ok(rows) => {
                for r in &rows {
                    println!("{name}: {}", stats_plan::summary(r));
                    if let Some(warning) = stats_plan::shortfall(r) {
                        eprintln!("{name}: {warning}");
                    }
                }
            }
            Err(e) => eprintln!("{name}: warning: cannot plan the time to decision: {e}"),
        }
    }
}
