//! Runs the pure controllers against the store: a pass lists the objects, reconciles
//! deployments, then replica sets, then pods, then services (each stage reading what the
//! previous one wrote) and sends the writes through the store's public API with the
//! components' field managers. A pass runs after every relevant change (bursts coalesce)
//! and when the earliest timer of the simulated clock is due.

use super::pods::{IpPool, KubeletSettings, reconcile_pod};
use super::{Kind, Reconciled, Write, deployment, endpoints, replicaset};
use crate::cluster::error::Error;
use crate::cluster::resources::Gvr;
use crate::cluster::store::{DeleteOptions, ListParams, Store, Subresource, WriteOptions};
use forklane_core::clock::{Clock, Time};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

/// The running simulator; dropping it stops it.
pub struct WorkloadsHandle {
    task: JoinHandle<()>,
}

impl Drop for WorkloadsHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the simulator on a tokio runtime with the default kubelet settings.
pub fn start_workloads(store: Store, clock: Clock) -> WorkloadsHandle {
    WorkloadsHandle { task: tokio::spawn(run_with(store, clock, KubeletSettings::default())) }
}

/// The simulator as a never-ending future, e.g. for `ClusterConfig::controllers`.
pub async fn run(store: Store, clock: Clock) {
    run_with(store, clock, KubeletSettings::default()).await
}

