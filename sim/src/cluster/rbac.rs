//! `rbac.authorization.k8s.io/v1` defaulting and validation (`pkg/apis/rbac/v1/defaults.go`,
//! `pkg/apis/rbac/validation`). The objects are stored faithfully; RBAC is not enforced.

use crate::cluster::semantics::{FieldError, FieldErrorReason};
use serde_json::{Value, json};

pub(crate) const GROUP: &str = "rbac.authorization.k8s.io";

/// `SetDefaults_RoleBinding`/`SetDefaults_ClusterRoleBinding` and `SetDefaults_Subject`.
pub(crate) fn default_binding(obj: &mut Value) {
    if obj["roleRef"].is_object() && obj["roleRef"]["apiGroup"].as_str().is_none_or(str::is_empty) {
        obj["roleRef"]["apiGroup"] = json!(GROUP);
    }
    for subject in obj.get_mut("subjects").and_then(Value::as_array_mut).into_iter().flatten() {
        if subject["apiGroup"].as_str().is_none_or(str::is_empty)
            && matches!(subject["kind"].as_str(), Some("User" | "Group"))
        {
            subject["apiGroup"] = json!(GROUP);
        }
    }
}

fn str_at<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_default()
}

fn non_empty(v: &Value, key: &str) -> bool {
    v[key].as_array().is_some_and(|a| !a.is_empty())
}

/// `ValidatePolicyRule` for every rule of a Role (`namespaced`) or ClusterRole.
pub(crate) fn validate_rules(obj: &Value, namespaced: bool) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (i, rule) in obj["rules"].as_array().into_iter().flatten().enumerate() {
        let path = format!("rules[{i}]");
        if !non_empty(rule, "verbs") {
            errors.push(FieldError::required(format!("{path}.verbs"), "verbs must contain at least one value"));
        }
        if non_empty(rule, "nonResourceURLs") {
            let urls = rule["nonResourceURLs"].clone();
            if namespaced {
                errors.push(FieldError::invalid(
                    format!("{path}.nonResourceURLs"),
                    urls.clone(),
                    "namespaced rules cannot apply to non-resource URLs",
                ));
            }
            if ["apiGroups", "resources", "resourceNames"].iter().any(|k| non_empty(rule, k)) {
                errors.push(FieldError::invalid(
                    format!("{path}.nonResourceURLs"),
                    urls,
                    "rules cannot apply to both regular resources and non-resource URLs",
                ));
            }
            continue;
        }
        if !non_empty(rule, "apiGroups") {
            errors.push(FieldError::required(
                format!("{path}.apiGroups"),
                "resource rules must supply at least one api group",
            ));
        }
        if !non_empty(rule, "resources") {
            errors.push(FieldError::required(
                format!("{path}.resources"),
                "resource rules must supply at least one resource",
            ));
        }
    }
    errors
}

/// `ValidateRoleBinding`/`ValidateClusterRoleBinding`: a RoleBinding may refer to a Role or
/// a ClusterRole, a ClusterRoleBinding only to a ClusterRole.
pub(crate) fn validate_binding(obj: &Value, namespaced: bool) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let role_ref = &obj["roleRef"];
    if str_at(role_ref, "apiGroup") != GROUP {
        errors.push(FieldError::not_supported("roleRef.apiGroup", role_ref["apiGroup"].clone(), &[GROUP.into()]));
    }
    let kinds: &[&str] = if namespaced { &["Role", "ClusterRole"] } else { &["ClusterRole"] };
    if !kinds.contains(&str_at(role_ref, "kind")) {
        let supported: Vec<String> = kinds.iter().map(|k| k.to_string()).collect();
        errors.push(FieldError::not_supported("roleRef.kind", role_ref["kind"].clone(), &supported));
    }
    if str_at(role_ref, "name").is_empty() {
        errors.push(FieldError::required("roleRef.name", ""));
    }
    for (i, subject) in obj["subjects"].as_array().into_iter().flatten().enumerate() {
        let path = format!("subjects[{i}]");
        if str_at(subject, "name").is_empty() {
            errors.push(FieldError::required(format!("{path}.name"), ""));
        }
        let api_group = str_at(subject, "apiGroup");
        match str_at(subject, "kind") {
            "ServiceAccount" => {
                if !api_group.is_empty() {
                    errors.push(FieldError::not_supported(
                        format!("{path}.apiGroup"),
                        json!(api_group),
                        &[String::new()],
                    ));
                }
                if !namespaced && str_at(subject, "namespace").is_empty() {
                    errors.push(FieldError::required(format!("{path}.namespace"), ""));
                }
            }
            "User" | "Group" if api_group != GROUP => {
                errors.push(FieldError::not_supported(format!("{path}.apiGroup"), json!(api_group), &[GROUP.into()]));
            }
            "User" | "Group" => {}
            other => {
                let supported = ["ServiceAccount", "User", "Group"].map(String::from);
                errors.push(FieldError::not_supported(format!("{path}.kind"), json!(other), &supported));
            }
        }
    }
    errors
}

