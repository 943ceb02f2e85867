//! `spec.analysis` and `spec.promotion`: how arms are measured and what a decision does.
//! Parsed and validated by the foundation; executed by the controller.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::defaults;
use super::duration::HumanDuration;

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Analysis {
    /// How often the metrics are read and tested; default 1m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<HumanDuration>,
    #[serde(default)]
    pub method: Method,
    /// Where a `fixedHorizon` test looks, once: required by that method (a fixed-horizon test
    /// checked every interval is peeking, and its error rate is lost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub horizon: Option<Horizon>,
    /// Minimum exposure: no promotion before the analysis has run this long (rollbacks are not
    /// delayed). Covers weekly and daily cycles a short test would miss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_duration: Option<HumanDuration>,
    /// Error rate of the decision; default 0.05.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0001, max = 0.5))]
    pub alpha: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub min_samples_per_arm: Option<i64>,
    /// After this long without a decision, `promotion.onInconclusive` applies; default 24h. Time
    /// without metrics counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_duration: Option<HumanDuration>,
    /// After this many looks in a row without metrics, `promotion.onInconclusive` applies (never a
    /// promotion); default 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_consecutive_unavailable: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub srm: Option<SrmCheck>,
    /// What one sample is: `user` (first exposures only, each user counted once) or `request`
    /// (every randomised request). Default: `user` for an A/B test with sticky assignment, else
    /// `request`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<Unit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<Provider>,
    #[serde(default)]
    pub metrics: Vec<Metric>,
}

impl Analysis {
    pub(crate) fn alpha(&self) -> f64 {
        self.alpha.unwrap_or(defaults::ANALYSIS_ALPHA)
    }
    pub(crate) fn interval(&self) -> Duration {
        self.interval.map_or(defaults::ANALYSIS_INTERVAL, HumanDuration::get)
    }
    pub(crate) fn max_duration(&self) -> Duration {
        self.max_duration.map_or(defaults::ANALYSIS_MAX_DURATION, HumanDuration::get)
    }
    pub(crate) fn max_consecutive_unavailable(&self) -> u32 {
        self.max_consecutive_unavailable.unwrap_or(defaults::MAX_CONSECUTIVE_UNAVAILABLE)
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Method {
    #[default]
    Sequential,
    FixedHorizon,
    Bayesian,
}

/// The unit of analysis: what counts as one independent sample.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Unit {
    User,
    Request,
}

/// Where a fixed-horizon test looks: exactly one of `samplesPerArm` and `duration`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Horizon {
    /// Samples (trials) in every arm; the test runs once, when the smallest arm has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub samples_per_arm: Option<i64>,
    /// Time since the analysis started; the test runs once, at the first look after it
    /// (`forklane stats plan` tells how long gives the power you need).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<HumanDuration>,
}

/// Sample ratio mismatch check against the configured weights.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SrmCheck {
    #[serde(default)]
    pub enabled: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Provider {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusProvider>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusProvider {
    pub address: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Metric {
    pub name: String,
    /// A predefined metric over Istio's standard telemetry (or `http_requests_total` without a mesh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builtin: Option<Builtin>,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<MetricKind>,
    /// PromQL template for the count of successes (proportion metrics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_query: Option<String>,
    /// PromQL template for the count of trials (proportion metrics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trial_query: Option<String>,
    /// Largest acceptable harm for a guardrail, in the metric's own unit (absolute difference).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub margin: Option<f64>,
    /// For latency: a request slower than this counts as a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub threshold_ms: Option<f64>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Builtin {
    IstioErrorRate,
    IstioLatency,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    Goal,
    Guardrail,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Direction {
    Increase,
    Decrease,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum MetricKind {
    Proportion,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Promotion {
    #[serde(default)]
    pub mode: PromotionMode,
    #[serde(default)]
    pub on_inconclusive: OnInconclusive,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum PromotionMode {
    #[default]
    Auto,
    Manual,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum OnInconclusive {
    #[default]
    Rollback,
    KeepControl,
    Promote,
}
