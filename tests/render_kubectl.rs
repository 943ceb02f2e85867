//! `forklane render … | kubectl apply -f -` with real kubectl against the embedded cluster with
//! Istio's CRDs: header values YAML 1.1 reads as booleans, null or numbers must arrive as the
//! strings they are. kubectl 1.37 on PATH (scripts/install-kubectl).

use crate::support;

use std::process::{Command, Stdio};

use forklane_core::api::MeshMode;
use forklane_core::fixtures::ExperimentBuilder;
use forklane_sim::sandbox::Sandbox;
use serde_json::Value;
use support::kubectl::Kubectl;
use tokio::io::AsyncWriteExt;

const VALUES: &[&str] =
    &["yes", "no", "on", "off", "y", "n", "true", "false", "~", "null", "0x1F", "1e3", "012", "1:30", "2001-12-14"];

fn experiment() -> String {
    let tricky = ExperimentBuilder::ab_test("tricky").port(80).mesh(MeshMode::Istio).split([("v1", 50), ("v2", 50)]);
    let rules = VALUES.iter().enumerate();
    rules.fold(tricky, |exp, (i, v)| exp.header_rule(&format!("r{i}"), &format!("x-h{i}"), v, "v2")).yaml()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendered_header_values_reach_the_cluster_as_strings() {
    let sandbox = Sandbox::start(true, 1.0, false).await.unwrap();
    let dir = std::env::temp_dir().join(format!("forklane-render-kubectl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tricky.yaml");
    std::fs::write(&file, experiment()).unwrap();
    let rendered = Command::new(env!("CARGO_BIN_EXE_forklane")).arg("render").arg("-f").arg(&file).output().unwrap();
    assert!(rendered.status.success(), "{}", String::from_utf8_lossy(&rendered.stderr));

    let k = Kubectl::new(&sandbox.cluster, &dir);
    let mut apply = k.command(&["apply", "-f", "-"]);
    let mut child = apply.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&rendered.stdout).await.unwrap();
    drop(stdin); // end of input
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success(), "kubectl apply: {}", String::from_utf8_lossy(&out.stderr));

    let vs: Value =
        serde_json::from_str(&k.ok(&["get", "virtualservice", "tricky-forklane", "-o", "json"]).await).unwrap();
    for (i, v) in VALUES.iter().enumerate() {
        let header = format!("x-h{i}");
        let found = vs["spec"]["http"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|route| route["match"].as_array().cloned().unwrap_or_default())
            .find_map(|m| m["headers"].get(&header).cloned());
        assert_eq!(found.map(|h| h["exact"].clone()), Some(Value::String(v.to_string())), "{header}");
    }
    sandbox.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
