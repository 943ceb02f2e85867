//! Bad requests get the Status a real apiserver answers with, and change nothing.

// Each test binary uses only some of the shared helpers.
#[allow(dead_code)]
mod support;
use support::cluster::cluster;

use forklane_sim::cluster::{Cluster, FaultSettings};
use kube::core::Status;
use serde_json::json;

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
    refused(&c, "POST", CMS, "application/vnd.kubernetes.protobuf", b"\x00".to_vec(), 415, "UnsupportedMediaType")
        .await;
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

#[tokio::test]
async fn bodies_over_three_mebibytes() {
    let c = cluster().await;
    let big = json!({"metadata": {"name": "big"}, "data": {"x": "a".repeat(3 * 1024 * 1024)}}).to_string().into_bytes();
    let s = refused(&c, "POST", CMS, "application/json", big, 413, "RequestEntityTooLarge").await;
    assert_eq!(s.message, "Request entity too large: limit is 3145728");
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
