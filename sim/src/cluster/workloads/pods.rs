//! What the scheduler and the kubelet of the single simulated node do to pods, as seen
//! through the API: binding, Pending → Running with container statuses and an IP, readiness
//! from the readinessProbe's timing, and graceful termination.

use super::hash::fnv32a;
use super::objects::{is_deleting, name, namespace, phase, pod_condition, uid};
use super::{Kind, Reconciled, Write};
use forklane_core::clock::{Time, add_secs, format_time, parse_time, truncate};
use serde_json::{Value, json};
use std::collections::HashSet;

const SCHEDULER: &str = "kube-scheduler";
const KUBELET: &str = "kubelet";

#[derive(Debug, Clone)]
pub struct KubeletSettings {
    pub node_name: String,
    pub host_ip: String,
    /// Simulated seconds from the kubelet seeing a pod to its containers running (sandbox,
    /// image pull, start).
    pub container_start_seconds: i64,
    /// Simulated seconds a deleted pod's containers take to stop after SIGTERM, capped by
    /// its grace period (`terminationGracePeriodSeconds`, 30 by default): the pod lingers
    /// as Terminating this long. Real applications usually exit well before the grace
    /// period ends; 2 s keeps demos brisk while the overlap stays visible.
    pub termination_seconds: i64,
}

impl Default for KubeletSettings {
    fn default() -> Self {
        KubeletSettings {
            node_name: "forklane-node".into(),
            host_ip: "172.18.0.2".into(),
            container_start_seconds: 1,
            termination_seconds: 2,
        }
    }
}

/// Pod IPs from 10.244.0.0/16, handed out in order and wrapping around like the
/// host-local IPAM plugin, so a freed address is not reused at once.
#[derive(Debug, Default, Clone)]
pub(crate) struct IpPool {
    next: u32,
}

impl IpPool {
    pub(crate) fn allocate(&mut self, used: &HashSet<String>) -> String {
        // Host offsets 2..=65534: .0.0 is the network, .0.1 the gateway, .255.255 broadcast.
        const FIRST: u32 = 2;
        const COUNT: u32 = 65_533;
        for _ in 0..COUNT {
            let offset = FIRST + self.next % COUNT;
            self.next = self.next.wrapping_add(1);
            let ip = format!("10.244.{}.{}", offset >> 8, offset & 0xff);
            if !used.contains(&ip) {
                return ip;
            }
        }
        panic!("10.244.0.0/16 exhausted: more than 65,533 pods");
    }
}

/// One look at `pod` by the scheduler and the kubelet.
pub(crate) fn reconcile_pod(
    pod: &Value,
    now: Time,
    settings: &KubeletSettings,
    ip: &mut dyn FnMut() -> String,
) -> Reconciled {
    let mut out = Reconciled::default();
    let bound = pod["spec"]["nodeName"].as_str().is_some_and(|n| !n.is_empty());
    if is_deleting(pod) {
        if bound {
            terminate(pod, now, settings, &mut out);
        }
        return out;
    }
    if !bound {
        bind(pod, now, settings, &mut out);
        return out;
    }
    if matches!(phase(pod), "Succeeded" | "Failed") {
        return out;
    }
    let started = pod["status"]["containerStatuses"].as_array().is_some();
    if !started {
        let mut status = pod["status"].clone();
        first_sync(&mut status, pod, now, settings);
        out.requeue(add_secs(now, settings.container_start_seconds));
        return update_status(pod, status, out);
    }
    let start_time = pod["status"]["startTime"].as_str().and_then(parse_time).unwrap_or(now);
    if phase(pod) == "Pending" {
        let running_at = add_secs(start_time, settings.container_start_seconds);
        if now < running_at {
            out.requeue(running_at);
            return out;
        }
        // Written as of when the containers started, even if we look late, and without
        // later probe results: a watcher sees Running before Ready, as on a real node.
        let mut status = pod["status"].clone();
        start_containers(&mut status, pod, running_at, ip());
        let next = update_readiness(&mut status, pod, running_at);
        if let Some(t) = next {
            out.requeue(t);
        }
        return update_status(pod, status, out);
    }
    let mut status = pod["status"].clone();
    if let Some(t) = update_readiness(&mut status, pod, now) {
        out.requeue(t);
    }
    update_status(pod, status, out)
}

fn update_status(pod: &Value, status: Value, mut out: Reconciled) -> Reconciled {
    if status != pod["status"] {
        let mut p = pod.clone();
        p["status"] = status;
        out.writes.push(Write::UpdateStatus { kind: Kind::Pod, object: p, manager: KUBELET });
    }
    out
}

