//! Without a mesh: the Service's selector and each arm's Deployment replicas carry the traffic.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::api::{ExperimentSpec, Strategy, StrategyName};

use super::steps::{State, proportional};
use super::{Action, Observed, PlanError};

/// A change of a Service's selector: keys to set and keys to drop.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceSelector {
    pub service: String,
    pub namespace: Option<String>,
    pub set: BTreeMap<String, String>,
    pub remove: Vec<String>,
}

impl ServiceSelector {
    /// The server-side apply body (keys set; dropping keys needs the patch).
    pub(crate) fn object(&self) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata(&self.service, &self.namespace),
            "spec": {"selector": self.set},
        })
    }

    /// RFC 7386 merge patch: what `kubectl patch service NAME -p '...'` sends.
    pub(crate) fn merge_patch(&self) -> Value {
        let mut selector: serde_json::Map<String, Value> =
            self.set.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
        selector.extend(self.remove.iter().map(|k| (k.clone(), Value::Null)));
        json!({"spec": {"selector": selector}})
    }

    /// RFC 6902 JSON patch with the same effect (a `remove` fails where the key is absent).
    pub fn json_patch(&self) -> Value {
        let pointer = |k: &str| format!("/spec/selector/{}", k.replace('~', "~0").replace('/', "~1"));
        let adds = self.set.iter().map(|(k, v)| json!({"op": "add", "path": pointer(k), "value": v}));
        let removes = self.remove.iter().map(|k| json!({"op": "remove", "path": pointer(k)}));
        Value::Array(adds.chain(removes).collect())
    }

    /// The equivalent command, as the article writes it.
    pub(crate) fn kubectl(&self) -> String {
        format!("kubectl patch service {}{} -p '{}'", self.service, ns_flag(&self.namespace), self.merge_patch())
    }
}

/// A Deployment's replica count.
#[derive(Clone, Debug, PartialEq)]
pub struct Scale {
    pub deployment: String,
    pub namespace: Option<String>,
    pub replicas: i32,
}

impl Scale {
    pub(crate) fn object(&self) -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": metadata(&self.deployment, &self.namespace),
            "spec": {"replicas": self.replicas},
        })
    }

    /// The `autoscaling/v1` Scale applied to the Deployment's `scale` subresource: replicas are
    /// all the controller writes on Deployments, so it needs no `patch deployments` permission.
    pub(crate) fn scale_object(&self) -> Value {
        json!({
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": metadata(&self.deployment, &self.namespace),
            "spec": {"replicas": self.replicas},
        })
    }

    pub(crate) fn kubectl(&self) -> String {
        format!("kubectl scale deployment {}{} --replicas={}", self.deployment, ns_flag(&self.namespace), self.replicas)
    }
}

fn metadata(name: &str, namespace: &Option<String>) -> Value {
    match namespace {
        Some(ns) => json!({"name": name, "namespace": ns}),
        None => json!({"name": name}),
    }
}

fn ns_flag(namespace: &Option<String>) -> String {
    namespace.as_ref().map(|ns| format!(" -n {ns}")).unwrap_or_default()
}

/// Replicas per arm for a state: given by the strategy, or the weights applied to `total`.
pub(crate) fn replicas(spec: &ExperimentSpec, state: &State) -> Result<Vec<(String, i32)>, PlanError> {
    if let Some(r) = &state.replicas {
        return Ok(r.clone());
    }
    let total = match &spec.strategy {
        Strategy::Canary(c) => c.total_replicas,
        Strategy::AbTest(a) => a.total_replicas,
        _ => None,
    };
    let total = total
        .ok_or_else(|| PlanError::Invalid(vec!["spec.strategy: totalReplicas is required without a mesh".into()]))?;
    let weights: Vec<i32> = state.weights.iter().map(|(_, w)| *w).collect();
    let counts = proportional(&weights, total);
    Ok(state.weights.iter().map(|(a, _)| a.clone()).zip(counts).collect())
}

/// The native actions of one state: the Service selector first, then replica changes, growing
/// arms before shrinking ones so that capacity never dips below what the state needs.
pub(crate) fn actions(
    spec: &ExperimentSpec,
    namespace: &Option<String>,
    strategy: StrategyName,
    state: &State,
    observed: &Observed,
) -> Result<Vec<Action>, PlanError> {
    let service = spec.service.name.clone();
    if strategy == StrategyName::BlueGreen {
        let active = state.weights.iter().find(|(_, w)| *w == 100).map(|(a, _)| a.as_str());
        let arm = spec.arms.iter().find(|a| Some(a.name.as_str()) == active).expect("blue/green routes all to one arm");
        let selector =
            ServiceSelector { service, namespace: namespace.clone(), set: arm.selector.clone(), remove: vec![] };
        return Ok(vec![Action::ServiceSelector(selector)]);
    }
    let mut actions = vec![Action::ServiceSelector(shared_selector(spec, namespace))];
    let mut scales: Vec<(i32, Scale)> = Vec::new();
    for (arm_name, count) in replicas(spec, state)? {
        let arm = spec.arms.iter().find(|a| a.name == arm_name).expect("replicas are computed per arm");
        let deployment = arm.deployment.clone().ok_or_else(|| {
            PlanError::Invalid(vec![format!("spec.arms: arm {arm_name:?} needs a deployment without a mesh")])
        })?;
        let growth = count - observed.replicas.get(&arm_name).copied().unwrap_or(0);
        scales.push((growth, Scale { deployment, namespace: namespace.clone(), replicas: count }));
    }
    scales.sort_by_key(|(growth, _)| std::cmp::Reverse(*growth));
    actions.extend(scales.into_iter().map(|(_, s)| Action::Scale(s)));
    Ok(actions)
}

/// A selector that matches every arm: the keys on which the arms' selectors differ are dropped.
fn shared_selector(spec: &ExperimentSpec, namespace: &Option<String>) -> ServiceSelector {
    let first = &spec.arms[0].selector;
    let common: BTreeMap<String, String> = first
        .iter()
        .filter(|(k, v)| spec.arms.iter().all(|a| a.selector.get(*k) == Some(*v)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut remove: Vec<String> =
        spec.arms.iter().flat_map(|a| a.selector.keys().cloned()).filter(|k| !common.contains_key(k)).collect();
    remove.sort();
    remove.dedup();
    ServiceSelector { service: spec.service.name.clone(), namespace: namespace.clone(), set: common, remove }
}
