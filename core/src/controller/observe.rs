//! What the cluster holds for one experiment, read from the watch-fed caches ([`World`]) and never
//! from the API server: the routing mode, the live routing objects, each arm's replicas and ready
//! pods, competing VirtualServices and the policies that apply. Pure over the caches.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};
use serde_json::Value;

use crate::api::{Experiment, RolloutPolicy, Routing, defaults};
use crate::gateway::HttpRoute;
use crate::istio::VirtualService;
use crate::plan::Observed;
use crate::plan::gateway::{
    ARM_LABEL, COHORT_LABEL, arm_services, cohort_service_name, parent_refs, referenced_arms, service_names, service_of,
};
use crate::plan::istio::{object_name, telemetry_name};
use crate::plan::routing::Cohort;

use super::distribution::{self, Distribution};
use super::world::{HTTPROUTE_CRD, ISTIO_VIRTUAL_SERVICE_CRD, World};

/// Pods of one arm.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct ArmPods {
    /// Pods matching the arm's selector, terminating ones included.
    pub existing: i32,
    /// Ready pods that are not terminating.
    pub ready: i32,
}

/// The objects Forklane writes, as they are now (JSON), to write only what differs.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Live {
    pub virtual_service: Option<Value>,
    pub destination_rule: Option<Value>,
    /// The Telemetry that labels the experiment's requests by cohort.
    pub telemetry: Option<Value>,
    pub service: Option<Value>,
    /// Our HTTPRoute (Gateway API).
    pub http_route: Option<Value>,
    /// The arms' Services (Gateway API), by name.
    pub arm_services: BTreeMap<String, Value>,
    /// Deployments by name.
    pub deployments: BTreeMap<String, Value>,
}

#[derive(Clone, Debug)]
pub(crate) struct Observation {
    pub mode: Routing,
    pub plan: Observed,
    /// Subsets referenced by the live VirtualService, or arms whose Services the live HTTPRoute
    /// names.
    pub routed_subsets: BTreeSet<String>,
    /// Services the live HTTPRoute names, backends and mirrors (Gateway API).
    pub routed_services: BTreeSet<String>,
    pub pods: BTreeMap<String, ArmPods>,
    /// Other VirtualServices that claim one of our hosts, other HTTPRoutes on our parent that
    /// route our Service, and Services of another owner with an arm Service's name.
    pub conflicts: Vec<String>,
    /// Routing objects a deleted experiment left in place for one of our hosts: removed once our
    /// own routing is in place (see `decide::live::leftovers_to_remove`).
    pub leftovers: Leftovers,
    /// What the mesh reports of our VirtualService's and our DestinationRule's distribution.
    pub distribution: Distributions,
    pub policies: Vec<RolloutPolicy>,
    pub namespace_labels: BTreeMap<String, String>,
    pub live: Live,
    /// The pod template revision of each arm's Deployment ([`revision`]).
    pub revisions: BTreeMap<String, String>,
}

/// What the mesh reports of our routing objects reaching its proxies.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Distributions {
    /// Our VirtualService (routes).
    pub routes: Distribution,
    /// Our DestinationRule (subsets).
    pub subsets: Distribution,
}

/// Routing objects that deleted experiments left for a host, by kind and name.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Leftovers {
    pub virtual_services: Vec<String>,
    pub destination_rules: Vec<String>,
    pub http_routes: Vec<String>,
    /// Arm Services (Gateway API) of arms this experiment does not have; those of arms it has, it
    /// takes over.
    pub services: Vec<String>,
}

impl Leftovers {
    pub(crate) fn is_empty(&self) -> bool {
        !self.has_routes() && !self.has_destinations()
    }

    /// VirtualServices or HTTPRoutes: what proxies route by.
    pub(crate) fn has_routes(&self) -> bool {
        !self.virtual_services.is_empty() || !self.http_routes.is_empty()
    }

    /// DestinationRules or arm Services: what those routes send to.
    pub(crate) fn has_destinations(&self) -> bool {
        !self.destination_rules.is_empty() || !self.services.is_empty()
    }

