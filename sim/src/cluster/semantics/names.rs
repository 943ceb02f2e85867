//! Object name, namespace, label and annotation validation with the messages of
//! k8s.io/apimachinery/pkg/util/validation, and `generateName` completion. DNS-1123 names and
//! the message helpers are forklane-core's (`api::names`), shared with the product's validation.

use crate::cluster::semantics::field_error::FieldError;
use forklane_core::api::names::{dns1123_label_errors, dns1123_subdomain_errors, max_len_error, regex_error};
use regex::Regex;
use serde_json::{Value, json};
use std::sync::LazyLock;

const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const QUALIFIED_NAME_MSG: &str =
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

fn anchored(fmt: &str) -> Regex {
    Regex::new(&format!("^{fmt}$")).expect("valid regex")
}

static DNS1035_LABEL: LazyLock<Regex> = LazyLock::new(|| anchored(DNS1035_LABEL_FMT));
static QUALIFIED_NAME: LazyLock<Regex> = LazyLock::new(|| anchored(QUALIFIED_NAME_FMT));
static LABEL_VALUE: LazyLock<Regex> = LazyLock::new(|| anchored(LABEL_VALUE_FMT));

pub(crate) fn is_dns1035_label(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !DNS1035_LABEL.is_match(v) {
        errs.push(regex_error("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character", DNS1035_LABEL_FMT, &["my-name", "abc-123"]));
    }
    errs
}

/// `path.IsValidPathSegmentName`: every name ends up in a URL path.
pub(crate) fn is_path_segment_name(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v == "." || v == ".." {
        errs.push(format!("may not be '{v}'"));
    }
    errs.extend(["/", "%"].iter().filter(|s| v.contains(**s)).map(|s| format!("may not contain '{s}'")));
    errs
}

/// The name rule of a kind, as its strategy's `ValidateObjectMeta` applies it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NameRule {
    Dns1123Subdomain,
    Dns1123Label,
    Dns1035Label,
    PathSegment,
}

/// Namespaces use DNS-1123 labels, Services DNS-1035 labels, core Events only path-segment
/// rules; everything else we serve (pods, deployments, configmaps, custom resources...)
/// DNS-1123 subdomains.
pub(crate) fn name_rule(group: &str, kind: &str) -> NameRule {
    match (group, kind) {
        ("", "Namespace") => NameRule::Dns1123Label,
        ("", "Service") => NameRule::Dns1035Label,
        ("", "Event") => NameRule::PathSegment,
        _ => NameRule::Dns1123Subdomain,
    }
}

fn check(rule: NameRule, name: &str) -> Vec<String> {
    let mut errs = match rule {
        NameRule::Dns1123Subdomain => dns1123_subdomain_errors(name),
        NameRule::Dns1123Label => dns1123_label_errors(name),
        NameRule::Dns1035Label => is_dns1035_label(name),
        NameRule::PathSegment => Vec::new(),
    };
    errs.extend(is_path_segment_name(name));
    errs
}

