//! A RolloutPolicy compiled to CEL: the checks the API server runs at admission (as a
//! ValidatingAdmissionPolicy and its binding) and the controller runs at reconcile, from the same
//! compiled expressions, so that the two cannot disagree.
//!
//! Compiled: `allowedStrategies`, `requiredGuardrails`, `maxAlpha` (with `allowBayesian`) and
//! every rule of `spec.rules`. Not compiled, checked by the controller and `forklane validate`
//! only: `maxStepWeight` and `maxWeightWithoutAnalysis` (they need the plan's states, which CEL
//! cannot compute), `minExposure` and `minAnalysisDuration` (durations such as `1d` that CEL's
//! `duration()` does not read), and `freezeWindows` (time, not the object, decides them).

use k8s_openapi::api::admissionregistration::v1::{ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding};
use serde_json::{Value, json};

use crate::api::validate::Problem;
use crate::api::{Enforcement, RolloutPolicy, StrategyName, defaults};

use super::Violation;
use super::cel::{Expression, Variables};

/// The suffix of the admission objects' names: `<policy>.rolloutpolicy.forklane.io`.
const NAME_SUFFIX: &str = "rolloutpolicy.forklane.io";

/// One compiled check: the policy field (or rule) it comes from, the Experiment field at fault,
/// the expression that holds when the Experiment meets it, and what to say when it does not.
#[derive(Debug)]
pub(crate) struct Check {
    pub rule: String,
    pub path: String,
    expression: Expression,
    message: Message,
}

#[derive(Debug)]
enum Message {
    Text(String),
    Expression(Expression),
}

/// A policy's compiled checks, in the order of its fields.
#[derive(Debug)]
pub struct Compiled {
    policy: String,
    pub(crate) checks: Vec<Check>,
}

/// Compiles `policy`; every rule that does not compile is a problem naming its field, with the
/// parser's line, column and caret.
pub fn compile(policy: &RolloutPolicy) -> Result<Compiled, Vec<Problem>> {
    let name = policy.metadata.name.clone().unwrap_or_default();
    let spec = &policy.spec;
    let mut sources: Vec<Uncompiled> = Vec::new();
    let mut fixed = |rule: &str, path: &str, expression: String, message: Source| {
        sources.push(Uncompiled { rule: rule.into(), path: path.into(), field: None, expression, message });
    };
    if !spec.allowed_strategies.is_empty() {
        let allowed: Vec<&str> = spec.allowed_strategies.iter().map(|s| s.as_str()).collect();
        let any_allowed = allowed.iter().map(|s| format!("has(object.spec.strategy.{s})")).collect::<Vec<_>>();
        let used = StrategyName::ALL
            .iter()
            .map(|s| format!("has(object.spec.strategy.{0}) ? '{0}' : ", s.as_str()))
            .collect::<String>();
        let message = format!("'strategy ' + ({used}'none') + ' is not allowed (allowed: {})'", allowed.join(", "));
        fixed("allowedStrategies", "spec.strategy", any_allowed.join(" || "), Source::Expression(message));
    }
    for required in &spec.required_guardrails {
        let quoted = quote(required);
        let expression = format!(
            "has(object.spec.analysis) && has(object.spec.analysis.metrics) && \
             object.spec.analysis.metrics.exists(m, m.name == {quoted} && m.role == 'guardrail')"
        );
        let message = format!("guardrail metric {required:?} is required");
        fixed("requiredGuardrails", "spec.analysis.metrics", expression, Source::Text(message));
    }
    if let Some(max) = spec.max_alpha {
        let alpha = format!(
            "(has(object.spec.analysis.alpha) ? double(object.spec.analysis.alpha) : {:?})",
            defaults::ANALYSIS_ALPHA
        );
        let expression = format!("!has(object.spec.analysis) || {alpha} <= {max:?}");
        let message = format!("string({alpha}) + ' is above the allowed {max}'");
        fixed("maxAlpha", "spec.analysis.alpha", expression, Source::Expression(message));
        if !spec.allow_bayesian {
            let expression = "!has(object.spec.analysis) || !has(object.spec.analysis.method) || \
                              object.spec.analysis.method != 'bayesian'";
            let message = format!(
                "bayesian does not hold an error rate of {max} when checked every interval; use sequential (or the policy sets allowBayesian)"
            );
            fixed("maxAlpha", "spec.analysis.method", expression.into(), Source::Text(message));
        }
    }
    for (i, rule) in spec.rules.iter().enumerate() {
        let message = match (&rule.message_expression, &rule.message) {
            (Some(expression), _) => Source::Expression(expression.clone()),
            (None, Some(text)) => Source::Text(text.clone()),
            (None, None) => Source::Text(format!("failed expression: {}", rule.expression)),
        };
        sources.push(Uncompiled {
            rule: format!("rule {}", rule.name),
            path: "spec".into(),
            field: Some(format!("spec.rules[{i}]")),
            expression: rule.expression.clone(),
            message,
        });
    }
    let mut problems = Vec::new();
    let mut checks = Vec::new();
    for Uncompiled { rule, path, field, expression, message } in sources {
        // What the policy's author wrote is named by its field; a fixed field's CEL is ours.
        let field = field.unwrap_or_else(|| format!("(compiled from spec.{rule})"));
        let expression = Expression::compile(&expression)
            .map_err(|e| problems.push(Problem { path: format!("{field}.expression"), message: e }));
        let message = match message {
            Source::Text(text) => Ok(Message::Text(text)),
            Source::Expression(source) => Expression::compile(&source)
                .map(Message::Expression)
                .map_err(|e| problems.push(Problem { path: format!("{field}.messageExpression"), message: e })),
        };
        if let (Ok(expression), Ok(message)) = (expression, message) {
            checks.push(Check { rule, path, expression, message });
        }
    }
    if problems.is_empty() { Ok(Compiled { policy: name, checks }) } else { Err(problems) }
}

