//! The experiment's state machine, pure: given the spec, the last status, the time, whether the
//! current state is fully applied, the people's commands and (when one was due) the analysis'
//! decision, it returns the next status. All progress lives in `status`, so a restarted
//! controller resumes exactly where the last one stopped, without repeating or skipping a step.

use std::time::Duration;

use jiff::Timestamp;

use crate::analysis::ConfigError;
use crate::api::{BlueGreen, Canary, ExperimentSpec, ExperimentStatus, OnInconclusive, Phase, PromotionMode, Strategy};
use crate::clock::{format_time, parse_time};
use crate::plan::Target;
use crate::stats::decision::{Decision, Outcome, Role};

use super::commands::{Commands, Promote};
use super::conditions::event;

/// Everything the next status depends on.
pub(crate) struct Tick<'a> {
    pub spec: &'a ExperimentSpec,
    pub status: &'a ExperimentStatus,
    pub now: Timestamp,
    /// Number of states of the strategy (from the planner).
    pub states: usize,
    /// The current target is applied and its pods are ready.
    pub settled: bool,
    pub commands: &'a Commands,
    /// A policy demands `forklane promote` before 100%.
    pub policy_manual_promotion: bool,
    /// The decision of an analysis run in this reconcile, if one was due and the metrics were there.
    pub decision: Option<&'a Decision>,
    /// The analysis due in this reconcile cannot run as configured.
    pub analysis_invalid: Option<&'a ConfigError>,
    /// The analysis due in this reconcile found no metrics (unreachable, empty, NaN).
    pub metrics_unavailable: bool,
}

/// A Kubernetes Event to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Event {
    pub reason: &'static str,
    pub message: String,
    pub warning: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Transition {
    pub status: ExperimentStatus,
    pub events: Vec<Event>,
    /// When to look again (simulated time); `None`: only when something changes.
    pub requeue: Option<Duration>,
}

/// What the objects should route now, from the status.
pub(crate) fn target(status: &ExperimentStatus) -> Target {
    match &status.final_arm {
        Some(arm) => Target::Final(arm.clone()),
        None => Target::Step(status.current_step.unwrap_or(0).max(0) as usize),
    }
}

/// Whether the analysis should run in this reconcile.
pub(crate) fn analysis_due(spec: &ExperimentSpec, status: &ExperimentStatus, now: Timestamp) -> bool {
    let Some(analysis) = &spec.analysis else { return false };
    if status.phase != Some(Phase::Analysing) || status.final_arm.is_some() {
        return false;
    }
    let interval = analysis.interval();
    match status.last_analysis_at.as_deref().and_then(parse_time) {
        Some(last) => elapsed(last, now) >= interval,
        None => status
            .analysis_started_at
            .as_deref()
            .and_then(parse_time)
            .is_some_and(|start| elapsed(start, now) >= interval),
    }
}

fn elapsed(since: Timestamp, now: Timestamp) -> Duration {
    Duration::from_secs_f64(since.duration_until(now).as_secs_f64().max(0.0))
}

struct Machine<'a> {
    t: &'a Tick<'a>,
    st: ExperimentStatus,
    events: Vec<Event>,
    requeue: Option<Duration>,
    /// The analysis ran out of time in this tick.
    inconclusive: bool,
}

pub(crate) fn advance(t: &Tick) -> Transition {
    let mut m = Machine { t, st: t.status.clone(), events: vec![], requeue: None, inconclusive: false };
    m.step();
    Transition { status: m.st, events: m.events, requeue: m.requeue }
}

