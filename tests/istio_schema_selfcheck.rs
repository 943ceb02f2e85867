//! Proves the CRD-schema helper accepts valid Istio objects and can fail.

use crate::support;

use serde_json::{Value, json};
use support::istio_schema::{assert_valid_istio, istio_schema_errors};

fn virtual_service() -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "checkout", "namespace": "shop"},
        "spec": {
            "hosts": ["checkout"],
            "http": [
                {
                    "name": "pinned-canary",
                    "match": [{"headers": {"x-forklane-variant": {"exact": "canary"}}}],
                    "route": [{"destination": {"host": "checkout", "subset": "canary"}}]
                },
                {
                    "name": "split",
                    "route": [
                        {"destination": {"host": "checkout", "subset": "stable"}, "weight": 90},
                        {"destination": {"host": "checkout", "subset": "canary"}, "weight": 10}
                    ],
                    "mirror": {"host": "checkout", "subset": "shadow"},
                    "mirrorPercentage": {"value": 5.0},
                    "timeout": "2s"
                }
            ]
        }
    })
}

fn destination_rule() -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "checkout", "namespace": "shop"},
        "spec": {
            "host": "checkout",
            "trafficPolicy": {"loadBalancer": {"simple": "LEAST_REQUEST"}},
            "subsets": [
                {"name": "stable", "labels": {"version": "v1"}},
                {"name": "canary", "labels": {"version": "v2"},
                 "trafficPolicy": {"loadBalancer": {"consistentHash": {"httpCookie": {"name": "u", "ttl": "0s"}}}}}
            ]
        }
    })
}

/// Asserts the helper rejects `obj` with an error at `path` that mentions `reason`.
fn assert_rejected(obj: &Value, path: &str, reason: &str) {
    let errors = istio_schema_errors(obj).expect_err("object must be rejected");
    assert!(
        errors.iter().any(|e| e.starts_with(path) && e.contains(reason)),
        "no error at {path:?} mentions {reason:?}: {errors:#?}"
    );
}

#[test]
fn accepts_valid_virtual_service() {
    assert_valid_istio(&virtual_service());
}

#[test]
fn accepts_valid_destination_rule() {
    assert_valid_istio(&destination_rule());
}

#[test]
fn rejects_weight_as_string() {
    let mut vs = virtual_service();
    vs["spec"]["http"][1]["route"][0]["weight"] = json!("90");
    assert_rejected(&vs, "spec/http/1/route/0/weight:", "is not of type \"integer\"");
}

#[test]
fn rejects_destination_without_host() {
    let mut vs = virtual_service();
    vs["spec"]["http"][0]["route"][0]["destination"] = json!({"subset": "canary"});
    assert_rejected(&vs, "spec/http/0/route/0/destination:", "\"host\" is a required property");
}

#[test]
fn rejects_two_load_balancer_kinds_at_once() {
    let mut dr = destination_rule();
    dr["spec"]["trafficPolicy"]["loadBalancer"] =
        json!({"simple": "ROUND_ROBIN", "consistentHash": {"useSourceIp": true}});
    assert_rejected(&dr, "spec/trafficPolicy/loadBalancer:", "oneOf");
}

#[test]
fn rejects_two_string_match_kinds_at_once() {
    let mut vs = virtual_service();
    vs["spec"]["http"][0]["match"][0]["uri"] = json!({"exact": "/a", "prefix": "/"});
    assert_rejected(&vs, "spec/http/0/match/0/uri:", "oneOf");
}

#[test]
fn rejects_unknown_field() {
    let mut vs = virtual_service();
    vs["spec"]["http"][1]["route"][0]["wieght"] = json!(90);
    assert_rejected(&vs, "spec/http/1/route/0:", "'wieght' was unexpected");
}

#[test]
fn rejects_int32_overflow() {
    let mut vs = virtual_service();
    vs["spec"]["http"][1]["route"][0]["weight"] = json!(i64::from(i32::MAX) + 1);
    assert_rejected(&vs, "spec/http/1/route/0/weight:", "maximum");
}

#[test]
fn rejects_wrong_api_version_and_unknown_kind() {
    let mut vs = virtual_service();
    vs["apiVersion"] = json!("networking.istio.io/v1alpha3");
    assert_rejected(&vs, "apiVersion", "is not networking.istio.io/v1");
    assert_rejected(&json!({"apiVersion": "networking.istio.io/v1", "kind": "Gateway"}), "unsupported kind", "Gateway");
}
