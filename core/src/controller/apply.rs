//! Turns a plan into the writes to make, and makes them. [`gate`] is pure: it walks the plan in its
//! make-before-break order, stops before any step that would route traffic to, or scale down
//! toward, pods that are not ready (checked against observed readiness, not assumed), and keeps
//! only the objects that differ from what the cluster holds, so a settled experiment writes
//! nothing. [`write`] applies them with server-side apply (field manager `forklane`).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::Value;

use crate::api::Experiment;
use crate::gateway::HttpRoute;
use crate::istio::{DestinationRule, Telemetry, VirtualService};
use crate::plan::gateway;
use crate::plan::{Action, Plan};

use super::error::{Error, Result};
use super::health::weights;
use super::observe::{Leftovers, Observation};
use super::settle::{Hold, RoutingClock, hold, is_routing};

pub(crate) const FIELD_MANAGER: &str = "forklane";

/// How far a plan got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Applied {
    /// Every object is as planned and every arm it routes to or scales is ready.
    Settled,
    /// Stopped before an unsafe step, or written but pods are still starting.
    Waiting(String),
    /// Stopped before a write that relies on an earlier routing change reaching every proxy: a
    /// bounded, expected pause, not a wait the progress deadline counts.
    Propagating(String),
}

/// The writes to make now, in order, and whether the plan is then fully in place.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Gated {
    pub writes: Vec<Action>,
    pub applied: Applied,
    /// A write waits for the last routing change to propagate: look again after this long.
    pub retry_in: Option<Duration>,
}

/// Whether `live` already holds every field of `wanted` (objects compared key by key, lists and
/// values exactly): server-side apply of `wanted` would change nothing Forklane owns. An empty
/// list or object (`ownerReferences: []` releasing an owner) is held by an absent field.
pub(crate) fn holds(live: &Value, wanted: &Value) -> bool {
    let empty = |v: &Value| match v {
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        other => other.is_null(),
    };
    match (live, wanted) {
        (Value::Object(l), Value::Object(w)) => w.iter().all(|(k, v)| match l.get(k) {
            Some(lv) => holds(lv, v) || (empty(v) && empty(lv)),
            None => empty(v),
        }),
        _ => live == wanted,
    }
}

fn in_place(action: &Action, obs: &Observation) -> bool {
    let live = match action {
        Action::Telemetry(_) => obs.live.telemetry.as_ref(),
        Action::VirtualService(_) => obs.live.virtual_service.as_ref(),
        Action::DestinationRule(_) => obs.live.destination_rule.as_ref(),
        Action::HttpRoute(_) => obs.live.http_route.as_ref(),
        Action::ArmService(s) => s.metadata.name.as_ref().and_then(|name| obs.live.arm_services.get(name)),
        Action::RemoveArmServices(r) => {
            return r.services.iter().all(|(_, name)| !obs.live.arm_services.contains_key(name));
        }
        Action::ServiceSelector(s) => {
            let selector = obs.live.service.as_ref().and_then(|svc| svc.pointer("/spec/selector"));
            if s.remove.iter().any(|k| selector.and_then(|sel| sel.get(k)).is_some()) {
                return false;
            }
            obs.live.service.as_ref()
        }
        Action::Scale(s) => obs.live.deployments.get(&s.deployment),
    };
    live.is_some_and(|live| holds(live, &action.object()))
}

