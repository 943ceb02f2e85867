//! The real NodePort listener on 127.0.0.1, driven by curl and by the HTTP load generator.

use crate::support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use forklane_core::istio::*;
use forklane_sim::traffic::http::{self, HttpError, HttpTarget};
use forklane_sim::traffic::loadgen::{self, Limit, LoadSpec, Population};
use forklane_sim::traffic::{Dataplane, NodePort, Pod, Request, Snapshot, SnapshotFeed, serve_nodeport};
use support::snapshot::{NS, key, service};

/// Pods named as a Deployment names them, e.g. `my-app-7b4874cd75-0`.
fn pods(hash: &str, version: &str, n: usize, ready: bool) -> Vec<Pod> {
    (0..n)
        .map(|i| Pod {
            ready,
            ..Pod::ready(NS, &format!("my-app-{hash}-{i}"), &[("app", "my-app"), ("version", version)], version)
        })
        .collect()
}

fn plain(pods: Vec<Pod>) -> Snapshot {
    Snapshot::new(vec![service(None)], pods, &[], &[])
}

async fn listen(feed: &SnapshotFeed, dataplane: Dataplane) -> NodePort {
    serve_nodeport("127.0.0.1:0".parse().unwrap(), key(), feed.view(), dataplane).await.unwrap()
}

async fn curl(addr: SocketAddr, extra: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "5"])
        .args(extra)
        .arg(format!("http://{addr}/"))
        .output()
        .await
        .expect("curl is installed");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Waits (bounded) until connecting to `addr` is refused, or accepted.
async fn until_listening(addr: SocketAddr, listening: bool) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let refused = matches!(tokio::net::TcpStream::connect(addr).await, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused);
        if refused != listening {
            return;
        }
        assert!(Instant::now() < deadline, "the NodePort did not {} in time", if listening { "open" } else { "close" });
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn curl_sees_the_article_answers_and_refusals_of_a_recreate() {
    let feed = SnapshotFeed::new(plain(pods("7b4874cd75", "v1.0.0", 3, true)));
    let nodeport = listen(&feed, Dataplane::default()).await;
    let addr = nodeport.addr();

    let (code, stdout, _) = curl(addr, &[]).await;
    assert_eq!(code, 0);
    assert!(stdout.starts_with("Host: my-app-7b4874cd75-") && stdout.ends_with(", Version: v1.0.0\n"), "{stdout:?}");

    // All v1 pods terminate: kube-proxy rejects, curl cannot connect.
    feed.publish(plain(pods("7b4874cd75", "v1.0.0", 3, false)));
    until_listening(addr, false).await;
    let (code, stdout, stderr) = curl(addr, &[]).await;
    assert_eq!((code, stdout.as_str()), (7, ""), "{stderr}");
    assert!(stderr.contains(&format!("Failed to connect to 127.0.0.1 port {}", addr.port())), "{stderr}");
    let target = HttpTarget::parse(&format!("http://{addr}/")).await.unwrap();
    let report = loadgen::run_http(&target, Population::new(&LoadSpec::default()), 1000.0, Limit::Requests(20)).await;
    assert_eq!((report.sent, report.refused), (20, 20), "{report}");

    // v2 comes up on the same port.
    feed.publish(plain(pods("f885c8d45", "v2.0.0", 3, true)));
    until_listening(addr, true).await;
    let report = loadgen::run_http(&target, Population::new(&LoadSpec::default()), 2000.0, Limit::Requests(300)).await;
    assert_eq!(report.by_version.get("v2.0.0"), Some(&300), "{report}");
    assert_eq!(report.refused + report.failed, 0, "{report}");
}

fn sticky_mesh() -> Snapshot {
    let subset = |name: &str| DestinationRuleSubsets {
        name: name.into(),
        labels: Some(BTreeMap::from([("version".into(), name.into())])),
        ..Default::default()
    };
    let dr = DestinationRule {
        metadata: kube::api::ObjectMeta {
            name: Some("my-app".into()),
            namespace: Some(NS.into()),
            ..Default::default()
        },
        spec: DestinationRuleSpec {
            host: "my-app".into(),
            subsets: Some(vec![subset("v1"), subset("v2")]),
            ..Default::default()
        },
        status: None,
    };
    let to = |arm: &str, weight: i32, cookie: bool| VirtualServiceHttpRoute {
        destination: VirtualServiceHttpRouteDestination { host: "my-app".into(), subset: Some(arm.into()), port: None },
        weight: Some(weight),
        headers: cookie.then(|| VirtualServiceHttpRouteHeaders {
            response: Some(VirtualServiceHttpRouteHeadersResponse {
                add: Some(BTreeMap::from([("set-cookie".into(), format!("arm={arm}; Max-Age=3600; Path=/"))])),
                ..Default::default()
            }),
            ..Default::default()
        }),
    };
    let pinned = |arm: &str| VirtualServiceHttp {
        r#match: Some(vec![VirtualServiceHttpMatch {
            headers: Some(BTreeMap::from([(
                "cookie".into(),
                VirtualServiceHttpMatchHeaders { regex: Some(format!("(.*; )?arm={arm}(;.*)?")), ..Default::default() },
            )])),
            ..Default::default()
        }]),
        route: Some(vec![to(arm, 100, false)]),
        ..Default::default()
    };
    let split = VirtualServiceHttp { route: Some(vec![to("v1", 50, true), to("v2", 50, true)]), ..Default::default() };
    let vs = VirtualService {
        metadata: kube::api::ObjectMeta {
            name: Some("my-app".into()),
            namespace: Some(NS.into()),
            ..Default::default()
        },
        spec: VirtualServiceSpec {
            hosts: Some(vec!["my-app".into()]),
            http: Some(vec![pinned("v1"), pinned("v2"), split]),
            ..Default::default()
        },
        status: None,
    };
    let all = [pods("aaaaaaaaaa", "v1", 2, true), pods("bbbbbbbbbb", "v2", 2, true)].concat();
    Snapshot::new(vec![service(None)], all, &[vs], &[dr]).with_mesh(true)
}

