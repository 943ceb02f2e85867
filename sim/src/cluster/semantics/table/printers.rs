//! Row printers of kube-apiserver (`pkg/printers/internalversion`) for the kinds we serve.

use super::{Column, age};
use serde_json::{Value, json};

type Row = fn(&Value, i64) -> Vec<Value>;

const NAME: Column = ("Name", "string", "name", 0);
const AGE: Column = ("Age", "string", "", 0);

pub(super) fn printer(kind: &str) -> (&'static [Column], Row) {
    match kind {
        "Pod" => (
            &[
                NAME,
                ("Ready", "string", "", 0),
                ("Status", "string", "", 0),
                ("Restarts", "string", "", 0),
                AGE,
                ("IP", "string", "", 1),
                ("Node", "string", "", 1),
                ("Nominated Node", "string", "", 1),
                ("Readiness Gates", "string", "", 1),
            ],
            pod,
        ),
        "Service" => (
            &[
                NAME,
                ("Type", "string", "", 0),
                ("Cluster-IP", "string", "", 0),
                ("External-IP", "string", "", 0),
                ("Port(s)", "string", "", 0),
                AGE,
                ("Selector", "string", "", 1),
            ],
            service,
        ),
        "Deployment" => (
            &[
                NAME,
                ("Ready", "string", "", 0),
                ("Up-to-date", "integer", "", 0),
                ("Available", "integer", "", 0),
                AGE,
                ("Containers", "string", "", 1),
                ("Images", "string", "", 1),
                ("Selector", "string", "", 1),
            ],
            deployment,
        ),
        "ReplicaSet" => (
            &[
                NAME,
                ("Desired", "integer", "", 0),
                ("Current", "integer", "", 0),
                ("Ready", "integer", "", 0),
                AGE,
                ("Containers", "string", "", 1),
                ("Images", "string", "", 1),
                ("Selector", "string", "", 1),
            ],
            replica_set,
        ),
        "Namespace" => (&[NAME, ("Status", "string", "", 0), AGE], |o, now| {
            vec![name(o), json!(s(o, "/status/phase")), json!(age(o, now))]
        }),
        "ConfigMap" => (&[NAME, ("Data", "integer", "", 0), AGE], |o, now| {
            vec![name(o), json!(len(o, "/data") + len(o, "/binaryData")), json!(age(o, now))]
        }),
        "Secret" => (&[NAME, ("Type", "string", "", 0), ("Data", "integer", "", 0), AGE], |o, now| {
            vec![name(o), json!(s(o, "/type")), json!(len(o, "/data")), json!(age(o, now))]
        }),
        "Endpoints" => (&[NAME, ("Endpoints", "string", "", 0), AGE], |o, now| {
            vec![name(o), json!(endpoints(o)), json!(age(o, now))]
        }),
        "ServiceAccount" => (&[NAME, ("Secrets", "string", "", 0), AGE], |o, now| {
            vec![name(o), json!(items(o, "/secrets").len()), json!(age(o, now))]
        }),
        "RoleBinding" | "ClusterRoleBinding" => (
            &[
                NAME,
                ("Role", "string", "", 0),
                AGE,
                ("Users", "string", "", 1),
                ("Groups", "string", "", 1),
                ("ServiceAccounts", "string", "", 1),
            ],
            binding,
        ),
        "Lease" => (&[NAME, ("Holder", "string", "", 0), AGE], |o, now| {
            vec![name(o), json!(s(o, "/spec/holderIdentity")), json!(age(o, now))]
        }),
        "PodDisruptionBudget" => (
            &[
                NAME,
                ("Min Available", "string", "", 0),
                ("Max Unavailable", "string", "", 0),
                ("Allowed Disruptions", "integer", "", 0),
                AGE,
            ],
            |o, now| {
                let bound = |ptr: &str| match o.pointer(ptr) {
                    Some(Value::Number(n)) => n.to_string(),
                    Some(Value::String(v)) => v.clone(),
                    _ => "N/A".into(),
                };
                vec![
                    name(o),
                    json!(bound("/spec/minAvailable")),
                    json!(bound("/spec/maxUnavailable")),
                    json!(int(o, "/status/disruptionsAllowed")),
                    json!(age(o, now)),
                ]
            },
        ),
        "PriorityClass" => (
            &[
                NAME,
                ("Value", "integer", "", 0),
                ("Global-Default", "boolean", "", 0),
                AGE,
                ("PreemptionPolicy", "string", "", 0),
            ],
            |o, now| {
                let global = o.pointer("/globalDefault").and_then(Value::as_bool).unwrap_or(false);
                vec![
                    name(o),
                    json!(int(o, "/value")),
                    json!(global),
                    json!(age(o, now)),
                    json!(s(o, "/preemptionPolicy")),
                ]
            },
        ),
        "Event" => (
            &[
                ("Last Seen", "string", "", 0),
                ("Type", "string", "", 0),
                ("Reason", "string", "", 0),
                ("Object", "string", "", 0),
                ("Message", "string", "", 0),
            ],
            event,
        ),
        // Parameter resources are refused by this server: ParamKind and ParamRef are unset.
        "ValidatingAdmissionPolicy" => {
            (&[NAME, ("Validations", "integer", "", 0), ("ParamKind", "string", "", 0), AGE], |o, now| {
                vec![name(o), json!(items(o, "/spec/validations").len()), json!("<unset>"), json!(age(o, now))]
            })
        }
        "ValidatingAdmissionPolicyBinding" => {
            (&[NAME, ("PolicyName", "string", "", 0), ("ParamRef", "string", "", 0), AGE], |o, now| {
                vec![name(o), json!(s(o, "/spec/policyName")), json!("<unset>"), json!(age(o, now))]
            })
        }
        _ => (&[NAME, ("Created At", "date", "", 0)], |o, _| vec![name(o), json!(s(o, "/metadata/creationTimestamp"))]),
    }
}

