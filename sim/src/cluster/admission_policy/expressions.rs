//! The CEL expressions of a ValidatingAdmissionPolicy: parsed with the syntax kube-apiserver
//! accepts (optional field selection included), checked against the names its admission
//! environment declares, and evaluated against one request with Kubernetes' CEL libraries.
//!
//! Errors are worded as cel-go words them (`ERROR: <input>:1:1: undeclared reference to
//! 'foo' (in container '')`, `no such key: spec`): they reach users in refusals and warnings.

use super::cel_value;
use cel::ExecutionError;
use cel::common::ast::{EntryExpr, Expr, IdedExpr, operators};
use cel::objects::{Key, OptionalValue};
use kube::core::cel::KubeCelExt;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

/// The variables an admission expression may read. kube-apiserver also declares `params`
/// (only with a `paramKind`, which this server refuses) and `authorizer`.
const DECLARED: [&str; 5] = ["object", "oldObject", "request", "namespaceObject", "variables"];

/// Receivers of namespaced library functions (`math.greatest(...)`, `sets.contains(...)`):
/// identifiers that are not variables.
const FUNCTION_NAMESPACES: [&str; 6] = ["math", "sets", "base64", "optional", "strings", "jsonpatch"];

/// A parsed, checked expression.
#[derive(Debug)]
pub(crate) struct Expression {
    ast: IdedExpr,
    /// The composited variables it selects (`variables.<name>`).
    variables: Vec<String>,
}

/// Why an expression does not compile: cel-go's issues, one `ERROR: ...` per problem.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("compilation failed: {0}")]
pub(crate) struct CompileError(String);

/// Compiles `source` where the composited variables `variables` (those declared before it)
/// are visible.
pub(crate) fn compile(source: &str, variables: &[&str]) -> Result<Expression, CompileError> {
    let mut ast = cel::parser::Parser::new().enable_optional_syntax(true).parse(source).map_err(|errors| {
        // cel-rust counts columns from 1.
        let at = |e: &cel::ParseError| (e.pos.0.max(1) as usize, (e.pos.1 - 1).max(0) as usize);
        CompileError(errors.errors.iter().map(|e| issue(source, at(e), &e.msg)).collect::<Vec<_>>().join("\n"))
    })?;
    reroute_optional_selects(&mut ast);
    let mut refs = References::default();
    refs.walk(&ast, &mut Vec::new());
    let mut issues = Vec::new();
    for name in &refs.undeclared {
        let at = locate(source, name);
        let msg = if *name == "authorizer" {
            "undeclared reference to 'authorizer' (in container ''): authorization checks are not supported by this server".to_string()
        } else {
            format!("undeclared reference to '{name}' (in container '')")
        };
        issues.push(issue(source, at, &msg));
    }
    for name in refs.variables.iter().filter(|v| !variables.contains(&v.as_str())) {
        // cel-go points at the `.` of the selection.
        let (line, col) = locate(source, &format!("variables.{name}"));
        issues.push(issue(source, (line, col + "variables".len()), &format!("undefined field '{name}'")));
    }
    if !issues.is_empty() {
        return Err(CompileError(issues.join("\n")));
    }
    let variables = refs.variables;
    Ok(Expression { ast, variables })
}

/// One cel-go issue: position (1-based line, 0-based column), message and the source line
/// with a caret under the column.
fn issue(source: &str, (line, col): (usize, usize), msg: &str) -> String {
    let text = source.lines().nth(line.saturating_sub(1)).unwrap_or_default();
    format!("ERROR: <input>:{line}:{}: {msg}\n | {text}\n | {}^", col + 1, ".".repeat(col))
}

/// Where `token` first occurs delimited by non-identifier characters, as (1-based line,
/// 0-based column); the start when it is not found.
fn locate(source: &str, token: &str) -> (usize, usize) {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let found = source.match_indices(token).map(|(i, _)| i).find(|&i| {
        let before = source[..i].chars().next_back();
        let after = source[i + token.len()..].chars().next();
        !before.is_some_and(ident) && !after.is_some_and(ident)
    });
    let Some(offset) = found else { return (1, 0) };
    let line_start = source[..offset].rfind('\n').map_or(0, |p| p + 1);
    (source[..offset].matches('\n').count() + 1, source[line_start..offset].chars().count())
}

