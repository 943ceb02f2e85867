//! The mesh routes what the planner renders from every example, in Istio mode, at every state:
//! shares within 3 standard errors of the weights, rule matches always to their arm, sticky users
//! never moving, mirrored copies counted at the mirror and never answered.

use crate::support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use forklane_core::api::Experiment;
use forklane_core::api::Routing;
use forklane_core::istio::VirtualService;
use forklane_core::plan::{Action, Observed, Plan, Target, plan};
use forklane_sim::traffic::loadgen::{self, LoadSpec, Population};
use forklane_sim::traffic::{Dataplane, Pod, Request, Service, ServiceKey, ServicePort, Snapshot};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use rand::SeedableRng;
use rand::rngs::StdRng;

const REQUESTS: usize = 20_000;
const PODS_PER_ARM: usize = 2;

fn examples() -> Vec<(String, Experiment)> {
    let out = support::example_experiments();
    assert!(out.len() >= 7, "the examples are found");
    out
}

fn plan_at(exp: &Experiment, step: usize) -> Plan {
    plan(exp, &Target::Step(step), Routing::Istio, &Observed::default()).unwrap()
}

/// The cluster after the plan's actions: the Service, ready pods for every arm (named
/// `<arm>-pod-<i>`) and the last VirtualService and DestinationRule applied.
fn cluster(exp: &Experiment, plan: &Plan) -> (Snapshot, ServiceKey, VirtualService) {
    let namespace = exp.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let arms = &exp.spec.arms;
    // The Service selects what all arms share (e.g. `app`).
    let selector: BTreeMap<String, String> = arms[0]
        .selector
        .iter()
        .filter(|(k, v)| arms.iter().all(|a| a.selector.get(*k) == Some(*v)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let service = Service {
        namespace: namespace.clone(),
        name: exp.spec.service.name.clone(),
        selector,
        ports: vec![ServicePort {
            name: Some("http".into()),
            port: exp.spec.service.port.unwrap_or(80),
            node_port: None,
        }],
        service_type: "ClusterIP".into(),
    };
    let pods = arms
        .iter()
        .flat_map(|arm| {
            (0..PODS_PER_ARM).map(|i| Pod {
                labels: arm.selector.clone(),
                ..Pod::ready(&namespace, &format!("{}-pod-{i}", arm.name), &[], &arm.name)
            })
        })
        .collect();
    let vs = plan
        .actions
        .iter()
        .rev()
        .find_map(|a| if let Action::VirtualService(vs) = a { Some((**vs).clone()) } else { None })
        .unwrap();
    let dr = plan
        .actions
        .iter()
        .rev()
        .find_map(|a| if let Action::DestinationRule(dr) = a { Some((**dr).clone()) } else { None })
        .unwrap();
    let snap = Snapshot::new(vec![service], pods, std::slice::from_ref(&vs), &[dr]).with_mesh(true);
    (snap, ServiceKey::new(&namespace, &exp.spec.service.name), vs)
}

/// The arm whose pod answered.
fn arm_of(pod: &str) -> String {
    pod.rsplit_once("-pod-").unwrap().0.to_string()
}

#[test]
fn shares_match_the_weights_of_every_state_of_every_example() {
    let dataplane = Dataplane::default();
    let mut checked = 0;
    for (file, exp) in examples() {
        let states = plan_at(&exp, 0).states;
        for step in 0..states {
            let plan = plan_at(&exp, step);
            let (snap, service, _) = cluster(&exp, &plan);
            let mut rng = StdRng::seed_from_u64(step as u64 + 1);
            let mut counts = BTreeMap::<String, usize>::new();
            for _ in 0..REQUESTS {
                let outcome = dataplane.handle(&snap, &service, &Request::get("/"), &mut rng);
                let served = outcome
                    .answer()
                    .and_then(|a| a.served.as_ref())
                    .unwrap_or_else(|| panic!("{file} step {step}: {outcome:?}"));
                *counts.entry(arm_of(&served.pod)).or_default() += 1;
            }
            let total: i32 = plan.weights.iter().map(|w| w.desired).sum();
            for w in &plan.weights {
                let p = f64::from(w.desired) / f64::from(total);
                let share = counts.get(&w.arm).copied().unwrap_or(0) as f64 / REQUESTS as f64;
                let tolerance = 3.0 * (p * (1.0 - p) / REQUESTS as f64).sqrt();
                assert!(
                    (share - p).abs() <= tolerance,
                    "{file} step {step} arm {}: share {share}, weight {p} ± {tolerance}",
                    w.arm
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 30, "{checked} arm shares checked");
}

/// A value satisfying a header condition of the rendered VirtualService.
fn satisfying(m: &forklane_core::istio::VirtualServiceHttpMatchHeaders, runner: &mut TestRunner) -> String {
    match (&m.exact, &m.prefix, &m.regex) {
        (Some(e), _, _) => e.clone(),
        (_, Some(p), _) => format!("{p}suffix"),
        (_, _, Some(r)) => {
            // Istio's regexes match the whole value, so outer anchors change nothing; the
            // generator does not take anchors.
            let unanchored = r.strip_prefix('^').unwrap_or(r);
            let unanchored = unanchored.strip_suffix('$').unwrap_or(unanchored);
            let strategy = proptest::string::string_regex(unanchored).unwrap();
            strategy.new_tree(runner).unwrap().current()
        }
        _ => "present".into(),
    }
}

#[test]
fn requests_satisfying_a_rule_always_reach_its_arm() {
    let dataplane = Dataplane::default();
    let mut runner = TestRunner::deterministic();
    let mut rules = 0;
    for (file, exp) in examples() {
        for step in 0..plan_at(&exp, 0).states {
            let (snap, service, vs) = cluster(&exp, &plan_at(&exp, step));
            let mut rng = StdRng::seed_from_u64(7);
            for route in vs.spec.http.iter().flatten() {
                let Some(matches) = &route.r#match else { continue };
                let destinations = route.route.as_ref().unwrap();
                assert_eq!(destinations.len(), 1, "{file}: rule routes go to one arm");
                let arm = destinations[0].destination.subset.clone().unwrap();
                for m in matches {
                    for _ in 0..200 {
                        let mut req = Request::get("/");
                        for (name, condition) in m.headers.iter().flatten() {
                            req = req.header(name, &satisfying(condition, &mut runner));
                        }
                        let outcome = dataplane.handle(&snap, &service, &req, &mut rng);
                        let served = outcome.answer().and_then(|a| a.served.as_ref()).map(|s| arm_of(&s.pod));
                        assert_eq!(
                            served.as_deref(),
                            Some(arm.as_str()),
                            "{file} step {step} route {:?}: {req:?}",
                            route.name
                        );
                    }
                    rules += 1;
                }
            }
        }
    }
    assert!(rules >= 8, "{rules} rules checked");
}

#[test]
fn sticky_users_never_change_arm() {
    let dataplane = Dataplane::default();
    let sticky: Vec<_> =
        examples().into_iter().filter(|(_, e)| e.spec.strategy.ab_test().is_some_and(|a| a.sticky.is_some())).collect();
    assert!(sticky.len() >= 2);
    for (file, exp) in sticky {
        let (snap, service, _) = cluster(&exp, &plan_at(&exp, 0));
        let regions = vec!["eu-west-1".to_string(), "us-east-1".to_string()];
        let spec = LoadSpec { users: 300, mobile_share: 0.3, regions, seed: 21, ..LoadSpec::default() };
        let mut population = Population::new(&spec);
        let report =
            loadgen::run_in_process(&dataplane, &Arc::new(snap), &service, &mut population, REQUESTS as u64, 100.0);
        assert_eq!(report.users_switched(), 0, "{file}: {report}");
        assert_eq!(report.by_version.values().sum::<u64>(), REQUESTS as u64, "{file}: every request answered");
        assert!(report.by_version.len() >= 2, "{file}: users spread over the arms: {report}");
        // Only users a targeting rule takes (mobile users in the EU, where a rule says so) go
        // without the split's assignment cookie.
        let rules = &exp.spec.strategy.ab_test().unwrap().rules;
        let mobile_eu = rules
            .iter()
            .any(|r| r.matches.user_agent.is_some() && r.matches.regions.iter().any(|region| region == "eu-west-1"));
        for user in population.users() {
            let targeted = user.mobile && user.region.as_deref() == Some("eu-west-1") && mobile_eu;
            assert_eq!(user.jar.clone().header("/", report.elapsed).is_some(), !targeted, "{file}: {user:?}");
        }
    }
}

#[test]
fn after_a_rollback_returning_users_land_on_the_control_and_lose_their_cookie() {
    let dataplane = Dataplane::default();
    let sticky: Vec<_> =
        examples().into_iter().filter(|(_, e)| e.spec.strategy.ab_test().is_some_and(|a| a.sticky.is_some())).collect();
    for (file, exp) in sticky {
        let cookie = exp.spec.strategy.ab_test().unwrap().sticky.clone().unwrap().cookie_name;
        let control = exp.spec.arms.iter().find(|a| a.control).unwrap().name.clone();
        let spec = LoadSpec { users: 300, mobile_share: 0.3, seed: 23, ..LoadSpec::default() };
        let mut population = Population::new(&spec);
        let (during, service, _) = cluster(&exp, &plan_at(&exp, 0));
        loadgen::run_in_process(&dataplane, &Arc::new(during), &service, &mut population, 3_000, 100.0);
        let pinned_elsewhere = |population: &Population| {
            population
                .users()
                .iter()
                .filter(|u| {
                    let header = u.jar.clone().header("/", Duration::ZERO).unwrap_or_default();
                    header
                        .split("; ")
                        .any(|c| c.starts_with(&format!("{cookie}=")) && c != format!("{cookie}={control}"))
                })
                .count()
        };
        let returning = pinned_elsewhere(&population);
        assert!(returning > 0, "{file}: some users hold a cookie for an arm that is rolled back");

        let final_plan = plan(&exp, &Target::Final(control.clone()), Routing::Istio, &Observed::default()).unwrap();
        let (after, _, vs) = cluster(&exp, &final_plan);
        // One such user's next request: the control answers, and tells the browser to forget.
        let candidate = exp.spec.arms.iter().find(|a| !a.control).unwrap().name.clone();
        let request = Request::get("/").header("cookie", &format!("{cookie}={candidate}"));
        let answer = dataplane.handle(&after, &service, &request, &mut StdRng::seed_from_u64(3)).answer().cloned();
        let answer = answer.unwrap_or_else(|| panic!("{file}: answered: {vs:?}"));
        assert_eq!(arm_of(&answer.served.unwrap().pod), control, "{file}");
        let set_cookies: Vec<&str> = answer.response.header_values("set-cookie").collect();
        assert_eq!(set_cookies, [format!("{cookie}=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax")], "{file}");

        // Every user comes back (6,000 requests over 300 users drawn uniformly).
        let report = loadgen::run_in_process(&dataplane, &Arc::new(after), &service, &mut population, 6_000, 100.0);
        assert_eq!(
            report.by_version.keys().collect::<Vec<_>>(),
            [&control],
            "{file}: everyone on the control: {report}"
        );
        assert_eq!(report.by_version[&control], 6_000, "{file}: every request answered");
        assert_eq!(pinned_elsewhere(&population), 0, "{file}: no user keeps a cookie for a removed arm");
        let holding = population.users().iter().filter(|u| u.jar.clone().header("/", Duration::ZERO).is_some());
        assert_eq!(holding.count(), 0, "{file}: every returning user lost the cookie");
    }
}

#[test]
fn mirrored_copies_are_counted_at_the_mirror_and_never_answer() {
    let (file, exp) = examples().into_iter().find(|(_, e)| e.spec.mirror.is_some()).unwrap();
    let mirror = exp.spec.mirror.clone().unwrap();
    let plan = plan_at(&exp, 0);
    let (snap, service, _) = cluster(&exp, &plan);
    let dataplane = Dataplane::default();
    let mut rng = StdRng::seed_from_u64(31);
    let mut copies = 0u64;
    for _ in 0..REQUESTS {
        let answer = dataplane.handle(&snap, &service, &Request::get("/"), &mut rng).answer().cloned().unwrap();
        assert_ne!(arm_of(&answer.served.unwrap().pod), mirror.arm, "{file}: the mirror never answers the client");
        copies += answer.mirrored_to.iter().filter(|s| arm_of(&s.pod) == mirror.arm).count() as u64;
    }
    let p = mirror.percent / 100.0;
    let share = copies as f64 / REQUESTS as f64;
    assert!(
        (share - p).abs() <= 3.0 * (p * (1.0 - p) / REQUESTS as f64).sqrt(),
        "{file}: {share} of requests mirrored, want {p}"
    );
    // Metrics carry the pods' `version` label.
    let arm = exp.spec.arms.iter().find(|a| a.name == mirror.arm).unwrap();
    let recorded = &dataplane.metrics.recorded().versions[arm.selector.get("version").unwrap_or(&arm.name)];
    assert_eq!((recorded.requests, recorded.mirrored), (copies, copies), "{file}: the mirror's pods count every copy");
}
