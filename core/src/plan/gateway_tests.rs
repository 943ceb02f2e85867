use super::*;
use crate::api::Routing;
use crate::fixtures::ExperimentBuilder;
use crate::plan::{Target, plan};

/// An A/B test with a targeting rule, sticky users and a mirror to v2.
fn every_cohort() -> Experiment {
    ExperimentBuilder::ab_test("ab")
        .header_rule("beta", "x-beta", "1", "v2")
        .split([("v1", 50), ("v2", 50)])
        .sticky("forklane-ab")
        .mirror("v2", 10.0)
        .build()
}

fn written(exp: &Experiment) -> (Vec<(String, String, String)>, HttpRoute) {
    // Both arms serve and have their Services: the step routes to both.
    let arms: BTreeSet<String> = exp.spec.arms.iter().map(|a| a.name.clone()).collect();
    let observed = Observed { serving: arms.clone(), subsets: Some(arms), ..Default::default() };
    let p = plan(exp, &Target::Step(0), Routing::GatewayApi, &observed).unwrap();
    let mut services = Vec::new();
    let mut route = None;
    for action in p.actions {
        match action {
            Action::ArmService(s) => {
                let labels = s.metadata.labels.clone().unwrap();
                services.push((
                    s.metadata.name.clone().unwrap(),
                    labels[ARM_LABEL].clone(),
                    labels[COHORT_LABEL].clone(),
                ));
            }
            Action::HttpRoute(r) => route = Some(*r),
            _ => {}
        }
    }
    (services, route.expect("an HTTPRoute"))
}

#[test]
fn each_cohort_reaches_an_arm_through_its_own_service() {
    let exp = every_cohort();
    let (services, route) = written(&exp);
    let expected = [
        ("my-app-v1", "v1", "assigned"),
        ("my-app-v1-returning", "v1", "returning"),
        ("my-app-v1-targeted", "v1", "targeted"),
        ("my-app-v2", "v2", "assigned"),
        ("my-app-v2-returning", "v2", "returning"),
        ("my-app-v2-targeted", "v2", "targeted"),
        ("my-app-v2-mirrored", "v2", "mirrored"),
    ];
    let expected: Vec<(String, String, String)> =
        expected.iter().map(|(n, a, c)| (n.to_string(), a.to_string(), c.to_string())).collect();
    assert_eq!(services, expected, "every Service the route may name, each arm with the same cohorts");
    let backends = |rule: &str| -> Vec<String> {
        let rule = route.spec.rules.iter().flatten().find(|r| r.name.as_deref() == Some(rule)).unwrap();
        rule.backend_refs.iter().flatten().map(|b| b.name.clone()).collect()
    };
    assert_eq!(backends("beta"), ["my-app-v2-targeted"]);
    assert_eq!(backends("sticky-v1"), ["my-app-v1-returning"]);
    assert_eq!(backends("sticky-v2"), ["my-app-v2-returning"]);
    assert_eq!(backends("split"), ["my-app-v1", "my-app-v2"]);
    let mirrors: BTreeSet<String> = route
        .spec
        .rules
        .iter()
        .flatten()
        .flat_map(|r| r.filters.iter().flatten())
        .filter_map(|f| f.request_mirror.as_ref().map(|m| m.backend_ref.name.clone()))
        .collect();
    assert_eq!(mirrors, BTreeSet::from(["my-app-v2-mirrored".to_string()]));
    for (name, arm, cohort) in &services {
        assert_eq!(service_of(&exp, name), Some((arm.as_str(), Cohort::parse(cohort).unwrap())), "{name}");
    }
    assert_eq!(service_of(&exp, "my-app"), None);
    // Every cohort's Service counts for its arm: v1 a pin and half the split; v2 the rule, a pin,
    // half the split and a mirror on each rule that does not go to v2 alone (the pin of v1, the split).
    assert_eq!(weights(&exp, &route), BTreeMap::from([("v1".into(), 100 + 50), ("v2".into(), 100 + 100 + 50 + 2)]));
}

#[test]
fn a_canary_has_one_service_per_arm() {
    let exp = ExperimentBuilder::canary("c").steps([crate::fixtures::set_weight(20)]).build();
    let names: Vec<String> = written(&exp).0.into_iter().map(|(n, _, _)| n).collect();
    assert_eq!(names, ["my-app-v1", "my-app-v2"]);
}
