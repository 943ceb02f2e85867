//! One request through the data plane: kube-proxy or the mesh picks pods, the simulated apps
//! answer, the metrics record it. Pure apart from the metrics: randomness comes from the caller,
//! and latency is reported, not slept.

use std::time::Duration;

use rand::Rng;

use super::app::{self, AppAnswer};
use super::gateway::{self, GatewayKey};
use super::lag::{ProxyView, Views};
use super::mesh::{self, Decision, LocalReply};
use super::metrics::{Metrics, Reporter, SOURCE_NAMESPACE};
use super::proxy::{self, Picked};
use super::request::{Answer, Outcome, Request, Response, ResponseFlag, Served};
use super::snapshot::{Service, ServiceKey, Snapshot};
use super::telemetry::{self, Overrides};

/// The simulated network and apps, recording into one set of metrics.
#[derive(Clone, Default)]
pub struct Dataplane {
    pub metrics: Metrics,
    /// Whether I/O front ends (the NodePort listener) really wait for the simulated latency.
    /// Off by default, so that tests stay fast; latency is recorded either way.
    pub sleep_latency: bool,
    /// Seeds the randomness of I/O front ends (in-process callers pass their own).
    pub seed: u64,
}

impl Dataplane {
    pub(crate) fn new(metrics: Metrics) -> Self {
        Dataplane { metrics, sleep_latency: false, seed: 0 }
    }

    /// Handles a request sent to `service` through its NodePort. kube-proxy comes first: an
    /// unknown Service, or one without any ready endpoint, refuses the connection, mesh or not;
    /// otherwise the mesh (when on) routes the request: by the HTTPRoutes attached to the Service
    /// or by its VirtualService (see docs/traffic.md for which), as a client in the ingress
    /// gateway's namespace.
    pub fn handle(&self, snap: &Snapshot, service: &ServiceKey, req: &Request, rng: &mut impl Rng) -> Outcome {
        self.handle_in(Views::same(snap), SOURCE_NAMESPACE, service, req, rng)
    }

    /// Like [`Dataplane::handle`], through a proxy that sees the cluster as `view` says: routes
    /// from its route view, Services, subsets and endpoints from its cluster view, and the pods
    /// that still run from the current snapshot.
    pub fn handle_via(&self, view: &ProxyView, service: &ServiceKey, req: &Request, rng: &mut impl Rng) -> Outcome {
        self.handle_in(view.views(), SOURCE_NAMESPACE, service, req, rng)
    }

    /// Like [`Dataplane::handle_via`], from a client in `source_namespace`: a Gateway API
    /// consumer route (an HTTPRoute in the client's namespace attached to a Service of another
    /// namespace) applies to it.
    pub fn handle_from(
        &self,
        view: &ProxyView,
        source_namespace: &str,
        service: &ServiceKey,
        req: &Request,
        rng: &mut impl Rng,
    ) -> Outcome {
        self.handle_in(view.views(), source_namespace, service, req, rng)
    }

    /// Handles a request entering the cluster through `gateway` (north–south): the listener on
    /// the port of the request's `Host` (80 without one) whose hostname matches it, then the
    /// HTTPRoutes attached to that listener for that host, by Gateway API precedence. Refused
    /// when the Gateway is unknown or has no listener on that port.
    pub fn handle_gateway(&self, snap: &Snapshot, gateway: &GatewayKey, req: &Request, rng: &mut impl Rng) -> Outcome {
        self.gateway_in(Views::same(snap), gateway, req, rng)
    }

    /// Like [`Dataplane::handle_gateway`], through a gateway proxy that sees the cluster as `view`
    /// says (Gateways and HTTPRoutes from its route view, backends from its cluster view).
    pub fn handle_gateway_via(
        &self,
        view: &ProxyView,
        gateway: &GatewayKey,
        req: &Request,
        rng: &mut impl Rng,
    ) -> Outcome {
        self.gateway_in(view.views(), gateway, req, rng)
    }

