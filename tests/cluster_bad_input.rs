//! Bad requests get the Status a real apiserver answers with, and change nothing.

use crate::support;
use support::cluster::cluster;

use forklane_sim::cluster::{Cluster, FaultSettings};
use kube::core::Status;
use serde_json::json;
use std::time::Duration;

async fn send(c: &Cluster, method: &str, path: &str, content_type: &str, body: Vec<u8>) -> Result<String, Status> {
    let req =
        http::Request::builder().method(method).uri(path).header("Content-Type", content_type).body(body).unwrap();
    match c.client().request_text(req).await {
        Ok(text) => Ok(text),
        Err(kube::Error::Api(s)) => Err(*s),
        Err(other) => panic!("transport error: {other:?}"),
    }
}

/// Runs a request that must fail, checks code and reason, and that no write happened.
async fn refused(
    c: &Cluster,
    method: &str,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
    code: u16,
    reason: &str,
) -> Status {
    let before = c.store().resource_version();
    let s = send(c, method, path, content_type, body).await.expect_err("request must fail");
    assert_eq!((s.code, s.reason.as_str()), (code, reason), "{s:?}");
    assert_eq!(c.store().resource_version(), before, "state changed by a refused request");
    s
}

const CMS: &str = "/api/v1/namespaces/default/configmaps";

