//! Builtin metrics as success/trial query templates per arm, rendered like user templates.
//!
//! - `istio-error-rate`: 5xx answers over answers, from `istio_requests_total`
//!   (reporter="destination"), plus the requests of the arm that the client-side proxy failed
//!   itself and the destination never saw ([`SOURCE_ONLY_FLAGS`]); without a mesh,
//!   `http_requests_total` with `code=~"5.."`.
//! - `istio-latency`: answers slower than `thresholdMs` over answers, from the request
//!   duration histogram: `_count − _bucket{le=B}`, B the smallest bucket bound ≥ the threshold.
//!
//! With Istio the destination-reported series are restricted to the analysed cohorts
//! (`{{ cohort }}`, see `template::Cohorts`); with the Gateway API they cannot be (the mesh's
//! metrics carry no cohort label).
//!
//! With Istio an arm is picked by `destination_version` when its selector has a `version`
//! label (Istio fills that label from the pod's `version` label), else by
//! `destination_workload` = the arm's Deployment. With the Gateway API, by the arm's own Service
//! (`destination_service_name="<service>-<arm>"`), from the series the ambient mesh's waypoint
//! reports (`reporter="waypoint"`) or a sidecar (`reporter="destination"`; a request is reported by
//! one or the other). Without a mesh, by `namespace` and `version`.

use crate::api::Routing;
use crate::api::{Arm, Builtin, Metric};

use super::template::{Cohorts, escape_quoted};
use crate::plan::routing::Cohort;

/// Istio's default bucket bounds of `istio_request_duration_milliseconds`.
pub(crate) const ISTIO_BUCKETS_MS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0, 60000.0, 300000.0,
    600000.0, 1800000.0, 3600000.0,
];

/// The Prometheus client libraries' default buckets of `http_request_duration_seconds`, in ms.
pub(crate) const NATIVE_BUCKETS_MS: [f64; 11] =
    [5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0];

/// Envoy's `response_flags` of a request the client-side proxy failed before any destination
/// sidecar received it: UF (connection to the chosen pod failed), UH (no ready pod), NR (no
/// route), NC (the route names a cluster the proxy does not have yet). Envoy joins several flags with `,` (`UF,URX`: every retry failed to connect). URX
/// alone is left out: retries exhausted on 5xx answers that the destination reported already.
const SOURCE_ONLY_FLAGS: &str = "(.*,)?(UF|UH|NR|NC)(,.*)?";

/// A success query and a trial query (templates or rendered PromQL).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryPair {
    pub success: String,
    pub trial: String,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BuiltinError {
    #[error("metric `{metric}`: builtin {builtin} needs thresholdMs")]
    NoThreshold { metric: String, builtin: &'static str },
    #[error("metric `{metric}`: thresholdMs {value} is not between 0 and {max} (the largest finite bucket bound)")]
    Threshold { metric: String, value: f64, max: f64 },
    #[error(
        "metric `{metric}`: without a mesh builtin {builtin} selects arm `{arm}` by its `version` label, which its selector lacks"
    )]
    NoVersion { metric: String, builtin: &'static str, arm: String },
}

fn builtin_name(b: Builtin) -> &'static str {
    match b {
        Builtin::IstioErrorRate => "istio-error-rate",
        Builtin::IstioLatency => "istio-latency",
    }
}

/// The smallest bucket bound ≥ `threshold_ms`: a threshold between two bounds is rounded up.
pub(crate) fn bucket_bound(metric: &Metric, threshold_ms: f64, mode: Routing) -> Result<f64, BuiltinError> {
    let bounds: &[f64] = match mode {
        Routing::Istio | Routing::GatewayApi => &ISTIO_BUCKETS_MS,
        Routing::Native => &NATIVE_BUCKETS_MS,
    };
    let max = bounds[bounds.len() - 1];
    bounds.iter().copied().find(|b| threshold_ms >= 0.0 && *b >= threshold_ms).ok_or(BuiltinError::Threshold {
        metric: metric.name.clone(),
        value: threshold_ms,
        max,
    })
}

/// An `le` matcher for a bound, accepting each exporter's spelling of it: Envoy and Go's
/// clients write `500` and, from 10⁶ on, `1.8e+06`; the Rust client writes `500.0`.
fn le_matcher(bound: f64) -> String {
    let plain = format!("{bound}");
    let mut spellings = vec![plain.clone()];
    if bound.fract() == 0.0 {
        spellings.push(format!("{plain}.0"));
    }
    if bound >= 1e6 {
        let exp = bound.log10().floor() as i32;
        spellings.push(format!("{}e+{exp:02}", bound / 10f64.powi(exp)));
    }
    let alternatives: Vec<String> = spellings.iter().map(|s| escape_quoted(&regex::escape(s), '"')).collect();
    format!(r#"le=~"{}""#, alternatives.join("|"))
}

/// The experiment's Service, as Istio labels the destination.
const ISTIO_SERVICE: &str =
    r#"destination_service_namespace="{{ namespace }}",destination_service_name="{{ service.name }}""#;

/// The arm's Service for its weighted split (Gateway API), as Istio labels the destination.
const ARM_SERVICE: &str =
    r#"destination_service_namespace="{{ namespace }}",destination_service_name="{{ service.name }}-{{ arm.name }}""#;

/// The arm's Services (Gateway API) that receive the analysed cohorts: the split's for first
/// exposures, and for every randomised request the sticky pins' too (one Service per cohort,
/// `plan::gateway::cohort_service_name`; targeted requests and mirrored copies have their own).
fn arm_services(cohort: Cohorts) -> String {
    match cohort {
        Cohorts::FirstExposures | Cohorts::Unlabelled => ARM_SERVICE.to_string(),
        Cohorts::Randomised => format!(
            r#"destination_service_namespace="{{{{ namespace }}}}",destination_service_name=~"{{{{ service.name }}}}-{{{{ arm.name }}}}(-{})?""#,
            Cohort::Returning.value()
        ),
    }
}

/// The arm, as Istio labels the destination: its `version` label, else its Deployment.
fn istio_arm(arm: &Arm) -> &'static str {
    if arm.selector.contains_key("version") {
        r#"destination_version="{{ arm.selector.version }}""#
    } else {
        r#"destination_workload="{{ arm.deployment }}""#
    }
}

