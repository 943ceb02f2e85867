//! A live (not deleted) experiment.

use std::time::Duration;

use jiff::Timestamp;

use crate::api::{ArmWeightStatus, ExperimentStatus, OnProgressDeadline, Phase, Routing};
use crate::clock::format_time;
use crate::plan::{PlanError, Target};
use crate::stats::decision::{Decision, Outcome};

use super::super::apply::Applied;
use super::super::conditions::{self, event, reason, set};
use super::super::observe::Leftovers;
use super::super::progress::{self, Tick};
use super::super::settle;
use super::expiry::{self, Expiry};
use super::{
    Input, Look, Measured, Reconciled, Routed, WAIT, commands, elapsed, finished, has_condition, look_weights,
    measurement_window, plan_or_error, record_weights, restore_to, route, violations,
};

pub(super) fn decide(input: &Input) -> Reconciled {
    let (exp, obs, now) = (input.exp, input.obs, input.now);
    let before = exp.status.clone().unwrap_or_default();
    let generation = exp.metadata.generation;
    let mut out = Reconciled::new(before.clone());
    if finished(before.phase) {
        return hands_off(input, out);
    }
    let st = &mut out.status;
    st.mesh = Some(obs.mode);
    st.strategy = Some(exp.spec.strategy.name());
    st.observed_generation = generation;
    clear_reconcile_error(st, generation, now);

    let states = match plan_or_error(input, &Target::Step(0)) {
        Ok(p) => p.states,
        Err(e) => return invalid(input, out, &e),
    };
    let started = !matches!(before.phase, None | Some(Phase::Pending));
    if !obs.conflicts.is_empty() && !started {
        let conflicts = obs.conflicts.join(", ");
        let (why, message) = match obs.mode {
            Routing::GatewayApi => (
                reason::CONFLICTING_ROUTE,
                format!(
                    "another HTTPRoute routes the same Service, or a Service of another owner has an arm Service's name: {conflicts}; the Gateway API would merge their rules with ours by precedence, and Forklane never takes over someone else's object"
                ),
            ),
            _ => (
                reason::CONFLICTING_VIRTUAL_SERVICE,
                format!(
                    "another VirtualService routes the same host: {conflicts}; Istio's choice between them is undefined"
                ),
            ),
        };
        set(&mut st.conditions, conditions::READY, false, why, message.clone(), generation, now);
        st.phase = Some(Phase::Pending);
        st.message = Some(message);
        out.requeue = Some(WAIT);
        return out;
    }
    let (violated, manual) = violations(input);
    if !violated.is_empty() {
        let message = violated.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
        let known = has_condition(&before, conditions::POLICY_VIOLATION, Some(&message));
        set(
            &mut st.conditions,
            conditions::POLICY_VIOLATION,
            true,
            reason::POLICY_VIOLATED,
            message.clone(),
            generation,
            now,
        );
        if !started {
            st.phase = Some(Phase::Pending);
        }
        st.message = Some(format!("traffic held: {message}"));
        if !known {
            out.event(event::POLICY_VIOLATION, message, true);
        }
        out.requeue = Some(WAIT);
        return out;
    }
    set(
        &mut st.conditions,
        conditions::POLICY_VIOLATION,
        false,
        reason::COMPLIANT,
        "no policy violated".into(),
        generation,
        now,
    );

    let (mut commands, token) = commands(exp, &before);
    if token.is_none() {
        st.handled_promote = None;
    } else if commands.promote.is_none() {
        out.clear_promote = true; // handled before the controller could clear it
    }
    let planned = match plan_or_error(input, &progress::target(st)) {
        Ok(p) => p,
        Err(e) => return invalid(input, out, &e),
    };
    let Routed { planned, writes, applied, mut retry_in, unhealthy } = route(input, planned);
    let st = &mut out.status;
    out.writes = writes;
    let in_place = applied == Applied::Settled;
    let settled = in_place && unhealthy.is_none();
    if settled {
        let (deletes, wait) = leftovers_to_remove(input);
        out.deletes = deletes;
        retry_in = [retry_in, wait].into_iter().flatten().min();
    }
    let mut events = Vec::new();
    let corrected = super::drift::corrected(input, &out.writes);
    if !corrected.is_empty() {
        let message = format!("put back what changed outside Forklane: {}", corrected.join(", "));
        events.push(progress::Event { reason: event::DRIFT_CORRECTED, message, warning: true });
    }
    restart_on_new_weights(&before, st, &planned.weights, now, &mut events);
    restart_on_new_revision(input, &before, st, &planned.weights, &mut events);
    record_weights(st, &planned);
    arm_health(&before, st, unhealthy.as_deref(), generation, now, &mut events);

    // Waiting longer than the progress deadline rolls back (or holds, as configured).
    let waiting_for = match (&applied, &unhealthy) {
        (_, Some(why)) | (Applied::Waiting(why), None) => Some(why.clone()),
        (Applied::Settled | Applied::Propagating(_), None) => None,
    };
    st.waiting_since = waiting_for.as_ref().map(|_| before.waiting_since.clone().unwrap_or_else(|| format_time(now)));
    let deadline = exp.spec.progress_deadline();
    let waited = elapsed(st.waiting_since.as_deref(), now);
    let overdue = waited.is_some_and(|w| w > deadline);
    let was_overdue = has_condition(&before, conditions::PROGRESS_DEADLINE_EXCEEDED, None);
    if overdue {
        let message = format!(
            "waited longer than the progress deadline ({}) for: {}",
            crate::api::duration::to_promql(deadline),
            waiting_for.as_deref().unwrap_or_default()
        );
        set(
            &mut st.conditions,
            conditions::PROGRESS_DEADLINE_EXCEEDED,
            true,
            reason::DEADLINE_EXCEEDED,
            message.clone(),
            generation,
            now,
        );
        if st.final_arm.is_none() && exp.spec.on_progress_deadline.unwrap_or_default() == OnProgressDeadline::Rollback {
            commands.abort = Some(message.clone());
        }
        if !was_overdue {
            events.push(progress::Event { reason: event::PROGRESS_DEADLINE_EXCEEDED, message, warning: true });
        }
    } else if was_overdue && st.final_arm.is_none() {
        // Back within the deadline (held, and the arm recovered). Once the experiment ends (the
        // rollback the deadline started, or an abort), the condition stays: it says why.
        let message = "progressing within the deadline".to_string();
        set(
            &mut st.conditions,
            conditions::PROGRESS_DEADLINE_EXCEEDED,
            false,
            reason::WITHIN_DEADLINE,
            message,
            generation,
            now,
        );
    }

    let mut decision: Option<Decision> = None;
    let mut invalid_config = None;
    let mut unavailable = false;
    // While traffic detours around a dead arm the routing is in place, so guardrails keep
    // watching; the decision just never promotes (below).
    if in_place && progress::analysis_due(&exp.spec, st, now) {
        match input.measured {
            None => {
                let weights = look_weights(&planned, obs.mode);
                out.measure = Some(Look { mode: obs.mode, window: measurement_window(st, now), weights });
                return out;
            }
            Some(Measured::Decided(d, samples)) => {
                set(
                    &mut st.conditions,
                    conditions::METRICS_UNAVAILABLE,
                    false,
                    reason::METRICS_READ,
                    "metrics read".into(),
                    generation,
                    now,
                );
                let ran = "the analysis ran and decided".to_string();
                set(
                    &mut st.conditions,
                    conditions::ANALYSIS_CONFIG_INVALID,
                    false,
                    reason::ANALYSIS_RAN,
                    ran,
                    generation,
                    now,
                );
                st.samples = samples.clone();
                let srm = d.srm.is_some_and(|s| s.mismatch);
                let p = d
                    .srm
                    .as_ref()
                    .map_or_else(|| "not checked".into(), |s| format!("sequential SRM p = {:.3e}", s.p_value));
                let why = if srm { reason::SAMPLE_RATIO_MISMATCH } else { reason::SAMPLE_RATIO_OK };
                set(&mut st.conditions, conditions::SAMPLE_RATIO_MISMATCH, srm, why, p, generation, now);
                let mut d = d.clone();
                if let (Some(why), Outcome::Promote { .. }) = (&unhealthy, &d.outcome) {
                    d.outcome = Outcome::Continue { reason: format!("no promotion while {why}") };
                }
                decision = Some(d);
            }
            Some(Measured::Invalid(e)) => {
                set(
                    &mut st.conditions,
                    conditions::ANALYSIS_CONFIG_INVALID,
                    true,
                    reason::CONFIG_ERROR,
                    e.to_string(),
                    generation,
                    now,
                );
                invalid_config = Some(e.clone());
            }
            Some(Measured::Unavailable(message)) => {
                set(
                    &mut st.conditions,
                    conditions::METRICS_UNAVAILABLE,
                    true,
                    reason::METRICS_UNAVAILABLE,
                    message.clone(),
                    generation,
                    now,
                );
                st.message = Some(format!("weights held: {message}"));
                unavailable = true;
                events.push(progress::Event {
                    reason: event::METRICS_UNAVAILABLE,
                    message: message.clone(),
                    warning: true,
                });
            }
        }
    }

    let tick = Tick {
        spec: &exp.spec,
        status: st,
        now,
        states,
        settled,
        commands: &commands,
        policy_manual_promotion: manual,
        decision: decision.as_ref(),
        analysis_invalid: invalid_config.as_ref(),
        metrics_unavailable: unavailable,
    };
    let transition = progress::advance(&tick);
    let mut next = transition.status;
    if let Some(why) = &waiting_for
        && (next.final_arm.is_none() || next.phase == Some(Phase::Promoting))
    {
        next.message = Some(why.clone());
    }
    if finished(next.phase) {
        next.waiting_since = None;
    }
    let phase = next.phase.unwrap_or(Phase::Pending);
    let message = next.message.clone().unwrap_or_default();
    let ready_message = match &applied {
        _ if settled => "routing matches the current step".into(),
        Applied::Propagating(why) if waiting_for.is_none() => why.clone(),
        _ => message.clone(),
    };
    let ready_reason = if settled { reason::ROUTING_APPLIED } else { reason::WAITING };
    set(&mut next.conditions, conditions::READY, settled, ready_reason, ready_message, generation, now);
    let phase_reason = progress::phase_reason(phase);
    set(
        &mut next.conditions,
        conditions::PROGRESSING,
        !finished(Some(phase)),
        phase_reason,
        message.clone(),
        generation,
        now,
    );
    let analysing = phase == Phase::Analysing;
    let why = if analysing { reason::ANALYSING } else { reason::NOT_ANALYSING };
    set(&mut next.conditions, conditions::ANALYSING, analysing, why, message, generation, now);
    let moved = next.current_step != before.current_step || next.final_arm != before.final_arm;
    if commands.promote.is_some() && (moved || next.phase != Some(Phase::Paused)) {
        next.handled_promote = token;
        out.clear_promote = true;
    }
    events.extend(transition.events);
    out.events.extend(events);
    super::super::history::record(&mut next, decision.as_ref(), now);
    out.status = next;
    out.requeue = match (&waiting_for, transition.requeue) {
        // Watches bring pod and routing changes; the timer is the deadline, or once past it
        // (held) a safety net. The end of a propagation delay, which no watch announces, too.
        (Some(_), _) => Some(match waited {
            Some(w) if w < deadline => (deadline - w).clamp(Duration::from_millis(10), WAIT),
            _ => WAIT,
        }),
        (None, Some(d)) => Some(d),
        (None, None) => None,
    };
    if let Some(left) = retry_in {
        out.requeue = Some(out.requeue.map_or(left, |r| r.min(left)));
    }
    out
}

