//! Policies and bindings as they are written: defaulted (`SetDefaults_*` of
//! `admissionregistration/v1`) and validated (`ValidateValidatingAdmissionPolicy` and
//! `ValidateValidatingAdmissionPolicyBinding` of kube-apiserver), with its field paths and
//! messages, CEL compilation errors included. Parameter resources are refused: this server
//! does not offer them (see the module above).

mod match_resources;

use super::expressions;
use crate::cluster::error::{Error, Result};
use crate::cluster::meta;
use crate::cluster::resources::ResourceInfo;
use crate::cluster::semantics::FieldError;
use crate::cluster::semantics::names::is_qualified_name;
use forklane_core::api::names::dns1123_subdomain_errors;
use match_resources::{default_match_resources, validate_match_resources};
use serde_json::{Value, json};
use std::collections::HashSet;

const MAX_MATCH_CONDITIONS: usize = 64;
const MAX_AUDIT_ANNOTATIONS: usize = 20;
const MAX_VALUE_EXPRESSION_LENGTH: usize = 5 * 1024;
/// CEL's reserved words, which a variable may not be named.
const CEL_RESERVED: [&str; 21] = [
    "true",
    "false",
    "null",
    "in",
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
];
const NOT_OFFERED: &str = "parameter resources are not supported by this server";

/// Defaults and validates a policy or binding about to be stored.
pub(crate) fn admit_definition(info: &ResourceInfo, obj: &mut Value) -> Result<()> {
    let errors = match info.kind.as_str() {
        "ValidatingAdmissionPolicy" => {
            default_policy(&mut obj["spec"]);
            validate_policy(meta::name(obj), &obj["spec"])
        }
        "ValidatingAdmissionPolicyBinding" => {
            let resources = obj.get_mut("spec").and_then(|s| s.get_mut("matchResources"));
            if let Some(resources) = resources.filter(|r| r.is_object()) {
                default_match_resources(resources);
            }
            validate_binding(&obj["spec"])
        }
        _ => vec![],
    };
    if errors.is_empty() { Ok(()) } else { Err(Error::invalid(&info.kind, &info.group, meta::name(obj), &errors)) }
}

fn default_policy(spec: &mut Value) {
    if !spec.is_object() {
        *spec = json!({});
    }
    if spec.get("failurePolicy").is_none_or(Value::is_null) {
        spec["failurePolicy"] = json!("Fail");
    }
    if let Some(constraints) = spec.get_mut("matchConstraints").filter(|c| c.is_object()) {
        default_match_resources(constraints);
    }
}

fn validate_policy(policy_name: &str, spec: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    match spec["failurePolicy"].as_str() {
        Some("Fail" | "Ignore") => {}
        _ => errors.push(FieldError::not_supported(
            "spec.failurePolicy",
            spec["failurePolicy"].clone(),
            &strings(&["Fail", "Ignore"]),
        )),
    }
    if !spec["paramKind"].is_null() {
        errors.push(FieldError::forbidden("spec.paramKind", NOT_OFFERED));
    }
    match spec.get("matchConstraints").filter(|c| !c.is_null()) {
        None => errors.push(FieldError::required("spec.matchConstraints", "")),
        Some(constraints) => {
            errors.extend(validate_match_resources(constraints, "spec.matchConstraints"));
            if items(&constraints["resourceRules"]).is_empty() {
                errors.push(FieldError::required("spec.matchConstraints.resourceRules", ""));
            }
        }
    }
    let mut declared: Vec<&str> = Vec::new();
    let conditions = items(&spec["matchConditions"]);
    if conditions.len() > MAX_MATCH_CONDITIONS {
        errors.push(FieldError::too_many("spec.matchConditions", conditions.len() as i64, MAX_MATCH_CONDITIONS as i64));
    }
    let mut condition_names = HashSet::new();
    for (i, condition) in conditions.iter().enumerate() {
        let path = format!("spec.matchConditions[{i}]");
        // Match conditions see no composited variables.
        errors.extend(expression_errors(&condition["expression"], &format!("{path}.expression"), &[], ""));
        match condition["name"].as_str().unwrap_or_default() {
            "" => errors.push(FieldError::required(format!("{path}.name"), "")),
            name => {
                errors.extend(qualified_name_errors(name, &format!("{path}.name")));
                if !condition_names.insert(name) {
                    errors.push(FieldError::duplicate(format!("{path}.name"), json!(name)));
                }
            }
        }
    }
    for (i, variable) in items(&spec["variables"]).iter().enumerate() {
        let path = format!("spec.variables[{i}]");
        let var_name = variable["name"].as_str().unwrap_or_default();
        if var_name.trim().is_empty() {
            errors.push(FieldError::required(format!("{path}.name"), "name is not specified"));
        } else if !is_cel_identifier(var_name) {
            errors.push(FieldError::invalid(
                format!("{path}.name"),
                json!(var_name),
                "name is not a valid CEL identifier",
            ));
        }
        errors.extend(expression_errors(
            &variable["expression"],
            &format!("{path}.expression"),
            &declared,
            "expression is not specified",
        ));
        declared.push(var_name);
    }
    let validations = items(&spec["validations"]);
    let annotations = items(&spec["auditAnnotations"]);
    if validations.is_empty() && annotations.is_empty() {
        let required = "validations or auditAnnotations must contain at least one item";
        errors.push(FieldError::required("spec.validations", required));
        errors.push(FieldError::required("spec.auditAnnotations", required));
        return errors;
    }
    for (i, validation) in validations.iter().enumerate() {
        errors.extend(validate_validation(validation, &format!("spec.validations[{i}]"), &declared));
    }
    if annotations.len() > MAX_AUDIT_ANNOTATIONS {
        errors.push(FieldError::invalid(
            "spec.auditAnnotations",
            spec["auditAnnotations"].clone(),
            format!("must not have more than {MAX_AUDIT_ANNOTATIONS} auditAnnotations"),
        ));
    }
    let mut keys = HashSet::new();
    for (i, annotation) in annotations.iter().enumerate() {
        let path = format!("spec.auditAnnotations[{i}]");
        let key = annotation["key"].as_str().unwrap_or_default();
        if policy_name.is_empty() {
            errors.push(FieldError::invalid(format!("{path}.key"), json!(key), "requires metadata.name be non-empty"));
        } else {
            errors.extend(qualified_name_errors(&format!("{policy_name}/{key}"), &format!("{path}.key")));
        }
        let value = annotation["valueExpression"].as_str().unwrap_or_default();
        if value.trim().len() > MAX_VALUE_EXPRESSION_LENGTH {
            errors.push(FieldError::required(
                format!("{path}.valueExpression"),
                format!("must not exceed {MAX_VALUE_EXPRESSION_LENGTH} bytes in length"),
            ));
        } else {
            errors.extend(expression_errors(
                &annotation["valueExpression"],
                &format!("{path}.valueExpression"),
                &declared,
                "valueExpression is not specified",
            ));
        }
        if !keys.insert(key) {
            errors.push(FieldError::duplicate(format!("{path}.key"), json!(key)));
        }
    }
    errors
}

