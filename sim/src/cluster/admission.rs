//! Per-resource rules the apiserver's registry strategies apply on create and update:
//! defaults, status reset, Service IP and NodePort allocation, Secret `stringData`,
//! namespace phase and finalizers, immutable fields and basic validation.

use crate::cluster::defaults;
use crate::cluster::error::{Error, Result};
use crate::cluster::meta;
use crate::cluster::rbac;
use crate::cluster::resources::ResourceInfo;
use crate::cluster::semantics::FieldError;
use base64::Engine;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::net::Ipv4Addr;

/// ClusterIP (10.96.0.0/12, the kubeadm default) and NodePort (30000-32767) allocation.
#[derive(Debug, Default)]
pub(crate) struct Allocator {
    ips: HashSet<Ipv4Addr>,
    node_ports: HashSet<u16>,
}

const SERVICE_NET: u32 = u32::from_be_bytes([10, 96, 0, 0]);
const SERVICE_NET_SIZE: u32 = 1 << 20;
const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;
/// The first address belongs to the `kubernetes` Service.
pub(crate) const KUBERNETES_SERVICE_IP: &str = "10.96.0.1";

impl Allocator {
    fn allocate_ip(&mut self) -> Option<Ipv4Addr> {
        for _ in 0..1000 {
            let ip = Ipv4Addr::from(SERVICE_NET + rand::random_range(2..SERVICE_NET_SIZE - 1));
            if self.ips.insert(ip) {
                return Some(ip);
            }
        }
        None
    }

    fn allocate_node_port(&mut self) -> Option<u16> {
        for _ in 0..10_000 {
            let port = rand::random_range(NODE_PORTS);
            if self.node_ports.insert(port) {
                return Some(port);
            }
        }
        None
    }

    fn release(&mut self, svc: &Value) {
        if let Some(ip) = svc.pointer("/spec/clusterIP").and_then(Value::as_str).and_then(|s| s.parse().ok()) {
            self.ips.remove(&ip);
        }
        for port in node_ports(svc) {
            self.node_ports.remove(&port);
        }
    }
}

fn node_ports(svc: &Value) -> Vec<u16> {
    svc.pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p["nodePort"].as_u64().map(|n| n as u16))
        .collect()
}

fn invalid(info: &ResourceInfo, obj: &Value, errors: Vec<FieldError>) -> Result<()> {
    if errors.is_empty() { Ok(()) } else { Err(Error::invalid(&info.kind, &info.group, meta::name(obj), &errors)) }
}

/// Applies create-time rules to `obj` (already named and namespaced).
pub(crate) fn on_create(alloc: &mut Allocator, info: &ResourceInfo, obj: &mut Value) -> Result<()> {
    // With a status subresource, status is owned by controllers: creates through the main
    // resource start without it (built-ins with an empty status, custom objects with none).
    if info.versions.iter().any(|v| v.status) {
        if info.crd.is_none() {
            obj["status"] = json!({});
        } else if let Some(m) = obj.as_object_mut() {
            m.remove("status");
        }
    }
    match (info.group.as_str(), info.resource.as_str()) {
        ("", "namespaces") => {
            let name = meta::name(obj).to_string();
            let labels = meta::metadata_mut(obj).entry("labels").or_insert_with(|| json!({}));
            labels["kubernetes.io/metadata.name"] = json!(name);
            obj["spec"] = json!({"finalizers": ["kubernetes"]});
            obj["status"] = json!({"phase": "Active"});
        }
        ("", "services") => {
            defaults::service(obj);
            validate_service(info, obj)?;
            allocate_service(alloc, info, obj, None)?;
            obj["status"] = json!({"loadBalancer": {}});
        }
        ("", "pods") => {
            defaults::pod(obj);
            validate_containers(info, obj, "spec")?;
            let qos = if has_resources(obj) { "Burstable" } else { "BestEffort" };
            obj["status"] = json!({"phase": "Pending", "qosClass": qos});
        }
        ("", "secrets") => secret(obj),
        ("apps", "deployments") => {
            defaults::deployment(obj);
            validate_workload(info, obj)?;
        }
        (rbac::GROUP, _) => validate_rbac(info, obj, None)?,
        ("apps", "replicasets") => {
            defaults::replica_set(obj);
            validate_workload(info, obj)?;
            obj["status"] = json!({"replicas": 0});
        }
        // The Go type's counters are not `omitempty`: an empty status serialises as zeros.
        ("policy", "poddisruptionbudgets") => {
            obj["status"] =
                json!({"currentHealthy": 0, "desiredHealthy": 0, "disruptionsAllowed": 0, "expectedPods": 0});
        }
        _ => {}
    }
    Ok(())
}

