//! Labelled counters sampled once per tick, answering [`CounterStore::increase`] for any label
//! matchers as Prometheus would: a series exists from the tick of its first increment, one created
//! inside the window counts from zero, and no matching series is `None`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::metrics::embedded::CounterStore;
use crate::metrics::expr::Matcher;

pub(crate) type Labels = Vec<(&'static str, String)>;

struct Series {
    labels: Labels,
    /// The tick of the first increment.
    born: usize,
    /// The total at the end of each tick from `born` on.
    totals: Vec<f64>,
}

impl Series {
    fn label(&self, name: &str) -> &str {
        self.labels.iter().find(|(k, _)| *k == name).map_or("", |(_, v)| v.as_str())
    }

    /// The total at time `t` (in ticks; the end of tick `t − 1`).
    fn at(&self, t: usize) -> f64 {
        if t <= self.born { 0.0 } else { self.totals[(t - self.born - 1).min(self.totals.len() - 1)] }
    }
}

/// The counters of one simulated experiment.
pub(crate) struct Counters {
    tick: Duration,
    /// Ticks completed.
    now: usize,
    series: HashMap<&'static str, Vec<Series>>,
    index: HashMap<(&'static str, Labels), usize>,
}

impl Counters {
    pub(crate) fn new(tick: Duration) -> Self {
        Counters { tick, now: 0, series: HashMap::new(), index: HashMap::new() }
    }

    /// Adds `value` to the series in the tick under way (the `now`-th).
    pub(crate) fn add(&mut self, metric: &'static str, labels: Labels, value: f64) {
        if value <= 0.0 {
            return;
        }
        let now = self.now;
        let all = self.series.entry(metric).or_default();
        let i = *self.index.entry((metric, labels.clone())).or_insert_with(|| {
            all.push(Series { labels, born: now, totals: vec![0.0] });
            all.len() - 1
        });
        *all[i].totals.last_mut().expect("a series has a total per tick") += value;
    }

    /// Closes the tick under way.
    pub(crate) fn end_tick(&mut self) {
        self.now += 1;
        for s in self.series.values_mut().flatten() {
            let last = *s.totals.last().expect("a series has a total per tick");
            s.totals.push(last);
        }
    }

    fn ticks(&self, d: Duration) -> usize {
        (d.as_secs_f64() / self.tick.as_secs_f64()).round() as usize
    }

    pub(crate) fn increase(&self, metric: &str, matchers: &[Matcher], window: Duration, ago: Duration) -> Option<f64> {
        let end = self.now.checked_sub(self.ticks(ago))?;
        let start = end.saturating_sub(self.ticks(window));
        let mut hits = self
            .series
            .get(metric)?
            .iter()
            .filter(|s| s.born < end && matchers.iter().all(|m| m.matches(s.label(&m.label))))
            .map(|s| s.at(end) - s.at(start))
            .peekable();
        hits.peek()?;
        Some(hits.sum())
    }
}

/// The counters shared with the metric source the analyst reads.
#[derive(Clone)]
pub(crate) struct Shared(pub Arc<RwLock<Counters>>);

impl CounterStore for Shared {
    fn increase(&self, metric: &str, matchers: &[Matcher], window: Duration, ago: Duration) -> Option<f64> {
        self.0.read().expect("counters lock").increase(metric, matchers, window, ago)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::expr::parse;

    fn ask(c: &Counters, query: &str, ago: u64) -> Option<f64> {
        let s = &parse(query).unwrap()[0].selectors[0];
        c.increase(&s.metric, &s.matchers, s.range, Duration::from_secs(60 * ago))
    }

    #[test]
    fn increases_follow_prometheus_for_windows_births_and_matchers() {
        let mut c = Counters::new(Duration::from_secs(60));
        let l = |code: &str| vec![("code", code.to_string()), ("cohort", "assigned".to_string())];
        for t in 0..10 {
            c.add("req", l("200"), 10.0);
            if t >= 5 {
                c.add("req", l("500"), 1.0);
            }
            c.end_tick();
        }
        assert_eq!(ask(&c, "sum(increase(req[3m]))", 0), Some(33.0));
        assert_eq!(ask(&c, "sum(increase(req[1h]))", 0), Some(105.0));
        assert_eq!(ask(&c, r#"sum(increase(req{code=~"5.."}[2m]))"#, 0), Some(2.0));
        assert_eq!(ask(&c, r#"sum(increase(req{code=~"5.."}[2m]))"#, 5), None, "not born yet 5 minutes ago");
        assert_eq!(ask(&c, r#"sum(increase(req{code="200"}[2m]))"#, 5), Some(20.0));
        assert_eq!(ask(&c, r#"sum(increase(req{cohort=""}[2m]))"#, 0), None);
        assert_eq!(ask(&c, r#"sum(increase(req{missing=""}[2m]))"#, 0), Some(22.0), "a missing label is empty");
        assert_eq!(ask(&c, "sum(increase(other[2m]))", 0), None);
    }
}
