//! ValidatingAdmissionPolicy and ValidatingAdmissionPolicyBinding
//! (`admissionregistration.k8s.io/v1`), enforced on every create, update and delete of every
//! resource as kube-apiserver's validating admission policy plugin does
//! (`k8s.io/apiserver/pkg/admission/plugin/policy/validating`): after defaulting and the
//! resource's own validation, before anything is stored, for patches and server-side apply
//! on their result and for dry runs. Policies and bindings are read from the store on every
//! request, so a change applies to the next one.
//!
//! A binding whose policy exists and selects the request (`spec.matchConstraints`, then the
//! binding's `spec.matchResources`, then `spec.matchConditions`) has the policy's
//! `spec.validations` evaluated; a failure is refused (`Deny`), answered with a `Warning`
//! header (`Warn`) or recorded as the audit annotation
//! `validation.policy.admission.k8s.io/validation_failure` (`Audit`). `spec.auditAnnotations`
//! become audit annotations `<policy>/<key>`.
//!
//! Not offered, and refused rather than half-done: parameter resources (`spec.paramKind` of a
//! policy and `spec.paramRef` of a binding are refused when the object is written) and the
//! `authorizer` variable (expressions using it do not compile). Not modelled: CEL cost
//! budgets, type checking against the resources' schemas (`status.typeChecking` stays empty)
//! and `CONNECT` requests (no connect subresources are served). Every request is made by the
//! one user of the cluster's token (`request.userInfo`, see `activation::USER`), in-process writes
//! included.

mod activation;
mod cel_value;
mod definition;
mod evaluation;
mod expressions;
mod matching;
mod report;
#[cfg(test)]
mod tests;

pub(crate) use definition::admit_definition;

use crate::cluster::error::Result;
use crate::cluster::meta;
use crate::cluster::resources::{GroupResource, Gvr, ResourceInfo};
use crate::cluster::store::{Inner, Subresource};
use evaluation::{Annotation, Outcome, evaluate};
use report::{Denial, VALIDATION_FAILURE, ValidationFailure, go_json};
use serde_json::Value;
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

pub(crate) const GROUP: &str = "admissionregistration.k8s.io";
const POLICIES: &str = "validatingadmissionpolicies";
const BINDINGS: &str = "validatingadmissionpolicybindings";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    Create,
    Update,
    Delete,
}

impl Operation {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
        }
    }
}

/// One write, as the store is about to perform it.
pub(crate) struct Request<'a> {
    pub operation: Operation,
    pub info: &'a ResourceInfo,
    /// The resource and version the request addressed.
    pub gvr: &'a Gvr,
    pub subresource: Subresource,
    /// The object to be stored (`None` for a delete), in the request's version.
    pub object: Option<&'a Value>,
    /// The stored object (`None` for a create), in the request's version.
    pub old_object: Option<&'a Value>,
    pub dry_run: bool,
    pub field_manager: Option<&'a str>,
}

/// What admission hands back with an admitted write: `Warning` headers for the client and
/// annotations for the request's audit record.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Admitted {
    pub warnings: Vec<String>,
    pub audit_annotations: BTreeMap<String, String>,
}

impl Admitted {
    /// Adds them to a write's `warnings` and `audit_annotations`.
    pub(crate) fn report(self, warnings: &RefCell<Vec<String>>, annotations: &RefCell<BTreeMap<String, String>>) {
        warnings.borrow_mut().extend(self.warnings);
        let mut annotations = annotations.borrow_mut();
        for (key, value) in self.audit_annotations {
            annotations.entry(key).or_insert(value);
        }
    }

    /// kube-apiserver refuses to overwrite an audit annotation: the first value stays.
    fn annotate(&mut self, key: String, value: String) {
        self.audit_annotations.entry(key).or_insert(value);
    }
}

/// The request as matching and CEL see it.
pub(crate) struct Target<'a> {
    operation: Operation,
    gvr: &'a Gvr,
    subresource: &'static str,
    /// `(group, version, kind)` of the objects: the resource's kind, or `autoscaling/v1
    /// Scale` for the scale subresource.
    kind: (String, String, String),
    /// Empty for cluster-scoped resources; a namespace's own name when it is updated or
    /// deleted (kube-apiserver's request attributes).
    namespace: String,
    name: String,
    object: Option<Cow<'a, Value>>,
    old_object: Option<Cow<'a, Value>>,
    /// The stored namespace the request's namespace names, if any.
    namespace_object: Option<Arc<Value>>,
    /// The other served versions of the resource (`matchPolicy: Equivalent`).
    equivalents: Vec<Gvr>,
    dry_run: bool,
    field_manager: Option<&'a str>,
}

// Keys of the two tables, built once: every write of the store looks the bindings up.
static POLICY_TABLE: LazyLock<GroupResource> =
    LazyLock::new(|| GroupResource { group: GROUP.into(), resource: POLICIES.into() });
static BINDING_TABLE: LazyLock<GroupResource> =
    LazyLock::new(|| GroupResource { group: GROUP.into(), resource: BINDINGS.into() });

