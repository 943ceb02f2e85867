//! PromQL templates: `{{ window }}`, `{{ arm.name }}`, `{{ arm.selector.<key> }}`,
//! `{{ arm.deployment }}`, `{{ service.name }}`, `{{ namespace }}`, `{{ experiment }}`, and
//! `{{ cohort }}`, the label matcher of the analysed traffic ([`Cohorts`]), which stands between
//! the braces of a selector: `x{app="shop",{{ cohort }}}`.
//!
//! Values are escaped for the place they land in, found by a small scan of the PromQL
//! around them: inside a `"…"` or `'…'` literal they are escaped as the PromQL lexer
//! unescapes (Go escapes), inside a regex matcher (`=~`, `!~`) they are also regex-quoted so
//! they match only themselves, and anywhere else (a range, a metric name, a comment) they
//! must consist of `[A-Za-z0-9_]` only. So no label value can change the query's structure.

use std::time::Duration;

use crate::api::duration::to_promql;
use crate::api::{Arm, Routing, Unit};

/// The requests an analysis counts, by the `forklane_cohort` label that Istio's Telemetry (and an
/// app propagating the `x-forklane-cohort` header) puts on metrics; see docs/analysis.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cohorts {
    /// First exposures (the weighted split) only: each user once (unit `user`).
    FirstExposures,
    /// Every randomised request: the split and the sticky pins (unit `request`).
    Randomised,
    /// No mesh sets the header: series without the label.
    Unlabelled,
}

impl Cohorts {
    /// The cohorts analysed in routing `mode` for `unit`.
    pub fn analysed(mode: Routing, unit: Unit) -> Self {
        match (mode, unit) {
            (Routing::Native, _) => Cohorts::Unlabelled,
            // With the Gateway API the routes set the cohort header too (an app that propagates
            // it labels its metrics); the mesh's own metrics lack it (see `builtins`).
            (Routing::Istio | Routing::GatewayApi, Unit::User) => Cohorts::FirstExposures,
            (Routing::Istio | Routing::GatewayApi, Unit::Request) => Cohorts::Randomised,
        }
    }

    /// The PromQL label matcher, as `{{ cohort }}` renders it.
    pub fn matcher(self) -> &'static str {
        match self {
            Cohorts::FirstExposures => r#"forklane_cohort="assigned""#,
            Cohorts::Randomised => r#"forklane_cohort=~"assigned|returning""#,
            Cohorts::Unlabelled => r#"forklane_cohort=~"|none""#,
        }
    }
}

/// Everything a template can refer to, for one arm.
#[derive(Clone, Debug)]
pub struct Context<'a> {
    pub arm: &'a Arm,
    pub service: &'a str,
    pub namespace: &'a str,
    pub experiment: &'a str,
    /// Time since the analysis began.
    pub window: Duration,
    pub cohort: Cohorts,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error(
        "metric `{metric}`: unknown placeholder `{{{{ {name} }}}}` (known: window, arm.name, arm.selector.<label>, arm.deployment, service.name, namespace, experiment, cohort)"
    )]
    Unknown { metric: String, name: String },
    #[error("metric `{metric}`: placeholder `{{{{ {name} }}}}` has no value for arm `{arm}`")]
    Missing { metric: String, name: String, arm: String },
    #[error(
        "metric `{metric}`: placeholder `{{{{ {name} }}}}` is outside a quoted string, where only letters, digits and `_` are safe, but its value is {value:?}"
    )]
    Unsafe { metric: String, name: String, value: String },
    #[error(
        "metric `{metric}`: placeholder `{{{{ {name} }}}}` is inside a `…` raw string, which cannot hold its value {value:?}; use double quotes"
    )]
    RawString { metric: String, name: String, value: String },
    #[error(
        "metric `{metric}`: placeholder `{{{{ cohort }}}}` is a label matcher ({matcher}) and belongs between the braces of a selector, not inside a string"
    )]
    Matcher { metric: String, matcher: &'static str },
    #[error("metric `{metric}`: `{{{{` at byte {at} is not closed by `}}}}`")]
    Unclosed { metric: String, at: usize },
}

/// The placeholder of the analysed cohorts' label matcher.
pub(crate) const COHORT: &str = "cohort";

/// Where in the query a placeholder stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Code,
    Comment,
    /// Inside a string literal opened by this quote; `regex` when it is a regex matcher's operand.
    Str {
        quote: char,
        regex: bool,
    },
}

