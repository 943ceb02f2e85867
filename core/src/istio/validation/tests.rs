//! Each test breaks exactly one rule of an otherwise valid pair and expects
//! exactly that one problem.

use serde_json::{Value, json};

use super::{Rule, validate_routing};
use crate::istio::{DestinationRule, VirtualService};

fn vs_json() -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "checkout", "namespace": "shop"},
        "spec": {
            "hosts": ["checkout"],
            "http": [
                {
                    "match": [{
                        "headers": {"x-forklane-variant": {"exact": "canary"}},
                        "uri": {"regex": "/api/v[0-9]+/.*"}
                    }],
                    "route": [{"destination": {"host": "checkout", "subset": "canary"}}],
                    "headers": {"request": {"set": {"x-forklane-experiment": "e1"}}}
                },
                {
                    "route": [
                        {"destination": {"host": "checkout", "subset": "stable"}, "weight": 90},
                        {"destination": {"host": "checkout.shop.svc.cluster.local", "subset": "canary"}, "weight": 10}
                    ],
                    "mirror": {"host": "checkout", "subset": "stable"},
                    "mirrorPercentage": {"value": 5.0}
                }
            ]
        }
    })
}

fn dr_json() -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "checkout", "namespace": "shop"},
        "spec": {
            "host": "checkout",
            "subsets": [
                {"name": "stable", "labels": {"version": "v1"}},
                {"name": "canary", "labels": {"version": "v2"}}
            ]
        }
    })
}

/// Runs validation on the (possibly edited) JSON pair and returns (rule, path) of each problem.
fn problems(vs: Value, dr: Value) -> Vec<(Rule, String)> {
    let vs: VirtualService = serde_json::from_value(vs).expect("test VS deserializes");
    let dr: DestinationRule = serde_json::from_value(dr).expect("test DR deserializes");
    validate_routing(&vs, &[dr]).into_iter().map(|p| (p.rule, p.path)).collect()
}

fn only(rule: Rule, path: &str) -> Vec<(Rule, String)> {
    vec![(rule, path.to_string())]
}

#[test]
fn baseline_is_valid() {
    assert_eq!(problems(vs_json(), dr_json()), vec![]);
}

#[test]
fn negative_weight() {
    let mut vs = vs_json();
    vs["spec"]["http"][1]["route"][0]["weight"] = json!(-10);
    vs["spec"]["http"][1]["route"][1]["weight"] = json!(110);
    assert_eq!(problems(vs, dr_json()), only(Rule::NegativeWeight, "spec.http[1].route[0].weight"));
}

#[test]
fn weights_not_summing_to_100() {
    let mut vs = vs_json();
    vs["spec"]["http"][1]["route"][1]["weight"] = json!(20);
    assert_eq!(problems(vs, dr_json()), only(Rule::WeightSum, "spec.http[1].route[*].weight"));
}

#[test]
fn lone_destination_with_partial_weight() {
    let mut vs = vs_json();
    vs["spec"]["http"][0]["route"][0]["weight"] = json!(50);
    assert_eq!(problems(vs, dr_json()), only(Rule::WeightSum, "spec.http[0].route[*].weight"));
}

#[test]
fn uppercase_match_header() {
    let mut vs = vs_json();
    vs["spec"]["http"][0]["match"][0]["headers"] = json!({"X-Forklane-Variant": {"exact": "canary"}});
    assert_eq!(
        problems(vs, dr_json()),
        only(Rule::HeaderName, "spec.http[0].match[0].headers[\"X-Forklane-Variant\"]")
    );
}

#[test]
fn unknown_pseudo_header_match() {
    let mut vs = vs_json();
    vs["spec"]["http"][0]["match"][0]["headers"] = json!({":host": {"exact": "a"}, ":authority": {"exact": "a"}});
    assert_eq!(problems(vs, dr_json()), only(Rule::HeaderName, "spec.http[0].match[0].headers[\":host\"]"));
}

#[test]
fn pseudo_header_in_header_operation() {
    let mut vs = vs_json();
    vs["spec"]["http"][0]["headers"] = json!({"request": {"set": {":path": "/x", ":authority": "a"}}});
    assert_eq!(problems(vs, dr_json()), only(Rule::HeaderName, "spec.http[0].headers.request.set[\":path\"]"));
}

#[test]
fn host_header_removed_on_destination() {
    let mut vs = vs_json();
    vs["spec"]["http"][1]["route"][0]["headers"] = json!({"request": {"remove": ["x-ok", "host"]}});
    assert_eq!(problems(vs, dr_json()), only(Rule::HeaderName, "spec.http[1].route[0].headers.request.remove[1]"));
}

#[test]
fn string_match_with_two_kinds() {
    let mut vs = vs_json();
    vs["spec"]["http"][0]["match"][0]["uri"] = json!({"exact": "/a", "prefix": "/"});
    assert_eq!(problems(vs, dr_json()), only(Rule::StringMatch, "spec.http[0].match[0].uri"));
}

#[test]
fn string_match_with_no_kind() {
    let mut vs = vs_json();
    vs["spec"]["http"][0]["match"][0]["queryParams"] = json!({"debug": {}});
    assert_eq!(problems(vs, dr_json()), only(Rule::StringMatch, "spec.http[0].match[0].queryParams[\"debug\"]"));
}

#[test]
fn empty_prefix() {
    let mut vs = vs_json();
    vs["spec"]["http"][0]["match"][0]["uri"] = json!({"prefix": ""});
    assert_eq!(problems(vs, dr_json()), only(Rule::StringMatch, "spec.http[0].match[0].uri.prefix"));
}

