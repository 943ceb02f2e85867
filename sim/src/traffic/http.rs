//! A minimal HTTP/1.1 client for the load generator: one connection per request, like the
//! article's `curl` loop, so that kube-proxy's per-connection choice applies to every request.

use std::net::SocketAddr;

use axum::body::Body;
use axum::http::{self, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::request::{Request, Response};

/// Largest answer body read (the simulated apps answer one line).
const MAX_BODY: usize = 1 << 20;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HttpError {
    /// The connection was refused: nothing listens (no ready endpoint behind a NodePort).
    #[error("connection refused")]
    Refused,
    #[error("{0}")]
    Failed(String),
}

/// Where requests go: `http://host:port` plus a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpTarget {
    pub addr: SocketAddr,
    /// Sent as the `Host` header.
    pub authority: String,
    pub path: String,
}

impl HttpTarget {
    /// Parses and resolves an `http://` URL.
    pub async fn parse(url: &str) -> Result<Self, String> {
        let uri: Uri = url.parse().map_err(|e| format!("{url:?}: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!("{url:?}: only http:// URLs are supported"));
        }
        let host = uri.host().ok_or_else(|| format!("{url:?}: no host"))?;
        let port = uri.port_u16().unwrap_or(80);
        let addr = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("{host}: {e}"))?
            .next()
            .ok_or_else(|| format!("{host}: no address"))?;
        let authority = uri.authority().map(|a| a.to_string()).unwrap_or_else(|| host.to_string());
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
        Ok(HttpTarget { addr, authority, path })
    }
}

/// Sends `req` (its path and headers; the authority of `target`) on a new connection.
pub async fn send(target: &HttpTarget, req: &Request) -> Result<Response, HttpError> {
    let stream = match TcpStream::connect(target.addr).await {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Err(HttpError::Refused),
        other => other.map_err(|e| HttpError::Failed(e.to_string()))?,
    };
    let failed = |e: &dyn std::fmt::Display| HttpError::Failed(e.to_string());
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| failed(&e))?;
    // The connection task ends with the exchange; its errors surface through send_request.
    tokio::spawn(connection);
    let mut builder = http::Request::builder()
        .method(req.method.as_str())
        .uri(req.path.as_str())
        .header(http::header::HOST, target.authority.as_str());
    for (name, value) in &req.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let request = builder.body(Body::empty()).map_err(|e| failed(&e))?;
    let answer = sender.send_request(request).await.map_err(|e| failed(&e))?;
    let status = answer.status().as_u16();
    let headers = answer
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let body = axum::body::to_bytes(Body::new(answer.into_body()), MAX_BODY).await.map_err(|e| failed(&e))?;
    Ok(Response { status, headers, body: String::from_utf8_lossy(&body).into_owned() })
}
