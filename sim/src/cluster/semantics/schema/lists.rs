//! `x-kubernetes-list-type` semantics: set/map duplicate detection (`structurallisttype`) and
//! the list-type lookup server-side apply needs for custom resources.

use super::walk::field_schema;
use crate::cluster::semantics::field_error::FieldError;
use crate::cluster::semantics::managed_fields::ListType;
use serde_json::{Map, Value};

/// The key fields of a `x-kubernetes-list-type: map` array schema.
pub(crate) fn map_keys(schema: &Value) -> Option<Vec<String>> {
    if schema.get("x-kubernetes-list-type").and_then(Value::as_str) != Some("map") {
        return None;
    }
    let keys = schema.get("x-kubernetes-list-map-keys")?.as_array()?;
    Some(keys.iter().filter_map(|k| k.as_str().map(str::to_string)).collect())
}

/// The key values of a map-list item, as an object of the key fields that are present.
pub(crate) fn key_of(keys: &[String], item: &Value) -> Map<String, Value> {
    keys.iter().filter_map(|k| item.get(k).map(|v| (k.clone(), v.clone()))).collect()
}

pub(crate) fn find_by_keys<'a>(old: Option<&'a Value>, keys: &[String], item: &Value) -> Option<&'a Value> {
    let wanted = key_of(keys, item);
    old?.as_array()?.iter().find(|o| key_of(keys, o) == wanted)
}

/// Duplicate errors for set and map lists, at the index of each repeated item.
pub(crate) fn duplicates(schema: &Value, items: &[Value], path: &str) -> Vec<FieldError> {
    let list_type = schema.get("x-kubernetes-list-type").and_then(Value::as_str);
    let keys = map_keys(schema);
    let mut errors = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let dup = match (list_type, &keys) {
            (Some("set"), _) => items[..i].contains(item).then(|| item.clone()),
            (Some("map"), Some(keys)) => {
                let k = key_of(keys, item);
                items[..i].iter().any(|o| key_of(keys, o) == k).then_some(Value::Object(k))
            }
            _ => None,
        };
        if let Some(v) = dup {
            errors.push(FieldError::duplicate(format!("{path}[{i}]"), v));
        }
    }
    errors
}

/// The schema node at a field path (`.spec.arms[].tags`), if the schema describes it.
fn schema_at<'a>(schema: &'a Value, path: &str) -> Option<&'a Value> {
    let mut node = schema;
    for seg in path.split('.').filter(|s| !s.is_empty()) {
        let (name, items) = seg.strip_suffix("[]").map_or((seg, false), |n| (n, true));
        node = field_schema(node, name)?;
        if items {
            node = node.get("items")?;
        }
    }
    Some(node)
}

/// The list type at a field path according to a CRD schema. Lists without
/// `x-kubernetes-list-type` are atomic, as in Kubernetes.
pub(crate) fn list_type_at(schema: &Value, path: &str) -> ListType {
    let node = schema_at(schema, path);
    match node.and_then(|n| n.get("x-kubernetes-list-type")).and_then(Value::as_str) {
        Some("set") => ListType::Set,
        Some("map") => ListType::Map(node.and_then(map_keys).unwrap_or_default()),
        _ => ListType::Atomic,
    }
}

/// Whether the object at a field path is a map (`additionalProperties`) rather than a struct.
pub(crate) fn is_map_at(schema: &Value, path: &str) -> bool {
    schema_at(schema, path)
        .is_some_and(|n| n.get("additionalProperties").is_some_and(Value::is_object) && n.get("properties").is_none())
}
