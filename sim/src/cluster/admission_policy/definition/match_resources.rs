//! `matchConstraints` of policies and `matchResources` of bindings: their defaults and
//! kube-apiserver's validation of them (rules with operations, wildcards and subresources,
//! label selectors).

use super::{items, qualified_name_errors, strings};
use crate::cluster::semantics::FieldError;
use crate::cluster::semantics::names::{is_path_segment_name, is_valid_label_value};
use serde_json::{Value, json};
use std::collections::HashSet;

pub(super) fn default_match_resources(resources: &mut Value) {
    for (field, default) in
        [("matchPolicy", json!("Equivalent")), ("namespaceSelector", json!({})), ("objectSelector", json!({}))]
    {
        if resources.get(field).is_none_or(Value::is_null) {
            resources[field] = default;
        }
    }
    for rules in ["resourceRules", "excludeResourceRules"] {
        for rule in resources.get_mut(rules).and_then(Value::as_array_mut).into_iter().flatten() {
            if rule.is_object() && rule.get("scope").is_none_or(Value::is_null) {
                rule["scope"] = json!("*");
            }
        }
    }
}

pub(super) fn validate_match_resources(resources: &Value, path: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    match resources["matchPolicy"].as_str() {
        Some("Equivalent" | "Exact") => {}
        None => errors.push(FieldError::required(format!("{path}.matchPolicy"), "")),
        Some(other) => errors.push(FieldError::not_supported(
            format!("{path}.matchPolicy"),
            json!(other),
            &strings(&["Equivalent", "Exact"]),
        )),
    }
    for selector in ["namespaceSelector", "objectSelector"] {
        match resources.get(selector).filter(|s| !s.is_null()) {
            None => errors.push(FieldError::required(format!("{path}.{selector}"), "")),
            Some(s) => errors.extend(validate_label_selector(s, &format!("{path}.{selector}"))),
        }
    }
    for rules in ["resourceRules", "excludeResourceRules"] {
        for (i, rule) in items(&resources[rules]).iter().enumerate() {
            errors.extend(validate_named_rule(rule, &format!("{path}.{rules}[{i}]")));
        }
    }
    errors
}

fn validate_named_rule(rule: &Value, path: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut names = HashSet::new();
    for (i, name) in items(&rule["resourceNames"]).iter().enumerate() {
        let name = name.as_str().unwrap_or_default();
        let at = format!("{path}.resourceNames[{i}]");
        errors.extend(is_path_segment_name(name).into_iter().map(|m| FieldError::invalid(&at, json!(name), m)));
        if !names.insert(name) {
            errors.push(FieldError::duplicate(&at, json!(name)));
        }
    }
    let operations = items(&rule["operations"]);
    if operations.is_empty() {
        errors.push(FieldError::required(format!("{path}.operations"), ""));
    }
    if operations.len() > 1 && operations.contains(&json!("*")) {
        errors.push(FieldError::invalid(
            format!("{path}.operations"),
            rule["operations"].clone(),
            "if '*' is present, must not specify other operations",
        ));
    }
    for (i, op) in operations.iter().enumerate() {
        if !matches!(op.as_str(), Some("*" | "CREATE" | "UPDATE" | "DELETE" | "CONNECT")) {
            let supported = strings(&["*", "CONNECT", "CREATE", "DELETE", "UPDATE"]);
            errors.push(FieldError::not_supported(format!("{path}.operations[{i}]"), op.clone(), &supported));
        }
    }
    for (field, what) in [("apiGroups", "API groups"), ("apiVersions", "API versions")] {
        let list = items(&rule[field]);
        if list.is_empty() {
            errors.push(FieldError::required(format!("{path}.{field}"), ""));
        }
        if list.len() > 1 && list.contains(&json!("*")) {
            errors.push(FieldError::invalid(
                format!("{path}.{field}"),
                rule[field].clone(),
                format!("if '*' is present, must not specify other {what}"),
            ));
        }
    }
    for (i, version) in items(&rule["apiVersions"]).iter().enumerate() {
        if version.as_str().is_none_or(str::is_empty) {
            errors.push(FieldError::required(format!("{path}.apiVersions[{i}]"), ""));
        }
    }
    errors.extend(validate_resources(&rule["resources"], &format!("{path}.resources")));
    if let Some(scope) = rule.get("scope").filter(|s| !s.is_null())
        && !matches!(scope.as_str(), Some("*" | "Cluster" | "Namespaced"))
    {
        errors.push(FieldError::not_supported(
            format!("{path}.scope"),
            scope.clone(),
            &strings(&["*", "Cluster", "Namespaced"]),
        ));
    }
    errors
}

