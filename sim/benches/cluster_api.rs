//! Throughput and latency of the embedded API server over HTTPS with kube-rs: creates/s and
//! gets/s for 10,000 small objects, list latency of 10,000 objects and of a label selector
//! matching 10 of them, watch event latency with 100 watchers, and resident memory at 10,000
//! objects; then the workload simulator's CPU with 1,000 Deployments of 2 replicas (2,000
//! pods). Prints figures; not a test.

use forklane_core::clock::Clock;
use forklane_sim::cluster::store::{ListParams as StoreListParams, WriteOptions};
use forklane_sim::cluster::{Cluster, ClusterConfig, Gvr};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const OBJECTS: usize = 10_000;
const CONCURRENCY: usize = 16;
const WATCHERS: usize = 100;
const WATCHED_UPDATES: usize = 200;
/// Objects share a `group` label value with `OBJECTS / GROUPS - 1` others.
const GROUPS: usize = 1_000;
const DEPLOYMENTS: usize = 1_000;
const REPLICAS: usize = 2;
/// Simulated seconds per real second in the workload measure.
const SPEED: f64 = 10.0;
const STEADY_SIMULATED_SECS: u64 = 300;

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

fn micros_now() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_micros()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rss_start = rss_mib();
    let cluster = Cluster::start(ClusterConfig::default()).await.expect("cluster starts");
    let api: Api<ConfigMap> = Api::namespaced(cluster.client(), "default");

    let started = Instant::now();
    futures::stream::iter(0..OBJECTS)
        .for_each_concurrent(CONCURRENCY, |i| {
            let api = api.clone();
            async move {
                let cm: ConfigMap = serde_json::from_value(
                    json!({"metadata": {"name": format!("cm-{i:05}"), "labels": {"bench": "yes", "group": format!("g{}", i % GROUPS)}}, "data": {"k": "v"}}),
                )
                .unwrap();
                api.create(&PostParams::default(), &cm).await.expect("create");
            }
        })
        .await;
    let create_secs = started.elapsed().as_secs_f64();

    let started = Instant::now();
    futures::stream::iter(0..OBJECTS)
        .for_each_concurrent(CONCURRENCY, |i| {
            let api = api.clone();
            async move {
                api.get(&format!("cm-{i:05}")).await.expect("get");
            }
        })
        .await;
    let get_secs = started.elapsed().as_secs_f64();

    let mut list_ms = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let list = api.list(&ListParams::default()).await.expect("list");
        assert_eq!(list.items.len(), OBJECTS);
        list_ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    list_ms.sort_by(f64::total_cmp);
    let mut selected_ms = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        let list = api.list(&ListParams::default().labels("group=g7")).await.expect("list");
        assert_eq!(list.items.len(), OBJECTS / GROUPS);
        selected_ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    selected_ms.sort_by(f64::total_cmp);
    let rss_loaded = rss_mib();

    // 100 watchers on one object; each update carries its send time.
    let watched: Api<ConfigMap> = Api::namespaced(cluster.client(), "kube-public");
    watched
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "w"}})).unwrap())
        .await
        .unwrap();
    let rv = watched.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    let mut handles = Vec::new();
    for _ in 0..WATCHERS {
        let stream = watched.watch(&WatchParams::default(), &rv).await.expect("watch");
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(WATCHED_UPDATES);
            let mut stream = stream.boxed();
            while latencies.len() < WATCHED_UPDATES {
                match stream.try_next().await {
                    Ok(Some(WatchEvent::Modified(cm))) => {
                        let sent: u128 = cm.data.unwrap()["t"].parse().unwrap();
                        latencies.push((micros_now() - sent) as f64 / 1000.0);
                    }
                    Ok(Some(_)) => {}
                    _ => break,
                }
            }
            latencies
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..WATCHED_UPDATES {
        let patch = Patch::Merge(json!({"data": {"t": micros_now().to_string()}}));
        watched.patch("w", &PatchParams::default(), &patch).await.expect("update");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut latencies = Vec::new();
    for h in handles {
        latencies.extend(h.await.expect("watcher"));
    }
    latencies.sort_by(f64::total_cmp);

    println!("cluster_api benchmark (HTTPS + kube-rs, {CONCURRENCY} concurrent requests, 2 worker threads)");
    println!("creates/s ({OBJECTS} small ConfigMaps):  {:.0}", OBJECTS as f64 / create_secs);
    println!("gets/s ({OBJECTS}):                     {:.0}", OBJECTS as f64 / get_secs);
    println!(
        "list of {OBJECTS} objects:              median {:.1} ms, min {:.1} ms",
        percentile(&list_ms, 0.5),
        list_ms[0]
    );
    println!(
        "list by label, {} of {OBJECTS} match:     median {:.2} ms, min {:.2} ms",
        OBJECTS / GROUPS,
        percentile(&selected_ms, 0.5),
        selected_ms[0]
    );
    println!(
        "watch event latency ({WATCHERS} watchers x {WATCHED_UPDATES} updates, {} events): p50 {:.2} ms, p99 {:.2} ms",
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );
    println!(
        "resident memory: {rss_start:.0} MiB at start, {rss_loaded:.0} MiB with {OBJECTS} objects (server and client in one process)"
    );
    cluster.shutdown().await;
    workloads().await;
}

/// CPU time this process has used (user + system), from /proc.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let fields: Vec<f64> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().filter_map(|f| f.parse().ok()).collect())
        .unwrap_or_default();
    let ticks = fields.get(11).copied().unwrap_or(0.0) + fields.get(12).copied().unwrap_or(0.0);
    ticks / 100.0
}

