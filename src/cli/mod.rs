//! The `forklane` command line: one module per subcommand.

pub mod render;
pub mod stats;
pub mod validate;

use std::path::Path;

use crate::api::load::{Document, load_documents};

/// Reads and parses a file of Forklane objects; the errors are ready to print.
pub fn read_documents(path: &Path) -> Result<Vec<Document>, Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| vec![format!("{}: {e}", path.display())])?;
    load_documents(&text).map_err(|errors| errors.iter().map(|e| format!("{}: {e}", path.display())).collect())
}

/// `namespace/name` of an object, for messages.
pub fn display_name(meta: &kube::api::ObjectMeta) -> String {
    let name = meta.name.as_deref().unwrap_or("<unnamed>");
    match &meta.namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}
