//! Istio routing semantics of the simulated mesh and kube-proxy's choice, on hand-made objects.

use crate::support;

use std::collections::BTreeMap;
use std::sync::Arc;

use forklane_core::istio::*;
use forklane_sim::traffic::{Dataplane, Outcome, Pod, Request, ResponseFlag, Snapshot};
use rand::SeedableRng;
use rand::rngs::StdRng;
use support::snapshot::*;

fn header_match(name: &str, m: VirtualServiceHttpMatchHeaders) -> Option<Vec<VirtualServiceHttpMatch>> {
    Some(vec![VirtualServiceHttpMatch { headers: Some(BTreeMap::from([(name.to_string(), m)])), ..Default::default() }])
}

fn mesh(pods: Vec<Pod>, vs: Vec<VirtualService>, dr: Vec<DestinationRule>) -> Snapshot {
    Snapshot::new(vec![service(Some(32532))], pods, &vs, &dr).with_mesh(true)
}

fn send(snap: &Snapshot, req: &Request, rng: &mut StdRng) -> Outcome {
    Dataplane::default().handle(snap, &key(), req, rng)
}

fn served_version(outcome: &Outcome) -> Option<String> {
    outcome.answer()?.served.as_ref().map(|s| s.version.clone())
}

#[test]
fn a_subset_missing_from_the_destination_rule_answers_503_nc() {
    let vs = virtual_service(vec![VirtualServiceHttp { route: Some(vec![to("v3", None)]), ..Default::default() }]);
    let snap = mesh(pods("v1", 2, true), vec![vs], vec![destination_rule(&["v1"])]);
    let answer = send(&snap, &Request::get("/"), &mut StdRng::seed_from_u64(1)).answer().cloned().unwrap();
    assert_eq!((answer.response.status, answer.flag), (503, ResponseFlag::NoClusterFound));
    assert!(answer.served.is_none());
}

#[test]
fn a_route_without_any_destination_rule_answers_503_nc() {
    let vs = virtual_service(vec![VirtualServiceHttp { route: Some(vec![to("v1", None)]), ..Default::default() }]);
    let snap = mesh(pods("v1", 2, true), vec![vs], vec![]);
    let answer = send(&snap, &Request::get("/"), &mut StdRng::seed_from_u64(1)).answer().cloned().unwrap();
    assert_eq!((answer.response.status, answer.flag), (503, ResponseFlag::NoClusterFound));
}

#[test]
fn a_subset_without_ready_pods_answers_503_uh() {
    let vs = virtual_service(vec![VirtualServiceHttp { route: Some(vec![to("v2", None)]), ..Default::default() }]);
    let all = [pods("v1", 2, true), pods("v2", 2, false)].concat();
    let snap = mesh(all, vec![vs], vec![destination_rule(&["v1", "v2"])]);
    let dataplane = Dataplane::default();
    let answer =
        dataplane.handle(&snap, &key(), &Request::get("/"), &mut StdRng::seed_from_u64(1)).answer().cloned().unwrap();
    assert_eq!(
        (answer.response.status, answer.flag, answer.response.body.as_str()),
        (503, ResponseFlag::NoHealthyUpstream, "no healthy upstream")
    );
    assert_eq!(dataplane.metrics.recorded().local_replies.get("UH"), Some(&1));
    // As Envoy reports a request it failed itself: by the source only, and with no pod picked,
    // no destination workload or version (it cannot be charged to the subset's Deployment).
    let text = dataplane.metrics.encode();
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("istio_requests_total{")).collect();
    assert_eq!(lines.len(), 1, "{text}");
    for label in [
        r#"reporter="source""#,
        r#"destination_service_name="my-app""#,
        r#"destination_workload="unknown""#,
        r#"destination_version="unknown""#,
        r#"response_code="503""#,
        r#"response_flags="UH""#,
    ] {
        assert!(lines[0].contains(label), "{label} in {}", lines[0]);
    }
    assert!(lines[0].ends_with(" 1"), "{}", lines[0]);
}

