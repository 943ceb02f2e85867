//! The simulated application, answering like the article's image
//! (`containersol/k8s-deployment-strategies`): `Host: <pod name>, Version: <VERSION>` on every
//! path, `/live` and `/ready` for the probes; errors, latency and conversions per its annotations.

use std::time::Duration;

use rand::Rng;

use super::request::Request;
use super::snapshot::PodEntry;

/// What a pod did with one request.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct AppAnswer {
    pub status: u16,
    pub body: String,
    pub latency: Duration,
    pub visit: Visit,
    /// Response headers the request asked for (see [`ECHO_SET_HEADER`]); lowercase names.
    pub headers: Vec<(String, String)>,
}

/// Like the Gateway API conformance echo server, a pod answers with the response headers a
/// request lists in this header: `Name:value,Other:value`.
pub(crate) const ECHO_SET_HEADER: &str = "x-echo-set-header";

fn echoed_headers(req: &Request) -> Vec<(String, String)> {
    let Some(list) = req.header_value(ECHO_SET_HEADER) else { return Vec::new() };
    list.split(',')
        .filter_map(|h| h.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .filter(|(name, _)| !name.is_empty())
        .collect()
}

/// The business outcome of a request, for the conversion metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Visit {
    /// Not a page view: a probe, an error, or a mirrored copy nobody saw.
    NotCounted,
    /// A page view that did not convert.
    Viewed,
    /// A page view that became an order.
    Ordered,
}

/// Answers one request at `pod`. A mirrored copy behaves the same (errors, latency) but is not a
/// visit: its answer reaches no user, so it can convert no one.
pub(crate) fn answer(pod: &PodEntry, req: &Request, mirrored: bool, rng: &mut impl Rng) -> AppAnswer {
    if matches!(req.path_only(), "/live" | "/ready") {
        return AppAnswer {
            status: 200,
            body: "OK\n".into(),
            latency: Duration::ZERO,
            visit: Visit::NotCounted,
            headers: Vec::new(),
        };
    }
    let b = &pod.behaviour;
    let latency = b.latency.sample(rng);
    let line = format!("Host: {}, Version: {}", pod.pod.name, pod.pod.version_env.as_deref().unwrap_or_default());
    if rng.random_bool(b.error_rate) {
        // The pod and version stay in the body so that clients can attribute the error.
        return AppAnswer {
            status: 500,
            body: format!("{line}, Error: simulated\n"),
            latency,
            visit: Visit::NotCounted,
            headers: echoed_headers(req),
        };
    }
    let visit = match (mirrored, rng.random_bool(b.conversion_rate)) {
        (true, _) => Visit::NotCounted,
        (false, true) => Visit::Ordered,
        (false, false) => Visit::Viewed,
    };
    AppAnswer { status: 200, body: line + "\n", latency, visit, headers: echoed_headers(req) }
}
