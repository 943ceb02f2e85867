//! The controller's own metrics (prometheus-client) and readiness; `forklane run` serves them
//! as `/metrics`, `/healthz` and `/readyz`.

use std::sync::atomic::AtomicBool;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabel {
    pub phase: String,
}

pub struct Metrics {
    registry: Registry,
    pub reconciles: Counter,
    pub errors: Counter,
    pub decisions: Family<OutcomeLabel, Counter>,
    pub experiments: Family<PhaseLabel, Gauge>,
    pub reconcile_seconds: Histogram,
    pub ready: AtomicBool,
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
        Metrics {
            registry,
            reconciles,
            errors,
            decisions,
            experiments,
            reconcile_seconds,
            ready: AtomicBool::new(false),
        }
    }
}

impl Metrics {
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
