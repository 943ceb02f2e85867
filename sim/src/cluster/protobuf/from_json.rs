//! The JSON form of a built-in object written as protobuf, for clients whose `Accept` prefers
//! `application/vnd.kubernetes.protobuf`: the inverse of `to_json`, driven by the same table.
//! Fields are written in field-number order and map entries by key, as Go's encoder does.

use super::schema::{self, Message, Ty};
use base64::Engine;
use serde_json::{Map, Value};

/// A JSON value that does not fit the message's field (the store holds only validated
/// objects, so this marks a table out of step with the server, and the caller answers JSON).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}.{field} cannot be written as protobuf")]
pub(crate) struct Unencodable {
    pub message: &'static str,
    pub field: &'static str,
}

pub(super) fn message(msg: &'static Message, obj: &Map<String, Value>) -> Result<Vec<u8>, Unencodable> {
    let mut out = Vec::new();
    for field in msg.fields {
        let fail = || Unencodable { message: msg.short_name(), field: field.json };
        if let Ty::Inline(name) = field.ty {
            put_bytes(&mut out, field.tag, &message(schema::message(name).ok_or_else(fail)?, obj)?);
            continue;
        }
        let Some(value) = obj.get(field.json).filter(|v| !v.is_null()) else { continue };
        match (&field.ty, value) {
            (Ty::MapOfString | Ty::MapOfBytes | Ty::MapOf(_), Value::Object(map)) => {
                let value_ty = match &field.ty {
                    Ty::MapOfString => Ty::String,
                    Ty::MapOfBytes => Ty::Bytes,
                    Ty::MapOf(name) => Ty::Message(name),
                    _ => return Err(fail()),
                };
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                for k in keys {
                    let mut entry = Vec::new();
                    put_bytes(&mut entry, 1, k.as_bytes());
                    scalar(&mut entry, 2, &value_ty, &map[k]).ok_or_else(fail)?;
                    put_bytes(&mut out, field.tag, &entry);
                }
            }
            (ty, Value::Array(items)) if field.repeated => {
                for item in items {
                    scalar(&mut out, field.tag, ty, item).ok_or_else(fail)?;
                }
            }
            (ty, value) => scalar(&mut out, field.tag, ty, value).ok_or_else(fail)?,
        }
    }
    Ok(out)
}

/// Writes one value of field `tag`; `None` when the JSON does not fit the type.
fn scalar(out: &mut Vec<u8>, tag: u32, ty: &Ty, value: &Value) -> Option<()> {
    match (ty, value) {
        (Ty::String, Value::String(s)) => put_bytes(out, tag, s.as_bytes()),
        (Ty::Bytes, Value::String(s)) => {
            put_bytes(out, tag, &base64::engine::general_purpose::STANDARD.decode(s).ok()?)
        }
        // Negative numbers travel as their 64-bit two's complement, int32 included.
        (Ty::Int32 | Ty::Int64, Value::Number(n)) => put_varint(out, tag, n.as_i64()? as u64),
        (Ty::Bool, Value::Bool(b)) => put_varint(out, tag, u64::from(*b)),
        (Ty::Message(name), value) => put_bytes(out, tag, &special(name, value)?),
        _ => return None,
    }
    Some(())
}

/// A message's bytes, for the apimachinery types whose JSON form is not their layout too.
fn special(name: &'static str, value: &Value) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    match (name, value) {
        (
            "apimachinery::pkg::apis::meta::v1::Time" | "apimachinery::pkg::apis::meta::v1::MicroTime",
            Value::String(s),
        ) => {
            let t: jiff::Timestamp = s.parse().ok()?;
            put_varint(&mut out, 1, t.as_second() as u64);
            if t.subsec_nanosecond() != 0 {
                put_varint(&mut out, 2, t.subsec_nanosecond() as u64);
            }
        }
        ("apimachinery::pkg::util::intstr::IntOrString", Value::Number(n)) => {
            put_varint(&mut out, 1, 0);
            put_varint(&mut out, 2, n.as_i64()? as u64);
        }
        ("apimachinery::pkg::util::intstr::IntOrString", Value::String(s)) => {
            put_varint(&mut out, 1, 1);
            put_bytes(&mut out, 3, s.as_bytes());
        }
        ("apimachinery::pkg::api::resource::Quantity", Value::String(s)) => put_bytes(&mut out, 1, s.as_bytes()),
        ("apimachinery::pkg::runtime::RawExtension" | "apimachinery::pkg::apis::meta::v1::FieldsV1", v) => {
            put_bytes(&mut out, 1, v.to_string().as_bytes())
        }
        (name, Value::Object(obj)) => return message(schema::message(name)?, obj).ok(),
        _ => return None,
    }
    Some(out)
}

fn put_varint(out: &mut Vec<u8>, tag: u32, value: u64) {
    varint(out, u64::from(tag) << 3);
    varint(out, value);
}

fn put_bytes(out: &mut Vec<u8>, tag: u32, bytes: &[u8]) {
    varint(out, (u64::from(tag) << 3) | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}
