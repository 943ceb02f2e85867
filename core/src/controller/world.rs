//! Everything a reconcile reads, kept current by watches (kube-runtime reflectors), so that a
//! reconcile in steady state makes no API read: the linkerd2 policy-controller's pattern of
//! watch-fed indexes. Each kind is watched once; the same stream fills the cache and tells the
//! controller which experiments to look at again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::OnceCell;

use crate::api::{Experiment, RolloutPolicy};
use crate::gateway::HttpRoute;
use crate::istio::{DestinationRule, Telemetry, VirtualService};

use super::Scope;

/// The CRD whose presence means Istio's networking API is installed.
pub(crate) const ISTIO_VIRTUAL_SERVICE_CRD: &str = "virtualservices.networking.istio.io";

/// The CRD of Istio's Telemetry API, which labels an analysed experiment's requests by cohort.
pub(crate) const ISTIO_TELEMETRY_CRD: &str = "telemetries.telemetry.istio.io";

/// The CRD whose presence means the Gateway API's HTTPRoute is installed.
pub(crate) const HTTPROUTE_CRD: &str = "httproutes.gateway.networking.k8s.io";

/// The caches, one per kind. Cloning is cheap (the stores are shared).
#[derive(Clone)]
pub(crate) struct World {
    pub(crate) policies: Store<RolloutPolicy>,
    pub(crate) namespaces: Store<Namespace>,
    pub(crate) deployments: Store<Deployment>,
    pub(crate) pods: Store<Pod>,
    pub(crate) services: Store<Service>,
    pub(crate) virtual_services: Store<VirtualService>,
    pub(crate) destination_rules: Store<DestinationRule>,
    pub(crate) telemetries: Store<Telemetry>,
    pub(crate) http_routes: Store<HttpRoute>,
    pub(crate) crds: Store<PartialObjectMeta<CustomResourceDefinition>>,
    /// Set once every cache but the routing ones has seen its first complete list ([`World::ready`]).
    listed: Arc<OnceCell<()>>,
    /// Set once the VirtualService and DestinationRule caches have (waited for once Istio is installed).
    routing_listed: Arc<OnceCell<()>>,
    /// Set once the Telemetry cache has (waited for once its CRD is installed, which can be
    /// later than, or never with, the networking CRDs).
    telemetry_listed: Arc<OnceCell<()>>,
    /// Set once the HTTPRoute cache has (waited for once the Gateway API is installed).
    http_routes_listed: Arc<OnceCell<()>>,
}

/// A watch stream that fills one cache; its items are the objects that changed.
pub(crate) type Changes<K> = std::pin::Pin<Box<dyn Stream<Item = Result<K, watcher::Error>> + Send>>;

/// The change streams of every watched kind, to be handed to the controller as triggers.
pub(crate) struct Watches {
    pub policies: Changes<RolloutPolicy>,
    pub namespaces: Changes<Namespace>,
    pub deployments: Changes<Deployment>,
    pub pods: Changes<Pod>,
    pub services: Changes<Service>,
    pub virtual_services: Changes<VirtualService>,
    pub destination_rules: Changes<DestinationRule>,
    pub telemetries: Changes<Telemetry>,
    pub http_routes: Changes<HttpRoute>,
    pub crds: Changes<PartialObjectMeta<CustomResourceDefinition>>,
}

/// Drops what no reconcile reads, so that a cache holds only labels, owners and readiness.
fn slim_meta(meta: &mut kube::api::ObjectMeta) {
    meta.managed_fields = None;
    meta.annotations = None;
}

/// Like [`slim_meta`], but keeps who wrote the object when (managedFields without their field
/// sets): a write that puts back someone else's change says whose (`decide::drift`).
fn slim_routing_meta(meta: &mut kube::api::ObjectMeta) {
    for entry in meta.managed_fields.iter_mut().flatten() {
        entry.fields_v1 = None;
    }
    meta.annotations = None;
}

