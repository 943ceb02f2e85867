//! Whole rollouts through all the controllers in the store-less `sim::World`, checking the
//! invariants each strategy promises after every single write batch.

use super::Kind;
use super::deployment_status::get_condition;
use super::objects::{annotation, name, spec_replicas, status_int};
use super::rollout::{REVISION, REVISION_HISTORY};
use super::sim::{World, article_deployment, census, set_version};
use serde_json::{Value, json};

fn rolling(surge: Value, unavailable: Value) -> Value {
    json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}})
}

fn deployment(w: &World) -> Value {
    w.get(Kind::Deployment, "my-app").unwrap()
}

fn progressing_reason(w: &World) -> String {
    get_condition(&deployment(w)["status"], "Progressing")
        .map(|c| c["reason"].as_str().unwrap().to_string())
        .unwrap_or_default()
}

/// What `kubectl rollout status` waits for.
fn rolled_out(d: &Value) -> bool {
    let s = &d["status"];
    let get = |k: &str| s[k].as_i64().unwrap_or(0);
    s["observedGeneration"].as_i64().unwrap_or(0) >= d["metadata"]["generation"].as_i64().unwrap()
        && get("updatedReplicas") == spec_replicas(d)
        && get("replicas") == get("updatedReplicas")
        && get("availableReplicas") >= get("updatedReplicas")
}

fn started(replicas: i64, strategy: Value) -> World {
    let mut w = World::new();
    w.create(Kind::Deployment, article_deployment(replicas, "v1.0.0", strategy));
    w.run_for(120, &mut |_| {});
    assert!(rolled_out(&deployment(&w)), "v1 rolled out: {:#}", deployment(&w)["status"]);
    w
}

