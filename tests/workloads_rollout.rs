//! The workload simulator on the real in-process store with a fast clock: the article's
//! rolling-update and recreate walkthroughs, observed through watch events as
//! `kubectl get po -w` would see them, and the Service's endpoints following pod readiness.

use forklane_core::clock::Clock;
use forklane_sim::cluster::resources::Gvr;
use forklane_sim::cluster::store::{ListParams, Patch, Store, StoreConfig, WatchEvent, WatchParams, WriteOptions};
use forklane_sim::cluster::workloads::start_workloads;
use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

const SPEED: f64 = 40.0;

fn gvr(group: &str, resource: &str) -> Gvr {
    Gvr::new(group, "v1", resource)
}

fn opts(manager: &str) -> WriteOptions {
    WriteOptions { field_manager: Some(manager.into()), ..Default::default() }
}

/// A store on the simulator's fast clock.
fn store() -> Store {
    let store = Store::new(StoreConfig::default(), Clock::scaled(SPEED));
    store.create(&gvr("", "namespaces"), None, json!({"metadata": {"name": "default"}}), &opts("test")).unwrap();
    store
}

/// The article's `app-v1.yaml` (its indentation restored), strategy and replicas varying.
fn deployment(replicas: i64, version: &str, strategy: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "my-app", "labels": {"app": "my-app"}},
        "spec": {
            "replicas": replicas,
            "strategy": strategy,
            "selector": {"matchLabels": {"app": "my-app"}},
            "template": {
                "metadata": {"labels": {"app": "my-app", "version": version}, "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9101"}},
                "spec": {"containers": [{
                    "name": "my-app",
                    "image": "containersol/k8s-deployment-strategies",
                    "ports": [{"name": "http", "containerPort": 8080}, {"name": "probe", "containerPort": 8086}],
                    "env": [{"name": "VERSION", "value": version}],
                    "livenessProbe": {"httpGet": {"path": "/live", "port": "probe"}, "initialDelaySeconds": 5, "periodSeconds": 5},
                    "readinessProbe": {"httpGet": {"path": "/ready", "port": "probe"}, "periodSeconds": 5},
                }]},
            },
        },
    })
}

fn service() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "my-app", "labels": {"app": "my-app"}},
        "spec": {"type": "NodePort", "ports": [{"name": "http", "port": 80, "targetPort": "http"}], "selector": {"app": "my-app"}},
    })
}

fn rolled_out(d: &Value) -> bool {
    let s = &d["status"];
    let get = |k: &str| s[k].as_i64().unwrap_or(0);
    get("observedGeneration") >= d["metadata"]["generation"].as_i64().unwrap_or(1)
        && get("updatedReplicas") == d["spec"]["replicas"].as_i64().unwrap()
        && get("replicas") == get("updatedReplicas")
        && get("availableReplicas") >= get("updatedReplicas")
}

async fn wait_rolled_out(store: &Store) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let d = store.get(&gvr("apps", "deployments"), Some("default"), "my-app").unwrap();
        if rolled_out(&d) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "not rolled out: {:#}", d["status"]);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Pods as `kubectl get po -w` sees them, from the watch events.
#[derive(Default)]
struct Pods(BTreeMap<String, Value>);

impl Pods {
    fn apply(&mut self, ev: &WatchEvent) {
        let name = ev.object["metadata"]["name"].as_str().unwrap().to_string();
        match ev.kind {
            "DELETED" => {
                self.0.remove(&name);
            }
            _ => {
                self.0.insert(name, ev.object.clone());
            }
        }
    }

    /// (existing pods incl. terminating, active, ready-and-active) per version.
    fn census(&self) -> BTreeMap<String, (usize, usize, usize)> {
        let mut out: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
        for p in self.0.values() {
            let e = out.entry(p["metadata"]["labels"]["version"].as_str().unwrap().to_string()).or_default();
            e.0 += 1;
            if p["metadata"]["deletionTimestamp"].is_null() {
                e.1 += 1;
                let ready = p["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True");
                e.2 += usize::from(ready);
            }
        }
        out
    }
}

