//! The `scale` subresource: an `autoscaling/v1 Scale` view of a workload's replicas, as
//! `kubectl scale` and autoscalers read and write it.

use crate::cluster::error::{Error, Result};
use crate::cluster::meta;
use crate::cluster::resources::{Gvr, ResourceInfo, ScalePaths};
use crate::cluster::selectors::LabelSelector;
use crate::cluster::store::{Store, WriteOptions};
use serde_json::{Value, json};

fn paths<'a>(info: &'a ResourceInfo, gvr: &Gvr) -> Result<&'a ScalePaths> {
    info.version(&gvr.version).and_then(|v| v.scale.as_ref()).ok_or_else(|| Error::NotFound {
        message: "the server could not find the requested resource".into(),
        details: Value::Null,
    })
}

/// Reads a `.a.b` JSON path (the CRD scale path syntax).
fn read<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    obj.pointer(&path.replace('.', "/"))
}

fn write(obj: &mut Value, path: &str, value: Value) {
    let mut cur = obj;
    let parts: Vec<&str> = path.trim_start_matches('.').split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        if !cur.is_object() {
            *cur = json!({});
        }
        if i == parts.len() - 1 {
            cur[*part] = value;
            return;
        }
        cur = cur.as_object_mut().expect("object").entry(part.to_string()).or_insert_with(|| json!({}));
    }
}

pub(crate) fn to_scale(info: &ResourceInfo, gvr: &Gvr, obj: &Value) -> Result<Value> {
    let p = paths(info, gvr)?;
    let selector = match &p.label_selector {
        Some(path) => read(obj, path).and_then(Value::as_str).unwrap_or_default().to_string(),
        None => LabelSelector::from_object(&obj["spec"]["selector"])?.to_string(),
    };
    let m = &obj["metadata"];
    Ok(json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": m["name"], "namespace": m["namespace"], "uid": m["uid"],
            "resourceVersion": m["resourceVersion"], "creationTimestamp": m["creationTimestamp"],
        },
        "spec": {"replicas": read(obj, &p.spec_replicas).cloned().unwrap_or(json!(0))},
        "status": {"replicas": read(obj, &p.status_replicas).cloned().unwrap_or(json!(0)), "selector": selector},
    }))
}

impl Store {
    pub(crate) fn get_scale(&self, gvr: &Gvr, namespace: Option<&str>, name: &str) -> Result<Value> {
        let info = self.resource(gvr)?;
        to_scale(&info, gvr, &self.get(gvr, namespace, name)?)
    }

    /// Writes `spec.replicas` of a Scale back to the workload.
    pub(crate) fn update_scale(
        &self,
        gvr: &Gvr,
        namespace: Option<&str>,
        name: &str,
        scale: Value,
        opts: &WriteOptions,
    ) -> Result<Value> {
        let mut inner = self.lock();
        let info = inner.resource(gvr)?;
        let p = paths(&info, gvr)?.clone();
        let existing =
            inner.find(&info, namespace, name).ok_or_else(|| Error::not_found(&gvr.group, &gvr.resource, name))?;
        let replicas = scale.pointer("/spec/replicas").cloned().unwrap_or(Value::Null);
        if replicas.as_i64().is_none_or(|r| r < 0) {
            let err = crate::cluster::semantics::FieldError::invalid(
                "spec.replicas",
                replicas,
                "must be greater than or equal to 0",
            );
            return Err(Error::invalid("Scale", "autoscaling", name, &[err]));
        }
        let wanted_rv = meta::resource_version(&scale);
        if !wanted_rv.is_empty() && wanted_rv != meta::resource_version(&existing) {
            return Err(Error::stale(&info.group, &info.resource, name));
        }
        let mut obj = crate::cluster::store::present(&existing, gvr);
        write(&mut obj, &p.spec_replicas, replicas);
        // Written as the main resource, admitted as the scale subresource (`opts.subresource`).
        let updated = self.update_locked(&mut inner, &info, gvr, existing, obj, opts, false)?;
        to_scale(&info, gvr, &updated)
    }
}
