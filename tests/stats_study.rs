//! The README's statistics figures are `forklane stats study`'s markdown, between
//! `<!-- study:begin -->` and `<!-- study:end -->`. This runs the first EXPERIMENTS experiments of
//! every scenario (a prefix of the README's run: each experiment's seed depends only on its
//! scenario and index) and checks (a) every share in the README against the reduced run within a
//! Monte-Carlo tolerance and (b) the goals, with the same tolerance.
//!
//! Tolerance: shares differ by at most 4 standard errors of the difference of two binomial
//! shares (p clamped to [1/n, 1 − 1/n] so that a zero share still has a spread). Medians are not
//! compared: over a dozen runs they rest on a handful of decisions.

use std::collections::BTreeMap;

use forklane_sim::study::{self, Options};

/// Enough to catch a figure that moved by several standard errors, few enough for a debug build.
const EXPERIMENTS: usize = 12;

fn readme_block() -> (String, usize) {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme.find("<!-- study:begin -->").expect("README has <!-- study:begin -->");
    let end = readme.find("<!-- study:end -->").expect("README has <!-- study:end -->");
    let block = readme[start..end].to_string();
    let n = block
        .split_whitespace()
        .skip_while(|w| *w != "study,")
        .nth(1)
        .and_then(|w| w.replace(',', "").parse().ok())
        .expect("the block says how many experiments per scenario it ran");
    (block, n)
}

/// (scenario, column header) → cell, from every table whose rows name a scenario in backticks.
fn cells(markdown: &str) -> BTreeMap<(String, String), String> {
    let mut out = BTreeMap::new();
    let mut header: Vec<String> = Vec::new();
    for line in markdown.lines().filter(|l| l.starts_with('|')) {
        let row: Vec<String> = line.trim_matches('|').split('|').map(|c| c.trim().to_string()).collect();
        if row[0].starts_with("---") {
            continue;
        }
        if !row[0].starts_with('`') {
            header = row;
            continue;
        }
        let name = row[0].split('`').nth(1).unwrap().to_string();
        if header.first().is_some_and(|h| h == "goal") {
            continue;
        }
        for (h, c) in header.iter().zip(&row).skip(1) {
            out.insert((name.clone(), h.clone()), c.clone());
        }
    }
    out
}

fn share_tolerance(p: f64, n1: usize, n2: usize) -> f64 {
    let lo = 1.0 / n1.min(n2) as f64;
    let p = p.clamp(lo, 1.0 - lo);
    4.0 * (p * (1.0 - p) * (1.0 / n1 as f64 + 1.0 / n2 as f64)).sqrt()
}

fn first_number(cell: &str) -> Option<f64> {
    cell.split([' ', '(', ')']).find(|w| !w.is_empty()).and_then(|w| w.parse().ok())
}

#[test]
fn the_readme_figures_and_the_goals_hold_on_a_prefix_of_the_study() {
    let (block, readme_n) = readme_block();
    let report = study::run(&Options { experiments: EXPERIMENTS, ..Options::default() }).unwrap();
    let ours = cells(&report.markdown());
    let theirs = cells(&block);
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        theirs.keys().collect::<Vec<_>>(),
        "the README's study tables have other scenarios or columns than `forklane stats study` prints: regenerate them"
    );
    let mut drift = Vec::new();
    for (key, readme) in &theirs {
        let run = &ours[key];
        // Medians (minutes, bad requests) of a dozen runs rest on a handful of decisions: only
        // the shares, which say how often each decision is made, are compared.
        if key.1.contains("minutes") || key.1.contains("bad requests") {
            continue;
        }
        let (Some(a), Some(b)) = (first_number(readme), first_number(run)) else {
            if readme != run {
                drift.push(format!("{key:?}: README {readme}, run {run}"));
            }
            continue;
        };
        let tolerance = share_tolerance((a + b) / 2.0, EXPERIMENTS, readme_n);
        if (a - b).abs() > tolerance {
            drift.push(format!("{key:?}: README {readme}, run of {EXPERIMENTS}: {run} (tolerance {tolerance:.3})"));
        }
    }
    assert!(drift.is_empty(), "README figures drifted from the study:\n{}", drift.join("\n"));
    assert!(report.goals.len() >= 6, "goals: {:?}", report.goals);
    for g in &report.goals {
        let slack = share_tolerance(g.bound, g.experiments, usize::MAX / 2);
        let ok = if g.at_most { g.measured <= g.bound + slack } else { g.measured >= g.bound - slack };
        assert!(ok, "goal missed beyond Monte-Carlo tolerance {slack:.3}: {g:?}");
    }
}
