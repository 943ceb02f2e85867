//! `field.Error` of k8s.io/apimachinery and the 422 `Invalid` Status built from a list of them.

use crate::cluster::semantics::gofmt;
use serde_json::{Value, json};

/// `field.ErrorType`. `NotSupported` is the apiserver's "Unsupported value".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FieldErrorReason {
    Required,
    Duplicate,
    Invalid,
    NotSupported,
    Forbidden,
    TooLong,
    TooMany,
    TypeInvalid,
}

impl FieldErrorReason {
    /// Text of the error type inside messages (`ErrorType.String()`).
    pub(crate) fn text(self) -> &'static str {
        match self {
            Self::Required => "Required value",
            Self::Duplicate => "Duplicate value",
            Self::Invalid | Self::TypeInvalid => "Invalid value",
            Self::NotSupported => "Unsupported value",
            Self::Forbidden => "Forbidden",
            Self::TooLong => "Too long",
            Self::TooMany => "Too many",
        }
    }

    /// The `StatusCause.reason` (`CauseType`) for this error type.
    pub(crate) fn cause_type(self) -> &'static str {
        match self {
            Self::Required => "FieldValueRequired",
            Self::Duplicate => "FieldValueDuplicate",
            Self::Invalid => "FieldValueInvalid",
            Self::NotSupported => "FieldValueNotSupported",
            Self::Forbidden => "FieldValueForbidden",
            Self::TooLong => "FieldValueTooLong",
            Self::TooMany => "FieldValueTooMany",
            Self::TypeInvalid => "FieldValueTypeInvalid",
        }
    }

    /// Types whose message never shows the bad value.
    fn omits_value(self) -> bool {
        matches!(self, Self::Required | Self::Forbidden | Self::TooLong)
    }
}

/// One validation error. `field` is a `field.Path` rendering (`spec.arms[0].name`, or `<nil>`
/// for errors the apiserver reports without a path); `bad_value: None` means "omitted".
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct FieldError {
    pub field: String,
    pub reason: FieldErrorReason,
    pub message: String,
    pub bad_value: Option<Value>,
}

impl FieldError {
    pub(crate) fn new(
        field: impl Into<String>,
        reason: FieldErrorReason,
        bad_value: Option<Value>,
        message: impl Into<String>,
    ) -> Self {
        Self { field: field.into(), reason, message: message.into(), bad_value }
    }

    pub(crate) fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(field, FieldErrorReason::Required, None, detail)
    }

    pub(crate) fn invalid(field: impl Into<String>, value: Value, detail: impl Into<String>) -> Self {
        Self::new(field, FieldErrorReason::Invalid, Some(value), detail)
    }

    pub(crate) fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(field, FieldErrorReason::Forbidden, None, detail)
    }

    pub(crate) fn duplicate(field: impl Into<String>, value: Value) -> Self {
        Self::new(field, FieldErrorReason::Duplicate, Some(value), "")
    }

    /// `field.NotSupported`: detail lists the quoted supported values.
    pub(crate) fn not_supported(field: impl Into<String>, value: Value, supported: &[String]) -> Self {
        let quoted: Vec<String> = supported.iter().map(|s| gofmt::quote(s)).collect();
        let detail = if quoted.is_empty() { String::new() } else { format!("supported values: {}", quoted.join(", ")) };
        Self::new(field, FieldErrorReason::NotSupported, Some(value), detail)
    }

    /// `field.TooLong` with a known maximum.
    pub(crate) fn too_long(field: impl Into<String>, value: Value, max: i64) -> Self {
        let unit = if max == 1 { "byte" } else { "bytes" };
        Self::new(field, FieldErrorReason::TooLong, Some(value), format!("may not be more than {max} {unit}"))
    }

    /// `field.TooMany` with known actual and maximum quantities.
    pub(crate) fn too_many(field: impl Into<String>, actual: i64, max: i64) -> Self {
        let unit = if max == 1 { "item" } else { "items" };
        Self::new(field, FieldErrorReason::TooMany, Some(json!(actual)), format!("must have at most {max} {unit}"))
    }

    /// `ErrorBody()`: the message without the field path, as used in `StatusCause.message`.
    pub(crate) fn body(&self) -> String {
        let mut s = match &self.bad_value {
            Some(v) if !self.reason.omits_value() => format!("{}: {}", self.reason.text(), gofmt::bad_value(v)),
            _ => self.reason.text().to_string(),
        };
        if !self.message.is_empty() {
            s.push_str(": ");
            s.push_str(&self.message);
        }
        s
    }

    /// `Error()`: `<field>: <body>`, the apiserver's message text.
    pub(crate) fn message_text(&self) -> String {
        format!("{}: {}", self.field, self.body())
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message_text())
    }
}

