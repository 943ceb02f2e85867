//! Applies the four patch types to a stored object through `semantics` (JSON patch, merge
//! patch, strategic merge patch, server-side apply), with the apiserver's rules on which
//! type each resource accepts.

use crate::cluster::error::{Error, Result};
use crate::cluster::resources::{Gvr, ResourceInfo};
use crate::cluster::semantics::managed_fields::SchemaTypes;
use crate::cluster::semantics::{apply, builtin, strategic};
use crate::cluster::store::{Patch, WriteOptions};
use serde_json::{Value, json};

/// The patched object. `current` is `None` only for server-side apply creating the object;
/// for the scale subresource it is the `Scale` view. `now` is the managedFields time.
pub(crate) fn apply(
    info: &ResourceInfo,
    gvr: &Gvr,
    current: Option<&Value>,
    patch: &Patch,
    opts: &WriteOptions,
    now: &str,
) -> Result<Value> {
    let empty = Value::Object(Default::default());
    let doc = current.unwrap_or(&empty);
    let (group, kind) =
        if doc["kind"] == "Scale" { ("autoscaling", "Scale") } else { (info.group.as_str(), info.kind.as_str()) };
    match patch {
        Patch::Json(p) => strategic::json_patch(doc, p).map_err(|e| Error::Status(e.status())),
        Patch::Merge(p) => Ok(strategic::merge_patch(doc, p)),
        Patch::Strategic(p) => strategic::strategic_merge(doc, p, group, kind).map_err(|e| Error::Status(e.status())),
        Patch::Apply(applied) => {
            let manager = opts.field_manager.as_deref().filter(|m| !m.is_empty()).ok_or_else(|| {
                Error::BadRequest("PATCH, application/apply-patch+yaml requires fieldManager to be set".into())
            })?;
            let mut applied = applied.clone();
            // Status belongs to the status subresource; the main resource ignores it.
            if opts.subresource == crate::cluster::store::Subresource::Main
                && info.version(&gvr.version).is_some_and(|v| v.status)
                && let Some(m) = applied.as_object_mut()
            {
                m.remove("status");
            }
            // The applied configuration names its type; fill it from the URL like a decode.
            if applied.get("apiVersion").is_none() {
                applied["apiVersion"] = json!(gvr.api_version());
            }
            let subresource = match opts.subresource {
                crate::cluster::store::Subresource::Status => "status",
                _ => "",
            };
            let (force, ssa) = (opts.force, apply::server_side_apply_to);
            let result = match types(info, gvr) {
                Types::Schema(schema) => {
                    ssa(subresource, current, &applied, manager, force, now, &SchemaTypes(&schema))
                }
                Types::Builtin => ssa(subresource, current, &applied, manager, force, now, &builtin::list_type),
            };
            result.map_err(|conflicts| Error::Status(apply::conflict_status(&conflicts)))
        }
    }
}

/// Where server-side apply and managed fields learn list types and maps.
pub(crate) enum Types {
    Schema(Value),
    Builtin,
}

pub(crate) fn types(info: &ResourceInfo, gvr: &Gvr) -> Types {
    match info.version(&gvr.version).and_then(|v| v.schema.clone()) {
        Some(schema) => Types::Schema(schema),
        None => Types::Builtin,
    }
}
