//! Every value of `tests/reference/stats/vectors.json` (scipy / statsmodels references)
//! reproduced through the eval dispatcher and through `forklane stats eval`.

use forklane_core::stats::vectors;
use serde_json::Value;
use std::io::Write;
use std::process::{Command, Stdio};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/reference/stats/vectors.json");

fn load() -> Value {
    let text = std::fs::read_to_string(VECTORS).unwrap_or_else(|e| panic!("cannot read {VECTORS}: {e}"));
    serde_json::from_str(&text).expect("vectors.json is JSON")
}

/// 1e-9 relative, or 1e-12 absolute near zero.
fn close(expected: f64, actual: f64) -> bool {
    (expected - actual).abs() <= 1e-12_f64.max(1e-9 * expected.abs())
}

/// Checks every expected value (recursively) against the actual output; returns the
/// mismatches as readable paths.
fn mismatches(path: &str, expected: &Value, actual: Option<&Value>, out: &mut Vec<String>) {
    let Some(actual) = actual else {
        out.push(format!("{path}: missing"));
        return;
    };
    match (expected, actual) {
        (Value::Number(e), Value::Number(a)) => {
            let (e, a) = (e.as_f64().unwrap_or(f64::NAN), a.as_f64().unwrap_or(f64::NAN));
            if !close(e, a) {
                out.push(format!("{path}: expected {e:e}, got {a:e} (rel. error {:.1e})", ((a - e) / e).abs()));
            }
        }
        (Value::Array(e), Value::Array(a)) if e.len() == a.len() => {
            for (k, (ev, av)) in e.iter().zip(a).enumerate() {
                mismatches(&format!("{path}[{k}]"), ev, Some(av), out);
            }
        }
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                mismatches(&format!("{path}.{k}"), ev, a.get(k), out);
            }
        }
        (e, a) if e == a => {}
        (e, a) => out.push(format!("{path}: expected {e}, got {a}")),
    }
}

fn check_all(outputs: &Value, vectors: &Value) -> Vec<String> {
    let mut bad = Vec::new();
    let (outs, vecs) = (outputs.as_array().expect("array out"), vectors.as_array().expect("array in"));
    assert_eq!(outs.len(), vecs.len(), "one output per entry");
    for (k, (o, v)) in outs.iter().zip(vecs).enumerate() {
        assert_eq!(o["test"], v["test"], "entry {k} keeps its test name");
        mismatches(&format!("#{k} {}", v["test"].as_str().unwrap_or("?")), &v["expected"], o.get("outputs"), &mut bad);
    }
    bad
}

#[test]
fn library_reproduces_every_reference_value() {
    let vectors = load();
    let entries = vectors.as_array().expect("array");
    assert!(entries.len() >= 20, "the reference file shrank: {} entries", entries.len());
    let (outputs, ok) = vectors::eval(&vectors);
    assert!(ok, "some entries failed: {outputs:#}");
    let bad = check_all(&outputs, &vectors);
    assert!(bad.is_empty(), "{} mismatches:\n{}", bad.len(), bad.join("\n"));
    // Every test name of the reference file is covered.
    let checked: usize = entries.iter().map(|e| e["expected"].as_object().map_or(0, |o| o.len())).sum();
    eprintln!("checked {} entries, {checked} expected fields", entries.len());
}

#[test]
fn comparison_tolerance_is_not_vacuous() {
    assert!(close(1.0, 1.0 + 5e-10) && !close(1.0, 1.0 + 2e-9));
    assert!(close(0.0, 1e-13) && !close(0.0, 1e-11));
    let mut bad = Vec::new();
    mismatches("x", &serde_json::json!({"a": [1.0, true]}), Some(&serde_json::json!({"a": [1.0001, true]})), &mut bad);
    mismatches("y", &serde_json::json!({"b": 1}), Some(&serde_json::json!({})), &mut bad);
    assert_eq!(bad.len(), 2, "{bad:?}");
}

#[test]
fn binary_eval_reproduces_every_reference_value() {
    let text = std::fs::read_to_string(VECTORS).expect("vectors.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_forklane"))
        .args(["stats", "eval"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run forklane stats eval");
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "exit {:?}: {}", out.status, String::from_utf8_lossy(&out.stdout));
    let outputs: Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    let bad = check_all(&outputs, &load());
    assert!(bad.is_empty(), "{} mismatches:\n{}", bad.len(), bad.join("\n"));
}

#[test]
fn binary_eval_reports_bad_entries_and_exits_1() {
    let input =
        r#"[{"test": "no_such_test", "inputs": {}}, {"test": "multipletests", "inputs": {"p_values": [0.1, 0.2]}}]"#;
    let mut child = Command::new(env!("CARGO_BIN_EXE_forklane"))
        .args(["stats", "eval"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run forklane stats eval");
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert!(v[0]["error"].as_str().is_some_and(|e| e.contains("no_such_test")));
    assert!(v[1]["outputs"]["holm_adjusted"].is_array());
}