fn s<'a>(o: &'a Value, ptr: &str) -> &'a str {
    o.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

fn int(o: &Value, ptr: &str) -> i64 {
    o.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

fn len(o: &Value, ptr: &str) -> usize {
    o.pointer(ptr).and_then(Value::as_object).map_or(0, |m| m.len())
}

fn name(o: &Value) -> Value {
    json!(s(o, "/metadata/name"))
}

fn or_none(v: String) -> String {
    if v.is_empty() { "<none>".into() } else { v }
}

fn items<'a>(o: &'a Value, ptr: &str) -> &'a [Value] {
    o.pointer(ptr).and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

/// `labels.FormatLabels` / `metav1.FormatLabelSelector` for matchLabels-only selectors.
fn format_labels(m: Option<&Value>) -> String {
    let Some(m) = m.and_then(Value::as_object) else { return "<none>".into() };
    let mut pairs: Vec<String> = m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect();
    pairs.sort();
    or_none(pairs.join(","))
}

fn containers_and_images(o: &Value) -> (Value, Value) {
    let cs = items(o, "/spec/template/spec/containers");
    let names: Vec<&str> = cs.iter().map(|c| s(c, "/name")).collect();
    let images: Vec<&str> = cs.iter().map(|c| s(c, "/image")).collect();
    (json!(names.join(",")), json!(images.join(",")))
}

