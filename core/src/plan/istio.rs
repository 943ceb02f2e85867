//! With Istio: one DestinationRule (a subset per referenced arm) and one VirtualService, in a
//! make-before-break order, plus replica changes where the strategy moves pods.

use std::collections::{BTreeMap, BTreeSet};

use kube::api::ObjectMeta;
use kube::core::Resource;

use crate::api::Experiment;
use crate::istio::*;

use super::routing::{COHORT_HEADER, Matcher, RouteTable, is_cookie_expiry, route_table};
use super::steps::State;
use super::{Action, Observed, Scale};

pub(crate) const MANAGED_BY: &str = "forklane";

/// The response header of sticky assignment and of its expiry.
const SET_COOKIE: &str = "set-cookie";
pub(crate) const EXPERIMENT_LABEL: &str = "forklane.io/experiment";

/// Name of the objects Forklane owns for an experiment.
pub(crate) fn object_name(exp: &Experiment) -> String {
    format!("{}-forklane", exp.metadata.name.as_deref().unwrap_or_default())
}

/// Name of the Istio Telemetry that labels an experiment's requests with their cohort.
pub(crate) fn telemetry_name(exp: &Experiment) -> String {
    format!("forklane-{}", exp.metadata.name.as_deref().unwrap_or_default())
}

/// The metric label the Telemetry adds to Istio's standard metrics.
pub(crate) const COHORT_LABEL: &str = "forklane_cohort";

/// The label's value per request, in Istio's CEL over request attributes: mirrored copies reach
/// the destination with `-shadow` appended to their Host (Envoy's request mirror policy); every
/// other request carries the cohort header its route set, unless it came by another route.
pub(crate) const COHORT_EXPRESSION: &str = "request.host.matches('-shadow(:[0-9]+)?$') ? 'mirrored' : ('x-forklane-cohort' in request.headers ? request.headers['x-forklane-cohort'] : 'none')";

/// Actions in a safe order: the Telemetry first (so that no routed request goes unlabelled), pods
/// up, subsets added, routes switched, subsets removed, pods down.
pub(crate) fn actions(exp: &Experiment, state: &State, observed: &Observed) -> Vec<Action> {
    let table = route_table(&exp.spec, state);
    let desired = destinations(exp, state, observed, &table);
    let vs = Action::VirtualService(Box::new(virtual_service(exp, &table)));
    let dr = |subsets: &BTreeSet<String>| Action::DestinationRule(Box::new(destination_rule(exp, subsets)));
    let (grow, shrink) = scales(exp, state, observed);
    let labels = exp.spec.analysis.as_ref().map(|_| Action::Telemetry(Box::new(telemetry(exp))));
    let mut out: Vec<Action> = labels.into_iter().chain(grow).collect();
    match &observed.subsets {
        Some(current) if !current.is_subset(&desired) => {
            if desired.is_subset(current) {
                out.extend([vs, dr(&desired)]);
            } else {
                // Both added and removed subsets: the union first, so that neither routing is ever
                // without its subsets.
                let union = current.union(&desired).cloned().collect();
                out.extend([dr(&union), vs, dr(&desired)]);
            }
        }
        _ => out.extend([dr(&desired), vs]),
    }
    out.extend(shrink);
    out
}

/// The arms whose routing destination (subset, or arm Service) must exist in `state`. While the
/// experiment runs, that is also every arm already serving and every destination already there: a
/// later step then routes to a destination every proxy has had for a while, with no propagation
/// delay of its own. An arm whose pods are still starting gets its destination with the step that
/// routes to it (and waits for it to propagate). The final state keeps only the arm it routes to,
/// and strategies that move pods (recreate, rolling update) add each arm's destination with the
/// step that routes to it.
pub(super) fn destinations(
    exp: &Experiment,
    state: &State,
    observed: &Observed,
    table: &RouteTable,
) -> BTreeSet<String> {
    let mut desired = table.referenced_arms();
    if state.experiment_routes && state.replicas.is_none() {
        let arms: BTreeSet<&String> = exp.spec.arms.iter().map(|a| &a.name).collect();
        let kept = observed.subsets.iter().flatten().chain(&observed.serving).filter(|a| arms.contains(a));
        desired.extend(kept.cloned());
    }
    desired
}

