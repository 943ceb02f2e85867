//! `forklane traffic`: synthetic users against a NodePort, with per-version counts.

use std::process::ExitCode;
use std::time::Duration;

use forklane_sim::traffic::http::HttpTarget;
use forklane_sim::traffic::loadgen::{self, Limit, LoadSpec, Population};

#[derive(Debug, clap::Args)]
pub(crate) struct TrafficArgs {
    /// The Service's URL, e.g. http://127.0.0.1:32532/
    #[arg(long)]
    pub url: String,
    /// Requests per second.
    #[arg(long, default_value_t = 10.0)]
    pub rps: f64,
    /// Distinct users (each with an id, user agent, region and cookie jar).
    #[arg(long, default_value_t = 100)]
    pub users: usize,
    /// Share of users with a mobile user agent, 0 to 1.
    #[arg(long, default_value_t = 0.0)]
    pub mobile_share: f64,
    /// Regions given to users uniformly, e.g. eu-west-1,us-east-1.
    #[arg(long, value_delimiter = ',')]
    pub regions: Vec<String>,
    /// The header that carries the region.
    #[arg(long, default_value = forklane_core::api::defaults::REGION_HEADER)]
    pub region_header: String,
    /// How long to run, e.g. 10s, 2m.
    #[arg(long, value_parser = forklane_core::api::duration::parse, conflicts_with = "requests")]
    pub duration: Option<Duration>,
    /// How many requests to send.
    #[arg(long)]
    pub requests: Option<u64>,
    /// Seeds the users' attributes and choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

pub(crate) async fn run(args: TrafficArgs) -> ExitCode {
    let problems = [
        (!(args.rps.is_finite() && args.rps > 0.0)).then(|| format!("--rps {} must be a positive number", args.rps)),
        (args.users == 0).then(|| "--users 0: at least one user is needed".to_string()),
        (!(0.0..=1.0).contains(&args.mobile_share))
            .then(|| format!("--mobile-share {} must be between 0 and 1", args.mobile_share)),
    ];
    let problems: Vec<String> = problems.into_iter().flatten().collect();
    if !problems.is_empty() {
        problems.iter().for_each(|p| eprintln!("error: {p}"));
        return ExitCode::FAILURE;
    }
    let target = match HttpTarget::parse(&args.url).await {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: --url {e}");
            return ExitCode::FAILURE;
        }
    };
    let limit = match (args.requests, args.duration) {
        (Some(n), _) => Limit::Requests(n),
        (None, Some(d)) => Limit::Duration(d),
        (None, None) => Limit::Duration(Duration::from_secs(10)),
    };
    let spec = LoadSpec {
        users: args.users,
        mobile_share: args.mobile_share,
        regions: args.regions,
        region_header: args.region_header.to_ascii_lowercase(),
        path: target.path.clone(),
        seed: args.seed,
        visits: None,
    };
    let report = loadgen::run_http(&target, Population::new(&spec), args.rps, limit).await;
    print!("{report}");
    ExitCode::SUCCESS
}
