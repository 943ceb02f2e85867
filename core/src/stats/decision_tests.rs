//! Unit tests of the decision rules.

use super::*;

fn prop(arm: &str, successes: u64, trials: u64) -> ArmObservation {
    ArmObservation { arm: arm.into(), value: Observation::Proportion { successes, trials }, batches: vec![] }
}

fn mean(arm: &str, m: f64, variance: f64, n: u64) -> ArmObservation {
    ArmObservation { arm: arm.into(), value: Observation::Mean { mean: m, variance, n }, batches: vec![] }
}

fn experiment(arms: Vec<ArmObservation>) -> DecisionInput {
    DecisionInput {
        control: "control".into(),
        goal: Some(Metric { name: "conversion".into(), direction: Direction::HigherIsBetter, arms }),
        guardrails: vec![],
        assignment: vec![],
    }
}

fn errors(control: u64, v2: u64, n: u64, margin: f64) -> Guardrail {
    Guardrail {
        metric: Metric {
            name: "errors".into(),
            direction: Direction::LowerIsBetter,
            arms: vec![prop("control", control, n), prop("v2", v2, n)],
        },
        margin: Margin::Absolute(margin),
    }
}

fn seq() -> DecisionConfig {
    DecisionConfig::default()
}

fn fixed() -> DecisionConfig {
    DecisionConfig { method: Method::FixedHorizon, ..Default::default() }
}

fn outcome(input: &DecisionInput, config: &DecisionConfig) -> Outcome {
    decide(input, config).expect("valid input").outcome
}

fn promote(arm: &str) -> Outcome {
    Outcome::Promote { arm: arm.into() }
}

fn reason(o: &Outcome) -> &str {
    match o {
        Outcome::Rollback { reason } | Outcome::Continue { reason } => reason,
        Outcome::Promote { .. } => "",
    }
}

#[test]
fn promotes_a_clear_winner_with_its_numbers() {
    let d = decide(&experiment(vec![prop("control", 1000, 20_000), prop("v2", 1400, 20_000)]), &seq()).unwrap();
    assert_eq!(d.outcome, promote("v2"));
    let c = &d.comparisons[0];
    assert_eq!((c.arm.as_str(), c.role, c.verdict), ("v2", Role::Goal, Verdict::Better));
    assert!((c.difference - 0.02).abs() < 1e-12);
    assert!(c.interval[0] > 0.0 && c.interval[1] > c.difference);
    assert!(c.adjusted_p_value.is_some_and(|p| p <= 0.05));
}

#[test]
fn identical_arms_continue_and_worse_arms_roll_back() {
    let same = outcome(&experiment(vec![prop("control", 1000, 20_000), prop("v2", 1000, 20_000)]), &seq());
    assert!(matches!(same, Outcome::Continue { .. }), "{same:?}");
    let worse = outcome(&experiment(vec![prop("control", 1000, 20_000), prop("v2", 600, 20_000)]), &seq());
    assert!(matches!(worse, Outcome::Rollback { .. }), "{worse:?}");
}

#[test]
fn lower_is_better_goal_promotes_the_faster_arm() {
    let mut input = experiment(vec![mean("control", 0.250, 0.01, 10_000), mean("v2", 0.240, 0.01, 10_000)]);
    input.goal.as_mut().unwrap().direction = Direction::LowerIsBetter;
    assert_eq!(outcome(&input, &seq()), promote("v2"));
    input.goal.as_mut().unwrap().direction = Direction::HigherIsBetter;
    assert!(matches!(outcome(&input, &seq()), Outcome::Rollback { .. }));
}

#[test]
fn guardrail_beyond_its_margin_rolls_back() {
    let mut input = experiment(vec![prop("control", 1000, 20_000), prop("v2", 1000, 20_000)]);
    input.guardrails.push(errors(100, 400, 20_000, 0.002));
    let o = outcome(&input, &seq());
    assert!(matches!(o, Outcome::Rollback { .. }) && reason(&o).contains("errors"), "{o:?}");
    // The same harm within a wider margin is no reason to roll back.
    input.guardrails[0] = errors(100, 400, 20_000, 0.05);
    assert!(matches!(outcome(&input, &seq()), Outcome::Continue { .. }));
}