/// Applies update-time rules to `new`, given the stored `old`.
pub(crate) fn on_update(alloc: &mut Allocator, info: &ResourceInfo, old: &Value, new: &mut Value) -> Result<()> {
    match (info.group.as_str(), info.resource.as_str()) {
        ("", "namespaces") => {
            // spec.finalizers change only through the finalize subresource; status is
            // maintained by the namespace lifecycle.
            new["spec"] = old["spec"].clone();
            new["status"] = old["status"].clone();
            let name = meta::name(old).to_string();
            let labels = meta::metadata_mut(new).entry("labels").or_insert_with(|| json!({}));
            labels["kubernetes.io/metadata.name"] = json!(name);
        }
        ("", "services") => {
            defaults::service(new);
            validate_service(info, new)?;
            let (old_ip, new_ip) = (&old["spec"]["clusterIP"], &new["spec"]["clusterIP"]);
            if new_ip.is_null() || new_ip == "" {
                new["spec"]["clusterIP"] = old_ip.clone();
                new["spec"]["clusterIPs"] = old["spec"]["clusterIPs"].clone();
            } else if new_ip != old_ip {
                return invalid(
                    info,
                    new,
                    vec![FieldError::invalid("spec.clusterIPs[0]", new_ip.clone(), "may not change once set")],
                );
            }
            allocate_service(alloc, info, new, Some(old))?;
        }
        ("", "pods") => {
            defaults::pod(new);
            validate_containers(info, new, "spec")?;
        }
        ("", "secrets") => secret(new),
        ("apps", "deployments") => {
            defaults::deployment(new);
            validate_workload(info, new)?;
            immutable_selector(info, old, new)?;
        }
        ("apps", "replicasets") => {
            defaults::replica_set(new);
            validate_workload(info, new)?;
            immutable_selector(info, old, new)?;
        }
        (rbac::GROUP, _) => validate_rbac(info, new, Some(old))?,
        _ => {}
    }
    Ok(())
}

/// Roles and bindings, defaulted and validated as `rbac.authorization.k8s.io/v1` does.
fn validate_rbac(info: &ResourceInfo, obj: &mut Value, old: Option<&Value>) -> Result<()> {
    let errors = match info.resource.as_str() {
        "roles" | "clusterroles" => rbac::validate_rules(obj, info.namespaced),
        _ => {
            rbac::default_binding(obj);
            let mut errors = rbac::validate_binding(obj, info.namespaced);
            errors.extend(old.map(|old| rbac::validate_binding_update(old, obj)).unwrap_or_default());
            errors
        }
    };
    invalid(info, obj, errors)
}

/// Releases what the object held once it is gone.
pub(crate) fn on_delete(alloc: &mut Allocator, info: &ResourceInfo, obj: &Value) {
    if info.group.is_empty() && info.resource == "services" {
        alloc.release(obj);
    }
}

fn secret(obj: &mut Value) {
    if obj.get("type").is_none_or(Value::is_null) {
        obj["type"] = json!("Opaque");
    }
    // stringData is write-only: merged into data, base64-encoded.
    if let Some(Value::Object(string_data)) = obj.as_object_mut().and_then(|o| o.remove("stringData")) {
        if !obj["data"].is_object() {
            obj["data"] = json!({});
        }
        for (k, v) in string_data {
            let text = v.as_str().unwrap_or_default().to_string();
            obj["data"][k] = json!(base64::engine::general_purpose::STANDARD.encode(text));
        }
    }
}

