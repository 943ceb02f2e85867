//! Structural OpenAPI v3 validation, pruning and defaulting of custom objects, as the
//! apiextensions-apiserver does it (kube-openapi validator messages, `field.Error` types,
//! `x-kubernetes-*` extensions, CEL rules, validation ratcheting on update).

mod cel;
mod formats;
mod lists;
mod prune;
mod walk;

pub(crate) use crate::cluster::semantics::field_error::{FieldError, FieldErrorReason};
pub(crate) use cel::check_rules;
pub(crate) use lists::{is_map_at, list_type_at};
pub(crate) use prune::{apply_defaults, prune, unknown_field_message};

use crate::cluster::semantics::gofmt;
use serde_json::{Value, json};
use walk::{Node, children};

/// Validates `obj` against a CRD version's `openAPIV3Schema`. With `old` (an update), errors in
/// values unchanged from `old` are ratcheted away, and transition rules (`oldSelf`) run.
/// Call after [`prune`] and [`apply_defaults`], as the apiserver validates the decoded object.
pub(crate) fn validate(schema: &Value, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    check_node(&Node { schema, value: obj, old, path: String::new() }, &mut errors);
    if !cel::has_rules(schema) {
        return errors;
    }
    // The apiserver skips CEL rules when "blocking" schema errors exist (`hasBlockingErr`).
    let blocking = errors.iter().any(|e| {
        use FieldErrorReason::*;
        matches!(e.reason, NotSupported | Required | TooLong | TooMany | TypeInvalid)
    });
    if blocking {
        errors.push(FieldError::invalid(
            "<nil>",
            Value::Null,
            "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
        ));
    } else {
        errors.extend(cel::validate_rules(schema, obj, old));
    }
    errors
}

/// kube-openapi's JSON type name of a value.
fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
    }
}

fn flag(schema: &Value, key: &str) -> bool {
    schema.get(key).and_then(Value::as_bool) == Some(true)
}

/// Declared types; `x-kubernetes-int-or-string` becomes `integer,string` as in the apiserver.
fn declared_types(schema: &Value) -> Vec<&str> {
    if flag(schema, "x-kubernetes-int-or-string") {
        return vec!["integer", "string"];
    }
    schema.get("type").and_then(Value::as_str).into_iter().collect()
}

/// Schema validation of one node and, recursively, its children.
fn check_node(n: &Node, errors: &mut Vec<FieldError>) {
    // Ratcheting (CRDValidationRatcheting, on by default since 1.30): an unchanged,
    // correlatable value is not re-validated on update.
    if n.old == Some(n.value) {
        return;
    }
    let s = n.schema;
    let v = n.value;
    let types = declared_types(s);
    if v.is_null() {
        if !types.is_empty() && !flag(s, "nullable") {
            errors.push(type_error(&n.path, &types, "null"));
        }
        return;
    }
    let actual = json_type(v);
    let integral_float = actual == "number" && v.as_f64().is_some_and(|f| f.fract() == 0.0);
    let type_ok = types.is_empty()
        || types.contains(&actual)
        || (integral_float && types.contains(&"integer"))
        || (actual == "integer" && types.contains(&"number"));
    if !type_ok {
        errors.push(type_error(&n.path, &types, actual));
    }
    check_enum(n, errors);
    match v {
        Value::Number(_) => check_number(n, errors),
        Value::String(text) => check_string(n, text, errors),
        Value::Array(items) => check_array(n, items, errors),
        Value::Object(map) => check_object(n, map, errors),
        _ => {}
    }
    check_composition(n, errors);
    for child in children(n) {
        check_node(&child, errors);
    }
}

/// `<path> in body <text>`, the kube-openapi message prefix.
fn in_body(path: &str, text: impl std::fmt::Display) -> String {
    format!("{path} in body {text}")
}

fn type_error(path: &str, types: &[&str], actual: &str) -> FieldError {
    let msg = in_body(path, format!("must be of type {}: {}", types.join(","), gofmt::quote(actual)));
    FieldError::new(path, FieldErrorReason::TypeInvalid, Some(json!(actual)), msg)
}