/// `detoured`: the plan moves traffic away from an arm without pods; the arm that takes it needs
/// one ready pod, not all of them (a step would wait for all). A write that relies on an earlier
/// routing change having reached every proxy waits for it (`settle`).
pub(crate) fn gate(exp: &Experiment, plan: &Plan, obs: &Observation, detoured: bool, clock: RoutingClock) -> Gated {
    let ready = |arm: &str| obs.ready(arm);
    // The ready pods an arm needs before a step raises its weight: its Deployment's replicas.
    let required = |arm: &str| if detoured { 1 } else { obs.plan.replicas.get(arm).copied().unwrap_or(1).max(1) };
    let live_weights = live_weights(exp, obs);
    let arm_of_deployment =
        |name: &str| exp.spec.arms.iter().find(|a| a.deployment.as_deref() == Some(name)).map(|a| a.name.clone());
    // Replicas this plan sets per arm; arms it does not shrink must be serving before any shrink.
    let scaled: BTreeMap<String, i32> = plan
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Scale(s) => Some((arm_of_deployment(&s.deployment).unwrap_or_default(), s.replicas)),
            _ => None,
        })
        .collect();
    let kept: Vec<(&String, &i32)> =
        scaled.iter().filter(|(arm, want)| **want >= obs.plan.replicas.get(*arm).copied().unwrap_or(0)).collect();
    let mut writes: Vec<Action> = Vec::new();
    let waiting = |writes, why: String| Gated { writes, applied: Applied::Waiting(why), retry_in: None };
    for action in &plan.actions {
        // A Scale that lowers its arm's replicas.
        let shrinks = match action {
            Action::Scale(s) => {
                let arm = arm_of_deployment(&s.deployment).unwrap_or_default();
                s.replicas < obs.plan.replicas.get(&arm).copied().unwrap_or(0)
            }
            _ => false,
        };
        let unsafe_step = match action {
            // A subset (or an arm's Service, whose endpoints are the arm's ready pods) the live
            // routes do not use yet gets traffic only once it has ready pods, and a step raises an
            // arm's weight only once all its pods are ready.
            Action::VirtualService(_) | Action::HttpRoute(_) => {
                let planned = planned_weights(exp, action);
                let new = planned.keys().filter(|arm| !obs.routed_subsets.contains(*arm)).cloned();
                let raised = planned
                    .iter()
                    .filter(|(arm, w)| **w > live_weights.get(*arm).copied().unwrap_or(0))
                    .map(|(arm, _)| arm.clone());
                let mut arms: Vec<String> = new.chain(raised).collect();
                arms.dedup();
                arms.into_iter().find(|arm| ready(arm) < required(arm)).map(|arm| {
                    format!("waiting for {} ready pods of arm {arm} before routing more traffic to it", required(&arm))
                })
            }
            Action::ServiceSelector(s) => exp.spec.arms.iter().find(|a| a.selector == s.set).and_then(|arm| {
                let wanted = obs.plan.replicas.get(&arm.name).copied().unwrap_or(1).max(1);
                (ready(&arm.name) < wanted).then(|| {
                    format!("waiting for {wanted} ready pods of arm {} before switching the Service", arm.name)
                })
            }),
            Action::Scale(_) if shrinks => kept
                .iter()
                .find(|(arm, want)| ready(arm) < **want)
                .map(|(arm, want)| format!("waiting for {want} ready pods of arm {arm} before scaling down")),
            Action::Scale(_)
            | Action::DestinationRule(_)
            | Action::Telemetry(_)
            | Action::ArmService(_)
            | Action::RemoveArmServices(_) => None,
        };
        if let Some(why) = unsafe_step {
            return waiting(writes, why);
        }
        if in_place(action, obs) {
            continue;
        }
        let routed_before = writes.iter().any(is_routing);
        if let Some(Hold { why, left }) = hold(exp, action, obs, clock, routed_before, shrinks) {
            return Gated { writes, applied: Applied::Propagating(why), retry_in: Some(left) };
        }
        writes.push(action.clone());
    }
    for (arm, want) in &scaled {
        let pods = obs.pods.get(arm).cloned().unwrap_or_default();
        if pods.ready != *want || (*want == 0 && pods.existing > 0) {
            return waiting(
                writes,
                format!("arm {arm}: {} of {want} pods ready ({} exist)", pods.ready, pods.existing),
            );
        }
    }
    // Every step is safe and every scaled arm is ready: in place once these writes succeed.
    Gated { writes, applied: Applied::Settled, retry_in: None }
}

/// The weight a routing write (VirtualService or HTTPRoute) gives each arm it names, mirrors
/// included; empty for any other write.
fn planned_weights(exp: &Experiment, action: &Action) -> BTreeMap<String, i32> {
    match action {
        Action::VirtualService(vs) => weights(vs),
        Action::HttpRoute(route) => gateway::weights(exp, route),
        _ => BTreeMap::new(),
    }
}

/// The weights the live routes give each arm (VirtualService or HTTPRoute).
fn live_weights(exp: &Experiment, obs: &Observation) -> BTreeMap<String, i32> {
    let vs = obs.live.virtual_service.as_ref().and_then(|v| serde_json::from_value::<VirtualService>(v.clone()).ok());
    let route = obs.live.http_route.as_ref().and_then(|r| serde_json::from_value::<HttpRoute>(r.clone()).ok());
    match (vs, route) {
        (Some(vs), _) => weights(&vs),
        (None, Some(route)) => gateway::weights(exp, &route),
        (None, None) => BTreeMap::new(),
    }
}

