//! Per-experiment series, as Flagger exports per canary: the desired weight of each arm, the phase
//! and the last decision (its outcome, the p-value per metric and arm, the samples per arm). Set
//! from the status a reconcile wrote (no API read). Only the current phase and the last outcome
//! have a series (value 1); an experiment's series go when it does (its finalizer removed) or
//! when this replica stops leading it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::api::ExperimentStatus;

type Value = Gauge<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ArmOf {
    namespace: String,
    name: String,
    arm: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseOf {
    namespace: String,
    name: String,
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeOf {
    namespace: String,
    name: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MetricOf {
    namespace: String,
    name: String,
    metric: String,
    arm: String,
}

/// The series of every experiment this replica leads.
#[derive(Default)]
pub struct ExperimentSeries {
    weight: Family<ArmOf, Value>,
    phase: Family<PhaseOf, Value>,
    decision: Family<OutcomeOf, Value>,
    p_value: Family<MetricOf, Value>,
    samples: Family<ArmOf, Value>,
    /// What each experiment (namespace, name) shows now: what to remove when it changes or goes.
    shown: Mutex<HashMap<(String, String), Shown>>,
}

/// One experiment's series and their values.
#[derive(Default)]
struct Shown {
    weight: Vec<(ArmOf, f64)>,
    phase: Vec<(PhaseOf, f64)>,
    decision: Vec<(OutcomeOf, f64)>,
    p_value: Vec<(MetricOf, f64)>,
    samples: Vec<(ArmOf, f64)>,
}

impl Shown {
    fn of(namespace: &str, name: &str, status: &ExperimentStatus) -> Shown {
        let arm = |arm: &str| ArmOf { namespace: namespace.into(), name: name.into(), arm: arm.into() };
        let decided = status.history.iter().rev().find(|look| look.outcome.is_some());
        Shown {
            weight: status.weights.iter().map(|w| (arm(&w.arm), f64::from(w.desired))).collect(),
            phase: (status.phase.iter())
                .map(|p| (PhaseOf { namespace: namespace.into(), name: name.into(), phase: format!("{p:?}") }, 1.0))
                .collect(),
            decision: (decided.and_then(|look| look.outcome.clone()).into_iter())
                .map(|outcome| (OutcomeOf { namespace: namespace.into(), name: name.into(), outcome }, 1.0))
                .collect(),
            p_value: (decided.iter().flat_map(|look| &look.metrics))
                .filter_map(|m| {
                    let labels = MetricOf {
                        namespace: namespace.into(),
                        name: name.into(),
                        metric: m.metric.clone(),
                        arm: m.arm.clone(),
                    };
                    Some((labels, m.p?))
                })
                .collect(),
            samples: (decided.iter().flat_map(|look| &look.samples)).map(|(a, n)| (arm(a), *n)).collect(),
        }
    }
}

impl ExperimentSeries {
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register("experiment_weight", "Desired weight of each arm, in percent", self.weight.clone());
        registry.register("experiment_phase", "1 for the experiment's current phase", self.phase.clone());
        registry.register(
            "experiment_decision",
            "1 for the outcome of the experiment's last decision",
            self.decision.clone(),
        );
        registry.register(
            "experiment_decision_p_value",
            "p-value per metric and treatment arm at the experiment's last decision",
            self.p_value.clone(),
        );
        registry.register(
            "experiment_samples",
            "Samples per arm at the experiment's last decision",
            self.samples.clone(),
        );
    }

    /// Shows what `status` says of the experiment `namespace`/`name`, replacing what it showed.
    pub fn show(&self, namespace: &str, name: &str, status: &ExperimentStatus) {
        let new = Shown::of(namespace, name, status);
        let mut shown = self.shown.lock().expect("not poisoned");
        let old = shown.remove(&(namespace.to_string(), name.to_string())).unwrap_or_default();
        self.replace(&old, &new);
        shown.insert((namespace.to_string(), name.to_string()), new);
    }

    /// Removes every series of the experiment `namespace`/`name`.
    pub fn forget(&self, namespace: &str, name: &str) {
        let mut shown = self.shown.lock().expect("not poisoned");
        if let Some(old) = shown.remove(&(namespace.to_string(), name.to_string())) {
            self.replace(&old, &Shown::default());
        }
    }

    fn replace(&self, old: &Shown, new: &Shown) {
        replace(&self.weight, &old.weight, &new.weight);
        replace(&self.phase, &old.phase, &new.phase);
        replace(&self.decision, &old.decision, &new.decision);
        replace(&self.p_value, &old.p_value, &new.p_value);
        replace(&self.samples, &old.samples, &new.samples);
    }
}

/// Removes the series of `old` that `new` has not, and sets those of `new`.
fn replace<L: Clone + std::hash::Hash + Eq>(family: &Family<L, Value>, old: &[(L, f64)], new: &[(L, f64)]) {
    for (labels, _) in old {
        if !new.iter().any(|(kept, _)| kept == labels) {
            family.remove(labels);
        }
    }
    for (labels, value) in new {
        family.get_or_create(labels).set(*value);
    }
}

#[cfg(test)]
mod tests {
    use crate::api::{ArmWeightStatus, ExperimentStatus, Look, MetricLook, Phase};
    use crate::controller::telemetry::Metrics;

    fn status(phase: Phase, weights: &[(&str, i32)], decisions: &[(&str, f64)]) -> ExperimentStatus {
        let weights =
            weights.iter().map(|(arm, w)| ArmWeightStatus { arm: arm.to_string(), desired: *w, achieved: 0.0 });
        let history = decisions.iter().map(|(outcome, p)| Look {
            outcome: Some(outcome.to_string()),
            samples: [("v1".to_string(), 100.0), ("v2".to_string(), 98.0)].into(),
            metrics: vec![MetricLook {
                metric: "conversion".into(),
                arm: "v2".into(),
                p: Some(*p),
                ..Default::default()
            }],
            ..Default::default()
        });
        let mut history: Vec<Look> = history.collect();
        history.push(Look { phase: Some(phase), ..Default::default() });
        ExperimentStatus { phase: Some(phase), weights: weights.collect(), history, ..Default::default() }
    }

    fn lines(metrics: &Metrics) -> Vec<String> {
        let text = metrics.encode();
        text.lines().filter(|l| l.starts_with("forklane_experiment_")).map(str::to_string).collect()
    }

    #[test]
    fn series_follow_the_status_and_go_with_the_experiment() {
        let metrics = Metrics::default();
        let series = &metrics.experiment_series;
        series.show("shop", "checkout", &status(Phase::Analysing, &[("v1", 90), ("v2", 10)], &[("continue", 0.5)]));
        series.show("shop", "other", &status(Phase::Progressing, &[("v1", 100)], &[]));
        let shown = lines(&metrics);
        for expected in [
            r#"forklane_experiment_weight{namespace="shop",name="checkout",arm="v2"} 10.0"#,
            r#"forklane_experiment_phase{namespace="shop",name="checkout",phase="Analysing"} 1.0"#,
            r#"forklane_experiment_decision{namespace="shop",name="checkout",outcome="continue"} 1.0"#,
            r#"forklane_experiment_decision_p_value{namespace="shop",name="checkout",metric="conversion",arm="v2"} 0.5"#,
            r#"forklane_experiment_samples{namespace="shop",name="checkout",arm="v2"} 98.0"#,
            r#"forklane_experiment_phase{namespace="shop",name="other",phase="Progressing"} 1.0"#,
        ] {
            assert!(shown.contains(&expected.to_string()), "{expected} in {shown:#?}");
        }
        assert!(!shown.iter().any(|l| l.contains(r#"name="other""#) && l.contains("decision")), "no decision yet");

        // The last decision is the newest look with an outcome; the old phase's series goes.
        series.show(
            "shop",
            "checkout",
            &status(Phase::Succeeded, &[("v2", 100)], &[("continue", 0.5), ("promote", 0.001)]),
        );
        let shown = lines(&metrics);
        let mut checkout: Vec<&str> =
            shown.iter().filter(|l| l.contains(r#"name="checkout""#)).map(|l| l.as_str()).collect();
        checkout.sort();
        let mut expected = [
            r#"forklane_experiment_weight{namespace="shop",name="checkout",arm="v2"} 100.0"#,
            r#"forklane_experiment_phase{namespace="shop",name="checkout",phase="Succeeded"} 1.0"#,
            r#"forklane_experiment_decision{namespace="shop",name="checkout",outcome="promote"} 1.0"#,
            r#"forklane_experiment_decision_p_value{namespace="shop",name="checkout",metric="conversion",arm="v2"} 0.001"#,
            r#"forklane_experiment_samples{namespace="shop",name="checkout",arm="v1"} 100.0"#,
            r#"forklane_experiment_samples{namespace="shop",name="checkout",arm="v2"} 98.0"#,
        ];
        expected.sort();
        assert_eq!(checkout, expected, "v1's weight, the Analysing phase and the continue outcome are gone");

        series.forget("shop", "checkout");
        let shown = lines(&metrics);
        assert!(!shown.iter().any(|l| l.contains(r#"name="checkout""#)), "{shown:#?}");
        assert!(shown.iter().any(|l| l.contains(r#"name="other""#)), "the other experiment keeps its series");
        series.forget("shop", "never-shown");
    }
}
