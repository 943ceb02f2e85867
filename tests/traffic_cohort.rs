//! The cohort dimension of the simulated mesh (issue 11, interface 1): VirtualService routes set
//! `x-forklane-cohort` (overwriting what a client sent), a Telemetry turns it into the
//! `forklane_cohort` label of the destination-reported Istio metrics, mirrored copies are told
//! apart by their `-shadow` host, and the apps copy the header into their own counters.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use forklane_core::istio::*;
use forklane_sim::traffic::{
    ClusterView, Dataplane, Outcome, Pod, Request, Service, ServiceKey, ServicePort, Snapshot,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};

const NS: &str = "shop";
const COHORT: &str = "x-forklane-cohort";
/// The expression of the experiment contract.
const EXPR: &str = "request.host.matches('-shadow(:[0-9]+)?$') ? 'mirrored' : ('x-forklane-cohort' in request.headers ? request.headers['x-forklane-cohort'] : 'none')";
const COOKIE: &str = "forklane-checkout";

fn key() -> ServiceKey {
    ServiceKey::new(NS, "checkout")
}

fn service() -> Service {
    Service {
        namespace: NS.into(),
        name: "checkout".into(),
        selector: BTreeMap::from([("app".into(), "checkout".into())]),
        ports: vec![ServicePort { name: Some("http".into()), port: 80, node_port: None }],
        service_type: "ClusterIP".into(),
    }
}

fn pod(version: &str, i: usize) -> Pod {
    Pod {
        owner: Some(format!("checkout-{version}-5d4f8b7c9")),
        ..Pod::ready(
            NS,
            &format!("checkout-{version}-5d4f8b7c9-{i}"),
            &[("app", "checkout"), ("version", version)],
            version,
        )
    }
}

fn meta() -> kube::api::ObjectMeta {
    kube::api::ObjectMeta { name: Some("checkout".into()), namespace: Some(NS.into()), ..Default::default() }
}

fn destination_rule() -> DestinationRule {
    let subset = |v: &str| DestinationRuleSubsets {
        name: v.into(),
        labels: Some(BTreeMap::from([("version".into(), v.into())])),
        ..Default::default()
    };
    DestinationRule {
        metadata: meta(),
        spec: DestinationRuleSpec {
            host: "checkout".into(),
            subsets: Some(vec![subset("v1"), subset("v2"), subset("shadow")]),
            ..Default::default()
        },
        status: None,
    }
}