/// Finished means hands off: nothing more is written to Deployments, Services or routing; people
/// and autoscalers own them now. An edit is acknowledged and does not restart the experiment. The
/// one exception is the sticky cookie's expiry, which the final routing carries for a while: the
/// controller looks again when that period is over and takes out that header alone (`expiry`).
fn hands_off(input: &Input, mut out: Reconciled) -> Reconciled {
    let (exp, now) = (input.exp, input.now);
    match expiry::expiry(exp, now) {
        Expiry::Running(left) => out.requeue = Some(left),
        Expiry::Over => out.writes = expiry::end(exp, input.obs),
        Expiry::None => {}
    }
    let before = exp.status.clone().unwrap_or_default();
    let generation = exp.metadata.generation;
    let st = &mut out.status;
    clear_reconcile_error(st, generation, now);
    if before.observed_generation.is_some() && generation != before.observed_generation {
        st.observed_generation = generation;
        let note = "the experiment has finished: edits do not restart it; create a new Experiment";
        let message = before.message.clone().unwrap_or_default();
        if !message.contains(note) {
            st.message = Some(format!("{message}; {note}"));
        }
        out.event(event::EDIT_IGNORED, note, false);
    }
    out
}

fn clear_reconcile_error(status: &mut ExperimentStatus, generation: Option<i64>, now: Timestamp) {
    if has_condition(status, conditions::RECONCILE_ERROR, None) {
        let message = "the last reconcile succeeded".to_string();
        set(&mut status.conditions, conditions::RECONCILE_ERROR, false, reason::SUCCEEDED, message, generation, now);
    }
}