impl Machine<'_> {
    fn event(&mut self, reason: &'static str, message: String, warning: bool) {
        self.events.push(Event { reason, message, warning });
    }

    // The spec was validated by the planner: the control and the candidate exist.
    fn control(&self) -> String {
        self.t.spec.control_arm().map(|a| a.name.clone()).unwrap_or_default()
    }

    fn candidate(&self) -> String {
        self.t.spec.candidate().map(|a| a.name.clone()).unwrap_or_default()
    }

    fn manual_promotion(&self) -> bool {
        self.t.policy_manual_promotion
            || self.t.spec.promotion.as_ref().is_some_and(|p| p.mode == PromotionMode::Manual)
    }

    fn set_phase(&mut self, phase: Phase, message: impl Into<String>) {
        let message = message.into();
        if self.st.phase != Some(phase) {
            self.event(phase_reason(phase), message.clone(), matches!(phase, Phase::RolledBack | Phase::Failed));
        }
        self.st.phase = Some(phase);
        self.st.message = Some(message);
    }

    fn step(&mut self) {
        let now = self.t.now;
        if self.st.phase.is_none() {
            self.st.current_step = Some(0);
            self.st.step_started_at = Some(format_time(now));
            self.set_phase(Phase::Progressing, "started");
        }
        if let Some(arm) = self.st.final_arm.clone() {
            // Promoting or rolling back: done once the final routing is in place.
            if self.t.settled && !matches!(self.st.phase, Some(Phase::Succeeded | Phase::RolledBack)) {
                let why = self.st.message.clone().unwrap_or_default();
                let phase = if self.st.winner.is_some() { Phase::Succeeded } else { Phase::RolledBack };
                self.set_phase(phase, format!("{why}; all traffic on {arm}"));
                self.st.finished_at = Some(format_time(now));
            }
            return;
        }
        if let Some(reason) = self.t.commands.abort.clone() {
            return self.finish(self.control(), false, reason);
        }
        if self.t.commands.paused {
            return self.set_phase(Phase::Paused, "paused by forklane pause; forklane resume continues");
        }
        if !self.t.settled {
            let message = self.st.message.clone().unwrap_or_default();
            if self.st.phase == Some(Phase::Paused) {
                self.st.phase = Some(Phase::Progressing); // resumed, waiting for the routing
            }
            self.st.message = Some(message);
            return;
        }
        match &self.t.spec.strategy {
            Strategy::Canary(canary) => self.canary(canary),
            Strategy::BlueGreen(bg) => self.blue_green(bg),
            Strategy::AbTest(_) => self.ab_test(),
            Strategy::Recreate(_) | Strategy::RollingUpdate(_) => self.replace(),
        }
    }

    fn next_state(&mut self, why: String) {
        let k = self.st.current_step.unwrap_or(0) + 1;
        self.st.current_step = Some(k);
        self.st.step_started_at = Some(format_time(self.t.now));
        self.st.analysis_started_at = None;
        self.st.last_analysis_at = None;
        self.set_phase(Phase::Progressing, why.clone());
        self.event(event::STEP_ADVANCED, format!("step {k}: {why}"), false);
        self.requeue = Some(Duration::ZERO);
    }

    /// Ends the experiment with all traffic on `arm`.
    fn finish(&mut self, arm: String, success: bool, message: String) {
        self.st.final_arm = Some(arm.clone());
        self.st.analysis_started_at = None;
        if success {
            self.st.winner = Some(arm);
            self.set_phase(Phase::Promoting, message);
        } else {
            self.st.winner = None;
            self.event(event::ROLLING_BACK, message.clone(), true);
            self.set_phase(Phase::Progressing, format!("rolling back: {message}"));
        }
        self.requeue = Some(Duration::ZERO);
    }

    /// Promotion of `arm` to 100%, unless a person must say so first.
    fn promote(&mut self, arm: String, why: String) {
        if self.manual_promotion() && self.t.commands.promote.is_none() {
            self.st.winner = Some(arm.clone());
            return self.set_phase(
                Phase::Paused,
                format!("{why}; waiting for forklane promote before all traffic goes to {arm}"),
            );
        }
        self.finish(arm, true, why);
    }

    fn canary(&mut self, canary: &Canary) {
        let steps = &canary.steps;
        let k = self.st.current_step.unwrap_or(0).max(0) as usize;
        if self.t.commands.promote == Some(Promote::Full) {
            return self.promote(self.candidate(), "promoted by forklane promote --full".into());
        }
        let Some(step) = steps.get(k) else {
            return self.promote(self.candidate(), "all canary steps done".into());
        };
        if let Some(weight) = step.set_weight {
            return self.next_state(format!("weight {weight}"));
        }
        if let Some(pause) = &step.pause {
            if self.t.commands.promote.is_some() {
                return self.next_state("pause ended by forklane promote".into());
            }
            match pause.duration {
                None => return self.set_phase(Phase::Paused, "paused until forklane promote"),
                Some(length) => {
                    let started = self.st.step_started_at.as_deref().and_then(parse_time).unwrap_or(self.t.now);
                    let waited = elapsed(started, self.t.now);
                    if waited >= length.get() {
                        return self.next_state(format!("pause of {length} over"));
                    }
                    self.requeue = Some(length.get() - waited);
                    return self.set_phase(Phase::Paused, format!("pausing {length} at step {k}"));
                }
            }
        }
        if self.t.commands.promote.is_some() {
            return self.next_state("analysis skipped by forklane promote".into());
        }
        match self.analyse() {
            Some(Outcome::Promote { .. }) => self.next_state("analysis passed".into()),
            Some(Outcome::Rollback { reason }) => self.finish(self.control(), false, reason),
            _ => {}
        }
    }

    fn blue_green(&mut self, bg: &BlueGreen) {
        let candidate = self.candidate();
        if self.t.commands.promote.is_some() {
            return self.finish(candidate, true, "switched by forklane promote".into());
        }
        if bg.auto_promote {
            return self.promote(candidate, "candidate ready; autoPromote".into());
        }
        self.set_phase(
            Phase::Paused,
            format!("{candidate} is ready for preview; forklane promote switches all traffic"),
        );
    }

    fn ab_test(&mut self) {
        if let Some(p) = self.t.commands.promote.clone() {
            let arm = match p {
                Promote::Arm(arm) => arm,
                _ => self
                    .st
                    .winner
                    .clone()
                    .or_else(|| (self.t.spec.arms.len() == 2).then(|| self.candidate()))
                    .unwrap_or_default(),
            };
            if arm.is_empty() || !self.t.spec.arms.iter().any(|a| a.name == arm) {
                return self.set_phase(Phase::Paused, "forklane promote needs --arm NAME: no winner is known yet");
            }
            return self.finish(arm, true, "promoted by forklane promote".into());
        }
        if self.t.spec.analysis.is_none() {
            return self.set_phase(Phase::Paused, "no analysis configured; forklane promote --arm NAME ends the test");
        }
        if self.st.phase == Some(Phase::Paused) && self.st.winner.is_some() {
            return; // decided, waiting for a person
        }
        match self.analyse() {
            Some(Outcome::Promote { arm }) if self.inconclusive => {
                self.promote(arm.clone(), format!("no decision within maxDuration: promoted {arm}, the best estimate"))
            }
            Some(Outcome::Promote { arm }) => self.promote(arm.clone(), format!("analysis chose {arm}")),
            Some(Outcome::Rollback { reason }) => self.finish(self.control(), false, reason),
            _ => {}
        }
    }

    /// Recreate and rolling update: each state follows once the previous one is ready.
    fn replace(&mut self) {
        let k = self.st.current_step.unwrap_or(0).max(0) as usize;
        if k + 1 < self.t.states {
            self.next_state(format!("replicas of state {} ready", k));
        } else {
            self.finish(self.candidate(), true, "every pod replaced".into());
        }
    }

    /// One analysis round: the decision, or the onInconclusive outcome after maxDuration.
    fn analyse(&mut self) -> Option<Outcome> {
        let analysis = self.t.spec.analysis.as_ref()?;
        let now = self.t.now;
        if self.st.analysis_started_at.is_none() {
            self.st.analysis_started_at = Some(format_time(now));
            self.st.last_analysis_at = None;
            self.set_phase(Phase::Analysing, "analysis started");
        } else if self.st.phase != Some(Phase::Analysing) {
            self.set_phase(Phase::Analysing, "analysis resumed");
        }
        self.requeue = Some(analysis.interval());
        if let Some(error) = self.t.analysis_invalid {
            // Looking again cannot help, and holding a candidate's traffic share indefinitely
            // without a gate is unsafe: roll back as after a breached guardrail (RolledBack once
            // the control has all traffic), like every other end without a winner.
            self.st.last_analysis_at = Some(format_time(now));
            let message = format!("analysis configuration invalid: {error}");
            self.event(event::ANALYSIS_CONFIG_INVALID, message.clone(), true);
            return Some(Outcome::Rollback { reason: message });
        }
        let started = self.st.analysis_started_at.as_deref().and_then(parse_time).unwrap_or(now);
        let out_of_time = elapsed(started, now) >= analysis.max_duration();
        if self.t.metrics_unavailable {
            // Time without metrics counts toward maxDuration, and an outage ends: never a
            // promotion on missing data.
            self.st.last_analysis_at = Some(format_time(now));
            let missed = self.st.consecutive_unavailable.unwrap_or(0) + 1;
            self.st.consecutive_unavailable = Some(missed);
            if out_of_time || missed >= analysis.max_consecutive_unavailable() {
                let why = if out_of_time {
                    "no decision within maxDuration (metrics unavailable)".to_string()
                } else {
                    format!("metrics unavailable at {missed} looks in a row")
                };
                return Some(self.inconclusive(None, &why));
            }
            return None;
        }
        let Some(decision) = self.t.decision else {
            // No look this time. A look overdue past maxDuration (routing never settled, say)
            // ends the analysis too.
            let overdue = elapsed(started, now) >= analysis.max_duration() + analysis.interval();
            return overdue.then(|| self.inconclusive(None, "no decision within maxDuration (no look was possible)"));
        };
        self.st.last_analysis_at = Some(format_time(now));
        self.st.consecutive_unavailable = None;
        self.st.statistics = serde_json::to_value(decision).ok();
        match &decision.outcome {
            Outcome::Continue { reason } => {
                if !out_of_time {
                    self.st.message = Some(reason.clone());
                    return None;
                }
                Some(self.inconclusive(Some(decision), "no decision within maxDuration"))
            }
            // Minimum exposure: a promotion waits until the analysis has run minDuration.
            Outcome::Promote { arm } if analysis.min_duration.is_some_and(|min| elapsed(started, now) < min.get()) => {
                let min = analysis.min_duration.map(|m| m.to_string()).unwrap_or_default();
                self.st.message = Some(format!("{arm} leads; promotion waits for the minimum exposure of {min}"));
                None
            }
            outcome => Some(outcome.clone()),
        }
    }

    /// `promotion.onInconclusive`; without a decision to go by, `promote` keeps the control.
    fn inconclusive(&mut self, decision: Option<&Decision>, why: &str) -> Outcome {
        let on = self.t.spec.promotion.as_ref().map(|p| p.on_inconclusive).unwrap_or_default();
        self.inconclusive = true;
        self.event(event::INCONCLUSIVE, format!("{why}; onInconclusive: {on:?}"), true);
        match (on, decision) {
            (OnInconclusive::Rollback, _) => Outcome::Rollback { reason: format!("{why}: rolled back") },
            (OnInconclusive::KeepControl, _) | (OnInconclusive::Promote, None) => {
                self.finish(self.control(), true, format!("{why}: kept the control"));
                Outcome::Continue { reason: why.into() }
            }
            (OnInconclusive::Promote, Some(decision)) => {
                // The best estimate in the goal's direction; the control when no arm beats it.
                let lower_is_better =
                    self.t.spec.analysis.iter().flat_map(|a| &a.metrics).any(|m| {
                        m.role == crate::api::Role::Goal && m.direction == Some(crate::api::Direction::Decrease)
                    });
                let sign = if lower_is_better { -1.0 } else { 1.0 };
                let best = decision
                    .comparisons
                    .iter()
                    .filter(|c| c.role == Role::Goal && sign * c.difference > 0.0)
                    .max_by(|a, b| (sign * a.difference).total_cmp(&(sign * b.difference)));
                match best {
                    Some(c) => Outcome::Promote { arm: c.arm.clone() },
                    None => {
                        self.finish(self.control(), true, format!("{why}: no arm beats the control; kept it"));
                        Outcome::Continue { reason: why.into() }
                    }
                }
            }
        }
    }
}

/// The phase's name: the reason of its Event and of the `Progressing` condition.
pub(crate) fn phase_reason(phase: Phase) -> &'static str {
    match phase {
        Phase::Pending => "Pending",
        Phase::Progressing => "Progressing",
        Phase::Paused => "Paused",
        Phase::Analysing => "Analysing",
        Phase::Promoting => "Promoting",
        Phase::Succeeded => "Succeeded",
        Phase::RolledBack => "RolledBack",
        Phase::Failed => "Failed",
    }
}

#[cfg(test)]
#[path = "progress_tests.rs"]
mod tests;
