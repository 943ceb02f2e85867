//! The reconcile itself, pure: from the Experiment (spec, status, annotations, deletion), what the
//! caches hold ([`Observation`]), the time and, when one was due, the analysis' answer, it returns
//! the writes, the next status, the events, the finalizer change and when to look again. The
//! driver (`reconcile`) only reads the caches, asks the analyst and sends what this returns.
//!
//! Order of a live experiment: finished → hands off; invalid spec → traffic back to the control;
//! conflicts and policies → held; plan the current target, move traffic off arms without ready
//! pods (`health`), gate unsafe steps and keep only what differs (`apply::gate`); progress
//! deadline; new pod templates and weights restart the analysis; the state machine (`progress`).

mod deletion;
mod drift;
mod expiry;
mod live;
#[cfg(test)]
mod tests;

use std::time::Duration;

use jiff::Timestamp;

use crate::analysis::{AnalysisError, ConfigError};
use crate::api::{ArmSamples, Experiment, ExperimentStatus, Phase, Routing, defaults};
use crate::clock::parse_time;
use crate::plan::{self, Action, Plan, Target};
use crate::policy;
use crate::stats::decision::Decision;

use super::apply::{Applied, gate};
use super::commands::{Commands, PROMOTE};
use super::health::detour;
use super::observe::{Leftovers, Observation};
use super::progress::Event;
use super::settle::{RoutingClock, is_routing};

pub(crate) const FINALIZER: &str = "forklane.io/routing";

/// How long (simulated) to wait before looking again while waiting on pods, routing, a conflict
/// or a policy: the watches bring every change sooner; this bounds a missed one and lets time-based
/// policies (freeze windows) end.
pub(crate) const WAIT: Duration = Duration::from_secs(60);

/// What is needed to decide.
pub(crate) struct Input<'a> {
    pub exp: &'a Experiment,
    pub obs: &'a Observation,
    pub now: Timestamp,
    /// The analysis' answer, once [`Reconciled::measure`] asked for it.
    pub measured: Option<&'a Measured>,
    /// When this controller last wrote the experiment's routing, as it remembers (the cached
    /// status may not show its latest write yet).
    pub routed_at: Option<Timestamp>,
}

impl Input<'_> {
    fn routing_clock(&self) -> RoutingClock {
        RoutingClock { now: self.now, remembered: self.routed_at }
    }
}

/// What one look at the metrics gave.
#[derive(Clone, Debug)]
pub(crate) enum Measured {
    Decided(Decision, Vec<ArmSamples>),
    /// The analysis cannot run as configured: the experiment ends, no retry every interval.
    Invalid(ConfigError),
    /// No metrics this time (unreachable, empty, NaN): the message says which.
    Unavailable(String),
}

