//! Invariants of the planner for random valid experiments.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use forklane_core::api::Routing;
use forklane_core::api::Strategy as Spec;
use forklane_core::api::{
    AbRule, AbTest, Arm, Canary, CanaryStep, Experiment, ExperimentSpec, MeshMode, Mirror, Pause, RuleMatch,
    ServiceRef, Sticky, StringMatch,
};
use forklane_core::plan::steps::proportional;
use forklane_core::plan::{Action, Observed, Target, plan};
use kube::api::ObjectMeta;
use proptest::prelude::*;

fn arms(n: usize) -> Vec<Arm> {
    (0..n)
        .map(|i| Arm {
            name: format!("arm-{i}"),
            control: i == 0,
            selector: BTreeMap::from([("version".to_string(), format!("v{i}"))]),
            deployment: Some(format!("app-v{i}")),
        })
        .collect()
}

fn experiment(arms: Vec<Arm>, strategy: Spec, mirror: Option<Mirror>) -> Experiment {
    Experiment {
        metadata: ObjectMeta { name: Some("exp".into()), namespace: Some("ns".into()), ..Default::default() },
        spec: ExperimentSpec {
            service: ServiceRef { name: "svc".into(), port: Some(80), hosts: None, gateways: None },
            mesh: MeshMode::Auto,
            arms,
            strategy,
            mirror,
            analysis: None,
            promotion: None,
            progress_deadline: None,
            on_progress_deadline: None,
            routing: None,
        },
        status: None,
    }
}

/// Integer weights over `n` arms summing to 100, every arm at least 1.
fn weights(n: usize) -> impl Strategy<Value = Vec<i32>> {
    proptest::collection::vec(1..1000i32, n).prop_map(|raw| proportional(&raw, 100))
}

fn rule(i: usize, arm: String, kind: u8) -> AbRule {
    let mut m = RuleMatch::default();
    let exact = |v: &str| StringMatch { exact: Some(v.into()), ..Default::default() };
    match kind % 4 {
        0 => drop(m.headers.insert(format!("x-h{i}"), exact("yes"))),
        1 => drop(m.cookies.insert(format!("c{i}"), exact("1"))),
        2 => m.user_agent = Some(StringMatch { regex: Some(".*Mobile.*".into()), ..Default::default() }),
        _ => m.regions = vec![format!("region-{i}"), "eu-west-1".into()],
    }
    AbRule { name: format!("rule-{i}"), matches: m, arm }
}

fn ab_experiment() -> impl Strategy<Value = Experiment> {
    (2usize..=10)
        .prop_flat_map(|n| {
            (
                Just(n),
                weights(n),
                proptest::collection::vec((0..n, any::<u8>()), 0..5),
                any::<bool>(),
                proptest::option::of((1..n, 0.0..=100.0f64)),
            )
        })
        .prop_map(|(n, w, rules, sticky, mirror)| {
            let arms = arms(n);
            let split = arms.iter().zip(&w).map(|(a, w)| (a.name.clone(), *w)).collect();
            let rules =
                rules.into_iter().enumerate().map(|(i, (arm, kind))| rule(i, arms[arm].name.clone(), kind)).collect();
            let ab = AbTest {
                rules,
                split,
                sticky: sticky.then(|| Sticky {
                    cookie_name: "forklane-exp".into(),
                    max_age_seconds: 60,
                    secure: false,
                    same_site: None,
                }),
                total_replicas: Some(20),
                ..Default::default()
            };
            let mirror = mirror.map(|(arm, percent)| Mirror { arm: arms[arm].name.clone(), percent });
            experiment(arms, Spec::AbTest(ab), mirror)
        })
}

fn canary_experiment() -> impl Strategy<Value = Experiment> {
    proptest::collection::vec(0..=100i32, 1..8).prop_map(|mut ws| {
        ws.sort();
        let steps = ws
            .into_iter()
            .flat_map(|w| {
                [
                    CanaryStep { set_weight: Some(w), ..Default::default() },
                    CanaryStep {
                        pause: Some(Pause { duration: Some(Duration::from_secs(60).into()) }),
                        ..Default::default()
                    },
                ]
            })
            .collect();
        experiment(arms(2), Spec::Canary(Canary { steps, total_replicas: Some(10) }), None)
    })
}

