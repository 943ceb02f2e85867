//! Compiling an HTTPRoute: its parents, hostnames and rules, with every backendRef checked
//! against the Services of the snapshot the route arrives with (as istiod resolves references
//! when it translates a route): an invalid one is kept as the reason it is invalid, and its share
//! of requests is answered 500.

use jiff::Timestamp;

use super::GatewayKey;
use super::filters::{Filters, MirrorRef, compile_filters};
use super::matching::Match;
use crate::traffic::mesh::HeaderOps;
use crate::traffic::snapshot::{Service, ServiceKey};
use forklane_core::gateway::HttpRoute;

#[derive(Debug)]
pub(crate) struct CompiledRoute {
    pub namespace: String,
    pub name: String,
    pub created: Option<Timestamp>,
    /// Lowercase; empty: any host.
    pub hostnames: Vec<String>,
    pub parents: Vec<ParentRef>,
    pub rules: Vec<Rule>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ParentRef {
    /// GAMMA: the route applies to requests addressed to the Service (at `port`, when set).
    Service {
        key: ServiceKey,
        port: Option<i32>,
    },
    Gateway {
        key: GatewayKey,
        section: Option<String>,
        port: Option<i32>,
    },
}

#[derive(Debug)]
pub(crate) struct Rule {
    /// Never empty: a rule without `matches` has `PathPrefix /`.
    pub matches: Vec<Match>,
    pub backends: Vec<Backend>,
    pub total_weight: u64,
    pub request: HeaderOps,
    pub response: HeaderOps,
    /// Valid mirror backends (Service, port) and the share of requests each gets, 0 to 100.
    pub mirrors: Vec<(ServiceKey, i32, f64)>,
    /// Filters of the rule that are not modelled (its requests are answered 500).
    pub unsupported: Vec<&'static str>,
}

#[derive(Debug)]
pub(crate) struct Backend {
    /// The Service and port, or why the reference is invalid.
    pub target: Result<(ServiceKey, i32), String>,
    pub weight: u64,
    pub request: HeaderOps,
    pub response: HeaderOps,
}

/// Checks a reference to a backend: core group, kind Service, a Service the snapshot knows, and
/// one of its ports. Cross-namespace references are honoured (ReferenceGrants are not checked).
fn check(
    group: Option<&str>,
    kind: Option<&str>,
    name: &str,
    namespace: Option<&str>,
    port: Option<i32>,
    route_namespace: &str,
    services: &dyn Fn(&ServiceKey) -> Option<Service>,
) -> Result<(ServiceKey, i32), String> {
    let (group, kind) = (group.unwrap_or(""), kind.unwrap_or("Service"));
    if !group.is_empty() || kind != "Service" {
        return Err(format!("backend kind {group}/{kind} is not supported"));
    }
    let key = ServiceKey::new(namespace.unwrap_or(route_namespace), name);
    let service = services(&key).ok_or_else(|| format!("Service {}/{} not found", key.namespace, key.name))?;
    let port = port.ok_or_else(|| format!("Service {}/{} referenced without a port", key.namespace, key.name))?;
    if !service.ports.iter().any(|p| p.port == port) {
        return Err(format!("Service {}/{} has no port {port}", key.namespace, key.name));
    }
    Ok((key, port))
}

pub(crate) fn compile(route: &HttpRoute, services: &dyn Fn(&ServiceKey) -> Option<Service>) -> CompiledRoute {
    let namespace = route.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let spec = &route.spec;
    let parents = spec
        .parent_refs
        .iter()
        .flatten()
        .filter_map(|p| {
            let ns = p.namespace.clone().unwrap_or_else(|| namespace.clone());
            match (p.group.as_deref(), p.kind.as_deref()) {
                (Some(""), Some("Service")) => {
                    Some(ParentRef::Service { key: ServiceKey::new(&ns, &p.name), port: p.port })
                }
                (None | Some("gateway.networking.k8s.io"), None | Some("Gateway")) => Some(ParentRef::Gateway {
                    key: GatewayKey::new(&ns, &p.name),
                    section: p.section_name.clone(),
                    port: p.port,
                }),
                (group, kind) => {
                    tracing::warn!(route = %route.metadata.name.as_deref().unwrap_or_default(), ?group, ?kind, "parentRef kind not modelled");
                    None
                }
            }
        })
        .collect();
    let rules = spec
        .rules
        .iter()
        .flatten()
        .map(|rule| {
            let filters: Filters = compile_filters!(rule.filters);
            let backends: Vec<Backend> = rule
                .backend_refs
                .iter()
                .flatten()
                .map(|b| {
                    let mut target = check(
                        b.group.as_deref(),
                        b.kind.as_deref(),
                        &b.name,
                        b.namespace.as_deref(),
                        b.port,
                        &namespace,
                        services,
                    );
                    let filters: Filters = compile_filters!(b.filters);
                    let mut unsupported = filters.unsupported.clone();
                    if !filters.mirrors.is_empty() {
                        unsupported.push("RequestMirror on a backendRef");
                    }
                    if !unsupported.is_empty() && target.is_ok() {
                        target = Err(format!("filters not modelled: {}", unsupported.join(", ")));
                    }
                    let (request, response) = filters.headers();
                    Backend { target, weight: u64::try_from(b.weight.unwrap_or(1)).unwrap_or(0), request, response }
                })
                .collect();
            let mirrors = filters
                .mirrors
                .iter()
                .filter_map(|m: &MirrorRef| {
                    let checked = check(
                        m.group.as_deref(),
                        m.kind.as_deref(),
                        &m.name,
                        m.namespace.as_deref(),
                        m.port,
                        &namespace,
                        services,
                    );
                    checked
                        .map_err(|why| tracing::debug!("mirror skipped: {why}"))
                        .ok()
                        .map(|(key, port)| (key, port, m.percent))
                })
                .collect();
            let matches = match &rule.matches {
                Some(ms) if !ms.is_empty() => ms.iter().map(Match::compile).collect(),
                _ => vec![Match::any()],
            };
            Rule {
                matches,
                total_weight: backends.iter().map(|b| b.weight).sum(),
                backends,
                request: filters.request,
                response: filters.response,
                mirrors,
                unsupported: filters.unsupported,
            }
        })
        .collect();
    CompiledRoute {
        name: route.metadata.name.clone().unwrap_or_default(),
        created: route.metadata.creation_timestamp.as_ref().map(|t| t.0),
        hostnames: spec.hostnames.iter().flatten().map(|h| h.to_ascii_lowercase()).collect(),
        parents,
        rules,
        namespace,
    }
}
