//! The data plane attached to the embedded cluster, as kube-proxy and istiod follow a real API
//! server: every change to Services, Pods, VirtualServices, DestinationRules, Telemetries, Gateway
//! API HTTPRoutes or Gateways publishes a new
//! [`Snapshot`], and every NodePort Service gets a real listener on 127.0.0.1:<nodePort>.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

use forklane_core::clock::Clock;

use crate::cluster::{Gvr, Store};

use super::{Dataplane, NodePort, ServiceKey, Snapshot, SnapshotFeed, serve_nodeport};

const WATCHED: [&str; 8] = [
    "services",
    "pods",
    "virtualservices",
    "destinationrules",
    "telemetries",
    "httproutes",
    "gateways",
    "customresourcedefinitions",
];

/// Rebuilds at most this often, so that a burst of writes costs one snapshot.
const COALESCE: Duration = Duration::from_millis(5);

/// The running attachment; dropping it stops the feed and closes every listener.
pub struct ClusterDataplane {
    pub dataplane: Dataplane,
    pub feed: SnapshotFeed,
    store: Store,
    task: JoinHandle<()>,
    /// istiod's distribution report, while on.
    reporter: Mutex<Option<JoinHandle<()>>>,
}

/// How often istiod's report looks at the proxies (real time).
const REPORT_EVERY: Duration = Duration::from_millis(20);

impl ClusterDataplane {
    /// Turns istiod's report of configuration distribution into VirtualService and
    /// DestinationRule status on or off (Istio's `PILOT_ENABLE_STATUS`; off by default).
    pub fn report_distribution(&self, on: bool) {
        let mut reporter = self.reporter.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(task) = reporter.take() {
            task.abort();
        }
        if on {
            *reporter = Some(super::distribution::report(self.store.clone(), self.feed.clone(), REPORT_EVERY));
        }
    }
}

impl Drop for ClusterDataplane {
    fn drop(&mut self) {
        self.task.abort();
        self.report_distribution(false);
    }
}

/// The stored objects of a resource, shared rather than copied (a copy of every pod per change
/// dominated the CPU at 2,000 pods); `None` when the resource is not served.
fn items(store: &Store, group: &str, version: &str, resource: &str) -> Option<Vec<Arc<Value>>> {
    store.list_for_controller(&Gvr::new(group, version, resource)).ok()
}

/// The cluster as the data plane sees it; the mesh is on when Istio's VirtualService API or the
/// Gateway API's HTTPRoute API is served.
pub(crate) fn snapshot(store: &Store) -> Snapshot {
    let services = items(store, "", "v1", "services").unwrap_or_default();
    let pods = items(store, "", "v1", "pods").unwrap_or_default();
    let vss = items(store, "networking.istio.io", "v1", "virtualservices");
    let drs = items(store, "networking.istio.io", "v1", "destinationrules").unwrap_or_default();
    let telemetries = items(store, "telemetry.istio.io", "v1", "telemetries").unwrap_or_default();
    let http_routes = items(store, GATEWAY_API, "v1", "httproutes");
    let gateways = items(store, GATEWAY_API, "v1", "gateways").unwrap_or_default();
    let mesh = vss.is_some() || http_routes.is_some();
    Snapshot::from_objects(&services, &pods, &vss.unwrap_or_default(), &drs, &telemetries)
        .with_gateway_objects(&http_routes.unwrap_or_default(), &gateways)
        .with_mesh(mesh)
}

const GATEWAY_API: &str = "gateway.networking.k8s.io";

/// NodePorts of the snapshot's Services: port → Service.
fn node_ports(store: &Store) -> BTreeMap<u16, ServiceKey> {
    let mut out = BTreeMap::new();
    for svc in items(store, "", "v1", "services").unwrap_or_default() {
        let ns = svc["metadata"]["namespace"].as_str().unwrap_or("default");
        let name = svc["metadata"]["name"].as_str().unwrap_or_default();
        for port in svc["spec"]["ports"].as_array().into_iter().flatten() {
            if let Some(n) = port["nodePort"].as_u64().and_then(|n| u16::try_from(n).ok()) {
                out.insert(n, ServiceKey::new(ns, name));
            }
        }
    }
    out
}