fn reflect<K>(api: Api<K>, config: watcher::Config, slim: fn(&mut K)) -> (Store<K>, Changes<K>)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, config).default_backoff().modify(slim).reflect(writer).touched_objects();
    (reader, retried_alone(stream))
}

/// [`reflect`], started only once the CRD `crd` is in the CRD cache: in a cluster without it (most
/// clusters have no Gateway API), a watch retrying its 404 would list the resource every few
/// minutes for ever, in a steady state that should make no request at all.
fn reflect_once_installed<K>(
    api: Api<K>,
    config: watcher::Config,
    slim: fn(&mut K),
    (crds, crd): (Store<PartialObjectMeta<CustomResourceDefinition>>, &'static str),
) -> (Store<K>, Changes<K>)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let watch = async move {
        // The CRD cache, not the API server: looking costs nothing.
        while crds.get(&ObjectRef::new(crd)).is_none() {
            tokio::time::sleep(INSTALL_POLL).await;
        }
        watcher(api, config).default_backoff().modify(slim).reflect(writer).touched_objects()
    };
    (reader, retried_alone(futures::stream::once(watch).flatten()))
}

/// How often a watch waiting for its CRD looks at the CRD cache.
const INSTALL_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// The changes of one watch without its errors: each watch backs off and retries by itself
/// (`default_backoff`). The controller puts one backoff over all its triggers together, so an
/// error passed on would pause every watch, the Experiments' own included: without Istio the
/// VirtualService watch fails on every retry, and changes reached the controller seconds late.
fn retried_alone<K: Send + 'static>(
    stream: impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
) -> Changes<K> {
    stream
        .filter_map(|change| async move {
            match change {
                Ok(object) => Some(Ok(object)),
                Err(error) if not_installed(&error) => {
                    tracing::debug!(%error, "watch: resource not installed; retrying");
                    None
                }
                Err(error) => {
                    tracing::warn!(%error, "watch failed; retrying");
                    None
                }
            }
        })
        .boxed()
}

/// A 404 for the resource itself: its CRD is not installed (Istio's, in a cluster without it).
fn not_installed(error: &watcher::Error) -> bool {
    match error {
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status)) => status.code == 404,
        watcher::Error::WatchError(status) => status.code == 404,
        _ => false,
    }
}

fn scoped<K>(client: &Client, scope: &Scope) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match &scope.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// The watch settings of every kind: `scope.watch_timeout` ends each watch server-side.
pub(crate) fn watch_config(scope: &Scope) -> watcher::Config {
    match scope.watch_timeout {
        Some(seconds) => watcher::Config::default().timeout(seconds),
        None => watcher::Config::default(),
    }
}

