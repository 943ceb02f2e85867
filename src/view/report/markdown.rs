//! The report as Markdown, for a pull-request comment: the summary, the latest estimates and the
//! timeline, without plots.

use jiff::Timestamp;

use super::facts::{interval, latest_estimates, number, summary, timeline};
use crate::view::Observed;

/// `observed` as Markdown, rendered at `now`.
pub fn markdown(observed: &Observed, now: Timestamp) -> String {
    let mut out = format!("### Forklane experiment `{}/{}`\n\n", observed.namespace(), observed.name());
    for (label, value) in summary(observed, now).into_iter().skip(1) {
        out += &format!("- **{label}**: {}\n", cell(&value));
    }
    out += "\n#### Latest estimates\n\n";
    let latest = latest_estimates(observed);
    if latest.is_empty() {
        out += "No estimates yet.\n";
    } else {
        out += "| metric | arm − control | role | estimate | interval | p | verdict |\n";
        out += "| --- | --- | --- | ---: | --- | ---: | --- |\n";
        for m in latest {
            out += &format!(
                "| {} | {} | {} | {} | {} | {} | {} |\n",
                cell(&m.metric),
                cell(&m.arm),
                m.role,
                m.estimate.map(number).unwrap_or_else(|| "–".into()),
                interval(m),
                m.p.map(number).unwrap_or_else(|| "–".into()),
                cell(&m.verdict)
            );
        }
    }
    out += "\n#### Timeline\n\n";
    let moments = timeline(observed);
    if moments.is_empty() {
        out += "Nothing has happened yet.\n";
    }
    for m in moments {
        out += &format!("- {:.0} · {} · {}\n", m.at, m.lane, cell(&m.what));
    }
    out
}

/// `value` safe in a table cell or a list item: no line breaks, no column separators.
fn cell(value: &str) -> String {
    value.replace('\n', " ").replace('|', "\\|")
}
