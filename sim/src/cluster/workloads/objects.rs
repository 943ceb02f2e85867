//! Reading and writing the parts of objects the controllers care about: owner references,
//! conditions, pod readiness and availability (the `podutil` helpers of Kubernetes).

use forklane_core::clock::{Time, add_secs, format_time, parse_time};
use serde_json::{Map, Value, json};

pub(crate) fn name(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or_default()
}

pub(crate) fn namespace(obj: &Value) -> &str {
    obj["metadata"]["namespace"].as_str().unwrap_or_default()
}

pub(crate) fn uid(obj: &Value) -> &str {
    obj["metadata"]["uid"].as_str().unwrap_or_default()
}

pub(crate) fn generation(obj: &Value) -> i64 {
    obj["metadata"]["generation"].as_i64().unwrap_or(0)
}

pub(crate) fn is_deleting(obj: &Value) -> bool {
    !obj["metadata"]["deletionTimestamp"].is_null()
}

pub(crate) fn created(obj: &Value) -> Option<Time> {
    obj["metadata"]["creationTimestamp"].as_str().and_then(parse_time)
}

pub(crate) fn annotation<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj["metadata"]["annotations"][key].as_str()
}

/// Sets an annotation; returns whether it changed.
pub(crate) fn set_annotation(obj: &mut Value, key: &str, value: &str) -> bool {
    if annotation(obj, key) == Some(value) {
        return false;
    }
    let meta = obj["metadata"].as_object_mut().expect("objects have metadata");
    let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
    if !annotations.is_object() {
        *annotations = json!({});
    }
    annotations[key] = json!(value);
    true
}

pub(crate) fn labels(obj: &Value) -> Map<String, Value> {
    obj["metadata"]["labels"].as_object().cloned().unwrap_or_default()
}

/// The owner reference a controller puts on what it creates (`metav1.NewControllerRef`).
pub(crate) fn controller_ref(owner: &Value, api_version: &str, kind: &str) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "name": name(owner),
        "uid": uid(owner),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// Whether `obj`'s controller reference points at the object with this uid.
pub(crate) fn controlled_by(obj: &Value, owner_uid: &str) -> bool {
    controller_uids(obj).any(|u| u == owner_uid)
}

/// The uids in `obj`'s controller references (`controller: true`; the apiserver allows one).
pub(crate) fn controller_uids(obj: &Value) -> impl Iterator<Item = &str> {
    obj["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["controller"] == true)
        .filter_map(|r| r["uid"].as_str())
}

/// `spec.replicas` with the API default of 1.
pub(crate) fn spec_replicas(obj: &Value) -> i64 {
    obj["spec"]["replicas"].as_i64().unwrap_or(1)
}

pub(crate) fn status_int(obj: &Value, field: &str) -> i64 {
    obj["status"][field].as_i64().unwrap_or(0)
}

pub(crate) fn condition<'a>(obj: &'a Value, kind: &str) -> Option<&'a Value> {
    obj["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == kind)
}

pub(crate) fn condition_time(cond: &Value, field: &str) -> Option<Time> {
    cond[field].as_str().and_then(parse_time)
}

/// A pod condition (`lastProbeTime` null, as the kubelet writes them).
pub(crate) fn pod_condition(
    kind: &str,
    status: bool,
    since: Time,
    reason: Option<&str>,
    message: Option<&str>,
) -> Value {
    let mut c = json!({
        "type": kind,
        "status": if status { "True" } else { "False" },
        "lastProbeTime": null,
        "lastTransitionTime": format_time(since),
    });
    if let Some(r) = reason {
        c["reason"] = json!(r);
    }
    if let Some(m) = message {
        c["message"] = json!(m);
    }
    c
}

pub(crate) fn phase(pod: &Value) -> &str {
    pod["status"]["phase"].as_str().unwrap_or_default()
}

/// `controller.IsPodActive`: not finished and not being deleted.
pub(crate) fn is_pod_active(pod: &Value) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed") && !is_deleting(pod)
}

pub(crate) fn is_pod_ready(pod: &Value) -> bool {
    condition(pod, "Ready").is_some_and(|c| c["status"] == "True")
}

/// When the pod became ready, if it is.
pub(crate) fn pod_ready_since(pod: &Value) -> Option<Time> {
    condition(pod, "Ready").filter(|c| c["status"] == "True").and_then(|c| condition_time(c, "lastTransitionTime"))
}

/// `podutil.IsPodAvailable`: ready for strictly more than `min_ready_seconds`.
pub(crate) fn is_pod_available(pod: &Value, min_ready_seconds: i64, now: Time) -> bool {
    match pod_ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds == 0 => true,
        Some(since) => add_secs(since, min_ready_seconds) < now,
    }
}

/// When a ready pod that is not yet available becomes available (for re-checking then).
pub(crate) fn pod_available_at(pod: &Value, min_ready_seconds: i64) -> Option<Time> {
    // One second after the threshold: availability needs the threshold to be strictly past.
    pod_ready_since(pod).filter(|_| min_ready_seconds > 0).map(|since| add_secs(since, min_ready_seconds + 1))
}

/// Sorts by `creationTimestamp`, then name, as `ReplicaSetsByCreationTimestamp`.
pub(crate) fn by_creation(a: &Value, b: &Value) -> std::cmp::Ordering {
    created(a).cmp(&created(b)).then_with(|| name(a).cmp(name(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn availability_needs_min_ready_seconds_strictly_past() {
        let since: Time = "2024-01-01T00:00:00Z".parse().unwrap();
        let pod = json!({"status": {"conditions": [pod_condition("Ready", true, since, None, None)]}});
        assert!(is_pod_available(&pod, 0, since));
        assert!(!is_pod_available(&pod, 5, add_secs(since, 5)));
        assert!(is_pod_available(&pod, 5, add_secs(since, 6)));
        assert_eq!(pod_available_at(&pod, 5), Some(add_secs(since, 6)));
    }
}
