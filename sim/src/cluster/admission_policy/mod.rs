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
//! one user of the cluster's token (`request.userInfo`, see `USER`), in-process writes
//! included.

mod cel_value;
mod definition;
mod expressions;
mod matching;
#[cfg(test)]
mod tests;

pub(crate) use definition::admit_definition;

use crate::cluster::error::{Error, Result, qualified};
use crate::cluster::meta;
use crate::cluster::resources::{GroupResource, Gvr, ResourceInfo};
use crate::cluster::store::{Inner, Subresource};
use expressions::{Activation, Evaluator, Expression, Variable};
use serde_json::{Value, json};
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

pub(crate) const GROUP: &str = "admissionregistration.k8s.io";
const POLICIES: &str = "validatingadmissionpolicies";
const BINDINGS: &str = "validatingadmissionpolicybindings";

/// The user every request is made by: the holder of the cluster's bearer token, an
/// administrator as kubeadm's `kubernetes-admin` is.
const USER: &str = "forklane";
const USER_GROUPS: [&str; 2] = ["system:masters", "system:authenticated"];

/// The audit annotation of validations failed under the `Audit` action.
const VALIDATION_FAILURE: &str = "validation.policy.admission.k8s.io/validation_failure";
/// Longest value an audit annotation keeps; longer values are cut.
const MAX_AUDIT_ANNOTATION_VALUE: usize = 10 * 1024;
/// Longest message a `messageExpression` may produce; longer ones fall back to `message`.
const MAX_MESSAGE_EXPRESSION_RESULT: usize = 5 * 1024;

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

/// The value of the `validation_failure` audit annotation, fields in kube-apiserver's order.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ValidationFailure<'a> {
    message: &'a str,
    policy: &'a Value,
    binding: &'a str,
    expression_index: usize,
    validation_actions: &'a Value,
}

