//! The service account controller: every active namespace gets a `default` ServiceAccount,
//! recreated if deleted, as kube-controller-manager's `serviceaccount-controller` does.

use crate::cluster::meta;
use crate::cluster::resources::Gvr;
use crate::cluster::store::{ChangeKind, ListParams, Store, WriteOptions};
use serde_json::json;

const DEFAULT: &str = "default";

pub(crate) async fn run(store: Store) {
    let handle = |change: &crate::cluster::store::Change| match (
        change.resource.group.as_str(),
        change.resource.resource.as_str(),
        change.kind,
    ) {
        ("", "namespaces", ChangeKind::Added | ChangeKind::Modified) => ensure(&store, meta::name(&change.object)),
        ("", "serviceaccounts", ChangeKind::Deleted) if meta::name(&change.object) == DEFAULT => {
            ensure(&store, meta::namespace(&change.object))
        }
        _ => {}
    };
    store.follow(handle, || sweep(&store)).await;
}

/// Gives every active namespace its `default` ServiceAccount. Also run once before the
/// server starts, so the initial namespaces have theirs from the first request on.
pub(crate) fn sweep(store: &Store) {
    let Ok(namespaces) = store.list(&Gvr::new("", "v1", "namespaces"), None, &ListParams::default()) else { return };
    for ns in namespaces["items"].as_array().into_iter().flatten() {
        ensure(store, meta::name(ns));
    }
}

/// Creates `default` in an active namespace that lacks it.
fn ensure(store: &Store, namespace: &str) {
    let sa = Gvr::new("", "v1", "serviceaccounts");
    let active = store.get(&Gvr::new("", "v1", "namespaces"), None, namespace).is_ok_and(|n| !meta::is_deleting(&n));
    if !active || store.get(&sa, Some(namespace), DEFAULT).is_ok() {
        return;
    }
    let opts = WriteOptions { field_manager: Some("kube-controller-manager".into()), ..Default::default() };
    // AlreadyExists (a concurrent create) or a namespace that just started terminating is fine.
    let _ = store.create(&sa, Some(namespace), json!({"metadata": {"name": DEFAULT}}), &opts);
}
