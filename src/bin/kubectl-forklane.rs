//! `kubectl forklane …`: kubectl finds this plugin on PATH and passes the rest of the line.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    forklane::cli::main().await
}
