//! Deployment status and conditions (`pkg/controller/deployment/progress.go`, `sync.go` and
//! the condition helpers of `deployment_util.go`).

use super::objects::{condition_time, generation, name, spec_replicas, status_int};
use super::rollout::max_unavailable;
use forklane_core::clock::{Time, add_secs, format_time};
use serde_json::{Map, Value, json};

pub(crate) const AVAILABLE: &str = "Available";
pub(crate) const PROGRESSING: &str = "Progressing";
pub(crate) const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub(crate) const TIMED_OUT: &str = "ProgressDeadlineExceeded";
pub(crate) const PAUSED: &str = "DeploymentPaused";
pub(crate) const RESUMED: &str = "DeploymentResumed";

pub(crate) fn new_condition(kind: &str, status: &str, reason: &str, message: &str, now: Time) -> Value {
    let t = format_time(now);
    json!({"type": kind, "status": status, "lastUpdateTime": t, "lastTransitionTime": t, "reason": reason, "message": message})
}

pub(crate) fn get_condition<'a>(status: &'a Value, kind: &str) -> Option<&'a Value> {
    status["conditions"].as_array()?.iter().find(|c| c["type"] == kind)
}

pub(crate) fn remove_condition(status: &mut Value, kind: &str) {
    if let Some(cs) = status["conditions"].as_array_mut() {
        cs.retain(|c| c["type"] != kind);
    }
}

/// `SetDeploymentCondition`: the same status and reason is no change at all (times kept);
/// the same status keeps its transition time; the condition moves to the end.
pub(crate) fn set_condition(status: &mut Value, mut cond: Value) {
    if let Some(cur) = get_condition(status, cond["type"].as_str().unwrap_or_default()) {
        if cur["status"] == cond["status"] && cur["reason"] == cond["reason"] {
            return;
        }
        if cur["status"] == cond["status"] {
            cond["lastTransitionTime"] = cur["lastTransitionTime"].clone();
        }
    }
    remove_condition(status, cond["type"].as_str().unwrap_or_default());
    if !status["conditions"].is_array() {
        status["conditions"] = json!([]);
    }
    status["conditions"].as_array_mut().expect("array").push(cond);
}

pub(crate) fn has_progress_deadline(d: &Value) -> bool {
    d["spec"]["progressDeadlineSeconds"].as_i64().is_some_and(|s| s != i64::from(i32::MAX))
}

fn sum(rss: &[&Value], f: impl Fn(&Value) -> i64) -> i64 {
    rss.iter().map(|rs| f(rs)).sum()
}

/// `calculateStatus`: counters from the ReplicaSets and the Available condition. Zero
/// counters are omitted, as Go's `omitempty` serialises them.
pub(crate) fn calculate_status(d: &Value, all: &[&Value], new_rs: Option<&Value>, now: Time) -> Value {
    let available = sum(all, |rs| status_int(rs, "availableReplicas"));
    let total = sum(all, spec_replicas);
    let mut status = Map::new();
    let mut put = |k: &str, v: i64| {
        if v != 0 {
            status.insert(k.into(), json!(v));
        }
    };
    put("observedGeneration", generation(d));
    put("replicas", sum(all, |rs| status_int(rs, "replicas")));
    put("updatedReplicas", new_rs.map_or(0, |rs| status_int(rs, "replicas")));
    put("readyReplicas", sum(all, |rs| status_int(rs, "readyReplicas")));
    put("availableReplicas", available);
    put("unavailableReplicas", (total - available).max(0));
    if let Some(c) = d["status"]["collisionCount"].as_i64() {
        status.insert("collisionCount".into(), json!(c));
    }
    let mut status = Value::Object(status);
    if let Some(cs) = d["status"]["conditions"].as_array() {
        status["conditions"] = json!(cs);
    }
    let cond = if available >= spec_replicas(d) - max_unavailable(d) {
        new_condition(AVAILABLE, "True", "MinimumReplicasAvailable", "Deployment has minimum availability.", now)
    } else {
        new_condition(
            AVAILABLE,
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            now,
        )
    };
    set_condition(&mut status, cond);
    status
}

