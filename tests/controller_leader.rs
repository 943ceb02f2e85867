//! Leader election on the embedded cluster: two replicas compete for one Lease; only the holder's
//! controller writes, it carries a canary to the end, and when it shuts down mid-experiment the
//! standby takes the lease and finishes the experiment without losing or repeating a step.

use crate::support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use forklane_core::api::{MeshMode, Phase};
use forklane_core::controller::fence::{Fence, fenced_client};
use forklane_core::controller::leader::{LeaseSettings, lead};
use forklane_core::controller::shards::Shard;
use forklane_core::controller::telemetry::{Loop, Metrics, STALE_AFTER};
use forklane_core::controller::{Context, Scope};
use forklane_core::fixtures::{ExperimentBuilder, pause_for, set_weight};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use support::e2e::*;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const ENDED: &[Phase] = &[Phase::Succeeded, Phase::RolledBack, Phase::Failed];
const LEASE: &str = "forklane-controller";

/// One `forklane run` process: its own Context (write counter) and its shutdown switch.
struct Replica {
    ctx: Arc<Context>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<forklane_core::controller::Result<()>>,
}

impl Replica {
    fn start(env: &Env, identity: &str) -> Replica {
        let fence = Fence::new();
        let client = fenced_client(env.cluster.client_config(), fence.clone(), None).unwrap();
        let ctx = Arc::new(Context::new(client, env.clock, env.analyst.clone(), Arc::new(Metrics::default())));
        let lease = LeaseSettings {
            namespace: NS.into(),
            name: LEASE.into(),
            identity: identity.into(),
            duration: 2,
            grace: 1,
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(lead(
            env.client.clone(),
            lease,
            vec![Shard::fenced(ctx.clone(), fence)],
            Scope::default(),
            async move {
                let _ = stopped.await;
            },
        ));
        Replica { ctx, stop: Some(stop), task }
    }

    fn ready(&self) -> bool {
        self.ctx.metrics.ready.load(Ordering::Relaxed)
    }

    fn writes(&self) -> u64 {
        self.ctx.writes.load(Ordering::Relaxed)
    }

    async fn shutdown(&mut self) {
        let _ = self.stop.take().expect("running").send(());
        (&mut self.task).await.expect("no panic").expect("leads and releases without error");
    }
}

async fn holder(env: &Env) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), NS);
    leases.get_opt(LEASE).await.unwrap().and_then(|l| l.spec).and_then(|s| s.holder_identity)
}

/// Waits (real time) until one of `identities` holds the Lease.
async fn wait_for_holder(env: &Env, identities: &[&str]) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match holder(env).await {
            Some(h) if identities.contains(&h.as_str()) => return h,
            other => assert!(
                tokio::time::Instant::now() < deadline,
                "lease holder {other:?}, expected one of {identities:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `app` (v1 and v2, ready) behind its Service: the article's app renamed.
async fn two_versions(env: &Env, name: &str) {
    for yaml in [service("{app: my-app}"), app("v1", 1, &[]), app("v2", 1, &[])] {
        env.apply(&yaml.replace("my-app", name)).await;
    }
    env.wait_ready(&format!("{name}-v1"), 1).await;
    env.wait_ready(&format!("{name}-v2"), 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_acts_and_the_standby_takes_over_when_it_shuts_down() {
    let env = Env::start(true, false).await;
    let routes = env.record("virtualservices");
    two_versions(&env, "my-app").await;
    two_versions(&env, "shop").await;

    let mut replicas = [Replica::start(&env, "replica-a"), Replica::start(&env, "replica-b")];
    let leader_id = wait_for_holder(&env, &["replica-a", "replica-b"]).await;
    let (leader, standby) = if leader_id == "replica-a" { (0, 1) } else { (1, 0) };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !replicas.iter().all(Replica::ready) {
        assert!(tokio::time::Instant::now() < deadline, "a replica never became ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(holder(&env).await.as_deref(), Some(leader_id.as_str()), "ready while the other replica leads");
    // Both loops beat on both replicas: a standby runs the controller over caches it keeps warm
    // (so that a shard taken over is reconciled at once), reconciling nothing it does not hold.
    let beats = |r: &Replica| [Loop::Election, Loop::Controller].map(|l| r.ctx.metrics.silence(l).is_some());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while beats(&replicas[leader]) != [true, true] || beats(&replicas[standby]) != [true, true] {
        let now = tokio::time::Instant::now();
        assert!(
            now < deadline,
            "beats: leader {:?}, standby {:?}",
            beats(&replicas[leader]),
            beats(&replicas[standby])
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for r in &replicas {
        assert_eq!(r.ctx.metrics.unhealthy(STALE_AFTER), None);
    }

    env.apply_experiment(
        ExperimentBuilder::canary("first").mesh(MeshMode::Istio).steps([set_weight(20), set_weight(50)]),
    )
    .await;
    let first = env.wait_for_phase("first", Duration::from_secs(15), ENDED).await.status.unwrap();
    assert_eq!((first.phase, first.winner.as_deref()), (Some(Phase::Succeeded), Some("v2")), "{:?}", first.message);
    assert_eq!(v2_weights(&routes, "first"), vec![20, 50, 100]);
    assert_eq!(holder(&env).await.as_deref(), Some(leader_id.as_str()), "the lease stayed with one replica");
    assert!(replicas[leader].writes() > 0, "the leader acted");
    assert_eq!(replicas[standby].writes(), 0, "the standby never wrote");

    let steps = [set_weight(20), pause_for("5m"), set_weight(50)];
    env.apply_experiment(ExperimentBuilder::canary("second").service("shop").mesh(MeshMode::Istio).steps(steps)).await;
    env.wait_for_phase("second", Duration::from_secs(15), &[Phase::Paused]).await;
    replicas[leader].shutdown().await;
    let written_by_leader = replicas[leader].writes();
    let standby_id = if leader == 0 { "replica-b" } else { "replica-a" };
    assert_eq!(wait_for_holder(&env, &[standby_id]).await, standby_id, "the standby took the released lease");
    let phase = env.experiments().get("second").await.unwrap().status.unwrap().phase;
    assert_eq!(phase, Some(Phase::Paused), "the handover happened mid-experiment");

    let second = env.wait_for_phase("second", Duration::from_secs(15), ENDED).await.status.unwrap();
    assert_eq!((second.phase, second.winner.as_deref()), (Some(Phase::Succeeded), Some("v2")), "{:?}", second.message);
    assert_eq!(v2_weights(&routes, "second"), vec![20, 50, 100], "no step lost or repeated across the handover");
    assert!(replicas[standby].writes() > 0, "the new leader finished the experiment");
    assert_eq!(replicas[leader].writes(), written_by_leader, "the old leader wrote nothing after shutting down");
    assert_weights_sum_to_100(&routes);
    env.assert_no_routing_503();

    replicas[standby].shutdown().await;
    assert_eq!(holder(&env).await, None, "a replica that shuts down releases the lease");
    env.shutdown().await;
}