fn has_resources(pod: &Value) -> bool {
    pod.pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["resources"].as_object().is_some_and(|r| !r.is_empty()))
}

fn validate_service(info: &ResourceInfo, svc: &Value) -> Result<()> {
    let spec = &svc["spec"];
    let ty = spec["type"].as_str().unwrap_or_default();
    let mut errors = Vec::new();
    if !["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"].contains(&ty) {
        let supported = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"].map(String::from);
        errors.push(FieldError::not_supported("spec.type", json!(ty), &supported));
    }
    let headless = spec["clusterIP"] == "None";
    let ports = spec["ports"].as_array().map(Vec::len).unwrap_or(0);
    if ports == 0 && !headless && ty != "ExternalName" {
        errors.push(FieldError::required("spec.ports", ""));
    }
    for (i, p) in spec["ports"].as_array().into_iter().flatten().enumerate() {
        match p["port"].as_i64() {
            Some(1..=65535) => {}
            None => errors.push(FieldError::required(format!("spec.ports[{i}].port"), "")),
            Some(n) => errors.push(FieldError::invalid(
                format!("spec.ports[{i}].port"),
                json!(n),
                "must be between 1 and 65535, inclusive",
            )),
        }
        if ports > 1 && p["name"].as_str().is_none_or(str::is_empty) {
            errors.push(FieldError::required(format!("spec.ports[{i}].name"), ""));
        }
        if let Some(np) = p["nodePort"].as_i64()
            && ty == "ClusterIP"
            && np != 0
        {
            errors.push(FieldError::forbidden(
                format!("spec.ports[{i}].nodePort"),
                "may not be used when `type` is 'ClusterIP'",
            ));
        }
    }
    invalid(info, svc, errors)
}

/// Assigns a ClusterIP and NodePorts, keeping the ones `old` already holds.
fn allocate_service(alloc: &mut Allocator, info: &ResourceInfo, svc: &mut Value, old: Option<&Value>) -> Result<()> {
    let ty = svc["spec"]["type"].as_str().unwrap_or_default().to_string();
    if ty != "ExternalName" && svc["spec"]["clusterIP"].as_str().is_none_or(str::is_empty) {
        let ip = alloc
            .allocate_ip()
            .ok_or_else(|| Error::Internal("failed to allocate a serviceIP: range is full".into()))?;
        svc["spec"]["clusterIP"] = json!(ip.to_string());
    } else if old.is_none()
        && let Some(ip) = svc["spec"]["clusterIP"].as_str().and_then(|s| s.parse::<Ipv4Addr>().ok())
        && !alloc.ips.insert(ip)
    {
        let err = FieldError::invalid(
            "spec.clusterIPs",
            json!([ip.to_string()]),
            format!("failed to allocate IP {ip}: provided IP is already allocated"),
        );
        return invalid(info, svc, vec![err]);
    }
    if ty != "ExternalName" && svc["spec"]["clusterIP"] != "None" {
        let ip = svc["spec"]["clusterIP"].clone();
        svc["spec"]["clusterIPs"] = json!([ip]);
        svc["spec"]["ipFamilies"] = json!(["IPv4"]);
        svc["spec"]["ipFamilyPolicy"] = json!("SingleStack");
    }
    let wants_node_ports = ty == "NodePort" || ty == "LoadBalancer";
    let held: Vec<(Value, u16)> = old
        .and_then(|o| o.pointer("/spec/ports").and_then(Value::as_array))
        .into_iter()
        .flatten()
        .filter_map(|p| p["nodePort"].as_u64().map(|n| (p["port"].clone(), n as u16)))
        .collect();
    let mut kept = Vec::new();
    let mut errors = Vec::new();
    for (i, port) in svc["spec"]["ports"].as_array_mut().into_iter().flatten().enumerate() {
        if !wants_node_ports {
            port.as_object_mut().map(|p| p.remove("nodePort"));
            continue;
        }
        match port["nodePort"].as_u64().map(|n| n as u16) {
            Some(n) if held.iter().any(|(_, h)| *h == n) => kept.push(n),
            Some(n) if !NODE_PORTS.contains(&n) => errors.push(FieldError::invalid(
                format!("spec.ports[{i}].nodePort"),
                json!(n),
                "provided port is not in the valid range. The range of valid ports is 30000-32767",
            )),
            Some(n) if !alloc.node_ports.insert(n) => errors.push(FieldError::invalid(
                format!("spec.ports[{i}].nodePort"),
                json!(n),
                "provided port is already allocated",
            )),
            Some(n) => kept.push(n),
            None => {
                // An update that omits the nodePort keeps the one this port already had.
                let n = match held.iter().find(|(p, _)| *p == port["port"]) {
                    Some((_, n)) => *n,
                    None => alloc
                        .allocate_node_port()
                        .ok_or_else(|| Error::Internal("range of node ports is full".into()))?,
                };
                port["nodePort"] = json!(n);
                kept.push(n);
            }
        }
    }
    for (_, n) in held {
        if !kept.contains(&n) {
            alloc.node_ports.remove(&n);
        }
    }
    invalid(info, svc, errors)
}