/// Names an expression reads, found by walking its syntax tree.
#[derive(Default)]
struct References<'a> {
    /// Identifiers that are neither declared variables nor bound by a macro.
    undeclared: Vec<&'a str>,
    variables: Vec<String>,
}

impl<'a> References<'a> {
    fn walk(&mut self, e: &'a IdedExpr, bound: &mut Vec<&'a str>) {
        match &e.expr {
            Expr::Ident(name) => {
                if !bound.contains(&name.as_str())
                    && !DECLARED.contains(&name.as_str())
                    && !self.undeclared.contains(&name.as_str())
                {
                    self.undeclared.push(name);
                }
            }
            Expr::Select(select) => {
                if let Expr::Ident(root) = &select.operand.expr
                    && root == "variables"
                    && !bound.contains(&"variables")
                    && !self.variables.contains(&select.field)
                {
                    self.variables.push(select.field.clone());
                }
                self.walk(&select.operand, bound);
            }
            Expr::Call(call) => {
                match call.target.as_deref() {
                    Some(IdedExpr { expr: Expr::Ident(ns), .. })
                        if FUNCTION_NAMESPACES.contains(&ns.as_str()) && !bound.contains(&ns.as_str()) => {}
                    Some(target) => self.walk(target, bound),
                    None => {}
                }
                for arg in &call.args {
                    self.walk(arg, bound);
                }
            }
            Expr::Comprehension(c) => {
                self.walk(&c.iter_range, bound);
                self.walk(&c.accu_init, bound);
                let depth = bound.len();
                bound.push(&c.iter_var);
                bound.extend(c.iter_var2.as_deref());
                bound.push(&c.accu_var);
                for part in [&c.loop_cond, &c.loop_step, &c.result] {
                    self.walk(part, bound);
                }
                bound.truncate(depth);
            }
            Expr::List(list) => list.elements.iter().for_each(|item| self.walk(item, bound)),
            Expr::Map(map) => map.entries.iter().for_each(|entry| self.walk_entry(&entry.expr, bound)),
            Expr::Struct(s) => s.entries.iter().for_each(|entry| self.walk_entry(&entry.expr, bound)),
            Expr::Literal(_) | Expr::Unspecified => {}
        }
    }

    fn walk_entry(&mut self, entry: &'a EntryExpr, bound: &mut Vec<&'a str>) {
        match entry {
            EntryExpr::MapEntry(e) => {
                self.walk(&e.key, bound);
                self.walk(&e.value, bound);
            }
            EntryExpr::StructField(f) => self.walk(&f.value, bound),
        }
    }
}

/// cel-rust 0.13 gets optional field selection (`x.?f`) wrong: a missing field is an error
/// and an optional operand gives a nested optional. Its calls are rerouted to
/// `optional_select`, registered under this name (one no expression can spell).
const OPTIONAL_SELECT: &str = "@optionalSelect";

fn reroute_optional_selects(e: &mut IdedExpr) {
    match &mut e.expr {
        Expr::Call(call) => {
            if call.func_name == operators::OPT_SELECT {
                call.func_name = OPTIONAL_SELECT.into();
            }
            if let Some(target) = call.target.as_deref_mut() {
                reroute_optional_selects(target);
            }
            call.args.iter_mut().for_each(reroute_optional_selects);
        }
        Expr::Select(select) => reroute_optional_selects(&mut select.operand),
        Expr::Comprehension(c) => {
            for part in [&mut c.iter_range, &mut c.accu_init, &mut c.loop_cond, &mut c.loop_step, &mut c.result] {
                reroute_optional_selects(part);
            }
        }
        Expr::List(list) => list.elements.iter_mut().for_each(reroute_optional_selects),
        Expr::Map(map) => map.entries.iter_mut().for_each(|entry| reroute_entry(&mut entry.expr)),
        Expr::Struct(s) => s.entries.iter_mut().for_each(|entry| reroute_entry(&mut entry.expr)),
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
    }
}

fn reroute_entry(entry: &mut EntryExpr) {
    match entry {
        EntryExpr::MapEntry(e) => {
            reroute_optional_selects(&mut e.key);
            reroute_optional_selects(&mut e.value);
        }
        EntryExpr::StructField(f) => reroute_optional_selects(&mut f.value),
    }
}

