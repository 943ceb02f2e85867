//! Real kubectl 1.37 against a cluster running the workload simulator (fast clock): the
//! article's rolling update with `rollout status | pause | resume | history | undo`, using
//! the manifests in tests/fixtures/seed. kubectl must be on PATH (scripts/install-kubectl).

use crate::support;
use support::kubectl::kubectl_path;

use forklane_core::clock::Clock;
use forklane_sim::cluster::{Cluster, ClusterConfig};
use std::path::PathBuf;
use std::time::Duration;

/// 40 simulated seconds per real second: the 10-replica rollout with a 15 s readiness delay
/// takes about 4 s.
const SPEED: f64 = 40.0;

async fn cluster() -> Cluster {
    Cluster::start(ClusterConfig { clock: Clock::scaled(SPEED), workloads: true, ..Default::default() })
        .await
        .expect("cluster starts")
}

struct Kubectl {
    dir: PathBuf,
    bin: String,
}

impl Kubectl {
    fn new(c: &Cluster) -> Self {
        let dir = std::env::temp_dir().join(format!("forklane-wl-kubectl-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("kubeconfig"), c.kubeconfig_yaml()).unwrap();
        Kubectl { dir, bin: kubectl_path() }
    }

    /// Runs kubectl from tests/fixtures/seed and requires success; returns stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let seed = std::path::Path::new(file!()).parent().unwrap().join("fixtures/seed");
        let out = tokio::process::Command::new(&self.bin)
            .args(args)
            .arg("--cache-dir")
            .arg(self.dir.join("cache"))
            .env("KUBECONFIG", self.dir.join("kubeconfig"))
            .current_dir(seed)
            .kill_on_drop(true)
            .output()
            .await
            .expect("kubectl runs");
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "kubectl {args:?} failed:\n{stdout}\n{stderr}");
        stdout
    }

    async fn replica_set_sizes(&self) -> String {
        self.ok(&[
            "get",
            "rs",
            "-l",
            "app=my-app",
            "-o",
            "jsonpath={range .items[*]}{.metadata.labels.version}={.spec.replicas} {end}",
        ])
        .await
    }
}

impl Drop for Kubectl {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_status_pause_resume_history_undo() {
    let c = cluster().await;
    let k = Kubectl::new(&c);
    k.ok(&["apply", "-f", "app-v1.yaml"]).await;
    let out = k.ok(&["rollout", "status", "deploy/my-app", "--timeout=60s"]).await;
    assert!(out.contains("deployment \"my-app\" successfully rolled out"), "{out}");

    k.ok(&["apply", "-f", "app-v2-rolling-update.yaml"]).await;
    k.ok(&["rollout", "pause", "deploy/my-app"]).await;
    // Paused mid-way: the ReplicaSets keep their sizes while simulated minutes pass.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let frozen = k.replica_set_sizes().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(k.replica_set_sizes().await, frozen, "nothing moves while paused");
    let reason = k
        .ok(&["get", "deploy", "my-app", "-o", "jsonpath={.status.conditions[?(@.type==\"Progressing\")].reason}"])
        .await;
    assert_eq!(reason, "DeploymentPaused");

    k.ok(&["rollout", "resume", "deploy/my-app"]).await;
    let out = k.ok(&["rollout", "status", "deploy/my-app", "--timeout=120s"]).await;
    assert!(out.contains("successfully rolled out"), "{out}");
    assert!(k.replica_set_sizes().await.contains("v2.0.0=10"));
    let table = k.ok(&["get", "deploy", "my-app"]).await;
    assert!(table.lines().nth(1).unwrap().split_whitespace().nth(1) == Some("10/10"), "{table}");

    let history = k.ok(&["rollout", "history", "deploy/my-app"]).await;
    let revisions: Vec<&str> = history.lines().skip(2).filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(revisions, ["1", "2"], "{history}");

    let out = k.ok(&["rollout", "undo", "deploy/my-app"]).await;
    assert!(out.contains("rolled back"), "{out}");
    let out = k.ok(&["rollout", "status", "deploy/my-app", "--timeout=120s"]).await;
    assert!(out.contains("successfully rolled out"), "{out}");
    let sizes = k.replica_set_sizes().await;
    assert!(sizes.contains("v1.0.0=10") && sizes.contains("v2.0.0=0"), "{sizes}");
    let history = k.ok(&["rollout", "history", "deploy/my-app"]).await;
    let revisions: Vec<&str> = history.lines().skip(2).filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(revisions, ["2", "3"], "revision 1 became 3: {history}");
    c.shutdown().await;
}
