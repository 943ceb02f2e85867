use super::*;
use crate::api::load::{Document, load_documents};
use crate::api::{Experiment, Promotion};
use crate::stats::decision::{Comparison, Verdict};

fn example(name: &str) -> Experiment {
    let text = std::fs::read_to_string(format!("{}/../examples/{name}.yaml", env!("CARGO_MANIFEST_DIR"))).unwrap();
    match load_documents(&text).unwrap().remove(0) {
        Document::Experiment(e) => *e,
        Document::RolloutPolicy(_) => unreachable!(),
    }
}

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

fn decision(outcome: Outcome) -> Decision {
    let comparison = |arm: &str, difference| Comparison {
        arm: arm.into(),
        metric: "conversion".into(),
        role: Role::Goal,
        control_value: 0.1,
        arm_value: 0.1 + difference,
        difference,
        interval: [difference - 0.01, difference + 0.01],
        p_value: Some(0.5),
        adjusted_p_value: Some(0.5),
        prob_better: None,
        expected_loss: None,
        verdict: Verdict::Inconclusive,
    };
    Decision { outcome, comparisons: vec![comparison("v2", 0.02)], srm: None }
}

struct Run {
    exp: Experiment,
    status: ExperimentStatus,
    commands: Commands,
    manual: bool,
    states: usize,
    /// The analysis' configuration error in the next ticks.
    invalid: Option<ConfigError>,
    /// The next ticks' looks find no metrics.
    unavailable: bool,
}

impl Run {
    fn new(name: &str) -> Self {
        let exp = example(name);
        let states =
            crate::plan::plan(&exp, &Target::Step(0), crate::api::Routing::Istio, &crate::plan::Observed::default())
                .unwrap()
                .states;
        Run {
            exp,
            status: ExperimentStatus::default(),
            commands: Commands::default(),
            manual: false,
            states,
            invalid: None,
            unavailable: false,
        }
    }

    fn tick(&mut self, now: i64, settled: bool, decision: Option<&Decision>) -> Transition {
        let tick = Tick {
            spec: &self.exp.spec,
            status: &self.status,
            now: t(now),
            states: self.states,
            settled,
            commands: &self.commands,
            policy_manual_promotion: self.manual,
            decision,
            analysis_invalid: self.invalid.as_ref(),
            metrics_unavailable: self.unavailable,
        };
        let out = advance(&tick);
        self.status = out.status.clone();
        out
    }

    fn phase(&self) -> Phase {
        self.status.phase.unwrap()
    }
}

#[test]
fn canary_walks_its_steps_in_order() {
    let mut r = Run::new("canary");
    // setWeight 10
    r.tick(0, true, None);
    assert_eq!((r.status.current_step, r.phase()), (Some(1), Phase::Progressing));
    // pause 5m: paused, asks to be woken when it ends
    let out = r.tick(1, true, None);
    assert_eq!(r.phase(), Phase::Paused);
    assert_eq!(out.requeue, Some(Duration::from_secs(299)));
    r.tick(200, true, None);
    assert_eq!(r.status.current_step, Some(1), "still pausing");
    r.tick(302, true, None);
    assert_eq!(r.status.current_step, Some(2));
    // analysis: starts, continues, then passes
    r.tick(303, true, None);
    assert_eq!(r.phase(), Phase::Analysing);
    assert!(!analysis_due(&r.exp.spec, &r.status, t(304)));
    assert!(analysis_due(&r.exp.spec, &r.status, t(363)));
    r.tick(363, true, Some(&decision(Outcome::Continue { reason: "not yet".into() })));
    assert_eq!((r.status.current_step, r.phase()), (Some(2), Phase::Analysing));
    assert_eq!(r.status.message.as_deref(), Some("not yet"));
    r.tick(423, true, Some(&decision(Outcome::Promote { arm: "v2".into() })));
    assert_eq!(r.status.current_step, Some(3));
    // setWeight 50, then an indefinite pause that only promote ends
    r.tick(424, true, None);
    assert_eq!(r.status.current_step, Some(4));
    r.tick(425, true, None);
    assert_eq!(r.phase(), Phase::Paused);
    r.tick(5000, true, None);
    assert_eq!(r.status.current_step, Some(4));
    r.commands.promote = Some(Promote::Next);
    r.tick(5001, true, None);
    r.commands.promote = None;
    assert_eq!(r.status.current_step, Some(5));
    // setWeight 100, then the end: promoting until the final routing is in place
    r.tick(5002, true, None);
    r.tick(5003, true, None);
    assert_eq!((r.phase(), r.status.final_arm.as_deref()), (Phase::Promoting, Some("v2")));
    r.tick(5004, false, None);
    assert_eq!(r.phase(), Phase::Promoting);
    r.tick(5005, true, None);
    assert_eq!((r.phase(), r.status.winner.as_deref()), (Phase::Succeeded, Some("v2")));
}

