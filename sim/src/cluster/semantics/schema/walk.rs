//! Walking a value alongside its structural schema, with old values correlated the way the
//! apiserver correlates them for ratcheting and transition rules: object fields by name,
//! `x-kubernetes-list-type: map` items by their keys; items of other lists are not correlated.

use super::lists;
use serde_json::Value;

pub(crate) struct Node<'a> {
    pub schema: &'a Value,
    pub value: &'a Value,
    pub old: Option<&'a Value>,
    pub path: String,
}

pub(crate) fn child_path(base: &str, key: &str) -> String {
    if base.is_empty() { key.to_string() } else { format!("{base}.{key}") }
}

/// The schema of a field of an object: its `properties` entry, else `additionalProperties`.
pub(crate) fn field_schema<'a>(schema: &'a Value, key: &str) -> Option<&'a Value> {
    schema
        .get("properties")
        .and_then(|p| p.get(key))
        .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()))
}

pub(crate) fn children<'a>(n: &Node<'a>) -> Vec<Node<'a>> {
    match n.value {
        Value::Object(map) => map
            .iter()
            .filter_map(|(k, v)| {
                let schema = field_schema(n.schema, k)?;
                let old = n.old.and_then(|o| o.get(k));
                Some(Node { schema, value: v, old, path: child_path(&n.path, k) })
            })
            .collect(),
        Value::Array(items) => {
            let Some(item_schema) = n.schema.get("items") else { return Vec::new() };
            let keys = lists::map_keys(n.schema);
            items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let old = keys.as_ref().and_then(|k| lists::find_by_keys(n.old, k, v));
                    Node { schema: item_schema, value: v, old, path: format!("{}[{i}]", n.path) }
                })
                .collect()
        }
        _ => Vec::new(),
    }
}
