//! Time of one full decision over 10 arms × 5 metrics (1 goal, 4 guardrails, SRM check).
//! `cargo bench --bench stats_decision`

use forklane_core::stats::decision::{DecisionConfig, Method, decide};
use forklane_core::stats::simulation::synthetic_input;
use std::hint::black_box;
use std::time::Instant;

fn main() {
    let input = synthetic_input(10, 5, 42);
    for method in [Method::Sequential, Method::FixedHorizon, Method::Bayesian] {
        let config = DecisionConfig { method, ..Default::default() };
        let first = match decide(&input, &config) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("decision failed: {e}");
                std::process::exit(1);
            }
        };
        let iterations = 2_000u32;
        let start = Instant::now();
        for _ in 0..iterations {
            black_box(decide(black_box(&input), &config).ok());
        }
        let per = start.elapsed() / iterations;
        println!(
            "decision 10 arms x 5 metrics, {method:?}: {per:?} per decision ({} comparisons, outcome {:?})",
            first.comparisons.len(),
            first.outcome
        );
    }
}
