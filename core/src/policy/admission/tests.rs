use proptest::prelude::*;

use super::*;
use crate::api::{Analysis, Experiment, Method, PolicyRule, Role, RolloutPolicySpec};
use crate::fixtures::{ExperimentBuilder, analysis, conversion, guardrail};
use crate::policy::default_namespace_labels;

fn policy(spec: RolloutPolicySpec) -> RolloutPolicy {
    let mut p = RolloutPolicy::new("payments", spec);
    p.metadata.name = Some("payments".into());
    p
}

fn strict() -> RolloutPolicy {
    policy(RolloutPolicySpec {
        allowed_strategies: vec![StrategyName::Canary, StrategyName::AbTest],
        required_guardrails: vec!["error-rate".into(), "latency".into()],
        max_alpha: Some(0.01),
        rules: vec![PolicyRule {
            name: "team-label".into(),
            expression: "has(object.metadata.labels) && 'team' in object.metadata.labels".into(),
            message_expression: Some("'experiment ' + object.metadata.name + ' has no team label'".into()),
            ..Default::default()
        }],
        ..Default::default()
    })
}

fn messages(policy: &RolloutPolicy, exp: &Experiment) -> Vec<String> {
    let compiled = compile(policy).expect("compiles");
    let vars = crate::policy::variables(exp, &default_namespace_labels("payments"));
    compiled.evaluate(&vars).iter().map(ToString::to_string).collect()
}

#[test]
fn fixed_fields_and_rules_say_what_the_controller_said() {
    let exp = ExperimentBuilder::recreate("checkout").namespace("payments").build();
    assert_eq!(
        messages(&strict(), &exp),
        [
            "spec.strategy: violates RolloutPolicy \"payments\" (allowedStrategies): strategy recreate is not allowed (allowed: canary, abTest)",
            "spec.analysis.metrics: violates RolloutPolicy \"payments\" (requiredGuardrails): guardrail metric \"error-rate\" is required",
            "spec.analysis.metrics: violates RolloutPolicy \"payments\" (requiredGuardrails): guardrail metric \"latency\" is required",
            "spec: violates RolloutPolicy \"payments\" (rule team-label): experiment checkout has no team label",
        ]
    );
    let mut ok = ExperimentBuilder::canary("checkout")
        .namespace("payments")
        .analysis(
            analysis([
                guardrail("error-rate", crate::api::Builtin::IstioErrorRate, 0.01),
                guardrail("latency", crate::api::Builtin::IstioLatency, 0.1),
            ])
            .alpha(0.05),
        )
        .build();
    ok.metadata.labels = Some([("team".to_string(), "pay".to_string())].into());
    assert_eq!(
        messages(&strict(), &ok),
        ["spec.analysis.alpha: violates RolloutPolicy \"payments\" (maxAlpha): 0.05 is above the allowed 0.01"]
    );
}

#[test]
fn a_rule_that_does_not_compile_is_refused_with_its_field_and_position() {
    let mut p = strict();
    p.spec.rules.push(PolicyRule {
        name: "broken".into(),
        expression: "object.spec.arms.size( > 2".into(),
        ..Default::default()
    });
    p.spec.rules.push(PolicyRule {
        name: "bad-message".into(),
        expression: "true".into(),
        message_expression: Some("'a' +".into()),
        ..Default::default()
    });
    let problems = compile(&p).unwrap_err();
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, ["spec.rules[1].expression", "spec.rules[2].messageExpression"]);
    assert!(problems[0].message.starts_with("ERROR: <input>:1:"), "{}", problems[0].message);
    assert!(problems[0].message.contains('^'), "a caret under the position: {}", problems[0].message);
    let exp = ExperimentBuilder::canary("checkout").namespace("payments").build();
    let violations = crate::policy::evaluate(&p, &exp, &default_namespace_labels("payments"), None);
    assert!(
        violations.iter().any(|v| v.message.contains("spec.rules[1].expression does not compile")),
        "{violations:#?}"
    );
}

