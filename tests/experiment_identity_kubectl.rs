//! An Experiment's identity — its arms (names, selectors, deployments, which is the control) and
//! its strategy kind — is fixed by the API server once the experiment has started, with real
//! kubectl 1.37 against the embedded cluster and the checked-in CRD. Before the start (no status,
//! or phase Pending) every edit passes; after it, other edits (steps, split weights) still do.
//! kubectl must be on PATH (scripts/install-kubectl).

use crate::support;

use std::path::Path;

use forklane_core::api::Experiment;
use forklane_core::fixtures::{ExperimentBuilder, pause_for, set_weight};
use support::cluster::cluster;
use support::kubectl::{Kubectl, Out};

const NEW_EXPERIMENT: &str = "create a new Experiment instead";

/// kubectl run in the repository's `crds/`, with the Experiment CRD installed and established.
async fn kubectl_with_crds(c: &forklane_sim::cluster::Cluster) -> Kubectl {
    let k = Kubectl::new(c, &Path::new(env!("CARGO_MANIFEST_DIR")).join("crds"));
    k.ok(&["apply", "-f", "forklane.crds.yaml"]).await;
    k.ok(&["wait", "--for=condition=Established", "crd/experiments.forklane.io", "--timeout=10s"]).await;
    k
}

/// `kubectl apply` of an experiment (as JSON, which is YAML too).
async fn apply(k: &Kubectl, exp: &Experiment) -> Out {
    let name = exp.metadata.name.as_deref().expect("named");
    let file = k.file(&format!("{name}.json"), &serde_json::to_string(exp).unwrap());
    k.run(&["apply", "-f", &file]).await
}

async fn set_phase(k: &Kubectl, name: &str, phase: &str) {
    let patch = format!(r#"{{"status":{{"phase":"{phase}"}}}}"#);
    k.ok(&["patch", "experiment", name, "--subresource=status", "--type=merge", "-p", &patch]).await;
}

fn canary() -> ExperimentBuilder {
    ExperimentBuilder::canary("checkout").steps([set_weight(10), pause_for("1m"), set_weight(50)])
}

fn assert_configured(out: &Out, what: &str) {
    assert!(out.ok && out.stdout.contains("configured"), "{what} is refused:\n{}\n{}", out.stdout, out.stderr);
}

/// The edit is refused, naming the field, the rule's message and the way out.
fn assert_forbidden(out: &Out, field: &str, what: &str) {
    assert!(!out.ok, "{what} is accepted:\n{}", out.stdout);
    for needle in [&format!("{field}: Forbidden"), "once the experiment has started", NEW_EXPERIMENT] {
        assert!(out.stderr.contains(needle), "{what}: {needle:?} missing in\n{}", out.stderr);
    }
}

#[tokio::test]
async fn arms_and_strategy_kind_are_fixed_once_started() {
    let c = cluster().await;
    let k = kubectl_with_crds(&c).await;
    assert!(apply(&k, &canary().build()).await.stdout.contains("created"));
    set_phase(&k, "checkout", "Progressing").await;

    let renamed = canary().control("v1").arm_on("green", "v2").build();
    assert_forbidden(&apply(&k, &renamed).await, "spec.arms", "renaming an arm");
    let mut relabelled = canary().build();
    relabelled.spec.arms[1].selector.insert("track".into(), "canary".into());
    assert_forbidden(&apply(&k, &relabelled).await, "spec.arms", "changing a selector");
    let mut redeployed = canary().build();
    redeployed.spec.arms[1].deployment = Some("my-app-v2-hotfix".into());
    assert_forbidden(&apply(&k, &redeployed).await, "spec.arms", "changing a deployment");
    let swapped = canary().arm("v1").control("v2").build();
    assert_forbidden(&apply(&k, &swapped).await, "spec.arms", "making another arm the control");
    let blue_green = ExperimentBuilder::blue_green("checkout").build();
    assert_forbidden(&apply(&k, &blue_green).await, "spec.strategy", "changing the strategy kind");
    let arms = k.ok(&["get", "experiment", "checkout", "-o", "jsonpath={.spec.arms[*].name}"]).await;
    assert_eq!(arms, "v1 v2", "refused edits leave the stored experiment as it was");

    let later_steps = canary().steps([set_weight(10), pause_for("5m"), set_weight(30), set_weight(60)]).build();
    assert_configured(&apply(&k, &later_steps).await, "editing canary steps");
    let weights = "jsonpath={.spec.strategy.canary.steps[*].setWeight}";
    assert_eq!(k.ok(&["get", "experiment", "checkout", "-o", weights]).await, "10 30 60");
    // The controller still writes status: the rules compare the spec, which it leaves alone.
    set_phase(&k, "checkout", "Paused").await;
    c.shutdown().await;
}

#[tokio::test]
async fn split_weights_stay_editable_once_started() {
    let c = cluster().await;
    let k = kubectl_with_crds(&c).await;
    let ab = |v1, v2| ExperimentBuilder::ab_test("banner").split([("v1", v1), ("v2", v2)]).build();
    assert!(apply(&k, &ab(50, 50)).await.stdout.contains("created"));
    set_phase(&k, "banner", "Analysing").await;
    assert_configured(&apply(&k, &ab(70, 30)).await, "changing split weights");
    let split = k.ok(&["get", "experiment", "banner", "-o", "jsonpath={.spec.strategy.abTest.split.v1}"]).await;
    assert_eq!(split, "70");
    c.shutdown().await;
}

#[tokio::test]
async fn identity_is_editable_until_the_experiment_starts() {
    let c = cluster().await;
    let k = kubectl_with_crds(&c).await;
    assert!(apply(&k, &canary().build()).await.stdout.contains("created"));
    // No status at all.
    let renamed = canary().control("v1").arm_on("green", "v2").build();
    assert_configured(&apply(&k, &renamed).await, "renaming an arm without status");
    // Pending: held by a policy or a conflicting VirtualService, not started.
    set_phase(&k, "checkout", "Pending").await;
    let renamed_again = canary().control("blue").arm_on("green", "v2").build();
    assert_configured(&apply(&k, &renamed_again).await, "renaming an arm while Pending");
    let blue_green = ExperimentBuilder::blue_green("checkout").control("blue").arm_on("green", "v2").build();
    assert_configured(&apply(&k, &blue_green).await, "changing the strategy kind while Pending");
    // Started: the same kind of edit is now refused.
    set_phase(&k, "checkout", "Progressing").await;
    let renamed_late = ExperimentBuilder::blue_green("checkout").control("blue").arm_on("teal", "v2").build();
    assert_forbidden(&apply(&k, &renamed_late).await, "spec.arms", "renaming an arm once started");
    c.shutdown().await;
}