/// `utilerrors.NewAggregate(errs).Error()`: one message alone, several deduplicated in
/// `[a, b]`.
pub(crate) fn aggregate_message(errors: &[FieldError]) -> String {
    let mut seen: Vec<String> = Vec::new();
    for e in errors {
        let m = e.message_text();
        if !seen.contains(&m) {
            seen.push(m);
        }
    }
    if seen.len() == 1 { seen.remove(0) } else { format!("[{}]", seen.join(", ")) }
}

/// `apierrors.NewInvalid`: the 422 Status returned for an object that failed validation.
/// `group` is empty for the core group.
pub(crate) fn invalid_status(kind: &str, group: &str, name: &str, errors: &[FieldError]) -> Value {
    let qualified = if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
    let message = if errors.is_empty() {
        format!("{qualified} {} is invalid", gofmt::quote(name))
    } else {
        format!("{qualified} {} is invalid: {}", gofmt::quote(name), aggregate_message(errors))
    };
    let causes: Vec<Value> = errors
        .iter()
        .map(|e| json!({"reason": e.reason.cause_type(), "message": e.body(), "field": e.field}))
        .collect();
    let mut details = json!({"name": name, "kind": kind, "causes": causes});
    if !group.is_empty() {
        details["group"] = json!(group);
    }
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "Invalid",
        "details": details,
        "code": 422,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_match_apimachinery() {
        let e = FieldError::new(
            "spec.replicas",
            FieldErrorReason::TypeInvalid,
            Some(json!("string")),
            "spec.replicas in body must be of type integer: \"string\"",
        );
        assert_eq!(
            e.message_text(),
            r#"spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string""#
        );
        let e = FieldError::not_supported("spec.mesh", json!("foo"), &["auto".into(), "istio".into(), "none".into()]);
        assert_eq!(
            e.message_text(),
            r#"spec.mesh: Unsupported value: "foo": supported values: "auto", "istio", "none""#
        );
        assert_eq!(FieldError::required("spec.x", "").message_text(), "spec.x: Required value");
        assert_eq!(
            FieldError::too_long("fieldX", json!("abc"), 2).message_text(),
            "fieldX: Too long: may not be more than 2 bytes"
        );
        assert_eq!(
            FieldError::too_many("fieldX", 3, 2).message_text(),
            "fieldX: Too many: 3: must have at most 2 items"
        );
        assert_eq!(
            FieldError::duplicate("spec.tags[1]", json!("a")).message_text(),
            r#"spec.tags[1]: Duplicate value: "a""#
        );
        assert_eq!(
            FieldError::invalid("spec.n", json!(-1), "too small").message_text(),
            "spec.n: Invalid value: -1: too small"
        );
    }

    #[test]
    fn invalid_status_has_causes_and_aggregated_message() {
        let errs = vec![
            FieldError::required("spec.a", ""),
            FieldError::invalid("spec.b", json!(3), "bad"),
            FieldError::required("spec.a", ""),
        ];
        let s = invalid_status("Experiment", "forklane.io", "x", &errs);
        assert_eq!(s["code"], 422);
        assert_eq!(s["reason"], "Invalid");
        assert_eq!(
            s["message"],
            r#"Experiment.forklane.io "x" is invalid: [spec.a: Required value, spec.b: Invalid value: 3: bad]"#
        );
        assert_eq!(s["details"]["group"], "forklane.io");
        assert_eq!(
            s["details"]["causes"][1],
            json!({"reason": "FieldValueInvalid", "message": "Invalid value: 3: bad", "field": "spec.b"})
        );
        assert_eq!(s["details"]["causes"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn single_error_is_not_bracketed_and_core_group_has_no_dot() {
        let s = invalid_status("Service", "", "web", &[FieldError::required("spec.ports", "")]);
        assert_eq!(s["message"], r#"Service "web" is invalid: spec.ports: Required value"#);
        assert!(s["details"].get("group").is_none());
    }
}
