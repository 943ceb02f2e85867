//! What [`crate::stats::plan`] needs from an Experiment: each analysis' split, interval,
//! durations, α, test and unit, and its metrics. The traffic and the effects are not in the spec.

use std::time::Duration;

use crate::api::{self, Experiment, Method, Role, Strategy};
use crate::stats::plan::{Phase, PlanInput, Test, Unit};

use super::look_config;

/// One analysis of an experiment, ready to plan: an A/B test has one, a canary one per analysis step.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedAnalysis {
    /// Empty for an A/B test; `step K at W%` for a canary's analysis step.
    pub label: String,
    pub input: PlanInput,
    pub metrics: Vec<PlannedMetric>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlannedMetric {
    pub name: String,
    pub role: Role,
    /// A guardrail's margin (0 when not set).
    pub margin: f64,
}

/// The analyses of `exp` at `traffic` requests/s, by the experiment's unit of analysis (users:
/// first exposures, `visits_per_user` requests each, default 1). Errors name what cannot be planned.
pub fn planned_analyses(
    exp: &Experiment,
    traffic: f64,
    visits_per_user: Option<f64>,
    runs: usize,
    seed: u64,
) -> Result<Vec<PlannedAnalysis>, String> {
    let name = exp.metadata.name.as_deref().unwrap_or_default();
    let analysis =
        exp.spec.analysis.as_ref().ok_or_else(|| format!("experiment {name} has no spec.analysis to plan"))?;
    // A canary's steps share α (the error budget), as in the controller's looks.
    let config = look_config(exp, Duration::ZERO).map_err(|e| format!("experiment {name}: {e}"))?;
    let horizon = analysis.horizon.as_ref();
    let test = match (analysis.method, horizon.and_then(|h| h.samples_per_arm), horizon.and_then(|h| h.duration)) {
        (Method::Sequential, _, _) => Test::sequential(config.planned_samples_per_arm),
        (Method::FixedHorizon, Some(n), _) => Test::FixedSamples(n.max(1) as u64),
        (Method::FixedHorizon, None, Some(d)) => Test::FixedDuration(d.get()),
        (Method::FixedHorizon, None, None) => {
            return Err(format!("experiment {name}: spec.analysis.horizon is needed to plan a fixedHorizon test"));
        }
        (Method::Bayesian, _, _) => {
            return Err(format!(
                "experiment {name}: spec.analysis.method bayesian cannot be planned (sequential and fixedHorizon can)"
            ));
        }
    };
    let unit = match exp.spec.analysis_unit() {
        api::Unit::User => Unit::User { visits_per_user: visits_per_user.unwrap_or(1.0) },
        api::Unit::Request => Unit::Request,
    };
    let metrics: Vec<PlannedMetric> = analysis
        .metrics
        .iter()
        .map(|m| PlannedMetric { name: m.name.clone(), role: m.role, margin: m.margin.unwrap_or(0.0) })
        .collect();
    let input = PlanInput {
        traffic,
        unit,
        schedule: vec![],
        interval: analysis.interval(),
        max_duration: analysis.max_duration(),
        min_duration: analysis.min_duration.map_or(Duration::ZERO, |d| d.get()),
        min_samples_per_arm: config.min_samples_per_arm,
        alpha: config.alpha,
        test,
        runs,
        seed,
    };
    Ok(analysed_splits(exp)?
        .into_iter()
        .map(|(label, weights)| PlannedAnalysis {
            label,
            input: PlanInput { schedule: vec![Phase { weights, duration: None }], ..input.clone() },
            metrics: metrics.clone(),
        })
        .collect())
}

/// The weights (control first, then the other arms in spec order) at each analysis. A canary
/// analyses at the weight of the last `setWeight` before the step, from the step's start.
fn analysed_splits(exp: &Experiment) -> Result<Vec<(String, Vec<f64>)>, String> {
    let arms = &exp.spec.arms;
    let control = arms.iter().position(|a| a.control).unwrap_or(0);
    let order = std::iter::once(control).chain((0..arms.len()).filter(|&i| i != control));
    match &exp.spec.strategy {
        Strategy::AbTest(ab) => {
            let weights = order.map(|i| f64::from(ab.split.get(&arms[i].name).copied().unwrap_or(0))).collect();
            Ok(vec![(String::new(), weights)])
        }
        Strategy::Canary(canary) => {
            let mut weight = 0;
            let mut splits = Vec::new();
            for (k, step) in canary.steps.iter().enumerate() {
                weight = step.set_weight.unwrap_or(weight);
                if step.analysis.is_some() {
                    splits.push((format!("step {k} at {weight}%"), vec![f64::from(100 - weight), f64::from(weight)]));
                }
            }
            if splits.is_empty() {
                return Err("the canary has no analysis step to plan".into());
            }
            Ok(splits)
        }
        other => Err(format!(
            "strategy {} has no analysed split to plan (an abTest or a canary's analysis steps have)",
            other.name().as_str()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(name: &str) -> Experiment {
        let text = std::fs::read_to_string(format!("{}/../examples/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        serde_yaml_ng::from_str(&text).unwrap()
    }

    #[test]
    fn a_sticky_ab_test_is_planned_by_user_at_its_split() {
        let plans = planned_analyses(&example("ab-test.yaml"), 100.0, Some(3.0), 500, 1).unwrap();
        assert_eq!(plans.len(), 1);
        let p = &plans[0];
        assert_eq!(p.input.schedule, vec![Phase { weights: vec![90.0, 10.0], duration: None }]);
        assert_eq!(p.input.unit, Unit::User { visits_per_user: 3.0 });
        assert_eq!((p.input.min_samples_per_arm, p.input.max_duration), (1000, Duration::from_secs(86_400)));
        let names: Vec<(&str, Role, f64)> = p.metrics.iter().map(|m| (m.name.as_str(), m.role, m.margin)).collect();
        assert_eq!(names, [("conversion", Role::Goal, 0.0), ("error-rate", Role::Guardrail, 0.002)]);
    }

    #[test]
    fn a_canary_is_planned_at_each_analysis_step() {
        let exp = example("canary.yaml");
        let plans = planned_analyses(&exp, 100.0, None, 500, 1).unwrap();
        let Strategy::Canary(canary) = &exp.spec.strategy else { panic!("a canary") };
        assert_eq!(plans.len(), canary.steps.iter().filter(|s| s.analysis.is_some()).count());
        assert!(plans.iter().all(|p| p.input.unit == Unit::Request && p.label.starts_with("step ")));
        assert!(plans.iter().all(|p| p.input.schedule[0].weights.iter().sum::<f64>() == 100.0));
    }
}
