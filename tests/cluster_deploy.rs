//! The install manifests (`deploy/`, `kubectl apply -k deploy/`) applied with real kubectl
//! 1.37 to the in-process server, as on a real cluster. kubectl must be on PATH
//! (scripts/install-kubectl); without it these tests fail, they never skip.

use crate::support;
use support::cluster::cluster;
use support::kubectl::{Kubectl, header};

use serde_json::{Value, json};
use std::path::PathBuf;

fn tests_dir() -> PathBuf {
    std::path::Path::new(file!()).parent().expect("tests dir").to_path_buf()
}

/// `<repo>/deploy`, absolute.
fn deploy_dir() -> String {
    tests_dir().join("../deploy").canonicalize().expect("deploy/ exists").to_string_lossy().into()
}

/// The objects `deploy/` declares, as kubectl names them in `apply` output.
const OBJECTS: [&str; 11] = [
    "namespace/forklane-system",
    "customresourcedefinition.apiextensions.k8s.io/experiments.forklane.io",
    "customresourcedefinition.apiextensions.k8s.io/rolloutpolicies.forklane.io",
    "serviceaccount/forklane",
    "role.rbac.authorization.k8s.io/forklane-leader-election",
    "clusterrole.rbac.authorization.k8s.io/forklane",
    "rolebinding.rbac.authorization.k8s.io/forklane-leader-election",
    "clusterrolebinding.rbac.authorization.k8s.io/forklane",
    "service/forklane-metrics",
    "deployment.apps/forklane",
    "poddisruptionbudget.policy/forklane",
];

/// The PodDisruptionBudget's `selector` has patch strategy `replace` (kubernetes#99290), so
/// kubectl's three-way patch for it is never empty and a second apply reports it `configured`
/// on a real cluster too; the server stores nothing new (the test checks its resourceVersion).
const ALWAYS_CONFIGURED: &str = "poddisruptionbudget.policy/forklane";

/// Checks that `apply` reported `verb` for exactly the declared objects.
fn assert_applied(out: &str, verb: &str) {
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    let verb_of = |o: &str| if verb == "unchanged" && o == ALWAYS_CONFIGURED { "configured" } else { verb };
    let mut want: Vec<String> = OBJECTS.iter().map(|o| format!("{o} {}", verb_of(o))).collect();
    want.sort();
    assert_eq!(lines, want, "apply output:\n{out}");
}

/// `kubectl get a,b,c` prints one table per kind, separated by blank lines; keyed by the
/// kind prefix of the first row's name.
fn tables(out: &str) -> Vec<(String, Vec<String>, Vec<String>)> {
    out.split("\n\n")
        .filter(|t| !t.trim().is_empty())
        .map(|t| {
            let rows: Vec<String> = t.lines().skip(1).map(String::from).collect();
            let kind = rows.first().and_then(|r| r.split('/').next()).unwrap_or_default().to_string();
            (kind, header(t), rows)
        })
        .collect()
}

fn yaml_docs(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(PathBuf::from(deploy_dir()).join(file)).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text).map(|d| serde::Deserialize::deserialize(d).unwrap()).collect()
}

#[tokio::test]
async fn apply_k_deploy_creates_everything_then_reports_unchanged() {
    let c = cluster().await;
    let k = Kubectl::new(&c, &tests_dir());
    let deploy = deploy_dir();
    assert_applied(&k.ok(&["apply", "-k", &deploy]).await, "created");

    let out =
        k.ok(&["get", "deploy,sa,clusterrole,clusterrolebinding,role,rolebinding,svc", "-n", "forklane-system"]).await;
    let tables = tables(&out);
    let expect = [
        ("deployment.apps", &["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"][..], "deployment.apps/forklane "),
        ("serviceaccount", &["NAME", "SECRETS", "AGE"], "serviceaccount/forklane "),
        (
            "clusterrole.rbac.authorization.k8s.io",
            &["NAME", "CREATED", "AT"],
            "clusterrole.rbac.authorization.k8s.io/forklane ",
        ),
        (
            "clusterrolebinding.rbac.authorization.k8s.io",
            &["NAME", "ROLE", "AGE"],
            "clusterrolebinding.rbac.authorization.k8s.io/forklane ",
        ),
        (
            "role.rbac.authorization.k8s.io",
            &["NAME", "CREATED", "AT"],
            "role.rbac.authorization.k8s.io/forklane-leader-election ",
        ),
        (
            "rolebinding.rbac.authorization.k8s.io",
            &["NAME", "ROLE", "AGE"],
            "rolebinding.rbac.authorization.k8s.io/forklane-leader-election ",
        ),
        ("service", &["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"], "service/forklane-metrics "),
    ];
    assert_eq!(tables.len(), expect.len(), "{out}");
    for ((kind, cols, rows), (want_kind, want_cols, want_row)) in tables.iter().zip(expect) {
        assert_eq!(kind, want_kind, "{out}");
        assert_eq!(cols, want_cols, "{out}");
        assert!(rows.iter().any(|r| r.starts_with(want_row)), "{want_row} missing:\n{out}");
    }
    // The namespace's `default` ServiceAccount comes from the service account controller.
    assert!(tables[1].2.iter().any(|r| r.starts_with("serviceaccount/default ")), "{out}");
    let bindings = tables[3].2.join("\n") + &tables[5].2.join("\n");
    assert!(bindings.contains("ClusterRole/forklane") && bindings.contains("Role/forklane-leader-election"), "{out}");
    let wide = k.ok(&["get", "rolebinding", "forklane-leader-election", "-n", "forklane-system", "-o", "wide"]).await;
    assert_eq!(header(&wide), ["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"], "{wide}");
    assert!(wide.lines().nth(1).is_some_and(|l| l.trim_end().ends_with("forklane-system/forklane")), "{wide}");

    // Stored faithfully: the ClusterRole's rules are the manifest's.
    let stored: Value = serde_json::from_str(&k.ok(&["get", "clusterrole", "forklane", "-o", "json"]).await).unwrap();
    let declared = yaml_docs("rbac.yaml").into_iter().find(|d| d["kind"] == "ClusterRole").unwrap();
    assert_eq!(stored["rules"], declared["rules"]);

    let pdb_version =
        || k.ok(&["get", "pdb", "forklane", "-n", "forklane-system", "-o", "jsonpath={.metadata.resourceVersion}"]);
    let before = pdb_version().await;
    assert_applied(&k.ok(&["apply", "-k", &deploy]).await, "unchanged");
    assert_eq!(pdb_version().await, before, "re-applying the PodDisruptionBudget stores nothing new");
    c.shutdown().await;
}

