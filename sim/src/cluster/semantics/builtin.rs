//! List semantics of the built-in kinds we serve, from their Go struct tags
//! (`patchStrategy`/`patchMergeKey` for strategic merge patch) and OpenAPI extensions
//! (`x-kubernetes-list-type`/`-map-keys` for server-side apply).

use crate::cluster::semantics::managed_fields::ListType;

/// A list field, identified by the end of its path (`.spec.ports`, `containers[].ports`).
struct ListField {
    suffix: &'static str,
    /// `patchMergeKey` when `patchStrategy:"merge"` (None with `merge` = primitive list merge).
    merge_key: Option<&'static str>,
    /// False: strategic merge patch replaces the list.
    strategic_merge: bool,
    ssa: fn() -> ListType,
}

fn map(keys: &[&str]) -> ListType {
    ListType::Map(keys.iter().map(|k| k.to_string()).collect())
}

const FIELDS: &[ListField] = &[
    ListField {
        suffix: "containers[].ports",
        merge_key: Some("containerPort"),
        strategic_merge: true,
        ssa: || map(&["containerPort", "protocol"]),
    },
    ListField {
        suffix: "initContainers[].ports",
        merge_key: Some("containerPort"),
        strategic_merge: true,
        ssa: || map(&["containerPort", "protocol"]),
    },
    ListField {
        suffix: ".spec.ports",
        merge_key: Some("port"),
        strategic_merge: true,
        ssa: || map(&["port", "protocol"]),
    },
    ListField { suffix: "containers", merge_key: Some("name"), strategic_merge: true, ssa: || map(&["name"]) },
    ListField { suffix: "initContainers", merge_key: Some("name"), strategic_merge: true, ssa: || map(&["name"]) },
    ListField { suffix: "ephemeralContainers", merge_key: Some("name"), strategic_merge: true, ssa: || map(&["name"]) },
    ListField { suffix: "env", merge_key: Some("name"), strategic_merge: true, ssa: || map(&["name"]) },
    ListField {
        suffix: "volumeMounts",
        merge_key: Some("mountPath"),
        strategic_merge: true,
        ssa: || map(&["mountPath"]),
    },
    ListField {
        suffix: "volumeDevices",
        merge_key: Some("devicePath"),
        strategic_merge: true,
        ssa: || map(&["devicePath"]),
    },
    ListField { suffix: "volumes", merge_key: Some("name"), strategic_merge: true, ssa: || map(&["name"]) },
    ListField { suffix: "imagePullSecrets", merge_key: Some("name"), strategic_merge: true, ssa: || map(&["name"]) },
    ListField { suffix: "hostAliases", merge_key: Some("ip"), strategic_merge: true, ssa: || map(&["ip"]) },
    ListField {
        suffix: "topologySpreadConstraints",
        merge_key: Some("topologyKey"),
        strategic_merge: true,
        ssa: || map(&["topologyKey", "whenUnsatisfiable"]),
    },
    ListField { suffix: "resourceClaims", merge_key: Some("name"), strategic_merge: true, ssa: || map(&["name"]) },
    ListField { suffix: "ownerReferences", merge_key: Some("uid"), strategic_merge: true, ssa: || map(&["uid"]) },
    ListField { suffix: "conditions", merge_key: Some("type"), strategic_merge: true, ssa: || map(&["type"]) },
    ListField { suffix: "finalizers", merge_key: None, strategic_merge: true, ssa: || ListType::Set },
    // ValidatingAdmissionPolicy's; its other lists (validations, variables, rules) are atomic.
    ListField { suffix: "matchConditions", merge_key: Some("name"), strategic_merge: true, ssa: || map(&["name"]) },
];

fn find(path: &str) -> Option<&'static ListField> {
    FIELDS.iter().find(|f| {
        path.ends_with(f.suffix) && {
            let rest = &path[..path.len() - f.suffix.len()];
            f.suffix.starts_with('.') || rest.ends_with('.') || rest.ends_with("[]")
        }
    })
}

/// Server-side apply list type of a built-in field path; other lists are atomic.
pub(crate) fn list_type(path: &str) -> ListType {
    find(path).map_or(ListType::Atomic, |f| (f.ssa)())
}

/// Strategic-merge behaviour of a list: `Some(Some(key))` merge by key, `Some(None)` merge a
/// primitive list, `None` replace.
pub(crate) fn patch_strategy(path: &str) -> Option<Option<&'static str>> {
    find(path).filter(|f| f.strategic_merge).map(|f| f.merge_key)
}

/// API groups whose types are compiled into the apiserver. Custom resources have no Go
/// struct tags, so the apiserver answers strategic merge patches on them with 415.
const BUILTIN_GROUPS: &[&str] = &[
    "",
    "admissionregistration.k8s.io",
    "apps",
    "batch",
    "coordination.k8s.io",
    "events.k8s.io",
    "discovery.k8s.io",
    "apiextensions.k8s.io",
    "policy",
    "networking.k8s.io",
    "autoscaling",
    "rbac.authorization.k8s.io",
    "scheduling.k8s.io",
];

pub(crate) fn supports_strategic_merge(group: &str) -> bool {
    BUILTIN_GROUPS.contains(&group)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_told_apart_by_parent() {
        assert_eq!(list_type(".spec.template.spec.containers[].ports"), map(&["containerPort", "protocol"]));
        assert_eq!(list_type(".spec.ports"), map(&["port", "protocol"]));
        assert_eq!(patch_strategy(".spec.ports"), Some(Some("port")));
        assert_eq!(patch_strategy(".spec.containers[].ports"), Some(Some("containerPort")));
    }

    #[test]
    fn suffix_must_be_a_whole_field_name() {
        assert_eq!(list_type(".spec.template.spec.containers"), map(&["name"]));
        assert_eq!(list_type(".spec.template.spec.sidecarcontainers"), ListType::Atomic);
        assert_eq!(patch_strategy(".spec.template.spec.containers[].args"), None);
        assert_eq!(patch_strategy(".metadata.finalizers"), Some(None));
        assert_eq!(list_type(".metadata.finalizers"), ListType::Set);
    }

    #[test]
    fn custom_resources_do_not_support_strategic_merge() {
        assert!(supports_strategic_merge("apps"));
        assert!(supports_strategic_merge(""));
        assert!(!supports_strategic_merge("forklane.io"));
    }
}