#[test]
fn first_rollout_sets_revision_status_and_conditions() {
    let w = started(3, rolling(json!(1), json!(0)));
    let d = deployment(&w);
    assert_eq!(annotation(&d, REVISION), Some("1"));
    let s = &d["status"];
    assert_eq!(
        (
            s["replicas"].as_i64(),
            s["updatedReplicas"].as_i64(),
            s["readyReplicas"].as_i64(),
            s["availableReplicas"].as_i64()
        ),
        (Some(3), Some(3), Some(3), Some(3))
    );
    assert!(s.get("unavailableReplicas").is_none(), "zero counters are omitted");
    assert_eq!(get_condition(s, "Available").unwrap()["reason"], "MinimumReplicasAvailable");
    assert_eq!(progressing_reason(&w), "NewReplicaSetAvailable");
    let rss = w.list(Kind::ReplicaSet);
    assert_eq!(rss.len(), 1);
    let hash = rss[0]["metadata"]["labels"]["pod-template-hash"].as_str().unwrap();
    assert_eq!(name(&rss[0]), format!("my-app-{hash}"));
    assert_eq!(rss[0]["spec"]["selector"]["matchLabels"]["pod-template-hash"], hash);
    assert_eq!(annotation(&rss[0], "deployment.kubernetes.io/desired-replicas"), Some("3"));
    assert_eq!(annotation(&rss[0], "deployment.kubernetes.io/max-replicas"), Some("4"));
    for p in w.list(Kind::Pod) {
        assert!(name(&p).starts_with(&format!("my-app-{hash}-")));
        assert_eq!(p["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(p["status"]["phase"], "Running");
    }
}

#[test]
fn rolling_update_surge_1_unavailable_0_keeps_ten_ready_and_at_most_eleven() {
    let mut w = started(10, rolling(json!(1), json!(0)));
    set_version(&mut w, "v2.0.0");
    let mut saw_mix = false;
    w.run_for(600, &mut |w| {
        let c = census(w);
        let active: usize = c.values().map(|v| v.0).sum();
        let ready: usize = c.values().map(|v| v.1).sum();
        assert!(active <= 11, "at most replicas + maxSurge pods: {c:?}");
        assert!(ready >= 10, "never below replicas - maxUnavailable ready: {c:?}");
        saw_mix |= c.get("v1.0.0").is_some_and(|v| v.1 > 0) && c.get("v2.0.0").is_some_and(|v| v.1 > 0);
    });
    assert!(saw_mix, "a rolling update serves both versions for a while");
    let c = census(&w);
    assert_eq!(c.get("v2.0.0").map(|v| v.1), Some(10));
    assert!(c.get("v1.0.0").is_none_or(|v| v.0 == 0));
    let d = deployment(&w);
    assert!(rolled_out(&d));
    assert_eq!(annotation(&d, REVISION), Some("2"));
    assert_eq!(progressing_reason(&w), "NewReplicaSetAvailable");
}

#[test]
fn rolling_update_with_percentages_rounds_like_kubernetes() {
    // 25% of 4: surge 1 (up), unavailable 1 (down).
    let mut w = started(4, rolling(json!("25%"), json!("25%")));
    set_version(&mut w, "v2.0.0");
    let mut min_ready = usize::MAX;
    w.run_for(600, &mut |w| {
        let c = census(w);
        assert!(c.values().map(|v| v.0).sum::<usize>() <= 5, "{c:?}");
        min_ready = min_ready.min(c.values().map(|v| v.1).sum());
    });
    assert_eq!(min_ready, 3, "one unavailable pod allowed and used");
    assert!(rolled_out(&deployment(&w)));
}

#[test]
fn recreate_never_runs_old_and_new_pods_together() {
    let mut w = started(3, json!({"type": "Recreate"}));
    set_version(&mut w, "v2.0.0");
    let mut saw_gap = false;
    w.run_for(600, &mut |w| {
        let c = census(w);
        let old = c.get("v1.0.0").map_or(0, |v| v.0 + v.2);
        let new = c.get("v2.0.0").map_or(0, |v| v.0 + v.2);
        assert!(old == 0 || new == 0, "old (even terminating) and new pods at once: {c:?}");
        saw_gap |= old == 0 && new == 0;
    });
    assert!(saw_gap, "the outage between versions");
    assert_eq!(census(&w).get("v2.0.0").map(|v| v.1), Some(3));
    assert!(rolled_out(&deployment(&w)));
}

#[test]
fn pause_freezes_a_mix_and_resume_completes_it() {
    let mut w = started(10, rolling(json!(1), json!(0)));
    set_version(&mut w, "v2.0.0");
    // Run until 3 new pods are ready, then pause.
    while census(&w).get("v2.0.0").map_or(0, |v| v.1) < 3 {
        w.run_for(1, &mut |_| {});
    }
    let mut d = deployment(&w);
    d["spec"]["paused"] = json!(true);
    w.update(Kind::Deployment, d);
    w.run_for(30, &mut |_| {});
    let frozen = census(&w);
    let sizes: Vec<i64> = w.list(Kind::ReplicaSet).iter().map(spec_replicas).collect();
    w.run_for(300, &mut |_| {});
    assert_eq!(census(&w), frozen, "nothing moves while paused");
    assert_eq!(w.list(Kind::ReplicaSet).iter().map(spec_replicas).collect::<Vec<_>>(), sizes);
    assert_eq!(progressing_reason(&w), "DeploymentPaused");
    assert!(frozen["v1.0.0"].1 > 0 && frozen["v2.0.0"].1 > 0, "{frozen:?}");

    let mut d = deployment(&w);
    d["spec"]["paused"] = json!(false);
    w.update(Kind::Deployment, d);
    w.run_for(1, &mut |_| {});
    assert!(matches!(progressing_reason(&w).as_str(), "DeploymentResumed" | "ReplicaSetUpdated"));
    w.run_for(600, &mut |_| {});
    assert!(rolled_out(&deployment(&w)));
    assert_eq!(census(&w).get("v2.0.0").map(|v| v.1), Some(10));
}

#[test]
fn undo_reuses_the_old_replica_set_with_a_new_revision() {
    let mut w = started(3, rolling(json!(1), json!(0)));
    let v1_rs = name(&w.list(Kind::ReplicaSet)[0]).to_string();
    set_version(&mut w, "v2.0.0");
    w.run_for(600, &mut |_| {});
    // What `kubectl rollout undo` sends: the previous revision's template without the hash
    // label (a JSON patch replacing /spec/template and /metadata/annotations).
    let old = w.get(Kind::ReplicaSet, &v1_rs).unwrap();
    let mut template = old["spec"]["template"].clone();
    template["metadata"]["labels"].as_object_mut().unwrap().remove("pod-template-hash");
    let mut d = deployment(&w);
    d["spec"]["template"] = template;
    w.update(Kind::Deployment, d);
    w.run_for(600, &mut |_| {});
    assert!(rolled_out(&deployment(&w)));
    assert_eq!(census(&w).get("v1.0.0").map(|v| v.1), Some(3));
    assert_eq!(w.list(Kind::ReplicaSet).len(), 2, "no third ReplicaSet");
    let back = w.get(Kind::ReplicaSet, &v1_rs).unwrap();
    assert_eq!(spec_replicas(&back), 3);
    assert_eq!(annotation(&back, REVISION), Some("3"));
    assert_eq!(annotation(&back, REVISION_HISTORY), Some("1"));
    assert_eq!(annotation(&deployment(&w), REVISION), Some("3"));
}

#[test]
fn progress_deadline_is_reported_then_recovered() {
    let mut w = World::new();
    let mut d = article_deployment(2, "v1.0.0", rolling(json!(1), json!(0)));
    d["spec"]["progressDeadlineSeconds"] = json!(30);
    d["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["initialDelaySeconds"] = json!(120);
    w.create(Kind::Deployment, d);
    w.run_for(60, &mut |_| {});
    assert_eq!(progressing_reason(&w), "ProgressDeadlineExceeded");
    let cond = get_condition(&deployment(&w)["status"], "Progressing").unwrap().clone();
    assert_eq!(cond["status"], "False");
    assert_eq!(
        cond["message"],
        format!("ReplicaSet \"{}\" has timed out progressing.", name(&w.list(Kind::ReplicaSet)[0]))
    );
    w.run_for(120, &mut |_| {});
    assert_eq!(progressing_reason(&w), "NewReplicaSetAvailable", "a late success still completes");
}

#[test]
fn min_ready_seconds_delays_availability() {
    let mut w = World::new();
    let mut d = article_deployment(1, "v1.0.0", rolling(json!(1), json!(0)));
    d["spec"]["minReadySeconds"] = json!(10);
    w.create(Kind::Deployment, d);
    // Running after 1 s, ready at the probe at 5 s, available strictly after 15 s.
    w.run_for(12, &mut |_| {});
    let s = &deployment(&w)["status"];
    assert_eq!(
        (status_int(&deployment(&w), "readyReplicas"), status_int(&deployment(&w), "availableReplicas")),
        (1, 0),
        "{s:#}"
    );
    w.run_for(10, &mut |_| {});
    assert_eq!(status_int(&deployment(&w), "availableReplicas"), 1);
}

#[test]
fn scaling_during_a_rollout_is_proportional() {
    let mut w = started(10, rolling(json!(3), json!(2)));
    let mut d = deployment(&w);
    d["spec"]["template"]["metadata"]["labels"]["version"] = json!("v2.0.0");
    d["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["initialDelaySeconds"] = json!(1000);
    w.update(Kind::Deployment, d);
    w.run_for(30, &mut |_| {});
    let before: Vec<i64> = w.list(Kind::ReplicaSet).iter().map(spec_replicas).collect();
    assert_eq!(before.iter().sum::<i64>(), 13, "10 + surge 3: {before:?}");
    let mut d = deployment(&w);
    d["spec"]["replicas"] = json!(20);
    w.update(Kind::Deployment, d);
    w.run_for(1, &mut |_| {});
    let after: Vec<i64> = w.list(Kind::ReplicaSet).iter().map(spec_replicas).collect();
    // 20 + 25%... surge 3 stays an int: allowed 23, each set grows by its share.
    assert_eq!(after.iter().sum::<i64>(), 23, "{after:?}");
    for (b, a) in before.iter().zip(&after) {
        assert!(a > b, "every active ReplicaSet grows: {before:?} → {after:?}");
    }
}