/// Evaluates every binding of every policy that selects `request`: `Err` is the refusal of
/// the first denial, as kube-apiserver reports it.
pub(crate) fn admit(inner: &Inner, request: &Request) -> Result<Admitted> {
    let (Some(bindings), Some(policies)) = (inner.objects.get(&BINDING_TABLE), inner.objects.get(&POLICY_TABLE)) else {
        return Ok(Admitted::default());
    };
    // Admission configuration is exempt, so that a bad policy can always be fixed.
    if bindings.is_empty() || request.info.group == GROUP {
        return Ok(Admitted::default());
    }
    let target = target(inner, request)?;
    let mut admitted = Admitted::default();
    let mut denials = Vec::new();
    for policy in policies.values() {
        let policy_name = meta::name(policy);
        let bound: Vec<&Arc<Value>> =
            bindings.values().filter(|b| b["spec"]["policyName"].as_str() == Some(policy_name)).collect();
        if bound.is_empty() {
            continue;
        }
        let Some(matched) = matching::select(&policy["spec"]["matchConstraints"], &target, false)? else {
            continue;
        };
        // Without parameters every binding sees the same results: evaluate once.
        let mut evaluated = None;
        let mut annotations: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for binding in bound {
            let binding_spec = &binding["spec"];
            if let Some(resources) = binding_spec.get("matchResources").filter(|r| !r.is_null())
                && matching::select(resources, &target, true)?.is_none()
            {
                continue;
            }
            let outcome: &Outcome = evaluated.get_or_insert_with(|| evaluate(&policy["spec"], &target, &matched));
            let binding_name = meta::name(binding);
            for failure in &outcome.failures {
                for action in binding_spec["validationActions"].as_array().into_iter().flatten() {
                    match action.as_str() {
                        Some("Deny") => denials.push(Denial::new(policy_name, binding_name, failure)),
                        Some("Warn") => admitted.warnings.push(format!(
                            "Validation failed for ValidatingAdmissionPolicy '{policy_name}' with binding '{binding_name}': {}",
                            failure.message
                        )),
                        Some("Audit") => {
                            let value = [ValidationFailure {
                                message: &failure.message,
                                policy: &binding_spec["policyName"],
                                binding: binding_name,
                                expression_index: failure.index,
                                validation_actions: &binding_spec["validationActions"],
                            }];
                            admitted.annotate(VALIDATION_FAILURE.into(), go_json(&value));
                        }
                        _ => {}
                    }
                }
            }
            for annotation in &outcome.annotations {
                match annotation {
                    Annotation::Publish { key, value } => {
                        let values = annotations.entry(key.clone()).or_default();
                        if !values.contains(value) {
                            values.push(value.clone());
                        }
                    }
                    // A valueExpression that fails refuses the request, whatever the actions.
                    Annotation::Failed(message) => denials.push(Denial {
                        policy: policy_name.to_string(),
                        binding: binding_name.to_string(),
                        message: message.clone(),
                        reason: None,
                    }),
                }
            }
        }
        for (key, values) in annotations {
            admitted.annotate(format!("{policy_name}/{key}"), values.join(", "));
        }
    }
    match denials.into_iter().next() {
        Some(denial) => Err(denial.refusal(&target)),
        None => Ok(admitted),
    }
}

fn target<'a>(inner: &Inner, request: &'a Request) -> Result<Target<'a>> {
    let info = request.info;
    let (subresource, kind, object, old_object) = match request.subresource {
        Subresource::Scale => {
            let scale = |o: Option<&Value>| {
                o.map(|o| crate::cluster::scale::to_scale(info, request.gvr, o).map(Cow::Owned)).transpose()
            };
            let kind = ("autoscaling".to_string(), "v1".to_string(), "Scale".to_string());
            ("scale", kind, scale(request.object)?, scale(request.old_object)?)
        }
        sub => {
            let kind = (info.group.clone(), request.gvr.version.clone(), info.kind.clone());
            let name = if sub == Subresource::Status { "status" } else { "" };
            (name, kind, request.object.map(Cow::Borrowed), request.old_object.map(Cow::Borrowed))
        }
    };
    let stored = request.object.or(request.old_object).unwrap_or(&Value::Null);
    let name = meta::name(stored).to_string();
    let is_namespace = info.group.is_empty() && info.resource == "namespaces";
    let namespace = match (info.namespaced, is_namespace, request.operation) {
        (true, ..) => meta::namespace(stored).to_string(),
        (false, true, Operation::Update | Operation::Delete) => name.clone(),
        _ => String::new(),
    };
    let namespaces = GroupResource { group: String::new(), resource: "namespaces".into() };
    let namespace_object = (!namespace.is_empty())
        .then(|| inner.objects.get(&namespaces)?.get(&(String::new(), namespace.clone())).cloned())
        .flatten();
    let equivalents = info
        .versions
        .iter()
        .filter(|v| v.name != request.gvr.version)
        .map(|v| Gvr::new(&info.group, &v.name, &info.resource))
        .collect();
    Ok(Target {
        operation: request.operation,
        gvr: request.gvr,
        subresource,
        kind,
        namespace,
        name,
        object,
        old_object,
        namespace_object,
        equivalents,
        dry_run: request.dry_run,
        field_manager: request.field_manager,
    })
}
