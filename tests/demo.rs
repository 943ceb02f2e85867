//! `forklane demo` from the built binary: an A/B experiment ends with v2 promoted, within the
//! demo's own 60-second limit (it exits non-zero when that runs out); it prints the experiment as
//! `kubectl forklane get` shows it and writes the experiment's report. The README quotes that tree
//! (`scripts/demo-screenshot`): it must still be what the demo prints, numbers aside.

use std::process::Command;

use regex::Regex;

#[test]
fn demo_promotes_v2_prints_the_tree_and_writes_the_report() {
    let dir = std::env::temp_dir().join(format!("forklane-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let report = dir.join("report.html");
    let out = Command::new(env!("CARGO_BIN_EXE_forklane"))
        .args(["demo", "--timeout", "60", "--report"])
        .arg(&report)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("Analysing"), "the analysis ran: {stdout}");
    assert!(stdout.contains("v2 promoted: all traffic on v2\n"), "{stdout}");
    let written = std::fs::canonicalize(&report).unwrap();
    assert_eq!(
        stdout.lines().last(),
        Some(format!("report of the experiment written to {}", written.display()).as_str()),
        "the demo ends saying where the report is"
    );
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("<svg") && html.contains("checkout"), "{html:.300}");
    let tree = stdout.split("kubectl forklane get checkout:\n").nth(1).expect("the tree").split("\nreport of").next();
    let printed = shape(tree.unwrap());
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let quoted = readme.split("<!-- demo-get -->\n").nth(1).and_then(|b| b.split("<!-- /demo-get -->").next());
    let quoted = quoted
        .expect("README.md has a demo-get block")
        .lines()
        .filter(|l| !l.starts_with("```") && !l.starts_with('$'));
    let quoted = shape(&quoted.collect::<Vec<_>>().join("\n"));
    assert_eq!(
        quoted, printed,
        "README.md's `kubectl forklane get` block is not what the demo prints: run scripts/demo-screenshot"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// The tree's lines without what changes from run to run: numbers (signed, with units, times and
/// ages) and the alignment they cause.
fn shape(text: &str) -> Vec<String> {
    let number = Regex::new(r"[-+]?[0-9][0-9.]*(e[-+]?[0-9]+)?").unwrap();
    let age = Regex::new(r"#[hms](#[hms])*").unwrap();
    text.lines()
        .map(|l| {
            let masked = number.replace_all(l, "#");
            age.replace_all(&masked, "#").split_whitespace().collect::<Vec<_>>().join(" ")
        })
        .filter(|l| !l.is_empty())
        .collect()
}
