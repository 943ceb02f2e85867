//! The `meta.k8s.io/v1` Table that `kubectl get` asks for, with the columns and cell
//! formatting of kube-apiserver's printers, CRD `additionalPrinterColumns`, and the default
//! table convertor.

mod jsonpath;
mod printers;
mod time;

pub(crate) use time::{human_duration, parse_rfc3339};

use serde_json::{Value, json};

/// `includeObject` of the Table request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IncludeObject {
    None,
    /// `PartialObjectMetadata` (kubectl's default).
    Metadata,
    Object,
}

/// A column: (name, type, format, priority); priority 1 columns are shown with `-o wide`.
pub(crate) type Column = (&'static str, &'static str, &'static str, u8);

/// Builds the Table for `objects` of `kind` at time `now` (RFC 3339). `custom_columns` are a
/// CRD version's `additionalPrinterColumns` (pass `Some(&[])` for a custom resource without
/// any: NAME AGE); built-in kinds without a printer get the default NAME CREATED AT.
pub(crate) fn table(
    kind: &str,
    objects: &[Value],
    custom_columns: Option<&[Value]>,
    now: &str,
    include_object: IncludeObject,
) -> Value {
    let now = parse_rfc3339(now).unwrap_or(0);
    let (columns, rows): (Vec<Value>, Vec<Vec<Value>>) = match custom_columns {
        Some(cols) => custom(cols, objects, now),
        None => {
            let (cols, row) = printers::printer(kind);
            (cols.iter().map(column_definition).collect(), objects.iter().map(|o| row(o, now)).collect())
        }
    };
    let rows: Vec<Value> = objects
        .iter()
        .zip(rows)
        .map(|(o, cells)| {
            let mut row = json!({"cells": cells});
            match include_object {
                IncludeObject::None => {}
                IncludeObject::Metadata => {
                    row["object"] = json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o.get("metadata").cloned().unwrap_or(json!({}))});
                }
                IncludeObject::Object => row["object"] = o.clone(),
            }
            row
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {}, "columnDefinitions": columns, "rows": rows})
}

fn column_definition(c: &Column) -> Value {
    let (name, ty, format, priority) = *c;
    let description = match name {
        "Name" => {
            "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
        }
        "Age" | "Created At" => {
            "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
        }
        _ => "",
    };
    json!({"name": name, "type": ty, "format": format, "description": description, "priority": priority})
}

/// Columns of a custom resource: Name, then the printer columns (default: Age).
fn custom(cols: &[Value], objects: &[Value], now: i64) -> (Vec<Value>, Vec<Vec<Value>>) {
    let age = [json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"})];
    let cols = if cols.is_empty() { &age[..] } else { cols };
    let mut defs = vec![column_definition(&("Name", "string", "name", 0))];
    for c in cols {
        let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("");
        defs.push(json!({"name": s("name"), "type": s("type"), "format": s("format"), "description": s("description"), "priority": c.get("priority").and_then(Value::as_i64).unwrap_or(0)}));
    }
    let rows = objects
        .iter()
        .map(|o| {
            let mut cells = vec![json!(o.pointer("/metadata/name").and_then(Value::as_str).unwrap_or(""))];
            for c in cols {
                let path = c.get("jsonPath").and_then(Value::as_str).unwrap_or("");
                let ty = c.get("type").and_then(Value::as_str).unwrap_or("string");
                cells.push(custom_cell(&jsonpath::find(o, path), ty, now));
            }
            cells
        })
        .collect();
    (defs, rows)
}

/// One result is the cell, as the apiextensions-apiserver's table convertor makes it: a
/// `string` column prints the value with the JSONPath printer (strings as they are, lists and
/// objects as compact JSON, `["a.example.com"]`, numbers and booleans as text), other types
/// keep a value of their type (`cellForJSONValue`; anything else is an empty cell); dates
/// become ages. Several results are printed space-separated, as kubectl's JSONPath printer
/// does.
fn custom_cell(found: &[&Value], ty: &str, now: i64) -> Value {
    match found {
        [] => Value::Null,
        [one] if ty == "date" => {
            json!(one.as_str().and_then(parse_rfc3339).map_or("<unknown>".into(), |t| human_duration(now - t)))
        }
        [one] if ty == "string" => match one {
            Value::Null | Value::String(_) => (*one).clone(),
            Value::Array(_) | Value::Object(_) => json!(go_json(one)),
            Value::Number(n) => json!(super::gofmt::number(n)),
            Value::Bool(b) => json!(b.to_string()),
        },
        [one] if ty == "integer" => {
            one.as_i64().or_else(|| one.as_f64().map(|f| f as i64)).map_or(Value::Null, |i| json!(i))
        }
        [one] if ty == "number" => one.as_f64().map_or(Value::Null, |f| json!(f)),
        [one] if ty == "boolean" => one.as_bool().map_or(Value::Null, |b| json!(b)),
        [one] => (*one).clone(),
        many => json!(
            many.iter().map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string)).collect::<Vec<_>>().join(" ")
        ),
    }
}

/// Go's `json.Marshal` of unstructured content: compact, map keys sorted (serde_json's maps
/// are sorted), and `<`, `>`, `&` escaped as `\u003c`, `\u003e`, `\u0026` (they only occur
/// inside strings in JSON text).
fn go_json(v: &Value) -> String {
    v.to_string().replace('<', "\\u003c").replace('>', "\\u003e").replace('&', "\\u0026")
}

/// `translateTimestampSince` of an object's creationTimestamp.
pub(crate) fn age(obj: &Value, now: i64) -> String {
    obj.pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .and_then(parse_rfc3339)
        .map_or_else(|| "<unknown>".to_string(), |t| human_duration(now - t))
}

#[cfg(test)]
mod tests;
