//! The three patch types of `kubectl patch`: strategic merge patch (built-in kinds only),
//! JSON merge patch (RFC 7386) and JSON patch (RFC 6902).

use crate::cluster::semantics::builtin;
use serde_json::{Map, Value, json};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum PatchError {
    /// Malformed patch document (400 BadRequest).
    #[error("{0}")]
    BadRequest(String),
    /// The patch does not apply to the object (422 for JSON patch, as the apiserver answers).
    #[error("{0}")]
    Unprocessable(String),
    /// Strategic merge patch on a kind without Go struct tags (415).
    #[error("{0}")]
    UnsupportedMediaType(String),
}

impl PatchError {
    /// The Status the apiserver answers with.
    pub(crate) fn status(&self) -> Value {
        let (code, reason) = match self {
            Self::BadRequest(_) => (400, "BadRequest"),
            Self::Unprocessable(_) => (422, "Invalid"),
            Self::UnsupportedMediaType(_) => (415, "UnsupportedMediaType"),
        };
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": self.to_string(), "reason": reason, "code": code})
    }
}

/// Strategic merge patch of an object of a built-in kind (`group` empty for core).
pub(crate) fn strategic_merge(original: &Value, patch: &Value, group: &str, kind: &str) -> Result<Value, PatchError> {
    if !builtin::supports_strategic_merge(group) {
        return Err(PatchError::UnsupportedMediaType(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (strategic merge patch is not supported for {kind})"
        )));
    }
    let (Value::Object(o), Value::Object(p)) = (original, patch) else {
        return Err(PatchError::BadRequest("strategic merge patch must be a JSON object".into()));
    };
    Ok(Value::Object(merge_map(o.clone(), p, "")?))
}

const PATCH: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ORDER: &str = "$setElementOrder/";
const DELETE_PRIMITIVE: &str = "$deleteFromPrimitiveList/";

