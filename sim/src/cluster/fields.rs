//! `metadata.managedFields` for writes other than server-side apply, through
//! `semantics::managed_fields`, and the no-op comparison that ignores their timestamps.

use crate::cluster::meta;
use crate::cluster::patch::{self, Types};
use crate::cluster::resources::Gvr;
use crate::cluster::resources::ResourceInfo;
use crate::cluster::semantics::builtin;
use crate::cluster::semantics::managed_fields::{self, Operation, SchemaTypes};
use crate::cluster::store::WriteOptions;
use serde_json::Value;

/// The manager recorded when a client names none (the apiserver derives it from the
/// user agent; in-process writes have none).
pub(crate) const DEFAULT_MANAGER: &str = "unknown";

/// Records a non-apply write in `new`'s managedFields. A client may rewrite managedFields
/// itself (kubectl does when migrating client-side apply ownership to server-side apply):
/// an explicit non-empty list replaces the stored one as the starting point, `[{}]`
/// strips them all, and an empty list changes nothing — the apiserver's rules. `now` is the
/// entry's time.
pub(crate) fn record(
    info: &ResourceInfo,
    old: Option<&Value>,
    new: &mut Value,
    opts: &WriteOptions,
    gvr: &Gvr,
    now: &str,
) {
    let requested = new.pointer("/metadata/managedFields").cloned();
    if requested
        .as_ref()
        .and_then(Value::as_array)
        .is_some_and(|a| a.len() == 1 && a[0].as_object().is_some_and(|o| o.is_empty()))
    {
        meta::metadata_mut(new).remove("managedFields");
        return;
    }
    let base: Option<Value> = match (&requested, old) {
        (Some(Value::Array(list)), Some(old))
            if !list.is_empty() && old.pointer("/metadata/managedFields") != requested.as_ref() =>
        {
            let mut base = old.clone();
            meta::metadata_mut(&mut base).insert("managedFields".into(), Value::Array(list.clone()));
            Some(base)
        }
        _ => old.cloned(),
    };
    let manager = opts.field_manager.as_deref().filter(|m| !m.is_empty()).unwrap_or(DEFAULT_MANAGER);
    let api_version = gvr.api_version();
    *new = match patch::types(info, gvr) {
        Types::Schema(schema) => managed_fields::update_managed_fields(
            base.as_ref(),
            new,
            manager,
            &api_version,
            Operation::Update,
            now,
            &SchemaTypes(&schema),
        ),
        Types::Builtin => managed_fields::update_managed_fields(
            base.as_ref(),
            new,
            manager,
            &api_version,
            Operation::Update,
            now,
            &builtin::list_type,
        ),
    };
}

/// Equality of two objects apart from `managedFields[*].time`.
pub(crate) fn same_ignoring_timestamps(a: &Value, b: &Value) -> bool {
    fn strip(v: &Value) -> Value {
        let mut v = v.clone();
        if let Some(entries) = v.pointer_mut("/metadata/managedFields").and_then(Value::as_array_mut) {
            for e in entries {
                if let Some(m) = e.as_object_mut() {
                    m.remove("time");
                }
            }
        }
        v
    }
    a == b || strip(a) == strip(b)
}
