//! What the report says in words, shared by the HTML and the Markdown: the summary line by line,
//! the latest estimate of each metric, and the timeline of phase changes, decisions and events.

use forklane_core::api::{Look, MetricLook};
use jiff::Timestamp;

use crate::view::Observed;
use crate::view::observed::event_time;

/// The summary at the top of a report, as (label, value) rows.
pub(super) fn summary(observed: &Observed, now: Timestamp) -> Vec<(&'static str, String)> {
    let exp = &observed.experiment;
    let status = exp.status.clone().unwrap_or_default();
    let phase = status.phase.map(|p| format!("{p:?}")).unwrap_or_else(|| "not started".into());
    let outcome = match status.message.as_deref() {
        Some(message) if !message.is_empty() => format!("{phase}: {message}"),
        _ => phase,
    };
    let strategy = status.strategy.map(|s| s.as_str().to_string()).unwrap_or_else(|| "unknown".into());
    let weights = if status.weights.is_empty() {
        "none yet".into()
    } else {
        status.weights.iter().map(|w| format!("{} {}%", w.arm, w.desired)).collect::<Vec<_>>().join(", ")
    };
    let srm = match status.history.iter().rev().find_map(|l| l.srm_p) {
        Some(p) if p < SRM_THRESHOLD => format!("mismatch (p = {}, below {SRM_THRESHOLD})", number(p)),
        Some(p) => format!("no mismatch (p = {})", number(p)),
        None => "not checked yet".into(),
    };
    vec![
        ("Experiment", format!("{}/{}", observed.namespace(), observed.name())),
        ("Outcome", outcome),
        (
            "Winner",
            status.winner.or(status.final_arm.map(|a| format!("none (traffic on {a})"))).unwrap_or("none yet".into()),
        ),
        ("Strategy", strategy),
        ("Weights", weights),
        ("Duration", duration(observed, now)),
        ("Looks", status.history.len().to_string()),
        ("Sample ratio", srm),
    ]
}

/// The sample-ratio-mismatch p-value below which the analysis stops the experiment.
pub(super) const SRM_THRESHOLD: f64 = 0.001;

/// From the experiment's creation (else its first look) to its end, else to `now`.
fn duration(observed: &Observed, now: Timestamp) -> String {
    let exp = &observed.experiment;
    let start = exp.metadata.creation_timestamp.as_ref().map(|t| t.0).or_else(|| looks(observed).first().map(|l| l.0));
    let status = exp.status.clone().unwrap_or_default();
    let end = status.finished_at.as_deref().and_then(|t| t.parse::<Timestamp>().ok());
    match start {
        Some(start) => {
            let span = end.unwrap_or(now).duration_since(start);
            let span = jiff::SignedDuration::from_secs(span.as_secs());
            format!("{span:#}{}", if end.is_some() { "" } else { " so far" })
        }
        None => "not started".into(),
    }
}

/// The looks with a readable time, oldest first.
pub(super) fn looks(observed: &Observed) -> Vec<(Timestamp, &Look)> {
    let history = observed.experiment.status.as_ref().map(|s| s.history.as_slice()).unwrap_or_default();
    history.iter().filter_map(|l| Some((l.at.parse::<Timestamp>().ok()?, l))).collect()
}

/// The latest estimate of each metric and treatment arm (from the last look that had one).
pub(super) fn latest_estimates(observed: &Observed) -> Vec<&MetricLook> {
    let mut latest: Vec<&MetricLook> = Vec::new();
    for (_, look) in looks(observed).into_iter().rev() {
        for m in &look.metrics {
            if !latest.iter().any(|l| l.metric == m.metric && l.arm == m.arm) {
                latest.push(m);
            }
        }
    }
    latest.sort_by(|a, b| (&a.metric, &a.arm).cmp(&(&b.metric, &b.arm)));
    latest
}

/// A number for people: four significant digits, or scientific notation when tiny.
pub(super) fn number(x: f64) -> String {
    if x != 0.0 && x.abs() < 1e-3 { format!("{x:.2e}") } else { format!("{}", (x * 1e4).round() / 1e4) }
}

/// `[low, high]`, with ∞ for an unbounded side.
pub(super) fn interval(m: &MetricLook) -> String {
    let low = m.low.map(number).unwrap_or_else(|| "−∞".into());
    let high = m.high.map(number).unwrap_or_else(|| "+∞".into());
    format!("[{low}, {high}]")
}

/// One moment of the timeline.
pub(super) struct Moment {
    pub at: Timestamp,
    /// `phase`, `decision` or `event`.
    pub lane: &'static str,
    pub what: String,
}

/// The phase changes and the decisions other than `continue` (from the history) and the
/// Kubernetes events, oldest first.
pub(super) fn timeline(observed: &Observed) -> Vec<Moment> {
    let mut moments = Vec::new();
    let mut phase = None;
    for (at, look) in looks(observed) {
        if let Some(now) = look.phase
            && phase != Some(now)
        {
            phase = Some(now);
            moments.push(Moment { at, lane: "phase", what: format!("{now:?}") });
        }
        if let Some(outcome) = look.outcome.as_deref().filter(|o| *o != "continue") {
            moments.push(Moment { at, lane: "decision", what: outcome.to_string() });
        }
    }
    for event in &observed.events {
        let Some(at) = event_time(event) else { continue };
        let reason = event.reason.clone().unwrap_or_default();
        let what = match event.message.as_deref() {
            Some(message) => format!("{reason}: {message}"),
            None => reason,
        };
        moments.push(Moment { at, lane: "event", what });
    }
    moments.sort_by_key(|m| m.at);
    moments
}
