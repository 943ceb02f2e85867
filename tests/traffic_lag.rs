//! Proxies that apply the cluster's changes late (`traffic::lag`): the 503s real meshes give while
//! configuration propagates (NC, UF), kube-proxy's refused connections, and the orders of writes
//! that avoid them. Time is stepped by hand, so every run is the same; one test runs the sandbox.

use crate::support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use forklane_core::clock::Time;
use forklane_core::istio::*;
use forklane_sim::traffic::{
    ClusterView, ConfigKind, Dataplane, Lag, LiveView, Outcome, Pod, Request, ResponseFlag, Snapshot, SnapshotFeed,
    Tally,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use support::e2e::{Env, two_versions};
use support::snapshot::*;

/// Requests each proxy sends at each instant looked at.
const PER_PROXY: usize = 100;

/// One route splitting traffic by `weights` (subset, weight).
fn split(weights: &[(&str, i32)]) -> VirtualService {
    let route = weights.iter().map(|(subset, weight)| to(subset, Some(*weight))).collect();
    virtual_service(vec![VirtualServiceHttp { route: Some(route), ..Default::default() }])
}

fn mesh(pods: Vec<Pod>, weights: &[(&str, i32)], subsets: &[&str]) -> Snapshot {
    Snapshot::new(vec![service(None)], pods, &[split(weights)], &[destination_rule(subsets)]).with_mesh(true)
}

fn native(pods: Vec<Pod>) -> Snapshot {
    Snapshot::new(vec![service(None)], pods, &[], &[])
}

/// A feed on a clock the test sets, in milliseconds from 0.
struct Stage {
    feed: SnapshotFeed,
    view: LiveView,
    ms: Arc<AtomicI64>,
    dataplane: Dataplane,
    rng: StdRng,
}

impl Stage {
    fn new(initial: Snapshot, lag: Lag) -> Self {
        let ms = Arc::new(AtomicI64::new(0));
        let clock = ms.clone();
        let feed = SnapshotFeed::with_time(initial, move || {
            Time::from_millisecond(1_700_000_000_000 + clock.load(Ordering::Relaxed)).expect("a valid time")
        });
        feed.set_lag(lag);
        let view = feed.view();
        Stage { feed, view, ms, dataplane: Dataplane::default(), rng: StdRng::seed_from_u64(7) }
    }

    /// Publishes `snapshot` at `ms`.
    fn publish_at(&self, ms: i64, snapshot: Snapshot) {
        self.ms.store(ms, Ordering::Relaxed);
        self.feed.publish(snapshot);
    }

    /// What proxy `proxy` (of `proxies`) gets at `ms`: 503s by flag, refused connections and
    /// answers by version.
    fn send_at(&mut self, ms: i64, proxy: usize, proxies: usize) -> Got {
        self.ms.store(ms, Ordering::Relaxed);
        let mut got = Got::default();
        for i in 0..PER_PROXY {
            let view = self.view.proxy_view(proxy + i * proxies);
            match self.dataplane.handle_via(&view, &key(), &Request::get("/"), &mut self.rng) {
                Outcome::Refused => got.refused += 1,
                Outcome::Answered(a) if a.response.status == 503 => *got.unavailable.entry(a.flag).or_default() += 1,
                Outcome::Answered(a) => {
                    *got.versions.entry(a.response.version().unwrap_or("?").to_string()).or_default() += 1
                }
            }
        }
        got
    }

    /// Sends from every proxy at every 10 ms from `from` to `to`, adding up what they got.
    fn sweep(&mut self, from: i64, to: i64, proxies: usize) -> Got {
        let mut all = Got::default();
        for ms in (from..=to).step_by(10) {
            for proxy in 0..proxies {
                all.add(self.send_at(ms, proxy, proxies));
            }
        }
        all
    }
}

#[derive(Debug, Default)]
struct Got {
    unavailable: BTreeMap<ResponseFlag, u64>,
    refused: u64,
    versions: BTreeMap<String, u64>,
}

impl Got {
    fn flag(&self, flag: ResponseFlag) -> u64 {
        self.unavailable.get(&flag).copied().unwrap_or(0)
    }

    fn errors(&self) -> u64 {
        self.unavailable.values().sum::<u64>() + self.refused
    }

    fn add(&mut self, other: Got) {
        for (flag, n) in other.unavailable {
            *self.unavailable.entry(flag).or_default() += n;
        }
        for (version, n) in other.versions {
            *self.versions.entry(version).or_default() += n;
        }
        self.refused += other.refused;
    }
}

fn both_versions() -> Vec<Pod> {
    [pods("v1", 2, true), pods("v2", 2, true)].concat()
}

#[test]
fn without_lag_every_proxy_sees_the_current_snapshot_at_once() {
    let stage = Stage::new(mesh(both_versions(), &[("v1", 100)], &["v1"]), Lag::none());
    stage.publish_at(10, mesh(both_versions(), &[("v2", 100)], &["v1", "v2"]));
    for user in 0..3 {
        let view = stage.view.proxy_view(user);
        let current = stage.view.snapshot();
        assert!(Arc::ptr_eq(&view.routes, &current) && Arc::ptr_eq(&view.clusters, &current));
    }
}

/// What istiod reports in status: how many proxies hold a generation, routes and clusters each by
/// their own delay.
#[test]
fn distribution_counts_the_proxies_holding_each_generation() {
    let lag = Lag::straggler(Duration::from_millis(100), Duration::from_secs(5));
    let n = lag.proxies.len();
    let stage = Stage::new(mesh(both_versions(), &[("v1", 100)], &["v1"]), lag);
    let (mut rule, mut route) = (destination_rule(&["v1", "v2"]), split(&[("v1", 50), ("v2", 50)]));
    (rule.metadata.generation, route.metadata.generation) = (Some(2), Some(2));
    let next = Snapshot::new(vec![service(None)], both_versions(), &[route], &[rule]).with_mesh(true);
    stage.publish_at(1_000, next);
    let at = |ms: i64, kind: ConfigKind, generation: i64| {
        stage.ms.store(ms, Ordering::Relaxed);
        stage.feed.distribution(kind, NS, "my-app", generation)
    };
    assert_eq!(at(1_000, ConfigKind::DestinationRule, 1), (n, n), "every proxy holds generation 1");
    assert_eq!(at(1_010, ConfigKind::DestinationRule, 2), (0, n), "none has generation 2 yet");
    assert_eq!(at(1_200, ConfigKind::DestinationRule, 2), (n - 1, n), "all but the straggler's clusters");
    assert_eq!(at(1_200, ConfigKind::VirtualService, 2), (n, n), "its routes keep pace");
    assert_eq!(at(5_990, ConfigKind::DestinationRule, 2), (n - 1, n));
    assert_eq!(at(6_000, ConfigKind::DestinationRule, 2), (n, n));
    assert_eq!(at(6_000, ConfigKind::DestinationRule, 3), (0, n));
}

#[test]
fn a_new_subset_written_with_its_route_answers_nc_on_the_straggler_until_its_delay_passes() {
    let lag = Lag::straggler(Duration::from_millis(100), Duration::from_secs(5));
    let (n, straggler) = (lag.proxies.len(), lag.proxies.len() - 1);
    let mut stage = Stage::new(mesh(both_versions(), &[("v1", 100)], &["v1"]), lag);
    stage.publish_at(1_000, mesh(both_versions(), &[("v1", 50), ("v2", 50)], &["v1", "v2"]));
    // Past every other proxy's delays (150 ms at most), before the straggler's 5 s.
    for ms in [1_200, 3_000, 5_990] {
        let got = stage.send_at(ms, straggler, n);
        assert!(got.flag(ResponseFlag::NoClusterFound) > 20, "at {ms} ms: {got:?}");
        assert_eq!(got.errors(), got.flag(ResponseFlag::NoClusterFound), "{got:?}");
        for proxy in 0..straggler {
            let got = stage.send_at(ms, proxy, n);
            assert_eq!(got.errors(), 0, "proxy {proxy} at {ms} ms: {got:?}");
        }
    }
    let after = stage.sweep(6_000, 6_500, n);
    assert_eq!(after.errors(), 0, "{after:?}");
    assert!(after.versions["v2"] > 1_000, "{after:?}");
}

#[test]
fn a_destination_rule_written_longer_before_its_route_than_any_cluster_delay_gives_no_503() {
    let lag = Lag::straggler(Duration::from_millis(100), Duration::from_secs(5));
    let n = lag.proxies.len();
    let mut stage = Stage::new(mesh(both_versions(), &[("v1", 100)], &["v1"]), lag);
    stage.publish_at(1_000, mesh(both_versions(), &[("v1", 100)], &["v1", "v2"]));
    stage.publish_at(6_010, mesh(both_versions(), &[("v1", 50), ("v2", 50)], &["v1", "v2"]));
    let got = stage.sweep(6_010, 11_500, n);
    assert_eq!(got.errors(), 0, "{got:?}");
    assert!(got.versions["v2"] > 10_000, "the new route is used: {got:?}");
}

#[test]
fn a_subset_removed_as_its_route_goes_answers_nc_where_routes_lag_behind_clusters() {
    let lag = Lag::uniform(Duration::from_millis(100));
    let n = lag.proxies.len();
    let routes_lag: Vec<usize> = (0..n).filter(|&p| lag.proxies[p].routes > lag.proxies[p].clusters).collect();
    assert!(!routes_lag.is_empty());
    let mut stage = Stage::new(mesh(both_versions(), &[("v1", 50), ("v2", 50)], &["v1", "v2"]), lag.clone());
    stage.publish_at(1_000, mesh(both_versions(), &[("v1", 100)], &["v1"]));
    // 90 ms on, these proxies have the new clusters (without v2) but still the old routes.
    for proxy in 0..n {
        let got = stage.send_at(1_090, proxy, n);
        if routes_lag.contains(&proxy) {
            assert!(got.flag(ResponseFlag::NoClusterFound) > 20, "proxy {proxy}: {got:?}");
        } else {
            assert_eq!(got.errors(), 0, "proxy {proxy}: {got:?}");
        }
    }
    let after = stage.sweep(1_000 + lag.largest().as_millis() as i64, 2_000, n);
    assert_eq!((after.errors(), after.versions.get("v2")), (0, None), "{after:?}");
}

#[test]
fn pods_deleted_while_lagging_routes_send_to_them_fail_with_uf() {
    let lag = Lag::uniform(Duration::from_millis(100));
    let n = lag.proxies.len();
    let mut stage = Stage::new(mesh(both_versions(), &[("v1", 50), ("v2", 50)], &["v1", "v2"]), lag);
    stage.publish_at(1_000, mesh(pods("v1", 2, true), &[("v1", 100)], &["v1", "v2"]));
    // A proxy whose routes and clusters both still predate the change: v2's endpoints are gone
    // pods, and Istio's two retries on the other (gone) host fail too.
    let got = stage.sweep(1_000, 1_040, n);
    assert!(got.flag(ResponseFlag::UpstreamConnectionFailure) > 100, "{got:?}");
    assert_eq!(got.errors(), got.flag(ResponseFlag::UpstreamConnectionFailure), "{got:?}");
}

#[test]
fn pods_kept_past_the_largest_delay_give_no_error() {
    let lag = Lag::uniform(Duration::from_millis(100));
    let (n, largest) = (lag.proxies.len(), lag.largest().as_millis() as i64);
    let mut stage = Stage::new(mesh(both_versions(), &[("v1", 50), ("v2", 50)], &["v1", "v2"]), lag);
    stage.publish_at(1_000, mesh(both_versions(), &[("v1", 100)], &["v1", "v2"]));
    let mut got = stage.sweep(1_000, 1_000 + largest, n);
    // Once every proxy has the new route, v2's pods terminate, then go.
    let terminating = [pods("v1", 2, true), pods("v2", 2, false)].concat();
    stage.publish_at(1_001 + largest, mesh(terminating, &[("v1", 100)], &["v1", "v2"]));
    got.add(stage.sweep(1_001 + largest, 1_300, n));
    stage.publish_at(1_301, mesh(pods("v1", 2, true), &[("v1", 100)], &["v1", "v2"]));
    got.add(stage.sweep(1_301, 1_600, n));
    assert_eq!(got.errors(), 0, "{got:?}");
    assert!(got.versions["v2"] > 100, "lagging routes still reach v2 at first: {got:?}");
}

#[test]
fn a_terminating_pod_still_answers_a_proxy_whose_endpoints_lag() {
    let lag = Lag::uniform(Duration::from_millis(100));
    let n = lag.proxies.len();
    // Routes and clusters both still from before the change at 1090 ms.
    let behind = (0..n).find(|&p| lag.proxies[p].routes.min(lag.proxies[p].clusters) > Duration::from_millis(90));
    let behind = behind.expect("a proxy 90 ms behind in both");
    let mut stage = Stage::new(mesh(both_versions(), &[("v1", 50), ("v2", 50)], &["v1", "v2"]), lag);
    let terminating = [pods("v1", 2, true), pods("v2", 2, false)].concat();
    stage.publish_at(1_000, mesh(terminating, &[("v1", 100)], &["v1", "v2"]));
    let got = stage.send_at(1_090, behind, n);
    assert_eq!(got.errors(), 0, "{got:?}");
    assert!(got.versions["v2"] > 20, "{got:?}");
}

#[test]
fn without_a_mesh_kube_proxy_refuses_for_deleted_pods_its_endpoints_still_list() {
    let lag = Lag::uniform(Duration::from_millis(100));
    let (n, largest) = (lag.proxies.len(), lag.largest().as_millis() as i64);
    let mut stage = Stage::new(native(both_versions()), lag.clone());
    stage.publish_at(1_000, native(pods("v1", 2, true)));
    let got = stage.sweep(1_000, 1_040, n);
    assert!(got.refused > 100, "{got:?}");
    assert_eq!(got.errors(), got.refused, "no 503 without a mesh: {got:?}");
    let after = stage.sweep(1_000 + largest, 1_500, n);
    assert_eq!(after.errors(), 0, "{after:?}");

    // Terminating (not ready) first, gone once every kube-proxy caught up: nothing refused.
    let mut stage = Stage::new(native(both_versions()), lag);
    stage.publish_at(1_000, native([pods("v1", 2, true), pods("v2", 2, false)].concat()));
    let during = stage.sweep(1_000, 1_000 + largest, n);
    stage.publish_at(1_001 + largest, native(pods("v1", 2, true)));
    let after = stage.sweep(1_001 + largest, 1_500, n);
    assert_eq!((during.errors(), after.errors()), (0, 0), "{during:?} {after:?}");
}

/// my-app's VirtualService (`weights` by subset) and DestinationRule (`subsets`), in one document
/// set, the VirtualService first.
fn routing_yaml(weights: &[(&str, i32)], subsets: &[&str]) -> String {
    let routes: String = weights
        .iter()
        .map(|(s, w)| format!("        - {{destination: {{host: my-app, subset: {s}}}, weight: {w}}}\n"))
        .collect();
    let subsets: String = subsets.iter().map(|s| format!("    - {{name: {s}, labels: {{version: {s}}}}}\n")).collect();
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: my-app, namespace: default}}\n\
         spec:\n  hosts: [my-app]\n  http:\n    - route:\n{routes}---\n\
         apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: my-app, namespace: default}}\n\
         spec:\n  host: my-app\n  subsets:\n{subsets}"
    )
}

