//! The report and the dashboard in a real browser (headless Chromium, tests/support/browser.rs):
//! an A/B test runs to its decision on the sandbox cluster, `forklane report` writes its page, and
//! Chromium loads it without a console message and with every plot drawn. The harness itself is
//! checked first: a page that logs an error is reported. Screenshots are kept under
//! `<target>/browser-artifacts/`.

use crate::support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use forklane_core::api::{Builtin, Experiment, Metric, MetricKind, Phase};
use forklane_core::fixtures::{self, analysis, guardrail};
use support::browser::{self, count, effect_figures, figure};
use support::e2e::*;
use support::forklane_run::ForklaneRun;

const ENDED: &[Phase] = &[Phase::Succeeded, Phase::RolledBack, Phase::Failed];

/// The sandbox runs share two cores: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("forklane-{name}-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_harness_reports_console_errors_and_returns_the_dom_after_scripts() {
    let dir = scratch("console");
    let page = dir.join("page.html");
    std::fs::write(
        &page,
        "<!DOCTYPE html><html><body><p id=\"x\">before</p><script>\
         console.error('deliberate failure');\
         document.getElementById('x').textContent = 'after';\
         notDefined();</script></body></html>",
    )
    .unwrap();
    let loaded =
        browser::load(&format!("file://{}", page.display()), "harness-console", Duration::from_secs(2), 300).await;
    assert!(loaded.dom.contains("<p id=\"x\">after</p>"), "{}", loaded.dom);
    assert!(loaded.console.iter().any(|m| m.contains("deliberate failure")), "{:?}", loaded.console);
    assert!(loaded.console.iter().any(|m| m.contains("Uncaught ReferenceError: notDefined")), "{:?}", loaded.console);
    assert!(std::fs::metadata(&loaded.screenshot).unwrap().len() > 1000, "a real screenshot");
    std::fs::remove_dir_all(dir).unwrap();
}

/// The conversion goal, measured as a proportion.
fn conversion() -> Metric {
    Metric { kind: Some(MetricKind::Proportion), ..fixtures::conversion() }
}

/// An A/B test on the sandbox where v2 truly converts better, run to its decision.
async fn decided_ab_test(env: &mut Env) -> Experiment {
    let metrics = [conversion(), guardrail("error-rate", Builtin::IstioErrorRate, 0.01)];
    let analysis = analysis(metrics).interval("1m").min_samples_per_arm(500).max_duration("2h").srm();
    start_ab_test_with_a_true_winner(env, analysis).await;
    env.wait_for_phase("ab", Duration::from_secs(90), ENDED).await
}

/// `forklane ARGS…` against the sandbox's API server, bounded in time.
async fn forklane_output(kubeconfig: &Path, args: &[&str]) -> std::process::Output {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_forklane"))
        .args(args)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(30), run).await.expect("forklane ends").expect("forklane runs")
}