async fn watch_until_rolled_out(store: &Store, rv: u64, mut check: impl FnMut(&Pods)) -> Pods {
    let params = WatchParams { resource_version: Some(rv.to_string()), ..Default::default() };
    let mut watch = store.watch(&gvr("", "pods"), Some("default"), params).unwrap();
    let mut pods = Pods::default();
    for p in store
        .list(&gvr("", "pods"), Some("default"), &ListParams { resource_version: None, ..Default::default() })
        .unwrap()["items"]
        .as_array()
        .unwrap()
    {
        // Resuming at `rv` replays from there; seed with what existed at that version.
        if p["metadata"]["resourceVersion"].as_str().unwrap().parse::<u64>().unwrap() <= rv {
            pods.0.insert(p["metadata"]["name"].as_str().unwrap().to_string(), p.clone());
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        // The last pod event comes before the Deployment's final status: look at it now and then.
        match tokio::time::timeout(Duration::from_millis(50), watch.next()).await {
            Ok(ev) => {
                pods.apply(&ev.expect("watch open"));
                check(&pods);
            }
            Err(_) if tokio::time::Instant::now() > deadline => {
                let d = store.get(&gvr("apps", "deployments"), Some("default"), "my-app").unwrap();
                let rss = store.list(&gvr("apps", "replicasets"), Some("default"), &ListParams::default()).unwrap();
                let sizes: Vec<(&Value, &Value)> =
                    rss["items"].as_array().unwrap().iter().map(|r| (&r["spec"]["replicas"], &r["status"])).collect();
                panic!(
                    "rollout unfinished: pods {:?}, deployment {:#}, replica sets {sizes:?}",
                    pods.census(),
                    d["status"]
                );
            }
            Err(_) => {}
        }
        let d = store.get(&gvr("apps", "deployments"), Some("default"), "my-app").unwrap();
        let c = pods.census();
        if rolled_out(&d) && c.len() == 1 && c.values().all(|v| v.0 == v.2) {
            return pods;
        }
    }
}

fn update_version(store: &Store, version: &str) -> u64 {
    let rv = store.resource_version();
    let patch = json!({"spec": {"template": {"metadata": {"labels": {"version": version}}, "spec": {"containers": [{"name": "my-app", "env": [{"name": "VERSION", "value": version}]}]}}}});
    store
        .patch(
            &gvr("apps", "deployments"),
            Some("default"),
            "my-app",
            Patch::Strategic(patch),
            &opts("kubectl-client-side-apply"),
        )
        .unwrap();
    rv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_max_surge_1_max_unavailable_0() {
    let store = store();
    let _sim = start_workloads(store.clone(), store.clock());
    store.create(&gvr("", "services"), Some("default"), service(), &opts("kubectl")).unwrap();
    let strategy = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}});
    store
        .create(&gvr("apps", "deployments"), Some("default"), deployment(10, "v1.0.0", strategy), &opts("kubectl"))
        .unwrap();
    wait_rolled_out(&store).await;

    let rv = update_version(&store, "v2.0.0");
    let mut max_active = 0;
    let mut min_ready = usize::MAX;
    let mut mixed = false;
    let pods = watch_until_rolled_out(&store, rv, |pods| {
        let c = pods.census();
        max_active = max_active.max(c.values().map(|v| v.1).sum());
        min_ready = min_ready.min(c.values().map(|v| v.2).sum());
        mixed |= c.get("v1.0.0").is_some_and(|v| v.2 > 0) && c.get("v2.0.0").is_some_and(|v| v.2 > 0);
    })
    .await;
    assert!(max_active <= 11, "maxSurge 1: at most 11 active pods, saw {max_active}");
    assert!(min_ready >= 10, "maxUnavailable 0: never fewer than 10 ready, saw {min_ready}");
    assert!(mixed, "both versions served during the rollout");
    assert_eq!(pods.census()["v2.0.0"].2, 10);

    // Pods as a real cluster shows them.
    let pod = pods.0.values().next().unwrap();
    assert_eq!(pod["spec"]["nodeName"], "forklane-node");
    assert!(pod["status"]["podIP"].as_str().unwrap().starts_with("10.244."));
    let cs = &pod["status"]["containerStatuses"][0];
    assert_eq!(
        (cs["ready"].as_bool(), cs["started"].as_bool(), cs["restartCount"].as_i64()),
        (Some(true), Some(true), Some(0))
    );
    assert!(cs["state"]["running"]["startedAt"].is_string());
    let managers: Vec<&str> =
        pod["metadata"]["managedFields"].as_array().unwrap().iter().filter_map(|m| m["manager"].as_str()).collect();
    for m in ["kube-controller-manager", "kube-scheduler", "kubelet"] {
        assert!(managers.contains(&m), "{m} in {managers:?}");
    }

    // Endpoints and EndpointSlices list exactly the ten v2 pods, targetPort `http` resolved.
    let ips: Vec<&str> = pods.0.values().map(|p| p["status"]["podIP"].as_str().unwrap()).collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ep = store.get(&gvr("", "endpoints"), Some("default"), "my-app").unwrap();
    let subset = &ep["subsets"][0];
    assert_eq!(subset["ports"], json!([{"name": "http", "port": 8080, "protocol": "TCP"}]));
    let mut got: Vec<&str> =
        subset["addresses"].as_array().unwrap().iter().map(|a| a["ip"].as_str().unwrap()).collect();
    let mut want = ips.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    assert!(subset.get("notReadyAddresses").is_none());
    let slices = store
        .list(
            &gvr("discovery.k8s.io", "endpointslices"),
            Some("default"),
            &ListParams { label_selector: Some("kubernetes.io/service-name=my-app".into()), ..Default::default() },
        )
        .unwrap();
    let slice_ips: Vec<&str> = slices["items"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["endpoints"].as_array().unwrap())
        .filter(|e| e["conditions"]["ready"] == true)
        .map(|e| e["addresses"][0].as_str().unwrap())
        .collect();
    assert_eq!(slice_ips.len(), 10);

    // Steady state: the controllers find nothing to write.
    let settled = store.resource_version();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(store.resource_version(), settled, "no writes once rolled out");

    let rss = store.list(&gvr("apps", "replicasets"), Some("default"), &ListParams::default()).unwrap();
    let mut revisions: Vec<(String, i64)> = rss["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rs| {
            (
                rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"].as_str().unwrap().to_string(),
                rs["spec"]["replicas"].as_i64().unwrap(),
            )
        })
        .collect();
    revisions.sort();
    assert_eq!(revisions, vec![("1".to_string(), 0), ("2".to_string(), 10)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_terminates_every_old_pod_before_the_first_new_one() {
    let store = store();
    let _sim = start_workloads(store.clone(), store.clock());
    store.create(&gvr("", "services"), Some("default"), service(), &opts("kubectl")).unwrap();
    store
        .create(
            &gvr("apps", "deployments"),
            Some("default"),
            deployment(3, "v1.0.0", json!({"type": "Recreate"})),
            &opts("kubectl"),
        )
        .unwrap();
    wait_rolled_out(&store).await;

    let rv = update_version(&store, "v2.0.0");
    let mut outage = false;
    let pods = watch_until_rolled_out(&store, rv, |pods| {
        let c = pods.census();
        assert!(c.len() <= 1, "old and new pods at once: {c:?}");
        outage |= c.is_empty();
    })
    .await;
    assert!(outage, "no pod at all between the versions");
    assert_eq!(pods.census()["v2.0.0"].2, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_follow_readiness() {
    let store = store();
    let _sim = start_workloads(store.clone(), store.clock());
    store.create(&gvr("", "services"), Some("default"), service(), &opts("kubectl")).unwrap();
    let rv = store.resource_version();
    let params = WatchParams { resource_version: Some(rv.to_string()), ..Default::default() };
    let mut watch = store.watch(&gvr("", "endpoints"), Some("default"), params).unwrap();
    let mut d = deployment(1, "v1.0.0", json!({"type": "Recreate"}));
    d["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["initialDelaySeconds"] = json!(5);
    store.create(&gvr("apps", "deployments"), Some("default"), d, &opts("kubectl")).unwrap();
    // The pod first shows as not ready (it has an IP before its first probe), then ready; the
    // Endpoints may or may not be written empty before, depending on when the controller syncs.
    let mut seen = vec![];
    while seen.last().map(String::as_str) != Some("ready") {
        let ev = tokio::time::timeout(Duration::from_secs(10), watch.next()).await.unwrap().unwrap();
        let s = &ev.object["subsets"][0];
        let state = if s["addresses"].is_array() {
            "ready"
        } else if s["notReadyAddresses"].is_array() {
            "not-ready"
        } else {
            "empty"
        };
        if seen.last().map(String::as_str) != Some(state) {
            seen.push(state.to_string());
        }
    }
    let from_pod: Vec<&str> = seen.iter().map(String::as_str).skip_while(|s| *s == "empty").collect();
    assert_eq!(from_pod, ["not-ready", "ready"], "{seen:?}");
}
