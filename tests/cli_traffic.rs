//! `forklane traffic` as docs/traffic.md shows it, against a stand-in for the article's app: a
//! server that answers like `containersol/k8s-deployment-strategies`, v1.0.0 and v2.0.0 in turn,
//! every fifth answer of v2.0.0 an error.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn forklane(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_forklane")).args(args).output().unwrap()
}

/// Serves connections until the test ends; returns the URL.
fn app() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => request.extend_from_slice(&buf[..k]),
                }
            }
            let (version, status) = match n % 10 {
                9 => ("v2.0.0", "500 Internal Server Error"),
                k if k % 2 == 1 => ("v2.0.0", "200 OK"),
                _ => ("v1.0.0", "200 OK"),
            };
            let body = format!("Host: my-app-{n}, Version: {version}\n");
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

#[test]
fn traffic_counts_the_answers_per_version_as_documented() {
    let url = app();
    let started = Instant::now();
    // docs/traffic.md's command, for 100 requests instead of 30 s.
    let out = forklane(&[
        "traffic",
        "--url",
        &url,
        "--rps",
        "200",
        "--users",
        "200",
        "--mobile-share",
        "0.3",
        "--regions",
        "eu-west-1,us-east-1",
        "--requests",
        "100",
    ]);
    assert!(started.elapsed() < Duration::from_secs(20), "bounded in time");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("100 requests in "), "{stdout}");
    assert_eq!(lines[1].split_whitespace().collect::<Vec<_>>(), ["VERSION", "COUNT", "SHARE", "ERRORS"]);
    assert_eq!(lines[2].split_whitespace().collect::<Vec<_>>(), ["v1.0.0", "50", "50.0%", "0"], "{stdout}");
    assert_eq!(lines[3].split_whitespace().collect::<Vec<_>>(), ["v2.0.0", "50", "50.0%", "10"], "{stdout}");
    assert!(lines[4].starts_with("refused: 0  failed: 0  users who changed version: "), "{stdout}");
}

#[test]
fn traffic_runs_for_a_duration_and_counts_refused_connections() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let started = Instant::now();
    let out = forklane(&["traffic", "--url", &format!("http://127.0.0.1:{port}/"), "--rps", "20", "--duration", "1s"]);
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_secs(1) && elapsed < Duration::from_secs(15), "{elapsed:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let sent: u64 = stdout.split_whitespace().next().unwrap().parse().unwrap();
    assert!((15..=25).contains(&sent), "about 20 requests in 1 s at 20/s: {stdout}");
    assert!(stdout.contains(&format!("refused: {sent}  failed: 0")), "nothing listens: {stdout}");
}

#[test]
fn bad_arguments_are_named_with_their_values() {
    let out =
        forklane(&["traffic", "--url", "http://127.0.0.1:1/", "--rps=-3", "--users", "0", "--mobile-share", "1.5"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "error: --rps -3 must be a positive number",
        "error: --users 0: at least one user is needed",
        "error: --mobile-share 1.5 must be between 0 and 1",
    ] {
        assert!(stderr.contains(expected), "{expected}: {stderr}");
    }
    let out = forklane(&["traffic", "--url", "https://example.com/"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("only http:// URLs are supported"));
}
