//! The seeded study (`forklane stats study`): thousands of simulated experiments per named
//! scenario, each decided by the production code path — the example Experiment's queries rendered
//! and read through the metric source trait (`EmbeddedSource` over counters labelled as the mesh
//! and the apps label them), `analysis::evaluate`, `stats::decision::decide` and the controller's
//! state machine (`controller::replay`). Only the clock and the network are simulated. Flagger's
//! threshold rule runs on the same traffic model for comparison.

mod counters;
pub mod report;
pub mod runner;
pub mod scenarios;
mod world;

pub use report::Report;
pub use runner::StudyError;
pub use scenarios::Scenario;

/// The SRM α the examples use (the engine's default `srmAlpha`).
const SRM_ALPHA: f64 = 0.001;

#[derive(Debug, Clone)]
pub struct Options {
    pub experiments: usize,
    /// Only the scenarios whose name contains this.
    pub scenario: Option<String>,
    pub threads: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            experiments: 1000,
            scenario: None,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// Runs every selected scenario.
pub fn run(options: &Options) -> Result<Report, StudyError> {
    let selected: Vec<Scenario> = scenarios::all()
        .into_iter()
        .filter(|s| options.scenario.as_deref().is_none_or(|name| s.name.contains(name)))
        .collect();
    if selected.is_empty() {
        return Err(StudyError {
            scenario: options.scenario.clone().unwrap_or_default(),
            message: "no scenario has this name".into(),
        });
    }
    let mut reports = Vec::with_capacity(selected.len());
    for s in &selected {
        let (ours, flagger) = runner::run_scenario(s, options.experiments, options.threads)?;
        reports.push(report::scenario(s, &ours, &flagger));
    }
    let goals = report::goals(&reports, SRM_ALPHA);
    Ok(Report { experiments: options.experiments, scenarios: reports, goals })
}
