//! The sequence of states a strategy moves through: weights per arm and, where replicas carry the
//! traffic, replica counts per arm. State 0 is the start of the experiment.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::api::validate::resolve_int_or_percent;
use crate::api::{ExperimentSpec, Strategy, defaults};

use super::PlanError;

/// Integer weights per arm (arms with weight 0 included), in arm order.
pub(crate) type Weights = Vec<(String, i32)>;

/// One state of a strategy.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct State {
    /// Weights of the catch-all split.
    pub weights: Weights,
    /// Whether the blue/green preview header route is present.
    pub preview: bool,
    /// Replica counts per arm, where the strategy sets them.
    pub replicas: Option<Vec<(String, i32)>>,
    /// Whether the experiment's own routes (rules, sticky pins, mirror) are in force; a final
    /// state sends everything to one arm and drops them.
    pub experiment_routes: bool,
    /// Whether answers expire the sticky cookie: the final state, where nobody is pinned any more
    /// and a returning user's cookie must go.
    pub expire_sticky: bool,
}

/// Facts about the cluster that the plan depends on.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Replicas {
    /// Replicas of the control Deployment, when known: the default size of recreate and rolling update.
    pub control: Option<i32>,
}

/// Names of the control and the candidate of a two-arm strategy ("" where a spec that is not
/// validated lacks one: such a spec plans nothing, only policies look at its weights).
fn control(spec: &ExperimentSpec) -> &str {
    spec.control_arm().map_or("", |a| a.name.as_str())
}

fn candidate(spec: &ExperimentSpec) -> &str {
    spec.candidate().map_or("", |a| a.name.as_str())
}

/// Weights giving `candidate_weight` to the candidate and the rest to the control.
fn two_arm_weights(spec: &ExperimentSpec, candidate_weight: i32) -> Weights {
    let control = control(spec);
    spec.arms
        .iter()
        .map(|a| (a.name.clone(), if a.name == control { 100 - candidate_weight } else { candidate_weight }))
        .collect()
}

/// All traffic to one arm.
pub(crate) fn all_to(spec: &ExperimentSpec, arm: &str) -> Weights {
    spec.arms.iter().map(|a| (a.name.clone(), if a.name == arm { 100 } else { 0 })).collect()
}

/// Every state of the experiment's strategy, in order.
pub(crate) fn states(spec: &ExperimentSpec, observed: &Replicas) -> Result<Vec<State>, PlanError> {
    let plain =
        |weights| State { weights, preview: false, replicas: None, experiment_routes: true, expire_sticky: false };
    Ok(match &spec.strategy {
        Strategy::Canary(canary) => {
            let mut weight = 0;
            let mut out = vec![plain(two_arm_weights(spec, 0))];
            for step in &canary.steps {
                weight = step.set_weight.unwrap_or(weight);
                out.push(plain(two_arm_weights(spec, weight)));
            }
            out
        }
        Strategy::BlueGreen(bg) => {
            vec![
                State {
                    weights: all_to(spec, control(spec)),
                    preview: bg.preview_header.is_some(),
                    replicas: None,
                    experiment_routes: true,
                    expire_sticky: false,
                },
                plain(all_to(spec, candidate(spec))),
            ]
        }
        Strategy::AbTest(ab) => {
            let weights =
                spec.arms.iter().map(|a| (a.name.clone(), ab.split.get(&a.name).copied().unwrap_or(0))).collect();
            vec![plain(weights)]
        }
        Strategy::Recreate(r) => {
            let n = size(r.replicas, observed, "spec.strategy.recreate.replicas")?;
            replica_states(spec, &[(n, 0), (0, 0), (0, n)])
        }
        Strategy::RollingUpdate(r) => {
            let n = size(r.replicas, observed, "spec.strategy.rollingUpdate.replicas")?;
            let resolve = |v: &Option<IntOrString>, default: &str, up| {
                let v = v.clone().unwrap_or_else(|| IntOrString::String(default.into()));
                resolve_int_or_percent(&v, n, up).map_err(|e| PlanError::Invalid(vec![e]))
            };
            let surge = resolve(&r.max_surge, defaults::ROLLING_MAX_SURGE, true)?;
            let unavailable = resolve(&r.max_unavailable, defaults::ROLLING_MAX_UNAVAILABLE, false)?;
            replica_states(spec, &rolling_sequence(n, surge, unavailable))
        }
    })
}

fn size(explicit: Option<i32>, observed: &Replicas, path: &str) -> Result<i32, PlanError> {
    explicit.or(observed.control).ok_or_else(|| {
        PlanError::Invalid(vec![format!(
            "{path}: required when the control Deployment's replicas are not known (offline render)"
        )])
    })
}