/// kubectl's STATUS column of a pod (`printPod`).
pub(crate) fn pod_status_reason(pod: &Value) -> String {
    let mut reason = s(pod, "/status/phase").to_string();
    if !s(pod, "/status/reason").is_empty() {
        reason = s(pod, "/status/reason").to_string();
    }
    if items(pod, "/status/conditions")
        .iter()
        .any(|c| s(c, "/type") == "PodScheduled" && s(c, "/reason") == "SchedulingGated")
    {
        reason = "SchedulingGated".into();
    }
    let init_total = items(pod, "/spec/initContainers").len();
    let mut initializing = false;
    for (i, c) in items(pod, "/status/initContainerStatuses").iter().enumerate() {
        let term = c.pointer("/state/terminated");
        let waiting = s(c, "/state/waiting/reason");
        if term.is_some_and(|t| int(t, "/exitCode") == 0) || c.get("started") == Some(&json!(true)) {
            continue;
        }
        reason = match term {
            Some(t) if !s(t, "/reason").is_empty() => format!("Init:{}", s(t, "/reason")),
            Some(t) if int(t, "/signal") != 0 => format!("Init:Signal:{}", int(t, "/signal")),
            Some(t) => format!("Init:ExitCode:{}", int(t, "/exitCode")),
            None if !waiting.is_empty() && waiting != "PodInitializing" => format!("Init:{waiting}"),
            None => format!("Init:{i}/{init_total}"),
        };
        initializing = true;
        break;
    }
    let initialized =
        items(pod, "/status/conditions").iter().any(|c| s(c, "/type") == "Initialized" && s(c, "/status") == "True");
    if !initializing || initialized {
        let mut has_running = false;
        for c in items(pod, "/status/containerStatuses").iter().rev() {
            let term = c.pointer("/state/terminated");
            if !s(c, "/state/waiting/reason").is_empty() {
                reason = s(c, "/state/waiting/reason").into();
            } else if let Some(t) = term {
                reason = match (s(t, "/reason"), int(t, "/signal")) {
                    ("", 0) => format!("ExitCode:{}", int(t, "/exitCode")),
                    ("", sig) => format!("Signal:{sig}"),
                    (r, _) => r.into(),
                };
            } else if c.get("ready") == Some(&json!(true)) && c.pointer("/state/running").is_some() {
                has_running = true;
            }
        }
        if reason == "Completed" && has_running {
            let ready =
                items(pod, "/status/conditions").iter().any(|c| s(c, "/type") == "Ready" && s(c, "/status") == "True");
            reason = if ready { "Running" } else { "NotReady" }.into();
        }
    }
    if pod.pointer("/metadata/deletionTimestamp").is_some() {
        if s(pod, "/status/reason") == "NodeLost" {
            reason = "Unknown".into();
        } else if !matches!(s(pod, "/status/phase"), "Succeeded" | "Failed") {
            reason = "Terminating".into();
        }
    }
    reason
}

fn pod(o: &Value, now: i64) -> Vec<Value> {
    let statuses = items(o, "/status/containerStatuses");
    let ready = statuses
        .iter()
        .filter(|c| c.get("ready") == Some(&json!(true)) && c.pointer("/state/running").is_some())
        .count();
    let restarts: i64 = statuses.iter().map(|c| int(c, "/restartCount")).sum();
    let last = statuses
        .iter()
        .filter_map(|c| c.pointer("/lastState/terminated/finishedAt").and_then(Value::as_str))
        .filter_map(super::parse_rfc3339)
        .max();
    let restarts = match last {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", super::human_duration(now - t)),
        _ => restarts.to_string(),
    };
    let gates = items(o, "/spec/readinessGates");
    let gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let conds = items(o, "/status/conditions");
        let true_count = gates
            .iter()
            .filter(|g| conds.iter().any(|c| s(c, "/type") == s(g, "/conditionType") && s(c, "/status") == "True"))
            .count();
        format!("{true_count}/{}", gates.len())
    };
    let ip = items(o, "/status/podIPs").first().map_or(String::new(), |p| s(p, "/ip").to_string());
    vec![
        name(o),
        json!(format!("{ready}/{}", items(o, "/spec/containers").len())),
        json!(pod_status_reason(o)),
        json!(restarts),
        json!(age(o, now)),
        json!(or_none(ip)),
        json!(or_none(s(o, "/spec/nodeName").into())),
        json!(or_none(s(o, "/status/nominatedNodeName").into())),
        json!(gates),
    ]
}