/// The look the analysis is due for: decide again with its [`Measured`].
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Look {
    pub mode: Routing,
    pub window: Duration,
    pub weights: Vec<(String, i32)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FinalizerChange {
    Add,
    Remove,
}

/// Everything one reconcile does, in the order the driver does it: finalizer added, objects
/// written (plan order: make before break), leftovers deleted, status, events, the promote
/// annotation cleared, finalizer removed.
#[derive(Clone, Debug, Default)]
pub(crate) struct Reconciled {
    pub finalizer: Option<FinalizerChange>,
    pub writes: Vec<Action>,
    /// Routing objects of deleted experiments on our host, to delete.
    pub deletes: Leftovers,
    pub status: ExperimentStatus,
    pub events: Vec<Event>,
    pub clear_promote: bool,
    /// When to look again (simulated time); `None`: only when something changes.
    pub requeue: Option<Duration>,
    /// The analysis is due: read the metrics and decide again.
    pub measure: Option<Look>,
}

impl Reconciled {
    fn new(status: ExperimentStatus) -> Self {
        Reconciled { status, ..Default::default() }
    }

    /// Whether this changes routing: writes it, or deletes what a deleted experiment left.
    pub(crate) fn routes(&self) -> bool {
        self.writes.iter().any(is_routing) || !self.deletes.is_empty()
    }

    fn event(&mut self, reason: &'static str, message: impl Into<String>, warning: bool) {
        self.events.push(Event { reason, message: message.into(), warning });
    }
}

pub(crate) fn decide(input: &Input) -> Reconciled {
    let exp = input.exp;
    if exp.metadata.deletion_timestamp.is_some() {
        let mut out = deletion::decide(input);
        stamp_routing(&mut out, input.now);
        return out;
    }
    let mut out = run_through(input, live::decide(input));
    if !exp.metadata.finalizers.iter().flatten().any(|f| f == FINALIZER) {
        out.finalizer = Some(FinalizerChange::Add);
    }
    stamp_routing(&mut out, input.now);
    out
}

/// The start state (everything to the control) is not written when the first step moves on from
/// it at once: when `first` puts it in place and advances to a `setWeight` step, that step is
/// decided in the same reconcile from the status `first` leaves, and if it rewrites every object
/// `first` writes, only its writes are sent. Proxies never see a split replaced within the same
/// second, and the ramp to the first step costs a write and a status less. Every later step is
/// written as declared.
fn run_through(input: &Input, first: Reconciled) -> Reconciled {
    let before = input.exp.status.as_ref().and_then(|s| s.current_step).unwrap_or(0);
    let from_start = before == 0 && first.status.current_step == Some(1);
    if !from_start || first.measure.is_some() || !first.deletes.is_empty() || first.status.final_arm.is_some() {
        return first;
    }
    let mut exp = input.exp.clone();
    exp.status = Some(first.status.clone());
    let next = live::decide(&Input { exp: &exp, ..*input });
    // Every write of `first` is a VirtualService or DestinationRule that `next` rewrites, or finds
    // in place (a restart after the step's routing was written but not its status).
    let settled = has_condition(&next.status, super::conditions::READY, None);
    let rewrites = |w: &Action| next.writes.iter().any(|n| std::mem::discriminant(n) == std::mem::discriminant(w));
    let replaces = first
        .writes
        .iter()
        .all(|w| matches!(w, Action::VirtualService(_) | Action::DestinationRule(_)) && (settled || rewrites(w)));
    if next.measure.is_some() || next.status.final_arm.is_some() || !replaces {
        return first;
    }
    let mut events = first.events;
    events.extend(next.events.iter().filter(|e| !events.contains(e)).cloned().collect::<Vec<_>>());
    Reconciled { events, clear_promote: first.clear_promote || next.clear_promote, ..next }
}

/// Records in the status when routing is written, for the delays that count from it.
fn stamp_routing(out: &mut Reconciled, now: Timestamp) {
    if out.routes() {
        out.status.routing_changed_at = Some(crate::clock::format_time(now));
    }
}

pub(crate) fn finished(phase: Option<Phase>) -> bool {
    matches!(phase, Some(Phase::Succeeded | Phase::RolledBack | Phase::Failed))
}

fn elapsed(since: Option<&str>, now: Timestamp) -> Option<Duration> {
    let since = since.and_then(parse_time)?;
    Some(Duration::from_secs_f64(since.duration_until(now).as_secs_f64().max(0.0)))
}

fn has_condition(status: &ExperimentStatus, type_: &str, message: Option<&str>) -> bool {
    status.conditions.iter().any(|c| c.type_ == type_ && c.status == "True" && message.is_none_or(|m| c.message == m))
}

/// The promote command, unless the status says it was handled already (exactly once).
fn commands(exp: &Experiment, status: &ExperimentStatus) -> (Commands, Option<String>) {
    let annotations = exp.metadata.annotations.as_ref();
    let mut commands = Commands::from_annotations(annotations);
    let token = annotations.and_then(|a| a.get(PROMOTE)).cloned();
    if token.is_some() && token == status.handled_promote {
        commands.promote = None;
    }
    (commands, token)
}

fn record_weights(status: &mut ExperimentStatus, planned: &Plan) {
    status.weights = planned
        .weights
        .iter()
        .map(|w| crate::api::ArmWeightStatus {
            arm: w.arm.clone(),
            desired: w.desired,
            achieved: (w.achieved * 10.0).round() / 10.0,
        })
        .collect();
    status.weight_summary =
        Some(planned.weights.iter().map(|w| format!("{}={}", w.arm, w.desired)).collect::<Vec<_>>().join(","));
}

/// The analyst's answer as the reconcile takes it: a configuration error ends the analysis, any
/// other failure means no metrics this time.
pub(crate) fn measured(answer: std::result::Result<(Decision, Vec<ArmSamples>), AnalysisError>) -> Measured {
    match answer {
        Ok((decision, samples)) => Measured::Decided(decision, samples),
        Err(AnalysisError::Config(e)) => Measured::Invalid(e),
        Err(e @ AnalysisError::Unavailable { .. }) => Measured::Unavailable(e.to_string()),
    }
}

/// The weights a look checks the split against (SRM): without a mesh the endpoints split by the
/// replica ratio (99/1 on 10 replicas is 9 pods to 1), not by the desired weights.
pub(crate) fn look_weights(planned: &Plan, mode: Routing) -> Vec<(String, i32)> {
    let share = |w: &crate::plan::ArmWeight| match mode {
        Routing::Native => w.achieved.round() as i32,
        Routing::Istio | Routing::GatewayApi => w.desired,
    };
    planned.weights.iter().map(|w| (w.arm.clone(), share(w))).collect()
}

/// The outcome the driver counts in `forklane_decisions_total`.
pub(crate) fn counted_outcome(measured: &Measured) -> Option<&'static str> {
    match measured {
        Measured::Decided(d, _) => Some(super::history::outcome_name(&d.outcome)),
        _ => None,
    }
}

