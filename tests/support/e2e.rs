//! The end-to-end bench for the controller: the embedded cluster with its workload simulator,
//! the data plane following it, background traffic, the embedded metric source, and the
//! controller — all in one process on one sped-up clock.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use forklane_core::api::{Experiment, Phase};
use forklane_core::fixtures::ExperimentBuilder;
use forklane_sim::sandbox::Sandbox;
use forklane_sim::traffic::ServiceKey;
use kube::api::Api;
use serde_json::Value;

pub const NS: &str = "default";

/// Simulated seconds per real second: a 1-minute analysis interval takes 0.6 s.
pub const SPEED: f64 = 100.0;

/// The sandbox with the test's conveniences.
pub struct Env(Sandbox);

impl Deref for Env {
    type Target = Sandbox;
    fn deref(&self) -> &Sandbox {
        &self.0
    }
}

impl DerefMut for Env {
    fn deref_mut(&mut self) -> &mut Sandbox {
        &mut self.0
    }
}

impl Env {
    pub async fn start(istio: bool, audit: bool) -> Env {
        Self::start_with_speed(istio, audit, SPEED).await
    }

    pub async fn start_with_speed(istio: bool, audit: bool, speed: f64) -> Env {
        forklane::cli::run::init_logging(false);
        Env(Sandbox::start(istio, speed, audit).await.expect("sandbox starts"))
    }

    /// Installs the Gateway API's CRDs (standard channel): the data plane's mesh then routes by
    /// HTTPRoutes.
    pub async fn install_gateway_api(&self) {
        forklane_sim::sandbox::install_gateway_api(&self.client, false).await.expect("the Gateway API installs");
    }

    /// Steady background traffic to my-app.
    pub fn start_traffic(&mut self, rps: f64, users: usize) {
        self.0.start_traffic(ServiceKey::new(NS, "my-app"), rps, users);
    }

    pub async fn apply(&self, yaml: &str) {
        forklane_sim::sandbox::apply_yaml(&self.client, yaml, NS).await.unwrap();
    }

    /// Applies an experiment on port 80 of its Service (the port `service` declares).
    pub async fn apply_experiment(&self, experiment: ExperimentBuilder) {
        self.apply(&experiment.port(80).yaml()).await;
    }

    pub fn experiments(&self) -> Api<Experiment> {
        Api::namespaced(self.client.clone(), NS)
    }