/// The scheduler's binding: `spec.nodeName` and the PodScheduled condition.
fn bind(pod: &Value, now: Time, settings: &KubeletSettings, out: &mut Reconciled) {
    let mut p = pod.clone();
    p["spec"]["nodeName"] = json!(settings.node_name);
    out.writes.push(Write::Update { kind: Kind::Pod, object: p.clone(), manager: SCHEDULER });
    set_condition(&mut p["status"], pod_condition("PodScheduled", true, now, None, None));
    out.writes.push(Write::UpdateStatus { kind: Kind::Pod, object: p, manager: SCHEDULER });
}

/// Sets a pod condition, keeping its transition time when the status does not change, in
/// the order the kubelet lists them.
fn set_condition(status: &mut Value, cond: Value) {
    const ORDER: [&str; 5] = ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"];
    let kind = cond["type"].as_str().unwrap_or_default().to_string();
    let mut conds: Vec<Value> = status["conditions"].as_array().cloned().unwrap_or_default();
    match conds.iter_mut().find(|c| c["type"] == kind.as_str()) {
        Some(cur) if cur["status"] == cond["status"] => {
            for field in ["reason", "message"] {
                match cond.get(field) {
                    Some(v) => cur[field] = v.clone(),
                    None => {
                        cur.as_object_mut().map(|m| m.remove(field));
                    }
                }
            }
        }
        Some(cur) => *cur = cond,
        None => conds.push(cond),
    }
    conds.sort_by_key(|c| ORDER.iter().position(|o| c["type"] == *o).unwrap_or(ORDER.len()));
    status["conditions"] = json!(conds);
}

fn containers(pod: &Value) -> Vec<&Value> {
    pod["spec"]["containers"].as_array().into_iter().flatten().collect()
}

/// The image reference as containerd reports it: registry and tag made explicit.
fn qualified_image(image: &str) -> (String, String) {
    let (repo, tag) = match image.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r, t),
        _ => (image, "latest"),
    };
    let first = repo.split('/').next().unwrap_or_default();
    let repo = if !repo.contains('/') {
        format!("docker.io/library/{repo}")
    } else if first.contains('.') || first.contains(':') || first == "localhost" {
        repo.to_string()
    } else {
        format!("docker.io/{repo}")
    };
    (format!("{repo}:{tag}"), repo)
}

/// 64 hex digits derived from `seed`, standing in for container IDs and image digests.
fn hex64(seed: &str) -> String {
    (0..8u8).map(|i| format!("{:08x}", fnv32a(format!("{i}{seed}").as_bytes()))).collect()
}

fn unready_message(pod: &Value, ready: &dyn Fn(&str) -> bool) -> String {
    let names: Vec<&str> = containers(pod).iter().filter_map(|c| c["name"].as_str()).filter(|n| !ready(n)).collect();
    format!("containers with unready status: [{}]", names.join(" "))
}

/// The kubelet's first status: Pending, containers being created.
fn first_sync(status: &mut Value, pod: &Value, now: Time, settings: &KubeletSettings) {
    status["phase"] = json!("Pending");
    status["hostIP"] = json!(settings.host_ip);
    status["hostIPs"] = json!([{"ip": settings.host_ip}]);
    status["startTime"] = json!(format_time(now));
    let msg = unready_message(pod, &|_| false);
    set_condition(status, pod_condition("PodReadyToStartContainers", false, now, None, None));
    set_condition(status, pod_condition("Initialized", true, now, None, None));
    set_condition(status, pod_condition("Ready", false, now, Some("ContainersNotReady"), Some(&msg)));
    set_condition(status, pod_condition("ContainersReady", false, now, Some("ContainersNotReady"), Some(&msg)));
    let statuses: Vec<Value> = containers(pod)
        .iter()
        .map(|c| {
            let (image, _) = qualified_image(c["image"].as_str().unwrap_or_default());
            json!({
                "name": c["name"], "image": image, "imageID": "", "ready": false, "restartCount": 0, "started": false,
                "state": {"waiting": {"reason": "ContainerCreating"}}, "lastState": {},
            })
        })
        .collect();
    status["containerStatuses"] = json!(statuses);
}