#[test]
fn a_winner_waits_until_guardrails_are_non_inferior() {
    let mut input = experiment(vec![prop("control", 1000, 20_000), prop("v2", 1400, 20_000)]);
    input.guardrails.push(errors(10, 12, 20_000, 0.0001));
    let o = outcome(&input, &seq());
    assert!(matches!(o, Outcome::Continue { .. }) && reason(&o).contains("errors"), "{o:?}");
    input.guardrails[0] = errors(10, 12, 20_000, 0.005);
    assert_eq!(outcome(&input, &seq()), promote("v2"));
}

#[test]
fn holm_guards_the_goal_across_arms() {
    // Raw p ≈ 0.027 for v1: significant alone, not after Holm with a second arm.
    let two = experiment(vec![prop("control", 500, 10_000), prop("v1", 570, 10_000)]);
    assert_eq!(outcome(&two, &fixed()), promote("v1"));
    let three = experiment(vec![prop("control", 500, 10_000), prop("v1", 570, 10_000), prop("v2", 500, 10_000)]);
    let d = decide(&three, &fixed()).unwrap();
    assert!(matches!(d.outcome, Outcome::Continue { .. }), "{:?}", d.outcome);
    let v1 = d.comparisons.iter().find(|c| c.arm == "v1").unwrap();
    assert!(v1.p_value.unwrap() < 0.05 && v1.adjusted_p_value.unwrap() > 0.05);
}

#[test]
fn promotes_the_best_of_several_winners() {
    let input = experiment(vec![prop("control", 1000, 20_000), prop("v1", 1300, 20_000), prop("v2", 1500, 20_000)]);
    assert_eq!(outcome(&input, &seq()), promote("v2"));
}

#[test]
fn too_few_samples_continue_with_the_reason() {
    let o = outcome(&experiment(vec![prop("control", 10, 50), prop("v2", 40, 50)]), &seq());
    assert!(matches!(o, Outcome::Continue { .. }) && reason(&o).contains("at least 100"), "{o:?}");
}

#[test]
fn sample_ratio_mismatch_rolls_back() {
    let mut input = experiment(vec![prop("control", 1000, 20_000), prop("v2", 1400, 22_000)]);
    input.assignment = vec![
        Assignment { arm: "control".into(), weight: 1.0, units: 20_000 },
        Assignment { arm: "v2".into(), weight: 1.0, units: 22_000 },
    ];
    let d = decide(&input, &seq()).unwrap();
    assert!(matches!(&d.outcome, Outcome::Rollback { reason } if reason.contains("sample ratio")), "{:?}", d.outcome);
    assert!(d.srm.is_some_and(|s| s.p_value < 1e-3 && s.mismatch));
    input.assignment[1].units = 20_100;
    let balanced = decide(&input, &seq()).unwrap();
    assert!(balanced.srm.is_some_and(|s| s.p_value > 0.001 && !s.mismatch));
    assert!(!matches!(balanced.outcome, Outcome::Rollback { .. }), "{:?}", balanced.outcome);
}

#[test]
fn fixed_horizon_decides_only_at_the_planned_size() {
    let config = DecisionConfig { planned_samples_per_arm: Some(30_000), ..fixed() };
    let early = outcome(&experiment(vec![prop("control", 1000, 20_000), prop("v2", 1400, 20_000)]), &config);
    assert!(matches!(early, Outcome::Continue { .. }) && reason(&early).contains("30000"), "{early:?}");
    let win = outcome(&experiment(vec![prop("control", 1500, 30_000), prop("v2", 2100, 30_000)]), &config);
    assert_eq!(win, promote("v2"));
    let null = outcome(&experiment(vec![prop("control", 1500, 30_000), prop("v2", 1510, 30_000)]), &config);
    assert!(matches!(null, Outcome::Rollback { .. }) && reason(&null).contains("planned"), "{null:?}");
}

