//! `forklane stats plan`: power and time to decision for the traffic an experiment will get;
//! also behind `forklane validate --traffic`.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use forklane_core::analysis::planning::planned_analyses;
use forklane_core::api::load::Document;
use forklane_core::api::{Experiment, HumanDuration, Role};
use forklane_core::stats::decision::DecisionConfig;
use forklane_core::stats::plan::{self, Effect, Phase, Plan, PlanInput, Test, Unit};

use super::read_documents;

#[derive(Debug, clap::Args)]
pub(crate) struct PlanArgs {
    /// Requests per second reaching the service.
    #[arg(long, value_name = "RPS", value_parser = positive)]
    pub traffic: f64,
    /// Take the split, interval, maxDuration, α, method and metrics from this Experiment.
    #[arg(short = 'f', long = "filename", conflicts_with_all = ["split", "weights", "interval", "max_duration", "alpha", "planned_samples"])]
    pub file: Option<PathBuf>,
    /// The arms' weights, control first: `50/50`, `90/10`, `34/33/33`.
    #[arg(long, value_parser = parse_split, conflicts_with = "weights")]
    pub split: Option<Split>,
    /// Weights that change over time, e.g. a canary ramp: `95/5:30m,80/20:1h,50/50` (each
    /// phase `weights:duration`; the last one lasts to the end).
    #[arg(long, value_parser = parse_schedule)]
    pub weights: Option<Schedule>,
    /// A guardrail's tolerated harm (absolute, e.g. 0.002): plans a guardrail too. With -f the
    /// guardrails' own margins are used.
    #[arg(long, value_parser = parse_margin, conflicts_with = "file")]
    pub margin: Option<f64>,
    #[command(flatten)]
    pub effect: EffectArgs,
    /// How often the analysis looks.
    #[arg(long, value_parser = parse_duration, default_value = "1m")]
    pub interval: Duration,
    #[arg(long, value_parser = parse_duration, default_value = "24h")]
    pub max_duration: Duration,
    #[arg(long, value_parser = parse_alpha, default_value_t = 0.05)]
    pub alpha: f64,
    /// Planned samples per arm the sequential test is tuned to (default: the engine's 10000).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub planned_samples: Option<u64>,
    /// Simulated experiments.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(100..=100_000))]
    pub runs: u64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// The arms' weights, control first (a newtype: clap reads `Vec` as repeated values).
#[derive(Debug, Clone)]
pub(crate) struct Split(Vec<f64>);

/// Phases of weights.
#[derive(Debug, Clone)]
pub(crate) struct Schedule(Vec<Phase>);

/// The effects to plan for: what the metrics' numbers are expected to be.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct EffectArgs {
    /// The goal's conversion rate in the control, e.g. 0.05.
    #[arg(long, value_parser = parse_rate, default_value_t = 0.05)]
    pub baseline: f64,
    /// The relative change of the goal to detect, e.g. 0.1 for +10%.
    #[arg(long, value_parser = parse_uplift, default_value_t = 0.1)]
    pub uplift: f64,
    /// The guardrails' rate in the control (an error rate), e.g. 0.01.
    #[arg(long, value_parser = parse_rate, default_value_t = 0.01)]
    pub guardrail_baseline: f64,
    /// The guardrails' true difference treatment − control (0: the new version is as good).
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    pub difference: f64,
    /// Visits per user: the unit is then the user (first exposures). With -f the unit is the user
    /// for a sticky A/B test (1 visit per user unless given).
    #[arg(long, value_parser = parse_visits)]
    pub visits_per_user: Option<f64>,
}

/// One planned metric of one analysis.
pub(crate) struct Row {
    /// Which analysis: empty, or a canary's step.
    pub analysis: String,
    pub metric: String,
    pub role: Role,
    pub effect: String,
    pub plan: Plan,
    /// When power is below 80% by maxDuration: the maxDuration that would reach it, searched
    /// up to [`SEARCH_FACTOR`] × maxDuration (`Some(None)`: not within that).
    pub needed: Option<Option<Duration>>,
    pub max_duration: Duration,
}

/// How far beyond maxDuration the duration for 80% power is searched.
const SEARCH_FACTOR: u32 = 8;