/// Sandbox up, IP assigned, containers running (not yet ready if they have a probe).
fn start_containers(status: &mut Value, pod: &Value, now: Time, ip: String) {
    status["phase"] = json!("Running");
    status["podIP"] = json!(ip);
    status["podIPs"] = json!([{"ip": ip}]);
    set_condition(status, pod_condition("PodReadyToStartContainers", true, now, None, None));
    let statuses: Vec<Value> = containers(pod)
        .iter()
        .map(|c| {
            let (image, repo) = qualified_image(c["image"].as_str().unwrap_or_default());
            let cname = c["name"].as_str().unwrap_or_default();
            json!({
                "name": cname,
                "containerID": format!("containerd://{}", hex64(&format!("{}/{cname}", uid(pod)))),
                "image": image,
                "imageID": format!("{repo}@sha256:{}", hex64(&image)),
                "ready": false, "restartCount": 0, "started": true,
                "state": {"running": {"startedAt": format_time(now)}}, "lastState": {},
            })
        })
        .collect();
    status["containerStatuses"] = json!(statuses);
}

/// When the readiness probe first succeeds: probes run every `periodSeconds` from the
/// container's start, skipped until `initialDelaySeconds` have passed, and
/// `successThreshold` consecutive successes are needed. No probe: ready at once.
pub(crate) fn ready_at(container: &Value, started: Time) -> Time {
    let probe = &container["readinessProbe"];
    if probe.is_null() {
        return started;
    }
    let delay = probe["initialDelaySeconds"].as_i64().unwrap_or(0).max(0);
    let period = probe["periodSeconds"].as_i64().unwrap_or(10).max(1);
    let threshold = probe["successThreshold"].as_i64().unwrap_or(1).max(1);
    let first = (delay + period - 1) / period;
    add_secs(started, (first + threshold - 1) * period)
}