/// A message before compiling.
enum Source {
    Text(String),
    Expression(String),
}

/// A check before compiling; `field`: the policy field a user wrote it in.
struct Uncompiled {
    rule: String,
    path: String,
    field: Option<String>,
    expression: String,
    message: Source,
}

impl Compiled {
    /// The violations of the checks by an Experiment (as JSON), in order. A check whose
    /// evaluation fails is a violation too, as admission refuses the write (`failurePolicy: Fail`).
    pub(crate) fn evaluate(&self, vars: &Variables) -> Vec<Violation> {
        let mut out = Vec::new();
        for check in &self.checks {
            let message = match check.expression.holds(vars) {
                Ok(true) => continue,
                Ok(false) => match &check.message {
                    Message::Text(text) => text.clone(),
                    Message::Expression(e) => e.text(vars).unwrap_or_else(|why| {
                        format!("failed expression: {} (its message expression {why})", check.expression.source())
                    }),
                },
                Err(why) => format!("expression {:?} could not be evaluated: {why}", check.expression.source()),
            };
            out.push(Violation {
                policy: self.policy.clone(),
                rule: check.rule.clone(),
                path: check.path.clone(),
                message,
            });
        }
        out
    }

    /// The name of both admission objects.
    pub fn admission_name(&self) -> String {
        format!("{}.{NAME_SUFFIX}", self.policy)
    }

    /// The ValidatingAdmissionPolicy: the checks, each message saying what the controller's
    /// violation says (`<path>: violates RolloutPolicy "<name>" (<rule>): <message>`).
    pub fn admission_policy(&self) -> ValidatingAdmissionPolicy {
        let validations: Vec<Value> = self
            .checks
            .iter()
            .map(|check| {
                let prefix = format!("{}: violates RolloutPolicy {:?} ({}): ", check.path, self.policy, check.rule);
                let expression = check.expression.source();
                match &check.message {
                    Message::Text(text) => json!({"expression": expression, "message": format!("{prefix}{text}")}),
                    Message::Expression(e) => json!({
                        "expression": expression,
                        "messageExpression": format!("{} + ({})", quote(&prefix), e.source()),
                    }),
                }
            })
            .collect();
        let object = json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": self.admission_name(), "labels": managed_by()},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {"resourceRules": [{
                    "apiGroups": ["forklane.io"],
                    "apiVersions": ["*"],
                    "operations": ["CREATE", "UPDATE"],
                    "resources": ["experiments"],
                }]},
                // The spec is what a policy judges: the controller's own metadata writes (its
                // finalizer) and the users' annotations to an experiment admitted before the
                // policy existed still go through; the controller holds its traffic.
                "matchConditions": [{
                    "name": "spec-written",
                    "expression": "request.operation == 'CREATE' || object.spec != oldObject.spec",
                }],
                "validations": validations,
            },
        });
        serde_json::from_value(object).expect("a ValidatingAdmissionPolicy")
    }

    /// The binding: where (the policy's namespace selector) and how (`enforcement`).
    pub fn admission_binding(&self, policy: &RolloutPolicy) -> ValidatingAdmissionPolicyBinding {
        let action = match policy.spec.enforcement {
            Enforcement::Deny => "Deny",
            Enforcement::Warn => "Warn",
            Enforcement::Audit => "Audit",
        };
        let selector = policy.spec.namespace_selector.clone().unwrap_or_default();
        let object = json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": self.admission_name(), "labels": managed_by()},
            "spec": {
                "policyName": self.admission_name(),
                "validationActions": [action],
                "matchResources": {"namespaceSelector": selector},
            },
        });
        serde_json::from_value(object).expect("a ValidatingAdmissionPolicyBinding")
    }
}

fn managed_by() -> Value {
    json!({"app.kubernetes.io/managed-by": "forklane"})
}

/// `text` as a CEL string literal.
fn quote(text: &str) -> String {
    let escaped = text.replace('\\', "\\\\").replace('\'', "\\'").replace('\n', "\\n");
    format!("'{escaped}'")
}

#[cfg(test)]
mod tests;