pub(crate) fn run(args: &PlanArgs) -> ExitCode {
    let rows = match &args.file {
        Some(path) => experiments(path).and_then(|exps| {
            let mut rows = Vec::new();
            for exp in exps {
                rows.extend(plan_experiment(&exp, args.traffic, &args.effect, args.runs as usize, args.seed)?);
            }
            Ok(rows)
        }),
        None => plan_flags(args),
    };
    match rows {
        Ok(rows) => {
            print!("{}", table(&rows));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn experiments(path: &std::path::Path) -> Result<Vec<Experiment>, String> {
    let docs = read_documents(path).map_err(|e| e.join("\n"))?;
    let exps: Vec<Experiment> =
        docs.into_iter().filter_map(|d| if let Document::Experiment(e) = d { Some(*e) } else { None }).collect();
    if exps.is_empty() {
        return Err(format!("{}: no Experiment to plan", path.display()));
    }
    Ok(exps)
}

fn plan_flags(args: &PlanArgs) -> Result<Vec<Row>, String> {
    let schedule = match (&args.weights, &args.split) {
        (Some(Schedule(phases)), _) => phases.clone(),
        (None, Some(Split(split))) => vec![Phase { weights: split.clone(), duration: None }],
        (None, None) => vec![Phase { weights: vec![50.0, 50.0], duration: None }],
    };
    let e = &args.effect;
    let input = PlanInput {
        traffic: args.traffic,
        unit: e.visits_per_user.map_or(Unit::Request, |visits_per_user| Unit::User { visits_per_user }),
        schedule,
        interval: args.interval,
        max_duration: args.max_duration,
        min_duration: Duration::ZERO,
        min_samples_per_arm: DecisionConfig::default().min_samples_per_arm,
        alpha: args.alpha,
        test: Test::sequential(args.planned_samples),
        runs: args.runs as usize,
        seed: args.seed,
    };
    let mut metrics = vec![("goal".to_string(), Role::Goal, None)];
    if let Some(m) = args.margin {
        metrics.push(("guardrail".into(), Role::Guardrail, Some(m)));
    }
    metrics.into_iter().map(|(name, role, margin)| row(String::new(), name, role, margin, &input, e)).collect()
}

/// One row per metric of every analysis of `exp` (an A/B test's, or each canary analysis step's).
pub(crate) fn plan_experiment(
    exp: &Experiment,
    traffic: f64,
    effect: &EffectArgs,
    runs: usize,
    seed: u64,
) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    for a in planned_analyses(exp, traffic, effect.visits_per_user, runs, seed)? {
        for m in &a.metrics {
            rows.push(row(a.label.clone(), m.name.clone(), m.role, Some(m.margin), &a.input, effect)?);
        }
    }
    Ok(rows)
}

fn row(
    analysis: String,
    metric: String,
    role: Role,
    margin: Option<f64>,
    input: &PlanInput,
    e: &EffectArgs,
) -> Result<Row, String> {
    let (effect, text) = match role {
        Role::Goal => (
            Effect::Goal { baseline: e.baseline, uplift: e.uplift },
            format!(
                "{:.2}% → {:.2}% ({:+.1}%)",
                100.0 * e.baseline,
                100.0 * e.baseline * (1.0 + e.uplift),
                100.0 * e.uplift
            ),
        ),
        Role::Guardrail => {
            let margin = margin.unwrap_or(0.0);
            (
                Effect::Guardrail { baseline: e.guardrail_baseline, difference: e.difference, margin },
                format!(
                    "{:.2}% {:+.2}pp, margin {:.2}pp",
                    100.0 * e.guardrail_baseline,
                    100.0 * e.difference,
                    100.0 * margin
                ),
            )
        }
    };
    let why = |err: forklane_core::stats::StatsError| format!("{metric}: {err}");
    let plan = plan::plan(input, &effect).map_err(why)?;
    let needed = match plan.p80 {
        Some(_) => None,
        None => Some(plan::duration_for_power(input, &effect, input.max_duration * SEARCH_FACTOR).map_err(why)?),
    };
    Ok(Row { analysis, metric, role, effect: text, plan, needed, max_duration: input.max_duration })
}

pub(crate) fn human(d: Duration) -> String {
    HumanDuration::from(d).to_string()
}

fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<16} {:<10} {:<30} {:>6} {:>6} {:>9} {:>9} {:>13} {:>13}\n",
        "metric", "role", "effect", "power", "wrong", "median", "80%", "n/arm median", "n/arm 80%"
    );
    let opt = |d: Option<Duration>| d.map_or("-".to_string(), human);
    let num = |n: Option<u64>| n.map_or("-".to_string(), |n| n.to_string());
    let mut analysis = "";
    for r in rows {
        if r.analysis != analysis && !r.analysis.is_empty() {
            let _ = writeln!(out, "{}:", r.analysis);
        }
        analysis = &r.analysis;
        let role = if r.role == Role::Goal { "goal" } else { "guardrail" };
        let p = &r.plan;
        let _ = writeln!(
            out,
            "{:<16} {:<10} {:<30} {:>6.3} {:>6.3} {:>9} {:>9} {:>13} {:>13}",
            r.metric,
            role,
            r.effect,
            p.power,
            p.wrong,
            opt(p.median),
            opt(p.p80),
            num(p.samples_at_median),
            num(p.samples_at_p80)
        );
    }
    for r in rows {
        if let Some(line) = shortfall(r) {
            let _ = writeln!(out, "{line}");
        }
    }
    out
}

