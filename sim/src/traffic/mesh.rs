//! Istio's HTTP routing, as the sidecar applies a VirtualService and DestinationRule: the first
//! http route with a holding `match`, a destination drawn by relative integer weights, the subset's
//! ready pods, mirrors, and request and response header changes. Envoy's local replies stand in for mistakes:
//! 404 NR when no route matches, 503 NC for a destination (host, port, subset) that is not a
//! cluster the proxy knows, 503 UH for one without a ready pod, 503 UF when every connection
//! attempt (Istio retries twice) went to a pod that is gone (a proxy with lagging endpoints).
//!
//! Match conditions modelled: `headers`, `withoutHeaders`, `uri`, `method`, `authority` and
//! `gateways` (holds when it lists `mesh`). A match using any other condition (`queryParams`,
//! `port`, `sourceLabels`, `sourceNamespace`) never holds here.

use std::collections::BTreeMap;

use rand::Rng;
use regex::Regex;

use super::lag::Views;
use super::proxy::{self, Picked};
use super::request::{Request, ResponseFlag};
use super::snapshot::{ServiceEntry, ServiceKey, Snapshot};
use forklane_core::istio::*;

#[derive(Debug)]
pub struct CompiledVirtualService {
    hosts: Vec<ServiceKey>,
    /// Whether the rules apply to sidecar traffic (`gateways` absent or listing `mesh`).
    for_mesh: bool,
    routes: Vec<HttpRoute>,
    /// Istio's order of configuration: creation time, name, namespace.
    order: (Option<jiff::Timestamp>, String, String),
}

#[derive(Debug)]
struct HttpRoute {
    /// Any of these must hold; an empty list matches everything.
    matches: Vec<Vec<Condition>>,
    destinations: Vec<WeightedDestination>,
    total_weight: u64,
    request: HeaderOps,
    response: HeaderOps,
    mirrors: Vec<(Target, f64)>,
}

#[derive(Debug)]
struct WeightedDestination {
    target: Target,
    weight: u64,
    request: HeaderOps,
    response: HeaderOps,
}

/// A destination: `host` resolved to a Service (`None`: not a cluster Service), subset, port.
#[derive(Debug)]
struct Target {
    service: Option<ServiceKey>,
    subset: Option<String>,
    port: Option<i64>,
}

#[derive(Debug)]
enum Condition {
    Header(String, StringMatcher),
    WithoutHeader(String, StringMatcher),
    Uri(StringMatcher),
    Method(StringMatcher),
    Authority(StringMatcher),
    Never,
}

#[derive(Debug)]
enum StringMatcher {
    /// `{}`: the header is present.
    Present,
    Exact(String),
    Prefix(String),
    /// Anchored (RE2 matches the whole value); `None` for a pattern that does not compile, which
    /// Istio's validation would have refused: it never matches.
    Regex(Option<Regex>),
}

/// `headers.request` or `headers.response` of a route or destination.
#[derive(Debug, Default)]
pub struct HeaderOps {
    set: Vec<(String, String)>,
    add: Vec<(String, String)>,
    remove: Vec<String>,
}

impl HeaderOps {
    fn from_parts(
        set: Option<&BTreeMap<String, String>>,
        add: Option<&BTreeMap<String, String>>,
        remove: Option<&Vec<String>>,
    ) -> Self {
        let lower = |m: Option<&BTreeMap<String, String>>| {
            m.into_iter().flatten().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect()
        };
        HeaderOps {
            set: lower(set),
            add: lower(add),
            remove: remove.into_iter().flatten().map(|h| h.to_ascii_lowercase()).collect(),
        }
    }

    /// Header changes from lists (names are lowercased): `set` replaces, `add` appends a value
    /// (kept apart, as repeated headers), `remove` drops; removal and replacement come first.
    pub(crate) fn new(set: Vec<(String, String)>, add: Vec<(String, String)>, remove: Vec<String>) -> Self {
        let lower = |v: Vec<(String, String)>| v.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect();
        HeaderOps {
            set: lower(set),
            add: lower(add),
            remove: remove.into_iter().map(|h| h.to_ascii_lowercase()).collect(),
        }
    }

    pub(crate) fn apply(&self, headers: &mut Vec<(String, String)>) {
        headers.retain(|(name, _)| !self.remove.contains(name) && !self.set.iter().any(|(s, _)| s == name));
        headers.extend(self.set.iter().cloned());
        headers.extend(self.add.iter().cloned());
    }
}

