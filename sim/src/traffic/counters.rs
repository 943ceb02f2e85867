//! The simulation's counters as the embedded metric source reads them: the exposition is
//! "scraped" into a history on the simulated clock, and `increase(...[window])` is the growth
//! of each series since the scrape `window` ago (a series born inside the window counts from 0),
//! as Prometheus computes it, without its extrapolation.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;

use crate::metrics::{CounterStore, Matcher};
use forklane_core::clock::Clock;

use super::Metrics;

/// One series: metric name and sorted labels.
type Series = (String, Vec<(String, String)>);
type Samples = BTreeMap<Series, f64>;
/// Scrapes in time order.
type Scrapes = VecDeque<(Timestamp, Arc<Samples>)>;

/// How much history to keep (simulated): the longest window an analysis may ask for.
const KEEP: Duration = Duration::from_secs(48 * 3600);

#[derive(Clone)]
pub struct CounterHistory {
    metrics: Metrics,
    clock: Clock,
    scrapes: Arc<Mutex<Scrapes>>,
}

impl CounterHistory {
    pub(crate) fn new(metrics: Metrics, clock: Clock) -> Self {
        let history = CounterHistory { metrics, clock, scrapes: Arc::default() };
        history.scrape();
        history
    }

    /// Records the counters as they are now.
    pub fn scrape(&self) -> Arc<Samples> {
        let now = self.clock.now();
        let samples = Arc::new(parse_exposition(&self.metrics.encode()));
        let mut scrapes = self.scrapes.lock().expect("not poisoned");
        scrapes.push_back((now, samples.clone()));
        while scrapes.front().is_some_and(|(t, _)| t.duration_until(now).as_secs_f64() > KEEP.as_secs_f64()) {
            scrapes.pop_front();
        }
        samples
    }

    /// Scrapes every `every` (real time) until the handle is aborted.
    pub(crate) fn spawn_scraper(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let history = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                history.scrape();
            }
        })
    }

    /// The latest scrape at or before `t`.
    fn at(&self, t: Timestamp) -> Option<Arc<Samples>> {
        let scrapes = self.scrapes.lock().expect("not poisoned");
        scrapes.iter().rev().find(|(at, _)| *at <= t).map(|(_, s)| s.clone())
    }
}

impl CounterStore for CounterHistory {
    fn increase(&self, metric: &str, matchers: &[Matcher], window: Duration, ago: Duration) -> Option<f64> {
        // A window ending now reads the counters as they are; one ending earlier, the last scrape
        // before its end (as Prometheus would), so adjacent windows share their boundary scrape.
        let now = if ago.is_zero() {
            self.scrape()
        } else {
            self.at(self.clock.now() - jiff::SignedDuration::try_from(ago).ok()?).unwrap_or_default()
        };
        let start = self.clock.now() - jiff::SignedDuration::try_from(window + ago).ok()?;
        let before = self.at(start).unwrap_or_default();
        let matching = |labels: &[(String, String)]| {
            matchers
                .iter()
                .all(|m| m.matches(labels.iter().find(|(k, _)| *k == m.label).map_or("", |(_, v)| v.as_str())))
        };
        let mut found = false;
        let mut total = 0.0;
        for ((name, labels), value) in now.iter() {
            if name == metric && matching(labels) {
                found = true;
                let base = before.get(&(name.clone(), labels.clone())).copied().unwrap_or(0.0);
                // A counter that went down was reset: count from zero, as `increase` does.
                total += if *value >= base { value - base } else { *value };
            }
        }
        found.then_some(total)
    }
}

/// Parses Prometheus' text exposition into samples (comments and `# EOF` skipped).
pub(crate) fn parse_exposition(text: &str) -> Samples {
    let mut out = Samples::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        if let Some((series, value)) = parse_line(line) {
            out.insert(series, value);
        }
    }
    out
}