/// `path` relative to `from` (kustomize refuses absolute paths): up to `/`, then down.
fn relative(from: &std::path::Path, path: &str) -> String {
    "../".repeat(from.components().count() - 1) + path.trim_start_matches('/')
}

#[tokio::test]
async fn the_install_runs_as_65532_keeps_a_replica_and_takes_an_optional_priority_class() {
    let c = cluster().await;
    let k = Kubectl::new(&c, &tests_dir());
    let deploy = deploy_dir();
    // A user's kustomization: the install plus the optional component.
    let root = std::env::temp_dir().join(format!("forklane-priority-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(
        root.join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [{}]\ncomponents: [{}]\n",
            relative(&root, &deploy),
            relative(&root, &format!("{deploy}/optional/priority-class"))
        ),
    )
    .unwrap();
    let out = k.ok(&["apply", "-k", &root.to_string_lossy()]).await;
    std::fs::remove_dir_all(&root).unwrap();
    assert!(out.contains("priorityclass.scheduling.k8s.io/forklane-controller created"), "{out}");

    let pdb = k.ok(&["get", "pdb", "-n", "forklane-system"]).await;
    assert_eq!(
        header(&pdb),
        ["NAME", "MIN", "AVAILABLE", "MAX", "UNAVAILABLE", "ALLOWED", "DISRUPTIONS", "AGE"],
        "{pdb}"
    );
    assert!(pdb.lines().nth(1).is_some_and(|l| l.split_whitespace().take(3).eq(["forklane", "1", "N/A"])), "{pdb}");
    let pc = k.ok(&["get", "priorityclass", "forklane-controller"]).await;
    assert!(
        pc.lines().nth(1).is_some_and(|l| l.starts_with("forklane-controller ") && l.contains(" 1000000 ")),
        "{pc}"
    );

    let spec: Value = serde_json::from_str(
        &k.ok(&["get", "deploy", "forklane", "-n", "forklane-system", "-o", "jsonpath={.spec.template.spec}"]).await,
    )
    .unwrap();
    assert_eq!(spec["priorityClassName"], "forklane-controller");
    let security = &spec["securityContext"];
    assert_eq!(
        (&security["runAsUser"], &security["runAsGroup"], &security["runAsNonRoot"]),
        (&json!(65532), &json!(65532), &json!(true))
    );
    let anti = &spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0];
    assert_eq!(anti["podAffinityTerm"]["topologyKey"], "kubernetes.io/hostname");
    let resources = &spec["containers"][0]["resources"];
    for field in ["requests", "limits"] {
        for r in ["cpu", "memory"] {
            assert!(resources[field][r].is_string(), "{field}.{r} is set: {resources}");
        }
    }
    c.shutdown().await;
}

#[tokio::test]
async fn bindings_are_validated_and_their_role_is_fixed() {
    let c = cluster().await;
    let k = Kubectl::new(&c, &tests_dir());
    let binding = |role_kind: &str| {
        format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: b\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: {role_kind}\n  name: view\nsubjects:\n- kind: User\n  name: alice\n"
        )
    };
    let first = k.file("b1.yaml", &binding("ClusterRole"));
    assert_eq!(k.ok(&["apply", "-f", &first]).await.trim(), "clusterrolebinding.rbac.authorization.k8s.io/b created");
    let subject: Value =
        serde_json::from_str(&k.ok(&["get", "clusterrolebinding", "b", "-o", "jsonpath={.subjects[0]}"]).await)
            .unwrap();
    assert_eq!(subject["apiGroup"], "rbac.authorization.k8s.io", "User subjects default their apiGroup");

    let changed = k.file("b2.yaml", &binding("Role"));
    let out = k.run(&["apply", "-f", &changed]).await;
    assert!(!out.ok);
    assert!(
        out.stderr.contains("roleRef.kind: Unsupported value: \"Role\": supported values: \"ClusterRole\""),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("cannot change roleRef"), "{}", out.stderr);
    c.shutdown().await;
}
