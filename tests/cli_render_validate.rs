//! The `render` and `validate` commands as a user runs them: exit codes, stdout, stderr.

use std::process::{Command, Output};

fn forklane(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_forklane")).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn render_prints_the_canary_weights_of_a_step() {
    let out = forklane(&["render", "-f", "examples/canary.yaml", "--step", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let yaml = text(&out.stdout);
    assert!(yaml.contains("kind: DestinationRule") && yaml.contains("kind: VirtualService"));
    assert!(yaml.find("kind: DestinationRule") < yaml.find("kind: VirtualService"), "subsets before routes");
    assert!(yaml.contains("weight: 90") && yaml.contains("weight: 10"), "{yaml}");
}

#[test]
fn render_without_mesh_gives_the_articles_commands() {
    let out = forklane(&["render", "-f", "examples/blue-green.yaml", "--step", "1", "--mesh", "none"]);
    // The blue/green example has a preview header, which needs a mesh.
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("spec.strategy.blueGreen.previewHeader: header-based preview needs a mesh"));
    assert!(out.stdout.is_empty());
    let out = forklane(&["render", "-f", "examples/canary.yaml", "--step", "1", "--mesh", "none"]);
    let yaml = text(&out.stdout);
    assert!(yaml.contains("# kubectl scale deployment my-app-v2 -n default --replicas=1"), "{yaml}");
    assert!(yaml.contains("# weights: v1=90, v2=10"), "{yaml}");
}

#[test]
fn render_refuses_a_step_out_of_range() {
    let out = forklane(&["render", "-f", "examples/ab-test.yaml", "--step", "3"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(text(&out.stderr).contains("--step 3 is out of range: this experiment has steps 0 to 0"));
}

#[test]
fn validate_says_valid_or_lists_every_problem() {
    let out = forklane(&["validate", "-f", "examples/abn-test.yaml"]);
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), "valid\n");

    let dir = std::env::temp_dir().join(format!("forklane-validate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yaml");
    let original = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/ab-test.yaml")).unwrap();
    std::fs::write(
        &bad,
        original
            .replace("split: {v1: 90, v2: 10}", "split: {v1: 80, v2: 10}")
            .replace("{exact: beta}", "{regex: \"(beta\"}"),
    )
    .unwrap();
    let out = forklane(&["validate", "-f", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(lines.contains(&"spec.strategy.abTest.split: weights sum to 90, must be 100"), "{stderr}");
    assert!(
        lines.iter().any(|l| l.starts_with(
            "spec.strategy.abTest.rules[0].match.headers.x-user-group.regex: \"(beta\" is not a valid RE2 regex"
        )),
        "{stderr}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// `forklane validate -f` on `text`, written to a file of its own.
fn validate_text(name: &str, text: &str) -> Output {
    let dir = std::env::temp_dir().join(format!("forklane-validate-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("experiment.yaml");
    std::fs::write(&file, text).unwrap();
    let out = forklane(&["validate", "-f", file.to_str().unwrap()]);
    std::fs::remove_dir_all(dir).unwrap();
    out
}

#[test]
fn validate_accepts_explicit_defaults_and_names_unknown_fields() {
    let original = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/ab-test.yaml")).unwrap();
    let explicit = original
        .replace("allowDegraded: true", "allowDegraded: false")
        .replace("{name: v2, selector", "{name: v2, control: false, selector")
        .replace("userAgent: {regex", "headers: {}\n            cookies: {}\n            userAgent: {regex");
    let out = validate_text("defaults", &explicit);
    assert_eq!((text(&out.stdout), text(&out.stderr)), ("valid\n".into(), String::new()));

    let no_rules = original.replace("      rules:\n", "      rules: []\n      unused:\n");
    let out = validate_text("unknown", &no_rules.replace("{name: v2, selector", "{name: v2, selectr: {}, selector"));
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(lines[0].ends_with("document 1: spec.arms[1].selectr: unknown field"), "{stderr}");
    assert!(lines[1].ends_with("document 1: spec.strategy.abTest.unused: unknown field"), "{stderr}");
}

#[test]
fn crdgen_prints_both_crds() {
    let out = forklane(&["crdgen"]);
    assert!(out.status.success());
    let yaml = text(&out.stdout);
    assert!(yaml.contains("name: experiments.forklane.io") && yaml.contains("name: rolloutpolicies.forklane.io"));
}

#[test]
fn validate_warns_of_custom_queries_that_count_targeted_or_mirrored_requests() {
    let original = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/ab-test.yaml")).unwrap();
    assert!(original.contains(",{{ cohort }}}"), "the example restricts its queries");
    let out = validate_text("cohort", &original.replace(",{{ cohort }}}", "}"));
    assert!(out.status.success(), "a warning is no error: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "valid\n");
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    for (line, field) in lines.iter().zip(["successQuery", "trialQuery"]) {
        assert!(
            line.starts_with(&format!("warning: spec.analysis.metrics[0].{field}: metric \"conversion\"")),
            "{line}"
        );
        assert!(line.contains("{{ cohort }}") && line.contains("targeted"), "{line}");
    }
    // Without rules nothing but randomised traffic reaches the arms: no warning.
    let unrestricted = original.replace(",{{ cohort }}}", "}");
    let (start, end) = (unrestricted.find("      rules:\n").unwrap(), unrestricted.find("      split:").unwrap());
    let out = validate_text("cohort-no-rules", &format!("{}{}", &unrestricted[..start], &unrestricted[end..]));
    assert_eq!((text(&out.stdout), text(&out.stderr)), ("valid\n".into(), String::new()));
}