#[test]
fn regex_that_does_not_compile() {
    let mut vs = vs_json();
    vs["spec"]["http"][0]["match"][0]["uri"] = json!({"regex": "/api/(v1"});
    assert_eq!(problems(vs, dr_json()), only(Rule::Regex, "spec.http[0].match[0].uri.regex"));
}

#[test]
fn regex_with_lookahead_is_not_re2() {
    let mut vs = vs_json();
    vs["spec"]["http"][0]["match"][0]["headers"]["x-forklane-variant"] = json!({"regex": "(?=canary).*"});
    assert_eq!(
        problems(vs, dr_json()),
        only(Rule::Regex, "spec.http[0].match[0].headers[\"x-forklane-variant\"].regex")
    );
}

#[test]
fn regex_longer_than_1024() {
    let mut vs = vs_json();
    vs["spec"]["http"][0]["match"][0]["uri"] = json!({"regex": "a".repeat(1025)});
    assert_eq!(problems(vs, dr_json()), only(Rule::Regex, "spec.http[0].match[0].uri.regex"));
}

#[test]
fn missing_subset_on_route() {
    let mut vs = vs_json();
    vs["spec"]["http"][0]["route"][0]["destination"]["subset"] = json!("v3");
    assert_eq!(problems(vs, dr_json()), only(Rule::MissingSubset, "spec.http[0].route[0].destination.subset"));
}

#[test]
fn subset_of_other_host() {
    let mut vs = vs_json();
    vs["spec"]["http"][0]["route"][0]["destination"]["host"] = json!("payments");
    assert_eq!(problems(vs, dr_json()), only(Rule::MissingSubset, "spec.http[0].route[0].destination.subset"));
}

#[test]
fn missing_subset_on_mirror() {
    let mut vs = vs_json();
    vs["spec"]["http"][1]["mirror"]["subset"] = json!("shadow");
    assert_eq!(problems(vs, dr_json()), only(Rule::MissingSubset, "spec.http[1].mirror.subset"));
}

#[test]
fn missing_subset_on_mirrors_entry() {
    let mut vs = vs_json();
    vs["spec"]["http"][1]["mirrors"] = json!([{"destination": {"host": "checkout", "subset": "shadow"}}]);
    assert_eq!(problems(vs, dr_json()), only(Rule::MissingSubset, "spec.http[1].mirrors[0].destination.subset"));
}

#[test]
fn catch_all_before_last_route() {
    let mut vs = vs_json();
    let catch_all = vs["spec"]["http"][1].clone();
    vs["spec"]["http"].as_array_mut().unwrap().insert(0, catch_all);
    assert_eq!(problems(vs, dr_json()), only(Rule::UnreachableRoute, "spec.http[0].match"));
}

#[test]
fn mirror_percentage_above_100() {
    let mut vs = vs_json();
    vs["spec"]["http"][1]["mirrorPercentage"]["value"] = json!(100.5);
    assert_eq!(problems(vs, dr_json()), only(Rule::MirrorPercentage, "spec.http[1].mirrorPercentage.value"));
}

#[test]
fn mirrors_percentage_below_0() {
    let mut vs = vs_json();
    vs["spec"]["http"][1]["mirrors"] = json!([{"destination": {"host": "checkout"}, "percentage": {"value": -1.0}}]);
    assert_eq!(problems(vs, dr_json()), only(Rule::MirrorPercentage, "spec.http[1].mirrors[0].percentage.value"));
}

#[test]
fn subset_name_not_dns_label() {
    let mut vs = vs_json();
    let mut dr = dr_json();
    vs["spec"]["http"][0]["route"][0]["destination"]["subset"] = json!("Canary_1");
    dr["spec"]["subsets"].as_array_mut().unwrap().push(json!({"name": "Canary_1", "labels": {"version": "v3"}}));
    assert_eq!(
        problems(vs, dr),
        vec![
            (Rule::SubsetName, "spec.http[0].route[0].destination.subset".to_string()),
            (Rule::SubsetName, "spec.subsets[2].name".to_string()),
        ]
    );
}

#[test]
fn duplicate_subset_name() {
    let mut dr = dr_json();
    dr["spec"]["subsets"][1]["name"] = json!("stable");
    dr["spec"]["subsets"].as_array_mut().unwrap().push(json!({"name": "canary", "labels": {"version": "v2"}}));
    assert_eq!(problems(vs_json(), dr), only(Rule::DuplicateSubset, "spec.subsets[1].name"));
}

#[test]
fn subset_without_labels() {
    let mut dr = dr_json();
    dr["spec"]["subsets"][0]["labels"] = json!({});
    assert_eq!(problems(vs_json(), dr), only(Rule::SubsetLabels, "spec.subsets[0].labels"));
}

#[test]
fn problem_names_object_path_and_value() {
    let mut vs = vs_json();
    vs["spec"]["http"][1]["route"][0]["weight"] = json!(-10);
    vs["spec"]["http"][1]["route"][1]["weight"] = json!(110);
    let vs: VirtualService = serde_json::from_value(vs).unwrap();
    let dr: DestinationRule = serde_json::from_value(dr_json()).unwrap();
    let found = validate_routing(&vs, &[dr]);
    assert_eq!(found[0].object, "VirtualService/checkout");
    assert_eq!(found[0].value, "-10");
    assert!(found[0].to_string().starts_with("VirtualService/checkout spec.http[1].route[0].weight = -10: "));
}

#[test]
fn serialization_omits_unset_fields() {
    let vs: VirtualService = serde_json::from_value(vs_json()).unwrap();
    let rendered = serde_json::to_value(&vs).unwrap();
    assert_eq!(rendered["spec"], vs_json()["spec"]);
}
