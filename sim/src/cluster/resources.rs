//! The resource registry: which group/version/resource triples are served, with their kinds,
//! scope, short names, categories and subresources. Built-ins are fixed; CRDs add and remove
//! entries at run time (see `crd.rs`), and discovery is rendered from this registry.

use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Identifies a served resource the way URLs do: `/apis/{group}/{version}/{resource}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Gvr {
    pub group: String,
    pub version: String,
    pub resource: String,
}

impl Gvr {
    pub fn new(group: &str, version: &str, resource: &str) -> Self {
        Gvr { group: group.into(), version: version.into(), resource: resource.into() }
    }

    /// The `apiVersion` string objects of this resource carry.
    pub(crate) fn api_version(&self) -> String {
        api_version(&self.group, &self.version)
    }

    pub(crate) fn group_resource(&self) -> GroupResource {
        GroupResource { group: self.group.clone(), resource: self.resource.clone() }
    }
}

pub(crate) fn api_version(group: &str, version: &str) -> String {
    if group.is_empty() { version.to_string() } else { format!("{group}/{version}") }
}

/// Storage identity of a resource: all versions of a group/resource share one set of objects.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupResource {
    pub group: String,
    pub resource: String,
}

/// Where the scale subresource reads and writes replicas (CRD `subresources.scale`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    /// For built-ins the selector is rendered from `.spec.selector`; CRDs name a string field.
    pub label_selector: Option<String>,
}

/// One served version of a resource.
#[derive(Debug, Clone)]
pub(crate) struct VersionInfo {
    pub name: String,
    /// The CRD's `openAPIV3Schema` for this version; `None` for built-ins.
    pub schema: Option<Value>,
    /// CRD `additionalPrinterColumns`, used for the Table format.
    pub printer_columns: Vec<Value>,
    pub status: bool,
    pub scale: Option<ScalePaths>,
}

#[derive(Debug, Clone)]
pub(crate) struct ResourceInfo {
    pub group: String,
    pub resource: String,
    pub singular: String,
    pub kind: String,
    pub list_kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub verbs: Vec<&'static str>,
    /// Served versions, in Kubernetes version priority (the preferred version first).
    pub versions: Vec<VersionInfo>,
    /// The version objects are stored in (and converted from, by rewriting `apiVersion`).
    pub storage: String,
    /// Whether `metadata.generation` is maintained (bumped on spec changes).
    pub generation: bool,
    /// Name of the owning CRD; `None` for built-ins.
    pub crd: Option<String>,
}

impl ResourceInfo {
    pub(crate) fn version(&self, version: &str) -> Option<&VersionInfo> {
        self.versions.iter().find(|v| v.name == version)
    }

    pub(crate) fn group_resource(&self) -> GroupResource {
        GroupResource { group: self.group.clone(), resource: self.resource.clone() }
    }

    /// Where the objects live. Usually the resource itself; events.k8s.io Events are the core
    /// Events in another version (see `events.rs`).
    pub(crate) fn storage_resource(&self) -> GroupResource {
        if crate::cluster::events::is_events_view(&self.group, &self.resource) {
            crate::cluster::events::storage()
        } else {
            self.group_resource()
        }
    }

    /// A second view of another resource's objects; sweeps over all objects skip it.
    pub(crate) fn is_view(&self) -> bool {
        self.storage_resource() != self.group_resource()
    }
}

const ALL_VERBS: [&str; 8] = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

struct Builtin {
    group: &'static str,
    version: &'static str,
    resource: &'static str,
    kind: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    all: bool,
    status: bool,
    scale: bool,
    generation: bool,
}

const BUILTINS: &[Builtin] = &[
    b("", "v1", "namespaces", "Namespace", false, &["ns"], false, true, false, false),
    b("", "v1", "services", "Service", true, &["svc"], true, true, false, false),
    b("", "v1", "endpoints", "Endpoints", true, &["ep"], false, false, false, false),
    b("", "v1", "pods", "Pod", true, &["po"], true, true, false, true),
    b("", "v1", "configmaps", "ConfigMap", true, &["cm"], false, false, false, false),
    b("", "v1", "secrets", "Secret", true, &[], false, false, false, false),
    b("", "v1", "serviceaccounts", "ServiceAccount", true, &["sa"], false, false, false, false),
    b("", "v1", "events", "Event", true, &["ev"], false, false, false, false),
    b("apps", "v1", "deployments", "Deployment", true, &["deploy"], true, true, true, true),
    b("apps", "v1", "replicasets", "ReplicaSet", true, &["rs"], true, true, true, true),
    b("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", true, &[], false, false, false, false),
    b("events.k8s.io", "v1", "events", "Event", true, &["ev"], false, false, false, false),
    b(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "ClusterRoleBinding",
        false,
        &[],
        false,
        false,
        false,
        false,
    ),
    b("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", false, &[], false, false, false, false),
    b("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", true, &[], false, false, false, false),
    b("rbac.authorization.k8s.io", "v1", "roles", "Role", true, &[], false, false, false, false),
    b("coordination.k8s.io", "v1", "leases", "Lease", true, &[], false, false, false, false),
    b("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", true, &["pdb"], false, true, false, true),
    b("scheduling.k8s.io", "v1", "priorityclasses", "PriorityClass", false, &["pc"], false, false, false, false),
    b(
        crate::cluster::admission_policy::GROUP,
        "v1",
        "validatingadmissionpolicies",
        "ValidatingAdmissionPolicy",
        false,
        &[],
        false,
        true,
        false,
        true,
    ),
    b(
        crate::cluster::admission_policy::GROUP,
        "v1",
        "validatingadmissionpolicybindings",
        "ValidatingAdmissionPolicyBinding",
        false,
        &[],
        false,
        false,
        false,
        true,
    ),
    b(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
        &["crd", "crds"],
        false,
        true,
        false,
        true,
    ),
];

#[allow(clippy::too_many_arguments)]
const fn b(
    group: &'static str,
    version: &'static str,
    resource: &'static str,
    kind: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    all: bool,
    status: bool,
    scale: bool,
    generation: bool,
) -> Builtin {
    Builtin { group, version, resource, kind, namespaced, short_names, all, status, scale, generation }
}

fn builtin_info(bi: &Builtin) -> ResourceInfo {
    let verbs = if bi.resource == "namespaces" {
        // The apiserver offers no deletecollection for namespaces.
        ALL_VERBS.iter().copied().filter(|v| *v != "deletecollection").collect()
    } else {
        ALL_VERBS.to_vec()
    };
    ResourceInfo {
        group: bi.group.into(),
        resource: bi.resource.into(),
        singular: bi.kind.to_lowercase(),
        kind: bi.kind.into(),
        list_kind: format!("{}List", bi.kind),
        namespaced: bi.namespaced,
        short_names: bi.short_names.iter().map(|s| s.to_string()).collect(),
        categories: if bi.all {
            vec!["all".into()]
        } else if bi.group == crate::cluster::admission_policy::GROUP {
            vec!["api-extensions".into()]
        } else {
            vec![]
        },
        verbs,
        versions: vec![VersionInfo {
            name: bi.version.into(),
            schema: None,
            printer_columns: vec![],
            status: bi.status,
            scale: bi.scale.then(|| ScalePaths {
                spec_replicas: ".spec.replicas".into(),
                status_replicas: ".status.replicas".into(),
                label_selector: None,
            }),
        }],
        storage: bi.version.into(),
        generation: bi.generation,
        crd: None,
    }
}

/// All served resources, keyed by group/resource.
#[derive(Debug, Clone)]
pub(crate) struct Registry {
    resources: BTreeMap<GroupResource, Arc<ResourceInfo>>,
}

impl Default for Registry {
    fn default() -> Self {
        let resources = BUILTINS
            .iter()
            .map(|bi| {
                let info = builtin_info(bi);
                (info.group_resource(), Arc::new(info))
            })
            .collect();
        Registry { resources }
    }
}

impl Registry {
    /// The resource served at this group/version/resource, if any.
    pub(crate) fn lookup(&self, gvr: &Gvr) -> Option<Arc<ResourceInfo>> {
        let info = self.resources.get(&gvr.group_resource())?;
        info.version(&gvr.version)?;
        Some(info.clone())
    }

    pub(crate) fn get(&self, gr: &GroupResource) -> Option<Arc<ResourceInfo>> {
        self.resources.get(gr).cloned()
    }

    /// The resource whose objects have this apiVersion and kind.
    pub(crate) fn by_kind(&self, api_version: &str, kind: &str) -> Option<(Gvr, Arc<ResourceInfo>)> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        self.resources
            .values()
            .find(|r| r.group == group && r.kind == kind && r.version(version).is_some())
            .map(|r| (Gvr::new(group, version, &r.resource), r.clone()))
    }

    pub(crate) fn all(&self) -> impl Iterator<Item = &Arc<ResourceInfo>> {
        self.resources.values()
    }

    pub(crate) fn insert(&mut self, info: ResourceInfo) {
        self.resources.insert(info.group_resource(), Arc::new(info));
    }

    pub(crate) fn remove(&mut self, gr: &GroupResource) {
        self.resources.remove(gr);
    }

    /// Groups with their versions, in discovery order: built-in groups first, then CRD groups
    /// alphabetically (the apiserver's ordering puts built-ins by priority before CRDs).
    pub(crate) fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut groups: Vec<(String, Vec<String>, bool)> = Vec::new();
        for r in self.resources.values() {
            let entry = match groups.iter_mut().find(|(g, _, _)| *g == r.group) {
                Some(e) => e,
                None => {
                    groups.push((r.group.clone(), vec![], r.crd.is_some()));
                    groups.last_mut().expect("just pushed")
                }
            };
            for v in &r.versions {
                if !entry.1.contains(&v.name) {
                    entry.1.push(v.name.clone());
                }
            }
        }
        let builtin_order = |g: &str| BUILTINS.iter().position(|b| b.group == g).unwrap_or(usize::MAX);
        groups.sort_by(|a, b| (a.2, builtin_order(&a.0), &a.0).cmp(&(b.2, builtin_order(&b.0), &b.0)));
        groups.into_iter().map(|(g, v, _)| (g, v)).collect()
    }
}
