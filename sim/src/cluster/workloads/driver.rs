//! Runs the pure controllers against the store: a pass lists the objects, reconciles
//! deployments, then replica sets, then pods, then services (each stage reading what the
//! previous one wrote) and sends the writes through the store's public API with the
//! components' field managers. A pass runs after every relevant change (bursts coalesce),
//! when the earliest timer of the simulated clock is due, and at the latest `SAFETY_NET`
//! of simulated time after the previous one. Changes to other resources cost nothing.

use super::pods::{IpPool, KubeletSettings, reconcile_pod};
use super::{Kind, Reconciled, Write, deployment, endpoints, replicaset};
use crate::cluster::error::Error;
use crate::cluster::resources::Gvr;
use crate::cluster::store::{Change, DeleteOptions, Store, Subresource, WriteOptions};
use forklane_core::clock::{Clock, Time};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
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
        // The pass's own writes and anything written meanwhile are already queued as changes,
        // so the wait below ends at once when there is more to do.
        let deadline = tokio::time::Instant::now() + next_look(&clock, wake);
        if !wait(&mut changes, deadline).await {
            return;
        }
    }
}

/// The longest the simulator goes without a pass, in simulated time: a safety net against a
/// missed notification or a transition some controller forgot to time, so that it costs
/// seconds rather than the minutes of a progress deadline. Passes are idempotent, so an
/// extra one only costs its reads.
const SAFETY_NET: Duration = Duration::from_secs(30);
/// ... and in real time, for slow clocks.
const SAFETY_NET_REAL: Duration = Duration::from_secs(5);

/// Real time until the next pass if nothing relevant changes: the earliest timer, bounded
/// by the safety net.
fn next_look(clock: &Clock, wake: Option<Time>) -> Duration {
    let net = clock.real_duration(SAFETY_NET).min(SAFETY_NET_REAL);
    wake.map_or(net, |t| clock.real_until(t).min(net))
}

/// Waits for a relevant change (then lets its burst settle) or `deadline`, whichever comes
/// first; changes to other resources neither end the wait nor move the deadline. False when
/// the store is gone.
async fn wait(changes: &mut broadcast::Receiver<Arc<Change>>, deadline: tokio::time::Instant) -> bool {
    loop {
        tokio::select! {
            change = changes.recv() => match change {
                Ok(c) if !relevant(&c.resource.group, &c.resource.resource) => {}
                Ok(_) | Err(RecvError::Lagged(_)) => {
                    // Coalesce a burst (e.g. ten pods created) into one pass.
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    loop {
                        match changes.try_recv() {
                            Ok(_) | Err(TryRecvError::Lagged(_)) => {}
                            Err(TryRecvError::Empty) => return true,
                            Err(TryRecvError::Closed) => return false,
                        }
                    }
                }
                Err(RecvError::Closed) => return false,
            },
            _ = tokio::time::sleep_until(deadline) => return true,
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

/// Objects by namespace, in the store's order (the stored objects, shared).
type ByNamespace = BTreeMap<String, Vec<Arc<Value>>>;

/// The objects a pass reads, listed once and again only after the pass has written that
/// kind (each stage reads what the previous ones wrote). Others' writes meanwhile are
/// changes, which bring another pass.
struct Lists<'a> {
    store: &'a Store,
    listed: HashMap<Kind, Rc<ByNamespace>>,
}

impl<'a> Lists<'a> {
    fn new(store: &'a Store) -> Self {
        Lists { store, listed: HashMap::new() }
    }

    fn get(&mut self, kind: Kind) -> Rc<ByNamespace> {
        let store = self.store;
        self.listed
            .entry(kind)
            .or_insert_with(|| {
                let items = store.list_for_controller(&gvr(kind)).unwrap_or_else(|e| {
                    tracing::warn!(?kind, error = %e, "workloads: list failed");
                    vec![]
                });
                let mut by_ns = ByNamespace::new();
                for item in items {
                    by_ns.entry(super::objects::namespace(&item).to_string()).or_default().push(item);
                }
                Rc::new(by_ns)
            })
            .clone()
    }

    /// Sends the writes (see `apply`) and forgets the lists of the kinds written.
    fn apply(&mut self, done: &mut Reconciled, r: Reconciled) {
        for w in &r.writes {
            self.listed.remove(&w.kind());
        }
        done.merge(apply(self.store, r));
    }
}

/// The objects of one namespace.
fn of<'a>(by_ns: &'a ByNamespace, ns: &str) -> &'a [Arc<Value>] {
    by_ns.get(ns).map_or(&[], Vec::as_slice)
}

/// Objects by the uid of their controller, so each owner reads its own (a scan of the
/// namespace per owner made a pass quadratic: 1,000 ReplicaSets × 2,000 pods).
fn by_controller(by_ns: &ByNamespace) -> HashMap<&str, Vec<&Value>> {
    let mut owned: HashMap<&str, Vec<&Value>> = HashMap::new();
    for obj in by_ns.values().flatten().map(Arc::as_ref) {
        for uid in super::objects::controller_uids(obj) {
            owned.entry(uid).or_default().push(obj);
        }
    }
    owned
}

