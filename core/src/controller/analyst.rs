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

/// The Prometheus servers the controller may query (its flags). An experiment names its own
/// address, and the controller would otherwise fetch any URL an experiment author chose, inside
/// the cluster's network, and report on the answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrometheusAddresses {
    /// For experiments that name no address (`forklane run --prometheus-url`); also allowed.
    pub default: Option<String>,
    /// Further addresses experiments may name (`--allowed-prometheus-address`).
    pub allowed: Vec<String>,
}

impl PrometheusAddresses {
    /// Whether an experiment may name `address`; a trailing `/` makes no difference.
    pub fn allows(&self, address: &str) -> bool {
        let bare = |a: &str| a.trim_end_matches('/').to_string();
        self.default.iter().chain(&self.allowed).any(|a| bare(a) == bare(address))
    }
}

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

    /// Each experiment's `spec.analysis.provider.prometheus.address` if `addresses` allows it,
    /// else the default address.
    pub fn prometheus(addresses: PrometheusAddresses) -> Self {
        Self::new(move |exp| {
            let named = exp
                .spec
                .analysis
                .as_ref()
                .and_then(|a| a.provider.as_ref())
                .and_then(|p| p.prometheus.as_ref())
                .map(|p| p.address.clone());
            let address = match named {
                Some(a) if !addresses.allows(&a) => return Err(ConfigError::AddressNotAllowed { address: a }),
                Some(a) => a,
                None => addresses.default.clone().ok_or(ConfigError::NoProvider)?,
            };
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
