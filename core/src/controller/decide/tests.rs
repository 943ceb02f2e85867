//! Table tests of the pure reconcile against a fake world: what `decide` writes is applied to the
//! observation as the API server and the caches would show it, pods come and go as a test says,
//! and time moves by the requeue asked for. No server.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use kube::api::ObjectMeta;

use super::*;
use crate::api::{MeshMode, OnProgressDeadline, Phase, Routing};
use crate::controller::commands::{ABORT, PROMOTE};
use crate::controller::conditions::{self, event};
use crate::controller::distribution::Distribution;
use crate::controller::health::weights;
use crate::controller::observe::{ArmPods, Leftovers, Observation, referenced_subsets};
use crate::fixtures::{ExperimentBuilder, analysis, conversion, pause, set_weight};
use crate::istio::VirtualService;
use crate::plan::Observed;

/// The cluster as `decide` sees it, changed by what `decide` returns.
struct World {
    exp: Experiment,
    obs: Observation,
    now: Timestamp,
    /// Arms whose pods are all gone (their Deployment deleted, or crashing).
    dead: BTreeSet<String>,
    /// What the next look at the metrics finds.
    answer: Option<Measured>,
    /// Every VirtualService written, in order.
    routes: Vec<VirtualService>,
    /// Every HTTPRoute written, in order.
    http_routes: Vec<crate::gateway::HttpRoute>,
    /// Every routing write, in order: `(kind, name or arms)`, to check make-before-break.
    log: Vec<String>,
    events: Vec<Event>,
    /// When routing was last written, as the driver remembers it.
    routed_at: Option<Timestamp>,
}

fn start() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap()
}

impl World {
    fn new(builder: ExperimentBuilder, mode: Routing) -> Self {
        let mut exp = match mode {
            Routing::Istio => builder.mesh(MeshMode::Istio).build(),
            Routing::GatewayApi => builder.provider(crate::api::Provider::GatewayApi).build(),
            Routing::Native => builder.mesh(MeshMode::None).build(),
        };
        exp.metadata.uid = Some("uid-1".into());
        exp.metadata.generation = Some(1);
        let arms: Vec<String> = exp.spec.arms.iter().map(|a| a.name.clone()).collect();
        let obs = Observation {
            mode,
            plan: Observed { replicas: arms.iter().map(|a| (a.clone(), 2)).collect(), ..Default::default() },
            routed_subsets: BTreeSet::new(),
            routed_services: BTreeSet::new(),
            pods: BTreeMap::new(),
            conflicts: vec![],
            leftovers: Default::default(),
            distribution: Default::default(),
            policies: vec![],
            namespace_labels: BTreeMap::new(),
            live: Default::default(),
            revisions: arms.iter().map(|a| (a.clone(), "r1".to_string())).collect(),
        };
        let mut world = World {
            exp,
            obs,
            now: start(),
            dead: BTreeSet::new(),
            answer: None,
            routes: vec![],
            http_routes: vec![],
            log: vec![],
            events: vec![],
            routed_at: None,
        };
        world.refresh_pods();
        world
    }

    fn refresh_pods(&mut self) {
        for arm in self.exp.spec.arms.iter().map(|a| a.name.clone()).collect::<Vec<_>>() {
            let replicas = self.obs.plan.replicas.get(&arm).copied().unwrap_or(0);
            let n = if self.dead.contains(&arm) { 0 } else { replicas };
            if n > 0 {
                self.obs.plan.serving.insert(arm.clone());
            } else {
                self.obs.plan.serving.remove(&arm);
            }
            self.obs.pods.insert(arm, ArmPods { existing: n, ready: n });
        }
    }

    fn kill(&mut self, arm: &str) {
        self.dead.insert(arm.into());
        self.refresh_pods();
    }

    fn revive(&mut self, arm: &str) {
        self.dead.remove(arm);
        self.refresh_pods();
    }

    fn annotate(&mut self, key: &str, value: Option<&str>) {
        let annotations = self.exp.metadata.annotations.get_or_insert_with(Default::default);
        match value {
            Some(v) => annotations.insert(key.into(), v.into()),
            None => annotations.remove(key),
        };
    }

    fn status(&self) -> ExperimentStatus {
        self.exp.status.clone().unwrap_or_default()
    }

    fn condition(&self, type_: &str) -> Option<(String, String)> {
        let status = self.status();
        let c = status.conditions.iter().find(|c| c.type_ == type_)?;
        Some((c.status.clone(), c.message.clone()))
    }

    /// One reconcile: decide (asking the metrics when due), then the world takes the writes.
    fn tick(&mut self) -> Reconciled {
        let routed_at = self.routed_at;
        let input = Input { exp: &self.exp, obs: &self.obs, now: self.now, measured: None, routed_at };
        let mut out = decide(&input);
        if out.measure.is_some() {
            let answer = self.answer.clone().expect("the test says what a look at the metrics finds");
            out = decide(&Input { exp: &self.exp, obs: &self.obs, now: self.now, measured: Some(&answer), routed_at });
            assert!(out.measure.is_none(), "a second decide with the answer never asks again");
        }
        self.take(&out);
        out
    }

    fn take(&mut self, out: &Reconciled) {
        if out.routes() {
            self.routed_at = Some(self.now);
        }
        let left = &mut self.obs.leftovers;
        left.virtual_services.retain(|name| !out.deletes.virtual_services.contains(name));
        left.destination_rules.retain(|name| !out.deletes.destination_rules.contains(name));
        left.http_routes.retain(|name| !out.deletes.http_routes.contains(name));
        left.services.retain(|name| !out.deletes.services.contains(name));
        for action in &out.writes {
            self.write(action);
        }
        self.exp.status = Some(out.status.clone());
        match out.finalizer {
            Some(FinalizerChange::Add) => self.exp.metadata.finalizers = Some(vec![FINALIZER.into()]),
            Some(FinalizerChange::Remove) => self.exp.metadata.finalizers = Some(vec![]),
            None => {}
        }
        if out.clear_promote {
            self.annotate(PROMOTE, None);
        }
        self.events.extend(out.events.iter().cloned());
    }

