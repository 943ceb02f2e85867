//! The HTTPS front: TLS accept loop (hyper, HTTP/1.1 and HTTP/2), bearer-token
//! authentication, and routing to discovery, OpenAPI, the fault admin endpoint and the
//! resource handlers.

mod admin;
mod negotiate;
mod resource;
pub(crate) mod route;
mod yaml;

pub(crate) use route::Target;

use crate::cluster::audit::Audit;
use crate::cluster::discovery;
use crate::cluster::error::Error;
use crate::cluster::faults::Faults;
use crate::cluster::openapi;
use crate::cluster::store::Store;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, Method, Uri, header};
use axum::response::Response;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// What every request handler can reach.
pub(crate) struct AppState {
    pub store: Store,
    pub faults: Faults,
    pub token: String,
    /// `host:port`, reported in `/api`.
    pub server_address: String,
    pub bookmark_interval: Duration,
    pub audit: Audit,
}

pub(crate) fn router(state: Arc<AppState>) -> axum::Router {
    axum::Router::new().fallback(entry).with_state(state)
}

/// Serves HTTPS on `listener` until `shutdown` flips to true.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: axum::Router,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let (acceptor, app, mut shutdown) = (acceptor.clone(), app.clone(), shutdown.clone());
        connections.spawn(async move {
            let Ok(tls) = acceptor.accept(stream).await else { return };
            let service = TowerToHyperService::new(app);
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = shutdown.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(2), conn).await;
                }
            }
        });
        // Reap finished connections so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
    }
    let _ =
        tokio::time::timeout(Duration::from_secs(3), async { while connections.join_next().await.is_some() {} }).await;
    connections.abort_all();
}

async fn entry(
    State(state): State<Arc<AppState>>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    if !authorized(&state.token, &parts.headers) {
        return negotiate::error(&Error::Unauthorized("Unauthorized".into()));
    }
    if let Some(delay) = state.faults.delay() {
        tokio::time::sleep(delay).await;
    }
    route(&state, &parts.method, &parts.uri, &query, &parts.headers, body).await
}

fn authorized(token: &str, headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| constant_time_eq(t.trim().as_bytes(), token.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn route(
    state: &AppState,
    method: &Method,
    uri: &Uri,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let path = uri.path().trim_end_matches('/');
    if let Some(target) = route::parse(path) {
        if !state.audit.is_enabled() {
            return resource::handle(state, method, query, headers, body, target).await;
        }
        let user_agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        let response = resource::handle(state, method, query, headers, body, target.clone()).await;
        state.audit.record(method.as_str(), &target, query, &user_agent, response.status().as_u16());
        return response;
    }
    if let Some(rest) = path.strip_prefix("/forklane/faults") {
        return admin::faults(state, method, rest, body).await;
    }
    if *method != Method::GET {
        return negotiate::error(&Error::MethodNotAllowed(
            "the server does not allow this method on the requested resource".into(),
        ));
    }
    let registry = state.store.registry();
    let wants_aggregated = negotiate::wants_aggregated_discovery(headers);
    let found = match path {
        "/version" => Some(discovery::version()),
        "/healthz" | "/livez" | "/readyz" => return ok_text(),
        "/api" if wants_aggregated => {
            return negotiate::json_typed(
                200,
                &discovery::aggregated(&registry, true),
                discovery::AGGREGATED_CONTENT_TYPE,
                &[],
            );
        }
        "/apis" if wants_aggregated => {
            return negotiate::json_typed(
                200,
                &discovery::aggregated(&registry, false),
                discovery::AGGREGATED_CONTENT_TYPE,
                &[],
            );
        }
        "/api" => Some(discovery::api_versions(&state.server_address)),
        "/apis" => Some(discovery::api_group_list(&registry)),
        "/openapi/v3" => Some(openapi::v3_index(&registry)),
        _ => {
            let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
            match segs.as_slice() {
                ["api", version] => discovery::api_resource_list(&registry, "", version),
                ["apis", group] => discovery::api_group(&registry, group),
                ["apis", group, version] => discovery::api_resource_list(&registry, group, version),
                ["openapi", "v3", "api", version] => openapi::v3_group_version(&registry, "", version),
                ["openapi", "v3", "apis", group, version] => openapi::v3_group_version(&registry, group, version),
                _ => None,
            }
        }
    };
    match found {
        Some(doc) => negotiate::json(200, &doc, &[]),
        None => negotiate::error(&Error::NotFound {
            message: "the server could not find the requested resource".into(),
            details: serde_json::Value::Null,
        }),
    }
}

fn ok_text() -> Response {
    let mut resp = Response::new(Body::from("ok"));
    resp.headers_mut().insert(header::CONTENT_TYPE, "text/plain; charset=utf-8".parse().expect("static"));
    resp
}