/// `ArmUnhealthy` while a routed arm has no ready pods, with a Warning event when it starts.
fn arm_health(
    before: &ExperimentStatus,
    st: &mut ExperimentStatus,
    problem: Option<&str>,
    generation: Option<i64>,
    now: Timestamp,
    events: &mut Vec<progress::Event>,
) {
    let was = has_condition(before, conditions::ARM_UNHEALTHY, None);
    match problem {
        Some(message) => {
            if !was {
                events.push(progress::Event { reason: event::ARM_UNHEALTHY, message: message.into(), warning: true });
            }
            set(
                &mut st.conditions,
                conditions::ARM_UNHEALTHY,
                true,
                reason::NO_READY_PODS,
                message.into(),
                generation,
                now,
            );
        }
        None if was => {
            let message = "every routed arm has ready pods".to_string();
            events.push(progress::Event { reason: event::ARM_RECOVERED, message: message.clone(), warning: false });
            set(&mut st.conditions, conditions::ARM_UNHEALTHY, false, reason::ARMS_READY, message, generation, now);
        }
        None => {}
    }
}

fn restart_analysis(st: &mut ExperimentStatus, now: Timestamp) {
    st.analysis_started_at = Some(format_time(now));
    st.last_analysis_at = None;
    st.consecutive_unavailable = None;
    st.samples.clear();
    st.statistics = None;
}