/// The SRM check's units of one arm: first exposures (the weighted split), whatever the unit of
/// analysis, since only those were assigned by the weights. With Istio its Telemetry's cohort
/// label tells them; with the Gateway API the split's own Service does.
pub(crate) fn assignment_template(mode: Routing, arm: &Arm) -> Option<String> {
    match mode {
        Routing::Istio => Some(format!(
            r#"sum(increase(istio_requests_total{{reporter="destination",{ISTIO_SERVICE},{},forklane_cohort="assigned"}}[{{{{ window }}}}]))"#,
            istio_arm(arm)
        )),
        Routing::GatewayApi => Some(format!(
            r#"sum(increase(istio_requests_total{{reporter=~"destination|waypoint",{ARM_SERVICE}}}[{{{{ window }}}}]))"#
        )),
        Routing::Native => None,
    }
}

/// The success/trial templates of a builtin metric for one arm.
pub(crate) fn templates(
    builtin: Builtin,
    metric: &Metric,
    mode: Routing,
    cohort: Cohorts,
    arm: &Arm,
) -> Result<QueryPair, BuiltinError> {
    let name = builtin_name(builtin);
    let mut source_only = None;
    let (selector, histogram, per_ms) = match mode {
        Routing::Istio => {
            // Envoy labels the requests it failed itself from the pod it picked, if any: the
            // workload, never `destination_version` (see docs/analysis.md). These carry no
            // cohort: the Telemetry that adds `forklane_cohort` covers the destination's proxy,
            // and the source proxy is the client's, outside the experiment's workloads.
            if arm.deployment.is_some() {
                source_only = Some(format!(
                    r#"reporter="source",{ISTIO_SERVICE},destination_workload="{{{{ arm.deployment }}}}",response_flags=~"{SOURCE_ONLY_FLAGS}""#
                ));
            }
            let selector = format!(r#"reporter="destination",{ISTIO_SERVICE},{},{{{{ cohort }}}}"#, istio_arm(arm));
            (selector, "istio_request_duration_milliseconds", 1.0)
        }
        Routing::GatewayApi => {
            // No Gateway API implementation labels its metrics with the cohort header, but each
            // cohort has its own Service. The client side fails requests for an arm's Service as
            // it does for a subset.
            let services = arm_services(cohort);
            source_only = Some(format!(r#"reporter="source",{services},response_flags=~"{SOURCE_ONLY_FLAGS}""#));
            let selector = format!(r#"reporter=~"destination|waypoint",{services}"#);
            (selector, "istio_request_duration_milliseconds", 1.0)
        }
        Routing::Native => {
            if !arm.selector.contains_key("version") {
                return Err(BuiltinError::NoVersion {
                    metric: metric.name.clone(),
                    builtin: name,
                    arm: arm.name.clone(),
                });
            }
            // `namespace` as a kubernetes_sd scrape attaches it; versions repeat across apps.
            (
                r#"namespace="{{ namespace }}",version="{{ arm.selector.version }}""#.to_string(),
                "http_request_duration_seconds",
                1000.0,
            )
        }
    };
    let increase =
        |series: &str, extra: &str| format!("sum(increase({series}{{{selector}{extra}}}[{{{{ window }}}}]))");
    Ok(match builtin {
        Builtin::IstioErrorRate => {
            let (requests, code) = match mode {
                Routing::Istio | Routing::GatewayApi => ("istio_requests_total", "response_code"),
                Routing::Native => ("http_requests_total", "code"),
            };
            // One `sum` over the union, so that each half may be empty (no failures yet) and the
            // pair is still two instant queries.
            let with_failures = |answered: String| match &source_only {
                Some(failed) => {
                    format!(
                        "sum(increase({requests}{{{answered}}}[{{{{ window }}}}]) or increase({requests}{{{failed}}}[{{{{ window }}}}]))"
                    )
                }
                None => format!("sum(increase({requests}{{{answered}}}[{{{{ window }}}}]))"),
            };
            QueryPair {
                success: with_failures(format!(r#"{selector},{code}=~"5..""#)),
                trial: with_failures(selector.clone()),
            }
        }
        Builtin::IstioLatency => {
            let threshold =
                metric.threshold_ms.ok_or(BuiltinError::NoThreshold { metric: metric.name.clone(), builtin: name })?;
            let bound = bucket_bound(metric, threshold, mode)? / per_ms;
            let count = increase(&format!("{histogram}_count"), "");
            let fast = increase(&format!("{histogram}_bucket"), &format!(",{}", le_matcher(bound)));
            QueryPair { success: format!("{count} - {fast}"), trial: count }
        }
    })
}

#[cfg(test)]
#[path = "builtins_tests.rs"]
mod tests;