    /// The routes alone, to remove first.
    pub(crate) fn routes(&self) -> Leftovers {
        Leftovers {
            virtual_services: self.virtual_services.clone(),
            http_routes: self.http_routes.clone(),
            ..Default::default()
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.virtual_services.len() + self.destination_rules.len() + self.http_routes.len() + self.services.len()
    }
}

impl Observation {
    pub(crate) fn ready(&self, arm: &str) -> i32 {
        self.pods.get(arm).map_or(0, |p| p.ready)
    }
}

/// The routing mode: `spec.routing.provider` or `spec.mesh`, or for `auto` the mode recorded at
/// start, or what is installed and in use: the Gateway API where the Service already has an
/// HTTPRoute or a waypoint, else Istio where it is installed, else native.
pub(crate) fn mode(world: &World, exp: &Experiment) -> Routing {
    let recorded = exp.status.as_ref().and_then(|s| s.mesh);
    match exp.spec.requested_routing().resolve(recorded) {
        Some(routing) => routing,
        None if gateway_api_in_use(world, exp) => Routing::GatewayApi,
        None if world.istio_installed() => Routing::Istio,
        None => Routing::Native,
    }
}

/// Istio ambient's label that sends a Service's (or a namespace's) traffic through a waypoint.
const USE_WAYPOINT: &str = "istio.io/use-waypoint";

/// Whether the experiment's Service is already routed by the Gateway API: an HTTPRoute attached to
/// it (GAMMA) or a waypoint for it or its namespace.
fn gateway_api_in_use(world: &World, exp: &Experiment) -> bool {
    let Some(namespace) = exp.metadata.namespace.as_deref() else { return false };
    let service = &exp.spec.service.name;
    let attached =
        world.gateway_api_installed() && world.http_routes(namespace).iter().any(|r| attached_to_service(r, service));
    let labelled = |labels: Option<&BTreeMap<String, String>>| labels.is_some_and(|l| l.contains_key(USE_WAYPOINT));
    let waypoint = world.service(namespace, service).is_some_and(|s| labelled(s.metadata.labels.as_ref()))
        || labelled(Some(&world.namespace_labels(namespace)));
    attached || (world.gateway_api_installed() && waypoint)
}

/// Whether `route` attaches to the Service `service` (GAMMA).
fn attached_to_service(route: &HttpRoute, service: &str) -> bool {
    route.spec.parent_refs.iter().flatten().any(|p| {
        p.kind.as_deref() == Some("Service")
            && p.group.as_deref().is_none_or(|g| g.is_empty() || g == "core")
            && p.name == service
    })
}

/// Whether the routing mode is still to be chosen from what is installed (`mesh: auto`, nothing
/// recorded yet): the first status write records it for good, so it must not come from a cache
/// that has not yet seen a CRD created just before the experiment.
pub(crate) fn mode_unsettled(exp: &Experiment) -> bool {
    exp.spec.requested_routing().resolve(exp.status.as_ref().and_then(|s| s.mesh)).is_none()
}

/// The CRDs that would change what `auto` chooses over `mode` but that the cache does not have:
/// Istio's while it chooses native, the Gateway API's HTTPRoute while it chooses another.
pub(crate) fn uncached_crds(world: &World, mode: Routing) -> Vec<&'static str> {
    let istio = (mode == Routing::Native && !world.istio_installed()).then_some(ISTIO_VIRTUAL_SERVICE_CRD);
    let gateway_api = (mode != Routing::GatewayApi && !world.gateway_api_installed()).then_some(HTTPROUTE_CRD);
    istio.into_iter().chain(gateway_api).collect()
}

fn json<T: serde::Serialize>(obj: &T) -> Option<Value> {
    serde_json::to_value(obj).ok()
}