    fn write(&mut self, action: &Action) {
        let object = action.object();
        match action {
            Action::VirtualService(vs) => {
                self.obs.routed_subsets = referenced_subsets(vs);
                self.obs.live.virtual_service = Some(object);
                self.routes.push(vs.as_ref().clone());
            }
            Action::Telemetry(_) => self.obs.live.telemetry = Some(object),
            Action::DestinationRule(dr) => {
                self.obs.plan.subsets = Some(dr.spec.subsets.iter().flatten().map(|s| s.name.clone()).collect());
                self.obs.live.destination_rule = Some(object);
            }
            Action::HttpRoute(route) => {
                self.obs.routed_subsets = crate::plan::gateway::referenced_arms(&self.exp, route);
                self.obs.routed_services = crate::plan::gateway::service_names(route);
                self.obs.live.http_route = Some(object);
                self.http_routes.push(route.as_ref().clone());
                self.log.push(format!("route {:?}", self.obs.routed_subsets));
            }
            Action::ArmService(service) => {
                let arm = service.metadata.labels.as_ref().unwrap()[crate::plan::gateway::ARM_LABEL].clone();
                self.log.push(format!("service {}", service.metadata.name.as_deref().unwrap()));
                self.obs.plan.subsets.get_or_insert_with(BTreeSet::new).insert(arm);
                self.obs.live.arm_services.insert(service.metadata.name.clone().unwrap(), object);
            }
            Action::RemoveArmServices(r) => {
                for (arm, name) in &r.services {
                    self.log.push(format!("remove {name}"));
                    self.obs.live.arm_services.remove(name);
                    self.obs.plan.subsets.get_or_insert_with(BTreeSet::new).remove(arm);
                }
            }
            Action::ServiceSelector(_) => self.obs.live.service = Some(object),
            Action::Scale(s) => {
                let arm = self.exp.spec.arms.iter().find(|a| a.deployment.as_deref() == Some(&s.deployment)).unwrap();
                self.obs.plan.replicas.insert(arm.name.clone(), s.replicas);
                self.obs.live.deployments.insert(s.deployment.clone(), object);
                self.refresh_pods();
            }
        }
    }

    /// Reconciles until the phase is `phase` (time moving as requeued), at most 30 times.
    fn until(&mut self, phase: Phase) {
        for _ in 0..30 {
            let out = self.tick();
            if self.status().phase == Some(phase) {
                return;
            }
            self.now += out.requeue.unwrap_or(Duration::from_secs(1));
        }
        panic!("never reached {phase:?}: {:?}", self.status());
    }

    /// The arms the last VirtualService written sends traffic to, with their weights.
    fn last_split(&self) -> BTreeMap<String, i32> {
        let mut split = match self.http_routes.last() {
            Some(route) => crate::plan::gateway::weights(&self.exp, route),
            None => weights(self.routes.last().expect("a VirtualService was written")),
        };
        split.retain(|_, w| *w > 0);
        split
    }
}

fn canary_paused_at_20() -> World {
    let builder = ExperimentBuilder::canary("c").steps([set_weight(20), pause(), set_weight(50)]);
    let mut world = World::new(builder, Routing::Istio);
    world.until(Phase::Paused);
    assert_eq!(world.last_split(), BTreeMap::from([("v1".into(), 80), ("v2".into(), 20)]));
    world
}

fn reasons(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.reason).collect()
}

#[test]
fn the_ramp_to_the_first_pause_writes_each_routing_object_once() {
    let builder = ExperimentBuilder::canary("c").steps([set_weight(20), pause(), set_weight(50)]);
    let mut world = World::new(builder, Routing::Istio);
    let mut written = Vec::new();
    for _ in 0..10 {
        let out = world.tick();
        written.extend(out.writes.iter().map(|w| w.object()["kind"].as_str().unwrap_or_default().to_string()));
        if world.status().phase == Some(Phase::Paused) {
            break;
        }
        world.now += out.requeue.unwrap_or(Duration::from_secs(1));
    }
    assert_eq!(world.status().phase, Some(Phase::Paused));
    assert_eq!(written, ["DestinationRule", "VirtualService"], "the start state (all to v1) lasts no time");
    assert_eq!(world.obs.plan.subsets, Some(BTreeSet::from(["v1".into(), "v2".into()])), "every arm's subset at once");
    assert_eq!(world.last_split(), BTreeMap::from([("v1".into(), 80), ("v2".into(), 20)]));
    assert_eq!(reasons(&world.events), ["Progressing", event::STEP_ADVANCED, "Paused"]);
}

#[test]
fn a_settled_experiment_makes_no_write_and_keeps_its_status() {
    let mut world = canary_paused_at_20();
    let settled = world.status();
    for _ in 0..3 {
        world.now += Duration::from_secs(30);
        let out = world.tick();
        assert!(out.writes.is_empty() && out.deletes.is_empty(), "{:?}", out.writes);
        assert_eq!(out.status, settled, "an unchanged status is not written");
        assert!(out.events.is_empty() && !out.clear_promote && out.finalizer.is_none());
        assert_eq!(out.requeue, None, "an indefinite pause waits for a change, not a timer");
    }
}

#[test]
fn a_routed_candidate_that_loses_its_pods_gets_no_traffic_and_rolls_back_at_the_progress_deadline() {
    for (on, rolled_back) in [(OnProgressDeadline::Rollback, true), (OnProgressDeadline::Hold, false)] {
        let builder =
            ExperimentBuilder::canary("c").steps([set_weight(20), pause(), set_weight(50)]).progress_deadline("2m", on);
        let mut world = World::new(builder, Routing::Istio);
        world.until(Phase::Paused);
        world.events.clear();
        let routed_before = world.routes.len();
        world.kill("v2");
        let out = world.tick();
        assert_eq!(world.last_split(), BTreeMap::from([("v1".into(), 100)]), "its 20% goes to the control at once");
        assert_eq!(reasons(&out.events), [event::ARM_UNHEALTHY]);
        let (status, message) = world.condition(conditions::ARM_UNHEALTHY).unwrap();
        assert_eq!((status.as_str(), message.contains("v2 has no ready pods")), ("True", true), "{message}");
        assert!(out.requeue.is_some_and(|r| r <= Duration::from_secs(120)), "the deadline is a timer");
        world.now += Duration::from_secs(121);
        world.tick();
        let (exceeded, _) = world.condition(conditions::PROGRESS_DEADLINE_EXCEEDED).unwrap();
        assert_eq!(exceeded, "True");
        // The rollback's route goes out first; the candidate's subset goes once it has propagated.
        for _ in 0..3 {
            world.now += Duration::from_secs(10);
            world.tick();
        }
        let phase = world.status().phase;
        assert_eq!(phase == Some(Phase::RolledBack), rolled_back, "{on:?}: {phase:?}");
        assert_eq!(world.status().waiting_since.is_none(), rolled_back, "a finished experiment waits for nothing");
        let since = &world.routes[routed_before..];
        assert!(since.iter().all(|vs| weights(vs).get("v2").is_none_or(|w| *w == 0)), "never again to v2");
        assert_eq!(reasons(&world.events).iter().filter(|r| **r == event::PROGRESS_DEADLINE_EXCEEDED).count(), 1);
    }
}