/// Checks one Istio plan: weights, subsets, order of routes.
fn check_istio(exp: &Experiment, target: &Target, observed: &Observed) -> BTreeSet<String> {
    let p = plan(exp, target, Routing::Istio, observed).unwrap();
    let mut subsets: BTreeSet<String> = observed.subsets.clone().unwrap_or_default();
    let mut last_subsets = subsets.clone();
    for action in &p.actions {
        match action {
            Action::DestinationRule(dr) => {
                subsets = dr.spec.subsets.iter().flatten().map(|s| s.name.clone()).collect();
                last_subsets = subsets.clone();
            }
            Action::VirtualService(vs) => {
                let http = vs.spec.http.as_ref().unwrap();
                for route in http {
                    let dests = route.route.as_ref().unwrap();
                    assert_eq!(
                        dests.iter().map(|d| d.weight.unwrap()).sum::<i32>(),
                        100,
                        "weights of {:?}",
                        route.name
                    );
                    assert!(dests.iter().all(|d| d.weight.unwrap() > 0), "0-weight destinations are omitted");
                    for d in dests {
                        assert!(
                            subsets.contains(d.destination.subset.as_ref().unwrap()),
                            "subset {:?} used before it exists",
                            d.destination.subset
                        );
                    }
                    if let Some(m) = &route.mirror {
                        assert!(subsets.contains(m.subset.as_ref().unwrap()));
                    }
                }
                let catch_all: Vec<usize> =
                    http.iter().enumerate().filter(|(_, r)| r.r#match.is_none()).map(|(i, _)| i).collect();
                assert_eq!(catch_all, vec![http.len() - 1], "exactly one catch-all, last");
                let rules: Vec<String> = match target {
                    Target::Final(_) => {
                        assert_eq!(http.len(), 1, "a final state keeps only the catch-all");
                        vec![]
                    }
                    Target::Step(_) => exp
                        .spec
                        .strategy
                        .ab_test()
                        .iter()
                        .flat_map(|a| a.rules.iter().map(|r| r.name.clone()))
                        .collect(),
                };
                let names: Vec<String> = http.iter().take(rules.len()).map(|r| r.name.clone().unwrap()).collect();
                assert_eq!(names, rules, "rule order is preserved, rules first");
            }
            _ => {}
        }
    }
    last_subsets
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn ab_tests_route_consistently(exp in ab_experiment()) {
        check_istio(&exp, &Target::Step(0), &Observed::default());
        for arm in &exp.spec.arms {
            check_istio(&exp, &Target::Final(arm.name.clone()), &Observed::default());
        }
    }

    #[test]
    fn canary_transitions_are_make_before_break(exp in canary_experiment()) {
        let states = plan(&exp, &Target::Step(0), Routing::Istio, &Observed::default()).unwrap().states;
        let mut observed = Observed::default();
        for step in (0..states).chain((0..states).rev()) {
            // Each plan is applied after the previous one: its DestinationRule is what is observed.
            let subsets = check_istio(&exp, &Target::Step(step), &observed);
            observed.subsets = Some(subsets);
        }
    }

    #[test]
    fn native_replicas_follow_weights(exp in ab_experiment().prop_filter("split only", |e| e.spec.mirror.is_none())) {
        let mut exp = exp;
        if let Spec::AbTest(ab) = &mut exp.spec.strategy {
            ab.allow_degraded = true;
        }
        let p = plan(&exp, &Target::Step(0), Routing::Native, &Observed::default()).unwrap();
        let replicas = p.replicas.unwrap();
        prop_assert_eq!(replicas.iter().map(|(_, n)| n).sum::<i32>(), 20);
        let split = &exp.spec.strategy.ab_test().unwrap().split;
        for (arm, n) in &replicas {
            prop_assert!(split[arm] == 0 || *n >= 1, "arm {} with weight {} got no pod", arm, split[arm]);
        }
        let achieved: f64 = p.weights.iter().map(|w| w.achieved).sum();
        prop_assert!((achieved - 100.0).abs() < 1e-6);
    }
}
