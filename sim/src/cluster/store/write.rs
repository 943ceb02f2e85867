//! Create, update, patch and delete: the apiserver's write path (decode checks, admission,
//! optimistic concurrency, status/spec separation, generation, finalizers) ending in one
//! `commit` per change.

use super::{ChangeKind, Inner, Store, present, presented};
use crate::cluster::admission;
use crate::cluster::admission_policy::{self, Operation};
use crate::cluster::crd;
use crate::cluster::error::{Error, Result};
use crate::cluster::meta;
use crate::cluster::patch;
use crate::cluster::resources::{Gvr, ResourceInfo};
use crate::cluster::semantics::{FieldError, names};
use crate::cluster::store::{DeleteOptions, ListParams, Patch, Propagation, Subresource, WriteOptions};
use forklane_core::clock::{add_secs, format_time};
use serde_json::{Value, json};
use std::sync::Arc;

/// Namespaces that exist from the start and may not be deleted.
pub(crate) const PROTECTED_NAMESPACES: [&str; 3] = ["default", "kube-system", "kube-public"];

fn check_verb(info: &ResourceInfo, verb: &str) -> Result<()> {
    if info.verbs.contains(&verb) {
        Ok(())
    } else {
        Err(Error::MethodNotAllowed("the server does not allow this method on the requested resource".into()))
    }
}

/// The decode step: `apiVersion`/`kind` default from the URL and must match it.
fn check_type(info: &ResourceInfo, gvr: &Gvr, obj: &mut Value) -> Result<()> {
    let Some(map) = obj.as_object_mut() else {
        return Err(Error::BadRequest("the body of the request is not a JSON object".into()));
    };
    let api_version = gvr.api_version();
    match map.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {
            map.insert("apiVersion".into(), json!(api_version));
        }
        Some(v) if v != api_version => {
            return Err(Error::BadRequest(format!(
                "the API version in the data ({v}) does not match the expected API version ({api_version})"
            )));
        }
        Some(_) => {}
    }
    match map.get("kind").and_then(Value::as_str) {
        None | Some("") => {
            map.insert("kind".into(), json!(info.kind));
        }
        Some(k) if k != info.kind => {
            return Err(Error::BadRequest(format!(
                "{k} in version \"{}\" cannot be handled as a {}: no kind \"{k}\" is registered for version \"{api_version}\"",
                gvr.version, info.kind
            )));
        }
        Some(_) => {}
    }
    Ok(())
}

/// `metadata.namespace` must agree with the URL; it is filled from the URL when absent.
fn check_namespace(info: &ResourceInfo, namespace: Option<&str>, obj: &mut Value) -> Result<()> {
    let meta = meta::metadata_mut(obj);
    if !info.namespaced {
        meta.remove("namespace");
        return Ok(());
    }
    let ns = namespace.ok_or_else(|| Error::BadRequest("a namespace must be specified".into()))?;
    match meta.get("namespace").and_then(Value::as_str) {
        None | Some("") => {
            meta.insert("namespace".into(), json!(ns));
            Ok(())
        }
        Some(n) if n != ns => Err(Error::BadRequest(
            "the namespace of the provided object does not match the namespace sent on the request".into(),
        )),
        Some(_) => Ok(()),
    }
}

/// System-owned metadata carried from the stored object into every update.
const PRESERVED_METADATA: [&str; 6] =
    ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation", "namespace"];

/// Fields that do not count as spec for `metadata.generation`.
fn spec_view(info: &ResourceInfo, version: &str, obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        if info.version(version).is_some_and(|v| v.status) {
            m.remove("status");
        }
    }
    v
}

