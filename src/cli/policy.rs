//! `forklane policy compile FILE`: the ValidatingAdmissionPolicy and binding each RolloutPolicy
//! compiles to, for clusters where Forklane's controller may not create them itself.

use std::path::PathBuf;
use std::process::ExitCode;

use forklane_core::api::load::Document;
use forklane_core::policy::admission;

use super::yaml::to_yaml;
use super::{display_name, read_documents};

#[derive(clap::Subcommand)]
pub(crate) enum PolicyCommand {
    /// Print the admission objects of every RolloutPolicy in FILE (multi-document YAML).
    Compile {
        /// File of RolloutPolicies.
        file: PathBuf,
    },
}

/// The YAML of every policy's admission objects, or every problem of every policy.
pub fn compile(file: &std::path::Path) -> Result<String, Vec<String>> {
    let documents = read_documents(file)?;
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for doc in documents {
        match doc {
            Document::RolloutPolicy(policy) => match admission::compile(&policy) {
                Ok(compiled) => {
                    let vap = serde_json::to_value(compiled.admission_policy()).expect("serialises");
                    let binding = serde_json::to_value(compiled.admission_binding(&policy)).expect("serialises");
                    out.push(to_yaml(&vap));
                    out.push(to_yaml(&binding));
                }
                Err(problems) => errors
                    .extend(problems.iter().map(|p| format!("RolloutPolicy {}: {p}", display_name(&policy.metadata)))),
            },
            Document::Experiment(e) => errors.push(format!(
                "{}: {} is an Experiment, not a RolloutPolicy",
                file.display(),
                display_name(&e.metadata)
            )),
        }
    }
    if errors.is_empty() { Ok(out.join("---\n")) } else { Err(errors) }
}

pub(crate) fn run(command: PolicyCommand) -> ExitCode {
    match command {
        PolicyCommand::Compile { file } => match compile(&file) {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(errors) => {
                errors.iter().for_each(|e| eprintln!("{e}"));
                ExitCode::FAILURE
            }
        },
    }
}
