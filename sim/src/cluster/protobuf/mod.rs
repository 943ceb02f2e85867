//! Protobuf bodies (`application/vnd.kubernetes.protobuf`), which kubectl and client-go send
//! for built-in kinds and prefer in responses. The body is Kubernetes' envelope (the magic `k8s\0`,
//! then a `runtime.Unknown` naming apiVersion and kind around the object's bytes), decoded
//! with k8s-pb's generated type; the object inside is decoded by the table generated from
//! k8s-pb (`table.rs`, `generate.py`) into the JSON form the store keeps, and written back
//! from it by the same table. Custom resources have no protobuf encoding and are refused
//! with 415, as by the apiserver.

mod from_json;
mod schema;
mod table;
mod to_json;
mod wire;

use crate::cluster::error::Error;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use prost::Message as _;
use serde_json::Value;

pub(crate) const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The four bytes before every protobuf body of the Kubernetes API.
const MAGIC: &[u8] = b"k8s\0";

#[derive(Debug, thiserror::Error)]
pub(crate) enum ProtobufError {
    #[error("provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]")]
    NoMagic,
    #[error("the protobuf envelope (runtime.Unknown) is malformed: {0}")]
    Envelope(#[from] prost::DecodeError),
    #[error("the protobuf envelope names no apiVersion and kind")]
    NoKind,
    #[error("the protobuf envelope's contentEncoding {0:?} is not supported")]
    ContentEncoding(String),
    #[error(
        "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {MEDIA_TYPE} for {kind} of {api_version}, which has no protobuf encoding)"
    )]
    UnknownKind { api_version: String, kind: String },
    #[error("the protobuf body of {kind} is malformed: {source}")]
    Object { kind: String, source: to_json::Malformed },
}

impl From<ProtobufError> for Error {
    fn from(e: ProtobufError) -> Self {
        match e {
            ProtobufError::UnknownKind { .. } => Error::UnsupportedMediaType(e.to_string()),
            _ => Error::BadRequest(e.to_string()),
        }
    }
}

/// Decodes a protobuf body into the object's JSON form, `apiVersion` and `kind` included.
pub(crate) fn decode(bytes: &[u8]) -> Result<Value, ProtobufError> {
    let inner = bytes.strip_prefix(MAGIC).ok_or(ProtobufError::NoMagic)?;
    let envelope = Unknown::decode(inner)?;
    let type_meta = envelope.type_meta.unwrap_or_default();
    let (api_version, kind) = (type_meta.api_version.unwrap_or_default(), type_meta.kind.unwrap_or_default());
    if api_version.is_empty() || kind.is_empty() {
        return Err(ProtobufError::NoKind);
    }
    if let Some(encoding) = envelope.content_encoding.filter(|e| !e.is_empty()) {
        return Err(ProtobufError::ContentEncoding(encoding));
    }
    let Some(message) = schema::kind(&api_version, &kind) else {
        return Err(ProtobufError::UnknownKind { api_version, kind });
    };
    let raw = envelope.raw.unwrap_or_default();
    let mut object =
        to_json::message(message.name, &raw).map_err(|source| ProtobufError::Object { kind: kind.clone(), source })?;
    if let Value::Object(map) = &mut object {
        // `apiVersion` and `kind` first, as in the JSON body.
        let fields = std::mem::take(map);
        map.insert("apiVersion".into(), Value::String(api_version));
        map.insert("kind".into(), Value::String(kind));
        map.extend(fields);
    }
    Ok(object)
}

/// The protobuf body of a built-in object or list in its JSON form; `None` for what has no
/// protobuf encoding here (custom resources, tables, subresources such as `Scale`), which is
/// answered as JSON.
pub(crate) fn encode(object: &Value) -> Option<Vec<u8>> {
    let api_version = object["apiVersion"].as_str()?;
    let kind = object["kind"].as_str()?;
    let message = schema::kind(api_version, kind)?;
    let raw =
        from_json::message(message, object.as_object()?).inspect_err(|e| tracing::warn!("answering JSON: {e}")).ok()?;
    let type_meta = TypeMeta { api_version: Some(api_version.into()), kind: Some(kind.into()) };
    let envelope = Unknown {
        type_meta: Some(type_meta),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    Some([MAGIC, &envelope.encode_to_vec()].concat())
}

#[cfg(test)]
mod tests;