fn validate_validation(validation: &Value, path: &str, declared: &[&str]) -> Vec<FieldError> {
    let mut errors = expression_errors(
        &validation["expression"],
        &format!("{path}.expression"),
        declared,
        "expression is not specified",
    );
    let message_expression = validation["messageExpression"].as_str().unwrap_or_default();
    if !message_expression.is_empty() {
        if message_expression.trim().is_empty() {
            errors.push(FieldError::invalid(
                format!("{path}.messageExpression"),
                json!(message_expression),
                "must be non-empty if specified",
            ));
        } else {
            errors.extend(expression_errors(
                &validation["messageExpression"],
                &format!("{path}.messageExpression"),
                declared,
                "",
            ));
        }
    }
    let message = validation["message"].as_str().unwrap_or_default();
    if !message.is_empty() && message.trim().is_empty() {
        errors.push(FieldError::invalid(
            format!("{path}.message"),
            json!(message),
            "message must be non-empty if specified",
        ));
    } else if message.trim().contains(['\n', '\r']) {
        errors.push(FieldError::invalid(
            format!("{path}.message"),
            json!(message),
            "message must not contain line breaks",
        ));
    }
    if let Some(reason) = validation.get("reason").filter(|r| !r.is_null())
        && !matches!(reason.as_str(), Some("Forbidden" | "Invalid" | "RequestEntityTooLarge"))
    {
        let supported = strings(&["Forbidden", "Invalid", "RequestEntityTooLarge"]);
        errors.push(FieldError::not_supported(format!("{path}.reason"), reason.clone(), &supported));
    }
    errors
}

/// A required CEL expression at `path`: missing (`required` is the message; empty means
/// the plain `Required value`) or not compiling.
fn expression_errors(expression: &Value, path: &str, declared: &[&str], required: &str) -> Vec<FieldError> {
    let source = expression.as_str().unwrap_or_default();
    if source.trim().is_empty() {
        return vec![FieldError::required(path, required)];
    }
    match expressions::compile(source, declared) {
        Ok(_) => vec![],
        Err(e) => vec![FieldError::invalid(path, json!(source), e.to_string())],
    }
}

fn validate_binding(spec: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    match spec["policyName"].as_str().unwrap_or_default() {
        "" => errors.push(FieldError::required("spec.policyName", "")),
        policy => errors.extend(
            dns1123_subdomain_errors(policy)
                .into_iter()
                .map(|m| FieldError::invalid("spec.policyName", json!(policy), m)),
        ),
    }
    if !spec["paramRef"].is_null() {
        errors.push(FieldError::forbidden("spec.paramRef", NOT_OFFERED));
    }
    if let Some(resources) = spec.get("matchResources").filter(|r| !r.is_null()) {
        // kube-apiserver's path, misspelt as it is.
        errors.extend(validate_match_resources(resources, "spec.matchResouces"));
    }
    let path = "spec.validationActions";
    let mut seen = Vec::new();
    for (i, action) in items(&spec["validationActions"]).iter().enumerate() {
        if !matches!(action.as_str(), Some("Deny" | "Warn" | "Audit")) {
            errors.push(FieldError::not_supported(
                format!("{path}[{i}]"),
                action.clone(),
                &strings(&["Audit", "Deny", "Warn"]),
            ));
        }
        if seen.contains(action) {
            errors.push(FieldError::duplicate(format!("{path}[{i}]"), action.clone()));
        }
        seen.push(action.clone());
    }
    if seen.contains(&json!("Deny")) && seen.contains(&json!("Warn")) {
        errors.push(FieldError::invalid(
            path,
            spec["validationActions"].clone(),
            "must not contain both Deny and Warn (repeating the same validation failure information in the API response and headers serves no purpose)",
        ));
    }
    if seen.is_empty() {
        errors.push(FieldError::required(path, "at least one validation action is required"));
    }
    errors
}

fn qualified_name_errors(name: &str, path: &str) -> Vec<FieldError> {
    is_qualified_name(name).into_iter().map(|m| FieldError::invalid(path, json!(name), m)).collect()
}

/// `[_a-zA-Z][_a-zA-Z0-9]*`, not a reserved word.
fn is_cel_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
        && !CEL_RESERVED.contains(&name)
}

fn items(list: &Value) -> &[Value] {
    list.as_array().map(Vec::as_slice).unwrap_or_default()
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|s| s.to_string()).collect()
}