fn parse_line(line: &str) -> Option<(Series, f64)> {
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_string();
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        let mut end = None;
        let (mut key, mut value, mut in_value, mut escaped) = (String::new(), String::new(), false, false);
        while let Some((i, c)) = chars.next() {
            match (in_value, escaped, c) {
                (true, true, 'n') => (value.push('\n'), escaped = false).1,
                (true, true, c) => (value.push(c), escaped = false).1,
                (true, false, '\\') => escaped = true,
                (true, false, '"') => {
                    labels.push((std::mem::take(&mut key), std::mem::take(&mut value)));
                    in_value = false;
                }
                (true, false, c) => value.push(c),
                (false, _, '=') => {
                    chars.next_if(|(_, c)| *c == '"')?;
                    in_value = true;
                }
                (false, _, ',' | ' ') => {}
                (false, _, '}') => {
                    end = Some(i);
                    break;
                }
                (false, _, c) => key.push(c),
            }
        }
        rest = &body[end? + 1..];
    }
    let value: f64 = rest.split_whitespace().next()?.parse().ok()?;
    labels.sort();
    Some(((name, labels), value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::MatchOp;

    #[test]
    fn parses_labels_with_escapes() {
        let samples = parse_exposition("# HELP x y\nreqs_total{a=\"1\",b=\"q\\\"}\\n\"} 7\nplain 2.5\n");
        assert_eq!(samples[&("reqs_total".into(), vec![("a".into(), "1".into()), ("b".into(), "q\"}\n".into())])], 7.0);
        assert_eq!(samples[&("plain".into(), vec![])], 2.5);
    }

    #[test]
    fn increase_counts_growth_inside_the_window_only() {
        let clock = Clock::scaled(1.0);
        let history = CounterHistory { metrics: Metrics::new(), clock, scrapes: Arc::default() };
        let t0 = clock.now() - jiff::SignedDuration::from_secs(120);
        let series = |v: &str| ("orders_total".to_string(), vec![("version".to_string(), v.to_string())]);
        let old: Samples = [(series("v1"), 10.0)].into();
        history.scrapes.lock().unwrap().push_back((t0, Arc::new(old)));
        let m = |v: &str| Matcher { label: "version".into(), op: MatchOp::Equal(v.into()) };
        // The live exposition has no orders_total: nothing matches now.
        assert_eq!(history.increase("orders_total", &[m("v1")], Duration::from_secs(60), Duration::ZERO), None);
    }

    #[test]
    fn increase_of_an_earlier_window_reads_the_scrapes_at_its_ends() {
        let clock = Clock::scaled(1.0);
        let history = CounterHistory { metrics: Metrics::new(), clock, scrapes: Arc::default() };
        let series = |v: &str| ("orders_total".to_string(), vec![("version".to_string(), v.to_string())]);
        let now = clock.now();
        for (secs_ago, v1, v2) in [(300, 1.0, 0.0), (200, 4.0, 2.0), (100, 10.0, 3.0)] {
            let samples: Samples = [(series("v1"), v1), (series("v2"), v2)].into();
            history
                .scrapes
                .lock()
                .unwrap()
                .push_back((now - jiff::SignedDuration::from_secs(secs_ago), Arc::new(samples)));
        }
        let m = |v: &str| Matcher { label: "version".into(), op: MatchOp::Equal(v.into()) };
        let window = Duration::from_secs(100);
        let batch = |v: &str, ago: u64| history.increase("orders_total", &[m(v)], window, Duration::from_secs(ago));
        // (200 s ago, 100 s ago]: from the scrape 200 s ago to the one 100 s ago.
        assert_eq!(batch("v1", 100), Some(6.0));
        assert_eq!(batch("v1", 150), Some(3.0));
        assert_eq!(batch("v2", 100), Some(1.0));
        // Both arms together, over two windows back to back.
        let any = Matcher { label: "version".into(), op: MatchOp::Regex(regex::Regex::new("^(?:v1|v2)$").unwrap()) };
        let all = history.increase("orders_total", &[any], window * 2, Duration::from_secs(100));
        assert_eq!(all, Some(9.0 + 3.0));
    }
}
