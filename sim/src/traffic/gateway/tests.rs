//! HTTPRoute routing beyond the conformance cases: precedence corner cases, hostnames and
//! listeners, invalid backends, lagging proxies, mirror percentages, the interaction with
//! VirtualServices, and the metrics.

use std::sync::Arc;

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};

use super::GatewayKey;
use crate::traffic::{
    Answer, Dataplane, Outcome, Pod, ProxyView, Request, ResponseFlag, Service, ServiceKey, ServicePort, Snapshot,
};
use forklane_core::gateway::HttpRoute;
use forklane_core::istio::VirtualService;

const NS: &str = "shop";

fn service(name: &str, ports: &[i32]) -> Service {
    Service {
        namespace: NS.into(),
        name: name.into(),
        selector: [("app".to_string(), name.to_string())].into(),
        ports: ports.iter().map(|&port| ServicePort { name: None, port, node_port: None }).collect(),
        service_type: "ClusterIP".into(),
    }
}

/// `n` ready pods `<app>-<i>` behind Service `<app>`.
fn pods(app: &str, n: usize) -> Vec<Pod> {
    (0..n).map(|i| Pod::ready(NS, &format!("{app}-{i}"), &[("app", app)], app)).collect()
}

fn route(yaml: &str) -> HttpRoute {
    serde_yaml_ng::from_str(yaml).expect("an HTTPRoute")
}

/// A route in `shop` named `name`, created at `created` (seconds into 2026), attached to
/// `parent` (YAML of one parentRef), with `rules` (YAML of the rules list, indented by 2).
fn route_at(name: &str, created: u32, parent: &str, rules: &str) -> HttpRoute {
    route(&format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: {name}\n  namespace: {NS}\n  \
         creationTimestamp: \"2026-01-01T00:00:{created:02}Z\"\nspec:\n  parentRefs:\n  - {parent}\n  rules:\n{rules}"
    ))
}

const TO_MY_APP: &str = "{group: \"\", kind: Service, name: my-app}";
const TO_GW: &str = "{name: gw}";

fn gateway() -> Value {
    json!({"metadata": {"name": "gw", "namespace": NS}, "spec": {"listeners": [
        {"name": "http", "port": 80, "protocol": "HTTP"},
        {"name": "admin", "port": 8080, "protocol": "HTTP", "hostname": "admin.example.com"}]}})
}

/// `my-app` (ports 80 and 9090) and backends `a`, `b`, `c` (port 80), two pods each.
fn cluster(routes: &[HttpRoute], vss: &[VirtualService]) -> Arc<Snapshot> {
    let mut services = vec![service("my-app", &[80, 9090])];
    let mut all = pods("my-app", 2);
    for b in ["a", "b", "c"] {
        services.push(service(b, &[80]));
        all.extend(pods(b, 2));
    }
    Arc::new(Snapshot::new(services, all, vss, &[]).with_gateway_api(routes, &[gateway()]).with_mesh(true))
}

fn answered(outcome: Outcome) -> Answer {
    match outcome {
        Outcome::Answered(a) => a,
        Outcome::Refused => panic!("refused"),
    }
}

fn mesh(snap: &Arc<Snapshot>, req: &Request, seed: u64) -> Answer {
    let mut rng = StdRng::seed_from_u64(seed);
    answered(Dataplane::default().handle(snap, &ServiceKey::new(NS, "my-app"), req, &mut rng))
}

fn via_gateway(snap: &Snapshot, req: &Request, seed: u64) -> Outcome {
    let mut rng = StdRng::seed_from_u64(seed);
    Dataplane::default().handle_gateway(snap, &GatewayKey::new(NS, "gw"), req, &mut rng)
}

/// The backend (app) that answered, or the status of the proxy's own reply.
fn reached(answer: &Answer) -> String {
    match &answer.served {
        Some(s) => s.version.clone(),
        None => answer.response.status.to_string(),
    }
}

fn backend_rule(matches: &str, backend: &str) -> String {
    format!("  - matches: {matches}\n    backendRefs: [{{name: {backend}, port: 80}}]\n")
}