#[test]
fn a_duration_horizon_waits_then_its_one_test_rolls_back_what_it_does_not_promote() {
    let wait = |secs| DecisionConfig { horizon_wait: Some(std::time::Duration::from_secs(secs)), ..fixed() };
    let clear = experiment(vec![prop("control", 1000, 20_000), prop("v2", 1400, 20_000)]);
    let early = outcome(&clear, &wait(90));
    assert_eq!(reason(&early), "fixed-horizon test waits for its horizon duration: 0h01m30s to go");
    assert_eq!(outcome(&clear, &wait(0)), promote("v2"));
    let null = experiment(vec![prop("control", 1500, 30_000), prop("v2", 1510, 30_000)]);
    assert!(matches!(outcome(&null, &wait(0)), Outcome::Rollback { .. }), "{:?}", outcome(&null, &wait(0)));
    // Without a horizon the same look only continues.
    assert!(matches!(outcome(&null, &fixed()), Outcome::Continue { .. }));
}

#[test]
fn bayesian_method_reports_probabilities_and_losses() {
    let config = DecisionConfig { method: Method::Bayesian, ..Default::default() };
    let d = decide(&experiment(vec![prop("control", 1000, 20_000), prop("v2", 1400, 20_000)]), &config).unwrap();
    assert_eq!(d.outcome, promote("v2"));
    let c = &d.comparisons[0];
    assert!(c.prob_better.is_some_and(|p| p > 0.999) && c.expected_loss.is_some_and(|l| l < 1e-6));
    assert!(c.p_value.is_none());
    let unclear = outcome(&experiment(vec![prop("control", 120, 1000), prop("v2", 140, 1000)]), &config);
    // P(better) ≈ 0.91 but choosing v2 is expected to cost ≈ 0.0006, above 0.1% of 0.12.
    assert!(matches!(unclear, Outcome::Continue { .. }), "{unclear:?}");
    let more = decide(&experiment(vec![prop("control", 1200, 10_000), prop("v2", 1400, 10_000)]), &config).unwrap();
    let loss = more.comparisons[0].expected_loss.unwrap();
    assert!(loss < 0.001 * 0.12, "the same rates on ten times the data cost little: {loss}");
    assert_eq!(more.outcome, promote("v2"), "decided on expected loss");
}

/// Every number a decision reports must be finite.
fn assert_finite(d: &Decision) {
    for c in &d.comparisons {
        let opt = [c.p_value, c.adjusted_p_value, c.prob_better, c.expected_loss];
        let all = [c.control_value, c.arm_value, c.difference, c.interval[0], c.interval[1]]
            .into_iter()
            .chain(opt.into_iter().flatten());
        for v in all {
            assert!(v.is_finite(), "{c:?}");
        }
    }
}

#[test]
fn extreme_counts_give_defined_results() {
    const T: u64 = 1_000_000_000_000;
    let cases = [
        ((0, 1000), (0, 1000)),        // zero conversions
        ((1000, 1000), (1000, 1000)),  // all conversions
        ((0, 1000), (1000, 1000)),     // all vs none
        ((0, 0), (0, 0)),              // n = 0
        ((1, 1), (0, 1)),              // n = 1
        ((50_000, 1_000_000), (0, 1)), // million-fold imbalance
        ((50_000, 1_000_000_000_000), (1, 1_000_000)),
        ((T / 20, T), (T / 20, T)), // 10^12
        ((T / 20, T), (T / 20 + T / 10_000, T)),
    ];
    let methods = [Method::Sequential, Method::FixedHorizon, Method::Bayesian];
    for ((xc, nc), (xt, nt)) in cases {
        for method in methods {
            for min in [0, 100] {
                let mut input = experiment(vec![prop("control", xc, nc), prop("v2", xt, nt)]);
                input.guardrails.push(Guardrail {
                    metric: Metric {
                        name: "errors".into(),
                        direction: Direction::LowerIsBetter,
                        arms: vec![prop("control", xc, nc), prop("v2", xt, nt)],
                    },
                    margin: Margin::Relative(0.1),
                });
                let config = DecisionConfig { method, min_samples_per_arm: min, ..Default::default() };
                let d = decide(&input, &config).unwrap_or_else(|e| panic!("{method:?} {xc}/{nc} vs {xt}/{nt}: {e}"));
                assert_finite(&d);
                if nc == 0 || (min == 100 && nt < 100) {
                    assert!(
                        matches!(&d.outcome, Outcome::Continue { reason } if reason.contains("samples")),
                        "{:?}",
                        d.outcome
                    );
                }
            }
        }
    }
    // 10^12 trials and a 0.2% relative uplift: decisive under every method.
    for method in methods {
        let input = experiment(vec![prop("control", T / 20, T), prop("v2", T / 20 + T / 10_000, T)]);
        assert_eq!(outcome(&input, &DecisionConfig { method, ..Default::default() }), promote("v2"), "{method:?}");
    }
}