fn check_enum(n: &Node, errors: &mut Vec<FieldError>) {
    let Some(allowed) = n.schema.get("enum").and_then(Value::as_array) else { return };
    if allowed.iter().any(|a| json_equal(a, n.value)) {
        return;
    }
    // Strings are listed as they are, other values as their JSON.
    let listed: Vec<String> =
        allowed.iter().map(|a| a.as_str().map_or_else(|| a.to_string(), str::to_string)).collect();
    errors.push(FieldError::not_supported(&n.path, n.value.clone(), &listed));
}

/// JSON equality where `1` and `1.0` are the same number.
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn check_number(n: &Node, errors: &mut Vec<FieldError>) {
    let s = n.schema;
    let x = n.value.as_f64().unwrap_or(0.0);
    let mut fail = |text: String| errors.push(FieldError::invalid(&n.path, n.value.clone(), in_body(&n.path, text)));
    if let Some(min) = s.get("minimum").and_then(Value::as_f64) {
        let exclusive = flag(s, "exclusiveMinimum");
        if x < min || (exclusive && x == min) {
            let op = if exclusive { "greater than" } else { "greater than or equal to" };
            fail(format!("should be {op} {}", gofmt::float(min)));
        }
    }
    if let Some(max) = s.get("maximum").and_then(Value::as_f64) {
        let exclusive = flag(s, "exclusiveMaximum");
        if x > max || (exclusive && x == max) {
            let op = if exclusive { "less than" } else { "less than or equal to" };
            fail(format!("should be {op} {}", gofmt::float(max)));
        }
    }
    if let Some(m) = s.get("multipleOf").and_then(Value::as_f64)
        && m > 0.0
        && (x / m).fract() != 0.0
    {
        fail(format!("should be a multiple of {}", gofmt::float(m)));
    }
}

fn check_string(n: &Node, text: &str, errors: &mut Vec<FieldError>) {
    let s = n.schema;
    // kube-openapi counts runes, although the message says bytes.
    let len = text.chars().count() as i64;
    if let Some(max) = s.get("maxLength").and_then(Value::as_i64)
        && len > max
    {
        errors.push(FieldError::too_long(&n.path, n.value.clone(), max));
    }
    if let Some(min) = s.get("minLength").and_then(Value::as_i64)
        && len < min
    {
        errors.push(FieldError::invalid(
            &n.path,
            n.value.clone(),
            in_body(&n.path, format!("should be at least {min} chars long")),
        ));
    }
    if let Some(pattern) = s.get("pattern").and_then(Value::as_str) {
        let detail = match regex::Regex::new(pattern) {
            Ok(re) if re.is_match(text) => None,
            Ok(_) => Some(format!("should match '{pattern}'")),
            Err(e) => Some(format!("should match '{pattern}, but pattern is invalid: {e}'")),
        };
        if let Some(d) = detail {
            errors.push(FieldError::invalid(&n.path, n.value.clone(), in_body(&n.path, d)));
        }
    }
    if let Some(format) = s.get("format").and_then(Value::as_str)
        && !formats::is_valid(format, text)
    {
        let msg = in_body(&n.path, format!("must be of type {format}: {}", gofmt::quote(text)));
        errors.push(FieldError::new(&n.path, FieldErrorReason::TypeInvalid, Some(n.value.clone()), msg));
    }
}

fn check_array(n: &Node, items: &[Value], errors: &mut Vec<FieldError>) {
    let s = n.schema;
    let size = items.len() as i64;
    if let Some(min) = s.get("minItems").and_then(Value::as_i64)
        && size < min
    {
        errors.push(FieldError::invalid(
            &n.path,
            json!(size),
            in_body(&n.path, format!("should have at least {min} items")),
        ));
    }
    if let Some(max) = s.get("maxItems").and_then(Value::as_i64)
        && size > max
    {
        errors.push(FieldError::too_many(&n.path, size, max));
    }
    if flag(s, "uniqueItems") && items.iter().enumerate().any(|(i, a)| items[..i].iter().any(|b| json_equal(a, b))) {
        errors.push(FieldError::invalid(&n.path, json!(""), in_body(&n.path, "shouldn't contain duplicates")));
    }
    errors.extend(lists::duplicates(s, items, &n.path));
}

