//! `/forklane/faults`: read and change fault injection over HTTP (not a Kubernetes API).

use super::AppState;
use super::negotiate;
use crate::cluster::error::Error;
use crate::cluster::faults::FaultSettings;
use axum::body::Bytes;
use axum::http::Method;
use axum::response::Response;

pub(crate) fn faults(state: &AppState, method: &Method, rest: &str, body: Bytes) -> Response {
    let settings = || serde_json::to_value(state.faults.settings()).unwrap_or_default();
    match (method.clone(), rest) {
        (Method::GET, "") => negotiate::json(200, &settings(), &[]),
        (Method::PUT, "") => {
            let parsed = serde_json::from_slice::<FaultSettings>(&body).map_err(|e| Error::BadRequest(e.to_string()));
            match parsed.and_then(|s| state.faults.set(s).map_err(Error::BadRequest)) {
                Ok(()) => negotiate::json(200, &settings(), &[]),
                Err(e) => negotiate::error(&e),
            }
        }
        (Method::DELETE, "") => {
            state.faults.clear();
            negotiate::json(200, &settings(), &[])
        }
        (Method::POST, "/cut-watches") => {
            state.faults.cut_watches();
            negotiate::json(200, &settings(), &[])
        }
        _ => negotiate::error(&Error::NotFound {
            message: "the server could not find the requested resource".into(),
            details: serde_json::Value::Null,
        }),
    }
}
