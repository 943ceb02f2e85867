//! Controllers that finish deletions the apiserver only starts: the namespace controller
//! (empties a terminating namespace, then clears its `kubernetes` finalizer) and the CRD
//! cleanup (removes a deleted CRD's custom objects, then its cleanup finalizer).

use crate::cluster::crd::CLEANUP_FINALIZER;
use crate::cluster::meta;
use crate::cluster::resources::Gvr;
use crate::cluster::store::{Change, ChangeKind, DeleteOptions, ListParams, Store, storage_gvr};
use serde_json::Value;

pub(crate) async fn run(store: Store) {
    store.follow(|change| handle(&store, change), || sweep(&store)).await;
}

fn handle(store: &Store, change: &Change) {
    let obj = &change.object;
    match (change.resource.group.as_str(), change.resource.resource.as_str()) {
        ("", "namespaces") if meta::is_deleting(obj) && change.kind != ChangeKind::Deleted => {
            empty_namespace(store, meta::name(obj))
        }
        ("apiextensions.k8s.io", "customresourcedefinitions")
            if meta::is_deleting(obj) && change.kind != ChangeKind::Deleted =>
        {
            clean_up_crd(store, obj)
        }
        _ if change.kind == ChangeKind::Deleted => {
            // The last object of a terminating namespace (or of a deleted CRD) may be gone now.
            let ns = meta::namespace(obj);
            let namespaces = Gvr::new("", "v1", "namespaces");
            if !ns.is_empty() && store.get(&namespaces, None, ns).is_ok_and(|n| meta::is_deleting(&n)) {
                empty_namespace(store, ns);
            }
            let crds = Gvr::new("apiextensions.k8s.io", "v1", "customresourcedefinitions");
            let crd_name = format!("{}.{}", change.resource.resource, change.resource.group);
            if let Ok(crd) = store.get(&crds, None, &crd_name)
                && meta::is_deleting(&crd)
            {
                clean_up_crd(store, &crd);
            }
        }
        _ => {}
    }
}

fn sweep(store: &Store) {
    for (info, obj) in store.all_objects() {
        if meta::is_deleting(&obj) && info.group.is_empty() && info.resource == "namespaces" {
            empty_namespace(store, meta::name(&obj));
        } else if meta::is_deleting(&obj) && info.resource == "customresourcedefinitions" {
            clean_up_crd(store, &obj);
        }
    }
}

/// Deletes everything in the namespace; once nothing is left, finalizes it.
fn empty_namespace(store: &Store, namespace: &str) {
    let mut remaining = 0;
    for info in store.registry().all().filter(|i| i.namespaced && !i.is_view()) {
        let gvr = storage_gvr(info);
        let Ok(list) = store.list(&gvr, Some(namespace), &ListParams::default()) else { continue };
        for item in list["items"].as_array().into_iter().flatten() {
            remaining += 1;
            if !meta::is_deleting(item) {
                let _ = store.delete(&gvr, Some(namespace), meta::name(item), &DeleteOptions::default());
            }
        }
    }
    if remaining == 0 {
        let _ = store.finalize_namespace(namespace, vec![]);
    }
}

fn clean_up_crd(store: &Store, crd: &Value) {
    let group = crd["spec"]["group"].as_str().unwrap_or_default();
    let plural = crd["spec"]["names"]["plural"].as_str().unwrap_or_default();
    let registry = store.registry();
    let served =
        registry.get(&crate::cluster::resources::GroupResource { group: group.into(), resource: plural.into() });
    let mut remaining = 0;
    if let Some(info) = served {
        let gvr = storage_gvr(&info);
        if let Ok(list) = store.list(&gvr, None, &ListParams::default()) {
            for item in list["items"].as_array().into_iter().flatten() {
                remaining += 1;
                if !meta::is_deleting(item) {
                    let ns = info.namespaced.then(|| meta::namespace(item));
                    let _ = store.delete(&gvr, ns, meta::name(item), &DeleteOptions::default());
                }
            }
        }
    }
    if remaining == 0 {
        let crds = Gvr::new("apiextensions.k8s.io", "v1", "customresourcedefinitions");
        let _ = store.modify(&crds, None, meta::name(crd), |c| {
            let fins = meta::finalizers(c);
            if !fins.iter().any(|f| f == CLEANUP_FINALIZER) {
                return false;
            }
            let kept: Vec<String> = fins.into_iter().filter(|f| f != CLEANUP_FINALIZER).collect();
            meta::set_finalizers(c, &kept);
            true
        });
    }
}
