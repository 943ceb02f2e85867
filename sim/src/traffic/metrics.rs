//! The metrics Prometheus scrapes, with the names and labels real deployments have:
//! - the mesh (only when it is on): `istio_requests_total` and
//!   `istio_request_duration_milliseconds` (Istio's default buckets), reported by the destination
//!   sidecar for every request a pod received (mirrored copies included, as Istio counts them) and
//!   by the source (the ingress gateway all simulated clients come through) for every request a
//!   client sent, including the proxy's own NR/NC/UH/UF replies; what a Gateway API HTTPRoute
//!   routed is reported by the waypoint (`reporter="waypoint"`) instead of the destination, under
//!   the backend Service it reached; plus `forklane_sim_conversions_total`;
//! - the apps (always): `http_requests_total`, `http_request_duration_seconds`, `visits_total`
//!   and `orders_total`, labelled with `namespace`, `pod`, `version` and the pod's labels, as a
//!   `kubernetes_sd` scrape with a `labelmap` of pod labels attaches them, and `forklane_cohort`,
//!   the experiment cohort the request's `x-forklane-cohort` header names (`none` without it), as
//!   an app instrumented to propagate it reports;
//! - Telemetry `tagOverrides` (see `telemetry.rs`) change the labels of the destination-reported
//!   Istio metrics of the pods they select.
//!
//! A plain tally ([`Recorded`]) is kept beside them: the simulation's truth, for tests and demos.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabel, EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::app::{AppAnswer, Visit};
use super::request::ResponseFlag;
use super::snapshot::{MeshWorkload, ServiceKey, Workload};
use super::telemetry::Overrides;

