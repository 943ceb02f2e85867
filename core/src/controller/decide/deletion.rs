//! A deleted experiment (its finalizer still on).
//!
//! One that never wrote routing (no routing object it owns) goes at once, writing nothing. Otherwise all traffic goes back to
//! the control (or the promoted winner), only to an arm with ready pods, in objects released from
//! the Experiment so that garbage collection leaves them; the finalizer goes once the cache shows
//! the restored routing. With no arm able to serve, the deletion waits (a condition and an event
//! say why) until a person sets `forklane.io/force-delete`.

use crate::api::{Experiment, ExperimentStatus, Phase, Routing};
use crate::plan::istio::without_cookie_expiry;
use crate::plan::{Action, Plan, Target};

use crate::istio::DestinationRule;
use k8s_openapi::api::core::v1::Service;

use super::super::apply::{Applied, gate};
use super::super::conditions::{self, event, reason, set};
use super::super::observe::Observation;
use super::{FINALIZER, FinalizerChange, Input, Reconciled, WAIT, has_condition, identity, restore_to, still_needed};

/// Lets a person release an experiment whose deletion waits for an arm that can take the traffic.
pub(crate) const FORCE_DELETE: &str = "forklane.io/force-delete";

pub(super) fn decide(input: &Input) -> Reconciled {
    let (exp, obs) = (input.exp, input.obs);
    let status = exp.status.clone().unwrap_or_default();
    let mut out = Reconciled::new(status.clone());
    if !exp.metadata.finalizers.iter().flatten().any(|f| f == FINALIZER) {
        return out;
    }
    let forced = exp.metadata.annotations.as_ref().and_then(|a| a.get(FORCE_DELETE)).is_some_and(|v| v != "false");
    if !wrote_routing(input, &status) || forced {
        out.finalizer = Some(FinalizerChange::Remove);
        return out;
    }
    let control = exp.spec.control_arm().map(|a| a.name.clone()).unwrap_or_default();
    let arm = status.winner.clone().filter(|_| status.phase == Some(Phase::Succeeded)).unwrap_or(control);
    if obs.ready(&arm) == 0 {
        let message = format!(
            "deletion waits: {arm} has no ready pods to take all traffic; annotate {FORCE_DELETE}=true to delete anyway"
        );
        if !has_condition(&status, conditions::DELETION_BLOCKED, Some(&message)) {
            out.event(event::DELETION_BLOCKED, message.clone(), true);
        }
        let generation = exp.metadata.generation;
        set(
            &mut out.status.conditions,
            conditions::DELETION_BLOCKED,
            true,
            reason::NO_READY_PODS,
            message,
            generation,
            input.now,
        );
        out.requeue = Some(WAIT);
        return out;
    }
    let mut released = exp.clone();
    released.metadata.uid = None; // no owner reference in the final objects
    let writes = match crate::plan::plan(&released, &Target::Final(arm.clone()), obs.mode, &obs.plan) {
        Ok(mut planned) => {
            release(&mut planned, &released);
            let gated = gate(&released, &planned, obs, true, input.routing_clock());
            if let Some(left) = gated.retry_in {
                // The restore still propagating: what can go now, the rest once it has.
                out.writes = gated.writes;
                out.requeue = Some(left);
                return out;
            }
            if gated.applied != Applied::Settled && gated.writes.is_empty() {
                out.requeue = Some(WAIT); // pods of the restored arm still starting
                return out;
            }
            gated.writes
        }
        // A spec that cannot be planned any more: the live routing itself goes to the arm, and
        // the live DestinationRule that holds its subsets (or the arms' Services) is released
        // with it.
        Err(_) => released_rule(obs)
            .into_iter()
            .chain(released_services(obs))
            .chain(restore_to(exp, obs, &arm, false).unwrap_or_default())
            .collect(),
    };
    if !writes.is_empty() {
        out.writes = writes;
        out.requeue = Some(WAIT); // the finalizer goes once the caches show the restore
        return out;
    }
    out.event(event::ROUTING_RESTORED, format!("all traffic to {arm} before deletion"), false);
    out.finalizer = Some(FinalizerChange::Remove);
    out
}