/// `resource` and `resource/subresource` entries, with the wildcard rules of kube-apiserver.
fn validate_resources(list: &Value, path: &str) -> Vec<FieldError> {
    let resources: Vec<&str> = items(list).iter().map(|r| r.as_str().unwrap_or_default()).collect();
    let mut errors = Vec::new();
    if resources.is_empty() {
        errors.push(FieldError::required(path, ""));
    }
    let (mut with_any_sub, mut with_any_res) = (HashSet::new(), HashSet::new());
    let mut plain_resource = false;
    for (i, entry) in resources.iter().enumerate() {
        if entry.is_empty() {
            errors.push(FieldError::required(format!("{path}[{i}]"), ""));
            continue;
        }
        let Some((res, sub)) = entry.split_once('/') else {
            plain_resource = *entry != "*";
            continue;
        };
        if with_any_sub.contains(res) {
            errors.push(FieldError::invalid(
                format!("{path}[{i}]"),
                json!(entry),
                format!("if '{res}/*' is present, must not specify {entry}"),
            ));
        }
        if with_any_res.contains(sub) {
            errors.push(FieldError::invalid(
                format!("{path}[{i}]"),
                json!(entry),
                format!("if '*/{sub}' is present, must not specify {entry}"),
            ));
        }
        if sub == "*" {
            with_any_sub.insert(res);
        }
        if res == "*" {
            with_any_res.insert(sub);
        }
    }
    if resources.len() > 1 && resources.contains(&"*/*") {
        errors.push(FieldError::invalid(path, list.clone(), "if '*/*' is present, must not specify other resources"));
    }
    if resources.contains(&"*") && plain_resource {
        errors.push(FieldError::invalid(
            path,
            list.clone(),
            "if '*' is present, must not specify other resources without subresources",
        ));
    }
    errors
}

/// `metav1validation.ValidateLabelSelector`, strict about values.
fn validate_label_selector(selector: &Value, path: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let Some(labels) = selector["matchLabels"].as_object() {
        errors.extend(crate::cluster::semantics::names::validate_labels(labels, &format!("{path}.matchLabels")));
    }
    for (i, requirement) in items(&selector["matchExpressions"]).iter().enumerate() {
        let at = format!("{path}.matchExpressions[{i}]");
        let values = items(&requirement["values"]);
        match requirement["operator"].as_str() {
            Some("In" | "NotIn") if values.is_empty() => errors.push(FieldError::required(
                format!("{at}.values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            )),
            Some("Exists" | "DoesNotExist") if !values.is_empty() => errors.push(FieldError::forbidden(
                format!("{at}.values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            Some("In" | "NotIn" | "Exists" | "DoesNotExist") => {}
            _ => errors.push(FieldError::invalid(
                format!("{at}.operator"),
                requirement["operator"].clone(),
                "not a valid selector operator",
            )),
        }
        errors.extend(qualified_name_errors(requirement["key"].as_str().unwrap_or_default(), &format!("{at}.key")));
        for (j, value) in values.iter().enumerate() {
            let value = value.as_str().unwrap_or_default();
            errors.extend(
                is_valid_label_value(value)
                    .into_iter()
                    .map(|m| FieldError::invalid(format!("{at}.values[{j}]"), json!(value), m)),
            );
        }
    }
    errors
}
