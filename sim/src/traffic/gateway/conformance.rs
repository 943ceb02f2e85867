//! The Gateway API's own conformance cases (v1.6.1, vendored in
//! `tests/reference/gateway-api/conformance/`), run against the simulated data plane: the routes
//! and backends are read from the vendored YAML, with simulated pods behind every Deployment of
//! the base manifests (each answers with its pod name, `<deployment>-<i>`, which identifies the
//! backend); the requests and expectations of each `.go` file are transcribed below, and each
//! transcription is checked against the `.go` source (every path it sends is there, and as many
//! requests). Gateway cases enter through the `same-namespace` Gateway; mesh cases are sent by a
//! client in the route's namespace to the Service named by the `Host` (`echo` by default, as the
//! conformance echo client does).

use std::collections::BTreeMap;
use std::sync::Arc;

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Deserialize;
use serde_json::{Value, json};

use super::GatewayKey;
use crate::traffic::app::ECHO_SET_HEADER;
use crate::traffic::lag::Views;
use crate::traffic::{Answer, Dataplane, Outcome, ProxyView, Request, ResponseFlag, ServiceKey, Snapshot};

macro_rules! vendored {
    ($file:literal) => {
        include_str!(concat!("../../../../tests/reference/gateway-api/conformance/", $file))
    };
}

const BASE: &str = vendored!("base-manifests.yaml");
const MESH_BASE: &str = vendored!("mesh/base-manifests.yaml");
const INFRA: &str = "gateway-conformance-infra";
const MESH: &str = "gateway-conformance-mesh";
const CONSUMER: &str = "gateway-conformance-mesh-consumer";

/// The documents of multi-document YAML.
fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|doc| Value::deserialize(doc).expect("vendored YAML parses"))
        .filter(|v| !v.is_null())
        .collect()
}