pub(crate) fn measurement_window(status: &ExperimentStatus, now: Timestamp) -> Duration {
    elapsed(status.analysis_started_at.as_deref(), now)
        .map(|w| w.max(defaults::MIN_MEASUREMENT_WINDOW))
        .unwrap_or(defaults::MEASUREMENT_WINDOW)
}

fn violations(input: &Input) -> (Vec<policy::Violation>, bool) {
    let (exp, obs) = (input.exp, input.obs);
    let violations = obs
        .policies
        .iter()
        .flat_map(|p| policy::evaluate(p, exp, &obs.namespace_labels, Some(input.now.as_second())))
        .collect();
    let manual = obs.policies.iter().any(|p| {
        p.spec.require_manual_promotion && policy::selects(p.spec.namespace_selector.as_ref(), &obs.namespace_labels)
    });
    (violations, manual)
}

fn plan_or_error(input: &Input, target: &Target) -> Result<Plan, plan::PlanError> {
    plan::plan(input.exp, target, input.obs.mode, &input.obs.plan)
}

/// The routing with every arm's weight made safe and only what differs kept.
struct Routed {
    planned: Plan,
    writes: Vec<Action>,
    applied: Applied,
    /// A write waits for routing to propagate: look again after this long.
    retry_in: Option<Duration>,
    /// Arms without ready pods that the routing moved traffic away from, and why.
    unhealthy: Option<String>,
}

fn route(input: &Input, mut planned: Plan) -> Routed {
    let (exp, obs) = (input.exp, input.obs);
    // Without a mesh the endpoints carry only ready pods: no request reaches a dead arm, and a
    // missing arm shows as waiting on its pods (the progress deadline runs).
    let detoured = if obs.mode.routes() { detour(exp, &mut planned, obs) } else { None };
    let gated = gate(exp, &planned, obs, detoured.is_some(), input.routing_clock());
    Routed {
        planned,
        writes: gated.writes,
        applied: gated.applied,
        retry_in: gated.retry_in,
        unhealthy: detoured.map(|d| d.message()),
    }
}

/// The live VirtualService rewritten to send everything to `arm` (the writes still needed; empty
/// when it already does), or `None` when there is no live VirtualService of ours. `owned` keeps
/// the Experiment as its owner; a deletion releases it so that garbage collection leaves it.
fn restore_to(exp: &Experiment, obs: &Observation, arm: &str, owned: bool) -> Option<Vec<Action>> {
    let live_json = obs.live.virtual_service.as_ref()?;
    let live: crate::istio::VirtualService = serde_json::from_value(live_json.clone()).ok()?;
    let others = super::observe::referenced_subsets(&live).into_iter().filter(|s| s != arm).collect();
    let vs = super::health::avoiding(&live, &others, arm);
    Some(rewritten(exp, live_json, &live, vs, owned))
}

/// `vs`, a rewrite of the `live` VirtualService, as the write still needed (empty when the live
/// object holds it already), with the live object's identity. `owned` keeps the Experiment as its
/// owner; a deletion releases it so that garbage collection leaves it.
fn rewritten(
    exp: &Experiment,
    live_json: &serde_json::Value,
    live: &crate::istio::VirtualService,
    mut vs: crate::istio::VirtualService,
    owned: bool,
) -> Vec<Action> {
    use kube::Resource;
    let owners = if owned { exp.controller_owner_ref(&()).map(|r| vec![r]) } else { Some(vec![]) };
    vs.metadata = identity(&live.metadata, owners);
    vs.status = None;
    still_needed(live_json, Action::VirtualService(Box::new(vs)))
}

/// What a rewrite of a live object keeps of it (name, namespace, labels), with `owners` as its
/// owner references (`Some(vec![])` releases it from the Experiment).
pub(super) fn identity(
    live: &kube::api::ObjectMeta,
    owners: Option<Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>>,
) -> kube::api::ObjectMeta {
    kube::api::ObjectMeta {
        name: live.name.clone(),
        namespace: live.namespace.clone(),
        labels: live.labels.clone(),
        owner_references: owners,
        ..Default::default()
    }
}

/// `action`, a rewrite of the live object `live_json`: the write still needed, none when the live
/// object holds it already.
pub(super) fn still_needed(live_json: &serde_json::Value, action: Action) -> Vec<Action> {
    if super::apply::holds(live_json, &action.object()) { vec![] } else { vec![action] }
}
