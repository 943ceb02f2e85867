//! Forklane's YAML read back by a YAML 1.1 reader, as kubectl (go-yaml) reads it: PyYAML, whose
//! resolver implements the YAML 1.1 type repository (yes/no/on/off booleans, `012` octal,
//! `1:30` sexagesimal, timestamps…). And by serde_yaml_ng, a YAML 1.2 reader. Both must give
//! back exactly the objects that were rendered.
//!
//! PyYAML does not take `y`/`n` for booleans nor `1e3` for a float as go-yaml v2 does: those
//! are checked on the text.
//!
//! Needs python3 with PyYAML (Debian: python3-yaml; else `pip install pyyaml`): fails without.

use crate::support;

use std::io::Write;
use std::process::{Command, Stdio};

use forklane::cli::render::{RenderArgs, render};
use forklane::cli::yaml::to_yaml;
use forklane_core::api::Routing;
use forklane_core::api::load::{Document, load_documents};
use forklane_core::plan::{Observed, Target, plan};
use serde_json::{Value, json};

const READ: &str = r#"
import json, sys
try:
    import yaml
except ImportError:
    sys.exit("PyYAML is missing: apt-get install python3-yaml, or pip install pyyaml")
# A timestamp (or anything else JSON lacks) shows up as what it was read as.
def other(o):
    return {"read as": type(o).__name__, "value": str(o)}
json.dump(list(yaml.safe_load_all(sys.stdin)), sys.stdout, default=other)
"#;

/// Every document of `text` as PyYAML (YAML 1.1) reads it.
fn yaml11(text: &str) -> Vec<Value> {
    let mut child = Command::new("python3")
        .args(["-c", READ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (with PyYAML) for this test");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "PyYAML cannot read it:\n{}\n{text}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every document of `text` as serde_yaml_ng (YAML 1.2) reads it.
fn yaml12(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text).map(|d| serde::Deserialize::deserialize(d).unwrap()).collect()
}

#[test]
fn every_rendered_example_reads_back_identically_in_yaml_1_1_and_1_2() {
    let (mut stream, mut objects) = (String::new(), Vec::new());
    for path in support::examples() {
        let docs = load_documents(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let Some(Document::Experiment(exp)) = docs.into_iter().next() else { continue };
        for mode in [Routing::Istio, Routing::Native] {
            let Ok(start) = plan(&exp, &Target::Step(0), mode, &Observed::default()) else { continue };
            let finals = exp.spec.arms.iter().map(|a| (None, Some(a.name.clone())));
            for (step, final_arm) in (0..start.states).map(|n| (Some(n), None)).chain(finals) {
                let args = RenderArgs {
                    file: path.clone(),
                    step,
                    final_arm: final_arm.clone(),
                    mesh: None,
                    provider: Some(mode),
                };
                let Ok(text) = render(&args) else { continue }; // errors: see render_golden
                let target = final_arm.map_or(Target::Step(step.unwrap_or(0)), Target::Final);
                objects.extend(
                    plan(&exp, &target, mode, &Observed::default()).unwrap().actions.iter().map(|a| a.object()),
                );
                stream.push_str(&text);
            }
        }
    }
    assert!(objects.len() > 50, "{} objects", objects.len());
    assert!(yaml11(&stream) == objects, "YAML 1.1 reads something else");
    assert!(yaml12(&stream) == objects, "YAML 1.2 reads something else");
}

/// Strings YAML 1.1 or 1.2 would read as something else, or that need quotes anyway.
const TRICKY: &[&str] = &[
    "yes",
    "no",
    "on",
    "off",
    "y",
    "n",
    "Y",
    "N",
    "Yes",
    "NO",
    "On",
    "OFF",
    "true",
    "false",
    "True",
    "FALSE",
    "~",
    "null",
    "Null",
    "NULL",
    "",
    "0x1F",
    "1e3",
    "0o17",
    "012",
    "08",
    ".5",
    "1_000",
    "1:30",
    "-1:30:00",
    "+1",
    "-0",
    "1.",
    ".inf",
    "-.Inf",
    ".NaN",
    "0b101",
    "2001-12-14",
    "2001-12-14t21:59:43.10-05:00",
    "2001-12-14 21:59:43.10 -5",
    "<<",
    "=",
    "a: b",
    "a #b",
    "a:",
    "#a",
    "- a",
    "-a",
    "?a",
    ":a",
    "&a",
    "*a",
    "!a",
    "|a",
    ">a",
    "%a",
    "@a",
    "`a",
    "'a'",
    "\"a\"",
    "[a]",
    "{a}",
    ",a",
    " a",
    "a ",
    "it's",
    "two\nlines",
    "tab\there",
    "nel\u{85}",
    "ls\u{2028}",
    "bom\u{FEFF}",
    "bell\u{7}",
    "back\\slash",
    "naïve",
    "v1.0.0",
    "beta",
    "/",
    "a,b",
    "a:b",
    "x-user-group",
];

#[test]
fn tricky_strings_keys_and_numbers_read_back_identically() {
    let strings: Vec<Value> = TRICKY.iter().map(|s| json!(s)).collect();
    let keys: serde_json::Map<String, Value> = TRICKY.iter().map(|s| (s.to_string(), json!(s))).collect();
    let value = json!({
        "strings": strings,
        "keys": keys,
        "numbers": [0, -7, 12.5, 3.0, 1e20, 1e-7, u64::MAX, i64::MIN],
        "other": [null, true, false, [], {}, [[1, "yes"], {"on": {"off": ["y"]}}]],
    });
    let text = to_yaml(&value);
    assert_eq!(yaml11(&text), vec![value.clone()], "{text}");
    assert_eq!(yaml12(&text), vec![value], "{text}");
}

#[test]
fn the_yaml_1_1_reader_catches_what_serde_yaml_ng_left_plain() {
    // The bug this guards against: serde_yaml_ng writes `- yes`, a boolean in YAML 1.1.
    for s in ["yes", "off", "1:30", "1_000", "2001-12-14"] {
        let text = serde_yaml_ng::to_string(&json!([s])).unwrap();
        assert_ne!(yaml11(&text), vec![json!([s])], "{s}: {text}");
        assert_eq!(yaml11(&to_yaml(&json!([s]))), vec![json!([s])], "{s}");
    }
}

#[test]
fn what_go_yaml_reads_differently_from_pyyaml_is_quoted_too() {
    // kubectl's go-yaml v2 also takes y/n for booleans and `1e3` for a float; PyYAML does not.
    for s in ["y", "Y", "n", "N", "1e3", "1E3", "0o17"] {
        assert_eq!(to_yaml(&json!([s])), format!("- '{s}'\n"));
    }
}

#[test]
fn crdgen_output_reads_back_identically_in_yaml_1_1() {
    let crds = forklane_core::api::crds_yaml();
    assert_eq!(yaml11(&crds), yaml12(&crds));
}