/// One line for `validate --traffic`.
pub(crate) fn summary(r: &Row) -> String {
    let at = if r.analysis.is_empty() { String::new() } else { format!(" at {}", r.analysis) };
    let p = &r.plan;
    let when = |label: &str, d: Option<Duration>, n: Option<u64>| match (d, n) {
        (Some(d), Some(n)) => format!("{label} {} ({n} per arm)", human(d)),
        _ => format!("{label} not by maxDuration"),
    };
    format!(
        "{} ({}{at}, {}): power {:.2} by maxDuration {}; time to decision {}, {}",
        r.metric,
        if r.role == Role::Goal { "goal" } else { "guardrail" },
        r.effect,
        p.power,
        human(r.max_duration),
        when("median", p.median, p.samples_at_median),
        when("80% by", p.p80, p.samples_at_p80)
    )
}

/// The warning for a metric that does not reach 80% power by maxDuration.
pub(crate) fn shortfall(r: &Row) -> Option<String> {
    let needed = r.needed?;
    let at = if r.analysis.is_empty() { String::new() } else { format!(" ({})", r.analysis) };
    let fix = match needed {
        Some(d) => format!("about {} would reach 80%", human(d)),
        None => format!(
            "even {} would not reach 80%: more traffic, a larger effect or a larger horizon is needed",
            human(r.max_duration * SEARCH_FACTOR)
        ),
    };
    Some(format!(
        "warning: spec.analysis.maxDuration: {} is too short for 80% power on `{}`{at} (power {:.2}); {fix}",
        human(r.max_duration),
        r.metric,
        r.plan.power
    ))
}

pub(crate) fn positive(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err("must be a positive number".into()),
    }
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v > 0.0 && v < 1.0 => Ok(v),
        _ => Err("must be a rate strictly between 0 and 1, e.g. 0.05".into()),
    }
}

fn parse_uplift(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v != 0.0 && v > -1.0 => Ok(v),
        _ => Err("must be a non-zero relative change above -1, e.g. 0.1 for +10%".into()),
    }
}

fn parse_margin(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err("must be an absolute difference ≥ 0, e.g. 0.002".into()),
    }
}

fn parse_alpha(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 0.5 => Ok(v),
        _ => Err("must be in (0, 0.5]".into()),
    }
}

fn parse_visits(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 1.0 => Ok(v),
        _ => Err("must be a number of visits per user, at least 1".into()),
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    match forklane_core::api::duration::parse(text) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("must be longer than zero".into()),
        Err(e) => Err(e),
    }
}

fn parse_split(text: &str) -> Result<Split, String> {
    let weights: Vec<f64> = text
        .split('/')
        .map(|w| w.trim().parse::<f64>().ok().filter(|w| w.is_finite() && *w >= 0.0))
        .collect::<Option<_>>()
        .ok_or("must be weights ≥ 0 separated by '/', control first, e.g. 50/50")?;
    if weights.len() < 2 || weights[0] <= 0.0 || weights[1..].iter().all(|w| *w == 0.0) {
        return Err("needs the control and at least one other arm with positive weights, e.g. 90/10".into());
    }
    Ok(Split(weights))
}

fn parse_schedule(text: &str) -> Result<Schedule, String> {
    let parts: Vec<&str> = text.split(',').collect();
    let mut phases = Vec::with_capacity(parts.len());
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let (split, duration) = match part.split_once(':') {
            Some((s, d)) => (s, Some(parse_duration(d.trim()).map_err(|e| format!("phase {:?}: {e}", part))?)),
            None if last => (*part, None),
            None => {
                return Err(format!("phase {part:?} needs a duration (weights:duration); only the last may omit it"));
            }
        };
        let Split(weights) = parse_split(split).map_err(|e| format!("phase {part:?}: {e}"))?;
        if phases.first().is_some_and(|p: &Phase| p.weights.len() != weights.len()) {
            return Err(format!(
                "phase {part:?} has {} weights, the first phase {}",
                weights.len(),
                phases[0].weights.len()
            ));
        }
        phases.push(Phase { weights, duration });
    }
    Ok(Schedule(phases))
}
