//! Clients that hold connections without making requests cannot take the server down: silent
//! connections are closed after the handshake and header timeouts, idle keep-alive connections
//! after the idle timeout (not the header timeout), and connections beyond the bound wait until
//! one closes.

use forklane_sim::cluster::{Cluster, ClusterConfig, ServerLimits};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

async fn cluster_with(limits: ServerLimits) -> Cluster {
    Cluster::start(ClusterConfig { limits, ..Default::default() }).await.expect("cluster starts")
}

fn address(c: &Cluster) -> String {
    c.url().trim_start_matches("https://").to_string()
}

/// `GET /version` through a fresh kube client.
async fn version(c: &Cluster) -> Result<String, kube::Error> {
    let req = http::Request::builder().uri("/version").body(Vec::new()).unwrap();
    c.client().request_text(req).await
}

/// Waits until the server closes `stream`, returning how long that took.
async fn closed_by_server(stream: &mut (impl AsyncReadExt + Unpin), within: Duration) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 64];
    loop {
        match timeout(within, stream.read(&mut buf)).await.expect("the server closes the connection") {
            Ok(0) | Err(_) => return start.elapsed(),
            Ok(_) => {}
        }
    }
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_handshake_timeout() {
    let limits = ServerLimits { tls_handshake_timeout: Duration::from_millis(300), ..Default::default() };
    let c = cluster_with(limits).await;
    let mut silent = TcpStream::connect(address(&c)).await.unwrap();
    let took = closed_by_server(&mut silent, Duration::from_secs(5)).await;
    assert!(took >= Duration::from_millis(250), "closed after {took:?}, before the timeout");
    // Half a ClientHello, then silence, is closed too.
    let mut stalled = TcpStream::connect(address(&c)).await.unwrap();
    stalled.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).await.unwrap();
    closed_by_server(&mut stalled, Duration::from_secs(5)).await;
    timeout(Duration::from_secs(10), version(&c)).await.unwrap().unwrap();
    c.shutdown().await;
}

#[tokio::test]
async fn a_connection_without_a_request_is_closed_after_the_header_timeout() {
    let limits = ServerLimits { header_read_timeout: Duration::from_millis(300), ..Default::default() };
    let c = cluster_with(limits).await;
    let mut roots = rustls::RootCertStore::empty();
    for der in c.client_config().root_cert.expect("the kubeconfig carries the CA") {
        roots.add(der.into()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    // Silent after the handshake, and slow with the headers.
    for sent in [&b""[..], b"GET /version HTTP/1.1\r\nHost: localhost\r\n"] {
        let tcp = TcpStream::connect(address(&c)).await.unwrap();
        let server_name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = timeout(Duration::from_secs(5), connector.connect(server_name, tcp)).await.unwrap().unwrap();
        tls.write_all(sent).await.unwrap();
        tls.flush().await.unwrap();
        let took = closed_by_server(&mut tls, Duration::from_secs(5)).await;
        assert!(took >= Duration::from_millis(250), "closed after {took:?}, before the timeout");
    }
    timeout(Duration::from_secs(10), version(&c)).await.unwrap().unwrap();
    c.shutdown().await;
}

/// The bearer token of the cluster's kubeconfig.
fn token(c: &Cluster) -> String {
    let line = c.kubeconfig_yaml().lines().find_map(|l| l.trim().strip_prefix("token:")).expect("a token");
    line.trim().trim_matches('"').to_string()
}

/// Sends `GET /version` with `token` on an HTTP/1.1 `stream` and reads its whole response.
async fn get_version(stream: &mut (impl AsyncReadExt + AsyncWriteExt + Unpin), token: &str) -> String {
    let request = format!("GET /version HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.flush().await.unwrap();
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = timeout(Duration::from_secs(5), stream.read(&mut buf)).await.expect("a response").unwrap();
        assert!(n > 0, "closed before the response ended: {}", String::from_utf8_lossy(&response));
        response.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&response).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>()))
                .expect("a content length")
                .unwrap();
            if body.len() >= length {
                return text;
            }
        }
    }
}

#[tokio::test]
async fn a_keep_alive_connection_idles_until_the_idle_timeout_and_its_next_headers_have_the_header_timeout() {
    let limits = ServerLimits {
        header_read_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(1200),
        ..Default::default()
    };
    let c = cluster_with(limits).await;
    let connect = || async {
        let mut roots = rustls::RootCertStore::empty();
        for der in c.client_config().root_cert.expect("the kubeconfig carries the CA") {
            roots.add(der.into()).unwrap();
        }
        let mut config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tcp = TcpStream::connect(address(&c)).await.unwrap();
        let server_name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        timeout(Duration::from_secs(5), connector.connect(server_name, tcp)).await.unwrap().unwrap()
    };
    let token = token(&c);
    // Idle between requests for longer than the header timeout: the next request is served.
    let mut tls = connect().await;
    assert!(get_version(&mut tls, &token).await.contains("gitVersion"));
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(get_version(&mut tls, &token).await.contains("gitVersion"), "served after idling past the header timeout");
    // Silent after that: closed once idle for the idle timeout.
    let took = closed_by_server(&mut tls, Duration::from_secs(5)).await;
    assert!(took >= Duration::from_millis(1100), "closed after {took:?} idle, before the idle timeout");

    // After an idle pause, a request's headers have the header timeout from their first byte.
    let mut tls = connect().await;
    assert!(get_version(&mut tls, &token).await.contains("gitVersion"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    tls.write_all(b"GET /version HTTP/1.1\r\n").await.unwrap();
    tls.flush().await.unwrap();
    let took = closed_by_server(&mut tls, Duration::from_secs(5)).await;
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_millis(1000),
        "closed {took:?} after the first byte of slow headers (header timeout 300 ms, idle 1.2 s)"
    );
    c.shutdown().await;
}

#[tokio::test]
async fn connections_beyond_the_bound_wait_for_a_free_slot() {
    let limits = ServerLimits { max_connections: 2, ..Default::default() };
    let c = cluster_with(limits).await;
    // Two silent clients take both slots (the handshake timeout is the default 10 s).
    let first = TcpStream::connect(address(&c)).await.unwrap();
    let second = TcpStream::connect(address(&c)).await.unwrap();
    let mut request = Box::pin(version(&c));
    assert!(
        timeout(Duration::from_millis(700), &mut request).await.is_err(),
        "a third connection was served while two held the bound"
    );
    drop(first);
    let answer = timeout(Duration::from_secs(5), &mut request).await.expect("served once a slot frees");
    assert!(answer.unwrap().contains("gitVersion"));
    drop(request);
    drop(second);
    // With both slots free, requests are served as before.
    for _ in 0..3 {
        timeout(Duration::from_secs(5), version(&c)).await.unwrap().unwrap();
    }
    c.shutdown().await;
}