/// `ValidateRoleBindingUpdate`: the role a binding grants is fixed at creation.
pub(crate) fn validate_binding_update(old: &Value, new: &Value) -> Vec<FieldError> {
    if old["roleRef"] == new["roleRef"] {
        return vec![];
    }
    // The apiserver prints the internal struct with `%#v`; it is spelled out here because
    // the generic bad-value formatting only knows unstructured values.
    let r = &new["roleRef"];
    let value = format!(
        "rbac.RoleRef{{APIGroup:{:?}, Kind:{:?}, Name:{:?}}}",
        str_at(r, "apiGroup"),
        str_at(r, "kind"),
        str_at(r, "name")
    );
    vec![FieldError::new("roleRef", FieldErrorReason::Invalid, None, format!("{value}: cannot change roleRef"))]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(errors: &[FieldError]) -> Vec<String> {
        errors.iter().map(FieldError::message_text).collect()
    }

    #[test]
    fn bindings_are_defaulted_and_validated() {
        let mut b = json!({"roleRef": {"kind": "ClusterRole", "name": "view"}, "subjects": [
            {"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "sa"}, {"kind": "Robot", "name": "r"}]});
        default_binding(&mut b);
        assert_eq!(b["roleRef"]["apiGroup"], GROUP);
        assert_eq!(b["subjects"][0]["apiGroup"], GROUP);
        assert!(b["subjects"][1].get("apiGroup").is_none());
        let cluster_scoped = messages(&validate_binding(&b, false));
        assert_eq!(cluster_scoped.len(), 2, "{cluster_scoped:?}");
        assert!(cluster_scoped[0].starts_with("subjects[1].namespace: Required value"), "{cluster_scoped:?}");
        assert!(cluster_scoped[1].starts_with("subjects[2].kind: Unsupported value: \"Robot\""), "{cluster_scoped:?}");
        let mut role = b.clone();
        role["roleRef"]["kind"] = json!("Role");
        assert!(
            messages(&validate_binding(&role, false))
                .iter()
                .any(|m| m.starts_with("roleRef.kind: Unsupported value: \"Role\""))
        );
        assert_eq!(
            messages(&validate_binding_update(&b, &role)),
            [
                "roleRef: Invalid value: rbac.RoleRef{APIGroup:\"rbac.authorization.k8s.io\", Kind:\"Role\", Name:\"view\"}: cannot change roleRef"
            ]
        );
    }

    #[test]
    fn rules_need_verbs_groups_and_resources() {
        let role = json!({"rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}, {"resources": ["pods"]}, {"verbs": ["get"], "nonResourceURLs": ["/healthz"]}]});
        let errors = messages(&validate_rules(&role, true));
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].starts_with("rules[1].verbs: Required value"));
        assert!(errors[1].starts_with("rules[1].apiGroups: Required value"));
        assert!(errors[2].contains("namespaced rules cannot apply to non-resource URLs"));
        assert!(
            validate_rules(&json!({"rules": [role["rules"][2].clone()]}), false).is_empty(),
            "cluster roles may name URLs"
        );
    }
}
