//! A steady-state reconcile makes no API call: five canary experiments reach their pause, then
//! every Experiment and every Deployment is touched (changes the controller reconciles on but that
//! change no plan); the controller's own requests, counted by the cluster's audit, include no read
//! and no write while at least one reconcile per experiment and round runs. The same scenario at
//! scale, with `forklane run` as a child process, is `cargo bench --bench controller_scale`
//! (`tests/support/scale_process.rs`).

use crate::support;

use std::time::Duration;

use support::scale::{Config, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steady_state_reconcile_makes_no_api_read_and_no_write() {
    forklane::cli::run::init_logging(false);
    let config =
        Config { namespaces: 2, window: Duration::from_secs(3), timeout: Duration::from_secs(60), ..Config::new(5) };
    let figures =
        tokio::time::timeout(Duration::from_secs(180), run(config)).await.expect("the run ends within 3 minutes");
    println!("{}", figures.table());
    assert!(figures.ramp.writes > 0, "the controller was seen writing on the way to the pauses");
    assert!(figures.steady(), "{:?}\n{}", figures.problems(), figures.table());
}
