//! Objects as CEL values, the way kube-apiserver hands them to a policy: the unstructured
//! object through cel-go's `NativeToValue`. Maps stay maps with their keys as written (no
//! escaping: `object.metadata.labels['app.kubernetes.io/name']` works), integers stay
//! integers, and an absent field is an absent key, so `has()` is false and selecting it is
//! the error `no such key`.

use cel::objects::{Key, Map};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

pub(crate) fn to_cel(value: &Value) -> cel::Value {
    match value {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        // Go's JSON decoder keeps integral numbers as int64 and everything else (fractions,
        // integers beyond int64) as float64.
        Value::Number(n) => match n.as_i64() {
            Some(i) => cel::Value::Int(i),
            None => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => string(s),
        Value::Array(items) => cel::Value::List(Arc::new(items.iter().map(to_cel).collect())),
        Value::Object(fields) => map(fields.iter().map(|(k, v)| (k.as_str(), to_cel(v)))),
    }
}

pub(crate) fn string(s: &str) -> cel::Value {
    cel::Value::String(Arc::new(s.to_string()))
}

/// A CEL map with string keys.
pub(crate) fn map<'a>(entries: impl IntoIterator<Item = (&'a str, cel::Value)>) -> cel::Value {
    let map: HashMap<Key, cel::Value> =
        entries.into_iter().map(|(k, v)| (Key::String(Arc::new(k.to_string())), v)).collect();
    cel::Value::Map(Map { map: Arc::new(map) })
}

/// cel-go's name of a value's type, as its error messages print it.
pub(crate) fn type_name(value: &cel::Value) -> &'static str {
    match value {
        cel::Value::List(_) => "list",
        cel::Value::Map(_) => "map",
        cel::Value::Function(..) => "function",
        cel::Value::Int(_) => "int",
        cel::Value::UInt(_) => "uint",
        cel::Value::Float(_) => "double",
        cel::Value::String(_) => "string",
        cel::Value::Bytes(_) => "bytes",
        cel::Value::Bool(_) => "bool",
        cel::Value::Duration(_) => "google.protobuf.Duration",
        cel::Value::Timestamp(_) => "google.protobuf.Timestamp",
        cel::Value::Opaque(_) => "optional_type",
        cel::Value::Null => "null_type",
    }
}