#[tokio::test]
async fn the_mesh_sets_cookies_over_http_and_users_keep_their_arm() {
    let feed = SnapshotFeed::new(sticky_mesh());
    let dataplane = Dataplane::default();
    let nodeport = listen(&feed, dataplane.clone()).await;
    let (code, stdout, _) = curl(nodeport.addr(), &["-i"]).await;
    assert_eq!(code, 0);
    assert!(stdout.to_ascii_lowercase().contains("set-cookie: arm=v"), "{stdout}");

    let target = HttpTarget::parse(&format!("http://{}/", nodeport.addr())).await.unwrap();
    let spec = LoadSpec { users: 40, seed: 3, ..LoadSpec::default() };
    let report = loadgen::run_http(&target, Population::new(&spec), 2000.0, Limit::Requests(400)).await;
    assert_eq!(report.users_switched(), 0, "{report}");
    assert_eq!(report.by_version.values().sum::<u64>(), 400, "{report}");
    assert_eq!(report.by_version.len(), 2, "{report}");
    // Everything that reached a pod through the listener was recorded (curl's request too).
    let recorded: u64 = dataplane.metrics.recorded().versions.values().map(|v| v.requests).sum();
    assert_eq!(recorded, 401);
}

#[tokio::test]
async fn latency_is_slept_only_when_asked() {
    let mut slow = pods("7b4874cd75", "v1", 1, true);
    slow[0].annotations = BTreeMap::from([("sim.forklane.io/latency-ms".into(), "150".into())]);
    let feed = SnapshotFeed::new(plain(slow));
    let fast = listen(&feed, Dataplane::default()).await;
    let sleeping = listen(&feed, Dataplane { sleep_latency: true, ..Dataplane::default() }).await;
    let timed = |addr: SocketAddr| async move {
        let target = HttpTarget::parse(&format!("http://{addr}/")).await.unwrap();
        let start = Instant::now();
        http::send(&target, &Request::get("/")).await.unwrap();
        start.elapsed()
    };
    assert!(timed(sleeping.addr()).await >= Duration::from_millis(150));
    assert!(timed(fast.addr()).await < Duration::from_millis(150));
}

#[tokio::test]
async fn metrics_are_served_over_http() {
    let dataplane = Dataplane::default();
    let feed = SnapshotFeed::new(sticky_mesh());
    let nodeport = listen(&feed, dataplane.clone()).await;
    let target = HttpTarget::parse(&format!("http://{}/", nodeport.addr())).await.unwrap();
    http::send(&target, &Request::get("/")).await.unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(axum::serve(listener, dataplane.metrics.router()).into_future());
    let metrics = HttpTarget::parse(&format!("http://{addr}/metrics")).await.unwrap();
    let response = http::send(&metrics, &Request::get("/metrics")).await.unwrap();
    server.abort();
    assert_eq!(response.status, 200);
    assert!(response.header_values("content-type").any(|c| c.starts_with("application/openmetrics-text")));
    for name in [
        "istio_requests_total{",
        "istio_request_duration_milliseconds_bucket{",
        "http_requests_total{",
        "visits_total{",
    ] {
        assert!(response.body.contains(name), "{name} missing:\n{}", response.body);
    }
    assert!(
        response.body.contains(r#"le="0.5""#) && response.body.contains(r#"le="3600000.0""#),
        "Istio's default buckets"
    );
}

#[tokio::test]
async fn a_port_in_use_is_an_error() {
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let feed = SnapshotFeed::new(plain(pods("7b4874cd75", "v1", 1, true)));
    let result = serve_nodeport(taken.local_addr().unwrap(), key(), feed.view(), Dataplane::default()).await;
    assert!(result.is_err());
    let refused = HttpTarget::parse("http://127.0.0.1:1/").await.unwrap();
    assert_eq!(http::send(&refused, &Request::get("/")).await.unwrap_err(), HttpError::Refused);
}
