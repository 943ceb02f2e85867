//! `metadata.managedFields` for writes other than server-side apply, through
//! `semantics::managed_fields`, and the no-op comparison that ignores their timestamps.

use crate::cluster::meta;
use crate::cluster::resources::Gvr;
use crate::cluster::patch::{self, Types};
use crate::cluster::resources::ResourceInfo;
use crate::cluster::semantics::builtin;
use crate::cluster::semantics::managed_fields::{self, Operation, SchemaTypes};
use crate::cluster::store::WriteOptions;
use serde_json::Value;

/// The manager recorded when a client names none (the apiserver derives it from the
/// user agent; in-process writes have none).
pub const DEFAULT_MANAGER: &str = "unknown";

pub fn record(info: &ResourceInfo, old: Option<&Value>, new: &mut Value, opts: &WriteOptions, gvr: &Gvr) {
    let manager = opts.field_manager.as_deref().filter(|m| !m.is_empty()).unwrap_or(DEFAULT_MANAGER);
    let (api_version, now) = (gvr.api_version(), meta::now());
    *new = match patch::types(info, gvr) {
        Types::Schema(schema) => {
            managed_fields::update_managed_fields(old, new, manager, &api_version, Operation::Update, &now, &SchemaTypes(&schema))
        }
        Types::Builtin => {
            managed_fields::update_managed_fields(old, new, manager, &api_version, Operation::Update, &now, &builtin::list_type)
        }
    };
}

/// Equality of two objects apart from `managedFields[*].time`.
pub fn same_ignoring_timestamps(a: &Value, b: &Value) -> bool {
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