#[test]
fn a_rollback_at_the_progress_deadline_keeps_saying_why_once_it_is_done() {
    let builder = ExperimentBuilder::canary("c")
        .steps([set_weight(20), pause(), set_weight(50)])
        .progress_deadline("2m", OnProgressDeadline::Rollback);
    let mut world = World::new(builder, Routing::Istio);
    world.until(Phase::Paused);
    world.kill("v2");
    world.tick();
    world.now += Duration::from_secs(121);
    world.until(Phase::RolledBack);
    for _ in 0..3 {
        world.now += Duration::from_secs(60);
        world.tick();
    }
    assert_eq!(world.status().phase, Some(Phase::RolledBack));
    let (exceeded, message) = world.condition(conditions::PROGRESS_DEADLINE_EXCEEDED).unwrap();
    assert_eq!(exceeded, "True", "the deadline is why it rolled back: {message}");
    assert!(message.contains("progress deadline (2m)"), "{message}");
    assert_eq!(world.last_split(), BTreeMap::from([("v1".into(), 100)]));
}

#[test]
fn an_abort_never_routes_to_a_control_without_pods_and_completes_once_it_is_back() {
    let mut world = canary_paused_at_20();
    world.kill("v1");
    world.annotate(ABORT, Some("bad"));
    for _ in 0..3 {
        world.tick();
        world.now += Duration::from_secs(1);
    }
    assert_eq!(world.last_split(), BTreeMap::from([("v2".into(), 100)]), "traffic holds on the arm that serves");
    assert_ne!(world.status().phase, Some(Phase::RolledBack), "not done while the control cannot serve");
    assert!(world.condition(conditions::ARM_UNHEALTHY).unwrap().1.contains("v1"));
    world.revive("v1");
    world.until(Phase::RolledBack);
    assert_eq!(world.last_split(), BTreeMap::from([("v1".into(), 100)]));
    assert_eq!(world.condition(conditions::ARM_UNHEALTHY).unwrap().0, "False");
}

#[test]
fn a_step_raises_an_arms_weight_only_once_all_its_pods_are_ready() {
    let mut world = canary_paused_at_20();
    world.obs.pods.insert("v2".into(), ArmPods { existing: 2, ready: 1 });
    world.annotate(PROMOTE, Some("next"));
    let routes = world.routes.len();
    for _ in 0..3 {
        world.tick();
        world.now += Duration::from_secs(1);
    }
    assert_eq!(world.routes.len(), routes, "no VirtualService raising v2 while 1 of 2 pods is ready");
    assert!(world.status().message.unwrap().contains("waiting for 2 ready pods of arm v2"));
    world.refresh_pods();
    world.tick();
    assert_eq!(world.last_split(), BTreeMap::from([("v1".into(), 50), ("v2".into(), 50)]));
}

#[test]
fn a_promote_acts_exactly_once_even_when_its_annotation_outlives_a_crash() {
    // Two pauses in a row: a second act of the same promote would pass the second one.
    let builder = ExperimentBuilder::canary("c").steps([set_weight(20), pause(), pause(), set_weight(50)]);
    let mut world = World::new(builder, Routing::Istio);
    world.until(Phase::Paused);
    let step = world.status().current_step;
    world.annotate(PROMOTE, Some("next"));
    let out = world.tick();
    assert!(out.clear_promote);
    assert_eq!(out.status.handled_promote.as_deref(), Some("next"));
    // The controller stopped after the status write, before clearing the annotation.
    world.annotate(PROMOTE, Some("next"));
    let moved_to = world.status().current_step;
    assert!(moved_to > step, "{step:?} -> {moved_to:?}");
    for _ in 0..3 {
        world.now += Duration::from_secs(5);
        world.annotate(PROMOTE, Some("next"));
        let out = world.tick();
        assert!(out.clear_promote, "the handled annotation is cleared");
        assert_eq!(world.status().current_step, moved_to, "the same promote never acts twice");
    }
    world.tick();
    assert_eq!(world.status().handled_promote, None, "forgotten once the annotation is gone: the next promote acts");
    let paused_at = world.status().current_step;
    world.annotate(PROMOTE, Some("next"));
    world.tick();
    assert!(world.status().current_step > paused_at);
}

#[test]
fn a_finished_experiment_writes_nothing_when_people_change_its_objects_and_ignores_edits() {
    let mut world = World::new(ExperimentBuilder::recreate("r"), Routing::Native);
    world.until(Phase::Succeeded);
    let winner = world.status().final_arm.unwrap();
    world.obs.plan.replicas.insert(winner.clone(), 5);
    world.obs.live.deployments.clear();
    world.obs.live.service = None;
    world.refresh_pods();
    let out = world.tick();
    assert!(out.writes.is_empty(), "{:?}", out.writes);
    world.exp.metadata.generation = Some(2);
    world.exp.spec.progress_deadline = Some("20m".parse().unwrap());
    let out = world.tick();
    assert!(out.writes.is_empty());
    assert_eq!(reasons(&out.events), [event::EDIT_IGNORED]);
    assert_eq!(out.status.phase, Some(Phase::Succeeded));
    assert!(out.status.message.unwrap().contains("edits do not restart it"));
    assert_eq!(world.tick().events.len(), 0, "acknowledged once");
}

#[test]
fn deleting_an_experiment_that_never_routed_writes_nothing() {
    let mut world = World::new(ExperimentBuilder::canary("c").steps([set_weight(20)]), Routing::Istio);
    world.obs.conflicts = vec!["VirtualService default/theirs".into()];
    world.tick();
    assert_eq!(world.status().phase, Some(Phase::Pending));
    world.exp.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(world.now));
    let out = world.tick();
    assert!(out.writes.is_empty());
    assert_eq!(out.finalizer, Some(FinalizerChange::Remove));
}

