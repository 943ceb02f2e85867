//! One request through the data plane: kube-proxy or the mesh picks pods, the simulated apps
//! answer, the metrics record it. Pure apart from the metrics: randomness comes from the caller,
//! and latency is reported, not slept.

use std::time::Duration;

use rand::Rng;

use super::app::{self, AppAnswer};
use super::mesh::{self, LocalReply};
use super::metrics::{Metrics, Reporter};
use super::proxy::{self, Picked};
use super::request::{Answer, Outcome, Request, Response, ResponseFlag, Served};
use super::snapshot::{ServiceKey, Snapshot};

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
        let Some(entry) = snap.service(service) else { return Outcome::Refused };
        let Some(picked) = proxy::pick(rng, &entry.endpoints, service) else { return Outcome::Refused };
        if !snap.mesh {
            // kube-proxy's choice is final.
            let (answer, served) = self.at_pod(snap, &picked, req, false, rng);
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
        let decision = mesh::route(snap, service, entry, req, rng);
        let mirrored_to = decision.mirrors.iter().map(|m| self.at_pod(snap, m, req, true, rng).1).collect();
        let answer = match decision.primary {
            Ok(picked) => {
                let (answer, served) = self.at_pod(snap, &picked, req, false, rng);
                let workload = &snap.pod(picked.pod).workload.mesh;
                self.metrics.record_mesh(
                    Reporter::Source,
                    &picked.service,
                    Some(workload),
                    answer.status,
                    ResponseFlag::None,
                    answer.latency,
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
                );
                let body = if flag == ResponseFlag::NoHealthyUpstream { "no healthy upstream" } else { "" };
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

    /// The pod answers; its metrics (and, in the mesh, its sidecar's) record the request.
    fn at_pod(
        &self,
        snap: &Snapshot,
        picked: &Picked,
        req: &Request,
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
            );
        }
        self.metrics.record_app(&picked.service, w, &answer, mirrored, snap.mesh);
        let served =
            Served { namespace: w.mesh.namespace.clone(), pod: w.pod.clone(), version: w.mesh.version.clone() };
        (answer, served)
    }
}
