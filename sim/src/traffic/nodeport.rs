//! A NodePort for real: an HTTP/1.1 listener on a loopback port that sends every request through
//! the [`Dataplane`]. Like kube-proxy's REJECT rule, it refuses connections while the Service has
//! no ready endpoint: the listening socket is closed then, so `curl` prints
//! `curl: (7) Failed to connect to 127.0.0.1 port N after 0 ms: Couldn't connect to server`
//! (curl 7.88; older curls, as in the article, print `Failed connect to ...; Connection refused`).
//! It reopens on the same port as soon as an endpoint is ready.
//!
//! Each connection carries one request (`Connection: close`), so kube-proxy's per-connection
//! choice is a per-request choice, as in the article's `curl` loop.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;

use super::dataplane::Dataplane;
use super::request::{Outcome, Request};
use super::snapshot::ServiceKey;
use super::view::ClusterView;

/// How soon a listener that could not reopen its port tries again.
const REBIND_RETRY: Duration = Duration::from_millis(100);

/// A running NodePort listener; stops when dropped.
pub struct NodePort {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl NodePort {
    /// The address served (the real port when asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for NodePort {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `service` on `addr` (e.g. `127.0.0.1:<nodePort>`) until the returned handle is dropped.
/// Fails only when the port cannot be bound at first (already in use).
pub async fn serve_nodeport(
    addr: SocketAddr,
    service: ServiceKey,
    view: impl ClusterView,
    dataplane: Dataplane,
) -> io::Result<NodePort> {
    let listener = bind(addr)?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(run(addr, listener, service, view, dataplane));
    Ok(NodePort { addr, task })
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    // The port is closed and reopened as endpoints come and go.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn run(
    addr: SocketAddr,
    listener: TcpListener,
    service: ServiceKey,
    mut view: impl ClusterView,
    dataplane: Dataplane,
) {
    let mut listener = Some(listener);
    let mut seeds = StdRng::seed_from_u64(dataplane.seed ^ u64::from(addr.port()));
    loop {
        let open = view.snapshot().has_ready_endpoints(&service);
        if !open {
            // Closing the socket is what makes the kernel refuse new connections.
            listener = None;
        } else if listener.is_none() {
            listener = bind(addr).inspect_err(|e| tracing::warn!(%addr, "cannot reopen the NodePort: {e}")).ok();
        }
        tokio::select! {
            () = view.changed() => {}
            accepted = accept(listener.as_ref()) => match accepted {
                Ok(stream) => {
                    let rng = StdRng::seed_from_u64(seeds.random());
                    tokio::spawn(connection(stream, service.clone(), view.clone(), dataplane.clone(), rng));
                }
                Err(e) => tracing::warn!(%addr, "accept failed: {e}"),
            },
            () = tokio::time::sleep(REBIND_RETRY), if open && listener.is_none() => {}
        }
    }
}

async fn accept(listener: Option<&TcpListener>) -> io::Result<TcpStream> {
    match listener {
        Some(l) => l.accept().await.map(|(stream, _)| stream),
        None => std::future::pending().await,
    }
}

async fn connection(stream: TcpStream, service: ServiceKey, view: impl ClusterView, dataplane: Dataplane, rng: StdRng) {
    if !view.snapshot().has_ready_endpoints(&service) {
        // Accepted just before the last endpoint went away: reset, as close to a refusal as an
        // accepted connection gets.
        let _ = stream.set_zero_linger();
        return;
    }
    let rng = Arc::new(Mutex::new(rng));
    let handler = service_fn(move |req: http::Request<Incoming>| {
        let (view, service, dataplane, rng) = (view.clone(), service.clone(), dataplane.clone(), rng.clone());
        async move {
            let request = from_http(&req);
            let outcome = {
                let mut rng = rng.lock().unwrap_or_else(|e| e.into_inner());
                dataplane.handle(&view.snapshot(), &service, &request, &mut *rng)
            };
            let Outcome::Answered(answer) = outcome else {
                // The endpoints went away mid-connection: close without an answer.
                return Err(io::Error::new(io::ErrorKind::ConnectionRefused, "no ready endpoint"));
            };
            if dataplane.sleep_latency {
                tokio::time::sleep(answer.latency).await;
            }
            Ok::<_, io::Error>(to_http(answer.response))
        }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), handler)
        .await;
    if let Err(e) = served {
        tracing::debug!("NodePort connection ended: {e}");
    }
}

fn from_http(req: &http::Request<Incoming>) -> Request {
    let headers =
        req.headers().iter().map(|(n, v)| (n.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()));
    Request {
        method: req.method().as_str().to_string(),
        path: req.uri().path_and_query().map_or("/", |p| p.as_str()).to_string(),
        authority: req.headers().get(http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default().to_string(),
        headers: headers.collect(),
    }
}

fn to_http(response: super::request::Response) -> http::Response<Body> {
    let mut out = http::Response::new(Body::from(response.body));
    *out.status_mut() = http::StatusCode::from_u16(response.status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    let headers = out.headers_mut();
    headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; charset=utf-8"));
    for (name, value) in response.headers {
        if let (Ok(name), Ok(value)) = (http::HeaderName::try_from(name), http::HeaderValue::try_from(value)) {
            headers.append(name, value);
        }
    }
    out
}
