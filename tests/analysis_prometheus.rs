//! The Prometheus source against a real Prometheus (the Debian package;
//! `scripts/install-prometheus`) scraping fixed counters every second, side by side with the
//! embedded source over the same counters: same rendered queries, same proportions, same
//! decision. Label values carry `"`, `}`, `\` and a newline, so the escaping is tested by
//! Prometheus' own parser. Unreachable, unparsable and empty queries come back as the matching
//! `SourceError`.
//!
//! Without the `prometheus` binary the test fails (scripts/install-prometheus installs it).

use crate::support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use forklane_core::analysis::{self, AnalysisError, Counts, Measurements, MetricSource, PrometheusSource, SourceError};
use forklane_core::api::{Builtin, Experiment, Metric, Routing};
use forklane_core::fixtures::{ExperimentBuilder, analysis, conversion, guardrail};
use forklane_core::stats::decision::{Outcome, decide};
use forklane_sim::metrics::{CounterStore, EmbeddedSource, Matcher};

/// A version label value that would break an unescaped query.
const WEIRD: &str = "v\"2}\\\n";

type Series = (&'static str, Vec<(&'static str, String)>, f64);

/// Counter totals: v1 converts 10%, the weird v2 20%; 1% and 2% errors; 10% and 5% slow.
/// Large enough that the decision is clear (a promotion) from either source. Beside what the
/// destination reported, the source (the gateway) reported every answer again (`-`, not to be
/// counted twice), 50 connection failures to v2's pods (`UF,URX`, labelled with the workload as
/// Envoy does) and 30 requests to a subset without pods (`UH`, no workload: no arm's).
fn series() -> Vec<Series> {
    let mut out = Vec::new();
    for (v, orders, errors, slow) in [("v1", 300.0, 100.0, 1000.0), (WEIRD, 600.0, 200.0, 500.0)] {
        let ver = |extra: &[(&'static str, &str)]| {
            let mut l = vec![("version", v.to_string())];
            l.extend(extra.iter().map(|(k, x)| (*k, x.to_string())));
            l
        };
        let istio = |extra: &[(&'static str, &str)]| {
            let mut l = vec![
                ("reporter", "destination".to_string()),
                ("destination_service_namespace", "shop".into()),
                ("destination_service_name", "checkout".into()),
                ("destination_version", v.to_string()),
                // The Telemetry the controller writes tags destination reports with the cohort.
                ("forklane_cohort", "assigned".into()),
            ];
            l.extend(extra.iter().map(|(k, x)| (*k, x.to_string())));
            l
        };
        out.push(("orders_total", ver(&[]), orders));
        out.push(("visits_total", ver(&[]), 3000.0));
        out.push(("istio_requests_total", istio(&[("response_code", "200")]), 10000.0 - errors));
        out.push(("istio_requests_total", istio(&[("response_code", "503")]), errors));
        let source = |extra: &[(&'static str, &str)]| {
            let mut l = vec![
                ("reporter", "source".to_string()),
                ("destination_service_namespace", "shop".into()),
                ("destination_service_name", "checkout".into()),
                ("destination_workload", format!("checkout-{v}")),
                ("destination_version", v.to_string()),
            ];
            l.extend(extra.iter().map(|(k, x)| (*k, x.to_string())));
            l
        };
        out.push((
            "istio_requests_total",
            source(&[("response_code", "200"), ("response_flags", "-")]),
            10000.0 - errors,
        ));
        out.push(("istio_requests_total", source(&[("response_code", "503"), ("response_flags", "-")]), errors));
        // As the Rust client spells bounds (`500.0`); Envoy writes `500`.
        out.push(("istio_request_duration_milliseconds_bucket", istio(&[("le", "500.0")]), 10000.0 - slow));
        out.push(("istio_request_duration_milliseconds_bucket", istio(&[("le", "+Inf")]), 10000.0));
        out.push(("istio_request_duration_milliseconds_count", istio(&[]), 10000.0));
    }
    let failed = |workload: &str, flags: &str| {
        [
            ("reporter", "source"),
            ("destination_service_namespace", "shop"),
            ("destination_service_name", "checkout"),
            ("destination_workload", workload),
            ("destination_version", "unknown"),
            ("response_code", "503"),
            ("response_flags", flags),
        ]
        .map(|(k, v)| (k, v.to_string()))
        .to_vec()
    };
    out.push(("istio_requests_total", failed(&format!("checkout-{WEIRD}"), "UF,URX"), 50.0));
    out.push(("istio_requests_total", failed("unknown", "UH"), 30.0));
    out
}

/// Prometheus text format; every value is 0 at the first scrape, so `increase()` counts from
/// zero exactly as the embedded store does for series born inside the window.
fn exposition(series: &[Series], zero: bool) -> String {
    let escape = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
    let mut out = String::new();
    for (name, labels, value) in series {
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
        out.push_str(&format!("{name}{{{}}} {}\n", labels.join(","), if zero { 0.0 } else { *value }));
    }
    out
}

/// The embedded side: every series was born inside the window, so its increase is its total.
struct Totals(Vec<Series>);

impl CounterStore for Totals {
    fn increase(&self, metric: &str, matchers: &[Matcher], _window: Duration, _ago: Duration) -> Option<f64> {
        let value = |labels: &[(&str, String)], name: &str| {
            labels.iter().find(|(k, _)| *k == name).map_or(String::new(), |(_, v)| v.clone())
        };
        let hits: Vec<f64> = self
            .0
            .iter()
            .filter(|(n, l, _)| *n == metric && matchers.iter().all(|m| m.matches(&value(l, &m.label))))
            .map(|s| s.2)
            .collect();
        (!hits.is_empty()).then(|| hits.iter().sum())
    }
}

fn experiment() -> Experiment {
    let latency = Metric { threshold_ms: Some(300.0), ..guardrail("latency", Builtin::IstioLatency, 0.05) };
    let metrics = [conversion(), guardrail("error-rate", Builtin::IstioErrorRate, 0.05), latency];
    ExperimentBuilder::ab_test("checkout")
        .namespace("shop")
        .service("checkout")
        .control("v1")
        .arm_on("v2", WEIRD)
        .split([("v1", 50), ("v2", 50)])
        .analysis(analysis(metrics).min_samples_per_arm(100).srm())
        .build()
}

/// The deadline of each look.
const LOOK: Duration = Duration::from_secs(30);

fn ratios(m: &Measurements) -> Vec<(String, String, f64)> {
    m.metrics
        .iter()
        .flat_map(|mc| mc.arms.iter().map(|(arm, c)| (mc.metric.clone(), arm.clone(), c.successes / c.trials)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_and_embedded_sources_agree_on_counts_and_decision() {
    let scrapes = Arc::new(AtomicUsize::new(0));
    let counter = scrapes.clone();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let first = counter.fetch_add(1, Ordering::SeqCst) == 0;
            async move { exposition(&series(), first) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    let server = tokio::spawn(axum::serve(listener, app).into_future());
    let prometheus = support::prometheus::start(target);

    let exp = experiment();
    let window = Duration::from_secs(120);
    let source = PrometheusSource::new(&prometheus.url).unwrap().with_timeout(Duration::from_secs(5));
    // Wait for the zero scrape and two more, then for every query to have data.
    let deadline = Instant::now() + Duration::from_secs(60);
    let from_prometheus = loop {
        if scrapes.load(Ordering::SeqCst) >= 3 {
            match analysis::measure(&exp, Routing::Istio, window, &source, LOOK).await {
                Ok(m) => break m,
                Err(AnalysisError::Unavailable { .. }) => {}
                Err(e) => panic!("{e}"),
            }
        }
        let log = std::fs::read_to_string(prometheus.dir.join("prometheus.log")).unwrap_or_default();
        assert!(Instant::now() < deadline, "no data from Prometheus within 60 s; its log:\n{log}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let from_embedded =
        analysis::measure(&exp, Routing::Istio, window, &EmbeddedSource::new(Totals(series())), LOOK).await.unwrap();

    assert_eq!(from_embedded.metrics[0].arms[1].1, Counts { successes: 600.0, trials: 3000.0 });
    // Each request once: v2's connection failures join its errors and trials, the gateway's
    // copies of answers and the unattributable UH do not.
    let errors = &from_embedded.metrics[1].arms;
    assert_eq!(errors[0].1, Counts { successes: 100.0, trials: 10000.0 });
    assert_eq!(errors[1].1, Counts { successes: 250.0, trials: 10050.0 });
    // increase() extrapolates to the window's end, by the same factor for every series of a
    // scrape: counts may be inflated, proportions are exact.
    for ((metric, arm, p), (_, _, e)) in ratios(&from_prometheus).into_iter().zip(ratios(&from_embedded)) {
        assert!((p - e).abs() < 1e-9, "{metric}/{arm}: Prometheus {p}, embedded {e}");
    }
    for (mc, me) in from_prometheus.metrics.iter().zip(&from_embedded.metrics) {
        for ((arm, p), (_, e)) in mc.arms.iter().zip(&me.arms) {
            assert!(
                p.trials >= e.trials && p.trials < 2.0 * e.trials,
                "{}/{arm}: {} vs {}",
                mc.metric,
                p.trials,
                e.trials
            );
        }
    }
    let weights = BTreeMap::from([("v1".to_string(), 50.0), ("v2".to_string(), 50.0)]);
    let config = analysis::decision_config(exp.spec.analysis.as_ref().unwrap());
    let decide_on =
        |m: &Measurements| decide(&analysis::decision_input(&exp, m, &weights).unwrap(), &config).unwrap().outcome;
    assert_eq!(decide_on(&from_embedded), Outcome::Promote { arm: "v2".into() });
    assert_eq!(decide_on(&from_prometheus), Outcome::Promote { arm: "v2".into() });

    // Per-interval values: one range query, oldest first; a point before the data is no data.
    let visits = "sum(increase(visits_total[1m]))";
    let mut recent = source.values(visits, Duration::from_secs(1), 2).await;
    for _ in 0..20 {
        if recent.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        recent = source.values(visits, Duration::from_secs(1), 2).await;
    }
    assert!(recent.as_ref().is_ok_and(|v| v.len() == 2 && v.iter().all(|&x| x > 0.0)), "{recent:?}");
    assert!(matches!(source.values(visits, Duration::from_secs(3600), 2).await, Err(SourceError::NoData { .. })));
    // The look above spans two intervals, and Prometheus has no data for the first: no batches.
    assert!(from_prometheus.metrics.iter().all(|m| m.batches.is_empty()));

    // Failures are told apart, and none of them is a count.
    let bad = analysis::QueryPair { success: "sum(".into(), trial: "sum(increase(visits_total[1m]))".into() };
    assert!(matches!(source.counts(&bad).await, Err(SourceError::Rejected { query, .. }) if query == "sum("));
    let empty = analysis::QueryPair { success: "x".into(), trial: "sum(increase(no_such_total[1m]))".into() };
    assert!(matches!(source.counts(&empty).await, Err(SourceError::NoData { .. })));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let down = PrometheusSource::new(&format!("http://127.0.0.1:{port}")).unwrap();
    let err = analysis::measure(&exp, Routing::Istio, window, &down, LOOK).await.unwrap_err();
    assert!(
        matches!(&err, AnalysisError::Unavailable { metric, arm, error: SourceError::Unreachable { .. } } if metric == "conversion" && arm == "v1"),
        "{err}"
    );

    server.abort();
}
