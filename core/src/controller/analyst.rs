//! The bridge from the controller to the analysis: read the metrics from a source, turn them into
//! the statistics engine's input, decide.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::analysis::{ConfigError, MetricSource, PrometheusSource, decision_input, look_config, measure};
use crate::api::Routing;
use crate::api::{ArmSamples, Experiment, defaults};
use crate::stats::decision::decide;

use super::{Analyst, Decided};

/// Picks the metric source for an experiment; only its configuration can make that fail.
pub(crate) type SourceFor = dyn Fn(&Experiment) -> Result<Arc<dyn MetricSource>, ConfigError> + Send + Sync;

/// An analyst over any metric source.
pub struct SourceAnalyst {
    source_for: Box<SourceFor>,
}

impl SourceAnalyst {
    pub(crate) fn new(
        source_for: impl Fn(&Experiment) -> Result<Arc<dyn MetricSource>, ConfigError> + Send + Sync + 'static,
    ) -> Self {
        SourceAnalyst { source_for: Box::new(source_for) }
    }

    /// The same source for every experiment (the embedded simulation, a test double).
    pub fn fixed(source: Arc<dyn MetricSource>) -> Self {
        Self::new(move |_| Ok(source.clone()))
    }

    /// Each experiment's `spec.analysis.provider.prometheus.address`, else `default_address`.
    pub fn prometheus(default_address: Option<String>) -> Self {
        Self::new(move |exp| {
            let address = exp
                .spec
                .analysis
                .as_ref()
                .and_then(|a| a.provider.as_ref())
                .and_then(|p| p.prometheus.as_ref())
                .map(|p| p.address.clone())
                .or_else(|| default_address.clone())
                .ok_or(ConfigError::NoProvider)?;
            Ok(Arc::new(PrometheusSource::new(&address)?) as Arc<dyn MetricSource>)
        })
    }
}

impl Analyst for SourceAnalyst {
    fn decide<'a>(
        &'a self,
        exp: &'a Experiment,
        mode: Routing,
        window: Duration,
        weights: &'a [(String, i32)],
    ) -> Decided<'a> {
        Box::pin(async move {
            let source = (self.source_for)(exp)?;
            let measured = measure(exp, mode, window, source.as_ref(), defaults::ANALYSIS_DEADLINE).await?;
            let weights: BTreeMap<String, f64> = weights.iter().map(|(arm, w)| (arm.clone(), f64::from(*w))).collect();
            let input = decision_input(exp, &measured, &weights)?;
            let decision = decide(&input, &look_config(exp, window)?).map_err(ConfigError::Decision)?;
            // Samples per arm: the trials of the first metric.
            let samples = measured
                .metrics
                .first()
                .map(|m| {
                    m.arms.iter().map(|(arm, c)| ArmSamples { arm: arm.clone(), samples: c.trials.round() }).collect()
                })
                .unwrap_or_default();
            Ok((decision, samples))
        })
    }
}

#[cfg(test)]
#[path = "analyst_tests.rs"]
mod tests;
