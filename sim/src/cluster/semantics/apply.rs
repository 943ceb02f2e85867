//! Server-side apply as structured-merge-diff does it: merge the applied configuration into
//! the live object, drop fields the manager stopped applying (unless someone else owns them),
//! detect conflicts with other managers, and record the manager's `Apply` entry.

use crate::cluster::semantics::gofmt;
use crate::cluster::semantics::managed_fields::{
    self, Element, Entry, FieldPath, FieldSet, ListType, Operation, TypeInfo, item_key,
};
use serde_json::{Value, json};

/// One field owned by another manager that the apply would change.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Conflict {
    /// The other manager as Kubernetes prints it: `"kubectl"`, or for an `Update` owner
    /// `"kubectl-client-side-apply" using apps/v1 at 2024-01-01T00:00:00Z`.
    pub manager: String,
    /// `.spec.containers[name="app"].image` style path.
    pub field: String,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ApplyConflicts(pub Vec<Conflict>);

/// [`server_side_apply_to`] the main resource (the unit tests' shorthand).
#[cfg(test)]
pub(crate) fn server_side_apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    now: &str,
    types: &dyn TypeInfo,
) -> Result<Value, ApplyConflicts> {
    server_side_apply_to("", live, applied, manager, force, now, types)
}

/// Applies `applied` for `manager` through `subresource` (`"status"`, or `""` for the main
/// resource). `live` is the stored object (None on create-by-apply); the result carries the new
/// `metadata.managedFields`. The manager's `Apply` entry of that subresource is its own, so what
/// it stops applying there is removed there, as the apiserver keeps one entry per manager,
/// operation and subresource. Callers strip fields the endpoint resets (e.g. `status` on the
/// main resource when a status subresource exists) beforehand.
pub(crate) fn server_side_apply_to(
    subresource: &str,
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    now: &str,
    types: &dyn TypeInfo,
) -> Result<Value, ApplyConflicts> {
    let live_obj = live.cloned().unwrap_or_else(|| json!({}));
    let api_version = applied.get("apiVersion").and_then(Value::as_str).unwrap_or("").to_string();
    let mut entries = managed_fields::read_entries(&live_obj);
    let mine = |e: &Entry| e.manager == manager && e.operation == Operation::Apply && e.subresource == subresource;
    let last_set = entries.iter().find(|e| mine(e)).map(|e| e.fields.clone()).unwrap_or_default();
    entries.retain(|e| !mine(e));

    let applied_set = managed_fields::field_set(applied, types);
    let mut merged = merge(&live_obj, applied, "", types);
    let mut owned: FieldSet = entries.iter().flat_map(|e| e.fields.iter().cloned()).collect();
    owned.extend(applied_set.iter().cloned());
    prune(&mut merged, &last_set, &owned);

    let (changed, removed) = managed_fields::diff(live, &merged, types);
    let mut conflicts = Vec::new();
    for e in &entries {
        for p in e.fields.intersection(&changed) {
            conflicts.push(Conflict { manager: print_manager(e), field: path_string(p) });
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(ApplyConflicts(conflicts));
    }
    for e in &mut entries {
        // Forced: ownership of conflicting fields moves to the applier.
        e.fields.retain(|p| !changed.contains(p) && !removed.contains(p));
    }
    entries.push(Entry {
        manager: manager.into(),
        operation: Operation::Apply,
        api_version,
        time: now.into(),
        subresource: subresource.into(),
        fields: applied_set,
    });
    managed_fields::write_entries(&mut merged, entries);
    Ok(merged)
}

/// Deep merge of an applied configuration into a live object.
fn merge(live: &Value, applied: &Value, tpath: &str, types: &dyn TypeInfo) -> Value {
    match (live, applied) {
        (Value::Object(l), Value::Object(a)) => {
            let mut out = l.clone();
            for (k, v) in a {
                let child = format!("{tpath}.{k}");
                let merged = merge(l.get(k).unwrap_or(&Value::Null), v, &child, types);
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Value::Array(l), Value::Array(a)) => match types.list_type(tpath) {
            ListType::Atomic => applied.clone(),
            ListType::Set => {
                let mut out = l.clone();
                out.extend(a.iter().filter(|x| !l.contains(x)).cloned());
                Value::Array(out)
            }
            ListType::Map(keys) => {
                let item_path = format!("{tpath}[]");
                let key = |v: &Value| item_key(&keys, v);
                let mut out: Vec<Value> = l
                    .iter()
                    .map(|li| {
                        a.iter()
                            .find(|ai| key(ai) == key(li))
                            .map_or_else(|| li.clone(), |ai| merge(li, ai, &item_path, types))
                    })
                    .collect();
                out.extend(a.iter().filter(|ai| !l.iter().any(|li| key(li) == key(ai))).cloned());
                Value::Array(out)
            }
        },
        _ => applied.clone(),
    }
}

/// Removes fields the manager applied last time but not now, unless another manager (or the
/// new configuration) owns them; then containers this left empty and nobody owns.
fn prune(obj: &mut Value, last_set: &FieldSet, owned: &FieldSet) {
    let mut dropped: Vec<&FieldPath> = last_set.iter().filter(|p| !owned.contains(*p)).collect();
    // Shallowest first: a list item must go while its key fields still identify it.
    dropped.sort_by_key(|p| p.len());
    for p in &dropped {
        managed_fields::remove(obj, p);
    }
    for p in dropped {
        for depth in (1..p.len()).rev() {
            let ancestor: &[Element] = &p[..depth];
            let empty = match managed_fields::get(obj, ancestor) {
                Some(Value::Object(m)) => m.is_empty(),
                Some(Value::Array(a)) => a.is_empty(),
                _ => false,
            };
            if !empty || owned.contains(ancestor) || owned.iter().any(|o| o.starts_with(ancestor)) {
                break;
            }
            managed_fields::remove(obj, ancestor);
        }
    }
}

/// `fieldpath.Path.String()`: `.spec.ports[port=80,protocol="TCP"].name`, `[="a"]`, `[0]`.
pub(crate) fn path_string(path: &[Element]) -> String {
    let mut out = String::new();
    for el in path {
        if let Some(name) = el.strip_prefix("f:") {
            out.push('.');
            out.push_str(name);
        } else if let Some(k) = el.strip_prefix("k:") {
            let key: serde_json::Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            let parts: Vec<String> = key.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(v) = el.strip_prefix("v:") {
            out.push_str(&format!("[={v}]"));
        } else if let Some(i) = el.strip_prefix("i:") {
            out.push_str(&format!("[{i}]"));
        }
    }
    out
}

/// `printManager`: Update owners are shown with their API version and time.
fn print_manager(e: &Entry) -> String {
    let name = gofmt::quote(&e.manager);
    match (e.operation, e.time.is_empty()) {
        (Operation::Apply, _) => name,
        (Operation::Update, true) => format!("{name} using {}", e.api_version),
        (Operation::Update, false) => format!("{name} using {} at {}", e.api_version, e.time),
    }
}

/// The 409 Conflict Status of a refused apply (`NewApplyConflict`).
pub(crate) fn conflict_status(conflicts: &ApplyConflicts) -> Value {
    let c = &conflicts.0;
    let message = if c.len() == 1 {
        format!("Apply failed with 1 conflict: conflict with {}: {}", c[0].manager, c[0].field)
    } else {
        let mut managers: Vec<&str> = c.iter().map(|x| x.manager.as_str()).collect();
        managers.sort();
        managers.dedup();
        let mut lines = Vec::new();
        for m in managers {
            lines.push(format!("conflicts with {m}:"));
            lines.extend(c.iter().filter(|x| x.manager == m).map(|x| format!("- {}", x.field)));
        }
        format!("Apply failed with {} conflicts: {}", c.len(), lines.join("\n"))
    };
    let causes: Vec<Value> = c.iter().map(|x| json!({"reason": "FieldManagerConflict", "message": format!("conflict with {}", x.manager), "field": x.field})).collect();
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": "Conflict", "details": {"causes": causes}, "code": 409,
    })
}

#[cfg(test)]
mod tests;
