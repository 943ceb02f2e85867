//! The ReplicaSet controller (`pkg/controller/replicaset`): create or delete pods until the
//! active ones match `spec.replicas`, and report counts in status.

use super::objects::{
    self, controlled_by, controller_ref, created, is_deleting, is_pod_active, is_pod_available, is_pod_ready, name,
    namespace, phase, pod_available_at, pod_ready_since, spec_replicas, uid,
};
use super::{CONTROLLER_MANAGER, Kind, Reconciled, Write};
use forklane_core::clock::Time;
use serde_json::{Map, Value, json};
use std::cmp::Ordering;

/// At most this many pods are created or deleted per sync (`burstReplicas`).
const BURST_REPLICAS: i64 = 500;

/// One sync of `rs`; `pods` are any that include those it controls (e.g. those of its
/// namespace, or the driver's pods grouped by controller).
pub(crate) fn reconcile_replica_set<'a>(
    rs: &Value,
    pods: impl IntoIterator<Item = &'a Value>,
    now: Time,
) -> Reconciled {
    let mut out = Reconciled::default();
    let mine: Vec<&Value> = pods.into_iter().filter(|p| controlled_by(p, uid(rs))).collect();
    let active: Vec<&Value> = mine.iter().copied().filter(|p| is_pod_active(p)).collect();
    let diff = active.len() as i64 - spec_replicas(rs);
    if !is_deleting(rs) {
        if diff < 0 {
            for _ in 0..(-diff).min(BURST_REPLICAS) {
                out.writes.push(Write::Create {
                    kind: Kind::Pod,
                    object: pod_from_template(rs),
                    manager: CONTROLLER_MANAGER,
                });
            }
        } else if diff > 0 {
            let mut ranked = active.clone();
            ranked.sort_by(|a, b| deletion_order(a, b, now));
            for p in ranked.into_iter().take(diff.min(BURST_REPLICAS) as usize) {
                out.writes.push(Write::Delete {
                    kind: Kind::Pod,
                    namespace: namespace(p).into(),
                    name: name(p).into(),
                    uid: uid(p).into(),
                    grace_period_seconds: None,
                    manager: CONTROLLER_MANAGER,
                });
            }
        }
    }
    let min_ready = rs["spec"]["minReadySeconds"].as_i64().unwrap_or(0);
    let status = calculate_status(rs, &active, min_ready, now);
    if status != rs["status"] {
        let mut updated = rs.clone();
        updated["status"] = status;
        out.writes.push(Write::UpdateStatus { kind: Kind::ReplicaSet, object: updated, manager: CONTROLLER_MANAGER });
    }
    // A ready pod becomes available minReadySeconds later without any change to look at.
    for p in active.iter().filter(|p| !is_pod_available(p, min_ready, now)) {
        if let Some(at) = pod_available_at(p, min_ready) {
            out.requeue(at);
        }
    }
    out
}

/// `GetPodFromTemplate`: labels, annotations, finalizers and spec of the template, named
/// `<rs>-<5 random characters>` by the apiserver's generateName.
fn pod_from_template(rs: &Value) -> Value {
    let template = &rs["spec"]["template"];
    let mut meta = json!({
        "generateName": format!("{}-", name(rs)),
        "namespace": namespace(rs),
        "ownerReferences": [controller_ref(rs, "apps/v1", "ReplicaSet")],
    });
    for field in ["labels", "annotations", "finalizers"] {
        if let Some(v) = template["metadata"].get(field).filter(|v| !v.is_null()) {
            meta[field] = v.clone();
        }
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template["spec"]})
}

/// `calculateStatus` of replica_set_utils.go. `replicas` is always present; the other
/// counters are `omitempty`.
fn calculate_status(rs: &Value, active: &[&Value], min_ready: i64, now: Time) -> Value {
    let template_labels: Map<String, Value> =
        rs["spec"]["template"]["metadata"]["labels"].as_object().cloned().unwrap_or_default();
    let fully_labeled = active.iter().filter(|p| {
        let labels = objects::labels(p);
        template_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
    });
    let mut status = json!({"replicas": active.len()});
    let mut put = |k: &str, v: usize| {
        if v != 0 {
            status[k] = json!(v);
        }
    };
    put("fullyLabeledReplicas", fully_labeled.count());
    put("readyReplicas", active.iter().filter(|p| is_pod_ready(p)).count());
    put("availableReplicas", active.iter().filter(|p| is_pod_available(p, min_ready, now)).count());
    if let Some(g) = rs["metadata"]["generation"].as_i64().filter(|g| *g != 0) {
        status["observedGeneration"] = json!(g);
    }
    if let Some(c) = rs["status"].get("conditions") {
        status["conditions"] = c.clone();
    }
    status
}

