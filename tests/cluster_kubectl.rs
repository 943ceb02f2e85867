//! Real kubectl 1.37 against the in-process server, replaying the article's commands with
//! the manifests in tests/fixtures/seed. kubectl must be on PATH (scripts/install-kubectl);
//! without it these tests fail, they never skip.

use crate::support;
use support::cluster::{cluster, widget_crd};
use support::kubectl::{Kubectl, header};

use std::path::PathBuf;
use std::time::Duration;

/// tests/fixtures/seed, found from this file (cargo runs tests from the package root).
fn seed_dir() -> PathBuf {
    std::path::Path::new(file!()).parent().expect("tests dir").join("fixtures/seed")
}

#[tokio::test]
async fn version_and_api_resources() {
    let c = cluster().await;
    let k = Kubectl::new(&c, &seed_dir());
    let out = k.run(&["version"]).await;
    assert!(out.ok, "{}", out.stderr);
    assert!(out.stdout.contains("Server Version: v1.37"), "{}", out.stdout);
    assert!(!out.stderr.contains("WARNING"), "{}", out.stderr);
    let resources = k.ok(&["api-resources"]).await;
    // Columns are as wide as the longest name, validatingadmissionpolicybindings.
    for line in [
        "deployments                         deploy       apps/v1",
        "leases",
        "customresourcedefinitions           crd,crds",
        "validatingadmissionpolicybindings                admissionregistration.k8s.io/v1   false",
    ] {
        assert!(resources.contains(line), "{line} missing in\n{resources}");
    }
    assert_eq!(k.ok(&["run", "web", "--image=nginx:1.27"]).await.trim(), "pod/web created");
    let pods = k.ok(&["get", "pods"]).await;
    assert_eq!(header(&pods), ["NAME", "READY", "STATUS", "RESTARTS", "AGE"], "{pods}");
    assert!(
        pods.lines().nth(1).is_some_and(|l| l.starts_with("web") && l.contains("0/1") && l.contains("Pending")),
        "{pods}"
    );
    c.shutdown().await;
}

#[tokio::test]
async fn recreate_walkthrough_apply_get_describe_scale_label_annotate_delete() {
    let c = cluster().await;
    let k = Kubectl::new(&c, &seed_dir());
    let out = k.ok(&["apply", "-f", "app-v1.yaml"]).await;
    assert_eq!(out.trim(), "service/my-app created\ndeployment.apps/my-app created");

    assert_eq!(header(&k.ok(&["get", "deploy"]).await), ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]);
    let svc = k.ok(&["get", "svc", "my-app"]).await;
    assert_eq!(header(&svc), ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]);
    assert!(svc.contains("NodePort") && svc.contains("80:3"), "{svc}");
    assert!(k.ok(&["get", "pods", "-l", "app=my-app"]).await.is_empty(), "deployments stay inert");

    let yaml = k.ok(&["get", "deploy", "my-app", "-o", "yaml"]).await;
    assert!(
        yaml.contains("kubectl.kubernetes.io/last-applied-configuration") && yaml.contains("type: Recreate"),
        "{yaml}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&k.ok(&["get", "svc", "-l", "app=my-app", "-o", "json"]).await).unwrap();
    assert_eq!(json["items"].as_array().unwrap().len(), 1);

    let out = k.ok(&["apply", "-f", "app-v2.yaml"]).await;
    assert_eq!(out.trim(), "deployment.apps/my-app configured");
    let out = k.ok(&["apply", "-f", "app-v2.yaml"]).await;
    assert_eq!(out.trim(), "deployment.apps/my-app unchanged");

    let described = k.ok(&["describe", "deploy", "my-app"]).await;
    assert!(
        described.contains("StrategyType:       Recreate") && described.contains("VERSION:     v2.0.0"),
        "{described}"
    );
    assert!(k.ok(&["describe", "svc", "my-app"]).await.contains("Type:                     NodePort"));

    assert_eq!(k.ok(&["scale", "deploy", "my-app", "--replicas=5"]).await.trim(), "deployment.apps/my-app scaled");
    assert_eq!(k.ok(&["get", "deploy", "my-app", "-o", "jsonpath={.spec.replicas}"]).await, "5");
    assert_eq!(k.ok(&["label", "deploy", "my-app", "tier=web"]).await.trim(), "deployment.apps/my-app labeled");
    assert_eq!(k.ok(&["annotate", "deploy", "my-app", "owner=me"]).await.trim(), "deployment.apps/my-app annotated");
    assert!(k.ok(&["get", "deploy", "-l", "tier=web"]).await.contains("my-app"));

    let out = k.ok(&["delete", "all", "-l", "app=my-app"]).await;
    assert!(out.contains("service \"my-app\" deleted") && out.contains("deployment.apps \"my-app\" deleted"), "{out}");
    let left = k.ok(&["get", "all", "-l", "app=my-app"]).await;
    assert!(left.trim().is_empty(), "{left}");
    c.shutdown().await;
}