fn ready_pods(cluster: &Cluster) -> usize {
    let pods = cluster.store().list(&Gvr::new("", "v1", "pods"), Some("default"), &StoreListParams::default());
    let pods = pods.expect("list pods");
    let ready = |p: &&serde_json::Value| {
        p["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    };
    pods["items"].as_array().into_iter().flatten().filter(ready).count()
}

/// The workload simulator with 1,000 Deployments of 2 replicas, created in-process (the
/// measure is the simulator, not HTTP): time and CPU until all 2,000 pods are ready, then CPU
/// per simulated minute of steady state.
async fn workloads() {
    let config = ClusterConfig { workloads: true, clock: Clock::scaled(SPEED), ..ClusterConfig::default() };
    let cluster = Cluster::start(config).await.expect("cluster starts");
    let deployments = Gvr::new("apps", "v1", "deployments");
    let (cpu_start, started) = (cpu_secs(), Instant::now());
    for i in 0..DEPLOYMENTS {
        let labels = json!({"app": format!("app-{i:04}")});
        let d = json!({"metadata": {"name": format!("app-{i:04}")}, "spec": {
            "replicas": REPLICAS, "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": "app:1"}]}}}});
        cluster.store().create(&deployments, Some("default"), d, &WriteOptions::default()).expect("create");
    }
    let pods = DEPLOYMENTS * REPLICAS;
    while ready_pods(&cluster) < pods {
        assert!(started.elapsed() < Duration::from_secs(600), "pods not ready in 10 minutes");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (ramp_secs, ramp_cpu) = (started.elapsed().as_secs_f64(), cpu_secs() - cpu_start);
    let steady_real = STEADY_SIMULATED_SECS as f64 / SPEED;
    let cpu_start = cpu_secs();
    tokio::time::sleep(Duration::from_secs_f64(steady_real)).await;
    let steady_cpu = cpu_secs() - cpu_start;
    println!(
        "workloads, {DEPLOYMENTS} Deployments x {REPLICAS} ({pods} pods, clock {SPEED}x): all ready in {ramp_secs:.1} s using {ramp_cpu:.1} CPU s; steady state {:.2} CPU s per simulated minute ({:.0}% of a core)",
        steady_cpu * 60.0 / STEADY_SIMULATED_SECS as f64,
        100.0 * steady_cpu / steady_real
    );
    cluster.shutdown().await;
}
