//! `forklane get` and `forklane list`, the real binaries, against the sandbox's API server with a
//! kubeconfig, on an A/B test that has analysed: the tree shows the arms' pods and weights, the
//! metrics and the events; `-o json` agrees; `kubectl forklane get` (kubectl's plugin mechanism)
//! prints the same; `--watch` prints again on changes; a missing experiment is a clear error.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use forklane_core::api::{Builtin, Experiment, MetricKind};
use forklane_core::fixtures::{self, ExperimentBuilder, analysis, guardrail};
use serde_json::Value;
use support::e2e::*;

/// Longest a single command may take.
const COMMAND: Duration = Duration::from_secs(30);

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("forklane-get-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn run(program: &Path, args: &[&str], envs: &[(&str, &std::ffi::OsStr)]) -> Output {
    let mut command = tokio::process::Command::new(program);
    command.args(args).env("NO_COLOR", "1").kill_on_drop(true);
    for (k, v) in envs {
        command.env(k, v);
    }
    tokio::time::timeout(COMMAND, command.output()).await.expect("the command ends in time").expect("it runs")
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// Ages (`5s`, `3m`) change between two runs a second apart: they are compared as `AGE`.
fn without_ages(text: &str) -> String {
    regex::Regex::new(r"\b\d+[smhd]\b").unwrap().replace_all(text, "AGE").into_owned()
}

fn analysed(exp: &Experiment) -> bool {
    exp.status.as_ref().is_some_and(|s| s.history.iter().any(|l| !l.metrics.is_empty()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_and_list_show_an_analysed_experiment_through_forklane_and_kubectl() {
    tokio::time::timeout(Duration::from_secs(180), scenario()).await.expect("the test ends within 3 minutes");
}

async fn scenario() {
    let kubectl = support::kubectl::kubectl_path();
    let mut env = Env::start(true, false).await;
    let same = [("sim.forklane.io/conversion-rate", "0.20")];
    two_versions(&env, 2, &same, &same).await;
    env.start_traffic(1500.0, 300);
    env.start_controller();
    let conversion = forklane_core::api::Metric { kind: Some(MetricKind::Proportion), ..fixtures::conversion() };
    let metrics = [conversion, guardrail("error-rate", Builtin::IstioErrorRate, 0.01)];
    let analysis = analysis(metrics).interval("1m").alpha(0.001).min_samples_per_arm(200).max_duration("10h").srm();
    env.apply_experiment(ExperimentBuilder::ab_test("ab").split([("v1", 50), ("v2", 50)]).analysis(analysis)).await;
    env.wait_for("ab", Duration::from_secs(90), analysed).await;

    let dir = scratch();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, env.cluster.kubeconfig_yaml()).unwrap();
    let forklane = Path::new(env!("CARGO_BIN_EXE_forklane"));
    let config = kubeconfig.to_str().unwrap();

    // While the controller analyses, --watch prints again at each status write, a separator between.
    let mut watch = tokio::process::Command::new(forklane)
        .args(["get", "ab", "--watch", "--kubeconfig", config])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(watch.try_wait().unwrap().is_none(), "--watch keeps running");
    watch.start_kill().unwrap();
    let watched = String::from_utf8(watch.wait_with_output().await.unwrap().stdout).unwrap();
    assert!(watched.matches("Name:      ab\n").count() >= 2, "printed again on a change:\n{watched}");
    assert!(watched.contains("\n---\nName:"), "piped, prints are separated:\n{watched}");
    assert!(!watched.contains('\x1b'), "piped output is plain");

    // Frozen from here: every read below sees the same status.
    env.stop_controller().await;
    let exp = env.experiments().get("ab").await.unwrap();
    let status = exp.status.clone().unwrap();

    let tree = stdout(&run(forklane, &["get", "ab", "-n", NS, "--kubeconfig", config], &[]).await);
    for expected in ["Name:      ab", "Strategy:  abTest", "Routing:   istio", "split and analyse: v1 50 / v2 50"] {
        assert!(tree.contains(expected), "{expected:?} missing from:\n{tree}");
    }
    let arm_line = |arm: &str| tree.lines().find(|l| l.trim_start().starts_with(&format!("{arm} "))).unwrap_or("");
    for arm in ["v1", "v2"] {
        let line = arm_line(arm);
        let deployment = format!("my-app-{arm}");
        assert!(line.contains(&deployment) && line.contains("2/2") && line.contains("50%"), "{arm}: {line:?}\n{tree}");
    }
    assert!(tree.contains("conversion  v2   goal"), "the goal metric:\n{tree}");
    assert!(tree.contains("guardrail (margin 0.01)"), "the guardrail:\n{tree}");
    assert!(tree.contains("SRM: p = "), "the SRM check:\n{tree}");
    assert!(tree.contains("Analysing") && tree.contains("analysis started"), "the events:\n{tree}");

    let json: Value =
        serde_json::from_str(&stdout(&run(forklane, &["get", "ab", "-o", "json", "--kubeconfig", config], &[]).await))
            .expect("-o json is JSON");
    assert_eq!(json["name"], "ab");
    assert_eq!(json["phase"], status.phase.map(|p| format!("{p:?}")).unwrap());
    for (i, arm) in ["v1", "v2"].iter().enumerate() {
        let a = &json["arms"][i];
        assert_eq!(
            (a["name"].as_str(), a["readyPods"].as_i64(), a["desiredWeight"].as_i64()),
            (Some(*arm), Some(2), Some(50))
        );
    }
    let latest = status.history.iter().rev().find(|l| l.outcome.is_some()).unwrap();
    assert_eq!(json["analysis"]["at"], latest.at.as_str(), "the latest look of the history");
    let metrics: Vec<&str> =
        json["analysis"]["metrics"].as_array().unwrap().iter().map(|m| m["metric"].as_str().unwrap()).collect();
    assert_eq!(metrics, ["conversion", "error-rate"]);
    assert!(json["events"].as_array().unwrap().iter().any(|e| e["reason"] == "Analysing"));

    // kubectl finds kubectl-forklane on PATH and passes it the rest of the line.
    let plugin_dir = Path::new(env!("CARGO_BIN_EXE_kubectl-forklane")).parent().unwrap();
    let path = std::env::join_paths(
        std::iter::once(plugin_dir.to_path_buf()).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap();
    let via_kubectl = stdout(
        &run(
            Path::new(&kubectl),
            &["forklane", "get", "ab"],
            &[("PATH", &path), ("KUBECONFIG", kubeconfig.as_os_str())],
        )
        .await,
    );
    assert_eq!(without_ages(&via_kubectl), without_ages(&tree), "kubectl forklane get prints what forklane get does");

    let list = stdout(&run(forklane, &["list", "--kubeconfig", config], &[]).await);
    let line = list.lines().find(|l| l.starts_with("ab ")).unwrap_or_else(|| panic!("ab missing:\n{list}"));
    assert!(line.contains("abTest") && line.contains("v1=50,v2=50"), "{line}");
    let all = stdout(&run(forklane, &["list", "-A", "--kubeconfig", config], &[]).await);
    assert!(all.starts_with("NAMESPACE") && all.contains("default    ab "), "{all}");

    let missing = run(forklane, &["get", "nope", "-n", NS, "--kubeconfig", config], &[]).await;
    assert!(!missing.status.success());
    assert_eq!(String::from_utf8_lossy(&missing.stderr), "Experiment default/nope not found\n");

    let _ = std::fs::remove_dir_all(&dir);
    env.shutdown().await;
}