#[test]
fn nothing_moves_until_the_current_state_is_ready() {
    let mut r = Run::new("canary");
    r.tick(0, false, None);
    let before = r.status.clone();
    let out = r.tick(500, false, None);
    assert_eq!(out.status, before);
    assert!(out.events.is_empty());
}

#[test]
fn a_guardrail_breach_rolls_back_to_the_control() {
    let mut r = Run::new("canary");
    for now in [0, 1, 302, 303] {
        r.tick(now, true, None);
    }
    let out = r.tick(363, true, Some(&decision(Outcome::Rollback { reason: "error-rate worse".into() })));
    assert_eq!((r.phase(), r.status.final_arm.as_deref()), (Phase::Progressing, Some("v1")), "rolling back");
    assert_eq!(target(&r.status), Target::Final("v1".into()));
    assert!(out.events.iter().any(|e| e.reason == "RollingBack" && e.warning));
    r.tick(364, false, None);
    assert_eq!(r.phase(), Phase::Progressing, "rolled back only once the routing is restored");
    let out = r.tick(365, true, None);
    assert_eq!(r.phase(), Phase::RolledBack);
    assert_eq!(r.status.message.as_deref(), Some("rolling back: error-rate worse; all traffic on v1"));
    assert!(out.events.iter().any(|e| e.reason == "RolledBack" && e.warning));
}

#[test]
fn ab_test_promotes_the_winner_or_waits_for_a_person() {
    let mut r = Run::new("ab-test");
    r.tick(0, true, None);
    assert_eq!(r.phase(), Phase::Analysing);
    r.tick(60, true, Some(&decision(Outcome::Promote { arm: "v2".into() })));
    assert_eq!((r.phase(), r.status.final_arm.as_deref()), (Phase::Promoting, Some("v2")));

    let mut r = Run::new("ab-test");
    r.manual = true;
    r.tick(0, true, None);
    r.tick(60, true, Some(&decision(Outcome::Promote { arm: "v2".into() })));
    assert_eq!(
        (r.phase(), r.status.final_arm.as_deref(), r.status.winner.as_deref()),
        (Phase::Paused, None, Some("v2"))
    );
    r.tick(120, true, None);
    assert_eq!(r.phase(), Phase::Paused, "a decided test waits");
    r.commands.promote = Some(Promote::Next);
    r.tick(121, true, None);
    assert_eq!(r.status.final_arm.as_deref(), Some("v2"));
}

#[test]
fn inconclusive_tests_end_as_configured() {
    for (on, final_arm, phase) in [
        (OnInconclusive::Rollback, "v1", Phase::RolledBack),
        (OnInconclusive::KeepControl, "v1", Phase::Succeeded),
        (OnInconclusive::Promote, "v2", Phase::Succeeded),
    ] {
        let mut r = Run::new("ab-test");
        r.exp.spec.promotion = Some(Promotion { on_inconclusive: on, ..Default::default() });
        r.tick(0, true, None);
        let flat = decision(Outcome::Continue { reason: "no difference".into() });
        r.tick(3600, true, Some(&flat));
        assert_eq!(r.status.final_arm, None);
        r.tick(24 * 3600, true, Some(&flat));
        r.tick(24 * 3600 + 1, true, None);
        assert_eq!((r.status.final_arm.as_deref(), r.phase()), (Some(final_arm), phase), "{on:?}");
        assert!(r.status.message.as_deref().unwrap_or_default().contains("no decision within maxDuration"), "{on:?}");
    }
}