impl CompiledVirtualService {
    pub(crate) fn applies_to(&self, service: &ServiceKey) -> bool {
        self.for_mesh && self.hosts.contains(service)
    }

    /// Istio's order (creation time, name, namespace): the older of this and the HTTPRoutes for
    /// the same host is the one a sidecar uses.
    pub(crate) fn order(&self) -> crate::traffic::gateway::IstioOrder<'_> {
        (self.order.0, &self.order.1, &self.order.2)
    }
}

/// The [`HeaderOps`] of an optional `headers.request` / `headers.response` (four generated types
/// with the same three fields).
macro_rules! header_ops {
    ($ops:expr) => {
        $ops.map_or_else(HeaderOps::default, |h| {
            HeaderOps::from_parts(h.set.as_ref(), h.add.as_ref(), h.remove.as_ref())
        })
    };
}

/// Compiles a VirtualService's hosts, http routes and regexes.
pub(crate) fn compile(vs: &VirtualService) -> CompiledVirtualService {
    let namespace = vs.metadata.namespace.as_deref().unwrap_or("default");
    let target = |host: &str, subset: &Option<String>, port: Option<i64>| Target {
        service: ServiceKey::from_host(host, namespace),
        subset: subset.clone(),
        port,
    };
    let routes = vs
        .spec
        .http
        .iter()
        .flatten()
        .map(|http| {
            let destinations: Vec<WeightedDestination> = http
                .route
                .iter()
                .flatten()
                .map(|r| {
                    let d = &r.destination;
                    let (request, response) =
                        r.headers.as_ref().map_or((None, None), |h| (h.request.as_ref(), h.response.as_ref()));
                    WeightedDestination {
                        target: target(&d.host, &d.subset, d.port.as_ref().and_then(|p| p.number)),
                        weight: u64::try_from(r.weight.unwrap_or(0)).unwrap_or(0),
                        request: header_ops!(request),
                        response: header_ops!(response),
                    }
                })
                .collect();
            let (request, response) =
                http.headers.as_ref().map_or((None, None), |h| (h.request.as_ref(), h.response.as_ref()));
            HttpRoute {
                matches: http.r#match.iter().flatten().map(conditions).collect(),
                // A single destination takes all traffic whatever its weight says.
                total_weight: if destinations.len() == 1 { 0 } else { destinations.iter().map(|d| d.weight).sum() },
                destinations,
                request: header_ops!(request),
                response: header_ops!(response),
                mirrors: mirrors(http, &target),
            }
        })
        .collect();
    CompiledVirtualService {
        hosts: vs.spec.hosts.iter().flatten().filter_map(|h| ServiceKey::from_host(h, namespace)).collect(),
        for_mesh: vs.spec.gateways.as_ref().is_none_or(|g| g.iter().any(|g| g == "mesh")),
        routes,
        order: (
            vs.metadata.creation_timestamp.as_ref().map(|t| t.0),
            vs.metadata.name.clone().unwrap_or_default(),
            namespace.to_string(),
        ),
    }
}

/// `mirror` (+ `mirrorPercentage`, or the deprecated integer `mirrorPercent`; 100 when neither)
/// and the newer `mirrors` list.
fn mirrors(
    http: &VirtualServiceHttp,
    target: &impl Fn(&str, &Option<String>, Option<i64>) -> Target,
) -> Vec<(Target, f64)> {
    let single = http.mirror.as_ref().map(|m| {
        let percent = http
            .mirror_percentage
            .as_ref()
            .and_then(|p| p.value)
            .or(http.mirror_percent.map(|p| p as f64))
            .unwrap_or(100.0);
        (target(&m.host, &m.subset, m.port.as_ref().and_then(|p| p.number)), percent)
    });
    let listed = http.mirrors.iter().flatten().map(|m| {
        let d = &m.destination;
        let percent = m.percentage.as_ref().and_then(|p| p.value).unwrap_or(100.0);
        (target(&d.host, &d.subset, d.port.as_ref().and_then(|p| p.number)), percent)
    });
    single.into_iter().chain(listed).collect()
}