impl World {
    /// Starts nothing: returns the caches and the streams that fill them once polled.
    pub(crate) fn watch(client: &Client, scope: &Scope) -> (World, Watches) {
        let config = watch_config(scope);
        let (policies, policy_changes) =
            reflect(Api::all(client.clone()), config.clone(), |p: &mut RolloutPolicy| slim_meta(&mut p.metadata));
        let (namespaces, namespace_changes) = reflect(Api::all(client.clone()), config.clone(), |n: &mut Namespace| {
            n.metadata.managed_fields = None;
            n.spec = None;
        });
        let (deployments, deployment_changes) =
            reflect(scoped(client, scope), config.clone(), |d: &mut Deployment| slim_meta(&mut d.metadata));
        let (pods, pod_changes) = reflect(scoped(client, scope), config.clone(), slim_pod);
        let (services, service_changes) =
            reflect(scoped(client, scope), config.clone(), |s: &mut Service| slim_routing_meta(&mut s.metadata));
        let (virtual_services, vs_changes) =
            reflect(scoped(client, scope), config.clone(), |v: &mut VirtualService| slim_routing_meta(&mut v.metadata));
        let (destination_rules, dr_changes) =
            reflect(scoped(client, scope), config.clone(), |d: &mut DestinationRule| {
                slim_routing_meta(&mut d.metadata)
            });
        let (telemetries, telemetry_changes) =
            reflect(scoped(client, scope), config.clone(), |t: &mut Telemetry| slim_meta(&mut t.metadata));
        let (crds, crd_writer) = reflector::store();
        let (http_routes, http_route_changes) = reflect_once_installed(
            scoped(client, scope),
            config.clone(),
            |r: &mut HttpRoute| slim_routing_meta(&mut r.metadata),
            (crds.clone(), HTTPROUTE_CRD),
        );
        let crd_changes = retried_alone(
            watcher(Api::<PartialObjectMeta<CustomResourceDefinition>>::all(client.clone()), config)
                .default_backoff()
                .reflect(crd_writer)
                .touched_objects(),
        );
        let world = World {
            policies,
            namespaces,
            deployments,
            pods,
            services,
            virtual_services,
            destination_rules,
            telemetries,
            http_routes,
            crds,
            listed: Default::default(),
            routing_listed: Default::default(),
            telemetry_listed: Default::default(),
            http_routes_listed: Default::default(),
        };
        let watches = Watches {
            policies: policy_changes,
            namespaces: namespace_changes,
            deployments: deployment_changes,
            pods: pod_changes,
            services: service_changes,
            virtual_services: vs_changes,
            destination_rules: dr_changes,
            telemetries: telemetry_changes,
            http_routes: http_route_changes,
            crds: crd_changes,
        };
        (world, watches)
    }

    /// Waits until every cache has seen its first complete list (the routing caches once Istio is
    /// installed, also when that happens while the controller runs). Every reconcile waits here,
    /// many at once when the controller starts: one of them waits on the stores, the others on a
    /// `OnceCell`, which wakes them all. kube's `Store::wait_until_ready` (kube-runtime 5.0) wakes
    /// only the last of several concurrent waiters (its `DelayedInit` polls a oneshot receiver,
    /// which keeps one waker): called by each reconcile, all but one hung until their time limit.
    pub(crate) async fn ready(&self) {
        self.listed.get_or_init(|| self.first_lists()).await;
        if self.istio_installed() {
            self.routing_listed.get_or_init(|| self.first_routing_lists()).await;
        }
        if self.telemetry_installed() {
            self.telemetry_listed.get_or_init(|| async { drop(self.telemetries.wait_until_ready().await) }).await;
        }
        if self.gateway_api_installed() {
            self.http_routes_listed.get_or_init(|| async { drop(self.http_routes.wait_until_ready().await) }).await;
        }
    }

    async fn first_lists(&self) {
        // A writer is dropped only when its stream is; then the controller is stopping anyway.
        let _ = futures::join!(
            self.policies.wait_until_ready(),
            self.namespaces.wait_until_ready(),
            self.deployments.wait_until_ready(),
            self.pods.wait_until_ready(),
            self.services.wait_until_ready(),
            self.crds.wait_until_ready(),
        );
    }

    async fn first_routing_lists(&self) {
        let _ = futures::join!(self.virtual_services.wait_until_ready(), self.destination_rules.wait_until_ready());
    }

    /// Whether Istio's networking API is installed (watched through the CRDs, not asked).
    pub(crate) fn istio_installed(&self) -> bool {
        self.crds.get(&ObjectRef::new(ISTIO_VIRTUAL_SERVICE_CRD)).is_some()
    }

    /// Whether the Gateway API's HTTPRoute is installed (watched through the CRDs, not asked).
    pub(crate) fn gateway_api_installed(&self) -> bool {
        self.crds.get(&ObjectRef::new(HTTPROUTE_CRD)).is_some()
    }

    pub(crate) fn http_routes(&self, namespace: &str) -> Vec<std::sync::Arc<HttpRoute>> {
        self.http_routes.state_filter(|r| r.namespace().as_deref() == Some(namespace))
    }

