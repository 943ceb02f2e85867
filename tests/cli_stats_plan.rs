//! `forklane stats plan` and `forklane validate --traffic` as a user runs them.

use std::process::{Command, Output};
use std::time::Duration;

fn forklane(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_forklane")).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The successful output of `forklane stats plan ARGS`.
fn plan(args: &[&str]) -> String {
    let out = forklane(&[&["stats", "plan"], args].concat());
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

/// The table row of `metric`, split into columns.
fn row(table: &str, metric: &str) -> Vec<String> {
    let line = table.lines().find(|l| l.starts_with(metric)).unwrap_or_else(|| panic!("no row {metric}:\n{table}"));
    line.split_whitespace().map(String::from).collect()
}

/// The median time to decision of a row (the 4th column from the right).
fn median(table: &str, metric: &str) -> Duration {
    let cols = row(table, metric);
    forklane_core::api::duration::parse(&cols[cols.len() - 4]).unwrap_or_else(|e| panic!("{e}:\n{table}"))
}

fn power(table: &str, metric: &str) -> f64 {
    let cols = row(table, metric);
    cols[cols.len() - 6].parse().unwrap()
}

#[test]
fn more_traffic_gives_a_sooner_decision() {
    let common = ["--split", "50/50", "--baseline", "0.05", "--uplift", "0.1", "--runs", "500"];
    let slow = plan(&[&["--traffic", "10"], &common[..]].concat());
    let fast = plan(&[&["--traffic", "40"], &common[..]].concat());
    assert!(slow.starts_with("metric") && slow.contains("5.00% → 5.50% (+10.0%)"), "{slow}");
    let ratio = median(&slow, "goal").as_secs_f64() / median(&fast, "goal").as_secs_f64();
    assert!((2.5..6.0).contains(&ratio), "{slow}\n{fast}");
    assert!(power(&fast, "goal") >= 0.95, "{fast}");
}

#[test]
fn a_short_max_duration_is_flagged_with_the_duration_that_would_do() {
    let out = plan(&["--traffic", "5", "--max-duration", "1h", "--margin", "0.005", "--runs", "500"]);
    assert!(power(&out, "goal") < 0.8, "{out}");
    let warning = out.lines().find(|l| l.contains("`goal`")).unwrap_or_else(|| panic!("{out}"));
    assert!(
        warning.starts_with("warning: spec.analysis.maxDuration: 1h is too short for 80% power on `goal`"),
        "{warning}"
    );
    assert!(warning.contains("would reach 80%"), "{warning}");
    // The guardrail row plans the margin given.
    assert!(row(&out, "guardrail").iter().any(|c| c == "0.50pp"), "{out}");
}

#[test]
fn an_experiment_file_gives_split_interval_and_metrics() {
    let out = plan(&["-f", "examples/ab-test.yaml", "--traffic", "200", "--runs", "300"]);
    assert!(power(&out, "conversion") > 0.9, "{out}");
    assert!(row(&out, "error-rate").iter().any(|c| c == "0.20pp"), "the guardrail's own margin: {out}");
    // A ramp: the same split after a 95/5 hour decides later than 50/50 from the start.
    let ramp = plan(&["--traffic", "20", "--weights", "95/5:1h,50/50", "--runs", "300"]);
    let flat = plan(&["--traffic", "20", "--split", "50/50", "--runs", "300"]);
    assert!(median(&ramp, "goal") > median(&flat, "goal"), "{ramp}\n{flat}");
}

#[test]
fn bad_flags_name_the_flag_and_the_value() {
    for (args, flag, value) in [
        (vec!["--traffic", "0"], "--traffic", "0"),
        (vec!["--traffic", "10", "--split", "50/x"], "--split", "50/x"),
        (vec!["--traffic", "10", "--baseline", "1.5"], "--baseline", "1.5"),
        (vec!["--traffic", "10", "--max-duration", "2 hours"], "--max-duration", "2 hours"),
        (vec!["--traffic", "10", "--weights", "95/5,50/50"], "--weights", "95/5,50/50"),
        (vec!["--traffic", "10", "--visits-per-user", "0.5"], "--visits-per-user", "0.5"),
    ] {
        let out = forklane(&[&["stats", "plan"], &args[..]].concat());
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(flag) && err.contains(&format!("'{value}'")), "{args:?}: {err}");
    }
    let out = forklane(&["stats", "plan", "-f", "examples/blue-green.yaml", "--traffic", "10"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), "error: experiment my-app-blue-green has no spec.analysis to plan\n");
}

#[test]
fn validate_with_traffic_adds_the_time_to_decision() {
    let out = forklane(&["validate", "-f", "examples/ab-test.yaml", "--traffic", "200"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("valid\n"), "{stdout}");
    let conversion = stdout.lines().find(|l| l.contains("conversion (goal")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(conversion.contains("power 1.00 by maxDuration 24h; time to decision median "), "{conversion}");
    assert!(stdout.contains("error-rate (guardrail"), "{stdout}");
    assert!(!text(&out.stderr).contains("warning"), "{}", text(&out.stderr));

    // The canary analyses at 10% for at most 2h: too little at 5 requests/s.
    let out = forklane(&["validate", "-f", "examples/canary.yaml", "--traffic", "5"]);
    assert!(out.status.success(), "a warning is not a problem: {}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(
            "warning: spec.analysis.maxDuration: 2h is too short for 80% power on `error-rate` (step 2 at 10%)"
        ),
        "{stderr}"
    );
}
