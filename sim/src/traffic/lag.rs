//! Configuration propagation, as a real mesh has it: istiod pushes routes (RDS: VirtualServices)
//! and clusters (CDS/EDS: Services, DestinationRule subsets, endpoints) to every proxy separately,
//! and each proxy applies them some time after the API server changed. The feed keeps the
//! snapshots it published, stamped with simulated time; a proxy's route view is the newest one
//! published at least its route delay ago, its cluster view the newest published at least its
//! cluster delay ago. Pods answer from the cluster as it is now: one that is gone refuses.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use forklane_core::clock::Time;

use super::request::{Outcome, ResponseFlag};
use super::snapshot::Snapshot;

/// How late each proxy applies what the API server holds. Users are spread over the proxies
/// (user `i` → proxy `i % n`), as a client pod always goes through its own sidecar (or its node's
/// kube-proxy without a mesh).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lag {
    pub proxies: Vec<ProxyDelay>,
}

/// The delays of one proxy, in simulated time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProxyDelay {
    /// How late VirtualServices (RDS) reach it.
    pub routes: Duration,
    /// How late Services, DestinationRule subsets and endpoints (CDS/EDS) reach it.
    pub clusters: Duration,
}

/// Route and cluster delays of [`Lag::uniform`]'s proxies, as multiples of its delay: the mean of
/// each is 1, and two proxies get routes before clusters and two the other way round, so that
/// both orders of arrival happen.
const SPREAD: [(f64, f64); 4] = [(0.5, 1.25), (1.0, 0.5), (1.5, 0.75), (1.0, 1.5)];

impl Lag {
    /// One proxy that sees every change at once: the data plane without lag.
    pub fn none() -> Self {
        Lag { proxies: vec![ProxyDelay::default()] }
    }

    /// Four proxies whose route and cluster delays are spread deterministically around `d`
    /// (from `d/2` to `3d/2`), routes and clusters independently.
    pub fn uniform(d: Duration) -> Self {
        let proxies = SPREAD
            .iter()
            .map(|&(routes, clusters)| ProxyDelay { routes: d.mul_f64(routes), clusters: d.mul_f64(clusters) })
            .collect();
        Lag { proxies }
    }

    /// [`Lag::uniform`] around `d`, plus a fifth proxy whose routes keep pace (`d`) but whose
    /// clusters arrive `straggler` late, as when istiod is slow pushing endpoints to one
    /// overloaded proxy: the worst case for a route to a new subset.
    pub fn straggler(d: Duration, straggler: Duration) -> Self {
        let mut lag = Lag::uniform(d);
        lag.proxies.push(ProxyDelay { routes: d, clusters: straggler });
        lag
    }

    /// The named lags experiments are tried under.
    pub fn scenarios() -> Vec<(&'static str, Lag)> {
        let ms = Duration::from_millis;
        vec![
            ("0ms", Lag::none()),
            ("100ms", Lag::uniform(ms(100))),
            ("500ms", Lag::uniform(ms(500))),
            ("5s straggler", Lag::straggler(ms(100), Duration::from_secs(5))),
        ]
    }

    /// The longest delay of any proxy: how much history the feed keeps.
    pub fn largest(&self) -> Duration {
        self.proxies.iter().map(|p| p.routes.max(p.clusters)).max().unwrap_or_default()
    }

    /// The proxy user `user` goes through (no delay when the list is empty).
    pub(crate) fn proxy(&self, user: usize) -> ProxyDelay {
        self.proxies.get(user % self.proxies.len().max(1)).copied().unwrap_or_default()
    }
}

impl Default for Lag {
    fn default() -> Self {
        Lag::none()
    }
}

/// What one proxy sees when it handles a request.
#[derive(Clone, Debug)]
pub struct ProxyView {
    /// Where its VirtualServices come from.
    pub routes: Arc<Snapshot>,
    /// Where its Services, subsets and endpoints come from.
    pub clusters: Arc<Snapshot>,
    /// The cluster as it is now: which pods still run.
    pub current: Arc<Snapshot>,
}

