//! The end-to-end bench for the controller: the embedded cluster with its workload simulator,
//! the data plane following it, background traffic, the embedded metric source, and the
//! controller — all in one process on one sped-up clock.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use forklane::analysis::EmbeddedSource;
use forklane::api::{Experiment, Phase};
use forklane::clock::Clock;
use forklane::cluster::{Cluster, ClusterConfig, ControllerFn};
use forklane::controller::analyst::SourceAnalyst;
use forklane::controller::telemetry::Metrics as ControllerMetrics;
use forklane::controller::{Analyst, Context, Scope, run_controller};
use forklane::traffic::counters::CounterHistory;
use forklane::traffic::feed::{ClusterDataplane, attach};
use forklane::traffic::loadgen::{Limit, drive_in_process};
use forklane::traffic::{Dataplane, LoadSpec, Metrics, Population, ServiceKey};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::pinned_kind;
use kube::core::GroupVersionKind;
use serde_json::Value;
use tokio::task::JoinHandle;

pub const NS: &str = "default";

pub struct Env {
    pub cluster: Cluster,
    pub client: kube::Client,
    pub clock: Clock,
    pub net: ClusterDataplane,
    pub history: CounterHistory,
    pub controller_metrics: Arc<ControllerMetrics>,
    pub analyst: Arc<dyn Analyst>,
    scraper: JoinHandle<()>,
    controller: Option<(tokio::sync::oneshot::Sender<()>, JoinHandle<()>, Arc<Context>)>,
    traffic: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

/// Simulated seconds per real second: a 1-minute analysis interval takes 0.6 s.
pub const SPEED: f64 = 100.0;

impl Env {
    /// The cluster with workloads and the data plane; `istio` installs Istio's CRDs (the mesh).
    pub async fn start(istio: bool, audit: bool) -> Env {
        forklane::cli::run::init_logging(false);
        let clock = Clock::scaled(SPEED);
        let sim_clock = forklane::cluster::workloads::Clock::scaled(SPEED);
        let workloads: ControllerFn = Arc::new(move |store| Box::pin(forklane::cluster::workloads::run(store, sim_clock)));
        let config = ClusterConfig { controllers: vec![workloads], audit, ..Default::default() };
        let cluster = Cluster::start(config).await.expect("cluster starts");
        let client = cluster.client();
        let crds = std::fs::read_to_string(root("crds/forklane.crds.yaml")).unwrap();
        apply_yaml(&client, &crds).await;
        if istio {
            for kind in ["virtualservice", "destinationrule"] {
                apply_yaml(&client, &std::fs::read_to_string(root(&format!("src/istio/crds/{kind}.crd.yaml"))).unwrap()).await;
            }
        }
        let metrics = Metrics::new();
        let net = attach(cluster.store().clone(), Dataplane::new(metrics.clone()));
        let history = CounterHistory::new(metrics, clock);
        let scraper = history.spawn_scraper(Duration::from_millis(50));
        let analyst: Arc<dyn Analyst> = Arc::new(SourceAnalyst::fixed(Arc::new(EmbeddedSource::new(history.clone()))));
        Env { cluster, client, clock, net, history, controller_metrics: Arc::new(ControllerMetrics::default()), analyst, scraper, controller: None, traffic: None }
    }

    pub fn istio(&self) -> bool {
        forklane::traffic::feed::snapshot(self.cluster.store()).mesh
    }

    pub fn start_controller(&mut self) {
        let ctx = Arc::new(Context::new(self.client.clone(), self.clock, self.analyst.clone(), self.controller_metrics.clone()));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let istio = self.istio();
        let task = tokio::spawn(run_controller(ctx.clone(), Scope::default(), istio, async move {
            let _ = rx.await;
        }));
        self.controller = Some((tx, task, ctx));
    }

    /// Objects the controller has written so far.
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

    /// Steady background traffic to my-app through the data plane (the mesh when installed).
    pub fn start_traffic(&mut self, rps: f64, users: usize) {
        let stop = Arc::new(AtomicBool::new(false));
        let (dp, view, flag) = (self.net.dataplane.clone(), self.net.feed.view(), stop.clone());
        let task = tokio::spawn(async move {
            let mut population = Population::new(&LoadSpec { users, ..Default::default() });
            let key = ServiceKey::new(NS, "my-app");
            while !flag.load(Ordering::Relaxed) {
                drive_in_process(&dp, &view, &key, &mut population, rps, Limit::Duration(Duration::from_millis(200))).await;
            }
        });
        self.traffic = Some((stop, task));
    }

