//! The controller's `/metrics`, `/healthz` and `/readyz`, as a kubelet and Prometheus see them.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use forklane::cli::run::router;
use forklane_core::controller::telemetry::{Metrics, OutcomeLabel};

fn get(url: &str) -> (String, String) {
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", url])
        .output()
        .expect("curl is installed (scripts/install-curl)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.to_string(), body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics_are_served() {
    let metrics = Arc::new(Metrics::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(axum::serve(listener, router(metrics.clone())).into_future());
    let base2 = base.clone();
    let (health, not_ready) =
        tokio::task::spawn_blocking(move || (get(&format!("{base2}/healthz")), get(&format!("{base2}/readyz"))))
            .await
            .unwrap();
    assert_eq!(health.0, "200");
    assert_eq!(not_ready.0, "503", "not ready before the controller runs");
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
