//! One policy's expressions against one request: match conditions, validations and audit
//! annotations, errors handled by `failurePolicy`, messages chosen as kube-apiserver chooses.

use super::activation::activation;
use super::expressions::{self, Evaluator, Expression, Variable};
use super::{Target, cel_value};
use crate::cluster::resources::Gvr;
use serde_json::Value;

/// Longest value an audit annotation keeps; longer values are cut.
const MAX_AUDIT_ANNOTATION_VALUE: usize = 10 * 1024;
/// Longest message a `messageExpression` may produce; longer ones fall back to `message`.
const MAX_MESSAGE_EXPRESSION_RESULT: usize = 5 * 1024;

/// A validation that failed (or could not be evaluated under `failurePolicy: Fail`).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Failure {
    /// Index of the validation (0 for a failed match condition).
    pub(super) index: usize,
    pub(super) message: String,
    /// The validation's `reason`; `None` reports `Invalid`.
    pub(super) reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Annotation {
    Publish { key: String, value: String },
    Failed(String),
}

/// What one policy's expressions said about one request.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    pub(super) failures: Vec<Failure>,
    pub(super) annotations: Vec<Annotation>,
}

/// Evaluates the policy `spec` for the request, selected as the resource `matched`.
pub(super) fn evaluate(spec: &Value, target: &Target, matched: &Gvr) -> Outcome {
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
