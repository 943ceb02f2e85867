//! Fenced leadership on the embedded cluster: a leader whose renewals fail while its other writes
//! would succeed stops writing before the standby takes the lease over (the request audit shows
//! one writer at a time), and the standby finishes the experiment without losing or repeating a
//! step; a standby judges expiry by its own clock, so a holder whose wall clock is an hour off
//! either way keeps the lease while it renews and loses it within one lease duration once it
//! stops. And with real processes: a leader frozen by SIGSTOP past its lease, then thawed, sends
//! nothing more; the standby finishes the experiment.

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use forklane_core::api::{Experiment, MeshMode, Phase};
use forklane_core::controller::fence::{Fence, fenced_client};
use forklane_core::controller::leader::{LeaseSettings, lead};
use forklane_core::controller::shards::Shard;
use forklane_core::controller::telemetry::Metrics;
use forklane_core::controller::{Context, Scope};
use forklane_core::fixtures::{ExperimentBuilder, pause_for, set_weight};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use support::e2e::*;
use support::forklane_run::ForklaneRun;
use support::refusing::refusing_client;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const LEASE: &str = "forklane-controller";
const ENDED: &[Phase] = &[Phase::Succeeded, Phase::RolledBack, Phase::Failed];

fn config_as(env: &Env, agent: &'static str) -> kube::Config {
    let mut config = env.cluster.client_config();
    config.headers.push((http::header::USER_AGENT, http::HeaderValue::from_static(agent)));
    config
}

struct Replica {
    ctx: Arc<Context>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<forklane_core::controller::Result<()>>,
}

impl Replica {
    /// A replica whose controller writes as `agent` and competes for the Lease as `agent-lease`
    /// through `election` (a plain client unless the test breaks it).
    fn start(env: &Env, agent: &'static str, election: kube::Client) -> Replica {
        let fence = Fence::new();
        let client = fenced_client(config_as(env, agent), fence.clone(), None).unwrap();
        let ctx = Arc::new(Context::new(client, env.clock, env.analyst.clone(), Arc::new(Metrics::default())));
        let lease =
            LeaseSettings { namespace: NS.into(), name: LEASE.into(), identity: agent.into(), duration: 2, grace: 1 };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(lead(
            election,
            lease,
            vec![Shard::fenced(ctx.clone(), fence)],
            Scope::default(),
            async move {
                let _ = stopped.await;
            },
        ));
        Replica { ctx, stop: Some(stop), task }
    }

    async fn shutdown(&mut self) {
        let _ = self.stop.take().expect("running").send(());
        let _ = (&mut self.task).await.expect("no panic");
    }
}

async fn holder(env: &Env) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), NS);
    leases.get_opt(LEASE).await.unwrap().and_then(|l| l.spec).and_then(|s| s.holder_identity)
}