fn service(o: &Value, now: i64) -> Vec<Value> {
    let ty = s(o, "/spec/type");
    let ty = if ty.is_empty() { "ClusterIP" } else { ty };
    let external: Vec<&str> = items(o, "/spec/externalIPs").iter().filter_map(Value::as_str).collect();
    let external = match ty {
        "ExternalName" => s(o, "/spec/externalName").to_string(),
        "LoadBalancer" => {
            let mut ips: Vec<&str> = items(o, "/status/loadBalancer/ingress")
                .iter()
                .map(|i| if s(i, "/ip").is_empty() { s(i, "/hostname") } else { s(i, "/ip") })
                .collect();
            ips.extend(&external);
            if ips.is_empty() { "<pending>".into() } else { ips.join(",") }
        }
        _ => or_none(external.join(",")),
    };
    let ports: Vec<String> = items(o, "/spec/ports")
        .iter()
        .map(|p| {
            let proto = if s(p, "/protocol").is_empty() { "TCP" } else { s(p, "/protocol") };
            match int(p, "/nodePort") {
                0 => format!("{}/{proto}", int(p, "/port")),
                np => format!("{}:{np}/{proto}", int(p, "/port")),
            }
        })
        .collect();
    vec![
        name(o),
        json!(ty),
        json!(or_none(s(o, "/spec/clusterIP").into())),
        json!(external),
        json!(or_none(ports.join(","))),
        json!(age(o, now)),
        json!(format_labels(o.pointer("/spec/selector"))),
    ]
}

fn deployment(o: &Value, now: i64) -> Vec<Value> {
    let (containers, images) = containers_and_images(o);
    vec![
        name(o),
        json!(format!("{}/{}", int(o, "/status/readyReplicas"), int(o, "/spec/replicas"))),
        json!(int(o, "/status/updatedReplicas")),
        json!(int(o, "/status/availableReplicas")),
        json!(age(o, now)),
        containers,
        images,
        json!(format_labels(o.pointer("/spec/selector/matchLabels"))),
    ]
}

fn replica_set(o: &Value, now: i64) -> Vec<Value> {
    let (containers, images) = containers_and_images(o);
    vec![
        name(o),
        json!(int(o, "/spec/replicas")),
        json!(int(o, "/status/replicas")),
        json!(int(o, "/status/readyReplicas")),
        json!(age(o, now)),
        containers,
        images,
        json!(format_labels(o.pointer("/spec/selector/matchLabels"))),
    ]
}

/// `formatEndpoints`: at most three `ip:port` pairs, then `+ N more...`.
fn endpoints(o: &Value) -> String {
    let mut all = Vec::new();
    for subset in items(o, "/subsets") {
        let ports = items(subset, "/ports");
        for addr in items(subset, "/addresses") {
            if ports.is_empty() {
                all.push(s(addr, "/ip").to_string());
            }
            all.extend(ports.iter().map(|p| format!("{}:{}", s(addr, "/ip"), int(p, "/port"))));
        }
    }
    let more = all.len().saturating_sub(3);
    all.truncate(3);
    let mut out = or_none(all.join(","));
    if more > 0 {
        out.push_str(&format!(" + {more} more..."));
    }
    out
}

/// `printRoleBinding`/`printClusterRoleBinding` with the wide cells of `rbac.SubjectsStrings`.
fn binding(o: &Value, now: i64) -> Vec<Value> {
    let role = format!("{}/{}", s(o, "/roleRef/kind"), s(o, "/roleRef/name"));
    let (mut users, mut groups, mut sas) = (vec![], vec![], vec![]);
    for subject in items(o, "/subjects") {
        let name = s(subject, "/name").to_string();
        match s(subject, "/kind") {
            "User" => users.push(name),
            "Group" => groups.push(name),
            "ServiceAccount" => sas.push(format!("{}/{name}", s(subject, "/namespace"))),
            _ => {}
        }
    }
    vec![
        name(o),
        json!(role),
        json!(age(o, now)),
        json!(users.join(", ")),
        json!(groups.join(", ")),
        json!(sas.join(", ")),
    ]
}

fn event(o: &Value, now: i64) -> Vec<Value> {
    let last = ["/lastTimestamp", "/eventTime", "/metadata/creationTimestamp"]
        .iter()
        .map(|p| s(o, p))
        .find(|t| !t.is_empty())
        .unwrap_or("");
    let last = super::parse_rfc3339(last).map_or("<unknown>".into(), |t| super::human_duration(now - t));
    let object = format!("{}/{}", s(o, "/involvedObject/kind").to_lowercase(), s(o, "/involvedObject/name"));
    vec![json!(last), json!(s(o, "/type")), json!(s(o, "/reason")), json!(object), json!(s(o, "/message").trim())]
}
