//! `forklane get`'s terminal view of a [`Summary`]: the experiment, its steps as a tree, then
//! tables of its arms, its analysis, its conditions and its latest events.

use std::fmt::Write;

use super::steps::StepState;
use super::style::{Cell, Color, Style, plain, table};
use super::summary::{AnalysisSummary, ArmSummary, Summary};

/// The whole view, ending in a newline.
pub fn render(summary: &Summary, style: Style) -> String {
    let mut out = String::new();
    let field = |out: &mut String, name: &str, value: &str| {
        let _ = writeln!(out, "{} {value}", style.paint(&format!("{name:<10}"), Color::Dim));
    };
    let name = style.paint(&summary.name, Color::Bold);
    let _ = writeln!(out, "{} {name}", style.paint(&format!("{:<10}", "Name:"), Color::Dim));
    field(&mut out, "Namespace:", &summary.namespace);
    let (symbol, color) = phase_look(&summary.phase);
    field(&mut out, "Phase:", &style.paint(&format!("{symbol} {}", summary.phase), color));
    if let Some(message) = &summary.message {
        field(&mut out, "Message:", message);
    }
    field(&mut out, "Strategy:", summary.strategy);
    field(&mut out, "Routing:", summary.routing.unwrap_or("-"));
    if let Some(winner) = &summary.winner {
        field(&mut out, "Winner:", &style.paint(winner, Color::Green));
    }
    if let Some(age) = &summary.age {
        field(&mut out, "Age:", age);
    }

    out.push_str(&section(style, "Steps"));
    let count = summary.steps.len();
    for (i, step) in summary.steps.iter().enumerate() {
        let branch = if i + 1 == count { "└──" } else { "├──" };
        let (symbol, color) = match step.state {
            StepState::Done => ("✔", Color::Green),
            StepState::Current => ("►", Color::Cyan),
            StepState::Pending => ("○", Color::Plain),
            StepState::Interrupted => ("■", Color::Yellow),
            StepState::Skipped => ("-", Color::Dim),
        };
        let here = if step.state == StepState::Current { "   ← current" } else { "" };
        let text = format!("{symbol} {i}  {}{here}", step.description);
        let _ = writeln!(out, "  {branch} {}", style.paint(&text, color));
    }

    out.push_str(&section(style, "Arms"));
    let rows: Vec<Vec<Cell>> = summary.arms.iter().map(arm_row).collect();
    out.push_str(&table(style, "  ", &["ARM", "ROLE", "DEPLOYMENT", "READY", "DESIRED", "ACHIEVED"], &rows));

    out.push_str(&section(style, "Analysis"));
    match &summary.analysis {
        None => out.push_str("  no analysis yet\n"),
        Some(analysis) => out.push_str(&analysis_view(analysis, style)),
    }

    if !summary.conditions.is_empty() {
        out.push_str(&section(style, "Conditions"));
        let rows: Vec<Vec<Cell>> = summary
            .conditions
            .iter()
            // No colour for the status: for some conditions True is good (Ready), for others bad
            // (SampleRatioMismatch).
            .map(|c| vec![plain(&c.type_), plain(&c.status), plain(&c.reason), plain(&c.message)])
            .collect();
        out.push_str(&table(style, "  ", &["TYPE", "STATUS", "REASON", "MESSAGE"], &rows));
    }

    out.push_str(&section(style, "Events"));
    if summary.events.is_empty() {
        out.push_str("  none\n");
    } else {
        let rows: Vec<Vec<Cell>> = summary
            .events
            .iter()
            .map(|e| {
                let color = if e.type_ == "Warning" { Color::Yellow } else { Color::Plain };
                let age = e.age.clone().unwrap_or_else(|| "-".into());
                let message = if e.count > 1 { format!("{} (x{})", e.message, e.count) } else { e.message.clone() };
                vec![plain(age), (e.type_.clone(), color), plain(&e.reason), plain(message)]
            })
            .collect();
        out.push_str(&table(style, "  ", &["AGE", "TYPE", "REASON", "MESSAGE"], &rows));
    }
    out
}

/// A phase's symbol and colour.
pub(crate) fn phase_look(phase: &str) -> (&'static str, Color) {
    match phase {
        "Progressing" => ("◌", Color::Cyan),
        "Paused" => ("॥", Color::Yellow),
        "Analysing" => ("◐", Color::Cyan),
        "Promoting" => ("▲", Color::Cyan),
        "Succeeded" => ("✔", Color::Green),
        "RolledBack" => ("↩", Color::Red),
        "Failed" => ("✖", Color::Red),
        _ => ("○", Color::Plain),
    }
}