impl Inner {
    fn require_namespace(&self, info: &ResourceInfo, obj: &Value) -> Result<()> {
        if !info.namespaced {
            return Ok(());
        }
        let ns = meta::namespace(obj);
        let namespaces =
            crate::cluster::resources::GroupResource { group: String::new(), resource: "namespaces".into() };
        let found = self.objects.get(&namespaces).and_then(|t| t.get(&(String::new(), ns.to_string())));
        match found {
            None => Err(Error::not_found("", "namespaces", ns)),
            Some(n) if meta::is_deleting(n) => Err(Error::Forbidden(format!(
                "{} \"{}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                crate::cluster::error::qualified(&info.group, &info.resource),
                meta::name(obj)
            ))),
            Some(_) => Ok(()),
        }
    }
}

impl Store {
    pub fn create(&self, gvr: &Gvr, namespace: Option<&str>, mut obj: Value, opts: &WriteOptions) -> Result<Value> {
        let mut inner = self.lock();
        let info = inner.resource(gvr)?;
        check_verb(&info, "create")?;
        check_type(&info, gvr, &mut obj)?;
        check_namespace(&info, namespace, &mut obj)?;
        self.create_locked(&mut inner, &info, gvr, obj, opts, false)
    }

    /// `applied`: the object comes from server-side apply, which already recorded its
    /// managed fields.
    fn create_locked(
        &self,
        inner: &mut Inner,
        info: &ResourceInfo,
        gvr: &Gvr,
        mut obj: Value,
        opts: &WriteOptions,
        applied: bool,
    ) -> Result<Value> {
        let meta = meta::metadata_mut(&mut obj);
        if meta.get("name").and_then(Value::as_str).is_none_or(str::is_empty)
            && let Some(prefix) = meta.get("generateName").and_then(Value::as_str).filter(|g| !g.is_empty())
        {
            let name = names::generate_name(prefix, &mut |n| rand::random_range(0..n));
            meta.insert("name".into(), json!(name));
        }
        if meta.get("resourceVersion").and_then(Value::as_str).is_some_and(|v| !v.is_empty()) {
            return Err(Error::Internal("resourceVersion should not be set on objects to be created".into()));
        }
        for field in ["uid", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"] {
            meta.remove(field);
        }
        let name = meta::name(&obj).to_string();
        validate_meta(info, &obj)?;
        inner.require_namespace(info, &obj)?;
        if inner.find(info, Some(meta::namespace(&obj)), &name).is_some() {
            return Err(Error::already_exists(&info.group, &info.resource, &name));
        }
        self.admit(inner, info, gvr, None, &mut obj, opts)?;
        let meta = meta::metadata_mut(&mut obj);
        meta.insert("uid".into(), json!(meta::new_uid()));
        meta.insert("creationTimestamp".into(), json!(format_time(self.now())));
        if info.generation {
            meta.insert("generation".into(), json!(1));
        }
        if !applied {
            crate::cluster::fields::record(info, None, &mut obj, opts, gvr, &format_time(self.now()));
        }
        let request = admission_policy::Request {
            operation: Operation::Create,
            info,
            gvr,
            subresource: Subresource::Main,
            object: Some(&obj),
            old_object: None,
            dry_run: opts.dry_run,
            field_manager: opts.field_manager.as_deref(),
        };
        admission_policy::admit(inner, &request)?.report(&opts.warnings, &opts.audit_annotations);
        if opts.dry_run {
            return Ok(present(&obj, gvr));
        }
        let stored = self.commit(inner, ChangeKind::Added, info, to_storage(info, obj));
        if info.group == "apiextensions.k8s.io"
            && let Some(served) = crd::resource_info(&stored)
        {
            inner.registry.insert(served);
        }
        Ok(present(&stored, gvr))
    }

