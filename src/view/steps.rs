//! The steps of an experiment as `forklane get` lists them, with where it is. `status.currentStep`
//! counts what the strategy has gone through: for a canary the index of the step in progress
//! (equal to the number of steps once all are done), for recreate and rolling update the index of
//! the replica state being reached; blue/green and A/B tests stay at 0 until `status.finalArm`
//! ends them.

use serde::Serialize;

use forklane_core::api::{CanaryStep, Experiment, ExperimentSpec, Phase, Strategy};

#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    pub description: String,
    pub state: StepState,
}

#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum StepState {
    Done,
    Current,
    Pending,
    /// In progress when the experiment ended (a rollback, `forklane promote --full`).
    Interrupted,
    /// Not run: the experiment ended before it.
    Skipped,
}

/// The strategy's steps, then the final one (all traffic to one arm) once it is decided.
pub(crate) fn steps(exp: &Experiment) -> Vec<Step> {
    let spec = &exp.spec;
    let status = exp.status.clone().unwrap_or_default();
    let finished = matches!(status.phase, Some(Phase::Succeeded | Phase::RolledBack | Phase::Failed));
    let (control, candidate) = two_arms(spec);
    let mut current = status.current_step.unwrap_or(0).max(0) as usize;
    let plan: Vec<String> = match &spec.strategy {
        Strategy::Canary(canary) => canary.steps.iter().map(describe).collect(),
        Strategy::BlueGreen(bg) => {
            // The switch is the blue/green's own final step: it is current once decided.
            if status.final_arm.as_deref() == Some(candidate) {
                current = 1;
            }
            let preview = match &bg.preview_header {
                Some(h) => format!("preview: all traffic on {control}, header {}: {} to {candidate}", h.name, h.value),
                None => format!("preview: all traffic on {control}, {candidate} ready"),
            };
            vec![preview, format!("switch: all traffic to {candidate}")]
        }
        Strategy::AbTest(ab) => {
            let split = spec.arms.iter().map(|a| format!("{} {}", a.name, ab.split.get(&a.name).copied().unwrap_or(0)));
            let verb = if spec.analysis.is_some() { "split and analyse" } else { "split" };
            vec![format!("{verb}: {}", split.collect::<Vec<_>>().join(" / "))]
        }
        Strategy::Recreate(_) => {
            vec![format!("{control} running"), format!("{control} stopped"), format!("{candidate} running")]
        }
        Strategy::RollingUpdate(_) => vec![format!("replace {control}'s pods with {candidate}'s (state {current})")],
    };
    let current = current.min(plan.len());
    let Some(final_arm) = &status.final_arm else {
        let started = status.phase.is_some_and(|p| p != Phase::Pending);
        return plan
            .into_iter()
            .enumerate()
            .map(|(i, description)| {
                let state = match i.cmp(&current) {
                    _ if !started => StepState::Pending,
                    std::cmp::Ordering::Less => StepState::Done,
                    std::cmp::Ordering::Equal if finished => StepState::Skipped,
                    std::cmp::Ordering::Equal => StepState::Current,
                    std::cmp::Ordering::Greater if finished => StepState::Skipped,
                    std::cmp::Ordering::Greater => StepState::Pending,
                };
                Step { description, state }
            })
            .collect();
    };
    let last = if finished { StepState::Done } else { StepState::Current };
    let is_switch = matches!(spec.strategy, Strategy::BlueGreen(_)) && final_arm == candidate;
    let mut out: Vec<Step> = plan
        .into_iter()
        .enumerate()
        .map(|(i, description)| {
            let state = if i < current {
                StepState::Done
            } else if is_switch && i == current {
                last
            } else if i == current {
                StepState::Interrupted
            } else {
                StepState::Skipped
            };
            Step { description, state }
        })
        .collect();
    if !is_switch {
        let verb = if status.winner.is_some() { "promote" } else { "rollback" };
        out.push(Step { description: format!("{verb}: all traffic to {final_arm}"), state: last });
    }
    out
}

fn describe(step: &CanaryStep) -> String {
    match (&step.set_weight, &step.pause) {
        (Some(weight), _) => format!("setWeight {weight}"),
        (None, Some(pause)) => match pause.duration {
            Some(d) => format!("pause {d}"),
            None => "pause until forklane promote".into(),
        },
        (None, None) => "analysis".into(),
    }
}

/// The control and the candidate of a two-arm strategy ("" where the spec lacks one).
fn two_arms(spec: &ExperimentSpec) -> (&str, &str) {
    let control = spec.arms.iter().find(|a| a.control).or(spec.arms.first());
    let control = control.map_or("", |a| a.name.as_str());
    let candidate = spec.arms.iter().find(|a| a.name != control).map_or("", |a| a.name.as_str());
    (control, candidate)
}