/// An edit of the weights (same step) starts a new analysis window: SRM and the metrics never
/// compare counts gathered under different weights.
fn restart_on_new_weights(
    before: &ExperimentStatus,
    st: &mut ExperimentStatus,
    planned: &[crate::plan::ArmWeight],
    now: Timestamp,
    events: &mut Vec<progress::Event>,
) {
    let was: Vec<(&str, i32)> = before.weights.iter().map(|w: &ArmWeightStatus| (w.arm.as_str(), w.desired)).collect();
    let now_weights: Vec<(&str, i32)> = planned.iter().map(|w| (w.arm.as_str(), w.desired)).collect();
    if was.is_empty() || was == now_weights || st.analysis_started_at.is_none() || st.phase != Some(Phase::Analysing) {
        return;
    }
    restart_analysis(st, now);
    let message = format!("weights changed from {was:?} to {now_weights:?}: a new analysis window starts");
    events.push(progress::Event { reason: event::ANALYSIS_RESTARTED, message, warning: false });
}

/// A new pod template on a routed arm restarts the analysis: the version promoted must be the one
/// analysed (Argo Rollouts #4775).
fn restart_on_new_revision(
    input: &Input,
    before: &ExperimentStatus,
    st: &mut ExperimentStatus,
    planned: &[crate::plan::ArmWeight],
    events: &mut Vec<progress::Event>,
) {
    let routed = |arm: &str| planned.iter().any(|w| w.arm == arm && w.desired > 0);
    let changed: Vec<&String> = input
        .obs
        .revisions
        .iter()
        .filter(|(arm, rev)| routed(arm) && before.revisions.get(*arm).is_some_and(|old| old != *rev))
        .map(|(arm, _)| arm)
        .collect();
    st.revisions = input.obs.revisions.clone();
    if changed.is_empty() || st.phase != Some(Phase::Analysing) || st.analysis_started_at.is_none() {
        return;
    }
    restart_analysis(st, input.now);
    let arms = changed.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(", ");
    let message = format!("arm {arms}: its Deployment has a new pod template; the analysis starts over");
    events.push(progress::Event { reason: event::REVISION_CHANGED, message, warning: false });
}