    fn gateway_in(&self, views: Views, gateway: &GatewayKey, req: &Request, rng: &mut impl Rng) -> Outcome {
        let (host, port) = split_authority(&req.authority);
        let port = port.unwrap_or(80);
        let host = host.to_ascii_lowercase();
        let Some(routes) = views.routes.gateway_api().gateway(gateway, port, &host) else { return Outcome::Refused };
        let decision = gateway::route::decide(views, routes.find(req), None, rng);
        // The proxy's own replies without a destination are reported against the Gateway.
        let fallback = ServiceKey::new(&gateway.namespace, &gateway.name);
        self.answer(views.current, decision, req, &req.authority, &fallback, rng)
    }

    fn handle_in(
        &self,
        views: Views,
        source_namespace: &str,
        service: &ServiceKey,
        req: &Request,
        rng: &mut impl Rng,
    ) -> Outcome {
        let Some(entry) = views.clusters.service(service) else { return Outcome::Refused };
        let Some(picked) = proxy::pick(rng, &entry.endpoints, service) else { return Outcome::Refused };
        let snap = views.current;
        if !snap.mesh {
            // kube-proxy's choice is final; a pod its endpoints still list but that is gone
            // refuses the connection.
            let Some(pod) = views.running(picked.pod) else { return Outcome::Refused };
            let picked = Picked { pod, ..picked };
            let (answer, served) = self.at_pod(snap, &picked, req, "", false, Reporter::Destination, rng);
            let response = Response { status: answer.status, headers: answer.headers, body: answer.body };
            let answer = Answer {
                response,
                flag: ResponseFlag::None,
                served: Some(served),
                latency: answer.latency,
                mirrored_to: Vec::new(),
            };
            return Outcome::Answered(answer);
        }
        // The mesh routes the request again by its own rules: the HTTPRoutes attached to the
        // Service, or its VirtualService, whichever is older (Istio turns the routes for a host
        // into one VirtualService, and a sidecar uses the oldest VirtualService of a host).
        let vs = views.routes.service(service).and_then(|e| e.virtual_service.as_deref());
        let port = request_port(req, &entry.service);
        let http_routes = views.routes.gateway_api().mesh(service, port, source_namespace);
        let decision = match http_routes {
            Some(routes) if vs.is_none_or(|vs| routes.order().is_some_and(|o| o < vs.order())) => {
                gateway::route::decide(views, routes.find(req), Some(service), rng)
            }
            _ => mesh::route_in(views, service, vs, req, rng),
        };
        let host = if req.authority.is_empty() { service.fqdn() } else { req.authority.clone() };
        self.answer(snap, decision, req, &host, service, rng)
    }

    /// Forwards `req` as `decision` says (mirrors first) and records it.
    fn answer(
        &self,
        snap: &Snapshot,
        decision: Decision,
        req: &Request,
        host: &str,
        fallback: &ServiceKey,
        rng: &mut impl Rng,
    ) -> Outcome {
        let forwarded = decision.forwarded(req);
        let shadow = shadow_host(host);
        // A waypoint reports the L7 metrics of what an HTTPRoute routed.
        let reporter = if decision.http_route { Reporter::Waypoint } else { Reporter::Destination };
        let mirrored_to =
            decision.mirrors.iter().map(|m| self.at_pod(snap, m, &forwarded, &shadow, true, reporter, rng).1).collect();
        let answer = match decision.primary {
            Ok(picked) => {
                let (answer, served) = self.at_pod(snap, &picked, &forwarded, host, false, reporter, rng);
                let workload = &snap.pod(picked.pod).workload.mesh;
                self.metrics.record_mesh(
                    Reporter::Source,
                    &picked.service,
                    Some(workload),
                    answer.status,
                    ResponseFlag::None,
                    answer.latency,
                    &Overrides::default(),
                );
                let mut response = Response { status: answer.status, headers: answer.headers, body: answer.body };
                for ops in decision.response_headers {
                    ops.apply(&mut response.headers);
                }
                Answer {
                    response,
                    flag: ResponseFlag::None,
                    served: Some(served),
                    latency: answer.latency,
                    mirrored_to,
                }
            }
            Err(LocalReply { status, flag, service: target }) => {
                self.metrics.record_mesh(
                    Reporter::Source,
                    target.as_ref().unwrap_or(fallback),
                    None,
                    status,
                    flag,
                    Duration::ZERO,
                    &Overrides::default(),
                );
                let body = match flag {
                    ResponseFlag::NoHealthyUpstream => "no healthy upstream",
                    ResponseFlag::UpstreamConnectionFailure => {
                        "upstream connect error or disconnect/reset before headers. reset reason: connection failure"
                    }
                    _ => "",
                };
                Answer {
                    response: Response::new(status, body),
                    flag,
                    served: None,
                    latency: Duration::ZERO,
                    mirrored_to,
                }
            }
        };
        Outcome::Answered(answer)
    }

