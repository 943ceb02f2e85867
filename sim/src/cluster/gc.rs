//! The garbage collector (kube-controller-manager's, in miniature): deletes dependents whose
//! owners are gone, orphans dependents for `propagationPolicy=Orphan`, and holds owners in
//! foreground deletion until their dependents are gone. It works only through the store API,
//! reacting to changes, with a full sweep when it falls behind.

use crate::cluster::meta;
use crate::cluster::resources::ResourceInfo;
use crate::cluster::store::{Change, ChangeKind, DeleteOptions, Propagation, Store, storage_gvr};
use serde_json::Value;
use std::sync::Arc;

pub(crate) async fn run(store: Store) {
    store.follow(|change| handle(&store, change), || sweep(&store)).await;
}

fn handle(store: &Store, change: &Change) {
    let obj = &change.object;
    match change.kind {
        ChangeKind::Deleted => {
            let policy = if meta::finalizers(change.previous.as_deref().unwrap_or(obj))
                .iter()
                .any(|f| f == "foregroundDeletion")
            {
                Propagation::Foreground
            } else {
                Propagation::Background
            };
            collect_dependents(store, meta::uid(obj), policy);
            // A dependent going away may release an owner waiting in foreground deletion.
            for owner in owner_refs(obj) {
                release_foreground_owner(store, obj, &owner);
            }
        }
        ChangeKind::Added | ChangeKind::Modified => {
            if meta::is_deleting(obj) {
                process_deleting_owner(store, obj);
            } else if change.kind == ChangeKind::Added && !owner_refs(obj).is_empty() {
                delete_if_orphaned(store, obj);
            }
        }
    }
}

/// Handles everything as if each object had just changed.
fn sweep(store: &Store) {
    for (_, obj) in store.all_objects() {
        if meta::is_deleting(&obj) {
            process_deleting_owner(store, &obj);
        } else if !owner_refs(&obj).is_empty() {
            delete_if_orphaned(store, &obj);
        }
    }
}

fn owner_refs(obj: &Value) -> Vec<Value> {
    obj.pointer("/metadata/ownerReferences").and_then(Value::as_array).cloned().unwrap_or_default()
}

fn dependents_of(store: &Store, uid: &str) -> Vec<(Arc<ResourceInfo>, Arc<Value>)> {
    // Reads the references in place: a copy of every object's references per deletion
    // dominated the collector at thousands of objects.
    let owned = |o: &Value| {
        o.pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid))
    };
    store.all_objects().into_iter().filter(|(_, o)| owned(o)).collect()
}

/// Whether the object an owner reference points to still exists (same name and uid).
fn owner_exists(store: &Store, dependent: &Value, owner: &Value) -> bool {
    let registry = store.registry();
    let (Some(api_version), Some(kind)) = (owner["apiVersion"].as_str(), owner["kind"].as_str()) else {
        return false;
    };
    let Some((gvr, info)) = registry.by_kind(api_version, kind) else {
        return false;
    };
    let ns = info.namespaced.then(|| meta::namespace(dependent));
    store.get(&gvr, ns, owner["name"].as_str().unwrap_or_default()).is_ok_and(|o| meta::uid(&o) == owner["uid"])
}

fn delete(store: &Store, info: &ResourceInfo, obj: &Value, policy: Propagation) {
    let ns = info.namespaced.then(|| meta::namespace(obj));
    let opts = DeleteOptions {
        propagation: Some(policy),
        precondition_uid: Some(meta::uid(obj).into()),
        ..Default::default()
    };
    // NotFound or a changed uid means someone else already dealt with it.
    let _ = store.delete(&storage_gvr(info), ns, meta::name(obj), &opts);
}

fn remove_owner_ref(store: &Store, info: &ResourceInfo, obj: &Value, owner_uid: &str) {
    let ns = info.namespaced.then(|| meta::namespace(obj));
    let _ = store.modify(&storage_gvr(info), ns, meta::name(obj), |o| {
        let refs = owner_refs(o);
        let kept: Vec<Value> = refs.iter().filter(|r| r["uid"] != owner_uid).cloned().collect();
        if kept.len() == refs.len() {
            return false;
        }
        let m = meta::metadata_mut(o);
        if kept.is_empty() {
            m.remove("ownerReferences");
        } else {
            m.insert("ownerReferences".into(), Value::from(kept));
        }
        true
    });
}

