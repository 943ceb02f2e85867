//! With the Gateway API: one Service per arm (an HTTPRoute's backends are Services, not subsets)
//! and one HTTPRoute, in the make-before-break order of Istio's subsets and routes: every arm the
//! state routes to has its Service before the route names it, and a Service goes only after the
//! route no longer does.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use serde_json::{Value, json};

use crate::api::{Experiment, ExperimentSpec, ParentRef, Strategy};
use crate::gateway::*;

use super::istio::{destinations, metadata, object_name, scales};
use super::routing::{COHORT_HEADER, Cohort, Matcher, Route, RouteTable, is_cookie_expiry, route_table};
use super::steps::State;
use super::{Action, Observed};

/// The response header of sticky assignment and of its expiry.
const SET_COOKIE: &str = "Set-Cookie";
/// The label naming the arm on each arm's Service.
pub(crate) const ARM_LABEL: &str = "forklane.io/arm";
/// The label naming the cohort an arm's Service receives.
pub(crate) const COHORT_LABEL: &str = "forklane.io/cohort";

/// The Service of `arm` for the requests of `cohort`: `<service>-<arm>` for the weighted split,
/// `<service>-<arm>-<cohort>` for the others. The mesh's metrics carry no cohort header, but they
/// name the Service a request was sent to, so one Service per cohort keeps them apart: the
/// analysis counts an arm's first exposures, or its randomised requests, by these names.
pub(crate) fn cohort_service_name(service: &str, arm: &str, cohort: Cohort) -> String {
    match cohort {
        Cohort::Assigned => format!("{service}-{arm}"),
        other => format!("{service}-{arm}-{}", other.value()),
    }
}

/// The cohorts an arm's Services receive, the same for every arm (so that a detour keeps each
/// request in its cohort): the split, and sticky pins, targeting rules or the preview where the
/// experiment has them. The mirror's copies go only to the mirrored arm.
pub(crate) fn cohorts(spec: &ExperimentSpec, arm: &str) -> Vec<Cohort> {
    let ab = spec.strategy.ab_test();
    let sticky = ab.is_some_and(|a| a.sticky.is_some());
    let rules = ab.is_some_and(|a| !a.rules.is_empty());
    let preview = matches!(&spec.strategy, Strategy::BlueGreen(bg) if bg.preview_header.is_some());
    let mirrored = spec.mirror.as_ref().is_some_and(|m| m.arm == arm);
    let wanted = [(Cohort::Assigned, true), (Cohort::Returning, sticky), (Cohort::Targeted, rules || preview)];
    wanted.into_iter().filter(|(_, on)| *on).map(|(c, _)| c).chain(mirrored.then_some(Cohort::Mirrored)).collect()
}

/// The Services of `arm`, with the cohort each receives.
pub(crate) fn arm_services(spec: &ExperimentSpec, arm: &str) -> Vec<(Cohort, String)> {
    let service = &spec.service.name;
    cohorts(spec, arm).into_iter().map(|c| (c, cohort_service_name(service, arm, c))).collect()
}

/// The arm and the cohort of the arm Service `name`, if it is one.
pub(crate) fn service_of<'e>(exp: &'e Experiment, name: &str) -> Option<(&'e str, Cohort)> {
    exp.spec.arms.iter().find_map(|a| {
        arm_services(&exp.spec, &a.name).into_iter().find(|(_, n)| n == name).map(|(c, _)| (a.name.as_str(), c))
    })
}

/// The arm whose Service is `name`, if any.
pub(crate) fn arm_of_service<'e>(exp: &'e Experiment, name: &str) -> Option<&'e str> {
    service_of(exp, name).map(|(arm, _)| arm)
}

/// Arm Services to delete: no route names them any more.
#[derive(Clone, Debug, PartialEq)]
pub struct RemoveServices {
    pub namespace: Option<String>,
    /// `(arm, Service name)`.
    pub services: Vec<(String, String)>,
}

impl RemoveServices {
    /// The Services as a `v1` List of references (what `kubectl delete -f` of it deletes).
    pub(crate) fn object(&self) -> Value {
        let items: Vec<Value> = self
            .services
            .iter()
            .map(|(_, name)| {
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": self.namespace}})
            })
            .collect();
        json!({"apiVersion": "v1", "kind": "List", "items": items})
    }

