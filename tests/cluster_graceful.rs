//! Graceful pod deletion and the API server's clock: kube-rs against the store's semantics,
//! real kubectl for `Terminating`, `--force`, ages on a sped-up clock, and `kubectl delete pod`
//! waiting for the kubelet (the workload simulator) to finish the pod.

use crate::support;
use support::cluster::{cluster, obj};
use support::kubectl::Kubectl;

use forklane_core::clock::{Clock, parse_time};
use forklane_sim::cluster::{Cluster, ClusterConfig};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::json;
use std::time::{Duration, Instant};

fn pod(name: &str, node: Option<&str>) -> Pod {
    obj(
        json!({"metadata": {"name": name}, "spec": {"nodeName": node, "containers": [{"name": "app", "image": "nginx"}]}}),
    )
}

fn deadline(p: &Pod) -> jiff::Timestamp {
    parse_time(&p.metadata.deletion_timestamp.as_ref().expect("deletionTimestamp").0.to_string()).unwrap()
}

#[tokio::test]
async fn a_bound_pod_is_kept_for_its_grace_period_which_may_only_shorten() {
    let c = cluster().await;
    let pods: Api<Pod> = Api::namespaced(c.client(), "default");
    pods.create(&PostParams::default(), &pod("bound", Some("node-1"))).await.unwrap();
    pods.create(&PostParams::default(), &pod("unscheduled", None)).await.unwrap();

    let before = jiff::Timestamp::now();
    let kept = pods.delete("bound", &DeleteParams::default()).await.unwrap().left().expect("the pod is returned");
    assert_eq!(kept.metadata.deletion_grace_period_seconds, Some(30), "terminationGracePeriodSeconds defaults to 30");
    let at = deadline(&kept);
    assert!((at.as_second() - before.as_second() - 30).abs() <= 2, "deletionTimestamp is now + 30 s: {at}");
    assert!(pods.get_opt("bound").await.unwrap().is_some());

    let longer = pods
        .delete("bound", &DeleteParams { grace_period_seconds: Some(60), ..Default::default() })
        .await
        .unwrap()
        .left()
        .unwrap();
    assert_eq!(
        (deadline(&longer), longer.metadata.resource_version.clone()),
        (at, kept.metadata.resource_version.clone()),
        "a longer period changes nothing"
    );
    let shorter = pods
        .delete("bound", &DeleteParams { grace_period_seconds: Some(10), ..Default::default() })
        .await
        .unwrap()
        .left()
        .unwrap();
    assert_eq!(
        (shorter.metadata.deletion_grace_period_seconds, deadline(&shorter).as_second()),
        (Some(10), at.as_second() - 20)
    );

    // Writes during the grace period (the kubelet's status updates) keep the pod.
    pods.patch("bound", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"stopping": "yes"}}})))
        .await
        .unwrap();
    assert!(pods.get_opt("bound").await.unwrap().is_some());

    // The kubelet's final delete.
    let uid = kept.metadata.uid.clone();
    let last = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions { uid, resource_version: None }),
        ..Default::default()
    };
    pods.delete("bound", &last).await.unwrap();
    assert!(pods.get_opt("bound").await.unwrap().is_none());

    pods.delete("unscheduled", &DeleteParams::default()).await.unwrap();
    assert!(pods.get_opt("unscheduled").await.unwrap().is_none(), "a pod never scheduled goes at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_shows_terminating_and_ages_on_the_clusters_clock() {
    // 600 simulated seconds per real second, no kubelet: the pod stays Terminating.
    let c = Cluster::start(ClusterConfig { clock: Clock::scaled(600.0), ..Default::default() }).await.unwrap();
    let k = Kubectl::new(&c, &std::env::temp_dir());
    let manifest = k.file("pod.yaml", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  nodeName: node-1\n  containers:\n  - name: app\n    image: nginx\n");
    k.ok(&["apply", "-f", &manifest]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let row = k.ok(&["get", "po", "web", "--no-headers"]).await;
    let age = row.split_whitespace().last().unwrap();
    let minutes: u64 =
        age.strip_suffix('m').and_then(|m| m.parse().ok()).unwrap_or_else(|| panic!("AGE in whole minutes: {row}"));
    assert!((10..30).contains(&minutes), "one real second is ten simulated minutes: {row}");

    k.ok(&["delete", "po", "web", "--wait=false"]).await;
    let row = k.ok(&["get", "po", "web", "--no-headers"]).await;
    assert_eq!(row.split_whitespace().nth(2), Some("Terminating"), "{row}");
    let out = k.run(&["delete", "po", "web", "--grace-period=0", "--force"]).await;
    assert!(out.ok, "{}", out.stderr);
    assert!(k.ok(&["get", "po", "--no-headers", "--ignore-not-found"]).await.trim().is_empty(), "forced: gone at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_delete_pod_waits_for_the_kubelet() {
    // At 2x the kubelet stops the containers 2 simulated seconds after the deletion: 1 s.
    let config = ClusterConfig { clock: Clock::scaled(2.0), workloads: true, ..Default::default() };
    let c = Cluster::start(config).await.unwrap();
    let seed = std::path::PathBuf::from(file!()).parent().unwrap().join("fixtures/seed");
    let k = Kubectl::new(&c, &seed);
    k.ok(&["apply", "-f", "app-v1.yaml"]).await;
    k.ok(&["rollout", "status", "deploy/my-app", "--timeout=60s"]).await;
    let name = k.ok(&["get", "po", "-l", "app=my-app", "-o", "jsonpath={.items[0].metadata.name}"]).await;

    let started = Instant::now();
    let mut delete = k.command(&["delete", "pod", &name]).stdout(std::process::Stdio::null()).spawn().unwrap();
    let mut terminating = false;
    while delete.try_wait().unwrap().is_none() {
        let row = k.run(&["get", "po", &name, "--no-headers"]).await.stdout;
        terminating |= row.split_whitespace().nth(2) == Some("Terminating");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(delete.wait().await.unwrap().success());
    assert!(terminating, "the pod showed Terminating while the kubelet stopped it");
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "kubectl delete returned before the pod was gone: {:?}",
        started.elapsed()
    );
    assert!(!k.run(&["get", "po", &name]).await.ok, "the pod is gone when kubectl delete returns");
}
