//! API priority and fairness on the embedded cluster: with 30% of requests answered 429 with
//! `Retry-After: 1`, the controller still carries a canary to the end, without a lost or
//! repeated step, and its request rate is no higher than without the fault (it waits as told
//! instead of retrying at once).

// Each test binary uses only some of the shared helpers.
#[allow(dead_code)]
mod support;

use std::time::Duration;

use forklane_core::api::{MeshMode, Phase};
use forklane_core::fixtures::{ExperimentBuilder, pause_for, set_weight};
use forklane_sim::cluster::FaultSettings;
use support::e2e::*;

const AGENT: &str = "forklane-controller";
const ENDED: &[Phase] = &[Phase::Succeeded, Phase::RolledBack, Phase::Failed];

/// Runs a canary to its end with `throttle` of requests answered 429; returns the controller's
/// requests per real second, the share of them throttled, and v2's successive weights.
async fn canary(throttle: f64) -> (f64, f64, Vec<i64>) {
    let mut env = Env::start(true, true).await;
    two_versions(&env, 1, &[], &[]).await;
    let routes = env.record("virtualservices");
    let mut config = env.cluster.client_config();
    config.headers.push((http::header::USER_AGENT, http::HeaderValue::from_static(AGENT)));
    env.cluster
        .faults()
        .set(FaultSettings { throttle_rate: throttle, retry_after_seconds: 1, ..Default::default() })
        .unwrap();
    let started = tokio::time::Instant::now();
    env.start_controller_with(kube::Client::try_from(config).unwrap());
    let steps = [set_weight(20), pause_for("2m"), set_weight(50), pause_for("2m")];
    env.apply_experiment(ExperimentBuilder::canary("throttled").mesh(MeshMode::Istio).steps(steps)).await;
    let done = env.wait_for_phase("throttled", Duration::from_secs(90), ENDED).await.status.unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    env.stop_controller().await;
    env.cluster.faults().clear();
    assert_eq!((done.phase, done.winner.as_deref()), (Some(Phase::Succeeded), Some("v2")), "{:?}", done.message);
    let records: Vec<_> = env.cluster.audit().records().into_iter().filter(|r| r.user_agent == AGENT).collect();
    let throttled = records.iter().filter(|r| r.code == 429).count();
    let weights = v2_weights(&routes, "throttled");
    env.shutdown().await;
    (records.len() as f64 / elapsed, throttled as f64 / records.len().max(1) as f64, weights)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_429s_the_controller_finishes_and_asks_no_more_often() {
    tokio::time::timeout(Duration::from_secs(240), async {
        let (calm_rate, calm_throttled, calm_weights) = canary(0.0).await;
        let (rate, throttled, weights) = canary(0.3).await;
        assert_eq!(calm_throttled, 0.0);
        assert!(throttled > 0.1, "the fault throttled {throttled:.2} of the controller's requests");
        assert_eq!(calm_weights, vec![0, 20, 50, 100]);
        assert_eq!(weights, calm_weights, "no step lost or repeated under throttling");
        assert!(rate <= calm_rate, "{rate:.1} requests/s under 429s, {calm_rate:.1} without");
    })
    .await
    .expect("bounded");
}
