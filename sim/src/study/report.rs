//! The study's figures per scenario and the goals they are held to, as JSON or markdown (the
//! README's statistics section is this markdown).

use serde::Serialize;

use super::runner::{Ending, Run};
use super::scenarios::{Example, Expect, Scenario};

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    pub promoted: f64,
    pub rolled_back: f64,
    pub srm: f64,
    pub inconclusive: f64,
    /// Minutes from the start of the analysis to the right decision: median and 80th percentile.
    pub median_minutes: Option<f64>,
    pub p80_minutes: Option<f64>,
    /// Errors the candidate served before the decision (median).
    pub median_bad_requests: f64,
    /// Share of runs that reached the right decision within 2 intervals of the analysis' start.
    pub right_within_two_intervals: f64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScenarioReport {
    pub name: String,
    pub about: String,
    pub example: &'static str,
    pub experiments: usize,
    pub ours: Rule,
    pub flagger: Option<Rule>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Goal {
    pub goal: String,
    pub scenario: String,
    pub measured: f64,
    /// The measured share must be at most (`at_most`) or at least this.
    pub bound: f64,
    pub at_most: bool,
    pub experiments: usize,
}

impl Goal {
    pub fn met(&self) -> bool {
        if self.at_most { self.measured <= self.bound } else { self.measured >= self.bound }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub experiments: usize,
    pub scenarios: Vec<ScenarioReport>,
    pub goals: Vec<Goal>,
}

fn share(runs: &[Run], ending: Ending) -> f64 {
    runs.iter().filter(|r| r.ending == ending).count() as f64 / runs.len().max(1) as f64
}

fn quantile(mut xs: Vec<f64>, q: f64) -> Option<f64> {
    xs.sort_by(f64::total_cmp);
    let i = ((xs.len() as f64 * q).ceil() as usize).max(1) - 1;
    xs.get(i).copied()
}

fn rule(runs: &[Run], expect: Expect) -> Rule {
    let right = match expect {
        Expect::Promote => vec![Ending::Promoted],
        Expect::Rollback => vec![Ending::RolledBack, Ending::Srm],
        Expect::NoDecision => vec![],
    };
    let times: Vec<f64> = runs.iter().filter(|r| right.contains(&r.ending)).map(|r| r.minutes).collect();
    let quick = times.iter().filter(|&&m| m <= 2.0).count() as f64 / runs.len().max(1) as f64;
    Rule {
        promoted: share(runs, Ending::Promoted),
        rolled_back: share(runs, Ending::RolledBack),
        srm: share(runs, Ending::Srm),
        inconclusive: share(runs, Ending::Inconclusive),
        median_minutes: quantile(times.clone(), 0.5),
        p80_minutes: quantile(times, 0.8),
        median_bad_requests: quantile(runs.iter().map(|r| r.bad_requests as f64).collect(), 0.5).unwrap_or(0.0),
        right_within_two_intervals: quick,
    }
}

pub(crate) fn scenario(s: &Scenario, ours: &[Run], flagger: &[Run]) -> ScenarioReport {
    ScenarioReport {
        name: s.name.clone(),
        about: s.about.clone(),
        example: s.example.file(),
        experiments: ours.len(),
        ours: rule(ours, s.expect),
        flagger: (!flagger.is_empty()).then(|| rule(flagger, s.expect)),
    }
}

/// The goals, for the scenarios that were run.
pub(crate) fn goals(scenarios: &[ScenarioReport], srm_alpha: f64) -> Vec<Goal> {
    let mut out = Vec::new();
    let mut goal = |goal: &str, s: &ScenarioReport, measured: f64, bound: f64, at_most: bool| {
        out.push(Goal {
            goal: goal.into(),
            scenario: s.name.clone(),
            measured,
            bound,
            at_most,
            experiments: s.experiments,
        })
    };
    for s in scenarios {
        let o = &s.ours;
        if s.name.starts_with("aa-") && !s.name.ends_with("-request") || s.name == "aa-requests-50-50" {
            goal(
                "A/A: promotions and rollbacks over maxDuration ≤ 0.05",
                s,
                o.promoted + o.rolled_back + o.srm,
                0.05,
                true,
            );
        }
        if s.name.starts_with("aa-sticky") && s.name.ends_with("-user") {
            goal("SRM false alarms under sticky users ≤ srmAlpha", s, o.srm, srm_alpha, true);
        }
        if s.name == "canary-failing-2rps" {
            goal(
                "failing canary at 2 req/s: rolled back within 2 intervals in ≥ 95% of runs",
                s,
                o.right_within_two_intervals,
                0.95,
                false,
            );
        }
        if s.name == "canary-0.1pct-20rps" {
            goal("identical canary at 20 req/s: passes within 2 h in ≥ 80% of runs", s, o.promoted, 0.8, false);
        }
    }
    out
}

fn num(x: f64) -> String {
    format!("{x:.3}")
}

fn minutes(r: &Rule) -> String {
    match (r.median_minutes, r.p80_minutes) {
        (Some(m), Some(p)) => format!("{m:.0} ({p:.0})"),
        _ => "—".into(),
    }
}

impl Report {
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        md.push_str(&format!(
            "Seeded study, {} experiments per scenario, each through the production analysis (queries, \
             `measure`, `decision_input`, `decide`) and state machine; only the clock and the network are \
             simulated. Shares are of experiments; times are minutes from the start of the analysis to the \
             right decision, median (80th percentile).\n\n",
            self.experiments
        ));
        md.push_str("| A/B scenario (`examples/ab-test.yaml`, 24 h) | promoted | rolled back | SRM | inconclusive | minutes |\n");
        md.push_str("| --- | --- | --- | --- | --- | --- |\n");
        for s in self.scenarios.iter().filter(|s| s.example == Example::AbTest.file()) {
            let o = &s.ours;
            md.push_str(&format!(
                "| `{}`: {} | {} | {} | {} | {} | {} |\n",
                s.name,
                s.about,
                num(o.promoted),
                num(o.rolled_back),
                num(o.srm),
                num(o.inconclusive),
                minutes(o)
            ));
        }
        md.push_str(
            "\n| canary scenario (`examples/canary.yaml`, 10%, 2 h) | passed | rolled back | minutes | bad requests | Flagger promoted | Flagger rolled back | Flagger minutes | Flagger bad requests |\n",
        );
        md.push_str("| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
        for s in self.scenarios.iter().filter(|s| s.example == Example::Canary.file()) {
            let (o, f) = (&s.ours, s.flagger.as_ref());
            let fl = |g: &dyn Fn(&Rule) -> String| f.map_or("—".into(), g);
            md.push_str(&format!(
                "| `{}`: {} | {} | {} | {} | {:.0} | {} | {} | {} | {} |\n",
                s.name,
                s.about,
                num(o.promoted),
                num(o.rolled_back + o.srm),
                minutes(o),
                o.median_bad_requests,
                fl(&|r| num(r.promoted)),
                fl(&|r| num(r.rolled_back)),
                fl(&|r| minutes(r)),
                fl(&|r| format!("{:.0}", r.median_bad_requests)),
            ));
        }
        md.push_str("\n| goal | scenario | measured | bound | met |\n| --- | --- | --- | --- | --- |\n");
        for g in &self.goals {
            md.push_str(&format!(
                "| {} | `{}` | {} | {} | {} |\n",
                g.goal,
                g.scenario,
                num(g.measured),
                g.bound,
                if g.met() { "yes" } else { "**no**" }
            ));
        }
        md
    }
}
