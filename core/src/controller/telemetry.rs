//! The controller's own metrics (prometheus-client), readiness and liveness; `forklane run` serves
//! them as `/metrics`, `/readyz` and `/healthz`.

mod experiments;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

pub use experiments::ExperimentSeries;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabel {
    pub phase: String,
}

/// How often a running loop beats.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(5);

/// A running loop whose last beat is older than this is stuck: `/healthz` fails.
pub const STALE_AFTER: Duration = Duration::from_secs(3 * HEARTBEAT.as_secs());

/// The loops `/healthz` vouches for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loop {
    /// Leader election: standing by, or watching the lease while the controller runs.
    Election,
    /// The controller's own stream of reconciles, on the leader.
    Controller,
}

impl Loop {
    const ALL: [Loop; 2] = [Loop::Election, Loop::Controller];

    fn name(self) -> &'static str {
        match self {
            Loop::Election => "leader election",
            Loop::Controller => "controller",
        }
    }
}

pub struct Metrics {
    registry: Registry,
    pub reconciles: Counter,
    pub errors: Counter,
    pub decisions: Family<OutcomeLabel, Counter>,
    pub experiments: Family<PhaseLabel, Gauge>,
    pub reconcile_seconds: Histogram,
    /// Per experiment: weights, phase, last decision.
    pub experiment_series: ExperimentSeries,
    /// This process has reached the API server and takes part in leader election.
    pub ready: AtomicBool,
    started: Instant,
    /// Per [`Loop`]: 1 + milliseconds from `started` to its last beat; 0 while it does not run.
    beats: [AtomicU64; 2],
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("forklane");
        let reconciles = Counter::default();
        let errors = Counter::default();
        let decisions = Family::<OutcomeLabel, Counter>::default();
        let experiments = Family::<PhaseLabel, Gauge>::default();
        let reconcile_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register("reconciles", "Reconciles run", reconciles.clone());
        registry.register("reconcile_errors", "Reconciles that failed", errors.clone());
        registry.register("decisions", "Analysis decisions by outcome", decisions.clone());
        registry.register("experiments", "Experiments by phase", experiments.clone());
        registry.register("reconcile_duration_seconds", "Time of one reconcile", reconcile_seconds.clone());
        let experiment_series = ExperimentSeries::default();
        experiment_series.register(&mut registry);
        Metrics {
            registry,
            reconciles,
            errors,
            decisions,
            experiments,
            reconcile_seconds,
            experiment_series,
            ready: AtomicBool::new(false),
            started: Instant::now(),
            beats: Default::default(),
        }
    }
}

impl Metrics {
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }

    /// `running` shows it is turning (now).
    pub fn beat(&self, running: Loop) {
        let since = self.started.elapsed().as_millis() as u64;
        self.beats[running as usize].store(since + 1, Ordering::Relaxed);
    }

    /// `ended` stopped on purpose: its silence is no failure.
    pub(crate) fn stop(&self, ended: Loop) {
        self.beats[ended as usize].store(0, Ordering::Relaxed);
    }

    /// How long since `running` last beat; `None` while it does not run.
    pub fn silence(&self, running: Loop) -> Option<Duration> {
        let last = self.beats[running as usize].load(Ordering::Relaxed).checked_sub(1)?;
        Some(self.started.elapsed().saturating_sub(Duration::from_millis(last)))
    }

    /// Why the process is unhealthy: a running loop has not beaten for longer than `stale_after`.
    pub fn unhealthy(&self, stale_after: Duration) -> Option<String> {
        Loop::ALL.into_iter().find_map(|running| {
            let silent = self.silence(running)?;
            (silent > stale_after).then(|| format!("the {} loop has not beaten for {silent:.1?}", running.name()))
        })
    }
}

/// Beats `running` on every tick of a [`HEARTBEAT`] interval the loop polls next to its work, and
/// marks it stopped when dropped (the loop ended or was cancelled).
pub(crate) struct Heartbeat<'a> {
    metrics: &'a Metrics,
    running: Loop,
    ticks: tokio::time::Interval,
}

impl<'a> Heartbeat<'a> {
    pub(crate) fn new(metrics: &'a Metrics, running: Loop) -> Self {
        let mut ticks = tokio::time::interval(HEARTBEAT);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Heartbeat { metrics, running, ticks }
    }

    /// Resolves at the next tick, having beaten: one branch of the loop's `select!`.
    pub(crate) async fn tick(&mut self) {
        self.ticks.tick().await;
        self.metrics.beat(self.running);
    }
}

impl Drop for Heartbeat<'_> {
    fn drop(&mut self) {
        self.metrics.stop(self.running);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_heartbeat_beats_on_each_tick_and_stops_when_dropped() {
        let metrics = Metrics::default();
        assert_eq!(metrics.silence(Loop::Controller), None);
        let mut heartbeat = Heartbeat::new(&metrics, Loop::Controller);
        assert_eq!(metrics.silence(Loop::Controller), None, "no beat before the first tick");
        heartbeat.tick().await;
        let silent = metrics.silence(Loop::Controller).expect("running");
        assert!(silent < Duration::from_secs(1), "{silent:?}");
        assert_eq!(metrics.silence(Loop::Election), None, "only the loop that beat runs");
        drop(heartbeat);
        assert_eq!(metrics.silence(Loop::Controller), None, "a dropped heartbeat marks its loop stopped");
    }
}