/// Validates `metadata.name`/`generateName`/`namespace`/`labels`/`annotations` of an object
/// about to be created or updated (`ValidateObjectMeta`). `namespaced` says whether the kind is.
pub(crate) fn validate_object_meta(obj: &Value, group: &str, kind: &str, namespaced: bool) -> Vec<FieldError> {
    let meta = obj.get("metadata").cloned().unwrap_or(json!({}));
    let s = |k: &str| meta.get(k).and_then(Value::as_str).unwrap_or("");
    let rule = name_rule(group, kind);
    let mut errs = Vec::new();
    let (name, generate) = (s("name"), s("generateName"));
    if !generate.is_empty() {
        // A prefix may end in '-': the apiserver masks a trailing dash before checking.
        let masked = generate.strip_suffix('-').map_or_else(|| generate.to_string(), |p| format!("{p}a"));
        errs.extend(
            check(rule, &masked).into_iter().map(|m| FieldError::invalid("metadata.generateName", json!(generate), m)),
        );
    }
    if name.is_empty() {
        if generate.is_empty() {
            errs.push(FieldError::required("metadata.name", "name or generateName is required"));
        }
    } else {
        errs.extend(check(rule, name).into_iter().map(|m| FieldError::invalid("metadata.name", json!(name), m)));
    }
    let ns = s("namespace");
    if namespaced && !ns.is_empty() {
        errs.extend(
            dns1123_label_errors(ns).into_iter().map(|m| FieldError::invalid("metadata.namespace", json!(ns), m)),
        );
    } else if !namespaced && !ns.is_empty() {
        errs.push(FieldError::forbidden("metadata.namespace", "not allowed on this type"));
    }
    if let Some(labels) = meta.get("labels").and_then(Value::as_object) {
        errs.extend(validate_labels(labels, "metadata.labels"));
    }
    if let Some(annotations) = meta.get("annotations").and_then(Value::as_object) {
        errs.extend(validate_annotations(annotations, "metadata.annotations"));
    }
    errs
}

/// `validation.IsQualifiedName`: `[prefix/]name`, prefix a DNS subdomain.
pub(crate) fn is_qualified_name(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = v.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                errs.extend(dns1123_subdomain_errors(prefix).into_iter().map(|m| format!("prefix part {m}")));
            }
            *name
        }
        _ => {
            return vec![format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
            )];
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        errs.push(format!("name part {}", max_len_error(63)));
    }
    if !QUALIFIED_NAME.is_match(name) {
        errs.push(format!(
            "name part {}",
            regex_error(QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
        ));
    }
    errs
}

pub(crate) fn is_valid_label_value(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !LABEL_VALUE.is_match(v) {
        errs.push(regex_error("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character", LABEL_VALUE_FMT, &["MyValue", "my_value", "12345"]));
    }
    errs
}

/// `ValidateLabels`: keys are qualified names, values label values; errors at `path`.
pub(crate) fn validate_labels(labels: &serde_json::Map<String, Value>, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (k, v) in labels {
        errs.extend(is_qualified_name(k).into_iter().map(|m| FieldError::invalid(path, json!(k), m)));
        let value = v.as_str().unwrap_or("");
        errs.extend(is_valid_label_value(value).into_iter().map(|m| FieldError::invalid(path, json!(value), m)));
    }
    errs
}

/// `ValidateAnnotations`: lower-cased keys are qualified names; total size at most 256 KiB.
pub(crate) fn validate_annotations(annotations: &serde_json::Map<String, Value>, path: &str) -> Vec<FieldError> {
    const MAX: usize = 256 * 1024;
    let mut errs = Vec::new();
    let mut total = 0;
    for (k, v) in annotations {
        errs.extend(is_qualified_name(&k.to_lowercase()).into_iter().map(|m| FieldError::invalid(path, json!(k), m)));
        total += k.len() + v.as_str().map_or(0, str::len);
    }
    if total > MAX {
        // `field.TooLong(fldPath, "", TotalAnnotationSizeLimitB)`: since 1.32 "may not be more
        // than N bytes" (the value omitted), as a client-side apply of a large CRD gets.
        errs.push(FieldError::too_long(path, json!(""), MAX as i64));
    }
    errs
}

/// Alphabet of generated suffixes: no vowels (no words) and no look-alike characters.
const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// `names.SimpleNameGenerator`: base cut to 58 characters, plus 5 random characters.
/// `random(n)` must return a uniform index below `n`.
pub(crate) fn generate_name(base: &str, random: &mut dyn FnMut(usize) -> usize) -> String {
    let mut out: String = base.chars().take(63 - 5).collect();
    for _ in 0..5 {
        out.push(ALPHANUMS[random(ALPHANUMS.len())] as char);
    }
    out
}

#[cfg(test)]
mod tests;
