use super::*;
use crate::stats::power;

const GOAL: Effect = Effect::Goal { baseline: 0.05, uplift: 0.1 };

/// 50/50 at `traffic` requests/s, looks every minute, sequential tuned to the engine's default.
fn input(traffic: f64, max_hours: u64) -> PlanInput {
    PlanInput {
        traffic,
        unit: Unit::Request,
        schedule: vec![Phase { weights: vec![50.0, 50.0], duration: None }],
        interval: Duration::from_secs(60),
        max_duration: Duration::from_secs(max_hours * 3600),
        min_duration: Duration::ZERO,
        min_samples_per_arm: 100,
        alpha: 0.05,
        test: Test::Sequential { planned_samples_per_arm: 10_000 },
        runs: 1000,
        seed: 11,
    }
}

fn secs(d: Option<Duration>) -> f64 {
    d.expect("decided").as_secs_f64()
}

#[test]
fn more_traffic_decides_sooner() {
    let slow = plan(&input(20.0, 24), &GOAL).unwrap();
    let fast = plan(&input(80.0, 24), &GOAL).unwrap();
    // Four times the traffic: about a quarter of the time, the same samples per arm.
    let ratio = secs(slow.median) / secs(fast.median);
    assert!((2.8..5.5).contains(&ratio), "{slow:?} {fast:?}");
    assert!(secs(fast.p80) < secs(slow.p80));
    assert!(secs(slow.median) <= secs(slow.p80));
    let (a, b) = (slow.samples_at_median.unwrap() as f64, fast.samples_at_median.unwrap() as f64);
    assert!((a / b - 1.0).abs() < 0.35, "{a} {b}");
}

#[test]
fn power_rises_with_duration() {
    let powers: Vec<f64> = [1, 2, 4, 8].iter().map(|&h| plan(&input(5.0, h), &GOAL).unwrap().power).collect();
    assert!(powers.windows(2).all(|w| w[0] < w[1]), "{powers:?}");
    assert!(powers[0] < 0.3 && powers[3] > 0.9, "{powers:?}");
    // The seeded study is deterministic.
    assert_eq!(plan(&input(20.0, 2), &GOAL).unwrap(), plan(&input(20.0, 2), &GOAL).unwrap());
}

#[test]
fn fixed_horizon_matches_the_sample_size_formula() {
    let n80 = power::sample_size_per_arm(0.05, 0.055, 0.05, 0.8, Alternative::TwoSided).unwrap();
    let fixed = PlanInput { test: Test::FixedSamples(n80), runs: 2000, ..input(20.0, 24) };
    let p = plan(&fixed, &GOAL).unwrap();
    // 2000 runs: the power's standard error is about 0.009.
    assert!((p.power - 0.8).abs() < 0.035, "{p:?}");
    // Everything is decided at the horizon: the first look with n80 samples per arm.
    let horizon = (n80 as f64 / (10.0 * 60.0)).ceil() * 60.0;
    assert_eq!(secs(p.median), horizon, "{p:?}");
    assert!(p.samples_at_median.unwrap() >= n80);
}

#[test]
fn sequential_test_at_its_planned_size_needs_a_bounded_factor_more_than_the_fixed_horizon() {
    // Tuned to the fixed-horizon n for 80% power, the mSPRT pays for looking every minute: its
    // 80th percentile comes later than n80, but within a factor of 2.5 of it.
    let n80 = power::sample_size_per_arm(0.05, 0.055, 0.05, 0.8, Alternative::TwoSided).unwrap();
    let seq = PlanInput { test: Test::Sequential { planned_samples_per_arm: n80 }, ..input(20.0, 24) };
    let p = plan(&seq, &GOAL).unwrap();
    let factor = p.samples_at_p80.unwrap() as f64 / n80 as f64;
    assert!((1.0..2.5).contains(&factor), "{factor} {p:?}");
    assert!(p.wrong < 0.01, "{p:?}");
}

