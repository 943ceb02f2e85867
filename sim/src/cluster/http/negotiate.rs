//! Content negotiation: request body decoding (JSON, YAML or, for built-in kinds, protobuf), the response
//! forms a client can ask for in `Accept` (plain JSON, `Table`, `PartialObjectMetadata`),
//! and Status responses.

use crate::cluster::error::{Error, Result};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Output {
    Json,
    /// `as=Table;g=meta.k8s.io;v=v1`, with the `includeObject` policy.
    Table,
    /// `as=PartialObjectMetadata` (or `PartialObjectMetadataList` for lists).
    Metadata,
    /// `application/vnd.kubernetes.protobuf`, for built-in kinds: objects and lists; what has
    /// no protobuf encoding (watch events, `Scale`) is answered as JSON, which clients that
    /// ask for protobuf also accept.
    Protobuf,
}

/// Picks the first acceptable form in the client's order of `Accept` entries; protobuf only
/// where `protobuf` says the resource has it (built-in kinds; custom resources do not).
pub(crate) fn output(headers: &HeaderMap, protobuf: bool) -> Result<Output> {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    for entry in accept.split(',') {
        let mut parts = entry.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default();
        let params: Vec<(&str, &str)> = parts.filter_map(|p| p.split_once('=')).collect();
        let param = |k: &str| params.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
        if protobuf && media == crate::cluster::protobuf::MEDIA_TYPE && param("as").is_none() {
            return Ok(Output::Protobuf);
        }
        if !matches!(media, "application/json" | "*/*" | "application/*") {
            continue;
        }
        match param("as") {
            None => return Ok(Output::Json),
            Some("Table")
                if param("g") == Some("meta.k8s.io") && matches!(param("v"), Some("v1") | Some("v1beta1")) =>
            {
                return Ok(Output::Table);
            }
            Some("PartialObjectMetadata" | "PartialObjectMetadataList") if param("g") == Some("meta.k8s.io") => {
                return Ok(Output::Metadata);
            }
            Some(_) => continue,
        }
    }
    Err(Error::NotAcceptable(format!(
        "only the following media types are accepted: application/json, application/yaml (requested: {accept})"
    )))
}

/// Whether `Accept` asks for aggregated discovery (`apidiscovery.k8s.io/v2`), which the
/// apiserver prefers over the legacy documents when the client lists it.
pub(crate) fn wants_aggregated_discovery(headers: &HeaderMap) -> bool {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default();
    accept.split(',').any(|entry| {
        let params: Vec<&str> = entry.split(';').skip(1).map(str::trim).collect();
        params.contains(&"as=APIGroupDiscoveryList")
            && params.contains(&"v=v2")
            && params.contains(&"g=apidiscovery.k8s.io")
    })
}

/// Media type of the request body, without parameters.
pub(crate) fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
        .unwrap_or_else(|| "application/json".into())
}

/// Decodes an object body as JSON or YAML, as the apiserver's serializers do.
pub(crate) fn decode(bytes: &[u8], media: &str) -> Result<Value> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::BadRequest("Object 'Kind' is missing in ''".into()));
    }
    let value: Value = match media {
        "application/yaml" | "application/apply-patch+yaml" => super::yaml::from_slice(bytes)
            .map_err(|e| Error::BadRequest(format!("error converting YAML to JSON: yaml: {e}")))?,
        "application/json"
        | "application/merge-patch+json"
        | "application/strategic-merge-patch+json"
        | "application/json-patch+json" => serde_json::from_slice(bytes)
            .map_err(|e| Error::BadRequest(format!("couldn't get version/kind; json parse error: {e}")))?,
        crate::cluster::protobuf::MEDIA_TYPE => crate::cluster::protobuf::decode(bytes)?,
        other => {
            return Err(Error::UnsupportedMediaType(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {other})"
            )));
        }
    };
    Ok(value)
}

/// A JSON response with optional `Warning` headers (RFC 7234 code 299, as the apiserver).
pub(crate) fn json(code: u16, value: &Value, warnings: &[String]) -> Response {
    json_typed(code, value, "application/json", warnings)
}

pub(crate) fn json_typed(code: u16, value: &Value, content_type: &str, warnings: &[String]) -> Response {
    json_text(code, value.to_string(), content_type, warnings)
}

/// `json_typed` for a body already encoded.
pub(crate) fn json_text(code: u16, text: String, content_type: &str, warnings: &[String]) -> Response {
    typed(code, text.into_bytes(), content_type, warnings)
}

/// A protobuf body (see `cluster::protobuf::encode`) with optional `Warning` headers.
pub(crate) fn protobuf(code: u16, body: Vec<u8>, warnings: &[String]) -> Response {
    typed(code, body, crate::cluster::protobuf::MEDIA_TYPE, warnings)
}

fn typed(code: u16, body: Vec<u8>, content_type: &str, warnings: &[String]) -> Response {
    let mut resp = (StatusCode::from_u16(code).unwrap_or(StatusCode::OK), body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static("application/json")),
    );
    h.insert("Audit-Id", HeaderValue::from_str(&crate::cluster::meta::new_uid()).expect("uuid is a valid header"));
    for w in warnings {
        let text = format!("299 - {}", serde_json::to_string(w).unwrap_or_default());
        if let Ok(v) = HeaderValue::from_str(&text) {
            h.append(header::WARNING, v);
        }
    }
    resp
}

pub(crate) fn error(err: &Error) -> Response {
    let mut response = json(err.code(), &err.to_status(), &[]);
    if let Error::TooManyRequests { retry_after_seconds } = err {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_seconds));
    }
    response
}

/// `PartialObjectMetadata` of an object.
pub(crate) fn partial_metadata(obj: &Value) -> Value {
    serde_json::json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]})
}
