//! Runs the experiments of a scenario: each one a fresh world and the controller's own looks
//! (`Replay`) asking the controller's own analyst (`SourceAnalyst` → `measure` →
//! `decision_input` → `decide`) over the embedded metric source. Only the clock and the network
//! are simulated. Flagger's threshold rule runs on its own world drawn from the same model.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use forklane_core::analysis::MetricSource;
use forklane_core::api::load::{Document, load_documents};
use forklane_core::api::{Experiment, Routing, Strategy};
use forklane_core::controller::Analyst;
use forklane_core::controller::analyst::SourceAnalyst;
use forklane_core::controller::replay::Replay;
use forklane_core::stats::decision::Outcome;
use jiff::Timestamp;
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::metrics::EmbeddedSource;

use super::counters::{Counters, Shared};
use super::scenarios::{Example, Scenario, Unit};
use super::world::{ArmLabels, Setup, World};

/// How one experiment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Ending {
    /// The candidate was promoted (A/B) or passed the analysis step (canary).
    Promoted,
    /// Rolled back on evidence (harm or a worse goal).
    RolledBack,
    /// Rolled back for a sample ratio mismatch.
    Srm,
    /// No decision within maxDuration (onInconclusive applied).
    Inconclusive,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Run {
    pub ending: Ending,
    /// From the start of the analysis to the decision.
    pub minutes: f64,
    /// Requests the candidate answered with an error before the decision.
    pub bad_requests: u64,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("scenario {scenario}: {message}")]
pub struct StudyError {
    pub scenario: String,
    pub message: String,
}

fn fail(s: &Scenario, message: impl ToString) -> StudyError {
    StudyError { scenario: s.name.clone(), message: message.to_string() }
}

/// The scenario's Experiment: its example with the scenario's split and unit.
pub fn experiment(s: &Scenario) -> Result<Experiment, StudyError> {
    let docs =
        load_documents(s.example.text()).map_err(|e| fail(s, format!("{}: {}", s.example.file(), e[0].message)))?;
    let Some(Document::Experiment(exp)) = docs.into_iter().next() else {
        return Err(fail(s, format!("{} holds no Experiment", s.example.file())));
    };
    let mut exp = *exp;
    if let (Strategy::AbTest(ab), Some((control, candidate))) = (&mut exp.spec.strategy, s.split) {
        let names: Vec<String> = exp.spec.arms.iter().map(|a| a.name.clone()).collect();
        ab.split = [(names[0].clone(), control), (names[1].clone(), candidate)].into_iter().collect();
    }
    // The examples' queries select the analysed cohort with `{{ cohort }}`, which follows the unit.
    if let (Some(unit), Some(analysis)) = (s.unit, exp.spec.analysis.as_mut()) {
        analysis.unit = Some(match unit {
            Unit::User => forklane_core::api::Unit::User,
            Unit::Request => forklane_core::api::Unit::Request,
        });
    }
    Ok(exp)
}

