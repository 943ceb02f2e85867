//! Everything in one process: the embedded cluster with its workload simulator, the data plane
//! following it, background traffic, the embedded metric source and the controller, on one
//! (possibly sped-up) clock. `forklane demo` and the end-to-end tests run on it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::pinned_kind;
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::cluster::{Cluster, ClusterConfig};
use crate::metrics::EmbeddedSource;
use crate::traffic::counters::CounterHistory;
use crate::traffic::feed::ClusterDataplane;
use crate::traffic::loadgen::{Limit, drive_in_process_tallied};
use crate::traffic::{Lag, LoadSpec, Population, ServiceKey, Tally};
use forklane_core::clock::Clock;
use forklane_core::controller::analyst::SourceAnalyst;
use forklane_core::controller::telemetry::Metrics as ControllerMetrics;
use forklane_core::controller::{Analyst, Context, Scope, run_controller};

/// Forklane's CRDs and Istio's, as shipped in the repository and compiled in.
pub(crate) const FORKLANE_CRDS: &str = include_str!("../../crds/forklane.crds.yaml");
pub const ISTIO_CRDS: [&str; 3] = [
    forklane_core::istio::VIRTUAL_SERVICE_CRD,
    forklane_core::istio::DESTINATION_RULE_CRD,
    forklane_core::istio::TELEMETRY_CRD,
];

/// The Gateway API's standard channel (v1.6.1, see `forklane_core::gateway`), in the order of
/// its `standard-install.yaml`: GatewayClass, Gateway, HTTPRoute, ReferenceGrant, GRPCRoute.
pub const GATEWAY_API_CRDS: [&str; 5] = forklane_core::gateway::STANDARD_CRDS;

/// The Gateway API CRDs to install: the standard channel, or the standard channel with the
/// experimental channel's HTTPRoute in place of the standard one (`experimental`).
pub fn gateway_api_crds(experimental: bool) -> Vec<&'static str> {
    GATEWAY_API_CRDS
        .iter()
        .map(|crd| {
            if experimental && *crd == forklane_core::gateway::HTTPROUTE_CRD {
                forklane_core::gateway::EXPERIMENTAL_HTTPROUTE_CRD
            } else {
                crd
            }
        })
        .collect()
}

