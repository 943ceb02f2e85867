//! The endpoints and endpointslice controllers: for every Service with a selector, the
//! selected pods' addresses and resolved target ports, as an `Endpoints` object (ready and
//! not-ready addresses, terminating pods left out) and as `discovery.k8s.io/v1`
//! EndpointSlices (terminating pods kept with their ready/serving/terminating conditions).

use super::objects::{controlled_by, controller_ref, is_deleting, is_pod_ready, labels, name, namespace, phase, uid};
use super::{CONTROLLER_MANAGER, Kind, Reconciled, Write};
use forklane_core::clock::Time;
use serde_json::{Map, Value, json};
use std::borrow::Borrow;
use std::collections::BTreeMap;

pub(crate) const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub(crate) const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
const TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";
/// `maxEndpointsPerSlice` default of kube-controller-manager.
const MAX_PER_SLICE: usize = 100;

/// Endpoints and EndpointSlices of one Service; `pods`, `endpoints` and `slices` are those of
/// its namespace.
pub(crate) fn reconcile_service(
    svc: &Value,
    pods: &[impl Borrow<Value>],
    endpoints: &[impl Borrow<Value>],
    slices: &[impl Borrow<Value>],
    now: Time,
) -> Reconciled {
    let mut out = Reconciled::default();
    let Some(selector) = svc["spec"]["selector"].as_object() else {
        // Without a selector, endpoints are the user's to write.
        return out;
    };
    if is_deleting(svc) || svc["spec"]["type"] == "ExternalName" {
        return out;
    }
    let selected: Vec<&Value> = pods
        .iter()
        .map(Borrow::borrow)
        .filter(|p| {
            let l = labels(p);
            selector.iter().all(|(k, v)| l.get(k) == Some(v))
        })
        .collect();
    let current = endpoints.iter().map(Borrow::borrow).find(|e| name(e) == name(svc));
    out.writes.extend(sync_endpoints(svc, &selected, current, now));
    let owned: Vec<&Value> = slices
        .iter()
        .map(Borrow::borrow)
        .filter(|s| controlled_by(s, uid(svc)) && s["metadata"]["labels"][MANAGED_BY_LABEL] == MANAGED_BY)
        .collect();
    out.writes.extend(sync_slices(svc, &selected, &owned, now));
    out
}

/// Endpoints left without their Service are deleted, as the endpoints controller does
/// (leader-election records excepted).
pub(crate) fn orphaned_endpoints(endpoints: &Value, services: &[impl Borrow<Value>]) -> Option<Write> {
    let leader = endpoints["metadata"]["annotations"]["control-plane.alpha.kubernetes.io/leader"].is_string();
    if leader || services.iter().any(|s| name(s.borrow()) == name(endpoints)) {
        return None;
    }
    Some(Write::Delete {
        kind: Kind::Endpoints,
        namespace: namespace(endpoints).into(),
        name: name(endpoints).into(),
        uid: uid(endpoints).into(),
        grace_period_seconds: None,
        manager: CONTROLLER_MANAGER,
    })
}

/// `endpointsliceutil.ShouldPodBeInEndpoints`.
fn should_be_in_endpoints(pod: &Value, include_terminating: bool) -> bool {
    if pod["status"]["podIP"].as_str().is_none_or(str::is_empty) {
        return false;
    }
    if !include_terminating && is_deleting(pod) {
        return false;
    }
    match pod["spec"]["restartPolicy"].as_str() {
        Some("Never") => !matches!(phase(pod), "Failed" | "Succeeded"),
        Some("OnFailure") => phase(pod) != "Succeeded",
        _ => true,
    }
}