#[test]
fn no_matching_route_answers_404_nr() {
    let only_beta = VirtualServiceHttp {
        r#match: header_match(
            "x-group",
            VirtualServiceHttpMatchHeaders { exact: Some("beta".into()), ..Default::default() },
        ),
        route: Some(vec![to("v1", None)]),
        ..Default::default()
    };
    let snap = mesh(pods("v1", 1, true), vec![virtual_service(vec![only_beta])], vec![destination_rule(&["v1"])]);
    let mut rng = StdRng::seed_from_u64(1);
    let answer = send(&snap, &Request::get("/"), &mut rng).answer().cloned().unwrap();
    assert_eq!((answer.response.status, answer.flag), (404, ResponseFlag::NoRoute));
    assert_eq!(
        served_version(&send(&snap, &Request::get("/").header("x-group", "beta"), &mut rng)).as_deref(),
        Some("v1")
    );
}

#[test]
fn the_first_matching_route_wins_and_regexes_match_the_whole_value() {
    let rule = |m, subset| VirtualServiceHttp {
        r#match: header_match("user-agent", m),
        route: Some(vec![to(subset, None)]),
        ..Default::default()
    };
    let vs = virtual_service(vec![
        rule(VirtualServiceHttpMatchHeaders { regex: Some("Mobile".into()), ..Default::default() }, "v2"),
        rule(VirtualServiceHttpMatchHeaders { prefix: Some("curl/".into()), ..Default::default() }, "v2"),
        VirtualServiceHttp { route: Some(vec![to("v1", None)]), ..Default::default() },
    ]);
    let snap =
        mesh([pods("v1", 2, true), pods("v2", 2, true)].concat(), vec![vs], vec![destination_rule(&["v1", "v2"])]);
    let mut rng = StdRng::seed_from_u64(3);
    let version = |ua: &str, rng: &mut StdRng| {
        served_version(&send(&snap, &Request::get("/").header("User-Agent", ua), rng)).unwrap()
    };
    for _ in 0..50 {
        assert_eq!(version("Mobile", &mut rng), "v2");
        assert_eq!(version("Some Mobile Browser", &mut rng), "v1", "an unanchored regex would match this");
        assert_eq!(version("curl/7.88.1", &mut rng), "v2");
        assert_eq!(version("Wget", &mut rng), "v1");
    }
}

#[test]
fn weights_are_relative_and_a_lone_destination_takes_everything() {
    let split = VirtualServiceHttp { route: Some(vec![to("v1", Some(1)), to("v2", Some(3))]), ..Default::default() };
    let snap = mesh(
        [pods("v1", 3, true), pods("v2", 1, true)].concat(),
        vec![virtual_service(vec![split])],
        vec![destination_rule(&["v1", "v2"])],
    );
    let mut rng = StdRng::seed_from_u64(11);
    let n = 20_000;
    let v2 =
        (0..n).filter(|_| served_version(&send(&snap, &Request::get("/"), &mut rng)).as_deref() == Some("v2")).count();
    let (p, share) = (0.75, v2 as f64 / n as f64);
    assert!((share - p).abs() <= 3.0 * (p * (1.0 - p) / n as f64).sqrt(), "share {share}");

    let lone = VirtualServiceHttp { route: Some(vec![to("v2", None)]), ..Default::default() };
    let snap = mesh(
        [pods("v1", 1, true), pods("v2", 1, true)].concat(),
        vec![virtual_service(vec![lone])],
        vec![destination_rule(&["v1", "v2"])],
    );
    assert!((0..200).all(|_| served_version(&send(&snap, &Request::get("/"), &mut rng)).as_deref() == Some("v2")));
}

