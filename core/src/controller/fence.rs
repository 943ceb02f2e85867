//! Fencing: the controller's Kubernetes client sends a write only while this replica's lease is
//! valid by its own monotonic clock. A leader that cannot renew (paused, partitioned, renewals
//! failing while other requests pass) stops writing before any standby can take the lease over,
//! and a reconcile that began while leading makes no further write once the lease has lapsed:
//! the check is made on every write request, not once per reconcile.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use tower::{BoxError, Layer, Service};

use super::throttle::{Throttle, ThrottleLayer};

/// Until when this replica may write; closed (never) until the first lease is won.
#[derive(Debug, Default)]
pub struct Fence {
    until: Mutex<Option<Instant>>,
    /// A reconcile or a write found the fence closed since the leader loop last asked: work
    /// turned away, which the loop hands back once the lease is held again.
    turned_away: AtomicBool,
}

impl Fence {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Writes pass until `until` (a renewal extends it).
    pub(crate) fn open_until(&self, until: Instant) {
        *self.until.lock().expect("not poisoned") = Some(until);
    }

    /// No write passes from now on (the lease is lost or released).
    pub(crate) fn close(&self) {
        *self.until.lock().expect("not poisoned") = None;
    }

    pub fn is_open(&self) -> bool {
        self.until.lock().expect("not poisoned").is_some_and(|until| Instant::now() < until)
    }

    /// Whether work may go ahead now; remembers when it may not (see [`Fence::take_turned_away`]).
    pub(crate) fn admits(&self) -> bool {
        let open = self.is_open();
        if !open {
            self.turned_away.store(true, Ordering::Relaxed);
        }
        open
    }

    /// Whether work was turned away since the last call. A renewal that arrives after the fence
    /// closed (a starved process, a slow API server) reopens it with no change of holder: the
    /// reconciles it turned away meanwhile must be run again, as after a takeover.
    pub(crate) fn take_turned_away(&self) -> bool {
        self.turned_away.swap(false, Ordering::Relaxed)
    }
}

/// What a fenced write fails with, inside `kube::Error::Service`.
#[derive(Debug, thiserror::Error)]
#[error("not leading: this replica's lease is not valid now, so it sends no write")]
pub struct NotLeading;

/// A Kubernetes client whose writes (every method but GET, HEAD and OPTIONS) pass only while
/// `fence` is open. Reads and watches keep the caches warm on a standby. With a `throttle`,
/// every request first waits for its token; the fence judges a write after that wait, when it
/// really leaves.
pub fn fenced_client(
    config: kube::Config,
    fence: Arc<Fence>,
    throttle: Option<Arc<Throttle>>,
) -> kube::Result<kube::Client> {
    let fenced = kube::client::ClientBuilder::try_from(config)?.with_layer(&FenceLayer(fence));
    Ok(match throttle {
        Some(throttle) => fenced.with_layer(&ThrottleLayer(throttle)).build(),
        None => fenced.build(),
    })
}

struct FenceLayer(Arc<Fence>);

impl<S> Layer<S> for FenceLayer {
    type Service = Fenced<S>;
    fn layer(&self, inner: S) -> Fenced<S> {
        Fenced { inner, fence: self.0.clone() }
    }
}

#[derive(Clone)]
struct Fenced<S> {
    inner: S,
    fence: Arc<Fence>,
}

type Answer<R> = Pin<Box<dyn Future<Output = Result<R, BoxError>> + Send>>;

impl<S, B> Service<http::Request<B>> for Fenced<S>
where
    S: Service<http::Request<B>>,
    S::Response: Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Answer<S::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let reads = [http::Method::GET, http::Method::HEAD, http::Method::OPTIONS];
        if !reads.contains(request.method()) && !self.fence.admits() {
            return Box::pin(std::future::ready(Err(Box::new(NotLeading) as BoxError)));
        }
        let answer = self.inner.call(request);
        Box::pin(async move { answer.await.map_err(Into::into) })
    }
}

/// Whether a client error is a write the fence held back.
pub(crate) fn is_fenced(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Service(e) if e.is::<NotLeading>())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_fence_is_closed_until_opened_and_closes_by_itself() {
        let fence = Fence::new();
        assert!(!fence.is_open(), "closed before the first lease");
        fence.open_until(Instant::now() + Duration::from_secs(60));
        assert!(fence.is_open());
        fence.open_until(Instant::now() - Duration::from_millis(1));
        assert!(!fence.is_open(), "a validity in the past is closed");
        fence.open_until(Instant::now() + Duration::from_secs(60));
        fence.close();
        assert!(!fence.is_open());
    }

    #[test]
    fn work_turned_away_while_closed_is_reported_once() {
        let fence = Fence::new();
        fence.open_until(Instant::now() + Duration::from_secs(60));
        assert!(fence.admits() && !fence.take_turned_away(), "nothing turned away while open");
        fence.open_until(Instant::now() - Duration::from_millis(1));
        assert!(!fence.admits());
        fence.open_until(Instant::now() + Duration::from_secs(60));
        assert!(fence.take_turned_away(), "the lapse is reported after the renewal");
        assert!(!fence.take_turned_away(), "once");
    }

    /// A service that counts what reaches it.
    #[derive(Clone, Default)]
    struct Counting(Arc<Mutex<Vec<http::Method>>>);

    impl Service<http::Request<()>> for Counting {
        type Response = ();
        type Error = BoxError;
        type Future = std::future::Ready<Result<(), BoxError>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, request: http::Request<()>) -> Self::Future {
            self.0.lock().unwrap().push(request.method().clone());
            std::future::ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn writes_pass_only_while_the_fence_is_open_and_reads_always() {
        let fence = Fence::new();
        let seen = Counting::default();
        let mut service = FenceLayer(fence.clone()).layer(seen.clone());
        let request = |m: http::Method| http::Request::builder().method(m).body(()).unwrap();
        let err = service.call(request(http::Method::PATCH)).await.unwrap_err();
        assert!(err.is::<NotLeading>(), "{err}");
        service.call(request(http::Method::GET)).await.unwrap();
        fence.open_until(Instant::now() + Duration::from_secs(60));
        for m in [http::Method::PATCH, http::Method::POST, http::Method::PUT, http::Method::DELETE] {
            service.call(request(m)).await.unwrap();
        }
        fence.close();
        assert!(service.call(request(http::Method::DELETE)).await.is_err());
        let seen = seen.0.lock().unwrap().clone();
        assert_eq!(
            seen,
            [http::Method::GET, http::Method::PATCH, http::Method::POST, http::Method::PUT, http::Method::DELETE]
        );
    }
}
