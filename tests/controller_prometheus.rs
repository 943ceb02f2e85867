//! With a real Prometheus scraping the embedded data plane, an A/B experiment decided through the
//! Prometheus metric source reaches the same decision as with the embedded source.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use forklane_core::api::{Builtin, MeshMode, Phase};
use forklane_core::controller::analyst::{PrometheusAddresses, SourceAnalyst};
use forklane_core::fixtures::{ExperimentBuilder, analysis, conversion, guardrail};
use support::e2e::*;

fn experiment() -> ExperimentBuilder {
    let metrics = [conversion(), guardrail("error-rate", Builtin::IstioErrorRate, 0.01)];
    // Looks come a real second apart here, and Prometheus needs a few real seconds to start and
    // scrape twice: its first answers are empty, which must not end the experiment as an outage.
    let analysis = analysis(metrics)
        .interval("10s")
        .min_samples_per_arm(500)
        .max_duration("2h")
        .max_consecutive_unavailable(60)
        .srm();
    ExperimentBuilder::ab_test("ab").mesh(MeshMode::Istio).split([("v1", 50), ("v2", 50)]).analysis(analysis)
}

/// Runs the experiment to its end; `prometheus` switches the metric source.
async fn decide(prometheus: bool) -> (Option<Phase>, Option<String>) {
    // Slow enough that Prometheus' 1 s scrapes see every analysis interval (10 s simulated).
    let mut env = Env::start_with_speed(true, false, 10.0).await;
    env.apply(&service("{app: my-app}")).await;
    env.apply(&app("v1", 2, &[("sim.forklane.io/conversion-rate", "0.20")])).await;
    env.apply(&app("v2", 2, &[("sim.forklane.io/conversion-rate", "0.30")])).await;
    env.wait_ready("my-app-v1", 2).await;
    env.wait_ready("my-app-v2", 2).await;
    let _server = if prometheus {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = env.net().dataplane.metrics.router();
        let server = tokio::spawn(async move { axum::serve(listener, router).await });
        let prom = support::prometheus::start(addr);
        let addresses = PrometheusAddresses { default: Some(prom.url.clone()), allowed: vec![] };
        env.analyst = Arc::new(SourceAnalyst::prometheus(addresses));
        Some((server, prom))
    } else {
        None
    };
    env.start_traffic(1500.0, 300);
    env.start_controller();
    env.apply_experiment(experiment()).await;
    let exp =
        env.wait_for_phase("ab", Duration::from_secs(90), &[Phase::Succeeded, Phase::RolledBack, Phase::Failed]).await;
    let status = exp.status.unwrap();
    if prometheus {
        assert!(
            status.conditions.iter().any(|c| c.type_ == "MetricsUnavailable" && c.status == "False"),
            "the Prometheus source answered"
        );
    }
    env.shutdown().await;
    (status.phase, status.winner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_source_reaches_the_embedded_sources_decision() {
    let embedded = decide(false).await;
    let prometheus = decide(true).await;
    assert_eq!(embedded, (Some(Phase::Succeeded), Some("v2".to_string())));
    assert_eq!(prometheus, embedded);
}
