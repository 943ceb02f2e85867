//! The controller end to end on the Gateway API: the embedded cluster serves the real v1.6.1 CRDs
//! (no Istio), its data plane routes by HTTPRoutes attached to Services (GAMMA), and the
//! experiments say `routing.provider: gatewayAPI`. Each test asserts where requests went, not only
//! what was written: the split's shares, the rules' targets, sticky users who never change arm
//! while the weights move, the preview, the mirror's copies, and no routing 503 on the way.
//! Lagging proxies: `controller_lag_e2e::every_example_through_httproutes_costs_no_request_while_proxies_lag`.

use crate::support;

use std::collections::BTreeMap;
use std::time::Duration;

use forklane_core::api::{Builtin, Phase, Provider};
use forklane_core::fixtures::{ExperimentBuilder, analysis, analysis_step, guardrail, pause, set_weight};
use forklane_core::gateway::HttpRoute;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, Patch, PatchParams};
use support::e2e::*;

const LONG: Duration = Duration::from_secs(90);

/// The embedded cluster with the Gateway API and two ready versions of my-app, the controller
/// running.
async fn gateway_env() -> Env {
    let mut env = Env::start(false, false).await;
    env.install_gateway_api().await;
    two_versions(&env, 2, &[], &[]).await;
    env.start_controller();
    env
}

fn on_gateway_api(builder: ExperimentBuilder) -> ExperimentBuilder {
    builder.provider(Provider::GatewayApi)
}

/// Shares of `n` requests per version.
fn shares(env: &Env, n: usize, headers: &[(&str, &str)]) -> BTreeMap<String, f64> {
    let mut counts: BTreeMap<String, f64> = BTreeMap::new();
    for _ in 0..n {
        *counts.entry(env.ask(headers).0.unwrap_or_else(|| "failed".into())).or_default() += 1.0;
    }
    counts.values_mut().for_each(|c| *c /= n as f64);
    counts
}

/// The data plane follows the API server within milliseconds (its feed coalesces writes for 5 ms):
/// a route the status already reports may not have reached it yet.
async fn data_plane_caught_up() {
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// `share` is `p` within four standard errors of a binomial share of `n`.
fn assert_share(share: f64, p: f64, n: usize, what: &str) {
    let se = (p * (1.0 - p) / n as f64).sqrt();
    assert!((share - p).abs() <= 4.0 * se, "{what}: {share:.3} is not {p} ± {:.3}", 4.0 * se);
}

async fn http_route(env: &Env, experiment: &str) -> HttpRoute {
    let api: Api<HttpRoute> = Api::namespaced(env.client.clone(), NS);
    api.get(&format!("{experiment}-forklane")).await.expect("the experiment's HTTPRoute")
}

async fn arm_services(env: &Env) -> Vec<String> {
    let api: Api<Service> = Api::namespaced(env.client.clone(), NS);
    let mut names: Vec<String> = api
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|s| s.metadata.name)
        .filter(|n| n.starts_with("my-app-"))
        .collect();
    names.sort();
    names
}

