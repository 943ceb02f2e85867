use std::collections::BTreeMap;

use super::*;
use crate::api::Role;

fn metric(threshold_ms: Option<f64>) -> Metric {
    Metric {
        name: "latency".into(),
        builtin: Some(Builtin::IstioLatency),
        role: Role::Guardrail,
        direction: None,
        kind: None,
        success_query: None,
        trial_query: None,
        margin: None,
        threshold_ms,
    }
}

fn arm(labels: &[(&str, &str)]) -> Arm {
    let selector = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>();
    Arm { name: "v2".into(), control: false, selector, deployment: Some("shop-v2".into()) }
}

#[test]
fn istio_error_rate_selects_by_version_when_the_arm_has_one() {
    let q = templates(
        Builtin::IstioErrorRate,
        &metric(None),
        Routing::Istio,
        Cohorts::Randomised,
        &arm(&[("app", "shop"), ("version", "v2")]),
    )
    .unwrap();
    let service = r#"destination_service_namespace="{{ namespace }}",destination_service_name="{{ service.name }}""#;
    let answered = format!(
        r#"reporter="destination",{service},destination_version="{{{{ arm.selector.version }}}}",{{{{ cohort }}}}"#
    );
    let failed = format!(
        r#"reporter="source",{service},destination_workload="{{{{ arm.deployment }}}}",response_flags=~"(.*,)?(UF|UH|NR|NC)(,.*)?""#
    );
    let union = |answered: &str| {
        format!(
            "sum(increase(istio_requests_total{{{answered}}}[{{{{ window }}}}]) or increase(istio_requests_total{{{failed}}}[{{{{ window }}}}]))"
        )
    };
    assert_eq!(q.trial, union(&answered));
    assert_eq!(q.success, union(&format!(r#"{answered},response_code=~"5..""#)));
}

#[test]
fn source_only_failures_are_told_apart_by_their_flags() {
    let flags = regex::Regex::new(&format!("^(?:{SOURCE_ONLY_FLAGS})$")).unwrap();
    for counted in ["UF", "UH", "NR", "UF,URX", "DC,UF", "UH,RL"] {
        assert!(flags.is_match(counted), "{counted}");
    }
    // `-`: an answer the destination reported; URX alone: retried 5xx answers, reported there too.
    for left_out in ["-", "URX", "UT", "UO", "DC", "UFX", "XUH", "NRX"] {
        assert!(!flags.is_match(left_out), "{left_out}");
    }
}

#[test]
fn without_a_deployment_only_what_the_destination_reported_is_counted() {
    let mut a = arm(&[("version", "v2")]);
    a.deployment = None;
    let q = templates(Builtin::IstioErrorRate, &metric(None), Routing::Istio, Cohorts::Randomised, &a).unwrap();
    assert!(q.trial.starts_with(r#"sum(increase(istio_requests_total{reporter="destination","#), "{}", q.trial);
    assert!(!q.trial.contains(" or ") && !q.trial.contains("reporter=\"source\""), "{}", q.trial);
    assert!(q.success.ends_with(r#"response_code=~"5.."}[{{ window }}]))"#), "{}", q.success);
}

#[test]
fn istio_builtins_fall_back_to_the_workload_without_a_version_label() {
    let q = templates(
        Builtin::IstioErrorRate,
        &metric(None),
        Routing::Istio,
        Cohorts::Randomised,
        &arm(&[("track", "canary")]),
    )
    .unwrap();
    assert!(q.trial.contains(r#"destination_workload="{{ arm.deployment }}""#), "{}", q.trial);
    assert!(!q.trial.contains("destination_version"));
}

#[test]
fn latency_rounds_the_threshold_up_to_a_bucket_bound() {
    let q = templates(
        Builtin::IstioLatency,
        &metric(Some(300.0)),
        Routing::Istio,
        Cohorts::Randomised,
        &arm(&[("version", "v2")]),
    )
    .unwrap();
    assert!(
        q.success.starts_with(&format!("{} - sum(increase(istio_request_duration_milliseconds_bucket{{", q.trial)),
        "{}",
        q.success
    );
    assert!(q.success.ends_with(r#"le=~"500|500\\.0"}[{{ window }}]))"#), "{}", q.success);
    assert!(q.trial.starts_with("sum(increase(istio_request_duration_milliseconds_count{"));
    assert_eq!(bucket_bound(&metric(None), 500.0, Routing::Istio).unwrap(), 500.0);
    assert_eq!(bucket_bound(&metric(None), 0.2, Routing::Istio).unwrap(), 0.5);
    assert!(
        matches!(bucket_bound(&metric(None), 3_600_001.0, Routing::Istio), Err(BuiltinError::Threshold { value, .. }) if value == 3_600_001.0)
    );
    assert!(bucket_bound(&metric(None), -1.0, Routing::Istio).is_err());
}

#[test]
fn large_bounds_match_both_exporters_spellings() {
    assert_eq!(le_matcher(1_800_000.0), r#"le=~"1800000|1800000\\.0|1\\.8e\\+06""#);
    assert_eq!(le_matcher(600_000.0), r#"le=~"600000|600000\\.0""#);
    assert_eq!(le_matcher(0.5), r#"le=~"0\\.5""#);
}

#[test]
fn native_mode_uses_the_apps_own_metrics_in_seconds() {
    let a = arm(&[("version", "v2")]);
    let err = templates(Builtin::IstioErrorRate, &metric(None), Routing::Native, Cohorts::Unlabelled, &a).unwrap();
    assert_eq!(
        err.success,
        r#"sum(increase(http_requests_total{namespace="{{ namespace }}",version="{{ arm.selector.version }}",code=~"5.."}[{{ window }}]))"#
    );
    // 0.4 ms rounds up to the clients' smallest default bucket, 5 ms.
    let lat = templates(Builtin::IstioLatency, &metric(Some(0.4)), Routing::Native, Cohorts::Unlabelled, &a).unwrap();
    assert!(lat.success.ends_with(r#"http_request_duration_seconds_bucket{namespace="{{ namespace }}",version="{{ arm.selector.version }}",le=~"0\\.005"}[{{ window }}]))"#), "{}", lat.success);
    assert!(bucket_bound(&metric(None), 10_001.0, Routing::Native).is_err());
    let no_version = templates(
        Builtin::IstioErrorRate,
        &metric(None),
        Routing::Native,
        Cohorts::Unlabelled,
        &arm(&[("track", "b")]),
    )
    .unwrap_err();
    assert_eq!(
        no_version,
        BuiltinError::NoVersion { metric: "latency".into(), builtin: "istio-error-rate", arm: "v2".into() }
    );
}

#[test]
fn latency_without_threshold_is_an_error() {
    let err = templates(
        Builtin::IstioLatency,
        &metric(None),
        Routing::Istio,
        Cohorts::Randomised,
        &arm(&[("version", "v2")]),
    )
    .unwrap_err();
    assert!(err.to_string().contains("thresholdMs"), "{err}");
}

#[test]
fn only_the_destination_reported_part_is_restricted_to_the_analysed_cohorts() {
    let q = templates(
        Builtin::IstioErrorRate,
        &metric(None),
        Routing::Istio,
        Cohorts::Randomised,
        &arm(&[("version", "v2")]),
    )
    .unwrap();
    let (answered, failed) = q.trial.split_once(" or ").unwrap();
    assert!(answered.contains("{{ cohort }}"), "{answered}");
    assert!(!failed.contains("cohort"), "the source proxy is outside the Telemetry: {failed}");
    let latency = templates(
        Builtin::IstioLatency,
        &metric(Some(300.0)),
        Routing::Istio,
        Cohorts::Randomised,
        &arm(&[("version", "v2")]),
    )
    .unwrap();
    assert_eq!(latency.success.matches("{{ cohort }}").count(), 2, "{}", latency.success);
    let native = templates(
        Builtin::IstioErrorRate,
        &metric(None),
        Routing::Native,
        Cohorts::Unlabelled,
        &arm(&[("version", "v2")]),
    )
    .unwrap();
    assert!(!native.trial.contains("cohort"), "{}", native.trial);
}

#[test]
fn srm_units_with_istio_are_first_exposures_of_the_arm() {
    let by_version = assignment_template(Routing::Istio, &arm(&[("version", "v2")])).unwrap();
    assert_eq!(
        by_version,
        r#"sum(increase(istio_requests_total{reporter="destination",destination_service_namespace="{{ namespace }}",destination_service_name="{{ service.name }}",destination_version="{{ arm.selector.version }}",forklane_cohort="assigned"}[{{ window }}]))"#
    );
    let by_workload = assignment_template(Routing::Istio, &arm(&[("track", "canary")])).unwrap();
    assert!(by_workload.contains(r#"destination_workload="{{ arm.deployment }}",forklane_cohort="assigned""#));
}

#[test]
fn with_the_gateway_api_an_arms_cohorts_are_its_services_as_the_waypoint_or_a_sidecar_reports_them() {
    let v2 = arm(&[("version", "v2")]);
    let q = templates(Builtin::IstioErrorRate, &metric(None), Routing::GatewayApi, Cohorts::Randomised, &v2).unwrap();
    let randomised = r#"destination_service_namespace="{{ namespace }}",destination_service_name=~"{{ service.name }}-{{ arm.name }}(-returning)?""#;
    let answered = format!(r#"reporter=~"destination|waypoint",{randomised}"#);
    let failed = format!(r#"reporter="source",{randomised},response_flags=~"(.*,)?(UF|UH|NR|NC)(,.*)?""#);
    let union = |answered: &str| {
        format!(
            "sum(increase(istio_requests_total{{{answered}}}[{{{{ window }}}}]) or increase(istio_requests_total{{{failed}}}[{{{{ window }}}}]))"
        )
    };
    assert_eq!(q.trial, union(&answered), "the split's and the sticky pins' Services: every randomised request");
    assert_eq!(q.success, union(&format!(r#"{answered},response_code=~"5..""#)));
    assert!(!q.trial.contains("cohort"), "the mesh's metrics carry no cohort label on this path");
    let split = r#"destination_service_namespace="{{ namespace }}",destination_service_name="{{ service.name }}-{{ arm.name }}""#;
    let users = templates(Builtin::IstioErrorRate, &metric(None), Routing::GatewayApi, Cohorts::FirstExposures, &v2);
    let users = users.unwrap();
    assert!(users.trial.contains(&format!(r#"reporter=~"destination|waypoint",{split}}}"#)), "{}", users.trial);
    assert!(users.trial.contains(&format!(r#"reporter="source",{split},"#)), "first exposures: the split's alone");
    let latency =
        templates(Builtin::IstioLatency, &metric(Some(300.0)), Routing::GatewayApi, Cohorts::Randomised, &v2).unwrap();
    assert!(latency.trial.starts_with("sum(increase(istio_request_duration_milliseconds_count{"), "{}", latency.trial);
    assert!(latency.success.contains(r#"le=~"500|500\\.0""#), "{}", latency.success);
    assert_eq!(
        assignment_template(Routing::GatewayApi, &v2).unwrap(),
        format!(r#"sum(increase(istio_requests_total{{reporter=~"destination|waypoint",{split}}}[{{{{ window }}}}]))"#),
        "SRM counts the split's Service: first exposures"
    );
    assert_eq!(assignment_template(Routing::Native, &v2), None);
}