#[test]
fn people_can_pause_and_abort() {
    let mut r = Run::new("ab-test");
    r.tick(0, true, None);
    r.commands.paused = true;
    r.tick(60, true, Some(&decision(Outcome::Promote { arm: "v2".into() })));
    assert_eq!((r.phase(), r.status.final_arm.as_deref()), (Phase::Paused, None));
    r.commands = Commands { abort: Some("bad release".into()), ..Default::default() };
    r.tick(61, true, None);
    r.tick(62, true, None);
    assert_eq!(
        (r.phase(), r.status.final_arm.as_deref(), r.status.message.as_deref()),
        (Phase::RolledBack, Some("v1"), Some("rolling back: bad release; all traffic on v1"))
    );
}

#[test]
fn blue_green_switches_only_when_promoted() {
    let mut r = Run::new("blue-green");
    r.tick(0, true, None);
    assert_eq!(r.phase(), Phase::Paused);
    r.tick(1000, true, None);
    assert_eq!(r.status.final_arm, None);
    r.commands.promote = Some(Promote::Next);
    r.tick(1001, true, None);
    assert_eq!(r.status.final_arm.as_deref(), Some("v2"));
}

#[test]
fn replacement_strategies_walk_every_state_then_finish() {
    let mut r = Run::new("rolling-update");
    let mut now = 0;
    while r.status.final_arm.is_none() {
        r.tick(now, true, None);
        now += 1;
        assert!(now < 100, "rolling update never ends");
    }
    assert_eq!(r.status.current_step, Some(r.states as i32 - 1));
    assert_eq!(r.status.final_arm.as_deref(), Some("v2"));
}

#[test]
fn replaying_a_tick_from_the_same_status_gives_the_same_result() {
    // Restart safety: a controller that crashed after computing but before writing repeats exactly.
    let mut r = Run::new("canary");
    for now in [0, 1, 302, 303] {
        let saved = r.status.clone();
        let first = r.tick(now, true, None);
        r.status = saved;
        let second = r.tick(now, true, None);
        assert_eq!(first, second);
    }
}

#[test]
fn an_invalid_analysis_config_rolls_back_once_and_is_not_retried() {
    // (example, ticks that reach the analysis, when the first look is due, the weight it held)
    for (name, start, due) in [("canary", &[0, 1, 302, 303][..], 363), ("ab-test", &[0][..], 300)] {
        let mut r = Run::new(name);
        for &now in start {
            r.tick(now, true, None);
        }
        assert_eq!(r.phase(), Phase::Analysing, "{name}");
        assert!(analysis_due(&r.exp.spec, &r.status, t(due)), "{name}");
        r.invalid = Some(ConfigError::NoProvider);
        let out = r.tick(due, true, None);
        r.invalid = None;
        assert_eq!(r.status.final_arm.as_deref(), Some("v1"), "{name}: all traffic back to the control");
        assert_eq!(target(&r.status), Target::Final("v1".into()), "{name}");
        let invalid = out.events.iter().find(|e| e.reason == "AnalysisConfigInvalid").expect("a warning event");
        assert!(invalid.warning && invalid.message.contains("no metric provider"), "{name}: {invalid:?}");
        assert!(out.events.iter().any(|e| e.reason == "RollingBack"), "{name}");
        assert!(!analysis_due(&r.exp.spec, &r.status, t(due + 3600)), "{name}: never looked at again");
        let out = r.tick(due + 1, true, None);
        assert_eq!(r.phase(), Phase::RolledBack, "{name}");
        assert!(!out.events.iter().any(|e| e.reason == "AnalysisConfigInvalid"), "{name}: warned once");
        assert!(
            r.status.message.as_deref().unwrap_or_default().starts_with("rolling back: analysis configuration invalid"),
            "{name}: {:?}",
            r.status.message
        );
        assert_eq!(r.status.statistics, None, "{name}: no decision recorded");
    }
}