fn check_object(n: &Node, map: &serde_json::Map<String, Value>, errors: &mut Vec<FieldError>) {
    let s = n.schema;
    for key in s.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
        if !map.contains_key(key) {
            errors.push(FieldError::required(walk::child_path(&n.path, key), ""));
        }
    }
    let size = map.len() as i64;
    if let Some(min) = s.get("minProperties").and_then(Value::as_i64)
        && size < min
    {
        errors.push(FieldError::invalid(
            &n.path,
            json!(size),
            in_body(&n.path, format!("should have at least {min} properties")),
        ));
    }
    if let Some(max) = s.get("maxProperties").and_then(Value::as_i64)
        && size > max
    {
        errors.push(FieldError::too_many(&n.path, size, max));
    }
    if flag(s, "x-kubernetes-embedded-resource") {
        check_embedded(n, map, errors);
    }
}

/// `schemaobjectmeta.Validate` for `x-kubernetes-embedded-resource` objects.
fn check_embedded(n: &Node, map: &serde_json::Map<String, Value>, errors: &mut Vec<FieldError>) {
    for key in ["apiVersion", "kind"] {
        let path = walk::child_path(&n.path, key);
        match map.get(key) {
            None => errors.push(FieldError::required(path, "must not be empty")),
            Some(Value::String(s)) if s.is_empty() => {
                errors.push(FieldError::invalid(path, json!(""), "must not be empty"))
            }
            Some(Value::String(_)) => {}
            Some(other) => errors.push(FieldError::invalid(path, other.clone(), "must be a string")),
        }
    }
}

/// allOf / anyOf / oneOf / not, with go-openapi's composite messages (reported at `<nil>`
/// with the path quoted inside the message) and its choice of "best failures" to merge.
fn check_composition(n: &Node, errors: &mut Vec<FieldError>) {
    let s = n.schema;
    let branch = |b: &Value| {
        let mut errs = Vec::new();
        check_node(&Node { schema: b, value: n.value, old: None, path: n.path.clone() }, &mut errs);
        errs
    };
    let composite = |text: String| FieldError::invalid("<nil>", json!(""), format!("{} {text}", gofmt::quote(&n.path)));
    if let Some(all) = s.get("allOf").and_then(Value::as_array) {
        let results: Vec<Vec<FieldError>> = all.iter().map(branch).collect();
        let valid = results.iter().filter(|r| r.is_empty()).count();
        if valid == 0 {
            errors.push(composite("must validate all the schemas (allOf). None validated".into()));
        } else if valid < all.len() {
            errors.push(composite("must validate all the schemas (allOf)".into()));
        }
        errors.extend(results.into_iter().flatten());
    }
    if let Some(any) = s.get("anyOf").and_then(Value::as_array) {
        let results: Vec<Vec<FieldError>> = any.iter().map(branch).collect();
        if !results.iter().any(Vec::is_empty) {
            errors.push(composite("must validate at least one schema (anyOf)".into()));
            errors.extend(best_failure(results));
        }
    }
    if let Some(one) = s.get("oneOf").and_then(Value::as_array) {
        let results: Vec<Vec<FieldError>> = one.iter().map(branch).collect();
        let valid = results.iter().filter(|r| r.is_empty()).count();
        if valid != 1 {
            let extra =
                if valid == 0 { "Found none valid".to_string() } else { format!("Found {valid} valid alternatives") };
            errors.push(composite(format!("must validate one and only one schema (oneOf). {extra}")));
            errors.extend(best_failure(results.into_iter().filter(|r| !r.is_empty()).collect()));
        }
    }
    if let Some(not) = s.get("not")
        && branch(not).is_empty()
    {
        errors.push(composite("must not validate the schema (not)".into()));
    }
}

/// go-openapi keeps the failing branch with the most passing checks; we approximate that
/// with the first branch having the fewest errors.
fn best_failure(results: Vec<Vec<FieldError>>) -> Vec<FieldError> {
    let mut best: Option<Vec<FieldError>> = None;
    for r in results {
        if best.as_ref().is_none_or(|b| r.len() < b.len()) {
            best = Some(r);
        }
    }
    best.unwrap_or_default()
}

#[cfg(test)]
mod tests;
