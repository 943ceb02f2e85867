//! The object store: every object of every resource, a global resourceVersion counter (like
//! etcd's revision), a bounded change history for watch resumption, and a broadcast of
//! changes for watches and the built-in controllers. The HTTP layer is a thin translation
//! onto this API, so in-process users (simulators, tests) get the same semantics as kubectl.

mod index;
mod list;
mod listed;
mod options;
mod watch;
mod write;

pub use options::{
    DeleteOptions, FieldValidation, ListParams, Patch, Propagation, Subresource, WatchParams, WriteOptions,
};
pub use watch::{WatchEvent, WatchStream};

use crate::cluster::admission::Allocator;
use crate::cluster::error::{Error, Result};
use crate::cluster::events;
use crate::cluster::meta;
use crate::cluster::resources::{GroupResource, Gvr, Registry, ResourceInfo};
use forklane_core::clock::{Clock, Time};
use imbl::OrdMap;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::broadcast;

/// `(namespace, name)`; the namespace is empty for cluster-scoped objects.
pub(crate) type ObjKey = (String, String);
pub(crate) type Objects = OrdMap<ObjKey, Arc<Value>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

/// One committed write, as delivered to watches and controllers.
#[derive(Debug)]
pub struct Change {
    pub rv: u64,
    pub kind: ChangeKind,
    pub resource: GroupResource,
    /// The object after the change (for deletions: as it was, with the deletion's version).
    pub object: Arc<Value>,
    /// The object before the change, used to turn label changes into ADDED/DELETED for
    /// selector-filtered watches, as the watch cache does.
    pub previous: Option<Arc<Value>>,
    /// When it was made (real time): followers that act after a delay count it from here, not
    /// from when they got round to reading the change.
    pub at: std::time::Instant,
}

/// Sizing of the store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Changes kept for watch resumption; older versions answer 410 Gone ("compaction").
    pub history: usize,
    /// Capacity of the change broadcast; a watch that falls further behind is closed, as
    /// the apiserver closes slow watchers, and its client resumes from history.
    pub broadcast: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig { history: 100_000, broadcast: 16_384 }
    }
}

pub(crate) struct Inner {
    pub rv: u64,
    pub registry: Registry,
    pub objects: HashMap<GroupResource, Objects>,
    /// Label indexes of `objects`, per resource.
    labels: HashMap<GroupResource, index::LabelIndex>,
    history: VecDeque<Arc<Change>>,
    /// History holds every change with a version above this one.
    compacted: u64,
    /// Consistent snapshots for paginated lists, keyed by list version.
    pub snapshots: VecDeque<list::Snapshot>,
    pub allocator: Allocator,
}

struct Shared {
    inner: Mutex<Inner>,
    changes: broadcast::Sender<Arc<Change>>,
    config: StoreConfig,
    clock: Clock,
}

/// A cheap, clonable handle to the object store.
#[derive(Clone)]
pub struct Store(Arc<Shared>);

