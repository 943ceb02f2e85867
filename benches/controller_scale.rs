//! The controller at scale: N canary experiments (Istio, `[setWeight 20, pause]`) over 4
//! namespaces on the sandbox, each with its own Service and two 1-replica Deployments. Measures
//! the time from the controller's start until every experiment is Paused at its first pause, then
//! counts the controller's API reads and writes and its reconciles in a steady-state window
//! (real seconds) in which every Experiment and every Deployment is touched. Prints a table; exits
//! non-zero when the steady state read or wrote anything, or the touches did not reconcile every
//! experiment, so the bench is also a check. The scenario is `tests/support/scale.rs`.
//!
//! `cargo bench --bench controller_scale [-- N]`, or `FORKLANE_SCALE_N=N`; default N = 100
//! (issue 13 raises it to 1,000). `FORKLANE_SCALE_WINDOW` sets the window in real seconds
//! (default 20), `FORKLANE_SCALE_TIMEOUT` the longest wait for pods, for the first pauses and for
//! each round of reconciles (default 300). `cargo bench` builds in release (long from cold on
//! this 2-core machine); `cargo bench --profile dev --bench controller_scale` runs the same in a
//! debug build (about a minute with N = 100).

#[path = "../tests/support/scale.rs"]
mod scale;

use std::process::ExitCode;
use std::time::Duration;

const DEFAULT_N: usize = 100;
const DEFAULT_WINDOW_SECS: u64 = 20;
const DEFAULT_TIMEOUT_SECS: u64 = 300;

fn number<T: std::str::FromStr>(text: &str, what: &str) -> T {
    text.parse().unwrap_or_else(|_| panic!("{what}: not a number: {text:?}"))
}

/// The process's peak resident set (`VmHWM`), in MiB.
fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    // `cargo bench` passes `--bench`; the first other argument is N.
    let arg = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let n = match (arg, std::env::var("FORKLANE_SCALE_N")) {
        (Some(a), _) => number(&a, "N"),
        (None, Ok(v)) => number(&v, "FORKLANE_SCALE_N"),
        (None, Err(_)) => DEFAULT_N,
    };
    let window =
        std::env::var("FORKLANE_SCALE_WINDOW").map_or(DEFAULT_WINDOW_SECS, |v| number(&v, "FORKLANE_SCALE_WINDOW"));
    let timeout =
        std::env::var("FORKLANE_SCALE_TIMEOUT").map_or(DEFAULT_TIMEOUT_SECS, |v| number(&v, "FORKLANE_SCALE_TIMEOUT"));
    let config = scale::Config {
        window: Duration::from_secs(window),
        timeout: Duration::from_secs(timeout),
        ..scale::Config::new(n)
    };
    let figures = scale::run(config).await;
    print!("{}", figures.table());
    // The controller's memory request and limit in deploy/deployment.yaml are sized from this: an
    // upper bound, since the process also holds the embedded cluster and the data plane.
    match peak_rss_mib() {
        Some(mib) => println!("| peak RSS, whole process (controller, embedded cluster, data plane) | {mib} MiB |"),
        None => eprintln!("peak RSS: /proc/self/status has no VmHWM"),
    }
    if figures.steady() {
        return ExitCode::SUCCESS;
    }
    for p in figures.problems() {
        eprintln!("FAIL: {p}");
    }
    ExitCode::FAILURE
}
