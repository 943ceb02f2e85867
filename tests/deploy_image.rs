//! The Dockerfile, read statically (no Docker engine here): it builds the binaries the workspace
//! has, runs them as the user deploy/ runs as, and deploy/ names the image of this version.

use std::path::Path;

use regex::Regex;
use serde_yaml_ng::Value;

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The Dockerfile's instructions, continuation lines joined, comments left out.
fn instructions() -> Vec<String> {
    let text = read("Dockerfile").replace("\\\n", " ");
    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string).collect()
}

/// The stages: each `FROM` with the instructions after it.
fn stages() -> Vec<Vec<String>> {
    let mut stages: Vec<Vec<String>> = Vec::new();
    for line in instructions() {
        if line.starts_with("FROM ") {
            stages.push(vec![line]);
        } else if let Some(stage) = stages.last_mut() {
            stage.push(line);
        }
    }
    stages
}

/// The value of `ARG name=value` before the first stage or in `stage`.
fn arg(lines: &[String], name: &str) -> String {
    let prefix = format!("ARG {name}=");
    lines.iter().find_map(|l| l.strip_prefix(&prefix)).unwrap_or_else(|| panic!("no {prefix}")).to_string()
}

/// The binaries of the `forklane` package: `[[bin]]` names and `src/bin/*.rs`.
fn workspace_binaries() -> Vec<String> {
    let manifest = read("Cargo.toml");
    let declared = Regex::new(r#"\[\[bin\]\]\s*\nname\s*=\s*"([^"]+)""#).unwrap();
    let mut bins: Vec<String> = declared.captures_iter(&manifest).map(|c| c[1].to_string()).collect();
    for file in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bin")).unwrap() {
        let path = file.unwrap().path();
        bins.push(path.file_stem().unwrap().to_string_lossy().into_owned());
    }
    bins
}

fn deployment() -> Value {
    serde_yaml_ng::from_str(&read("deploy/deployment.yaml")).unwrap()
}

#[test]
fn the_image_builds_the_workspace_binaries_and_runs_them_unprivileged() {
    let stages = stages();
    assert!(stages.len() >= 2, "a builder and a runtime stage: {stages:#?}");
    let (builder, runtime) = (&stages[0], stages.last().unwrap());

    let build = builder.iter().find(|l| l.contains("cargo build")).expect("the builder runs cargo build");
    assert!(build.contains("--release") && build.contains("--locked"), "{build}");
    let built: Vec<&str> = build
        .split_whitespace()
        .skip_while(|w| *w != "cargo")
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] == "--bin")
        .map(|w| w[1])
        .collect();
    let binaries = workspace_binaries();
    assert_eq!(built, ["forklane", "kubectl-forklane"], "{build}");
    for bin in &built {
        assert!(binaries.iter().any(|b| b == bin), "{bin} is no binary of the workspace: {binaries:?}");
        let copied = runtime.iter().any(|l| l.starts_with("COPY --from=builder") && l.contains(&format!("/{bin} ")));
        assert!(copied, "the runtime stage copies {bin}: {runtime:#?}");
    }

    // The toolchain can build the workspace.
    let toolchain = arg(&instructions(), "RUST_VERSION");
    let number = |v: &str| v.split('.').map(|p| p.parse::<u32>().unwrap()).take(2).collect::<Vec<_>>();
    assert!(number(&toolchain) >= number(env!("CARGO_PKG_RUST_VERSION")), "rust {toolchain}");
    assert!(builder[0].contains("rust:${RUST_VERSION}"), "{}", builder[0]);

    let user = runtime.iter().rev().find_map(|l| l.strip_prefix("USER ")).expect("the runtime stage sets USER");
    assert_eq!(user, "65532:65532");
    let pod = &deployment()["spec"]["template"]["spec"]["securityContext"];
    assert_eq!((pod["runAsUser"].as_u64(), pod["runAsGroup"].as_u64()), (Some(65532), Some(65532)), "{pod:?}");
    assert!(runtime.contains(&r#"ENTRYPOINT ["/usr/local/bin/forklane"]"#.to_string()), "{runtime:#?}");
    assert!(runtime.contains(&r#"CMD ["run"]"#.to_string()), "{runtime:#?}");
    assert_eq!(arg(runtime, "VERSION"), env!("CARGO_PKG_VERSION"), "the image's version label");
}

#[test]
fn deploy_names_the_image_of_the_workspace_version() {
    let containers = deployment()["spec"]["template"]["spec"]["containers"].clone();
    let image = containers[0]["image"].as_str().expect("an image").to_string();
    assert_eq!(image, format!("ghcr.io/forklane/forklane:{}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn the_build_context_leaves_out_build_output_and_history() {
    let ignored = read(".dockerignore");
    let lines: Vec<&str> = ignored.lines().map(str::trim).collect();
    for excluded in ["target/", ".git/"] {
        assert!(lines.contains(&excluded), "{excluded} in .dockerignore");
    }
    // What the binaries embed (include_str!) must stay in the context.
    for needed in ["crds", "examples", "tests", "core", "sim", "src"] {
        assert!(!lines.iter().any(|l| l.trim_end_matches('/') == needed), "{needed} is needed to build");
    }
}