fn merge_map(
    mut original: Map<String, Value>,
    patch: &Map<String, Value>,
    tpath: &str,
) -> Result<Map<String, Value>, PatchError> {
    match patch.get(PATCH).map(|d| d.as_str()) {
        None | Some(Some("merge")) => {}
        Some(Some("replace")) => {
            let mut replaced = patch.clone();
            replaced.remove(PATCH);
            return Ok(replaced);
        }
        Some(Some("delete")) => return Ok(Map::new()),
        Some(other) => {
            return Err(PatchError::BadRequest(format!("Unknown patch type: {}", other.unwrap_or("<non-string>"))));
        }
    }
    if let Some(retain) = patch.get(RETAIN_KEYS) {
        let keep: Vec<&str> = retain
            .as_array()
            .ok_or_else(|| bad("$retainKeys must be a list"))?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        original.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (key, value) in patch {
        if key == PATCH || key == RETAIN_KEYS || key.starts_with(SET_ORDER) {
            continue;
        }
        if let Some(field) = key.strip_prefix(DELETE_PRIMITIVE) {
            let doomed = value.as_array().ok_or_else(|| bad(&format!("{key} must be a list")))?;
            if let Some(Value::Array(items)) = original.get_mut(field) {
                items.retain(|i| !doomed.contains(i));
            }
            continue;
        }
        let child = format!("{tpath}.{key}");
        match (original.remove(key), value) {
            (_, Value::Null) => {}
            (Some(Value::Object(o)), Value::Object(p)) => {
                let deleted = p.get(PATCH).and_then(Value::as_str) == Some("delete");
                let merged = merge_map(o, p, &child)?;
                if !deleted {
                    original.insert(key.clone(), Value::Object(merged));
                }
            }
            (Some(Value::Array(o)), Value::Array(p)) => {
                original.insert(key.clone(), Value::Array(merge_list(o, p, &child)?));
            }
            (None, Value::Object(p)) => {
                if p.get(PATCH).and_then(Value::as_str) != Some("delete") {
                    original.insert(key.clone(), Value::Object(merge_map(Map::new(), p, &child)?));
                }
            }
            (None, Value::Array(p)) => {
                original.insert(key.clone(), Value::Array(merge_list(Vec::new(), p, &child)?));
            }
            (_, v) => {
                original.insert(key.clone(), v.clone());
            }
        }
    }
    for (key, order) in patch.iter().filter_map(|(k, v)| Some((k.strip_prefix(SET_ORDER)?, v))) {
        let order = order.as_array().ok_or_else(|| bad(&format!("{SET_ORDER}{key} must be a list")))?;
        if let Some(Value::Array(items)) = original.get_mut(key) {
            let merge_key = builtin::patch_strategy(&format!("{tpath}.{key}")).flatten();
            reorder(items, order, merge_key);
        }
    }
    Ok(original)
}

fn bad(msg: &str) -> PatchError {
    PatchError::BadRequest(msg.to_string())
}

fn merge_list(original: Vec<Value>, patch: &[Value], tpath: &str) -> Result<Vec<Value>, PatchError> {
    // `{"$patch": "replace"}` as an item replaces the whole list with the other items.
    let directive = |i: &Value| i.get(PATCH).and_then(Value::as_str).map(str::to_string);
    if patch.iter().any(|i| directive(i).as_deref() == Some("replace")) {
        return Ok(patch.iter().filter(|i| directive(i).is_none()).cloned().collect());
    }
    match builtin::patch_strategy(tpath) {
        None => Ok(patch.to_vec()),
        Some(None) => {
            let mut out = original;
            for p in patch {
                if !out.contains(p) {
                    out.push(p.clone());
                }
            }
            Ok(out)
        }
        Some(Some(key)) => {
            let item_path = format!("{tpath}[]");
            let mut out = original;
            for item in patch {
                let Value::Object(p) = item else {
                    return Err(bad(&format!("list item {item} of {tpath} is not an object")));
                };
                let id = p.get(key).ok_or_else(|| {
                    bad(&format!(
                        "map: {} does not contain declared merge key: {key}",
                        crate::cluster::semantics::gofmt::sharp_v(item)
                    ))
                })?;
                let pos = out.iter().position(|o| o.get(key) == Some(id));
                match (pos, directive(item).as_deref()) {
                    (Some(i), Some("delete")) => {
                        out.remove(i);
                    }
                    (None, Some("delete")) => {}
                    (Some(i), _) => {
                        let Value::Object(o) = out[i].take() else { return Err(bad("list item is not an object")) };
                        out[i] = Value::Object(merge_map(o, p, &item_path)?);
                    }
                    (None, _) => out.push(Value::Object(merge_map(Map::new(), p, &item_path)?)),
                }
            }
            Ok(out)
        }
    }
}

/// `$setElementOrder`: listed items first, in the given order, then the others as they were.
fn reorder(items: &mut [Value], order: &[Value], merge_key: Option<&str>) {
    let id = |v: &Value| match merge_key {
        Some(k) => v.get(k).cloned(),
        None => Some(v.clone()),
    };
    let rank = |v: &Value| order.iter().position(|o| id(o).is_some() && id(o) == id(v)).unwrap_or(usize::MAX);
    items.sort_by_key(rank);
}

/// JSON merge patch (RFC 7386): objects merge recursively, `null` deletes, the rest replaces.
pub(crate) fn merge_patch(original: &Value, patch: &Value) -> Value {
    let mut out = original.clone();
    json_patch::merge(&mut out, patch);
    out
}

/// JSON patch (RFC 6902). A malformed document is a BadRequest; an operation that does not
/// apply (missing path, failed `test`) is Unprocessable.
pub(crate) fn json_patch(original: &Value, patch_ops: &Value) -> Result<Value, PatchError> {
    let ops: json_patch::Patch = serde_json::from_value(patch_ops.clone())
        .map_err(|e| PatchError::BadRequest(format!("error decoding patch: {e}")))?;
    let mut out = original.clone();
    for op in ops.0 {
        // The apiserver's JSON patch library treats a missing path as equal to null in a
        // `test`; kube-rs' finalizer helper relies on it (`test /metadata/finalizers == null`).
        if let json_patch::PatchOperation::Test(test) = &op
            && test.value.is_null()
            && out.pointer(test.path.as_str()).is_none()
        {
            continue;
        }
        json_patch::patch(&mut out, &[op]).map_err(|e| PatchError::Unprocessable(e.to_string()))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