/// A spec that cannot be planned. Before it routed anything: Failed. After (an edit, or an
/// upgrade that adds a rule): the live routing sends everything to the control once the control
/// can serve, and then Failed. An abort is the same: back to the control.
fn invalid(input: &Input, mut out: Reconciled, error: &PlanError) -> Reconciled {
    let (exp, obs) = (input.exp, input.obs);
    let before = exp.status.clone().unwrap_or_default();
    let message = error.to_string().replace('\n', "; ");
    let control = exp.spec.control_arm().map(|a| a.name.clone()).unwrap_or_default();
    if obs.mode == Routing::Istio
        && let Some(restore) = restore_to(exp, obs, &control, true)
    {
        if obs.ready(&control) == 0 {
            out.status.message = Some(format!("{message}; waiting for ready pods of {control} to send traffic back"));
            out.requeue = Some(WAIT);
            return out;
        }
        if !restore.is_empty() {
            out.status.message = Some(format!("{message}; sending all traffic back to {control}"));
            out.writes = restore;
            out.requeue = Some(Duration::from_millis(10));
            return out;
        }
        out.status.final_arm = Some(control);
    }
    if before.phase != Some(Phase::Failed) {
        out.event(progress::phase_reason(Phase::Failed), message.clone(), true);
        out.status.finished_at = Some(format_time(input.now));
    }
    out.status.phase = Some(Phase::Failed);
    out.status.message = Some(message);
    out
}

/// What a deleted experiment left for our hosts goes once our own routing is in place, make
/// before break again: first its VirtualServices or HTTPRoutes (a proxy then routes by ours, Istio
/// using the oldest VirtualService of a host, the Gateway API the oldest route on a tie), then,
/// once no proxy can still route by them (the propagation delay after the last routing change),
/// what those routes send to: its DestinationRules or its arm Services. Also how long until then.
fn leftovers_to_remove(input: &Input) -> (Leftovers, Option<Duration>) {
    let left = &input.obs.leftovers;
    if left.has_routes() {
        return (left.routes(), None);
    }
    if !left.has_destinations() {
        return (Leftovers::default(), None);
    }
    let exp = input.exp;
    let names = |kind: &str, names: &[String]| (!names.is_empty()).then(|| format!("{kind} {}", names.join(", ")));
    let objects: Vec<String> = [names("DestinationRule", &left.destination_rules), names("Service", &left.services)]
        .into_iter()
        .flatten()
        .collect();
    let what = format!("removing {}", objects.join(" and "));
    match settle::wait(exp, exp.spec.propagation_delay(), &what, input.routing_clock(), false) {
        Some(hold) => (Leftovers::default(), Some(hold.left)),
        None => (left.clone(), None),
    }
}
