//! CEL as the API server evaluates a ValidatingAdmissionPolicy: over `object`, `oldObject` and
//! `namespaceObject`, with JSON numbers read as Kubernetes reads them (integers as `int`, not
//! `uint`), so that the controller's own check gives what admission gives.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

/// A compiled expression and its text.
#[derive(Debug)]
pub(crate) struct Expression {
    source: String,
    program: cel::Program,
}

/// What an expression reads: the Experiment, as written and as it was, and its Namespace.
#[derive(Debug)]
pub(crate) struct Variables {
    object: cel::Value,
    old_object: cel::Value,
    namespace_object: cel::Value,
}

impl Variables {
    pub(crate) fn new(object: &Value, old_object: Option<&Value>, namespace_object: &Value) -> Self {
        Variables {
            object: value(object),
            old_object: old_object.map_or(cel::Value::Null, value),
            namespace_object: value(namespace_object),
        }
    }
}

impl Expression {
    /// Compiles `source`; the error is the parser's, with its line, column and a caret, as
    /// kube-apiserver reports an expression that does not compile.
    pub(crate) fn compile(source: &str) -> Result<Self, String> {
        if source.trim().is_empty() {
            return Err("an expression is required".into());
        }
        let program = cel::Program::compile(source).map_err(|e| e.to_string())?;
        Ok(Expression { source: source.into(), program })
    }

    pub(crate) fn source(&self) -> &str {
        &self.source
    }

    fn execute(&self, vars: &Variables) -> Result<cel::Value, String> {
        ROOT.with(|root| {
            let mut scope = root.new_inner_scope();
            scope.add_variable_from_value("object", vars.object.clone());
            scope.add_variable_from_value("oldObject", vars.old_object.clone());
            scope.add_variable_from_value("namespaceObject", vars.namespace_object.clone());
            self.program.execute(&scope).map_err(|e| e.to_string())
        })
    }

    /// The expression's truth; an error when it fails or is not a bool (admission then refuses
    /// the write, the policy's `failurePolicy` being `Fail`).
    pub(crate) fn holds(&self, vars: &Variables) -> Result<bool, String> {
        match self.execute(vars)? {
            cel::Value::Bool(b) => Ok(b),
            other => Err(format!("gave {other:?}, not a bool")),
        }
    }

    /// The expression's string (a `messageExpression`).
    pub(crate) fn text(&self, vars: &Variables) -> Result<String, String> {
        match self.execute(vars)? {
            cel::Value::String(s) => Ok(s.to_string()),
            other => Err(format!("gave {other:?}, not a string")),
        }
    }
}

thread_local! {
    /// CEL's standard functions, registered once per thread rather than per evaluation.
    static ROOT: cel::Context<'static> = cel::Context::default();
}

/// JSON as CEL sees an object: integers are `int` (the cel crate's serde conversion would make
/// positive ones `uint`, which does not compare with `int` literals), objects maps.
pub(crate) fn value(json: &Value) -> cel::Value {
    match json {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => cel::Value::Int(i),
            None => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => cel::Value::String(Arc::new(s.clone())),
        Value::Array(items) => cel::Value::List(Arc::new(items.iter().map(value).collect())),
        Value::Object(fields) => {
            let map: HashMap<String, cel::Value> = fields.iter().map(|(k, v)| (k.clone(), value(v))).collect();
            cel::Value::Map(map.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn holds(expression: &str, object: Value) -> Result<bool, String> {
        let vars = Variables::new(&object, None, &json!({"metadata": {"name": "shop"}}));
        Expression::compile(expression)?.holds(&vars)
    }

    #[test]
    fn integers_compare_with_int_literals_and_absent_fields_are_not_had() {
        let exp = json!({"spec": {"replicas": 3, "alpha": 0.05, "arms": [{"name": "v1"}]}});
        assert_eq!(holds("object.spec.replicas <= 5", exp.clone()), Ok(true));
        assert_eq!(holds("object.spec.alpha <= 0.01", exp.clone()), Ok(false));
        assert_eq!(holds("has(object.spec.analysis)", exp.clone()), Ok(false));
        assert_eq!(holds("object.spec.arms.exists(a, a.name == 'v1')", exp.clone()), Ok(true));
        assert_eq!(holds("oldObject == null && namespaceObject.metadata.name == 'shop'", exp), Ok(true));
    }

    #[test]
    fn errors_say_where_and_what() {
        let error = Expression::compile("object.spec.replicas <=").unwrap_err();
        assert!(error.starts_with("ERROR: <input>:1:"), "{error}");
        assert_eq!(
            holds("object.spec.name", json!({"spec": {"name": "x"}})),
            Err("gave String(\"x\"), not a bool".into())
        );
        assert!(holds("object.spec.missing == 1", json!({"spec": {}})).is_err(), "no such key");
    }
}
