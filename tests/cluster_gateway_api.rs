//! The Gateway API v1.6.1 CRDs (vendored in forklane-core) served by the embedded API server,
//! driven by real kubectl 1.37: installed as `kubectl apply -f` installs them, their objects
//! defaulted and validated by the CRDs' schemas and CEL rules with kube-apiserver's messages.
//! kubectl must be on PATH (scripts/install-kubectl); without it these tests fail, never skip.

use crate::support;
use forklane_core::gateway::{EXPERIMENTAL_HTTPROUTE_CRD, STANDARD_CRDS};
use forklane_sim::sandbox::install_gateway_api;
use serde_json::Value;
use std::future::Future;
use std::time::Duration;
use support::cluster::cluster;
use support::kubectl::{Kubectl, header};

/// Runs a test body with a deadline, so a hung server or kubectl fails the test.
async fn bounded(body: impl Future<Output = ()>) {
    tokio::time::timeout(Duration::from_secs(120), body).await.expect("the test finishes within 120s");
}

const GATEWAY: &str = "apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: forklane
spec:
  controllerName: forklane.dev/gateway
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: edge
spec:
  gatewayClassName: forklane
  listeners:
  - name: http
    port: 80
    protocol: HTTP
";

/// North-south: attached to the Gateway, weighted backends, a header match, header modifiers.
const SHOP_ROUTE: &str = "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: shop
spec:
  parentRefs:
  - name: edge
  hostnames: [shop.example.com]
  rules:
  - matches:
    - headers:
      - name: x-canary
        value: always
    backendRefs:
    - name: shop-canary
      port: 8080
  - filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set:
        - name: x-route
          value: shop
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        remove: [server]
    backendRefs:
    - name: shop-stable
      port: 8080
      weight: 90
    - name: shop-canary
      port: 8080
      weight: 10
";

/// East-west (GAMMA): attached to a Service, with a mirror of 10% of the requests.
const MESH_ROUTE: &str = "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: reviews
spec:
  parentRefs:
  - group: \"\"
    kind: Service
    name: reviews
    port: 9080
  rules:
  - filters:
    - type: RequestMirror
      requestMirror:
        backendRef:
          name: reviews-shadow
          port: 9080
        percent: 10
    backendRefs:
    - name: reviews-v1
      port: 9080
      weight: 80
    - name: reviews-v2
      port: 9080
";

fn route(name: &str, spec: &str) -> String {
    format!("apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: {name}\nspec:\n{spec}")
}

fn crd_files(k: &Kubectl) -> Vec<String> {
    STANDARD_CRDS.iter().enumerate().map(|(i, crd)| k.file(&format!("crd{i}.yaml"), crd)).collect()
}