/// Ready pods for a Deployment: `replicas` of them, named `<deployment>-<i>`, with its template's
/// labels.
fn pods_of(deployment: &Value) -> Vec<Value> {
    let (name, namespace) = (&deployment["metadata"]["name"], &deployment["metadata"]["namespace"]);
    let replicas = deployment["spec"]["replicas"].as_u64().unwrap_or(1);
    (0..replicas)
        .map(|i| {
            json!({"metadata": {"name": format!("{}-{i}", name.as_str().unwrap()), "namespace": namespace,
                    "labels": deployment["spec"]["template"]["metadata"]["labels"],
                    "ownerReferences": [{"kind": "ReplicaSet", "name": format!("{}-5d8f7", name.as_str().unwrap()), "controller": true}]},
                "spec": {"containers": [{"name": "echo", "env": [{"name": "VERSION", "value": name}]}]},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
        })
        .collect()
}

/// The mesh snapshot of the base manifests plus `yamls` (routes).
fn load(yamls: &[&str]) -> Arc<Snapshot> {
    let mut by_kind: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for doc in yamls.iter().flat_map(|y| documents(y)) {
        by_kind.entry(doc["kind"].as_str().unwrap_or_default().to_string()).or_default().push(doc);
    }
    let get = |kind: &str| by_kind.get(kind).cloned().unwrap_or_default();
    let pods: Vec<Value> = get("Deployment").iter().flat_map(pods_of).collect();
    let snap = Snapshot::from_objects(&get("Service"), &pods, &[], &[], &[])
        .with_gateway_objects(&get("HTTPRoute"), &get("Gateway"))
        .with_mesh(true);
    Arc::new(snap)
}

/// The backend (Deployment) of a pod `<deployment>-<i>`.
fn backend(pod: &str) -> &str {
    pod.rsplit_once('-').map_or(pod, |(deployment, _)| deployment)
}

/// One request of a `.go` file and what it must get.
struct Case {
    method: &'static str,
    path: &'static str,
    /// The `Host`; empty: the default (the Gateway's address, or `echo` in the mesh).
    host: &'static str,
    headers: &'static [(&'static str, &'static str)],
    expect: Expect,
}

#[derive(Debug, PartialEq)]
enum Expect {
    Backend(&'static str),
    Status(u16),
}
use Expect::{Backend, Status};

const fn get(path: &'static str, headers: &'static [(&'static str, &'static str)], expect: Expect) -> Case {
    Case { method: "GET", path, host: "", headers, expect }
}

const fn with_method(
    method: &'static str,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    expect: Expect,
) -> Case {
    Case { method, path, host: "", headers, expect }
}

impl Case {
    fn request(&self, default_host: &str) -> Request {
        let mut req = Request::get(self.path);
        req.method = self.method.into();
        req.authority = if self.host.is_empty() { default_host.into() } else { self.host.into() };
        self.headers.iter().fold(req, |r, (n, v)| r.header(n, v))
    }
}

/// Checks that every path of `cases` appears in the `.go` source, and that it sends as many
/// requests (an `http.Request{...}` per case, apart from those inside `ExpectedRequest`).
fn transcribed_from(go: &str, paths: &[&str]) {
    let requests = go.matches("http.Request{").count() - go.matches("ExpectedRequest: &http.ExpectedRequest{").count();
    assert_eq!(requests, paths.len(), "the .go file sends {requests} requests");
    for path in paths {
        assert!(go.contains(&format!("Path: \"{path}\"")) || *path == "/", "{path} is not in the .go file");
    }
}

fn answered(outcome: Outcome) -> Answer {
    match outcome {
        Outcome::Answered(a) => a,
        Outcome::Refused => panic!("refused"),
    }
}

fn through_gateway(snap: &Snapshot, req: &Request, seed: u64) -> Answer {
    let mut rng = StdRng::seed_from_u64(seed);
    answered(Dataplane::default().handle_gateway(snap, &GatewayKey::new(INFRA, "same-namespace"), req, &mut rng))
}

fn in_mesh(snap: &Arc<Snapshot>, client_namespace: &str, req: &Request, seed: u64) -> Answer {
    let host = req.authority.split(':').next().unwrap_or_default();
    let service = ServiceKey::from_host(host, client_namespace).expect("a cluster host");
    let mut rng = StdRng::seed_from_u64(seed);
    let view = ProxyView::current(snap.clone());
    answered(Dataplane::default().handle_from(&view, client_namespace, &service, req, &mut rng))
}

fn check(answer: &Answer, expect: &Expect, what: &str) {
    match expect {
        Backend(b) => {
            assert_eq!(answer.response.status, 200, "{what}: {answer:?}");
            let served = answer.served.as_ref().unwrap_or_else(|| panic!("{what}: no pod answered"));
            assert_eq!(backend(&served.pod), *b, "{what}");
        }
        Status(code) => assert_eq!(answer.response.status, *code, "{what}: {answer:?}"),
    }
}

fn run_gateway_cases(yaml: &str, go: &str, cases: &[Case]) {
    transcribed_from(go, &cases.iter().map(|c| c.path).collect::<Vec<_>>());
    let snap = load(&[BASE, yaml]);
    for (i, case) in cases.iter().enumerate() {
        let req = case.request("");
        let answer = through_gateway(&snap, &req, i as u64);
        check(&answer, &case.expect, &format!("case {i}: {} {} {:?}", case.method, case.path, case.headers));
    }
}

/// The response's value of `name`, repeated headers joined with `,` as a client sees them.
fn response_header(answer: &Answer, name: &str) -> Option<String> {
    let values: Vec<&str> = answer.response.header_values(name).collect();
    (!values.is_empty()).then(|| values.join(","))
}

#[test]
fn httproute_matching() {
    let v1 = Backend("infra-backend-v1");
    let v2 = Backend("infra-backend-v2");
    let cases = [
        get("/", &[], Backend("infra-backend-v1")),
        get("/example", &[], Backend("infra-backend-v1")),
        get("/", &[("Version", "one")], v1),
        get("/v2", &[], Backend("infra-backend-v2")),
        get("/v2/example", &[], Backend("infra-backend-v2")),
        get("/", &[("Version", "two")], v2),
        get("/v2/", &[], Backend("infra-backend-v2")),
        get("/v2example", &[], Backend("infra-backend-v1")),
        get("/foo/v2/example", &[], Backend("infra-backend-v1")),
    ];
    run_gateway_cases(vendored!("httproute-matching.yaml"), vendored!("httproute-matching.go"), &cases);
}

#[test]
fn httproute_header_matching() {
    const V1: Expect = Backend("infra-backend-v1");
    const V2: Expect = Backend("infra-backend-v2");
    let cases = [
        get("/", &[("Version", "one")], V1),
        get("/", &[("Version", "two")], V2),
        get("/", &[("Version", "two"), ("Color", "orange")], V1),
        get("/", &[("Version", "two"), ("Color", "blue")], V2),
        get("/", &[("Color", "orange")], Status(404)),
        get("/", &[("Some-Other-Header", "one")], Status(404)),
        get("/", &[("Color", "blue")], V1),
        get("/", &[("Color", "green")], V1),
        get("/", &[("Color", "red")], V2),
        get("/", &[("Color", "yellow")], V2),
        get("/", &[("Color", "purple")], Status(404)),
    ];
    run_gateway_cases(vendored!("httproute-header-matching.yaml"), vendored!("httproute-header-matching.go"), &cases);
}

#[test]
fn httproute_method_matching() {
    const V1: Expect = Backend("infra-backend-v1");
    const V2: Expect = Backend("infra-backend-v2");
    const V3: Expect = Backend("infra-backend-v3");
    let cases = [
        with_method("POST", "/", &[], V1),
        with_method("GET", "/", &[], V2),
        with_method("HEAD", "/", &[], Status(404)),
        with_method("GET", "/path1", &[], V1),
        with_method("PUT", "/", &[("version", "one")], V2),
        with_method("POST", "/path2", &[("version", "two")], V3),
        with_method("PATCH", "/path3", &[], V1),
        with_method("DELETE", "/path4", &[("version", "three")], V1),
        with_method("PUT", "/", &[], Status(404)),
        with_method("DELETE", "/path4", &[], Status(404)),
        with_method("PATCH", "/path5", &[], V1),
        with_method("PATCH", "/", &[("version", "four")], V2),
    ];
    run_gateway_cases(vendored!("httproute-method-matching.yaml"), vendored!("httproute-method-matching.go"), &cases);
}

/// The request as the backend receives it, by the routing decision alone.
fn forwarded_through_gateway(snap: &Snapshot, req: &Request) -> Request {
    let routes = snap.gateway_api().gateway(&GatewayKey::new(INFRA, "same-namespace"), 80, "").expect("listener");
    let mut rng = StdRng::seed_from_u64(0);
    super::route::decide(Views::same(snap), routes.find(req), None, &mut rng).forwarded(req)
}

/// The request-header expectations of the mirror cases (and of the response-and-request modifier
/// case): added, appended, set and removed.
fn assert_modified_request(forwarded: &Request) {
    assert_eq!(forwarded.header_value("x-header-add").as_deref(), Some("header-val-1"));
    assert_eq!(forwarded.header_value("x-header-add-append").as_deref(), Some("append-val-1,header-val-2"));
    assert_eq!(forwarded.header_value("x-header-set").as_deref(), Some("set-overwrites-values"));
    assert_eq!(forwarded.header_value("x-header-remove"), None);
}

fn mirror_cases(yaml: &str, go: &str, paths: [&str; 2], mirrored: &[&str]) {
    transcribed_from(go, &paths);
    let snap = load(&[BASE, yaml]);
    for (i, path) in paths.iter().enumerate() {
        let mut req = Request::get(path);
        if i == 1 {
            req = req.header("X-Header-Remove", "remove-val").header("X-Header-Add-Append", "append-val-1");
        }
        let answer = through_gateway(&snap, &req, i as u64);
        check(&answer, &Backend("infra-backend-v1"), path);
        let to: Vec<&str> = answer.mirrored_to.iter().map(|s| backend(&s.pod)).collect();
        assert_eq!(to, mirrored, "{path}: mirrored to");
        let forwarded = forwarded_through_gateway(&snap, &req);
        if i == 1 {
            assert_modified_request(&forwarded);
        } else {
            assert_eq!(forwarded, req, "{path}: forwarded unchanged");
        }
    }
}

#[test]
fn httproute_request_mirror() {
    mirror_cases(
        vendored!("httproute-request-mirror.yaml"),
        vendored!("httproute-request-mirror.go"),
        ["/mirror", "/mirror-and-modify-headers"],
        &["infra-backend-v2"],
    );
}

#[test]
fn httproute_request_multiple_mirrors() {
    mirror_cases(
        vendored!("httproute-request-multiple-mirrors.yaml"),
        vendored!("httproute-request-multiple-mirrors.go"),
        ["/multi-mirror", "/multi-mirror-and-modify-request-headers"],
        &["infra-backend-v2", "infra-backend-v3"],
    );
}

/// A response-header case: the path, the headers the backend sets, the headers the client must
/// see, and those it must not.
type HeaderCase = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static [(&'static str, &'static str)],
    &'static [&'static str],
);

#[test]
fn httproute_response_header_modifier() {
    let cases: [HeaderCase; 8] = [
        (
            "/set",
            &[("Some-Other-Header", "val")],
            &[("Some-Other-Header", "val"), ("X-Header-Set", "set-overwrites-values")],
            &[],
        ),
        (
            "/set",
            &[("Some-Other-Header", "val"), ("X-Header-Set", "some-other-value")],
            &[("Some-Other-Header", "val"), ("X-Header-Set", "set-overwrites-values")],
            &[],
        ),
        (
            "/add",
            &[("Some-Other-Header", "val")],
            &[("Some-Other-Header", "val"), ("X-Header-Add", "add-appends-values")],
            &[],
        ),
        (
            "/add",
            &[("Some-Other-Header", "val"), ("X-Header-Add", "some-other-value")],
            &[("Some-Other-Header", "val"), ("X-Header-Add", "some-other-value,add-appends-values")],
            &[],
        ),
        ("/remove", &[("X-Header-Remove", "val")], &[], &["X-Header-Remove"]),
        (
            "/multiple",
            &[
                ("X-Header-Set-2", "set-val-2"),
                ("X-Header-Add-2", "add-val-2"),
                ("X-Header-Remove-2", "remove-val-2"),
                ("Another-Header", "another-header-val"),
                ("X-Header-Remove-1", "val"),
            ],
            &[
                ("X-Header-Set-1", "header-set-1"),
                ("X-Header-Set-2", "header-set-2"),
                ("X-Header-Add-1", "header-add-1"),
                ("X-Header-Add-2", "add-val-2,header-add-2"),
                ("X-Header-Add-3", "header-add-3"),
                ("Another-Header", "another-header-val"),
            ],
            &["X-Header-Remove-1", "X-Header-Remove-2"],
        ),
        (
            "/case-insensitivity",
            &[
                ("x-header-set", "original-val-set"),
                ("x-header-add", "original-val-add"),
                ("x-header-remove", "original-val-remove"),
                ("Another-Header", "another-header-val"),
            ],
            &[
                ("X-Header-Set", "header-set"),
                ("X-Header-Add", "original-val-add,header-add"),
                ("X-Lowercase-Add", "lowercase-add"),
                ("X-Mixedcase-Add-1", "mixedcase-add-1"),
                ("X-Mixedcase-Add-2", "mixedcase-add-2"),
                ("X-Uppercase-Add", "uppercase-add"),
                ("Another-Header", "another-header-val"),
            ],
            &["x-header-remove", "X-Header-Remove"],
        ),
        (
            "/response-and-request-header-modifiers",
            &[
                ("X-Header-Set-2", "set-val-2"),
                ("X-Header-Add-2", "add-val-2"),
                ("X-Header-Remove-2", "remove-val-2"),
                ("Another-Header", "another-header-val"),
                ("X-Header-Remove-1", "remove-val-1"),
                ("X-Header-Echo", "echo"),
            ],
            &[
                ("X-Header-Set-1", "header-set-1"),
                ("X-Header-Set-2", "header-set-2"),
                ("X-Header-Add-1", "header-add-1"),
                ("X-Header-Add-2", "add-val-2,header-add-2"),
                ("Another-Header", "another-header-val"),
                ("X-Header-Echo", "echo"),
            ],
            &["X-Header-Remove-1", "X-Header-Remove-2"],
        ),
    ];
    let yaml = vendored!("httproute-response-header-modifier.yaml");
    let go = vendored!("httproute-response-header-modifier.go");
    transcribed_from(go, &cases.iter().map(|c| c.0).collect::<Vec<_>>());
    let snap = load(&[BASE, yaml]);
    for (i, (path, backend_sets, expected, absent)) in cases.iter().enumerate() {
        let set = backend_sets.iter().map(|(n, v)| format!("{n}:{v}")).collect::<Vec<_>>().join(",");
        let mut req = Request::get(path).header(ECHO_SET_HEADER, &set);
        if *path == "/response-and-request-header-modifiers" {
            req = req
                .header("X-Header-Remove", "remove-val")
                .header("X-Header-Add-Append", "append-val-1")
                .header("X-Header-Echo", "echo");
            let forwarded = forwarded_through_gateway(&snap, &req);
            assert_modified_request(&forwarded);
            assert_eq!(forwarded.header_value("x-header-echo").as_deref(), Some("echo"));
        }
        let answer = through_gateway(&snap, &req, i as u64);
        check(&answer, &Backend("infra-backend-v1"), path);
        for (name, value) in *expected {
            let got = response_header(&answer, &name.to_ascii_lowercase());
            assert_eq!(got.as_deref(), Some(*value), "case {i} {path}: {name}");
        }
        for name in *absent {
            assert_eq!(response_header(&answer, &name.to_ascii_lowercase()), None, "case {i} {path}: {name} absent");
        }
    }
}

/// Sends `n` requests with a fixed seed and checks each backend's share against `weights` within
/// ±`tolerance` (the conformance suite's own tolerance is 0.05; at n = 4,000 a share's standard
/// deviation is at most 0.008, so the bound is over six of them).
fn assert_distribution(weights: &[(&str, f64)], n: usize, tolerance: f64, mut send: impl FnMut(u64) -> Answer) {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..n {
        let answer = send(i as u64);
        assert_eq!(answer.response.status, 200);
        *counts.entry(backend(&answer.served.expect("a pod answered").pod).to_string()).or_default() += 1;
    }
    for (backend, weight) in weights {
        let share = counts.get(*backend).copied().unwrap_or(0) as f64 / n as f64;
        assert!((share - weight).abs() <= tolerance, "{backend}: share {share}, weight {weight} ({counts:?})");
        if *weight == 0.0 {
            assert_eq!(share, 0.0, "weight 0 gets nothing");
        }
    }
}

#[test]
fn httproute_weight() {
    let go = vendored!("httproute-weight.go");
    assert!(
        go.contains("confsuite.InfraBackendServiceNameV1: 0.7")
            && go.contains("confsuite.InfraBackendServiceNameV3: 0.0")
    );
    let snap = load(&[BASE, vendored!("httproute-weight.yaml")]);
    let weights = [("infra-backend-v1", 0.7), ("infra-backend-v2", 0.3), ("infra-backend-v3", 0.0)];
    assert_distribution(&weights, 4000, 0.05, |i| through_gateway(&snap, &Request::get("/"), i));
}

#[test]
fn mesh_httproute_matching() {
    let cases = [
        get("/", &[], Backend("echo-v1")),
        get("/example", &[], Backend("echo-v1")),
        get("/", &[("Version", "one")], Backend("echo-v1")),
        get("/v2", &[], Backend("echo-v2")),
        get("/v2/example", &[], Backend("echo-v2")),
        get("/", &[("Version", "two")], Backend("echo-v2")),
        get("/v2/", &[], Backend("echo-v2")),
        get("/v2example", &[], Backend("echo-v1")),
        get("/foo/v2/example", &[], Backend("echo-v1")),
    ];
    transcribed_from(vendored!("mesh/httproute-matching.go"), &cases.iter().map(|c| c.path).collect::<Vec<_>>());
    let snap = load(&[MESH_BASE, vendored!("mesh/httproute-matching.yaml")]);
    for (i, case) in cases.iter().enumerate() {
        let answer = in_mesh(&snap, MESH, &case.request("echo"), i as u64);
        check(&answer, &case.expect, &format!("case {i}: {} {:?}", case.path, case.headers));
    }
    // The route is attached at port 80: a request to another port of the Service is not routed
    // by it (the sidecar balances over all of echo's endpoints, v1 and v2 alike).
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..64 {
        let answer = in_mesh(&snap, MESH, &Request { authority: "echo:8080".into(), ..Request::get("/v2") }, i);
        seen.insert(backend(&answer.served.unwrap().pod).to_string());
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["echo-v1", "echo-v2"]);
}

#[test]
fn mesh_httproute_weight() {
    let go = vendored!("mesh/httproute-weight.go");
    assert!(go.contains("\"echo-v1\": 0.7") && go.contains("\"echo-v2\": 0.3"));
    let snap = load(&[MESH_BASE, vendored!("mesh/httproute-weight.yaml")]);
    let req = Request { authority: "echo".into(), ..Request::get("/") };
    assert_distribution(&[("echo-v1", 0.7), ("echo-v2", 0.3)], 4000, 0.05, |i| in_mesh(&snap, MESH, &req, i));
}

#[test]
fn mesh_consumer_route() {
    let go = vendored!("mesh/mesh-consumer-route.go");
    assert!(go.contains("Host:   \"echo-v1.gateway-conformance-mesh\""));
    let snap = load(&[MESH_BASE, vendored!("mesh/mesh-consumer-route.yaml")]);
    let req = Request { authority: "echo-v1.gateway-conformance-mesh".into(), ..Request::get("/") };
    // From the consumer route's namespace: modified by the route.
    let answer = in_mesh(&snap, CONSUMER, &req, 0);
    check(&answer, &Backend("echo-v1"), "consumer");
    assert_eq!(response_header(&answer, "x-header-set").as_deref(), Some("set"));
    // From the producer's namespace: the consumer route does not apply.
    let answer = in_mesh(&snap, MESH, &req, 1);
    check(&answer, &Backend("echo-v1"), "producer");
    assert_eq!(response_header(&answer, "x-header-set"), None);
}

/// MeshFrontend's first case; its second ("Send to pod IP": a request addressed to the pod rather
/// than the Service must not be routed by the Service's route) is not ported: the data plane's
/// mesh entry points address Services, never a pod.
#[test]
fn mesh_frontend() {
    let go = vendored!("mesh/mesh-frontend.go");
    assert!(go.contains("Host:   \"echo-v2\"") && go.contains("TestCaseName: \"Send to pod IP\""));
    let snap = load(&[MESH_BASE, vendored!("mesh/mesh-frontend.yaml")]);
    let req = Request { authority: "echo-v2".into(), ..Request::get("/") };
    let answer = in_mesh(&snap, MESH, &req, 0);
    check(&answer, &Backend("echo-v2"), "send to service");
    assert_eq!(response_header(&answer, "x-header-set").as_deref(), Some("set"));
    // The route is the frontend's: the echo Service (whose endpoints include echo-v2's pods)
    // is not affected by it.
    let req = Request { authority: "echo".into(), ..Request::get("/") };
    for i in 0..16 {
        assert_eq!(response_header(&in_mesh(&snap, MESH, &req, i), "x-header-set"), None);
    }
}

#[test]
fn the_base_manifests_alone_route_nothing() {
    // A check of the harness: without a route, the Gateway's listener answers 404 NR.
    let snap = load(&[BASE]);
    let answer = through_gateway(&snap, &Request::get("/"), 0);
    assert_eq!((answer.response.status, answer.flag), (404, ResponseFlag::NoRoute));
}