fn conditions(m: &VirtualServiceHttpMatch) -> Vec<Condition> {
    let mut out = Vec::new();
    for (name, h) in m.headers.iter().flatten() {
        out.push(Condition::Header(name.to_ascii_lowercase(), matcher(&h.exact, &h.prefix, &h.regex)));
    }
    for (name, h) in m.without_headers.iter().flatten() {
        out.push(Condition::WithoutHeader(name.to_ascii_lowercase(), matcher(&h.exact, &h.prefix, &h.regex)));
    }
    if let Some(u) = &m.uri {
        out.push(Condition::Uri(matcher(&u.exact, &u.prefix, &u.regex)));
    }
    if let Some(x) = &m.method {
        out.push(Condition::Method(matcher(&x.exact, &x.prefix, &x.regex)));
    }
    if let Some(a) = &m.authority {
        out.push(Condition::Authority(matcher(&a.exact, &a.prefix, &a.regex)));
    }
    let unmodelled =
        m.query_params.is_some() || m.port.is_some() || m.source_labels.is_some() || m.source_namespace.is_some();
    let other_gateways = m.gateways.as_ref().is_some_and(|g| !g.iter().any(|g| g == "mesh"));
    if unmodelled || other_gateways {
        out.push(Condition::Never);
    }
    out
}

fn matcher(exact: &Option<String>, prefix: &Option<String>, regex: &Option<String>) -> StringMatcher {
    match (exact, prefix, regex) {
        (Some(e), _, _) => StringMatcher::Exact(e.clone()),
        (_, Some(p), _) => StringMatcher::Prefix(p.clone()),
        (_, _, Some(r)) => StringMatcher::Regex(
            Regex::new(&format!("^(?:{r})$"))
                .map_err(|e| tracing::warn!("VirtualService regex {r:?} does not compile: {e}"))
                .ok(),
        ),
        _ => StringMatcher::Present,
    }
}

impl StringMatcher {
    fn holds(&self, value: Option<&str>) -> bool {
        let Some(value) = value else { return false };
        match self {
            StringMatcher::Present => true,
            StringMatcher::Exact(e) => value == e,
            StringMatcher::Prefix(p) => value.starts_with(p.as_str()),
            StringMatcher::Regex(re) => re.as_ref().is_some_and(|re| re.is_match(value)),
        }
    }
}

impl Condition {
    fn holds(&self, req: &Request) -> bool {
        match self {
            Condition::Header(name, m) => m.holds(req.header_value(name).as_deref()),
            Condition::WithoutHeader(name, m) => !m.holds(req.header_value(name).as_deref()),
            Condition::Uri(m) => m.holds(Some(req.path_only())),
            Condition::Method(m) => m.holds(Some(&req.method)),
            Condition::Authority(m) => m.holds(Some(&req.authority)),
            Condition::Never => false,
        }
    }
}

/// The proxy's own reply instead of forwarding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u16,
    pub flag: ResponseFlag,
    /// The Service the request was headed for, where known.
    pub service: Option<ServiceKey>,
}

/// Where the mesh sends one request.
#[derive(Debug)]
pub struct Decision<'s> {
    pub primary: Result<Picked, LocalReply>,
    /// Pods that get a copy whose answer is dropped (mirrors that cannot be resolved are skipped).
    pub mirrors: Vec<Picked>,
    /// Request header changes of the chosen destination, then of the route, in Envoy's default
    /// order (the route's `set` wins); applied before forwarding, to the copies too.
    pub request_headers: Vec<&'s HeaderOps>,
    /// Response header changes of the chosen destination, then of the route.
    pub response_headers: Vec<&'s HeaderOps>,
    /// Whether a Gateway API HTTPRoute (rather than a VirtualService or none) routed the request:
    /// its L7 metrics are then reported by the waypoint.
    pub http_route: bool,
}

impl Decision<'_> {
    pub(crate) fn reply(primary: Result<Picked, LocalReply>, mirrors: Vec<Picked>) -> Self {
        Decision { primary, mirrors, request_headers: Vec::new(), response_headers: Vec::new(), http_route: false }
    }

    /// The request as the proxy forwards it, its header changes applied.
    pub(crate) fn forwarded(&self, req: &Request) -> Request {
        let mut out = req.clone();
        for ops in &self.request_headers {
            ops.apply(&mut out.headers);
        }
        out
    }
}

/// Routes a request for `service` through the mesh, by one up-to-date proxy.
pub fn route<'s>(
    snap: &'s Snapshot,
    service: &ServiceKey,
    entry: &'s ServiceEntry,
    req: &Request,
    rng: &mut impl Rng,
) -> Decision<'s> {
    route_in(Views::same(snap), service, entry.virtual_service.as_deref(), req, rng)
}

