//! List with label/field selectors and `limit`/`continue` pagination. Paginated lists read
//! from a snapshot taken by the first page, so the pages together are consistent at one
//! resourceVersion, as with etcd; snapshots expire like etcd compaction and then the
//! continue token answers 410 Gone.

use super::listed::Listed;
use super::{Inner, ObjKey, Objects, Store, presented};
use crate::cluster::error::{Error, Result};
use crate::cluster::resources::{GroupResource, Gvr, ResourceInfo};
use crate::cluster::selectors::{FieldSelector, LabelSelector, supported_fields};
use crate::cluster::store::ListParams;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use std::borrow::Cow;
use std::ops::Bound;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) struct Snapshot {
    rv: u64,
    resource: GroupResource,
    objects: Objects,
    taken: Instant,
}

/// How long continue tokens stay valid (the apiserver's default compaction interval).
const SNAPSHOT_TTL: Duration = Duration::from_secs(300);
const MAX_SNAPSHOTS: usize = 64;

/// Selectors of a list or watch request, validated against the resource.
pub(crate) struct Filter {
    labels: LabelSelector,
    fields: FieldSelector,
    namespace: Option<String>,
}

impl Filter {
    pub(crate) fn new(
        info: &ResourceInfo,
        namespace: Option<&str>,
        labels: Option<&str>,
        fields: Option<&str>,
    ) -> Result<Self> {
        let mut fields = fields.unwrap_or_default().to_string();
        if info.is_view() {
            // Filters run on stored (core) Events: translate the events.k8s.io labels.
            fields = crate::cluster::events::core_field_selector(&fields)?;
        }
        let storage = info.storage_resource();
        Ok(Filter {
            labels: LabelSelector::parse(labels.unwrap_or_default())?,
            fields: FieldSelector::parse(&fields, &supported_fields(&storage.group, &storage.resource))?,
            namespace: namespace.filter(|_| info.namespaced).map(String::from),
        })
    }

    pub(crate) fn matches(&self, obj: &Value) -> bool {
        if let Some(ns) = &self.namespace
            && obj.pointer("/metadata/namespace").and_then(Value::as_str) != Some(ns)
        {
            return false;
        }
        self.labels.matches(obj) && self.fields.matches(obj)
    }

    fn is_trivial(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }
}

impl Store {
    /// Lists objects as a `<Kind>List`.
    pub fn list(&self, gvr: &Gvr, namespace: Option<&str>, params: &ListParams) -> Result<Value> {
        Ok(self.select(gvr, namespace, params)?.into_value())
    }

    /// A list's objects and metadata, to be rendered (`Listed`) after the lock.
    pub(crate) fn select(&self, gvr: &Gvr, namespace: Option<&str>, params: &ListParams) -> Result<Listed> {
        let mut inner = self.lock();
        let info = inner.resource(gvr)?;
        let filter = Filter::new(&info, namespace, params.label_selector.as_deref(), params.field_selector.as_deref())?;
        if let (Some("Exact"), Some(rv)) =
            (params.resource_version_match.as_deref(), params.resource_version.as_deref())
            && rv != inner.rv.to_string()
        {
            return Err(Error::Gone(format!("too old resource version: {rv} ({})", inner.rv)));
        }
        let (list_rv, objects, start) = match params.continue_token.as_deref().filter(|t| !t.is_empty()) {
            Some(token) => {
                let (rv, start) = decode_continue(token)?;
                let snap = inner
                    .snapshots
                    .iter()
                    .find(|s| s.rv == rv && s.resource == info.storage_resource())
                    .ok_or_else(|| Error::Gone(CONTINUE_EXPIRED.into()))?;
                (rv, snap.objects.clone(), Some(start))
            }
            None => (inner.rv, inner.table(&info.storage_resource()), None),
        };
        let prefix = filter.namespace.clone();
        // A first page with an indexed label requirement visits only the candidates; continued
        // pages read their snapshot, which has no index.
        let candidates = match start {
            None => inner.labels.get(&info.storage_resource()).and_then(|index| index.candidates(&filter.labels)),
            Some(_) => None,
        };
        let entries: Box<dyn Iterator<Item = (&ObjKey, &Arc<Value>)>> = match candidates {
            Some(keys) => Box::new(
                keys.into_iter()
                    .filter(|k| prefix.as_ref().is_none_or(|ns| &k.0 == ns))
                    .filter_map(|k| Some((k, objects.get(k)?))),
            ),
            None => {
                let lower = match (&start, &prefix) {
                    (Some(k), _) => Bound::Excluded(k.clone()),
                    (None, Some(ns)) => Bound::Included((ns.clone(), String::new())),
                    (None, None) => Bound::Unbounded,
                };
                Box::new(
                    objects
                        .range((lower, Bound::Unbounded))
                        .take_while(|(key, _)| prefix.as_ref().is_none_or(|ns| &key.0 == ns)),
                )
            }
        };
        let limit = params.limit.filter(|l| *l > 0);
        // Matching objects are collected under the lock and rendered after it.
        let mut found: Vec<Arc<Value>> = Vec::new();
        let mut last_key: Option<ObjKey> = None;
        let mut more = false;
        for (key, obj) in entries {
            if !filter.matches(obj) {
                continue;
            }
            if limit.is_some_and(|l| found.len() >= l) {
                more = true;
                break;
            }
            found.push(obj.clone());
            last_key = Some(key.clone());
        }
        let mut metadata = json!({"resourceVersion": list_rv.to_string()});
        if more && let Some(key) = last_key {
            metadata["continue"] = json!(encode_continue(list_rv, &key));
            if filter.is_trivial() {
                let after = objects.range((Bound::Excluded(key), Bound::Unbounded)).count();
                metadata["remainingItemCount"] = json!(after);
            }
            if start.is_none() {
                remember_snapshot(&mut inner, list_rv, info.storage_resource(), objects);
            }
        }
        Ok(Listed { list_kind: info.list_kind.clone(), gvr: gvr.clone(), metadata, items: found })
    }
}

