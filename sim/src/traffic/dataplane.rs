//! One request through the data plane: kube-proxy or the mesh picks pods, the simulated apps
//! answer, the metrics record it. Pure apart from the metrics: randomness comes from the caller,
//! and latency is reported, not slept.

use std::time::Duration;

use rand::Rng;

use super::app::{self, AppAnswer};
use super::lag::{ProxyView, Views};
use super::mesh::{self, LocalReply};
use super::metrics::{Metrics, Reporter};
use super::proxy::{self, Picked};
use super::request::{Answer, Outcome, Request, Response, ResponseFlag, Served};
use super::snapshot::{ServiceKey, Snapshot};
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
    /// otherwise the mesh (when on) routes the request.
    pub fn handle(&self, snap: &Snapshot, service: &ServiceKey, req: &Request, rng: &mut impl Rng) -> Outcome {
        self.handle_in(Views::same(snap), service, req, rng)
    }

    /// Like [`Dataplane::handle`], through a proxy that sees the cluster as `view` says: routes
    /// from its route view, Services, subsets and endpoints from its cluster view, and the pods
    /// that still run from the current snapshot.
    pub fn handle_via(&self, view: &ProxyView, service: &ServiceKey, req: &Request, rng: &mut impl Rng) -> Outcome {
        self.handle_in(view.views(), service, req, rng)
    }

    fn handle_in(&self, views: Views, service: &ServiceKey, req: &Request, rng: &mut impl Rng) -> Outcome {
        let Some(entry) = views.clusters.service(service) else { return Outcome::Refused };
        let Some(picked) = proxy::pick(rng, &entry.endpoints, service) else { return Outcome::Refused };
        let snap = views.current;
        if !snap.mesh {
            // kube-proxy's choice is final; a pod its endpoints still list but that is gone
            // refuses the connection.
            let Some(pod) = views.running(picked.pod) else { return Outcome::Refused };
            let picked = Picked { pod, ..picked };
            let (answer, served) = self.at_pod(snap, &picked, req, "", false, rng);
            let response = Response { status: answer.status, headers: Vec::new(), body: answer.body };
            let answer = Answer {
                response,
                flag: ResponseFlag::None,
                served: Some(served),
                latency: answer.latency,
                mirrored_to: Vec::new(),
            };
            return Outcome::Answered(answer);
        }
        // The mesh routes the request again by its own rules.
        let vs = views.routes.service(service).and_then(|e| e.virtual_service.as_deref());
        let decision = mesh::route_in(views, service, vs, req, rng);
        let forwarded = decision.forwarded(req);
        let host = if req.authority.is_empty() { service.fqdn() } else { req.authority.clone() };
        let shadow = shadow_host(&host);
        let mirrored_to =
            decision.mirrors.iter().map(|m| self.at_pod(snap, m, &forwarded, &shadow, true, rng).1).collect();
        let answer = match decision.primary {
            Ok(picked) => {
                let (answer, served) = self.at_pod(snap, &picked, &forwarded, &host, false, rng);
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
                let mut response = Response { status: answer.status, headers: Vec::new(), body: answer.body };
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
                    target.as_ref().unwrap_or(service),
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
    /// in the mesh, its sidecar's, with the Telemetry tag overrides that select it) record it.
    fn at_pod(
        &self,
        snap: &Snapshot,
        picked: &Picked,
        req: &Request,
        host: &str,
        mirrored: bool,
        rng: &mut impl Rng,
    ) -> (AppAnswer, Served) {
        let pod = snap.pod(picked.pod);
        let answer = app::answer(pod, req, mirrored, rng);
        let w = &pod.workload;
        if snap.mesh {
            self.metrics.record_mesh(
                Reporter::Destination,
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
