//! `forklane stats study`: the seeded study of the decisions on simulated real traffic (see
//! `forklane_sim::study`). The README's statistics section is its markdown output.

use std::process::ExitCode;

use forklane_sim::study::{self, Options};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum Format {
    Markdown,
    Json,
}

#[derive(Debug, clap::Args)]
pub(crate) struct StudyArgs {
    /// Experiments per scenario; a smaller number runs a prefix of the same experiments.
    #[arg(long, default_value_t = 1000)]
    pub experiments: usize,
    /// Only the scenarios whose name contains this.
    #[arg(long)]
    pub scenario: Option<String>,
    #[arg(long, value_enum, default_value = "markdown")]
    pub format: Format,
}

pub(crate) fn run(args: &StudyArgs) -> ExitCode {
    if args.experiments == 0 {
        eprintln!("--experiments 0: at least one experiment per scenario is needed");
        return ExitCode::from(2);
    }
    let options = Options { experiments: args.experiments, scenario: args.scenario.clone(), ..Options::default() };
    let report = match study::run(&options) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match args.format {
        Format::Markdown => print!("{}", report.markdown()),
        Format::Json => match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("cannot print the report: {e}");
                return ExitCode::FAILURE;
            }
        },
    }
    ExitCode::SUCCESS
}
