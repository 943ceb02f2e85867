//! The article's five walkthroughs replayed on the embedded cluster (API server, workload
//! simulator and data plane from one `Cluster::start`, on a sped-up clock) with real kubectl
//! 1.37 and real curl, using the manifests in tests/fixtures/seed. kubectl and curl must be on
//! PATH (scripts/install-kubectl, scripts/install-curl); a missing one fails the test.
//!
//! Ordered observations use curl in a loop, as the article does; shares use the HTTP load
//! generator (one connection per request, like curl) to stay fast.

use crate::support;
use support::kubectl::Kubectl;

use forklane_core::clock::Clock;
use forklane_sim::cluster::{Cluster, ClusterConfig};
use forklane_sim::traffic::http::HttpTarget;
use forklane_sim::traffic::loadgen::{Limit, run_http};
use forklane_sim::traffic::{LoadSpec, Population, Report};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const V1: &str = "v1.0.0";
const V2: &str = "v2.0.0";

/// The cluster with workloads and data plane on a clock `speed` times real time, and kubectl
/// working in tests/fixtures/seed.
async fn start(speed: f64) -> (Cluster, Kubectl) {
    let config = ClusterConfig { clock: Clock::scaled(speed), workloads: true, dataplane: true, ..Default::default() };
    let cluster = Cluster::start(config).await.expect("cluster starts");
    let seed = PathBuf::from(file!()).parent().unwrap().join("fixtures/seed");
    let kubectl = Kubectl::new(&cluster, &seed);
    (cluster, kubectl)
}

/// Waits until the data plane has `n` ready endpoints behind my-app.
async fn serving_endpoints(cluster: &Cluster, n: usize) {
    use forklane_sim::traffic::{ClusterView, ServiceKey};
    let feed = &cluster.dataplane().expect("the data plane runs").feed;
    let key = ServiceKey::new("default", "my-app");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while feed.view().snapshot().service(&key).map_or(0, |s| s.endpoints.len()) < n {
        assert!(tokio::time::Instant::now() < deadline, "the data plane never had {n} endpoints of my-app");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn rolled_out(k: &Kubectl, deployment: &str) {
    let out = k.ok(&["rollout", "status", &format!("deploy/{deployment}"), "--timeout=60s"]).await;
    assert!(out.contains("successfully rolled out"), "{out}");
}

/// The article's `SERVICE_URL`: http://127.0.0.1:<nodePort of my-app>.
async fn service_url(k: &Kubectl) -> String {
    let port = k.ok(&["get", "svc", "my-app", "-o", "jsonpath={.spec.ports[0].nodePort}"]).await;
    format!("http://127.0.0.1:{}", port.trim())
}

/// One `curl $SERVICE_URL`: the version answered, or curl's exit code.
#[derive(Debug, Clone, PartialEq)]
enum Curl {
    Version(String),
    Exit(i32),
}

async fn curl(url: &str) -> Curl {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "5", url])
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("curl is required on PATH; run scripts/install-curl ({e})"));
    match out.status.code() {
        Some(0) => {
            let body = String::from_utf8_lossy(&out.stdout);
            let version =
                body.trim().split(", Version: ").nth(1).unwrap_or_else(|| panic!("unexpected answer {body:?}"));
            Curl::Version(version.to_string())
        }
        code => Curl::Exit(code.unwrap_or(-1)),
    }
}

/// `while sleep 0.02; do curl $SERVICE_URL; done` in the background: (sent, done, result).
struct CurlLoop {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<(Instant, Instant, Curl)>>,
}

impl CurlLoop {
    fn start(url: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut seen = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let result = curl(&url).await;
                seen.push((sent, Instant::now(), result));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            seen
        });
        CurlLoop { stop, task }
    }

    async fn finish(self) -> Vec<(Instant, Instant, Curl)> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

