//! What the data plane reads from the cluster: Services, pods, the Istio routing objects and
//! Telemetries,
//! frozen in an immutable [`Snapshot`] that is compiled once (endpoints, subsets, regexes) so that
//! routing a request is cheap.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::Value;

use super::behaviour::Behaviour;
use super::gateway::GatewayApi;
use super::mesh::{self, CompiledVirtualService};
use super::telemetry::{Tag, Telemetries};
use forklane_core::gateway::HttpRoute;
use forklane_core::istio::{DestinationRule, VirtualService};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// `(namespace, name)` of a Service.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    pub namespace: String,
    pub name: String,
}

impl ServiceKey {
    pub fn new(namespace: &str, name: &str) -> Self {
        ServiceKey { namespace: namespace.into(), name: name.into() }
    }

    /// `name.namespace.svc.cluster.local`, the host Istio labels metrics with.
    pub(crate) fn fqdn(&self) -> String {
        format!("{}.{}.svc.cluster.local", self.name, self.namespace)
    }

    /// The Service a mesh host names, resolving short names in `namespace` as Istio does;
    /// `None` for hosts outside the cluster (`checkout.example.com`).
    pub(crate) fn from_host(host: &str, namespace: &str) -> Option<Self> {
        let host = host.strip_suffix(".cluster.local").unwrap_or(host);
        let host = host.strip_suffix(".svc").unwrap_or(host);
        match host.split('.').collect::<Vec<_>>()[..] {
            [name] => Some(ServiceKey::new(namespace, name)),
            [name, ns] => Some(ServiceKey::new(ns, name)),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Service {
    pub namespace: String,
    pub name: String,
    /// Without a selector a Service has no endpoints here.
    pub selector: BTreeMap<String, String>,
    pub ports: Vec<ServicePort>,
    /// `ClusterIP`, `NodePort`, `LoadBalancer`.
    pub service_type: String,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServicePort {
    pub name: Option<String>,
    pub port: i32,
    pub node_port: Option<i32>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Ready condition true and not terminating: what makes an endpoint ready.
    pub ready: bool,
    /// The `VERSION` env of its container, which the article's image prints.
    pub version_env: Option<String>,
    /// Name of the controlling owner (a ReplicaSet), from which Istio derives the workload.
    pub owner: Option<String>,
}

impl Pod {
    /// A ready pod with `VERSION` set, for tests and demos.
    pub fn ready(namespace: &str, name: &str, labels: &[(&str, &str)], version: &str) -> Self {
        Pod {
            namespace: namespace.into(),
            name: name.into(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ready: true,
            version_env: Some(version.into()),
            ..Default::default()
        }
    }
}

/// A pod as the data plane uses it: its behaviour and the labels its metrics carry.
#[derive(Debug)]
pub(crate) struct PodEntry {
    pub pod: Pod,
    pub behaviour: Behaviour,
    pub workload: Arc<Workload>,
    /// Telemetry tag overrides of its sidecar's server-side metrics, least specific first.
    pub tags: Vec<Arc<Tag>>,
}

/// Identity of a pod in metrics.
#[derive(Debug, Hash, PartialEq, Eq)]
pub(crate) struct Workload {
    /// What Istio's metrics say of it, the same for every pod of a Deployment.
    pub mesh: Arc<MeshWorkload>,
    pub pod: String,
    /// Pod labels with Prometheus-safe names, as a `labelmap` relabelling would attach them.
    pub labels: Vec<(String, String)>,
}

/// Istio's order of configuration objects: by creation time, then name, then namespace.
fn istio_order(meta: &ObjectMeta) -> (Option<Timestamp>, String, String) {
    let created = meta.creation_timestamp.as_ref().map(|t| t.0);
    (created, meta.name.clone().unwrap_or_default(), meta.namespace.clone().unwrap_or_default())
}

/// The `destination_*` labels of Istio's metrics.
#[derive(Debug, Hash, PartialEq, Eq)]
pub(crate) struct MeshWorkload {
    pub namespace: String,
    /// The Deployment name (ReplicaSet owner minus its hash), as Istio reports `destination_workload`.
    pub workload: String,
    /// Label `app`, else `unknown`.
    pub app: String,
    /// Label `version`, else the `VERSION` env, else `unknown`.
    pub version: String,
}

#[derive(Debug)]
pub struct ServiceEntry {
    pub service: Service,
    /// Indices into the snapshot's pods: ready pods matching the selector.
    pub endpoints: Vec<usize>,
    /// The VirtualService for this host, if any (the oldest, as Istio picks).
    pub virtual_service: Option<Arc<CompiledVirtualService>>,
    /// Subsets of the DestinationRule for this host: name → ready endpoints; `None` without one.
    pub subsets: Option<HashMap<String, Vec<usize>>>,
}

/// The cluster as the data plane sees it at one moment.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Whether requests go through the simulated Istio mesh (the Istio CRDs are installed).
    pub mesh: bool,
    pods: Vec<PodEntry>,
    /// Namespace → pod name → index into `pods`: how a lagging proxy's pod is found now.
    pod_indices: HashMap<String, HashMap<String, usize>>,
    services: HashMap<ServiceKey, ServiceEntry>,
    /// The generation of each VirtualService and DestinationRule it holds: what a proxy holding
    /// this snapshot has applied (istiod's distribution report counts these).
    generations: HashMap<(ConfigKind, String, String), i64>,
    /// Gateway API HTTPRoutes, per parent Service and Gateway.
    gateway_api: GatewayApi,
}

/// The mesh configuration kinds whose distribution istiod reports: VirtualServices travel as
/// routes (RDS), DestinationRules as clusters (CDS).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConfigKind {
    VirtualService,
    DestinationRule,
}

impl Snapshot {
    /// The generation of the `kind` object `namespace/name` this snapshot holds.
    pub fn generation(&self, kind: ConfigKind, namespace: &str, name: &str) -> Option<i64> {
        self.generations.get(&(kind, namespace.to_string(), name.to_string())).copied()
    }

    /// Compiles a snapshot (the mesh is off; see [`Snapshot::with_mesh`]).
    pub fn new(
        services: Vec<Service>,
        pods: Vec<Pod>,
        virtual_services: &[VirtualService],
        destination_rules: &[DestinationRule],
    ) -> Self {
        let pods: Vec<PodEntry> = pods.into_iter().map(pod_entry).collect();
        // Istio orders configuration oldest first (then by name, then namespace): of two
        // VirtualServices for one host a sidecar uses the oldest; DestinationRules for one host
        // are merged, the oldest's subset winning a name that two define.
        let mut virtual_services: Vec<&VirtualService> = virtual_services.iter().collect();
        virtual_services.sort_by_key(|vs| istio_order(&vs.metadata));
        let mut destination_rules: Vec<&DestinationRule> = destination_rules.iter().collect();
        destination_rules.sort_by_key(|dr| istio_order(&dr.metadata));
        let compiled: Vec<Arc<CompiledVirtualService>> =
            virtual_services.iter().map(|vs| Arc::new(mesh::compile(vs))).collect();
        let services = services
            .into_iter()
            .map(|service| {
                let key = ServiceKey::new(&service.namespace, &service.name);
                let ready_matching = |labels: &BTreeMap<String, String>| -> Vec<usize> {
                    let mut out: Vec<usize> = pods
                        .iter()
                        .enumerate()
                        .filter(|(_, p)| p.pod.ready && p.pod.namespace == service.namespace)
                        .filter(|(_, p)| !service.selector.is_empty() && selects(&service.selector, &p.pod.labels))
                        .filter(|(_, p)| selects(labels, &p.pod.labels))
                        .map(|(i, _)| i)
                        .collect();
                    out.sort_by(|a, b| pods[*a].pod.name.cmp(&pods[*b].pod.name));
                    out
                };
                let virtual_service = compiled.iter().find(|vs| vs.applies_to(&key)).cloned();
                let rules: Vec<&&DestinationRule> =
                    destination_rules.iter().filter(|dr| dr_host(dr).as_ref() == Some(&key)).collect();
                let subsets = (!rules.is_empty()).then(|| {
                    let mut merged: HashMap<String, Vec<usize>> = HashMap::new();
                    for subset in rules.iter().flat_map(|dr| dr.spec.subsets.iter().flatten()) {
                        merged
                            .entry(subset.name.clone())
                            .or_insert_with(|| ready_matching(&subset.labels.clone().unwrap_or_default()));
                    }
                    merged
                });
                let entry =
                    ServiceEntry { endpoints: ready_matching(&BTreeMap::new()), virtual_service, subsets, service };
                (key, entry)
            })
            .collect();
        let mut pod_indices: HashMap<String, HashMap<String, usize>> = HashMap::new();
        for (i, p) in pods.iter().enumerate() {
            pod_indices.entry(p.pod.namespace.clone()).or_default().insert(p.pod.name.clone(), i);
        }
        let generation = |kind, meta: &ObjectMeta| {
            let key = (kind, meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default());
            (key, meta.generation.unwrap_or(1))
        };
        let generations = (virtual_services.iter().map(|vs| generation(ConfigKind::VirtualService, &vs.metadata)))
            .chain(destination_rules.iter().map(|dr| generation(ConfigKind::DestinationRule, &dr.metadata)))
            .collect();
        Snapshot { mesh: false, pods, pod_indices, services, generations, gateway_api: GatewayApi::default() }
    }

    /// Turns the simulated mesh on or off (on when the cluster has the Istio CRDs).
    pub fn with_mesh(mut self, mesh: bool) -> Self {
        self.mesh = mesh;
        self
    }

    /// Adds Gateway API HTTPRoutes and the Gateways (as JSON) they may attach to, replacing any
    /// added before. Backend references are checked against this snapshot's Services; see
    /// `gateway/` and docs/traffic.md for what is modelled.
    pub fn with_gateway_api(mut self, http_routes: &[HttpRoute], gateways: &[Value]) -> Self {
        let services = &self.services;
        self.gateway_api =
            GatewayApi::build(http_routes, gateways, &|key: &ServiceKey| services.get(key).map(|e| e.service.clone()));
        self
    }

    /// [`Snapshot::with_gateway_api`] from store objects; HTTPRoutes that do not parse are
    /// skipped with a warning.
    pub(crate) fn with_gateway_objects<V: Borrow<Value>>(self, http_routes: &[V], gateways: &[V]) -> Self {
        let routes: Vec<HttpRoute> = parse_typed(http_routes);
        let gateways: Vec<Value> = gateways.iter().map(|g| g.borrow().clone()).collect();
        self.with_gateway_api(&routes, &gateways)
    }

    pub(crate) fn gateway_api(&self) -> &GatewayApi {
        &self.gateway_api
    }

    /// Applies `telemetry.istio.io` Telemetry objects (as JSON) to the sidecars' metrics of the
    /// pods they select; see `telemetry.rs` for what is modelled. Ones that do not parse are
    /// skipped with a warning.
    pub fn with_telemetry(mut self, telemetries: &[Value]) -> Self {
        let compiled = Telemetries::compile(telemetries);
        for p in &mut self.pods {
            p.tags = compiled.for_pod(&p.pod.namespace, &p.pod.labels);
        }
        self
    }

    /// Builds a snapshot from API objects as the store holds them (v1 Services and Pods,
    /// `networking.istio.io` VirtualServices and DestinationRules, `telemetry.istio.io`
    /// Telemetries). Objects that do not parse are skipped with a warning; the mesh is off until
    /// [`Snapshot::with_mesh`].
    pub(crate) fn from_objects<V: Borrow<Value>>(
        services: &[V],
        pods: &[V],
        virtual_services: &[V],
        destination_rules: &[V],
        telemetries: &[V],
    ) -> Self {
        let vs: Vec<VirtualService> = parse_typed(virtual_services);
        let dr: Vec<DestinationRule> = parse_typed(destination_rules);
        let services = services.iter().map(|s| service_from(s.borrow())).collect();
        let pods = pods.iter().map(|p| pod_from(p.borrow())).collect();
        let telemetries: Vec<Value> = telemetries.iter().map(|t| t.borrow().clone()).collect();
        Snapshot::new(services, pods, &vs, &dr).with_telemetry(&telemetries)
    }

    pub fn service(&self, key: &ServiceKey) -> Option<&ServiceEntry> {
        self.services.get(key)
    }

    pub(crate) fn pod(&self, index: usize) -> &PodEntry {
        &self.pods[index]
    }

    /// The index of the pod `namespace/name`, if it exists.
    pub(crate) fn pod_index(&self, namespace: &str, name: &str) -> Option<usize> {
        self.pod_indices.get(namespace)?.get(name).copied()
    }

    /// Whether kube-proxy would forward a connection to this Service (some endpoint is ready).
    pub(crate) fn has_ready_endpoints(&self, key: &ServiceKey) -> bool {
        self.service(key).is_some_and(|s| !s.endpoints.is_empty())
    }
}

fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn dr_host(dr: &DestinationRule) -> Option<ServiceKey> {
    ServiceKey::from_host(&dr.spec.host, dr.metadata.namespace.as_deref().unwrap_or("default"))
}

fn pod_entry(pod: Pod) -> PodEntry {
    let behaviour = Behaviour::from_annotations(&pod.annotations).unwrap_or_else(|e| {
        tracing::warn!(pod = %pod.name, "ignoring simulation annotations: {e}");
        Behaviour::default()
    });
    let workload = pod
        .owner
        .as_deref()
        .map(|rs| rs.rsplit_once('-').map_or(rs, |(deployment, _hash)| deployment).to_string())
        .unwrap_or_else(|| pod.name.clone());
    let version = pod.labels.get("version").or(pod.version_env.as_ref()).cloned().unwrap_or_else(|| "unknown".into());
    let reserved = ["namespace", "pod", "version", "code", "forklane_cohort"];
    let labels = pod
        .labels
        .iter()
        .map(|(k, v)| (prometheus_label_name(k), v.clone()))
        .filter(|(k, _)| !reserved.contains(&k.as_str()))
        .collect();
    let mesh = MeshWorkload {
        namespace: pod.namespace.clone(),
        workload,
        app: pod.labels.get("app").cloned().unwrap_or_else(|| "unknown".into()),
        version,
    };
    let workload = Workload { mesh: Arc::new(mesh), pod: pod.name.clone(), labels };
    PodEntry { pod, behaviour, workload: Arc::new(workload), tags: Vec::new() }
}

/// `app.kubernetes.io/name` → `app_kubernetes_io_name`.
fn prometheus_label_name(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect()
}

fn parse_typed<T: serde::de::DeserializeOwned>(objects: &[impl Borrow<Value>]) -> Vec<T> {
    objects
        .iter()
        .map(Borrow::borrow)
        .filter_map(|o: &Value| {
            T::deserialize(o)
                .map_err(|e| tracing::warn!(name = %o["metadata"]["name"], "skipping a routing object that does not parse: {e}"))
                .ok()
        })
        .collect()
}

fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
        .unwrap_or_default()
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn service_from(o: &Value) -> Service {
    let ports = o["spec"]["ports"].as_array().into_iter().flatten();
    Service {
        namespace: text(&o["metadata"]["namespace"]),
        name: text(&o["metadata"]["name"]),
        selector: string_map(&o["spec"]["selector"]),
        ports: ports
            .map(|p| ServicePort {
                name: p["name"].as_str().map(String::from),
                port: p["port"].as_i64().unwrap_or_default() as i32,
                node_port: p["nodePort"].as_i64().map(|n| n as i32),
            })
            .collect(),
        service_type: o["spec"]["type"].as_str().unwrap_or("ClusterIP").to_string(),
    }
}

fn pod_from(o: &Value) -> Pod {
    let conditions = o["status"]["conditions"].as_array().into_iter().flatten();
    let ready_condition = conditions.into_iter().any(|c| c["type"] == "Ready" && c["status"] == "True");
    let terminating = !o["metadata"]["deletionTimestamp"].is_null();
    let containers = o["spec"]["containers"].as_array().into_iter().flatten();
    let version_env = containers
        .flat_map(|c| c["env"].as_array().into_iter().flatten())
        .find(|e| e["name"] == "VERSION")
        .and_then(|e| e["value"].as_str().map(String::from));
    let owners = o["metadata"]["ownerReferences"].as_array().into_iter().flatten();
    let owner = owners.into_iter().find(|r| r["controller"] == true).and_then(|r| r["name"].as_str().map(String::from));
    Pod {
        namespace: text(&o["metadata"]["namespace"]),
        name: text(&o["metadata"]["name"]),
        labels: string_map(&o["metadata"]["labels"]),
        annotations: string_map(&o["metadata"]["annotations"]),
        ready: ready_condition && !terminating,
        version_env,
        owner,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traffic::Request;
    use serde_json::json;

    #[test]
    fn resolves_mesh_hosts() {
        assert_eq!(ServiceKey::from_host("my-app", "default"), Some(ServiceKey::new("default", "my-app")));
        assert_eq!(ServiceKey::from_host("my-app.shop", "default"), Some(ServiceKey::new("shop", "my-app")));
        assert_eq!(
            ServiceKey::from_host("my-app.shop.svc.cluster.local", "x"),
            Some(ServiceKey::new("shop", "my-app"))
        );
        assert_eq!(ServiceKey::from_host("checkout.example.com", "shop"), None);
    }

    #[test]
    fn reads_store_objects() {
        let service = json!({"metadata": {"name": "my-app", "namespace": "default"},
            "spec": {"type": "NodePort", "selector": {"app": "my-app"}, "ports": [{"name": "http", "port": 80, "nodePort": 32532}]}});
        let pod = |name: &str, ready: &str, deleting: bool| {
            let mut p = json!({"metadata": {"name": name, "namespace": "default", "labels": {"app": "my-app", "pod-template-hash": "7b4874cd75"},
                    "annotations": {"sim.forklane.io/error-rate": "0.5"},
                    "ownerReferences": [{"kind": "ReplicaSet", "name": "my-app-7b4874cd75", "controller": true}]},
                "spec": {"containers": [{"name": "my-app", "env": [{"name": "VERSION", "value": "v1.0.0"}]}]},
                "status": {"conditions": [{"type": "Ready", "status": ready}]}});
            if deleting {
                p["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
            }
            p
        };
        let pods = [
            pod("my-app-7b4874cd75-a", "True", false),
            pod("my-app-7b4874cd75-b", "False", false),
            pod("my-app-7b4874cd75-c", "True", true),
        ];
        let snap = Snapshot::from_objects(&[service], &pods, &[], &[], &[]);
        let entry = snap.service(&ServiceKey::new("default", "my-app")).unwrap();
        assert_eq!(entry.service.ports[0].node_port, Some(32532));
        assert_eq!(entry.endpoints.len(), 1, "only the ready, non-terminating pod is an endpoint");
        let pod = snap.pod(entry.endpoints[0]);
        assert_eq!(pod.pod.name, "my-app-7b4874cd75-a");
        assert_eq!(pod.behaviour.error_rate, 0.5);
        assert_eq!(pod.workload.mesh.workload, "my-app");
        assert_eq!(pod.workload.mesh.version, "v1.0.0");
        assert!(pod.workload.labels.contains(&("pod_template_hash".into(), "7b4874cd75".into())));
    }

    #[test]
    fn the_oldest_virtual_service_of_a_host_is_used_and_destination_rules_are_merged() {
        let service = json!({"metadata": {"name": "my-app", "namespace": "default"},
            "spec": {"selector": {"app": "my-app"}, "ports": [{"port": 80}]}});
        let pod = |version: &str| {
            json!({"metadata": {"name": format!("my-app-{version}"), "namespace": "default", "labels": {"app": "my-app", "version": version}},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
        };
        let meta =
            |name: &str, created: &str| json!({"name": name, "namespace": "default", "creationTimestamp": created});
        // "next" sorts first by name, but "won" is older.
        let route = |name: &str, created: &str, subset: &str| {
            json!({"metadata": meta(name, created), "spec": {"hosts": ["my-app"],
                "http": [{"route": [{"destination": {"host": "my-app", "subset": subset}}]}]}})
        };
        let rule = |name: &str, created: &str, subsets: &[(&str, &str)]| {
            let subsets: Vec<_> = subsets.iter().map(|(n, v)| json!({"name": n, "labels": {"version": v}})).collect();
            json!({"metadata": meta(name, created), "spec": {"host": "my-app", "subsets": subsets}})
        };
        let routes = [route("next", "2026-01-02T00:00:00Z", "v1"), route("won", "2026-01-01T00:00:00Z", "v2")];
        let rules = [
            rule("next", "2026-01-02T00:00:00Z", &[("v1", "v1"), ("v2", "v1")]),
            rule("won", "2026-01-01T00:00:00Z", &[("v2", "v2")]),
        ];
        let snap = Snapshot::from_objects(&[service], &[pod("v1"), pod("v2")], &routes, &rules, &[]);
        let entry = snap.service(&ServiceKey::new("default", "my-app")).unwrap();
        let mut rng = rand::rng();
        let picked = mesh::route(&snap, &ServiceKey::new("default", "my-app"), entry, &Request::get("/"), &mut rng);
        let pod = picked.primary.expect("routed").pod;
        assert_eq!(snap.pod(pod).pod.name, "my-app-v2", "by the older VirtualService");
        let subsets = entry.subsets.as_ref().unwrap();
        let names =
            |subset: &str| -> Vec<&str> { subsets[subset].iter().map(|&i| snap.pod(i).pod.name.as_str()).collect() };
        assert_eq!((names("v1"), names("v2")), (vec!["my-app-v1"], vec!["my-app-v2"]), "merged; the older v2 wins");
    }
}