    /// Whether Istio's Telemetry API is installed (watched through the CRDs, not asked).
    pub(crate) fn telemetry_installed(&self) -> bool {
        self.crds.get(&ObjectRef::new(ISTIO_TELEMETRY_CRD)).is_some()
    }

    pub(crate) fn telemetry(&self, namespace: &str, name: &str) -> Option<std::sync::Arc<Telemetry>> {
        self.telemetries.get(&ObjectRef::new(name).within(namespace))
    }

    pub(crate) fn policies(&self) -> Vec<RolloutPolicy> {
        self.policies.state().iter().map(|p| p.as_ref().clone()).collect()
    }

    pub(crate) fn namespace_labels(&self, namespace: &str) -> BTreeMap<String, String> {
        let ns = self.namespaces.get(&ObjectRef::new(namespace));
        let mut labels = ns.and_then(|n| n.metadata.labels.clone()).unwrap_or_default();
        labels.entry("kubernetes.io/metadata.name".into()).or_insert_with(|| namespace.to_string());
        labels
    }

    pub(crate) fn deployment(&self, namespace: &str, name: &str) -> Option<std::sync::Arc<Deployment>> {
        self.deployments.get(&ObjectRef::new(name).within(namespace))
    }

    /// Pods in `namespace` whose labels include every pair of `selector`.
    pub(crate) fn pods_matching(
        &self,
        namespace: &str,
        selector: &BTreeMap<String, String>,
    ) -> Vec<std::sync::Arc<Pod>> {
        self.pods.state_filter(|p| p.namespace().as_deref() == Some(namespace) && selects(selector, p.labels()))
    }

    pub(crate) fn service(&self, namespace: &str, name: &str) -> Option<std::sync::Arc<Service>> {
        self.services.get(&ObjectRef::new(name).within(namespace))
    }

    pub(crate) fn services(&self, namespace: &str) -> Vec<std::sync::Arc<Service>> {
        self.services.state_filter(|s| s.namespace().as_deref() == Some(namespace))
    }

    pub(crate) fn destination_rule(&self, namespace: &str, name: &str) -> Option<std::sync::Arc<DestinationRule>> {
        self.destination_rules.get(&ObjectRef::new(name).within(namespace))
    }

    pub(crate) fn destination_rules(&self, namespace: &str) -> Vec<std::sync::Arc<DestinationRule>> {
        self.destination_rules.state_filter(|d| d.namespace().as_deref() == Some(namespace))
    }

    /// Whether the mesh reports distribution: some VirtualService in the cluster carries a report
    /// (istiod's flag is global). From the cache, stopping at the first, without copying it.
    pub(crate) fn mesh_reports(&self) -> bool {
        self.virtual_services.find(super::distribution::reported).is_some()
    }

    pub(crate) fn virtual_services(&self, namespace: &str) -> Vec<std::sync::Arc<VirtualService>> {
        self.virtual_services.state_filter(|v| v.namespace().as_deref() == Some(namespace))
    }
}

/// A pod as the controller needs it: name, labels, deletion, and its Ready condition.
fn slim_pod(pod: &mut Pod) {
    slim_meta(&mut pod.metadata);
    pod.spec = None;
    if let Some(status) = pod.status.as_mut() {
        let conditions = status.conditions.take().unwrap_or_default();
        *status = Default::default();
        status.conditions = Some(conditions.into_iter().filter(|c| c.type_ == "Ready").collect());
    }
}

pub(crate) fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Which experiments a changed object concerns; the controller reconciles those.
pub(crate) mod triggers {
    use super::*;

    fn in_namespace(
        experiments: &Store<Experiment>,
        ns: Option<String>,
    ) -> impl Iterator<Item = std::sync::Arc<Experiment>> {
        experiments.state().into_iter().filter(move |e| e.namespace() == ns)
    }

