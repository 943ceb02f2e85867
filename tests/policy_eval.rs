//! RolloutPolicy evaluation: each rule catches what it should and names the policy.

use std::collections::BTreeMap;

use forklane::cli::validate::{ValidateArgs, problems};
use forklane_core::api::load::{Document, load_documents};
use forklane_core::api::{Experiment, RolloutPolicy};
use forklane_core::policy::{check_policy, default_namespace_labels, evaluate};

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn load<T>(path: &str, pick: impl Fn(Document) -> Option<T>) -> T {
    let text = std::fs::read_to_string(root().join(path)).unwrap();
    load_documents(&text).unwrap().into_iter().find_map(pick).unwrap()
}

fn policy(path: &str) -> RolloutPolicy {
    load(path, |d| if let Document::RolloutPolicy(p) = d { Some(*p) } else { None })
}

fn experiment(path: &str) -> Experiment {
    load(path, |d| if let Document::Experiment(e) = d { Some(*e) } else { None })
}

fn production_labels() -> BTreeMap<String, String> {
    let mut labels = default_namespace_labels("shop");
    labels.insert("environment".into(), "production".into());
    labels
}

/// Thursday 2026-11-26 10:00 UTC: outside every freeze window of the example policies.
const THURSDAY: i64 = 1795687200;

#[test]
fn example_policies_are_well_formed() {
    for path in [
        "policies/production.yaml",
        "policies/payments-strict.yaml",
        "policies/team-ownership.yaml",
        "policies/payments-guardrails.yaml",
        "policies/business-hours.yaml",
    ] {
        assert_eq!(check_policy(&policy(path)), vec![], "{path}");
    }
}

#[test]
fn namespace_selector_limits_where_a_policy_applies() {
    let exp = experiment("examples/recreate.yaml");
    let p = policy("policies/production.yaml");
    assert!(evaluate(&p, &exp, &default_namespace_labels("dev"), Some(THURSDAY)).is_empty());
    assert!(!evaluate(&p, &exp, &production_labels(), Some(THURSDAY)).is_empty());
}

#[test]
fn production_policy_rules_each_fire() {
    let p = policy("policies/production.yaml");
    let rules = |exp: &Experiment| -> Vec<String> {
        evaluate(&p, exp, &production_labels(), Some(THURSDAY)).into_iter().map(|v| v.rule).collect()
    };
    assert_eq!(
        rules(&experiment("examples/recreate.yaml")),
        vec![
            "allowedStrategies",
            "maxStepWeight",
            "maxWeightWithoutAnalysis",
            "requiredGuardrails",
            "minAnalysisDuration"
        ]
    );
    // The canary example moves 10 → 50: a step of 40; its analysis allows at most 2h ≥ 30m.
    let canary = rules(&experiment("examples/canary.yaml"));
    assert_eq!(canary, vec!["maxStepWeight"]);
    let violations = evaluate(&p, &experiment("examples/canary.yaml"), &production_labels(), Some(THURSDAY));
    assert_eq!(
        violations[0].to_string(),
        "spec.strategy: violates RolloutPolicy \"production\" (maxStepWeight): state 4 raises a candidate's weight from 10 to 50, a step of 40; at most 25 allowed"
    );
}

#[test]
fn freeze_windows_block_changes_while_open() {
    let p = policy("policies/production.yaml");
    let exp = experiment("examples/ab-test.yaml");
    let friday_17h = THURSDAY + 86_400 + 7 * 3600;
    let monday_9h = THURSDAY + 4 * 86_400 - 3600;
    let frozen = |now| evaluate(&p, &exp, &production_labels(), Some(now)).iter().any(|v| v.rule == "freezeWindows");
    assert!(!frozen(THURSDAY));
    assert!(frozen(friday_17h));
    assert!(!frozen(monday_9h), "the 64h window opened Friday 16:00 ends Monday 08:00");
}

#[test]
fn strict_policy_wants_lower_alpha_and_latency_guardrail() {
    let p = policy("policies/payments-strict.yaml");
    let exp = experiment("examples/canary.yaml");
    let found = evaluate(&p, &exp, &default_namespace_labels("payments"), Some(THURSDAY));
    let lines: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert!(lines.iter().any(|l| l == "spec.analysis.alpha: violates RolloutPolicy \"payments-strict\" (maxAlpha): 0.05 is above the allowed 0.01"), "{lines:#?}");
    assert!(!found.iter().any(|v| v.rule == "minAnalysisDuration"), "a 2h analysis meets a 2h minimum");
    assert!(
        lines.iter().any(|l| l.contains(
            "(maxWeightWithoutAnalysis): a candidate reaches weight 10 before any analysis has run; at most 5 allowed"
        )),
        "{lines:#?}"
    );
}

#[test]
fn validate_command_reports_policy_violations_by_name() {
    let args = ValidateArgs {
        file: root().join("examples/recreate.yaml"),
        policies: vec![root().join("policies/payments-strict.yaml")],
        provider: None,
    };
    // The recreate example lives in `default`, which payments-strict does not select.
    assert_eq!(problems(&args, Some(THURSDAY)), Vec::<String>::new());
    let args = ValidateArgs {
        file: root().join("examples/abn-test.yaml"),
        policies: vec![root().join("policies/production.yaml"), root().join("policies/payments-strict.yaml")],
        provider: None,
    };
    assert_eq!(
        problems(&args, Some(THURSDAY)),
        Vec::<String>::new(),
        "shop has no environment label and is not a payments namespace"
    );
}

