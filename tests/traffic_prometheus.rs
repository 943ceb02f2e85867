//! A real Prometheus (the Debian package; `scripts/install-prometheus`) scrapes the simulated
//! `/metrics` every second; PromQL through `prometheus-http-query` gives per-version request,
//! error and order counts within 1% of what the simulation recorded.
//!
//! Without the `prometheus` binary the test fails (scripts/install-prometheus installs it).

use crate::support;

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use forklane_core::istio::*;
use forklane_sim::traffic::http::{self, HttpTarget};
use forklane_sim::traffic::loadgen::{self, LoadSpec, Population};
use forklane_sim::traffic::{Dataplane, Pod, Request, Service, ServiceKey, ServicePort, Snapshot};
use prometheus_http_query::Client;
use prometheus_http_query::response::Data;

const NS: &str = "shop";

/// An 80/20 split between two versions with different error and conversion rates.
fn cluster() -> Snapshot {
    let pod = |version: &str, i: usize, error: &str, conversion: &str| Pod {
        annotations: BTreeMap::from([
            ("sim.forklane.io/error-rate".into(), error.into()),
            ("sim.forklane.io/conversion-rate".into(), conversion.into()),
            ("sim.forklane.io/latency-ms".into(), "lognormal:median=30,p99=300".into()),
        ]),
        owner: Some(format!("checkout-{version}-5d4f8b7c9")),
        ..Pod::ready(
            NS,
            &format!("checkout-{version}-5d4f8b7c9-{i}"),
            &[("app", "checkout"), ("version", version)],
            version,
        )
    };
    let pods = vec![pod("v1", 0, "0.01", "0.10"), pod("v1", 1, "0.01", "0.10"), pod("v2", 0, "0.05", "0.12")];
    let service = Service {
        namespace: NS.into(),
        name: "checkout".into(),
        selector: BTreeMap::from([("app".into(), "checkout".into())]),
        ports: vec![ServicePort { name: Some("http".into()), port: 80, node_port: None }],
        service_type: "ClusterIP".into(),
    };
    let meta =
        kube::api::ObjectMeta { name: Some("checkout".into()), namespace: Some(NS.into()), ..Default::default() };
    let subset = |v: &str| DestinationRuleSubsets {
        name: v.into(),
        labels: Some(BTreeMap::from([("version".into(), v.into())])),
        ..Default::default()
    };
    let dr = DestinationRule {
        metadata: meta.clone(),
        spec: DestinationRuleSpec {
            host: "checkout".into(),
            subsets: Some(vec![subset("v1"), subset("v2")]),
            ..Default::default()
        },
        status: None,
    };
    let to = |v: &str, weight| VirtualServiceHttpRoute {
        destination: VirtualServiceHttpRouteDestination { host: "checkout".into(), subset: Some(v.into()), port: None },
        weight: Some(weight),
        headers: None,
    };
    let vs = VirtualService {
        metadata: meta,
        spec: VirtualServiceSpec {
            hosts: Some(vec!["checkout".into()]),
            http: Some(vec![VirtualServiceHttp {
                route: Some(vec![to("v1", 80), to("v2", 20)]),
                ..Default::default()
            }]),
            ..Default::default()
        },
        status: None,
    };
    Snapshot::new(vec![service], pods, &[vs], &[dr]).with_mesh(true)
}

/// `sum by (label) (...)` as a map.
async fn by_label(client: &Client, query: &str, label: &str) -> BTreeMap<String, f64> {
    let result = client.query(query).get().await.unwrap_or_else(|e| panic!("{query}: {e}"));
    let Data::Vector(samples) = result.data() else { panic!("{query}: not a vector") };
    samples.iter().map(|s| (s.metric().get(label).cloned().unwrap_or_default(), s.sample().value())).collect()
}

fn within_one_percent(promql: f64, recorded: u64) -> bool {
    (promql - recorded as f64).abs() <= 0.01 * recorded as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_agrees_with_the_simulation() {
    let dataplane = Dataplane::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_addr = listener.local_addr().unwrap();
    let server = tokio::spawn(axum::serve(listener, dataplane.metrics.router()).into_future());
    let prometheus = support::prometheus::start(metrics_addr);

    let ready = HttpTarget::parse(&format!("{}/-/ready", prometheus.url)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http::send(&ready, &Request::get("/-/ready")).await.is_ok_and(|r| r.status == 200) {
        assert!(
            Instant::now() < deadline,
            "prometheus not ready; see {}",
            prometheus.dir.join("prometheus.log").display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let view = Arc::new(cluster());
    let service = ServiceKey::new(NS, "checkout");
    let mut population = Population::new(&LoadSpec { users: 500, seed: 4, ..LoadSpec::default() });
    // Three bursts, so that Prometheus sees the counters grow between scrapes.
    for _ in 0..3 {
        loadgen::run_in_process(&dataplane, &view, &service, &mut population, 10_000, 1000.0);
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let recorded = dataplane.metrics.recorded();
    let total: u64 = recorded.versions.values().map(|v| v.requests).sum();
    assert_eq!(total, 30_000);

    let client = Client::from_str(&prometheus.url).unwrap();
    let requests = r#"sum by (destination_version) (istio_requests_total{reporter="destination",destination_service_name="checkout"})"#;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let scraped: f64 = by_label(&client, requests, "destination_version").await.values().sum();
        if within_one_percent(scraped, total) {
            break;
        }
        if Instant::now() >= deadline {
            let targets = HttpTarget::parse(&format!("{}/api/v1/targets", prometheus.url)).await.unwrap();
            let health = http::send(&targets, &Request::get("/api/v1/targets")).await.map(|r| r.body);
            panic!("prometheus has {scraped} of {total} requests; targets: {health:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let requests = by_label(&client, requests, "destination_version").await;
    let errors = by_label(
        &client,
        r#"sum by (destination_version) (istio_requests_total{reporter="destination",response_code=~"5.."})"#,
        "destination_version",
    )
    .await;
    let app_requests = by_label(&client, "sum by (version) (http_requests_total)", "version").await;
    let orders = by_label(&client, "sum by (version) (orders_total)", "version").await;
    let conversions =
        by_label(&client, "sum by (destination_version) (forklane_sim_conversions_total)", "destination_version").await;
    server.abort();

    for (version, counts) in &recorded.versions {
        let get = |m: &BTreeMap<String, f64>| m.get(version).copied().unwrap_or(0.0);
        println!(
            "{version}: recorded {counts:?}; prometheus requests {} errors {} orders {}",
            get(&requests),
            get(&errors),
            get(&orders)
        );
        assert!(within_one_percent(get(&requests), counts.requests), "{version} requests");
        assert!(within_one_percent(get(&app_requests), counts.requests), "{version} app requests");
        assert!(within_one_percent(get(&errors), counts.errors), "{version} errors");
        assert!(within_one_percent(get(&orders), counts.orders), "{version} orders");
        assert!(within_one_percent(get(&conversions), counts.orders), "{version} conversions");
        assert!(counts.errors > 0 && counts.orders > 0, "{version}: the annotations took effect");
    }
}
