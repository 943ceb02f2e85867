//! The Prometheus metric source: instant queries at "now" (whole seconds) through
//! prometheus-http-query.

use std::str::FromStr;
use std::time::Duration;

use prometheus_http_query::{Client, Error, response::Data};

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

    /// Evaluates `query` at `at` (Unix seconds, the API's resolution).
    async fn query(&self, query: &str, at: i64) -> Result<f64, SourceError> {
        let unreachable = |message: String| SourceError::Unreachable { source_name: self.address.clone(), message };
        // POST: rendered queries can outgrow what proxies accept in a URL.
        let answer = tokio::time::timeout(self.timeout, self.client.query(query).at(at).post())
            .await
            .map_err(|_| unreachable(format!("no answer within {:?}", self.timeout)))?;
        let result = match answer {
            Ok(result) => result,
            // bad_data: Prometheus cannot parse the query (HTTP 400); other errors (timeouts,
            // execution, 5xx) may pass.
            Err(Error::Prometheus(e)) if e.is_bad_data() => {
                return Err(SourceError::Rejected { query: query.into(), message: e.to_string() });
            }
            Err(Error::Prometheus(e)) => {
                return Err(SourceError::Query { query: query.into(), message: e.to_string() });
            }
            Err(e) => return Err(unreachable(chain(&e))),
        };
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
