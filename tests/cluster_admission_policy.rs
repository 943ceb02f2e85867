//! ValidatingAdmissionPolicies enforced by the embedded API server, driven by real kubectl 1.37:
//! the refusals, warnings and audit annotations kube-apiserver produces, word for word.
//! kubectl must be on PATH (scripts/install-kubectl); without it these tests fail, never skip.

use crate::support;
use forklane_sim::cluster::{Cluster, ClusterConfig};
use support::cluster::{cluster, widget_crd};
use support::kubectl::{Kubectl, header};

/// A policy `name` over `resources` (`group/resource`, core resources as `/configmaps`) with
/// one validation (YAML flow mappings and sequences as kubectl accepts them), and its binding.
fn policy_and_binding(name: &str, resources: &str, validation: &str, actions: &str, extra: &str) -> String {
    let (group, resource) = resources.split_once('/').unwrap();
    format!(
        "apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: {name}
spec:
  matchConstraints:
    resourceRules:
    - apiGroups: [\"{group}\"]
      apiVersions: [\"*\"]
      operations: [\"CREATE\", \"UPDATE\"]
      resources: [\"{resource}\"]
{extra}  validations:
  - {validation}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: {name}-binding
spec:
  policyName: {name}
  validationActions: {actions}
"
    )
}

fn configmap(name: &str, namespace: &str, keys: usize) -> String {
    let data: String = (0..keys).map(|i| format!("  k{i}: v\n")).collect();
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {namespace}\ndata:\n{data}")
}

const SMALL: &str = "{expression: \"size(object.data) <= 2\", message: \"at most 2 keys\"}";

#[tokio::test]
async fn deny_refuses_violating_configmaps_with_the_apiservers_message() {
    let c = cluster().await;
    let k = Kubectl::new(&c, &std::env::temp_dir());
    let policy = k.file("policy.yaml", &policy_and_binding("small", "/configmaps", SMALL, "[Deny]", ""));
    assert_eq!(
        k.ok(&["apply", "-f", &policy]).await.trim(),
        "validatingadmissionpolicy.admissionregistration.k8s.io/small created\n\
         validatingadmissionpolicybinding.admissionregistration.k8s.io/small-binding created"
    );
    let big = k.file("big.yaml", &configmap("big", "default", 3));
    let out = k.run(&["apply", "-f", &big]).await;
    assert!(!out.ok, "{}", out.stdout);
    assert_eq!(
        out.stderr,
        "The configmaps \"big\" is invalid: : ValidatingAdmissionPolicy 'small' with binding 'small-binding' denied request: at most 2 keys\n"
    );
    // `kubectl create configmap` (a protobuf request) prints the Status message instead.
    let out =
        k.run(&["create", "configmap", "big", "--from-literal=a=1", "--from-literal=b=2", "--from-literal=c=3"]).await;
    assert!(!out.ok);
    assert_eq!(
        out.stderr,
        "error: failed to create configmap: configmaps \"big\" is forbidden: ValidatingAdmissionPolicy 'small' with binding 'small-binding' denied request: at most 2 keys\n"
    );
    // Server-side apply, dry runs and patches are admitted on their result too.
    let out = k.run(&["apply", "--server-side", "-f", &big]).await;
    assert!(!out.ok && out.stderr.contains("denied request: at most 2 keys"), "{}", out.stderr);
    let out = k.run(&["create", "--dry-run=server", "-f", &big]).await;
    assert!(!out.ok && out.stderr.contains("denied request: at most 2 keys"), "{}", out.stderr);
    let fine = k.file("fine.yaml", &configmap("fine", "default", 2));
    assert_eq!(
        k.ok(&["create", "--dry-run=server", "-f", &fine]).await.trim(),
        "configmap/fine created (server dry run)"
    );
    assert!(k.run(&["get", "configmap", "fine"]).await.stderr.contains("NotFound"), "a dry run stores nothing");
    assert_eq!(k.ok(&["apply", "-f", &fine]).await.trim(), "configmap/fine created");
    let out = k.run(&["patch", "configmap", "fine", "--type=merge", "-p", r#"{"data":{"k9":"v"}}"#]).await;
    assert!(!out.ok && out.stderr.contains("denied request: at most 2 keys"), "{}", out.stderr);

    let policies = k.ok(&["get", "validatingadmissionpolicies"]).await;
    assert_eq!(header(&policies), ["NAME", "VALIDATIONS", "PARAMKIND", "AGE"], "{policies}");
    assert!(
        policies.lines().nth(1).is_some_and(|l| l.starts_with("small") && l.contains(" 1 ") && l.contains("<unset>"))
    );
    let bindings = k.ok(&["get", "validatingadmissionpolicybindings"]).await;
    assert_eq!(header(&bindings), ["NAME", "POLICYNAME", "PARAMREF", "AGE"], "{bindings}");
    let stored = k
        .ok(&[
            "get",
            "validatingadmissionpolicy",
            "small",
            "-o",
            "jsonpath={.spec.failurePolicy} {.spec.matchConstraints.matchPolicy}",
        ])
        .await;
    assert_eq!(stored, "Fail Equivalent", "defaults");
    assert!(
        k.ok(&["api-resources", "--api-group=admissionregistration.k8s.io"])
            .await
            .contains("validatingadmissionpolicybindings")
    );
    assert_eq!(
        k.ok(&["delete", "-f", &policy]).await.trim(),
        "validatingadmissionpolicy.admissionregistration.k8s.io \"small\" deleted\n\
         validatingadmissionpolicybinding.admissionregistration.k8s.io \"small-binding\" deleted"
    );
    assert_eq!(k.ok(&["apply", "-f", &big]).await.trim(), "configmap/big created", "no policy, no refusal");
    c.shutdown().await;
}

#[tokio::test]
async fn warn_prints_a_warning_and_admits() {
    let c = cluster().await;
    let k = Kubectl::new(&c, &std::env::temp_dir());
    k.ok(&["apply", "-f", &k.file("policy.yaml", &policy_and_binding("small", "/configmaps", SMALL, "[Warn]", ""))])
        .await;
    let out = k.run(&["apply", "-f", &k.file("big.yaml", &configmap("big", "default", 3))]).await;
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "configmap/big created");
    assert_eq!(
        out.stderr,
        "Warning: Validation failed for ValidatingAdmissionPolicy 'small' with binding 'small-binding': at most 2 keys\n"
    );
    c.shutdown().await;
}

#[tokio::test]
async fn audit_admits_and_annotates_the_audit_record() {
    let c = Cluster::start(ClusterConfig { audit: true, ..Default::default() }).await.expect("cluster starts");
    let k = Kubectl::new(&c, &std::env::temp_dir());
    k.ok(&["apply", "-f", &k.file("policy.yaml", &policy_and_binding("small", "/configmaps", SMALL, "[Audit]", ""))])
        .await;
    let out = k.run(&["create", "-f", &k.file("big.yaml", &configmap("big", "default", 3))]).await;
    assert!(out.ok && out.stderr.is_empty(), "{}", out.stderr);
    let records = c.audit().records();
    let create = records.iter().find(|r| r.verb == "create" && r.resource == "configmaps").expect("audited");
    let annotation = &create.annotations["validation.policy.admission.k8s.io/validation_failure"];
    assert_eq!(
        annotation,
        r#"[{"message":"at most 2 keys","policy":"small","binding":"small-binding","expressionIndex":0,"validationActions":["Audit"]}]"#
    );
    assert!(
        records.iter().filter(|r| r.verb != "create" || r.resource != "configmaps").all(|r| r.annotations.is_empty())
    );
    c.shutdown().await;
}

#[tokio::test]
async fn namespace_selector_leaves_other_namespaces_alone() {
    let c = cluster().await;
    let k = Kubectl::new(&c, &std::env::temp_dir());
    let selector = "    namespaceSelector:\n      matchLabels: {env: prod}\n";
    let policy = policy_and_binding("small", "/configmaps", SMALL, "[Deny]", "").replacen(
        "    resourceRules:",
        &format!("{selector}    resourceRules:"),
        1,
    );
    k.ok(&["create", "namespace", "prod"]).await;
    k.ok(&["label", "namespace", "prod", "env=prod"]).await;
    k.ok(&["create", "namespace", "dev"]).await;
    k.ok(&["apply", "-f", &k.file("policy.yaml", &policy)]).await;
    assert_eq!(
        k.ok(&["apply", "-f", &k.file("dev.yaml", &configmap("big", "dev", 3))]).await.trim(),
        "configmap/big created"
    );
    let out = k.run(&["apply", "-f", &k.file("prod.yaml", &configmap("big", "prod", 3))]).await;
    assert!(!out.ok && out.stderr.contains("denied request: at most 2 keys"), "{}", out.stderr);
    c.shutdown().await;
}

#[tokio::test]
async fn an_edited_policy_applies_to_the_next_request() {
    let c = cluster().await;
    let k = Kubectl::new(&c, &std::env::temp_dir());
    let policy = k.file("policy.yaml", &policy_and_binding("small", "/configmaps", SMALL, "[Deny]", ""));
    k.ok(&["apply", "-f", &policy]).await;
    let big = k.file("big.yaml", &configmap("big", "default", 3));
    assert!(!k.run(&["apply", "-f", &big]).await.ok);
    let looser = "{expression: \"size(object.data) <= 3\", message: \"at most 3 keys\"}";
    let edited = k.file("edited.yaml", &policy_and_binding("small", "/configmaps", looser, "[Deny]", ""));
    assert!(
        k.ok(&["apply", "-f", &edited])
            .await
            .contains("validatingadmissionpolicy.admissionregistration.k8s.io/small configured")
    );
    assert_eq!(k.ok(&["apply", "-f", &big]).await.trim(), "configmap/big created");
    // And a binding switched to Warn warns from its next request on.
    let warn = k.file("warn.yaml", &policy_and_binding("small", "/configmaps", SMALL, "[Warn]", ""));
    k.ok(&["apply", "-f", &warn]).await;
    let out = k.run(&["apply", "-f", &k.file("bigger.yaml", &configmap("bigger", "default", 4))]).await;
    assert!(out.ok && out.stderr.starts_with("Warning: Validation failed"), "{}", out.stderr);
    c.shutdown().await;
}

#[tokio::test]
async fn message_expressions_variables_and_the_scale_subresource() {
    let c = cluster().await;
    let k = Kubectl::new(&c, &std::env::temp_dir());
    let validation = "{expression: \"variables.replicas <= 5\", messageExpression: \"'replicas must be at most 5, got ' + string(variables.replicas)\", reason: Forbidden}";
    let variables = "  variables:\n  - {name: replicas, expression: \"object.spec.replicas\"}\n";
    let policy = policy_and_binding("max-replicas", "apps/deployments", validation, "[Deny]", variables);
    k.ok(&["apply", "-f", &k.file("policy.yaml", &policy)]).await;
    let out = k.run(&["create", "deployment", "web", "--image=nginx:1.27", "--replicas=7"]).await;
    assert!(!out.ok);
    assert_eq!(
        out.stderr,
        "error: failed to create deployment: deployments.apps \"web\" is forbidden: ValidatingAdmissionPolicy 'max-replicas' with binding 'max-replicas-binding' denied request: replicas must be at most 5, got 7\n"
    );
    k.ok(&["create", "deployment", "web", "--image=nginx:1.27", "--replicas=2"]).await;
    // `deployments` does not select `deployments/scale`, as in kube-apiserver.
    assert_eq!(k.ok(&["scale", "deployment", "web", "--replicas=9"]).await.trim(), "deployment.apps/web scaled");
    let out = k.run(&["patch", "deployment", "web", "--type=merge", "-p", r#"{"spec":{"replicas":8}}"#]).await;
    assert!(!out.ok && out.stderr.contains("replicas must be at most 5, got 8"), "{}", out.stderr);
    c.shutdown().await;
}

#[tokio::test]
async fn custom_resources_are_matched_too() {
    let c = cluster().await;
    let k = Kubectl::new(&c, &std::env::temp_dir());
    k.ok(&["apply", "-f", &k.file("crd.yaml", &serde_yaml_ng::to_string(&widget_crd()).unwrap())]).await;
    let even = "{expression: \"object.spec.size % 2 == 0\"}";
    k.ok(&[
        "apply",
        "-f",
        &k.file("policy.yaml", &policy_and_binding("even", "example.com/widgets", even, "[Deny]", "")),
    ])
    .await;
    let widget = |size: u32| {
        format!("apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w{size}\nspec:\n  size: {size}\n")
    };
    assert_eq!(k.ok(&["apply", "-f", &k.file("w2.yaml", &widget(2))]).await.trim(), "widget.example.com/w2 created");
    let out = k.run(&["apply", "-f", &k.file("w3.yaml", &widget(3))]).await;
    assert!(!out.ok);
    assert_eq!(
        out.stderr,
        "The widgets \"w3\" is invalid: : ValidatingAdmissionPolicy 'even' with binding 'even-binding' denied request: failed expression: object.spec.size % 2 == 0\n"
    );
    c.shutdown().await;
}

#[tokio::test]
async fn policies_that_do_not_compile_are_refused() {
    let c = cluster().await;
    let k = Kubectl::new(&c, &std::env::temp_dir());
    let broken = "{expression: \"object.spec.replicas <\"}";
    let out = k
        .run(&[
            "apply",
            "-f",
            &k.file("policy.yaml", &policy_and_binding("broken", "apps/deployments", broken, "[Deny]", "")),
        ])
        .await;
    assert!(!out.ok);
    assert!(
        out.stderr.contains(
            "The ValidatingAdmissionPolicy \"broken\" is invalid: spec.validations[0].expression: Invalid value: \"object.spec.replicas <\": compilation failed: ERROR: <input>:1:"
        ),
        "{}",
        out.stderr
    );
    let undeclared = "{expression: \"objects.spec.replicas < 3\"}";
    let out = k
        .run(&[
            "apply",
            "-f",
            &k.file("policy2.yaml", &policy_and_binding("typo", "apps/deployments", undeclared, "[Deny]", "")),
        ])
        .await;
    assert!(
        out.stderr.contains("spec.validations[0].expression: Invalid value: \"objects.spec.replicas < 3\": compilation failed: ERROR: <input>:1:1: undeclared reference to 'objects' (in container '')"),
        "{}",
        out.stderr
    );
    c.shutdown().await;
}