#[test]
fn deletion_restores_all_traffic_to_a_ready_arm_releases_the_objects_and_then_lets_go() {
    let mut world = canary_paused_at_20();
    world.exp.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(world.now));
    let out = world.tick();
    assert_eq!(out.finalizer, None, "not before the restore is seen");
    assert_eq!(world.last_split(), BTreeMap::from([("v1".into(), 100)]));
    let released = world.obs.live.virtual_service.as_ref().unwrap();
    assert_eq!(released.pointer("/metadata/ownerReferences"), Some(&serde_json::json!([])));
    let subsets = |world: &World| world.obs.plan.subsets.clone().unwrap_or_default().into_iter().collect::<Vec<_>>();
    assert_eq!(subsets(&world), ["v1", "v2"], "v2's subset stays while proxies may still route to it");
    let wait = out.requeue.expect("looks again once the restore has propagated");
    assert!(wait <= crate::api::defaults::PROPAGATION_DELAY, "{wait:?}");
    world.now += wait;
    let out = world.tick();
    assert_eq!(out.writes.len(), 1, "{:?}", out.writes);
    assert_eq!(subsets(&world), ["v1"]);
    world.now += Duration::from_secs(1);
    let out = world.tick();
    assert!(out.writes.is_empty());
    assert_eq!(reasons(&out.events), [event::ROUTING_RESTORED]);
    assert_eq!(out.finalizer, Some(FinalizerChange::Remove));
}

#[test]
fn deletion_waits_while_no_arm_can_serve_until_a_person_forces_it() {
    let mut world = canary_paused_at_20();
    world.kill("v1");
    world.exp.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(world.now));
    let out = world.tick();
    assert!(out.writes.is_empty() && out.finalizer.is_none());
    assert_eq!(reasons(&out.events), [event::DELETION_BLOCKED]);
    assert!(world.condition(conditions::DELETION_BLOCKED).unwrap().1.contains("forklane.io/force-delete"));
    assert!(world.tick().events.is_empty(), "said once");
    world.annotate(deletion::FORCE_DELETE, Some("true"));
    assert_eq!(world.tick().finalizer, Some(FinalizerChange::Remove));
}

#[test]
fn deleting_a_failed_experiment_releases_its_destination_rule_with_the_restored_routes() {
    let mut world = canary_paused_at_20();
    // An edit no plan can follow: the weight goes down without an analysis before it.
    world.exp.spec.strategy = crate::api::Strategy::Canary(crate::api::Canary {
        steps: vec![set_weight(20), pause(), set_weight(10)],
        ..Default::default()
    });
    world.until(Phase::Failed);
    assert_eq!(world.last_split(), BTreeMap::from([("v1".into(), 100)]));
    world.exp.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(world.now));
    let out = world.tick();
    assert_eq!(out.finalizer, None, "not before the release is seen");
    let released = |object: &Option<serde_json::Value>| {
        object.as_ref().unwrap().pointer("/metadata/ownerReferences") == Some(&serde_json::json!([]))
    };
    assert!(released(&world.obs.live.destination_rule), "garbage collection must not take the subsets");
    assert!(released(&world.obs.live.virtual_service));
    assert_eq!(world.last_split(), BTreeMap::from([("v1".into(), 100)]));
    let out = world.tick();
    assert!(out.writes.is_empty(), "{:?}", out.writes);
    assert_eq!(reasons(&out.events), [event::ROUTING_RESTORED]);
    assert_eq!(out.finalizer, Some(FinalizerChange::Remove));
}

#[test]
fn a_spec_that_becomes_invalid_mid_run_sends_traffic_back_to_the_control_then_fails() {
    let mut world = canary_paused_at_20();
    world.exp.spec.arms[1].selector.clear(); // what an upgrade's stricter validation could refuse
    world.exp.spec.strategy = crate::api::Strategy::Canary(crate::api::Canary {
        steps: vec![set_weight(20), set_weight(150)],
        ..Default::default()
    });
    let out = world.tick();
    assert_eq!(world.last_split(), BTreeMap::from([("v1".into(), 100)]));
    assert!(out.status.message.unwrap().contains("sending all traffic back to v1"));
    world.tick();
    assert_eq!(world.status().phase, Some(Phase::Failed));
    assert_eq!(world.status().final_arm.as_deref(), Some("v1"));
}

fn ab_analysing() -> World {
    let builder = ExperimentBuilder::ab_test("ab").split([("v1", 50), ("v2", 50)]).analysis(analysis([conversion()]));
    let mut world = World::new(builder, Routing::Istio);
    world.answer = Some(Measured::Unavailable("no data yet".into()));
    world.until(Phase::Analysing);
    world.tick();
    assert!(world.status().analysis_started_at.is_some());
    world
}

#[test]
fn a_new_pod_template_on_a_routed_arm_restarts_the_analysis() {
    let mut world = ab_analysing();
    world.now += Duration::from_secs(600);
    world.obs.revisions.insert("v2".into(), "r2".into());
    let out = world.tick();
    assert_eq!(out.status.analysis_started_at, Some(crate::clock::format_time(world.now)));
    assert!(reasons(&out.events).contains(&event::REVISION_CHANGED));
    assert!(world.tick().events.iter().all(|e| e.reason != event::REVISION_CHANGED), "once per revision");
}

#[test]
fn an_edit_of_the_weights_starts_a_new_analysis_window() {
    let mut world = ab_analysing();
    world.now += Duration::from_secs(600);
    world.exp.spec.strategy = crate::api::Strategy::AbTest(
        ExperimentBuilder::ab_test("x")
            .split([("v1", 70), ("v2", 30)])
            .build()
            .spec
            .strategy
            .ab_test()
            .unwrap()
            .clone(),
    );
    let out = world.tick();
    assert_eq!(out.status.analysis_started_at, Some(crate::clock::format_time(world.now)));
    assert!(reasons(&out.events).contains(&event::ANALYSIS_RESTARTED));
    assert_eq!(world.last_split(), BTreeMap::from([("v1".into(), 70), ("v2".into(), 30)]));
}

#[test]
fn a_due_look_is_asked_for_and_its_answer_decides() {
    let mut world = ab_analysing();
    world.now += Duration::from_secs(3600);
    let asked = decide(&Input { exp: &world.exp, obs: &world.obs, now: world.now, measured: None, routed_at: None });
    let look = asked.measure.expect("the analysis is due");
    assert_eq!(look.weights, [("v1".to_string(), 50), ("v2".to_string(), 50)]);
    assert!(asked.writes.is_empty() && asked.events.is_empty());
    world.answer = Some(Measured::Unavailable("prometheus: connection refused".into()));
    let out = world.tick();
    assert_eq!(world.condition(conditions::METRICS_UNAVAILABLE).unwrap().0, "True");
    assert!(reasons(&out.events).contains(&event::METRICS_UNAVAILABLE));
}

