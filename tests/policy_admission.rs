//! RolloutPolicies at admission, on the embedded cluster with real kubectl: the controller
//! compiles each policy into a ValidatingAdmissionPolicy and its binding; `kubectl apply` of a
//! violating Experiment is refused with the policy's message, or admitted with a warning; a
//! policy change takes effect without restarting anything; an experiment admitted before the
//! policy is held by the controller with a condition. And the API server's verdicts agree with
//! the controller's own check on generated experiments, for every example policy with rules.

use crate::support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use forklane_core::api::load::{Document, load_documents};
use forklane_core::api::{Experiment, MeshMode, Method, PromotionMode, RolloutPolicy};
use forklane_core::fixtures::{ExperimentBuilder, analysis, conversion, guardrail, pause, set_weight};
use forklane_core::policy::{admission, admission_violations};
use k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicyBinding;
use kube::api::{Api, Patch, PatchParams, PostParams};
use rand::{Rng, SeedableRng};
use support::e2e::*;
use support::kubectl::Kubectl;

const LONG: Duration = Duration::from_secs(60);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn policy(path: &str) -> RolloutPolicy {
    let text = std::fs::read_to_string(root().join(path)).unwrap();
    let docs = load_documents(&text).unwrap();
    docs.into_iter().find_map(|d| if let Document::RolloutPolicy(p) = d { Some(*p) } else { None }).unwrap()
}