#[test]
fn a_duration_horizon_decides_once_at_that_time() {
    let fixed = PlanInput { test: Test::FixedDuration(Duration::from_secs(7200)), ..input(20.0, 24) };
    let p = plan(&fixed, &GOAL).unwrap();
    assert_eq!(p.median, Some(Duration::from_secs(7200)));
    // 2h at 10 requests/s per arm: 72,000 per arm, above n80 (~31,000).
    assert!(p.power > 0.9, "{p:?}");
    assert_eq!(p.samples_at_median, Some(72_000));
}

#[test]
fn users_visiting_often_are_fewer_units() {
    let users = PlanInput { unit: Unit::User { visits_per_user: 4.0 }, ..input(80.0, 24) };
    let by_user = plan(&users, &GOAL).unwrap();
    let by_request = plan(&input(20.0, 24), &GOAL).unwrap();
    assert_eq!(by_user, by_request);
}

#[test]
fn a_harmless_guardrail_is_shown_non_inferior_and_a_harmful_one_rolled_back() {
    let harmless = Effect::Guardrail { baseline: 0.01, difference: 0.0, margin: 0.005 };
    let p = plan(&input(5.0, 2), &harmless).unwrap();
    assert!(p.power > 0.8 && p.wrong < 0.05, "{p:?}");
    let tight = Effect::Guardrail { baseline: 0.01, difference: 0.0, margin: 0.002 };
    let q = plan(&input(5.0, 2), &tight).unwrap();
    assert!(q.power < 0.5 * p.power, "{q:?}");
    let harmful = Effect::Guardrail { baseline: 0.01, difference: 0.01, margin: 0.002 };
    let r = plan(&input(5.0, 2), &harmful).unwrap();
    assert!(r.power > 0.9, "{r:?}");
    assert!(secs(r.median) < secs(p.median), "harm shows sooner than its absence: {r:?} {p:?}");
}

#[test]
fn a_later_canary_step_gets_more_treatment_traffic() {
    let ramp = PlanInput {
        schedule: vec![
            Phase { weights: vec![95.0, 5.0], duration: Some(Duration::from_secs(3600)) },
            Phase { weights: vec![50.0, 50.0], duration: None },
        ],
        ..input(20.0, 24)
    };
    let p = plan(&ramp, &GOAL).unwrap();
    let flat =
        plan(&PlanInput { schedule: vec![Phase { weights: vec![95.0, 5.0], duration: None }], ..ramp.clone() }, &GOAL)
            .unwrap();
    assert!(secs(p.median) < secs(flat.median), "{p:?} {flat:?}");
    let even = plan(&input(20.0, 24), &GOAL).unwrap();
    assert!(secs(p.median) > secs(even.median), "{p:?} {even:?}");
}

#[test]
fn duration_for_power_finds_the_80th_percentile() {
    let short = input(5.0, 1);
    assert!(plan(&short, &GOAL).unwrap().p80.is_none());
    let needed = duration_for_power(&short, &GOAL, Duration::from_secs(24 * 3600)).unwrap().unwrap();
    let enough = PlanInput { max_duration: needed, ..short.clone() };
    assert!(plan(&enough, &GOAL).unwrap().power >= 0.8);
    let just_short = PlanInput { max_duration: needed - short.interval, ..short };
    assert!(plan(&just_short, &GOAL).unwrap().power < 0.8);
}

#[test]
fn bad_input_names_the_value() {
    let err = |i: &PlanInput, e: &Effect| plan(i, e).unwrap_err().to_string();
    assert!(err(&input(0.0, 1), &GOAL).contains("traffic 0"));
    assert!(err(&input(20.0, 1), &Effect::Goal { baseline: 1.5, uplift: 0.1 }).contains("baseline 1.5"));
    assert!(err(&input(20.0, 1), &Effect::Goal { baseline: 0.05, uplift: 0.0 }).contains("uplift 0"));
    let no_look = PlanInput { max_duration: Duration::from_secs(30), ..input(20.0, 1) };
    assert!(err(&no_look, &GOAL).contains("maxDuration"));
    let one_arm = PlanInput { schedule: vec![Phase { weights: vec![100.0], duration: None }], ..input(20.0, 1) };
    assert!(err(&one_arm, &GOAL).contains("[100.0]"));
}
