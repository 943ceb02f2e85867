//! The client-side rate limit (`--kube-qps`, `--kube-burst`, as client-go, Flagger and Argo
//! Rollouts have): a token bucket shared by every client of one process, so that a thousand
//! experiments starting at once, or a storm of retries, cannot flood the API server. A request
//! waits in the client's queue until a token is free; each request, a watch's too, takes one.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::time::{Instant, Sleep};
use tower::{BoxError, Layer, Service};

/// A sustained rate and a burst, checked once where they are parsed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    qps: f64,
    burst: u32,
}

impl RateLimit {
    /// `qps` requests per second on average, up to `burst` at once after a quiet spell.
    pub fn new(qps: f64, burst: u32) -> Result<Self, String> {
        if !(qps.is_finite() && qps > 0.0) {
            return Err(format!("--kube-qps: {qps} is not a positive number of requests per second"));
        }
        if burst == 0 {
            return Err("--kube-burst: 0 would let no request through; give at least 1".into());
        }
        Ok(RateLimit { qps, burst })
    }
}

/// The bucket: tokens refill at `qps` up to `burst`. A request takes a token even when none is
/// left (the count goes below zero) and waits until the refill has paid it back, so waiting
/// requests are served in the order they asked, at exactly the sustained rate.
#[derive(Debug)]
pub struct Throttle {
    limit: RateLimit,
    bucket: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Throttle {
    pub fn new(limit: RateLimit) -> Arc<Self> {
        let bucket = Bucket { tokens: f64::from(limit.burst), at: Instant::now() };
        Arc::new(Throttle { limit, bucket: Mutex::new(bucket) })
    }

    /// Takes one token; how long to wait before the request may go.
    fn reserve(&self) -> Duration {
        let mut bucket = self.bucket.lock().expect("not poisoned");
        let now = Instant::now();
        let refilled = bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * self.limit.qps;
        bucket.tokens = refilled.min(f64::from(self.limit.burst)) - 1.0;
        bucket.at = now;
        if bucket.tokens >= 0.0 { Duration::ZERO } else { Duration::from_secs_f64(-bucket.tokens / self.limit.qps) }
    }
}

/// Puts `throttle` in front of a client's service (`ClientBuilder::with_layer`).
pub struct ThrottleLayer(pub Arc<Throttle>);

impl<S> Layer<S> for ThrottleLayer {
    type Service = Throttled<S>;
    fn layer(&self, inner: S) -> Throttled<S> {
        Throttled { inner, throttle: self.0.clone(), waiting: None, admitted: false }
    }
}

/// The wait happens in `poll_ready`: kube's client queues requests in front of its service and
/// sends one only once the service is ready, so the layers inside (the fence) judge a request
/// when it really leaves, not when it was queued.
pub struct Throttled<S> {
    inner: S,
    throttle: Arc<Throttle>,
    waiting: Option<Pin<Box<Sleep>>>,
    /// A token is held for the next request.
    admitted: bool,
}

impl<S, R> Service<R> for Throttled<S>
where
    S: Service<R>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if !self.admitted {
            if self.waiting.is_none() {
                let wait = self.throttle.reserve();
                if !wait.is_zero() {
                    self.waiting = Some(Box::pin(tokio::time::sleep(wait)));
                }
            }
            if let Some(sleep) = self.waiting.as_mut() {
                ready!(sleep.as_mut().poll(cx));
                self.waiting = None;
            }
            self.admitted = true;
        }
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: R) -> Self::Future {
        self.admitted = false;
        let answer = self.inner.call(request);
        Box::pin(async move { answer.await.map_err(Into::into) })
    }
}

#[cfg(test)]
mod tests {
    use tower::ServiceExt;

    use super::*;

    #[test]
    fn a_rate_or_burst_that_lets_nothing_through_is_refused_naming_the_flag() {
        assert!(RateLimit::new(0.0, 10).unwrap_err().contains("--kube-qps: 0"));
        assert!(RateLimit::new(f64::NAN, 10).unwrap_err().contains("--kube-qps"));
        assert!(RateLimit::new(5.0, 0).unwrap_err().contains("--kube-burst: 0"));
        assert!(RateLimit::new(0.5, 1).is_ok());
    }

    /// Answers at once, counting calls.
    #[derive(Clone, Default)]
    struct Counting(Arc<std::sync::atomic::AtomicUsize>);

    impl Service<()> for Counting {
        type Response = ();
        type Error = BoxError;
        type Future = std::future::Ready<Result<(), BoxError>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, (): ()) -> Self::Future {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            std::future::ready(Ok(()))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_passes_at_once_then_requests_go_at_the_sustained_rate() {
        let throttle = Throttle::new(RateLimit::new(10.0, 5).unwrap());
        let sent = Counting::default();
        let mut service = ThrottleLayer(throttle).layer(sent.clone());
        let started = Instant::now();
        for _ in 0..5 {
            service.ready().await.unwrap().call(()).await.unwrap();
        }
        assert_eq!(started.elapsed(), Duration::ZERO, "the burst waits for nothing");
        for _ in 0..10 {
            service.ready().await.unwrap().call(()).await.unwrap();
        }
        let took = started.elapsed();
        assert_eq!(sent.0.load(std::sync::atomic::Ordering::Relaxed), 15);
        assert!(took >= Duration::from_millis(999) && took <= Duration::from_millis(1001), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn clients_sharing_a_throttle_share_its_rate_and_a_quiet_spell_refills_only_up_to_the_burst() {
        let throttle = Throttle::new(RateLimit::new(4.0, 2).unwrap());
        let (a, b) = (Counting::default(), Counting::default());
        let mut first = ThrottleLayer(throttle.clone()).layer(a.clone());
        let mut second = ThrottleLayer(throttle).layer(b.clone());
        tokio::time::sleep(Duration::from_secs(60)).await;
        let started = Instant::now();
        for _ in 0..3 {
            first.ready().await.unwrap().call(()).await.unwrap();
            second.ready().await.unwrap().call(()).await.unwrap();
        }
        // 6 requests: 2 from the burst, 4 more at 4/s.
        assert_eq!(started.elapsed(), Duration::from_secs(1));
    }
}