    fn refs(list: impl Iterator<Item = std::sync::Arc<Experiment>>) -> Vec<ObjectRef<Experiment>> {
        list.map(|e| ObjectRef::from_obj(e.as_ref())).collect()
    }

    pub(crate) fn deployment(experiments: &Store<Experiment>, d: &Deployment) -> Vec<ObjectRef<Experiment>> {
        let name = d.name_any();
        refs(
            in_namespace(experiments, d.namespace())
                .filter(|e| e.spec.arms.iter().any(|a| a.deployment.as_deref() == Some(name.as_str()))),
        )
    }

    pub(crate) fn pod(experiments: &Store<Experiment>, p: &Pod) -> Vec<ObjectRef<Experiment>> {
        refs(
            in_namespace(experiments, p.namespace())
                .filter(|e| e.spec.arms.iter().any(|a| selects(&a.selector, p.labels()))),
        )
    }

    /// Our own routing objects and any other that routes one of an experiment's hosts.
    pub(crate) fn virtual_service(experiments: &Store<Experiment>, vs: &VirtualService) -> Vec<ObjectRef<Experiment>> {
        let hosts: BTreeSet<&String> = vs.spec.hosts.iter().flatten().collect();
        refs(
            in_namespace(experiments, vs.namespace())
                .filter(|e| e.spec.service.hosts().iter().any(|h| hosts.contains(h)) || owned_by(vs.meta(), e)),
        )
    }

    pub(crate) fn destination_rule(
        experiments: &Store<Experiment>,
        dr: &DestinationRule,
    ) -> Vec<ObjectRef<Experiment>> {
        refs(in_namespace(experiments, dr.namespace()).filter(|e| owned_by(dr.meta(), e)))
    }

    pub(crate) fn telemetry(experiments: &Store<Experiment>, t: &Telemetry) -> Vec<ObjectRef<Experiment>> {
        refs(in_namespace(experiments, t.namespace()).filter(|e| owned_by(t.meta(), e)))
    }

    /// An experiment's Service, or an arm's Service it owns.
    pub(crate) fn service(experiments: &Store<Experiment>, s: &Service) -> Vec<ObjectRef<Experiment>> {
        let name = s.name_any();
        refs(in_namespace(experiments, s.namespace()).filter(|e| e.spec.service.name == name || owned_by(s.meta(), e)))
    }

    /// Our own HTTPRoute and any other attached to, or routing to, an experiment's Service.
    pub(crate) fn http_route(experiments: &Store<Experiment>, r: &HttpRoute) -> Vec<ObjectRef<Experiment>> {
        let parents = r.spec.parent_refs.iter().flatten().map(|p| &p.name);
        let backends =
            r.spec.rules.iter().flatten().flat_map(|rule| rule.backend_refs.iter().flatten().map(|b| &b.name));
        let names: BTreeSet<&String> = parents.chain(backends).collect();
        refs(
            in_namespace(experiments, r.namespace())
                .filter(|e| names.contains(&e.spec.service.name) || owned_by(r.meta(), e)),
        )
    }

    pub(crate) fn namespace(experiments: &Store<Experiment>, ns: &Namespace) -> Vec<ObjectRef<Experiment>> {
        refs(in_namespace(experiments, Some(ns.name_any())))
    }

    /// A policy or the set of installed CRDs can concern any experiment.
    pub(crate) fn all(experiments: &Store<Experiment>) -> Vec<ObjectRef<Experiment>> {
        refs(experiments.state().into_iter())
    }