/// Istio's default buckets for `istio_request_duration_milliseconds`.
pub(crate) const ISTIO_DURATION_BUCKETS_MS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0, 60000.0, 300000.0,
    600000.0, 1800000.0, 3600000.0,
];
/// The Prometheus client libraries' default buckets, for `http_request_duration_seconds`.
pub(crate) const HTTP_DURATION_BUCKETS_S: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The simulated clients enter the mesh through the ingress gateway.
const SOURCE_WORKLOAD: &str = "istio-ingressgateway";
pub(crate) const SOURCE_NAMESPACE: &str = "istio-system";

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub(crate) enum Reporter {
    Source,
    Destination,
    /// The ambient mesh's waypoint, which reports the L7 metrics of requests an HTTPRoute routed.
    Waypoint,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct IstioLabels {
    reporter: Reporter,
    service: ServiceKey,
    /// `None` for the proxy's own replies: no pod was reached. Pods of one Deployment share
    /// these labels, hence one series (duplicate series would make Prometheus drop samples).
    destination: Option<Arc<MeshWorkload>>,
    code: u16,
    flag: ResponseFlag,
}

impl IstioLabels {
    /// Istio's standard labels, in exposition order.
    fn pairs(&self) -> [(&'static str, String); 16] {
        let unknown = "unknown";
        let d = self.destination.as_deref();
        let (workload, workload_ns, app, version) = match d {
            Some(w) => (w.workload.as_str(), w.namespace.as_str(), w.app.as_str(), w.version.as_str()),
            None => (unknown, unknown, unknown, unknown),
        };
        let source = self.reporter == Reporter::Source;
        [
            (
                "reporter",
                match self.reporter {
                    Reporter::Source => "source",
                    Reporter::Destination => "destination",
                    Reporter::Waypoint => "waypoint",
                }
                .into(),
            ),
            ("source_workload", SOURCE_WORKLOAD.into()),
            ("source_workload_namespace", SOURCE_NAMESPACE.into()),
            ("source_app", SOURCE_WORKLOAD.into()),
            ("destination_service", self.service.fqdn()),
            ("destination_service_name", self.service.name.clone()),
            ("destination_service_namespace", self.service.namespace.clone()),
            ("destination_workload", workload.into()),
            ("destination_workload_namespace", workload_ns.into()),
            ("destination_app", app.into()),
            ("destination_version", version.into()),
            ("destination_canonical_service", if d.is_some() { app } else { unknown }.into()),
            ("request_protocol", "http".into()),
            ("response_code", self.code.to_string()),
            ("response_flags", self.flag.as_str().into()),
            ("connection_security_policy", if source { unknown } else { "mutual_tls" }.into()),
        ]
    }
}

/// One series of an Istio metric.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
enum IstioSeries {
    /// The standard labels.
    Standard(IstioLabels),
    /// The standard labels as Telemetry tag overrides changed them: changed ones in place, added
    /// ones after them by name. Only label sets that differ from the standard one land here, so
    /// that a label set has one key (duplicate series would make Prometheus drop samples).
    Custom(Vec<(String, String)>),
}

impl IstioSeries {
    fn new(labels: IstioLabels, overrides: &[(String, Option<String>)]) -> Self {
        if overrides.is_empty() {
            return IstioSeries::Standard(labels);
        }
        let standard: Vec<(String, String)> = labels.pairs().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        let mut custom = standard.clone();
        for (name, value) in overrides {
            let at = custom.iter().position(|(k, _)| k == name);
            match (at, value) {
                (Some(i), Some(v)) => custom[i].1 = v.clone(),
                (None, Some(v)) => custom.push((name.clone(), v.clone())),
                (Some(i), None) => drop(custom.remove(i)),
                (None, None) => {}
            }
        }
        if custom == standard { IstioSeries::Standard(labels) } else { IstioSeries::Custom(custom) }
    }
}

impl EncodeLabelSet for IstioSeries {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        match self {
            IstioSeries::Standard(labels) => labels.pairs().encode(encoder),
            IstioSeries::Custom(labels) => labels.encode(encoder),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct ConversionLabels {
    service: ServiceKey,
    destination: Arc<MeshWorkload>,
}

impl EncodeLabelSet for ConversionLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        [
            ("destination_service_name", self.service.name.as_str()),
            ("destination_service_namespace", &self.service.namespace),
            ("destination_workload", &self.destination.workload),
            ("destination_version", &self.destination.version),
        ]
        .encode(encoder)
    }
}

/// An app's own labels (`namespace`, `pod`, `version`, pod labels), the experiment cohort it was
/// told (`forklane_cohort`), with `code` where it applies.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct AppLabels {
    workload: Arc<Workload>,
    cohort: String,
    code: Option<u16>,
}

impl EncodeLabelSet for AppLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        let w = &self.workload;
        [("namespace", w.mesh.namespace.as_str()), ("pod", &w.pod), ("version", &w.mesh.version)].encode(encoder)?;
        w.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect::<Vec<_>>().encode(encoder)?;
        ("forklane_cohort", self.cohort.as_str()).encode(encoder.encode_label())?;
        if let Some(code) = self.code {
            ("code", code.to_string()).encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

/// What the pods of one version did, as recorded by the simulation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VersionCounts {
    /// Requests the pods answered, mirrored copies included.
    pub requests: u64,
    /// Of which answered 5xx.
    pub errors: u64,
    /// Of which were mirrored copies.
    pub mirrored: u64,
    pub visits: u64,
    pub orders: u64,
}

/// The simulation's own tally.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    /// By `destination_version`.
    pub versions: BTreeMap<String, VersionCounts>,
    /// The proxy's own replies by response flag (`NR`, `NC`, `UH`, `UF`).
    pub local_replies: BTreeMap<&'static str, u64>,
}

struct Inner {
    registry: Registry,
    istio_requests: Family<IstioSeries, Counter>,
    istio_duration: Family<IstioSeries, Histogram>,
    conversions: Family<ConversionLabels, Counter>,
    http_requests: Family<AppLabels, Counter>,
    http_duration: Family<AppLabels, Histogram>,
    visits: Family<AppLabels, Counter>,
    orders: Family<AppLabels, Counter>,
    recorded: Mutex<Recorded>,
}

