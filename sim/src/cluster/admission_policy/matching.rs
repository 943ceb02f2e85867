//! Which requests a policy's `spec.matchConstraints` and a binding's `spec.matchResources`
//! select: kube-apiserver's `matching.Matcher` with the webhook predicates it reuses
//! (namespaceSelector, objectSelector, rules with `resourceNames`, `matchPolicy`).

use super::{Operation, Target};
use crate::cluster::error::{Error, Result};
use crate::cluster::resources::Gvr;
use crate::cluster::selectors::LabelSelector;
use serde_json::Value;

/// The resource `resources` selects the request as: the request's own, or under
/// `matchPolicy: Equivalent` another served version of it; `None` when not selected. A
/// binding (`is_binding`) without resource rules narrows by its selectors only.
pub(crate) fn select(resources: &Value, target: &Target, is_binding: bool) -> Result<Option<Gvr>> {
    if !namespace_selected(&resources["namespaceSelector"], target)?
        || !object_selected(&resources["objectSelector"], target)?
        || matched_resource(&resources["excludeResourceRules"], &resources["matchPolicy"], target).is_some()
    {
        return Ok(None);
    }
    let rules = &resources["resourceRules"];
    if is_binding && rules.as_array().is_none_or(Vec::is_empty) {
        return Ok(Some(target.gvr.clone()));
    }
    Ok(matched_resource(rules, &resources["matchPolicy"], target))
}

/// Cluster-scoped requests other than namespaces are always selected; a namespace is judged
/// by its own labels when it is the object created or updated.
fn namespace_selected(selector: &Value, target: &Target) -> Result<bool> {
    let is_namespace = target.gvr.resource == "namespaces";
    if target.namespace.is_empty() && !is_namespace {
        return Ok(true);
    }
    let selector = LabelSelector::from_object(selector)?;
    if selector.is_empty() {
        return Ok(true);
    }
    let writes_namespace = is_namespace
        && target.subresource.is_empty()
        && matches!(target.operation, Operation::Create | Operation::Update);
    let labelled = if writes_namespace { target.object.as_deref() } else { target.namespace_object.as_deref() };
    match labelled {
        Some(obj) => Ok(selector.matches(obj)),
        None => Err(Error::not_found("", "namespaces", &target.namespace)),
    }
}

/// Selected when the object or the old object carries matching labels.
fn object_selected(selector: &Value, target: &Target) -> Result<bool> {
    let selector = LabelSelector::from_object(selector)?;
    Ok(selector.is_empty()
        || [target.object.as_deref(), target.old_object.as_deref()].into_iter().flatten().any(|o| selector.matches(o)))
}

fn matched_resource(rules: &Value, match_policy: &Value, target: &Target) -> Option<Gvr> {
    let rules = rules.as_array().map(Vec::as_slice).unwrap_or_default();
    if rules.iter().any(|rule| named_rule_matches(rule, target, target.gvr)) {
        return Some(target.gvr.clone());
    }
    if match_policy.as_str().is_none_or(|p| p == "Exact") {
        return None;
    }
    target
        .equivalents
        .iter()
        .find(|equivalent| rules.iter().any(|rule| named_rule_matches(rule, target, equivalent)))
        .cloned()
}

/// A rule with operations and optional `resourceNames`, against the request as `gvr`.
fn named_rule_matches(rule: &Value, target: &Target, gvr: &Gvr) -> bool {
    let names = strings(&rule["resourceNames"]);
    scope_matches(rule["scope"].as_str(), target, gvr)
        && any_or_wildcard(&rule["operations"], target.operation.as_str())
        && any_or_wildcard(&rule["apiGroups"], &gvr.group)
        && any_or_wildcard(&rule["apiVersions"], &gvr.version)
        && resource_matches(&rule["resources"], &gvr.resource, target.subresource)
        && (names.is_empty() || names.contains(&target.name.as_str()))
}

/// Namespaces are cluster-scoped even though their requests name them as their namespace.
fn scope_matches(scope: Option<&str>, target: &Target, gvr: &Gvr) -> bool {
    let namespace_resource = gvr.group.is_empty() && gvr.version == "v1" && gvr.resource == "namespaces";
    match scope {
        None | Some("*") => true,
        Some("Namespaced") => !namespace_resource && !target.namespace.is_empty(),
        Some("Cluster") => namespace_resource || target.namespace.is_empty(),
        Some(_) => false,
    }
}

fn any_or_wildcard(list: &Value, wanted: &str) -> bool {
    strings(list).iter().any(|item| *item == "*" || *item == wanted)
}

/// `resources` entries are `resource` or `resource/subresource`, either part may be `*`.
fn resource_matches(list: &Value, resource: &str, subresource: &str) -> bool {
    strings(list).iter().any(|entry| {
        let (res, sub) = entry.split_once('/').unwrap_or((entry, ""));
        (res == "*" || res == resource) && (sub == "*" || sub == subresource)
    })
}

fn strings(list: &Value) -> Vec<&str> {
    list.as_array().into_iter().flatten().filter_map(Value::as_str).collect()
}