fn violation_condition(exp: &Experiment) -> Option<String> {
    let conditions = exp.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
    conditions.iter().find(|c| c.type_ == "PolicyViolation" && c.status == "True").map(|c| c.message.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_of_a_violating_experiment_is_refused_then_warned_and_the_controller_holds_it() {
    tokio::time::timeout(Duration::from_secs(300), async {
        let mut env = Env::start(true, false).await;
        two_versions(&env, 1, &[], &[]).await;
        env.start_controller();
        let kubectl = Kubectl::new(&env.cluster, &root());
        // Admitted before any policy existed.
        let early = ExperimentBuilder::canary("early").mesh(MeshMode::Istio).steps([set_weight(20), pause()]);
        env.apply_experiment(early).await;
        env.wait_for("early", LONG, |e| e.status.as_ref().is_some_and(|s| s.phase.is_some())).await;

        kubectl.ok(&["apply", "-f", "policies/team-ownership.yaml"]).await;
        env.wait_policy_admitted("team-ownership", LONG).await;
        let held = env.wait_for("early", LONG, |e| violation_condition(e).is_some()).await;
        let said = violation_condition(&held).unwrap();
        assert!(said.contains("(rule team-label): experiment early has no team label"), "{said}");
        // Its routing goes to the next experiment of the host once it is deleted.
        env.experiments().delete("early", &Default::default()).await.unwrap();
        env.wait_gone("early", LONG).await;

        let late = ExperimentBuilder::canary("late").namespace(NS).port(80).steps([set_weight(20), pause()]);
        let late = kubectl.file("late.yaml", &late.yaml());
        let refused = kubectl.run(&["apply", "-f", &late]).await;
        assert!(!refused.ok, "refused: {}", refused.stdout);
        let denial = "ValidatingAdmissionPolicy 'team-ownership.rolloutpolicy.forklane.io' with binding \
                      'team-ownership.rolloutpolicy.forklane.io' denied request: spec: violates RolloutPolicy \
                      \"team-ownership\" (rule team-label): experiment late has no team label (metadata.labels.team)";
        assert!(refused.stderr.contains(denial), "{}", refused.stderr);
        let missing = kubectl.run(&["get", "experiment", "late", "-n", NS]).await;
        assert!(!missing.ok && missing.stderr.contains("NotFound"), "nothing stored: {}", missing.stderr);

        // The same policy, now only warning: in force at the next apply, nothing restarted.
        let text = std::fs::read_to_string(root().join("policies/team-ownership.yaml")).unwrap();
        let warn = kubectl.file("warn.yaml", &text.replace("enforcement: deny", "enforcement: warn"));
        kubectl.ok(&["apply", "-f", &warn]).await;
        env.wait_policy_admitted("team-ownership", LONG).await;
        let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(env.client.clone());
        let binding = bindings.get("team-ownership.rolloutpolicy.forklane.io").await.unwrap();
        assert_eq!(binding.spec.unwrap().validation_actions, Some(vec!["Warn".to_string()]));
        let warned = kubectl.run(&["apply", "-f", &late]).await;
        assert!(warned.ok, "admitted: {}", warned.stderr);
        let warning = "Warning: Validation failed for ValidatingAdmissionPolicy 'team-ownership.rolloutpolicy.forklane.io' \
                       with binding 'team-ownership.rolloutpolicy.forklane.io': spec: violates RolloutPolicy";
        assert!(warned.stderr.contains(warning), "{}", warned.stderr);
        let held = env.wait_for("late", LONG, |e| violation_condition(e).is_some()).await;
        assert!(violation_condition(&held).unwrap().contains("experiment late has no team label"));
        let vs = kubectl.run(&["get", "virtualservice", "late-forklane", "-n", NS]).await;
        assert!(!vs.ok, "a held experiment routes nothing: {}", vs.stdout);

        // A broken edit: refused by the controller with the field and the position, and the last
        // admission objects stay in force.
        let broken = kubectl.file("broken.yaml", &text.replace("enforcement: deny", "enforcement: warn").replace(
            "\"has(object.metadata.labels) && 'team' in object.metadata.labels\"",
            "\"has(object.metadata.labels) && 'team' in object.metadata.labels)\"",
        ));
        kubectl.ok(&["apply", "-f", &broken]).await;
        let policies: Api<RolloutPolicy> = Api::all(env.client.clone());
        let deadline = tokio::time::Instant::now() + LONG;
        let condition = loop {
            let p = policies.get("team-ownership").await.unwrap();
            let status = p.status.unwrap_or_default();
            let found = status.conditions.into_iter().find(|c| c.type_ == "Admission" && c.status == "False");
            if let Some(c) = found.filter(|_| status.observed_generation == p.metadata.generation) {
                break c;
            }
            assert!(tokio::time::Instant::now() < deadline, "the broken rule is not reported");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(condition.reason, "InvalidRule");
        assert!(condition.message.starts_with("spec.rules[0].expression: ERROR: <input>:1:"), "{}", condition.message);
        let table = kubectl.ok(&["get", "rolloutpolicy", "team-ownership"]).await;
        assert!(support::kubectl::header(&table).contains(&"ADMISSION".to_string()), "{table}");
        assert!(table.contains("InvalidRule"), "{table}");
        let binding = bindings.get("team-ownership.rolloutpolicy.forklane.io").await.unwrap();
        assert_eq!(binding.spec.unwrap().validation_actions, Some(vec!["Warn".to_string()]), "the last good one stays");

        // Deleting the policy deletes what it compiled to (they are owned by it).
        kubectl.ok(&["delete", "rolloutpolicy", "team-ownership"]).await;
        let deadline = tokio::time::Instant::now() + LONG;
        while bindings.get_opt("team-ownership.rolloutpolicy.forklane.io").await.unwrap().is_some() {
            assert!(tokio::time::Instant::now() < deadline, "the binding outlived its policy");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        env.stop_controller().await;
        env.shutdown().await;
    })
    .await
    .expect("bounded");
}

/// One generated experiment: strategy, team labels, arms' selectors, analysis and promotion
/// drawn at random (seeded), in namespace `payments`.
fn generated(rng: &mut rand::rngs::StdRng, i: usize) -> Experiment {
    let name = format!("gen-{i}");
    // Canary, the one strategy payments-strict allows, half the time.
    let builder = match rng.random_range(0..8) {
        0..4 => ExperimentBuilder::canary(&name).steps([set_weight(5), pause(), set_weight(50)]),
        4 => ExperimentBuilder::ab_test(&name).split([("v1", 50), ("v2", 50)]),
        5 => ExperimentBuilder::blue_green(&name),
        6 => ExperimentBuilder::recreate(&name),
        _ => ExperimentBuilder::rolling_update(&name),
    };
    let mut exp = builder.namespace("payments").mesh(MeshMode::Istio).port(80).build();
    let teams = ["web", "pay"];
    if rng.random_bool(0.7) {
        exp.metadata.labels = Some(BTreeMap::from([("team".into(), teams[rng.random_range(0..2)].into())]));
    }
    for arm in &mut exp.spec.arms {
        if rng.random_bool(0.7) {
            arm.selector.insert("team".into(), teams[rng.random_range(0..2)].into());
        }
    }
    if rng.random_bool(0.85) {
        let mut metrics = Vec::new();
        if rng.random_bool(0.8) {
            metrics.push(guardrail("error-rate", forklane_core::api::Builtin::IstioErrorRate, 0.01));
        }
        match rng.random_range(0..5) {
            0 => metrics.push(forklane_core::api::Metric { role: forklane_core::api::Role::Goal, ..latency() }),
            1 => {}
            _ => metrics.push(latency()),
        }
        if rng.random_bool(0.5) {
            metrics.push(conversion());
        }
        let mut a: forklane_core::api::Analysis = analysis(metrics).into();
        a.alpha = [Some(0.005), Some(0.01), Some(0.01), None, Some(0.05)][rng.random_range(0..5)];
        a.method = if rng.random_bool(0.15) { Method::Bayesian } else { Method::Sequential };
        exp.spec.analysis = Some(a);
    }
    if rng.random_bool(0.6) {
        let mode = if rng.random_bool(0.7) { PromotionMode::Manual } else { PromotionMode::Auto };
        exp.spec.promotion = Some(forklane_core::api::Promotion { mode, ..Default::default() });
    }
    exp
}

fn latency() -> forklane_core::api::Metric {
    guardrail("latency", forklane_core::api::Builtin::IstioLatency, 0.1)
}

/// Per example policy with rules or compiled fields: ≥ 50 generated experiments, each created
/// (server-side dry run) on the embedded cluster with the policy's admission objects in place.
/// The API server refuses exactly those the controller's check finds violating, with the first
/// violation's message; both sides refuse and admit some.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_and_the_controller_agree_on_generated_experiments() {
    tokio::time::timeout(Duration::from_secs(300), async {
        let env = Env::start(true, false).await;
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(env.client.clone());
        let ns = serde_json::from_value(serde_json::json!({"metadata": {"name": "payments"}})).unwrap();
        namespaces.create(&PostParams::default(), &ns).await.unwrap();
        let labels = forklane_core::policy::default_namespace_labels("payments");
        let apply = PatchParams::apply("policy-test").force();
        let experiments: Api<Experiment> = Api::namespaced(env.client.clone(), "payments");
        let dry_run = PostParams { dry_run: true, ..Default::default() };
        for path in
            ["policies/payments-strict.yaml", "policies/team-ownership.yaml", "policies/payments-guardrails.yaml"]
        {
            let policy = policy(path);
            let compiled = admission::compile(&policy).unwrap();
            let vaps: Api<k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicy> =
                Api::all(env.client.clone());
            let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(env.client.clone());
            let name = compiled.admission_name();
            vaps.patch(&name, &apply, &Patch::Apply(compiled.admission_policy())).await.unwrap();
            bindings.patch(&name, &apply, &Patch::Apply(compiled.admission_binding(&policy))).await.unwrap();
            let mut rng = rand::rngs::StdRng::seed_from_u64(14);
            let (mut refused, mut admitted) = (0, 0);
            for i in 0..80 {
                let exp = generated(&mut rng, i);
                let expected = admission_violations(&policy, &exp, &labels);
                match experiments.create(&dry_run, &exp).await {
                    Ok(_) => {
                        assert_eq!(expected, vec![], "{path}: the API server admitted {i}:\n{exp:#?}");
                        admitted += 1;
                    }
                    Err(kube::Error::Api(status)) => {
                        let first = expected.first().unwrap_or_else(|| {
                            panic!(
                                "{path}: the API server refused {i} ({}), the controller finds nothing:\n{exp:#?}",
                                status.message
                            )
                        });
                        assert!(
                            status.message.ends_with(&format!("denied request: {first}")),
                            "{path} {i}: {}",
                            status.message
                        );
                        refused += 1;
                    }
                    Err(e) => panic!("{path} {i}: {e}"),
                }
            }
            assert!(
                refused > 0 && admitted > 0,
                "{path}: {refused} refused, {admitted} admitted: the table tries both"
            );
            vaps.delete(&name, &Default::default()).await.unwrap();
            bindings.delete(&name, &Default::default()).await.unwrap();
        }
        env.shutdown().await;
    })
    .await
    .expect("bounded");
}
