//! The one helper root of the integration tests. Each test binary declares it once,
//! `#[allow(dead_code)] mod support;`, and imports only the helpers it uses.

pub mod cluster;
pub mod e2e;
pub mod istio_schema;
pub mod kubectl;
pub mod prometheus;
pub mod refusing;
pub mod scale;
pub mod snapshot;

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
