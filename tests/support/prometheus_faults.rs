//! A Prometheus for the fault-injection suite: the query API (instant and range queries, GET or
//! POST) answered from any metric source (the sandbox's embedded one, on its sped-up clock), and in
//! front of it, over HTTP, a proxy that injects one fault at a time: no answer at all, NaN values,
//! an empty result for one arm's series, or a 503 from a gateway.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Form, FromRequest, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use forklane_core::analysis::{MetricSource, SourceError};
use serde_json::{Value, json};

/// What the proxy does to a query.
#[derive(Clone, Debug, PartialEq)]
pub enum Mode {
    /// Forwards it.
    Pass,
    /// Accepts the connection and the request and never answers.
    BlackHole,
    /// Answers one series whose every value is NaN.
    NaN,
    /// Answers an empty result for queries of this arm's series (a label matcher `="ARM"`), and
    /// forwards the others.
    EmptyFor(String),
    /// Answers 503 with a gateway's HTML page holding [`GATEWAY_PAGE_MARKER`].
    ServerError,
}

/// In the 503's body: a status that quotes it echoes a response body.
pub const GATEWAY_PAGE_MARKER: &str = "gateway-page-7f3a";

/// The proxy: its address, and the mode it is in.
pub struct FaultyPrometheus {
    pub url: String,
    mode: Arc<Mutex<Mode>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl FaultyPrometheus {
    /// The query API over `source`, behind the proxy (which starts in `Pass`).
    pub async fn start(source: Arc<dyn MetricSource>) -> FaultyPrometheus {
        let (upstream, served) = serve(axum::Router::new().fallback(answer).with_state(source)).await;
        let mode = Arc::new(Mutex::new(Mode::Pass));
        let proxy = axum::Router::new().fallback(inject).with_state((upstream, mode.clone()));
        let (address, proxied) = serve(proxy).await;
        FaultyPrometheus { url: format!("http://{address}"), mode, tasks: vec![served, proxied] }
    }

    pub fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }
}

impl Drop for FaultyPrometheus {
    /// Stops both servers accepting; requests the black hole holds end with the test's runtime.
    fn drop(&mut self) {
        self.tasks.iter().for_each(tokio::task::JoinHandle::abort);
    }
}

async fn serve(router: axum::Router) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let task = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (address, task)
}

/// A query request's parameters (`query`, `time`, `start`, `end`, `step`), from its URL or its
/// form body, and the body as sent.
async fn parameters(request: Request) -> (http::request::Parts, Bytes, HashMap<String, String>) {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
    let mut params: HashMap<String, String> = HashMap::new();
    let query = parts.uri.query().unwrap_or_default().to_string();
    for encoded in [query.into_bytes(), body.to_vec()] {
        let form = Request::builder()
            .method(Method::POST)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(encoded))
            .unwrap();
        if let Ok(Form(more)) = Form::<HashMap<String, String>>::from_request(form, &()).await {
            params.extend(more);
        }
    }
    (parts, body, params)
}

fn number(params: &HashMap<String, String>, name: &str) -> f64 {
    params.get(name).and_then(|v| v.parse().ok()).unwrap_or(0.0)
}

/// The instants of a range query: `start` to `end`, `step` apart.
fn instants(params: &HashMap<String, String>) -> Vec<f64> {
    let (start, end, step) = (number(params, "start"), number(params, "end"), number(params, "step").max(1.0));
    (0..).map(|i| start + f64::from(i) * step).take_while(|t| *t <= end).collect()
}

fn success(result_type: &str, result: Value) -> Response {
    let body = json!({"status": "success", "data": {"resultType": result_type, "result": result}});
    ([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// One series with these values, or none: the answer to an instant (`vector`) or range
/// (`matrix`) query.
fn series(range: bool, params: &HashMap<String, String>, value: Option<&dyn Fn(usize) -> f64>) -> Response {
    let Some(value) = value else {
        return success(if range { "matrix" } else { "vector" }, json!([]));
    };
    if range {
        let points: Vec<Value> =
            instants(params).iter().enumerate().map(|(i, t)| json!([t, value(i).to_string()])).collect();
        success("matrix", json!([{"metric": {}, "values": points}]))
    } else {
        success("vector", json!([{"metric": {}, "value": [number(params, "time"), value(0).to_string()]}]))
    }
}

/// The upstream: Prometheus' query API over `source`.
async fn answer(State(source): State<Arc<dyn MetricSource>>, request: Request) -> Response {
    let (parts, _, params) = parameters(request).await;
    let query = params.get("query").cloned().unwrap_or_default();
    let range = parts.uri.path().ends_with("/query_range");
    let read = if range {
        let count = instants(&params).len();
        let step = Duration::from_secs_f64(number(&params, "step").max(1.0));
        source.values(&query, step, count).await
    } else {
        source.value(&query).await.map(|v| vec![v])
    };
    match read {
        Ok(values) => series(range, &params, Some(&|i| values[i])),
        Err(SourceError::NoData { .. }) => series(range, &params, None),
        Err(error) => {
            let kind = if matches!(error, SourceError::Rejected { .. }) { "bad_data" } else { "execution" };
            let body = json!({"status": "error", "errorType": kind, "error": error.to_string()});
            (StatusCode::BAD_REQUEST, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
        }
    }
}

/// The proxy: the mode's fault, or the upstream's answer.
async fn inject(State((upstream, mode)): State<(SocketAddr, Arc<Mutex<Mode>>)>, request: Request) -> Response {
    let (parts, body, params) = parameters(request).await;
    let range = parts.uri.path().ends_with("/query_range");
    let mode = mode.lock().unwrap().clone();
    match mode {
        Mode::BlackHole => std::future::pending().await,
        Mode::NaN => series(range, &params, Some(&|_| f64::NAN)),
        Mode::EmptyFor(arm) if params.get("query").is_some_and(|q| q.contains(&format!("=\"{arm}\""))) => {
            series(range, &params, None)
        }
        Mode::ServerError => {
            let page = format!("<html><body><h1>503 Service Unavailable</h1>{GATEWAY_PAGE_MARKER}</body></html>");
            (StatusCode::SERVICE_UNAVAILABLE, [(header::CONTENT_TYPE, "text/html")], page).into_response()
        }
        Mode::Pass | Mode::EmptyFor(_) => forward(upstream, parts, body).await,
    }
}

/// Sends the request on to `upstream` over a new connection; a 502 if that fails.
async fn forward(upstream: SocketAddr, parts: http::request::Parts, body: Bytes) -> Response {
    let sent = async {
        let stream = tokio::net::TcpStream::connect(upstream).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let response = sender.send_request(Request::from_parts(parts, Body::from(body))).await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(response.map(Body::new))
    };
    sent.await.unwrap_or_else(|e| (StatusCode::BAD_GATEWAY, e.to_string()).into_response())
}
