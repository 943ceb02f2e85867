//! The product library links nothing of the simulator: `cargo tree` of forklane-core, resolved for
//! that crate alone (as a user of the library would build it), has no embedded-server crates, no
//! HTTP server features and no CEL evaluator.

use std::process::Command;

/// `cargo tree` of forklane-core with one line per package and feature, no indentation.
fn tree(edges: &str, extra: &[&str]) -> String {
    let out = Command::new(env!("CARGO"))
        .args(["tree", "--locked", "--offline", "-p", "forklane-core", "--prefix", "none", "-e", edges])
        .args(extra)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    assert!(out.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("cargo tree prints UTF-8")
}

fn packages(text: &str) -> Vec<&str> {
    text.lines().filter_map(|l| l.split_whitespace().next()).collect()
}

#[test]
fn product_library_has_no_simulator_dependencies() {
    let normal = tree("normal", &[]);
    assert!(packages(&normal).contains(&"kube"), "the tree is read correctly:\n{normal}");
    for banned in ["forklane-sim", "rcgen", "imbl", "axum"] {
        assert!(!packages(&normal).contains(&banned), "forklane-core depends on {banned}:\n{normal}");
    }
}

#[test]
fn product_library_enables_no_server_or_cel_feature() {
    let features = tree("features,normal", &[]);
    assert!(features.contains("hyper feature \"client\""), "the feature tree is read correctly");
    for banned in [
        "hyper feature \"server\"",
        "hyper-util feature \"server\"",
        "hyper-util feature \"server-auto\"",
        "kube feature \"cel\"",
        "kube-core feature \"cel\"",
    ] {
        assert!(!features.contains(banned), "forklane-core enables {banned}");
    }
}

/// tokio-rustls is in the graph only because the HTTPS clients of the chosen dependencies use it
/// (kube's hyper-rustls, prometheus-http-query's reqwest); the library never terminates TLS.
#[test]
fn tokio_rustls_comes_only_with_the_kubernetes_tls_client() {
    let dependents = tree("normal", &["--invert", "tokio-rustls", "--depth", "1"]);
    let direct: Vec<&str> = packages(&dependents).into_iter().filter(|p| *p != "tokio-rustls").collect();
    assert!(!direct.is_empty(), "the inverted tree is read correctly:\n{dependents}");
    for user in direct {
        assert!(["hyper-rustls", "reqwest"].contains(&user), "{user} uses tokio-rustls:\n{dependents}");
    }
}
