use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    forklane::cli::main().await
}
