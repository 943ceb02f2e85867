//! Where counts come from. A failure is never read as a pass or a fail: a rejected query is a
//! configuration error (see `AnalysisError::reading`), every other one means "metrics
//! unavailable" and the controller holds the experiment's weights.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use super::builtins::QueryPair;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One arm's counts for one metric. Counts are f64 because `increase()` extrapolates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Counts {
    pub successes: f64,
    pub trials: f64,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SourceError {
    #[error("metrics source {source_name} is unreachable: {message}")]
    Unreachable { source_name: String, message: String },
    #[error("query `{query}` failed: {message}")]
    Query { query: String, message: String },
    #[error("query `{query}` returned no data ({why})")]
    NoData { query: String, why: String },
    /// The source will never answer the query as written: a syntax error, or an answer that is
    /// not one instant value (several series, a range vector).
    #[error("query `{query}` is rejected: {message}")]
    Rejected { query: String, message: String },
    /// The look's deadline passed before the source answered.
    #[error("no answer within the look's deadline of {0:?}")]
    Deadline(Duration),
}

pub trait MetricSource: Send + Sync {
    /// The single value of `query` evaluated now. An empty result, or NaN, is `NoData`.
    fn value<'a>(&'a self, query: &'a str) -> BoxFuture<'a, Result<f64, SourceError>>;

    /// The values of `query` at `count` instants `step` apart, the last one now, oldest first:
    /// per-interval batches when the query's window is `step`. A missing or NaN point is
    /// `NoData`, as for [`value`](Self::value).
    fn values<'a>(
        &'a self,
        query: &'a str,
        step: Duration,
        count: usize,
    ) -> BoxFuture<'a, Result<Vec<f64>, SourceError>>;

    /// Successes and trials of one arm, by [`combine`]. A source whose answers depend on
    /// the evaluation time should evaluate both queries at one instant.
    fn counts<'a>(&'a self, pair: &'a QueryPair) -> BoxFuture<'a, Result<Counts, SourceError>> {
        Box::pin(async move {
            let trials = self.value(&pair.trial).await;
            let successes = self.value(&pair.success).await;
            combine(pair, trials, successes)
        })
    }
}

/// The trial query must have data. A success query without data next to trials that have
/// data counts zero successes: Prometheus has no series for errors that never happened
/// (`response_code=~"5.."` of a healthy arm). Infinite values are query errors.
pub(crate) fn combine(
    pair: &QueryPair,
    trials: Result<f64, SourceError>,
    successes: Result<f64, SourceError>,
) -> Result<Counts, SourceError> {
    let trials = finite(&pair.trial, trials?)?;
    let successes = count_or_zero(&pair.success, successes)?;
    Ok(Counts { successes, trials })
}

/// A count whose query has no series yet counts zero: nothing has happened. Infinite values
/// are query errors.
pub(crate) fn count_or_zero(query: &str, read: Result<f64, SourceError>) -> Result<f64, SourceError> {
    match read {
        Err(SourceError::NoData { .. }) => Ok(0.0),
        other => finite(query, other?),
    }
}

fn finite(query: &str, v: f64) -> Result<f64, SourceError> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(SourceError::Query { query: query.to_string(), message: format!("value {v} is not a finite count") })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    struct Fixed(HashMap<&'static str, Result<f64, SourceError>>);

    impl MetricSource for Fixed {
        fn value<'a>(&'a self, query: &'a str) -> BoxFuture<'a, Result<f64, SourceError>> {
            let answer = self
                .0
                .get(query)
                .cloned()
                .unwrap_or(Err(SourceError::NoData { query: query.into(), why: "empty vector".into() }));
            Box::pin(async move { answer })
        }

        fn values<'a>(
            &'a self,
            query: &'a str,
            _: Duration,
            count: usize,
        ) -> BoxFuture<'a, Result<Vec<f64>, SourceError>> {
            Box::pin(async move { Ok(vec![self.value(query).await?; count]) })
        }
    }

    fn pair() -> QueryPair {
        QueryPair { success: "s".into(), trial: "t".into() }
    }

    fn counts(answers: Vec<(&'static str, Result<f64, SourceError>)>) -> Result<Counts, SourceError> {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let source: &dyn MetricSource = &Fixed(answers.into_iter().collect());
        rt.block_on(source.counts(&pair()))
    }

    #[test]
    fn missing_successes_next_to_trials_count_zero() {
        assert_eq!(counts(vec![("t", Ok(120.0))]), Ok(Counts { successes: 0.0, trials: 120.0 }));
        assert_eq!(counts(vec![("t", Ok(120.0)), ("s", Ok(3.0))]), Ok(Counts { successes: 3.0, trials: 120.0 }));
    }

    #[test]
    fn missing_trials_and_failures_are_errors() {
        assert!(matches!(counts(vec![("s", Ok(3.0))]), Err(SourceError::NoData { query, .. }) if query == "t"));
        let down = SourceError::Unreachable { source_name: "p".into(), message: "refused".into() };
        assert_eq!(counts(vec![("t", Ok(1.0)), ("s", Err(down.clone()))]), Err(down));
        assert!(
            matches!(counts(vec![("t", Ok(f64::INFINITY))]), Err(SourceError::Query { query, .. }) if query == "t")
        );
    }
}