/// `podutil.FindPort`: a numeric targetPort as is, a named one from the containers' ports
/// with that name and protocol.
fn find_port(pod: &Value, port: &Value) -> Option<i64> {
    let protocol = port["protocol"].as_str().unwrap_or("TCP");
    match &port["targetPort"] {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => match s.parse::<i64>() {
            Ok(n) => Some(n),
            Err(_) => pod["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|c| c["ports"].as_array().into_iter().flatten())
                .find_map(|p| {
                    (p["name"] == s.as_str() && p["protocol"].as_str().unwrap_or("TCP") == protocol)
                        .then(|| p["containerPort"].as_i64())
                        .flatten()
                }),
        },
        _ => port["port"].as_i64(),
    }
}

/// The pod's ports for the service: `(name, port, protocol, appProtocol)` per resolved port.
fn resolved_ports(svc: &Value, pod: &Value) -> Vec<Value> {
    svc["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|sp| {
            let number = find_port(pod, sp)?;
            let mut p = json!({"name": sp["name"].as_str().unwrap_or_default(), "port": number, "protocol": sp["protocol"].as_str().unwrap_or("TCP")});
            if let Some(a) = sp.get("appProtocol").filter(|a| !a.is_null()) {
                p["appProtocol"] = a.clone();
            }
            Some(p)
        })
        .collect()
}

fn target_ref(pod: &Value) -> Value {
    json!({"kind": "Pod", "namespace": namespace(pod), "name": name(pod), "uid": uid(pod)})
}

fn ip(pod: &Value) -> &str {
    pod["status"]["podIP"].as_str().unwrap_or_default()
}

/// Orders addresses numerically, as `addrsByIPAndUID` compares IP bytes.
fn ip_key(ip: &str) -> Vec<u32> {
    ip.split('.').map(|o| o.parse().unwrap_or(0)).collect()
}

fn is_headless(svc: &Value) -> bool {
    svc["spec"]["clusterIP"] == "None"
}

fn sync_endpoints(svc: &Value, pods: &[&Value], current: Option<&Value>, now: Time) -> Option<Write> {
    let tolerate_unready = svc["spec"]["publishNotReadyAddresses"] == true;
    // RepackSubsets: one subset per distinct port list, addresses sorted by IP then UID.
    let mut subsets: BTreeMap<String, (Value, Vec<&Value>, Vec<&Value>)> = BTreeMap::new();
    for pod in pods.iter().copied().filter(|p| should_be_in_endpoints(p, tolerate_unready)) {
        let mut ports: Vec<Value> = resolved_ports(svc, pod)
            .into_iter()
            .map(|mut p| {
                if p["name"] == "" {
                    p.as_object_mut().map(|m| m.remove("name"));
                }
                p
            })
            .collect();
        let no_ports = svc["spec"]["ports"].as_array().is_none_or(Vec::is_empty);
        if ports.is_empty() && !(no_ports && is_headless(svc)) {
            continue;
        }
        ports.sort_by_key(Value::to_string);
        let entry = subsets
            .entry(Value::from(ports.clone()).to_string())
            .or_insert_with(|| (Value::from(ports), vec![], vec![]));
        if tolerate_unready || is_pod_ready(pod) { entry.1.push(pod) } else { entry.2.push(pod) }
    }
    let address = |p: &&Value| json!({"ip": ip(p), "nodeName": p["spec"]["nodeName"], "targetRef": target_ref(p)});
    let subsets: Vec<Value> = subsets
        .into_values()
        .map(|(ports, mut ready, mut not_ready)| {
            for list in [&mut ready, &mut not_ready] {
                list.sort_by(|a, b| ip_key(ip(a)).cmp(&ip_key(ip(b))).then_with(|| uid(a).cmp(uid(b))));
            }
            let mut s = Map::new();
            if !ready.is_empty() {
                s.insert("addresses".into(), ready.iter().map(address).collect());
            }
            if !not_ready.is_empty() {
                s.insert("notReadyAddresses".into(), not_ready.iter().map(address).collect());
            }
            if ports.as_array().is_some_and(|p| !p.is_empty()) {
                s.insert("ports".into(), ports);
            }
            Value::Object(s)
        })
        .collect();
    let mut want_labels = labels(svc);
    if is_headless(svc) {
        want_labels.insert(HEADLESS_LABEL.into(), json!(""));
    }
    let want_subsets = if subsets.is_empty() { Value::Null } else { Value::from(subsets) };
    if let Some(cur) = current {
        let cur_subsets = cur.get("subsets").cloned().unwrap_or(Value::Null);
        let cur_subsets = if cur_subsets.as_array().is_some_and(Vec::is_empty) { Value::Null } else { cur_subsets };
        if cur_subsets == want_subsets && labels(cur) == want_labels {
            return None;
        }
    }
    let mut ep = current.cloned().unwrap_or_else(|| json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name(svc), "namespace": namespace(svc)}}));
    ep["metadata"]["labels"] = Value::Object(want_labels);
    ep["metadata"]["annotations"][TRIGGER_TIME] = json!(now.strftime("%Y-%m-%dT%H:%M:%S%.fZ").to_string());
    match want_subsets {
        Value::Null => {
            ep.as_object_mut().map(|m| m.remove("subsets"));
        }
        s => ep["subsets"] = s,
    }
    Some(match current {
        Some(_) => Write::Update { kind: Kind::Endpoints, object: ep, manager: CONTROLLER_MANAGER },
        None => Write::Create { kind: Kind::Endpoints, object: ep, manager: CONTROLLER_MANAGER },
    })
}