impl Store {
    /// A store whose own timestamps (creation, deletion, managed fields, table ages) are read
    /// from `clock`, the clock the cluster's simulators run on.
    pub fn new(config: StoreConfig, clock: Clock) -> Self {
        let (changes, _) = broadcast::channel(config.broadcast);
        let inner = Inner {
            rv: 0,
            registry: Registry::default(),
            objects: HashMap::new(),
            labels: HashMap::new(),
            history: VecDeque::new(),
            compacted: 0,
            snapshots: VecDeque::new(),
            allocator: Allocator::default(),
        };
        Store(Arc::new(Shared { inner: Mutex::new(inner), changes, config, clock }))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (writes commit at the end).
        self.0.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn clock(&self) -> Clock {
        self.0.clock
    }

    /// The API server's time, as written into objects.
    pub fn now(&self) -> Time {
        self.0.clock.now()
    }

    /// Snapshot of the served resources (built-ins and established CRDs).
    pub(crate) fn registry(&self) -> Registry {
        self.lock().registry.clone()
    }

    /// The served resource, or the apiserver's 404 for an unknown path.
    pub(crate) fn resource(&self, gvr: &Gvr) -> Result<Arc<ResourceInfo>> {
        self.lock().resource(gvr)
    }

    /// The current resourceVersion (the latest committed change).
    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    /// Subscribes to every committed change of every resource (for controllers).
    pub fn changes(&self) -> broadcast::Receiver<Arc<Change>> {
        self.0.changes.subscribe()
    }

    /// Runs a built-in controller until the store closes: `resync` first and whenever it falls
    /// behind the change stream (changes were dropped), `handle` for every change otherwise.
    pub(crate) async fn follow(&self, mut handle: impl FnMut(&Change), mut resync: impl FnMut()) {
        let mut changes = self.changes();
        resync();
        loop {
            match changes.recv().await {
                Ok(change) => handle(&change),
                Err(broadcast::error::RecvError::Lagged(_)) => resync(),
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// Drops the whole change history, like an etcd compaction: watches resuming from
    /// any earlier version get 410 Gone and must re-list.
    pub fn compact(&self) {
        let mut inner = self.lock();
        inner.history.clear();
        inner.compacted = inner.rv;
    }

    pub fn get(&self, gvr: &Gvr, namespace: Option<&str>, name: &str) -> Result<Value> {
        let inner = self.lock();
        let info = inner.resource(gvr)?;
        let obj =
            inner.find(&info, namespace, name).ok_or_else(|| Error::not_found(&gvr.group, &gvr.resource, name))?;
        Ok(present(&obj, gvr))
    }
}

impl Inner {
    pub(crate) fn resource(&self, gvr: &Gvr) -> Result<Arc<ResourceInfo>> {
        self.registry.lookup(gvr).ok_or_else(|| Error::NotFound {
            message: "the server could not find the requested resource".into(),
            details: Value::Null,
        })
    }

    pub(crate) fn find(&self, info: &ResourceInfo, namespace: Option<&str>, name: &str) -> Option<Arc<Value>> {
        let key = (if info.namespaced { namespace.unwrap_or_default() } else { "" }.to_string(), name.to_string());
        self.objects.get(&info.storage_resource())?.get(&key).cloned()
    }

    pub(crate) fn table(&self, gr: &GroupResource) -> Objects {
        self.objects.get(gr).cloned().unwrap_or_default()
    }

    /// Drops every object of a resource (its definition is gone).
    pub(crate) fn drop_table(&mut self, gr: &GroupResource) {
        self.objects.remove(gr);
        self.labels.remove(gr);
    }
}

/// Renders a stored object in the requested version. Stored objects carry the storage
/// version; events.k8s.io Events convert from core ones; CRD versions convert with strategy
/// `None`, which only rewrites `apiVersion`.
pub(crate) fn present(obj: &Value, gvr: &Gvr) -> Value {
    presented(obj, gvr).into_owned()
}

/// `present` without a copy when the stored object already is the requested form.
pub(crate) fn presented<'a>(obj: &'a Value, gvr: &Gvr) -> Cow<'a, Value> {
    if events::is_events_view(&gvr.group, &gvr.resource) && obj["apiVersion"] == "v1" {
        return Cow::Owned(events::to_events(obj));
    }
    let api_version = gvr.api_version();
    if obj["apiVersion"] == api_version.as_str() {
        return Cow::Borrowed(obj);
    }
    let mut out = obj.clone();
    out["apiVersion"] = Value::String(api_version);
    Cow::Owned(out)
}

impl Store {
    /// Commits one change under the lock: assigns the next resourceVersion, updates the
    /// objects, records history and notifies watches.
    pub(crate) fn commit(
        &self,
        inner: &mut Inner,
        kind: ChangeKind,
        info: &ResourceInfo,
        mut obj: Value,
    ) -> Arc<Value> {
        inner.rv += 1;
        let rv = inner.rv;
        meta::metadata_mut(&mut obj).insert("resourceVersion".into(), Value::String(rv.to_string()));
        let key = (
            if info.namespaced { meta::namespace(&obj).to_string() } else { String::new() },
            meta::name(&obj).to_string(),
        );
        let obj = Arc::new(obj);
        let table = inner.objects.entry(info.storage_resource()).or_default();
        let previous = match kind {
            ChangeKind::Deleted => table.remove(&key),
            _ => table.insert(key.clone(), obj.clone()),
        };
        let after = (kind != ChangeKind::Deleted).then_some(&*obj);
        inner.labels.entry(info.storage_resource()).or_default().update(&key, previous.as_deref(), after);
        let resource = info.storage_resource();
        let change =
            Arc::new(Change { rv, kind, resource, object: obj.clone(), previous, at: std::time::Instant::now() });
        inner.history.push_back(change.clone());
        while inner.history.len() > self.0.config.history {
            if let Some(old) = inner.history.pop_front() {
                inner.compacted = old.rv;
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = self.0.changes.send(change);
        obj
    }
}

impl Store {
    /// Every stored object with its resource (for controllers' full sweeps).
    pub(crate) fn all_objects(&self) -> Vec<(Arc<ResourceInfo>, Arc<Value>)> {
        let inner = self.lock();
        let mut out = Vec::new();
        for info in inner.registry.all().filter(|i| !i.is_view()) {
            for obj in inner.table(&info.group_resource()).values() {
                out.push((info.clone(), obj.clone()));
            }
        }
        out
    }

    /// Read-modify-write with optimistic concurrency, retried on conflict: the usual
    /// controller update loop. `f` returns false to skip the write.
    pub(crate) fn modify(
        &self,
        gvr: &Gvr,
        namespace: Option<&str>,
        name: &str,
        mut f: impl FnMut(&mut Value) -> bool,
    ) -> Result<Value> {
        loop {
            let mut obj = self.get(gvr, namespace, name)?;
            if !f(&mut obj) {
                return Ok(obj);
            }
            match self.update(gvr, namespace, name, obj, &options::WriteOptions::default()) {
                Err(Error::Conflict { .. }) => continue,
                other => return other,
            }
        }
    }
}

/// The Gvr addressing a resource in its storage version.
pub(crate) fn storage_gvr(info: &ResourceInfo) -> Gvr {
    Gvr::new(&info.group, &info.storage, &info.resource)
}
