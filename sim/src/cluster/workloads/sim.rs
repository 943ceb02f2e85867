//! A store-less world for testing the controllers together (test-only). It applies their
//! writes with the apiserver essentials they rely on — generateName, uids, generation,
//! defaults, graceful pod deletion, background cascading — and moves simulated time from
//! one timer to the next, so whole rollouts run in microseconds.

use super::pods::{IpPool, KubeletSettings, reconcile_pod};
use super::{Kind, Reconciled, Write, deployment, endpoints, objects, replicaset};
use crate::cluster::defaults;
use forklane_core::clock::{Time, add_secs, format_time};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};

pub(crate) struct World {
    pub now: Time,
    objects: BTreeMap<(u8, String), Value>,
    serial: u64,
    ips: IpPool,
    pub settings: KubeletSettings,
}

fn tag(kind: Kind) -> u8 {
    kind as u8
}

impl World {
    pub(crate) fn new() -> Self {
        World {
            now: "2024-01-01T00:00:00Z".parse().unwrap(),
            objects: BTreeMap::new(),
            serial: 0,
            ips: IpPool::default(),
            settings: KubeletSettings::default(),
        }
    }

    pub(crate) fn list(&self, kind: Kind) -> Vec<Value> {
        self.objects.iter().filter(|((k, _), _)| *k == tag(kind)).map(|(_, v)| v.clone()).collect()
    }

    pub(crate) fn get(&self, kind: Kind, name: &str) -> Option<Value> {
        self.objects.get(&(tag(kind), name.to_string())).cloned()
    }

    /// Creates as the apiserver would (defaults, name, uid, timestamps).
    pub(crate) fn create(&mut self, kind: Kind, mut obj: Value) -> Value {
        self.serial += 1;
        let meta = &mut obj["metadata"];
        if meta["name"].as_str().is_none_or(str::is_empty) {
            // Deterministic stand-in for the 5 random generateName characters.
            meta["name"] = json!(format!("{}{:05}", meta["generateName"].as_str().unwrap_or_default(), self.serial));
        }
        meta["namespace"] = json!("default");
        meta["uid"] = json!(format!("uid-{:06}", self.serial));
        meta["creationTimestamp"] = json!(format_time(self.now));
        match kind {
            Kind::Deployment => {
                defaults::deployment(&mut obj);
                obj["metadata"]["generation"] = json!(1);
                obj["status"] = json!({});
            }
            Kind::ReplicaSet => {
                defaults::replica_set(&mut obj);
                obj["metadata"]["generation"] = json!(1);
                obj["status"] = json!({"replicas": 0});
            }
            Kind::Pod => {
                defaults::pod(&mut obj);
                obj["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
            }
            _ => {}
        }
        self.objects.insert((tag(kind), objects::name(&obj).to_string()), obj.clone());
        obj
    }

    /// A user's (or a controller's) update of the main resource: status kept, generation
    /// moved on spec changes.
    pub(crate) fn update(&mut self, kind: Kind, mut obj: Value) {
        let key = (tag(kind), objects::name(&obj).to_string());
        let Some(old) = self.objects.get(&key) else { return };
        obj["status"] = old["status"].clone();
        for f in ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"] {
            obj["metadata"][f] = old["metadata"][f].clone();
        }
        if matches!(kind, Kind::Deployment | Kind::ReplicaSet) && old["spec"] != obj["spec"] {
            obj["metadata"]["generation"] = json!(objects::generation(old) + 1);
        }
        self.objects.insert(key, obj);
    }

    fn update_status(&mut self, kind: Kind, obj: Value) {
        if let Some(old) = self.objects.get_mut(&(tag(kind), objects::name(&obj).to_string())) {
            old["status"] = obj["status"].clone();
        }
    }