/// Waits (real time) until the live routing sends `arm` the weight `weight` in its split.
async fn wait_split_weight(env: &Env, experiment: &str, arm: &str, weight: i32) {
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        let route = http_route(env, experiment).await;
        let split = route.spec.rules.iter().flatten().find(|r| r.name.as_deref() == Some("split"));
        let backend = format!("my-app-{arm}");
        let w = split.and_then(|r| r.backend_refs.iter().flatten().find(|b| b.name == backend)).and_then(|b| b.weight);
        if w == Some(weight) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{arm} never got weight {weight}: {route:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn promote(to: &str) -> Patch<serde_json::Value> {
    Patch::Merge(serde_json::json!({"metadata": {"annotations": {"forklane.io/promote": to}}}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_through_an_httproute_moves_the_traffic_step_by_step_and_removes_the_losers_service() {
    let env = gateway_env().await;
    let canary = on_gateway_api(ExperimentBuilder::canary("steps").steps([set_weight(20), pause(), set_weight(60)]));
    env.apply_experiment(canary).await;
    let paused = env.wait_for_phase("steps", LONG, &[Phase::Paused]).await;
    assert_eq!(paused.status.as_ref().unwrap().mesh, Some(forklane_core::api::Routing::GatewayApi));
    assert_eq!(arm_services(&env).await, ["my-app-v1", "my-app-v2"], "one Service per arm");
    let route = http_route(&env, "steps").await;
    let parent = &route.spec.parent_refs.as_ref().unwrap()[0];
    assert_eq!((parent.kind.as_deref(), parent.name.as_str()), (Some("Service"), "my-app"), "attached to the Service");
    data_plane_caught_up().await;
    let n = 2_000;
    let at_20 = shares(&env, n, &[]);
    assert_share(at_20.get("v2").copied().unwrap_or(0.0), 0.2, n, "v2 at step 20");
    assert_eq!(at_20.get("failed"), None, "{at_20:?}");
    env.experiments().patch("steps", &PatchParams::default(), &promote("next")).await.unwrap();
    let done = env.wait_for_phase("steps", LONG, &[Phase::Succeeded]).await;
    assert_eq!(done.status.unwrap().winner.as_deref(), Some("v2"));
    wait_split_weight(&env, "steps", "v2", 100).await;
    data_plane_caught_up().await;
    let after = shares(&env, 300, &[]);
    assert_eq!(after, BTreeMap::from([("v2".to_string(), 1.0)]), "everyone on the winner");
    // The loser's Service goes once no proxy can route to it any more.
    let deadline = tokio::time::Instant::now() + LONG;
    while arm_services(&env).await != ["my-app-v2"] {
        assert!(tokio::time::Instant::now() < deadline, "{:?}", arm_services(&env).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    env.assert_no_routing_503();
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ab_test_through_an_httproute_targets_by_rules_and_no_sticky_user_ever_changes_arm() {
    let env = gateway_env().await;
    let ab = on_gateway_api(
        ExperimentBuilder::ab_test("ab")
            .header_rule("beta", "x-user-group", "beta", "v2")
            .split([("v1", 50), ("v2", 50)]),
    )
    .sticky("forklane-ab");
    env.apply_experiment(ab).await;
    env.wait_for("ab", LONG, |e| {
        e.status.as_ref().is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    })
    .await;
    data_plane_caught_up().await;
    let beta = shares(&env, 200, &[("x-user-group", "beta")]);
    assert_eq!(beta, BTreeMap::from([("v2".to_string(), 1.0)]), "the rule sends beta users to v2");
    // New users: the split assigns them, and the answer's cookie names the arm that answered.
    let mut users: Vec<(String, String)> = Vec::new();
    for _ in 0..400 {
        let (version, cookies) = env.ask(&[]);
        let version = version.expect("answered");
        let cookie = cookies.iter().find(|c| c.starts_with("forklane-ab=")).expect("assigned by a cookie");
        assert!(cookie.starts_with(&format!("forklane-ab={version};")), "{cookie} for {version}");
        let cookie = format!("forklane-ab={version}");
        users.push((version, cookie));
    }
    let on_v2 = users.iter().filter(|(v, _)| v == "v2").count();
    assert_share(on_v2 as f64 / 400.0, 0.5, 400, "new users on v2");
    // The weights move; returning users stay where they were.
    let patch = serde_json::json!({"spec": {"strategy": {"abTest": {"split": {"v1": 90, "v2": 10}}}}});
    env.experiments().patch("ab", &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
    wait_split_weight(&env, "ab", "v2", 10).await;
    data_plane_caught_up().await;
    for (arm, cookie) in &users {
        for _ in 0..3 {
            let (version, _) = env.ask(&[("cookie", &format!("other=1; {cookie}"))]);
            assert_eq!(version.as_deref(), Some(arm.as_str()), "a returning user of {arm} drifted");
        }
    }
    let fresh = shares(&env, 2_000, &[]);
    assert_share(fresh.get("v2").copied().unwrap_or(0.0), 0.1, 2_000, "new users on v2 after the edit");
    env.experiments().patch("ab", &PatchParams::default(), &promote("v2")).await.unwrap();
    env.wait_for_phase("ab", LONG, &[Phase::Succeeded]).await;
    wait_split_weight(&env, "ab", "v2", 100).await;
    data_plane_caught_up().await;
    // After the end every answer expires the cookie, and a v1 user lands on the winner.
    let (version, cookies) = env.ask(&[("cookie", "forklane-ab=v1")]);
    assert_eq!(version.as_deref(), Some("v2"));
    assert!(cookies.iter().any(|c| c.starts_with("forklane-ab=;") && c.contains("Max-Age=0")), "{cookies:?}");
    env.assert_no_routing_503();
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abn_test_through_an_httproute_splits_three_ways() {
    let env = gateway_env().await;
    env.apply(&app("v3", 2, &[])).await;
    env.wait_ready("my-app-v3", 2).await;
    let abn = on_gateway_api(ExperimentBuilder::ab_test("abn").control("v1").arm("v2").arm("v3").split([
        ("v1", 50),
        ("v2", 30),
        ("v3", 20),
    ]));
    env.apply_experiment(abn).await;
    env.wait_for("abn", LONG, |e| {
        e.status.as_ref().is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    })
    .await;
    assert_eq!(arm_services(&env).await, ["my-app-v1", "my-app-v2", "my-app-v3"]);
    data_plane_caught_up().await;
    let n = 3_000;
    let split = shares(&env, n, &[]);
    for (arm, p) in [("v1", 0.5), ("v2", 0.3), ("v3", 0.2)] {
        assert_share(split.get(arm).copied().unwrap_or(0.0), p, n, arm);
    }
    env.assert_no_routing_503();
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_through_an_httproute_previews_by_header_then_switches_everyone() {
    let env = gateway_env().await;
    env.apply_experiment(on_gateway_api(ExperimentBuilder::blue_green("bg").preview_header("x-preview", "true"))).await;
    env.wait_for_phase("bg", LONG, &[Phase::Paused]).await;
    data_plane_caught_up().await;
    assert_eq!(shares(&env, 200, &[("x-preview", "true")]), BTreeMap::from([("v2".to_string(), 1.0)]));
    assert_eq!(shares(&env, 200, &[]), BTreeMap::from([("v1".to_string(), 1.0)]), "everyone else on v1");
    env.experiments().patch("bg", &PatchParams::default(), &promote("next")).await.unwrap();
    env.wait_for_phase("bg", LONG, &[Phase::Succeeded]).await;
    wait_split_weight(&env, "bg", "v2", 100).await;
    data_plane_caught_up().await;
    assert_eq!(shares(&env, 200, &[]), BTreeMap::from([("v2".to_string(), 1.0)]), "everyone switched");
    env.assert_no_routing_503();
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirroring_through_an_httproute_copies_requests_to_v2_without_answering_from_it() {
    let env = gateway_env().await;
    env.apply_experiment(on_gateway_api(ExperimentBuilder::blue_green("shadow").mirror("v2", 50.0))).await;
    env.wait_for_phase("shadow", LONG, &[Phase::Paused]).await;
    data_plane_caught_up().await;
    let n = 1_000;
    assert_eq!(shares(&env, n, &[]), BTreeMap::from([("v1".to_string(), 1.0)]), "only v1 answers");
    let v2 = env.net().dataplane.metrics.recorded().versions.get("v2").cloned().unwrap_or_default();
    assert_share(v2.mirrored as f64 / n as f64, 0.5, n, "copies to v2");
    assert_eq!(v2.visits, 0, "no user saw an answer of v2");
    env.assert_no_routing_503();
    env.shutdown().await;
}

/// The builtin error rate on this path reads the waypoint's metrics of each arm's own Service:
/// v2's breach is seen, and the canary goes back to v1 before its next weight step; a harmless v2
/// passes the same guardrail and is promoted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_builtin_guardrail_reads_each_arms_service_and_rolls_back_a_breach() {
    for (v2_errors, expected) in [("0.05", Phase::RolledBack), ("0.01", Phase::Succeeded)] {
        let mut env = Env::start(false, false).await;
        env.install_gateway_api().await;
        two_versions(&env, 2, &[("sim.forklane.io/error-rate", "0.01")], &[("sim.forklane.io/error-rate", v2_errors)])
            .await;
        env.start_traffic(1500.0, 300);
        env.start_controller();
        let guarded = analysis([guardrail("error-rate", Builtin::IstioErrorRate, 0.02)]);
        let guarded = guarded.interval("1m").min_samples_per_arm(300).max_duration("1h");
        let steps = [set_weight(30), analysis_step(), set_weight(60)];
        env.apply_experiment(on_gateway_api(ExperimentBuilder::canary("guard").steps(steps).analysis(guarded))).await;
        let exp = env.wait_for_phase("guard", LONG, &[Phase::Succeeded, Phase::RolledBack, Phase::Failed]).await;
        let status = exp.status.unwrap();
        assert_eq!(status.phase, Some(expected), "v2 error rate {v2_errors}: {:?}", status.message);
        let message = status.message.clone().unwrap_or_default();
        assert!(!message.contains("invalid"), "{message}");
        let samples: Vec<(String, f64)> = status.samples.iter().map(|s| (s.arm.clone(), s.samples)).collect();
        assert_eq!(samples.len(), 2, "both arms measured by their Services: {status:?}");
        env.assert_no_routing_503();
        env.shutdown().await;
    }
}

/// Another team's HTTPRoute already attached to the Service: the experiment does not start, says
/// which route is in the way, and leaves it as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn someone_elses_httproute_on_the_service_blocks_the_start_and_stays_untouched() {
    let env = gateway_env().await;
    let theirs = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: team-route, namespace: default}
spec:
  parentRefs: [{group: "", kind: Service, name: my-app, port: 80}]
  rules: [{backendRefs: [{name: my-app, port: 80}]}]
"#;
    env.apply(theirs).await;
    let before = serde_json::to_value(http_route_named(&env, "team-route").await.spec).unwrap();
    env.apply_experiment(on_gateway_api(ExperimentBuilder::canary("blocked").steps([set_weight(20)]))).await;
    let blocked = env
        .wait_for("blocked", LONG, |e| {
            e.status
                .as_ref()
                .and_then(|s| s.message.as_deref())
                .is_some_and(|m| m.contains("HTTPRoute default/team-route"))
        })
        .await;
    assert_eq!(phase(&blocked), Some(Phase::Pending), "{:?}", blocked.status);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let api: Api<HttpRoute> = Api::namespaced(env.client.clone(), NS);
    assert!(api.get_opt("blocked-forklane").await.unwrap().is_none(), "no route of ours");
    let after = serde_json::to_value(http_route_named(&env, "team-route").await.spec).unwrap();
    assert_eq!(before, after, "their route as it was");
    env.shutdown().await;
}

async fn http_route_named(env: &Env, name: &str) -> HttpRoute {
    let api: Api<HttpRoute> = Api::namespaced(env.client.clone(), NS);
    api.get(name).await.unwrap()
}

const GATEWAY: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: public, namespace: default}
spec:
  gatewayClassName: sim
  listeners: [{name: http, port: 80, protocol: HTTP}]
"#;

/// North–south: the route attaches to a Gateway (`spec.routing.gatewayAPI.parentRefs`) for the
/// experiment's hostname. Requests entering through the Gateway for that host are split by the
/// step's weights; another host is not routed by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_attached_to_a_gateway_splits_what_enters_through_it() {
    use forklane_core::api::{GatewayApiOptions, ParentRef};
    use forklane_sim::traffic::{ClusterView, GatewayKey, Outcome, Request};
    let env = gateway_env().await;
    env.apply(GATEWAY).await;
    let mut exp = on_gateway_api(ExperimentBuilder::canary("edge").steps([set_weight(30), pause()])).port(80).build();
    exp.spec.routing.get_or_insert_with(Default::default).gateway_api = Some(GatewayApiOptions {
        parent_refs: vec![ParentRef {
            group: None,
            kind: None,
            name: "public".into(),
            namespace: None,
            section_name: Some("http".into()),
            port: None,
        }],
        hostnames: vec!["shop.example.com".into()],
    });
    env.apply(&serde_yaml_ng::to_string(&exp).unwrap()).await;
    env.wait_for_phase("edge", LONG, &[Phase::Paused]).await;
    let parent = &http_route(&env, "edge").await.spec.parent_refs.unwrap()[0];
    assert_eq!((parent.kind.as_deref(), parent.name.as_str()), (Some("Gateway"), "public"));
    let through = |host: &str| {
        let snapshot = env.net().feed.view().snapshot();
        let req = Request { authority: host.into(), ..Request::get("/") };
        match env.net().dataplane.handle_gateway(&snapshot, &GatewayKey::new(NS, "public"), &req, &mut rand::rng()) {
            Outcome::Answered(a) if a.response.status < 400 => a.response.version().map(str::to_string),
            _ => None,
        }
    };
    // The step's route reaches the gateway's proxy moments after the API has it; until then the
    // proxy may still have the first route (everyone on v1) or none.
    wait_split_weight(&env, "edge", "v2", 30).await;
    data_plane_caught_up().await;
    let deadline = tokio::time::Instant::now() + LONG;
    while (0..50).any(|_| through("shop.example.com").is_none()) {
        assert!(tokio::time::Instant::now() < deadline, "the Gateway never routed shop.example.com");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = env.net().dataplane.metrics.recorded().local_replies;
    let n = 2_000;
    let v2 = (0..n).filter(|_| through("shop.example.com").as_deref() == Some("v2")).count();
    let v1 = (0..n).filter(|_| through("shop.example.com").as_deref() == Some("v1")).count();
    assert_share(v2 as f64 / n as f64, 0.3, n, "v2 through the Gateway");
    assert_share(v1 as f64 / n as f64, 0.7, n, "v1 through the Gateway");
    assert_eq!(before, env.net().dataplane.metrics.recorded().local_replies, "no local reply once routed");
    assert_eq!(through("other.example.com"), None, "another host is not ours");
    env.shutdown().await;
}

/// Waits (real time) until `done` holds of the arm Services and HTTPRoutes in the namespace.
async fn wait_routing(env: &Env, what: &str, done: impl Fn(&[String], &[String]) -> bool) {
    let routes: Api<HttpRoute> = Api::namespaced(env.client.clone(), NS);
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        let services = arm_services(env).await;
        let mut names: Vec<String> =
            routes.list(&Default::default()).await.unwrap().items.into_iter().filter_map(|r| r.metadata.name).collect();
        names.sort();
        if done(&services, &names) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: Services {services:?}, HTTPRoutes {names:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A finished experiment, deleted, leaves its route and its winner's Service serving. The next
/// experiment on the Service, with other arm names, takes over without a gap: its route first,
/// then the old route goes, then (once no proxy can route by it) the old arm Service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_experiment_removes_the_route_and_the_arm_service_a_deleted_one_left() {
    let env = gateway_env().await;
    env.apply_experiment(on_gateway_api(ExperimentBuilder::canary("old").steps([set_weight(20), pause()]))).await;
    env.wait_for_phase("old", LONG, &[Phase::Paused]).await;
    env.experiments().patch("old", &PatchParams::default(), &promote("next")).await.unwrap();
    env.wait_for_phase("old", LONG, &[Phase::Succeeded]).await;
    wait_routing(&env, "the loser's Service goes", |services, _| services == ["my-app-v2"]).await;
    env.experiments().delete("old", &Default::default()).await.unwrap();
    env.wait_gone("old", LONG).await;
    data_plane_caught_up().await;
    assert_eq!(shares(&env, 200, &[]), BTreeMap::from([("v2".to_string(), 1.0)]), "the released route serves");
    wait_routing(&env, "released, not removed", |services, routes| {
        services == ["my-app-v2"] && routes == ["old-forklane"]
    })
    .await;

    let next = ExperimentBuilder::canary("next").control_on("stable", "v2").arm_on("canary", "v1");
    env.apply_experiment(on_gateway_api(next.steps([set_weight(20), pause()]))).await;
    env.wait_for_phase("next", LONG, &[Phase::Paused]).await;
    wait_routing(&env, "the old route goes, then the old arm Service", |services, routes| {
        services == ["my-app-canary", "my-app-stable"] && routes == ["next-forklane"]
    })
    .await;
    data_plane_caught_up().await;
    let n = 2_000;
    let at_20 = shares(&env, n, &[]);
    assert_share(at_20.get("v1").copied().unwrap_or(0.0), 0.2, n, "the canary (v1) at step 20");
    assert_eq!(at_20.get("failed"), None, "{at_20:?}");
    env.assert_no_routing_503();
    env.shutdown().await;
}

/// `auto` decides once, at the start, from the CRDs the API server has: the Gateway API installed
/// moments before the experiment (its CRDs' watch events may reach the controller after the
/// experiment's) is chosen for a Service behind a waypoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_chooses_the_gateway_api_installed_just_before_the_experiment_for_a_service_behind_a_waypoint() {
    let mut env = Env::start(false, false).await;
    two_versions(&env, 2, &[], &[]).await;
    let waypoint = serde_json::json!({"metadata": {"labels": {"istio.io/use-waypoint": "waypoint"}}});
    let services: Api<Service> = Api::namespaced(env.client.clone(), NS);
    services.patch("my-app", &PatchParams::default(), &Patch::Merge(waypoint)).await.unwrap();
    env.start_controller();
    tokio::time::sleep(Duration::from_millis(500)).await;
    env.install_gateway_api().await;
    env.apply_experiment(ExperimentBuilder::canary("auto").steps([set_weight(20), pause()])).await;
    let paused = env.wait_for_phase("auto", LONG, &[Phase::Paused]).await;
    assert_eq!(paused.status.unwrap().mesh, Some(forklane_core::api::Routing::GatewayApi));
    wait_split_weight(&env, "auto", "v2", 20).await;
    env.shutdown().await;
}
