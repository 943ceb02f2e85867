//! Throughput and latency of the embedded API server over HTTPS with kube-rs: creates/s and
//! gets/s for 10,000 small objects, list latency of 10,000 objects, watch event latency with
//! 100 watchers, and resident memory at 10,000 objects. Prints figures; not a test.

use forklane_sim::cluster::{Cluster, ClusterConfig};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const OBJECTS: usize = 10_000;
const CONCURRENCY: usize = 16;
const WATCHERS: usize = 100;
const WATCHED_UPDATES: usize = 200;

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
                    json!({"metadata": {"name": format!("cm-{i:05}"), "labels": {"bench": "yes"}}, "data": {"k": "v"}}),
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
        "watch event latency ({WATCHERS} watchers x {WATCHED_UPDATES} updates, {} events): p50 {:.2} ms, p99 {:.2} ms",
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );
    println!(
        "resident memory: {rss_start:.0} MiB at start, {rss_loaded:.0} MiB with {OBJECTS} objects (server and client in one process)"
    );
    cluster.shutdown().await;
}
