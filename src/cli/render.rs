//! `forklane render -f FILE [--step N | --final ARM] [--provider istio|gateway-api|native]`

use std::path::PathBuf;
use std::process::ExitCode;

use forklane_core::api::load::Document;
use forklane_core::api::{Experiment, Routing, defaults};
use forklane_core::plan::{Action, Observed, Plan, Target, plan};

use super::{display_name, read_documents};

#[derive(Debug, clap::Args)]
pub struct RenderArgs {
    /// File of Experiments; multi-document YAML.
    #[arg(short = 'f', long = "filename")]
    pub file: PathBuf,
    /// The state after step N of the strategy (0: the start).
    #[arg(long, conflicts_with = "final_arm")]
    pub step: Option<usize>,
    /// The final state with all traffic on ARM (promotion or rollback).
    #[arg(long = "final", value_name = "ARM")]
    pub final_arm: Option<String>,
    /// Routing mode; default spec.routing.provider, else spec.mesh (`auto` renders the Istio
    /// objects offline). The older spelling of `--provider`.
    #[arg(long, value_name = "istio|none", conflicts_with = "provider")]
    pub mesh: Option<Routing>,
    /// Which API routes the traffic: Istio's VirtualService, the Gateway API's HTTPRoute, or
    /// native Kubernetes objects; default spec.routing.provider, else spec.mesh.
    #[arg(long, value_name = "istio|gateway-api|native")]
    pub provider: Option<Routing>,
}

/// The rendered YAML of every Experiment in the file, or the errors.
pub fn render(args: &RenderArgs) -> Result<String, Vec<String>> {
    let documents = read_documents(&args.file)?;
    let target = match (&args.final_arm, args.step) {
        (Some(arm), _) => Target::Final(arm.clone()),
        (None, step) => Target::Step(step.unwrap_or(0)),
    };
    let mut out = String::new();
    let mut errors = Vec::new();
    for exp in documents.iter().filter_map(|d| if let Document::Experiment(e) = d { Some(e) } else { None }) {
        let requested = args.provider.or(args.mesh);
        let mode = requested.or(exp.spec.requested_routing().resolve(None)).unwrap_or(defaults::OFFLINE_ROUTING);
        match plan(exp, &target, mode, &Observed::default()) {
            Ok(p) => out.push_str(&to_yaml(exp, &target, &p)),
            Err(e) => errors.extend(e.to_string().lines().map(|l| format!("{}: {l}", display_name(&exp.metadata)))),
        }
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

fn to_yaml(exp: &Experiment, target: &Target, plan: &Plan) -> String {
    let state = match target {
        Target::Step(n) => format!("step {n} of 0..{}", plan.states - 1),
        Target::Final(arm) => format!("final, all traffic to {arm}"),
    };
    let weights: Vec<String> = plan
        .weights
        .iter()
        .map(|w| {
            if (w.achieved - f64::from(w.desired)).abs() < 1e-9 {
                format!("{}={}", w.arm, w.desired)
            } else {
                format!("{}={} (achieved {:.1})", w.arm, w.desired, w.achieved)
            }
        })
        .collect();
    let mut out = format!(
        "# Experiment {}: {}, {state}, mesh {}\n# weights: {}\n",
        display_name(&exp.metadata),
        plan.strategy.as_str(),
        plan.mode.as_str(),
        weights.join(", ")
    );
    for action in &plan.actions {
        out.push_str("---\n");
        if let Some(cmd) = action.kubectl() {
            out.push_str(&format!("# {cmd}\n"));
        }
        if let Action::ServiceSelector(s) = action {
            out.push_str(&format!("# as JSON patch: {}\n", s.json_patch()));
        }
        out.push_str(&super::yaml::to_yaml(&action.object()));
    }
    out
}

pub(crate) fn run(args: RenderArgs) -> ExitCode {
    match render(&args) {
        Ok(yaml) => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in errors {
                eprintln!("{e}");
            }
            ExitCode::FAILURE
        }
    }
}
