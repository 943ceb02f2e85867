//! Reads what the cluster holds for one experiment: the routing mode, the live routing objects,
//! each arm's replicas and ready pods, competing VirtualServices and the policies that apply.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

use crate::api::{Experiment, RolloutPolicy, Routing, defaults};
use crate::istio::{DestinationRule, VirtualService};
use crate::plan::Observed;
use crate::plan::istio::object_name;

use super::error::Result;

pub(crate) const ISTIO_GROUP: &str = "networking.istio.io";

/// Pods of one arm.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct ArmPods {
    /// Pods matching the arm's selector, terminating ones included.
    pub existing: i32,
    /// Ready pods that are not terminating.
    pub ready: i32,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Observation {
    pub mode: Option<Routing>,
    pub plan: Observed,
    /// Subsets referenced by the live VirtualService.
    pub routed_subsets: BTreeSet<String>,
    pub pods: BTreeMap<String, ArmPods>,
    /// Other VirtualServices that claim one of our hosts.
    pub conflicts: Vec<String>,
    pub policies: Vec<RolloutPolicy>,
    pub namespace_labels: BTreeMap<String, String>,
}

/// Whether Istio's networking API is served (the mesh is installed).
pub(crate) async fn istio_installed(client: &Client) -> Result<bool> {
    let groups = client.list_api_groups().await?;
    Ok(groups.groups.iter().any(|g| g.name == ISTIO_GROUP))
}

/// The routing mode: `spec.mesh`, or for `auto` the mode recorded at start, or discovery.
pub(crate) async fn mode(client: &Client, exp: &Experiment) -> Result<Routing> {
    let recorded = exp.status.as_ref().and_then(|s| s.mesh);
    Ok(match exp.spec.mesh.resolve(recorded) {
        Some(routing) => routing,
        None if istio_installed(client).await? => Routing::Istio,
        None => Routing::Native,
    })
}

pub(crate) async fn observe(client: &Client, exp: &Experiment, namespace: &str) -> Result<Observation> {
    let mode = mode(client, exp).await?;
    let mut obs = Observation { mode: Some(mode), ..Default::default() };
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    for arm in &exp.spec.arms {
        if let Some(name) = &arm.deployment
            && let Some(d) = deployments.get_opt(name).await?
        {
            let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(defaults::DEPLOYMENT_REPLICAS);
            obs.plan.replicas.insert(arm.name.clone(), replicas);
        }
        let selector = arm.selector.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
        let list = pods.list(&ListParams::default().labels(&selector)).await?;
        let ready =
            list.items.iter().filter(|p| p.metadata.deletion_timestamp.is_none() && pod_ready(p)).count() as i32;
        obs.pods.insert(arm.name.clone(), ArmPods { existing: list.items.len() as i32, ready });
    }
    if mode == Routing::Istio {
        let ours = object_name(exp);
        let drs: Api<DestinationRule> = Api::namespaced(client.clone(), namespace);
        if let Some(dr) = drs.get_opt(&ours).await? {
            obs.plan.subsets = Some(dr.spec.subsets.iter().flatten().map(|s| s.name.clone()).collect());
        }
        let vss: Api<VirtualService> = Api::namespaced(client.clone(), namespace);
        let hosts: BTreeSet<String> = exp.spec.service.hosts().into_iter().collect();
        for vs in vss.list(&ListParams::default()).await?.items {
            if vs.name_any() == ours {
                obs.routed_subsets = referenced_subsets(&vs);
            } else if vs.spec.hosts.iter().flatten().any(|h| hosts.contains(h)) {
                obs.conflicts.push(format!("VirtualService {namespace}/{}", vs.name_any()));
            }
        }
    }
    obs.policies = Api::<RolloutPolicy>::all(client.clone()).list(&ListParams::default()).await?.items;
    if let Some(ns) = Api::<Namespace>::all(client.clone()).get_opt(namespace).await? {
        obs.namespace_labels = ns.metadata.labels.unwrap_or_default();
    }
    obs.namespace_labels.entry("kubernetes.io/metadata.name".into()).or_insert_with(|| namespace.to_string());
    Ok(obs)
}

pub(crate) fn referenced_subsets(vs: &VirtualService) -> BTreeSet<String> {
    let http = vs.spec.http.iter().flatten();
    http.flat_map(|h| {
        let routes = h.route.iter().flatten().filter_map(|r| r.destination.subset.clone());
        routes.chain(h.mirror.as_ref().and_then(|m| m.subset.clone())).collect::<Vec<_>>()
    })
    .collect()
}

fn pod_ready(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}