/// `ActivePodsWithRanks.Less` (single node, so the co-location rank is equal for all):
/// unscheduled before scheduled, Pending before Unknown before Running, not ready before
/// ready, lower `controller.kubernetes.io/pod-deletion-cost` first, more recently ready
/// first, more restarts first, newer first. With LogarithmicScaleDown (on since 1.22)
/// times compare by the power-of-two bucket of their age, ties broken by UID.
pub(crate) fn deletion_order(a: &Value, b: &Value, now: Time) -> Ordering {
    let scheduled = |p: &Value| p["spec"]["nodeName"].as_str().is_some_and(|n| !n.is_empty());
    let phase_rank = |p: &Value| match phase(p) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 3,
    };
    let cost = |p: &Value| {
        objects::annotation(p, "controller.kubernetes.io/pod-deletion-cost")
            .and_then(|c| c.parse::<i32>().ok())
            .unwrap_or(0)
    };
    let restarts = |p: &Value| -> i64 {
        p["status"]["containerStatuses"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| c["restartCount"].as_i64().unwrap_or(0))
            .max()
            .unwrap_or(0)
    };
    scheduled(a)
        .cmp(&scheduled(b))
        .then_with(|| phase_rank(a).cmp(&phase_rank(b)))
        .then_with(|| is_pod_ready(a).cmp(&is_pod_ready(b)))
        .then_with(|| cost(a).cmp(&cost(b)))
        .then_with(|| {
            if is_pod_ready(a) && is_pod_ready(b) {
                newer_first(pod_ready_since(a), pod_ready_since(b), a, b, now)
            } else {
                Ordering::Equal
            }
        })
        .then_with(|| restarts(b).cmp(&restarts(a)))
        .then_with(|| newer_first(created(a), created(b), a, b, now))
}

/// Later (younger) times first, compared by `floor(log2(age in ns))`, UID breaking ties;
/// a missing time sorts first, as `afterOrZero` does.
fn newer_first(ta: Option<Time>, tb: Option<Time>, a: &Value, b: &Value, now: Time) -> Ordering {
    match (ta, tb) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(x), Some(y)) if x == y => Ordering::Equal,
        (Some(x), Some(y)) => {
            let bucket = |t: Time| (t.duration_until(now).as_nanos().max(1) as f64).log2().floor() as i64;
            bucket(x).cmp(&bucket(y)).then_with(|| uid(a).cmp(uid(b)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::workloads::objects::pod_condition;
    use forklane_core::clock::{add_secs, format_time};

    fn t(s: i64) -> Time {
        add_secs("2024-01-01T00:00:00Z".parse().unwrap(), s)
    }

    fn pod(name: &str, created: i64, ready_since: Option<i64>) -> Value {
        let conditions: Vec<Value> =
            ready_since.map(|s| pod_condition("Ready", true, t(s), None, None)).into_iter().collect();
        json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "creationTimestamp": format_time(t(created)),
                         "ownerReferences": [{"uid": "rs", "controller": true}], "labels": {"app": "a"}},
            "spec": {"nodeName": "forklane-node"},
            "status": {"phase": "Running", "conditions": conditions},
        })
    }

    fn rs(replicas: i64) -> Value {
        json!({"metadata": {"name": "rs", "namespace": "default", "uid": "rs", "generation": 2},
               "spec": {"replicas": replicas, "template": {"metadata": {"labels": {"app": "a"}}, "spec": {}}}})
    }

    fn deleted(r: &Reconciled) -> Vec<&str> {
        r.writes
            .iter()
            .filter_map(|w| if let Write::Delete { name, .. } = w { Some(name.as_str()) } else { None })
            .collect()
    }

    #[test]
    fn scale_down_deletes_not_ready_then_newest() {
        let pods = [pod("old-ready", 0, Some(10)), pod("new-ready", 3000, Some(3010)), pod("not-ready", 0, None)];
        let now = t(5000);
        assert_eq!(deleted(&reconcile_replica_set(&rs(2), &pods, now)), ["not-ready"]);
        assert_eq!(deleted(&reconcile_replica_set(&rs(1), &pods, now)), ["not-ready", "new-ready"]);
    }

    #[test]
    fn scale_up_creates_from_the_template_and_status_counts() {
        let pods = [pod("a", 0, Some(1))];
        let r = reconcile_replica_set(&rs(3), &pods, t(100));
        let creates: Vec<&Value> = r
            .writes
            .iter()
            .filter_map(|w| if let Write::Create { object, .. } = w { Some(object) } else { None })
            .collect();
        assert_eq!(creates.len(), 2);
        assert_eq!(creates[0]["metadata"]["generateName"], "rs-");
        assert_eq!(creates[0]["metadata"]["ownerReferences"][0]["kind"], "ReplicaSet");
        let status = r
            .writes
            .iter()
            .find_map(|w| if let Write::UpdateStatus { object, .. } = w { Some(&object["status"]) } else { None })
            .unwrap();
        assert_eq!(
            status,
            &json!({"replicas": 1, "fullyLabeledReplicas": 1, "readyReplicas": 1, "availableReplicas": 1, "observedGeneration": 2})
        );
    }

    #[test]
    fn terminating_pods_are_not_counted_and_min_ready_seconds_requeues() {
        let mut going = pod("going", 0, Some(1));
        going["metadata"]["deletionTimestamp"] = json!(format_time(t(200)));
        let mut rs = rs(1);
        rs["spec"]["minReadySeconds"] = json!(30);
        let r = reconcile_replica_set(&rs, &[going, pod("b", 0, Some(90))], t(100));
        assert!(deleted(&r).is_empty() && !r.writes.iter().any(|w| matches!(w, Write::Create { .. })));
        let status = r
            .writes
            .iter()
            .find_map(|w| if let Write::UpdateStatus { object, .. } = w { Some(&object["status"]) } else { None })
            .unwrap();
        assert_eq!(status["replicas"], 1);
        assert!(status.get("availableReplicas").is_none());
        assert_eq!(r.requeue_at, Some(t(121)));
    }
}
