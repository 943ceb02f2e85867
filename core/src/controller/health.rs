//! Continuous arm health, pure: every reconcile checks every arm the routing sends traffic to. An
//! arm that has lost its ready pods after it was routed gets no traffic until it recovers: its
//! share goes to a healthy arm (the control when it can serve), and when no arm can serve the
//! routing is left as it is. Flagger #1931's outage (an abort that sends everything to a control
//! without pods) cannot happen: the control is avoided like any other arm.

use std::collections::{BTreeMap, BTreeSet};

use crate::api::Experiment;
use crate::gateway::HttpRoute;
use crate::istio::{VirtualService, VirtualServiceHttpRoute};
use crate::plan::routing::Cohort;
use crate::plan::{Action, Plan, gateway};

use super::observe::{Observation, referenced_subsets};

/// What the health check changed in a plan.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Detour {
    /// Routed arms without ready pods.
    pub unready: BTreeSet<String>,
    /// Where their traffic goes; `None`: no arm can serve, the routing is held as it is.
    pub fallback: Option<String>,
}

impl Detour {
    pub(crate) fn message(&self) -> String {
        let arms = self.unready.iter().cloned().collect::<Vec<_>>().join(", ");
        match &self.fallback {
            Some(to) => format!("arm {arms} has no ready pods: its traffic goes to {to} until it recovers"),
            None => format!("arm {arms} has no ready pods and no arm can take its traffic: routing held"),
        }
    }
}

/// The arm to send an unready arm's traffic to: the control if it can serve, else the first arm
/// (in spec order) with ready pods.
fn fallback(exp: &Experiment, obs: &Observation, unready: &BTreeSet<String>) -> Option<String> {
    let serving = |arm: &str| !unready.contains(arm) && obs.ready(arm) > 0;
    let control = exp.spec.control_arm().map(|a| a.name.as_str()).filter(|c| serving(c));
    control.or_else(|| exp.spec.arms.iter().map(|a| a.name.as_str()).find(|a| serving(a))).map(str::to_string)
}

/// The weight each subset gets, summed over the routes (a mirror counts as 1: it is traffic).
pub(crate) fn weights(vs: &VirtualService) -> BTreeMap<String, i32> {
    let mut out = BTreeMap::new();
    for http in vs.spec.http.iter().flatten() {
        for route in http.route.iter().flatten() {
            if let Some(subset) = &route.destination.subset {
                *out.entry(subset.clone()).or_insert(0) += route.weight.unwrap_or(100);
            }
        }
        if let Some(subset) = http.mirror.as_ref().and_then(|m| m.subset.clone()) {
            *out.entry(subset).or_insert(0) += 1;
        }
    }
    out
}

/// Rewrites `plan` (Istio or the Gateway API) so that no arm the live routing already sends traffic to, and the plan
/// still does, gets traffic while it has no ready pods (unless the plan scales it to zero). Arms the live routing does not use yet are
/// the gate's business (it waits before routing to them).
pub(crate) fn detour(exp: &Experiment, plan: &mut Plan, obs: &Observation) -> Option<Detour> {
    let routed = plan.actions.iter().find_map(|a| match a {
        Action::VirtualService(vs) => Some(referenced_subsets(vs)),
        Action::HttpRoute(route) => Some(gateway::referenced_arms(exp, route)),
        _ => None,
    })?;
    // An arm the plan itself scales to zero (recreate's gap) has no pods by design.
    let scaled_away: BTreeSet<&str> = plan
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Scale(s) if s.replicas == 0 => {
                exp.spec.arms.iter().find(|arm| arm.deployment.as_ref() == Some(&s.deployment))
            }
            _ => None,
        })
        .map(|arm| arm.name.as_str())
        .collect();
    let unready: BTreeSet<String> = routed
        .intersection(&obs.routed_subsets)
        .filter(|arm| obs.ready(arm) == 0 && !scaled_away.contains(arm.as_str()))
        .cloned()
        .collect();
    if unready.is_empty() {
        return None;
    }
    let fallback = fallback(exp, obs, &unready);
    match &fallback {
        Some(to) => {
            for action in &mut plan.actions {
                match action {
                    Action::VirtualService(vs) => **vs = avoiding(vs, &unready, to),
                    Action::HttpRoute(route) => **route = avoiding_route(exp, route, &unready, to),
                    _ => {}
                }
            }
        }
        // Nothing can serve: write no routing at all rather than move traffic between dead arms.
        None => plan.actions.retain(|a| !matches!(a, Action::VirtualService(_) | Action::HttpRoute(_))),
    }
    Some(Detour { unready, fallback })
}

