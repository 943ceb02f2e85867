//! `status.conditions` per Kubernetes API conventions: one entry per type, the transition time
//! kept while the status stays the same, `observedGeneration` on each.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

pub(crate) const READY: &str = "Ready";
pub(crate) const PROGRESSING: &str = "Progressing";
pub(crate) const ANALYSING: &str = "Analysing";
pub(crate) const POLICY_VIOLATION: &str = "PolicyViolation";
pub(crate) const METRICS_UNAVAILABLE: &str = "MetricsUnavailable";
pub(crate) const SAMPLE_RATIO_MISMATCH: &str = "SampleRatioMismatch";
/// The analysis cannot run as configured; the experiment was sent back to the control.
pub(crate) const ANALYSIS_CONFIG_INVALID: &str = "AnalysisConfigInvalid";
/// The last reconcile failed; the message says why (retried with backoff).
pub(crate) const RECONCILE_ERROR: &str = "ReconcileError";
/// An arm the routing sends traffic to has no ready pods; its traffic goes elsewhere.
pub(crate) const ARM_UNHEALTHY: &str = "ArmUnhealthy";
/// Waiting for pods or routing took longer than `spec.progressDeadline`.
pub(crate) const PROGRESS_DEADLINE_EXCEEDED: &str = "ProgressDeadlineExceeded";
/// Deletion waits for an arm that can take all traffic.
pub(crate) const DELETION_BLOCKED: &str = "DeletionBlocked";
/// A RolloutPolicy's: its ValidatingAdmissionPolicy and binding are in place.
pub(crate) const ADMISSION: &str = "Admission";

/// Reasons of the conditions (CamelCase, per API conventions). `Progressing` takes the phase's
/// name as its reason ([`super::progress::phase_reason`]).
pub(crate) mod reason {
    pub(crate) const ROUTING_APPLIED: &str = "RoutingApplied";
    pub(crate) const WAITING: &str = "Waiting";
    pub(crate) const CONFLICTING_VIRTUAL_SERVICE: &str = "ConflictingVirtualService";
    /// Gateway API: another HTTPRoute on the Service, or another owner's Service by an arm's name.
    pub(crate) const CONFLICTING_ROUTE: &str = "ConflictingRoute";
    pub(crate) const POLICY_VIOLATED: &str = "PolicyViolated";
    pub(crate) const COMPLIANT: &str = "Compliant";
    pub(crate) const METRICS_READ: &str = "MetricsRead";
    pub(crate) const METRICS_UNAVAILABLE: &str = "MetricsUnavailable";
    pub(crate) const SAMPLE_RATIO_MISMATCH: &str = "SampleRatioMismatch";
    pub(crate) const SAMPLE_RATIO_OK: &str = "SampleRatioOk";
    pub(crate) const ANALYSING: &str = "Analysing";
    pub(crate) const NOT_ANALYSING: &str = "NotAnalysing";
    /// `AnalysisConfigInvalid` True, and False after an analysis that decided.
    pub(crate) const CONFIG_ERROR: &str = "ConfigError";
    pub(crate) const ANALYSIS_RAN: &str = "AnalysisRan";
    /// `ReconcileError`.
    pub(crate) const FAILED: &str = "Failed";
    pub(crate) const SUCCEEDED: &str = "Succeeded";
    /// `ProgressDeadlineExceeded`.
    pub(crate) const DEADLINE_EXCEEDED: &str = "DeadlineExceeded";
    pub(crate) const WITHIN_DEADLINE: &str = "WithinDeadline";
    /// `ArmUnhealthy` and `DeletionBlocked`.
    pub(crate) const NO_READY_PODS: &str = "NoReadyPods";
    pub(crate) const ARMS_READY: &str = "ArmsReady";
    /// `Admission` (a RolloutPolicy's).
    pub(crate) const COMPILED: &str = "Compiled";
    pub(crate) const INVALID_RULE: &str = "InvalidRule";
    pub(crate) const ADMISSION_UNAVAILABLE: &str = "AdmissionUnavailable";
}

/// Reasons of the Kubernetes Events the controller publishes (besides the phase names).
pub(crate) mod event {
    pub(crate) const STEP_ADVANCED: &str = "StepAdvanced";
    pub(crate) const ROLLING_BACK: &str = "RollingBack";
    pub(crate) const INCONCLUSIVE: &str = "Inconclusive";
    pub(crate) const POLICY_VIOLATION: &str = "PolicyViolation";
    pub(crate) const METRICS_UNAVAILABLE: &str = "MetricsUnavailable";
    pub(crate) const ROUTING_RESTORED: &str = "RoutingRestored";
    pub(crate) const ANALYSIS_CONFIG_INVALID: &str = "AnalysisConfigInvalid";
    pub(crate) const RECONCILE_ERROR: &str = "ReconcileError";
    pub(crate) const ARM_UNHEALTHY: &str = "ArmUnhealthy";
    pub(crate) const ARM_RECOVERED: &str = "ArmRecovered";
    pub(crate) const PROGRESS_DEADLINE_EXCEEDED: &str = "ProgressDeadlineExceeded";
    pub(crate) const DELETION_BLOCKED: &str = "DeletionBlocked";
    /// A routed arm's Deployment got a new pod template: the analysis starts over.
    pub(crate) const REVISION_CHANGED: &str = "RevisionChanged";
    /// The weights changed (an edit): a new analysis window, so counts are never mixed.
    pub(crate) const ANALYSIS_RESTARTED: &str = "AnalysisRestarted";
    /// A finished experiment was edited; it does not restart.
    pub(crate) const EDIT_IGNORED: &str = "EditIgnored";
    /// Someone else changed or deleted the experiment's routing; it was put back.
    pub(crate) const DRIFT_CORRECTED: &str = "DriftCorrected";
}

/// Sets condition `type_`, keeping `lastTransitionTime` when the status does not change.
pub(crate) fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: jiff::Timestamp,
) {
    let status = if status { "True" } else { "False" }.to_string();
    let transition = match conditions.iter().find(|c| c.type_ == type_) {
        Some(old) if old.status == status => old.last_transition_time.clone(),
        _ => Time(now),
    };
    conditions.retain(|c| c.type_ != type_);
    conditions.push(Condition {
        type_: type_.to_string(),
        status,
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time: transition,
    });
    conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_transition_time_while_the_status_holds() {
        let t0: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let t1: jiff::Timestamp = "2026-01-01T00:05:00Z".parse().unwrap();
        let mut c = vec![];
        set(&mut c, READY, false, reason::WAITING, "a".into(), Some(1), t0);
        set(&mut c, READY, false, reason::WAITING, "b".into(), Some(2), t1);
        assert_eq!(c[0].last_transition_time, Time(t0));
        assert_eq!((c[0].message.as_str(), c[0].observed_generation), ("b", Some(2)));
        set(&mut c, READY, true, reason::ROUTING_APPLIED, "c".into(), Some(2), t1);
        assert_eq!(c[0].last_transition_time, Time(t1));
        assert_eq!(c.len(), 1);
    }
}
