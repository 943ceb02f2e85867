//! The `RolloutPolicy` custom resource: constraints that platform teams put on experiments.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::HumanDuration;
use super::strategy::StrategyName;

/// Constraints for the experiments in the namespaces it selects.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "forklane.io",
    version = "v1alpha1",
    kind = "RolloutPolicy",
    shortname = "rp",
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
