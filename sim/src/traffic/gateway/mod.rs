//! Gateway API HTTPRoutes (`gateway.networking.k8s.io/v1`), as Istio applies them: routes
//! attached to a Service (GAMMA: the sidecar or waypoint routes requests addressed to it) or to a
//! Gateway (requests entering through one of its listeners, matched on the `Host` header against
//! the route's hostnames), compiled per parent into one table ordered by the specification's
//! precedence (see `precedence.rs`), with filters (`filters.rs`) and weighted Service backends
//! (`route.rs`). See docs/traffic.md for what is modelled and how routes combine with
//! VirtualServices.

use std::collections::HashMap;
use std::sync::Arc;

use jiff::Timestamp;
use serde_json::Value;

use compile::{CompiledRoute, ParentRef, Rule};
use precedence::Table;

use super::request::Request;
use super::snapshot::{Service, ServiceKey};
use forklane_core::gateway::HttpRoute;

pub(crate) mod compile;
pub(crate) mod filters;
pub(crate) mod matching;
pub(crate) mod precedence;
pub(crate) mod route;

#[cfg(test)]
mod conformance;
#[cfg(test)]
mod tests;

/// `(namespace, name)` of a Gateway.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GatewayKey {
    pub namespace: String,
    pub name: String,
}

impl GatewayKey {
    pub fn new(namespace: &str, name: &str) -> Self {
        GatewayKey { namespace: namespace.into(), name: name.into() }
    }
}

/// One listener of a Gateway.
#[derive(Debug)]
struct Listener {
    name: String,
    port: i32,
    /// Lowercase; `None`: any host.
    hostname: Option<String>,
    /// `allowedRoutes.namespaces.from`: `Same` (the default) admits routes of the Gateway's
    /// namespace only; `All` (and `Selector`, whose label selector is not modelled) any.
    all_namespaces: bool,
}

/// How a route is attached to a Service: at these ports (`None`: all).
type MeshAttachment = Option<Vec<i32>>;
/// How a route is attached to a Gateway: per listener index, its effective hostnames (`None`:
/// any host).
type GatewayAttachment = Vec<(usize, Vec<Option<String>>)>;

/// The HTTPRoutes of a snapshot, per parent.
#[derive(Debug, Default)]
pub(crate) struct GatewayApi {
    mesh: HashMap<ServiceKey, Table<MeshAttachment>>,
    gateways: HashMap<GatewayKey, (Vec<Listener>, Table<GatewayAttachment>)>,
}

fn listeners(gateway: &Value) -> Vec<Listener> {
    let list = gateway["spec"]["listeners"].as_array().into_iter().flatten();
    list.map(|l| Listener {
        name: l["name"].as_str().unwrap_or_default().to_string(),
        port: l["port"].as_i64().and_then(|p| i32::try_from(p).ok()).unwrap_or_default(),
        hostname: l["hostname"].as_str().map(str::to_ascii_lowercase),
        all_namespaces: matches!(l["allowedRoutes"]["namespaces"]["from"].as_str(), Some("All" | "Selector")),
    })
    .collect()
}

