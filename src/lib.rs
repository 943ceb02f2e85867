//! The `forklane` command line, shared by the `forklane` and `kubectl-forklane` binaries.

pub mod cli;
pub mod view;