#[test]
fn constant_means_continue_for_lack_of_variance() {
    let o = outcome(&experiment(vec![mean("control", 1.0, 0.0, 500), mean("v2", 1.0, 0.0, 500)]), &seq());
    assert!(matches!(o, Outcome::Continue { .. }) && reason(&o).contains("variance"), "{o:?}");
    let one = outcome(
        &experiment(vec![mean("control", 1.0, 0.5, 1), mean("v2", 1.0, 0.5, 1)]),
        &DecisionConfig { min_samples_per_arm: 0, ..seq() },
    );
    assert!(reason(&one).contains("at least 2"), "{one:?}");
}

#[test]
fn malformed_input_is_an_error() {
    let ok = || experiment(vec![prop("control", 10, 100), prop("v2", 12, 100)]);
    let mut unknown = ok();
    unknown.control = "nope".into();
    let mut dup = ok();
    dup.goal.as_mut().unwrap().arms.push(prop("v2", 1, 2));
    let mut lonely = ok();
    lonely.goal.as_mut().unwrap().arms.truncate(1);
    let impossible = experiment(vec![prop("control", 101, 100), prop("v2", 12, 100)]);
    let nan = experiment(vec![mean("control", f64::NAN, 1.0, 100), mean("v2", 1.0, 1.0, 100)]);
    let mixed = experiment(vec![prop("control", 10, 100), mean("v2", 1.0, 1.0, 100)]);
    let mut missing = ok();
    missing.guardrails.push(Guardrail {
        metric: Metric { name: "g".into(), direction: Direction::LowerIsBetter, arms: vec![prop("control", 1, 100)] },
        margin: Margin::Absolute(0.1),
    });
    let mut negative = ok();
    negative.guardrails.push(Guardrail { margin: Margin::Absolute(-0.1), ..errors(1, 1, 100, 0.0) });
    for (name, input) in [
        ("unknown", unknown),
        ("dup", dup),
        ("lonely", lonely),
        ("impossible", impossible),
        ("nan", nan),
        ("mixed", mixed),
        ("missing", missing),
        ("negative", negative),
    ] {
        assert!(matches!(decide(&input, &seq()), Err(crate::stats::StatsError::InvalidInput(_))), "{name}");
    }
    for config in [
        DecisionConfig { alpha: 0.0, ..seq() },
        DecisionConfig { alpha: f64::NAN, ..seq() },
        DecisionConfig { planned_samples_per_arm: Some(0), ..seq() },
    ] {
        assert!(decide(&ok(), &config).is_err());
    }
}

#[test]
fn types_speak_camel_case_json() {
    let input: DecisionInput = serde_json::from_value(serde_json::json!({
        "control": "control",
        "goal": {"name": "conversion", "arms": [
            {"arm": "control", "value": {"proportion": {"successes": 1000, "trials": 20000}}},
            {"arm": "v2", "value": {"proportion": {"successes": 1400, "trials": 20000}}}]},
        "guardrails": [{"name": "latency", "direction": "lowerIsBetter", "margin": {"relative": 0.05}, "arms": [
            {"arm": "control", "value": {"mean": {"mean": 0.2, "variance": 0.01, "n": 20000}}},
            {"arm": "v2", "value": {"mean": {"mean": 0.2, "variance": 0.01, "n": 20000}}}]}]
    }))
    .unwrap();
    let config: DecisionConfig =
        serde_json::from_value(serde_json::json!({"method": "fixedHorizon", "minSamplesPerArm": 10})).unwrap();
    assert_eq!((config.method, config.min_samples_per_arm, config.alpha), (Method::FixedHorizon, 10, 0.05));
    let d = decide(&input, &seq()).unwrap();
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["outcome"], serde_json::json!({"action": "promote", "arm": "v2"}));
    assert!(json["comparisons"][1]["adjustedPValue"].is_f64());
    assert_eq!(json["comparisons"][1]["verdict"], "nonInferior");
    let back: Decision = serde_json::from_value(json).unwrap();
    assert_eq!(back, d);
}