/// The data plane's metrics; cheap to clone (shared).
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::default();
        let istio_requests = Family::default();
        let istio_duration =
            Family::new_with_constructor((|| Histogram::new(ISTIO_DURATION_BUCKETS_MS)) as fn() -> Histogram);
        let conversions = Family::default();
        let http_requests = Family::default();
        let http_duration =
            Family::new_with_constructor((|| Histogram::new(HTTP_DURATION_BUCKETS_S)) as fn() -> Histogram);
        let (visits, orders) = (Family::default(), Family::default());
        registry.register("istio_requests", "Requests, as Istio's standard metrics count them", istio_requests.clone());
        registry.register(
            "istio_request_duration_milliseconds",
            "Request duration, as Istio measures it",
            istio_duration.clone(),
        );
        registry.register(
            "forklane_sim_conversions",
            "Simulated conversions (orders) per destination version",
            conversions.clone(),
        );
        registry.register("http_requests", "Requests the app answered", http_requests.clone());
        registry.register("http_request_duration_seconds", "Time the app took per request", http_duration.clone());
        registry.register("visits", "Page views (answered requests that a user saw)", visits.clone());
        registry.register("orders", "Page views that became an order", orders.clone());
        let inner = Inner {
            registry,
            istio_requests,
            istio_duration,
            conversions,
            http_requests,
            http_duration,
            visits,
            orders,
            recorded: Mutex::default(),
        };
        Metrics(Arc::new(inner))
    }

    /// A request as a mesh proxy reports it, with the Telemetry tag overrides that apply.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn record_mesh(
        &self,
        reporter: Reporter,
        service: &ServiceKey,
        destination: Option<&Arc<MeshWorkload>>,
        code: u16,
        flag: ResponseFlag,
        latency: Duration,
        overrides: &Overrides,
    ) {
        let labels = IstioLabels { reporter, service: service.clone(), destination: destination.cloned(), code, flag };
        let duration = IstioSeries::new(labels.clone(), &overrides.duration);
        self.0.istio_duration.get_or_create(&duration).observe(latency.as_secs_f64() * 1000.0);
        self.0.istio_requests.get_or_create(&IstioSeries::new(labels, &overrides.requests)).inc();
        if destination.is_none() {
            *self.tally().local_replies.entry(flag.as_str()).or_default() += 1;
        }
    }

    /// A request as the app that answered it reports it, in `cohort` (the experiment's cohort
    /// header, `none` without it).
    pub(crate) fn record_app(
        &self,
        service: &ServiceKey,
        workload: &Arc<Workload>,
        answer: &AppAnswer,
        mirrored: bool,
        mesh: bool,
        cohort: &str,
    ) {
        let (code, visit) = (answer.status, answer.visit);
        let with_code = AppLabels { workload: workload.clone(), cohort: cohort.into(), code: Some(code) };
        let without_code = AppLabels { workload: workload.clone(), cohort: cohort.into(), code: None };
        self.0.http_requests.get_or_create(&with_code).inc();
        self.0.http_duration.get_or_create(&without_code).observe(answer.latency.as_secs_f64());
        if visit != Visit::NotCounted {
            self.0.visits.get_or_create(&without_code).inc();
        }
        if visit == Visit::Ordered {
            self.0.orders.get_or_create(&without_code).inc();
            if mesh {
                self.0
                    .conversions
                    .get_or_create(&ConversionLabels { service: service.clone(), destination: workload.mesh.clone() })
                    .inc();
            }
        }
        let mut tally = self.tally();
        let counts = match tally.versions.get_mut(workload.mesh.version.as_str()) {
            Some(c) => c,
            None => tally.versions.entry(workload.mesh.version.clone()).or_default(),
        };
        counts.requests += 1;
        counts.errors += u64::from(code >= 500);
        counts.mirrored += u64::from(mirrored);
        counts.visits += u64::from(visit != Visit::NotCounted);
        counts.orders += u64::from(visit == Visit::Ordered);
    }

    fn tally(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.0.recorded.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The simulation's tally so far.
    pub fn recorded(&self) -> Recorded {
        self.tally().clone()
    }

    /// The exposition text (OpenMetrics, which Prometheus scrapes natively).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.0.registry).expect("writing to a String cannot fail");
        out
    }

    /// An axum router serving `GET /metrics`.
    pub fn router(&self) -> axum::Router {
        let metrics = self.clone();
        axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let metrics = metrics.clone();
                async move { ([(axum::http::header::CONTENT_TYPE, OPENMETRICS)], metrics.encode()) }
            }),
        )
    }
}

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