#[tokio::test]
async fn the_standard_channel_installs_with_kubectl_apply_and_serves_routes_with_defaults() {
    bounded(async {
        let c = cluster().await;
        let k = Kubectl::new(&c, &std::env::temp_dir());
        let mut args = vec!["apply".to_string()];
        for f in crd_files(&k) {
            args.extend(["-f".to_string(), f]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_eq!(
            k.ok(&args).await.trim(),
            "customresourcedefinition.apiextensions.k8s.io/gatewayclasses.gateway.networking.k8s.io created\n\
             customresourcedefinition.apiextensions.k8s.io/gateways.gateway.networking.k8s.io created\n\
             customresourcedefinition.apiextensions.k8s.io/httproutes.gateway.networking.k8s.io created\n\
             customresourcedefinition.apiextensions.k8s.io/referencegrants.gateway.networking.k8s.io created\n\
             customresourcedefinition.apiextensions.k8s.io/grpcroutes.gateway.networking.k8s.io created"
        );
        k.ok(&["wait", "--for=condition=Established", "crd", "--all", "--timeout=30s"]).await;
        assert_eq!(
            k.ok(&["apply", "-f", &k.file("gateway.yaml", GATEWAY)]).await.trim(),
            "gatewayclass.gateway.networking.k8s.io/forklane created\ngateway.gateway.networking.k8s.io/edge created"
        );
        assert_eq!(
            k.ok(&["apply", "-f", &k.file("shop.yaml", SHOP_ROUTE), "-f", &k.file("mesh.yaml", MESH_ROUTE)]).await.trim(),
            "httproute.gateway.networking.k8s.io/shop created\nhttproute.gateway.networking.k8s.io/reviews created"
        );
        // Applying again sends a JSON merge patch with the whole `rules` list (the live one has
        // defaults), so kubectl says "configured", as with kube-apiserver; the patched object
        // defaults to the stored one, so nothing is written.
        let version = k.ok(&["get", "httproute", "shop", "-o", "jsonpath={.metadata.resourceVersion}"]).await;
        assert_eq!(
            k.ok(&["apply", "-f", &k.file("shop.yaml", SHOP_ROUTE)]).await.trim(),
            "httproute.gateway.networking.k8s.io/shop configured"
        );
        assert_eq!(
            k.ok(&["get", "httproute", "shop", "-o", "jsonpath={.metadata.resourceVersion} {.metadata.generation}"])
                .await,
            format!("{version} 1")
        );

        let table = k.ok(&["get", "httproutes"]).await;
        assert_eq!(header(&table), ["NAME", "HOSTNAMES", "AGE"], "{table}");
        let shop = table.lines().find(|l| l.starts_with("shop ")).expect("shop listed");
        // A string column prints the list as JSON, as kube-apiserver's table convertor does.
        assert!(shop.contains(r#"["shop.example.com"]"#), "{table}");
        assert!(table.lines().any(|l| l.starts_with("reviews ")), "{table}");
        let gateways = k.ok(&["get", "gateways"]).await;
        assert_eq!(header(&gateways), ["NAME", "CLASS", "ADDRESS", "PROGRAMMED", "AGE"], "{gateways}");
        let classes = k.ok(&["get", "gatewayclasses"]).await;
        assert_eq!(header(&classes), ["NAME", "CONTROLLER", "ACCEPTED", "AGE"], "{classes}");

        let shop: Value = serde_json::from_str(&k.ok(&["get", "httproute", "shop", "-o", "json"]).await).unwrap();
        let spec = &shop["spec"];
        assert_eq!(
            spec["parentRefs"],
            serde_json::json!([{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "edge"}])
        );
        assert_eq!(
            spec["rules"][0]["matches"],
            serde_json::json!([{"headers": [{"name": "x-canary", "type": "Exact", "value": "always"}],
                                "path": {"type": "PathPrefix", "value": "/"}}])
        );
        assert_eq!(
            spec["rules"][0]["backendRefs"],
            serde_json::json!([{"group": "", "kind": "Service", "name": "shop-canary", "port": 8080, "weight": 1}])
        );
        assert_eq!(spec["rules"][1]["matches"], serde_json::json!([{"path": {"type": "PathPrefix", "value": "/"}}]));
        assert_eq!(spec["rules"][1]["backendRefs"][0]["weight"], 90);

        let mesh: Value = serde_json::from_str(&k.ok(&["get", "httproute", "reviews", "-o", "json"]).await).unwrap();
        let spec = &mesh["spec"];
        assert_eq!(
            spec["parentRefs"],
            serde_json::json!([{"group": "", "kind": "Service", "name": "reviews", "port": 9080}])
        );
        assert_eq!(
            spec["rules"][0]["filters"][0]["requestMirror"],
            serde_json::json!({"backendRef": {"group": "", "kind": "Service", "name": "reviews-shadow", "port": 9080}, "percent": 10})
        );
        assert_eq!(spec["rules"][0]["backendRefs"][1]["weight"], 1);
        let gateway: Value = serde_json::from_str(&k.ok(&["get", "gateway", "edge", "-o", "json"]).await).unwrap();
        assert_eq!(gateway["spec"]["listeners"][0]["allowedRoutes"], serde_json::json!({"namespaces": {"from": "Same"}}));
        c.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn invalid_httproutes_are_refused_with_kube_apiservers_messages_and_not_stored() {
    bounded(async {
        let c = cluster().await;
        install_gateway_api(&c.client(), false).await.unwrap();
        let k = Kubectl::new(&c, &std::env::temp_dir());
        let hosts: String = (0..17).map(|i| format!("  - h{i}.example.com\n")).collect();
        let cases = [
            (
                "twice",
                "  rules:\n  - filters:\n    - type: RequestHeaderModifier\n      requestHeaderModifier: {set: [{name: a, value: '1'}]}\n    - type: RequestHeaderModifier\n      requestHeaderModifier: {set: [{name: b, value: '2'}]}\n".to_string(),
                r#"The HTTPRoute "twice" is invalid: spec.rules[0].filters: Invalid value: "array": RequestHeaderModifier filter cannot be repeated"#,
            ),
            (
                "portless",
                "  rules:\n  - backendRefs:\n    - name: web\n".to_string(),
                r#"The HTTPRoute "portless" is invalid: spec.rules[0].backendRefs[0]: Invalid value: "object": Must have port for Service reference"#,
            ),
            (
                "heavy",
                "  rules:\n  - backendRefs:\n    - {name: web, port: 80, weight: 1000001}\n".to_string(),
                r#"The HTTPRoute "heavy" is invalid: spec.rules[0].backendRefs[0].weight: Invalid value: 1000001: spec.rules[0].backendRefs[0].weight in body should be less than or equal to 1000000"#,
            ),
            (
                "crowded",
                format!("  hostnames:\n{hosts}"),
                "The HTTPRoute \"crowded\" is invalid: \n* spec.hostnames: Too many: 17: must have at most 16 items\n* <nil>: Invalid value: \"null\": some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
            ),
            (
                "relative",
                "  rules:\n  - matches:\n    - path: {type: PathPrefix, value: api}\n".to_string(),
                r#"The HTTPRoute "relative" is invalid: spec.rules[0].matches[0].path: Invalid value: "object": value must be an absolute path and start with '/' when type one of ['Exact', 'PathPrefix']"#,
            ),
            (
                "mirrors",
                "  rules:\n  - filters:\n    - type: RequestMirror\n      requestMirror:\n        backendRef: {name: shadow, port: 80}\n        percent: 10\n        fraction: {numerator: 1}\n".to_string(),
                r#"The HTTPRoute "mirrors" is invalid: spec.rules[0].filters[0].requestMirror: Invalid value: "object": Only one of percent or fraction may be specified in HTTPRequestMirrorFilter"#,
            ),
            (
                "parents",
                "  parentRefs:\n  - name: edge\n  - name: edge\n".to_string(),
                r#"The HTTPRoute "parents" is invalid: spec.parentRefs: Invalid value: "array": sectionName must be unique when parentRefs includes 2 or more references to the same parent"#,
            ),
        ];
        for (name, spec, message) in cases {
            let file = k.file(&format!("{name}.yaml"), &route(name, &spec));
            let out = k.run(&["apply", "-f", &file]).await;
            assert!(!out.ok, "{name} was accepted: {}", out.stdout);
            assert_eq!(out.stderr.trim_end(), message, "{name}");
            // The server dry run refuses it the same way.
            let out = k.run(&["create", "--dry-run=server", "-f", &file]).await;
            assert_eq!(out.stderr.trim_end(), message, "{name} (dry run)");
        }
        let out = k.run(&["get", "httproutes"]).await;
        assert!(out.ok && out.stdout.is_empty(), "{}", out.stdout);
        assert_eq!(out.stderr.trim(), "No resources found in default namespace.");
        c.shutdown().await;
    })
    .await;
}

/// A rule with cookie session persistence, only in the experimental channel's HTTPRoute.
fn sticky() -> String {
    route(
        "sticky",
        "  rules:\n  - sessionPersistence:\n      sessionName: shop-session\n      type: Cookie\n    backendRefs:\n    - {name: shop, port: 80}\n",
    )
}

#[tokio::test]
async fn the_standard_httproute_refuses_or_prunes_session_persistence() {
    bounded(async {
        let c = cluster().await;
        install_gateway_api(&c.client(), false).await.unwrap();
        let k = Kubectl::new(&c, &std::env::temp_dir());
        let file = k.file("sticky.yaml", &sticky());
        // kubectl validates strictly by default: the unknown field is an error...
        let out = k.run(&["apply", "-f", &file]).await;
        assert!(!out.ok, "{}", out.stdout);
        assert!(
            out.stderr.contains(r#"strict decoding error: unknown field "spec.rules[0].sessionPersistence""#),
            "{}",
            out.stderr
        );
        // ...a warning with --validate=warn, and the field is pruned.
        let out = k.run(&["apply", "--validate=warn", "-f", &file]).await;
        assert!(out.ok, "{}", out.stderr);
        assert!(out.stderr.contains(r#"unknown field "spec.rules[0].sessionPersistence""#), "{}", out.stderr);
        let stored: Value = serde_json::from_str(&k.ok(&["get", "httproute", "sticky", "-o", "json"]).await).unwrap();
        assert!(stored["spec"]["rules"][0].get("sessionPersistence").is_none(), "{stored}");
        c.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn the_experimental_httproute_accepts_session_persistence() {
    bounded(async {
        let c = cluster().await;
        let k = Kubectl::new(&c, &std::env::temp_dir());
        // As with kube-apiserver, the experimental HTTPRoute CRD is too large for a client-side
        // apply (its last-applied annotation); it installs with --server-side.
        let crd = k.file("experimental.yaml", EXPERIMENTAL_HTTPROUTE_CRD);
        let out = k.run(&["apply", "-f", &crd]).await;
        assert!(!out.ok, "{}", out.stdout);
        assert_eq!(
            out.stderr.trim_end(),
            r#"The CustomResourceDefinition "httproutes.gateway.networking.k8s.io" is invalid: metadata.annotations: Too long: may not be more than 262144 bytes"#
        );
        install_gateway_api(&c.client(), true).await.unwrap();
        assert_eq!(k.ok(&["apply", "-f", &k.file("sticky.yaml", &sticky())]).await.trim(), "httproute.gateway.networking.k8s.io/sticky created");
        let stored: Value = serde_json::from_str(&k.ok(&["get", "httproute", "sticky", "-o", "json"]).await).unwrap();
        assert_eq!(stored["spec"]["rules"][0]["sessionPersistence"]["sessionName"], "shop-session");
        // The experimental channel's own rules apply.
        let named = route("named", "  rules:\n  - name: a\n  - name: a\n");
        let out = k.run(&["apply", "-f", &k.file("named.yaml", &named)]).await;
        assert_eq!(
            out.stderr.trim_end(),
            r#"The HTTPRoute "named" is invalid: spec.rules: Invalid value: "array": Rule name must be unique within the route"#
        );
        c.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_gateway_class_controller_name_cannot_change() {
    bounded(async {
        let c = cluster().await;
        install_gateway_api(&c.client(), false).await.unwrap();
        let k = Kubectl::new(&c, &std::env::temp_dir());
        k.ok(&["apply", "-f", &k.file("gateway.yaml", GATEWAY)]).await;
        let out = k
            .run(&["patch", "gatewayclass", "forklane", "--type=merge", "-p", r#"{"spec":{"controllerName":"example.com/other"}}"#])
            .await;
        assert!(!out.ok, "{}", out.stdout);
        assert_eq!(
            out.stderr.trim_end(),
            r#"The GatewayClass "forklane" is invalid: spec.controllerName: Invalid value: "string": Value is immutable"#
        );
        let out = k
            .run(&["patch", "gatewayclass", "forklane", "--type=merge", "-p", r#"{"spec":{"description":"the edge"}}"#])
            .await;
        assert!(out.ok, "{}", out.stderr);
        c.shutdown().await;
    })
    .await;
}
