//! Discovery documents rendered from the registry: `/version`, legacy `/api`, `/apis`,
//! per-group and per-version lists, and aggregated discovery (`apidiscovery.k8s.io/v2`),
//! which kubectl asks for first.

use crate::cluster::resources::{Registry, ResourceInfo, api_version};
use serde_json::{Value, json};

/// The Kubernetes release this server reports; kubectl 1.37 warns only beyond one minor.
pub(crate) const MAJOR: &str = "1";
pub(crate) const MINOR: &str = "37";

pub(crate) fn version() -> Value {
    json!({
        "major": MAJOR, "minor": MINOR,
        "emulationMajor": MAJOR, "emulationMinor": MINOR,
        "minCompatibilityMajor": MAJOR, "minCompatibilityMinor": "36",
        "gitVersion": format!("v{MAJOR}.{MINOR}.0"),
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.25.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

pub(crate) fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_entry(group: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> =
        versions.iter().map(|v| json!({"groupVersion": api_version(group, v), "version": v})).collect();
    json!({"name": group, "versions": vs, "preferredVersion": vs[0]})
}

pub(crate) fn api_group_list(registry: &Registry) -> Value {
    let groups: Vec<Value> =
        registry.groups().iter().filter(|(g, _)| !g.is_empty()).map(|(g, v)| group_entry(g, v)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub(crate) fn api_group(registry: &Registry, group: &str) -> Option<Value> {
    let (g, versions) = registry.groups().into_iter().find(|(g, _)| g == group && !g.is_empty())?;
    let mut entry = group_entry(&g, &versions);
    entry["kind"] = json!("APIGroup");
    entry["apiVersion"] = json!("v1");
    Some(entry)
}

fn scope(info: &ResourceInfo) -> &'static str {
    if info.namespaced { "Namespaced" } else { "Cluster" }
}

/// `(name, kind, group, version, verbs)` of each subresource a version serves.
fn subresources(info: &ResourceInfo, version: &str) -> Vec<(&'static str, String, String, String, Vec<&'static str>)> {
    let mut out = Vec::new();
    let Some(v) = info.version(version) else { return out };
    let rw = vec!["get", "patch", "update"];
    if info.group.is_empty() && info.resource == "namespaces" {
        out.push(("finalize", info.kind.clone(), String::new(), version.to_string(), vec!["update"]));
    }
    if v.scale.is_some() {
        out.push(("scale", "Scale".into(), "autoscaling".into(), "v1".into(), rw.clone()));
    }
    if v.status {
        out.push(("status", info.kind.clone(), info.group.clone(), version.to_string(), rw));
    }
    out
}

pub(crate) fn api_resource_list(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for info in registry.all().filter(|i| i.group == group && i.version(version).is_some()) {
        let mut r = json!({
            "name": info.resource, "singularName": info.singular, "namespaced": info.namespaced,
            "kind": info.kind, "verbs": info.verbs,
        });
        if !info.short_names.is_empty() {
            r["shortNames"] = json!(info.short_names);
        }
        if !info.categories.is_empty() {
            r["categories"] = json!(info.categories);
        }
        resources.push(r);
        for (sub, kind, g, v, verbs) in subresources(info, version) {
            let mut s = json!({"name": format!("{}/{sub}", info.resource), "singularName": "", "namespaced": info.namespaced, "kind": kind, "verbs": verbs});
            if g != info.group || v != version {
                s["group"] = json!(g);
                s["version"] = json!(v);
            }
            resources.push(s);
        }
    }
    if resources.is_empty() {
        return None;
    }
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": api_version(group, version), "resources": resources}),
    )
}

/// Media type of aggregated discovery responses.
pub(crate) const AGGREGATED_CONTENT_TYPE: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Aggregated discovery for `/api` (`core = true`) or `/apis`.
pub(crate) fn aggregated(registry: &Registry, core: bool) -> Value {
    let mut items = Vec::new();
    for (group, versions) in registry.groups().into_iter().filter(|(g, _)| g.is_empty() == core) {
        let versions: Vec<Value> = versions
            .iter()
            .map(|version| {
                let resources: Vec<Value> = registry
                    .all()
                    .filter(|i| i.group == group && i.version(version).is_some())
                    .map(|info| {
                        let mut r = json!({
                            "resource": info.resource,
                            "responseKind": {"group": info.group, "version": version, "kind": info.kind},
                            "scope": scope(info),
                            "singularResource": info.singular,
                            "verbs": info.verbs,
                        });
                        if !info.short_names.is_empty() {
                            r["shortNames"] = json!(info.short_names);
                        }
                        if !info.categories.is_empty() {
                            r["categories"] = json!(info.categories);
                        }
                        let subs: Vec<Value> = subresources(info, version)
                            .into_iter()
                            .map(|(sub, kind, g, v, verbs)| {
                                json!({"subresource": sub, "responseKind": {"group": g, "version": v, "kind": kind}, "verbs": verbs})
                            })
                            .collect();
                        if !subs.is_empty() {
                            r["subresources"] = json!(subs);
                        }
                        r
                    })
                    .collect();
                json!({"version": version, "resources": resources, "freshness": "Current"})
            })
            .collect();
        let mut metadata = json!({"creationTimestamp": null});
        if !group.is_empty() {
            metadata["name"] = json!(group);
        }
        items.push(json!({"metadata": metadata, "versions": versions}));
    }
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}
