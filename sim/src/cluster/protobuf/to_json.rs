//! A protobuf message of the Kubernetes API turned into the JSON form the store keeps, as
//! the JSON body of the same object would have read: JSON field names, zero scalars left out
//! (see `schema::POINTERS`), bytes in base64, and the apimachinery types that have a JSON form
//! of their own (times, int-or-string, quantities, raw extensions, managed fields).

use super::schema::{self, Field, Message, Ty};
use super::wire::{self, Wire, WireError};
use base64::Engine;
use serde_json::{Map, Value};

/// Deeper than any Kubernetes object nests (JSONSchemaProps is not served over protobuf): a
/// bound on the decoder's recursion for hostile input.
const MAX_DEPTH: usize = 64;

/// A body that is protobuf but not a valid encoding of its kind, with the JSON path of the
/// field where decoding failed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Malformed {
    /// Innermost field first (pushed while the error travels out).
    path: Vec<&'static str>,
    pub problem: Problem,
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            return write!(f, "{}", self.problem);
        }
        let path: Vec<&str> = self.path.iter().rev().copied().collect();
        write!(f, "{}: {}", path.join("."), self.problem)
    }
}

impl std::error::Error for Malformed {}

impl From<Problem> for Malformed {
    fn from(problem: Problem) -> Self {
        Malformed { path: vec![], problem }
    }
}

