//! The `RolloutPolicy` custom resource: constraints that platform teams put on experiments.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::HumanDuration;
use super::strategy::StrategyName;

/// Constraints for the experiments in the namespaces it selects.
// kube's `printcolumn(...)` repeats `type_ = "string"` by design; clippy reads it as a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "forklane.io",
    version = "v1alpha1",
    kind = "RolloutPolicy",
    shortname = "rp",
    status = "RolloutPolicyStatus",
    printcolumn(name = "Admission", type_ = "string", json_path = ".status.conditions[?(@.type=='Admission')].reason"),
    printcolumn(name = "Strategies", type_ = "string", json_path = ".spec.allowedStrategies"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct RolloutPolicySpec {
    /// Namespaces the policy applies to; empty selects every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Strategies experiments may use; empty allows all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_strategies: Vec<StrategyName>,
    /// Largest weight increase of a candidate in one canary step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub max_step_weight: Option<i32>,
    /// Largest weight a candidate may get before an analysis has run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub max_weight_without_analysis: Option<i32>,
    /// Metric names every experiment must watch as guardrails.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_guardrails: Vec<String>,
    /// Largest decision error rate experiments may choose. The Bayesian method does not control
    /// its error rate under continuous monitoring, so with `maxAlpha` set it is refused unless
    /// `allowBayesian` is true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_alpha: Option<f64>,
    /// Lets experiments use `method: bayesian` even though `maxAlpha` is set.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_bayesian: bool,
    /// Shortest minimum exposure (`analysis.minDuration`) experiments must set before a promotion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_exposure: Option<HumanDuration>,
    /// Shortest time an analysis must be allowed to run (its maxDuration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_analysis_duration: Option<HumanDuration>,
    /// Promotion to 100% waits for `forklane promote`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_manual_promotion: bool,
    /// Times at which no experiment may change traffic.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub freeze_windows: Vec<FreezeWindow>,
    /// Rules the fixed fields cannot say, in CEL over the Experiment (`object`, `oldObject`,
    /// `namespaceObject`): each must evaluate to true.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<PolicyRule>,
    /// What the API server does with an Experiment that breaks the policy when it is written.
    #[serde(default)]
    pub enforcement: Enforcement,
}

/// One CEL rule of a policy, as a ValidatingAdmissionPolicy validation.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRule {
    /// Names the rule in violations and conditions.
    pub name: String,
    /// CEL that is true when the Experiment meets the rule.
    pub expression: String,
    /// Said when the rule is broken; `failed rule: NAME` when neither message is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// CEL giving the message (a string), over the same variables; wins over `message`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_expression: Option<String>,
}

/// What the API server does with a violating write: ValidatingAdmissionPolicyBinding's
/// `validationActions`. The controller holds a violating experiment's traffic whatever this is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Enforcement {
    /// Refuses the write, with the policy's message.
    #[default]
    Deny,
    /// Admits the write with a warning the client prints.
    Warn,
    /// Admits the write and records the violation in the audit log.
    Audit,
}

/// A window that opens at every time the cron schedule matches (UTC) and lasts `duration`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FreezeWindow {
    /// Five-field cron: minute hour day-of-month month day-of-week.
    pub schedule: String,
    pub duration: HumanDuration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What the controller reports of a policy: whether its admission objects are in place.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutPolicyStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Admission`: True once the ValidatingAdmissionPolicy and its binding say what the policy
    /// says; False with `InvalidRule` (a rule does not compile: its field and the error) or
    /// `AdmissionUnavailable` (the cluster has no admissionregistration.k8s.io/v1 policies).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
