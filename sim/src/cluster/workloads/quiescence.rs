//! The property the driver relies on: whenever a pass of all the controllers writes nothing,
//! either everything is settled or some controller has asked to look again soon. A
//! transition due later without a timer for it would leave the driver waiting for an
//! unrelated change, its safety net or a progress deadline.
//!
//! Random edits of a Deployment (scaling, new templates, strategies, minReadySeconds, probe
//! delays, pausing, pod deletions, waits between them) at a fractional start time, with
//! simulated time moving on while the controllers compute (they look late).

use super::Kind;
use super::objects::{controlled_by, is_deleting, name, spec_replicas, uid};
use super::sim::{World, article_deployment};
use forklane_core::clock::add_secs;
use proptest::prelude::*;
use serde_json::{Value, json};

/// The longest any timing in these scenarios makes a controller wait (a probe 8 s after the
/// start, minReadySeconds 9, termination 2 s), with room to spare.
const LONGEST_WAIT: f64 = 30.0;

/// Why the world is not settled: some Deployment short of its replicas, updated, ready and
/// available, or pods still terminating.
fn unsettled(w: &World) -> Option<String> {
    let (rss, pods) = (w.list(Kind::ReplicaSet), w.list(Kind::Pod));
    for d in w.list(Kind::Deployment) {
        let (s, want) = (&d["status"], spec_replicas(&d));
        let get = |k: &str| s[k].as_i64().unwrap_or(0);
        if get("observedGeneration") < d["metadata"]["generation"].as_i64().unwrap_or(0)
            || [get("replicas"), get("updatedReplicas"), get("readyReplicas"), get("availableReplicas")] != [want; 4]
        {
            return Some(format!("status {s}"));
        }
        let mine: Vec<&Value> = rss.iter().filter(|rs| controlled_by(rs, uid(&d))).collect();
        let count = pods.iter().filter(|p| mine.iter().any(|rs| controlled_by(p, uid(rs)))).count();
        if count as i64 != want {
            return Some(format!("{count} pods for {want} replicas"));
        }
    }
    pods.iter().find(|p| is_deleting(p)).map(|p| format!("pod {} still terminating", name(p)))
}

#[derive(Debug, Clone)]
enum Edit {
    Scale(i64),
    Version(u8),
    Strategy(Value),
    MinReady(i64),
    InitialDelay(i64),
    Pause(bool),
    DeletePod(usize),
    Wait(i64),
}

fn edit() -> impl Strategy<Value = Edit> {
    let strategy = prop_oneof![
        Just(json!({"type": "Recreate"})),
        Just(json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}})),
        Just(json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})),
        Just(json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}})),
    ];
    prop_oneof![
        (0i64..12).prop_map(Edit::Scale),
        (0u8..3).prop_map(Edit::Version),
        strategy.prop_map(Edit::Strategy),
        (0i64..4).prop_map(|m| Edit::MinReady(m * 3)),
        (0i64..3).prop_map(|m| Edit::InitialDelay(m * 4)),
        any::<bool>().prop_map(Edit::Pause),
        (0usize..20).prop_map(Edit::DeletePod),
        (0i64..15).prop_map(Edit::Wait),
    ]
}

fn run(w: &mut World, edit: &Edit, lags: &[i64], next_lag: &mut usize) {
    let mut d = w.get(Kind::Deployment, "my-app").unwrap();
    match edit {
        Edit::Scale(n) => d["spec"]["replicas"] = json!(n),
        Edit::Version(v) => d["spec"]["template"]["metadata"]["labels"]["version"] = json!(format!("v{v}")),
        Edit::Strategy(s) => d["spec"]["strategy"] = s.clone(),
        Edit::MinReady(m) => d["spec"]["minReadySeconds"] = json!(m),
        Edit::InitialDelay(s) => {
            d["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["initialDelaySeconds"] = json!(s)
        }
        Edit::Pause(p) => d["spec"]["paused"] = json!(p),
        Edit::DeletePod(i) => {
            let pods = w.list(Kind::Pod);
            if let Some(p) = pods.get(i % pods.len().max(1)) {
                let pod = name(p).to_string();
                w.delete(Kind::Pod, &pod, None);
            }
            return;
        }
        Edit::Wait(s) => {
            let until = add_secs(w.now, *s);
            while w.now < until {
                match w.settle(lags, next_lag) {
                    Some(t) if t <= until => w.now = t.max(w.now),
                    _ => w.now = until,
                }
            }
            return;
        }
    }
    w.update(Kind::Deployment, d);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..Default::default() })]
    #[test]
    fn quiet_controllers_are_settled_or_have_a_timer_due(
        edits in proptest::collection::vec(edit(), 1..8),
        start_ms in 0i64..1000,
        lags in proptest::collection::vec(0i64..8000, 1..40),
    ) {
        let mut w = World::new();
        w.now += jiff::SignedDuration::from_millis(start_ms);
        w.create(Kind::Deployment, article_deployment(2, "v0", json!({"type": "RollingUpdate"})));
        let mut next_lag = 0;
        for e in &edits {
            run(&mut w, e, &lags, &mut next_lag);
        }
        let mut d = w.get(Kind::Deployment, "my-app").unwrap();
        d["spec"]["paused"] = json!(false);
        w.update(Kind::Deployment, d);
        let start = w.now;
        loop {
            let timer = w.settle(&lags, &mut next_lag);
            let Some(why) = unsettled(&w) else { break };
            let wait = timer.map(|t| w.now.duration_until(t).as_secs_f64());
            prop_assert!(
                wait.is_some_and(|s| s <= LONGEST_WAIT),
                "quiet but unsettled ({why}) with the next timer in {wait:?} s, after {edits:?}"
            );
            w.now = timer.unwrap().max(w.now);
            let elapsed = start.duration_until(w.now).as_secs_f64();
            prop_assert!(elapsed < 600.0, "not settled after {elapsed} s: {why}");
        }
    }
}
