//! The embedded metric source: the same rendered queries as for Prometheus, evaluated
//! against in-process counters (the traffic simulator's) instead of a time-series database.

use std::time::Duration;

use super::expr::{self, Matcher};
use forklane_core::analysis::source::{BoxFuture, MetricSource, SourceError};

/// Counters the embedded source reads; the traffic simulator implements it.
pub trait CounterStore: Send + Sync {
    /// The increase over the `window` that ends `ago` before now (on the store's own clock, which
    /// may be sped up)
    /// of the sum of every counter series named `metric` whose labels all match `matchers`
    /// (a label a series lacks matches as `""`: call `Matcher::matches(value_or_empty)`).
    /// A series created inside the window counts from zero. `None` when no series matches,
    /// as Prometheus returns an empty vector; `Some(0.0)` when series match but did not grow.
    /// Histograms are counters named `<name>_bucket` (with `le`) and `<name>_count`.
    fn increase(&self, metric: &str, matchers: &[Matcher], window: Duration, ago: Duration) -> Option<f64>;
}

pub struct EmbeddedSource<S> {
    store: S,
}

impl<S: CounterStore> EmbeddedSource<S> {
    pub fn new(store: S) -> Self {
        Self { store }
    }

    /// The query's value `ago` before now: each `increase(..[range])` over the range ending then.
    fn evaluate(&self, query: &str, ago: Duration) -> Result<f64, SourceError> {
        let terms = expr::parse(query).map_err(|e| SourceError::Rejected {
            query: query.into(),
            message: format!(
                "the embedded source evaluates only sums and differences of sum(increase(metric{{...}}[range]) [or increase(...)]): {e}"
            ),
        })?;
        let mut total = 0.0;
        for t in &terms {
            // `a or b` is empty when both sides are; as in PromQL, `a - b` when either side is.
            let parts: Vec<f64> =
                t.selectors.iter().filter_map(|s| self.store.increase(&s.metric, &s.matchers, s.range, ago)).collect();
            if parts.is_empty() {
                let names: Vec<String> = t.selectors.iter().map(|s| format!("`{}`", s.metric)).collect();
                return Err(SourceError::NoData {
                    query: query.into(),
                    why: format!("no series of {} matches", names.join(" or ")),
                });
            }
            let v: f64 = parts.iter().sum();
            total += if t.negative { -v } else { v };
        }
        Ok(total)
    }
}

impl<S: CounterStore> MetricSource for EmbeddedSource<S> {
    fn value<'a>(&'a self, query: &'a str) -> BoxFuture<'a, Result<f64, SourceError>> {
        Box::pin(std::future::ready(self.evaluate(query, Duration::ZERO)))
    }

    fn values<'a>(
        &'a self,
        query: &'a str,
        step: Duration,
        count: usize,
    ) -> BoxFuture<'a, Result<Vec<f64>, SourceError>> {
        let values = (0..count).rev().map(|back| self.evaluate(query, step * back as u32)).collect();
        Box::pin(std::future::ready(values))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    type Series = (&'static str, Vec<(&'static str, &'static str)>, f64);

    /// Series with fixed totals, all created inside any window; records the windows (and how
    /// long ago they end) asked for.
    struct Totals(Vec<Series>, Mutex<Vec<(Duration, Duration)>>);

    impl CounterStore for Totals {
        fn increase(&self, metric: &str, matchers: &[Matcher], window: Duration, ago: Duration) -> Option<f64> {
            self.1.lock().unwrap().push((window, ago));
            let label = |labels: &[(&str, &str)], name: &str| {
                labels.iter().find(|(k, _)| *k == name).map_or("", |(_, v)| *v).to_string()
            };
            let hits: Vec<f64> = self
                .0
                .iter()
                .filter(|(m, labels, _)| *m == metric && matchers.iter().all(|x| x.matches(&label(labels, &x.label))))
                .map(|s| s.2)
                .collect();
            (!hits.is_empty()).then(|| hits.iter().sum())
        }
    }

    impl EmbeddedSource<Totals> {
        fn evaluate_now(&self, query: &str) -> Result<f64, SourceError> {
            self.evaluate(query, Duration::ZERO)
        }
    }

    fn source() -> EmbeddedSource<Totals> {
        EmbeddedSource::new(Totals(
            vec![
                ("req", vec![("v", "1"), ("code", "200")], 90.0),
                ("req", vec![("v", "1"), ("code", "503")], 10.0),
                ("req", vec![("v", "2"), ("code", "200")], 50.0),
            ],
            Mutex::new(Vec::new()),
        ))
    }

    #[test]
    fn evaluates_sums_differences_and_matchers() {
        let s = source();
        assert_eq!(s.evaluate_now(r#"sum(increase(req{v="1"}[5m]))"#), Ok(100.0));
        assert_eq!(s.evaluate_now(r#"sum(increase(req{v="1",code=~"5.."}[5m]))"#), Ok(10.0));
        assert_eq!(s.evaluate_now(r#"sum(increase(req[1h])) - sum(increase(req{code!="200"}[1h]))"#), Ok(140.0));
        let now = |secs| (Duration::from_secs(secs), Duration::ZERO);
        assert_eq!(*s.store.1.lock().unwrap(), [now(300), now(300), now(3600), now(3600)]);
    }

    #[test]
    fn values_end_one_step_apart_oldest_first() {
        let s = source();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let step = Duration::from_secs(60);
        let values = rt.block_on(s.values(r#"sum(increase(req{v="1"}[1m]))"#, step, 3)).unwrap();
        assert_eq!(values, [100.0; 3]);
        let asked: Vec<Duration> = s.store.1.lock().unwrap().iter().map(|&(_, ago)| ago).collect();
        assert_eq!(asked, [step * 2, step, Duration::ZERO]);
        assert!(matches!(
            rt.block_on(s.values(r#"sum(increase(req{v="3"}[1m]))"#, step, 2)),
            Err(SourceError::NoData { .. })
        ));
    }

    #[test]
    fn a_union_sums_the_selectors_that_have_series_and_is_empty_when_none_has() {
        let s = source();
        assert_eq!(s.evaluate_now(r#"sum(increase(req{v="1"}[5m]) or increase(req{v="2"}[5m]))"#), Ok(150.0));
        assert_eq!(s.evaluate_now(r#"sum(increase(req{v="1"}[5m]) or increase(req{v="3"}[5m]))"#), Ok(100.0));
        assert!(matches!(
            s.evaluate_now(r#"sum(increase(req{v="3"}[5m]) or increase(nope{v="1"}[5m]))"#),
            Err(SourceError::NoData { why, .. }) if why.contains("`req` or `nope`")
        ));
    }

    #[test]
    fn no_matching_series_is_no_data_and_other_queries_are_rejected() {
        let s = source();
        assert!(
            matches!(s.evaluate_now(r#"sum(increase(req{v="3"}[5m]))"#), Err(SourceError::NoData { why, .. }) if why.contains("`req`"))
        );
        assert!(matches!(
            s.evaluate_now(r#"sum(increase(req[5m])) - sum(increase(nope[5m]))"#),
            Err(SourceError::NoData { .. })
        ));
        assert!(
            matches!(s.evaluate_now("rate(req[5m])"), Err(SourceError::Rejected { message, .. }) if message.contains("embedded source"))
        );
    }
}