    /// Admission shared by create and update: per-resource rules, CRD definition checks and
    /// custom-object schema validation.
    fn admit(
        &self,
        inner: &mut Inner,
        info: &ResourceInfo,
        gvr: &Gvr,
        old: Option<&Value>,
        obj: &mut Value,
        opts: &WriteOptions,
    ) -> Result<()> {
        let (decoded, warnings) =
            crate::cluster::typed::decode(info, &gvr.version, std::mem::take(obj), opts.field_validation)?;
        *obj = decoded;
        opts.warnings.borrow_mut().extend(warnings);
        match old {
            None => admission::on_create(&mut inner.allocator, info, obj)?,
            Some(old) => admission::on_update(&mut inner.allocator, info, old, obj)?,
        }
        if info.group == "apiextensions.k8s.io" && info.resource == "customresourcedefinitions" {
            crd::admit_definition(info, obj, &format_time(self.now()))?;
        }
        if info.group == admission_policy::GROUP {
            admission_policy::admit_definition(info, obj)?;
        }
        if info.crd.is_some() {
            let old_view = old.map(|o| present(o, gvr));
            let warnings = crd::admit_custom(info, &gvr.version, obj, old_view.as_ref(), opts.field_validation)?;
            opts.warnings.borrow_mut().extend(warnings);
        }
        Ok(())
    }