#[test]
fn an_exact_path_beats_any_prefix_and_a_longer_prefix_a_shorter_one() {
    let rules = [
        backend_rule("[{path: {type: PathPrefix, value: /}}]", "a"),
        backend_rule("[{path: {type: PathPrefix, value: /api}}]", "b"),
        backend_rule("[{path: {type: Exact, value: /api}, headers: [{name: x, value: \"1\"}, {name: y, value: \"1\"}]}, {path: {type: Exact, value: /api}}]", "c"),
    ]
    .concat();
    let snap = cluster(&[route_at("r", 0, TO_MY_APP, &rules)], &[]);
    let reach = |path: &str| reached(&mesh(&snap, &Request::get(path), 0));
    assert_eq!(reach("/api"), "c", "exact, though listed last");
    assert_eq!(reach("/api/x"), "b", "the longer prefix");
    assert_eq!(reach("/apix"), "a", "a prefix matches whole segments");
    assert_eq!(reach("/"), "a");
}

#[test]
fn method_then_header_count_then_query_count_break_ties_between_equal_paths() {
    let rules = [
        backend_rule("[{headers: [{name: x, value: \"1\"}], queryParams: [{name: q, value: \"1\"}]}]", "a"),
        backend_rule("[{headers: [{name: x, value: \"1\"}, {name: y, value: \"1\"}]}]", "b"),
        backend_rule("[{method: GET}]", "c"),
    ]
    .concat();
    let snap = cluster(&[route_at("r", 0, TO_MY_APP, &rules)], &[]);
    let both = Request::get("/?q=1").header("X", "1").header("y", "1");
    assert_eq!(reached(&mesh(&snap, &both, 0)), "c", "a method match first");
    let mut post = both.clone();
    post.method = "POST".into();
    assert_eq!(reached(&mesh(&snap, &post, 0)), "b", "then more header matches");
    let one_header = Request { method: "POST".into(), ..Request::get("/?q=1").header("x", "1") };
    assert_eq!(reached(&mesh(&snap, &one_header, 0)), "a", "query parameters hold here");
    let no_query = Request { method: "POST".into(), ..Request::get("/?q=2").header("x", "1") };
    assert_eq!(mesh(&snap, &no_query, 0).response.status, 404);
}

#[test]
fn ties_go_to_the_oldest_route_then_by_namespace_and_name_then_rule_order() {
    let same = |backend| backend_rule("[{path: {type: PathPrefix, value: /p}}]", backend);
    let older = route_at("zz-older", 1, TO_MY_APP, &same("a"));
    let newer = route_at("aa-newer", 2, TO_MY_APP, &same("b"));
    let snap = cluster(&[newer.clone(), older], &[]);
    assert_eq!(reached(&mesh(&snap, &Request::get("/p"), 0)), "a", "the oldest route");
    let twin = route_at("ab-twin", 2, TO_MY_APP, &same("c"));
    let snap = cluster(&[twin, newer], &[]);
    assert_eq!(reached(&mesh(&snap, &Request::get("/p"), 0)), "b", "shop/aa-newer before shop/ab-twin");
    let snap = cluster(&[route_at("r", 0, TO_MY_APP, &[same("c"), same("a")].concat())], &[]);
    assert_eq!(reached(&mesh(&snap, &Request::get("/p"), 0)), "c", "the first rule");
}

#[test]
fn header_names_are_case_insensitive_and_regexes_match_the_whole_value() {
    let rules = [
        backend_rule("[{headers: [{name: X-Version, type: RegularExpression, value: \"v[0-9]\"}]}]", "a"),
        backend_rule("[{path: {type: RegularExpression, value: \"/items/[0-9]+\"}}]", "b"),
    ]
    .concat();
    let snap = cluster(&[route_at("r", 0, TO_MY_APP, &rules)], &[]);
    assert_eq!(reached(&mesh(&snap, &Request::get("/").header("x-version", "v2"), 0)), "a");
    assert_eq!(mesh(&snap, &Request::get("/").header("X-VERSION", "v10"), 0).response.status, 404, "full match");
    assert_eq!(reached(&mesh(&snap, &Request::get("/items/42?x=1"), 0)), "b");
    assert_eq!(mesh(&snap, &Request::get("/items/42/x"), 0).response.status, 404);
}

