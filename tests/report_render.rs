//! The report's renderers (`forklane::view::report`) on hand-built experiments: the HTML is one
//! self-contained page with every plot, a mark per look where there is one, and renders before the
//! first look; the Markdown has the summary, the latest estimates and the timeline.

use crate::support;

use forklane::view::Observed;
use forklane::view::report::{html, markdown};
use forklane_core::api::{ArmWeightStatus, ExperimentStatus, Look, MetricLook, Phase, StrategyName};
use forklane_core::fixtures::ExperimentBuilder;
use jiff::Timestamp;
use support::browser::{count, effect_figures, figure};

const LOOKS: usize = 12;

fn at(minute: usize) -> String {
    format!("2026-01-01T10:{minute:02}:00Z")
}

fn metric(metric: &str, role: &str, look: usize, low: Option<f64>) -> MetricLook {
    let width = 0.2 / (look as f64 + 1.0).sqrt();
    MetricLook {
        metric: metric.into(),
        arm: "v2".into(),
        role: role.into(),
        estimate: Some(0.08),
        low,
        high: Some(0.08 + width),
        p: Some(0.5 / (look as f64 + 1.0)),
        verdict: if look + 1 == LOOKS { "better".into() } else { "inconclusive".into() },
    }
}

/// An A/B test that analysed `LOOKS` times, one a minute, and promoted v2 at the last.
fn decided() -> Observed {
    let mut exp = ExperimentBuilder::ab_test("checkout").split([("v1", 50), ("v2", 50)]).build();
    let mut history = vec![Look {
        at: at(0),
        phase: Some(Phase::Analysing),
        weights: [("v1".into(), 50), ("v2".into(), 50)].into(),
        ..Default::default()
    }];
    for look in 0..LOOKS {
        let last = look + 1 == LOOKS;
        history.push(Look {
            at: at(look + 1),
            phase: Some(Phase::Analysing),
            weights: [("v1".into(), 50), ("v2".into(), 50)].into(),
            samples: [("v1".into(), 100.0 * (look + 1) as f64), ("v2".into(), 98.0 * (look + 1) as f64)].into(),
            metrics: vec![
                metric("conversion", "goal", look, Some(0.08 - 0.2 / (look as f64 + 1.0).sqrt())),
                // The guardrail's interval is one-sided: no lower bound.
                metric("error-rate", "guardrail", look, None),
            ],
            srm_p: Some(0.9 - 0.05 * look as f64),
            outcome: Some(if last { "promote" } else { "continue" }.into()),
            ..Default::default()
        });
    }
    history.push(Look {
        at: at(LOOKS + 2),
        phase: Some(Phase::Succeeded),
        weights: [("v1".into(), 0), ("v2".into(), 100)].into(),
        ..Default::default()
    });
    exp.status = Some(ExperimentStatus {
        phase: Some(Phase::Succeeded),
        strategy: Some(StrategyName::AbTest),
        winner: Some("v2".into()),
        weights: vec![
            ArmWeightStatus { arm: "v1".into(), desired: 0, achieved: 0.0 },
            ArmWeightStatus { arm: "v2".into(), desired: 100, achieved: 100.0 },
        ],
        finished_at: Some(at(LOOKS + 2)),
        message: Some("v2 is better on conversion".into()),
        history,
        ..Default::default()
    });
    exp.metadata.creation_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at(0).parse::<Timestamp>().unwrap()));
    Observed::of(exp)
}

fn now() -> Timestamp {
    "2026-01-01T11:00:00Z".parse().unwrap()
}

/// The text of each `<text>` element of `svg`.
fn texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| Some(t.split_once('>')?.1.split("</text>").next()?.trim().to_string()))
        .collect()
}

#[test]
fn html_is_one_page_that_fetches_nothing() {
    let page = html(&decided(), now());
    assert!(page.starts_with("<!DOCTYPE html>") && page.trim_end().ends_with("</html>"));
    for fetch in ["src=", "href=", "<link", "@import", "url(", "<script", "http://", "https://"] {
        let found: Vec<_> = page.match_indices(fetch).map(|(i, _)| &page[i.saturating_sub(40)..i + 40]).collect();
        // Inline SVG may name its XML namespace; that is no fetch.
        let found: Vec<_> = found.into_iter().filter(|s| !s.contains("xmlns=\"http://www.w3.org/2000/svg\"")).collect();
        assert!(found.is_empty(), "the report refers to {fetch}: {found:?}");
    }
}