impl ProxyView {
    /// A proxy up to date with `snapshot`.
    pub fn current(snapshot: Arc<Snapshot>) -> Self {
        ProxyView { routes: snapshot.clone(), clusters: snapshot.clone(), current: snapshot }
    }

    pub(crate) fn views(&self) -> Views<'_> {
        Views { routes: &self.routes, clusters: &self.clusters, current: &self.current }
    }
}

/// [`ProxyView`], borrowed: what routing reads.
#[derive(Clone, Copy)]
pub(crate) struct Views<'s> {
    pub routes: &'s Snapshot,
    pub clusters: &'s Snapshot,
    pub current: &'s Snapshot,
}

impl<'s> Views<'s> {
    /// One snapshot for everything: no lag.
    pub(crate) fn same(snapshot: &'s Snapshot) -> Self {
        Views { routes: snapshot, clusters: snapshot, current: snapshot }
    }

    /// The index in the current snapshot of the pod at `index` of the cluster view; `None` when
    /// that pod no longer exists (a terminating pod still exists: its container still runs).
    pub(crate) fn running(&self, index: usize) -> Option<usize> {
        if std::ptr::eq(self.clusters, self.current) {
            return Some(index);
        }
        let pod = &self.clusters.pod(index).pod;
        self.current.pod_index(&pod.namespace, &pod.name)
    }
}

/// At most this many snapshots are kept, whatever the delays (a bound on memory under a burst).
const MAX_HISTORY: usize = 1024;

/// The snapshots the feed published, oldest first, with their simulated publish time; never
/// empty.
pub(crate) struct History {
    entries: VecDeque<(Time, Arc<Snapshot>)>,
}

impl History {
    pub(crate) fn new(at: Time, snapshot: Arc<Snapshot>) -> Self {
        History { entries: VecDeque::from([(at, snapshot)]) }
    }

    /// Adds a snapshot published at `at`, and forgets those no proxy delayed by at most `keep`
    /// can see any more (the one in force `keep` ago stays).
    pub(crate) fn push(&mut self, at: Time, snapshot: Arc<Snapshot>, keep: Duration) {
        // Never before the newest: a snapshot published as of its change stays after the last.
        let at = self.entries.back().map_or(at, |(last, _)| at.max(*last));
        self.entries.push_back((at, snapshot));
        let horizon = at.checked_sub(keep).unwrap_or(at);
        while self.entries.len() > MAX_HISTORY || self.entries.get(1).is_some_and(|(t, _)| *t <= horizon) {
            self.entries.pop_front();
        }
    }

    /// The newest snapshot published at or before `t`; the oldest kept when none is that old.
    pub(crate) fn as_of(&self, t: Time) -> &Arc<Snapshot> {
        let newer = self.entries.partition_point(|(at, _)| *at <= t);
        &self.entries[newer.saturating_sub(1)].1
    }

    /// What a proxy delayed by `delay` sees at `now`.
    pub(crate) fn view(&self, now: Time, delay: ProxyDelay) -> ProxyView {
        let as_of = |d: Duration| self.as_of(now.checked_sub(d).unwrap_or(now)).clone();
        ProxyView { routes: as_of(delay.routes), clusters: as_of(delay.clusters), current: as_of(Duration::ZERO) }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// What the background traffic got, request by request; cheap to copy out while it runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub requests: u64,
    /// Answers by status code (the proxy's own replies included).
    pub by_status: BTreeMap<u16, u64>,
    /// 503 answers by Envoy response flag (`None`: a pod answered 503 itself).
    pub unavailable_by_flag: BTreeMap<ResponseFlag, u64>,
    /// Connections refused.
    pub refused: u64,
}

impl Tally {
    pub(crate) fn record(&mut self, outcome: &Outcome) {
        self.requests += 1;
        match outcome {
            Outcome::Refused => self.refused += 1,
            Outcome::Answered(answer) => {
                *self.by_status.entry(answer.response.status).or_default() += 1;
                if answer.response.status == 503 {
                    *self.unavailable_by_flag.entry(answer.flag).or_default() += 1;
                }
            }
        }
    }