pub(crate) fn observe(world: &World, exp: &Experiment, namespace: &str) -> Observation {
    let mode = mode(world, exp);
    let mut plan = Observed::default();
    let mut pods = BTreeMap::new();
    let mut live = Live::default();
    let mut revisions = BTreeMap::new();
    for arm in &exp.spec.arms {
        if let Some(name) = &arm.deployment
            && let Some(d) = world.deployment(namespace, name)
        {
            let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(defaults::DEPLOYMENT_REPLICAS);
            plan.replicas.insert(arm.name.clone(), replicas);
            live.deployments.extend(json(d.as_ref()).map(|v| (name.clone(), v)));
            if let Some(template) = d.spec.as_ref().and_then(|s| json(&s.template)) {
                revisions.insert(arm.name.clone(), revision(&template));
            }
        }
        let matching = world.pods_matching(namespace, &arm.selector);
        let ready = matching.iter().filter(|p| p.metadata.deletion_timestamp.is_none() && pod_ready(p)).count() as i32;
        if ready > 0 && ready >= plan.replicas.get(&arm.name).copied().unwrap_or(1) {
            plan.serving.insert(arm.name.clone());
        }
        pods.insert(arm.name.clone(), ArmPods { existing: matching.len() as i32, ready });
    }
    live.service = world.service(namespace, &exp.spec.service.name).and_then(|s| json(s.as_ref()));
    let mut routed_subsets = BTreeSet::new();
    let mut routed_services = BTreeSet::new();
    let mut conflicts = Vec::new();
    let mut leftovers = Leftovers::default();
    let mut distribution = Distributions::default();
    if mode == Routing::Istio {
        let ours = object_name(exp);
        let virtual_services = world.virtual_services(namespace);
        let dr = world.destination_rule(namespace, &ours);
        let mesh_reports = world.mesh_reports();
        if let Some(dr) = dr {
            plan.subsets = Some(dr.spec.subsets.iter().flatten().map(|s| s.name.clone()).collect());
            live.destination_rule = json(dr.as_ref());
            distribution.subsets = distribution::of_destination_rule(&dr, mesh_reports);
        }
        live.telemetry = world.telemetry(namespace, &telemetry_name(exp)).and_then(|t| json(t.as_ref()));
        let hosts: BTreeSet<String> = exp.spec.service.hosts().into_iter().collect();
        for vs in virtual_services {
            if vs.name_any() == ours {
                routed_subsets = referenced_subsets(&vs);
                live.virtual_service = json(vs.as_ref());
                distribution.routes = distribution::of_virtual_service(&vs, mesh_reports);
            } else if vs.spec.hosts.iter().flatten().any(|h| hosts.contains(h)) {
                if left_behind(vs.meta()) {
                    leftovers.virtual_services.push(vs.name_any());
                } else {
                    conflicts.push(format!("VirtualService {namespace}/{}", vs.name_any()));
                }
            }
        }
        let rules = world.destination_rules(namespace).into_iter().filter(|dr| dr.name_any() != ours);
        let left = rules.filter(|dr| hosts.contains(&dr.spec.host) && left_behind(dr.meta()));
        leftovers.destination_rules = left.map(|dr| dr.name_any()).collect();
        conflicts.sort();
    }
    if mode == Routing::GatewayApi {
        let gateway = observe_gateway_api(world, exp, namespace);
        plan.subsets = (!gateway.arms.is_empty()).then_some(gateway.arms);
        plan.service_ports =
            world.service(namespace, &exp.spec.service.name).and_then(|s| s.spec.clone()?.ports).unwrap_or_default();
        routed_subsets = gateway.routed;
        routed_services = gateway.routed_services;
        live.http_route = gateway.route;
        live.arm_services = gateway.arm_services;
        conflicts = gateway.conflicts;
        leftovers.http_routes = gateway.leftover_routes;
        leftovers.services = gateway.leftover_services;
    }
    Observation {
        mode,
        plan,
        routed_subsets,
        routed_services,
        pods,
        conflicts,
        leftovers,
        distribution,
        policies: world.policies(),
        namespace_labels: world.namespace_labels(namespace),
        live,
        revisions,
    }
}

/// What the Gateway API holds for one experiment.
struct GatewayApiObserved {
    route: Option<Value>,
    routed: BTreeSet<String>,
    routed_services: BTreeSet<String>,
    /// Arms with at least one of their Services.
    arms: BTreeSet<String>,
    arm_services: BTreeMap<String, Value>,
    conflicts: Vec<String>,
    leftover_routes: Vec<String>,
    leftover_services: Vec<String>,
}