/// Installs the Gateway API CRDs (see [`gateway_api_crds`]) by server-side apply, as
/// `kubectl apply --server-side -f` does (the experimental HTTPRoute is too large for a
/// client-side apply's annotation), and waits until each is `Established` and its kinds are
/// served. Idempotent: applying again switches the HTTPRoute's channel.
pub async fn install_gateway_api(client: &kube::Client, experimental: bool) -> Result<(), String> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crds = gateway_api_crds(experimental);
    for crd in &crds {
        apply_yaml(client, crd, "default").await?;
    }
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    for crd in &crds {
        let name = serde_yaml_ng::from_str::<Value>(crd).map_err(|e| e.to_string())?["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        loop {
            let established = api.get(&name).await.map_err(|e| format!("{name}: {e}"))?.status.is_some_and(|s| {
                s.conditions.unwrap_or_default().iter().any(|c| c.type_ == "Established" && c.status == "True")
            });
            if established {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!("{name} was not established within 30s"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

pub struct Sandbox {
    pub cluster: Cluster,
    pub client: kube::Client,
    pub clock: Clock,
    pub history: CounterHistory,
    pub controller_metrics: Arc<ControllerMetrics>,
    pub analyst: Arc<dyn Analyst>,
    scraper: JoinHandle<()>,
    controller: Option<(tokio::sync::oneshot::Sender<()>, JoinHandle<()>, Arc<Context>)>,
    traffic: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
    /// What the background traffic got so far.
    tally: Arc<Mutex<Tally>>,
}

impl Sandbox {
    /// The cluster with workloads and the data plane; `istio` installs Istio's CRDs (the mesh).
    pub async fn start(istio: bool, speed: f64, audit: bool) -> Result<Sandbox, String> {
        let clock = Clock::scaled(speed);
        let config = ClusterConfig { clock, workloads: true, dataplane: true, audit, ..Default::default() };
        let cluster = Cluster::start(config).await.map_err(|e| e.to_string())?;
        let client = cluster.client();
        apply_yaml(&client, FORKLANE_CRDS, "default").await?;
        if istio {
            for crd in ISTIO_CRDS {
                apply_yaml(&client, crd, "default").await?;
            }
        }
        let metrics = cluster.dataplane().expect("the data plane runs").dataplane.metrics.clone();
        let history = CounterHistory::new(metrics, clock);
        let scraper = history.spawn_scraper(Duration::from_millis(50));
        let analyst: Arc<dyn Analyst> = Arc::new(SourceAnalyst::fixed(Arc::new(EmbeddedSource::new(history.clone()))));
        Ok(Sandbox {
            cluster,
            client,
            clock,
            history,
            controller_metrics: Arc::new(ControllerMetrics::default()),
            analyst,
            scraper,
            controller: None,
            traffic: None,
            tally: Arc::default(),
        })
    }

    /// The data plane following the cluster.
    pub fn net(&self) -> &ClusterDataplane {
        self.cluster.dataplane().expect("the sandbox starts the data plane")
    }

    /// Starts the controller with `client` (e.g. one with its own User-Agent).
    pub fn start_controller_with(&mut self, client: kube::Client) {
        let ctx = Arc::new(Context::new(client, self.clock, self.analyst.clone(), self.controller_metrics.clone()));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run_controller(ctx.clone(), Scope::default(), async move {
            let _ = rx.await;
        }));
        self.controller = Some((tx, task, ctx));
    }

    pub fn start_controller(&mut self) {
        self.start_controller_with(self.client.clone());
    }

    /// Objects the running controller has written.
    pub fn controller_writes(&self) -> u64 {
        self.controller.as_ref().map(|(_, _, ctx)| ctx.writes.load(Ordering::Relaxed)).unwrap_or(0)
    }

    pub async fn stop_controller(&mut self) {
        if let Some((tx, task, _)) = self.controller.take() {
            let _ = tx.send(());
            task.abort();
            let _ = task.await;
        }
    }

    /// How late each proxy sees the cluster's changes ([`Lag::none`] until set). Takes effect at
    /// once, for the traffic already running too.
    pub fn set_lag(&self, lag: Lag) {
        self.net().feed.set_lag(lag);
    }

    /// Has the simulated istiod report, in each VirtualService's and DestinationRule's status,
    /// whether every proxy applied its current generation (Istio's `PILOT_ENABLE_STATUS`).
    pub fn report_distribution(&self, on: bool) {
        self.net().report_distribution(on);
    }

    /// What the background traffic got so far, by status and 503 flag.
    pub fn traffic_tally(&self) -> Tally {
        self.tally.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Steady traffic to `service` through the data plane (the mesh when installed).
    pub fn start_traffic(&mut self, service: ServiceKey, rps: f64, users: usize) {
        self.start_traffic_with(service, rps, LoadSpec { users, ..Default::default() });
    }

    /// Steady background traffic from the users `spec` describes (returning, mobile, by region).
    pub fn start_traffic_with(&mut self, service: ServiceKey, rps: f64, spec: LoadSpec) {
        let stop = Arc::new(AtomicBool::new(false));
        let (dp, view, flag) = (self.net().dataplane.clone(), self.net().feed.view(), stop.clone());
        let tally = self.tally.clone();
        let task = tokio::spawn(async move {
            let mut population = Population::new(&spec);
            while !flag.load(Ordering::Relaxed) {
                drive_in_process_tallied(
                    &dp,
                    &view,
                    &service,
                    &mut population,
                    rps,
                    Limit::Duration(Duration::from_millis(200)),
                    &tally,
                )
                .await;
            }
        });
        self.traffic = Some((stop, task));
    }

    pub(crate) async fn stop_traffic(&mut self) {
        if let Some((stop, task)) = self.traffic.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = task.await;
        }
    }

    pub async fn shutdown(mut self) {
        self.stop_traffic().await;
        self.stop_controller().await;
        self.scraper.abort();
        self.cluster.shutdown().await;
    }
}

/// Server-side applies every document (namespaced ones default to `namespace`), as
/// `kubectl apply --server-side` does.
pub async fn apply_yaml(client: &kube::Client, yaml: &str, namespace: &str) -> Result<(), String> {
    for doc in serde_yaml_ng::Deserializer::from_str(yaml) {
        let value: Value = serde::Deserialize::deserialize(doc).map_err(|e| e.to_string())?;
        if value.is_null() {
            continue;
        }
        let obj: DynamicObject = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
        let types = obj.types.clone().ok_or("a document without apiVersion and kind")?;
        let gvk = GroupVersionKind::try_from(&types).map_err(|e| e.to_string())?;
        let (resource, caps) =
            pinned_kind(client, &gvk).await.map_err(|e| format!("{}/{}: {e}", types.api_version, types.kind))?;
        let name = obj.metadata.name.clone().ok_or("a document without metadata.name")?;
        let api: Api<DynamicObject> = match caps.scope {
            kube::discovery::Scope::Namespaced => {
                Api::namespaced_with(client.clone(), obj.metadata.namespace.as_deref().unwrap_or(namespace), &resource)
            }
            kube::discovery::Scope::Cluster => Api::all_with(client.clone(), &resource),
        };
        api.patch(&name, &PatchParams::apply("forklane-sandbox").force(), &Patch::Apply(value))
            .await
            .map_err(|e| format!("{} {name}: {e}", types.kind))?;
    }
    Ok(())
}
