//! `forklane demo` from the built binary: an A/B experiment ends with v2 promoted, within the
//! demo's own 60-second limit (it exits non-zero when that runs out).

use std::process::Command;

#[test]
fn demo_promotes_v2() {
    let out = Command::new(env!("CARGO_BIN_EXE_forklane")).args(["demo", "--timeout", "60"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("Analysing"), "the analysis ran: {stdout}");
    assert!(stdout.lines().last().unwrap_or_default().ends_with("v2 promoted: all traffic on v2"), "{stdout}");
}
