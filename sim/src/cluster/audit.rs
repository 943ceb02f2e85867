//! Request audit: what each resource request asked for, in the terms RBAC rules use
//! (the apiserver's `RequestInfo`: verb, API group, resource, subresource, namespace, name),
//! plus the client's User-Agent and the response code. Meant for least-privilege checks:
//! run a client against the cluster, then compare `permissions()` with its Role rules.
//! Disabled unless `ClusterConfig::audit` is set; a disabled log records nothing.

use crate::cluster::http::Target;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// get, list, watch, create, update, patch, delete or deletecollection.
    pub verb: String,
    /// API group; empty for the core group, as in RBAC rules.
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: Option<String>,
    pub namespace: Option<String>,
    /// The object's name, also for lists and watches narrowed to one name with
    /// `fieldSelector=metadata.name=...` (what RBAC `resourceNames` can match).
    pub name: Option<String>,
    /// The `User-Agent` header; empty when the client sent none.
    pub user_agent: String,
    /// HTTP status of the response (for watches, of the response head).
    pub code: u16,
    /// What admission annotated the request with (the audit event's `annotations`), e.g.
    /// `validation.policy.admission.k8s.io/validation_failure` from a ValidatingAdmissionPolicy.
    pub annotations: BTreeMap<String, String>,
}

/// The audit annotations of a request, carried from its handler to the audit log on the
/// response's extensions.
#[derive(Debug, Clone, Default)]
pub(crate) struct Annotations(pub BTreeMap<String, String>);

impl AuditRecord {
    /// `resource` or `resource/subresource`, as written in RBAC rules.
    pub fn rbac_resource(&self) -> String {
        match &self.subresource {
            Some(sub) => format!("{}/{sub}", self.resource),
            None => self.resource.clone(),
        }
    }
}

/// A clonable handle to the audit log of one cluster.
#[derive(Clone, Default)]
pub struct Audit(Option<Arc<Mutex<Vec<AuditRecord>>>>);

impl Audit {
    pub(crate) fn new(enabled: bool) -> Self {
        Audit(enabled.then(Default::default))
    }

    pub fn is_enabled(&self) -> bool {
        self.0.is_some()
    }

