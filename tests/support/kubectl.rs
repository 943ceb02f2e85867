//! Real kubectl (from PATH, see `kubectl_path`) against an in-process `Cluster`, with its own
//! kubeconfig and discovery cache in a scratch directory.

use forklane_sim::cluster::Cluster;
use serde_json::Value;
use std::path::{Path, PathBuf};

pub struct Kubectl {
    dir: PathBuf,
    cwd: PathBuf,
    bin: String,
}

pub struct Out {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Kubectl {
    /// kubectl for `c`, run in `cwd` (relative manifest paths resolve there).
    pub fn new(c: &Cluster, cwd: &Path) -> Self {
        let dir = std::env::temp_dir().join(format!("forklane-kubectl-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("kubeconfig"), c.kubeconfig_yaml()).unwrap();
        Kubectl { dir, cwd: cwd.to_path_buf(), bin: kubectl_path() }
    }

    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.args(args)
            .arg("--cache-dir")
            .arg(self.dir.join("cache"))
            .env("KUBECONFIG", self.dir.join("kubeconfig"))
            .current_dir(&self.cwd)
            .kill_on_drop(true);
        cmd
    }

    pub async fn run(&self, args: &[&str]) -> Out {
        let out = self.command(args).output().await.expect("kubectl runs");
        Out {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into(),
            stderr: String::from_utf8_lossy(&out.stderr).into(),
        }
    }

    /// Runs and requires success; returns stdout.
    pub async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(out.ok, "kubectl {args:?} failed:\n{}\n{}", out.stdout, out.stderr);
        assert!(!out.stderr.contains("WARNING: version difference"), "skew warning: {}", out.stderr);
        out.stdout
    }

    /// Writes a file into the scratch directory and returns its path.
    pub fn file(&self, name: &str, contents: &str) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, contents).unwrap();
        p.to_string_lossy().into()
    }
}

impl Drop for Kubectl {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The first line of a table, split into column names.
pub fn header(table: &str) -> Vec<String> {
    table.lines().next().unwrap_or_default().split_whitespace().map(String::from).collect()
}

/// kubectl from PATH, installed by scripts/install-kubectl. Missing kubectl fails the test.
pub fn kubectl_path() -> String {
    let out = std::process::Command::new("kubectl").args(["version", "--client", "-o", "json"]).output();
    match out {
        Ok(o) if o.status.success() => {
            let v: Value = serde_json::from_slice(&o.stdout).expect("kubectl version json");
            let minor = v["clientVersion"]["minor"].as_str().unwrap_or_default().trim_end_matches('+').to_string();
            assert_eq!(minor, "37", "kubectl on PATH is not 1.37; run scripts/install-kubectl");
            "kubectl".into()
        }
        _ => {
            panic!("kubectl 1.37 is required on PATH (CI={:?}); run scripts/install-kubectl", std::env::var("CI").ok())
        }
    }
}