/// Replica changes of the state (recreate, rolling update): growing arms, then shrinking ones.
pub(super) fn scales(exp: &Experiment, state: &State, observed: &Observed) -> (Vec<Action>, Vec<Action>) {
    let (mut grow, mut shrink) = (Vec::new(), Vec::new());
    for (arm, replicas) in state.replicas.iter().flatten() {
        let Some(deployment) = exp.spec.arms.iter().find(|a| &a.name == arm).and_then(|a| a.deployment.clone()) else {
            continue;
        };
        let scale = Action::Scale(Scale { deployment, namespace: exp.metadata.namespace.clone(), replicas: *replicas });
        if *replicas >= observed.replicas.get(arm).copied().unwrap_or(0) {
            grow.push(scale);
        } else {
            shrink.push(scale);
        }
    }
    (grow, shrink)
}

pub(super) fn metadata(exp: &Experiment, object: String) -> ObjectMeta {
    let name = exp.metadata.name.clone().unwrap_or_default();
    ObjectMeta {
        name: Some(object),
        namespace: exp.metadata.namespace.clone(),
        labels: Some(BTreeMap::from([
            ("app.kubernetes.io/managed-by".to_string(), MANAGED_BY.to_string()),
            (EXPERIMENT_LABEL.to_string(), name),
        ])),
        // Only a stored Experiment has a uid; offline renders carry no owner.
        owner_references: exp.controller_owner_ref(&()).map(|r| vec![r]),
        ..Default::default()
    }
}

pub(crate) fn destination_rule(exp: &Experiment, subsets: &BTreeSet<String>) -> DestinationRule {
    let subsets = exp
        .spec
        .arms
        .iter()
        .filter(|a| subsets.contains(&a.name))
        .map(|a| DestinationRuleSubsets {
            name: a.name.clone(),
            labels: Some(a.selector.clone()),
            ..Default::default()
        })
        .collect();
    DestinationRule {
        metadata: metadata(exp, object_name(exp)),
        spec: DestinationRuleSpec { host: exp.spec.service.name.clone(), subsets: Some(subsets), ..Default::default() },
        status: None,
    }
}