/// The tally once `requests` more requests have been sent than in `since`.
async fn tally_after(env: &Env, since: &Tally, requests: u64) -> Tally {
    loop {
        let tally = env.traffic_tally();
        if tally.requests >= since.requests + requests {
            return tally;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_traffic_meets_a_straggler_set_while_it_runs() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let mut env = Env::start(true, false).await;
        two_versions(&env, 2, &[], &[]).await;
        env.apply(&routing_yaml(&[("v1", 100)], &["v1"])).await;
        // Nothing lags until the data plane has both (the VirtualService alone answers NC).
        let routed =
            |snap: &Snapshot| snap.service(&key()).is_some_and(|e| e.virtual_service.is_some() && e.subsets.is_some());
        while !routed(&env.net().feed.view().snapshot()) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        env.start_traffic(2000.0, 50);
        // Simulated time runs 100 times faster: the straggler's clusters come 30 s (0.3 s) late.
        env.set_lag(Lag::straggler(Duration::from_millis(100), Duration::from_secs(30)));
        let before = tally_after(&env, &Tally::default(), 200).await;
        assert_eq!((before.unavailable_by_flag.len(), before.refused), (0, 0), "{before:?}");
        env.apply(&routing_yaml(&[("v1", 50), ("v2", 50)], &["v1", "v2"])).await;
        let nc = |t: &Tally| t.unavailable(ResponseFlag::NoClusterFound);
        tokio::time::sleep(env.clock.real_duration(Duration::from_secs(10))).await;
        let early = env.traffic_tally();
        tokio::time::sleep(env.clock.real_duration(Duration::from_secs(10))).await;
        let later = env.traffic_tally();
        assert!(nc(&later) > nc(&early), "the straggler still answers NC 10 to 20 s on: {early:?} {later:?}");
        tokio::time::sleep(env.clock.real_duration(Duration::from_secs(15))).await;
        let caught_up = env.traffic_tally();
        let after = tally_after(&env, &caught_up, 200).await;
        assert_eq!(nc(&after), nc(&caught_up), "no NC once the straggler caught up: {after:?}");
        assert_eq!(after.by_status.values().sum::<u64>() + after.refused, after.requests);
        env.shutdown().await;
    })
    .await
    .expect("the test is bounded");
}
