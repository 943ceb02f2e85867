//! The report as one self-contained HTML page: inline CSS and inline SVG, nothing fetched.

use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};
use jiff::Timestamp;

use super::facts::{interval, latest_estimates, number, summary, timeline};
use super::plots;
use crate::view::Observed;

/// The page's style, shared with the dashboard.
pub(crate) const STYLE: &str = "body{font-family:sans-serif;margin:2em auto;max-width:820px;color:#222}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}\
th{background:#f3f3f3}figure{margin:1.5em 0}figcaption{font-weight:bold;margin-bottom:.3em}\
.muted{color:#777;font-size:.9em}";

/// The whole report page of `observed`, rendered at `now`.
pub fn html(observed: &Observed, now: Timestamp) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Forklane report: {}</title>\
         <style>{STYLE}</style></head><body><main id=\"report\">{}</main></body></html>\n",
        text(&format!("{}/{}", observed.namespace(), observed.name())),
        fragment(observed, now)
    )
}

/// The report's content without the page around it: the dashboard replaces it as it refreshes.
pub(crate) fn fragment(observed: &Observed, now: Timestamp) -> String {
    let mut out = format!(
        "<h1>Experiment {}</h1><p class=\"muted\">Rendered at <time id=\"rendered\">{now:.0}</time></p>",
        text(&format!("{}/{}", observed.namespace(), observed.name()))
    );
    out += "<section id=\"summary\"><table>";
    for (label, value) in summary(observed, now) {
        out += &format!("<tr><th>{label}</th><td>{}</td></tr>", text(&value));
    }
    out += "</table><h2>Latest estimates</h2>";
    let latest = latest_estimates(observed);
    if latest.is_empty() {
        out += "<p>No estimates yet.</p>";
    } else {
        out += "<table><tr><th>metric</th><th>arm − control</th><th>role</th><th>estimate</th>\
                <th>interval</th><th>p</th><th>verdict</th></tr>";
        for m in latest {
            out += &format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                text(&m.metric),
                text(&m.arm),
                text(&m.role),
                m.estimate.map(number).unwrap_or_else(|| "–".into()),
                interval(m),
                m.p.map(number).unwrap_or_else(|| "–".into()),
                text(&m.verdict)
            );
        }
        out += "</table>";
    }
    out += "</section>";
    out += &figure("weights", "", "Weights over time", &plots::weights(observed));
    let effects = plots::effects(observed);
    if effects.is_empty() {
        out += &figure("effects", " class=\"effect\"", "Effect estimates", &plots::placeholder("no looks yet"));
    }
    for (metric, arm) in effects {
        let id = format!("effect-{}-{}", slug(&metric), slug(&arm));
        let data = format!(" class=\"effect\" data-metric=\"{}\" data-arm=\"{}\"", attr(&metric), attr(&arm));
        let caption = format!("{metric}: {arm} − control, with its always-valid interval");
        out += &figure(&id, &data, &caption, &plots::effect(observed, &metric, &arm));
    }
    out += &figure("samples", "", "Samples per arm", &plots::samples(observed));
    out += &figure("srm", "", "Sample ratio mismatch", &plots::srm(observed));
    let moments = timeline(observed);
    let mut table = String::from("<table><tr><th>time</th><th>kind</th><th>what</th></tr>");
    for m in &moments {
        table += &format!("<tr><td>{:.0}</td><td>{}</td><td>{}</td></tr>", m.at, m.lane, text(&m.what));
    }
    table += "</table>";
    out += &figure("timeline", "", "Timeline", &(plots::timeline_plot(observed, &moments) + &table));
    out
}

fn figure(id: &str, attributes: &str, caption: &str, content: &str) -> String {
    format!("<figure id=\"{id}\"{attributes}><figcaption>{}</figcaption>{content}</figure>", text(caption))
}

/// `name` with every character but ASCII letters and digits as `-`, for an element id.
fn slug(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect()
}
