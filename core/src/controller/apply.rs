//! Applies a plan in its order with server-side apply (field manager `forklane`), refusing to take
//! any step that would route traffic to pods that are not ready: make-before-break is checked
//! here against observed readiness, not assumed.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::Value;

use crate::api::Experiment;
use crate::istio::{DestinationRule, VirtualService};
use crate::plan::{Action, Plan};

use super::error::Result;
use super::observe::{Observation, referenced_subsets};

pub(crate) const FIELD_MANAGER: &str = "forklane";

/// How far a plan got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Applied {
    /// Every object written and every arm it routes to or scales is ready.
    Settled,
    /// Stopped before an unsafe step, or written but pods are still starting.
    Waiting(String),
}

fn params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// Applies `plan`; `writes` counts the objects written (for tests and metrics).
pub(crate) async fn apply(
    client: &Client,
    exp: &Experiment,
    namespace: &str,
    plan: &Plan,
    obs: &Observation,
    writes: &mut u32,
) -> Result<Applied> {
    let ready = |arm: &str| obs.pods.get(arm).map(|p| p.ready).unwrap_or(0);
    let arm_of_deployment =
        |name: &str| exp.spec.arms.iter().find(|a| a.deployment.as_deref() == Some(name)).map(|a| a.name.clone());
    // Replicas this plan sets per arm; arms it does not shrink must be serving before any shrink.
    let scaled: BTreeMap<String, i32> = plan
        .actions
        .iter()
        .filter_map(|a| {
            if let Action::Scale(s) = a {
                Some((arm_of_deployment(&s.deployment).unwrap_or_default(), s.replicas))
            } else {
                None
            }
        })
        .collect();
    let kept: Vec<(&String, &i32)> =
        scaled.iter().filter(|(arm, want)| **want >= obs.plan.replicas.get(*arm).copied().unwrap_or(0)).collect();
    for action in &plan.actions {
        match action {
            Action::DestinationRule(dr) => {
                let api: Api<DestinationRule> = Api::namespaced(client.clone(), namespace);
                api.patch(&dr.name_any(), &params(), &Patch::Apply(typed(dr.as_ref())?)).await?;
            }
            Action::VirtualService(vs) => {
                // A subset the live routes do not use yet gets traffic only once it has ready pods.
                for subset in referenced_subsets(vs).difference(&obs.routed_subsets) {
                    if ready(subset) == 0 {
                        return Ok(Applied::Waiting(format!(
                            "waiting for ready pods of arm {subset} before routing to it"
                        )));
                    }
                }
                let api: Api<VirtualService> = Api::namespaced(client.clone(), namespace);
                api.patch(&vs.name_any(), &params(), &Patch::Apply(typed(vs.as_ref())?)).await?;
            }
            Action::ServiceSelector(s) => {
                if let Some(arm) = exp.spec.arms.iter().find(|a| a.selector == s.set) {
                    let wanted = obs.plan.replicas.get(&arm.name).copied().unwrap_or(1).max(1);
                    if ready(&arm.name) < wanted {
                        return Ok(Applied::Waiting(format!(
                            "waiting for {wanted} ready pods of arm {} before switching the Service",
                            arm.name
                        )));
                    }
                }
                let api: Api<Service> = Api::namespaced(client.clone(), namespace);
                api.patch(&s.service, &params(), &Patch::Apply(s.object())).await?;
                if !s.remove.is_empty() {
                    // Selector keys owned by someone else cannot be dropped by apply; a merge patch can.
                    api.patch(&s.service, &PatchParams::default(), &Patch::Merge(s.merge_patch())).await?;
                }
            }
            Action::Scale(s) => {
                let arm = arm_of_deployment(&s.deployment).unwrap_or_default();
                let current = obs.plan.replicas.get(&arm).copied().unwrap_or(0);
                if s.replicas < current
                    && let Some((arm, want)) = kept.iter().find(|(arm, want)| ready(arm) < **want)
                {
                    return Ok(Applied::Waiting(format!(
                        "waiting for {want} ready pods of arm {arm} before scaling down"
                    )));
                }
                let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
                api.patch(&s.deployment, &params(), &Patch::Apply(s.object())).await?;
            }
        }
        *writes += 1;
    }
    for (arm, want) in &scaled {
        let pods = obs.pods.get(arm).cloned().unwrap_or_default();
        if pods.ready != *want || (*want == 0 && pods.existing > 0) {
            return Ok(Applied::Waiting(format!(
                "arm {arm}: {} of {want} pods ready ({} exist)",
                pods.ready, pods.existing
            )));
        }
    }
    Ok(Applied::Settled)
}

fn typed<T: serde::Serialize>(obj: &T) -> Result<Value> {
    Ok(serde_json::to_value(obj)?)
}