fn set_request(header: &str, value: &str) -> VirtualServiceHttpHeaders {
    VirtualServiceHttpHeaders {
        request: Some(VirtualServiceHttpHeadersRequest {
            set: Some(BTreeMap::from([(header.into(), value.into())])),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn to(subset: &str, weight: Option<i32>) -> VirtualServiceHttpRoute {
    VirtualServiceHttpRoute {
        destination: VirtualServiceHttpRouteDestination {
            host: "checkout".into(),
            subset: Some(subset.into()),
            port: None,
        },
        weight,
        headers: None,
    }
}

fn header_match(name: &str, m: VirtualServiceHttpMatchHeaders) -> Option<Vec<VirtualServiceHttpMatch>> {
    Some(vec![VirtualServiceHttpMatch { headers: Some(BTreeMap::from([(name.to_string(), m)])), ..Default::default() }])
}

/// As the controller routes an A/B test with a targeting rule and sticky assignment: the rule
/// (region `eu` → v2, `targeted`), one pin per arm (the cookie → its arm, `returning`), the
/// weighted split (`assigned`, setting the cookie per arm) mirrored to a shadow subset.
fn virtual_service() -> VirtualService {
    let rule = VirtualServiceHttp {
        name: Some("rule-0".into()),
        r#match: header_match(
            "x-region",
            VirtualServiceHttpMatchHeaders { exact: Some("eu".into()), ..Default::default() },
        ),
        route: Some(vec![to("v2", None)]),
        headers: Some(set_request(COHORT, "targeted")),
        ..Default::default()
    };
    let pin = |arm: &str| VirtualServiceHttp {
        name: Some(format!("sticky-{arm}")),
        r#match: header_match(
            "cookie",
            VirtualServiceHttpMatchHeaders { regex: Some(format!(".*{COOKIE}={arm}.*")), ..Default::default() },
        ),
        route: Some(vec![to(arm, None)]),
        headers: Some(set_request(COHORT, "returning")),
        ..Default::default()
    };
    let assign = |arm: &str| VirtualServiceHttpRoute {
        headers: Some(VirtualServiceHttpRouteHeaders {
            response: Some(VirtualServiceHttpRouteHeadersResponse {
                add: Some(BTreeMap::from([("set-cookie".into(), format!("{COOKIE}={arm}; Max-Age=86400"))])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..to(arm, Some(50))
    };
    let split = VirtualServiceHttp {
        name: Some("split".into()),
        route: Some(vec![assign("v1"), assign("v2")]),
        headers: Some(set_request(COHORT, "assigned")),
        mirror: Some(VirtualServiceHttpMirror { host: "checkout".into(), subset: Some("shadow".into()), port: None }),
        ..Default::default()
    };
    VirtualService {
        metadata: meta(),
        spec: VirtualServiceSpec {
            hosts: Some(vec!["checkout".into()]),
            http: Some(vec![rule, pin("v1"), pin("v2"), split]),
            ..Default::default()
        },
        status: None,
    }
}

/// The Telemetry the contract has the controller write.
fn telemetry() -> Value {
    json!({
        "apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry",
        "metadata": {"name": "forklane-checkout", "namespace": NS},
        "spec": {
            "selector": {"matchLabels": {"app": "checkout"}},
            "metrics": [{"providers": [{"name": "prometheus"}], "overrides": [{
                "match": {"metric": "ALL_METRICS", "mode": "SERVER"},
                "tagOverrides": {"forklane_cohort": {"operation": "UPSERT", "value": EXPR}},
            }]}],
        },
    })
}

fn snapshot(telemetries: &[Value]) -> Snapshot {
    let pods = vec![pod("v1", 0), pod("v1", 1), pod("v2", 0), pod("shadow", 0)];
    Snapshot::new(vec![service()], pods, &[virtual_service()], &[destination_rule()])
        .with_mesh(true)
        .with_telemetry(telemetries)
}

/// The value of `label` in one exposition line.
fn label<'l>(line: &'l str, label: &str) -> Option<&'l str> {
    let start = line.find(&format!("{label}=\""))? + label.len() + 2;
    Some(&line[start..start + line[start..].find('"')?])
}

/// The destination-reported `istio_requests_total` series of the exposition.
fn destination_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines().filter(|l| l.starts_with("istio_requests_total{") && l.contains(r#"reporter="destination""#))
}

/// `sum by (version label, forklane_cohort) (metric{filter})` over the exposition.
fn by_version_and_cohort(text: &str, metric: &str, version: &str, filter: &str) -> BTreeMap<(String, String), u64> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with(&format!("{metric}{{")) && l.contains(filter)) {
        let (v, cohort) =
            (label(line, version).unwrap().to_string(), label(line, "forklane_cohort").unwrap().to_string());
        let value: f64 = line.rsplit_once(' ').unwrap().1.parse().unwrap();
        *out.entry((v, cohort)).or_default() += value as u64;
    }
    out
}

/// What the users did, as the simulation's clients saw it: per (arm, cohort).
#[derive(Default)]
struct Truth {
    expected: BTreeMap<(String, String), u64>,
    /// Copies sent to the shadow subset.
    mirrored: u64,
}

impl Truth {
    fn add(&mut self, arm: &str, cohort: &str) {
        *self.expected.entry((arm.to_string(), cohort.to_string())).or_default() += 1;
    }
}

/// 300 users, a fifth of them in region `eu`, each visiting 1 to 5 times and keeping the
/// assignment cookie; every third user also sends a forged cohort header, which routes overwrite.
fn drive(dataplane: &Dataplane, snap: &Snapshot) -> Truth {
    let mut rng = StdRng::seed_from_u64(11);
    let mut truth = Truth::default();
    for user in 0..300 {
        let eu = user % 5 == 0;
        let mut cookie: Option<String> = None;
        for visit in 0..1 + user % 5 {
            let mut req = Request::get("/").header("x-user-id", &format!("user-{user}"));
            if eu {
                req = req.header("x-region", "eu");
            }
            if user % 3 == 0 {
                req = req.header(COHORT, "forged");
            }
            if let Some(c) = &cookie {
                req = req.header("cookie", c);
            }
            let Outcome::Answered(answer) = dataplane.handle(snap, &key(), &req, &mut rng) else { panic!("refused") };
            let arm = answer.response.version().expect("a pod answered").to_string();
            let cohort = match (eu, visit) {
                (true, _) => "targeted",
                (false, 0) => "assigned",
                (false, _) => "returning",
            };
            truth.add(&arm, cohort);
            truth.mirrored += answer.mirrored_to.len() as u64;
            if let Some(set) = answer.response.header_values("set-cookie").next() {
                cookie = Some(set.split(';').next().unwrap().to_string());
            }
        }
    }
    truth
}

#[test]
fn the_cohort_label_counts_first_exposures_returns_rule_traffic_and_copies_per_arm() {
    let start = Instant::now();
    let snap = snapshot(&[telemetry()]);
    let dataplane = Dataplane::default();
    let truth = drive(&dataplane, &snap);
    let text = dataplane.metrics.encode();

    let assigned_users = 240; // users not in `eu`: each one split-routed once
    let assigned: u64 = truth.expected.iter().filter(|((_, c), _)| c == "assigned").map(|(_, n)| n).sum();
    assert_eq!(assigned, assigned_users, "every other user is assigned exactly once");
    assert_eq!(truth.mirrored, assigned_users, "the split route mirrors every first exposure");
    assert!(truth.expected[&("v1".into(), "assigned".into())] > 80, "both arms get users: {:?}", truth.expected);
    assert!(truth.expected[&("v2".into(), "returning".into())] > 80, "{:?}", truth.expected);

    let mut expected = truth.expected.clone();
    expected.insert(("shadow".into(), "mirrored".into()), truth.mirrored);
    let istio =
        by_version_and_cohort(&text, "istio_requests_total", "destination_version", r#"reporter="destination""#);
    assert_eq!(istio, expected, "destination-reported istio_requests_total by (version, cohort)");
    let duration = by_version_and_cohort(
        &text,
        "istio_request_duration_milliseconds_count",
        "destination_version",
        r#"reporter="destination""#,
    );
    assert_eq!(duration, expected, "the duration histogram has the same dimension");
    assert!(
        text.lines().filter(|l| l.contains(r#"reporter="source""#)).all(|l| !l.contains("forklane_cohort")),
        "a SERVER-mode override leaves the source-reported series alone"
    );

    // The apps copy the header they receive: a mirrored copy carries the split route's `assigned`.
    let mut app_expected = truth.expected.clone();
    app_expected.insert(("shadow".into(), "assigned".into()), truth.mirrored);
    assert_eq!(by_version_and_cohort(&text, "http_requests_total", "version", ""), app_expected);
    let visits = by_version_and_cohort(&text, "visits_total", "version", "");
    assert_eq!(visits, truth.expected, "mirrored copies are no visits");
    assert!(!text.contains("forged"), "the routes overwrite a cohort the client sent");
    assert!(start.elapsed() < Duration::from_secs(30));
}

#[test]
fn without_a_telemetry_istio_metrics_keep_their_standard_labels() {
    let snap = snapshot(&[]);
    let dataplane = Dataplane::default();
    let truth = drive(&dataplane, &snap);
    let text = dataplane.metrics.encode();
    assert!(text.lines().filter(|l| l.starts_with("istio_")).all(|l| !l.contains("forklane_cohort")), "{text}");
    // The apps still see the header the routes set.
    let app = by_version_and_cohort(&text, "visits_total", "version", "");
    assert_eq!(app, truth.expected);
    let keys: Vec<(&str, &str)> = app.keys().map(|(v, c)| (v.as_str(), c.as_str())).collect();
    assert_eq!(
        keys,
        [("v1", "assigned"), ("v1", "returning"), ("v2", "assigned"), ("v2", "returning"), ("v2", "targeted")]
    );
}

#[test]
fn without_the_header_the_apps_say_none_and_a_broken_expression_says_unknown() {
    // No VirtualService: nothing sets the header.
    let pods = vec![pod("v1", 0)];
    let mut broken = telemetry();
    broken["spec"]["metrics"][0]["overrides"][0]["tagOverrides"]["forklane_cohort"]["value"] =
        json!("request.headers['x-forklane-cohort'] | 'none'");
    let snap = Snapshot::new(vec![service()], pods, &[], &[]).with_mesh(true).with_telemetry(&[broken]);
    let dataplane = Dataplane::default();
    let mut rng = StdRng::seed_from_u64(3);
    for _ in 0..10 {
        dataplane.handle(&snap, &key(), &Request::get("/"), &mut rng);
    }
    let text = dataplane.metrics.encode();
    let istio =
        by_version_and_cohort(&text, "istio_requests_total", "destination_version", r#"reporter="destination""#);
    assert_eq!(istio, BTreeMap::from([(("v1".into(), "unknown".into()), 10)]));
    let app = by_version_and_cohort(&text, "http_requests_total", "version", "");
    assert_eq!(app, BTreeMap::from([(("v1".into(), "none".into()), 10)]));
}

#[test]
fn telemetry_tags_never_make_duplicate_series() {
    // Overwriting or removing the labels that tell workloads apart merges their series into one;
    // setting a label to its own value changes nothing.
    let mut t = telemetry();
    t["spec"]["metrics"][0]["overrides"][0]["tagOverrides"] = json!({
        "destination_workload": {"operation": "REMOVE"},
        "destination_version": {"value": "'same'"},
        "request_protocol": {"value": "'http'"},
        "connection_security_policy": {"operation": "REMOVE"},
    });
    let snap = snapshot(&[t]);
    let dataplane = Dataplane::default();
    let truth = drive(&dataplane, &snap);
    let text = dataplane.metrics.encode();
    let series: Vec<&str> =
        text.lines().filter(|l| !l.starts_with('#')).map(|l| l.rsplit_once(' ').unwrap().0).collect();
    let mut seen = HashMap::new();
    for s in &series {
        *seen.entry(*s).or_insert(0) += 1;
    }
    assert!(seen.values().all(|n| *n == 1), "{text}");
    let destination: Vec<&str> = destination_lines(&text).collect();
    assert_eq!(destination.len(), 1, "{destination:?}");
    let line = destination[0];
    assert_eq!(label(line, "destination_version"), Some("same"), "{line}");
    assert_eq!(label(line, "request_protocol"), Some("http"), "{line}");
    assert_eq!((label(line, "destination_workload"), label(line, "connection_security_policy")), (None, None));
    let requests: u64 = truth.expected.values().sum::<u64>() + truth.mirrored;
    assert!(line.ends_with(&format!(" {requests}")), "{line}: {requests}");
}

/// The sandbox serves the Telemetry CRD with the other Istio CRDs, and the data plane follows
/// the Telemetries written to the cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_serves_telemetries_and_the_data_plane_applies_them() {
    use forklane_sim::sandbox::{Sandbox, apply_yaml};
    let sandbox = Sandbox::start(true, 10.0, false).await.unwrap();
    let deployment = |v: &str| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": format!("checkout-{v}"), "namespace": NS},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "checkout", "version": v}},
                "template": {"metadata": {"labels": {"app": "checkout", "version": v}},
                    "spec": {"containers": [{"name": "app", "image": "containersol/k8s-deployment-strategies",
                        "env": [{"name": "VERSION", "value": v}]}]}}}})
    };
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "checkout", "namespace": NS},
        "spec": {"selector": {"app": "checkout"}, "ports": [{"name": "http", "port": 80}]}});
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}});
    let mut vs = serde_json::to_value(virtual_service()).unwrap();
    vs["apiVersion"] = json!("networking.istio.io/v1");
    vs["kind"] = json!("VirtualService");
    let mut dr = serde_json::to_value(destination_rule()).unwrap();
    dr["apiVersion"] = json!("networking.istio.io/v1");
    dr["kind"] = json!("DestinationRule");
    let objects = [ns, svc, deployment("v1"), deployment("v2"), deployment("shadow"), dr, vs, telemetry()];
    for o in objects {
        apply_yaml(&sandbox.client, &serde_json::to_string(&o).unwrap(), NS).await.unwrap_or_else(|e| panic!("{e}"));
    }
    let net = sandbox.net();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut rng = StdRng::seed_from_u64(5);
    loop {
        let snap = net.feed.view().snapshot();
        let answered = net.dataplane.handle(&snap, &key(), &Request::get("/"), &mut rng);
        let text = net.dataplane.metrics.encode();
        let mirrored = text.lines().any(|l| {
            l.starts_with("istio_requests_total{")
                && label(l, "destination_version") == Some("shadow")
                && label(l, "forklane_cohort") == Some("mirrored")
        });
        if answered.answer().is_some_and(|a| a.response.status == 200) && mirrored {
            // Requests served before the Telemetry reached the sidecars carry no cohort, as
            // with Istio; from now on none may be added to those series.
            let untagged = |text: &str| -> Vec<String> {
                destination_lines(text).filter(|l| label(l, "forklane_cohort").is_none()).map(String::from).collect()
            };
            let before = untagged(&text);
            for _ in 0..20 {
                net.dataplane.handle(&snap, &key(), &Request::get("/"), &mut rng);
            }
            let text = net.dataplane.metrics.encode();
            assert_eq!(untagged(&text), before, "requests after the Telemetry applied lack the cohort");
            let cohorts: BTreeSet<&str> =
                destination_lines(&text).filter_map(|l| label(l, "forklane_cohort")).collect();
            assert!(cohorts.iter().all(|c| *c == "assigned" || *c == "mirrored"), "{cohorts:?}\n{text}");
            break;
        }
        assert!(Instant::now() < deadline, "no cohort label on the mesh metrics; last answer {answered:?}\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sandbox.shutdown().await;
}

#[test]
fn request_header_changes_of_destination_and_route_reach_the_pod() {
    let ops = |set: &[(&str, &str)], add: &[(&str, &str)], remove: &[&str]| {
        let map = |kv: &[(&str, &str)]| Some(kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        (map(set), map(add), Some(remove.iter().map(|h| h.to_string()).collect::<Vec<_>>()))
    };
    let (set, add, remove) = ops(&[("X-A", "destination"), ("x-b", "destination")], &[], &[]);
    let destination = VirtualServiceHttpRoute {
        headers: Some(VirtualServiceHttpRouteHeaders {
            request: Some(VirtualServiceHttpRouteHeadersRequest { set, add, remove }),
            ..Default::default()
        }),
        ..to("v1", None)
    };
    let (set, add, remove) = ops(&[("x-a", "route")], &[("x-c", "added")], &["x-d"]);
    let route = VirtualServiceHttp {
        route: Some(vec![destination]),
        headers: Some(VirtualServiceHttpHeaders {
            request: Some(VirtualServiceHttpHeadersRequest { set, add, remove }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let vs = VirtualService {
        spec: VirtualServiceSpec { http: Some(vec![route]), ..virtual_service().spec },
        ..virtual_service()
    };
    // The pod's sidecar reports what it received, one tag per header.
    let mut t = telemetry();
    t["spec"]["metrics"][0]["overrides"][0]["tagOverrides"] = ["x-a", "x-b", "x-c", "x-d"]
        .iter()
        .map(|h| {
            let expr = format!("'{h}' in request.headers ? request.headers['{h}'] : 'absent'");
            (h.replace('-', "_"), json!({"value": expr}))
        })
        .collect::<serde_json::Map<_, _>>()
        .into();
    let snap = Snapshot::new(vec![service()], vec![pod("v1", 0)], &[vs], &[destination_rule()])
        .with_mesh(true)
        .with_telemetry(&[t]);
    let dataplane = Dataplane::default();
    let req = Request::get("/").header("x-a", "client").header("x-c", "client").header("x-d", "client");
    let answer = dataplane.handle(&snap, &key(), &req, &mut StdRng::seed_from_u64(1));
    assert_eq!(answer.answer().map(|a| a.response.status), Some(200));
    let text = dataplane.metrics.encode();
    let line = text
        .lines()
        .find(|l| l.starts_with("istio_requests_total{") && l.contains(r#"reporter="destination""#))
        .unwrap();
    let seen: Vec<Option<&str>> = ["x_a", "x_b", "x_c", "x_d"].iter().map(|h| label(line, h)).collect();
    // `set` overwrites the client's value and the route's wins over the destination's; `add`
    // appends to what the client sent; `remove` drops it.
    assert_eq!(seen, [Some("route"), Some("destination"), Some("client,added"), Some("absent")], "{line}");
}
