//! YAML for kubectl: block style like serde_yaml_ng's, but a string is left plain only when
//! every common reader — YAML 1.2 and YAML 1.1 (kubectl's go-yaml, PyYAML) — reads it back as
//! that string. serde_yaml_ng quotes by YAML 1.2 rules only, so a header value `yes` came out as
//! `exact: yes`, a boolean to kubectl.

use serde_json::Value;

/// `value` as one YAML document (no `---`), ending in a newline.
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => mapping(&mut out, map, 0),
        Value::Array(items) if !items.is_empty() => sequence(&mut out, items, 0),
        scalar => {
            out.push_str(&inline(scalar));
            out.push('\n');
        }
    }
    out
}

/// Writes a non-empty mapping whose first key starts at the current position, in column `indent`.
fn mapping(out: &mut String, map: &serde_json::Map<String, Value>, indent: usize) {
    for (i, (key, value)) in map.iter().enumerate() {
        if i > 0 {
            out.push_str(&" ".repeat(indent));
        }
        out.push_str(&string(key));
        match value {
            Value::Object(child) if !child.is_empty() => {
                out.push_str(&format!(":\n{}", " ".repeat(indent + 2)));
                mapping(out, child, indent + 2);
            }
            // As libyaml: a sequence in a mapping is not indented.
            Value::Array(items) if !items.is_empty() => {
                out.push_str(&format!(":\n{}", " ".repeat(indent)));
                sequence(out, items, indent);
            }
            scalar => out.push_str(&format!(": {}\n", inline(scalar))),
        }
    }
}

/// Writes a non-empty sequence whose first `-` is at the current position, in column `indent`.
fn sequence(out: &mut String, items: &[Value], indent: usize) {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(&" ".repeat(indent));
        }
        out.push_str("- ");
        match item {
            Value::Object(child) if !child.is_empty() => mapping(out, child, indent + 2),
            Value::Array(child) if !child.is_empty() => sequence(out, child, indent + 2),
            scalar => {
                out.push_str(&inline(scalar));
                out.push('\n');
            }
        }
    }
}

/// A scalar or an empty collection on one line.
fn inline(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match n.as_f64() {
            // YAML 1.1 reads a float only with a `.`; Rust's Display never uses an exponent.
            Some(f) if n.is_f64() => {
                let text = f.to_string();
                if text.contains('.') { text } else { format!("{text}.0") }
            }
            _ => n.to_string(),
        },
        Value::String(s) => string(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

/// Words YAML 1.1 or 1.2 resolve to booleans or null (compared ignoring case), or to the
/// merge key and the value key of YAML 1.1.
const RESERVED: &[&str] = &["y", "yes", "n", "no", "true", "false", "on", "off", "null", "~", "<<", "="];

/// Printable in YAML, and no line break or tab: what a plain or single-quoted scalar may hold.
fn printable(c: char) -> bool {
    !(c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{FEFF}' | '\u{FFFE}' | '\u{FFFF}'))
}

/// Plain only when no reader can take it for anything else. Anything starting like a number
/// (digit, sign, `.`) is quoted: that covers YAML 1.1's ints (`012`, `0x1F`, `1_000`,
/// sexagesimal `1:30`), floats (`.5`, `1e3`, `.inf`), timestamps and YAML 1.2's `0o17`.
fn plain(s: &str) -> bool {
    let Some(first) = s.chars().next() else { return false };
    !first.is_ascii_digit()
        && !"-+.?:,[]{}#&*!|>'\"%@`".contains(first)
        && !s.starts_with(' ')
        && !s.ends_with(' ')
        && !s.ends_with(':')
        && !s.contains(": ")
        && !s.contains(" #")
        && s.chars().all(printable)
        && !RESERVED.iter().any(|w| w.eq_ignore_ascii_case(s))
}

fn string(s: &str) -> String {
    if plain(s) {
        s.to_string()
    } else if s.chars().all(printable) {
        format!("'{}'", s.replace('\'', "''"))
    } else {
        double_quoted(s)
    }
}

fn double_quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if printable(c) => out.push(c),
            c if (c as u32) <= 0xFFFF => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push_str(&format!("\\U{:08X}", c as u32)),
        }
    }
    out.push('"');
    out
}
