//! CustomResourceDefinitions: validation of the definition itself, the served resource it
//! registers, and schema validation/pruning/defaulting of custom objects (through
//! `semantics::schema`).

use crate::cluster::error::{Error, Result};
use crate::cluster::meta;
use crate::cluster::resources::{ResourceInfo, ScalePaths, VersionInfo};
use crate::cluster::semantics::{FieldError, schema};
use crate::cluster::store::FieldValidation;
use serde_json::{Value, json};
use std::cmp::Ordering;

/// Finalizer the apiserver puts on CRDs so custom objects are removed before the CRD.
pub(crate) const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// Defaults, validates and fills the status of a CRD being created or updated; `now` is the
/// conditions' transition time.
pub(crate) fn admit_definition(info: &ResourceInfo, crd: &mut Value, now: &str) -> Result<()> {
    let spec = &mut crd["spec"];
    if let Some(kind) = spec["names"]["kind"].as_str().map(String::from) {
        if spec["names"]["singular"].as_str().is_none_or(str::is_empty) {
            spec["names"]["singular"] = json!(kind.to_lowercase());
        }
        if spec["names"]["listKind"].as_str().is_none_or(str::is_empty) {
            spec["names"]["listKind"] = json!(format!("{kind}List"));
        }
    }
    if spec["conversion"].is_null() {
        spec["conversion"] = json!({"strategy": "None"});
    }
    let errors = validate_definition(crd);
    if !errors.is_empty() {
        return Err(Error::invalid(&info.kind, &info.group, meta::name(crd), &errors));
    }
    let storage: Vec<Value> = crd["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["storage"] == true)
        .map(|v| v["name"].clone())
        .collect();
    let mut stored = crd["status"]["storedVersions"].as_array().cloned().unwrap_or_default();
    for v in storage {
        if !stored.contains(&v) {
            stored.push(v);
        }
    }
    let condition = |ty: &str, reason: &str, message: &str| json!({"type": ty, "status": "True", "lastTransitionTime": now, "reason": reason, "message": message});
    crd["status"] = json!({
        "acceptedNames": crd["spec"]["names"].clone(),
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "storedVersions": stored,
    });
    if meta::uid(crd).is_empty() && !meta::finalizers(crd).iter().any(|f| f == CLEANUP_FINALIZER) {
        let mut fins = meta::finalizers(crd);
        fins.push(CLEANUP_FINALIZER.into());
        meta::set_finalizers(crd, &fins);
    }
    Ok(())
}

fn validate_definition(crd: &Value) -> Vec<FieldError> {
    let spec = &crd["spec"];
    let mut errors = Vec::new();
    let group = spec["group"].as_str().unwrap_or_default();
    let plural = spec["names"]["plural"].as_str().unwrap_or_default();
    if group.is_empty() {
        errors.push(FieldError::required("spec.group", ""));
    } else if !group.contains('.') {
        errors.push(FieldError::invalid("spec.group", json!(group), "should be a domain with at least one dot"));
    }
    if plural.is_empty() {
        errors.push(FieldError::required("spec.names.plural", ""));
    }
    if spec["names"]["kind"].as_str().is_none_or(str::is_empty) {
        errors.push(FieldError::required("spec.names.kind", ""));
    }
    if meta::name(crd) != format!("{plural}.{group}") {
        errors.push(FieldError::invalid(
            "metadata.name",
            json!(meta::name(crd)),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    let scope = spec["scope"].as_str().unwrap_or_default();
    if scope != "Namespaced" && scope != "Cluster" {
        errors.push(FieldError::not_supported("spec.scope", json!(scope), &["Cluster".into(), "Namespaced".into()]));
    }
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    if versions.iter().filter(|v| v["storage"] == true).count() != 1 {
        errors.push(FieldError::invalid(
            "spec.versions",
            json!(versions),
            "must have exactly one version marked as storage version",
        ));
    }
    for (i, v) in versions.iter().enumerate() {
        let schema = &v["schema"]["openAPIV3Schema"];
        if schema.is_null() {
            errors.push(FieldError::required(
                format!("spec.versions[{i}].schema.openAPIV3Schema"),
                "schemas are required",
            ));
            continue;
        }
        for message in schema::check_rules(schema) {
            errors.push(FieldError::invalid(
                format!("spec.versions[{i}].schema.openAPIV3Schema"),
                Value::Null,
                message,
            ));
        }
    }
    errors
}

/// The served resource a CRD defines, or `None` when no version is served.
pub(crate) fn resource_info(crd: &Value) -> Option<ResourceInfo> {
    let spec = &crd["spec"];
    let names = &spec["names"];
    let strings = |v: &Value| -> Vec<String> {
        v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(String::from)).collect()
    };
    let mut versions: Vec<VersionInfo> = spec["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["served"] == true)
        .map(|v| VersionInfo {
            name: v["name"].as_str().unwrap_or_default().into(),
            schema: Some(v["schema"]["openAPIV3Schema"].clone()),
            printer_columns: v["additionalPrinterColumns"].as_array().cloned().unwrap_or_default(),
            status: v["subresources"]["status"].is_object(),
            scale: v["subresources"]["scale"].as_object().map(|s| ScalePaths {
                spec_replicas: s["specReplicasPath"].as_str().unwrap_or_default().into(),
                status_replicas: s["statusReplicasPath"].as_str().unwrap_or_default().into(),
                label_selector: s.get("labelSelectorPath").and_then(Value::as_str).map(String::from),
            }),
        })
        .collect();
    if versions.is_empty() {
        return None;
    }
    versions.sort_by(|a, b| version_priority(&a.name, &b.name));
    let storage = spec["versions"].as_array()?.iter().find(|v| v["storage"] == true)?["name"].as_str()?.to_string();
    let kind = names["kind"].as_str()?.to_string();
    Some(ResourceInfo {
        group: spec["group"].as_str()?.into(),
        resource: names["plural"].as_str()?.into(),
        singular: names["singular"].as_str().map(String::from).unwrap_or_else(|| kind.to_lowercase()),
        list_kind: names["listKind"].as_str().map(String::from).unwrap_or_else(|| format!("{kind}List")),
        kind,
        namespaced: spec["scope"] == "Namespaced",
        short_names: strings(&names["shortNames"]),
        categories: strings(&names["categories"]),
        verbs: vec!["delete", "deletecollection", "get", "list", "patch", "create", "update", "watch"],
        versions,
        storage,
        generation: true,
        crd: Some(meta::name(crd).to_string()),
    })
}

/// Kubernetes version priority: GA before beta before alpha, higher numbers first, then
/// non-Kubernetes-style names alphabetically.
pub(crate) fn version_priority(a: &str, b: &str) -> Ordering {
    fn parse(v: &str) -> Option<(u32, u32, u32)> {
        let rest = v.strip_prefix('v')?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let major: u32 = digits.parse().ok()?;
        let tail = &rest[digits.len()..];
        let (stage, n) = if tail.is_empty() {
            (3, 0)
        } else if let Some(n) = tail.strip_prefix("beta") {
            (2, n.parse().ok()?)
        } else if let Some(n) = tail.strip_prefix("alpha") {
            (1, n.parse().ok()?)
        } else {
            return None;
        };
        Some((stage, major, n))
    }
    match (parse(a), parse(b)) {
        (Some((sa, ma, na)), Some((sb, mb, nb))) => (sb, mb, nb).cmp(&(sa, ma, na)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

/// Prunes, defaults and validates a custom object against its version's schema, as the
/// apiextensions-apiserver decodes and validates it. Returns warnings for dropped fields
/// (`fieldValidation=Warn`); with `Strict` they are a 400 instead.
pub(crate) fn admit_custom(
    info: &ResourceInfo,
    version: &str,
    obj: &mut Value,
    old: Option<&Value>,
    validation: FieldValidation,
) -> Result<Vec<String>> {
    let Some(schema) = info.version(version).and_then(|v| v.schema.as_ref()) else {
        return Ok(vec![]);
    };
    match decode_and_validate(schema, obj, old, validation) {
        Ok(warnings) => Ok(warnings),
        Err(Refusal::Strict(messages)) => {
            Err(Error::BadRequest(format!("strict decoding error: {}", messages.join(", "))))
        }
        Err(Refusal::Invalid(errors)) => Err(Error::invalid(&info.kind, &info.group, meta::name(obj), &errors)),
    }
}

/// Why [`decode_and_validate`] refused an object.
enum Refusal {
    /// Unknown fields under `fieldValidation=Strict` (a 400 `strict decoding error`).
    Strict(Vec<String>),
    /// Schema or CEL errors (a 422 Invalid).
    Invalid(Vec<FieldError>),
}

/// The apiextensions-apiserver's decoding and validation of one custom object against its
/// version's schema: pruning, defaulting, then OpenAPI and CEL validation. Shared by the
/// server ([`admit_custom`]) and the offline [`validate_custom_object`].
fn decode_and_validate(
    schema: &Value,
    obj: &mut Value,
    old: Option<&Value>,
    validation: FieldValidation,
) -> std::result::Result<Vec<String>, Refusal> {
    let unknown = schema::prune(schema, obj);
    let messages: Vec<String> = unknown.iter().map(|p| schema::unknown_field_message(p)).collect();
    if validation == FieldValidation::Strict && !messages.is_empty() {
        return Err(Refusal::Strict(messages));
    }
    schema::apply_defaults(schema, obj);
    let errors = schema::validate(schema, obj, old);
    if !errors.is_empty() {
        return Err(Refusal::Invalid(errors));
    }
    Ok(if validation == FieldValidation::Warn { messages } else { vec![] })
}

/// Validates a custom object offline, exactly as the embedded API server (and kube-apiserver)
/// does when it is created through `kubectl apply` against a cluster where `crd_yaml` is
/// installed: the same code path as the server's admission of custom objects.
///
/// - `crd_yaml` is one `CustomResourceDefinition` document (e.g.
///   `forklane_core::gateway::HTTPROUTE_CRD`). The definition is checked first as the server
///   checks it at creation (names, versions, CEL rules that must compile); a broken definition
///   is refused with its own causes.
/// - The object's `apiVersion` selects a served version of the CRD (its group must be the
///   CRD's, its `kind` the CRD's kind).
/// - Unknown fields are refused as kubectl's default `--validate=strict` makes the server
///   refuse them (`unknown field "spec.foo"`); pruned fields are never silently dropped.
/// - Then structural defaults are applied (`default`s, top-down) and the object is validated:
///   types, formats, enums, patterns, lengths, list sizes, `x-kubernetes-list-type`
///   uniqueness, and every `x-kubernetes-validations` CEL rule, with ratcheting as for a
///   create (there is no old object).
///
/// Returns the defaulted object, or the causes kube-apiserver would report, one string per
/// cause as `<field path>: <message>` (the text kubectl prints after `The HTTPRoute "x" is
/// invalid: `), e.g. `spec.rules[0].backendRefs[0]: Invalid value: "object": Must have port
/// for Service reference`.
pub fn validate_custom_object(crd_yaml: &str, object: &Value) -> std::result::Result<Value, Vec<String>> {
    let crd: Value = serde_yaml_ng::from_str(crd_yaml).map_err(|e| vec![format!("<crd>: {e}")])?;
    if crd["kind"] != "CustomResourceDefinition" {
        return Err(vec![format!("<crd>: not a CustomResourceDefinition: kind {}", crd["kind"])]);
    }
    let definition_errors = validate_definition(&crd);
    if !definition_errors.is_empty() {
        return Err(definition_errors.iter().map(FieldError::message_text).collect());
    }
    let info = resource_info(&crd).ok_or_else(|| vec!["<crd>: no served version".to_string()])?;
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    if group != info.group || info.version(version).is_none() {
        return Err(vec![format!(
            "apiVersion: Invalid value: {}: not a served version of {}",
            format!("{:?}", api_version),
            meta::name(&crd)
        )]);
    }
    if object["kind"].as_str() != Some(info.kind.as_str()) {
        return Err(vec![format!(
            "kind: Invalid value: {}: must be {}",
            format!("{:?}", object["kind"].as_str().unwrap_or_default()),
            info.kind
        )]);
    }
    let schema = info.version(version).and_then(|v| v.schema.as_ref()).cloned().unwrap_or(Value::Null);
    let mut obj = object.clone();
    match decode_and_validate(&schema, &mut obj, None, FieldValidation::Strict) {
        Ok(_) => Ok(obj),
        Err(Refusal::Strict(messages)) => Err(messages),
        Err(Refusal::Invalid(errors)) => Err(errors.iter().map(FieldError::message_text).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_by_kubernetes_priority() {
        let mut v = vec!["v1alpha1", "foo", "v2", "v1beta2", "v1", "v1beta1", "v10"];
        v.sort_by(|a, b| version_priority(a, b));
        assert_eq!(v, ["v10", "v2", "v1", "v1beta2", "v1beta1", "v1alpha1", "foo"]);
    }
}

#[cfg(test)]
mod gateway_tests;
