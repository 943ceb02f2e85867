//! Leader election: of the replicas sharing one Lease, only the holder runs the controller. It
//! stops the controller when the lease is lost and releases the lease on shutdown so a standby
//! takes over at once. (Whether Istio is installed, the controller watches itself.)

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::telemetry::{Heartbeat, Loop};
use super::{Context, Error, Result, Scope, run_controller};

/// The Lease the replicas compete for, and this replica's part in it.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    /// Unique among the replicas (the pod's name); it is also the Lease's `holderIdentity`.
    pub identity: String,
    /// Seconds the lease stays valid after a renewal: how long a crashed leader blocks a standby.
    pub duration: u64,
    /// Seconds before expiry at which the holder renews.
    pub grace: u64,
}

/// Why the controller stopped while this replica was leading.
enum Stop {
    Restart(&'static str),
    Shutdown,
    Failed(Error),
    /// The controller task ended by itself (it panicked).
    Crashed(String),
}

/// Competes for the Lease until `shutdown` resolves, running the controller while holding it.
pub async fn lead(
    client: Client,
    lease: LeaseSettings,
    ctx: Arc<Context>,
    scope: Scope,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let manager = LeaseManagerBuilder::new(client.clone(), &lease.name)
        .with_namespace(&lease.namespace)
        .with_identity(&lease.identity)
        // One field manager per replica: taking a free Lease is a server-side apply, and only
        // distinct managers make two simultaneous takers conflict.
        .with_field_manager(format!("forklane-leader-{}", lease.identity))
        .with_duration(lease.duration)
        .with_grace(lease.grace)
        .build()
        .await
        .map_err(|e| Error::Lease(e.to_string()))?;
    // Building the manager read (or created) the Lease: the API server answers and this replica
    // competes, leader or standby.
    ctx.metrics.ready.store(true, Ordering::Relaxed);
    let (leading, manager) = manager.watch().await;
    let outcome = follow(leading, &ctx, &scope, shutdown).await;
    // `follow` dropped the receiver: the manager releases the lease and ends.
    let released = match manager.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(Error::Lease(format!("releasing the lease: {e}"))),
        Err(e) => Err(Error::Lease(format!("the lease manager failed: {e}"))),
    };
    outcome.and(released)
}

/// Follows the lease state: stands by, or runs the controller until something stops it.
async fn follow(
    mut leading: watch::Receiver<bool>,
    ctx: &Arc<Context>,
    scope: &Scope,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    tokio::pin!(shutdown);
    let mut heartbeat = Heartbeat::new(&ctx.metrics, Loop::Election);
    loop {
        if !*leading.borrow() {
            tracing::info!("standing by: another replica holds the lease");
        }
        while !*leading.borrow_and_update() {
            tokio::select! {
                changed = leading.changed() => changed.map_err(|_| manager_stopped())?,
                () = heartbeat.tick() => {}
                () = &mut shutdown => return Ok(()),
            }
        }
        tracing::info!("leading: the controller starts");
        let (stop, stopped) = oneshot::channel::<()>();
        let mut controller = tokio::spawn(run_controller(ctx.clone(), scope.clone(), async move {
            let _ = stopped.await;
        }));
        let why = watch_while_leading(&mut leading, &mut controller, &mut heartbeat, shutdown.as_mut()).await;
        if !matches!(why, Stop::Crashed(_)) {
            let _ = stop.send(());
            let _ = controller.await;
        }
        match why {
            Stop::Restart(reason) => tracing::info!(reason, "the controller stopped"),
            Stop::Shutdown => return Ok(()),
            Stop::Failed(e) => return Err(e),
            Stop::Crashed(e) => return Err(Error::Lease(format!("the controller ended while leading: {e}"))),
        }
    }
}

async fn watch_while_leading(
    leading: &mut watch::Receiver<bool>,
    controller: &mut JoinHandle<()>,
    heartbeat: &mut Heartbeat<'_>,
    mut shutdown: Pin<&mut impl Future<Output = ()>>,
) -> Stop {
    loop {
        tokio::select! {
            changed = leading.changed() => match changed {
                Err(_) => return Stop::Failed(manager_stopped()),
                Ok(()) if !*leading.borrow_and_update() => return Stop::Restart("lost the lease"),
                Ok(()) => {}
            },
            () = heartbeat.tick() => {}
            ended = &mut *controller => return Stop::Crashed(format!("{ended:?}")),
            () = shutdown.as_mut() => return Stop::Shutdown,
        }
    }
}

fn manager_stopped() -> Error {
    Error::Lease("the lease manager stopped".into())
}
