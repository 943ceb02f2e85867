//! How the data plane reads the cluster: a [`ClusterView`] hands out the current [`Snapshot`]
//! and tells when it may have changed. The embedded cluster publishes snapshots into a
//! [`SnapshotFeed`] whenever Services, Pods, VirtualServices, DestinationRules or Telemetries
//! change; tests use a fixed `Arc<Snapshot>`.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::watch;

use super::snapshot::Snapshot;

pub trait ClusterView: Clone + Send + Sync + 'static {
    /// The cluster as it is now.
    fn snapshot(&self) -> Arc<Snapshot>;

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

/// The publishing side: the cluster owns one and publishes every new state.
#[derive(Clone)]
pub struct SnapshotFeed(watch::Sender<Arc<Snapshot>>);

impl SnapshotFeed {
    pub fn new(initial: Snapshot) -> Self {
        SnapshotFeed(watch::Sender::new(Arc::new(initial)))
    }

    /// Replaces the state; listeners re-read it at once.
    pub fn publish(&self, snapshot: Snapshot) {
        self.0.send_replace(Arc::new(snapshot));
    }

    pub fn view(&self) -> LiveView {
        LiveView(self.0.subscribe())
    }
}

/// A view following a [`SnapshotFeed`].
#[derive(Clone)]
pub struct LiveView(watch::Receiver<Arc<Snapshot>>);

impl ClusterView for LiveView {
    fn snapshot(&self) -> Arc<Snapshot> {
        self.0.borrow().clone()
    }

    async fn changed(&mut self) {
        if self.0.changed().await.is_err() {
            // The feed is gone: the last snapshot stays.
            std::future::pending::<()>().await;
        }
    }
}