    /// Replaces an object (PUT). `opts.subresource` selects status or main-resource rules.
    pub(crate) fn update(
        &self,
        gvr: &Gvr,
        namespace: Option<&str>,
        name: &str,
        mut obj: Value,
        opts: &WriteOptions,
    ) -> Result<Value> {
        let mut inner = self.lock();
        let info = inner.resource(gvr)?;
        check_verb(&info, "update")?;
        if opts.subresource == Subresource::Scale {
            drop(inner);
            return self.update_scale(gvr, namespace, name, obj, opts);
        }
        check_type(&info, gvr, &mut obj)?;
        check_namespace(&info, namespace, &mut obj)?;
        let body_name = meta::name(&obj).to_string();
        if body_name.is_empty() {
            meta::metadata_mut(&mut obj).insert("name".into(), json!(name));
        } else if body_name != name {
            return Err(Error::BadRequest(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let Some(existing) = inner.find(&info, namespace, name) else {
            return Err(Error::not_found(&gvr.group, &gvr.resource, name));
        };
        self.update_locked(&mut inner, &info, gvr, existing, obj, opts, false)
    }

    // The store lock, the resource and the two object versions are all distinct inputs of one write.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn update_locked(
        &self,
        inner: &mut Inner,
        info: &ResourceInfo,
        gvr: &Gvr,
        existing: Arc<Value>,
        mut new: Value,
        opts: &WriteOptions,
        applied: bool,
    ) -> Result<Value> {
        let name = meta::name(&existing).to_string();
        let wanted_rv = meta::resource_version(&new).to_string();
        if !wanted_rv.is_empty() && wanted_rv != meta::resource_version(&existing) {
            return Err(Error::stale(&info.group, &info.resource, &name));
        }
        let body_uid = meta::uid(&new);
        if !body_uid.is_empty() && body_uid != meta::uid(&existing) {
            return Err(Error::Conflict {
                message: format!(
                    "Precondition failed: UID in precondition: {body_uid}, UID in object meta: {}",
                    meta::uid(&existing)
                ),
                details: crate::cluster::error::details(&info.group, &info.resource, &name),
            });
        }
        let has_status = info.version(&gvr.version).is_some_and(|v| v.status);
        let old = present(&existing, gvr);
        if opts.subresource == Subresource::Status {
            // Status writes change nothing but status (and, for an apply, the managed fields it
            // computed, with the applier's `status` entry).
            let status = new.get("status").cloned().unwrap_or(Value::Null);
            let managed = new["metadata"].get("managedFields").cloned();
            new = old.clone();
            new["status"] = status;
            if applied && let Some(managed) = managed {
                new["metadata"]["managedFields"] = managed;
            }
        } else if has_status {
            // Main-resource writes leave status alone.
            match old.get("status") {
                Some(s) => new["status"] = s.clone(),
                None => {
                    new.as_object_mut().map(|m| m.remove("status"));
                }
            }
        }
        {
            let old_meta = old["metadata"].as_object().cloned().unwrap_or_default();
            let meta = meta::metadata_mut(&mut new);
            for field in PRESERVED_METADATA {
                match old_meta.get(field) {
                    Some(v) => meta.insert(field.into(), v.clone()),
                    None => meta.remove(field),
                };
            }
            meta.insert("name".into(), json!(name));
            meta.remove("resourceVersion");
        }
        if meta::is_deleting(&old) {
            let before = meta::finalizers(&old);
            if meta::finalizers(&new).iter().any(|f| !before.contains(f)) {
                let err = FieldError::forbidden(
                    "metadata.finalizers",
                    "no new finalizers can be added if the object is being deleted",
                );
                return Err(Error::invalid(&info.kind, &info.group, &name, &[err]));
            }
        }
        if opts.subresource != Subresource::Status {
            validate_meta(info, &new)?;
            self.admit(inner, info, gvr, Some(&old), &mut new, opts)?;
        }
        if info.generation && spec_view(info, &gvr.version, &old) != spec_view(info, &gvr.version, &new) {
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            new["metadata"]["generation"] = json!(generation);
        }
        if !applied {
            crate::cluster::fields::record(info, Some(&old), &mut new, opts, gvr, &format_time(self.now()));
        }
        let request = admission_policy::Request {
            operation: Operation::Update,
            info,
            gvr,
            subresource: opts.subresource,
            object: Some(&new),
            old_object: Some(&old),
            dry_run: opts.dry_run,
            field_manager: opts.field_manager.as_deref(),
        };
        admission_policy::admit(inner, &request)?.report(&opts.warnings, &opts.audit_annotations);
        let mut unchanged = new.clone();
        unchanged["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
        if crate::cluster::fields::same_ignoring_timestamps(&unchanged, &old) {
            // A no-op write stores nothing and keeps the resourceVersion, as the apiserver does.
            return Ok(old);
        }
        if opts.dry_run {
            return Ok(unchanged);
        }
        if meta::is_deleting(&new)
            && meta::finalizers(&new).is_empty()
            && !namespace_held(info, &new)
            && !grace_pending(&new)
        {
            return Ok(present(&self.remove_locked(inner, info, to_storage(info, new)), gvr));
        }
        let stored = self.commit(inner, ChangeKind::Modified, info, to_storage(info, new));
        if info.group == "apiextensions.k8s.io"
            && let Some(served) = crd::resource_info(&stored)
        {
            inner.registry.insert(served);
        }
        Ok(present(&stored, gvr))
    }

    /// Removes an object for good, releasing what it held.
    fn remove_locked(&self, inner: &mut Inner, info: &ResourceInfo, obj: Value) -> Arc<Value> {
        admission::on_delete(&mut inner.allocator, info, &obj);
        let gone = self.commit(inner, ChangeKind::Deleted, info, obj);
        if info.group == "apiextensions.k8s.io"
            && let Some(served) = crd::resource_info(&gone)
        {
            inner.registry.remove(&served.group_resource());
            inner.drop_table(&served.group_resource());
        }
        gone
    }

    pub fn patch(
        &self,
        gvr: &Gvr,
        namespace: Option<&str>,
        name: &str,
        patch: Patch,
        opts: &WriteOptions,
    ) -> Result<Value> {
        let mut inner = self.lock();
        let info = inner.resource(gvr)?;
        check_verb(&info, "patch")?;
        let existing = inner.find(&info, namespace, name);
        if opts.subresource == Subresource::Scale {
            let existing = existing.ok_or_else(|| Error::not_found(&gvr.group, &gvr.resource, name))?;
            let scale = crate::cluster::scale::to_scale(&info, gvr, &existing)?;
            let patched = patch::apply(&info, gvr, Some(&scale), &patch, opts, &format_time(self.now()))?;
            drop(inner);
            return self.update_scale(gvr, namespace, name, patched, opts);
        }
        let Some(existing) = existing else {
            if let Patch::Apply(_) = patch {
                // Server-side apply creates what does not exist.
                let mut obj = patch::apply(&info, gvr, None, &patch, opts, &format_time(self.now()))?;
                check_type(&info, gvr, &mut obj)?;
                check_namespace(&info, namespace, &mut obj)?;
                if meta::name(&obj) != name {
                    return Err(Error::BadRequest(format!(
                        "the name of the object ({}) does not match the name on the URL ({name})",
                        meta::name(&obj)
                    )));
                }
                return self.create_locked(&mut inner, &info, gvr, obj, opts, true);
            }
            return Err(Error::not_found(&gvr.group, &gvr.resource, name));
        };
        let current = present(&existing, gvr);
        let mut patched = patch::apply(&info, gvr, Some(&current), &patch, opts, &format_time(self.now()))?;
        check_type(&info, gvr, &mut patched)?;
        check_namespace(&info, namespace, &mut patched)?;
        if meta::name(&patched) != name {
            let err = FieldError::invalid("metadata.name", json!(meta::name(&patched)), "field is immutable");
            return Err(Error::invalid(&info.kind, &info.group, name, &[err]));
        }
        let applied = matches!(patch, Patch::Apply(_));
        self.update_locked(&mut inner, &info, gvr, existing, patched, opts, applied)
    }

    /// Deletes an object: with finalizers it only gets a deletionTimestamp, and so does a pod
    /// deleted with a grace period (see `graceful`); dependents are handled by the garbage
    /// collector according to `propagation`.
    pub fn delete(&self, gvr: &Gvr, namespace: Option<&str>, name: &str, opts: &DeleteOptions) -> Result<Value> {
        let mut inner = self.lock();
        let info = inner.resource(gvr)?;
        check_verb(&info, "delete")?;
        let existing =
            inner.find(&info, namespace, name).ok_or_else(|| Error::not_found(&gvr.group, &gvr.resource, name))?;
        self.delete_locked(&mut inner, &info, gvr, existing, opts)
    }

    fn delete_locked(
        &self,
        inner: &mut Inner,
        info: &ResourceInfo,
        gvr: &Gvr,
        existing: Arc<Value>,
        opts: &DeleteOptions,
    ) -> Result<Value> {
        let name = meta::name(&existing).to_string();
        let precondition_failed = |what: &str, want: &str, have: &str| Error::Conflict {
            message: format!("Precondition failed: {what} in precondition: {want}, {what} in object meta: {have}"),
            details: crate::cluster::error::details(&info.group, &info.resource, &name),
        };
        if let Some(uid) = &opts.precondition_uid
            && uid != meta::uid(&existing)
        {
            return Err(precondition_failed("UID", uid, meta::uid(&existing)));
        }
        if let Some(rv) = &opts.precondition_resource_version
            && rv != meta::resource_version(&existing)
        {
            return Err(precondition_failed("ResourceVersion", rv, meta::resource_version(&existing)));
        }
        if info.group.is_empty() && info.resource == "namespaces" && PROTECTED_NAMESPACES.contains(&name.as_str()) {
            return Err(Error::Forbidden(format!(
                "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
            )));
        }
        let mut obj = (*existing).clone();
        let grace = graceful(info, &obj, opts);
        // A deletion already pending is not admitted again, as in kube-apiserver.
        if !matches!(grace, Grace::Pending) {
            let request = admission_policy::Request {
                operation: Operation::Delete,
                info,
                gvr,
                subresource: Subresource::Main,
                object: None,
                old_object: Some(&presented(&obj, gvr)),
                dry_run: opts.dry_run,
                field_manager: None,
            };
            admission_policy::admit(inner, &request)?.report(&opts.warnings, &opts.audit_annotations);
        }
        match grace {
            Grace::Pending => return Ok(present(&obj, gvr)),
            Grace::Period(seconds) if seconds > 0 || !meta::finalizers(&obj).is_empty() => {
                return self.delete_gracefully(inner, info, gvr, obj, seconds, opts);
            }
            Grace::Period(_) | Grace::None => {}
        }
        let mut finalizers = meta::finalizers(&obj);
        if let Some(f) = policy_finalizer(opts)
            && !meta::is_deleting(&obj)
            && !finalizers.iter().any(|x| x == f)
        {
            finalizers.push(f.to_string());
        }
        if finalizers.is_empty() && !namespace_held(info, &obj) {
            if opts.dry_run {
                return Ok(present(&obj, gvr));
            }
            return Ok(present(&self.remove_locked(inner, info, obj), gvr));
        }
        if meta::is_deleting(&obj) {
            return Ok(present(&obj, gvr));
        }
        meta::set_finalizers(&mut obj, &finalizers);
        let meta = meta::metadata_mut(&mut obj);
        meta.insert("deletionTimestamp".into(), json!(format_time(self.now())));
        meta.insert("deletionGracePeriodSeconds".into(), json!(0));
        if let Some(g) = meta.get("generation").and_then(Value::as_i64) {
            meta.insert("generation".into(), json!(g + 1));
        }
        if info.group.is_empty() && info.resource == "namespaces" {
            obj["status"]["phase"] = json!("Terminating");
        }
        if opts.dry_run {
            return Ok(present(&obj, gvr));
        }
        Ok(present(&self.commit(inner, ChangeKind::Modified, info, obj), gvr))
    }

    /// Sets or shortens a pod's grace period, keeping the object for the kubelet to finish.
    fn delete_gracefully(
        &self,
        inner: &mut Inner,
        info: &ResourceInfo,
        gvr: &Gvr,
        mut obj: Value,
        seconds: i64,
        opts: &DeleteOptions,
    ) -> Result<Value> {
        let at = match obj
            .pointer("/metadata/deletionTimestamp")
            .and_then(Value::as_str)
            .and_then(forklane_core::clock::parse_time)
        {
            // Shortening: the deadline moves by the difference.
            Some(deadline) => {
                add_secs(deadline, seconds - obj["metadata"]["deletionGracePeriodSeconds"].as_i64().unwrap_or(0))
            }
            None => {
                let mut finalizers = meta::finalizers(&obj);
                if let Some(f) = policy_finalizer(opts)
                    && !finalizers.iter().any(|x| x == f)
                {
                    finalizers.push(f.to_string());
                }
                meta::set_finalizers(&mut obj, &finalizers);
                if let Some(g) = obj["metadata"]["generation"].as_i64() {
                    obj["metadata"]["generation"] = json!(g + 1);
                }
                add_secs(self.now(), seconds)
            }
        };
        let meta = meta::metadata_mut(&mut obj);
        meta.insert("deletionTimestamp".into(), json!(format_time(at)));
        meta.insert("deletionGracePeriodSeconds".into(), json!(seconds));
        if opts.dry_run {
            return Ok(present(&obj, gvr));
        }
        Ok(present(&self.commit(inner, ChangeKind::Modified, info, obj), gvr))
    }

    /// Deletes every object matching the selectors; returns them as a list.
    pub(crate) fn delete_collection(
        &self,
        gvr: &Gvr,
        namespace: Option<&str>,
        params: &ListParams,
        opts: &DeleteOptions,
    ) -> Result<Value> {
        let mut inner = self.lock();
        let info = inner.resource(gvr)?;
        check_verb(&info, "deletecollection")?;
        drop(inner);
        let listed = self.list(gvr, namespace, &ListParams { limit: None, continue_token: None, ..params.clone() })?;
        inner = self.lock();
        let mut deleted = Vec::new();
        for item in listed["items"].as_array().into_iter().flatten() {
            if let Some(existing) = inner.find(&info, Some(meta::namespace(item)), meta::name(item)) {
                deleted.push(self.delete_locked(&mut inner, &info, gvr, existing, opts)?);
            }
        }
        Ok(
            json!({"kind": info.list_kind, "apiVersion": gvr.api_version(), "metadata": {"resourceVersion": inner.rv.to_string()}, "items": deleted}),
        )
    }

    /// The namespace `finalize` subresource: replaces `spec.finalizers`; a terminating
    /// namespace without finalizers left is removed.
    pub(crate) fn finalize_namespace(&self, name: &str, spec_finalizers: Vec<String>) -> Result<Value> {
        let mut inner = self.lock();
        let gvr = Gvr::new("", "v1", "namespaces");
        let info = inner.resource(&gvr)?;
        let existing = inner.find(&info, None, name).ok_or_else(|| Error::not_found("", "namespaces", name))?;
        let mut ns = (*existing).clone();
        ns["spec"]["finalizers"] = json!(spec_finalizers);
        if meta::is_deleting(&ns) && spec_finalizers.is_empty() && meta::finalizers(&ns).is_empty() {
            return Ok(self.remove_locked(&mut inner, &info, ns).as_ref().clone());
        }
        Ok(self.commit(&mut inner, ChangeKind::Modified, &info, ns).as_ref().clone())
    }
}

/// The garbage collector's finalizer for a deletion's propagation policy.
fn policy_finalizer(opts: &DeleteOptions) -> Option<&'static str> {
    match opts.propagation {
        Some(Propagation::Orphan) => Some("orphan"),
        Some(Propagation::Foreground) => Some("foregroundDeletion"),
        _ => None,
    }
}

/// How a delete treats an object's grace period.
enum Grace {
    /// Not a graceful resource, or a deletion without a grace period already in progress.
    None,
    /// A graceful deletion is in progress and the request does not shorten it: nothing changes.
    Pending,
    /// Delete with this grace period (0: at once).
    Period(i64),
}

/// The pod strategy's `CheckGracefulDelete` and the registry's `BeforeDelete`: the period is
/// the request's `gracePeriodSeconds`, else the pod's `terminationGracePeriodSeconds`; 0 for
/// a pod never scheduled or already finished; negative means 1. A deletion in progress may
/// only be shortened.
fn graceful(info: &ResourceInfo, pod: &Value, opts: &DeleteOptions) -> Grace {
    if !(info.group.is_empty() && info.resource == "pods") {
        return Grace::None;
    }
    if meta::is_deleting(pod) {
        let current = pod["metadata"]["deletionGracePeriodSeconds"].as_i64().unwrap_or(0);
        return match opts.grace_period_seconds.map(|p| if p < 0 { 1 } else { p }) {
            _ if current == 0 => Grace::None,
            Some(p) if p < current => Grace::Period(p),
            _ => Grace::Pending,
        };
    }
    let unscheduled = pod["spec"]["nodeName"].as_str().is_none_or(str::is_empty);
    let finished = matches!(pod["status"]["phase"].as_str(), Some("Succeeded" | "Failed"));
    let period = opts.grace_period_seconds.or(pod["spec"]["terminationGracePeriodSeconds"].as_i64()).unwrap_or(0);
    Grace::Period(if unscheduled || finished {
        0
    } else if period < 0 {
        1
    } else {
        period
    })
}

/// A pod whose grace period has not been cut to 0 stays until the kubelet deletes it.
fn grace_pending(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64).is_some_and(|g| g > 0)
}

/// `ValidateObjectMeta`: name (or generateName), namespace, labels, annotations.
fn validate_meta(info: &ResourceInfo, obj: &Value) -> Result<()> {
    let errors = names::validate_object_meta(obj, &info.group, &info.kind, info.namespaced);
    if errors.is_empty() { Ok(()) } else { Err(Error::invalid(&info.kind, &info.group, meta::name(obj), &errors)) }
}

/// A namespace also waits for its `spec.finalizers` (the namespace controller's "kubernetes").
fn namespace_held(info: &ResourceInfo, obj: &Value) -> bool {
    info.group.is_empty()
        && info.resource == "namespaces"
        && obj["spec"]["finalizers"].as_array().is_some_and(|f| !f.is_empty())
}

/// Objects are stored in the storage version (events.k8s.io Events as core Events).
fn to_storage(info: &ResourceInfo, mut obj: Value) -> Value {
    if info.is_view() {
        return crate::cluster::events::to_core(&obj);
    }
    obj["apiVersion"] = json!(crate::cluster::resources::api_version(&info.group, &info.storage));
    obj
}