    pub async fn stop_traffic(&mut self) {
        if let Some((stop, task)) = self.traffic.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = task.await;
        }
    }

    pub async fn apply(&self, yaml: &str) {
        apply_yaml(&self.client, yaml).await;
    }

    pub fn experiments(&self) -> Api<Experiment> {
        Api::namespaced(self.client.clone(), NS)
    }

    /// Waits (real time) until the experiment satisfies `done`; panics with its status otherwise.
    pub async fn wait_for(&self, name: &str, timeout: Duration, done: impl Fn(&Experiment) -> bool) -> Experiment {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Ok(exp) = self.experiments().get(name).await {
                if done(&exp) {
                    return exp;
                }
                if tokio::time::Instant::now() > deadline {
                    panic!("timed out; status: {}", serde_json::to_string_pretty(&exp.status).unwrap());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn wait_for_phase(&self, name: &str, timeout: Duration, phases: &[Phase]) -> Experiment {
        self.wait_for(name, timeout, |e| e.status.as_ref().and_then(|s| s.phase).is_some_and(|p| phases.contains(&p))).await
    }

    /// Ready replicas of a Deployment.
    pub async fn ready(&self, deployment: &str) -> i32 {
        let api: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(self.client.clone(), NS);
        api.get(deployment).await.ok().and_then(|d| d.status).and_then(|s| s.ready_replicas).unwrap_or(0)
    }

    pub async fn wait_ready(&self, deployment: &str, replicas: i32) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.ready(deployment).await < replicas {
            assert!(tokio::time::Instant::now() < deadline, "{deployment} never had {replicas} ready pods");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn shutdown(mut self) {
        self.stop_traffic().await;
        self.stop_controller().await;
        self.scraper.abort();
        self.cluster.shutdown().await;
    }
}

pub fn root(path: &str) -> String {
    format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))
}

/// Server-side applies every document, as `kubectl apply --server-side` does.
pub async fn apply_yaml(client: &kube::Client, yaml: &str) {
    for doc in serde_yaml_ng::Deserializer::from_str(yaml) {
        let value: Value = serde::Deserialize::deserialize(doc).unwrap();
        if value.is_null() {
            continue;
        }
        let obj: DynamicObject = serde_json::from_value(value.clone()).unwrap();
        let types = obj.types.clone().expect("apiVersion and kind");
        let gvk = GroupVersionKind::try_from(&types).unwrap();
        let (resource, caps) = pinned_kind(client, &gvk).await.unwrap_or_else(|e| panic!("{gvk:?}: {e}"));
        let name = obj.metadata.name.clone().unwrap();
        let api: Api<DynamicObject> = match caps.scope {
            kube::discovery::Scope::Namespaced => Api::namespaced_with(client.clone(), obj.metadata.namespace.as_deref().unwrap_or(NS), &resource),
            kube::discovery::Scope::Cluster => Api::all_with(client.clone(), &resource),
        };
        api.patch(&name, &PatchParams::apply("e2e-test").force(), &Patch::Apply(value)).await.unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

/// The article's app as one Deployment per version, with simulated behaviour.
pub fn app(version: &str, replicas: i32, annotations: &[(&str, &str)]) -> String {
    let notes: String = annotations.iter().map(|(k, v)| format!("        {k}: \"{v}\"\n")).collect();
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: my-app-{version}
  namespace: default
  labels: {{app: my-app}}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: my-app, version: {version}}}
  template:
    metadata:
      labels: {{app: my-app, version: {version}}}
      annotations:
        prometheus.io/scrape: "true"
{notes}    spec:
      containers:
        - name: my-app
          image: containersol/k8s-deployment-strategies
          ports:
            - {{name: http, containerPort: 8080}}
            - {{name: probe, containerPort: 8086}}
          env:
            - {{name: VERSION, value: {version}}}
          readinessProbe:
            httpGet: {{path: /ready, port: probe}}
            periodSeconds: 5
"#
    )
}

pub fn service(selector: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: my-app\n  namespace: default\n  labels: {{app: my-app}}\nspec:\n  ports:\n    - {{name: http, port: 80, targetPort: http}}\n  selector: {selector}\n"
    )
}

