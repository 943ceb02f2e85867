//! `spec.analysis` at run time: PromQL templates and builtins become per-arm success/trial
//! queries, a [`MetricSource`] (Prometheus or the embedded simulation) answers them, and the
//! counts become the statistics engine's input. See docs/analysis.md.

pub(crate) mod builtins;
pub(crate) mod error;
pub(crate) mod evaluate;
pub mod planning;
pub(crate) mod prometheus;
pub mod source;
pub mod template;

pub use builtins::QueryPair;
pub use error::{AnalysisError, ConfigError};
pub use evaluate::{
    Measurements, assignment_queries, decision_config, decision_config_at, decision_input, look_config, measure,
    queries,
};
pub use prometheus::PrometheusSource;
pub use source::{Counts, MetricSource, SourceError};