fn params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// Server-side apply of `action`'s object. Apply creates what does not exist, so a 404 means the
/// resource itself is unknown: its API is not installed (`missing` says which).
async fn apply_installed<K>(api: &Api<K>, name: &str, action: &Action, missing: Error) -> Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.patch(name, &params(), &Patch::Apply(action.object())).await {
        Err(kube::Error::Api(status)) if status.code == 404 => Err(missing),
        Err(other) => Err(other.into()),
        Ok(_) => Ok(()),
    }
}

/// Applies the gated writes in order; returns how many objects were written.
pub(crate) async fn write(client: &Client, namespace: &str, writes: &[Action]) -> Result<u32> {
    for action in writes {
        match action {
            // Istio without its Telemetry API.
            Action::Telemetry(t) => {
                let api: Api<Telemetry> = Api::namespaced(client.clone(), namespace);
                apply_installed(&api, &t.name_any(), action, Error::NoTelemetryApi).await?;
            }
            Action::DestinationRule(dr) => {
                let api: Api<DestinationRule> = Api::namespaced(client.clone(), namespace);
                api.patch(&dr.name_any(), &params(), &Patch::Apply(action.object())).await?;
            }
            Action::VirtualService(vs) => {
                let api: Api<VirtualService> = Api::namespaced(client.clone(), namespace);
                api.patch(&vs.name_any(), &params(), &Patch::Apply(action.object())).await?;
            }
            Action::ArmService(s) => {
                let api: Api<Service> = Api::namespaced(client.clone(), namespace);
                api.patch(&s.name_any(), &params(), &Patch::Apply(action.object())).await?;
            }
            // No Gateway API in this cluster.
            Action::HttpRoute(r) => {
                let api: Api<HttpRoute> = Api::namespaced(client.clone(), namespace);
                apply_installed(&api, &r.name_any(), action, Error::NoGatewayApi).await?;
            }
            Action::RemoveArmServices(r) => {
                let api: Api<Service> = Api::namespaced(client.clone(), namespace);
                for (_, name) in &r.services {
                    gone(api.delete(name, &DeleteParams::default()).await.map(drop))?;
                }
            }
            Action::ServiceSelector(s) => {
                let api: Api<Service> = Api::namespaced(client.clone(), namespace);
                api.patch(&s.service, &params(), &Patch::Apply(s.object())).await?;
                if !s.remove.is_empty() {
                    // Selector keys owned by someone else cannot be dropped by apply; a merge patch can.
                    let ours = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
                    api.patch(&s.service, &ours, &Patch::Merge(s.merge_patch())).await?;
                }
            }
            Action::Scale(s) => {
                let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
                api.patch_scale(&s.deployment, &params(), &Patch::Apply(s.scale_object())).await?;
            }
        }
    }
    Ok(writes.len() as u32)
}

/// Deletes routing objects an earlier, deleted experiment left for the same host (which, and
/// when, `decide` says).
pub(crate) async fn remove_leftovers(client: &Client, namespace: &str, leftovers: &Leftovers) -> Result<u32> {
    let vss: Api<VirtualService> = Api::namespaced(client.clone(), namespace);
    let drs: Api<DestinationRule> = Api::namespaced(client.clone(), namespace);
    let routes: Api<HttpRoute> = Api::namespaced(client.clone(), namespace);
    for name in &leftovers.virtual_services {
        gone(vss.delete(name, &DeleteParams::default()).await.map(drop))?;
    }
    for name in &leftovers.destination_rules {
        gone(drs.delete(name, &DeleteParams::default()).await.map(drop))?;
    }
    for name in &leftovers.http_routes {
        gone(routes.delete(name, &DeleteParams::default()).await.map(drop))?;
    }
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    for name in &leftovers.services {
        gone(services.delete(name, &DeleteParams::default()).await.map(drop))?;
    }
    Ok(leftovers.len() as u32)
}

/// A write's result, where "already gone" (404) is success.
pub(crate) fn gone(result: kube::Result<()>) -> Result<()> {
    match result {
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        other => Ok(other?),
    }
}
