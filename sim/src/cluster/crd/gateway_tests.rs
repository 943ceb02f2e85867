//! The vendored Gateway API v1.6.1 CRDs through [`validate_custom_object`], the same path as
//! the server's admission of custom objects. Expected texts are kube-apiserver's.

use super::validate_custom_object;
use forklane_core::gateway::{
    EXPERIMENTAL_HTTPROUTE_CRD, GATEWAY_CLASS_CRD, GATEWAY_CRD, GRPCROUTE_CRD, HTTPROUTE_CRD, REFERENCE_GRANT_CRD,
    STANDARD_CRDS,
};
use serde_json::{Value, json};

fn route(spec: Value) -> Value {
    json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
           "metadata": {"name": "r", "namespace": "default"}, "spec": spec})
}

#[track_caller]
fn refused(spec: Value) -> Vec<String> {
    validate_custom_object(HTTPROUTE_CRD, &route(spec)).expect_err("refused")
}

const NOT_CHECKED: &str = "<nil>: Invalid value: \"null\": some validation rules were not checked because the object was invalid; correct the existing errors to complete validation";

#[test]
fn every_gateway_api_crd_is_a_valid_definition_whose_rules_compile() {
    for crd in STANDARD_CRDS.iter().chain([&EXPERIMENTAL_HTTPROUTE_CRD]) {
        let doc: Value = serde_yaml_ng::from_str(crd).unwrap();
        let errors = super::validate_definition(&doc);
        assert!(errors.is_empty(), "{}: {errors:?}", doc["metadata"]["name"]);
    }
}

#[test]
fn a_valid_httproute_gets_its_defaults() {
    let obj = route(json!({
        "parentRefs": [{"name": "gw"}],
        "hostnames": ["shop.example.com"],
        "rules": [
            {"backendRefs": [{"name": "a", "port": 80}]},
            {"matches": [{"headers": [{"name": "x-canary", "value": "1"}]}],
             "backendRefs": [{"name": "a", "port": 80, "weight": 90}, {"name": "b", "port": 80, "weight": 10}]},
        ],
    }));
    let out = validate_custom_object(HTTPROUTE_CRD, &obj).expect("valid");
    assert_eq!(
        out["spec"]["parentRefs"][0],
        json!({"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"})
    );
    assert_eq!(out["spec"]["rules"][0]["matches"], json!([{"path": {"type": "PathPrefix", "value": "/"}}]));
    assert_eq!(
        out["spec"]["rules"][0]["backendRefs"][0],
        json!({"group": "", "kind": "Service", "name": "a", "port": 80, "weight": 1})
    );
    assert_eq!(
        out["spec"]["rules"][1]["matches"][0],
        json!({"headers": [{"name": "x-canary", "type": "Exact", "value": "1"}], "path": {"type": "PathPrefix", "value": "/"}})
    );
    // A route without rules gets the default rule.
    let out = validate_custom_object(HTTPROUTE_CRD, &route(json!({}))).expect("valid");
    assert_eq!(out["spec"]["rules"], json!([{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}]}]));
}