async fn wait_for_holder(env: &Env, who: &str, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    while holder(env).await.as_deref() != Some(who) {
        assert!(tokio::time::Instant::now() < deadline, "{who} never held the lease ({:?} does)", holder(env).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn is_write(verb: &str) -> bool {
    matches!(verb, "create" | "update" | "patch" | "delete" | "deletecollection")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_renewals_fail_stops_writing_before_the_standby_takes_over() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let env = Env::start(true, true).await;
        two_versions(&env, 1, &[], &[]).await;
        let broken = Arc::new(AtomicBool::new(false));
        // While `broken`, every write to a Lease fails; other requests pass.
        let dropped = broken.clone();
        let election_a = refusing_client(
            config_as(&env, "replica-a-lease"),
            "the network dropped the renewal",
            move |method, path| {
                *method != http::Method::GET && path.contains("/leases") && dropped.load(Ordering::Relaxed)
            },
        );
        let mut a = Replica::start(&env, "replica-a", election_a);
        wait_for_holder(&env, "replica-a", Duration::from_secs(10)).await;
        let mut b =
            Replica::start(&env, "replica-b", kube::Client::try_from(config_as(&env, "replica-b-lease")).unwrap());

        let routes = env.record("virtualservices");
        // The pause (6 s real) outlasts the handover: the new leader takes the next step.
        let steps = [set_weight(20), pause_for("10m"), set_weight(50)];
        env.apply_experiment(ExperimentBuilder::canary("fenced").mesh(MeshMode::Istio).steps(steps)).await;
        env.wait_for_phase("fenced", Duration::from_secs(15), &[Phase::Paused]).await;
        broken.store(true, Ordering::Relaxed);
        wait_for_holder(&env, "replica-b", Duration::from_secs(10)).await;
        let phase = env.experiments().get("fenced").await.unwrap().status.unwrap().phase;
        assert_eq!(phase, Some(Phase::Paused), "the handover happened mid-experiment");

        let done = env.wait_for_phase("fenced", Duration::from_secs(30), ENDED).await.status.unwrap();
        assert_eq!((done.phase, done.winner.as_deref()), (Some(Phase::Succeeded), Some("v2")), "{:?}", done.message);
        assert_eq!(v2_weights(&routes, "fenced"), vec![20, 50, 100], "no step lost or repeated across the handover");

        // One writer at a time: every write replica-a made arrived before replica-b took the
        // lease, and every write of replica-b's controller after.
        let records = env.cluster.audit().records();
        let took_over = records
            .iter()
            .position(|r| r.user_agent == "replica-b-lease" && is_write(&r.verb) && r.code < 300)
            .expect("replica-b wrote the lease");
        let writes = |agent: &str| -> Vec<usize> {
            records
                .iter()
                .enumerate()
                .filter(|(_, r)| r.user_agent == agent && is_write(&r.verb) && r.code < 400)
                .map(|(i, _)| i)
                .collect()
        };
        let (by_a, by_b) = (writes("replica-a"), writes("replica-b"));
        assert!(!by_a.is_empty() && !by_b.is_empty(), "both led: a wrote {}, b wrote {}", by_a.len(), by_b.len());
        assert!(by_a.iter().all(|&i| i < took_over), "replica-a wrote after replica-b took the lease");
        assert!(by_b.iter().all(|&i| i > took_over), "replica-b's controller wrote before it held the lease");

        println!("| {} | 1 | 0 | Succeeded, winner v2 |", support::LEASE_RENEWALS_FAIL);
        b.shutdown().await;
        a.shutdown().await;
        env.shutdown().await;
    })
    .await
    .expect("bounded");
}

/// A holder that renews with its wall clock an hour off, behind or ahead: a standby judges by
/// what it sees change, so it never takes over while the holder renews, and takes over within a
/// lease duration (and one look) after the renewals stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_ignores_the_holders_wall_clock() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let env = Env::start(true, false).await;
        let leases: Api<Lease> = Api::namespaced(env.client.clone(), NS);
        for skew in [-3600, 3600] {
            let renew = |n: i64| {
                let at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(skew);
                json!({
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": LEASE},
                    "spec": {"holderIdentity": "skewed", "leaseDurationSeconds": 2, "renewTime": at.to_string(), "leaseTransitions": n},
                })
            };
            let apply = PatchParams::apply("skewed-holder").force();
            leases.patch(LEASE, &apply, &Patch::Apply(renew(0))).await.unwrap();
            let mut standby = Replica::start(&env, "standby", env.client.clone());
            // Renewing every 300 ms for three lease durations.
            let mut stopped = tokio::time::Instant::now();
            for n in 1..=20 {
                leases.patch(LEASE, &apply, &Patch::Apply(renew(n))).await.unwrap();
                stopped = tokio::time::Instant::now();
                tokio::time::sleep(Duration::from_millis(300)).await;
                assert_eq!(holder(&env).await.as_deref(), Some("skewed"), "skew {skew} s: the standby took a live lease");
            }
            wait_for_holder(&env, "standby", Duration::from_secs(10)).await;
            let waited = stopped.elapsed();
            assert!(waited >= Duration::from_secs(2), "skew {skew} s: taken {waited:?} after the last renewal");
            assert!(waited < Duration::from_secs(5), "skew {skew} s: taken only {waited:?} after the last renewal");
            assert_eq!(standby.ctx.writes.load(Ordering::Relaxed), 0, "nothing to reconcile, nothing written");
            standby.shutdown().await;
            leases.delete(LEASE, &Default::default()).await.unwrap();
        }
        env.shutdown().await;
    })
    .await
    .expect("bounded");
}

/// A `forklane run` process with a 3 s lease, named `identity`.
fn replica(kubeconfig: &std::path::Path, identity: &str) -> ForklaneRun {
    let args = ["--lease-duration", "3", "--lease-namespace", NS].map(String::from);
    ForklaneRun::start(kubeconfig, identity, "127.0.0.1:0", &args)
}