pub(crate) fn virtual_service(exp: &Experiment, table: &RouteTable) -> VirtualService {
    let service = &exp.spec.service;
    let destination = |arm: &str| VirtualServiceHttpRouteDestination {
        host: service.name.clone(),
        subset: Some(arm.to_string()),
        port: service.port.map(|p| VirtualServiceHttpRouteDestinationPort { number: Some(i64::from(p)) }),
    };
    let http = table
        .routes
        .iter()
        .map(|route| {
            let matches = (!route.headers.is_empty()).then(|| {
                let headers = route.headers.iter().map(|(name, m)| (name.clone(), header_match(m))).collect();
                vec![VirtualServiceHttpMatch { headers: Some(headers), ..Default::default() }]
            });
            let destinations = route
                .destinations
                .iter()
                .map(|d| VirtualServiceHttpRoute {
                    destination: destination(&d.arm),
                    weight: Some(d.weight),
                    headers: d.set_cookie.as_ref().map(|cookie| VirtualServiceHttpRouteHeaders {
                        response: Some(VirtualServiceHttpRouteHeadersResponse {
                            add: Some(BTreeMap::from([(SET_COOKIE.to_string(), cookie.clone())])),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                })
                .collect();
            // Copies to the mirror arm make no sense on a route that already goes only there.
            let mirror = table.mirror.as_ref().filter(|(arm, _)| !route.destinations.iter().all(|d| &d.arm == arm));
            VirtualServiceHttp {
                name: Some(route.name.clone()),
                r#match: matches,
                // `set` replaces a value the client sent: only the route decides the cohort.
                headers: Some(VirtualServiceHttpHeaders {
                    request: Some(VirtualServiceHttpHeadersRequest {
                        set: Some(BTreeMap::from([(COHORT_HEADER.to_string(), route.cohort.value().to_string())])),
                        ..Default::default()
                    }),
                    response: route.set_cookie.as_ref().map(|cookie| VirtualServiceHttpHeadersResponse {
                        add: Some(BTreeMap::from([(SET_COOKIE.to_string(), cookie.clone())])),
                        ..Default::default()
                    }),
                }),
                route: Some(destinations),
                mirror: mirror.map(|(arm, _)| VirtualServiceHttpMirror {
                    host: service.name.clone(),
                    subset: Some(arm.clone()),
                    port: service.port.map(|p| VirtualServiceHttpMirrorPort { number: Some(i64::from(p)) }),
                }),
                mirror_percentage: mirror
                    .map(|(_, percent)| VirtualServiceHttpMirrorPercentage { value: Some(*percent) }),
                ..Default::default()
            }
        })
        .collect();
    VirtualService {
        metadata: metadata(exp, object_name(exp)),
        spec: VirtualServiceSpec {
            hosts: Some(service.hosts()),
            gateways: service.gateways.clone(),
            http: Some(http),
            ..Default::default()
        },
        status: None,
    }
}

/// `vs` without the answers' expiry of the sticky cookie `cookie_name` (route-level, as
/// [`virtual_service`] writes it); `None` when it has none. Everything else stays as it is.
pub(crate) fn without_cookie_expiry(vs: &VirtualService, cookie_name: &str) -> Option<VirtualService> {
    let mut out = vs.clone();
    let mut found = false;
    for headers in out.spec.http.iter_mut().flatten().filter_map(|h| h.headers.as_mut()) {
        let Some(response) = headers.response.as_mut() else { continue };
        let Some(add) = response.add.as_mut() else { continue };
        let before = add.len();
        add.retain(|name, value| !(name.eq_ignore_ascii_case(SET_COOKIE) && is_cookie_expiry(value, cookie_name)));
        found |= add.len() < before;
        if add.is_empty() {
            response.add = None;
        }
        if response.add.is_none() && response.set.is_none() && response.remove.is_none() {
            headers.response = None;
        }
    }
    found.then_some(out)
}

/// The Telemetry that adds the `forklane_cohort` label to the standard metrics the arms' proxies
/// report as the destination (mode SERVER), selecting their pods by the labels all arms share.
pub(crate) fn telemetry(exp: &Experiment) -> Telemetry {
    // Validation makes sure there is one: an empty selector would apply to the whole namespace.
    let shared = crate::api::validate::shared_labels(&exp.spec.arms);
    let tag = TelemetryMetricsOverridesTagOverrides {
        operation: Some(TelemetryMetricsOverridesTagOverridesOperation::Upsert),
        value: Some(COHORT_EXPRESSION.to_string()),
    };
    let metrics = TelemetryMetrics {
        providers: Some(vec![TelemetryMetricsProviders { name: "prometheus".into() }]),
        overrides: Some(vec![TelemetryMetricsOverrides {
            r#match: Some(TelemetryMetricsOverridesMatch {
                metric: Some(TelemetryMetricsOverridesMatchMetric::AllMetrics),
                mode: Some(TelemetryMetricsOverridesMatchMode::Server),
                ..Default::default()
            }),
            tag_overrides: Some(BTreeMap::from([(COHORT_LABEL.to_string(), tag)])),
            ..Default::default()
        }]),
        ..Default::default()
    };
    Telemetry {
        metadata: metadata(exp, telemetry_name(exp)),
        spec: TelemetrySpec {
            selector: Some(TelemetrySelector { match_labels: Some(shared) }),
            metrics: Some(vec![metrics]),
            ..Default::default()
        },
        status: None,
    }
}

fn header_match(m: &Matcher) -> VirtualServiceHttpMatchHeaders {
    let mut out = VirtualServiceHttpMatchHeaders::default();
    match m {
        Matcher::Exact(v) => out.exact = Some(v.clone()),
        Matcher::Prefix(v) => out.prefix = Some(v.clone()),
        Matcher::Regex(v) => out.regex = Some(v.clone()),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{MeshMode, Routing};
    use crate::fixtures::{ExperimentBuilder, analysis, conversion};
    use crate::plan::{Target, plan};

    fn ab_test() -> ExperimentBuilder {
        ExperimentBuilder::ab_test("checkout")
            .mesh(MeshMode::Istio)
            .control("v1")
            .arm("v2")
            .split([("v1", 90), ("v2", 10)])
    }

    #[test]
    fn an_analysed_experiment_gets_its_telemetry_before_any_route() {
        let exp = ab_test().header_rule("beta", "x-group", "beta", "v2").analysis(analysis([conversion()])).build();
        let p = plan(&exp, &Target::Step(0), Routing::Istio, &Observed::default()).unwrap();
        let Action::Telemetry(t) = &p.actions[0] else { panic!("{:?}", p.actions[0]) };
        let vs = p.actions.iter().position(|a| matches!(a, Action::VirtualService(_))).unwrap();
        assert!(vs > 0, "the label exists before the header is set");
        let object = p.actions[0].object();
        assert_eq!(
            (object["apiVersion"].as_str(), object["kind"].as_str()),
            (Some("telemetry.istio.io/v1"), Some("Telemetry"))
        );
        assert_eq!(t.metadata.name.as_deref(), Some("forklane-checkout"));
        let arms: Vec<_> = exp.spec.arms.iter().map(|a| &a.selector).collect();
        let shared = t.spec.selector.as_ref().and_then(|s| s.match_labels.clone()).unwrap();
        assert!(
            !shared.is_empty() && arms.iter().all(|a| shared.iter().all(|(k, v)| a.get(k) == Some(v))),
            "{shared:?}"
        );
        assert!(!shared.contains_key("version"), "only labels every arm shares: {shared:?}");
        let overrides = &object["spec"]["metrics"][0];
        assert_eq!(overrides["providers"], serde_json::json!([{"name": "prometheus"}]));
        assert_eq!(
            overrides["overrides"][0],
            serde_json::json!({
                "match": {"metric": "ALL_METRICS", "mode": "SERVER"},
                "tagOverrides": {"forklane_cohort": {"operation": "UPSERT", "value": COHORT_EXPRESSION}},
            })
        );
        assert_eq!(
            COHORT_EXPRESSION,
            "request.host.matches('-shadow(:[0-9]+)?$') ? 'mirrored' : ('x-forklane-cohort' in request.headers ? request.headers['x-forklane-cohort'] : 'none')"
        );
    }

    #[test]
    fn without_an_analysis_there_is_no_telemetry() {
        let p = plan(&ab_test().build(), &Target::Step(0), Routing::Istio, &Observed::default()).unwrap();
        assert!(!p.actions.iter().any(|a| matches!(a, Action::Telemetry(_))), "{:?}", p.actions);
    }

    #[test]
    fn every_route_sets_the_cohort_of_how_it_routes() {
        let mut exp = ab_test().header_rule("beta", "x-group", "beta", "v2").build();
        if let crate::api::Strategy::AbTest(ab) = &mut exp.spec.strategy {
            ab.sticky = Some(crate::api::Sticky {
                cookie_name: "c".into(),
                max_age_seconds: 60,
                secure: false,
                same_site: None,
            });
        }
        let p = plan(&exp, &Target::Step(0), Routing::Istio, &Observed::default()).unwrap();
        let vs = p.actions.iter().find_map(|a| if let Action::VirtualService(v) = a { Some(v) } else { None }).unwrap();
        let cohorts: Vec<(String, String)> = vs
            .spec
            .http
            .iter()
            .flatten()
            .map(|h| {
                let set = h.headers.as_ref().and_then(|x| x.request.as_ref()).and_then(|r| r.set.clone()).unwrap();
                assert_eq!(set.len(), 1, "{set:?}");
                (h.name.clone().unwrap(), set["x-forklane-cohort"].clone())
            })
            .collect();
        let expected =
            [("beta", "targeted"), ("sticky-v1", "returning"), ("sticky-v2", "returning"), ("split", "assigned")];
        assert_eq!(cohorts, expected.map(|(r, c)| (r.to_string(), c.to_string())));
    }

    fn virtual_service_of(p: &super::super::Plan) -> &VirtualService {
        p.actions.iter().find_map(|a| if let Action::VirtualService(v) = a { Some(v.as_ref()) } else { None }).unwrap()
    }

    /// The `Set-Cookie` values answers get, route by route: (route, route-level, per destination).
    fn set_cookies(vs: &VirtualService) -> Vec<(String, Option<String>, Vec<Option<String>>)> {
        let add = |a: Option<&BTreeMap<String, String>>| a.and_then(|a| a.get("set-cookie").cloned());
        vs.spec
            .http
            .iter()
            .flatten()
            .map(|h| {
                let route = add(h.headers.as_ref().and_then(|x| x.response.as_ref()).and_then(|r| r.add.as_ref()));
                let destinations = h
                    .route
                    .iter()
                    .flatten()
                    .map(|d| add(d.headers.as_ref().and_then(|x| x.response.as_ref()).and_then(|r| r.add.as_ref())))
                    .collect();
                (h.name.clone().unwrap(), route, destinations)
            })
            .collect()
    }

    #[test]
    fn the_final_route_sends_everyone_to_the_arm_and_expires_the_sticky_cookie_with_its_attributes() {
        let mut exp = ab_test().sticky("forklane-checkout").build();
        if let crate::api::Strategy::AbTest(ab) = &mut exp.spec.strategy {
            let sticky = ab.sticky.as_mut().unwrap();
            (sticky.secure, sticky.same_site) = (true, Some(crate::api::SameSite::Strict));
        }
        let step = plan(&exp, &Target::Step(0), Routing::Istio, &Observed::default()).unwrap();
        let assign = |arm: &str| {
            Some(format!("forklane-checkout={arm}; Max-Age=86400; Path=/; HttpOnly; SameSite=Strict; Secure"))
        };
        assert_eq!(
            set_cookies(virtual_service_of(&step)),
            [
                ("sticky-v1".into(), None, vec![None]),
                ("sticky-v2".into(), None, vec![None]),
                ("split".into(), None, vec![assign("v1"), assign("v2")]),
            ]
        );
        let rolled_back = plan(&exp, &Target::Final("v1".into()), Routing::Istio, &Observed::default()).unwrap();
        let vs = virtual_service_of(&rolled_back);
        let expiry = "forklane-checkout=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict; Secure";
        assert_eq!(set_cookies(vs), [("split".into(), Some(expiry.to_string()), vec![None])]);

        let after = without_cookie_expiry(vs, "forklane-checkout").expect("the expiry is found");
        assert_eq!(set_cookies(&after), [("split".into(), None, vec![None])]);
        let mut without = exp.clone();
        if let crate::api::Strategy::AbTest(ab) = &mut without.spec.strategy {
            ab.sticky = None;
        }
        let plain = plan(&without, &Target::Final("v1".into()), Routing::Istio, &Observed::default()).unwrap();
        assert_eq!(&after, virtual_service_of(&plain), "nothing else changes");
        assert_eq!(without_cookie_expiry(&after, "forklane-checkout"), None);
        assert_eq!(without_cookie_expiry(vs, "other"), None, "only this experiment's cookie");
    }
}
