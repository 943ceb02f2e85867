//! With Istio: one DestinationRule (a subset per referenced arm) and one VirtualService, in a
//! make-before-break order, plus replica changes where the strategy moves pods.

use std::collections::{BTreeMap, BTreeSet};

use kube::api::ObjectMeta;
use kube::core::Resource;

use crate::api::Experiment;
use crate::istio::*;

use super::routing::{Matcher, RouteTable, route_table};
use super::steps::State;
use super::{Action, Observed, Scale};

pub(crate) const MANAGED_BY: &str = "forklane";
pub(crate) const EXPERIMENT_LABEL: &str = "forklane.io/experiment";

/// Name of the objects Forklane owns for an experiment.
pub(crate) fn object_name(exp: &Experiment) -> String {
    format!("{}-forklane", exp.metadata.name.as_deref().unwrap_or_default())
}

/// Actions in a safe order: pods up, subsets added, routes switched, subsets removed, pods down.
pub(crate) fn actions(exp: &Experiment, state: &State, observed: &Observed) -> Vec<Action> {
    let table = route_table(&exp.spec, state);
    let desired = table.referenced_arms();
    let vs = Action::VirtualService(Box::new(virtual_service(exp, &table)));
    let dr = |subsets: &BTreeSet<String>| Action::DestinationRule(Box::new(destination_rule(exp, subsets)));
    let (grow, shrink) = scales(exp, state, observed);
    let mut out: Vec<Action> = grow;
    match &observed.subsets {
        Some(current) if !current.is_subset(&desired) => {
            if desired.is_subset(current) {
                out.extend([vs, dr(&desired)]);
            } else {
                // Both added and removed subsets: the union first, so that neither routing is ever
                // without its subsets.
                let union = current.union(&desired).cloned().collect();
                out.extend([dr(&union), vs, dr(&desired)]);
            }
        }
        _ => out.extend([dr(&desired), vs]),
    }
    out.extend(shrink);
    out
}

/// Replica changes of the state (recreate, rolling update): growing arms, then shrinking ones.
fn scales(exp: &Experiment, state: &State, observed: &Observed) -> (Vec<Action>, Vec<Action>) {
    let (mut grow, mut shrink) = (Vec::new(), Vec::new());
    for (arm, replicas) in state.replicas.iter().flatten() {
        let Some(deployment) = exp.spec.arms.iter().find(|a| &a.name == arm).and_then(|a| a.deployment.clone()) else {
            continue;
        };
        let scale = Action::Scale(Scale { deployment, namespace: exp.metadata.namespace.clone(), replicas: *replicas });
        if *replicas >= observed.replicas.get(arm).copied().unwrap_or(0) {
            grow.push(scale);
        } else {
            shrink.push(scale);
        }
    }
    (grow, shrink)
}

fn metadata(exp: &Experiment) -> ObjectMeta {
    let name = exp.metadata.name.clone().unwrap_or_default();
    ObjectMeta {
        name: Some(object_name(exp)),
        namespace: exp.metadata.namespace.clone(),
        labels: Some(BTreeMap::from([
            ("app.kubernetes.io/managed-by".to_string(), MANAGED_BY.to_string()),
            (EXPERIMENT_LABEL.to_string(), name),
        ])),
        // Only a stored Experiment has a uid; offline renders carry no owner.
        owner_references: exp.controller_owner_ref(&()).map(|r| vec![r]),
        ..Default::default()
    }
}

pub(crate) fn destination_rule(exp: &Experiment, subsets: &BTreeSet<String>) -> DestinationRule {
    let subsets = exp
        .spec
        .arms
        .iter()
        .filter(|a| subsets.contains(&a.name))
        .map(|a| DestinationRuleSubsets {
            name: a.name.clone(),
            labels: Some(a.selector.clone()),
            ..Default::default()
        })
        .collect();
    DestinationRule {
        metadata: metadata(exp),
        spec: DestinationRuleSpec { host: exp.spec.service.name.clone(), subsets: Some(subsets), ..Default::default() },
        status: None,
    }
}

pub(crate) fn virtual_service(exp: &Experiment, table: &RouteTable) -> VirtualService {
    let service = &exp.spec.service;
    let destination = |arm: &str| VirtualServiceHttpRouteDestination {
        host: service.name.clone(),
        subset: Some(arm.to_string()),
        port: service.port.map(|p| VirtualServiceHttpRouteDestinationPort { number: Some(i64::from(p)) }),
    };
    let http = table
        .routes
        .iter()
        .map(|route| {
            let matches = (!route.headers.is_empty()).then(|| {
                let headers = route.headers.iter().map(|(name, m)| (name.clone(), header_match(m))).collect();
                vec![VirtualServiceHttpMatch { headers: Some(headers), ..Default::default() }]
            });
            let destinations = route
                .destinations
                .iter()
                .map(|d| VirtualServiceHttpRoute {
                    destination: destination(&d.arm),
                    weight: Some(d.weight),
                    headers: d.set_cookie.as_ref().map(|cookie| VirtualServiceHttpRouteHeaders {
                        response: Some(VirtualServiceHttpRouteHeadersResponse {
                            add: Some(BTreeMap::from([("set-cookie".to_string(), cookie.clone())])),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                })
                .collect();
            // Copies to the mirror arm make no sense on a route that already goes only there.
            let mirror = table.mirror.as_ref().filter(|(arm, _)| !route.destinations.iter().all(|d| &d.arm == arm));
            VirtualServiceHttp {
                name: Some(route.name.clone()),
                r#match: matches,
                route: Some(destinations),
                mirror: mirror.map(|(arm, _)| VirtualServiceHttpMirror {
                    host: service.name.clone(),
                    subset: Some(arm.clone()),
                    port: service.port.map(|p| VirtualServiceHttpMirrorPort { number: Some(i64::from(p)) }),
                }),
                mirror_percentage: mirror
                    .map(|(_, percent)| VirtualServiceHttpMirrorPercentage { value: Some(*percent) }),
                ..Default::default()
            }
        })
        .collect();
    VirtualService {
        metadata: metadata(exp),
        spec: VirtualServiceSpec {
            hosts: Some(service.hosts()),
            gateways: service.gateways.clone(),
            http: Some(http),
            ..Default::default()
        },
        status: None,
    }
}

fn header_match(m: &Matcher) -> VirtualServiceHttpMatchHeaders {
    let mut out = VirtualServiceHttpMatchHeaders::default();
    match m {
        Matcher::Exact(v) => out.exact = Some(v.clone()),
        Matcher::Prefix(v) => out.prefix = Some(v.clone()),
        Matcher::Regex(v) => out.regex = Some(v.clone()),
    }
    out
}
