//! How the data plane reads the cluster: a [`ClusterView`] hands out the current [`Snapshot`]
//! (and what each proxy sees of it, see [`super::lag`]) and tells when it may have changed. The
//! embedded cluster publishes snapshots into a [`SnapshotFeed`] whenever Services, Pods,
//! VirtualServices, DestinationRules or Telemetries change; tests use a fixed `Arc<Snapshot>`.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use forklane_core::clock::{Clock, Time};

use super::lag::{History, Lag, ProxyView};
use super::snapshot::{ConfigKind, Snapshot};

pub trait ClusterView: Clone + Send + Sync + 'static {
    /// The cluster as it is now.
    fn snapshot(&self) -> Arc<Snapshot>;

    /// What the proxy that user `user`'s requests go through sees now; the cluster as it is, for
    /// a view without lag.
    fn proxy_view(&self, _user: usize) -> ProxyView {
        ProxyView::current(self.snapshot())
    }

    /// Resolves when the snapshot may have changed since this view last looked; never, for a
    /// view that cannot change.
    fn changed(&mut self) -> impl Future<Output = ()> + Send;
}

/// A fixed cluster.
impl ClusterView for Arc<Snapshot> {
    fn snapshot(&self) -> Arc<Snapshot> {
        self.clone()
    }

    async fn changed(&mut self) {
        std::future::pending::<()>().await
    }
}

/// The simulated time snapshots are stamped and read with.
type Now = Arc<dyn Fn() -> Time + Send + Sync>;

/// The lag in force and the snapshots it may still show.
struct Lagging {
    lag: Lag,
    history: History,
}

/// The publishing side: the cluster owns one and publishes every new state.
#[derive(Clone)]
pub struct SnapshotFeed {
    current: watch::Sender<Arc<Snapshot>>,
    lagging: Arc<Mutex<Lagging>>,
    now: Now,
}

impl SnapshotFeed {
    /// A feed on the wall clock.
    pub fn new(initial: Snapshot) -> Self {
        SnapshotFeed::with_clock(initial, Clock::real())
    }

    /// A feed whose snapshots are stamped, and lag measured, on `clock`.
    pub fn with_clock(initial: Snapshot, clock: Clock) -> Self {
        SnapshotFeed::with_time(initial, move || clock.now())
    }

    /// A feed reading simulated time from `now` (tests step it by hand).
    pub fn with_time(initial: Snapshot, now: impl Fn() -> Time + Send + Sync + 'static) -> Self {
        let initial = Arc::new(initial);
        let history = History::new(now(), initial.clone());
        SnapshotFeed {
            current: watch::Sender::new(initial),
            lagging: Arc::new(Mutex::new(Lagging { lag: Lag::none(), history })),
            now: Arc::new(now),
        }
    }

    /// Replaces the state; listeners re-read it at once, proxies when their delays have passed.
    pub fn publish(&self, snapshot: Snapshot) {
        self.publish_as_of(snapshot, (self.now)());
    }

    /// [`SnapshotFeed::publish`] of the state as changed at `changed` (not after `now`): proxies'
    /// delays count from then.
    pub(crate) fn publish_as_of(&self, snapshot: Snapshot, changed: Time) {
        let snapshot = Arc::new(snapshot);
        let mut lagging = self.lock();
        let keep = lagging.lag.largest();
        lagging.history.push(changed.min((self.now)()), snapshot.clone(), keep);
        self.current.send_replace(snapshot);
    }

    /// Sets how late each proxy sees what is published, from now on, for every view of this feed
    /// (in-process traffic; NodePort listeners answer as an up-to-date proxy). Snapshots
    /// published before are kept only as long as the previous lag needed them.
    pub fn set_lag(&self, lag: Lag) {
        self.lock().lag = lag;
    }

    /// How many proxies have applied `generation` (or a later one) of the `kind` object
    /// `namespace/name`, out of how many: what istiod reports in the object's status.
    pub fn distribution(&self, kind: ConfigKind, namespace: &str, name: &str, generation: i64) -> (usize, usize) {
        let lagging = self.lock();
        let now = (self.now)();
        let proxies = &lagging.lag.proxies;
        let applied = proxies.iter().filter(|delay| {
            let view = lagging.history.view(now, **delay);
            let held = match kind {
                ConfigKind::VirtualService => &view.routes,
                ConfigKind::DestinationRule => &view.clusters,
            };
            held.generation(kind, namespace, name).is_some_and(|g| g >= generation)
        });
        (applied.count(), proxies.len())
    }

    pub fn view(&self) -> LiveView {
        LiveView { current: self.current.subscribe(), lagging: self.lagging.clone(), now: self.now.clone() }
    }

    fn lock(&self) -> MutexGuard<'_, Lagging> {
        lock(&self.lagging)
    }
}

fn lock(m: &Mutex<Lagging>) -> MutexGuard<'_, Lagging> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A view following a [`SnapshotFeed`].
#[derive(Clone)]
pub struct LiveView {
    current: watch::Receiver<Arc<Snapshot>>,
    lagging: Arc<Mutex<Lagging>>,
    now: Now,
}

impl ClusterView for LiveView {
    fn snapshot(&self) -> Arc<Snapshot> {
        self.current.borrow().clone()
    }

    fn proxy_view(&self, user: usize) -> ProxyView {
        let lagging = lock(&self.lagging);
        let delay = lagging.lag.proxy(user);
        if delay.routes.is_zero() && delay.clusters.is_zero() {
            drop(lagging);
            return ProxyView::current(self.snapshot());
        }
        lagging.history.view((self.now)(), delay)
    }

    async fn changed(&mut self) {
        if self.current.changed().await.is_err() {
            // The feed is gone: the last snapshot stays.
            std::future::pending::<()>().await;
        }
    }
}
