//! Structural pruning (`structuralpruning.PruneWithOptions` + `schemaobjectmeta` coercion +
//! `PruneNonNullableNullsWithoutDefaults`) and defaulting (`structuraldefaulting.Default`).

use super::walk::{child_path, field_schema};
use serde_json::Value;

/// Fields of `ObjectMeta`; anything else under `metadata` is dropped like an unknown field.
const OBJECT_META_FIELDS: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

fn flag(schema: &Value, key: &str) -> bool {
    schema.get(key).and_then(Value::as_bool) == Some(true)
}

/// Drops fields the schema does not know (unless `x-kubernetes-preserve-unknown-fields`),
/// unknown `metadata` fields of the object and of embedded resources, and `null`s in
/// non-nullable fields without a default. Returns the dropped paths, sorted, as the apiserver
/// reports them for `fieldValidation=Strict|Warn` (`unknown field "spec.foo"`).
/// The object root is always treated as an embedded resource (apiVersion/kind/metadata kept).
pub(crate) fn prune(schema: &Value, obj: &mut Value) -> Vec<String> {
    let mut unknown = Vec::new();
    prune_node(Some(schema), obj, "", true, &mut unknown);
    unknown.sort();
    unknown
}

fn prune_node(schema: Option<&Value>, x: &mut Value, path: &str, embedded: bool, unknown: &mut Vec<String>) {
    if schema.is_some_and(|s| flag(s, "x-kubernetes-preserve-unknown-fields")) {
        // Unknown fields are kept, but known fields below are still pruned.
        let s = schema.expect("checked above");
        match x {
            Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    if let Some(child) = field_schema(s, k) {
                        prune_node(
                            Some(child),
                            v,
                            &child_path(path, k),
                            flag(child, "x-kubernetes-embedded-resource"),
                            unknown,
                        );
                    }
                }
            }
            Value::Array(items) => {
                if let Some(item) = s.get("items") {
                    for (i, v) in items.iter_mut().enumerate() {
                        prune_node(
                            Some(item),
                            v,
                            &format!("{path}[{i}]"),
                            flag(item, "x-kubernetes-embedded-resource"),
                            unknown,
                        );
                    }
                }
            }
            _ => {}
        }
        return;
    }
    match x {
        Value::Object(map) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                if embedded && (k == "apiVersion" || k == "kind") {
                    continue;
                }
                if embedded && k == "metadata" {
                    coerce_object_meta(
                        map.get_mut("metadata").expect("key exists"),
                        &child_path(path, "metadata"),
                        unknown,
                    );
                    continue;
                }
                let child = schema.and_then(|s| field_schema(s, &k));
                match child {
                    Some(c) => {
                        let v = map.get_mut(&k).expect("key exists");
                        if v.is_null() && !flag(c, "nullable") && c.get("default").is_none() {
                            map.remove(&k);
                            continue;
                        }
                        prune_node(
                            Some(c),
                            v,
                            &child_path(path, &k),
                            flag(c, "x-kubernetes-embedded-resource"),
                            unknown,
                        );
                    }
                    None => {
                        unknown.push(child_path(path, &k));
                        map.remove(&k);
                    }
                }
            }
        }
        Value::Array(items) => {
            let item = schema.and_then(|s| s.get("items"));
            for (i, v) in items.iter_mut().enumerate() {
                prune_node(
                    item,
                    v,
                    &format!("{path}[{i}]"),
                    item.is_some_and(|s| flag(s, "x-kubernetes-embedded-resource")),
                    unknown,
                );
            }
        }
        _ => {}
    }
}

/// Round-tripping through `ObjectMeta` drops unknown fields and a null creationTimestamp.
fn coerce_object_meta(meta: &mut Value, path: &str, unknown: &mut Vec<String>) {
    let Value::Object(map) = meta else { return };
    map.retain(|k, v| {
        let known = OBJECT_META_FIELDS.contains(&k.as_str());
        if !known {
            unknown.push(child_path(path, k));
        }
        known && !(k == "creationTimestamp" && v.is_null())
    });
}

/// Sets `default` values on missing fields (and on `null` in non-nullable fields), top-down,
/// so defaults inside a defaulted object apply too.
pub(crate) fn apply_defaults(schema: &Value, obj: &mut Value) {
    match obj {
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, prop) in props {
                    let Some(default) = prop.get("default") else { continue };
                    let missing = map.get(k).is_none_or(|v| v.is_null() && !flag(prop, "nullable"));
                    if missing {
                        map.insert(k.clone(), default.clone());
                    }
                }
            }
            for (k, v) in map.iter_mut() {
                if let Some(child) = field_schema(schema, k) {
                    apply_defaults(child, v);
                }
            }
        }
        Value::Array(items) => {
            let Some(item) = schema.get("items") else { return };
            for v in items.iter_mut() {
                if v.is_null()
                    && !flag(item, "nullable")
                    && let Some(d) = item.get("default")
                {
                    *v = d.clone();
                }
                apply_defaults(item, v);
            }
        }
        _ => {}
    }
}

/// The apiserver's text for a pruned path under `fieldValidation=Strict` (400 BadRequest,
/// prefixed `strict decoding error: `) or `Warn` (a `Warning` header).
pub(crate) fn unknown_field_message(path: &str) -> String {
    format!("unknown field {}", crate::cluster::semantics::gofmt::quote(path))
}