    /// Waits (real time) until the experiment satisfies `done`; panics with its status otherwise.
    pub async fn wait_for(&self, name: &str, timeout: Duration, done: impl Fn(&Experiment) -> bool) -> Experiment {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let exp = self.experiments().get(name).await;
            if let Ok(exp) = &exp
                && done(exp)
            {
                return exp.clone();
            }
            if tokio::time::Instant::now() > deadline {
                panic!("timed out waiting for {name}: {:?}", exp.map(|e| e.status));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (simulated) until the slowest proxy of `lag` has seen the cluster as it is now: traffic
    /// started after this meets ready pods everywhere, as a Service comes into use.
    pub async fn until_proxies_catch_up(&self, lag: &forklane_sim::traffic::Lag) {
        tokio::time::sleep(self.clock.real_duration(lag.largest() + Duration::from_secs(1))).await;
    }

    /// Waits until the experiment is gone (its finalizer done).
    /// Waits until RolloutPolicy `name`'s admission objects are in place: its `Admission`
    /// condition True for its current generation.
    pub async fn wait_policy_admitted(&self, name: &str, timeout: Duration) {
        let policies: Api<forklane_core::api::RolloutPolicy> = Api::all(self.client.clone());
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let p = policies.get(name).await.unwrap();
            let status = p.status.unwrap_or_default();
            let current = status.observed_generation == p.metadata.generation;
            if current && status.conditions.iter().any(|c| c.type_ == "Admission" && c.status == "True") {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "policy {name} not admitted: {:?}", status.conditions);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn wait_gone(&self, name: &str, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.experiments().get_opt(name).await.unwrap().is_some() {
            assert!(tokio::time::Instant::now() < deadline, "{name} was never deleted");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn wait_for_phase(&self, name: &str, timeout: Duration, phases: &[Phase]) -> Experiment {
        self.wait_for(name, timeout, |e| e.status.as_ref().and_then(|s| s.phase).is_some_and(|p| phases.contains(&p)))
            .await
    }

    /// Ready replicas of a Deployment.
    pub async fn ready(&self, deployment: &str) -> i32 {
        let api: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(self.client.clone(), NS);
        api.get(deployment).await.ok().and_then(|d| d.status).and_then(|s| s.ready_replicas).unwrap_or(0)
    }

    /// Waits until exactly `replicas` pods of the Deployment are ready (as its status reports).
    pub async fn wait_ready(&self, deployment: &str, replicas: i32) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.ready(deployment).await != replicas {
            assert!(tokio::time::Instant::now() < deadline, "{deployment} never had {replicas} ready pods");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn shutdown(self) {
        self.0.shutdown().await;
    }
}

/// The experiment's phase, if it has one yet.
pub fn phase(exp: &Experiment) -> Option<Phase> {
    exp.status.as_ref().and_then(|s| s.phase)
}

/// The experiment's current step, if it has one yet.
pub fn step(exp: &Experiment) -> Option<i32> {
    exp.status.as_ref().and_then(|s| s.current_step)
}

/// Two Deployments of my-app (`v1`, `v2`, `replicas` each, with these pod annotations), ready,
/// behind one Service.
pub async fn two_versions(env: &Env, replicas: i32, v1: &[(&str, &str)], v2: &[(&str, &str)]) {
    env.apply(&service("{app: my-app}")).await;
    env.apply(&app("v1", replicas, v1)).await;
    env.apply(&app("v2", replicas, v2)).await;
    env.wait_ready("my-app-v1", replicas).await;
    env.wait_ready("my-app-v2", replicas).await;
}

/// v1 and v2 (two pods each) where v2 truly converts better (30% against 20%), users' traffic
/// and the controller running, and the A/B test `ab` splitting them 50/50 with `analysis`.
pub async fn start_ab_test_with_a_true_winner(env: &mut Env, analysis: impl Into<forklane_core::api::Analysis>) {
    two_versions(
        env,
        2,
        &[("sim.forklane.io/conversion-rate", "0.20")],
        &[("sim.forklane.io/conversion-rate", "0.30")],
    )
    .await;
    env.start_traffic(1500.0, 300);
    env.start_controller();
    env.apply_experiment(ExperimentBuilder::ab_test("ab").split([("v1", 50), ("v2", 50)]).analysis(analysis)).await;
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
                    if change.kind == forklane_sim::cluster::store::ChangeKind::Deleted {
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
        self.ask(headers).0
    }

    /// One request to my-app through the data plane: the version that answered (if it answered
    /// without error) and the answer's `Set-Cookie` values.
    pub fn ask(&self, headers: &[(&str, &str)]) -> (Option<String>, Vec<String>) {
        use forklane_sim::traffic::{ClusterView, Outcome, Request};
        let mut req = Request::get("/");
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let snapshot = self.net().feed.view().snapshot();
        let mut rng = rand::rng();
        match self.net().dataplane.handle(&snapshot, &ServiceKey::new(NS, "my-app"), &req, &mut rng) {
            Outcome::Answered(a) if a.response.status < 500 => (
                a.response.version().map(str::to_string),
                a.response.header_values("set-cookie").map(str::to_string).collect(),
            ),
            _ => (None, Vec::new()),
        }
    }

    /// The mesh never answered 503 for a missing route (NR) or subset (NC), a subset without pods
    /// (UH) or pods that are gone (UF).
    pub fn assert_no_routing_503(&self) {
        let replies = self.net().dataplane.metrics.recorded().local_replies;
        let bad: u64 = ["NR", "NC", "UH", "UF"].iter().map(|f| replies.get(f).copied().unwrap_or(0)).sum();
        assert_eq!(bad, 0, "503s from routing: {replies:?}");
    }
}

/// v2's successive weights in the VirtualServices written for `experiment`.
pub fn v2_weights(routes: &Log, experiment: &str) -> Vec<i64> {
    let mut out = Vec::new();
    for vs in routes
        .objects()
        .into_iter()
        .filter(|o| o.get("deleted").is_none() && o["metadata"]["ownerReferences"][0]["name"] == experiment)
    {
        let w = split(&vs).get("v2").copied().unwrap_or(0);
        if out.last() != Some(&w) {
            out.push(w);
        }
    }
    out
}

/// Weights of the catch-all route's destinations, by subset.
pub fn split(vs: &Value) -> std::collections::BTreeMap<String, i64> {
    let routes = vs["spec"]["http"].as_array().cloned().unwrap_or_default();
    let last = routes.last().cloned().unwrap_or_default();
    last["route"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            (d["destination"]["subset"].as_str().unwrap_or_default().to_string(), d["weight"].as_i64().unwrap_or(100))
        })
        .collect()
}

/// Every route of every VirtualService written has weights summing to 100.
pub fn assert_weights_sum_to_100(log: &Log) {
    for vs in log.objects().into_iter().filter(|o| o.get("deleted").is_none()) {
        for route in vs["spec"]["http"].as_array().into_iter().flatten() {
            let sum: i64 =
                route["route"].as_array().into_iter().flatten().map(|d| d["weight"].as_i64().unwrap_or(100)).sum();
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
