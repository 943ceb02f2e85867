//! The controller at scale as it ships: `forklane run` as a child process against the embedded
//! cluster of this process, N canary experiments (Istio, `[setWeight 20, pause]`) over 4
//! namespaces, two 1-replica Deployments each. Prints the time until every first step is applied,
//! spec edit → VirtualService latency (p50, p99), requests per idle experiment per minute, the
//! controller's RSS and CPU when idle and this process's (the embedded server, its simulator and
//! the bench's own client), then the README's row. Exits non-zero when the idle or the touch
//! window read or wrote anything (lease renewals apart), or the touches did not reconcile every
//! experiment, so the bench is also a check. The scenario is `tests/support/scale_process.rs`.
//!
//! `cargo bench --bench controller_scale [-- N] [-- forklane run flags]`, or `FORKLANE_SCALE_N=N`;
//! default N = 1,000. The arguments after N go to `forklane run` (`-- 1000 --kube-qps 200`). `FORKLANE_SCALE_WINDOW` sets the idle window in
//! real seconds (default 20), `FORKLANE_SCALE_EDITS` the spec edits (default 50),
//! `FORKLANE_SCALE_SPEED` the cluster's clock (simulated seconds per real second, default 1;
//! the workload simulator's probes cost CPU in proportion), `FORKLANE_SCALE_TIMEOUT` the longest wait for pods, for the first steps, for each round of
//! reconciles and for each edit (default 300). `cargo bench` builds in release.

#[path = "../tests/support/forklane_run.rs"]
#[allow(dead_code)]
mod forklane_run;
#[path = "../tests/support/scale.rs"]
#[allow(dead_code)]
mod scale;
#[path = "../tests/support/scale_process.rs"]
#[allow(dead_code)]
mod scale_process;

use std::process::ExitCode;
use std::time::Duration;

const DEFAULT_N: usize = 1000;
const DEFAULT_WINDOW_SECS: u64 = 20;
const DEFAULT_EDITS: usize = 50;
const DEFAULT_TIMEOUT_SECS: u64 = 300;
/// The cluster on the real clock, as `forklane run` is: what a real cluster's kubelets cost.
const DEFAULT_SPEED: f64 = 1.0;

fn number<T: std::str::FromStr>(text: &str, what: &str) -> T {
    text.parse().unwrap_or_else(|_| panic!("{what}: not a number: {text:?}"))
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).map_or(default, |v| number(&v, name))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    // `cargo bench` passes `--bench`; N comes first when given, the rest is `forklane run`'s.
    let mut args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let n = match args.first() {
        Some(a) if !a.starts_with('-') => number(&args.remove(0), "N"),
        _ => env_or("FORKLANE_SCALE_N", DEFAULT_N),
    };
    let settings = scale_process::Settings {
        config: scale::Config {
            window: Duration::from_secs(env_or("FORKLANE_SCALE_WINDOW", DEFAULT_WINDOW_SECS)),
            timeout: Duration::from_secs(env_or("FORKLANE_SCALE_TIMEOUT", DEFAULT_TIMEOUT_SECS)),
            speed: env_or("FORKLANE_SCALE_SPEED", DEFAULT_SPEED),
            ..scale::Config::new(n)
        },
        edits: env_or("FORKLANE_SCALE_EDITS", DEFAULT_EDITS),
        args,
        propagation_delay: None,
    };
    let figures = scale_process::run(settings).await;
    print!("{}", figures.table());
    let problems = figures.problems();
    if problems.is_empty() {
        return ExitCode::SUCCESS;
    }
    for p in problems {
        eprintln!("FAIL: {p}");
    }
    ExitCode::FAILURE
}