fn section(style: Style, title: &str) -> String {
    format!("\n{}\n", style.paint(title, Color::Bold))
}

fn arm_row(arm: &ArmSummary) -> Vec<Cell> {
    let ready = match (arm.ready_pods, arm.pods) {
        (Some(ready), Some(pods)) => {
            let color = if ready < pods || pods == 0 { Color::Yellow } else { Color::Green };
            (format!("{ready}/{pods}"), color)
        }
        _ => plain("-"),
    };
    let deployment = match (&arm.deployment, arm.deployment_found) {
        (Some(name), true) => plain(name),
        (Some(name), false) => (format!("{name} (not found)"), Color::Red),
        (None, _) => plain("-"),
    };
    vec![
        plain(&arm.name),
        plain(if arm.control { "control" } else { "candidate" }),
        deployment,
        ready,
        plain(arm.desired_weight.map_or("-".into(), |w| format!("{w}%"))),
        plain(arm.achieved_weight.map_or("-".into(), |w| format!("{w:.1}%"))),
    ]
}

fn analysis_view(analysis: &AnalysisSummary, style: Style) -> String {
    let mut out = String::new();
    let outcome = analysis.outcome.as_deref().unwrap_or("-");
    let color = match outcome {
        "promote" => Color::Green,
        "rollback" => Color::Red,
        _ => Color::Plain,
    };
    let when = match (&analysis.at, &analysis.age) {
        (Some(at), Some(age)) => format!(" at {at} ({age} ago)"),
        _ => String::new(),
    };
    let _ = writeln!(out, "  latest look{when}: {}", style.paint(outcome, color));
    if analysis.metrics.is_empty() {
        let why = if analysis.srm.as_ref().is_some_and(|s| s.mismatch) {
            " (the sample ratio mismatch stops a look)"
        } else {
            ""
        };
        let _ = writeln!(out, "  no metrics compared{why}");
    } else {
        let rows: Vec<Vec<Cell>> = analysis
            .metrics
            .iter()
            .map(|m| {
                let rule = match (m.role.as_str(), m.margin) {
                    ("guardrail", Some(margin)) => format!("guardrail (margin {})", number(margin)),
                    (role, _) => role.to_string(),
                };
                let interval = format!("[{}, {}]", bound(m.low, "-∞"), bound(m.high, "+∞"));
                vec![
                    plain(&m.metric),
                    plain(&m.arm),
                    plain(rule),
                    plain(m.estimate.map_or("-".into(), signed)),
                    plain(interval),
                    plain(m.p.map_or("-".into(), p_value)),
                    (m.verdict.clone(), verdict_color(&m.verdict)),
                ]
            })
            .collect();
        let header = ["METRIC", "ARM", "RULE", "ESTIMATE", "INTERVAL", "P", "VERDICT"];
        out.push_str(&table(style, "  ", &header, &rows));
    }
    match &analysis.srm {
        Some(srm) => {
            let (verdict, color) = if srm.mismatch { ("mismatch", Color::Red) } else { ("ok", Color::Green) };
            let _ = writeln!(out, "  SRM: p = {} {}", p_value(srm.p), style.paint(verdict, color));
        }
        None => out.push_str("  SRM: not checked\n"),
    }
    if !analysis.samples.is_empty() {
        let samples: Vec<String> = analysis.samples.iter().map(|(arm, n)| format!("{arm} {n}")).collect();
        let _ = writeln!(out, "  Samples: {}", samples.join(", "));
    }
    out
}

fn verdict_color(verdict: &str) -> Color {
    match verdict {
        "better" | "nonInferior" => Color::Green,
        "worse" | "inferior" => Color::Red,
        _ => Color::Yellow,
    }
}

/// Four significant digits, without trailing zeros.
pub(crate) fn number(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let magnitude = x.abs().log10().floor() as i32;
    if !(-4..6).contains(&magnitude) {
        return format!("{x:.3e}");
    }
    let text = format!("{:.*}", (3 - magnitude).max(0) as usize, x);
    if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.').to_string() } else { text }
}

fn signed(x: f64) -> String {
    if x > 0.0 { format!("+{}", number(x)) } else { number(x) }
}

fn bound(x: Option<f64>, unbounded: &str) -> String {
    x.map_or(unbounded.to_string(), signed)
}

pub(crate) fn p_value(p: f64) -> String {
    if p < 0.0001 { format!("{p:.1e}") } else { number(p) }
}
