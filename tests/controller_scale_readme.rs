//! The README's controller-scale table is what `cargo bench --bench controller_scale` prints: the
//! same scenario (`forklane run` as a child process, `tests/support/scale_process.rs`) runs here
//! with 5 experiments in a debug build (a 1 s propagation delay instead of 8 s), its steady state reads and writes nothing, and its README
//! row, like every row of the README's table, is in the format the bench prints, under the
//! bench's header, with rows for N = 100 and 1,000 and any larger N in order. The figures
//! themselves need a release build and minutes; this checks that they can be read as the bench's.

use crate::support;

use std::time::Duration;

use support::scale::Config;
use support::scale_process::{README_HEADER, ReadmeRow, Settings, readme_table, run};

#[test]
fn the_readme_table_has_the_bench_header_and_rows_in_its_format() {
    let (header, rows) = readme_table();
    assert_eq!(header, README_HEADER, "the README's controller-scale header is the bench's");
    let sizes: Vec<usize> = rows
        .iter()
        .map(|r| ReadmeRow::parse(r).unwrap_or_else(|e| panic!("README row {r:?} is not the bench's: {e}")).experiments)
        .collect();
    assert!(sizes.starts_with(&[100, 1000]), "rows for N = 100 and 1,000 first: {sizes:?}");
    assert!(sizes.windows(2).all(|w| w[0] < w[1]), "the rows in order of N: {sizes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_process_scenario_prints_a_readme_row_and_stays_quiet_when_idle() {
    forklane::cli::run::init_logging(false);
    let config =
        Config { namespaces: 2, window: Duration::from_secs(3), timeout: Duration::from_secs(60), ..Config::new(5) };
    let settings = Settings { config, edits: 10, args: Vec::new(), propagation_delay: Some("1s".parse().unwrap()) };
    let figures =
        tokio::time::timeout(Duration::from_secs(120), run(settings)).await.expect("the run ends within 2 minutes");
    println!("{}", figures.table());
    assert!(figures.problems().is_empty(), "{:?}\n{}", figures.problems(), figures.table());
    assert!(figures.ramp.writes > 0, "the process was seen writing on the way to the first steps");
    assert_eq!(figures.edits.len(), 10);
    assert!(
        figures.controller.rss_mib > 0 && figures.server.rss_mib > 0,
        "{:?} {:?}",
        figures.controller,
        figures.server
    );
    let line = figures.readme_row().format();
    let row = ReadmeRow::parse(&line).unwrap_or_else(|e| panic!("the bench's row {line:?} does not read back: {e}"));
    assert_eq!(row.experiments, 5);
}
