//! `x-kubernetes-validations` CEL rules, evaluated with kube-cel (via `kube::core::cel`).
//!
//! We walk the schema ourselves so that each failure carries what the apiserver reports: the
//! path of the node declaring the rule (plus `fieldPath`), the node's type as the bad value,
//! and old values correlated as Kubernetes correlates them (so transition rules under
//! atomic lists are skipped). kube-cel evaluates one node at a time: we hand it the node's
//! schema with nested rules stripped.

use super::walk::{Node, child_path, children};
use crate::cluster::semantics::field_error::{FieldError, FieldErrorReason};
use kube::core::cel::{CompiledSchema, ErrorKind, ValidationError, Validator, compile_schema};
use serde_json::{Value, json};

const RULES: &str = "x-kubernetes-validations";

thread_local! {
    // Registering the Kubernetes CEL libraries is not free; do it once per thread.
    static VALIDATOR: Validator = Validator::new();
}

/// Rules that do not compile, as `<path>: <error>` lines. The apiserver refuses a CRD whose
/// rules do not compile; the server should do the same at CRD creation.
pub(crate) fn check_rules(schema: &Value) -> Vec<String> {
    fn collect(c: &CompiledSchema, path: &str, out: &mut Vec<String>) {
        let at = if path.is_empty() { "<root>" } else { path };
        out.extend(c.compilation_errors().into_iter().map(|e| format!("{at}: {e}")));
        for (k, child) in &c.properties {
            collect(child, &child_path(path, k), out);
        }
        for child in c.items.iter().chain(&c.additional_properties) {
            collect(child, &format!("{path}[*]"), out);
        }
        for child in c.all_of.iter().chain(&c.one_of).chain(&c.any_of) {
            collect(child, path, out);
        }
    }
    let mut out = Vec::new();
    collect(&compile_schema(schema), "", &mut out);
    out.sort();
    out
}

/// Whether any node carries rules: without them the apiserver has no CEL validator at all.
pub(crate) fn has_rules(schema: &Value) -> bool {
    match schema {
        Value::Object(m) => m.contains_key(RULES) || m.values().any(has_rules),
        Value::Array(a) => a.iter().any(has_rules),
        _ => false,
    }
}

pub(crate) fn validate_rules(schema: &Value, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    walk(&Node { schema, value: obj, old, path: String::new() }, &mut errors);
    errors
}

fn walk(n: &Node, errors: &mut Vec<FieldError>) {
    if let Some(rules) = n.schema.get(RULES).and_then(Value::as_array) {
        // Ratcheting: on an unchanged value only transition rules are evaluated.
        let unchanged = n.old == Some(n.value);
        let selected: Vec<Value> = rules
            .iter()
            .filter(|r| !unchanged || r.get("rule").and_then(Value::as_str).is_some_and(|t| t.contains("oldSelf")))
            .cloned()
            .collect();
        if !selected.is_empty() && !n.value.is_null() {
            let mut shallow = strip_nested(n.schema);
            shallow[RULES] = Value::Array(selected);
            if let Err(errs) = VALIDATOR.with(|v| v.validate(&shallow, n.value, n.old)) {
                errors.extend(errs.iter().map(|e| to_field_error(n, e)));
            }
        }
    }
    for child in children(n) {
        walk(&child, errors);
    }
}

/// A copy of `schema` whose descendants carry no rules (the node's own are kept).
fn strip_nested(schema: &Value) -> Value {
    fn strip(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                Value::Object(m.iter().filter(|(k, _)| *k != RULES).map(|(k, v)| (k.clone(), strip(v))).collect())
            }
            Value::Array(a) => Value::Array(a.iter().map(strip).collect()),
            other => other.clone(),
        }
    }
    match schema {
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), if k == RULES { v.clone() } else { strip(v) })).collect())
        }
        other => other.clone(),
    }
}

fn to_field_error(n: &Node, e: &ValidationError) -> FieldError {
    let relative = e.field_path.trim_start_matches('.');
    let field = if relative.is_empty() { n.path.clone() } else { child_path(&n.path, relative) };
    // The apiserver reports the structural type of the node (empty for int-or-string).
    let node_type = json!(n.schema.get("type").and_then(Value::as_str).unwrap_or(""));
    let rule = e.rule.trim();
    match e.kind {
        ErrorKind::ValidationFailure => {
            let detail = if e.message == format!("failed rule: {}", e.rule) {
                format!("failed rule: {rule}")
            } else {
                e.message.trim().to_string()
            };
            match e.reason.as_deref() {
                Some("FieldValueForbidden") => FieldError::forbidden(field, detail),
                Some("FieldValueRequired") => FieldError::required(field, detail),
                Some("FieldValueDuplicate") => FieldError::new(field, FieldErrorReason::Duplicate, Some(node_type), ""),
                _ => FieldError::invalid(field, node_type, detail),
            }
        }
        ErrorKind::EvaluationError => {
            let cause = std::error::Error::source(e).map_or_else(|| e.message.clone(), |c| c.to_string());
            FieldError::invalid(field, node_type, format!("{cause} evaluating rule: {rule}"))
        }
        // Rules this server cannot evaluate are refused, never silently accepted.
        _ => FieldError::invalid(field, node_type, format!("rule cannot be evaluated by this server: {}", e.message)),
    }
}
