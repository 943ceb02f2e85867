//! `forklane stats`: the statistics engine from the command line.

use forklane_core::stats::decision::{
    ArmObservation, Comparison, Decision, DecisionConfig, DecisionInput, Direction, Method, Metric, Observation,
    Outcome, decide,
};
use forklane_core::stats::vectors;
use std::io::Read;
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum StatsCommand {
    /// Read a JSON array of {"test", "inputs"} from stdin and print a JSON array of
    /// {"test", "outputs"} (or {"test", "error"}) in the same order; exit 1 if any failed.
    Eval,
    /// Compare arms and print estimate, interval, p-value, P(better) and the decision.
    Compare(CompareArgs),
    /// Power and time to decision for the expected traffic (from flags or an Experiment).
    Plan(super::stats_plan::PlanArgs),
    /// Run the seeded study of the decisions on simulated real traffic (the README's figures).
    Study(super::study::StudyArgs),
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum MetricKind {
    /// Arms given as name=successes/trials.
    Proportion,
    /// Arms given as name=mean/variance/n (sample variance).
    Mean,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum MethodArg {
    Sequential,
    #[value(alias = "fixedHorizon")]
    FixedHorizon,
    Bayesian,
}

#[derive(Debug, clap::Args)]
pub(crate) struct CompareArgs {
    #[arg(long, value_enum, default_value = "proportion")]
    pub metric: MetricKind,
    /// One arm, e.g. `control=120/1000`; repeat for each arm. The first is the control
    /// unless --control names another.
    #[arg(long = "arm", required = true)]
    pub arms: Vec<String>,
    #[arg(long)]
    pub control: Option<String>,
    #[arg(long, value_enum, default_value = "sequential")]
    pub method: MethodArg,
    #[arg(long, default_value_t = 0.05)]
    pub alpha: f64,
    #[arg(long, default_value_t = 100)]
    pub min_samples: u64,
    /// Tunes the sequential test; the decision point of the fixed-horizon test.
    #[arg(long)]
    pub planned_samples: Option<u64>,
    /// Lower values are better (error rates, latency).
    #[arg(long)]
    pub lower_is_better: bool,
}

pub(crate) fn run(cmd: StatsCommand) -> ExitCode {
    match cmd {
        StatsCommand::Eval => eval(),
        StatsCommand::Compare(args) => compare(&args),
        StatsCommand::Plan(args) => super::stats_plan::run(&args),
        StatsCommand::Study(args) => super::study::run(&args),
    }
}

fn eval() -> ExitCode {
    let mut text = String::new();
    let parsed = std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())
        .and_then(|_| serde_json::from_str::<serde_json::Value>(&text).map_err(|e| format!("stdin is not JSON: {e}")));
    let (out, ok) = match parsed {
        Ok(entries) => vectors::eval(&entries),
        Err(e) => (serde_json::json!({ "error": e }), false),
    };
    match serde_json::to_string_pretty(&out) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("cannot print the result: {e}"),
    }
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

fn parse_arm(spec: &str, kind: MetricKind) -> Result<ArmObservation, String> {
    let (name, data) = spec.split_once('=').ok_or_else(|| format!("arm `{spec}` is not name=data"))?;
    let parts: Vec<&str> = data.split('/').collect();
    let bad = || {
        format!(
            "arm `{spec}`: expected {}",
            match kind {
                MetricKind::Proportion => "successes/trials",
                MetricKind::Mean => "mean/variance/n",
            }
        )
    };
    let value = match (kind, parts.as_slice()) {
        (MetricKind::Proportion, [x, n]) => Observation::Proportion {
            successes: x.trim().parse().map_err(|_| bad())?,
            trials: n.trim().parse().map_err(|_| bad())?,
        },
        (MetricKind::Mean, [m, v, n]) => Observation::Mean {
            mean: m.trim().parse().map_err(|_| bad())?,
            variance: v.trim().parse().map_err(|_| bad())?,
            n: n.trim().parse().map_err(|_| bad())?,
        },
        _ => return Err(bad()),
    };
    Ok(ArmObservation { arm: name.trim().to_string(), value, batches: vec![] })
}

fn compare(args: &CompareArgs) -> ExitCode {
    let arms: Result<Vec<_>, _> = args.arms.iter().map(|s| parse_arm(s, args.metric)).collect();
    let arms = match arms {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let control = args.control.clone().unwrap_or_else(|| arms[0].arm.clone());
    let direction = if args.lower_is_better { Direction::LowerIsBetter } else { Direction::HigherIsBetter };
    let input = DecisionInput {
        control,
        goal: Some(Metric { name: "goal".into(), direction, arms }),
        guardrails: vec![],
        assignment: vec![],
    };
    let method = match args.method {
        MethodArg::Sequential => Method::Sequential,
        MethodArg::FixedHorizon => Method::FixedHorizon,
        MethodArg::Bayesian => Method::Bayesian,
    };
    let config = DecisionConfig {
        method,
        alpha: args.alpha,
        min_samples_per_arm: args.min_samples,
        planned_samples_per_arm: args.planned_samples,
        ..Default::default()
    };
    // P(better) is shown whatever the method: it comes from the Bayesian evaluation.
    let bayes_config = DecisionConfig { method: Method::Bayesian, ..config.clone() };
    match (decide(&input, &config), decide(&input, &bayes_config)) {
        (Ok(d), Ok(b)) => {
            print!("{}", table(&input, &d, &b));
            ExitCode::SUCCESS
        }
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or("-".into(), |p| if p < 1e-4 { format!("{p:.2e}") } else { format!("{p:.4}") })
}

fn table(input: &DecisionInput, d: &Decision, bayes: &Decision) -> String {
    let mut out = format!(
        "{:<12} {:>10} {:>10} {:>11} {:>25} {:>9} {:>9} {:>9}  {}\n",
        "arm", "n", "value", "difference", "interval", "p", "adj. p", "P(better)", "verdict"
    );
    let find = |cs: &[Comparison], arm: &str| cs.iter().find(|c| c.arm == arm).cloned();
    for a in input.goal.iter().flat_map(|g| &g.arms) {
        let line = match (find(&d.comparisons, &a.arm), find(&bayes.comparisons, &a.arm)) {
            (Some(c), b) => format!(
                "{:>10.5} {:>+11.5} {:>25} {:>9} {:>9} {:>9}  {:?}",
                c.arm_value,
                c.difference,
                format!("[{:+.5}, {:+.5}]", c.interval[0], c.interval[1]),
                fmt_opt(c.p_value),
                fmt_opt(c.adjusted_p_value),
                fmt_opt(b.and_then(|b| b.prob_better)),
                c.verdict
            ),
            (None, _) => {
                let value = match a.value {
                    Observation::Proportion { successes, trials } if trials > 0 => {
                        format!("{:>10.5}", successes as f64 / trials as f64)
                    }
                    Observation::Mean { mean, .. } => format!("{mean:>10.5}"),
                    Observation::Proportion { .. } => format!("{:>10}", "-"),
                };
                if a.arm == input.control { format!("{value}  (control)") } else { value }
            }
        };
        out += &format!("{:<12} {:>10} {line}\n", a.arm, a.value.samples());
    }
    out += &match &d.outcome {
        Outcome::Promote { arm } => format!("decision: promote `{arm}`\n"),
        Outcome::Rollback { reason } => format!("decision: roll back ({reason})\n"),
        Outcome::Continue { reason } => format!("decision: continue ({reason})\n"),
    };
    out
}
