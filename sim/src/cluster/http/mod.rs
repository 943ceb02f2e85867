//! The HTTPS front: TLS accept loop (hyper, HTTP/1.1 and HTTP/2) within `ServerLimits`,
//! bearer-token authentication, bounded request bodies, and routing to discovery, OpenAPI, the
//! fault admin endpoint and the resource handlers.

mod admin;
mod body;
mod clock;
mod negotiate;
mod resource;
pub(crate) mod route;
mod yaml;

pub(crate) use route::Target;

use crate::cluster::audit::{Annotations, Audit};
use crate::cluster::discovery;
use crate::cluster::error::Error;
use crate::cluster::faults::Faults;
use crate::cluster::limits::ServerLimits;
use crate::cluster::openapi;
use crate::cluster::store::Store;
use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, Uri, Version, header};
use axum::response::Response;
use clock::{Clock, Clocked};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
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
    pub limits: ServerLimits,
}

pub(crate) fn router(state: Arc<AppState>) -> axum::Router {
    axum::Router::new().fallback(entry).with_state(state)
}

/// Serves HTTPS on `listener` until `shutdown` flips to true. At most
/// `limits.max_connections` connections are served at once: the loop accepts only with a free
/// slot, so further clients wait in the kernel's listen backlog (as behind Go's
/// `netutil.LimitListener`) and cost nothing until a connection closes. Waiting was chosen over
/// refusing because a refused client sees a bare reset, while a waiting one is served after a
/// burst; slow handshakes and silent clients release their slot after the timeouts.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: axum::Router,
    limits: ServerLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            _ = shutdown.changed() => break,
        };
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: retrying at once would spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let (acceptor, app, mut shutdown) = (acceptor.clone(), app.clone(), shutdown.clone());
        let (handshake_timeout, header_timeout, idle_timeout) =
            (limits.tls_handshake_timeout, limits.header_read_timeout, limits.idle_timeout);
        connections.spawn(async move {
            let _slot = slot;
            let Ok(Ok(tls)) = tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await else { return };
            let http2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            let clock = Clock::new(header_timeout, idle_timeout, http2);
            let io = Clocked { inner: tls, clock: clock.clone() };
            let served = clock.clone();
            let service = service_fn(move |request: Request<Incoming>| {
                let (clock, app) = (served.clone(), app.clone());
                async move { Ok::<_, Infallible>(clock.serving(request.map(Body::new), app).await) }
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                // Headers too slow, or idle too long: closed as Go's server closes it.
                _ = clock.expired() => {}
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
    let body = match body::read(&parts.headers, body, state.limits.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(refusal) => {
            let mut response = negotiate::error(&refusal.error);
            // An HTTP/1.1 connection with unread body bytes cannot carry another request.
            if !refusal.drained && parts.version <= Version::HTTP_11 {
                response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            return response;
        }
    };
    if let Some(delay) = state.faults.delay() {
        tokio::time::sleep(delay).await;
    }
    let throttled = if exempt_from_throttling(parts.uri.path()) { None } else { state.faults.throttle() };
    route(&state, &parts.method, &parts.uri, &query, &parts.headers, body, throttled).await
}

/// Health probes and the fault endpoint itself are never throttled, as the apiserver's
/// flow control exempts probes (and so a test can always switch throttling off).
fn exempt_from_throttling(path: &str) -> bool {
    matches!(path.trim_end_matches('/'), "/healthz" | "/livez" | "/readyz") || path.starts_with("/forklane/faults")
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
    body: Bytes,
    throttled: Option<Error>,
) -> Response {
    let path = uri.path().trim_end_matches('/');
    if let Some(target) = route::parse(path) {
        // A throttled resource request is answered 429 and audited as such, as the apiserver's
        // audit log records requests its flow control rejects.
        let response = match throttled {
            Some(e) => negotiate::error(&e),
            None if !state.audit.is_enabled() => {
                return resource::handle(state, method, query, headers, body, target).await;
            }
            None => resource::handle(state, method, query, headers, body, target.clone()).await,
        };
        if state.audit.is_enabled() {
            let user_agent =
                headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
            let annotations = response.extensions().get::<Annotations>().map(|a| a.0.clone()).unwrap_or_default();
            state.audit.record(method.as_str(), &target, query, &user_agent, response.status().as_u16(), annotations);
        }
        return response;
    }
    if let Some(e) = throttled {
        return negotiate::error(&e);
    }
    if let Some(rest) = path.strip_prefix("/forklane/faults") {
        return admin::faults(state, method, rest, body);
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
