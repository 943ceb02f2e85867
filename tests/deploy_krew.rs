//! The krew manifest of `kubectl-forklane`: its template (deploy/krew/forklane.yaml) and what
//! scripts/krew-manifest makes of it from release archives (here, stand-ins: it is not built).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml_ng::Value;

const PLATFORMS: [(&str, &str); 4] = [("linux", "amd64"), ("linux", "arm64"), ("darwin", "amd64"), ("darwin", "arm64")];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn parse(path: &Path) -> Value {
    serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"))).unwrap()
}

/// A fresh directory for one test's archives.
fn dist(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("forklane-krew-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn archive(dist: &Path, os: &str, arch: &str) -> PathBuf {
    dist.join(format!("kubectl-forklane_v{}_{os}_{arch}.tar.gz", env!("CARGO_PKG_VERSION")))
}

fn krew_manifest(args: &[&str]) -> std::process::Output {
    Command::new(root().join("scripts/krew-manifest")).args(args).output().expect("bash runs the script")
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().expect("sha256sum (coreutils)");
    String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_string()
}

/// Checks a manifest's structure; returns its platforms as (os, arch, uri, sha256).
fn platforms(manifest: &Value) -> Vec<(String, String, String, String)> {
    assert_eq!(manifest["apiVersion"], "krew.googlecontainertools.github.com/v1alpha2");
    assert_eq!(manifest["kind"], "Plugin");
    let name = manifest["metadata"]["name"].as_str().unwrap();
    let binary = format!("kubectl-{name}");
    assert!(root().join(format!("src/bin/{binary}.rs")).exists(), "the plugin {name} is the binary {binary}");
    let text = |v: &Value| v.as_str().unwrap_or_else(|| panic!("a string: {v:?}")).to_string();
    let listed = manifest["spec"]["platforms"].as_sequence().expect("platforms");
    listed
        .iter()
        .map(|platform| {
            assert_eq!(text(&platform["bin"]), binary);
            let labels = &platform["selector"]["matchLabels"];
            let (os, arch) = (text(&labels["os"]), text(&labels["arch"]));
            let uri = text(&platform["uri"]);
            assert!(uri.starts_with("https://") && uri.ends_with(&format!("_{os}_{arch}.tar.gz")), "{uri}");
            (os, arch, uri, text(&platform["sha256"]))
        })
        .collect()
}

#[test]
fn the_template_lists_every_platform_with_a_placeholder_digest() {
    let listed = platforms(&parse(&root().join("deploy/krew/forklane.yaml")));
    let expected: BTreeSet<(String, String)> = PLATFORMS.iter().map(|(o, a)| (o.to_string(), a.to_string())).collect();
    assert_eq!(listed.iter().map(|(o, a, ..)| (o.clone(), a.clone())).collect::<BTreeSet<_>>(), expected);
    for (os, arch, _, sha) in listed {
        assert_eq!(sha, format!("SHA256_{os}_{arch}"), "the script fills it, nobody types it");
    }
}

#[test]
fn the_script_fills_the_version_and_each_archives_digest() {
    let dist = dist("all");
    for (os, arch) in PLATFORMS {
        std::fs::write(archive(&dist, os, arch), format!("{os}/{arch}")).unwrap();
    }
    let out = krew_manifest(&["--no-build", dist.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let manifest = parse(&dist.join("forklane.yaml"));
    assert_eq!(serde_yaml_ng::from_slice::<Value>(&out.stdout).unwrap(), manifest, "printed as written");
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(manifest["spec"]["version"], format!("v{version}"));
    let listed = platforms(&manifest);
    assert_eq!(listed.len(), 4);
    for (os, arch, uri, sha) in listed {
        assert!(uri.contains(&format!("/download/v{version}/")), "{uri}");
        assert_eq!(sha, sha256(&archive(&dist, &os, &arch)), "{os}/{arch}");
    }
    std::fs::remove_dir_all(dist).unwrap();
}

#[test]
fn a_platform_without_an_archive_fails_or_is_left_out_with_partial() {
    let dist = dist("partial");
    std::fs::write(archive(&dist, "linux", "amd64"), "linux/amd64").unwrap();
    let failed = krew_manifest(&["--no-build", dist.to_str().unwrap()]);
    assert!(!failed.status.success());
    let why = String::from_utf8_lossy(&failed.stderr);
    assert!(why.contains("darwin/arm64") && !why.contains("linux/amd64"), "{why}");

    let out = krew_manifest(&["--no-build", "--partial", dist.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed = platforms(&parse(&dist.join("forklane.yaml")));
    let only: Vec<(&str, &str)> = listed.iter().map(|(o, a, ..)| (o.as_str(), a.as_str())).collect();
    assert_eq!(only, [("linux", "amd64")]);
    assert_eq!(listed[0].3, sha256(&archive(&dist, "linux", "amd64")));
    std::fs::remove_dir_all(dist).unwrap();
}