/// Routes a request by `vs` (from the proxy's route view) to the clusters of its cluster view;
/// the pods picked are indices into the current snapshot.
pub(crate) fn route_in<'s>(
    views: Views<'s>,
    service: &ServiceKey,
    vs: Option<&'s CompiledVirtualService>,
    req: &Request,
    rng: &mut impl Rng,
) -> Decision<'s> {
    let Some(vs) = vs else {
        // No VirtualService: the sidecar balances over all of the Service's ready endpoints.
        return Decision::reply(resolve(views, Some(service), None, None, rng), Vec::new());
    };
    let Some(route) =
        vs.routes.iter().find(|r| r.matches.is_empty() || r.matches.iter().any(|m| m.iter().all(|c| c.holds(req))))
    else {
        let primary = Err(LocalReply { status: 404, flag: ResponseFlag::NoRoute, service: Some(service.clone()) });
        return Decision::reply(primary, Vec::new());
    };
    let mut mirrors = Vec::new();
    for (target, percent) in &route.mirrors {
        if rng.random::<f64>() * 100.0 < *percent {
            mirrors.extend(resolve_target(views, target, rng).ok());
        }
    }
    let Some(destination) = choose(route, rng) else {
        let primary = Err(LocalReply { status: 503, flag: ResponseFlag::NoRoute, service: Some(service.clone()) });
        return Decision::reply(primary, mirrors);
    };
    Decision {
        primary: resolve_target(views, &destination.target, rng),
        mirrors,
        request_headers: vec![&destination.request, &route.request],
        response_headers: vec![&destination.response, &route.response],
        http_route: false,
    }
}

/// A destination drawn with probability weight/sum (Istio ≥ 1.13 normalises weights).
fn choose<'r>(route: &'r HttpRoute, rng: &mut impl Rng) -> Option<&'r WeightedDestination> {
    if route.destinations.len() == 1 {
        return route.destinations.first();
    }
    if route.total_weight == 0 {
        return None;
    }
    let mut draw = rng.random_range(0..route.total_weight);
    route.destinations.iter().find(|d| {
        if draw < d.weight {
            return true;
        }
        draw -= d.weight;
        false
    })
}

fn resolve_target(views: Views, target: &Target, rng: &mut impl Rng) -> Result<Picked, LocalReply> {
    resolve(views, target.service.as_ref(), target.subset.as_deref(), target.port, rng)
}

/// Connection attempts to a cluster: the first and the two retries of Istio's default retry
/// policy (which retries `connect-failure` on another host of the same cluster).
const CONNECT_ATTEMPTS: usize = 3;

/// A pod of the cluster (`key`, `port`, `subset`) of the cluster view that still runs: NC when
/// the proxy knows no such cluster, UH when it has no endpoint, UF when every attempt went to a
/// pod that is gone.
pub(crate) fn resolve(
    views: Views,
    key: Option<&ServiceKey>,
    subset: Option<&str>,
    port: Option<i64>,
    rng: &mut impl Rng,
) -> Result<Picked, LocalReply> {
    let reply = |status, flag, service: Option<&ServiceKey>| LocalReply { status, flag, service: service.cloned() };
    let no_cluster = |service| reply(503, ResponseFlag::NoClusterFound, service);
    let key = key.ok_or_else(|| no_cluster(None))?;
    let entry = views.clusters.service(key).ok_or_else(|| no_cluster(Some(key)))?;
    if let Some(port) = port
        && !entry.service.ports.iter().any(|p| i64::from(p.port) == port)
    {
        return Err(no_cluster(Some(key)));
    }
    let endpoints = match subset {
        None => &entry.endpoints,
        Some(subset) => entry.subsets.as_ref().and_then(|s| s.get(subset)).ok_or_else(|| no_cluster(Some(key)))?,
    };
    let mut tried = Vec::new();
    for _ in 0..CONNECT_ATTEMPTS {
        // A retry goes to a host not tried yet while there is one (Envoy's previous_hosts).
        let untried: Vec<usize>;
        let hosts = if tried.is_empty() {
            endpoints
        } else {
            untried = endpoints.iter().copied().filter(|e| !tried.contains(e)).collect();
            if untried.is_empty() { endpoints } else { &untried }
        };
        let picked =
            proxy::pick(rng, hosts, key).ok_or_else(|| reply(503, ResponseFlag::NoHealthyUpstream, Some(key)))?;
        match views.running(picked.pod) {
            Some(pod) => return Ok(Picked { service: picked.service, pod }),
            None => tried.push(picked.pod),
        }
    }
    Err(reply(503, ResponseFlag::UpstreamConnectionFailure, Some(key)))
}
