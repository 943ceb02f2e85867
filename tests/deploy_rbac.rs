//! Least privilege: the ClusterRole in deploy/rbac.yaml grants exactly what the controller uses.
//! The controller runs experiments of every routing kind on the embedded cluster with the request
//! audit on; the (group, resource, verb) set it used is compared with the rules. The same holds
//! for the leader-election Role and the Lease requests of two competing replicas.

use crate::support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use forklane_core::api::{MeshMode, Phase};
use forklane_core::controller::fence::{Fence, fenced_client};
use forklane_core::controller::leader::{LeaseSettings, lead};
use forklane_core::controller::shards::{Shard, lease_name as shard_lease};
use forklane_core::controller::telemetry::Metrics;
use forklane_core::controller::{Context, Scope};
use forklane_core::fixtures::{ExperimentBuilder, analysis, conversion, pause, set_weight};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::DeleteParams;
use support::e2e::*;
use tokio::sync::oneshot;

const AGENT: &str = "forklane-controller";

type Permission = (String, String, String);

/// What the roles of `kind` (`ClusterRole`, or the leader-election `Role`) in deploy/rbac.yaml grant.
fn granted(kind: &str) -> BTreeSet<Permission> {
    let yaml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/rbac.yaml")).unwrap();
    let mut out = BTreeSet::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&yaml) {
        let role: serde_json::Value = serde::Deserialize::deserialize(doc).unwrap();
        if role["kind"] != kind {
            continue;
        }
        for rule in role["rules"].as_array().unwrap() {
            for group in rule["apiGroups"].as_array().unwrap() {
                for resource in rule["resources"].as_array().unwrap() {
                    for verb in rule["verbs"].as_array().unwrap() {
                        out.insert((
                            group.as_str().unwrap().into(),
                            resource.as_str().unwrap().into(),
                            verb.as_str().unwrap().into(),
                        ));
                    }
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_role_grants_exactly_what_the_controller_uses() {
    let mut env = Env::start(true, true).await;
    env.install_gateway_api().await;
    let mut config = env.cluster.client_config();
    config.headers.push((http::header::USER_AGENT, http::HeaderValue::from_static(AGENT)));
    let controller_client = kube::Client::try_from(config).unwrap();
    env.apply(&service("{app: my-app}")).await;
    env.apply(&app("v1", 2, &[("sim.forklane.io/conversion-rate", "0.2")])).await;
    env.apply(&app("v2", 2, &[("sim.forklane.io/conversion-rate", "0.3")])).await;
    env.wait_ready("my-app-v1", 2).await;
    env.wait_ready("my-app-v2", 2).await;
    env.start_traffic(1500.0, 300);
    env.start_controller_with(controller_client);
    let long = Duration::from_secs(90);
    // A policy (selecting no namespace of the test): compiled into admission objects, its
    // condition written.
    env.apply(POLICY).await;
    env.wait_policy_admitted("rbac-test", long).await;
    // Istio routing with an analysis, then deletion (the finalizer restores routing).
    let mesh = ExperimentBuilder::ab_test("mesh").mesh(MeshMode::Istio).split([("v1", 50), ("v2", 50)]);
    env.apply_experiment(mesh.analysis(analysis([conversion()]).min_samples_per_arm(300))).await;
    env.wait_for_phase("mesh", long, &[Phase::Succeeded]).await;
    env.experiments().delete("mesh", &DeleteParams::default()).await.unwrap();
    env.wait_gone("mesh", long).await;
    let vs: kube::Api<forklane_core::istio::VirtualService> = kube::Api::namespaced(env.client.clone(), NS);
    let kept = vs.get("mesh-forklane").await.expect("the routing outlives the experiment");
    assert_eq!(split(&serde_json::to_value(&kept).unwrap()).get("v2"), Some(&100), "the winner keeps the traffic");
    // The Gateway API: an HTTPRoute and a Service per arm, the loser's Service deleted at the end.
    let gateway = ExperimentBuilder::canary("gateway").provider(forklane_core::api::Provider::GatewayApi);
    env.apply_experiment(gateway.steps([set_weight(50)])).await;
    env.wait_for_phase("gateway", long, &[Phase::Succeeded]).await;
    let services: kube::Api<k8s_openapi::api::core::v1::Service> = kube::Api::namespaced(env.client.clone(), NS);
    let deadline = tokio::time::Instant::now() + long;
    while services.get_opt("my-app-v1").await.unwrap().is_some() {
        assert!(tokio::time::Instant::now() < deadline, "the loser's Service is deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Native routing: Service selector and replicas; a command the controller clears. The Service
    // selects v1 only, as before a native canary, so the controller has a selector to change.
    env.apply(&service("{app: my-app, version: v1}")).await;
    let native = ExperimentBuilder::canary("native").mesh(MeshMode::None).total_replicas(4);
    env.apply_experiment(native.steps([set_weight(25), pause()])).await;
    env.wait_for("native", long, |e| e.status.as_ref().is_some_and(|s| s.phase == Some(Phase::Paused))).await;
    let promote = forklane_core::controller::commands::patch(&forklane_core::controller::commands::Command::Promote(
        forklane_core::controller::commands::Promote::Next,
    ));
    env.experiments()
        .patch("native", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(promote))
        .await
        .unwrap();
    env.wait_for_phase("native", long, &[Phase::Succeeded]).await;
    env.stop_controller().await;

    let records = env.cluster.audit().records();
    let used: BTreeSet<Permission> = records
        .iter()
        .filter(|r| r.user_agent == AGENT)
        .map(|r| (r.group.clone(), r.rbac_resource(), r.verb.clone()))
        .collect();
    assert!(!used.is_empty(), "the audit saw the controller");
    let granted = granted("ClusterRole");
    let missing: Vec<&Permission> = used.difference(&granted).collect();
    assert!(missing.is_empty(), "the controller uses permissions deploy/rbac.yaml does not grant: {missing:?}");
    // Patching an event happens only when the same event repeats within a series; deleting
    // routing only when a deleted experiment left some on a host the next one takes over.
    let optional: BTreeSet<Permission> = [
        ("events.k8s.io", "events", "patch"),
        ("networking.istio.io", "virtualservices", "delete"),
        ("networking.istio.io", "destinationrules", "delete"),
        ("gateway.networking.k8s.io", "httproutes", "delete"),
    ]
    .map(|(g, r, v)| (g.to_string(), r.to_string(), v.to_string()))
    .into();
    let unused: Vec<&Permission> = granted.difference(&used).filter(|p| !optional.contains(*p)).collect();
    assert!(unused.is_empty(), "deploy/rbac.yaml grants permissions the controller never used: {unused:?}");
    env.shutdown().await;
}

const POLICY: &str = r#"
apiVersion: forklane.io/v1alpha1
kind: RolloutPolicy
metadata: {name: rbac-test}
spec:
  namespaceSelector: {matchLabels: {forklane.io/test: none}}
  rules: [{name: anything, expression: "true"}]
"#;

/// The leader-election Role: two replicas split two shards (`--shards 2`: a Lease per shard and
/// a member Lease per replica), the first takes both, hands one over when the second joins, and
/// releases its own on shutdown for the second to take; the Lease requests they make are exactly
/// what the Role grants (with one shard they use a subset: no member Leases).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_election_role_grants_exactly_what_the_replicas_use() {
    let env = Env::start(false, true).await;
    let mut config = env.cluster.client_config();
    config.headers.push((http::header::USER_AGENT, http::HeaderValue::from_static(AGENT)));
    let client = kube::Client::try_from(config).unwrap();
    let replica = |identity: &str| {
        let shards = (0..2)
            .map(|_| {
                let fence = Fence::new();
                let fenced = fenced_client(env.cluster.client_config(), fence.clone(), None).unwrap();
                let ctx = Context::new(fenced, env.clock, env.analyst.clone(), Arc::new(Metrics::default()));
                Shard::fenced(Arc::new(ctx), fence)
            })
            .collect();
        let lease = LeaseSettings {
            namespace: NS.into(),
            name: AGENT.into(),
            identity: identity.into(),
            duration: 2,
            grace: 1,
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(lead(client.clone(), lease, shards, Scope::default(), async move {
            let _ = stopped.await;
        }));
        (stop, task)
    };
    let leases: kube::Api<Lease> = kube::Api::namespaced(env.client.clone(), NS);
    let holders = || async {
        let mut held = Vec::new();
        for shard in 0..2 {
            let lease = leases.get_opt(&shard_lease(AGENT, shard, 2)).await.unwrap();
            held.push(lease.and_then(|l| l.spec).and_then(|s| s.holder_identity).unwrap_or_default());
        }
        held
    };
    let wait_for_holders = |want: &'static [&'static str]| async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut held = holders().await;
        while held != want {
            assert!(tokio::time::Instant::now() < deadline, "the shards' holders are {held:?}, never {want:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
            held = holders().await;
        }
    };
    let (stop_a, task_a) = replica("a");
    wait_for_holders(&["a", "a"]).await;
    let (stop_b, task_b) = replica("b");
    // The first replica releases the shard beyond its fair share (the highest) to the second.
    wait_for_holders(&["a", "b"]).await;
    stop_a.send(()).unwrap();
    task_a.await.unwrap().expect("a leads and releases");
    wait_for_holders(&["b", "b"]).await;
    stop_b.send(()).unwrap();
    task_b.await.unwrap().expect("b leads and releases");
    wait_for_holders(&["", ""]).await;

    let used: BTreeSet<Permission> = env
        .cluster
        .audit()
        .records()
        .iter()
        .filter(|r| r.user_agent == AGENT && r.group == "coordination.k8s.io")
        .map(|r| (r.group.clone(), r.rbac_resource(), r.verb.clone()))
        .collect();
    assert_eq!(
        used,
        granted("Role"),
        "the leader-election Role in deploy/rbac.yaml grants exactly what the replicas use"
    );
    env.shutdown().await;
}
