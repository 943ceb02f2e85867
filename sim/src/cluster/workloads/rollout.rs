//! Arithmetic and annotations shared by the deployment controller's strategies
//! (`pkg/controller/deployment/util` in Kubernetes).

use super::objects::{annotation, set_annotation, spec_replicas};
use serde_json::Value;

pub(crate) const REVISION: &str = "deployment.kubernetes.io/revision";
pub(crate) const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub(crate) const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub(crate) const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
pub(crate) const HASH_LABEL: &str = "pod-template-hash";
/// Deployment annotations never copied onto ReplicaSets (`skipCopyAnnotation`).
const SKIP_COPY: [&str; 6] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];
/// Longest `revision-history` annotation kept (`maxRevHistoryLengthInChars`).
const MAX_REVISION_HISTORY_CHARS: usize = 2000;

/// `intstr.GetScaledValueFromIntOrPercent`: an int as is, a percentage of `total` rounded
/// up or down. Malformed values count as 0 (the apiserver's validation rejects them).
pub(crate) fn scaled_value(v: &Value, total: i64, round_up: bool) -> i64 {
    match v {
        Value::Number(n) => n.as_i64().unwrap_or(0),
        Value::String(s) => {
            let Some(pct) = s.strip_suffix('%').and_then(|p| p.parse::<f64>().ok()) else { return 0 };
            let exact = pct * total as f64 / 100.0;
            (if round_up { exact.ceil() } else { exact.floor() }) as i64
        }
        _ => 0,
    }
}

pub(crate) fn is_rolling_update(d: &Value) -> bool {
    d["spec"]["strategy"]["type"].as_str().unwrap_or("RollingUpdate") == "RollingUpdate"
}

/// `ResolveFenceposts`: surge rounds up, unavailability down, and both 0 would deadlock so
/// unavailability becomes 1.
pub(crate) fn resolve_fenceposts(d: &Value) -> (i64, i64) {
    let ru = &d["spec"]["strategy"]["rollingUpdate"];
    let desired = spec_replicas(d);
    let surge = scaled_value(&ru["maxSurge"], desired, true);
    let unavailable = scaled_value(&ru["maxUnavailable"], desired, false);
    if surge == 0 && unavailable == 0 { (0, 1) } else { (surge, unavailable) }
}

pub(crate) fn max_surge(d: &Value) -> i64 {
    if is_rolling_update(d) { resolve_fenceposts(d).0 } else { 0 }
}

pub(crate) fn max_unavailable(d: &Value) -> i64 {
    let desired = spec_replicas(d);
    if !is_rolling_update(d) || desired == 0 {
        return 0;
    }
    resolve_fenceposts(d).1.min(desired)
}

/// The ReplicaSet's `deployment.kubernetes.io/revision`, 0 when absent.
pub(crate) fn revision(obj: &Value) -> i64 {
    annotation(obj, REVISION).and_then(|r| r.parse().ok()).unwrap_or(0)
}

/// Template equality ignoring the `pod-template-hash` label (`EqualIgnoreHash`).
pub(crate) fn equal_ignore_hash(a: &Value, b: &Value) -> bool {
    fn strip(t: &Value) -> Value {
        let mut t = t.clone();
        if let Some(labels) = t["metadata"]["labels"].as_object_mut() {
            labels.remove(HASH_LABEL);
        }
        t
    }
    strip(a) == strip(b)
}

pub(crate) fn desired_replicas_annotation(rs: &Value) -> Option<i64> {
    annotation(rs, DESIRED_REPLICAS)?.parse().ok()
}

pub(crate) fn max_replicas_annotation(rs: &Value) -> Option<i64> {
    annotation(rs, MAX_REPLICAS)?.parse().ok()
}

/// `SetReplicasAnnotations`; returns whether anything changed.
pub(crate) fn set_replicas_annotations(rs: &mut Value, desired: i64, max: i64) -> bool {
    let a = set_annotation(rs, DESIRED_REPLICAS, &desired.to_string());
    let b = set_annotation(rs, MAX_REPLICAS, &max.to_string());
    a || b
}

/// `SetNewReplicaSetAnnotations`: copies the Deployment's annotations, moves the revision
/// forward (remembering the old one in `revision-history` when an old ReplicaSet is
/// reused by a rollback) and, for a ReplicaSet being created, the replica annotations.
pub(crate) fn set_new_rs_annotations(d: &Value, rs: &mut Value, new_revision: i64, exists: bool) -> bool {
    let mut changed = false;
    for (k, v) in d["metadata"]["annotations"].as_object().into_iter().flatten() {
        if let Some(v) = v.as_str()
            && !SKIP_COPY.contains(&k.as_str())
        {
            changed |= set_annotation(rs, k, v);
        }
    }
    let old = annotation(rs, REVISION).map(String::from);
    let old_revision = match old.as_deref().map(str::parse::<i64>) {
        None => 0,
        Some(Ok(r)) => r,
        Some(Err(_)) => return changed,
    };
    if old_revision < new_revision {
        changed |= set_annotation(rs, REVISION, &new_revision.to_string());
        if let Some(old) = old {
            let history = annotation(rs, REVISION_HISTORY).unwrap_or_default();
            let mut kept: Vec<&str> = history.split(',').filter(|s| !s.is_empty()).collect();
            while !kept.is_empty() && kept.join(",").len() + old.len() + 1 > MAX_REVISION_HISTORY_CHARS {
                kept.remove(0);
            }
            kept.push(&old);
            let joined = kept.join(",");
            set_annotation(rs, REVISION_HISTORY, &joined);
        }
    }
    if !exists {
        let desired = spec_replicas(d);
        changed |= set_replicas_annotations(rs, desired, desired + max_surge(d));
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rolling(replicas: i64, surge: Value, unavailable: Value) -> Value {
        json!({"spec": {"replicas": replicas, "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}}})
    }

    #[test]
    fn percentages_round_surge_up_and_unavailability_down() {
        // 25% of 10 = 2.5: surge 3, unavailable 2 (the defaults on 10 replicas).
        assert_eq!(resolve_fenceposts(&rolling(10, json!("25%"), json!("25%"))), (3, 2));
        // 25% of 3 = 0.75: surge 1, unavailable 0.
        assert_eq!(resolve_fenceposts(&rolling(3, json!("25%"), json!("25%"))), (1, 0));
        assert_eq!(resolve_fenceposts(&rolling(10, json!(1), json!(0))), (1, 0));
        // Both zero would never progress: unavailability becomes 1.
        assert_eq!(resolve_fenceposts(&rolling(10, json!(0), json!("5%"))), (0, 1));
        assert_eq!(max_unavailable(&rolling(2, json!(0), json!(5))), 2, "capped at replicas");
        assert_eq!(max_surge(&json!({"spec": {"replicas": 3, "strategy": {"type": "Recreate"}}})), 0);
    }

    #[test]
    fn rollback_reuse_records_revision_history() {
        let d = json!({"metadata": {"annotations": {"kubernetes.io/change-cause": "undo", REVISION: "3"}}, "spec": {"replicas": 2}});
        let mut rs = json!({"metadata": {"annotations": {REVISION: "1"}}});
        assert!(set_new_rs_annotations(&d, &mut rs, 3, true));
        assert_eq!(annotation(&rs, REVISION), Some("3"));
        assert_eq!(annotation(&rs, REVISION_HISTORY), Some("1"));
        assert_eq!(annotation(&rs, "kubernetes.io/change-cause"), Some("undo"));
        assert!(!set_new_rs_annotations(&d, &mut rs, 3, true), "idempotent");
    }
}