/// After an owner is gone: dependents with no other live owner are deleted, the others lose
/// the dangling reference.
fn collect_dependents(store: &Store, owner_uid: &str, policy: Propagation) {
    for (info, dep) in dependents_of(store, owner_uid) {
        let others_alive =
            owner_refs(&dep).iter().filter(|r| r["uid"] != owner_uid).any(|r| owner_exists(store, &dep, r));
        if others_alive {
            remove_owner_ref(store, &info, &dep, owner_uid);
        } else {
            delete(store, &info, &dep, policy);
        }
    }
}

fn delete_if_orphaned(store: &Store, obj: &Value) {
    let refs = owner_refs(obj);
    if refs.iter().all(|r| !owner_exists(store, obj, r)) {
        let registry = store.registry();
        let api_version = obj["apiVersion"].as_str().unwrap_or_default();
        if let Some((_, info)) = registry.by_kind(api_version, obj["kind"].as_str().unwrap_or_default()) {
            delete(store, &info, obj, Propagation::Background);
        }
    }
}

fn remove_finalizer(store: &Store, obj: &Value, finalizer: &str) {
    let registry = store.registry();
    let Some((_, info)) =
        registry.by_kind(obj["apiVersion"].as_str().unwrap_or_default(), obj["kind"].as_str().unwrap_or_default())
    else {
        return;
    };
    let ns = info.namespaced.then(|| meta::namespace(obj));
    let uid = meta::uid(obj).to_string();
    let _ = store.modify(&storage_gvr(&info), ns, meta::name(obj), |o| {
        let fins = meta::finalizers(o);
        if meta::uid(o) != uid || !fins.iter().any(|f| f == finalizer) {
            return false;
        }
        let kept: Vec<String> = fins.into_iter().filter(|f| f != finalizer).collect();
        meta::set_finalizers(o, &kept);
        true
    });
}

/// Owners being deleted with the `orphan` or `foregroundDeletion` finalizer.
fn process_deleting_owner(store: &Store, owner: &Value) {
    let fins = meta::finalizers(owner);
    let uid = meta::uid(owner);
    if fins.iter().any(|f| f == "orphan") {
        for (info, dep) in dependents_of(store, uid) {
            remove_owner_ref(store, &info, &dep, uid);
        }
        remove_finalizer(store, owner, "orphan");
    } else if fins.iter().any(|f| f == "foregroundDeletion") {
        let deps = dependents_of(store, uid);
        for (info, dep) in &deps {
            if !meta::is_deleting(dep) {
                delete(store, info, dep, Propagation::Foreground);
            }
        }
        if dependents_of(store, uid).iter().all(|(_, d)| !blocks(d, uid)) {
            remove_finalizer(store, owner, "foregroundDeletion");
        }
    }
}

/// A dependent blocks its owner's foreground deletion if its reference says so.
fn blocks(dep: &Value, owner_uid: &str) -> bool {
    owner_refs(dep).iter().any(|r| r["uid"] == owner_uid && r["blockOwnerDeletion"] == true)
}

fn release_foreground_owner(store: &Store, dependent: &Value, owner_ref: &Value) {
    let registry = store.registry();
    let (Some(api_version), Some(kind)) = (owner_ref["apiVersion"].as_str(), owner_ref["kind"].as_str()) else {
        return;
    };
    let Some((gvr, info)) = registry.by_kind(api_version, kind) else {
        return;
    };
    let ns = info.namespaced.then(|| meta::namespace(dependent));
    if let Ok(owner) = store.get(&gvr, ns, owner_ref["name"].as_str().unwrap_or_default())
        && meta::uid(&owner) == owner_ref["uid"]
        && meta::is_deleting(&owner)
    {
        process_deleting_owner(store, &owner);
    }
}
