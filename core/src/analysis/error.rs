//! Why a look at an experiment produced no decision, in the two classes the controller treats
//! differently: the analysis cannot run as configured (retrying cannot help: the experiment
//! ends), or the metrics cannot be read now (the weights are held and the look retried).

use crate::stats::StatsError;

use super::builtins::BuiltinError;
use super::source::SourceError;
use super::template::TemplateError;

/// The experiment's analysis cannot be run as configured: a status condition, not a retry.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("the experiment has no spec.analysis")]
    NoAnalysis,
    #[error("spec.analysis.metrics has {0} goal metrics; at most one is supported")]
    Goals(usize),
    #[error("spec.analysis.metrics is empty: a decision needs a goal or a guardrail")]
    NoMetrics,
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(transparent)]
    Builtin(#[from] BuiltinError),
    #[error(
        "guardrail `{0}`: set direction (increase or decrease); only builtins and names containing `error` or `latency` default to decrease"
    )]
    Direction(String),
    #[error("SRM check: arm `{arm}` has weight {weight:?}; every arm needs a positive weight")]
    Weight { arm: String, weight: Option<f64> },
    #[error("no metric provider: set spec.analysis.provider.prometheus.address (or forklane run --prometheus-url)")]
    NoProvider,
    #[error(
        "spec.analysis.provider.prometheus.address {address:?} is not allowed: this controller queries only the addresses given by forklane run --prometheus-url and --allowed-prometheus-address"
    )]
    AddressNotAllowed { address: String },
    #[error("spec.analysis.provider.prometheus.address {address:?} is not a usable address: {message}")]
    Address { address: String, message: String },
    /// The source will never answer the rendered query as written.
    #[error("metric `{metric}`, arm `{arm}`: {error}")]
    Query { metric: String, arm: String, error: SourceError },
    #[error("the statistics engine cannot decide with this spec.analysis: {0}")]
    Decision(#[from] StatsError),
}

/// Every way a look can fail, classified.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AnalysisError {
    /// End the experiment: see `AnalysisConfigInvalid` in the controller.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Set `MetricsUnavailable`, hold the weights and look again after the interval.
    #[error("metric `{metric}`, arm `{arm}`: {error}")]
    Unavailable { metric: String, arm: String, error: SourceError },
}

impl AnalysisError {
    /// A failed read of `metric` for `arm`: a query the source rejects is the configuration's
    /// fault; no answer, a failed evaluation or no data may pass.
    pub(crate) fn reading(metric: &str, arm: &str, error: SourceError) -> Self {
        let (metric, arm) = (metric.to_string(), arm.to_string());
        match error {
            SourceError::Rejected { .. } => ConfigError::Query { metric, arm, error }.into(),
            SourceError::Unreachable { .. }
            | SourceError::Query { .. }
            | SourceError::NoData { .. }
            | SourceError::Deadline(_) => AnalysisError::Unavailable { metric, arm, error },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(e: &AnalysisError) -> &'static str {
        match e {
            AnalysisError::Config(_) => "config",
            AnalysisError::Unavailable { .. } => "unavailable",
        }
    }

    #[test]
    fn source_errors_are_classified_by_whether_waiting_can_help() {
        let q = || "sum(x)".to_string();
        for (error, expected) in [
            (
                SourceError::Unreachable { source_name: "http://p:9090".into(), message: "refused".into() },
                "unavailable",
            ),
            (
                SourceError::Unreachable { source_name: "p".into(), message: "no answer within 10s".into() },
                "unavailable",
            ),
            (SourceError::Query { query: q(), message: "internal: 503".into() }, "unavailable"),
            (SourceError::NoData { query: q(), why: "empty result".into() }, "unavailable"),
            (SourceError::NoData { query: q(), why: "NaN".into() }, "unavailable"),
            (SourceError::Deadline(std::time::Duration::from_secs(30)), "unavailable"),
            (SourceError::Rejected { query: q(), message: "bad_data: parse error".into() }, "config"),
        ] {
            let classified = AnalysisError::reading("conversion", "v2", error.clone());
            assert_eq!(class(&classified), expected, "{error}");
            assert!(classified.to_string().starts_with("metric `conversion`, arm `v2`: "), "{classified}");
        }
    }
}