#[test]
fn a_reconcile_error_condition_is_cleared_by_the_next_success() {
    let mut world = canary_paused_at_20();
    let mut status = world.status();
    let message = "Kubernetes API: timed out".to_string();
    conditions::set(&mut status.conditions, conditions::RECONCILE_ERROR, true, "Failed", message, None, world.now);
    world.exp.status = Some(status);
    world.tick();
    assert_eq!(world.condition(conditions::RECONCILE_ERROR).unwrap().0, "False");
}

#[test]
fn leftovers_of_a_deleted_experiment_go_once_our_routing_is_in_place_routes_before_subsets() {
    let mut world = World::new(ExperimentBuilder::canary("c").steps([set_weight(20), pause()]), Routing::Istio);
    let old = || vec!["old".to_string()];
    world.obs.leftovers = Leftovers { virtual_services: old(), destination_rules: old(), ..Default::default() };
    let first = world.tick();
    assert!(first.deletes.is_empty() || !first.writes.is_empty());
    for _ in 0..30 {
        let out = world.tick();
        if !out.deletes.is_empty() {
            assert_eq!(out.deletes.virtual_services, old(), "the old routes go first");
            assert!(out.deletes.destination_rules.is_empty(), "its subsets stay while proxies may route by it");
            break;
        }
        world.now += out.requeue.unwrap_or(Duration::from_secs(1));
    }
    assert!(world.obs.live.virtual_service.is_some(), "once our routing was in place");
    let routes_went = world.routed_at.expect("deleting routes is a routing change");
    let delay = world.exp.spec.propagation_delay();
    for _ in 0..30 {
        let out = world.tick();
        if !out.deletes.is_empty() {
            assert_eq!(out.deletes.destination_rules, old());
            let after = world.now.duration_since(routes_went).as_secs_f64();
            assert!(after >= delay.as_secs_f64(), "{after} s after the routes went, not {delay:?}");
            break;
        }
        world.now += out.requeue.expect("looks again when the delay is over");
    }
    assert!(world.obs.leftovers.is_empty(), "the DestinationRule went");
    assert!(world.tick().deletes.is_empty(), "nothing more to delete");
}

#[test]
fn with_the_gateway_api_a_deleted_experiments_route_goes_first_then_its_arm_services_once_no_proxy_routes_by_it() {
    let builder = ExperimentBuilder::canary("c").steps([set_weight(20), pause()]).routing_delays("7s", "30s");
    let mut world = World::new(builder, Routing::GatewayApi);
    let old_services = vec!["my-app-green".to_string()];
    world.obs.leftovers =
        Leftovers { http_routes: vec!["old-forklane".into()], services: old_services.clone(), ..Default::default() };
    let mut routes_went = None;
    for _ in 0..30 {
        let out = world.tick();
        if !out.deletes.is_empty() {
            assert!(world.obs.live.http_route.is_some(), "only once our route is in place");
            let Some(went) = routes_went else {
                assert_eq!(out.deletes.http_routes, ["old-forklane"], "the old route goes first");
                assert!(out.deletes.services.is_empty(), "its Services stay while proxies may route by it");
                routes_went = Some(world.now);
                world.now += out.requeue.unwrap_or(Duration::from_secs(1));
                continue;
            };
            assert_eq!(out.deletes.services, old_services);
            let after = world.now.duration_since(went).as_secs_f64();
            assert!(after >= 7.0, "{after} s after the route went");
            break;
        }
        world.now += out.requeue.unwrap_or(Duration::from_secs(1));
    }
    assert!(routes_went.is_some() && world.obs.leftovers.is_empty(), "{:?}", world.obs.leftovers);
    assert!(world.tick().deletes.is_empty(), "nothing more to delete");
}

#[test]
fn a_new_experiment_gets_the_finalizer_before_anything_else() {
    let mut world = World::new(ExperimentBuilder::canary("c").steps([set_weight(20)]), Routing::Istio);
    world.exp.metadata = ObjectMeta { finalizers: None, ..world.exp.metadata.clone() };
    assert_eq!(world.tick().finalizer, Some(FinalizerChange::Add));
    assert_eq!(world.tick().finalizer, None);
}

#[test]
fn an_auto_experiment_chooses_its_mode_once_and_keeps_it() {
    use crate::controller::observe::mode_unsettled;
    let auto = ExperimentBuilder::canary("c").steps([set_weight(20)]).build();
    assert!(mode_unsettled(&auto), "auto, nothing recorded: the mode comes from what is installed");
    let mut recorded = auto.clone();
    recorded.status = Some(ExperimentStatus { mesh: Some(Routing::Native), ..Default::default() });
    assert!(!mode_unsettled(&recorded), "recorded at the first status write, for good");
    let explicit = ExperimentBuilder::canary("c").mesh(MeshMode::Istio).steps([set_weight(20)]).build();
    assert!(!mode_unsettled(&explicit));
}

#[test]
fn without_a_mesh_the_look_carries_the_replica_ratio_the_split_really_has() {
    let builder = ExperimentBuilder::canary("c")
        .total_replicas(10)
        .steps([set_weight(1), crate::fixtures::analysis_step()])
        .analysis(analysis([conversion()]));
    let mut world = World::new(builder, Routing::Native);
    world.answer = Some(Measured::Unavailable("no data yet".into()));
    world.until(Phase::Analysing);
    world.now += Duration::from_secs(3600);
    let asked = decide(&Input { exp: &world.exp, obs: &world.obs, now: world.now, measured: None, routed_at: None });
    let look = asked.measure.expect("the analysis is due");
    assert_eq!(look.weights, [("v1".to_string(), 90), ("v2".to_string(), 10)], "9 pods to 1, not 99/1");
}

/// The `Set-Cookie` values the live VirtualService adds to the answers of each of its routes.
fn route_cookies(world: &World) -> Vec<String> {
    let vs: VirtualService = serde_json::from_value(world.obs.live.virtual_service.clone().unwrap()).unwrap();
    let response = |h: &crate::istio::VirtualServiceHttp| h.headers.as_ref()?.response.as_ref()?.add.clone();
    vs.spec.http.iter().flatten().filter_map(response).flat_map(|add| add.into_values()).collect()
}

