//! `status.history`, pure: a look is added at every analysis decision and at every change of the
//! routed weights or the phase; old looks are thinned so that the status stays small (etcd keeps
//! objects up to 1.5 MiB, and every status write sends the whole history).

use jiff::Timestamp;

use crate::api::{ExperimentStatus, Look, MetricLook};
use crate::clock::format_time;
use crate::stats::decision::{Decision, Outcome, Role, Verdict};

/// At most this many looks are kept…
pub const MAX_LOOKS: usize = 120;
/// …and at most this many bytes of them as JSON: the rest of a status takes a few KiB, so the
/// whole stays well under 64 KiB.
pub const MAX_BYTES: usize = 40 * 1024;

/// Adds what this reconcile saw to `status.history`: the decision's look, or the new weights or
/// phase. Nothing when nothing changed.
pub(crate) fn record(status: &mut ExperimentStatus, decision: Option<&Decision>, now: Timestamp) {
    let mut look = Look {
        at: format_time(now),
        phase: status.phase,
        step: status.current_step,
        weights: status.weights.iter().map(|w| (w.arm.clone(), w.desired)).collect(),
        ..Look::default()
    };
    match decision {
        Some(d) => {
            look.samples = status.samples.iter().map(|s| (s.arm.clone(), s.samples)).collect();
            look.metrics = d.comparisons.iter().map(metric_look).collect();
            look.srm_p = d.srm.and_then(|s| round(s.p_value));
            look.outcome = Some(outcome_name(&d.outcome).into());
        }
        None => {
            let last = status.history.last();
            if last.is_some_and(|l| l.weights == look.weights && l.phase == look.phase && l.step == look.step) {
                return;
            }
        }
    }
    status.history.push(look);
    bound(&mut status.history);
}

/// Thins the older half (every other look, keeping the first and every change of phase or
/// weights: the timeline and the weights' steps) until the history fits.
fn bound(history: &mut Vec<Look>) {
    while history.len() > MAX_LOOKS || json_len(history) > MAX_BYTES {
        let older = history.len() / 2;
        let before = history.len();
        let keep: Vec<bool> = (0..history.len())
            .map(|i| i == 0 || i >= older || i % 2 == 0 || milestone(&history[i - 1], &history[i]))
            .collect();
        let mut keep = keep.into_iter();
        history.retain(|_| keep.next().unwrap_or(true));
        if history.len() == before {
            // Every old look is a milestone: the oldest after the first goes.
            history.remove(1.min(history.len() - 1));
        }
    }
}

fn milestone(previous: &Look, look: &Look) -> bool {
    previous.phase != look.phase || previous.weights != look.weights
}

fn json_len(history: &[Look]) -> usize {
    serde_json::to_vec(history).map_or(0, |v| v.len())
}

fn metric_look(c: &crate::stats::decision::Comparison) -> MetricLook {
    MetricLook {
        metric: c.metric.clone(),
        arm: c.arm.clone(),
        role: match c.role {
            Role::Goal => "goal",
            Role::Guardrail => "guardrail",
        }
        .into(),
        estimate: round(c.difference),
        low: round(c.interval[0]),
        high: round(c.interval[1]),
        p: c.p_value.and_then(round),
        verdict: match c.verdict {
            Verdict::Better => "better",
            Verdict::Worse => "worse",
            Verdict::NonInferior => "nonInferior",
            Verdict::Inferior => "inferior",
            Verdict::Inconclusive => "inconclusive",
        }
        .into(),
    }
}

pub(crate) fn outcome_name(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Promote { .. } => "promote",
        Outcome::Rollback { .. } => "rollback",
        Outcome::Continue { .. } => "continue",
    }
}