/// One pass over everything; returns the earliest timer.
fn pass(store: &Store, now: Time, settings: &KubeletSettings, ips: &mut IpPool) -> Option<Time> {
    let mut done = Reconciled::default();
    let mut lists = Lists::new(store);

    let (rss, pods) = (lists.get(Kind::ReplicaSet), lists.get(Kind::Pod));
    let rss_of = by_controller(&rss);
    for d in lists.get(Kind::Deployment).values().flatten() {
        let ns = super::objects::namespace(d);
        let own = rss_of.get(super::objects::uid(d)).map_or(&[][..], Vec::as_slice);
        let r = deployment::reconcile_deployment(d, of(&rss, ns), own.iter().copied(), of(&pods, ns), now);
        lists.apply(&mut done, r);
    }

    let pods = lists.get(Kind::Pod);
    let pods_of = by_controller(&pods);
    for rs in lists.get(Kind::ReplicaSet).values().flatten() {
        let owned = pods_of.get(super::objects::uid(rs)).map_or(&[][..], Vec::as_slice);
        let r = replicaset::reconcile_replica_set(rs, owned.iter().copied(), now);
        lists.apply(&mut done, r);
    }

    let pods = lists.get(Kind::Pod);
    let mut used: HashSet<String> =
        pods.values().flatten().filter_map(|p| p["status"]["podIP"].as_str().map(String::from)).collect();
    for pod in pods.values().flatten() {
        let mut allocate = || {
            let ip = ips.allocate(&used);
            used.insert(ip.clone());
            ip
        };
        let r = reconcile_pod(pod, now, settings, &mut allocate);
        lists.apply(&mut done, r);
    }

    let services = lists.get(Kind::Service);
    let (pods, eps, slices) = (lists.get(Kind::Pod), lists.get(Kind::Endpoints), lists.get(Kind::EndpointSlice));
    for (ns, svcs) in services.iter() {
        for svc in svcs {
            let r = endpoints::reconcile_service(svc, of(&pods, ns), of(&eps, ns), of(&slices, ns), now);
            lists.apply(&mut done, r);
        }
    }
    for (ns, list) in eps.iter() {
        for ep in list {
            if let Some(w) = endpoints::orphaned_endpoints(ep, of(&services, ns)) {
                lists.apply(&mut done, Reconciled { writes: vec![w], requeue_at: None });
            }
        }
    }
    done.requeue_at
}

/// Sends the writes in order, without the `metadata.managedFields` of the listed objects they
/// were made from (the store keeps the fields' ownership). Successive writes to one object (an update then a status
/// update) carry the resourceVersion the previous one produced, so they do not conflict
/// with each other but still conflict with anyone else's write in between. Failures are
/// left to the next pass, which starts from fresh state, as a requeue would.
fn apply(store: &Store, r: Reconciled) -> Reconciled {
    let mut versions: HashMap<(Kind, String, String), String> = HashMap::new();
    for mut w in r.writes {
        let kind = w.kind();
        if let Write::Create { object, .. } | Write::Update { object, .. } | Write::UpdateStatus { object, .. } = &mut w
            && let Some(meta) = object["metadata"].as_object_mut()
        {
            meta.remove("managedFields");
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use forklane_core::clock::add_secs;

    fn close(a: Duration, b: Duration) -> bool {
        a.abs_diff(b) < Duration::from_millis(5)
    }

    #[test]
    fn the_next_look_is_the_earliest_timer_within_the_safety_net() {
        // At 100×: 30 simulated seconds are 300 ms.
        let fast = Clock::scaled(100.0);
        let cases = [
            ("no timer", None, Duration::from_millis(300)),
            ("a probe in 5 s", Some(add_secs(fast.now(), 5)), Duration::from_millis(50)),
            ("a timer already due", Some(add_secs(fast.now(), -1)), Duration::ZERO),
            ("a progress deadline in 10 min", Some(add_secs(fast.now(), 600)), Duration::from_millis(300)),
        ];
        for (what, wake, want) in cases {
            let got = next_look(&fast, wake);
            assert!(close(got, want), "{what}: {got:?}, want {want:?}");
        }
        // In real time the net is at most 5 s.
        let real = Clock::real();
        assert!(close(next_look(&real, None), Duration::from_secs(5)));
        assert!(close(next_look(&real, Some(add_secs(real.now(), 2))), Duration::from_secs(2)));
    }

    #[tokio::test]
    async fn changes_to_other_resources_do_not_end_the_wait() {
        let store = Store::new(Default::default(), Clock::real());
        let mut changes = store.changes();
        let opts = WriteOptions::default();
        let namespaces = Gvr::new("", "v1", "namespaces");
        store.create(&namespaces, None, serde_json::json!({"metadata": {"name": "default"}}), &opts).unwrap();
        let configmaps = Gvr::new("", "v1", "configmaps");
        for i in 0..3 {
            let cm = serde_json::json!({"metadata": {"name": format!("cm-{i}")}});
            store.create(&configmaps, Some("default"), cm, &opts).unwrap();
        }
        let started = tokio::time::Instant::now();
        assert!(wait(&mut changes, started + Duration::from_millis(50)).await);
        assert!(started.elapsed() >= Duration::from_millis(50), "ended by the deadline, not by the changes");

        let pod = serde_json::json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
        store.create(&gvr(Kind::Pod), Some("default"), pod, &opts).unwrap();
        let started = tokio::time::Instant::now();
        assert!(wait(&mut changes, started + Duration::from_secs(5)).await);
        assert!(started.elapsed() < Duration::from_secs(1), "a pod change ends the wait");
        assert!(changes.try_recv().is_err(), "the burst was taken");
    }
}
