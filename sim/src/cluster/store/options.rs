//! Parameters of store operations, mirroring the apiserver's query parameters and
//! `DeleteOptions`.

use serde_json::Value;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, Default)]
pub struct ListParams {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    /// `resourceVersionMatch`: "Exact" or "NotOlderThan".
    pub resource_version_match: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct WatchParams {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    /// Start after this version; unset or "0" starts with synthetic ADDED events for the
    /// current state.
    pub resource_version: Option<String>,
    pub allow_bookmarks: bool,
    /// Streaming list: initial ADDED events then a bookmark annotated
    /// `k8s.io/initial-events-end`.
    pub send_initial_events: bool,
    /// `timeoutSeconds`; the stream ends after this long.
    pub timeout: Option<Duration>,
    /// How often bookmarks are sent when allowed.
    pub bookmark_interval: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Subresource {
    #[default]
    Main,
    Status,
    Scale,
}

/// `fieldValidation`: what to do with fields the schema does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    Ignore,
    /// Drop them and report a warning (the apiserver's default).
    #[default]
    Warn,
    Strict,
}

#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// `fieldManager`; required for apply, defaulted from the user agent otherwise.
    pub field_manager: Option<String>,
    pub dry_run: bool,
    /// `force` for server-side apply.
    pub force: bool,
    pub subresource: Subresource,
    pub field_validation: FieldValidation,
    /// Filled by the write with warnings for the client (the `Warning` response header),
    /// e.g. unknown fields dropped under `fieldValidation=Warn`.
    pub warnings: RefCell<Vec<String>>,
    /// Filled by the write with annotations for the request's audit record, as admission
    /// plugins annotate it (e.g. ValidatingAdmissionPolicy failures under `Audit`).
    pub audit_annotations: RefCell<BTreeMap<String, String>>,
}

#[derive(Debug, Clone)]
pub enum Patch {
    /// `application/json-patch+json`
    Json(Value),
    /// `application/merge-patch+json`
    Merge(Value),
    /// `application/strategic-merge-patch+json`
    Strategic(Value),
    /// `application/apply-patch+yaml` (server-side apply), already parsed.
    Apply(Value),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Orphan,
    Background,
    Foreground,
}

#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// `propagationPolicy`; unset means the resource's default (background).
    pub propagation: Option<Propagation>,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
    pub dry_run: bool,
    /// `gracePeriodSeconds` (pods only): unset means the pod's
    /// `terminationGracePeriodSeconds`; 0 removes the pod at once (the kubelet's final delete,
    /// `kubectl delete --force`).
    pub grace_period_seconds: Option<i64>,
    /// Filled by the delete, as `WriteOptions::warnings`.
    pub warnings: RefCell<Vec<String>>,
    /// Filled by the delete, as `WriteOptions::audit_annotations`.
    pub audit_annotations: RefCell<BTreeMap<String, String>>,
}