    pub(crate) fn owned_by(meta: &kube::api::ObjectMeta, exp: &Experiment) -> bool {
        let uid = exp.metadata.uid.as_deref();
        meta.owner_references.iter().flatten().any(|o| Some(o.uid.as_str()) == uid)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::Duration;

    fn api_error(code: u16) -> watcher::Error {
        let status = kube::core::Status::failure("no", "NotFound").with_code(code);
        watcher::Error::InitialListFailed(kube::Error::Api(Box::new(status)))
    }

    #[tokio::test]
    async fn a_watch_passes_on_its_changes_and_keeps_its_errors_to_itself() {
        let changes = futures::stream::iter([Ok(1), Err(api_error(404)), Err(api_error(403)), Ok(2)]);
        let passed: Vec<i32> =
            retried_alone(changes).map(|c| c.expect("no error reaches the controller")).collect().await;
        assert_eq!(passed, [1, 2]);
        assert!(not_installed(&api_error(404)) && !not_installed(&api_error(403)));
    }

    /// The caches with the writers that fill them, as the watches would.
    pub(crate) struct Filled {
        pub(crate) world: World,
        pub(crate) policies: reflector::store::Writer<RolloutPolicy>,
        pub(crate) namespaces: reflector::store::Writer<Namespace>,
        pub(crate) deployments: reflector::store::Writer<Deployment>,
        pub(crate) pods: reflector::store::Writer<Pod>,
        pub(crate) services: reflector::store::Writer<Service>,
        pub(crate) virtual_services: reflector::store::Writer<VirtualService>,
        pub(crate) destination_rules: reflector::store::Writer<DestinationRule>,
        pub(crate) telemetries: reflector::store::Writer<Telemetry>,
        pub(crate) http_routes: reflector::store::Writer<HttpRoute>,
        pub(crate) crds: reflector::store::Writer<PartialObjectMeta<CustomResourceDefinition>>,
    }

    pub(crate) fn caches() -> Filled {
        let (policies, policies_w) = reflector::store();
        let (namespaces, namespaces_w) = reflector::store();
        let (deployments, deployments_w) = reflector::store();
        let (pods, pods_w) = reflector::store();
        let (services, services_w) = reflector::store();
        let (virtual_services, virtual_services_w) = reflector::store();
        let (destination_rules, destination_rules_w) = reflector::store();
        let (telemetries, telemetries_w) = reflector::store();
        let (http_routes, http_routes_w) = reflector::store();
        let (crds, crds_w) = reflector::store();
        let world = World {
            policies,
            namespaces,
            deployments,
            pods,
            services,
            virtual_services,
            destination_rules,
            telemetries,
            http_routes,
            crds,
            listed: Default::default(),
            routing_listed: Default::default(),
            telemetry_listed: Default::default(),
            http_routes_listed: Default::default(),
        };
        Filled {
            world,
            policies: policies_w,
            namespaces: namespaces_w,
            deployments: deployments_w,
            pods: pods_w,
            services: services_w,
            virtual_services: virtual_services_w,
            destination_rules: destination_rules_w,
            telemetries: telemetries_w,
            http_routes: http_routes_w,
            crds: crds_w,
        }
    }

    /// A first complete list of `objects`.
    pub(crate) fn list<K>(writer: &mut reflector::store::Writer<K>, objects: Vec<K>)
    where
        K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + Send + Sync + 'static,
    {
        writer.apply_watcher_event(&watcher::Event::Init);
        for o in objects {
            writer.apply_watcher_event(&watcher::Event::InitApply(o));
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
    }

    /// `n` reconciles waiting at once.
    fn waiting(world: &World, n: usize) -> Vec<tokio::task::JoinHandle<()>> {
        (0..n)
            .map(|_| {
                let world = world.clone();
                tokio::spawn(async move { world.ready().await })
            })
            .collect()
    }

    /// How many of the waiters got through (each within a second).
    async fn through(waiters: Vec<tokio::task::JoinHandle<()>>) -> usize {
        let mut n = 0;
        for w in waiters {
            n += usize::from(tokio::time::timeout(Duration::from_secs(1), w).await.is_ok());
        }
        n
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_reconcile_waiting_for_the_first_lists_goes_on_once_they_are_in() {
        let mut c = caches();
        let waiters = waiting(&c.world, 50);
        tokio::time::sleep(Duration::from_millis(50)).await; // every one of them is waiting
        list(&mut c.policies, vec![]);
        list(&mut c.namespaces, vec![]);
        list(&mut c.deployments, vec![]);
        list(&mut c.pods, vec![]);
        list(&mut c.services, vec![]);
        list(&mut c.crds, vec![]);
        assert_eq!(through(waiters).await, 50, "no Istio: the routing caches are not waited for");
        assert_eq!(through(waiting(&c.world, 5)).await, 5, "and later reconciles do not wait");
        drop((c.virtual_services, c.destination_rules));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_istio_installed_the_routing_caches_are_waited_for_too() {
        let mut c = caches();
        let waiters = waiting(&c.world, 20);
        list(&mut c.policies, vec![]);
        list(&mut c.namespaces, vec![]);
        list(&mut c.deployments, vec![]);
        list(&mut c.pods, vec![]);
        list(&mut c.services, vec![]);
        let mut istio = PartialObjectMeta::<CustomResourceDefinition>::default();
        istio.metadata.name = Some(ISTIO_VIRTUAL_SERVICE_CRD.into());
        list(&mut c.crds, vec![istio]);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(waiters.iter().all(|w| !w.is_finished()), "still waiting for VirtualServices and DestinationRules");
        list(&mut c.virtual_services, vec![]);
        list(&mut c.destination_rules, vec![]);
        assert_eq!(through(waiters).await, 20);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn istio_installed_later_makes_reconciles_wait_for_the_routing_caches_then() {
        let mut c = caches();
        list(&mut c.policies, vec![]);
        list(&mut c.namespaces, vec![]);
        list(&mut c.deployments, vec![]);
        list(&mut c.pods, vec![]);
        list(&mut c.services, vec![]);
        list(&mut c.crds, vec![]);
        assert_eq!(through(waiting(&c.world, 5)).await, 5, "no Istio yet");
        let mut istio = PartialObjectMeta::<CustomResourceDefinition>::default();
        istio.metadata.name = Some(ISTIO_VIRTUAL_SERVICE_CRD.into());
        c.crds.apply_watcher_event(&watcher::Event::Apply(istio));
        let waiters = waiting(&c.world, 20);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(waiters.iter().all(|w| !w.is_finished()), "waiting for VirtualServices and DestinationRules");
        list(&mut c.virtual_services, vec![]);
        list(&mut c.destination_rules, vec![]);
        assert_eq!(through(waiters).await, 20);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_telemetry_cache_is_waited_for_only_once_its_crd_is_installed() {
        let mut c = caches();
        list(&mut c.policies, vec![]);
        list(&mut c.namespaces, vec![]);
        list(&mut c.deployments, vec![]);
        list(&mut c.pods, vec![]);
        list(&mut c.services, vec![]);
        let crd = |name: &str| {
            let mut crd = PartialObjectMeta::<CustomResourceDefinition>::default();
            crd.metadata.name = Some(name.into());
            crd
        };
        list(&mut c.crds, vec![crd(ISTIO_VIRTUAL_SERVICE_CRD)]);
        list(&mut c.virtual_services, vec![]);
        list(&mut c.destination_rules, vec![]);
        assert_eq!(through(waiting(&c.world, 5)).await, 5, "Istio without the Telemetry API does not hang");
        assert!(!c.world.telemetry_installed());
        c.crds.apply_watcher_event(&watcher::Event::Apply(crd(ISTIO_TELEMETRY_CRD)));
        assert!(c.world.telemetry_installed());
        let waiters = waiting(&c.world, 10);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(waiters.iter().all(|w| !w.is_finished()), "waiting for the Telemetries");
        list(&mut c.telemetries, vec![]);
        assert_eq!(through(waiters).await, 10);
    }
}