#[test]
fn a_guardrail_only_gate_passes_harmless_arms_and_rolls_back_harmful_ones() {
    let guard = |control: (u64, u64), v2: (u64, u64)| DecisionInput {
        control: "control".into(),
        goal: None,
        guardrails: vec![Guardrail {
            metric: Metric {
                name: "error-rate".into(),
                direction: Direction::LowerIsBetter,
                arms: vec![prop("control", control.0, control.1), prop("v2", v2.0, v2.1)],
            },
            margin: Margin::Absolute(0.005),
        }],
        assignment: vec![],
    };
    let config = DecisionConfig::default();
    let same = decide(&guard((100, 20_000), (98, 20_000)), &config).unwrap();
    assert_eq!(same.outcome, Outcome::Promote { arm: "v2".into() });
    let harmful = decide(&guard((100, 20_000), (500, 20_000)), &config).unwrap();
    assert!(matches!(harmful.outcome, Outcome::Rollback { .. }), "{:?}", harmful.outcome);
    let early = decide(&guard((1, 200), (1, 200)), &config).unwrap();
    assert!(matches!(early.outcome, Outcome::Continue { .. }), "{:?}", early.outcome);
    let nothing = DecisionInput { guardrails: vec![], ..guard((1, 2), (1, 2)) };
    assert!(decide(&nothing, &config).is_err());
}

#[test]
fn harm_rolls_back_before_min_samples_but_a_promotion_waits() {
    // A canary failing every request: 30 of 30 errors against 0 of 270, far below 100 samples.
    let mut input = experiment(vec![prop("control", 10, 270), prop("v2", 3, 30)]);
    input.guardrails = vec![Guardrail {
        metric: Metric {
            name: "errors".into(),
            direction: Direction::LowerIsBetter,
            arms: vec![prop("control", 0, 270), prop("v2", 30, 30)],
        },
        margin: Margin::Absolute(0.01),
    }];
    let d = decide(&input, &seq()).unwrap();
    assert!(
        matches!(&d.outcome, Outcome::Rollback { reason } if reason.contains("guardrail `errors`")),
        "{:?}",
        d.outcome
    );
    assert!(d.comparisons.iter().any(|c| c.verdict == Verdict::Inferior));
    // Harmless so far: the lack of samples still holds everything else back.
    input.guardrails[0].metric.arms = vec![prop("control", 0, 270), prop("v2", 0, 30)];
    let d = decide(&input, &seq()).unwrap();
    assert!(reason(&d.outcome).contains("at least 100 are needed"), "{:?}", d.outcome);
    // The fixed-horizon test is valid only once, at its horizon: no early look.
    input.guardrails[0].metric.arms = vec![prop("control", 0, 270), prop("v2", 30, 30)];
    assert!(matches!(outcome(&input, &fixed()), Outcome::Continue { .. }));
}

/// A guardrail-only gate (a canary step) whose arms are equal in every batch while the error
/// rate drifts up and the candidate's weight grows: the totals show harm, the batches do not.
fn drifting_gate(with_batches: bool) -> DecisionInput {
    let (mut control, mut v2) = (vec![], vec![]);
    for k in 0..8u64 {
        let (rate, share) = (0.01 + 0.005 * k as f64, 0.05 + 0.06 * k as f64);
        let n = 20_000.0;
        let (nt, nc) = ((n * share).round(), (n * (1.0 - share)).round());
        v2.push(Batch { successes: (nt * rate).round() as u64, trials: nt as u64 });
        control.push(Batch { successes: (nc * rate).round() as u64, trials: nc as u64 });
    }
    let arm = |name: &str, batches: Vec<Batch>| {
        let (successes, trials) = batches.iter().fold((0, 0), |(x, n), b| (x + b.successes, n + b.trials));
        let batches = if with_batches { batches } else { vec![] };
        ArmObservation { arm: name.into(), value: Observation::Proportion { successes, trials }, batches }
    };
    let mut g = errors(0, 0, 1, 0.002);
    g.metric.arms = vec![arm("control", control), arm("v2", v2)];
    DecisionInput { control: "control".into(), goal: None, guardrails: vec![g], assignment: vec![] }
}