#[test]
fn a_route_attached_at_a_port_routes_only_requests_to_that_port() {
    let parent = "{group: \"\", kind: Service, name: my-app, port: 9090}";
    let snap = cluster(&[route_at("r", 0, parent, &backend_rule("[]", "a"))], &[]);
    let at = |authority: &str| reached(&mesh(&snap, &Request { authority: authority.into(), ..Request::get("/") }, 0));
    assert_eq!(at("my-app:9090"), "a");
    assert_eq!(at("my-app:80"), "my-app", "not routed: the Service's own endpoints");
    assert_eq!(at(""), "my-app", "port 80 by default");
}

#[test]
fn a_consumer_route_overrides_the_producer_route_for_its_namespace_only() {
    let producer = route_at("producer", 0, TO_MY_APP, &backend_rule("[]", "a"));
    // A route in namespace `web` for the Service of `shop`, to a backend of `shop`.
    let consumer = "  - backendRefs: [{name: b, namespace: shop, port: 80}]\n";
    let mut consumer = route_at("consumer", 0, "{group: \"\", kind: Service, name: my-app, namespace: shop}", consumer);
    consumer.metadata.namespace = Some("web".into());
    let snap = cluster(&[producer, consumer], &[]);
    let from = |ns: &str| {
        let mut rng = StdRng::seed_from_u64(0);
        let view = ProxyView::current(snap.clone());
        reached(&answered(Dataplane::default().handle_from(
            &view,
            ns,
            &ServiceKey::new(NS, "my-app"),
            &Request::get("/"),
            &mut rng,
        )))
    };
    assert_eq!(from("web"), "b", "the consumer route");
    assert_eq!(from("shop"), "a", "the producer route");
    assert_eq!(from("other"), "a", "the producer route");
}

#[test]
fn an_invalid_backend_gets_its_share_answered_500() {
    let rules = "  - backendRefs: [{name: a, port: 80}, {name: missing, port: 80}]\n";
    let snap = cluster(&[route_at("r", 0, TO_MY_APP, rules)], &[]);
    let answers: Vec<Answer> = (0..2000).map(|i| mesh(&snap, &Request::get("/"), i)).collect();
    let failed = answers.iter().filter(|a| a.response.status == 500).count();
    assert!((900..=1100).contains(&failed), "about half: {failed}");
    assert!(answers.iter().all(|a| a.response.status == 200 || (a.served.is_none() && a.flag == ResponseFlag::None)));
    for rules in [
        "  - backendRefs: [{name: missing, port: 80}]\n",
        "  - backendRefs: [{name: a, port: 81}]\n",
        "  - backendRefs: [{name: a}]\n",
        "  - backendRefs: [{group: example.com, kind: Bucket, name: a, port: 80}]\n",
        "  - backendRefs: [{name: a, port: 80, weight: 0}]\n",
        "  - matches: [{path: {value: /}}]\n",
        "  - filters: [{type: RequestRedirect, requestRedirect: {statusCode: 301}}]\n    backendRefs: [{name: a, port: 80}]\n",
    ] {
        let snap = cluster(&[route_at("r", 0, TO_MY_APP, rules)], &[]);
        for i in 0..20 {
            let answer = mesh(&snap, &Request::get("/"), i);
            assert_eq!((answer.response.status, answer.served), (500, None), "{rules}");
        }
    }
}

#[test]
fn a_backend_without_ready_endpoints_answers_503_uh() {
    let mut services = vec![service("my-app", &[80]), service("empty", &[80])];
    services[1].selector = [("app".to_string(), "nothing".to_string())].into();
    let routes = [route_at("r", 0, TO_MY_APP, &backend_rule("[]", "empty"))];
    let snap =
        Arc::new(Snapshot::new(services, pods("my-app", 1), &[], &[]).with_gateway_api(&routes, &[]).with_mesh(true));
    let answer = mesh(&snap, &Request::get("/"), 0);
    assert_eq!((answer.response.status, answer.flag), (503, ResponseFlag::NoHealthyUpstream));
}

