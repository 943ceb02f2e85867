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