/// The VirtualService with no traffic to `avoid`: in each route their weight goes to `fallback`
/// (merged into its destination when the route has one) and they stay with weight 0, so that the
/// live routing still names them and the detour lasts until they recover; a mirror to them is
/// dropped. Everything else (matches, headers, order) stays.
pub(crate) fn avoiding(vs: &VirtualService, avoid: &BTreeSet<String>, fallback: &str) -> VirtualService {
    let mut out = vs.clone();
    for http in out.spec.http.iter_mut().flatten() {
        if http.mirror.as_ref().and_then(|m| m.subset.as_ref()).is_some_and(|s| avoid.contains(s)) {
            http.mirror = None;
            http.mirror_percentage = None;
        }
        let Some(routes) = http.route.as_mut() else { continue };
        let is_avoided = |r: &VirtualServiceHttpRoute| r.destination.subset.as_ref().is_some_and(|s| avoid.contains(s));
        let Some(template) = routes.iter().find(|r| is_avoided(r)).cloned() else { continue };
        let mut moved = 0;
        for route in routes.iter_mut().filter(|r| is_avoided(r)) {
            moved += route.weight.unwrap_or(100);
            route.weight = Some(0);
        }
        match routes.iter_mut().find(|r| r.destination.subset.as_deref() == Some(fallback)) {
            Some(existing) => existing.weight = Some(existing.weight.unwrap_or(0) + moved),
            None => {
                let mut to = template;
                to.destination.subset = Some(fallback.to_string());
                // The avoided arm's own response headers (a sticky cookie naming it) must not follow.
                to.headers = None;
                to.weight = Some(moved);
                routes.push(to);
            }
        }
    }
    out
}