fn observe_gateway_api(world: &World, exp: &Experiment, namespace: &str) -> GatewayApiObserved {
    let ours = object_name(exp);
    let service = &exp.spec.service.name;
    let mut out = GatewayApiObserved {
        route: None,
        routed: BTreeSet::new(),
        routed_services: BTreeSet::new(),
        arms: BTreeSet::new(),
        arm_services: BTreeMap::new(),
        conflicts: Vec::new(),
        leftover_routes: Vec::new(),
        leftover_services: Vec::new(),
    };
    let names =
        exp.spec.arms.iter().flat_map(|a| arm_services(&exp.spec, &a.name).into_iter().map(|(_, n)| (&a.name, n)));
    for (arm, name) in names {
        let Some(svc) = world.service(namespace, &name) else { continue };
        let arm_label = svc.metadata.labels.as_ref().and_then(|l| l.get(ARM_LABEL));
        if arm_label.is_some() && managed_by_forklane(&svc.metadata) {
            out.arms.insert(arm.clone());
            out.arm_services.extend(json(svc.as_ref()).map(|v| (name, v)));
        } else {
            // Someone else's Service with an arm Service's name: never taken over.
            out.conflicts.push(format!("Service {namespace}/{name}"));
        }
    }
    out.leftover_services = left_arm_services(world, exp, namespace);
    let parents = parent_refs(exp);
    let shares_parent = |r: &HttpRoute| {
        r.spec.parent_refs.iter().flatten().any(|p| {
            parents.iter().any(|ours| {
                p.kind.as_deref().unwrap_or("Gateway") == ours.kind.as_deref().unwrap_or("Gateway")
                    && p.namespace.as_deref().unwrap_or(namespace) == ours.namespace.as_deref().unwrap_or(namespace)
                    && p.name == ours.name
            })
        })
    };
    let routes_service = |r: &HttpRoute| {
        r.spec.rules.iter().flatten().flat_map(|rule| rule.backend_refs.iter().flatten()).any(|b| &b.name == service)
    };
    for route in world.http_routes(namespace) {
        if route.name_any() == ours {
            out.routed = referenced_arms(exp, &route);
            out.routed_services = service_names(&route);
            out.route = json(route.as_ref());
        } else if attached_to_service(&route, service) || (shares_parent(&route) && routes_service(&route)) {
            if left_behind(route.meta()) {
                out.leftover_routes.push(route.name_any());
            } else {
                out.conflicts.push(format!("HTTPRoute {namespace}/{}", route.name_any()));
            }
        }
    }
    out.conflicts.sort();
    out
}

/// The arm Services a deleted experiment on the same Service left behind that this one does not
/// have: released (no owner), labelled with their arm and cohort, and named for them.
fn left_arm_services(world: &World, exp: &Experiment, namespace: &str) -> Vec<String> {
    let service = &exp.spec.service.name;
    let mut names: Vec<String> = world
        .services(namespace)
        .iter()
        .filter(|s| left_behind(&s.metadata))
        .filter_map(|s| {
            let labels = s.metadata.labels.as_ref()?;
            let arm = labels.get(ARM_LABEL)?;
            // Services written before cohorts had their own carry no cohort label: the split's.
            let cohort = labels.get(COHORT_LABEL).map_or(Some(Cohort::Assigned), |c| Cohort::parse(c))?;
            let name = s.name_any();
            (name == cohort_service_name(service, arm, cohort) && service_of(exp, &name).is_none()).then_some(name)
        })
        .collect();
    names.sort();
    names
}

/// A short, stable name of a pod template: FNV-1a over its JSON (serde_json writes map keys in
/// order). It only has to change when the template does, and stay the same across restarts.
pub(crate) fn revision(template: &Value) -> String {
    let hash = template
        .to_string()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3));
    format!("{hash:016x}")
}

/// A routing object another Experiment of Forklane's left behind (released at deletion, so that
/// routing stays in place) never blocks the next experiment on the same host.
fn left_behind(meta: &ObjectMeta) -> bool {
    managed_by_forklane(meta) && meta.owner_references.as_ref().is_none_or(Vec::is_empty)
}

/// Whether Forklane wrote the object (its `app.kubernetes.io/managed-by` label).
fn managed_by_forklane(meta: &ObjectMeta) -> bool {
    let labels = meta.labels.as_ref();
    labels.and_then(|l| l.get("app.kubernetes.io/managed-by")).is_some_and(|m| m == crate::plan::istio::MANAGED_BY)
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

#[cfg(test)]
#[path = "observe_tests.rs"]
mod tests;
