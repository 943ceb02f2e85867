//! A real Prometheus (Debian package, installed by scripts/install-prometheus) for tests: scrapes
//! one target every second; killed and cleaned up when dropped, also when the test fails.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

pub struct Prometheus {
    child: Child,
    pub dir: PathBuf,
    pub url: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Fails (never skips) when the binary is missing.
pub fn require_installed() {
    let found = Command::new("prometheus").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(found, "prometheus is not installed: run scripts/install-prometheus (scripts/test does)");
}

/// Starts Prometheus on a free loopback port, scraping `target` every second.
pub fn start(target: std::net::SocketAddr) -> Prometheus {
    require_installed();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let dir = std::env::temp_dir().join(format!("forklane-prometheus-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = format!(
        "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
         scrape_configs:\n  - job_name: forklane\n    static_configs: [{{targets: ['{target}']}}]\n"
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
        .spawn()
        .expect("prometheus starts");
    Prometheus { child, dir, url: format!("http://127.0.0.1:{port}") }
}