    /// Requests that failed: a 503 of any flag (or a pod's own), or a refused connection.
    pub fn failed(&self) -> u64 {
        self.unavailable_by_flag.values().sum::<u64>() + self.refused
    }

    /// 503 answers with `flag`.
    pub fn unavailable(&self, flag: ResponseFlag) -> u64 {
        self.unavailable_by_flag.get(&flag).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> Time {
        Time::from_millisecond(1_700_000_000_000 + ms).unwrap()
    }

    fn snap() -> Arc<Snapshot> {
        Arc::new(Snapshot::default())
    }

    #[test]
    fn a_proxy_sees_the_newest_snapshot_at_least_its_delay_old() {
        let (a, b, c) = (snap(), snap(), snap());
        let mut history = History::new(at(0), a.clone());
        history.push(at(100), b.clone(), Duration::from_secs(1));
        history.push(at(300), c.clone(), Duration::from_secs(1));
        let delay = ProxyDelay { routes: Duration::from_millis(50), clusters: Duration::from_millis(250) };
        let view = history.view(at(320), delay);
        assert!(Arc::ptr_eq(&view.routes, &b), "320 - 50 is before c's 300");
        assert!(Arc::ptr_eq(&view.clusters, &a), "320 - 250 is before b's 100");
        assert!(Arc::ptr_eq(&view.current, &c));
        let view = history.view(at(360), delay);
        assert!(Arc::ptr_eq(&view.routes, &c), "360 - 50 is after c's 300");
        assert!(Arc::ptr_eq(&view.clusters, &b), "360 - 250 is after b's 100");
        assert!(Arc::ptr_eq(history.as_of(at(-10)), &a), "nothing older: the oldest kept");
    }

    #[test]
    fn history_keeps_only_what_the_largest_delay_can_see() {
        let keep = Duration::from_millis(100);
        let mut history = History::new(at(0), snap());
        for t in (10..=1000).step_by(10) {
            history.push(at(t), snap(), keep);
        }
        // At 1000 a proxy 100 ms late sees the one of 900: it and the ten after it stay.
        assert_eq!(history.len(), 11);
        let mut none = History::new(at(0), snap());
        none.push(at(10), snap(), Duration::ZERO);
        assert_eq!(none.len(), 1, "without lag only the newest stays");
    }

    #[test]
    fn uniform_lag_has_routes_and_clusters_arrive_in_both_orders() {
        let lag = Lag::uniform(Duration::from_millis(100));
        assert_eq!(lag.proxies.len(), 4);
        assert!(lag.proxies.iter().any(|p| p.routes < p.clusters));
        assert!(lag.proxies.iter().any(|p| p.routes > p.clusters));
        let mean = |f: fn(&ProxyDelay) -> Duration| lag.proxies.iter().map(f).sum::<Duration>() / 4;
        assert_eq!(
            (mean(|p| p.routes), mean(|p| p.clusters)),
            (Duration::from_millis(100), Duration::from_millis(100))
        );
        assert_eq!(lag.largest(), Duration::from_millis(150));
        let straggler = Lag::straggler(Duration::from_millis(100), Duration::from_secs(5));
        assert_eq!(straggler.largest(), Duration::from_secs(5));
        assert_eq!(Lag::none().largest(), Duration::ZERO);
        let names: Vec<_> = Lag::scenarios().into_iter().map(|(name, _)| name).collect();
        assert_eq!(names, ["0ms", "100ms", "500ms", "5s straggler"]);
        assert_eq!(Lag { proxies: Vec::new() }.proxy(3), ProxyDelay::default());
    }
}