    fn log(&self) -> Option<MutexGuard<'_, Vec<AuditRecord>>> {
        // Records are whole values pushed under the lock; a poisoned lock holds no torn data.
        self.0.as_ref().map(|m| m.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Every request recorded so far, in arrival order.
    pub fn records(&self) -> Vec<AuditRecord> {
        self.log().map(|l| l.clone()).unwrap_or_default()
    }

    pub fn clear(&self) {
        if let Some(mut l) = self.log() {
            l.clear();
        }
    }

    /// The distinct `(group, resource[/subresource], verb)` triples requested so far.
    pub fn permissions(&self) -> BTreeSet<(String, String, String)> {
        self.records().iter().map(|r| (r.group.clone(), r.rbac_resource(), r.verb.clone())).collect()
    }

    pub(crate) fn record(
        &self,
        method: &str,
        target: &Target,
        query: &HashMap<String, String>,
        user_agent: &str,
        code: u16,
        annotations: BTreeMap<String, String>,
    ) {
        let Some(mut log) = self.log() else { return };
        log.push(AuditRecord { annotations, ..record(method, target, query, user_agent, code) });
    }
}

/// `RequestInfoFactory.NewRequestInfo` for a parsed resource URL.
fn record(method: &str, target: &Target, query: &HashMap<String, String>, user_agent: &str, code: u16) -> AuditRecord {
    let watch_param = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    let collection = target.name.is_none();
    let verb = match method {
        "GET" | "HEAD" if target.watch_path => "watch",
        "GET" | "HEAD" if collection && watch_param => "watch",
        "GET" | "HEAD" if collection => "list",
        "GET" | "HEAD" => "get",
        "POST" => "create",
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" if collection => "deletecollection",
        "DELETE" => "delete",
        _ => "",
    };
    let mut name = target.name.clone();
    if collection && matches!(verb, "list" | "watch") {
        name = exact_name(query.get("fieldSelector").map(String::as_str).unwrap_or_default());
    }
    // `/api/v1/namespaces/{name}` addresses the namespace itself, which is also its namespace.
    let namespace = match (&target.namespace, target.gvr.group.as_str(), target.gvr.resource.as_str()) {
        (None, "", "namespaces") => target.name.clone(),
        (ns, ..) => ns.clone(),
    };
    AuditRecord {
        verb: verb.into(),
        group: target.gvr.group.clone(),
        version: target.gvr.version.clone(),
        resource: target.gvr.resource.clone(),
        subresource: target.subresource.clone(),
        namespace,
        name,
        user_agent: user_agent.into(),
        code,
        annotations: BTreeMap::new(),
    }
}

/// The name a field selector pins down with `metadata.name=` (or `==`), if any.
fn exact_name(selector: &str) -> Option<String> {
    selector.split(',').find_map(|term| {
        let value = term.trim().strip_prefix("metadata.name")?;
        let value = value.strip_prefix("==").or_else(|| value.strip_prefix('='))?;
        Some(value.to_string()).filter(|v| !v.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::http::route;

    fn rec(method: &str, path: &str, query: &[(&str, &str)]) -> AuditRecord {
        let query = query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        record(method, &route::parse(path).unwrap(), &query, "ua", 200)
    }

    #[test]
    fn verbs_as_rbac_names_them() {
        let v = |m, p, q: &[(&str, &str)]| rec(m, p, q).verb;
        assert_eq!(v("GET", "/api/v1/namespaces/d/pods", &[]), "list");
        assert_eq!(v("GET", "/api/v1/namespaces/d/pods", &[("watch", "true")]), "watch");
        assert_eq!(v("GET", "/api/v1/watch/namespaces/d/pods/p", &[]), "watch");
        assert_eq!(v("GET", "/api/v1/namespaces/d/pods/p", &[]), "get");
        assert_eq!(v("POST", "/api/v1/namespaces/d/pods", &[]), "create");
        assert_eq!(v("PUT", "/api/v1/namespaces/d/pods/p/status", &[]), "update");
        assert_eq!(v("PATCH", "/apis/apps/v1/namespaces/d/deployments/x/scale", &[]), "patch");
        assert_eq!(v("DELETE", "/api/v1/namespaces/d/pods/p", &[]), "delete");
        assert_eq!(v("DELETE", "/api/v1/namespaces/d/pods", &[]), "deletecollection");
    }

    #[test]
    fn names_namespaces_and_subresources() {
        let r = rec(
            "GET",
            "/apis/apps/v1/namespaces/d/deployments",
            &[("fieldSelector", "metadata.name=web"), ("watch", "1")],
        );
        assert_eq!(
            (r.namespace.as_deref(), r.name.as_deref(), r.rbac_resource().as_str()),
            (Some("d"), Some("web"), "deployments")
        );
        let r = rec("PUT", "/api/v1/namespaces/gone/finalize", &[]);
        assert_eq!(
            (r.namespace.as_deref(), r.name.as_deref(), r.rbac_resource().as_str()),
            (Some("gone"), Some("gone"), "namespaces/finalize")
        );
        assert_eq!(rec("GET", "/api/v1/pods", &[("fieldSelector", "spec.nodeName=n")]).name, None);
    }

    #[test]
    fn a_disabled_log_records_nothing() {
        let target = route::parse("/api/v1/pods").unwrap();
        let off = Audit::new(false);
        off.record("GET", &target, &HashMap::new(), "ua", 200, BTreeMap::new());
        assert!(off.records().is_empty() && !off.is_enabled());
        let on = Audit::new(true);
        on.record("GET", &target, &HashMap::new(), "ua", 200, BTreeMap::new());
        assert_eq!(on.permissions().into_iter().collect::<Vec<_>>(), [("".into(), "pods".into(), "list".into())]);
        on.clear();
        assert!(on.records().is_empty());
    }
}
