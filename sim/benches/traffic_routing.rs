//! Simulated requests per second through a VirtualService with 10 header rules and a weighted
//! split: the mesh decision alone, and the whole data plane (apps and metrics included).
//!
//! `cargo bench --bench traffic_routing` (harness = false: prints its own figures).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use forklane_core::istio::*;
use forklane_sim::traffic::{Dataplane, Pod, Request, Service, ServiceKey, ServicePort, Snapshot, mesh};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const NS: &str = "default";
const RULES: usize = 10;
const RUN: Duration = Duration::from_secs(2);

fn cluster() -> Snapshot {
    let arms = ["v1", "v2", "v3"];
    let pods = arms
        .iter()
        .flat_map(|v| {
            (0..3).map(move |i| Pod::ready(NS, &format!("my-app-{v}-{i}"), &[("app", "my-app"), ("version", v)], v))
        })
        .collect();
    let service = Service {
        namespace: NS.into(),
        name: "my-app".into(),
        selector: BTreeMap::from([("app".into(), "my-app".into())]),
        ports: vec![ServicePort { name: None, port: 80, node_port: None }],
        service_type: "ClusterIP".into(),
    };
    let meta = kube::api::ObjectMeta { name: Some("my-app".into()), namespace: Some(NS.into()), ..Default::default() };
    let subsets = arms
        .iter()
        .map(|v| DestinationRuleSubsets {
            name: v.to_string(),
            labels: Some(BTreeMap::from([("version".into(), v.to_string())])),
            ..Default::default()
        })
        .collect();
    let dr = DestinationRule {
        metadata: meta.clone(),
        spec: DestinationRuleSpec { host: "my-app".into(), subsets: Some(subsets), ..Default::default() },
        status: None,
    };
    let to = |v: &str, weight| VirtualServiceHttpRoute {
        destination: VirtualServiceHttpRouteDestination { host: "my-app".into(), subset: Some(v.into()), port: None },
        weight: Some(weight),
        headers: None,
    };
    // Ten rules of the kinds experiments use: exact headers, prefixes, whole-value regexes (cookies).
    let mut http: Vec<VirtualServiceHttp> = (0..RULES)
        .map(|i| {
            let (name, m) = match i % 3 {
                0 => (
                    format!("x-group-{i}"),
                    VirtualServiceHttpMatchHeaders { exact: Some("beta".into()), ..Default::default() },
                ),
                1 => (
                    "user-agent".to_string(),
                    VirtualServiceHttpMatchHeaders { prefix: Some(format!("rule-{i}/")), ..Default::default() },
                ),
                _ => (
                    "cookie".to_string(),
                    VirtualServiceHttpMatchHeaders {
                        regex: Some(format!(r"^(.*?;\s*)?(pin-{i}=(v2))(;.*)?$")),
                        ..Default::default()
                    },
                ),
            };
            VirtualServiceHttp {
                r#match: Some(vec![VirtualServiceHttpMatch {
                    headers: Some(BTreeMap::from([(name, m)])),
                    ..Default::default()
                }]),
                route: Some(vec![to(["v2", "v3"][i % 2], 100)]),
                ..Default::default()
            }
        })
        .collect();
    http.push(VirtualServiceHttp { route: Some(vec![to("v1", 80), to("v2", 10), to("v3", 10)]), ..Default::default() });
    let vs = VirtualService {
        metadata: meta,
        spec: VirtualServiceSpec { hosts: Some(vec!["my-app".into()]), http: Some(http), ..Default::default() },
        status: None,
    };
    Snapshot::new(vec![service], pods, &[vs], &[dr]).with_mesh(true)
}

/// A mix: most requests match no rule (all ten are tried), some match the last ones.
fn requests() -> Vec<Request> {
    let base = || {
        Request::get("/")
            .header("user-agent", "Mozilla/5.0 (X11; Linux x86_64) Chrome/124.0")
            .header("cookie", "session=abc123; forklane-checkout=v1; theme=dark")
            .header("x-region", "eu-west-1")
    };
    let mut out: Vec<Request> = (0..8).map(|_| base()).collect();
    out.push(base().header("x-group-9", "beta"));
    out.push(Request::get("/").header("cookie", "a=1; pin-8=v2"));
    out
}

fn measure(name: &str, mut step: impl FnMut(usize)) {
    let start = Instant::now();
    let mut n = 0usize;
    while start.elapsed() < RUN {
        for _ in 0..1000 {
            step(n);
            n += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!("{name:<44} {:>12.0} requests/s ({n} in {secs:.2}s)", n as f64 / secs);
}

fn main() {
    let snap = cluster();
    let service = ServiceKey::new(NS, "my-app");
    let entry = snap.service(&service).expect("the Service exists");
    let reqs = requests();
    let mut rng = StdRng::seed_from_u64(1);
    println!("VirtualService with {RULES} header rules and a 80/10/10 split");
    let mut routed = 0usize;
    measure("mesh decision (route + subset + pod)", |i| {
        let decision = mesh::route(&snap, &service, entry, &reqs[i % reqs.len()], &mut rng);
        routed += usize::from(decision.primary.is_ok());
    });
    assert!(routed > 0);
    let dataplane = Dataplane::default();
    measure("whole data plane (apps, metrics)", |i| {
        let outcome = dataplane.handle(&snap, &service, &reqs[i % reqs.len()], &mut rng);
        assert!(outcome.answer().is_some());
    });
    let shares = dataplane.metrics.recorded();
    let total: u64 = shares.versions.values().map(|v| v.requests).sum();
    let v1 = shares.versions.get("v1").map_or(0, |v| v.requests);
    println!("share of v1: {:.3} (80% of the 80% matching no rule: 0.640)", v1 as f64 / total as f64);
    // Keeps the random generator's state observable, so the loop is not optimised away.
    std::hint::black_box(rng.random::<u64>());
}