    pub(crate) fn kubectl(&self) -> String {
        let names: Vec<&str> = self.services.iter().map(|(_, n)| n.as_str()).collect();
        let ns = self.namespace.as_deref().map(|n| format!(" -n {n}")).unwrap_or_default();
        format!("kubectl delete service {}{ns}", names.join(" "))
    }
}

pub(crate) fn service_object(service: &Service) -> Value {
    serde_json::to_value(service).expect("typed objects serialise")
}

/// Actions in a safe order: pods up, every routed arm's Service, the route, Services no longer
/// routed removed, pods down.
pub(crate) fn actions(exp: &Experiment, state: &State, observed: &Observed) -> Vec<Action> {
    let table = route_table(&exp.spec, state);
    // As Istio's subsets: arms already serving keep (or get) their Service ahead of the step.
    let desired = destinations(exp, state, observed, &table);
    let (grow, shrink) = scales(exp, state, observed);
    let mut out = grow;
    for arm in exp.spec.arms.iter().filter(|a| desired.contains(&a.name)) {
        for (cohort, _) in arm_services(&exp.spec, &arm.name) {
            out.push(Action::ArmService(Box::new(arm_service(exp, &arm.name, cohort, observed))));
        }
    }
    out.push(Action::HttpRoute(Box::new(http_route(exp, &table))));
    let removed: Vec<(String, String)> = observed
        .subsets
        .iter()
        .flatten()
        .filter(|arm| !desired.contains(*arm))
        .flat_map(|arm| arm_services(&exp.spec, arm).into_iter().map(|(_, name)| (arm.clone(), name)))
        .collect();
    if !removed.is_empty() {
        out.push(Action::RemoveArmServices(RemoveServices {
            namespace: exp.metadata.namespace.clone(),
            services: removed,
        }));
    }
    out.extend(shrink);
    out
}

/// The port the route's backendRefs name: `spec.service.port`, else the Service's first port,
/// else 80.
fn backend_port(exp: &Experiment, observed: &Observed) -> i32 {
    exp.spec.service.port.or(observed.service_ports.first().map(|p| p.port)).unwrap_or(80)
}

/// The Service of one arm for one cohort: the arm's pods, on the experiment Service's ports (a
/// ClusterIP Service: node ports stay on the experiment's own Service).
pub(crate) fn arm_service(exp: &Experiment, arm: &str, cohort: Cohort, observed: &Observed) -> Service {
    let selector = exp.spec.arms.iter().find(|a| a.name == arm).map(|a| a.selector.clone());
    let ports = if observed.service_ports.is_empty() {
        vec![ServicePort { name: Some("http".into()), port: backend_port(exp, observed), ..Default::default() }]
    } else {
        observed
            .service_ports
            .iter()
            .map(|p| ServicePort {
                name: p.name.clone(),
                port: p.port,
                target_port: p.target_port.clone(),
                protocol: p.protocol.clone(),
                app_protocol: p.app_protocol.clone(),
                node_port: None,
            })
            .collect()
    };
    let mut meta = metadata(exp, cohort_service_name(&exp.spec.service.name, arm, cohort));
    let labels = meta.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(ARM_LABEL.into(), arm.into());
    labels.insert(COHORT_LABEL.into(), cohort.value().into());
    Service {
        metadata: meta,
        spec: Some(ServiceSpec { selector, ports: Some(ports), ..Default::default() }),
        status: None,
    }
}

pub(crate) fn parent_refs(exp: &Experiment) -> Vec<HttpRouteParentRefs> {
    let options = exp.spec.gateway_api();
    if options.parent_refs.is_empty() {
        // GAMMA: the route attaches to the Service its clients call.
        return vec![HttpRouteParentRefs {
            group: Some(String::new()),
            kind: Some("Service".into()),
            name: exp.spec.service.name.clone(),
            port: exp.spec.service.port,
            ..Default::default()
        }];
    }
    let gateway = |p: &ParentRef| HttpRouteParentRefs {
        group: Some(p.group.clone().unwrap_or_else(|| "gateway.networking.k8s.io".into())),
        kind: Some(p.kind.clone().unwrap_or_else(|| "Gateway".into())),
        name: p.name.clone(),
        namespace: p.namespace.clone(),
        section_name: p.section_name.clone(),
        port: p.port,
    };
    options.parent_refs.iter().map(gateway).collect()
}

