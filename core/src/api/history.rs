//! `status.history`: the experiment's looks over time, for `forklane get`, the report and the
//! dashboard. Bounded (see `controller::history`): the status must stay well under etcd's limit.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Phase;

/// One moment of the experiment: an analysis look (samples, metrics, SRM, outcome) or a change of
/// the routed weights or the phase (weights and phase only).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Look {
    /// When (RFC 3339, the controller's clock).
    pub at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<i32>,
    /// The desired weight of each arm.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub weights: BTreeMap<String, i32>,
    /// Samples per arm (analysis looks only).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub samples: BTreeMap<String, f64>,
    /// Per metric and treatment arm: the effect estimate and its interval (analysis looks with
    /// enough samples only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricLook>,
    /// The sequential sample-ratio-mismatch p-value, when checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub srm_p: Option<f64>,
    /// `continue`, `promote` or `rollback` (analysis looks only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

/// One metric of one treatment arm at a look, against the control.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricLook {
    pub metric: String,
    pub arm: String,
    /// `goal` or `guardrail`.
    pub role: String,
    /// arm − control, in the metric's units. Absent when not finite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate: Option<f64>,
    /// The interval's bounds (the always-valid confidence sequence for the sequential method);
    /// an unbounded side is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high: Option<f64>,
    /// Goal: H0 no difference. Guardrail: H0 harm ≥ margin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p: Option<f64>,
    /// `better`, `worse`, `nonInferior`, `inferior` or `inconclusive`.
    pub verdict: String,
}