    /// Deletion with the pod strategy's grace period and background cascading.
    pub(crate) fn delete(&mut self, kind: Kind, name: &str, grace: Option<i64>) {
        let key = (tag(kind), name.to_string());
        let Some(obj) = self.objects.get(&key).cloned() else { return };
        if kind == Kind::Pod {
            let bound = obj["spec"]["nodeName"].as_str().is_some_and(|n| !n.is_empty());
            let terminal = matches!(objects::phase(&obj), "Succeeded" | "Failed");
            let grace = grace.unwrap_or_else(|| obj["spec"]["terminationGracePeriodSeconds"].as_i64().unwrap_or(30));
            if bound && !terminal && grace > 0 {
                if !objects::is_deleting(&obj) {
                    let o = self.objects.get_mut(&key).unwrap();
                    o["metadata"]["deletionTimestamp"] = json!(format_time(add_secs(self.now, grace)));
                    o["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
                }
                return;
            }
        }
        self.objects.remove(&key);
        let uid = objects::uid(&obj).to_string();
        let dependents: Vec<(u8, String)> =
            self.objects.iter().filter(|(_, v)| objects::controlled_by(v, &uid)).map(|(k, _)| k.clone()).collect();
        for (k, n) in dependents {
            let kind = [Kind::ReplicaSet, Kind::Pod, Kind::EndpointSlice].into_iter().find(|x| tag(*x) == k).unwrap();
            self.delete(kind, &n, None);
        }
    }

    fn apply(&mut self, r: Reconciled) -> (usize, Option<Time>) {
        let n = r.writes.len();
        for w in r.writes {
            match w {
                Write::Create { kind, object, .. } => {
                    self.create(kind, object);
                }
                Write::Update { kind, object, .. } => self.update(kind, object),
                Write::UpdateStatus { kind, object, .. } => self.update_status(kind, object),
                Write::Delete { kind, name, grace_period_seconds, .. } => {
                    self.delete(kind, &name, grace_period_seconds)
                }
            }
        }
        (n, r.requeue_at)
    }

    /// One pass of every controller, in the driver's order; returns (writes, next timer).
    fn pass(&mut self) -> (usize, Option<Time>) {
        let mut total = Reconciled::default();
        let mut writes = 0;
        let mut run = |w: &mut World, r: Reconciled| {
            let (n, t) = w.apply(r);
            writes += n;
            if let Some(t) = t {
                total.requeue(t);
            }
        };
        for d in self.list(Kind::Deployment) {
            let rss = self.list(Kind::ReplicaSet);
            let r = deployment::reconcile_deployment(&d, &rss, &rss, &self.list(Kind::Pod), self.now);
            run(self, r);
        }
        for rs in self.list(Kind::ReplicaSet) {
            let r = replicaset::reconcile_replica_set(&rs, &self.list(Kind::Pod), self.now);
            run(self, r);
        }
        let pods = self.list(Kind::Pod);
        let mut used: HashSet<String> =
            pods.iter().filter_map(|p| p["status"]["podIP"].as_str().map(String::from)).collect();
        for pod in pods {
            let mut ips = std::mem::take(&mut self.ips);
            let r = reconcile_pod(&pod, self.now, &self.settings.clone(), &mut || {
                let ip = ips.allocate(&used);
                used.insert(ip.clone());
                ip
            });
            self.ips = ips;
            run(self, r);
        }
        for svc in self.list(Kind::Service) {
            let r = endpoints::reconcile_service(
                &svc,
                &self.list(Kind::Pod),
                &self.list(Kind::Endpoints),
                &self.list(Kind::EndpointSlice),
                self.now,
            );
            run(self, r);
        }
        (writes, total.requeue_at)
    }

    /// Runs passes until one writes nothing and returns the timer that pass asked for.
    /// Simulated time moves on by the next of `lags` (milliseconds, taken in turn) after each
    /// pass, as it does while the driver's passes compute on a fast clock, so the
    /// controllers look late.
    pub(crate) fn settle(&mut self, lags: &[i64], next_lag: &mut usize) -> Option<Time> {
        for _ in 0..1000 {
            let (writes, t) = self.pass();
            self.now +=
                jiff::SignedDuration::from_millis(lags.get(*next_lag % lags.len().max(1)).copied().unwrap_or(0));
            *next_lag += 1;
            if writes == 0 {
                return t;
            }
        }
        panic!("the controllers never stop writing");
    }

    /// Runs passes until nothing changes, calling `check` after each pass; then jumps to the
    /// next timer; stops at `limit` (simulated seconds from now) or when nothing is pending.
    pub(crate) fn run_for(&mut self, seconds: i64, check: &mut dyn FnMut(&World)) {
        let limit = add_secs(self.now, seconds);
        loop {
            let mut next = None;
            for _ in 0..1000 {
                let (writes, t) = self.pass();
                check(self);
                next = t;
                if writes == 0 {
                    break;
                }
            }
            match next {
                Some(t) if t <= limit => self.now = t.max(add_secs(self.now, 0)),
                _ => {
                    self.now = limit;
                    let _ = self.pass();
                    check(self);
                    return;
                }
            }
        }
    }
}

/// The article's app: Deployment `my-app` with label `version`, ports http (8080) and
/// probe (8086), a readiness probe with `initialDelaySeconds: 5` and `periodSeconds: 5`.
pub(crate) fn article_deployment(replicas: i64, version: &str, strategy: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "my-app", "labels": {"app": "my-app"}},
        "spec": {
            "replicas": replicas,
            "strategy": strategy,
            "selector": {"matchLabels": {"app": "my-app"}},
            "template": {
                "metadata": {"labels": {"app": "my-app", "version": version}},
                "spec": {"containers": [{
                    "name": "my-app",
                    "image": "containersol/k8s-deployment-strategies",
                    "ports": [{"name": "http", "containerPort": 8080}, {"name": "probe", "containerPort": 8086}],
                    "env": [{"name": "VERSION", "value": version}],
                    "readinessProbe": {"httpGet": {"path": "/ready", "port": "probe"}, "initialDelaySeconds": 5, "periodSeconds": 5},
                }]},
            },
        },
    })
}

/// Sets the version of the Deployment's template, as `kubectl apply` of the v2 manifest does.
pub(crate) fn set_version(world: &mut World, version: &str) {
    let mut d = world.get(Kind::Deployment, "my-app").unwrap();
    d["spec"]["template"]["metadata"]["labels"]["version"] = json!(version);
    d["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] = json!(version);
    world.update(Kind::Deployment, d);
}

/// Pods by version: (active, active and ready, terminating).
pub(crate) fn census(world: &World) -> BTreeMap<String, (usize, usize, usize)> {
    let mut out: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
    for p in world.list(Kind::Pod) {
        let v = p["metadata"]["labels"]["version"].as_str().unwrap_or_default().to_string();
        let e = out.entry(v).or_default();
        if objects::is_deleting(&p) {
            e.2 += 1;
        } else {
            e.0 += 1;
            if objects::is_pod_ready(&p) {
                e.1 += 1;
            }
        }
    }
    out
}
