//! `status.conditions` per Kubernetes API conventions: one entry per type, the transition time
//! kept while the status stays the same, `observedGeneration` on each.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const ANALYSING: &str = "Analysing";
pub const POLICY_VIOLATION: &str = "PolicyViolation";
pub const METRICS_UNAVAILABLE: &str = "MetricsUnavailable";
pub const SAMPLE_RATIO_MISMATCH: &str = "SampleRatioMismatch";
/// The analysis cannot run as configured; the experiment was sent back to the control.
pub const ANALYSIS_CONFIG_INVALID: &str = "AnalysisConfigInvalid";

/// Reasons of the conditions (CamelCase, per API conventions). `Progressing` takes the phase's
/// name as its reason ([`super::progress::phase_reason`]).
pub mod reason {
    pub const ROUTING_APPLIED: &str = "RoutingApplied";
    pub const WAITING: &str = "Waiting";
    pub const CONFLICTING_VIRTUAL_SERVICE: &str = "ConflictingVirtualService";
    pub const POLICY_VIOLATED: &str = "PolicyViolated";
    pub const COMPLIANT: &str = "Compliant";
    pub const METRICS_READ: &str = "MetricsRead";
    pub const METRICS_UNAVAILABLE: &str = "MetricsUnavailable";
    pub const SAMPLE_RATIO_MISMATCH: &str = "SampleRatioMismatch";
    pub const SAMPLE_RATIO_OK: &str = "SampleRatioOk";
    pub const ANALYSING: &str = "Analysing";
    pub const NOT_ANALYSING: &str = "NotAnalysing";
    /// `AnalysisConfigInvalid` True, and False after an analysis that decided.
    pub const CONFIG_ERROR: &str = "ConfigError";
    pub const ANALYSIS_RAN: &str = "AnalysisRan";
}

/// Reasons of the Kubernetes Events the controller publishes (besides the phase names).
pub mod event {
    pub const STEP_ADVANCED: &str = "StepAdvanced";
    pub const ROLLING_BACK: &str = "RollingBack";
    pub const INCONCLUSIVE: &str = "Inconclusive";
    pub const POLICY_VIOLATION: &str = "PolicyViolation";
    pub const METRICS_UNAVAILABLE: &str = "MetricsUnavailable";
    pub const ROUTING_RESTORED: &str = "RoutingRestored";
    pub const ANALYSIS_CONFIG_INVALID: &str = "AnalysisConfigInvalid";
}

/// Sets condition `type_`, keeping `lastTransitionTime` when the status does not change.
pub fn set(
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
