//! OpenAPI v3 documents, as far as clients use them: kubectl checks that each kind's PATCH
//! operation lists the `fieldValidation` query parameter before it relies on server-side
//! validation, and `kubectl explain` reads the kinds' schemas (CRD schemas are served as
//! defined). OpenAPI v2 is not served; kubectl falls back to its compiled-in types for
//! client-side apply merges.

use crate::cluster::resources::{Registry, ResourceInfo};
use serde_json::{Map, Value, json};

/// `/openapi/v3`: one entry per group-version, pointing at its document.
pub(crate) fn v3_index(registry: &Registry) -> Value {
    let mut paths = Map::new();
    for (group, versions) in registry.groups() {
        for version in versions {
            let key = if group.is_empty() { format!("api/{version}") } else { format!("apis/{group}/{version}") };
            let hash = doc_hash(registry, &group, &version);
            paths.insert(key.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={hash}")}));
        }
    }
    json!({"paths": paths})
}

/// A content hash so clients' caches notice CRD changes.
fn doc_hash(registry: &Registry, group: &str, version: &str) -> String {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    v3_group_version(registry, group, version).map(|d| d.to_string()).hash(&mut h);
    format!("{:016X}", h.finish())
}

fn parameter(name: &str) -> Value {
    json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}})
}

fn schema_name(info: &ResourceInfo, version: &str) -> String {
    // Built-ins use Go package paths; a reversed-group name is unique enough and readable.
    let mut group: Vec<&str> = if info.group.is_empty() { vec!["core"] } else { info.group.split('.').collect() };
    group.reverse();
    format!("{}.{version}.{}", group.join("."), info.kind)
}

/// The document of one group-version: paths with their operations' parameters and the
/// kinds' schemas.
pub(crate) fn v3_group_version(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for info in registry.all().filter(|i| i.group == group && i.version(version).is_some()) {
        let gvk = json!([{"group": info.group, "version": version, "kind": info.kind}]);
        let name = schema_name(info, version);
        let reference = json!({"$ref": format!("#/components/schemas/{name}")});
        let body = json!({"content": {"application/json": {"schema": reference}}});
        let write_params: Vec<Value> =
            ["dryRun", "fieldManager", "fieldValidation"].iter().map(|p| parameter(p)).collect();
        let mut patch_params = write_params.clone();
        patch_params.push(parameter("force"));
        let prefix = if group.is_empty() { format!("/api/{version}") } else { format!("/apis/{group}/{version}") };
        let collection = if info.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", info.resource)
        } else {
            format!("{prefix}/{}", info.resource)
        };
        let op = |action: &str, params: &Vec<Value>| {
            json!({
                "operationId": format!("{action}{}", info.kind),
                "parameters": params,
                "requestBody": body,
                "responses": {"200": body},
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk[0],
            })
        };
        paths.insert(collection.clone(), json!({"post": op("post", &write_params)}));
        paths.insert(
            format!("{collection}/{{name}}"),
            json!({"put": op("put", &write_params), "patch": op("patch", &patch_params)}),
        );
        let mut schema = info
            .version(version)
            .and_then(|v| v.schema.clone())
            .unwrap_or_else(|| json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}));
        schema["x-kubernetes-group-version-kind"] = gvk;
        schemas.insert(name, schema);
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": format!("v{}.{}.0", crate::cluster::discovery::MAJOR, crate::cluster::discovery::MINOR)},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}