pub(crate) async fn run_with(store: Store, clock: Clock, settings: KubeletSettings) {
    let mut changes = store.changes();
    let mut ips = IpPool::default();
    loop {
        let wake = pass(&store, clock.now(), &settings, &mut ips);
        // Without a timer, wake up now and then anyway: a missed notification cannot stall.
        let sleep = wake.map_or(Duration::from_secs(5), |t| clock.real_until(t));
        tokio::select! {
            change = changes.recv() => match change {
                Ok(c) if !relevant(&c.resource.group, &c.resource.resource) => continue,
                Ok(_) | Err(RecvError::Lagged(_)) => {
                    // Coalesce a burst (e.g. ten pods created) into one pass.
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    while !matches!(changes.try_recv(), Err(tokio::sync::broadcast::error::TryRecvError::Empty | tokio::sync::broadcast::error::TryRecvError::Closed)) {}
                }
                Err(RecvError::Closed) => return,
            },
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}

fn relevant(group: &str, resource: &str) -> bool {
    matches!(
        (group, resource),
        ("apps", "deployments" | "replicasets")
            | ("", "pods" | "services" | "endpoints")
            | ("discovery.k8s.io", "endpointslices")
    )
}

fn gvr(kind: Kind) -> Gvr {
    match kind {
        Kind::Deployment => Gvr::new("apps", "v1", "deployments"),
        Kind::ReplicaSet => Gvr::new("apps", "v1", "replicasets"),
        Kind::Pod => Gvr::new("", "v1", "pods"),
        Kind::Endpoints => Gvr::new("", "v1", "endpoints"),
        Kind::EndpointSlice => Gvr::new("discovery.k8s.io", "v1", "endpointslices"),
        Kind::Service => Gvr::new("", "v1", "services"),
    }
}

fn list(store: &Store, kind: Kind) -> Vec<Value> {
    match store.list(&gvr(kind), None, &ListParams::default()) {
        Ok(mut l) => match l["items"].take() {
            Value::Array(items) => items,
            _ => vec![],
        },
        Err(e) => {
            tracing::warn!(?kind, error = %e, "workloads: list failed");
            vec![]
        }
    }
}

fn by_namespace(items: Vec<Value>) -> HashMap<String, Vec<Value>> {
    let mut out: HashMap<String, Vec<Value>> = HashMap::new();
    for item in items {
        out.entry(super::objects::namespace(&item).to_string()).or_default().push(item);
    }
    out
}

/// One pass over everything; returns the earliest timer.
fn pass(store: &Store, now: Time, settings: &KubeletSettings, ips: &mut IpPool) -> Option<Time> {
    let mut done = Reconciled::default();
    let none = Vec::new();

    let (rss, pods) = (by_namespace(list(store, Kind::ReplicaSet)), by_namespace(list(store, Kind::Pod)));
    for d in list(store, Kind::Deployment) {
        let ns = super::objects::namespace(&d);
        let r = deployment::reconcile_deployment(&d, rss.get(ns).unwrap_or(&none), pods.get(ns).unwrap_or(&none), now);
        done.merge(apply(store, r));
    }

    let pods = by_namespace(list(store, Kind::Pod));
    for rs in list(store, Kind::ReplicaSet) {
        let r = replicaset::reconcile_replica_set(&rs, pods.get(super::objects::namespace(&rs)).unwrap_or(&none), now);
        done.merge(apply(store, r));
    }

    let pods = list(store, Kind::Pod);
    let mut used: HashSet<String> =
        pods.iter().filter_map(|p| p["status"]["podIP"].as_str().map(String::from)).collect();
    for pod in &pods {
        let mut allocate = || {
            let ip = ips.allocate(&used);
            used.insert(ip.clone());
            ip
        };
        let r = reconcile_pod(pod, now, settings, &mut allocate);
        done.merge(apply(store, r));
    }

    let services = by_namespace(list(store, Kind::Service));
    let (pods, eps, slices) = (
        by_namespace(list(store, Kind::Pod)),
        by_namespace(list(store, Kind::Endpoints)),
        by_namespace(list(store, Kind::EndpointSlice)),
    );
    for (ns, svcs) in &services {
        for svc in svcs {
            let get = |m: &HashMap<String, Vec<Value>>| m.get(ns).unwrap_or(&none).clone();
            let r = endpoints::reconcile_service(svc, &get(&pods), &get(&eps), &get(&slices), now);
            done.merge(apply(store, r));
        }
    }
    for (ns, list) in &eps {
        for ep in list {
            if let Some(w) = endpoints::orphaned_endpoints(ep, services.get(ns).unwrap_or(&none)) {
                done.merge(apply(store, Reconciled { writes: vec![w], requeue_at: None }));
            }
        }
    }
    done.requeue_at
}

/// Sends the writes in order. Successive writes to one object (an update then a status
/// update) carry the resourceVersion the previous one produced, so they do not conflict
/// with each other but still conflict with anyone else's write in between. Failures are
/// left to the next pass, which starts from fresh state, as a requeue would.
fn apply(store: &Store, r: Reconciled) -> Reconciled {
    let mut versions: HashMap<(Kind, String, String), String> = HashMap::new();
    for w in r.writes {
        let kind = w.kind();
        let result = match w {
            Write::Create { object, manager, .. } => {
                let ns = super::objects::namespace(&object).to_string();
                store.create(&gvr(kind), Some(&ns), object, &opts(manager, Subresource::Main))
            }
            Write::Update { object, manager, .. } => {
                update(store, kind, object, opts(manager, Subresource::Main), &mut versions)
            }
            Write::UpdateStatus { object, manager, .. } => {
                update(store, kind, object, opts(manager, Subresource::Status), &mut versions)
            }
            Write::Delete { namespace, name, uid, grace_period_seconds, .. } => {
                let opts = DeleteOptions { precondition_uid: Some(uid), grace_period_seconds, ..Default::default() };
                store.delete(&gvr(kind), Some(&namespace), &name, &opts)
            }
        };
        match result {
            // Races a later pass resolves, and creates refused in a terminating namespace.
            Ok(_)
            | Err(
                Error::NotFound { .. } | Error::Conflict { .. } | Error::AlreadyExists { .. } | Error::Forbidden(_),
            ) => {}
            Err(e) => tracing::warn!(?kind, error = %e, "workloads: write failed"),
        }
    }
    Reconciled { writes: vec![], requeue_at: r.requeue_at }
}

fn update(
    store: &Store,
    kind: Kind,
    mut object: Value,
    opts: WriteOptions,
    versions: &mut HashMap<(Kind, String, String), String>,
) -> crate::cluster::Result<Value> {
    let key = (kind, super::objects::namespace(&object).to_string(), super::objects::name(&object).to_string());
    if let Some(rv) = versions.get(&key) {
        object["metadata"]["resourceVersion"] = Value::String(rv.clone());
    }
    let written = store.update(&gvr(kind), Some(&key.1), &key.2, object, &opts)?;
    if let Some(rv) = written["metadata"]["resourceVersion"].as_str() {
        versions.insert(key, rv.to_string());
    }
    Ok(written)
}

fn opts(manager: &str, subresource: Subresource) -> WriteOptions {
    WriteOptions { field_manager: Some(manager.into()), subresource, ..Default::default() }
}
