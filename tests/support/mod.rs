//! The one helper root of the integration tests (`tests/main.rs` declares it; each test module
//! imports it with `use crate::support;`).

pub mod browser;
pub mod cluster;
pub mod e2e;
pub mod forklane_run;
pub mod istio_schema;
pub mod kubectl;
pub mod prometheus;
pub mod prometheus_faults;
pub mod refusing;
pub mod scale;
pub mod scale_process;
pub mod snapshot;

/// The README reliability table's rows of the leadership faults (`tests/controller_fencing.rs`)
/// and of the crowd (`tests/controller_crowd.rs`), which `controller_faults` checks with its own.
pub const CROWD: &str = "40 stuck and 40 failing experiments beside 20 healthy canaries";
pub const LEASE_RENEWALS_FAIL: &str = "the leader's lease renewals fail while its other writes pass";
pub const LEADER_FROZEN: &str = "the leader frozen (SIGSTOP) past its 3 s lease, then thawed (two processes)";

/// The data rows of the README's reliability table (between its `<!-- reliability -->` markers).
pub fn reliability_rows() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let table = readme.split("<!-- reliability -->").nth(1).expect("the README has the reliability table");
    let table = table.split("<!-- /reliability -->").next().unwrap();
    let rows = table.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| fault") && !l.starts_with("| ---"));
    rows.map(String::from).collect()
}

/// The example files (`examples/*.yaml`), sorted.
pub fn examples() -> Vec<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 6, "one example per strategy plus A/B/n");
    files
}

/// The Experiments of the example files, each with its file's stem (`canary`, `ab-test`), in
/// file order (policies in the same files are left out).
pub fn example_experiments() -> Vec<(String, forklane_core::api::Experiment)> {
    use forklane_core::api::load::{Document, load_documents};
    examples()
        .into_iter()
        .flat_map(|path| {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let docs = load_documents(&std::fs::read_to_string(&path).unwrap()).unwrap();
            docs.into_iter().filter_map(move |d| match d {
                Document::Experiment(e) => Some((name.clone(), *e)),
                Document::RolloutPolicy(_) => None,
            })
        })
        .collect()
}