#[test]
fn a_proxy_whose_clusters_lag_answers_503_nc_until_the_new_backend_arrives() {
    let before = Arc::new(Snapshot::new(vec![service("my-app", &[80])], pods("my-app", 2), &[], &[]).with_mesh(true));
    let routes = [route_at("r", 0, TO_MY_APP, &backend_rule("[]", "my-app-canary"))];
    let mut all = pods("my-app", 2);
    all.extend(pods("my-app-canary", 1));
    let after = Arc::new(
        Snapshot::new(vec![service("my-app", &[80]), service("my-app-canary", &[80])], all, &[], &[])
            .with_gateway_api(&routes, &[])
            .with_mesh(true),
    );
    let send = |view: &ProxyView| {
        let mut rng = StdRng::seed_from_u64(0);
        answered(Dataplane::default().handle_via(view, &ServiceKey::new(NS, "my-app"), &Request::get("/"), &mut rng))
    };
    let lagging = ProxyView { routes: after.clone(), clusters: before.clone(), current: after.clone() };
    let answer = send(&lagging);
    assert_eq!((answer.response.status, answer.flag), (503, ResponseFlag::NoClusterFound));
    assert_eq!(reached(&send(&ProxyView::current(after.clone()))), "my-app-canary");
    // Routes lagging instead: the proxy still balances over my-app.
    let old_routes = ProxyView { routes: before, clusters: after.clone(), current: after };
    assert_eq!(reached(&send(&old_routes)), "my-app");
}

#[test]
fn mirrors_copy_their_percentage_of_requests() {
    let mirror = |spec: &str| {
        format!(
            "  - filters: [{{type: RequestMirror, requestMirror: {{backendRef: {{name: b, port: 80}}{spec}}}}}]\n    backendRefs: [{{name: a, port: 80}}]\n"
        )
    };
    for (spec, expected) in [
        (", percent: 25", 0.25),
        (", fraction: {numerator: 1, denominator: 4}", 0.25),
        (", fraction: {numerator: 10}", 0.10),
        ("", 1.0),
        (", percent: 0", 0.0),
    ] {
        let snap = cluster(&[route_at("r", 0, TO_MY_APP, &mirror(spec))], &[]);
        let n = 4000;
        let mirrored = (0..n).filter(|&i| !mesh(&snap, &Request::get("/"), i).mirrored_to.is_empty()).count();
        let share = mirrored as f64 / n as f64;
        // A share's standard deviation is at most 0.008 here: ±0.04 is five of them.
        assert!((share - expected).abs() <= 0.04, "{spec}: {share}");
    }
    // A mirror to an unknown Service is skipped; the request is still routed.
    let snap = cluster(&[route_at("r", 0, TO_MY_APP, &mirror("").replace("name: b", "name: gone"))], &[]);
    let answer = mesh(&snap, &Request::get("/"), 0);
    assert_eq!((reached(&answer), answer.mirrored_to.len()), ("a".to_string(), 0));
}

#[test]
fn backend_header_filters_apply_after_the_backend_is_chosen() {
    let rules = "  - filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: X-Rule, value: r}]}}]\n    backendRefs:\n    - name: a\n      port: 80\n      filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {add: [{name: X-Backend, value: a}]}}]\n";
    let snap = cluster(&[route_at("r", 0, TO_MY_APP, rules)], &[]);
    let answer = mesh(&snap, &Request::get("/"), 0);
    assert_eq!(answer.response.header_values("x-rule").collect::<Vec<_>>(), ["r"]);
    assert_eq!(answer.response.header_values("x-backend").collect::<Vec<_>>(), ["a"]);
}

fn virtual_service(created: u32) -> VirtualService {
    serde_json::from_value(json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "my-app", "namespace": NS, "creationTimestamp": format!("2026-01-01T00:00:{created:02}Z")},
        "spec": {"hosts": ["my-app"], "http": [{"route": [{"destination": {"host": "c"}}]}]}}))
    .unwrap()
}

#[test]
fn of_an_httproute_and_a_virtual_service_for_one_service_the_older_routes() {
    let route = route_at("r", 5, TO_MY_APP, &backend_rule("[]", "a"));
    let snap = cluster(std::slice::from_ref(&route), &[virtual_service(9)]);
    assert_eq!(reached(&mesh(&snap, &Request::get("/"), 0)), "a", "the HTTPRoute is older");
    let snap = cluster(std::slice::from_ref(&route), &[virtual_service(1)]);
    assert_eq!(reached(&mesh(&snap, &Request::get("/"), 0)), "c", "the VirtualService is older");
    // An older route for another port leaves the VirtualService in force at port 80.
    let other_port =
        route_at("r", 5, "{group: \"\", kind: Service, name: my-app, port: 9090}", &backend_rule("[]", "a"));
    let snap = cluster(&[other_port], &[virtual_service(9)]);
    assert_eq!(reached(&mesh(&snap, &Request::get("/"), 0)), "c");
    let at_9090 = Request { authority: "my-app:9090".into(), ..Request::get("/") };
    assert_eq!(reached(&mesh(&snap, &at_9090, 0)), "a");
}