/// The endpointslice reconciler: one slice per distinct port list (up to 100 endpoints
/// each), existing slices reused, surplus ones deleted, a placeholder when nothing is
/// selected.
fn sync_slices(svc: &Value, pods: &[&Value], owned: &[&Value], now: Time) -> Vec<Write> {
    let tolerate_unready = svc["spec"]["publishNotReadyAddresses"] == true;
    let mut groups: BTreeMap<String, (Value, Vec<Value>)> = BTreeMap::new();
    let mut sorted: Vec<&Value> = pods.iter().copied().filter(|p| should_be_in_endpoints(p, true)).collect();
    sorted.sort_by_key(|p| ip_key(ip(p)));
    for pod in sorted {
        let ports = Value::from(resolved_ports(svc, pod));
        let serving = is_pod_ready(pod);
        let terminating = is_deleting(pod);
        let endpoint = json!({
            "addresses": [ip(pod)],
            "conditions": {"ready": tolerate_unready || (serving && !terminating), "serving": serving, "terminating": terminating},
            "nodeName": pod["spec"]["nodeName"],
            "targetRef": target_ref(pod),
        });
        groups.entry(ports.to_string()).or_insert_with(|| (ports, vec![])).1.push(endpoint);
    }
    let mut desired: Vec<(Value, Vec<Value>)> = vec![];
    for (ports, eps) in groups.into_values() {
        for chunk in eps.chunks(MAX_PER_SLICE) {
            desired.push((ports.clone(), chunk.to_vec()));
        }
    }
    if desired.is_empty() {
        desired.push((Value::Null, vec![]));
    }
    let mut want_labels = labels(svc);
    want_labels.insert(SERVICE_NAME_LABEL.into(), json!(name(svc)));
    want_labels.insert(MANAGED_BY_LABEL.into(), json!(MANAGED_BY));
    if is_headless(svc) {
        want_labels.insert(HEADLESS_LABEL.into(), json!(""));
    }
    let mut unused: Vec<&Value> = owned.to_vec();
    unused.sort_by(|a, b| name(a).cmp(name(b)));
    let mut writes = vec![];
    for (ports, eps) in desired {
        let reuse = unused.iter().position(|s| s.get("ports").cloned().unwrap_or(Value::Null) == ports);
        let mut slice = match reuse {
            Some(i) => {
                let s = unused.remove(i);
                if s["endpoints"] == Value::from(eps.clone()) && labels(s) == want_labels {
                    continue;
                }
                s.clone()
            }
            None => json!({
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {"generateName": format!("{}-", name(svc)), "namespace": namespace(svc), "ownerReferences": [controller_ref(svc, "v1", "Service")]},
                "addressType": "IPv4",
            }),
        };
        slice["metadata"]["labels"] = Value::Object(want_labels.clone());
        slice["metadata"]["annotations"][TRIGGER_TIME] = json!(now.strftime("%Y-%m-%dT%H:%M:%S%.fZ").to_string());
        slice["endpoints"] = Value::from(eps);
        match ports {
            Value::Null => {
                slice.as_object_mut().map(|m| m.remove("ports"));
            }
            p => slice["ports"] = p,
        }
        writes.push(match reuse {
            Some(_) => Write::Update { kind: Kind::EndpointSlice, object: slice, manager: CONTROLLER_MANAGER },
            None => Write::Create { kind: Kind::EndpointSlice, object: slice, manager: CONTROLLER_MANAGER },
        });
    }
    for s in unused {
        writes.push(Write::Delete {
            kind: Kind::EndpointSlice,
            namespace: namespace(s).into(),
            name: name(s).into(),
            uid: uid(s).into(),
            grace_period_seconds: None,
            manager: CONTROLLER_MANAGER,
        });
    }
    writes
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: &[Value] = &[];

    fn now() -> Time {
        "2024-01-01T00:00:00Z".parse().unwrap()
    }

    fn pod(name: &str, ip: &str, ready: bool, terminating: bool) -> Value {
        let mut p = json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "labels": {"app": "my-app"}},
            "spec": {"nodeName": "forklane-node", "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]}]},
            "status": {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        });
        if terminating {
            p["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:30Z");
        }
        p
    }

    fn svc() -> Value {
        json!({"metadata": {"name": "my-app", "namespace": "default", "uid": "svc", "labels": {"app": "my-app"}},
               "spec": {"selector": {"app": "my-app"}, "clusterIP": "10.96.0.10", "ports": [{"name": "web", "port": 80, "targetPort": "http", "protocol": "TCP"}]}})
    }

    fn written(r: &Reconciled, kind: Kind) -> Vec<&Value> {
        r.writes
            .iter()
            .filter_map(|w| match w {
                Write::Create { kind: k, object, .. } | Write::Update { kind: k, object, .. } if *k == kind => {
                    Some(object)
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn endpoints_and_slices_from_readiness_and_termination() {
        let pods = [
            pod("a", "10.244.0.10", true, false),
            pod("b", "10.244.0.9", false, false),
            pod("c", "10.244.0.2", true, true),
        ];
        let r = reconcile_service(&svc(), &pods, NONE, NONE, now());
        let ep = written(&r, Kind::Endpoints)[0];
        assert_eq!(
            ep["subsets"][0]["ports"],
            json!([{"name": "web", "port": 8080, "protocol": "TCP"}]),
            "named targetPort resolved"
        );
        assert_eq!(ep["subsets"][0]["addresses"][0]["ip"], "10.244.0.10");
        assert_eq!(ep["subsets"][0]["notReadyAddresses"][0]["ip"], "10.244.0.9");
        assert_eq!(
            ep["subsets"][0]["addresses"].as_array().unwrap().len(),
            1,
            "terminating pods are left out of Endpoints"
        );
        let slice = written(&r, Kind::EndpointSlice)[0];
        assert_eq!(slice["metadata"]["labels"][SERVICE_NAME_LABEL], "my-app");
        assert_eq!(slice["metadata"]["ownerReferences"][0]["kind"], "Service");
        let conds: Vec<(&str, &Value)> = slice["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["addresses"][0].as_str().unwrap(), &e["conditions"]))
            .collect();
        assert_eq!(
            conds,
            [
                ("10.244.0.2", &json!({"ready": false, "serving": true, "terminating": true})),
                ("10.244.0.9", &json!({"ready": false, "serving": false, "terminating": false})),
                ("10.244.0.10", &json!({"ready": true, "serving": true, "terminating": false})),
            ]
        );
    }

    #[test]
    fn unchanged_state_writes_nothing_and_selectorless_services_are_left_alone() {
        let pods = [pod("a", "10.244.0.10", true, false)];
        let first = reconcile_service(&svc(), &pods, NONE, NONE, now());
        let mut ep = written(&first, Kind::Endpoints)[0].clone();
        ep["metadata"]["uid"] = json!("ep");
        let mut slice = written(&first, Kind::EndpointSlice)[0].clone();
        slice["metadata"]["name"] = json!("my-app-abcde");
        let again = reconcile_service(&svc(), &pods, &[ep], &[slice], now());
        assert_eq!(again.writes, vec![]);
        let mut manual = svc();
        manual["spec"].as_object_mut().unwrap().remove("selector");
        assert_eq!(reconcile_service(&manual, &pods, NONE, NONE, now()).writes, vec![]);
    }
}