/// (onInconclusive, max looks without metrics, maxDuration) → how an outage from the first look on
/// ends: the final arm, the phase, and the look at which it ended.
#[test]
fn a_metrics_outage_ends_as_inconclusive_and_never_promotes() {
    let cases = [
        (OnInconclusive::Rollback, None, None, "v1", Phase::RolledBack, 5),
        (OnInconclusive::KeepControl, None, None, "v1", Phase::Succeeded, 5),
        // Without data, promote keeps the control.
        (OnInconclusive::Promote, None, None, "v1", Phase::Succeeded, 5),
        (OnInconclusive::Rollback, Some(2), None, "v1", Phase::RolledBack, 2),
        // maxDuration (3m) comes first: time without metrics counts.
        (OnInconclusive::Rollback, Some(10), Some("3m"), "v1", Phase::RolledBack, 3),
    ];
    for (on, looks, max_duration, final_arm, phase, ended_at) in cases {
        let mut r = Run::new("ab-test");
        r.exp.spec.promotion = Some(Promotion { on_inconclusive: on, ..Default::default() });
        let analysis = r.exp.spec.analysis.as_mut().unwrap();
        analysis.max_consecutive_unavailable = looks;
        analysis.max_duration = max_duration.map(|d| d.parse().unwrap());
        r.tick(0, true, None);
        r.unavailable = true;
        let mut ended = None;
        for look in 1..=12 {
            r.tick(look * 60, true, None);
            if r.status.final_arm.is_some() && ended.is_none() {
                ended = Some(look);
            }
        }
        r.unavailable = false;
        r.tick(13 * 60, true, None);
        let case = format!("{on:?} looks {looks:?} maxDuration {max_duration:?}");
        assert_eq!(ended, Some(ended_at), "{case}");
        assert_eq!((r.status.final_arm.as_deref(), r.phase()), (Some(final_arm), phase), "{case}");
        assert!(r.status.message.as_deref().unwrap_or_default().contains("metrics unavailable"), "{case}");
    }
}

#[test]
fn metrics_that_come_back_reset_the_outage_count() {
    let mut r = Run::new("ab-test");
    r.tick(0, true, None);
    r.unavailable = true;
    for look in 1..=4 {
        r.tick(look * 60, true, None);
    }
    assert_eq!(r.status.consecutive_unavailable, Some(4));
    r.unavailable = false;
    r.tick(5 * 60, true, Some(&decision(Outcome::Continue { reason: "no difference yet".into() })));
    assert_eq!(r.status.consecutive_unavailable, None);
    r.unavailable = true;
    for look in 6..=9 {
        r.tick(look * 60, true, None);
    }
    assert_eq!((r.status.final_arm.clone(), r.phase()), (None, Phase::Analysing), "4 in a row again, not 8");
}

#[test]
fn an_inconclusive_promote_respects_the_goals_direction() {
    // v2's goal value is 0.02 higher: the better arm when higher is better, the worse one otherwise.
    for (direction, final_arm) in [(crate::api::Direction::Increase, "v2"), (crate::api::Direction::Decrease, "v1")] {
        let mut r = Run::new("ab-test");
        r.exp.spec.promotion = Some(Promotion { on_inconclusive: OnInconclusive::Promote, ..Default::default() });
        let analysis = r.exp.spec.analysis.as_mut().unwrap();
        analysis
            .metrics
            .iter_mut()
            .filter(|m| m.role == crate::api::Role::Goal)
            .for_each(|m| m.direction = Some(direction));
        r.tick(0, true, None);
        let flat = decision(Outcome::Continue { reason: "no difference".into() });
        r.tick(24 * 3600, true, Some(&flat));
        r.tick(24 * 3600 + 1, true, None);
        assert_eq!((r.status.final_arm.as_deref(), r.phase()), (Some(final_arm), Phase::Succeeded), "{direction:?}");
    }
}

#[test]
fn a_promotion_waits_for_the_minimum_exposure_and_a_rollback_does_not() {
    let mut r = Run::new("ab-test");
    r.exp.spec.analysis.as_mut().unwrap().min_duration = Some("7d".parse().unwrap());
    r.tick(0, true, None);
    let winner = decision(Outcome::Promote { arm: "v2".into() });
    r.tick(3600, true, Some(&winner));
    assert_eq!(r.status.final_arm, None);
    assert!(
        r.status.message.as_deref().unwrap_or_default().contains("minimum exposure of 168h"),
        "{:?}",
        r.status.message
    );
    r.tick(7 * 24 * 3600 + 60, true, Some(&winner));
    assert_eq!(r.status.final_arm.as_deref(), Some("v2"));
    let mut r = Run::new("ab-test");
    r.exp.spec.analysis.as_mut().unwrap().min_duration = Some("7d".parse().unwrap());
    r.tick(0, true, None);
    r.tick(3600, true, Some(&decision(Outcome::Rollback { reason: "harm".into() })));
    assert_eq!(r.status.final_arm.as_deref(), Some("v1"));
}