fn validate_containers(info: &ResourceInfo, obj: &Value, spec_path: &str) -> Result<()> {
    let spec = obj.pointer(&format!("/{}", spec_path.replace('.', "/"))).cloned().unwrap_or(Value::Null);
    let mut errors = Vec::new();
    match spec["containers"].as_array() {
        None => errors.push(FieldError::required(format!("{spec_path}.containers"), "")),
        Some(cs) if cs.is_empty() => errors.push(FieldError::required(format!("{spec_path}.containers"), "")),
        Some(cs) => {
            for (i, c) in cs.iter().enumerate() {
                if c["name"].as_str().is_none_or(str::is_empty) {
                    errors.push(FieldError::required(format!("{spec_path}.containers[{i}].name"), ""));
                }
                if c["image"].as_str().is_none_or(str::is_empty) {
                    errors.push(FieldError::required(format!("{spec_path}.containers[{i}].image"), ""));
                }
            }
        }
    }
    invalid(info, obj, errors)
}

/// Deployments and ReplicaSets: a selector that matches the template's labels.
fn validate_workload(info: &ResourceInfo, obj: &Value) -> Result<()> {
    let mut errors = Vec::new();
    let selector = &obj["spec"]["selector"];
    let labels = &obj["spec"]["template"]["metadata"]["labels"];
    if selector.is_null() {
        errors.push(FieldError::required("spec.selector", ""));
    } else {
        match crate::cluster::selectors::LabelSelector::from_object(selector) {
            Ok(sel) if sel.is_empty() => errors.push(FieldError::invalid(
                "spec.selector",
                selector.clone(),
                "empty selector is invalid for deployment",
            )),
            Ok(sel) if !sel.matches(&json!({"metadata": {"labels": labels}})) => errors.push(FieldError::invalid(
                "spec.template.metadata.labels",
                labels.clone(),
                "`selector` does not match template `labels`",
            )),
            Ok(_) => {}
            Err(e) => errors.push(FieldError::invalid("spec.selector", selector.clone(), e.to_string())),
        }
    }
    if let Some(r) = obj["spec"]["replicas"].as_i64()
        && r < 0
    {
        errors.push(FieldError::invalid("spec.replicas", json!(r), "must be greater than or equal to 0"));
    }
    invalid(info, obj, errors)?;
    validate_containers(info, obj, "spec.template.spec")
}

fn immutable_selector(info: &ResourceInfo, old: &Value, new: &Value) -> Result<()> {
    if old["spec"]["selector"] != new["spec"]["selector"] {
        let err = FieldError::invalid("spec.selector", new["spec"]["selector"].clone(), "field is immutable");
        return invalid(info, new, vec![err]);
    }
    Ok(())
}