/// `DeploymentComplete`: every replica updated and available, and the spec observed.
pub(crate) fn deployment_complete(d: &Value, status: &Value) -> bool {
    let want = spec_replicas(d);
    let get = |k: &str| status[k].as_i64().unwrap_or(0);
    get("updatedReplicas") == want
        && get("replicas") == want
        && get("availableReplicas") == want
        && get("observedGeneration") >= generation(d)
}

/// `DeploymentProgressing`: more updated, ready or available replicas, or fewer old ones.
fn deployment_progressing(d: &Value, new: &Value) -> bool {
    let old = &d["status"];
    let get = |s: &Value, k: &str| s[k].as_i64().unwrap_or(0);
    let old_old = get(old, "replicas") - get(old, "updatedReplicas");
    let new_old = get(new, "replicas") - get(new, "updatedReplicas");
    get(new, "updatedReplicas") > get(old, "updatedReplicas")
        || new_old < old_old
        || get(new, "readyReplicas") > get(old, "readyReplicas")
        || get(new, "availableReplicas") > get(old, "availableReplicas")
}

/// When the Progressing condition of `status` runs out of time, if it can.
pub(crate) fn progress_deadline(d: &Value, status: &Value) -> Option<Time> {
    let cond = get_condition(status, PROGRESSING)?;
    if !has_progress_deadline(d) || cond["reason"] == NEW_RS_AVAILABLE || cond["reason"] == TIMED_OUT {
        return None;
    }
    let from = condition_time(cond, "lastUpdateTime")?;
    Some(add_secs(from, d["spec"]["progressDeadlineSeconds"].as_i64().unwrap_or(600)))
}

/// `DeploymentTimedOut`.
fn timed_out(d: &Value, status: &Value, now: Time) -> bool {
    if get_condition(status, PROGRESSING).is_some_and(|c| c["reason"] == TIMED_OUT) {
        return has_progress_deadline(d);
    }
    progress_deadline(d, status).is_some_and(|deadline| deadline < now)
}

/// `syncRolloutStatus`: the new status with the Progressing condition moved on.
pub(crate) fn rollout_status(d: &Value, all: &[&Value], new_rs: Option<&Value>, now: Time) -> Value {
    let mut status = calculate_status(d, all, new_rs, now);
    if !has_progress_deadline(d) {
        remove_condition(&mut status, PROGRESSING);
        return status;
    }
    let current = get_condition(&d["status"], PROGRESSING).cloned();
    let complete = status["replicas"] == status["updatedReplicas"]
        && current.as_ref().is_some_and(|c| c["reason"] == NEW_RS_AVAILABLE);
    if complete {
        return status;
    }
    let subject = match new_rs {
        Some(rs) => format!("ReplicaSet \"{}\"", name(rs)),
        None => format!("Deployment \"{}\"", name(d)),
    };
    if deployment_complete(d, &status) {
        let msg = format!("{subject} has successfully progressed.");
        set_condition(&mut status, new_condition(PROGRESSING, "True", NEW_RS_AVAILABLE, &msg, now));
    } else if deployment_progressing(d, &status) {
        let msg = format!("{subject} is progressing.");
        let mut cond = new_condition(PROGRESSING, "True", "ReplicaSetUpdated", &msg, now);
        if let Some(cur) = current.filter(|c| c["status"] == "True") {
            cond["lastTransitionTime"] = cur["lastTransitionTime"].clone();
        }
        // Removed first so that lastUpdateTime moves: progress extends the deadline.
        remove_condition(&mut status, PROGRESSING);
        set_condition(&mut status, cond);
    } else if timed_out(d, &status, now) {
        let msg = format!("{subject} has timed out progressing.");
        set_condition(&mut status, new_condition(PROGRESSING, "False", TIMED_OUT, &msg, now));
    }
    status
}
