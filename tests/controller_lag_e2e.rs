//! Every example's routing, run by the controller on the embedded cluster while the proxies lag:
//! each proxy receives routes and clusters (subsets, endpoints) separately and late, one of them
//! seconds late for clusters (`Lag::scenarios`). Background traffic goes through the proxies the
//! whole time; the controller's routing changes must cost no request: no 503 (NC, NR, UH, UF) and
//! no refused connection — except recreate's planned gap, where only what the strategy means
//! (no version running) may fail.
//!
//! The examples run as written (with Istio, with the Gateway API's HTTPRoute on a mesh that
//! implements it, and without a mesh: `routing.provider` set to `istio`, `gatewayAPI` or
//! `native`) except for their analysis (covered by the analysis tests): it is
//! dropped, analysis steps go, timed pauses last 20 s and indefinite ones are promoted at once,
//! and A/B tests are promoted to their last arm. Their Deployments are two-replica apps with a
//! `preStop` sleep, as any zero-downtime Deployment needs against lagging endpoints.
//!
//! `cargo test --test integration -- --nocapture --test-threads 1 controller_lag_e2e::` prints the table the README shows.

use crate::support;

use std::collections::BTreeMap;
use std::time::Duration;

use forklane_core::api::{CanaryStep, Experiment, MeshMode, Phase, Provider, Routing, Strategy};
use forklane_sim::traffic::{Lag, LoadSpec, ResponseFlag, ServiceKey, Tally};
use kube::api::{Patch, PatchParams};
use support::e2e::{Env, NS, phase};

/// Simulated seconds per real second: the 5 s straggler is 100 ms.
const SPEED: f64 = 50.0;
const RPS: f64 = 1500.0;

/// Every example, routing only.
fn examples() -> Vec<(String, Experiment)> {
    let out: Vec<(String, Experiment)> =
        support::example_experiments().into_iter().map(|(name, e)| (name, routing_only(e))).collect();
    assert!(out.len() >= 8, "every example is found");
    out
}

/// The example without its analysis, pauses short (see the module doc).
fn routing_only(mut exp: Experiment) -> Experiment {
    exp.spec.analysis = None;
    exp.spec.promotion = None;
    exp.metadata.namespace = Some(NS.into());
    if let Strategy::Canary(canary) = &mut exp.spec.strategy {
        canary.steps.retain(|s| s.analysis.is_none());
        for step in &mut canary.steps {
            if let CanaryStep { pause: Some(pause), .. } = step
                && pause.duration.is_some()
            {
                pause.duration = Some("20s".parse().unwrap());
            }
        }
    }
    exp
}

/// The Service (selecting what all arms share) and a Deployment per arm.
fn workloads(exp: &Experiment) -> String {
    let arms = &exp.spec.arms;
    let shared: BTreeMap<&String, &String> =
        arms[0].selector.iter().filter(|(k, v)| arms.iter().all(|a| a.selector.get(*k) == Some(*v))).collect();
    let flow = |m: &mut dyn Iterator<Item = (&String, &String)>| {
        format!("{{{}}}", m.map(|(k, v)| format!("{k}: \"{v}\"")).collect::<Vec<_>>().join(", "))
    };
    let service = &exp.spec.service.name;
    let port = exp.spec.service.port.unwrap_or(80);
    let mut out = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {service}, namespace: {NS}}}\nspec:\n  ports: [{{name: http, port: {port}, targetPort: http}}]\n  selector: {}\n",
        flow(&mut shared.into_iter())
    );
    for arm in arms {
        let name = arm.deployment.clone().unwrap_or_else(|| format!("{service}-{}", arm.name));
        let labels = flow(&mut arm.selector.iter());
        out.push_str(&format!(
            r#"---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {NS}}}
spec:
  replicas: 2
  selector: {{matchLabels: {labels}}}
  template:
    metadata: {{labels: {labels}}}
    spec:
      terminationGracePeriodSeconds: 30
      containers:
        - name: app
          image: containersol/k8s-deployment-strategies
          ports: [{{name: http, containerPort: 8080}}, {{name: probe, containerPort: 8086}}]
          env: [{{name: VERSION, value: "{arm}"}}]
          readinessProbe: {{httpGet: {{path: /ready, port: probe}}, periodSeconds: 2}}
          lifecycle: {{preStop: {{sleep: {{seconds: 10}}}}}}
"#,
            arm = arm.name
        ));
    }
    out
}