pub(crate) fn http_route(exp: &Experiment, table: &RouteTable) -> HttpRoute {
    let port = backend_port(exp, &Observed::default());
    let service = &exp.spec.service.name;
    let rules = table.routes.iter().map(|route| rule(route, table, service, port)).collect();
    let hostnames = exp.spec.gateway_api().hostnames;
    HttpRoute {
        metadata: metadata(exp, object_name(exp)),
        spec: HttpRouteSpec {
            parent_refs: Some(parent_refs(exp)),
            hostnames: (!hostnames.is_empty()).then_some(hostnames),
            rules: Some(rules),
        },
        status: None,
    }
}

fn rule(route: &Route, table: &RouteTable, service: &str, port: i32) -> HttpRouteRules {
    let headers: Vec<HttpRouteRulesMatchesHeaders> = route.headers.iter().map(|(n, m)| header_match(n, m)).collect();
    // Every match says its path, and every backend its group and kind: the API server would
    // default them, and what is written must equal what is read back.
    let matches = vec![HttpRouteRulesMatches {
        headers: (!headers.is_empty()).then_some(headers),
        path: Some(HttpRouteRulesMatchesPath {
            r#type: Some(HttpRouteRulesMatchesPathType::PathPrefix),
            value: Some("/".into()),
        }),
        ..Default::default()
    }];
    // `set` replaces a value the client sent: only the route decides the cohort.
    let mut filters = vec![HttpRouteRulesFilters {
        r#type: HttpRouteRulesFiltersType::RequestHeaderModifier,
        request_header_modifier: Some(HttpRouteRulesFiltersRequestHeaderModifier {
            set: Some(vec![HttpRouteRulesFiltersRequestHeaderModifierSet {
                name: COHORT_HEADER.into(),
                value: route.cohort.value().into(),
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }];
    if let Some(cookie) = &route.set_cookie {
        filters.push(HttpRouteRulesFilters {
            r#type: HttpRouteRulesFiltersType::ResponseHeaderModifier,
            response_header_modifier: Some(HttpRouteRulesFiltersResponseHeaderModifier {
                add: Some(vec![HttpRouteRulesFiltersResponseHeaderModifierAdd {
                    name: SET_COOKIE.into(),
                    value: cookie.clone(),
                }]),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    // Copies to the mirror arm make no sense on a route that already goes only there.
    if let Some((arm, percent)) =
        table.mirror.as_ref().filter(|(arm, _)| !route.destinations.iter().all(|d| &d.arm == arm))
    {
        filters.push(HttpRouteRulesFilters {
            r#type: HttpRouteRulesFiltersType::RequestMirror,
            request_mirror: Some(mirror(&cohort_service_name(service, arm, Cohort::Mirrored), port, *percent)),
            ..Default::default()
        });
    }
    let backend_refs = route
        .destinations
        .iter()
        .map(|d| HttpRouteRulesBackendRefs {
            group: Some(String::new()),
            kind: Some("Service".into()),
            name: cohort_service_name(service, &d.arm, route.cohort),
            port: Some(port),
            weight: Some(d.weight),
            filters: d.set_cookie.as_ref().map(|cookie| {
                vec![HttpRouteRulesBackendRefsFilters {
                    r#type: HttpRouteRulesBackendRefsFiltersType::ResponseHeaderModifier,
                    response_header_modifier: Some(HttpRouteRulesBackendRefsFiltersResponseHeaderModifier {
                        add: Some(vec![HttpRouteRulesBackendRefsFiltersResponseHeaderModifierAdd {
                            name: SET_COOKIE.into(),
                            value: cookie.clone(),
                        }]),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        })
        .collect();
    HttpRouteRules {
        name: Some(route.name.clone()),
        matches: Some(matches),
        filters: Some(filters),
        backend_refs: Some(backend_refs),
        ..Default::default()
    }
}

/// A RequestMirror of `percent` of the requests: `percent` when whole, else a fraction in
/// ten-thousandths.
fn mirror(backend: &str, port: i32, percent: f64) -> HttpRouteRulesFiltersRequestMirror {
    let whole = (percent.fract() == 0.0).then_some(percent as i32);
    HttpRouteRulesFiltersRequestMirror {
        backend_ref: HttpRouteRulesFiltersRequestMirrorBackendRef {
            group: Some(String::new()),
            kind: Some("Service".into()),
            name: backend.into(),
            port: Some(port),
            ..Default::default()
        },
        percent: whole,
        fraction: match whole {
            Some(_) => None,
            None => Some(HttpRouteRulesFiltersRequestMirrorFraction {
                numerator: (percent * 100.0).round() as i32,
                denominator: Some(10_000),
            }),
        },
    }
}

/// A header condition. The Gateway API has no prefix match: a prefix becomes the regular
/// expression of the escaped prefix followed by anything (implementations match the whole value).
fn header_match(name: &str, m: &Matcher) -> HttpRouteRulesMatchesHeaders {
    let (r#type, value) = match m {
        Matcher::Exact(v) => (HttpRouteRulesMatchesHeadersType::Exact, v.clone()),
        Matcher::Prefix(v) => (HttpRouteRulesMatchesHeadersType::RegularExpression, format!("{}.*", regex::escape(v))),
        Matcher::Regex(v) => (HttpRouteRulesMatchesHeadersType::RegularExpression, v.clone()),
    };
    HttpRouteRulesMatchesHeaders { name: name.into(), r#type: Some(r#type), value }
}

/// The weight each arm's Service gets from `route`'s backendRefs (mirrors count 1, as the Istio
/// reading counts a mirrored subset): what the route sends where.
pub(crate) fn weights(exp: &Experiment, route: &HttpRoute) -> BTreeMap<String, i32> {
    let mut out = BTreeMap::new();
    for rule in route.spec.rules.iter().flatten() {
        for backend in rule.backend_refs.iter().flatten() {
            if let Some(arm) = arm_of_service(exp, &backend.name) {
                *out.entry(arm.to_string()).or_insert(0) += backend.weight.unwrap_or(1);
            }
        }
        for filter in rule.filters.iter().flatten() {
            if let Some(arm) = filter.request_mirror.as_ref().and_then(|m| arm_of_service(exp, &m.backend_ref.name)) {
                *out.entry(arm.to_string()).or_insert(0) += 1;
            }
        }
    }
    out
}

/// The Services `route` names: its backendRefs' and its mirrors'.
pub(crate) fn service_names(route: &HttpRoute) -> BTreeSet<String> {
    let rules = route.spec.rules.iter().flatten();
    rules
        .flat_map(|rule| {
            let backends = rule.backend_refs.iter().flatten().map(|b| b.name.clone());
            let filters = rule.filters.iter().flatten();
            backends.chain(filters.filter_map(|f| f.request_mirror.as_ref().map(|m| m.backend_ref.name.clone())))
        })
        .collect()
}

/// The arms whose Services `route` names (backends and mirrors).
pub(crate) fn referenced_arms(exp: &Experiment, route: &HttpRoute) -> BTreeSet<String> {
    weights(exp, route).into_keys().collect()
}

/// `route` without the answers' expiry of the sticky cookie `cookie_name` (rule-level, as
/// [`http_route`] writes it); `None` when it has none. Everything else stays as it is.
pub(crate) fn without_cookie_expiry(route: &HttpRoute, cookie_name: &str) -> Option<HttpRoute> {
    let mut out = route.clone();
    let mut found = false;
    for rule in out.spec.rules.iter_mut().flatten() {
        let Some(filters) = rule.filters.as_mut() else { continue };
        for filter in filters.iter_mut() {
            let Some(add) = filter.response_header_modifier.as_mut().and_then(|m| m.add.as_mut()) else { continue };
            let before = add.len();
            add.retain(|h| !(h.name.eq_ignore_ascii_case(SET_COOKIE) && is_cookie_expiry(&h.value, cookie_name)));
            found |= add.len() < before;
        }
        // A ResponseHeaderModifier left with nothing to do goes (the API refuses an empty one).
        filters.retain(|f| {
            f.response_header_modifier.as_ref().is_none_or(|m| {
                m.add.as_ref().is_some_and(|a| !a.is_empty())
                    || m.set.as_ref().is_some_and(|s| !s.is_empty())
                    || m.remove.as_ref().is_some_and(|r| !r.is_empty())
            })
        });
    }
    found.then_some(out)
}

#[cfg(test)]
#[path = "gateway_tests.rs"]
mod tests;