impl From<WireError> for Malformed {
    fn from(e: WireError) -> Self {
        Problem::Wire(e).into()
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum Problem {
    #[error("{0}")]
    Wire(#[from] WireError),
    #[error("wire type does not match the field's type")]
    WireType,
    #[error("invalid UTF-8 in a string")]
    Utf8,
    #[error("time out of range")]
    Time,
    #[error("raw bytes are not JSON: {0}")]
    RawJson(String),
    #[error("nested deeper than {MAX_DEPTH} messages")]
    TooDeep,
    /// The generated table names only messages it lists (a unit test checks it).
    #[error("message {0} is missing from the generated table")]
    NotInTable(&'static str),
}

/// Decodes `bytes` as the message named `name` (a k8s-pb path from the generated table).
pub(super) fn message(name: &'static str, bytes: &[u8]) -> Result<Value, Malformed> {
    decode(name, bytes, 0)
}

fn decode(name: &'static str, bytes: &[u8], depth: usize) -> Result<Value, Malformed> {
    let msg = schema::message(name).ok_or(Problem::NotInTable(name))?;
    if depth > MAX_DEPTH {
        return Err(Problem::TooDeep.into());
    }
    let mut obj = Map::new();
    for next in wire::fields(bytes) {
        let (tag, value) = next?;
        let Some(field) = msg.field(tag) else { continue }; // unknown fields are ignored, as by the Go decoder
        put(&mut obj, msg, field, value, depth).map_err(|mut e| {
            // An inline struct's fields are named at this level: it adds no step to the path.
            if !field.json.is_empty() {
                e.path.push(field.json);
            }
            e
        })?;
    }
    Ok(special(msg, obj)?)
}

/// Adds one occurrence of `field` to `obj`: repeated fields and map entries accumulate.
fn put(obj: &mut Map<String, Value>, msg: &Message, field: &Field, value: Wire, depth: usize) -> Result<(), Malformed> {
    let key = field.json.to_string();
    let entry_of = |value_ty: &Ty| map_entry(value, value_ty, depth);
    match &field.ty {
        Ty::MapOfString => insert_entry(obj, key, entry_of(&Ty::String)?)?,
        Ty::MapOfBytes => insert_entry(obj, key, entry_of(&Ty::Bytes)?)?,
        Ty::MapOf(name) => insert_entry(obj, key, entry_of(&Ty::Message(name))?)?,
        Ty::Inline(name) => {
            let Wire::Bytes(bytes) = value else { return Err(Problem::WireType.into()) };
            if let Value::Object(fields) = decode(name, bytes, depth + 1)? {
                obj.extend(fields);
            }
        }
        ty if field.repeated => {
            let items = obj.entry(key).or_insert_with(|| Value::Array(vec![]));
            let Value::Array(items) = items else { return Err(Problem::WireType.into()) };
            match (ty, value) {
                (Ty::Int32 | Ty::Int64, Wire::Bytes(packed)) => {
                    for v in wire::Fields::packed(packed)? {
                        items.push(scalar(ty, Wire::Varint(v), depth)?);
                    }
                }
                _ => items.push(scalar(ty, value, depth)?),
            }
        }
        ty => {
            let v = scalar(ty, value, depth)?;
            if is_zero(&v) && !matches!(ty, Ty::Message(_)) && !schema::keeps_zero(msg, field) {
                obj.remove(&key);
            } else {
                obj.insert(key, v);
            }
        }
    }
    Ok(())
}

fn insert_entry(obj: &mut Map<String, Value>, key: String, (k, v): (String, Value)) -> Result<(), Problem> {
    match obj.entry(key).or_insert_with(|| Value::Object(Map::new())) {
        Value::Object(map) => {
            map.insert(k, v);
            Ok(())
        }
        _ => Err(Problem::WireType),
    }
}

/// A map entry: a message with the key as field 1 and the value as field 2.
fn map_entry(value: Wire, value_ty: &Ty, depth: usize) -> Result<(String, Value), Malformed> {
    let Wire::Bytes(bytes) = value else { return Err(Problem::WireType.into()) };
    let (mut key, mut val) = (String::new(), None);
    for next in wire::fields(bytes) {
        match next? {
            (1, v) => key = text(v)?,
            (2, v) => val = Some(scalar(value_ty, v, depth)?),
            _ => {}
        }
    }
    let val = match val {
        Some(v) => v,
        None => scalar(value_ty, Wire::Bytes(&[]), depth)?,
    };
    Ok((key, val))
}

fn text(value: Wire) -> Result<String, Problem> {
    let Wire::Bytes(bytes) = value else { return Err(Problem::WireType) };
    String::from_utf8(bytes.to_vec()).map_err(|_| Problem::Utf8)
}

fn scalar(ty: &Ty, value: Wire, depth: usize) -> Result<Value, Malformed> {
    Ok(match (ty, value) {
        (Ty::String, v) => Value::String(text(v)?),
        (Ty::Bytes, Wire::Bytes(b)) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
        // Two's complement: a negative int32 travels sign-extended to 64 bits.
        (Ty::Int32, Wire::Varint(v)) => Value::from(v as i64 as i32),
        (Ty::Int64, Wire::Varint(v)) => Value::from(v as i64),
        (Ty::Bool, Wire::Varint(v)) => Value::Bool(v != 0),
        (Ty::Message(name), Wire::Bytes(b)) => decode(name, b, depth + 1)?,
        _ => return Err(Problem::WireType.into()),
    })
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Bool(b) => !b,
        _ => false,
    }
}

/// The apimachinery types whose JSON form is not their protobuf layout.
fn special(msg: &Message, mut obj: Map<String, Value>) -> Result<Value, Problem> {
    let int = |obj: &Map<String, Value>, k: &str| obj.get(k).and_then(Value::as_i64).unwrap_or(0);
    let string = |obj: &mut Map<String, Value>, k: &str| obj.remove(k).unwrap_or_else(|| Value::String(String::new()));
    Ok(match msg.name {
        "apimachinery::pkg::apis::meta::v1::Time" => time(int(&obj, "seconds"), int(&obj, "nanos"), false)?,
        "apimachinery::pkg::apis::meta::v1::MicroTime" => time(int(&obj, "seconds"), int(&obj, "nanos"), true)?,
        "apimachinery::pkg::util::intstr::IntOrString" if int(&obj, "type") == 1 => string(&mut obj, "strVal"),
        "apimachinery::pkg::util::intstr::IntOrString" => Value::from(int(&obj, "intVal")),
        "apimachinery::pkg::api::resource::Quantity" => string(&mut obj, "string"),
        "apimachinery::pkg::runtime::RawExtension" | "apimachinery::pkg::apis::meta::v1::FieldsV1" => {
            raw_json(obj.get("raw").and_then(Value::as_str).unwrap_or_default())?
        }
        _ => Value::Object(obj),
    })
}

/// `metav1.Time` (seconds) or `metav1.MicroTime` (microseconds) in RFC 3339; the zero time is
/// `null`, as Go's JSON encoder writes it.
fn time(seconds: i64, nanos: i64, micro: bool) -> Result<Value, Problem> {
    if seconds == 0 && nanos == 0 {
        return Ok(Value::Null);
    }
    let nanos = i32::try_from(nanos).map_err(|_| Problem::Time)?;
    let t = jiff::Timestamp::new(seconds, nanos).map_err(|_| Problem::Time)?;
    let whole = t.strftime("%Y-%m-%dT%H:%M:%S").to_string();
    Ok(Value::String(if micro { format!("{whole}.{:06}Z", nanos / 1000) } else { format!("{whole}Z") }))
}

/// Raw bytes (base64 after the generic pass) holding a JSON document, as kubectl sends them.
fn raw_json(encoded: &str) -> Result<Value, Problem> {
    if encoded.is_empty() {
        return Ok(Value::Null);
    }
    let bytes =
        base64::engine::general_purpose::STANDARD.decode(encoded).map_err(|e| Problem::RawJson(e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| Problem::RawJson(e.to_string()))
}