/// What the traffic got during one run.
struct Run {
    tally: Tally,
    outcome: Phase,
    message: String,
}

/// Another team's routing, in place before the experiment.
const OTHER_ROUTING: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: other-app}
spec:
  hosts: [other-app]
  http: [{route: [{destination: {host: other-app}}]}]
"#;

/// Runs `exp` under `lag` to its end, promoting where it waits for a person.
async fn run(exp: &Experiment, mode: Routing, lag: Lag) -> Run {
    run_reporting(exp, mode, lag, false).await
}

/// [`run`], with istiod reporting distribution in the routing objects' status (`report`).
async fn run_reporting(exp: &Experiment, mode: Routing, lag: Lag, report: bool) -> Run {
    let mut exp = exp.clone();
    exp.spec.mesh = MeshMode::Auto;
    exp.spec.routing.get_or_insert_with(Default::default).provider = Some(match mode {
        Routing::Istio => Provider::Istio,
        Routing::GatewayApi => Provider::GatewayApi,
        Routing::Native => Provider::Native,
    });
    let exp = &exp;
    // The Gateway API's mesh is one without Istio's CRDs (ambient with HTTPRoute, Linkerd).
    let mut env = Env::start_with_speed(mode == Routing::Istio, false, SPEED).await;
    if mode == Routing::GatewayApi {
        env.install_gateway_api().await;
    }
    env.set_lag(lag.clone());
    if report {
        // A mesh that reports has reported on routing that was there before (the controller
        // expects reports once it has seen one; the very first routing object of a cluster
        // relies on the delay alone).
        env.report_distribution(true);
        env.apply(OTHER_ROUTING).await;
    }
    env.apply(&workloads(exp)).await;
    for arm in &exp.spec.arms {
        let name = arm.deployment.clone().unwrap_or_default();
        env.wait_ready(&name, 2).await;
    }
    env.until_proxies_catch_up(&lag).await;
    let spec = LoadSpec {
        users: 300,
        mobile_share: 0.3,
        regions: vec!["eu-west-1".into(), "us-east-1".into()],
        ..Default::default()
    };
    env.start_traffic_with(ServiceKey::new(NS, &exp.spec.service.name), RPS, spec);
    env.start_controller();
    env.apply(&serde_yaml_ng::to_string(exp).unwrap()).await;
    let name = exp.metadata.name.clone().unwrap();
    let last_arm = exp.spec.arms.last().unwrap().name.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let (outcome, message) = loop {
        assert!(tokio::time::Instant::now() < deadline, "{name} never finished");
        let now = env.experiments().get(&name).await.unwrap();
        let status = now.status.clone().unwrap_or_default();
        if let Some(p @ (Phase::Succeeded | Phase::RolledBack | Phase::Failed)) = phase(&now) {
            break (p, status.message.unwrap_or_default());
        }
        let ready = status.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True");
        let asked = now.metadata.annotations.as_ref().is_some_and(|a| a.contains_key("forklane.io/promote"));
        let waits = matches!(phase(&now), Some(Phase::Paused))
            || (ready && matches!(exp.spec.strategy, Strategy::AbTest(_) | Strategy::BlueGreen(_)));
        if waits && !asked {
            let to = if matches!(exp.spec.strategy, Strategy::AbTest(_)) { last_arm.as_str() } else { "next" };
            let patch = serde_json::json!({"metadata": {"annotations": {"forklane.io/promote": to}}});
            env.experiments().patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Past the scale-down delay, and past the slowest proxy: the last routing change everywhere.
    tokio::time::sleep(env.clock.real_duration(Duration::from_secs(40))).await;
    let tally = env.traffic_tally();
    env.shutdown().await;
    Run { tally, outcome, message }
}

fn row(example: &str, mode: &str, lag: &str, run: &Run) -> String {
    let flags: Vec<String> = run.tally.unavailable_by_flag.iter().map(|(f, n)| format!("{f:?} {n}")).collect();
    format!(
        "| {example} | {mode} | {lag} | {} | {} | {} | {:?} |",
        run.tally.requests,
        run.tally.failed(),
        if flags.is_empty() { "-".into() } else { flags.join(", ") },
        run.outcome
    )
}

/// Recreate stops the old version before it starts the new one: requests in that gap fail by
/// design (UH with a mesh, refused without). Nothing the controller routes may fail.
fn routing_failures(example: &str, t: &Tally) -> u64 {
    if example == "recreate" {
        t.unavailable(ResponseFlag::NoRoute)
            + t.unavailable(ResponseFlag::NoClusterFound)
            + t.unavailable(ResponseFlag::UpstreamConnectionFailure)
    } else {
        t.failed()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_with_a_mesh_costs_no_request_while_proxies_lag() {
    let (lag_name, lag) = Lag::scenarios().pop().unwrap();
    let mut rows = Vec::new();
    for (example, exp) in examples() {
        let run = run(&exp, Routing::Istio, lag.clone()).await;
        rows.push(row(&example, "istio", lag_name, &run));
        println!("{}", rows.last().unwrap());
        assert!(run.tally.requests > 1_000, "{example}: traffic ran");
        assert_eq!(run.outcome, Phase::Succeeded, "{example}: {}", run.message);
        assert_eq!(routing_failures(&example, &run.tally), 0, "{example}: {:?}", run.tally);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_costs_no_request_under_every_lag() {
    let (_, canary) = examples().into_iter().find(|(n, _)| n == "canary").unwrap();
    for (lag_name, lag) in Lag::scenarios() {
        for mode in [Routing::Istio, Routing::GatewayApi, Routing::Native] {
            let run = run(&canary, mode, lag.clone()).await;
            println!("{}", row("canary", mode.as_str(), lag_name, &run));
            assert_eq!(run.outcome, Phase::Succeeded, "{lag_name}");
            assert_eq!(run.tally.failed(), 0, "{lag_name}, {mode:?}: {:?}", run.tally);
        }
    }
}

/// Where the mesh reports distribution (istiod's `PILOT_ENABLE_STATUS`), the controller waits
/// for the report as well as the propagation delay: a delay (1 s) shorter than the straggler's
/// 5 s then costs nothing. Without the report the same delay loses requests to 503 NC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_meshs_distribution_report_covers_a_straggler_slower_than_the_delay() {
    let (_, mut canary) = examples().into_iter().find(|(n, _)| n == "canary").unwrap();
    let routing = canary.spec.routing.get_or_insert_with(Default::default);
    routing.propagation_delay = Some("1s".parse().unwrap());
    let (lag_name, lag) = Lag::scenarios().pop().unwrap();
    let reported = run_reporting(&canary, Routing::Istio, lag.clone(), true).await;
    println!("{} (1s delay, distribution reported)", row("canary", "istio", lag_name, &reported));
    assert_eq!(reported.outcome, Phase::Succeeded, "{}", reported.message);
    assert_eq!(reported.tally.failed(), 0, "{:?}", reported.tally);
    let unreported = run_reporting(&canary, Routing::Istio, lag, false).await;
    println!("{} (1s delay, no report)", row("canary", "istio", lag_name, &unreported));
    assert!(unreported.tally.unavailable(ResponseFlag::NoClusterFound) > 0, "{:?}", unreported.tally);
}

/// Every example through the Gateway API's HTTPRoute (attached to the Service, GAMMA, with one
/// Service per arm) on a mesh whose proxies lag: canary steps, A/B with rules and sticky users,
/// A/B/n, blue/green with its preview, mirroring and dark launch, recreate and rolling update.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_through_httproutes_costs_no_request_while_proxies_lag() {
    let (lag_name, lag) = Lag::scenarios().pop().unwrap();
    for (example, exp) in examples() {
        let run = run(&exp, Routing::GatewayApi, lag.clone()).await;
        println!("{}", row(&example, "gatewayAPI", lag_name, &run));
        assert!(run.tally.requests > 1_000, "{example}: traffic ran");
        assert_eq!(run.outcome, Phase::Succeeded, "{example}: {}", run.message);
        assert_eq!(routing_failures(&example, &run.tally), 0, "{example}: {:?}", run.tally);
    }
}

/// The make-before-break is what keeps the HTTPRoute canary clean: with the delays set to 0s, an
/// arm's Service goes while lagging proxies still route to it, and they answer 503 NC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_its_delays_an_httproute_canary_loses_requests_to_lagging_proxies() {
    let (_, mut canary) = examples().into_iter().find(|(n, _)| n == "canary").unwrap();
    let routing = canary.spec.routing.get_or_insert_with(Default::default);
    routing.propagation_delay = Some("0s".parse().unwrap());
    routing.scale_down_delay = Some("0s".parse().unwrap());
    let (lag_name, lag) = Lag::scenarios().pop().unwrap();
    let run = run(&canary, Routing::GatewayApi, lag).await;
    println!("{} (0s delays)", row("canary", "gatewayAPI", lag_name, &run));
    assert_eq!(run.outcome, Phase::Succeeded, "{}", run.message);
    assert!(run.tally.unavailable(ResponseFlag::NoClusterFound) > 0, "{:?}", run.tally);
}

/// Without a mesh, what needs one is refused before anything is routed: rules (unless
/// `allowDegraded`), mirroring, the blue/green preview header; and a canary needs its replica
/// count (the weights become replica ratios). The example and what its refusal says.
const NEEDS_A_MESH: [(&str, &str); 5] = [
    ("abn-test", "a mesh (mesh: istio, or provider: gatewayAPI)"),
    ("dark-launch", "a mesh (mesh: istio, or provider: gatewayAPI)"),
    ("mirror", "a mesh (mesh: istio, or provider: gatewayAPI)"),
    ("gateway-api-ambient", "a mesh (mesh: istio, or provider: gatewayAPI)"),
    ("gateway-api-linkerd", "spec.strategy.canary.totalReplicas: required without a mesh"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_without_a_mesh_costs_no_request_while_kube_proxies_lag() {
    let (lag_name, lag) = Lag::scenarios().pop().unwrap();
    for (example, mut exp) in examples() {
        if let Strategy::BlueGreen(bg) = &mut exp.spec.strategy {
            // The Service selector switch itself, without the preview route only a mesh has.
            bg.preview_header = None;
        }
        let run = run(&exp, Routing::Native, lag.clone()).await;
        println!("{}", row(&example, "none", lag_name, &run));
        assert!(run.tally.requests > 1_000, "{example}: traffic ran");
        assert_eq!(routing_failures(&example, &run.tally), 0, "{example}: {:?}", run.tally);
        if let Some((_, why)) = NEEDS_A_MESH.iter().find(|(e, _)| *e == example) {
            assert_eq!(run.outcome, Phase::Failed, "{example}: {}", run.message);
            assert!(run.message.contains(why), "{example}: {}", run.message);
        } else {
            assert_eq!(run.outcome, Phase::Succeeded, "{example}: {}", run.message);
        }
    }
}

/// The README's lag table shows a row per example and mode, and no failure but recreate's gap.
#[test]
fn the_readme_shows_every_example_under_the_straggler() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for (example, _) in examples() {
        for mode in ["istio", "gatewayAPI", "none"] {
            let prefix = format!("| {example} | {mode} | 5s straggler | ");
            let row = readme.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("no row {prefix}"));
            let failed = row.split(" | ").nth(4).unwrap();
            assert!(example == "recreate" || failed == "0", "{row}");
        }
    }
}