/// `forklane ARGS…`, which must succeed; its standard output.
async fn forklane(kubeconfig: &Path, args: &[&str]) -> String {
    let out = forklane_output(kubeconfig, args).await;
    assert!(out.status.success(), "forklane {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// How many looks of the history have an estimate of `metric`.
fn looks_with(exp: &Experiment, metric: &str) -> usize {
    let history = &exp.status.as_ref().unwrap().history;
    history.iter().filter(|l| l.metrics.iter().any(|m| m.metric == metric && m.estimate.is_some())).count()
}

/// Every plot of a report or dashboard page is drawn: an SVG with marks, a dot per look in each
/// funnel.
fn assert_plots_drawn(dom: &str, exp: &Experiment) {
    assert_eq!(effect_figures(dom), ["effect-conversion-v2", "effect-error-rate-v2"], "a funnel per metric");
    for (id, metric) in [("effect-conversion-v2", "conversion"), ("effect-error-rate-v2", "error-rate")] {
        let looks = looks_with(exp, metric);
        assert!(looks >= 2, "the analysis looked more than once at {metric}: {looks}");
        assert_eq!(count(figure(dom, id), "circle"), looks, "{id}: a dot per look");
    }
    for id in ["weights", "samples", "srm", "timeline"] {
        let plot = figure(dom, id);
        assert_eq!(count(plot, "svg"), 1, "{id}");
        assert!(count(plot, "polyline") + count(plot, "circle") > 0, "{id} has no marks: {plot}");
    }
    let timeline = figure(dom, "timeline");
    assert!(timeline.contains("<td>decision</td><td>promote</td>"), "{timeline}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_of_a_decided_ab_test_renders_in_chromium() {
    let _one = ONE_AT_A_TIME.lock().await;
    let started = Instant::now();
    let mut env = Env::start(true, false).await;
    let exp = decided_ab_test(&mut env).await;
    assert_eq!(exp.status.as_ref().unwrap().winner.as_deref(), Some("v2"));
    let dir = scratch("report");
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, env.cluster.kubeconfig_yaml()).unwrap();
    let report = dir.join("report.html");
    forklane(&kubeconfig, &["report", "ab", "-n", NS, "-o", report.to_str().unwrap()]).await;
    let md = forklane(&kubeconfig, &["report", "ab", "-n", NS, "--format", "md"]).await;
    let missing = forklane_output(&kubeconfig, &["report", "nope", "-n", NS]).await;
    let error = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success() && error.contains("Experiment default/nope not found"), "{error}");
    env.shutdown().await;
    let page = browser::load(&format!("file://{}", report.display()), "report", Duration::from_secs(2), 2600).await;
    assert!(page.console.is_empty(), "console: {:?}", page.console);
    assert_plots_drawn(&page.dom, &exp);
    assert!(page.dom.contains("<th>Winner</th><td>v2</td>"), "the summary names the winner");
    assert!(md.contains("- **Winner**: v2\n") && md.contains("| conversion | v2 | goal |"), "{md}");
    assert!(md.contains("· decision · promote\n"), "{md}");
    std::fs::remove_dir_all(dir).unwrap();
    eprintln!("report browser test: {:?}", started.elapsed());
}

/// `forklane dashboard --addr 127.0.0.1:0` on the sandbox's API server; the URL it serves.
async fn dashboard(kubeconfig: &Path) -> (tokio::process::Child, String) {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_forklane"))
        .args(["dashboard", "--addr", "127.0.0.1:0", "--kubeconfig"])
        .arg(kubeconfig)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("forklane dashboard runs");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await.expect("it says where");
    let line = first.unwrap().expect("a first line");
    let url = line.strip_prefix("Forklane dashboard on ").unwrap_or_else(|| panic!("{line}")).to_string();
    (child, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_lists_and_shows_a_live_experiment_in_chromium() {
    let _one = ONE_AT_A_TIME.lock().await;
    let started = Instant::now();
    let mut env = Env::start(true, false).await;
    let exp = decided_ab_test(&mut env).await;
    let dir = scratch("dashboard");
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, env.cluster.kubeconfig_yaml()).unwrap();
    let (mut server, url) = dashboard(&kubeconfig).await;

    let list = browser::load(&url, "dashboard-list", Duration::from_secs(2), 600).await;
    assert!(list.console.is_empty(), "console: {:?}", list.console);
    let row = list.dom.split("<tr>").find(|r| r.contains("default/ab")).unwrap_or_else(|| panic!("{}", list.dom));
    assert!(row.contains("<a href=\"/experiments/default/ab\">default/ab</a>"), "{row}");
    assert!(row.contains("<td>Succeeded</td>") && row.contains("v2 100%") && row.contains("promote at "), "{row}");

    // Long enough for the script to refresh the content twice (every 2 s).
    let page_url = format!("{url}experiments/default/ab");
    let page = browser::load(&page_url, "dashboard-experiment", Duration::from_secs(5), 2600).await;
    assert!(page.console.is_empty(), "console: {:?}", page.console);
    let refreshes: String =
        page.dom.split("<span id=\"refreshes\">").nth(1).unwrap().chars().take_while(char::is_ascii_digit).collect();
    assert!(refreshes.parse::<u32>().unwrap() >= 1, "the script refreshed the content: {refreshes}");
    let last = page.dom.split("<time id=\"refreshed\">").nth(1).unwrap().split("</time>").next().unwrap();
    assert!(last.parse::<jiff::Timestamp>().is_ok(), "the last refresh failed: {last}");
    // The content on the page is the refreshed fragment: its plots are drawn too.
    assert_plots_drawn(&page.dom, &exp);

    let json =
        browser::load(&format!("{url}api/experiments/default/ab"), "dashboard-json", Duration::from_secs(1), 300).await;
    assert!(json.dom.contains("\"winner\":\"v2\""), "{}", json.dom);
    let missing =
        browser::load(&format!("{url}experiments/default/nope"), "dashboard-missing", Duration::from_secs(1), 300)
            .await;
    assert!(missing.dom.contains("Experiment default/nope not found"), "{}", missing.dom);

    server.kill().await.unwrap();

    // `forklane run --dashboard-addr` serves it beside the controller, for its namespace only.
    let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let (metrics, addr) = (free(), free());
    let args = ["-n", "elsewhere", "--dashboard-addr", &addr].map(String::from);
    let _run = ForklaneRun::start(&kubeconfig, "dashboard-beside", &metrics, &args);
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(&addr).await.is_err() {
        assert!(Instant::now() < deadline, "forklane run never served the dashboard on {addr}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let scoped = browser::load(&format!("http://{addr}/"), "dashboard-run", Duration::from_secs(1), 300).await;
    assert!(scoped.dom.contains("No experiments.") && !scoped.dom.contains("default/ab"), "{}", scoped.dom);
    let outside = browser::load(
        &format!("http://{addr}/experiments/default/ab"),
        "dashboard-run-outside",
        Duration::from_secs(1),
        300,
    )
    .await;
    assert!(outside.dom.contains("Experiment default/ab not found"), "{}", outside.dom);

    env.shutdown().await;
    std::fs::remove_dir_all(dir).unwrap();
    eprintln!("dashboard browser test: {:?}", started.elapsed());
}
