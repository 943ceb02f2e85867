//! Go `fmt` renderings of JSON values. Apiserver messages embed values printed by Go's
//! `%v`, `%q` and `%#v` verbs on unstructured data (`map[string]interface{}` etc.), so the
//! exact text of our messages depends on reproducing them.

use serde_json::Value;

/// `strconv.Quote`: double-quoted, Go escapes.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `%v` of a float64: shortest representation, exponent form outside [1e-4, 1e21).
pub(crate) fn float(f: f64) -> String {
    let abs = f.abs();
    if f == 0.0 || (1e-4..1e21).contains(&abs) {
        return format!("{f}");
    }
    // Rust prints `1e21` / `1e-5`; Go prints `1e+21` / `1e-05`.
    let s = format!("{f:e}");
    let (mantissa, exp) = s.split_once('e').expect("exponent form");
    let (sign, digits) = exp.strip_prefix('-').map_or(("+", exp), |d| ("-", d));
    format!("{mantissa}e{sign}{digits:0>2}")
}

/// `%v` of a JSON number as decoded into unstructured content (int64 or float64).
pub(crate) fn number(n: &serde_json::Number) -> String {
    match (n.as_i64(), n.as_u64()) {
        (Some(i), _) => i.to_string(),
        (None, Some(u)) => u.to_string(),
        _ => float(n.as_f64().unwrap_or(0.0)),
    }
}

/// The way `field.Error.ErrorBody` prints a bad value: simple types with `%v`, strings with
/// `%q`, nil as `"null"`, anything else (maps, slices) with `%#v`.
pub(crate) fn bad_value(v: &Value) -> String {
    match v {
        Value::Null => "\"null\"".into(),
        Value::String(s) => quote(s),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => number(n),
        Value::Array(_) | Value::Object(_) => sharp_v(v),
    }
}

/// `%#v` of an unstructured value.
pub(crate) fn sharp_v(v: &Value) -> String {
    match v {
        Value::Null => "interface {}(nil)".into(),
        Value::String(s) => quote(s),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => number(n),
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(sharp_v).collect();
            format!("[]interface {{}}{{{}}}", inner.join(", "))
        }
        Value::Object(map) => {
            // Go prints map keys sorted.
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let inner: Vec<String> =
                keys.iter().map(|k| format!("{}:{}", quote(k), sharp_v(&map[k.as_str()]))).collect();
            format!("map[string]interface {{}}{{{}}}", inner.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn floats_print_like_go_v() {
        assert_eq!(float(1.2), "1.2");
        assert_eq!(float(100000000.0), "100000000");
        assert_eq!(float(1e21), "1e+21");
        assert_eq!(float(1e-5), "1e-05");
    }

    #[test]
    fn maps_and_slices_print_like_go_sharp_v() {
        assert_eq!(sharp_v(&json!({"name": "a", "port": 80})), r#"map[string]interface {}{"name":"a", "port":80}"#);
        assert_eq!(sharp_v(&json!(["a", 1, null])), r#"[]interface {}{"a", 1, interface {}(nil)}"#);
    }

    #[test]
    fn strings_are_go_quoted() {
        assert_eq!(quote("a\"b\\\n\u{1}"), r#""a\"b\\\n\x01""#);
        assert_eq!(bad_value(&Value::Null), "\"null\"");
    }
}
