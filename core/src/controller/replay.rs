//! The controller's looks at one experiment whose routing is in place and whose pods are ready,
//! on a simulated clock and without an API server: for seeded studies of the decisions
//! (`forklane stats study`). Each step is the reconcile's own: `progress::analysis_due`, the look's
//! window and weights as `decide::live` asks for them, the analyst's answer turned into
//! `Measured` as `reconcile` does, and `progress::advance` for the next status. What it leaves
//! out is what a settled experiment does not need: the objects' writes and their gate, pod health,
//! policies, commands and conditions.

use std::time::Duration;

use jiff::Timestamp;

use crate::analysis::AnalysisError;
use crate::api::{ArmSamples, Experiment, ExperimentStatus, Routing};
use crate::plan::{self, Observed, PlanError};
use crate::stats::decision::Decision;

use super::commands::Commands;
use super::decide::{Measured, finished, look_weights, measured, measurement_window};
use super::progress::{self, Tick};

/// A look the analysis is due for: ask the analyst with these, then [`Replay::advance`].
#[derive(Clone, Debug, PartialEq)]
pub struct Due {
    pub window: Duration,
    /// The arms' traffic weights for the SRM check.
    pub weights: Vec<(String, i32)>,
}

pub struct Replay {
    exp: Experiment,
    mode: Routing,
    states: usize,
    /// The routing of the current step (recomputed when the step changes).
    planned: plan::Plan,
}

impl Replay {
    /// The experiment as created (its status is ignored) under `mode`.
    pub fn new(mut exp: Experiment, mode: Routing) -> Result<Self, PlanError> {
        exp.status = None;
        let planned = plan::plan(&exp, &plan::Target::Step(0), mode, &observed(&exp))?;
        Ok(Replay { states: planned.states, exp, mode, planned })
    }

    pub fn status(&self) -> ExperimentStatus {
        self.exp.status.clone().unwrap_or_default()
    }

    pub fn finished(&self) -> bool {
        finished(self.exp.status.as_ref().and_then(|s| s.phase))
    }

    /// The desired weight of every arm in the current step's routing.
    pub fn weights(&self) -> Vec<(String, i32)> {
        self.planned.weights.iter().map(|w| (w.arm.clone(), w.desired)).collect()
    }

    /// The look due at `now`, if one is.
    pub fn due(&self, now: Timestamp) -> Option<Due> {
        let status = self.status();
        progress::analysis_due(&self.exp.spec, &status, now)
            .then(|| Due { window: measurement_window(&status, now), weights: look_weights(&self.planned, self.mode) })
    }

    /// One reconcile at `now`, with the analyst's answer to the look [`Replay::due`] returned
    /// (`None` when none was due). Returns when to look again, as the controller requeues.
    pub fn advance(
        &mut self,
        now: Timestamp,
        answer: Option<Result<(Decision, Vec<ArmSamples>), AnalysisError>>,
    ) -> Result<Option<Duration>, PlanError> {
        let mut status = self.status();
        let answer = answer.map(measured);
        let (mut decision, mut invalid, mut unavailable) = (None, None, false);
        match answer {
            Some(Measured::Decided(d, samples)) => {
                status.samples = samples;
                decision = Some(d);
            }
            Some(Measured::Invalid(e)) => invalid = Some(e),
            Some(Measured::Unavailable(_)) => unavailable = true,
            None => {}
        }
        let tick = Tick {
            spec: &self.exp.spec,
            status: &status,
            now,
            states: self.states,
            settled: true,
            commands: &Commands::default(),
            policy_manual_promotion: false,
            decision: decision.as_ref(),
            analysis_invalid: invalid.as_ref(),
            metrics_unavailable: unavailable,
        };
        let transition = progress::advance(&tick);
        let moved = progress::target(&transition.status) != progress::target(&status);
        self.exp.status = Some(transition.status);
        if moved {
            let target = progress::target(&self.status());
            self.planned = plan::plan(&self.exp, &target, self.mode, &observed(&self.exp))?;
        }
        Ok(transition.requeue)
    }
}

/// Two ready replicas per arm and no DestinationRule yet: what the planner needs to route.
fn observed(exp: &Experiment) -> Observed {
    Observed { replicas: exp.spec.arms.iter().map(|a| (a.name.clone(), 2)).collect(), ..Default::default() }
}