/// Case 8 of the fault suite with real processes: the leader is frozen (SIGSTOP) past its lease
/// mid-experiment; the standby takes over and finishes; the old leader, thawed, finds by its own
/// monotonic clock that its lease ran out while it slept and sends nothing more (not even the
/// write its frozen reconcile was about to make). The audit shows one writer at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_frozen_past_its_lease_writes_nothing_when_it_thaws() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let env = Env::start(true, true).await;
        two_versions(&env, 1, &[], &[]).await;
        let kubeconfig = std::env::temp_dir().join(format!("forklane-sigstop-{}.kubeconfig", rand::random::<u64>()));
        std::fs::write(&kubeconfig, env.cluster.kubeconfig_yaml()).unwrap();
        let mut a = replica(&kubeconfig, "replica-a");
        wait_for_holder(&env, "replica-a", Duration::from_secs(20)).await;
        let mut b = replica(&kubeconfig, "replica-b");

        let routes = env.record("virtualservices");
        // The processes run on the real clock: the pause (8 s) outlasts the freeze's handover.
        let steps = [set_weight(20), pause_for("8s"), set_weight(50), pause_for("1s")];
        env.apply_experiment(ExperimentBuilder::canary("frozen").mesh(MeshMode::Istio).steps(steps)).await;
        // Into the pause step, not necessarily seen Paused: under load the leader can lose its lease
        // before the freeze, and the standby that takes over late may find the pause already over.
        let in_pause = |e: &Experiment| e.status.as_ref().and_then(|s| s.current_step).is_some_and(|k| k >= 1);
        env.wait_for("frozen", Duration::from_secs(30), in_pause).await;
        a.signal("-STOP");
        let frozen = tokio::time::Instant::now();
        wait_for_holder(&env, "replica-b", Duration::from_secs(15)).await;
        // Thawed well past its lease (3 s), before the standby's next step.
        tokio::time::sleep_until(frozen + Duration::from_secs(5)).await;
        let thawed_at = env.cluster.audit().records().len();
        a.signal("-CONT");

        let done = env.wait_for_phase("frozen", Duration::from_secs(40), ENDED).await.status.unwrap();
        assert_eq!((done.phase, done.winner.as_deref()), (Some(Phase::Succeeded), Some("v2")), "{:?}", done.message);
        assert_eq!(v2_weights(&routes, "frozen"), vec![20, 50, 100], "no step lost or repeated across the freeze");

        let records = env.cluster.audit().records();
        let is_lease = |r: &forklane_sim::cluster::AuditRecord| r.group == "coordination.k8s.io";
        let took_over = records
            .iter()
            .position(|r| r.user_agent == b.agent && is_lease(r) && is_write(&r.verb) && r.code < 300)
            .expect("replica-b wrote the lease");
        let writes = |agent: &str| -> Vec<usize> {
            let by = records.iter().enumerate().filter(|(_, r)| r.user_agent == agent && !is_lease(r));
            by.filter(|(_, r)| is_write(&r.verb)).map(|(i, _)| i).collect()
        };
        let (by_a, by_b) = (writes(&a.agent), writes(&b.agent));
        assert!(!by_a.is_empty() && !by_b.is_empty(), "both led: a wrote {}, b wrote {}", by_a.len(), by_b.len());
        assert!(by_a.iter().all(|&i| i < took_over), "replica-a sent a write after replica-b took the lease");
        assert!(by_a.iter().all(|&i| i < thawed_at), "replica-a sent a write once thawed");
        assert!(by_b.iter().all(|&i| i > took_over), "replica-b's controller wrote before it held the lease");
        let after_thaw = records[thawed_at..].iter().filter(|r| r.user_agent == a.agent).count();
        assert!(after_thaw > 0, "the thawed replica runs again (it asks for the lease)");

        println!("| {} | 1 | 0 | Succeeded, winner v2 |", support::LEADER_FROZEN);
        for p in [&mut a, &mut b] {
            p.stop("-TERM", Duration::from_secs(10)).await;
        }
        let _ = std::fs::remove_file(&kubeconfig);
        env.shutdown().await;
    })
    .await
    .expect("bounded");
}
