//! Leader election: of the replicas sharing one Lease, only the holder runs the controller, and
//! only its writes pass the fence. It stops the controller when the lease is lost and releases
//! the lease on shutdown so a standby takes over at its next look. (Whether Istio is installed,
//! the controller watches itself.)

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use kube::Client;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::election::Election;
use super::fence::Fence;
use super::telemetry::{Heartbeat, Loop};
use super::{Context, Error, Result, Scope, run_controller};

/// How long a stopping controller may take to finish its reconciles in flight.
const STOP_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The Lease the replicas compete for, and this replica's part in it.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    /// Unique among the replicas (the pod's name); it is also the Lease's `holderIdentity`.
    pub identity: String,
    /// Seconds the lease stays valid after a renewal: how long a crashed leader blocks a standby.
    pub duration: u64,
    /// Seconds before expiry at which the holder renews, and between a standby's looks. The
    /// leader stops writing `grace / 2` seconds before the lease would expire.
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
/// `client` writes the Lease; the controller in `ctx` must use a client fenced by `fence`
/// ([`fenced_client`](super::fence::fenced_client)), which this election opens while leading.
pub async fn lead(
    client: Client,
    lease: LeaseSettings,
    fence: Arc<Fence>,
    ctx: Arc<Context>,
    scope: Scope,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let (mut election, leading) = Election::new(client, lease, fence);
    // The first look reads (or creates) the Lease: the API server answers and this replica
    // competes, leader or standby.
    election.step().await.map_err(|e| Error::Lease(e.to_string()))?;
    ctx.metrics.ready.store(true, Ordering::Relaxed);
    let (stop, mut stopped) = oneshot::channel::<()>();
    let campaign = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                () = tokio::time::sleep(election.next_look()) => {
                    if let Err(e) = election.step().await {
                        tracing::warn!(error = %e, "could not take or renew the lease");
                    }
                }
            }
        }
        election.release().await
    });
    let outcome = follow(leading, &ctx, &scope, shutdown).await;
    let _ = stop.send(());
    let released = match campaign.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Error::Lease(format!("releasing the lease: {e}"))),
        Err(e) => Err(Error::Lease(format!("the election failed: {e}"))),
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
            // kube's graceful shutdown waits for reconciles in flight; one asked to stop just as
            // it started has been seen never to end. Past the limit it is aborted: its writes
            // are idempotent, and once the lease is gone the fence holds them back anyway.
            if tokio::time::timeout(STOP_LIMIT, &mut controller).await.is_err() {
                tracing::warn!(limit = ?STOP_LIMIT, "the controller did not stop in time: aborted");
                controller.abort();
            }
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
    Error::Lease("the election stopped".into())
}