/// Five significant digits (enough for any plot or table), `None` when not finite: JSON has no
/// infinity, and an unbounded side of an interval is simply absent.
fn round(x: f64) -> Option<f64> {
    if !x.is_finite() {
        return None;
    }
    if x == 0.0 {
        return Some(0.0);
    }
    let scale = 10f64.powi(4 - x.abs().log10().floor() as i32);
    Some((x * scale).round() / scale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ArmSamples, ArmWeightStatus, Phase};
    use crate::stats::decision::{Comparison, SrmCheck};

    fn status(weights: &[(&str, i32)], phase: Phase) -> ExperimentStatus {
        ExperimentStatus {
            phase: Some(phase),
            current_step: Some(0),
            weights: weights
                .iter()
                .map(|(arm, w)| ArmWeightStatus { arm: arm.to_string(), desired: *w, achieved: *w as f64 })
                .collect(),
            ..Default::default()
        }
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    /// A decision comparing `arms` treatment arms on `metrics` metrics, the interval narrowing
    /// with `look`.
    fn decision(arms: usize, metrics: usize, look: usize) -> Decision {
        let width = 1.0 / (look as f64 + 1.0).sqrt();
        let comparisons = (0..arms)
            .flat_map(|a| {
                (0..metrics).map(move |m| Comparison {
                    arm: format!("candidate-{a}"),
                    metric: format!("metric-number-{m}"),
                    role: if m == 0 { Role::Goal } else { Role::Guardrail },
                    control_value: 0.1,
                    arm_value: 0.11,
                    difference: 0.0123456789,
                    interval: [0.0123456789 - width, if look == 0 { f64::INFINITY } else { 0.0123456789 + width }],
                    p_value: Some(0.0312345),
                    adjusted_p_value: Some(0.06),
                    prob_better: None,
                    expected_loss: None,
                    verdict: Verdict::Inconclusive,
                })
            })
            .collect();
        Decision {
            outcome: Outcome::Continue { reason: "more samples".into() },
            comparisons,
            srm: Some(SrmCheck { p_value: 0.5, ln_bayes_factor: -1.0, mismatch: false }),
        }
    }

    #[test]
    fn a_decision_records_samples_estimates_and_srm_rounded_and_infinite_bounds_absent() {
        let mut st = status(&[("control", 50), ("candidate-0", 50)], Phase::Analysing);
        st.samples = vec![ArmSamples { arm: "control".into(), samples: 1000.0 }];
        record(&mut st, Some(&decision(1, 1, 0)), at(60));
        let look = &st.history[0];
        assert_eq!(look.at, format_time(at(60)));
        assert_eq!(look.weights, [("candidate-0".to_string(), 50), ("control".to_string(), 50)].into());
        assert_eq!(look.samples, [("control".to_string(), 1000.0)].into());
        assert_eq!(look.outcome.as_deref(), Some("continue"));
        assert_eq!(look.srm_p, Some(0.5));
        let m = &look.metrics[0];
        assert_eq!((m.estimate, m.high, m.p), (Some(0.012346), None, Some(0.031235)));
        assert_eq!((m.role.as_str(), m.verdict.as_str()), ("goal", "inconclusive"));
        // It reads back: no infinity or NaN reached the JSON.
        let json = serde_json::to_string(&st).unwrap();
        assert_eq!(serde_json::from_str::<ExperimentStatus>(&json).unwrap(), st);
    }

    #[test]
    fn without_a_decision_only_a_change_of_weights_phase_or_step_is_recorded() {
        let mut st = status(&[("v1", 100), ("v2", 0)], Phase::Progressing);
        record(&mut st, None, at(0));
        record(&mut st, None, at(1));
        assert_eq!(st.history.len(), 1, "nothing changed");
        st.weights[0].desired = 80;
        st.weights[1].desired = 20;
        record(&mut st, None, at(2));
        st.phase = Some(Phase::Paused);
        record(&mut st, None, at(3));
        st.current_step = Some(1);
        record(&mut st, None, at(4));
        record(&mut st, Some(&decision(1, 1, 1)), at(5));
        let times: Vec<&str> = st.history.iter().map(|l| l.at.as_str()).collect();
        let expected: Vec<String> = [0, 2, 3, 4, 5].into_iter().map(|s| format_time(at(s))).collect();
        assert_eq!(times, expected);
    }

    #[test]
    fn a_long_experiment_keeps_its_first_look_its_changes_and_its_recent_looks_within_the_bounds() {
        // Three treatment arms and four metrics, a look a minute for three and a half days.
        let mut st =
            status(&[("control", 25), ("candidate-0", 25), ("candidate-1", 25), ("candidate-2", 25)], Phase::Analysing);
        for look in 0..5_000 {
            if look == 100 {
                st.weights[0].desired = 40;
                st.weights[1].desired = 20;
            }
            record(&mut st, Some(&decision(3, 4, look)), at(60 * look as i64));
            assert!(st.history.len() <= MAX_LOOKS);
        }
        assert!(json_len(&st.history) <= MAX_BYTES, "{} bytes", json_len(&st.history));
        let whole = serde_json::to_vec(&st).unwrap().len();
        assert!(whole < 48 * 1024, "the status is {whole} bytes");
        assert_eq!(st.history[0].at, format_time(at(0)), "the first look stays");
        assert_eq!(st.history.last().unwrap().at, format_time(at(60 * 4_999)), "the newest look stays");
        let changed = format_time(at(60 * 100));
        assert!(st.history.iter().any(|l| l.at == changed), "the change of weights stays");
        let times: Vec<Timestamp> = st.history.iter().map(|l| crate::clock::parse_time(&l.at).unwrap()).collect();
        assert!(times.windows(2).all(|w| w[0] < w[1]), "oldest first");
        // Recent looks are dense, old ones thinned.
        let n = times.len();
        let recent = times[n - 1].duration_since(times[n - 11]).as_secs();
        let old = times[11].duration_since(times[1]).as_secs();
        assert!(recent < old, "recent {recent} s per ten looks, old {old} s");
    }
}
