//! The embedded cluster under traffic: API-server response times (sequential kube-rs GETs)
//! idle and while 10,000 simulated requests/s go through the cluster's own data plane, routed
//! by a VirtualService with 10 header rules; then the simulated requests/s that data plane
//! routes when unpaced.
//!
//! `cargo bench --bench cluster_traffic` (harness = false: prints its own figures).

use std::time::{Duration, Instant};

use forklane_core::clock::Clock;
use forklane_sim::cluster::store::WriteOptions;
use forklane_sim::cluster::{Cluster, ClusterConfig, Gvr, Store};
use forklane_sim::traffic::loadgen::{Limit, drive_in_process, run_in_process};
use forklane_sim::traffic::{ClusterView, LoadSpec, Population, ServiceKey};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use serde_json::{Value, json};

const RPS: f64 = 10_000.0;
const LOADED: Duration = Duration::from_secs(10);
const IDLE: Duration = Duration::from_secs(3);
const RULES: usize = 10;

fn create(store: &Store, gvr: Gvr, namespace: Option<&str>, obj: Value) {
    store.create(&gvr, namespace, obj, &WriteOptions::default()).expect("created");
}

fn deployment(version: &str, replicas: u32) -> Value {
    let labels = json!({"app": "my-app", "version": version});
    json!({
        "metadata": {"name": format!("my-app-{version}")},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{
                "name": "my-app", "image": "containersol/k8s-deployment-strategies",
                "ports": [{"name": "http", "containerPort": 8080}],
                "env": [{"name": "VERSION", "value": version}],
            }]}},
        },
    })
}

/// Istio's CRDs, two versions of the app, and a VirtualService with ten header rules in front
/// of a 90/10 split.
fn install(store: &Store) {
    for text in forklane_sim::sandbox::ISTIO_CRDS {
        let crd: Value = serde_yaml_ng::from_str(text).unwrap();
        create(store, Gvr::new("apiextensions.k8s.io", "v1", "customresourcedefinitions"), None, crd);
    }
    let ns = Some("default");
    create(
        store,
        Gvr::new("", "v1", "services"),
        ns,
        json!({"metadata": {"name": "my-app"}, "spec": {"selector": {"app": "my-app"}, "ports": [{"port": 80, "targetPort": "http"}]}}),
    );
    create(store, Gvr::new("apps", "v1", "deployments"), ns, deployment("v1", 3));
    create(store, Gvr::new("apps", "v1", "deployments"), ns, deployment("v2", 3));
    let subsets: Vec<Value> = ["v1", "v2"].iter().map(|v| json!({"name": v, "labels": {"version": v}})).collect();
    create(
        store,
        Gvr::new("networking.istio.io", "v1", "destinationrules"),
        ns,
        json!({"metadata": {"name": "my-app"}, "spec": {"host": "my-app", "subsets": subsets}}),
    );
    let to = |subset: &str, weight: u32| json!({"destination": {"host": "my-app", "subset": subset}, "weight": weight});
    let mut http: Vec<Value> = (0..RULES)
        .map(|i| json!({"match": [{"headers": {format!("x-group-{i}"): {"exact": "beta"}}}], "route": [to("v2", 100)]}))
        .collect();
    http.push(json!({"route": [to("v1", 90), to("v2", 10)]}));
    create(
        store,
        Gvr::new("networking.istio.io", "v1", "virtualservices"),
        ns,
        json!({"metadata": {"name": "my-app"}, "spec": {"hosts": ["my-app"], "http": http}}),
    );
}

/// Sequential GETs of a Deployment until `run` has passed: sorted latencies.
async fn probe(api: &Api<Deployment>, run: Duration) -> Vec<Duration> {
    let start = Instant::now();
    let mut latencies = Vec::new();
    while start.elapsed() < run {
        let t = Instant::now();
        api.get("my-app-v1").await.expect("GET deployment");
        latencies.push(t.elapsed());
    }
    latencies.sort();
    latencies
}

fn report(name: &str, l: &[Duration]) {
    let at = |q: f64| l[((l.len() - 1) as f64 * q) as usize];
    println!(
        "{name:<34} {:>6} GETs  p50 {:>8.2?}  p99 {:>8.2?}  longest {:>8.2?}",
        l.len(),
        at(0.5),
        at(0.99),
        l.last().copied().unwrap_or_default()
    );
}

#[tokio::main]
async fn main() {
    let config = ClusterConfig { clock: Clock::scaled(20.0), workloads: true, dataplane: true, ..Default::default() };
    let cluster = Cluster::start(config).await.expect("cluster starts");
    install(cluster.store());
    let net = cluster.dataplane().expect("the data plane is on");
    let (view, service) = (net.feed.view(), ServiceKey::new("default", "my-app"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while view.snapshot().service(&service).is_none_or(|s| s.endpoints.len() < 6) || !view.snapshot().mesh {
        assert!(Instant::now() < deadline, "the pods never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let api: Api<Deployment> = Api::namespaced(cluster.client(), "default");
    println!(
        "API-server responses (sequential kube-rs GETs of a Deployment) on {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    report("idle", &probe(&api, IDLE).await);

    let traffic = {
        let (dataplane, view, service) = (net.dataplane.clone(), view.clone(), service.clone());
        tokio::spawn(async move {
            let mut users = Population::new(&LoadSpec { users: 1000, ..Default::default() });
            drive_in_process(&dataplane, &view, &service, &mut users, RPS, Limit::Duration(LOADED)).await
        })
    };
    let loaded = probe(&api, LOADED - Duration::from_millis(200)).await;
    let sent = traffic.await.expect("traffic task");
    report(&format!("under {RPS} simulated requests/s"), &loaded);
    println!(
        "{:<34} {:>8.0} requests/s achieved ({} in {:.2?})",
        "  traffic through the mesh",
        sent.sent as f64 / sent.elapsed.as_secs_f64(),
        sent.sent,
        sent.elapsed
    );

    let mut users = Population::new(&LoadSpec { users: 1000, seed: 2, ..Default::default() });
    let start = Instant::now();
    let unpaced = run_in_process(&net.dataplane, &view, &service, &mut users, 200_000, RPS);
    let secs = start.elapsed().as_secs_f64();
    println!(
        "VirtualService with {RULES} rules, unpaced: {:>10.0} simulated requests/s ({} in {secs:.2}s)",
        unpaced.sent as f64 / secs,
        unpaced.sent
    );
    cluster.shutdown().await;
}