/// Whether the experiment ever wrote routing: our VirtualService or DestinationRule exists (Istio),
/// or it planned weights past its checks (native: the Service and replicas are people's own
/// objects, changed only once it started).
fn wrote_routing(input: &Input, status: &ExperimentStatus) -> bool {
    match input.obs.mode {
        Routing::Istio => {
            let uid = input.exp.metadata.uid.as_deref();
            let ours = |object: &Option<serde_json::Value>| {
                let owners = object.as_ref().and_then(|o| o.pointer("/metadata/ownerReferences")?.as_array().cloned());
                owners.unwrap_or_default().iter().any(|o| o["uid"].as_str() == uid)
            };
            // Released (owner dropped) by this deletion's own restore: still ours to finish.
            let started = !matches!(status.phase, None | Some(Phase::Pending));
            let exists = input.obs.live.virtual_service.is_some() || input.obs.live.destination_rule.is_some();
            ours(&input.obs.live.virtual_service) || ours(&input.obs.live.destination_rule) || (started && exists)
        }
        Routing::GatewayApi => {
            let uid = input.exp.metadata.uid.as_deref();
            let owned = |object: &serde_json::Value| {
                let owners = object.pointer("/metadata/ownerReferences").and_then(|o| o.as_array().cloned());
                owners.unwrap_or_default().iter().any(|o| o["uid"].as_str() == uid)
            };
            let live = &input.obs.live;
            let started = !matches!(status.phase, None | Some(Phase::Pending));
            let exists = live.http_route.is_some() || !live.arm_services.is_empty();
            live.http_route.iter().chain(live.arm_services.values()).any(owned) || (started && exists)
        }
        Routing::Native => !status.weights.is_empty(),
    }
}

/// Our live DestinationRule as it is, without the Experiment as owner; `None` when there is none
/// or it is released already. Garbage collection would otherwise take the subsets the restored
/// VirtualService routes to (503 for every request).
fn released_rule(obs: &Observation) -> Option<Action> {
    let live = obs.live.destination_rule.as_ref()?;
    let rule: DestinationRule = serde_json::from_value(live.clone()).ok()?;
    let released = DestinationRule { metadata: identity(&rule.metadata, Some(vec![])), spec: rule.spec, status: None };
    still_needed(live, Action::DestinationRule(Box::new(released))).pop()
}

/// The live arm Services, without the Experiment as owner, that still have it (Gateway API):
/// garbage collection would otherwise take the backends of the live route.
fn released_services(obs: &Observation) -> Vec<Action> {
    let release = |live: &serde_json::Value| {
        let service: Service = serde_json::from_value(live.clone()).ok()?;
        let released = Service {
            metadata: identity(&service.metadata, Some(vec![])),
            spec: service.spec.map(|spec| k8s_openapi::api::core::v1::ServiceSpec {
                selector: spec.selector,
                ports: spec.ports,
                ..Default::default()
            }),
            status: None,
        };
        Some(still_needed(live, Action::ArmService(Box::new(released))))
    };
    obs.live.arm_services.values().filter_map(release).flatten().collect()
}

/// Drops the Experiment as owner of the routing objects (an explicit empty list, so that
/// server-side apply removes the reference Forklane set). The Telemetry is not written: it stays
/// owned, and garbage collection removes it with the Experiment (nothing is analysed any more).
/// The routing left behind sets no cookie: nobody would ever take an expiry out of it, and no
/// route of it reads the sticky cookie.
fn release(planned: &mut Plan, exp: &Experiment) {
    let cookie = exp.spec.strategy.ab_test().and_then(|ab| ab.sticky.as_ref()).map(|s| s.cookie_name.as_str());
    planned.actions.retain(|action| !matches!(action, Action::Telemetry(_)));
    for action in &mut planned.actions {
        match action {
            Action::VirtualService(vs) => {
                if let Some(plain) = cookie.and_then(|name| without_cookie_expiry(vs, name)) {
                    **vs = plain;
                }
                vs.metadata.owner_references = Some(vec![]);
            }
            Action::DestinationRule(dr) => dr.metadata.owner_references = Some(vec![]),
            Action::HttpRoute(route) => {
                if let Some(plain) = cookie.and_then(|name| crate::plan::gateway::without_cookie_expiry(route, name)) {
                    **route = plain;
                }
                route.metadata.owner_references = Some(vec![]);
            }
            Action::ArmService(service) => service.metadata.owner_references = Some(vec![]),
            Action::Telemetry(_) | Action::ServiceSelector(_) | Action::Scale(_) | Action::RemoveArmServices(_) => {}
        }
    }
}