/// Renders `template` for one arm; `metric` names the metric in errors.
pub fn render(template: &str, ctx: &Context, metric: &str) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(template.len() + 32);
    let mut place = Place::Code;
    // The last two non-blank characters of code, to see `=~` / `!~` before a string.
    let mut recent = ['\0'; 2];
    let mut escaped = false;
    let mut rest = template;
    while let Some(c) = rest.chars().next() {
        // `x{{{ cohort }}}`: the first brace opens the selector, the next two the placeholder.
        if rest.starts_with("{{") && !rest.starts_with("{{{") && !escaped {
            let at = template.len() - rest.len();
            let close = rest.find("}}").ok_or_else(|| TemplateError::Unclosed { metric: metric.into(), at })?;
            let name = rest[2..close].trim();
            if name == COHORT {
                // Our own fixed text, so it is inserted as is; as a matcher it must be code.
                let matcher = ctx.cohort.matcher();
                if place != Place::Code {
                    return Err(TemplateError::Matcher { metric: metric.into(), matcher });
                }
                out.push_str(matcher);
                matcher.chars().for_each(|c| recent = [recent[1], c]);
                rest = &rest[close + 2..];
                continue;
            }
            let value = lookup(name, ctx).map_err(|unknown| placeholder_error(unknown, name, ctx, metric))?;
            out.push_str(&place_value(place, &value).map_err(|raw| {
                let (name, value) = (name.to_string(), value.clone());
                if raw {
                    TemplateError::RawString { metric: metric.into(), name, value }
                } else {
                    TemplateError::Unsafe { metric: metric.into(), name, value }
                }
            })?);
            rest = &rest[close + 2..];
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
        place = match place {
            Place::Code => match c {
                '"' | '\'' | '`' => Place::Str { quote: c, regex: recent[1] == '~' && matches!(recent[0], '=' | '!') },
                '#' => Place::Comment,
                _ => Place::Code,
            },
            Place::Comment if c == '\n' => Place::Code,
            Place::Str { quote, .. } if c == quote && !escaped => Place::Code,
            other => other,
        };
        // A backslash escapes the next character in quoted strings, not in raw ones.
        escaped = matches!(place, Place::Str { quote: '"' | '\'', .. }) && c == '\\' && !escaped;
        if place == Place::Code && !c.is_whitespace() {
            recent = [recent[1], c];
        }
    }
    Ok(out)
}

/// `Err(true)` for a known name without a value for this arm, `Err(false)` for an unknown name.
fn lookup(name: &str, ctx: &Context) -> Result<String, bool> {
    let arm = ctx.arm;
    match name {
        "window" => Ok(to_promql(ctx.window)),
        "arm.name" => Ok(arm.name.clone()),
        "arm.deployment" => arm.deployment.clone().ok_or(true),
        "service.name" => Ok(ctx.service.to_string()),
        "namespace" => Ok(ctx.namespace.to_string()),
        "experiment" => Ok(ctx.experiment.to_string()),
        _ => match name.strip_prefix("arm.selector.") {
            Some(key) => arm.selector.get(key).cloned().ok_or(true),
            None => Err(false),
        },
    }
}

fn placeholder_error(known: bool, name: &str, ctx: &Context, metric: &str) -> TemplateError {
    let (metric, name) = (metric.to_string(), name.to_string());
    if known {
        TemplateError::Missing { metric, name, arm: ctx.arm.name.clone() }
    } else {
        TemplateError::Unknown { metric, name }
    }
}

/// The text to insert; `Err(raw)` when the value cannot stand there safely.
fn place_value(place: Place, value: &str) -> Result<String, bool> {
    match place {
        Place::Code | Place::Comment => {
            let safe = !value.is_empty() && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if safe { Ok(value.to_string()) } else { Err(false) }
        }
        Place::Str { quote, regex } => {
            let value = if regex { regex::escape(value) } else { value.to_string() };
            match quote {
                '`' if value.contains('`') => Err(true),
                '`' => Ok(value),
                _ => Ok(escape_quoted(&value, quote)),
            }
        }
    }
}

/// Escapes for a PromQL `"…"` or `'…'` literal, which the PromQL lexer reads with Go's
/// escapes: the quote and `\` are backslashed, newline (which would end the literal) and
/// other control characters become `\n`, `\t`, … or `\u00XX`.
pub(crate) fn escape_quoted(value: &str, quote: char) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
#[path = "template_tests.rs"]
mod tests;