fn sticky_ab_rolled_back(max_age_seconds: i64) -> World {
    let builder = ExperimentBuilder::ab_test("ab").split([("v1", 50), ("v2", 50)]).sticky("forklane-ab");
    let mut world = World::new(builder, Routing::Istio);
    if let crate::api::Strategy::AbTest(ab) = &mut world.exp.spec.strategy {
        ab.sticky.as_mut().unwrap().max_age_seconds = max_age_seconds;
    }
    world.until(Phase::Paused);
    assert_eq!(world.routes.last().unwrap().spec.http.as_ref().unwrap().len(), 3, "two sticky pins and the split");
    world.annotate(ABORT, Some("bad"));
    world.until(Phase::RolledBack);
    world
}

#[test]
fn after_the_end_answers_expire_the_sticky_cookie_until_its_period_is_over_then_set_none() {
    let expiry = "forklane-ab=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax";
    // (maxAgeSeconds, the expiry period: min(maxAge, 24h))
    for (max_age, period) in [(600, Duration::from_secs(600)), (7 * 86_400, Duration::from_secs(86_400))] {
        let mut world = sticky_ab_rolled_back(max_age);
        let finished = world.status().finished_at.clone().expect("the end is recorded");
        assert_eq!(finished, crate::clock::format_time(world.now), "when the final routing was in place");
        assert_eq!(world.last_split(), BTreeMap::from([("v1".into(), 100)]));
        assert_eq!(route_cookies(&world), [expiry], "maxAge {max_age}: returning users lose their cookie");
        let http = world.routes.last().unwrap().spec.http.clone().unwrap();
        assert_eq!(http.len(), 1, "no route reads the cookie: one naming v2 lands on v1");

        // The controller looks again exactly when the period is over, and not before.
        let out = world.tick();
        assert!(out.writes.is_empty(), "{:?}", out.writes);
        assert_eq!(out.requeue, Some(period), "maxAge {max_age}");
        world.now += period / 2;
        assert_eq!(world.tick().requeue, Some(period - period / 2));
        world.now += period - period / 2;
        let out = world.tick();
        assert_eq!(out.writes.len(), 1, "maxAge {max_age}: the expiry goes from the routing");
        assert_eq!(route_cookies(&world), Vec::<String>::new());
        assert_eq!(world.last_split(), BTreeMap::from([("v1".into(), 100)]), "the final routing stays");
        assert_eq!((out.requeue, out.status.phase), (None, Some(Phase::RolledBack)));

        world.now += Duration::from_secs(3_600);
        let out = world.tick();
        assert!(out.writes.is_empty() && out.requeue.is_none(), "done once: {:?}", out.writes);
    }
}

#[test]
fn taking_out_the_expiry_keeps_what_people_changed_in_the_final_routing() {
    let mut world = sticky_ab_rolled_back(600);
    let mut live = world.obs.live.virtual_service.clone().unwrap();
    live["spec"]["http"][0]["timeout"] = serde_json::json!("3s");
    world.obs.live.virtual_service = Some(live);
    world.now += Duration::from_secs(600);
    let out = world.tick();
    let Some(Action::VirtualService(vs)) = out.writes.first() else { panic!("{:?}", out.writes) };
    assert_eq!(vs.spec.http.as_ref().unwrap()[0].timeout.as_deref(), Some("3s"));
    assert_eq!(route_cookies(&world), Vec::<String>::new());
}

#[test]
fn deletion_during_the_expiry_leaves_a_routing_that_sets_no_cookie() {
    let mut world = sticky_ab_rolled_back(600);
    assert_eq!(route_cookies(&world).len(), 1);
    world.exp.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(world.now));
    world.tick();
    assert_eq!(route_cookies(&world), Vec::<String>::new());
    assert_eq!(world.last_split(), BTreeMap::from([("v1".into(), 100)]));
    assert_eq!(world.tick().finalizer, Some(FinalizerChange::Remove));
}

/// Every write `tick` makes until `phase`, with the time it was made.
fn writes_until(world: &mut World, phase: Phase) -> Vec<(Timestamp, Action)> {
    let mut written = Vec::new();
    for _ in 0..40 {
        let out = world.tick();
        written.extend(out.writes.iter().map(|w| (world.now, w.clone())));
        if world.status().phase == Some(phase) {
            return written;
        }
        world.now += out.requeue.unwrap_or(Duration::from_secs(1));
    }
    panic!("never reached {phase:?}: {:?}", world.status());
}

fn subset_names(action: &Action) -> BTreeSet<String> {
    match action {
        Action::DestinationRule(dr) => dr.spec.subsets.iter().flatten().map(|s| s.name.clone()).collect(),
        Action::VirtualService(vs) => referenced_subsets(vs),
        _ => BTreeSet::new(),
    }
}

#[test]
fn a_route_names_a_subset_only_once_its_rule_has_propagated_and_a_subset_goes_only_once_no_route_names_it() {
    let builder = ExperimentBuilder::canary("c").steps([set_weight(20), set_weight(60)]).routing_delays("7s", "30s");
    let mut world = World::new(builder, Routing::Istio);
    let written = writes_until(&mut world, Phase::Succeeded);
    let mut defined: Vec<(Timestamp, BTreeSet<String>)> = Vec::new();
    let mut routed: Vec<(Timestamp, BTreeSet<String>)> = Vec::new();
    for (at, action) in &written {
        match action {
            Action::DestinationRule(_) => defined.push((*at, subset_names(action))),
            Action::VirtualService(_) => routed.push((*at, subset_names(action))),
            _ => {}
        }
    }
    let delay = jiff::SignedDuration::from_secs(7);
    // Every route's subsets were defined by a rule written at least the delay before it.
    for (at, subsets) in &routed {
        for subset in subsets {
            let since = defined.iter().filter(|(t, s)| t <= at && s.contains(subset)).map(|(t, _)| *t).next();
            assert!(since.is_some_and(|t| t + delay <= *at), "{subset} routed at {at} before its rule settled");
        }
    }
    // Every subset dropped from the rule was last routed at least the delay before.
    for pair in defined.windows(2) {
        let ((_, before), (at, after)) = (&pair[0], &pair[1]);
        for gone in before.difference(after) {
            let last = routed.iter().filter(|(t, s)| t <= at && s.contains(gone)).map(|(t, _)| *t).next_back();
            let routes_since = routed.iter().filter(|(t, s)| t <= at && !s.contains(gone)).map(|(t, _)| *t).next_back();
            assert!(last.is_some(), "{gone} was routed");
            assert!(routes_since.is_some_and(|t| t + delay <= *at), "{gone} removed at {at} before routes left it");
        }
    }
    assert_eq!(world.status().winner.as_deref(), Some("v2"));
    assert_eq!(defined.last().map(|(_, s)| s.clone()), Some(BTreeSet::from(["v2".to_string()])));
    let first = world.status().message.unwrap_or_default();
    assert!(!first.contains("for every proxy to have it"), "a finished experiment waits for nothing: {first}");
}