#[test]
fn batches_remove_the_bias_of_weights_that_change_while_rates_drift() {
    let pooled = decide(&drifting_gate(false), &seq()).unwrap();
    assert!(matches!(pooled.outcome, Outcome::Rollback { .. }), "{pooled:?}");
    assert!(pooled.comparisons[0].difference > 0.005, "{pooled:?}");
    let batched = decide(&drifting_gate(true), &seq()).unwrap();
    assert!(!matches!(batched.outcome, Outcome::Rollback { .. }), "{batched:?}");
    assert!(batched.comparisons[0].difference.abs() < 1e-4, "{batched:?}");
}

#[test]
fn batches_that_disagree_widen_the_interval_and_agreeing_ones_keep_the_iid_width() {
    let arms = |swing: u64| {
        let control: Vec<Batch> = (0..8).map(|_| Batch { successes: 500, trials: 10_000 }).collect();
        // The treatment's batches alternate around 5.5%: ±swing successes.
        let v2: Vec<Batch> = (0..8)
            .map(|k| Batch { successes: if k % 2 == 0 { 550 + swing } else { 550 - swing }, trials: 10_000 })
            .collect();
        let obs = |name: &str, b: Vec<Batch>| ArmObservation {
            arm: name.into(),
            value: Observation::Proportion {
                successes: b.iter().map(|b| b.successes).sum(),
                trials: b.iter().map(|b| b.trials).sum(),
            },
            batches: b,
        };
        experiment(vec![obs("control", control), obs("v2", v2)])
    };
    let width = |input: &DecisionInput| {
        let c = &decide(input, &fixed()).unwrap().comparisons[0];
        c.interval[1] - c.interval[0]
    };
    let mut iid = arms(0);
    for a in &mut iid.goal.as_mut().unwrap().arms {
        a.batches.clear();
    }
    assert_eq!(width(&arms(0)), width(&iid));
    assert_eq!(decide(&arms(0), &fixed()).unwrap().comparisons[0].difference, 0.005);
    assert!(width(&arms(200)) > 3.0 * width(&iid), "{} vs {}", width(&arms(200)), width(&iid));
}

#[test]
fn malformed_batches_are_errors_naming_the_metric_arm_and_batch() {
    let mut input = experiment(vec![prop("control", 10, 100), prop("v2", 10, 100)]);
    input.goal.as_mut().unwrap().arms[1].batches =
        vec![Batch { successes: 1, trials: 50 }, Batch { successes: 7, trials: 5 }];
    let err = decide(&input, &seq()).unwrap_err().to_string();
    assert!(err.contains("`conversion` arm `v2`: batches[1] has 7 successes out of 5 trials"), "{err}");
    let mut means = experiment(vec![mean("control", 1.0, 1.0, 100), mean("v2", 1.0, 1.0, 100)]);
    means.goal.as_mut().unwrap().arms[0].batches = vec![Batch { successes: 1, trials: 2 }];
    let err = decide(&means, &seq()).unwrap_err().to_string();
    assert!(err.contains("`conversion` arm `control`: batches are for proportions only"), "{err}");
}

/// The error budget: next to a goal the harm tests run at α/2 (the goal's "every arm worse" side
/// has the other half); a guardrail-only gate gives them the whole α.
#[test]
fn harm_tests_get_half_of_alpha_next_to_a_goal_and_all_of_it_in_a_gate() {
    let config = DecisionConfig { min_samples_per_arm: 1, ..fixed() };
    let mut with_goal = experiment(vec![prop("control", 1000, 10_000), prop("v2", 1000, 10_000)]);
    with_goal.guardrails = vec![errors(100, 125, 10_000, 0.0)];
    let d = decide(&with_goal, &config).unwrap();
    let harm_p = d.comparisons[1].adjusted_p_value.unwrap();
    assert!(harm_p > config.alpha / 2.0 && harm_p <= config.alpha, "{harm_p}");
    assert!(!matches!(d.outcome, Outcome::Rollback { .. }), "{d:?}");
    let gate = DecisionInput { goal: None, ..with_goal };
    assert!(matches!(decide(&gate, &config).unwrap().outcome, Outcome::Rollback { .. }));
}