#[test]
fn response_headers_of_route_and_destination_are_applied() {
    let mut destination = to("v1", None);
    destination.headers = Some(VirtualServiceHttpRouteHeaders {
        response: Some(VirtualServiceHttpRouteHeadersResponse {
            add: Some(BTreeMap::from([("Set-Cookie".into(), "arm=v1; Max-Age=60".into())])),
            ..Default::default()
        }),
        ..Default::default()
    });
    let route = VirtualServiceHttp {
        route: Some(vec![destination]),
        headers: Some(VirtualServiceHttpHeaders {
            response: Some(VirtualServiceHttpHeadersResponse {
                set: Some(BTreeMap::from([("x-served-by".into(), "mesh".into())])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let snap = mesh(pods("v1", 1, true), vec![virtual_service(vec![route])], vec![destination_rule(&["v1"])]);
    let answer = send(&snap, &Request::get("/"), &mut StdRng::seed_from_u64(1)).answer().cloned().unwrap();
    assert_eq!(answer.response.header_values("set-cookie").collect::<Vec<_>>(), ["arm=v1; Max-Age=60"]);
    assert_eq!(answer.response.header_values("x-served-by").collect::<Vec<_>>(), ["mesh"]);
}

#[test]
fn a_mirror_without_percentage_copies_every_request_and_its_answer_is_dropped() {
    let route = VirtualServiceHttp {
        route: Some(vec![to("v1", None)]),
        mirror: Some(VirtualServiceHttpMirror { host: "my-app".into(), subset: Some("v2".into()), port: None }),
        ..Default::default()
    };
    let snap = mesh(
        [pods("v1", 1, true), pods("v2", 1, true)].concat(),
        vec![virtual_service(vec![route])],
        vec![destination_rule(&["v1", "v2"])],
    );
    let dataplane = Dataplane::default();
    let mut rng = StdRng::seed_from_u64(5);
    for _ in 0..100 {
        let answer = dataplane.handle(&snap, &key(), &Request::get("/"), &mut rng).answer().cloned().unwrap();
        assert_eq!(answer.response.version(), Some("v1"));
        assert_eq!(answer.mirrored_to.len(), 1);
    }
    let recorded = dataplane.metrics.recorded();
    assert_eq!(
        (recorded.versions["v2"].requests, recorded.versions["v2"].mirrored, recorded.versions["v2"].visits),
        (100, 100, 0)
    );
    let text = dataplane.metrics.encode();
    let line = text
        .lines()
        .find(|l| l.starts_with("istio_requests_total{") && l.contains(r#"destination_version="v2""#))
        .unwrap();
    assert!(line.contains(r#"reporter="destination""#) && line.ends_with(" 100"), "{line}");
}

#[test]
fn without_a_virtual_service_the_sidecar_balances_over_all_endpoints() {
    let snap = mesh([pods("v1", 1, true), pods("v2", 1, true)].concat(), vec![], vec![]);
    let mut rng = StdRng::seed_from_u64(9);
    let v2 = (0..4000)
        .filter(|_| served_version(&send(&snap, &Request::get("/"), &mut rng)).as_deref() == Some("v2"))
        .count();
    assert!((v2 as f64 / 4000.0 - 0.5).abs() < 3.0 * (0.25f64 / 4000.0).sqrt(), "{v2}");
}

#[test]
fn kube_proxy_spreads_uniformly_over_ready_endpoints_and_refuses_without_any() {
    // The article's canary without a mesh: 10 v1 pods and 1 v2 pod serve v2 about 1 in 11.
    let snap = Arc::new(Snapshot::new(
        vec![service(Some(32532))],
        [pods("v1", 10, true), pods("v2", 1, true), pods("v3", 5, false)].concat(),
        &[],
        &[],
    ));
    let mut rng = StdRng::seed_from_u64(13);
    let n = 22_000;
    let mut by_version = BTreeMap::<String, usize>::new();
    for _ in 0..n {
        *by_version.entry(served_version(&send(&snap, &Request::get("/"), &mut rng)).unwrap()).or_default() += 1;
    }
    assert!(!by_version.contains_key("v3"), "pods that are not ready get no traffic");
    let (p, share) = (1.0 / 11.0, by_version["v2"] as f64 / n as f64);
    assert!((share - p).abs() <= 3.0 * (p * (1.0 - p) / n as f64).sqrt(), "{by_version:?}");

    let empty = Snapshot::new(vec![service(Some(32532))], pods("v1", 3, false), &[], &[]);
    assert_eq!(send(&empty, &Request::get("/"), &mut rng), Outcome::Refused);
    assert_eq!(send(&snap, &Request::get("/"), &mut rng).answer().unwrap().response.body.lines().count(), 1);
}

#[test]
fn annotations_set_errors_and_conversions_per_version() {
    let mut all = [pods("v1", 1, true), pods("v2", 1, true)].concat();
    all[0].annotations = BTreeMap::from([
        ("sim.forklane.io/error-rate".into(), "0.2".into()),
        ("sim.forklane.io/conversion-rate".into(), "0.1".into()),
    ]);
    all[1].annotations = BTreeMap::from([("sim.forklane.io/conversion-rate".into(), "0.3".into())]);
    let snap = Snapshot::new(vec![service(Some(32532))], all, &[], &[]);
    let dataplane = Dataplane::default();
    let mut rng = StdRng::seed_from_u64(17);
    for _ in 0..20_000 {
        dataplane.handle(&snap, &key(), &Request::get("/"), &mut rng);
    }
    let r = dataplane.metrics.recorded();
    let within = |x: u64, n: u64, p: f64| (x as f64 / n as f64 - p).abs() <= 3.0 * (p * (1.0 - p) / n as f64).sqrt();
    let (v1, v2) = (&r.versions["v1"], &r.versions["v2"]);
    assert!(within(v1.errors, v1.requests, 0.2), "{v1:?}");
    assert_eq!(v1.visits, v1.requests - v1.errors, "errors are not visits");
    assert!(within(v1.orders, v1.visits, 0.1), "{v1:?}");
    assert!(within(v2.orders, v2.visits, 0.3) && v2.errors == 0, "{v2:?}");
    let text = dataplane.metrics.encode();
    assert!(text.contains("orders_total{") && text.contains("visits_total{") && text.contains(r#"code="500""#));
    assert!(!text.contains("istio_requests_total{"), "no mesh, no Istio metrics");
}

#[test]
fn the_exposition_has_no_duplicate_series() {
    // Two pods of one Deployment share their Istio labels: one series, or Prometheus drops samples.
    let replicas =
        pods("v1", 2, true).into_iter().map(|p| Pod { owner: Some("my-app-v1-7b4874cd75".into()), ..p }).collect();
    let snap = mesh(replicas, vec![], vec![]);
    let dataplane = Dataplane::default();
    let mut rng = StdRng::seed_from_u64(2);
    for _ in 0..200 {
        dataplane.handle(&snap, &key(), &Request::get("/"), &mut rng);
    }
    let text = dataplane.metrics.encode();
    let series: Vec<&str> =
        text.lines().filter(|l| !l.starts_with('#')).map(|l| l.rsplit_once(' ').unwrap().0).collect();
    let unique: std::collections::BTreeSet<&str> = series.iter().copied().collect();
    assert_eq!(series.len(), unique.len(), "{text}");
    let destination = text
        .lines()
        .find(|l| l.starts_with("istio_requests_total{") && l.contains(r#"reporter="destination""#))
        .unwrap();
    assert!(
        destination.contains(r#"destination_workload="my-app-v1""#) && destination.ends_with(" 200"),
        "{destination}"
    );
}

#[tokio::test]
async fn in_process_traffic_can_be_paced_in_real_time() {
    use forklane_sim::traffic::loadgen::{self, Limit, LoadSpec, Population};
    let view = Arc::new(Snapshot::new(vec![service(Some(32532))], pods("v1", 2, true), &[], &[]));
    let dataplane = Dataplane::default();
    let mut population = Population::new(&LoadSpec::default());
    let start = std::time::Instant::now();
    let report = loadgen::drive_in_process(
        &dataplane,
        &view,
        &key(),
        &mut population,
        1000.0,
        Limit::Duration(std::time::Duration::from_millis(300)),
    )
    .await;
    let elapsed = start.elapsed();
    assert_eq!(report.sent, 300, "{report}");
    assert!(
        elapsed >= std::time::Duration::from_millis(300) && elapsed < std::time::Duration::from_secs(2),
        "{elapsed:?}"
    );
    assert_eq!(dataplane.metrics.recorded().versions["v1"].requests, 300);
}