/// Where the mesh reports distribution, a route to a new subset also waits for the mesh to report
/// the DestinationRule on every proxy, past the propagation delay; the status says so.
#[test]
fn a_route_to_a_new_subset_waits_for_the_mesh_to_report_its_rule_everywhere() {
    let builder = ExperimentBuilder::canary("c").steps([set_weight(20), pause()]).routing_delays("1s", "30s");
    let mut world = World::new(builder, Routing::Istio);
    world.obs.distribution.subsets = Distribution::Pending("4/5 proxies up to date.".into());
    let mut routed_v2 = false;
    for _ in 0..20 {
        let out = world.tick();
        routed_v2 |=
            out.writes.iter().any(|w| matches!(w, Action::VirtualService(_)) && subset_names(w).contains("v2"));
        world.now += out.requeue.unwrap_or(Duration::from_secs(1));
    }
    assert!(!routed_v2, "no route names v2 while its rule is not everywhere");
    let (_, message) = world.condition(conditions::READY).unwrap();
    assert!(message.contains("report the DestinationRule on every proxy (4/5 proxies up to date.)"), "{message}");
    world.obs.distribution.subsets = Distribution::Reached;
    let written = writes_until(&mut world, Phase::Paused);
    assert!(written.iter().any(|(_, w)| subset_names(w).contains("v2") && matches!(w, Action::VirtualService(_))));
}

#[test]
fn an_arm_is_scaled_down_only_once_traffic_to_it_has_drained() {
    let builder = ExperimentBuilder::rolling_update("r").replicas(4).routing_delays("5s", "30s");
    let mut world = World::new(builder, Routing::Istio);
    let written = writes_until(&mut world, Phase::Succeeded);
    let mut last_route: Option<Timestamp> = None;
    let mut shrinks = 0;
    for (at, action) in &written {
        match action {
            Action::VirtualService(_) | Action::DestinationRule(_) => last_route = Some(*at),
            Action::Scale(s) if s.deployment == "my-app-v1" => {
                shrinks += 1;
                if let Some(routed) = last_route {
                    assert!(
                        routed + jiff::SignedDuration::from_secs(30) <= *at,
                        "v1 scaled at {at}, routes changed at {routed}"
                    );
                }
            }
            _ => {}
        }
    }
    assert!(shrinks > 0, "the rolling update scaled the old arm down: {written:?}");
}

#[test]
fn recreate_with_a_mesh_goes_through_its_planned_gap() {
    let mut world = World::new(ExperimentBuilder::recreate("r").replicas(2), Routing::Istio);
    world.until(Phase::Succeeded);
    assert_eq!(world.last_split(), BTreeMap::from([("v2".into(), 100)]));
    let unhealthy = world.events.iter().filter(|e| e.reason == event::ARM_UNHEALTHY).count();
    assert_eq!(unhealthy, 0, "no pods while the plan scales everything down is no health problem");
}

#[test]
fn routing_someone_else_changed_is_put_back_in_one_reconcile_with_an_event() {
    let mut world = canary_paused_at_20();
    world.now += Duration::from_secs(60);
    let ago = |world: &World, s: i64| crate::clock::format_time(world.now - jiff::SignedDuration::from_secs(s));
    // A person sets the split to 50/50 with kubectl edit.
    let mut vs = world.obs.live.virtual_service.clone().unwrap();
    vs["metadata"]["managedFields"] = serde_json::json!([
        {"manager": "forklane", "operation": "Apply", "time": ago(&world, 60)},
        {"manager": "kubectl-edit", "operation": "Update", "time": ago(&world, 1)},
    ]);
    let routes = vs["spec"]["http"].as_array_mut().unwrap().last_mut().unwrap()["route"].as_array_mut().unwrap();
    for destination in routes {
        destination["weight"] = serde_json::json!(50);
    }
    world.obs.live.virtual_service = Some(vs);
    let out = world.tick();
    assert_eq!(out.writes.len(), 1, "{:?}", out.writes);
    assert_eq!(world.last_split(), BTreeMap::from([("v1".into(), 80), ("v2".into(), 20)]));
    assert_eq!(reasons(&out.events), [event::DRIFT_CORRECTED]);
    assert!(out.events[0].message.contains("VirtualService c-forklane (changed by kubectl-edit)"), "{:?}", out.events);
    // Someone deletes the DestinationRule.
    world.now += Duration::from_secs(10);
    world.obs.live.destination_rule = None;
    world.obs.plan.subsets = None;
    let out = world.tick();
    assert!(matches!(out.writes[..], [Action::DestinationRule(_)]), "{:?}", out.writes);
    assert!(out.events.iter().any(|e| e.message.contains("DestinationRule c-forklane (deleted)")), "{:?}", out.events);
    // Put back: nothing more to say.
    world.now += Duration::from_secs(10);
    let out = world.tick();
    assert!(out.writes.is_empty() && out.events.is_empty(), "{:?} {:?}", out.writes, out.events);
}

/// The arms an action makes routable (arm Services) or routes to (HTTPRoute), or removes.
fn gateway_arms(world: &World, action: &Action) -> BTreeSet<String> {
    match action {
        Action::ArmService(s) => {
            BTreeSet::from([s.metadata.labels.as_ref().unwrap()[crate::plan::gateway::ARM_LABEL].clone()])
        }
        Action::HttpRoute(route) => crate::plan::gateway::referenced_arms(&world.exp, route),
        Action::RemoveArmServices(r) => r.services.iter().map(|(arm, _)| arm.clone()).collect(),
        _ => BTreeSet::new(),
    }
}