/// Whether hostname pattern `pattern` (`*.example.com` or exact) covers `host`; a wildcard
/// covers one or more labels, never the bare suffix.
fn covers(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix('*') {
        Some(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
        None => pattern == host,
    }
}

/// The hostnames a route serves on a listener: the intersection of the route's and the
/// listener's (empty: the route does not attach to that listener).
fn effective_hostnames(route: &[String], listener: Option<&str>) -> Vec<Option<String>> {
    match (route.is_empty(), listener) {
        (true, l) => vec![l.map(str::to_string)],
        (false, None) => route.iter().cloned().map(Some).collect(),
        (false, Some(l)) => route
            .iter()
            .filter_map(|r| {
                if covers(l, r) || r == l {
                    Some(r.clone())
                } else if covers(r, l) {
                    Some(l.to_string())
                } else {
                    None
                }
            })
            .map(Some)
            .collect(),
    }
}

/// How specifically `pattern` matches `host`, as Envoy picks a virtual host: an exact name over
/// the longest wildcard over any host; `None` when it does not match.
fn specificity(pattern: Option<&str>, host: &str) -> Option<(u8, usize)> {
    match pattern {
        None => Some((0, 0)),
        Some(p) if !covers(p, host) => None,
        Some(p) if p.starts_with('*') => Some((1, p.len())),
        Some(p) => Some((2, p.len())),
    }
}

/// Istio's order of configuration (creation time, name, namespace): of an HTTPRoute and a
/// VirtualService for one host in the mesh, the older is used.
pub(crate) type IstioOrder<'a> = (Option<Timestamp>, &'a str, &'a str);

impl GatewayApi {
    /// Compiles `routes`, checking their backends against `services`, and attaches them to the
    /// Services and to the listeners of `gateways` (Gateway objects as JSON) they name.
    pub(crate) fn build(
        routes: &[HttpRoute],
        gateways: &[Value],
        services: &dyn Fn(&ServiceKey) -> Option<Service>,
    ) -> Self {
        let compiled: Vec<Arc<CompiledRoute>> =
            routes.iter().map(|r| Arc::new(compile::compile(r, services))).collect();
        let mut mesh: HashMap<ServiceKey, Vec<(Arc<CompiledRoute>, MeshAttachment)>> = HashMap::new();
        for route in &compiled {
            let mut attached: HashMap<&ServiceKey, MeshAttachment> = HashMap::new();
            for parent in &route.parents {
                if let ParentRef::Service { key, port } = parent {
                    let ports = attached.entry(key).or_insert_with(|| Some(Vec::new()));
                    match (ports.as_mut(), port) {
                        (Some(ports), Some(p)) => ports.push(*p),
                        _ => *ports = None,
                    }
                }
            }
            for (key, ports) in attached {
                mesh.entry(key.clone()).or_default().push((route.clone(), ports));
            }
        }
        let mut by_gateway = HashMap::new();
        for gw in gateways {
            let key = GatewayKey::new(
                gw["metadata"]["namespace"].as_str().unwrap_or("default"),
                gw["metadata"]["name"].as_str().unwrap_or_default(),
            );
            let listeners = listeners(gw);
            let mut attached = Vec::new();
            for route in &compiled {
                let mut on: GatewayAttachment = Vec::new();
                for parent in &route.parents {
                    let ParentRef::Gateway { key: k, section, port } = parent else { continue };
                    if *k != key {
                        continue;
                    }
                    for (i, l) in listeners.iter().enumerate() {
                        let selected =
                            section.as_ref().is_none_or(|s| *s == l.name) && port.is_none_or(|p| p == l.port);
                        let admitted = l.all_namespaces || route.namespace == key.namespace;
                        let hosts = effective_hostnames(&route.hostnames, l.hostname.as_deref());
                        if selected && admitted && !hosts.is_empty() && !on.iter().any(|(j, _)| *j == i) {
                            on.push((i, hosts));
                        }
                    }
                }
                if !on.is_empty() {
                    attached.push((route.clone(), on));
                }
            }
            by_gateway.insert(key, (listeners, Table::new(attached)));
        }
        GatewayApi { mesh: mesh.into_iter().map(|(k, routes)| (k, Table::new(routes))).collect(), gateways: by_gateway }
    }

    /// The routes that apply to a request from a client in `client_namespace` to `service` at
    /// `port`: the consumer routes of the client's namespace if it has any (GAMMA: they take
    /// precedence), else the producer routes (those in the Service's namespace); `None` when no
    /// route applies.
    pub(crate) fn mesh(&self, service: &ServiceKey, port: i32, client_namespace: &str) -> Option<MeshRoutes<'_>> {
        let table = self.mesh.get(service)?;
        let has = |ns: &str| table.routes.iter().any(|(r, ports)| r.namespace == ns && at_port(ports, port));
        let namespace = if client_namespace != service.namespace && has(client_namespace) {
            client_namespace
        } else if has(&service.namespace) {
            &service.namespace
        } else {
            return None;
        };
        Some(MeshRoutes { table, namespace: namespace.to_string(), port })
    }

    /// The routes of the listener of `gateway` that a request to `port` for `host` enters
    /// through; `None` when the Gateway has no listener on that port (nothing accepts it).
    pub(crate) fn gateway(&self, gateway: &GatewayKey, port: i32, host: &str) -> Option<GatewayRoutes<'_>> {
        let (listeners, table) = self.gateways.get(gateway)?;
        let on_port: Vec<usize> = (0..listeners.len()).filter(|&i| listeners[i].port == port).collect();
        if on_port.is_empty() {
            return None;
        }
        let listener = on_port
            .iter()
            .filter_map(|&i| specificity(listeners[i].hostname.as_deref(), host).map(|s| (s, i)))
            .max()
            .map(|(_, i)| i);
        let best = listener.and_then(|l| {
            table
                .routes
                .iter()
                .flat_map(|(_, on)| on.iter().filter(|(i, _)| *i == l).flat_map(|(_, hosts)| hosts))
                .filter_map(|h| specificity(h.as_deref(), host))
                .max()
        });
        Some(GatewayRoutes { table, listener, host: host.to_string(), best })
    }
}

fn at_port(ports: &MeshAttachment, port: i32) -> bool {
    ports.as_ref().is_none_or(|p| p.contains(&port))
}

/// The HTTPRoutes that route one mesh request.
pub(crate) struct MeshRoutes<'s> {
    table: &'s Table<MeshAttachment>,
    /// The namespace whose routes apply (consumer or producer).
    namespace: String,
    port: i32,
}

impl<'s> MeshRoutes<'s> {
    fn applies(&self, route: &CompiledRoute, ports: &MeshAttachment) -> bool {
        route.namespace == self.namespace && at_port(ports, self.port)
    }

    /// The rule that routes `req`; `None`: no match (404).
    pub(crate) fn find(&self, req: &Request) -> Option<&'s Rule> {
        self.table.find(req, |r, a| self.applies(r, a))
    }

    /// The Istio order of the oldest route that applies: Istio turns the routes for one host into
    /// one VirtualService, ordered as that route.
    pub(crate) fn order(&self) -> Option<IstioOrder<'s>> {
        let table: &'s Table<MeshAttachment> = self.table;
        table
            .routes
            .iter()
            .filter(|(r, a)| self.applies(r, a))
            .map(|(r, _)| (r.created, r.name.as_str(), r.namespace.as_str()))
            .min()
    }
}

/// The HTTPRoutes of one Gateway listener, for one host.
pub(crate) struct GatewayRoutes<'s> {
    table: &'s Table<GatewayAttachment>,
    listener: Option<usize>,
    host: String,
    /// The most specific hostname any route of the listener matches the host with: only routes
    /// matching it that specifically apply (Envoy's virtual host).
    best: Option<(u8, usize)>,
}

impl<'s> GatewayRoutes<'s> {
    /// The rule that routes `req`; `None`: no route for its host, or no match (404).
    pub(crate) fn find(&self, req: &Request) -> Option<&'s Rule> {
        let (listener, best) = (self.listener?, self.best?);
        let table: &'s Table<GatewayAttachment> = self.table;
        table.find(req, |_, on| {
            on.iter()
                .filter(|(i, _)| *i == listener)
                .flat_map(|(_, hosts)| hosts)
                .any(|h| specificity(h.as_deref(), &self.host) == Some(best))
        })
    }
}