impl Store {
    /// Every object of a resource for the in-process controllers, as informers share them: the
    /// stored objects themselves (no copy; a copy of every object per pass dominated the
    /// workload simulator's CPU at 2,000 pods), in the requested version. They carry
    /// `metadata.managedFields`, which kube-controller-manager's informers strip: a controller
    /// writing one back must drop them first (an update without managedFields keeps them).
    pub(crate) fn list_for_controller(&self, gvr: &Gvr) -> Result<Vec<Arc<Value>>> {
        let objects = {
            let inner = self.lock();
            let info = inner.resource(gvr)?;
            inner.table(&info.storage_resource())
        };
        let shared = |obj: &Arc<Value>| match presented(obj, gvr) {
            Cow::Borrowed(_) => obj.clone(),
            Cow::Owned(other) => Arc::new(other),
        };
        Ok(objects.values().map(shared).collect())
    }
}

fn remember_snapshot(inner: &mut Inner, rv: u64, resource: GroupResource, objects: Objects) {
    inner.snapshots.retain(|s| s.taken.elapsed() < SNAPSHOT_TTL);
    if inner.snapshots.iter().any(|s| s.rv == rv && s.resource == resource) {
        return;
    }
    if inner.snapshots.len() >= MAX_SNAPSHOTS {
        inner.snapshots.pop_front();
    }
    inner.snapshots.push_back(Snapshot { rv, resource, objects, taken: Instant::now() });
}

const CONTINUE_EXPIRED: &str = "The provided continue parameter is too old to display a consistent list result. \
You can start a new list without the continue parameter, or use the continue token in this response to retrieve \
the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that \
were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.";

/// The apiserver's token format: base64 of `{"v":"meta.k8s.io/v1","rv":N,"start":"<key>\u0000"}`.
fn encode_continue(rv: u64, key: &ObjKey) -> String {
    let start = if key.0.is_empty() { format!("{}\u{0}", key.1) } else { format!("{}/{}\u{0}", key.0, key.1) };
    B64.encode(json!({"v": "meta.k8s.io/v1", "rv": rv, "start": start}).to_string())
}

fn decode_continue(token: &str) -> Result<(u64, ObjKey)> {
    let bad = || Error::BadRequest(format!("continue key is not valid: {token}"));
    let bytes = B64.decode(token).map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let rv = v["rv"].as_u64().ok_or_else(bad)?;
    let start = v["start"].as_str().ok_or_else(bad)?.trim_end_matches('\u{0}');
    let key = match start.split_once('/') {
        Some((ns, name)) => (ns.to_string(), name.to_string()),
        None => (String::new(), start.to_string()),
    };
    Ok((rv, key))
}
