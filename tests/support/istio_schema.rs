//! Validates rendered Istio objects against the `openAPIV3Schema` of the
//! vendored Istio CRDs (`core/src/istio/crds/`), the way the API server's schema
//! validation would with `kubectl apply --validate=strict`.
//!
//! What is checked: types, `required`, `enum`, `pattern`, lengths, ranges, the
//! `oneOf`/`anyOf`/`allOf`/`not` combinations Istio uses for its one-of
//! fields, and unknown fields.
//!
//! What is NOT checked: the CEL rules in `x-kubernetes-validations` (Istio uses
//! them for "duration >= 1ms" and for wildcards/empty keys in label selectors).
//! They are stripped from the schema, not evaluated; `core/src/istio/validation.rs`
//! and istiod's webhook cover what Forklane generates.

use serde_json::{Map, Value, json};

use forklane_core::istio::{DESTINATION_RULE_CRD, TELEMETRY_CRD, VIRTUAL_SERVICE_CRD};

/// Panics with every schema violation if `obj.spec` does not conform to the
/// CRD of `obj.kind` (VirtualService or DestinationRule) at version v1.
pub fn assert_valid_istio(obj: &Value) {
    if let Err(errors) = istio_schema_errors(obj) {
        panic!("{} is not valid against its CRD schema:\n  {}\nobject: {obj:#}", obj["kind"], errors.join("\n  "));
    }
}

/// Like [`assert_valid_istio`] but returns the violations ("<json pointer>: <message>").
pub fn istio_schema_errors(obj: &Value) -> Result<(), Vec<String>> {
    let (crd, api_version) = match obj["kind"].as_str() {
        Some("VirtualService") => (VIRTUAL_SERVICE_CRD, "networking.istio.io/v1"),
        Some("DestinationRule") => (DESTINATION_RULE_CRD, "networking.istio.io/v1"),
        Some("Telemetry") => (TELEMETRY_CRD, "telemetry.istio.io/v1"),
        other => return Err(vec![format!("unsupported kind {other:?}")]),
    };
    if obj["apiVersion"] != api_version {
        return Err(vec![format!("apiVersion {} is not {api_version}", obj["apiVersion"])]);
    }
    let schema = spec_schema(crd);
    let validator = jsonschema::draft202012::options().build(&schema).expect("converted CRD schema must compile");
    let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    let errors: Vec<String> = validator.iter_errors(&spec).map(|e| format!("spec{}: {e}", e.instance_path())).collect();
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

/// The JSON Schema of `.spec` for the served version v1 of a CRD document.
fn spec_schema(crd_yaml: &str) -> Value {
    let crd: Value = serde_yaml_ng::from_str(crd_yaml).expect("CRD YAML parses");
    let version =
        crd["spec"]["versions"].as_array().and_then(|vs| vs.iter().find(|v| v["name"] == "v1")).expect("CRD serves v1");
    let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert!(spec.is_object(), "CRD v1 schema has no spec");
    to_json_schema(spec)
}

/// Converts one OpenAPI v3 structural-schema node (and its children) to JSON Schema.
fn to_json_schema(node: &Value) -> Value {
    let Value::Object(src) = node else {
        return node.clone();
    };
    let mut out = Map::new();
    for (key, value) in src {
        match key.as_str() {
            "properties" | "patternProperties" => {
                let props = value.as_object().expect("properties is a map");
                let converted = props.iter().map(|(k, v)| (k.clone(), to_json_schema(v))).collect();
                out.insert(key.clone(), Value::Object(converted));
            }
            "items" | "additionalProperties" | "not" => {
                out.insert(key.clone(), to_json_schema(value));
            }
            "allOf" | "anyOf" | "oneOf" => {
                let list = value.as_array().expect("combinator is a list");
                out.insert(key.clone(), list.iter().map(to_json_schema).collect());
            }
            // OpenAPI/Kubernetes extensions handled below or not checkable here
            // (CEL rules in x-kubernetes-validations are deliberately dropped).
            "nullable" | "format" => {}
            k if k.starts_with("x-kubernetes-") => {}
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    let flag = |name: &str| src.get(name) == Some(&Value::Bool(true));

    if flag("x-kubernetes-int-or-string") {
        // Structural schemas give int-or-string no `type`; the value is either.
        out.remove("type");
        out.insert("anyOf".into(), json!([{"type": "integer"}, {"type": "string"}]));
    }
    match src.get("format").and_then(Value::as_str) {
        Some("int32") => bound(&mut out, i64::from(i32::MIN), i64::from(i32::MAX)),
        Some("uint32") => bound(&mut out, 0, i64::from(u32::MAX)),
        _ => {}
    }
    if src.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("set") {
        out.insert("uniqueItems".into(), Value::Bool(true));
    }
    // The API server rejects unknown fields under strict field validation
    // unless the schema preserves them; a typo in a rendered object is a bug.
    let has_props = src.contains_key("properties");
    if has_props && !src.contains_key("additionalProperties") && !flag("x-kubernetes-preserve-unknown-fields") {
        out.insert("additionalProperties".into(), Value::Bool(false));
    }
    if flag("nullable")
        && let Some(Value::String(t)) = out.get("type").cloned()
    {
        out.insert("type".into(), json!([t, "null"]));
    }
    Value::Object(out)
}

fn bound(out: &mut Map<String, Value>, min: i64, max: i64) {
    out.entry("minimum").or_insert(json!(min));
    out.entry("maximum").or_insert(json!(max));
}