/// A seed per experiment from the scenario's seed and the index (SplitMix64), so that a run of
/// fewer experiments is a prefix of a longer one.
pub(crate) fn seed(scenario: u64, index: u64) -> u64 {
    let mut z = scenario.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index.wrapping_add(0x632B_E59B_D9B4_E019);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const TICK: Duration = Duration::from_secs(60);

fn world(s: &Scenario, exp: &Experiment, rng: StdRng, horizon: Duration) -> World {
    let latency = exp.spec.analysis.iter().flat_map(|a| &a.metrics).any(|m| m.threshold_ms.is_some());
    let arms = exp
        .spec
        .arms
        .iter()
        .zip([s.control, s.candidate])
        .map(|(arm, truth)| {
            let label = |k: &str| arm.selector.get(k).cloned().unwrap_or_default();
            let labels = ArmLabels {
                version: label("version"),
                app: label("app"),
                workload: arm.deployment.clone().unwrap_or_default(),
            };
            (labels, truth)
        })
        .collect();
    let sticky = matches!(&exp.spec.strategy, Strategy::AbTest(ab) if ab.sticky.is_some());
    let setup = Setup {
        service: &exp.spec.service.name,
        namespace: exp.metadata.namespace.as_deref().unwrap_or("default"),
        arms,
        sticky,
        latency,
        tick: TICK,
        horizon,
    };
    World::new(s.traffic, setup, rng)
}

/// Longer than any example's steps and maxDuration: the state machine ends every experiment first.
const LIMIT: Duration = Duration::from_secs(30 * 3600);

/// The canary step that analyses, if any.
fn analysis_step(exp: &Experiment) -> Option<i32> {
    match &exp.spec.strategy {
        Strategy::Canary(c) => c.steps.iter().position(|s| s.analysis.is_some()).map(|i| i as i32),
        _ => None,
    }
}

/// One experiment of `s`, number `index`.
pub fn run_one(s: &Scenario, exp: &Experiment, index: u64, rt: &tokio::runtime::Runtime) -> Result<Run, StudyError> {
    let start = Timestamp::from_second(1_800_000_000).expect("a valid time");
    let limit = LIMIT;
    let counters = Arc::new(RwLock::new(Counters::new(TICK)));
    let source: Arc<dyn MetricSource> = Arc::new(EmbeddedSource::new(Shared(counters.clone())));
    let analyst = SourceAnalyst::fixed(source);
    let mut replay = Replay::new(exp.clone(), Routing::Istio).map_err(|e| fail(s, e))?;
    let mut world = world(s, exp, StdRng::seed_from_u64(seed(s.seed, index)), limit);
    let gate = analysis_step(exp);
    let (mut analysing_since, mut bad) = (None::<usize>, 0u64);
    let ticks = (limit.as_secs() / TICK.as_secs()) as usize;
    for tick in 0..=ticks {
        let now = start + TICK * tick as u32;
        let mut last = None;
        for _ in 0..8 {
            let answer = match replay.due(now) {
                Some(due) => {
                    let answer = rt.block_on(analyst.decide(exp, Routing::Istio, due.window, &due.weights));
                    last = answer.as_ref().ok().map(|(d, _)| d.clone());
                    Some(answer)
                }
                None => None,
            };
            let requeue = replay.advance(now, answer).map_err(|e| fail(s, e))?;
            let status = replay.status();
            if analysing_since.is_none() && status.analysis_started_at.is_some() {
                analysing_since = Some(tick);
            }
            let passed = gate.is_some_and(|g| status.current_step.unwrap_or(0) > g);
            if passed || status.final_arm.is_some() {
                let ending = match (&last, passed || status.winner.is_some()) {
                    (Some(d), _) if d.srm.is_some_and(|c| c.mismatch) => Ending::Srm,
                    (Some(d), true) if matches!(d.outcome, Outcome::Promote { .. }) => Ending::Promoted,
                    (Some(d), false) if matches!(d.outcome, Outcome::Rollback { .. }) => Ending::RolledBack,
                    _ => Ending::Inconclusive,
                };
                let minutes = (tick - analysing_since.unwrap_or(tick)) as f64 * TICK.as_secs_f64() / 60.0;
                return Ok(Run { ending, minutes, bad_requests: bad });
            }
            if requeue != Some(Duration::ZERO) {
                break;
            }
        }
        let weights: Vec<f64> = {
            let w = replay.weights();
            exp.spec
                .arms
                .iter()
                .map(|a| w.iter().find(|(n, _)| *n == a.name).map_or(0.0, |(_, x)| f64::from(*x)))
                .collect()
        };
        let served = world.step(&weights, &mut counters.write().expect("counters lock"));
        bad += served[1].errors;
    }
    Err(fail(s, format!("experiment {index} did not end within {} minutes", ticks)))
}

/// Flagger's canary analysis with its documented defaults on the same traffic model: every
/// interval (1m) one check of the canary's request success rate over that interval against
/// 99% (no requests counts as a failed check, as Flagger's "no values found" does); a passed
/// check raises the weight by stepWeight 10 up to maxWeight 50, a passed check at 50 promotes;
/// the 5th failed check (threshold 5) rolls back.
pub fn run_flagger(s: &Scenario, exp: &Experiment, index: u64) -> Run {
    let (step, max_weight, threshold, min_success) = (10.0, 50.0, 5, 0.99);
    let horizon = Duration::from_secs(6 * 3600);
    let mut world = world(s, exp, StdRng::seed_from_u64(seed(s.seed ^ 0xF1A6, index)), horizon);
    let mut counters = Counters::new(TICK);
    let (mut weight, mut failed, mut bad) = (step, 0, 0u64);
    let ticks = (horizon.as_secs() / TICK.as_secs()) as usize;
    for tick in 1..=ticks {
        let served = world.step(&[100.0 - weight, weight], &mut counters);
        let canary = served[1];
        bad += canary.errors;
        let minutes = tick as f64;
        let ok =
            canary.requests > 0 && (canary.requests - canary.errors) as f64 / canary.requests as f64 >= min_success;
        if ok && weight >= max_weight {
            return Run { ending: Ending::Promoted, minutes, bad_requests: bad };
        }
        if ok {
            weight += step;
        } else {
            failed += 1;
            if failed >= threshold {
                return Run { ending: Ending::RolledBack, minutes, bad_requests: bad };
            }
        }
    }
    Run { ending: Ending::Inconclusive, minutes: ticks as f64, bad_requests: bad }
}

/// One experiment by our rule and, when the scenario asks, by Flagger's.
type Paired = (Run, Option<Run>);

/// `experiments` runs of `s` (and of Flagger's rule when the scenario asks), on `threads` threads.
pub fn run_scenario(s: &Scenario, experiments: usize, threads: usize) -> Result<(Vec<Run>, Vec<Run>), StudyError> {
    let exp = experiment(s)?;
    if s.example == Example::Canary && analysis_step(&exp).is_none() {
        return Err(fail(s, "the canary example has no analysis step"));
    }
    let threads = threads.clamp(1, experiments.max(1));
    let chunks: Vec<Result<Vec<Paired>, StudyError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let exp = &exp;
                scope.spawn(move || {
                    let rt =
                        tokio::runtime::Builder::new_current_thread().enable_time().build().map_err(|e| fail(s, e))?;
                    (t..experiments)
                        .step_by(threads)
                        .map(|i| {
                            let ours = run_one(s, exp, i as u64, &rt)?;
                            Ok((ours, s.flagger.then(|| run_flagger(s, exp, i as u64))))
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a study thread panicked")).collect()
    });
    let mut ordered = vec![None; experiments];
    for (t, chunk) in chunks.into_iter().enumerate() {
        for (k, run) in chunk?.into_iter().enumerate() {
            ordered[t + k * threads] = Some(run);
        }
    }
    let (ours, flagger): (Vec<Run>, Vec<Option<Run>>) = ordered.into_iter().flatten().unzip();
    Ok((ours, flagger.into_iter().flatten().collect()))
}