    /// The pod answers `req` (as it arrives, for the `host` the sidecar sees); its metrics (and,
    /// in the mesh, its sidecar's or waypoint's (`reporter`), with the Telemetry tag overrides
    /// that select it) record it.
    #[allow(clippy::too_many_arguments)]
    fn at_pod(
        &self,
        snap: &Snapshot,
        picked: &Picked,
        req: &Request,
        host: &str,
        mirrored: bool,
        reporter: Reporter,
        rng: &mut impl Rng,
    ) -> (AppAnswer, Served) {
        let pod = snap.pod(picked.pod);
        let answer = app::answer(pod, req, mirrored, rng);
        let w = &pod.workload;
        if snap.mesh {
            self.metrics.record_mesh(
                reporter,
                &picked.service,
                Some(&w.mesh),
                answer.status,
                ResponseFlag::None,
                answer.latency,
                &telemetry::evaluate(&pod.tags, req, host),
            );
        }
        let cohort = req.header_value(COHORT_HEADER);
        self.metrics.record_app(&picked.service, w, &answer, mirrored, snap.mesh, cohort.as_deref().unwrap_or("none"));
        let served =
            Served { namespace: w.mesh.namespace.clone(), pod: w.pod.clone(), version: w.mesh.version.clone() };
        (answer, served)
    }
}

/// The experiment's cohort header, which an app instrumented to propagate it copies into its own
/// metrics as the label `forklane_cohort` (`none` without the header).
pub(crate) const COHORT_HEADER: &str = "x-forklane-cohort";

/// `host[:port]` split; the port is `None` when absent or not a number.
fn split_authority(authority: &str) -> (&str, Option<i32>) {
    match authority.rsplit_once(':') {
        Some((host, port)) => match port.parse() {
            Ok(port) => (host, Some(port)),
            Err(_) => (authority, None),
        },
        None => (authority, None),
    }
}

/// The Service port a mesh request is addressed to: the port of its `Host`; without one, 80 (the
/// HTTP default) when the Service has it, else the Service's first port.
fn request_port(req: &Request, service: &Service) -> i32 {
    if let (_, Some(port)) = split_authority(&req.authority) {
        return port;
    }
    match service.ports.first() {
        Some(first) if !service.ports.iter().any(|p| p.port == 80) => first.port,
        _ => 80,
    }
}

/// The `Host` of a mirrored copy: Envoy suffixes the host (before any port) with `-shadow`.
fn shadow_host(host: &str) -> String {
    match host.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{name}-shadow:{port}")
        }
        _ => format!("{host}-shadow"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_shadow_host_keeps_its_port() {
        assert_eq!(super::shadow_host("my-app.shop.svc.cluster.local"), "my-app.shop.svc.cluster.local-shadow");
        assert_eq!(super::shadow_host("my-app:8080"), "my-app-shadow:8080");
    }
}
