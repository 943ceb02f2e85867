//! `forklane run` as a child process against the embedded cluster, as the process tests and the
//! scale bench start it: named by `POD_NAME` (its lease holder identity and User-Agent), quiet
//! unless `FORKLANE_TEST_RUST_LOG` says otherwise, killed when dropped.

use std::path::Path;
use std::time::Duration;

pub struct ForklaneRun {
    pub child: tokio::process::Child,
    pub pid: u32,
    pub identity: String,
    /// Its User-Agent, as the request audit records it.
    pub agent: String,
}

impl ForklaneRun {
    /// `forklane run --kubeconfig KUBECONFIG --metrics-addr METRICS ARGS…` as `identity`.
    pub fn start(kubeconfig: &Path, identity: &str, metrics: &str, args: &[String]) -> ForklaneRun {
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_forklane"))
            .args(["run", "--metrics-addr", metrics])
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args)
            .env("POD_NAME", identity)
            // Its logs on this process's stderr with `FORKLANE_TEST_RUST_LOG=info`, say.
            .env("RUST_LOG", std::env::var("FORKLANE_TEST_RUST_LOG").unwrap_or_else(|_| "off".into()))
            .kill_on_drop(true)
            .spawn()
            .expect("forklane runs");
        let pid = child.id().expect("running");
        let agent = format!("forklane/{} ({identity})", env!("CARGO_PKG_VERSION"));
        ForklaneRun { child, pid, identity: identity.into(), agent }
    }

    /// Sends `signal` (`-STOP`, `-KILL`, …) with kill(1).
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill").args([signal, &self.pid.to_string()]).status();
        assert!(status.expect("kill runs").success(), "kill {signal} {}", self.pid);
    }

    /// Sends `signal` and waits (at most `within`) for the process to exit; kills it otherwise.
    pub async fn stop(&mut self, signal: &str, within: Duration) -> bool {
        self.signal(signal);
        let exited = tokio::time::timeout(within, self.child.wait()).await.is_ok();
        if !exited {
            let _ = self.child.kill().await;
        }
        exited
    }
}
