//! A Kubernetes client whose requests fail before they leave when a test says so: a network that
//! drops them, or a controller process that is gone.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower::{BoxError, Layer, Service};

/// Decides, per request (method and path), whether it fails; it may count what it sees.
type Refuse = Arc<dyn Fn(&http::Method, &str) -> bool + Send + Sync>;

/// A client on `config` whose requests fail with `why` whenever `refuse` says so.
pub fn refusing_client(
    config: kube::Config,
    why: &'static str,
    refuse: impl Fn(&http::Method, &str) -> bool + Send + Sync + 'static,
) -> kube::Client {
    let layer = Refusing { refuse: Arc::new(refuse), why };
    kube::client::ClientBuilder::try_from(config).expect("a client config").with_layer(&layer).build()
}

#[derive(Clone)]
struct Refusing {
    refuse: Refuse,
    why: &'static str,
}

impl<S> Layer<S> for Refusing {
    type Service = Refused<S>;
    fn layer(&self, inner: S) -> Refused<S> {
        Refused { inner, refuse: self.refuse.clone(), why: self.why }
    }
}

#[derive(Clone)]
struct Refused<S> {
    inner: S,
    refuse: Refuse,
    why: &'static str,
}

impl<S, B> Service<http::Request<B>> for Refused<S>
where
    S: Service<http::Request<B>>,
    S::Response: Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if (self.refuse)(request.method(), request.uri().path()) {
            return Box::pin(std::future::ready(Err(self.why.into())));
        }
        let answer = self.inner.call(request);
        Box::pin(async move { answer.await.map_err(Into::into) })
    }
}