/// Curls until an answer comes (the NodePort opens once an endpoint is ready).
async fn answered(url: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match curl(url).await {
            Curl::Version(v) => return v,
            other => assert!(Instant::now() < deadline, "{url} never answered: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn load(url: &str, requests: u64) -> Report {
    let target = HttpTarget::parse(url).await.unwrap();
    run_http(&target, Population::new(&LoadSpec { users: 50, ..Default::default() }), 2000.0, Limit::Requests(requests))
        .await
}

/// Runs the load generator until `stop` is set (then for up to one more `chunk`).
fn load_until(url: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<Report>> {
    tokio::spawn(async move {
        let mut reports = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            reports.push(load(&url, 100).await);
        }
        reports
    })
}

fn count(r: &Report, version: &str) -> u64 {
    r.by_version.get(version).copied().unwrap_or(0)
}

/// Only `version` answered, and nothing was refused or failed.
fn only(r: &Report, version: &str) {
    assert!(
        r.refused == 0 && r.failed == 0 && r.by_version.len() == 1 && count(r, version) == r.sent,
        "expected only {version}: {r}"
    );
}

/// The observed share of `version` is within 3 standard errors of `p` (binomial,
/// SE = sqrt(p(1-p)/n)); a correct simulation fails this about 3 times in 1,000.
fn share_within_3se(r: &Report, version: &str, p: f64) {
    let n = r.by_version.values().sum::<u64>() as f64;
    assert!(n >= 2000.0, "too few answers: {r}");
    let (observed, se) = (count(r, version) as f64 / n, (p * (1.0 - p) / n).sqrt());
    assert!(
        (observed - p).abs() <= 3.0 * se,
        "share of {version} {observed:.4}, expected {p:.4} ± {:.4} (3 SE): {r}",
        3.0 * se
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_refuses_connections_then_serves_only_v2() {
    let (_cluster, k) = start(5.0).await;
    k.ok(&["apply", "-f", "app-v1.yaml"]).await;
    rolled_out(&k, "my-app").await;
    let url = service_url(&k).await;
    assert_eq!(answered(&url).await, V1);

    let curls = CurlLoop::start(url.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    k.ok(&["apply", "-f", "app-v2.yaml"]).await;
    rolled_out(&k, "my-app").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen: Vec<Curl> = curls.finish().await.into_iter().map(|(_, _, c)| c).collect();

    // v1, then `curl: (7) Failed to connect ... Couldn't connect to server`, then v2 only. A request
    // in flight when the last v1 pod goes may be reset instead (curl exit 56), as on a real node.
    let outage = |c: &Curl| matches!(c, Curl::Exit(7) | Curl::Exit(56));
    assert!(seen.contains(&Curl::Exit(7)), "no refused connection: {seen:?}");
    let first_refusal = seen.iter().position(outage).unwrap_or_else(|| panic!("no outage: {seen:?}"));
    let first_v2 =
        seen.iter().position(|c| *c == Curl::Version(V2.into())).unwrap_or_else(|| panic!("no v2: {seen:?}"));
    assert!(
        seen[..first_refusal].iter().all(|c| *c == Curl::Version(V1.into())),
        "before the outage only v1: {seen:?}"
    );
    assert!(seen[first_refusal..first_v2].iter().all(outage), "the outage refuses connections: {seen:?}");
    assert!(seen[first_v2..].iter().all(|c| *c == Curl::Version(V2.into())), "after the outage only v2: {seen:?}");
    assert!(first_refusal >= 5 && seen.len() - first_v2 >= 5, "v1 and v2 each answered several times: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_never_refuses_and_moves_from_v1_to_v2() {
    let (_cluster, k) = start(20.0).await;
    k.ok(&["apply", "-f", "app-v1.yaml"]).await;
    rolled_out(&k, "my-app").await;
    let url = service_url(&k).await;
    answered(&url).await;
    only(&load(&url, 300).await, V1);

    let stop = Arc::new(AtomicBool::new(false));
    let during = load_until(url.clone(), stop.clone());
    // maxSurge 1 / maxUnavailable 0, and a 15 s readiness delay for the new pods.
    k.ok(&["apply", "-f", "app-v2-rolling-update.yaml"]).await;
    rolled_out(&k, "my-app").await;
    stop.store(true, Ordering::Relaxed);
    let reports = during.await.unwrap();
    let (refused, failed): (u64, u64) =
        (reports.iter().map(|r| r.refused).sum(), reports.iter().map(|r| r.failed).sum());
    assert_eq!((refused, failed), (0, 0), "the rolling update never refuses a request");
    assert!(
        reports.iter().any(|r| count(r, V1) > 0 && count(r, V2) > 0),
        "a mix of v1 and v2 was served during the update"
    );
    only(&load(&url, 300).await, V2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_pause_freezes_a_mix_resume_completes_undo_returns_to_v1() {
    // Slower: the mix must still be there when `rollout pause` lands.
    let (cluster, k) = start(10.0).await;
    k.ok(&["apply", "-f", "app-v1.yaml"]).await;
    rolled_out(&k, "my-app").await;
    let url = service_url(&k).await;
    answered(&url).await;

    k.ok(&["apply", "-f", "app-v2-rolling-update.yaml"]).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(&load(&url, 100).await, V2) == 0 {
        assert!(Instant::now() < deadline, "no v2 pod became ready");
    }
    k.ok(&["rollout", "pause", "deploy/my-app"]).await;
    let sizes = || {
        k.ok(&[
            "get",
            "rs",
            "-l",
            "app=my-app",
            "-o",
            "jsonpath={range .items[*]}{.metadata.labels.version}={.spec.replicas} {end}",
        ])
    };
    let frozen = sizes().await;
    // 40 simulated seconds, two waves of the rollout: pods already started become ready, the
    // ReplicaSets keep their sizes, and both versions keep answering.
    tokio::time::sleep(cluster.clock().real_duration(Duration::from_secs(40))).await;
    assert_eq!(sizes().await, frozen, "nothing scales while paused");
    let paused = load(&url, 500).await;
    assert!(count(&paused, V1) > 0 && count(&paused, V2) > 0 && paused.refused == 0, "a frozen mix: {paused}");

    k.ok(&["rollout", "resume", "deploy/my-app"]).await;
    rolled_out(&k, "my-app").await;
    only(&load(&url, 300).await, V2);

    k.ok(&["rollout", "undo", "deploy/my-app"]).await;
    rolled_out(&k, "my-app").await;
    only(&load(&url, 300).await, V1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_switches_atomically_at_the_service_patch() {
    let (_cluster, k) = start(20.0).await;
    k.ok(&["apply", "-f", "app-v1-single-svc.yaml"]).await;
    rolled_out(&k, "my-app-v1").await;
    let url = service_url(&k).await;
    answered(&url).await;
    k.ok(&["apply", "-f", "app-v2-single-svc.yaml"]).await;
    rolled_out(&k, "my-app-v2").await;
    // v2 is ready but not selected.
    only(&load(&url, 300).await, V1);

    let curls = CurlLoop::start(url.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let patch_sent = Instant::now();
    k.ok(&["patch", "service", "my-app", "-p", r#"{"spec":{"selector":{"version":"v2.0.0"}}}"#]).await;
    let patched = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = curls.finish().await;

    // The data plane follows the Service within its coalescing delay, as kube-proxy follows
    // the API server: requests sent up to this long after the patch returned may still be v1.
    let settle = Duration::from_millis(100);
    for (sent, done, result) in &seen {
        let wanted = if *done < patch_sent {
            V1
        } else if *sent > patched + settle {
            V2
        } else {
            assert!(matches!(result, Curl::Version(_)), "no request fails at the switch: {seen:?}");
            continue;
        };
        assert_eq!(*result, Curl::Version(wanted.into()), "{seen:?}");
    }
    let versions: Vec<&Curl> = seen.iter().map(|(_, _, c)| c).collect();
    let switch = versions.iter().position(|c| **c == Curl::Version(V2.into())).expect("v2 after the switch");
    assert!(
        switch > 5 && versions[switch..].iter().all(|c| **c == Curl::Version(V2.into())),
        "one switch, no v1 after the first v2: {versions:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_serves_one_in_eleven_then_half_after_scaling() {
    let (cluster, k) = start(20.0).await;
    k.ok(&["apply", "-f", "app-v1-canary.yaml"]).await;
    rolled_out(&k, "my-app-v1").await;
    let url = service_url(&k).await;
    answered(&url).await;
    k.ok(&["apply", "-f", "app-v2-canary.yaml"]).await;
    rolled_out(&k, "my-app-v2").await;
    serving_endpoints(&cluster, 11).await;

    // 10 v1 pods and 1 v2 pod behind one Service: kube-proxy picks uniformly.
    let canary = load(&url, 2200).await;
    assert_eq!((canary.refused, canary.failed), (0, 0), "{canary}");
    share_within_3se(&canary, V2, 1.0 / 11.0);

    k.ok(&["scale", "--replicas=10", "deploy", "my-app-v2"]).await;
    rolled_out(&k, "my-app-v2").await;
    // The rollout's status can reach kubectl before the last pod's endpoint reaches the data plane.
    serving_endpoints(&cluster, 20).await;
    let even = load(&url, 2200).await;
    assert_eq!((even.refused, even.failed), (0, 0), "{even}");
    share_within_3se(&even, V2, 0.5);
}