#[test]
fn gateway_listeners_hostnames_and_allowed_namespaces() {
    let rules = |b: &str| backend_rule("[]", b);
    let with_hosts = |name: &str, h: &str, b: &str| {
        let mut r = route_at(name, 0, TO_GW, &rules(b));
        r.spec.hostnames = (!h.is_empty()).then(|| vec![h.to_string()]);
        r
    };
    let mut foreign = route_at("foreign", 0, TO_GW, &rules("c"));
    foreign.metadata.namespace = Some("elsewhere".into());
    foreign.spec.parent_refs.as_mut().unwrap()[0].namespace = Some(NS.into());
    let only_any = with_hosts("any", "", "c");
    let mut section = route_at("admin", 0, "{name: gw, sectionName: admin}", &rules("c"));
    section.spec.hostnames = None;
    let routes = [
        with_hosts("wild", "*.example.com", "a"),
        with_hosts("exact", "foo.example.com", "b"),
        only_any,
        foreign,
        section,
    ];
    let snap = cluster(&routes, &[]);
    let to = |authority: &str, path: &str| match via_gateway(
        &snap,
        &Request { authority: authority.into(), ..Request::get(path) },
        0,
    ) {
        Outcome::Answered(a) => reached(&a),
        Outcome::Refused => "refused".into(),
    };
    assert_eq!(to("foo.example.com", "/"), "b", "the exact hostname");
    assert_eq!(to("FOO.example.com:80", "/"), "b", "hosts are case-insensitive, the port ignored");
    assert_eq!(to("bar.example.com", "/"), "a", "the wildcard");
    assert_eq!(to("deep.bar.example.com", "/"), "a", "a wildcard covers several labels");
    assert_eq!(to("example.com", "/"), "c", "not the bare suffix: the route for any host");
    assert_eq!(to("admin.example.com:8080", "/"), "c", "the admin listener's own route");
    assert_eq!(to("other.example.com:8080", "/"), "404", "no listener hostname matches");
    assert_eq!(to("foo.example.com:9999", "/"), "refused", "no listener on that port");
    let mut rng = StdRng::seed_from_u64(0);
    let unknown =
        Dataplane::default().handle_gateway(&snap, &GatewayKey::new(NS, "nope"), &Request::get("/"), &mut rng);
    assert_eq!(unknown, Outcome::Refused);
    // The foreign route is not admitted (allowedRoutes defaults to Same): removing the route for
    // any host leaves no route for example.com.
    let snap = cluster(&routes[3..4], &[]);
    assert!(matches!(via_gateway(&snap, &Request::get("/"), 0), Outcome::Answered(a) if a.response.status == 404));
}

#[test]
fn the_waypoint_reports_what_an_httproute_routed_under_the_backend_service() {
    let snap = cluster(&[route_at("r", 0, TO_MY_APP, &backend_rule("[{path: {value: /canary}}]", "a"))], &[]);
    let dataplane = Dataplane::default();
    let mut rng = StdRng::seed_from_u64(0);
    dataplane.handle(&snap, &ServiceKey::new(NS, "my-app"), &Request::get("/canary"), &mut rng);
    let text = dataplane.metrics.encode();
    let series = |reporter: &str, service: &str| {
        text.lines().any(|l| {
            l.starts_with("istio_requests_total{")
                && l.contains(&format!("reporter=\"{reporter}\""))
                && l.contains(&format!("destination_service_name=\"{service}\""))
                && l.contains(&format!("destination_service_namespace=\"{NS}\""))
        })
    };
    assert!(series("waypoint", "a") && series("source", "a"), "{text}");
    assert!(!series("destination", "a") && !series("waypoint", "my-app"), "{text}");
    // Without a route, the sidecar reports as before.
    let snap = cluster(&[], &[]);
    dataplane.handle(&snap, &ServiceKey::new(NS, "my-app"), &Request::get("/"), &mut rng);
    assert!(dataplane.metrics.encode().contains("reporter=\"destination\""));
}