/// Arms v1 (control) and v2 for my-app's two Deployments.
pub const ARMS: &str = "  arms:
    - {name: v1, control: true, selector: {app: my-app, version: v1}, deployment: my-app-v1}
    - {name: v2, selector: {app: my-app, version: v2}, deployment: my-app-v2}
";

pub fn experiment(name: &str, mesh: &str, body: &str) -> String {
    format!("apiVersion: forklane.io/v1alpha1\nkind: Experiment\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  service: {{name: my-app, port: 80}}\n  mesh: {mesh}\n{ARMS}{body}")
}

/// Every object of one resource written to the store, in order (a test-side audit of writes).
#[derive(Clone, Default)]
pub struct Log(Arc<std::sync::Mutex<Vec<Value>>>);

impl Log {
    pub fn objects(&self) -> Vec<Value> {
        self.0.lock().unwrap().clone()
    }
}

impl Env {
    pub fn record(&self, resource: &'static str) -> Log {
        let log = Log::default();
        let (sink, mut changes) = (log.clone(), self.cluster.store().changes());
        tokio::spawn(async move {
            while let Ok(change) = changes.recv().await {
                if change.resource.resource == resource {
                    let mut object = (*change.object).clone();
                    if change.kind == forklane::cluster::store::ChangeKind::Deleted {
                        object["deleted"] = Value::Bool(true); // marks the deletion in the log
                    }
                    sink.0.lock().unwrap().push(object);
                }
            }
        });
        log
    }

    /// One request to my-app through the data plane; the version that answered, if any.
    pub fn request(&self, headers: &[(&str, &str)]) -> Option<String> {
        use forklane::traffic::{ClusterView, Outcome, Request};
        let mut req = Request::get("/");
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let snapshot = self.net.feed.view().snapshot();
        let mut rng = rand::rng();
        match self.net.dataplane.handle(&snapshot, &ServiceKey::new(NS, "my-app"), &req, &mut rng) {
            Outcome::Answered(a) if a.response.status < 500 => a.response.version().map(str::to_string),
            _ => None,
        }
    }

    /// The mesh never answered 503 for a missing subset (NR) or a subset without pods (UH).
    pub fn assert_no_routing_503(&self) {
        let replies = self.net.dataplane.metrics.recorded().local_replies;
        let bad: u64 = ["NR", "UH"].iter().map(|f| replies.get(f).copied().unwrap_or(0)).sum();
        assert_eq!(bad, 0, "503s from routing: {replies:?}");
    }
}

/// Weights of the catch-all route's destinations, by subset.
pub fn split(vs: &Value) -> std::collections::BTreeMap<String, i64> {
    let routes = vs["spec"]["http"].as_array().cloned().unwrap_or_default();
    let last = routes.last().cloned().unwrap_or_default();
    last["route"].as_array().into_iter().flatten().map(|d| (d["destination"]["subset"].as_str().unwrap_or_default().to_string(), d["weight"].as_i64().unwrap_or(100))).collect()
}

/// Every route of every VirtualService written has weights summing to 100.
pub fn assert_weights_sum_to_100(log: &Log) {
    for vs in log.objects().into_iter().filter(|o| o.get("deleted").is_none()) {
        for route in vs["spec"]["http"].as_array().into_iter().flatten() {
            let sum: i64 = route["route"].as_array().into_iter().flatten().map(|d| d["weight"].as_i64().unwrap_or(100)).sum();
            assert_eq!(sum, 100, "route {} of {}", route["name"], vs["metadata"]["name"]);
        }
    }
}

/// The distinct successive weights of `arm` in the split, as they were written.
pub fn weight_history(log: &Log, arm: &str) -> Vec<i64> {
    let mut out: Vec<i64> = Vec::new();
    for vs in log.objects().into_iter().filter(|o| o.get("deleted").is_none()) {
        let w = split(&vs).get(arm).copied().unwrap_or(0);
        if out.last() != Some(&w) {
            out.push(w);
        }
    }
    out
}