/// Follows `store` until the returned handle is dropped, stamping snapshots with `clock`'s time
/// (which lagging proxies measure their delays on).
pub(crate) fn attach(store: Store, dataplane: Dataplane, clock: Clock) -> ClusterDataplane {
    let feed = SnapshotFeed::with_clock(snapshot(&store), clock);
    let (dp, fd, watched) = (dataplane.clone(), feed.clone(), store.clone());
    let task = tokio::spawn(async move {
        let store = watched;
        let mut changes = store.changes();
        let mut listeners: BTreeMap<u16, (ServiceKey, NodePort)> = BTreeMap::new();
        loop {
            sync_listeners(&store, &dp, &fd, &mut listeners).await;
            // Wait for a change that matters, then let the burst settle. Proxies' delays count
            // from the change itself, not from when this task read it or built the snapshot: on
            // a fast simulated clock, the real milliseconds of waiting for a busy core, coalescing
            // and building are seconds, and a proxy would lag past its set delay.
            let changed = loop {
                match changes.recv().await {
                    Ok(change) if WATCHED.contains(&change.resource.resource.as_str()) => {
                        break clock.time_at(change.at);
                    }
                    Ok(_) => {}
                    // Changes were missed: the earliest of them is unknown, and now is the latest.
                    Err(RecvError::Lagged(_)) => break clock.now(),
                    Err(RecvError::Closed) => return,
                }
            };
            tokio::time::sleep(COALESCE).await;
            while let Ok(_) | Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) = changes.try_recv() {}
            fd.publish_as_of(snapshot(&store), changed);
        }
    });
    ClusterDataplane { dataplane, feed, store, task, reporter: Mutex::new(None) }
}

async fn sync_listeners(
    store: &Store,
    dp: &Dataplane,
    feed: &SnapshotFeed,
    listeners: &mut BTreeMap<u16, (ServiceKey, NodePort)>,
) {
    let wanted = node_ports(store);
    listeners.retain(|port, (key, _)| wanted.get(port) == Some(key));
    for (port, key) in wanted {
        if listeners.contains_key(&port) {
            continue;
        }
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        match serve_nodeport(addr, key.clone(), feed.view(), dp.clone()).await {
            Ok(listener) => drop(listeners.insert(port, (key, listener))),
            Err(e) => tracing::warn!(%addr, error = %e, "cannot open NodePort"),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::cluster::store::WriteOptions;
    use crate::traffic::ServiceKey;

    #[test]
    fn the_mesh_is_on_with_the_httproute_api_and_routes_reach_the_snapshot() {
        let store = Store::new(Default::default(), Clock::real());
        let opts = WriteOptions::default();
        store.create(&Gvr::new("", "v1", "namespaces"), None, json!({"metadata": {"name": "shop"}}), &opts).unwrap();
        assert!(!snapshot(&store).mesh, "neither Istio's API nor the Gateway API is served");
        let crd: Value = serde_yaml_ng::from_str(forklane_core::gateway::HTTPROUTE_CRD).unwrap();
        store.create(&Gvr::new("apiextensions.k8s.io", "v1", "customresourcedefinitions"), None, crd, &opts).unwrap();
        let service = json!({"metadata": {"name": "my-app", "namespace": "shop"}, "spec": {"selector": {"app": "my-app"}, "ports": [{"port": 80}]}});
        store.create(&Gvr::new("", "v1", "services"), Some("shop"), service, &opts).unwrap();
        let route = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "r", "namespace": "shop"},
            "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "my-app"}],
                "rules": [{"backendRefs": [{"name": "my-app", "port": 80}]}]}});
        store.create(&Gvr::new(GATEWAY_API, "v1", "httproutes"), Some("shop"), route, &opts).unwrap();
        let snap = snapshot(&store);
        assert!(snap.mesh, "the HTTPRoute API is served");
        assert!(snap.gateway_api().mesh(&ServiceKey::new("shop", "my-app"), 80, "shop").is_some());
        assert!(WATCHED.contains(&"httproutes") && WATCHED.contains(&"gateways"));
    }
}