#[test]
fn with_the_gateway_api_a_route_names_an_arm_service_only_once_it_has_propagated_and_it_goes_only_once_no_route_names_it()
 {
    let builder = ExperimentBuilder::canary("c").steps([set_weight(20), set_weight(60)]).routing_delays("7s", "30s");
    let mut world = World::new(builder, Routing::GatewayApi);
    let written = writes_until(&mut world, Phase::Succeeded);
    assert!(written.iter().all(|(_, a)| !matches!(a, Action::VirtualService(_) | Action::DestinationRule(_))));
    let delay = jiff::SignedDuration::from_secs(7);
    let created: Vec<(Timestamp, String)> = written
        .iter()
        .filter(|(_, a)| matches!(a, Action::ArmService(_)))
        .flat_map(|(t, a)| gateway_arms(&world, a).into_iter().map(|arm| (*t, arm)))
        .collect();
    let routed: Vec<(Timestamp, BTreeSet<String>)> = written
        .iter()
        .filter(|(_, a)| matches!(a, Action::HttpRoute(_)))
        .map(|(t, a)| (*t, gateway_arms(&world, a)))
        .collect();
    for (at, arms) in &routed {
        for arm in arms {
            let since = created.iter().find(|(t, a)| t <= at && a == arm).map(|(t, _)| *t);
            assert!(since.is_some_and(|t| t + delay <= *at), "Service of {arm} routed at {at} before it settled");
        }
    }
    let removed: Vec<(Timestamp, String)> = written
        .iter()
        .filter(|(_, a)| matches!(a, Action::RemoveArmServices(_)))
        .flat_map(|(t, a)| gateway_arms(&world, a).into_iter().map(|arm| (*t, arm)))
        .collect();
    assert_eq!(removed.iter().map(|(_, a)| a.as_str()).collect::<Vec<_>>(), ["v1"], "the loser's Service goes");
    for (at, arm) in &removed {
        let left = routed.iter().filter(|(t, s)| t <= at && !s.contains(arm)).map(|(t, _)| *t).next();
        assert!(left.is_some_and(|t| t + delay <= *at), "{arm}'s Service removed at {at} before routes left it");
    }
    let route = world.http_routes.last().unwrap();
    assert_eq!(crate::plan::gateway::weights(&world.exp, route), BTreeMap::from([("v2".into(), 100)]));
    assert_eq!(world.obs.live.arm_services.keys().collect::<Vec<_>>(), ["my-app-v2"]);
    assert_eq!(world.status().mesh, Some(Routing::GatewayApi));
}

/// An arm already routed can still get a new Service: here the experiment is edited to pin its
/// users, so each arm gets a `-returning` Service, which a route names only once it has propagated.
#[test]
fn with_the_gateway_api_a_routed_arms_new_cohort_service_is_named_only_once_it_has_propagated() {
    let builder = ExperimentBuilder::ab_test("ab").split([("v1", 50), ("v2", 50)]).routing_delays("7s", "30s");
    let mut world = World::new(builder, Routing::GatewayApi);
    world.until(Phase::Paused);
    let sticky = ExperimentBuilder::ab_test("ab").split([("v1", 50), ("v2", 50)]).sticky("forklane-ab").build();
    world.exp.spec.strategy = sticky.spec.strategy;
    let mut written_at = None;
    for _ in 0..30 {
        let out = world.tick();
        for action in &out.writes {
            match action {
                Action::ArmService(s) if s.metadata.name.as_deref() == Some("my-app-v1-returning") => {
                    written_at = Some(world.now);
                }
                Action::HttpRoute(route)
                    if crate::plan::gateway::service_names(route).contains("my-app-v1-returning") =>
                {
                    let since = written_at.expect("the Service is written first");
                    let after = world.now.duration_since(since).as_secs_f64();
                    assert!(after >= 7.0, "named {after} s after it was written");
                    return;
                }
                _ => {}
            }
        }
        world.now += out.requeue.unwrap_or(Duration::from_secs(1));
    }
    panic!("the pins were never routed: {:?}", world.status());
}

#[test]
fn with_the_gateway_api_deletion_restores_the_control_releases_its_route_and_service_then_lets_go() {
    let builder = ExperimentBuilder::canary("c").steps([set_weight(20), pause(), set_weight(50)]);
    let mut world = World::new(builder, Routing::GatewayApi);
    world.until(Phase::Paused);
    world.exp.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(world.now));
    let mut finalized = false;
    for _ in 0..10 {
        let out = world.tick();
        if out.finalizer == Some(FinalizerChange::Remove) {
            finalized = true;
            break;
        }
        world.now += out.requeue.unwrap_or(Duration::from_secs(1));
    }
    assert!(finalized, "{:?}", world.status());
    let route = world.http_routes.last().unwrap();
    assert_eq!(crate::plan::gateway::weights(&world.exp, route), BTreeMap::from([("v1".into(), 100)]));
    let released = |o: &serde_json::Value| o.pointer("/metadata/ownerReferences") == Some(&serde_json::json!([]));
    assert!(released(world.obs.live.http_route.as_ref().unwrap()), "garbage collection leaves the route");
    assert!(released(&world.obs.live.arm_services["my-app-v1"]), "and the Service it routes to");
    assert!(
        !world.obs.live.arm_services.contains_key("my-app-v2"),
        "v2's Service went once no proxy could route to it"
    );
}

#[test]
fn with_the_gateway_api_a_routed_candidate_that_loses_its_pods_gets_no_traffic_until_it_recovers() {
    let builder = ExperimentBuilder::canary("c").steps([set_weight(20), pause(), set_weight(50)]);
    let mut world = World::new(builder, Routing::GatewayApi);
    world.until(Phase::Paused);
    assert_eq!(world.last_split(), BTreeMap::from([("v1".into(), 80), ("v2".into(), 20)]));
    world.events.clear();
    world.kill("v2");
    let out = world.tick();
    assert_eq!(world.last_split(), BTreeMap::from([("v1".into(), 100)]), "its 20% goes to the control at once");
    assert_eq!(reasons(&out.events), [event::ARM_UNHEALTHY]);
    let route = world.http_routes.last().unwrap();
    let v2_service = "my-app-v2";
    let backends = route.spec.rules.iter().flatten().flat_map(|r| r.backend_refs.iter().flatten());
    let v2 = backends.into_iter().find(|b| b.name == v2_service);
    assert_eq!(v2.and_then(|b| b.weight), Some(0), "still named, so that the detour lasts until it recovers");
    assert!(world.obs.live.arm_services.contains_key(v2_service), "its Service stays");
    world.revive("v2");
    world.now += Duration::from_secs(1);
    world.tick();
    assert_eq!(world.last_split(), BTreeMap::from([("v1".into(), 80), ("v2".into(), 20)]), "back once it recovers");
}