#[tokio::test]
async fn malformed_bodies() {
    let c = cluster().await;
    refused(&c, "POST", CMS, "application/json", b"{\"metadata\": {".to_vec(), 400, "BadRequest").await;
    refused(&c, "POST", CMS, "application/yaml", b"metadata: [unclosed".to_vec(), 400, "BadRequest").await;
    refused(&c, "POST", CMS, "application/json", b"[1,2]".to_vec(), 400, "BadRequest").await;
    // Protobuf: a body without Kubernetes' envelope is malformed; a kind without a protobuf
    // encoding (a custom resource) is an unsupported media type, named with its kind.
    const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";
    let s = refused(&c, "POST", CMS, PROTOBUF, b"\x00".to_vec(), 400, "BadRequest").await;
    assert!(s.message.contains("expected prefix [107 56 115 0]"), "{}", s.message);
    let type_meta = [&[0x0a, 14][..], b"example.com/v1", &[0x12, 6], b"Widget"].concat();
    let envelope = [&b"k8s\0"[..], &[0x0a, type_meta.len() as u8], &type_meta].concat();
    let s = refused(&c, "POST", CMS, PROTOBUF, envelope, 415, "UnsupportedMediaType").await;
    assert!(s.message.contains(PROTOBUF) && s.message.contains("Widget of example.com/v1"), "{}", s.message);
    send(&c, "POST", CMS, "application/json", br#"{"metadata":{"name":"ok"}}"#.to_vec()).await.unwrap();
    let path = format!("{CMS}/ok");
    refused(&c, "PATCH", &path, "application/merge-patch+json", b"{not json".to_vec(), 400, "BadRequest").await;
    refused(&c, "PATCH", &path, "text/plain", b"{}".to_vec(), 415, "UnsupportedMediaType").await;
    refused(
        &c,
        "PATCH",
        &path,
        "application/json-patch+json",
        br#"[{"op":"remove","path":"/nope"}]"#.to_vec(),
        422,
        "Invalid",
    )
    .await;
    c.shutdown().await;
}

#[tokio::test]
async fn wrong_type_namespace_or_name_for_the_url() {
    let c = cluster().await;
    let s = refused(
        &c,
        "POST",
        CMS,
        "application/json",
        br#"{"apiVersion":"apps/v1","kind":"ConfigMap","metadata":{"name":"a"}}"#.to_vec(),
        400,
        "BadRequest",
    )
    .await;
    assert_eq!(s.message, "the API version in the data (apps/v1) does not match the expected API version (v1)");
    refused(
        &c,
        "POST",
        CMS,
        "application/json",
        br#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"a"}}"#.to_vec(),
        400,
        "BadRequest",
    )
    .await;
    refused(
        &c,
        "POST",
        CMS,
        "application/json",
        br#"{"metadata":{"name":"a","namespace":"kube-system"}}"#.to_vec(),
        400,
        "BadRequest",
    )
    .await;
    send(&c, "POST", CMS, "application/json", br#"{"metadata":{"name":"a"}}"#.to_vec()).await.unwrap();
    let s = refused(
        &c,
        "PUT",
        &format!("{CMS}/a"),
        "application/json",
        br#"{"metadata":{"name":"b"}}"#.to_vec(),
        400,
        "BadRequest",
    )
    .await;
    assert_eq!(s.message, "the name of the object (b) does not match the name on the URL (a)");
    refused(&c, "POST", &format!("{CMS}/a"), "application/json", b"{}".to_vec(), 405, "MethodNotAllowed").await;
    c.shutdown().await;
}

#[tokio::test]
async fn names_that_are_not_dns_1123() {
    let c = cluster().await;
    for name in ["Upper", "under_score", "-lead", &"x".repeat(254)] {
        let body = json!({"metadata": {"name": name}}).to_string().into_bytes();
        let s = refused(&c, "POST", CMS, "application/json", body, 422, "Invalid").await;
        let causes = s.details.expect("details").causes;
        assert_eq!(causes[0].field, "metadata.name", "{name}");
    }
    // Services need DNS-1035 labels: no leading digit.
    let svc = json!({"metadata": {"name": "1svc"}, "spec": {"ports": [{"port": 80}]}}).to_string().into_bytes();
    refused(&c, "POST", "/api/v1/namespaces/default/services", "application/json", svc, 422, "Invalid").await;
    c.shutdown().await;
}

/// A ConfigMap body of exactly `len` bytes.
fn configmap_of_length(len: usize) -> Vec<u8> {
    let empty = json!({"metadata": {"name": "big"}, "data": {"x": ""}}).to_string();
    json!({"metadata": {"name": "big"}, "data": {"x": "a".repeat(len - empty.len())}}).to_string().into_bytes()
}

#[tokio::test]
async fn bodies_over_three_mebibytes() {
    let c = cluster().await;
    for len in [3 * 1024 * 1024 + 1, 4 * 1024 * 1024] {
        let body = configmap_of_length(len);
        assert_eq!(body.len(), len);
        let s = refused(&c, "POST", CMS, "application/json", body, 413, "RequestEntityTooLarge").await;
        assert_eq!(s.message, "Request entity too large: limit is 3145728");
        // The server goes on answering, and a body at the limit is accepted.
        send(&c, "GET", CMS, "application/json", vec![]).await.unwrap();
    }
    let raw = http::Request::builder().method("POST").uri(CMS).body(configmap_of_length(4 * 1024 * 1024)).unwrap();
    let response = c.client().send(raw.map(Into::into)).await.unwrap();
    assert_eq!(response.status(), 413);
    let body = response.into_body().collect_bytes().await.unwrap();
    let status: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((status["kind"].as_str(), status["code"].as_u64()), (Some("Status"), Some(413)), "{status}");
    send(&c, "POST", CMS, "application/json", configmap_of_length(3 * 1024 * 1024)).await.unwrap();
    c.shutdown().await;
}

#[tokio::test]
async fn deeply_nested_bodies_get_400() {
    let c = cluster().await;
    let arrays = "[".repeat(100_000).into_bytes();
    let objects = format!("{}1{}", r#"{"a":"#.repeat(10_000), "}".repeat(10_000)).into_bytes();
    for body in [arrays.clone(), objects] {
        let s = refused(&c, "POST", CMS, "application/json", body.clone(), 400, "BadRequest").await;
        assert!(s.message.contains("recursion limit exceeded"), "{}", s.message);
        refused(&c, "PATCH", &format!("{CMS}/x"), "application/merge-patch+json", body, 400, "BadRequest").await;
    }
    let s = refused(&c, "POST", CMS, "application/yaml", arrays, 400, "BadRequest").await;
    assert!(s.message.contains("recursion limit exceeded"), "{}", s.message);
    send(&c, "GET", CMS, "application/json", vec![]).await.unwrap();
    c.shutdown().await;
}

#[tokio::test]
async fn unknown_resources_and_missing_objects() {
    let c = cluster().await;
    refused(&c, "GET", "/api/v1/namespaces/default/widgets", "application/json", vec![], 404, "NotFound").await;
    refused(
        &c,
        "POST",
        "/apis/example.com/v1/namespaces/default/widgets",
        "application/json",
        b"{}".to_vec(),
        404,
        "NotFound",
    )
    .await;
    refused(&c, "GET", "/apis/apps/v2/deployments", "application/json", vec![], 404, "NotFound").await;
    let s = refused(&c, "GET", &format!("{CMS}/missing"), "application/json", vec![], 404, "NotFound").await;
    assert_eq!(s.message, "configmaps \"missing\" not found");
    refused(&c, "DELETE", &format!("{CMS}/missing"), "application/json", vec![], 404, "NotFound").await;
    c.shutdown().await;
}

#[tokio::test]
async fn requests_without_the_token_get_401() {
    let c = cluster().await;
    let mut config = c.client_config();
    config.auth_info = Default::default();
    let anonymous = kube::Client::try_from(config).unwrap();
    let req = http::Request::builder().uri("/api/v1/namespaces").body(vec![]).unwrap();
    match anonymous.request_text(req).await {
        Err(kube::Error::Api(s)) => assert_eq!((s.code, s.reason.as_str()), (401, "Unauthorized")),
        other => panic!("expected 401, got {other:?}"),
    }
    c.shutdown().await;
}

#[tokio::test]
async fn injected_write_faults_and_the_admin_endpoint() {
    let c = cluster().await;
    c.faults().set(FaultSettings { write_error_rate: 1.0, write_error_code: 409, ..Default::default() }).unwrap();
    refused(&c, "POST", CMS, "application/json", br#"{"metadata":{"name":"a"}}"#.to_vec(), 409, "Conflict").await;
    // Reads are not affected.
    send(&c, "GET", CMS, "application/json", vec![]).await.unwrap();
    let settings = json!({"writeErrorRate": 1.0, "writeErrorCode": 500}).to_string().into_bytes();
    send(&c, "PUT", "/forklane/faults", "application/json", settings).await.unwrap();
    refused(&c, "POST", CMS, "application/json", br#"{"metadata":{"name":"a"}}"#.to_vec(), 500, "InternalError").await;
    send(&c, "DELETE", "/forklane/faults", "application/json", vec![]).await.unwrap();
    send(&c, "POST", CMS, "application/json", br#"{"metadata":{"name":"a"}}"#.to_vec()).await.unwrap();
    assert!(c.faults().set(FaultSettings { write_error_code: 418, ..Default::default() }).is_err());
    c.shutdown().await;
}

#[tokio::test]
async fn injected_throttling_answers_429_with_retry_after() {
    let c = cluster().await;
    // kube-rs retries 429 by default; this client shows what the server answers.
    let mut config = c.client_config();
    config.default_retry = false;
    let client = kube::Client::try_from(config).unwrap();
    let status_of = |method: &str, path: &str, body: &[u8]| {
        let req = http::Request::builder().method(method).uri(path).body(body.to_vec().into()).unwrap();
        let client = client.clone();
        async move {
            let response = tokio::time::timeout(Duration::from_secs(10), client.send(req)).await.unwrap().unwrap();
            let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
            let body = response.into_body().collect_bytes().await.unwrap();
            (retry_after, serde_json::from_slice::<serde_json::Value>(&body).unwrap_or_default())
        }
    };
    let settings = json!({"throttleRate": 1.0, "retryAfterSeconds": 7}).to_string().into_bytes();
    send(&c, "PUT", "/forklane/faults", "application/json", settings).await.unwrap();
    let before = c.store().resource_version();
    for (method, path, body) in
        [("GET", CMS, &b""[..]), ("POST", CMS, br#"{"metadata":{"name":"a"}}"#), ("GET", "/version", b"")]
    {
        let (retry_after, status) = status_of(method, path, body).await;
        assert_eq!(retry_after.as_deref(), Some("7"), "{method} {path}");
        assert_eq!(status["kind"], "Status");
        assert_eq!((status["code"].as_u64(), status["reason"].as_str()), (Some(429), Some("TooManyRequests")));
        assert_eq!(status["details"]["retryAfterSeconds"], 7);
    }
    assert_eq!(c.store().resource_version(), before, "a throttled write was applied");
    // Health probes and the fault endpoint are exempt.
    assert_eq!(status_of("GET", "/healthz", b"").await.0, None);
    send(&c, "DELETE", "/forklane/faults", "application/json", vec![]).await.unwrap();
    send(&c, "GET", CMS, "application/json", vec![]).await.unwrap();

    for (settings, message) in [
        (json!({"throttleRate": 1.5}), "throttleRate must be within 0..=1, got 1.5"),
        (json!({"throttleRate": -0.1}), "throttleRate must be within 0..=1, got -0.1"),
        (json!({"retryAfterSeconds": 0}), "retryAfterSeconds must be within 1..=3600, got 0"),
        (json!({"retryAfterSeconds": 86400}), "retryAfterSeconds must be within 1..=3600, got 86400"),
    ] {
        let body = settings.to_string().into_bytes();
        let s = send(&c, "PUT", "/forklane/faults", "application/json", body).await.expect_err("refused");
        assert_eq!((s.code, s.message.as_str()), (400, message));
    }
    let current: serde_json::Value =
        serde_json::from_str(&send(&c, "GET", "/forklane/faults", "application/json", vec![]).await.unwrap()).unwrap();
    assert_eq!(current["throttleRate"], 0.0, "{current}");
    c.shutdown().await;
}

#[tokio::test]
async fn built_in_objects_decode_through_their_types() {
    let c = cluster().await;
    let strict = format!("{CMS}?fieldValidation=Strict");
    let s = refused(
        &c,
        "POST",
        &strict,
        "application/json",
        br#"{"metadata":{"name":"a"},"bogus":1}"#.to_vec(),
        400,
        "BadRequest",
    )
    .await;
    assert_eq!(s.message, "strict decoding error: unknown field \"bogus\"");
    refused(&c, "POST", CMS, "application/json", br#"{"metadata":{"name":"a"},"data":5}"#.to_vec(), 400, "BadRequest")
        .await;
    let created =
        send(&c, "POST", CMS, "application/json", br#"{"metadata":{"name":"a"},"bogus":1}"#.to_vec()).await.unwrap();
    assert!(!created.contains("bogus"), "unknown fields are dropped: {created}");
    c.shutdown().await;
}