#[test]
fn max_alpha_refuses_bayesian_unless_allowed_and_min_exposure_wants_a_min_duration() {
    let mut p = policy("policies/payments-strict.yaml");
    let mut exp = experiment("examples/ab-test.yaml");
    let analysis = exp.spec.analysis.as_mut().unwrap();
    analysis.alpha = Some(0.01);
    analysis.method = forklane_core::api::Method::Bayesian;
    let messages = |p: &RolloutPolicy, exp: &Experiment| -> Vec<String> {
        evaluate(p, exp, &default_namespace_labels("payments"), Some(THURSDAY))
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    let found = messages(&p, &exp);
    assert!(found.iter().any(|m| m.contains("spec.analysis.method") && m.contains("bayesian")), "{found:#?}");
    p.spec.allow_bayesian = true;
    assert!(!messages(&p, &exp).iter().any(|m| m.contains("spec.analysis.method")));
    p.spec.min_exposure = Some("7d".parse().unwrap());
    let found = messages(&p, &exp);
    assert!(
        found.iter().any(|m| m.contains("(minExposure)") && m.contains("unset is shorter than the required 168h")),
        "{found:#?}"
    );
    exp.spec.analysis.as_mut().unwrap().min_duration = Some("7d".parse().unwrap());
    assert!(!messages(&p, &exp).iter().any(|m| m.contains("minExposure")));
}

#[test]
fn example_rules_judge_labels_guardrails_and_promotion() {
    let team = policy("policies/team-ownership.yaml");
    let mut exp = experiment("examples/canary.yaml");
    let said = |p: &RolloutPolicy, exp: &Experiment, ns: &str| -> Vec<String> {
        evaluate(p, exp, &default_namespace_labels(ns), Some(THURSDAY)).iter().map(ToString::to_string).collect()
    };
    let name = exp.metadata.name.clone().unwrap();
    assert_eq!(
        said(&team, &exp, "shop"),
        [format!(
            "spec: violates RolloutPolicy \"team-ownership\" (rule team-label): experiment {name} has no team label (metadata.labels.team)"
        )]
    );
    exp.metadata.labels = Some([("team".to_string(), "web".to_string())].into());
    assert_eq!(
        said(&team, &exp, "shop"),
        [
            "spec: violates RolloutPolicy \"team-ownership\" (rule arms-in-team): every arm's selector must carry team: <the experiment's team label>"
        ]
    );
    for arm in &mut exp.spec.arms {
        arm.selector.insert("team".into(), "web".into());
    }
    assert_eq!(said(&team, &exp, "shop"), Vec::<String>::new());

    let payments = policy("policies/payments-guardrails.yaml");
    assert_eq!(said(&payments, &exp, "shop"), Vec::<String>::new(), "only the payments namespace");
    let manual = "spec: violates RolloutPolicy \"payments-guardrails\" (rule manual-promotion): payments experiments are promoted by a person: set spec.promotion.mode: manual";
    assert_eq!(said(&payments, &exp, "payments"), [manual], "the canary example watches two guardrails");
    let analysis = exp.spec.analysis.as_mut().unwrap();
    let first_guardrail = analysis.metrics.iter().position(|m| m.role == forklane_core::api::Role::Guardrail).unwrap();
    analysis.metrics.remove(first_guardrail);
    exp.spec.promotion =
        Some(forklane_core::api::Promotion { mode: forklane_core::api::PromotionMode::Manual, ..Default::default() });
    assert_eq!(
        said(&payments, &exp, "payments"),
        [
            "spec: violates RolloutPolicy \"payments-guardrails\" (rule two-guardrails): payments experiments watch at least two guardrails; this one watches 1"
        ]
    );
}

#[test]
fn policy_compile_prints_the_admission_objects_or_names_the_broken_rule() {
    let yaml = forklane::cli::policy::compile(&root().join("policies/team-ownership.yaml")).unwrap();
    let docs: Vec<serde_json::Value> = yaml.split("---\n").map(|d| serde_yaml_ng::from_str(d).unwrap()).collect();
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]);
    assert_eq!(docs[0]["spec"]["validations"].as_array().unwrap().len(), 2);
    assert_eq!(docs[1]["spec"]["validationActions"], serde_json::json!(["Deny"]));
    let dir = std::env::temp_dir().join(format!("forklane-policy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let broken = dir.join("broken.yaml");
    let text = std::fs::read_to_string(root().join("policies/team-ownership.yaml")).unwrap();
    std::fs::write(&broken, text.replace("'team' in object.metadata.labels\"", "'team' in object.metadata.labels)\""))
        .unwrap();
    let errors = forklane::cli::policy::compile(&broken).unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].starts_with("RolloutPolicy team-ownership: spec.rules[0].expression: ERROR: <input>:1:"),
        "{errors:#?}"
    );
}