/// Marks containers ready whose probe has succeeded; returns the next probe success to wait
/// for, if any.
fn update_readiness(status: &mut Value, pod: &Value, now: Time) -> Option<Time> {
    let specs = containers(pod);
    let mut next: Option<Time> = None;
    let mut latest_ready: Option<Time> = None;
    for cs in status["containerStatuses"].as_array_mut().into_iter().flatten() {
        let Some(started) = cs["state"]["running"]["startedAt"].as_str().and_then(parse_time) else { continue };
        let Some(spec) = specs.iter().find(|c| c["name"] == cs["name"]) else { continue };
        let at = ready_at(spec, started);
        if at <= now {
            cs["ready"] = json!(true);
            latest_ready = latest_ready.max(Some(at));
        } else {
            next = Some(next.map_or(at, |n| n.min(at)));
        }
    }
    let ready_names: Vec<String> = status["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["ready"] == true)
        .filter_map(|c| c["name"].as_str().map(String::from))
        .collect();
    let all_ready = next.is_none() && ready_names.len() == specs.len();
    if all_ready {
        // The transition happened at the probe that succeeded, even if we look later.
        let since = truncate(latest_ready.unwrap_or(now));
        set_condition(status, pod_condition("ContainersReady", true, since, None, None));
        set_condition(status, pod_condition("Ready", true, since, None, None));
    } else {
        let msg = unready_message(pod, &|n| ready_names.iter().any(|r| r == n));
        set_condition(status, pod_condition("ContainersReady", false, now, Some("ContainersNotReady"), Some(&msg)));
        set_condition(status, pod_condition("Ready", false, now, Some("ContainersNotReady"), Some(&msg)));
    }
    next
}

/// Graceful termination: the containers' `preStop` hooks run first (the pod keeps serving the
/// connections stale endpoints still send it), then the containers stop `termination_seconds`
/// after SIGTERM; all of it at most the grace period. The pod reaches a terminal phase, then the
/// kubelet removes it with a zero grace period.
fn terminate(pod: &Value, now: Time, settings: &KubeletSettings, out: &mut Reconciled) {
    let Some(deadline) = pod["metadata"]["deletionTimestamp"].as_str().and_then(parse_time) else { return };
    let grace = pod["metadata"]["deletionGracePeriodSeconds"].as_i64().unwrap_or(0);
    let stopping = pre_stop_seconds(pod) + settings.termination_seconds;
    let stop_at = add_secs(deadline, -grace + stopping.min(grace));
    if now < stop_at {
        out.requeue(stop_at);
        return;
    }
    if !matches!(phase(pod), "Succeeded" | "Failed") {
        let mut p = pod.clone();
        let status = &mut p["status"];
        status["phase"] = json!("Succeeded");
        for cs in status["containerStatuses"].as_array_mut().into_iter().flatten() {
            let started = cs["state"]["running"]["startedAt"].clone();
            let container_id = cs["containerID"].clone();
            cs["state"] = json!({"terminated": {"containerID": container_id, "exitCode": 0, "reason": "Completed", "startedAt": started, "finishedAt": format_time(now)}});
            cs["ready"] = json!(false);
            cs["started"] = json!(false);
        }
        set_condition(status, pod_condition("PodReadyToStartContainers", false, now, None, None));
        set_condition(status, pod_condition("ContainersReady", false, now, Some("PodCompleted"), None));
        set_condition(status, pod_condition("Ready", false, now, Some("PodCompleted"), None));
        out.writes.push(Write::UpdateStatus { kind: Kind::Pod, object: p, manager: KUBELET });
    }
    out.writes.push(Write::Delete {
        kind: Kind::Pod,
        namespace: namespace(pod).into(),
        name: name(pod).into(),
        uid: uid(pod).into(),
        grace_period_seconds: Some(0),
        manager: KUBELET,
    });
}

/// The longest `preStop` hook of the pod's containers that the simulation can time: the
/// `sleep` action (`lifecycle.preStop.sleep.seconds`) or an `exec` of `sleep N`.
fn pre_stop_seconds(pod: &Value) -> i64 {
    let containers = pod["spec"]["containers"].as_array().into_iter().flatten();
    let hook = |c: &Value| {
        let pre_stop = &c["lifecycle"]["preStop"];
        let command: Vec<&str> =
            pre_stop["exec"]["command"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let exec_sleep = match command.as_slice() {
            ["sleep", n] => n.parse().ok(),
            [.., "-c", script] => script.strip_prefix("sleep ").and_then(|n| n.trim().parse().ok()),
            _ => None,
        };
        pre_stop["sleep"]["seconds"].as_i64().or(exec_sleep).unwrap_or(0).max(0)
    };
    containers.map(hook).max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::workloads::objects::is_pod_ready;

    fn t(s: i64) -> Time {
        add_secs("2024-01-01T00:00:00Z".parse().unwrap(), s)
    }

    fn pod(probe: Value) -> Value {
        json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u1"},
            "spec": {"containers": [{"name": "app", "image": "nginx:1.25", "readinessProbe": probe}], "terminationGracePeriodSeconds": 30},
            "status": {"phase": "Pending"},
        })
    }

    /// Applies the reconcile's status writes to `p` (what the store would return).
    fn step(p: &mut Value, now: Time) -> Reconciled {
        let r = reconcile_pod(p, now, &KubeletSettings::default(), &mut || "10.244.0.7".into());
        for w in &r.writes {
            match w {
                Write::Update { object, .. } => p["spec"] = object["spec"].clone(),
                Write::UpdateStatus { object, .. } => p["status"] = object["status"].clone(),
                _ => {}
            }
        }
        r
    }

    #[test]
    fn readiness_waits_for_the_first_probe_after_the_initial_delay() {
        assert_eq!(ready_at(&json!({"readinessProbe": {"initialDelaySeconds": 5, "periodSeconds": 3}}), t(0)), t(6));
        assert_eq!(ready_at(&json!({"readinessProbe": {"initialDelaySeconds": 6, "periodSeconds": 3}}), t(0)), t(6));
        assert_eq!(ready_at(&json!({"readinessProbe": {"periodSeconds": 5, "successThreshold": 2}}), t(0)), t(5));
        assert_eq!(ready_at(&json!({}), t(0)), t(0), "no probe: ready when started");
    }

    #[test]
    fn pending_to_running_to_ready() {
        let mut p = pod(json!({"initialDelaySeconds": 5, "periodSeconds": 5}));
        let r = step(&mut p, t(0));
        assert!(matches!(&r.writes[0], Write::Update { manager: "kube-scheduler", .. }));
        assert_eq!(p["spec"]["nodeName"], "forklane-node");
        step(&mut p, t(0));
        assert_eq!(p["status"]["phase"], "Pending");
        assert_eq!(p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"], "ContainerCreating");
        assert_eq!(p["status"]["containerStatuses"][0]["image"], "docker.io/library/nginx:1.25");
        let r = step(&mut p, t(1));
        assert_eq!(p["status"]["phase"], "Running");
        assert_eq!(p["status"]["podIP"], "10.244.0.7");
        assert!(!is_pod_ready(&p));
        assert_eq!(r.requeue_at, Some(t(6)), "probe at start + 5");
        step(&mut p, t(7));
        assert!(is_pod_ready(&p));
        let ready = p["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap();
        assert_eq!(ready["lastTransitionTime"], format_time(t(6)), "the probe's time, not when we looked");
        let types: Vec<&str> =
            p["status"]["conditions"].as_array().unwrap().iter().map(|c| c["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"]);
        assert!(step(&mut p, t(8)).writes.is_empty(), "steady state writes nothing");
    }

    #[test]
    fn a_deleted_pod_stops_after_the_simulated_grace_then_is_removed() {
        let mut p = pod(Value::Null);
        for s in [0, 0, 1] {
            step(&mut p, t(s));
        }
        // The apiserver's graceful deletion at t=10 with the default 30 s.
        p["metadata"]["deletionTimestamp"] = json!(format_time(t(40)));
        p["metadata"]["deletionGracePeriodSeconds"] = json!(30);
        let r = step(&mut p, t(11));
        assert!(r.writes.is_empty());
        assert_eq!(r.requeue_at, Some(t(12)), "2 s after the deletion");
        let r = step(&mut p, t(12));
        assert_eq!(p["status"]["phase"], "Succeeded");
        assert_eq!(p["status"]["containerStatuses"][0]["state"]["terminated"]["reason"], "Completed");
        assert!(matches!(&r.writes[1], Write::Delete { grace_period_seconds: Some(0), uid, .. } if uid == "u1"));
    }

    #[test]
    fn a_pre_stop_sleep_keeps_the_containers_running_within_the_grace_period() {
        let hooked = |lifecycle: Value| {
            let mut p = pod(Value::Null);
            p["spec"]["containers"][0]["lifecycle"] = lifecycle;
            for s in [0, 0, 1] {
                step(&mut p, t(s));
            }
            p["metadata"]["deletionTimestamp"] = json!(format_time(t(40)));
            p["metadata"]["deletionGracePeriodSeconds"] = json!(30);
            step(&mut p, t(11)).requeue_at
        };
        assert_eq!(hooked(json!({"preStop": {"sleep": {"seconds": 10}}})), Some(t(22)), "10 s hook + 2 s stop");
        assert_eq!(hooked(json!({"preStop": {"exec": {"command": ["sleep", "5"]}}})), Some(t(17)));
        assert_eq!(hooked(json!({"preStop": {"exec": {"command": ["/bin/sh", "-c", "sleep 3"]}}})), Some(t(15)));
        assert_eq!(hooked(json!({"preStop": {"sleep": {"seconds": 60}}})), Some(t(40)), "cut at the grace period");
    }

    /// Every kubelet state that moves on by itself later asks to be looked at when it does,
    /// also when it is looked at late (a slow pass on a fast clock): the driver has no other
    /// reason to run a pass then.
    #[test]
    fn every_timed_transition_has_a_timer() {
        let probe = json!({"initialDelaySeconds": 5, "periodSeconds": 5});
        let scheduled = |s: i64| {
            let mut p = pod(probe.clone());
            step(&mut p, t(s));
            p
        };
        let created = |s: i64| {
            let mut p = scheduled(s);
            step(&mut p, t(s));
            p
        };
        let running = |s: i64| {
            let mut p = created(s);
            step(&mut p, t(s + 1));
            p
        };
        let deleted = |s: i64| {
            let mut p = running(0);
            p["metadata"]["deletionTimestamp"] = json!(format_time(t(s + 30)));
            p["metadata"]["deletionGracePeriodSeconds"] = json!(30);
            p
        };
        // (state, looked at, whether it writes, timer asked for). A look that writes needs no
        // timer for what follows immediately: the write is a change, which brings a pass.
        let table: [(&str, Value, i64, bool, Option<i64>); 10] = [
            ("scheduled: the kubelet's first status", scheduled(0), 0, true, Some(1)),
            ("containers being created", created(0), 0, false, Some(1)),
            ("containers being created, looked at late", created(0), 3, true, Some(6)),
            ("running, probe not yet passed", running(0), 2, false, Some(6)),
            ("running, probe not yet passed, looked at late", running(0), 5, false, Some(6)),
            ("ready at the probe", running(0), 6, true, None),
            ("ready, looked at late", running(0), 60, true, None),
            ("deleted, still stopping", deleted(10), 10, false, Some(12)),
            ("deleted, still stopping, looked at late", deleted(10), 11, false, Some(12)),
            ("deleted, stopped", deleted(10), 15, true, None),
        ];
        for (what, mut p, now, writes, timer) in table {
            let r = step(&mut p, t(now));
            assert_eq!((!r.writes.is_empty(), r.requeue_at), (writes, timer.map(t)), "{what}");
        }
    }

    #[test]
    fn ip_pool_hands_out_in_order_and_skips_used() {
        let mut pool = IpPool::default();
        let used: HashSet<String> = ["10.244.0.3".to_string()].into();
        assert_eq!(pool.allocate(&used), "10.244.0.2");
        assert_eq!(pool.allocate(&used), "10.244.0.4");
    }
}
