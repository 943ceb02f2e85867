//! A connection's read deadlines, as Go's `http.Server` keeps them for kube-apiserver: a
//! request's headers must all arrive within `ReadHeaderTimeout` (32 s) of its first byte (of the
//! handshake, for a connection's first request), and a connection idle between requests is
//! closed after `IdleTimeout` (90 s). A request being served, a watch included, has no deadline.
//!
//! hyper's own `header_read_timeout` cannot say this: it starts when hyper waits for a request,
//! so it closed every keep-alive connection idle for 32 s, while clients (kube-rs, client-go)
//! keep idle connections for 90 s and reuse them; a request sent just as the server closed failed
//! with "peer closed connection".

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use hyper::body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;
use tower::ServiceExt;

/// Where a connection is between requests.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for the rest of a request's headers, since the first byte (or the handshake).
    Head { since: Instant },
    /// Serving this many requests (more than one on HTTP/2).
    Busy { requests: usize },
    /// No request since the last response ended.
    Idle { since: Instant },
}

/// The deadlines of one connection, moved by its reads ([`Clocked`]) and its requests
/// ([`Clock::serving`]); [`Clock::expired`] resolves when one passes.
pub(super) struct Clock {
    phase: Mutex<Phase>,
    changed: Notify,
    header_timeout: Duration,
    idle_timeout: Duration,
    /// HTTP/2 frames between requests (pings, settings) are not a request's head.
    http2: bool,
}

impl Clock {
    /// A connection whose handshake just completed: its first request's headers are due within
    /// the header timeout (an HTTP/2 connection is idle until its first stream).
    pub(super) fn new(header_timeout: Duration, idle_timeout: Duration, http2: bool) -> Arc<Clock> {
        let now = Instant::now();
        let phase = if http2 { Phase::Idle { since: now } } else { Phase::Head { since: now } };
        Arc::new(Clock { phase: Mutex::new(phase), changed: Notify::new(), header_timeout, idle_timeout, http2 })
    }

    fn set(&self, change: impl FnOnce(Phase) -> Phase) {
        let mut phase = self.phase.lock().unwrap();
        *phase = change(*phase);
        self.changed.notify_one();
    }

    /// Bytes arrived: on an idle HTTP/1.1 connection they start a request's head.
    fn read(&self) {
        if self.http2 {
            return;
        }
        let mut phase = self.phase.lock().unwrap();
        if let Phase::Idle { .. } = *phase {
            *phase = Phase::Head { since: Instant::now() };
            self.changed.notify_one();
        }
    }

    /// Serves `request` through `app`: the connection has no deadline until the response's
    /// body has been sent (or dropped).
    pub(super) async fn serving(self: Arc<Self>, request: Request, app: axum::Router) -> Response {
        self.set(|phase| match phase {
            Phase::Busy { requests } => Phase::Busy { requests: requests + 1 },
            Phase::Head { .. } | Phase::Idle { .. } => Phase::Busy { requests: 1 },
        });
        let served = Served(self);
        let Ok(response) = app.oneshot(request).await;
        response.map(|body| Body::new(ServedBody { body, _served: served }))
    }

    /// The moment the current phase's deadline passes, if it has one.
    fn deadline(&self) -> Option<Instant> {
        match *self.phase.lock().unwrap() {
            Phase::Head { since } => Some(since + self.header_timeout),
            Phase::Idle { since } => Some(since + self.idle_timeout),
            Phase::Busy { .. } => None,
        }
    }

    /// Resolves once a deadline has passed: the connection is to be closed.
    pub(super) async fn expired(&self) {
        loop {
            // A change while sleeping stores a permit, so this wakes for it.
            let changed = self.changed.notified();
            match self.deadline() {
                None => changed.await,
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {
                            if self.deadline().is_some_and(|d| d <= Instant::now()) {
                                return;
                            }
                        }
                        _ = changed => {}
                    }
                }
            }
        }
    }
}

/// A request in flight; when its response is done, the connection idles if no other is.
struct Served(Arc<Clock>);

impl Drop for Served {
    fn drop(&mut self) {
        self.0.set(|phase| match phase {
            Phase::Busy { requests } if requests > 1 => Phase::Busy { requests: requests - 1 },
            _ => Phase::Idle { since: Instant::now() },
        });
    }
}

/// A response body that ends its request's [`Served`] when it is dropped: after hyper has sent
/// it, or when the client goes away.
struct ServedBody {
    body: Body,
    _served: Served,
}

impl hyper::body::Body for ServedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A connection's stream, telling its [`Clock`] when bytes arrive.
pub(super) struct Clocked<T> {
    pub inner: T,
    pub clock: Arc<Clock>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Clocked<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.read();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Clocked<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