#[test]
fn the_admission_objects_carry_the_checks_the_selector_and_the_enforcement() {
    let mut p = strict();
    p.spec.enforcement = Enforcement::Warn;
    p.spec.namespace_selector = Some(serde_json::from_value(json!({"matchLabels": {"team": "payments"}})).unwrap());
    let compiled = compile(&p).unwrap();
    let vap = serde_json::to_value(compiled.admission_policy()).unwrap();
    assert_eq!(vap["metadata"]["name"], "payments.rolloutpolicy.forklane.io");
    assert_eq!(vap["spec"]["matchConstraints"]["resourceRules"][0]["resources"], json!(["experiments"]));
    let validations = vap["spec"]["validations"].as_array().unwrap();
    assert_eq!(validations.len(), compiled.checks.len());
    assert_eq!(
        validations[1]["message"],
        "spec.analysis.metrics: violates RolloutPolicy \"payments\" (requiredGuardrails): guardrail metric \"error-rate\" is required"
    );
    // The message expressions compile, with the prefix quoted into them.
    for v in validations {
        if let Some(m) = v["messageExpression"].as_str() {
            assert!(m.starts_with("'spec"), "{m}");
            Expression::compile(m).unwrap();
        }
        Expression::compile(v["expression"].as_str().unwrap()).unwrap();
    }
    let binding = serde_json::to_value(compiled.admission_binding(&p)).unwrap();
    assert_eq!(binding["spec"]["policyName"], "payments.rolloutpolicy.forklane.io");
    assert_eq!(binding["spec"]["validationActions"], json!(["Warn"]));
    assert_eq!(binding["spec"]["matchResources"]["namespaceSelector"], json!({"matchLabels": {"team": "payments"}}));
}

#[test]
fn quoting_survives_quotes_and_backslashes() {
    let text = r#"it's a \d "test""#;
    let e = Expression::compile(&quote(text)).unwrap();
    let vars = Variables::new(&json!({}), None, &json!({}));
    assert_eq!(e.text(&vars).unwrap(), text);
}

/// The strategies, analyses and metrics experiments are generated from.
fn experiment() -> impl Strategy<Value = Experiment> {
    let strategy = 0..5usize;
    let alpha = prop_oneof![Just(None), Just(Some(0.01)), Just(Some(0.05)), Just(Some(0.1))];
    let method = prop_oneof![Just(Method::Sequential), Just(Method::FixedHorizon), Just(Method::Bayesian)];
    let metrics = proptest::collection::vec(0..4usize, 0..4);
    (strategy, proptest::option::of((alpha, method, metrics))).prop_map(|(strategy, analysed)| {
        let builder = match strategy {
            0 => ExperimentBuilder::canary("e"),
            1 => ExperimentBuilder::ab_test("e"),
            2 => ExperimentBuilder::blue_green("e"),
            3 => ExperimentBuilder::recreate("e"),
            _ => ExperimentBuilder::rolling_update("e"),
        };
        let mut exp = builder.namespace("payments").build();
        exp.spec.analysis = analysed.map(|(alpha, method, metrics)| {
            let metrics = metrics.into_iter().map(|m| match m {
                0 => guardrail("error-rate", crate::api::Builtin::IstioErrorRate, 0.01),
                1 => guardrail("latency", crate::api::Builtin::IstioLatency, 0.1),
                2 => crate::api::Metric { name: "latency".into(), role: Role::Goal, ..conversion() },
                _ => conversion(),
            });
            let mut a: Analysis = analysis(metrics).into();
            a.alpha = alpha;
            a.method = method;
            a
        });
        exp
    })
}

/// What the controller checked in Rust before these fields were compiled to CEL.
fn reference(policy: &RolloutPolicy, exp: &Experiment) -> Vec<&'static str> {
    let spec = &policy.spec;
    let mut out = Vec::new();
    if !spec.allowed_strategies.contains(&exp.spec.strategy.name()) {
        out.push("allowedStrategies");
    }
    let analysis = exp.spec.analysis.as_ref();
    for required in &spec.required_guardrails {
        if !analysis.is_some_and(|a| a.metrics.iter().any(|m| &m.name == required && m.role == Role::Guardrail)) {
            out.push("requiredGuardrails");
        }
    }
    if let (Some(max), Some(a)) = (spec.max_alpha, analysis) {
        if a.alpha() > max {
            out.push("maxAlpha");
        }
        if a.method == Method::Bayesian && !spec.allow_bayesian {
            out.push("maxAlpha");
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn the_compiled_fields_judge_as_the_fields_mean(exp in experiment(), allow_bayesian in any::<bool>()) {
        let mut p = strict();
        p.spec.rules.clear();
        p.spec.allow_bayesian = allow_bayesian;
        let compiled = compile(&p).unwrap();
        let vars = crate::policy::variables(&exp, &default_namespace_labels("payments"));
        let rules: Vec<String> = compiled.evaluate(&vars).into_iter().map(|v| v.rule).collect();
        prop_assert_eq!(rules, reference(&p, &exp));
    }
}
