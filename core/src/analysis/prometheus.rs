//! The Prometheus metric source: instant queries at "now" (whole seconds), and range queries
//! ending now for per-interval batches, through prometheus-http-query.

use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use prometheus_http_query::{Client, Error, response::Data, response::PromqlResult};

use super::builtins::QueryPair;
use super::error::ConfigError;
use super::source::{BoxFuture, Counts, MetricSource, SourceError, combine};

/// How long one query may take before the source counts as unreachable. reqwest's default
/// client has no timeout, and a black-holed address would otherwise stall a reconcile.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct PrometheusSource {
    client: Client,
    address: String,
    timeout: Duration,
}

impl PrometheusSource {
    /// `address` as in `spec.analysis.provider.prometheus.address`, e.g. `http://prometheus:9090`.
    pub fn new(address: &str) -> Result<Self, ConfigError> {
        let client = Client::from_str(address)
            .map_err(|e| ConfigError::Address { address: address.into(), message: chain(&e) })?;
        Ok(Self { client, address: address.into(), timeout: DEFAULT_TIMEOUT })
    }

    pub fn with_timeout(self, timeout: Duration) -> Self {
        Self { timeout, ..self }
    }

    /// Sends one request (instant or range query) with the source's timeout and maps its errors.
    async fn send(
        &self,
        query: &str,
        request: impl Future<Output = Result<PromqlResult, Error>>,
    ) -> Result<PromqlResult, SourceError> {
        let unreachable = |message: String| SourceError::Unreachable { source_name: self.address.clone(), message };
        let answer = tokio::time::timeout(self.timeout, request)
            .await
            .map_err(|_| unreachable(format!("no answer within {:?}", self.timeout)))?;
        match answer {
            Ok(result) => Ok(result),
            // bad_data: Prometheus cannot parse the query (HTTP 400); other errors (timeouts,
            // execution, 5xx) may pass.
            Err(Error::Prometheus(e)) if e.is_bad_data() => {
                Err(SourceError::Rejected { query: query.into(), message: e.to_string() })
            }
            Err(Error::Prometheus(e)) => Err(SourceError::Query { query: query.into(), message: e.to_string() }),
            Err(e) => Err(unreachable(chain(&e))),
        }
    }

    /// Evaluates `query` at `at` (Unix seconds, the API's resolution).
    async fn query(&self, query: &str, at: i64) -> Result<f64, SourceError> {
        // POST: rendered queries can outgrow what proxies accept in a URL.
        let result = self.send(query, self.client.query(query).at(at).post()).await?;
        let value = match result.data() {
            Data::Scalar(sample) => sample.value(),
            Data::Vector(v) if v.is_empty() => return Err(no_data(query, "empty result")),
            Data::Vector(v) if v.len() == 1 => v[0].sample().value(),
            Data::Vector(v) => {
                return Err(SourceError::Rejected {
                    query: query.into(),
                    message: format!("returned {} series; aggregate it to one, e.g. with sum()", v.len()),
                });
            }
            Data::Matrix(_) => {
                return Err(SourceError::Rejected {
                    query: query.into(),
                    message: "returned a range vector; an instant value is needed".into(),
                });
            }
        };
        if value.is_nan() { Err(no_data(query, "NaN")) } else { Ok(value) }
    }

    /// Evaluates `query` at `count` instants `step` apart ending at `end` (Unix seconds), in one
    /// range query.
    async fn range(&self, query: &str, step: Duration, count: usize, end: i64) -> Result<Vec<f64>, SourceError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let step = step.as_secs().max(1) as i64;
        let start = end - (count as i64 - 1) * step;
        let result = self.send(query, self.client.query_range(query, start, end, step as f64).post()).await?;
        let samples = match result.data() {
            Data::Matrix(m) if m.is_empty() => return Err(no_data(query, "empty result")),
            Data::Matrix(m) if m.len() == 1 => m[0].samples(),
            Data::Matrix(m) => {
                return Err(SourceError::Rejected {
                    query: query.into(),
                    message: format!("returned {} series; aggregate it to one, e.g. with sum()", m.len()),
                });
            }
            _ => {
                return Err(SourceError::Rejected {
                    query: query.into(),
                    message: "a range query returned no matrix".into(),
                });
            }
        };
        (0..count as i64)
            .map(|i| {
                let at = (start + i * step) as f64;
                match samples.iter().find(|s| s.timestamp() == at).map(|s| s.value()) {
                    Some(v) if !v.is_nan() => Ok(v),
                    Some(_) => Err(no_data(query, &format!("NaN at {at}"))),
                    None => Err(no_data(query, &format!("no point at {at}"))),
                }
            })
            .collect()
    }
}

fn no_data(query: &str, why: &str) -> SourceError {
    SourceError::NoData { query: query.into(), why: why.into() }
}

/// An error with its causes: prometheus-http-query's own message alone is often just
/// "failed to send request".
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

impl MetricSource for PrometheusSource {
    fn value<'a>(&'a self, query: &'a str) -> BoxFuture<'a, Result<f64, SourceError>> {
        Box::pin(self.query(query, unix_now()))
    }

    fn values<'a>(
        &'a self,
        query: &'a str,
        step: Duration,
        count: usize,
    ) -> BoxFuture<'a, Result<Vec<f64>, SourceError>> {
        Box::pin(self.range(query, step, count, unix_now()))
    }

    /// Both queries at one instant: `increase()` extrapolates to the end of its window, so
    /// queries a few milliseconds apart scale their counts differently and skew the ratio.
    fn counts<'a>(&'a self, pair: &'a QueryPair) -> BoxFuture<'a, Result<Counts, SourceError>> {
        Box::pin(async move {
            let at = unix_now();
            let (trials, successes) = tokio::join!(self.query(&pair.trial, at), self.query(&pair.success, at));
            combine(pair, trials, successes)
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Instant;

    use super::*;

    /// The address of a "Prometheus" that accepts connections and never answers.
    pub(crate) async fn silent() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((connection, _)) = listener.accept().await {
                held.push(connection);
            }
        });
        address
    }

    #[tokio::test]
    async fn a_query_without_an_answer_times_out_as_unreachable() {
        let timeout = Duration::from_millis(300);
        let source = PrometheusSource::new(&silent().await).unwrap().with_timeout(timeout);
        let started = Instant::now();
        let answer = source.value("sum(up)").await;
        assert!(
            matches!(&answer, Err(SourceError::Unreachable { message, .. }) if message.starts_with("no answer within")),
            "{answer:?}"
        );
        assert!(started.elapsed() >= timeout && started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    }
}