/// States from (control, candidate) replica pairs; traffic follows the pods.
fn replica_states(spec: &ExperimentSpec, pairs: &[(i32, i32)]) -> Vec<State> {
    let (control, candidate) = (control(spec).to_string(), candidate(spec).to_string());
    let mut weights = all_to(spec, &control);
    pairs
        .iter()
        .map(|&(old, new)| {
            // With no pod anywhere (the recreate gap) routing stays where it was.
            if old + new > 0 {
                let shares = proportional(&[old, new], 100);
                weights = spec
                    .arms
                    .iter()
                    .map(|a| (a.name.clone(), if a.name == control { shares[0] } else { shares[1] }))
                    .collect();
            }
            State {
                weights: weights.clone(),
                preview: false,
                replicas: Some(vec![(control.clone(), old), (candidate.clone(), new)]),
                experiment_routes: true,
                expire_sticky: false,
            }
        })
        .collect()
}

/// The replica counts a Deployment's rolling update passes through: the new side scales up
/// within maxSurge, then the old side scales down within maxUnavailable, one change per state.
pub(crate) fn rolling_sequence(n: i32, surge: i32, unavailable: i32) -> Vec<(i32, i32)> {
    let (mut old, mut new) = (n, 0);
    let mut out = vec![(old, new)];
    while new < n || old > 0 {
        let up = (n + surge - old - new).min(n - new);
        if up > 0 {
            new += up;
            out.push((old, new));
        }
        let down = old.min(old + new - (n - unavailable));
        if down > 0 {
            old -= down;
            out.push((old, new));
        }
        if up <= 0 && down <= 0 {
            break; // maxSurge and maxUnavailable both 0: validation refuses this
        }
    }
    out
}

/// Splits `total` into integer parts proportional to `parts` (largest remainder, ties to the
/// earlier part); a positive part never gets 0 when `total` allows one each.
pub fn proportional(parts: &[i32], total: i32) -> Vec<i32> {
    let sum: i64 = parts.iter().map(|p| i64::from((*p).max(0))).sum();
    if sum == 0 {
        return vec![0; parts.len()];
    }
    let exact: Vec<f64> = parts.iter().map(|p| f64::from((*p).max(0)) * f64::from(total) / sum as f64).collect();
    let mut out: Vec<i32> = exact.iter().map(|x| x.floor() as i32).collect();
    let positive = parts.iter().filter(|p| **p > 0).count() as i32;
    if positive <= total {
        for (i, p) in parts.iter().enumerate() {
            if *p > 0 && out[i] == 0 {
                out[i] = 1;
            }
        }
    }
    let mut order: Vec<usize> = (0..parts.len()).collect();
    order.sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())).then(a.cmp(&b)));
    let mut left = total - out.iter().sum::<i32>();
    let mut i = 0;
    while left > 0 {
        let idx = order[i % order.len()];
        if parts[idx] > 0 {
            out[idx] += 1;
            left -= 1;
        }
        i += 1;
    }
    // Minimums may overshoot: take back from the largest parts.
    while left < 0 {
        let idx = (0..out.len()).max_by_key(|&i| (out[i], std::cmp::Reverse(i))).expect("non-empty");
        out[idx] -= 1;
        left += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolling_with_surge_one_and_no_unavailability_moves_one_pod_at_a_time() {
        assert_eq!(rolling_sequence(3, 1, 0), vec![(3, 0), (3, 1), (2, 1), (2, 2), (1, 2), (1, 3), (0, 3)]);
    }

    #[test]
    fn rolling_never_exceeds_surge_nor_drops_below_availability() {
        for (n, surge, unavailable) in [(10, 2, 1), (10, 0, 3), (5, 5, 0), (7, 3, 7), (1, 1, 0)] {
            let seq = rolling_sequence(n, surge, unavailable);
            assert_eq!(*seq.last().unwrap(), (0, n));
            for (old, new) in seq {
                assert!(old + new <= n + surge, "{n} {surge} {unavailable}");
                assert!(old + new >= n - unavailable, "{n} {surge} {unavailable}");
            }
        }
    }

    #[test]
    fn proportional_keeps_positive_parts_alive_and_sums_exactly() {
        assert_eq!(proportional(&[99, 1], 10), vec![9, 1]);
        assert_eq!(proportional(&[90, 10], 10), vec![9, 1]);
        assert_eq!(proportional(&[1, 1, 1], 100), vec![34, 33, 33]);
        assert_eq!(proportional(&[0, 100], 10), vec![0, 10]);
        assert_eq!(proportional(&[2, 1], 100), vec![67, 33]);
    }
}
