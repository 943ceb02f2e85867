//! Hostile bodies cost the server little memory: an alias bomb, an oversized body and a deeply
//! nested document, each sent several times, leave the process's resident set within 50 MB of
//! where it started. One test in its own binary, so nothing else runs in the process.

use crate::support;
use support::cluster::cluster;

use forklane_sim::cluster::Cluster;
use std::time::Duration;

const CMS: &str = "/api/v1/namespaces/default/configmaps";

/// The process's resident set size in bytes (`VmRSS` of /proc/self/status).
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("a VmRSS line");
    let kib: u64 = line.trim_start_matches("VmRSS:").trim().trim_end_matches("kB").trim().parse().expect("VmRSS in kB");
    kib * 1024
}

/// 10 KB of YAML that would expand to about 400 MB: 1200 aliases to nine aliases to nine
/// copies of a 4 KB string.
fn alias_bomb() -> Vec<u8> {
    let s = format!("s: &s {}\n", "x".repeat(4096));
    let a1 = format!("a1: &a1 [{}]\n", ["*s"; 9].join(","));
    let a2 = format!("a2: &a2 [{}]\n", ["*a1"; 9].join(","));
    let top = format!("top: [{}]\n", ["*a2"; 1200].join(","));
    (s + &a1 + &a2 + &top).into_bytes()
}

/// Sends a request that must be refused with `code`.
async fn refused(c: &Cluster, content_type: &str, body: Vec<u8>, code: u16) {
    let req = http::Request::builder().method("POST").uri(CMS).header("Content-Type", content_type).body(body).unwrap();
    match tokio::time::timeout(Duration::from_secs(30), c.client().request_text(req)).await.expect("answered in time") {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, code, "{s:?}"),
        other => panic!("expected {code}, got {other:?}"),
    }
}

#[tokio::test]
async fn hostile_bodies_leave_memory_flat() {
    let c = cluster().await;
    let bomb = alias_bomb();
    assert!(bomb.len() <= 10 * 1024);
    // Just past 4 MiB: beyond the drain allowance, so refused without being read.
    let oversized = format!(r#"{{"metadata":{{"name":"big"}},"data":{{"x":"{}"}}}}"#, "a".repeat(4 * 1024 * 1024 - 40))
        .into_bytes();
    let nested = "[".repeat(1024 * 1024).into_bytes();
    // One round first, so one-time allocations (connection pools, lazy tables) are not counted.
    refused(&c, "application/json", nested.clone(), 400).await;
    let before = rss_bytes();
    for _ in 0..5 {
        refused(&c, "application/yaml", bomb.clone(), 400).await;
        refused(&c, "application/json", oversized.clone(), 413).await;
        refused(&c, "application/json", nested.clone(), 400).await;
    }
    let after = rss_bytes();
    let growth = after.saturating_sub(before);
    assert!(growth < 50 * 1024 * 1024, "RSS grew by {} MB ({before} -> {after} bytes)", growth / (1024 * 1024));
    c.shutdown().await;
}
