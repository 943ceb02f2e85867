//! The controller's `/metrics`, `/healthz` and `/readyz`, as a kubelet and Prometheus see them.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use forklane::cli::run::router;
use forklane_core::controller::telemetry::{Loop, Metrics, OutcomeLabel};

fn get(url: &str) -> (String, String) {
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", url])
        .output()
        .expect("curl is installed (scripts/install-curl)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.to_string(), body.to_string())
}

/// `/healthz` fails once a running loop has been silent this long.
const STALE_AFTER: Duration = Duration::from_secs(1);

async fn serve(metrics: Arc<Metrics>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(axum::serve(listener, router(metrics, STALE_AFTER)).into_future());
    base
}

async fn fetch(url: String) -> (String, String) {
    tokio::task::spawn_blocking(move || get(&url)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics_are_served() {
    let metrics = Arc::new(Metrics::default());
    let base = serve(metrics.clone()).await;
    let base2 = base.clone();
    let (health, not_ready) =
        tokio::task::spawn_blocking(move || (get(&format!("{base2}/healthz")), get(&format!("{base2}/readyz"))))
            .await
            .unwrap();
    assert_eq!(health.0, "200");
    assert_eq!(not_ready.0, "503", "not ready before leader election starts");
    metrics.ready.store(true, Ordering::Relaxed);
    metrics.reconciles.inc();
    metrics.decisions.get_or_create(&OutcomeLabel { outcome: "promote".into() }).inc();
    let (ready, scraped) =
        tokio::task::spawn_blocking(move || (get(&format!("{base}/readyz")), get(&format!("{base}/metrics"))))
            .await
            .unwrap();
    assert_eq!(ready.0, "200");
    assert!(scraped.1.contains("forklane_reconciles_total 1"), "{}", scraped.1);
    assert!(scraped.1.contains("forklane_decisions_total{outcome=\"promote\"} 1"), "{}", scraped.1);
    assert!(scraped.1.contains("forklane_reconcile_duration_seconds_bucket"), "{}", scraped.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_fails_when_a_running_loop_stops_beating() {
    let metrics = Arc::new(Metrics::default());
    let base = serve(metrics.clone()).await;
    let healthz = format!("{base}/healthz");
    assert_eq!(fetch(healthz.clone()).await.0, "200", "no loop runs yet: nothing is stuck");

    metrics.beat(Loop::Election);
    metrics.beat(Loop::Controller);
    assert_eq!(fetch(healthz.clone()).await, ("200".into(), "ok".into()), "both loops just beat");

    // The election loop keeps beating; the controller's stops.
    let started = tokio::time::Instant::now();
    while started.elapsed() < STALE_AFTER * 3 / 2 {
        metrics.beat(Loop::Election);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (code, body) = fetch(healthz.clone()).await;
    assert_eq!(code, "500", "{body}");
    assert!(body.starts_with("the controller loop has not beaten for "), "{body}");

    metrics.beat(Loop::Controller);
    assert_eq!(fetch(healthz.clone()).await.0, "200", "a fresh beat heals");
    tokio::time::sleep(STALE_AFTER * 3 / 2).await;
    let (code, body) = fetch(healthz).await;
    assert_eq!(code, "500", "{body}");
    assert!(body.starts_with("the leader election loop has not beaten for "), "{body}");
}