/// JSON as Go's `encoding/json` writes it: `<`, `>`, `&` and the line separators escaped.
fn go_json(value: &impl serde::Serialize) -> String {
    let json = serde_json::to_string(value).unwrap_or_default();
    json.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

/// A validation that failed (or could not be evaluated under `failurePolicy: Fail`).
#[derive(Debug, Clone, PartialEq)]
struct Failure {
    /// Index of the validation (0 for a failed match condition).
    index: usize,
    message: String,
    /// The validation's `reason`; `None` reports `Invalid`.
    reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum Annotation {
    Publish { key: String, value: String },
    Failed(String),
}

/// What one policy's expressions said about one request.
#[derive(Debug, Default)]
struct Outcome {
    failures: Vec<Failure>,
    annotations: Vec<Annotation>,
}

/// A refusal by one binding, reported as kube-apiserver reports the first of them.
struct Denial {
    policy: String,
    binding: String,
    message: String,
    reason: Option<String>,
}

impl Denial {
    fn new(policy: &str, binding: &str, failure: &Failure) -> Self {
        Denial {
            policy: policy.into(),
            binding: binding.into(),
            message: failure.message.clone(),
            reason: failure.reason.clone(),
        }
    }

    /// `admission.NewForbidden` with the policy's reason and code, the message repeated as
    /// the one cause (kubectl prints `The <resource> "<name>" is invalid: : <message>`).
    fn refusal(&self, target: &Target) -> Error {
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

/// Evaluates the policy `spec` for the request, selected as the resource `matched`.
fn evaluate(spec: &Value, target: &Target, matched: &Gvr) -> Outcome {
    let fail = spec["failurePolicy"].as_str() != Some("Ignore");
    let mut declared: Vec<&str> = Vec::new();
    let mut variables = Vec::new();
    for v in spec["variables"].as_array().into_iter().flatten() {
        let name = v["name"].as_str().unwrap_or_default();
        let expression = expressions::compile(v["expression"].as_str().unwrap_or_default(), &declared);
        variables.push(Variable { name: name.to_string(), expression });
        declared.push(name);
    }
    let compile = |source: &str| expressions::compile(source, &declared);
    expressions::with_evaluator(activation(target, matched), &variables, |evaluator| {
        if !conditions_match(spec, fail, evaluator, &compile)? {
            return Ok(Outcome::default());
        }
        let mut outcome = Outcome::default();
        for (index, validation) in spec["validations"].as_array().into_iter().flatten().enumerate() {
            let source = validation["expression"].as_str().unwrap_or_default();
            match run(evaluator, &compile, source) {
                Ok(cel::Value::Bool(true)) => {}
                Ok(_) => outcome.failures.push(Failure {
                    index,
                    message: failure_message(validation, evaluator, &compile),
                    reason: Some(validation["reason"].as_str().unwrap_or("Invalid").to_string()),
                }),
                Err(message) if fail => outcome.failures.push(Failure { index, message, reason: None }),
                Err(_) => {}
            }
        }
        for annotation in spec["auditAnnotations"].as_array().into_iter().flatten() {
            let key = annotation["key"].as_str().unwrap_or_default();
            let source = annotation["valueExpression"].as_str().unwrap_or_default();
            match run(evaluator, &compile, source) {
                Ok(cel::Value::String(value)) => {
                    let value = value.trim();
                    if !value.is_empty() {
                        let value = truncate(value, MAX_AUDIT_ANNOTATION_VALUE).to_string();
                        outcome.annotations.push(Annotation::Publish { key: key.into(), value });
                    }
                }
                Ok(cel::Value::Null) => {}
                Ok(other) => outcome.annotations.push(Annotation::Failed(format!(
                    "valueExpression '{source}' resulted in unsupported return type: {}. Return type must be either string or null.",
                    cel_value::type_name(&other)
                ))),
                Err(message) if fail => outcome.annotations.push(Annotation::Failed(message)),
                Err(_) => {}
            }
        }
        Ok(outcome)
    })
    .unwrap_or_else(|failure| Outcome { failures: vec![failure], annotations: vec![] })
}

type Compile<'a> = dyn Fn(&str) -> std::result::Result<Expression, expressions::CompileError> + 'a;

/// Compiles and evaluates `source`, errors worded as kube-apiserver reports them.
fn run(evaluator: &Evaluator, compile: &Compile, source: &str) -> std::result::Result<cel::Value, String> {
    let expression = compile(source).map_err(|e| format!("compilation error: {e}"))?;
    evaluator.evaluate(&expression).map_err(|e| format!("expression '{source}' resulted in error: {e}"))
}

/// Whether every match condition holds. Any false one skips the policy; otherwise errors
/// skip it under `Ignore` and fail the request under `Fail` (`Err`, reported as the policy's
/// first failure).
fn conditions_match(
    spec: &Value,
    fail: bool,
    evaluator: &Evaluator,
    compile: &Compile,
) -> std::result::Result<bool, Failure> {
    let mut errors: Vec<String> = Vec::new();
    for condition in spec["matchConditions"].as_array().into_iter().flatten() {
        match run(evaluator, compile, condition["expression"].as_str().unwrap_or_default()) {
            Ok(cel::Value::Bool(false)) => return Ok(false),
            Ok(_) => {}
            Err(message) => {
                if !errors.contains(&message) {
                    errors.push(message);
                }
            }
        }
    }
    match errors.as_slice() {
        [] => Ok(true),
        _ if !fail => Ok(false),
        [one] => Err(Failure { index: 0, message: one.clone(), reason: None }),
        many => Err(Failure { index: 0, message: format!("[{}]", many.join(", ")), reason: None }),
    }
}

/// The message of a failed validation: its `messageExpression` when that gives a usable
/// string, else its `message`, else the expression itself.
fn failure_message(validation: &Value, evaluator: &Evaluator, compile: &Compile) -> String {
    let from_expression = validation["messageExpression"]
        .as_str()
        .filter(|s| !s.trim().is_empty())
        .and_then(|source| compile(source).ok())
        .and_then(|expression| match evaluator.evaluate(&expression) {
            Ok(cel::Value::String(s)) => Some(s.trim().to_string()),
            _ => None,
        })
        .filter(|m| m.len() <= MAX_MESSAGE_EXPRESSION_RESULT && !m.contains('\n'))
        .unwrap_or_default();
    if !from_expression.is_empty() {
        return from_expression;
    }
    match validation["message"].as_str().map(str::trim).filter(|m| !m.is_empty()) {
        Some(message) => message.to_string(),
        None => format!("failed expression: {}", validation["expression"].as_str().unwrap_or_default().trim()),
    }
}

fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The CEL variables of the request, seen as the resource `matched`.
fn activation(target: &Target, matched: &Gvr) -> Activation {
    let as_matched = |o: &Option<Cow<Value>>| match o.as_deref() {
        None => cel::Value::Null,
        Some(o) if matched.version == target.gvr.version => cel_value::to_cel(o),
        // Equivalent versions of a custom resource differ in apiVersion only (conversion `None`).
        Some(o) => {
            let mut converted = o.clone();
            converted["apiVersion"] = json!(matched.api_version());
            cel_value::to_cel(&converted)
        }
    };
    let is_namespace_kind = target.kind.0.is_empty() && target.kind.2 == "Namespace";
    let namespace_object = match &target.namespace_object {
        Some(ns) if !is_namespace_kind => cel_value::to_cel(&namespace_view(ns)),
        _ => cel::Value::Null,
    };
    Activation {
        object: as_matched(&target.object),
        old_object: as_matched(&target.old_object),
        request: request_value(target, matched),
        namespace_object,
    }
}

/// The namespace as policies see it: `spec`, `status` and the identifying metadata.
fn namespace_view(ns: &Value) -> Value {
    const KEPT: [&str; 12] = [
        "name",
        "generateName",
        "namespace",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "finalizers",
    ];
    let metadata: serde_json::Map<String, Value> =
        KEPT.iter().filter_map(|k| ns["metadata"].get(*k).map(|v| (k.to_string(), v.clone()))).collect();
    json!({"metadata": metadata, "spec": ns["spec"], "status": ns["status"]})
}

/// `request`: the admission request (`admission.k8s.io/v1 AdmissionRequest`) without its
/// objects.
fn request_value(target: &Target, matched: &Gvr) -> cel::Value {
    use cel_value::{map, string};
    let (group, _, kind) = &target.kind;
    let kind_version = if matched.version == target.gvr.version { &target.kind.1 } else { &matched.version };
    let gvk = |version: &str| map([("group", string(group)), ("version", string(version)), ("kind", string(kind))]);
    let gvr = |r: &Gvr| {
        map([("group", string(&r.group)), ("version", string(&r.version)), ("resource", string(&r.resource))])
    };
    let options_kind = match target.operation {
        Operation::Create => "CreateOptions",
        Operation::Update => "UpdateOptions",
        Operation::Delete => "DeleteOptions",
    };
    let mut options = vec![("kind", string(options_kind)), ("apiVersion", string("meta.k8s.io/v1"))];
    if target.dry_run {
        options.push(("dryRun", cel::Value::List(Arc::new(vec![string("All")]))));
    }
    if let Some(manager) = target.field_manager.filter(|_| target.operation != Operation::Delete) {
        options.push(("fieldManager", string(manager)));
    }
    let groups = cel::Value::List(Arc::new(USER_GROUPS.iter().map(|g| string(g)).collect()));
    map([
        ("uid", string(&meta::new_uid())),
        ("kind", gvk(kind_version)),
        ("resource", gvr(matched)),
        ("subResource", string(target.subresource)),
        ("requestKind", gvk(&target.kind.1)),
        ("requestResource", gvr(target.gvr)),
        ("requestSubResource", string(target.subresource)),
        ("name", string(&target.name)),
        ("namespace", string(&target.namespace)),
        ("operation", string(target.operation.as_str())),
        ("userInfo", map([("username", string(USER)), ("groups", groups)])),
        ("dryRun", cel::Value::Bool(target.dry_run)),
        ("options", map(options)),
    ])
}