#[test]
fn invalid_httproutes_are_refused_with_the_apiservers_causes() {
    assert_eq!(
        refused(json!({"rules": [{"backendRefs": [{"name": "a"}]}]})),
        [r#"spec.rules[0].backendRefs[0]: Invalid value: "object": Must have port for Service reference"#]
    );
    assert_eq!(
        refused(json!({"rules": [{"filters": [
            {"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "a", "value": "1"}]}},
            {"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "b", "value": "2"}]}},
        ]}]})),
        [r#"spec.rules[0].filters: Invalid value: "array": RequestHeaderModifier filter cannot be repeated"#]
    );
    assert_eq!(
        refused(json!({"rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "api"}}]}]})),
        [r#"spec.rules[0].matches[0].path: Invalid value: "object": value must be an absolute path and start with '/' when type one of ['Exact', 'PathPrefix']"#,
         r#"spec.rules[0].matches[0].path: Invalid value: "object": must only contain valid characters (matching ^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$) for types ['Exact', 'PathPrefix']"#]
            .iter().take(1).map(|s| s.to_string()).collect::<Vec<_>>()
    );
    assert_eq!(
        refused(json!({"rules": [{"backendRefs": [{"name": "a", "port": 80, "weight": 1000001}]}]})),
        [
            r#"spec.rules[0].backendRefs[0].weight: Invalid value: 1000001: spec.rules[0].backendRefs[0].weight in body should be less than or equal to 1000000"#
        ]
    );
    let hosts: Vec<String> = (0..17).map(|i| format!("h{i}.example.com")).collect();
    assert_eq!(
        refused(json!({"hostnames": hosts})),
        ["spec.hostnames: Too many: 17: must have at most 16 items", NOT_CHECKED]
    );
    assert_eq!(
        refused(json!({"parentRefs": [{"name": "gw"}, {"name": "gw"}]})),
        [
            r#"spec.parentRefs: Invalid value: "array": sectionName must be unique when parentRefs includes 2 or more references to the same parent"#
        ]
    );
    assert_eq!(
        refused(json!({"parentRefs": [{"name": "gw", "sectionName": "http"}, {"name": "gw"}]})),
        [
            r#"spec.parentRefs: Invalid value: "array": sectionName must be specified when parentRefs includes 2 or more references to the same parent"#
        ]
    );
    // The same parent in two namespaces (`namespace` is escaped as `__namespace__` in CEL).
    validate_custom_object(
        HTTPROUTE_CRD,
        &route(json!({"parentRefs": [{"name": "gw", "namespace": "a"}, {"name": "gw", "namespace": "b"}]})),
    )
    .expect("distinct parents");
    assert_eq!(
        refused(json!({"rules": [{"filters": [{"type": "RequestMirror", "requestMirror": {
            "backendRef": {"name": "m", "port": 80}, "fraction": {"numerator": 3, "denominator": 2}}}]}]})),
        [
            r#"spec.rules[0].filters[0].requestMirror.fraction: Invalid value: "object": numerator must be less than or equal to denominator"#
        ]
    );
    assert_eq!(
        refused(
            json!({"rules": [{"filters": [{"type": "CORS", "cors": {"allowOrigins": ["*", "https://a.example"]}}]}]})
        ),
        [
            r#"spec.rules[0].filters[0].cors.allowOrigins: Invalid value: "array": AllowOrigins cannot contain '*' alongside other origins"#
        ]
    );
    assert_eq!(
        refused(json!({"rules": [{"filters": [{"type": "RequestRedirect", "requestRedirect": {"port": 8080}}],
                                   "backendRefs": [{"name": "a", "port": 80}]}]})),
        [
            r#"spec.rules[0]: Invalid value: "object": RequestRedirect filter must not be used together with backendRefs"#
        ]
    );
    assert_eq!(
        refused(json!({"rules": [{"matches": [{"path": {"type": "Exact", "value": "/a"}}],
            "filters": [{"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/b"}}}]}]})),
        [
            r#"spec.rules[0]: Invalid value: "object": When using URLRewrite filter with path.replacePrefixMatch, exactly one PathPrefix match must be specified"#
        ]
    );
    assert_eq!(
        refused(json!({"rules": [{"filters": [{"type": "RequestHeaderModifier"}]}]})),
        [
            r#"spec.rules[0].filters[0]: Invalid value: "object": filter.requestHeaderModifier must be specified for RequestHeaderModifier filter.type"#
        ]
    );
    assert_eq!(
        refused(json!({"rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/a b"}}]}]})),
        [
            r#"spec.rules[0].matches[0].path: Invalid value: "object": must only contain valid characters (matching ^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$) for types ['Exact', 'PathPrefix']"#
        ]
    );
    let many: Vec<Value> = (0..9).map(|_| json!({"matches": (0..15).map(|i| json!({"path": {"type": "Exact", "value": format!("/{i}")}})).collect::<Vec<_>>()})).collect();
    assert_eq!(
        refused(json!({"rules": many})),
        [
            r#"spec.rules: Invalid value: "array": While 16 rules and 64 matches per rule are allowed, the total number of matches across all rules in a route must be less than 128"#
        ]
    );
    assert_eq!(
        refused(json!({"rules": [{"matches": [{"path": {"type": "Prefix", "value": "/"}}]}]})),
        [
            r#"spec.rules[0].matches[0].path.type: Unsupported value: "Prefix": supported values: "Exact", "PathPrefix", "RegularExpression""#,
            NOT_CHECKED
        ]
    );
    assert_eq!(
        refused(json!({"hostnames": ["Bad_Host"]})),
        [
            r#"spec.hostnames[0]: Invalid value: "Bad_Host": spec.hostnames[0] in body should match '^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'"#
        ]
    );
    assert_eq!(
        refused(json!({"rules": [{"timeouts": {"request": "soon"}}]})),
        [
            r#"spec.rules[0].timeouts.request: Invalid value: "soon": spec.rules[0].timeouts.request in body should match '^([0-9]{1,5}(h|m|s|ms)){1,4}$'"#
        ]
    );
    assert_eq!(
        refused(json!({"rules": [{"filters": [{"type": "RequestMirror", "requestMirror": {
            "backendRef": {"name": "m", "port": 80}, "percent": 10, "fraction": {"numerator": 1}}}]}]})),
        [
            r#"spec.rules[0].filters[0].requestMirror: Invalid value: "object": Only one of percent or fraction may be specified in HTTPRequestMirrorFilter"#
        ]
    );
    assert_eq!(
        refused(json!({"rules": [{"timeouts": {"request": "1s", "backendRequest": "2s"}}]})),
        [
            r#"spec.rules[0].timeouts: Invalid value: "object": backendRequest timeout cannot be longer than request timeout"#
        ]
    );
    assert_eq!(
        refused(
            json!({"rules": [{"matches": [{"headers": [{"name": "a", "value": "1"}, {"name": "a", "value": "2"}]}]}]})
        ),
        [r#"spec.rules[0].matches[0].headers[1]: Duplicate value: map[string]interface {}{"name":"a"}"#]
    );
    assert_eq!(refused(json!({"sessionPersistence": {}})), [r#"unknown field "spec.sessionPersistence""#]);
}

#[test]
fn the_experimental_httproute_accepts_session_persistence() {
    let obj = route(json!({"rules": [{"sessionPersistence": {"sessionName": "s", "type": "Cookie"}}]}));
    validate_custom_object(EXPERIMENTAL_HTTPROUTE_CRD, &obj).expect("valid");
    // A rule only the experimental channel has.
    let named = route(json!({"rules": [{"name": "a"}, {"name": "a"}]}));
    assert_eq!(
        validate_custom_object(EXPERIMENTAL_HTTPROUTE_CRD, &named).unwrap_err(),
        [r#"spec.rules: Invalid value: "array": Rule name must be unique within the route"#]
    );
    validate_custom_object(HTTPROUTE_CRD, &named).expect("the standard channel has no such rule");
    assert_eq!(
        validate_custom_object(HTTPROUTE_CRD, &obj).unwrap_err(),
        [r#"unknown field "spec.rules[0].sessionPersistence""#]
    );
}

#[test]
fn the_other_kinds_validate() {
    let gc = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": "c"},
                    "spec": {"controllerName": "example.com/gw"}});
    validate_custom_object(GATEWAY_CLASS_CRD, &gc).expect("valid");
    let gw = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": "g"},
                    "spec": {"gatewayClassName": "c", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}});
    let out = validate_custom_object(GATEWAY_CRD, &gw).expect("valid");
    assert_eq!(out["spec"]["listeners"][0]["allowedRoutes"], json!({"namespaces": {"from": "Same"}}));
    let mut dup = gw.clone();
    dup["spec"]["listeners"] =
        json!([{"name": "http", "port": 80, "protocol": "HTTP"}, {"name": "http", "port": 81, "protocol": "HTTP"}]);
    assert_eq!(
        validate_custom_object(GATEWAY_CRD, &dup).unwrap_err(),
        [
            r#"spec.listeners[1]: Duplicate value: map[string]interface {}{"name":"http"}"#,
            r#"spec.listeners: Invalid value: "array": Listener name must be unique within the Gateway"#,
        ]
    );
    let mut infra = gw.clone();
    infra["spec"]["infrastructure"] = json!({"annotations": {"bad key!": "v"}});
    assert_eq!(
        validate_custom_object(GATEWAY_CRD, &infra).unwrap_err(),
        [
            r#"spec.infrastructure.annotations: Invalid value: "object": Annotation keys must be in the form of an optional DNS subdomain prefix followed by a required name segment of up to 63 characters."#
        ]
    );
    let grpc = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GRPCRoute", "metadata": {"name": "g"},
                    "spec": {"rules": [{"matches": [{"method": {"service": "a.B"}}], "backendRefs": [{"name": "a", "port": 80}]}]}});
    let out = validate_custom_object(GRPCROUTE_CRD, &grpc).expect("valid");
    assert_eq!(out["spec"]["rules"][0]["matches"][0]["method"]["type"], "Exact");
    let mut bad = grpc.clone();
    bad["spec"]["rules"][0]["matches"][0]["method"]["service"] = json!("a..b");
    assert_eq!(
        validate_custom_object(GRPCROUTE_CRD, &bad).unwrap_err(),
        [
            r#"spec.rules[0].matches[0].method: Invalid value: "object": service must only contain valid characters (matching ^(?i)\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*$)"#
        ]
    );
    let rg = json!({"apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant", "metadata": {"name": "g"},
                    "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "a"}], "to": [{"group": "", "kind": "Service"}]}});
    validate_custom_object(REFERENCE_GRANT_CRD, &rg).expect("valid");
}

#[test]
fn a_gateway_class_controller_name_is_immutable() {
    let crd: Value = serde_yaml_ng::from_str(GATEWAY_CLASS_CRD).unwrap();
    let info = super::resource_info(&crd).unwrap();
    let schema = info.version("v1").unwrap().schema.clone().unwrap();
    let old = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": "c"},
                     "spec": {"controllerName": "example.com/gw"}});
    let mut new = old.clone();
    new["spec"]["controllerName"] = json!("example.com/other");
    let errors: Vec<String> = crate::cluster::semantics::schema::validate(&schema, &new, Some(&old))
        .iter()
        .map(|e| e.message_text())
        .collect();
    assert_eq!(errors, [r#"spec.controllerName: Invalid value: "string": Value is immutable"#]);
    new["spec"]["description"] = json!("x");
    new["spec"]["controllerName"] = json!("example.com/gw");
    assert!(crate::cluster::semantics::schema::validate(&schema, &new, Some(&old)).is_empty());
}