/// [`avoiding`] for an HTTPRoute: the avoided arms' backendRefs keep weight 0 and their weight
/// goes to `fallback`'s Service; a mirror to them is dropped.
pub(crate) fn avoiding_route(
    exp: &Experiment,
    route: &HttpRoute,
    avoid: &BTreeSet<String>,
    fallback: &str,
) -> HttpRoute {
    let mut out = route.clone();
    let avoided = |name: &str| gateway::arm_of_service(exp, name).is_some_and(|arm| avoid.contains(arm));
    for rule in out.spec.rules.iter_mut().flatten() {
        if let Some(filters) = rule.filters.as_mut() {
            filters.retain(|f| f.request_mirror.as_ref().is_none_or(|m| !avoided(&m.backend_ref.name)));
        }
        let Some(backends) = rule.backend_refs.as_mut() else { continue };
        let Some(template) = backends.iter().find(|b| avoided(&b.name)).cloned() else { continue };
        // The fallback's Service of the same cohort: a detour keeps each request in its cohort.
        let cohort = gateway::service_of(exp, &template.name).map_or(Cohort::Assigned, |(_, c)| c);
        let fallback_service = gateway::cohort_service_name(&exp.spec.service.name, fallback, cohort);
        let mut moved = 0;
        for backend in backends.iter_mut().filter(|b| avoided(&b.name)) {
            moved += backend.weight.unwrap_or(1);
            backend.weight = Some(0);
        }
        match backends.iter_mut().find(|b| b.name == fallback_service) {
            Some(existing) => existing.weight = Some(existing.weight.unwrap_or(1) + moved),
            None => {
                let mut to = template;
                to.name = fallback_service.clone();
                // The avoided arm's own response headers (a sticky cookie naming it) must not follow.
                to.filters = None;
                to.weight = Some(moved);
                backends.push(to);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Routing;
    use crate::fixtures::{ExperimentBuilder, set_weight};
    use crate::plan::{Observed, Target, plan};

    use super::super::observe::ArmPods;

    fn vs_of(plan: &Plan) -> &VirtualService {
        plan.actions
            .iter()
            .find_map(|a| if let Action::VirtualService(vs) = a { Some(vs.as_ref()) } else { None })
            .unwrap()
    }

    /// The weight of every arm that gets any, route by route.
    fn split(vs: &VirtualService) -> Vec<Vec<(String, i32)>> {
        let route = |h: &crate::istio::VirtualServiceHttp| {
            let weights = h.route.iter().flatten().map(|r| (r.destination.subset.clone().unwrap(), r.weight.unwrap()));
            weights.filter(|(_, w)| *w > 0).collect()
        };
        vs.spec.http.iter().flatten().map(route).collect()
    }

    fn observed(routed: &[&str], ready: &[(&str, i32)]) -> Observation {
        Observation {
            mode: Routing::Istio,
            plan: Observed::default(),
            routed_subsets: routed.iter().map(|s| s.to_string()).collect(),
            routed_services: Default::default(),
            pods: ready.iter().map(|(a, n)| (a.to_string(), ArmPods { existing: *n, ready: *n })).collect(),
            conflicts: vec![],
            leftovers: Default::default(),
            distribution: Default::default(),
            policies: vec![],
            namespace_labels: Default::default(),
            live: Default::default(),
            revisions: Default::default(),
        }
    }

    fn canary_at_step_1() -> (Experiment, Plan) {
        let exp = ExperimentBuilder::canary("c").steps([set_weight(20), set_weight(50)]).build();
        let planned = plan(&exp, &Target::Step(1), Routing::Istio, &Observed::default()).unwrap();
        (exp, planned)
    }

    #[test]
    fn a_routed_candidate_without_pods_loses_its_share_to_the_control() {
        let (exp, mut planned) = canary_at_step_1();
        assert_eq!(split(vs_of(&planned)), [vec![("v1".into(), 80), ("v2".into(), 20)]]);
        let obs = observed(&["v1", "v2"], &[("v1", 2), ("v2", 0)]);
        let detour = detour(&exp, &mut planned, &obs).unwrap();
        assert_eq!(detour.fallback.as_deref(), Some("v1"));
        assert_eq!(split(vs_of(&planned)), [vec![("v1".into(), 100)]]);
        assert!(detour.message().contains("arm v2 has no ready pods"), "{}", detour.message());
    }

    #[test]
    fn the_control_without_pods_is_avoided_too_and_the_candidate_serves() {
        let exp = ExperimentBuilder::canary("c").steps([set_weight(20)]).build();
        let mut planned = plan(&exp, &Target::Final("v1".into()), Routing::Istio, &Observed::default()).unwrap();
        let obs = observed(&["v1", "v2"], &[("v1", 0), ("v2", 3)]);
        let detour = detour(&exp, &mut planned, &obs).unwrap();
        assert_eq!(detour.fallback.as_deref(), Some("v2"));
        assert_eq!(split(vs_of(&planned)), [vec![("v2".into(), 100)]], "an abort never routes to a dead control");
    }

    #[test]
    fn nothing_changes_while_every_routed_arm_serves_or_when_nothing_can() {
        let (exp, mut planned) = canary_at_step_1();
        let before = planned.clone();
        assert_eq!(detour(&exp, &mut planned, &observed(&["v1", "v2"], &[("v1", 1), ("v2", 1)])), None);
        assert_eq!(planned, before);
        // Not routed yet: the gate waits for its pods; no detour.
        assert_eq!(detour(&exp, &mut planned, &observed(&["v1"], &[("v1", 1), ("v2", 0)])), None);
        let detour = detour(&exp, &mut planned, &observed(&["v1", "v2"], &[("v1", 0), ("v2", 0)])).unwrap();
        assert_eq!(detour.fallback, None);
        assert!(!planned.actions.iter().any(|a| matches!(a, Action::VirtualService(_))), "routing held");
    }

    #[test]
    fn rules_and_mirrors_to_an_unready_arm_go_elsewhere_and_weights_still_sum_to_100() {
        let exp = ExperimentBuilder::ab_test("ab")
            .split([("v1", 50), ("v2", 50)])
            .header_rule("beta", "x-beta", "1", "v2")
            .mirror("v2", 10.0)
            .build();
        let planned = plan(&exp, &Target::Step(0), Routing::Istio, &Observed::default()).unwrap();
        let vs = avoiding(vs_of(&planned), &BTreeSet::from(["v2".to_string()]), "v1");
        for route in split(&vs) {
            assert!(route.iter().all(|(arm, _)| arm == "v1"), "{route:?}");
            let total: i32 = route.iter().map(|(_, w)| w).sum();
            assert_eq!(total, 100);
        }
        assert!(vs.spec.http.iter().flatten().all(|h| h.mirror.is_none()));
    }
}
