//! Decoding of built-in objects through their Go-equivalent types (k8s-openapi): as the
//! apiserver's decoder does, unknown fields are dropped (or refused under
//! `fieldValidation=Strict`) and values of the wrong type are a 400.

use crate::cluster::error::{Error, Result};
use crate::cluster::resources::ResourceInfo;
use crate::cluster::semantics::schema::unknown_field_message;
use crate::cluster::store::FieldValidation;
use k8s_openapi::api::{admissionregistration, apps, coordination, core, discovery, events, policy, rbac, scheduling};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn round_trip<T: DeserializeOwned + Serialize>(obj: &Value) -> std::result::Result<Value, String> {
    let typed: T = serde_json::from_value(obj.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(typed).map_err(|e| e.to_string())
}

/// The object as its type keeps it, plus warnings for dropped fields. Custom resources pass
/// through unchanged (their schema does this job).
pub(crate) fn decode(
    info: &ResourceInfo,
    version: &str,
    obj: Value,
    validation: FieldValidation,
) -> Result<(Value, Vec<String>)> {
    let decoded = match (info.group.as_str(), info.kind.as_str()) {
        ("", "Namespace") => round_trip::<core::v1::Namespace>(&obj),
        ("", "Service") => round_trip::<core::v1::Service>(&obj),
        ("", "Endpoints") => round_trip::<core::v1::Endpoints>(&obj),
        ("", "Pod") => round_trip::<core::v1::Pod>(&obj),
        ("", "ConfigMap") => round_trip::<core::v1::ConfigMap>(&obj),
        ("", "Secret") => round_trip::<core::v1::Secret>(&obj),
        ("", "ServiceAccount") => round_trip::<core::v1::ServiceAccount>(&obj),
        ("", "Event") => round_trip::<core::v1::Event>(&obj),
        ("apps", "Deployment") => round_trip::<apps::v1::Deployment>(&obj),
        ("apps", "ReplicaSet") => round_trip::<apps::v1::ReplicaSet>(&obj),
        ("discovery.k8s.io", "EndpointSlice") => round_trip::<discovery::v1::EndpointSlice>(&obj),
        ("events.k8s.io", "Event") => round_trip::<events::v1::Event>(&obj),
        ("rbac.authorization.k8s.io", "Role") => round_trip::<rbac::v1::Role>(&obj),
        ("rbac.authorization.k8s.io", "ClusterRole") => round_trip::<rbac::v1::ClusterRole>(&obj),
        ("rbac.authorization.k8s.io", "RoleBinding") => round_trip::<rbac::v1::RoleBinding>(&obj),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => round_trip::<rbac::v1::ClusterRoleBinding>(&obj),
        ("coordination.k8s.io", "Lease") => round_trip::<coordination::v1::Lease>(&obj),
        ("policy", "PodDisruptionBudget") => round_trip::<policy::v1::PodDisruptionBudget>(&obj),
        ("scheduling.k8s.io", "PriorityClass") => round_trip::<scheduling::v1::PriorityClass>(&obj),
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy") => {
            round_trip::<admissionregistration::v1::ValidatingAdmissionPolicy>(&obj)
        }
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding") => {
            round_trip::<admissionregistration::v1::ValidatingAdmissionPolicyBinding>(&obj)
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => round_trip::<CustomResourceDefinition>(&obj),
        _ => return Ok((obj, vec![])),
    };
    let decoded = decoded.map_err(|e| {
        Error::BadRequest(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: {e}",
            kind = info.kind
        ))
    })?;
    let mut unknown = Vec::new();
    dropped(&obj, &decoded, "", &mut unknown);
    let messages: Vec<String> = unknown.iter().map(|p| unknown_field_message(p)).collect();
    match validation {
        FieldValidation::Strict if !messages.is_empty() => {
            Err(Error::BadRequest(format!("strict decoding error: {}", messages.join(", "))))
        }
        FieldValidation::Warn => Ok((decoded, messages)),
        _ => Ok((decoded, vec![])),
    }
}

/// Paths present (non-null) in `before` and missing from `after`, in `a.b[0].c` notation.
fn dropped(before: &Value, after: &Value, path: &str, out: &mut Vec<String>) {
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            for (k, v) in b {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                match a.get(k) {
                    None if !v.is_null() && !is_empty_container(v) => out.push(p),
                    Some(av) => dropped(v, av, &p, out),
                    None => {}
                }
            }
        }
        (Value::Array(b), Value::Array(a)) => {
            for (i, (bv, av)) in b.iter().zip(a).enumerate() {
                dropped(bv, av, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Empty maps and lists are omitted by the typed encoding without being unknown.
fn is_empty_container(v: &Value) -> bool {
    v.as_object().is_some_and(|o| o.is_empty()) || v.as_array().is_some_and(|a| a.is_empty())
}