/// `operand.?field` as cel-go evaluates it: `optional.none()` for an absent field or an empty
/// optional operand, else the field's value as an optional.
fn optional_select(operand: cel::Value, field: Arc<String>) -> cel::ResolveResult {
    let operand = match &operand {
        cel::Value::Opaque(o) => match o.downcast_ref::<OptionalValue>() {
            Some(optional) => match optional.value() {
                Some(value) => value,
                None => return Ok(cel::Value::Opaque(Arc::new(OptionalValue::none()))),
            },
            None => return Err(ExecutionError::NoSuchOverload),
        },
        other => other,
    };
    let cel::Value::Map(map) = operand else { return Err(ExecutionError::NoSuchOverload) };
    let selected = match map.map.get(&Key::String(field)) {
        Some(value) => OptionalValue::of(value.clone()),
        None => OptionalValue::none(),
    };
    Ok(cel::Value::Opaque(Arc::new(selected)))
}

thread_local! {
    /// CEL's standard functions and Kubernetes' libraries, registered once per thread.
    static LIBRARY: cel::Context<'static> = {
        let mut ctx = cel::Context::default().with_all();
        ctx.add_function(OPTIONAL_SELECT, optional_select);
        ctx
    };
}

/// The variables of one request as CEL values.
pub(crate) struct Activation {
    pub object: cel::Value,
    pub old_object: cel::Value,
    pub request: cel::Value,
    pub namespace_object: cel::Value,
}

/// A composited variable of the policy (`spec.variables[i]`), compiled.
pub(crate) struct Variable {
    pub name: String,
    pub expression: Result<Expression, CompileError>,
}

/// Evaluates the expressions of one policy against one request. Composited variables are
/// evaluated when an expression first selects them and remembered for the others, as
/// kube-apiserver's lazy `variables` map does; one that fails only fails the expressions
/// that use it.
pub(crate) struct Evaluator<'a> {
    scope: cel::Context<'a>,
    variables: &'a [Variable],
    values: RefCell<HashMap<String, Result<cel::Value, String>>>,
}

/// Runs `f` with an evaluator for `activation` (bound once: every expression shares it).
pub(crate) fn with_evaluator<R>(activation: Activation, variables: &[Variable], f: impl FnOnce(&Evaluator) -> R) -> R {
    LIBRARY.with(|library| {
        let mut scope = library.new_inner_scope();
        scope.add_variable_from_value("object", activation.object);
        scope.add_variable_from_value("oldObject", activation.old_object);
        scope.add_variable_from_value("request", activation.request);
        scope.add_variable_from_value("namespaceObject", activation.namespace_object);
        f(&Evaluator { scope, variables, values: RefCell::default() })
    })
}

impl Evaluator<'_> {
    /// The expression's value, or cel-go's text of why it has none.
    pub(crate) fn evaluate(&self, expression: &Expression) -> Result<cel::Value, String> {
        let mut selected = Vec::with_capacity(expression.variables.len());
        for name in &expression.variables {
            selected.push((name.as_str(), self.variable(name)?));
        }
        let mut scope = self.scope.new_inner_scope();
        scope.add_variable_from_value("variables", cel_value::map(selected));
        scope.resolve(&expression.ast).map_err(|e| go_error(&e))
    }

    fn variable(&self, name: &str) -> Result<cel::Value, String> {
        if let Some(known) = self.values.borrow().get(name) {
            return known.clone();
        }
        let value = match self.variables.iter().find(|v| v.name == name).map(|v| &v.expression) {
            Some(Ok(expression)) => {
                self.evaluate(expression).map_err(|e| format!("composited variable \"{name}\" fails to evaluate: {e}"))
            }
            Some(Err(e)) => Err(format!("composited variable \"{name}\" fails to compile: {e}")),
            // Compilation only lets expressions select variables declared before them.
            None => Err(format!("no such key: {name}")),
        };
        self.values.borrow_mut().insert(name.to_string(), value.clone());
        value
    }
}

/// cel-go's wording of the errors users meet most; the others keep cel-rust's.
fn go_error(e: &ExecutionError) -> String {
    match e {
        ExecutionError::NoSuchKey(key) => format!("no such key: {key}"),
        ExecutionError::NoSuchOverload => "no such overload".into(),
        ExecutionError::UnsupportedBinaryOperator(..)
        | ExecutionError::UnsupportedUnaryOperator(..)
        | ExecutionError::ValuesNotComparable(..) => "no such overload".into(),
        ExecutionError::DivisionByZero(_) => "division by zero".into(),
        ExecutionError::RemainderByZero(_) => "modulus by zero".into(),
        other => other.to_string(),
    }
}
