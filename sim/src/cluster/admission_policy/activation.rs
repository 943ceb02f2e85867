//! The CEL variables of a request: `object`, `oldObject`, `request` and `namespaceObject`.

use super::expressions::Activation;
use super::{Operation, Target, cel_value};
use crate::cluster::meta;
use crate::cluster::resources::Gvr;
use serde_json::{Value, json};
use std::borrow::Cow;
use std::sync::Arc;

/// The user every request is made by: the holder of the cluster's bearer token, an
/// administrator as kubeadm's `kubernetes-admin` is.
const USER: &str = "forklane";
const USER_GROUPS: [&str; 2] = ["system:masters", "system:authenticated"];

/// The CEL variables of the request, seen as the resource `matched`.
pub(super) fn activation(target: &Target, matched: &Gvr) -> Activation {
    let as_matched = |o: &Option<Cow<Value>>| match o.as_deref() {
        None => cel::Value::Null,
        Some(o) if matched.version == target.gvr.version => cel_value::to_cel(o),
        // Equivalent versions of a custom resource differ in apiVersion only (conversion `None`).
        Some(o) => {
            let mut converted = o.clone();
            converted["apiVersion"] = json!(matched.api_version());
            cel_value::to_cel(&converted)
        }
    };
    let is_namespace_kind = target.kind.0.is_empty() && target.kind.2 == "Namespace";
    let namespace_object = match &target.namespace_object {
        Some(ns) if !is_namespace_kind => cel_value::to_cel(&namespace_view(ns)),
        _ => cel::Value::Null,
    };
    Activation {
        object: as_matched(&target.object),
        old_object: as_matched(&target.old_object),
        request: request_value(target, matched),
        namespace_object,
    }
}

/// The namespace as policies see it: `spec`, `status` and the identifying metadata.
fn namespace_view(ns: &Value) -> Value {
    const KEPT: [&str; 12] = [
        "name",
        "generateName",
        "namespace",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "finalizers",
    ];
    let metadata: serde_json::Map<String, Value> =
        KEPT.iter().filter_map(|k| ns["metadata"].get(*k).map(|v| (k.to_string(), v.clone()))).collect();
    json!({"metadata": metadata, "spec": ns["spec"], "status": ns["status"]})
}

/// `request`: the admission request (`admission.k8s.io/v1 AdmissionRequest`) without its
/// objects.
fn request_value(target: &Target, matched: &Gvr) -> cel::Value {
    use cel_value::{map, string};
    let (group, _, kind) = &target.kind;
    let kind_version = if matched.version == target.gvr.version { &target.kind.1 } else { &matched.version };
    let gvk = |version: &str| map([("group", string(group)), ("version", string(version)), ("kind", string(kind))]);
    let gvr = |r: &Gvr| {
        map([("group", string(&r.group)), ("version", string(&r.version)), ("resource", string(&r.resource))])
    };
    let options_kind = match target.operation {
        Operation::Create => "CreateOptions",
        Operation::Update => "UpdateOptions",
        Operation::Delete => "DeleteOptions",
    };
    let mut options = vec![("kind", string(options_kind)), ("apiVersion", string("meta.k8s.io/v1"))];
    if target.dry_run {
        options.push(("dryRun", cel::Value::List(Arc::new(vec![string("All")]))));
    }
    if let Some(manager) = target.field_manager.filter(|_| target.operation != Operation::Delete) {
        options.push(("fieldManager", string(manager)));
    }
    let groups = cel::Value::List(Arc::new(USER_GROUPS.iter().map(|g| string(g)).collect()));
    map([
        ("uid", string(&meta::new_uid())),
        ("kind", gvk(kind_version)),
        ("resource", gvr(matched)),
        ("subResource", string(target.subresource)),
        ("requestKind", gvk(&target.kind.1)),
        ("requestResource", gvr(target.gvr)),
        ("requestSubResource", string(target.subresource)),
        ("name", string(&target.name)),
        ("namespace", string(&target.namespace)),
        ("operation", string(target.operation.as_str())),
        ("userInfo", map([("username", string(USER)), ("groups", groups)])),
        ("dryRun", cel::Value::Bool(target.dry_run)),
        ("options", map(options)),
    ])
}
