//! How admission answers: the refusal kube-apiserver sends for the first denial, and the
//! audit annotation of validations failed under `Audit`.

use super::Target;
use super::evaluation::Failure;
use crate::cluster::error::{Error, qualified};
use serde_json::{Value, json};

/// The audit annotation of validations failed under the `Audit` action.
pub(super) const VALIDATION_FAILURE: &str = "validation.policy.admission.k8s.io/validation_failure";

/// A refusal by one binding, reported as kube-apiserver reports the first of them.
pub(super) struct Denial {
    pub(super) policy: String,
    pub(super) binding: String,
    pub(super) message: String,
    pub(super) reason: Option<String>,
}

impl Denial {
    pub(super) fn new(policy: &str, binding: &str, failure: &Failure) -> Self {
        Denial {
            policy: policy.into(),
            binding: binding.into(),
            message: failure.message.clone(),
            reason: failure.reason.clone(),
        }
    }

    /// `admission.NewForbidden` with the policy's reason and code, the message repeated as
    /// the one cause (kubectl prints `The <resource> "<name>" is invalid: : <message>`).
    pub(super) fn refusal(&self, target: &Target) -> Error {
        let message = format!(
            "ValidatingAdmissionPolicy '{}' with binding '{}' denied request: {}",
            self.policy, self.binding, self.message
        );
        let reason = self.reason.as_deref().unwrap_or("Invalid");
        let code = match reason {
            "Forbidden" => 403,
            "Unauthorized" => 401,
            "RequestEntityTooLarge" => 413,
            _ => 422,
        };
        let name = match target.name.as_str() {
            "" => target.object.as_deref().and_then(|o| o["metadata"]["generateName"].as_str()).unwrap_or("Unknown"),
            name => name,
        };
        let resource = qualified(&target.gvr.group, &target.gvr.resource);
        let quoted = serde_json::to_string(name).unwrap_or_default();
        let mut details = json!({"name": name, "kind": target.gvr.resource, "causes": [{"message": message}]});
        if !target.gvr.group.is_empty() {
            details["group"] = json!(target.gvr.group);
        }
        Error::Status(json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": format!("{resource} {quoted} is forbidden: {message}"),
            "reason": reason,
            "details": details,
            "code": code,
        }))
    }
}

/// The value of the `validation_failure` audit annotation, fields in kube-apiserver's order.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ValidationFailure<'a> {
    pub(super) message: &'a str,
    pub(super) policy: &'a Value,
    pub(super) binding: &'a str,
    pub(super) expression_index: usize,
    pub(super) validation_actions: &'a Value,
}

/// JSON as Go's `encoding/json` writes it: `<`, `>`, `&` and the line separators escaped.
pub(super) fn go_json(value: &impl serde::Serialize) -> String {
    let json = serde_json::to_string(value).unwrap_or_default();
    json.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}