#[tokio::test]
async fn blue_green_patch_types_and_server_side_apply() {
    let c = cluster().await;
    let k = Kubectl::new(&c, &seed_dir());
    k.ok(&["apply", "-f", "app-v1-single-svc.yaml"]).await;
    k.ok(&["apply", "-f", "app-v2-single-svc.yaml"]).await;
    let out = k.ok(&["patch", "service", "my-app", "-p", r#"{"spec":{"selector":{"version":"v2.0.0"}}}"#]).await;
    assert_eq!(out.trim(), "service/my-app patched");
    assert_eq!(k.ok(&["get", "svc", "my-app", "-o", "jsonpath={.spec.selector.version}"]).await, "v2.0.0");
    k.ok(&["patch", "deploy", "my-app-v2", "--type=merge", "-p", r#"{"spec":{"replicas":4}}"#]).await;
    k.ok(&[
        "patch",
        "deploy",
        "my-app-v2",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":6}]"#,
    ])
    .await;
    assert_eq!(k.ok(&["get", "deploy", "my-app-v2", "-o", "jsonpath={.spec.replicas}"]).await, "6");
    let bad = k
        .run(&["patch", "deploy", "my-app-v2", "--type=json", "-p", r#"[{"op":"remove","path":"/spec/nothing"}]"#])
        .await;
    assert!(!bad.ok);
    k.ok(&["delete", "deploy", "my-app-v1"]).await;

    let out = k.ok(&["apply", "--server-side", "-f", "app-v1-canary.yaml", "--force-conflicts"]).await;
    assert!(out.contains("serverside-applied"), "{out}");
    // replicas now belong to kubectl-patch: applying another value conflicts until forced.
    let out = k.run(&["apply", "--server-side", "-f", "app-v2-canary.yaml"]).await;
    assert!(
        !out.ok && out.stderr.contains("conflict with \"kubectl-patch\"") && out.stderr.contains(".spec.replicas"),
        "{}",
        out.stderr
    );
    let out = k.ok(&["apply", "--server-side", "--force-conflicts", "-f", "app-v2-canary.yaml"]).await;
    assert!(out.contains("deployment.apps/my-app-v2 serverside-applied"), "{out}");
    assert_eq!(k.ok(&["get", "deploy", "my-app-v2", "-o", "jsonpath={.spec.replicas}"]).await, "1");
    let managers = k
        .ok(&[
            "get",
            "deploy",
            "my-app-v2",
            "--show-managed-fields",
            "-o",
            "jsonpath={.metadata.managedFields[*].manager}",
        ])
        .await;
    assert!(managers.contains("kubectl"), "{managers}");
    c.shutdown().await;
}

#[tokio::test]
async fn get_watch_prints_first_events() {
    let c = cluster().await;
    let k = Kubectl::new(&c, &seed_dir());
    k.ok(&["apply", "-f", "app-v1-canary.yaml"]).await;
    let child = k.command(&["get", "deploy", "-w"]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    k.ok(&["scale", "deploy", "my-app-v1", "--replicas=2"]).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mut child = child;
    child.start_kill().unwrap();
    let out = child.wait_with_output().await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        "{text}"
    );
    assert!(lines[1].starts_with("my-app-v1") && lines[1].contains("0/10"), "{text}");
    assert!(lines.iter().any(|l| l.starts_with("my-app-v1") && l.contains("0/2")), "watch event missing:\n{text}");
    c.shutdown().await;
}

#[tokio::test]
async fn crd_then_custom_objects_valid_accepted_invalid_rejected() {
    let c = cluster().await;
    let k = Kubectl::new(&c, &seed_dir());
    let crd = k.file("crd.yaml", &serde_yaml_ng::to_string(&widget_crd()).unwrap());
    assert_eq!(
        k.ok(&["apply", "-f", &crd]).await.trim(),
        "customresourcedefinition.apiextensions.k8s.io/widgets.example.com created"
    );
    let valid = k.file("valid.yaml", "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w1\nspec:\n  size: 3\n---\napiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w2\nspec:\n  size: 7\n  color: red\n");
    assert_eq!(
        k.ok(&["apply", "-f", &valid]).await.trim(),
        "widget.example.com/w1 created\nwidget.example.com/w2 created"
    );
    let table = k.ok(&["get", "widgets"]).await;
    // With additionalPrinterColumns the apiserver adds no AGE column of its own.
    assert_eq!(header(&table), ["NAME", "SIZE"], "{table}");
    assert!(k.ok(&["get", "wd", "w1", "-o", "yaml"]).await.contains("color: blue"), "defaulting");

    let invalid = k.file(
        "invalid.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w3\nspec:\n  size: 0\n  color: green\n",
    );
    let out = k.run(&["apply", "-f", &invalid]).await;
    assert!(!out.ok);
    assert!(out.stderr.contains("spec.size") && out.stderr.contains("spec.color"), "{}", out.stderr);
    let unknown = k.file(
        "unknown.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w4\nspec:\n  size: 1\n  bogus: 1\n",
    );
    let out = k.run(&["apply", "-f", &unknown]).await;
    assert!(!out.ok && out.stderr.contains("unknown field \"spec.bogus\""), "strict validation: {}", out.stderr);
    assert!(k.run(&["get", "widget", "w3"]).await.stderr.contains("NotFound"));
    c.shutdown().await;
}