#[test]
fn html_summary_says_outcome_winner_duration_and_latest_estimates() {
    let page = html(&decided(), now());
    let summary = &page[page.find("<section id=\"summary\"").unwrap()..page.find("</section>").unwrap()];
    for expected in [
        "default/checkout",
        "Succeeded: v2 is better on conversion",
        "<th>Winner</th><td>v2</td>",
        "abTest",
        "v1 0%, v2 100%",
        // From creation to finishedAt, not to the time of rendering.
        "<th>Duration</th><td>14m</td>",
        "no mismatch (p = 0.35)",
        "<td>conversion</td><td>v2</td><td>goal</td><td>0.08</td><td>[0.0223, 0.1377]</td><td>0.0417</td><td>better</td>",
        "<td>error-rate</td><td>v2</td><td>guardrail</td><td>0.08</td><td>[−∞, 0.1377]</td>",
    ] {
        assert!(summary.contains(expected), "{expected:?} not in the summary:\n{summary}");
    }
}

#[test]
fn html_draws_every_plot_with_a_mark_per_look() {
    let page = html(&decided(), now());
    assert_eq!(effect_figures(&page), ["effect-conversion-v2", "effect-error-rate-v2"]);
    for id in effect_figures(&page) {
        let funnel = figure(&page, &id);
        assert_eq!(count(funnel, "circle"), LOOKS, "{id}: a dot per look's estimate");
        // A bar per look's interval (the only lines 5 pixels wide).
        assert_eq!(funnel.matches("stroke-width=\"5\"").count(), LOOKS, "{id}");
    }
    let weights = figure(&page, "weights");
    // A step line per arm and its legend's line (the only lines 2 pixels wide).
    assert_eq!(weights.matches("stroke-width=\"2\"").count(), 2 + 2, "{weights}");
    let legend = texts(weights);
    assert!(legend.contains(&"v1".into()) && legend.contains(&"v2".into()), "the legend names the arms: {legend:?}");
    assert_eq!(count(figure(&page, "samples"), "circle"), 2 * LOOKS, "a dot per arm and look");
    assert_eq!(count(figure(&page, "srm"), "circle"), LOOKS);
    let timeline = figure(&page, "timeline");
    // Analysing, then the promote decision, then Succeeded.
    assert_eq!(count(timeline, "circle"), 3, "{timeline}");
    assert!(timeline.contains("<td>decision</td><td>promote</td>"));
    assert!(!page.contains("no looks yet"));
}

#[test]
fn html_without_history_says_no_looks_yet() {
    let observed = Observed::of(ExperimentBuilder::ab_test("fresh").split([("v1", 50), ("v2", 50)]).build());
    let page = html(&observed, now());
    for id in ["weights", "effects", "samples"] {
        let plot = figure(&page, id);
        assert!(plot.contains("no looks yet") && plot.contains("<svg"), "{id}: {plot}");
    }
    assert!(figure(&page, "srm").contains("no sample-ratio check yet"));
    assert!(figure(&page, "timeline").contains("nothing has happened yet"));
    assert!(page.contains("<th>Outcome</th><td>not started</td>") && page.contains("No estimates yet."));
}

#[test]
fn markdown_has_the_summary_the_estimates_and_the_timeline() {
    let md = markdown(&decided(), now());
    assert!(md.starts_with("### Forklane experiment `default/checkout`\n"), "{md}");
    assert!(md.contains("- **Winner**: v2\n") && md.contains("- **Duration**: 14m\n"), "{md}");
    assert!(md.contains("| conversion | v2 | goal | 0.08 | [0.0223, 0.1377] | 0.0417 | better |\n"), "{md}");
    assert!(md.contains("| error-rate | v2 | guardrail | 0.08 | [−∞, 0.1377] |"), "{md}");
    let timeline: Vec<&str> = md.split("#### Timeline\n\n").nth(1).unwrap().lines().collect();
    assert_eq!(
        timeline,
        [
            "- 2026-01-01T10:00:00Z · phase · Analysing",
            "- 2026-01-01T10:12:00Z · decision · promote",
            "- 2026-01-01T10:14:00Z · phase · Succeeded",
        ]
    );
    assert!(!md.contains('<'), "no HTML in the Markdown");
}

#[test]
fn markdown_without_history_says_so() {
    let observed = Observed::of(ExperimentBuilder::ab_test("fresh").build());
    let md = markdown(&observed, now());
    assert!(md.contains("No estimates yet.") && md.contains("Nothing has happened yet."), "{md}");
}
