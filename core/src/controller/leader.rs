//! Leader election: of the replicas sharing a Lease, only the holder reconciles the experiments
//! it leads, and only its writes for them pass the fence. With `--shards K` there is one Lease per
//! shard ([`shards`](super::shards)) and the replicas split them evenly; with one shard this is
//! plain leader election on the controller's Lease. Every replica runs the controller's caches
//! from the start, so a shard taken over is reconciled at once; a replica releases its Leases on
//! shutdown so that the others take over at their next look.

use std::future::Future;
use std::sync::atomic::Ordering;

use futures::channel::mpsc;
use kube::Client;
use tokio::sync::oneshot;

use super::election::{Election, Free};
use super::members::Members;
use super::shards::{Shard, fair_share, lease_name};
use super::telemetry::{Heartbeat, Loop};
use super::{Error, Result, Scope, run_shards};

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

/// Competes for the shards' Leases until `shutdown` resolves, running the controller over the
/// shards held. `client` writes the Leases; each shard's context must use a client fenced by that
/// shard's fence ([`Shard::fenced`]), which its election opens while holding the Lease.
pub async fn lead(
    client: Client,
    lease: LeaseSettings,
    shards: Vec<Shard>,
    scope: Scope,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let count = shards.len();
    let mut elections = Vec::with_capacity(count);
    for (index, shard) in shards.iter().enumerate() {
        let fence = shard.fence().ok_or_else(|| Error::Lease(format!("shard {index} has no fence to lead it with")))?;
        let settings = LeaseSettings { name: lease_name(&lease.name, index, count), ..lease.clone() };
        elections.push(Election::new(client.clone(), settings, fence.clone()));
    }
    let mut campaign =
        Campaign { elections, members: (count > 1).then(|| Members::new(client, &lease)), look: lease.look() };
    let metrics = shards[0].ctx.metrics.clone();
    // The first look reads (or creates) the Leases: the API server answers and this replica
    // competes, leading or standing by.
    let (gained_sender, gained) = mpsc::unbounded();
    let first = campaign.look().await.map_err(|e| Error::Lease(e.to_string()))?;
    metrics.ready.store(true, Ordering::Relaxed);
    let (stop, stopped) = oneshot::channel::<()>();
    let mut controller = tokio::spawn(run_shards(shards, scope, gained, async move {
        let _ = stopped.await;
    }));
    let mut heartbeat = Heartbeat::new(&metrics, Loop::Election);
    tokio::pin!(shutdown);
    let mut took = first;
    // A deadline kept across the loop's turns: a sleep made afresh on each turn started over
    // whenever the heartbeat (as long as a look with a 15 s lease) won the turn, and renewals
    // went missing until the fence closed.
    let mut next_look = tokio::time::Instant::now() + campaign.look;
    let outcome = loop {
        for shard in took.drain(..) {
            tracing::info!(shard, of = count, "leading: this replica reconciles the shard's experiments");
            let _ = gained_sender.unbounded_send(shard);
        }
        tokio::select! {
            () = tokio::time::sleep_until(next_look) => {
                next_look = tokio::time::Instant::now() + campaign.look;
                match campaign.look().await {
                    Ok(gained) => took = gained,
                    Err(e) => tracing::warn!(error = %e, "could not take or renew the leases"),
                }
            }
            () = heartbeat.tick() => {}
            ended = &mut controller => break Err(Error::Lease(format!("the controller ended: {ended:?}"))),
            () = shutdown.as_mut() => break Ok(()),
        }
    };
    let _ = stop.send(());
    // kube's graceful shutdown waits for reconciles in flight; one asked to stop just as it
    // started has been seen never to end. Past the limit it is aborted: its writes are
    // idempotent, and once the leases are released the fences hold them back anyway.
    if !controller.is_finished() && tokio::time::timeout(STOP_LIMIT, &mut controller).await.is_err() {
        tracing::warn!(limit = ?STOP_LIMIT, "the controller did not stop in time: aborted");
        controller.abort();
    }
    outcome.and(campaign.release().await)
}

/// The Leases of one replica: one election per shard, and the member count that splits them.
struct Campaign {
    elections: Vec<Election>,
    /// `None` with one shard: nothing to split.
    members: Option<Members>,
    /// Between two looks.
    look: std::time::Duration,
}

impl Campaign {
    /// Renews the shards held, takes expired ones and free ones up to the fair share, and hands
    /// back those beyond it (a replica joined). The shards newly held.
    async fn look(&mut self) -> kube::Result<Vec<usize>> {
        let mut held = self.elections.iter().filter(|e| e.leading()).count();
        let mut failed = None;
        let fair = match self.members.as_mut().map(Members::renew_and_count) {
            None => 1,
            Some(counted) => match counted.await {
                Ok(members) => fair_share(self.elections.len(), members),
                // Not knowing who else runs: keep what is held, take no free shard.
                Err(e) => {
                    failed = Some(e);
                    held
                }
            },
        };
        let mut gained = Vec::new();
        for (index, election) in self.elections.iter_mut().enumerate() {
            let was = election.leading();
            let free = if was || held < fair { Free::Take } else { Free::Leave };
            if let Err(e) = election.step(free).await {
                failed = Some(e);
            }
            let turned_away = election.take_turned_away();
            match (was, election.leading()) {
                (false, true) => {
                    held += 1;
                    gained.push(index);
                }
                // Held throughout by the Lease, but the fence lapsed while the renewal was on its
                // way, and reconciles were turned away: look at the shard's experiments again.
                (true, true) if turned_away => gained.push(index),
                (true, false) => {
                    tracing::info!(shard = index, "lost the shard's lease");
                    held -= 1;
                }
                _ => {}
            }
        }
        for (index, election) in self.elections.iter_mut().enumerate().rev() {
            if held <= fair {
                break;
            }
            if election.leading() {
                tracing::info!(shard = index, fair, "handing the shard over: more replicas share the shards now");
                election.release().await?;
                held -= 1;
            }
        }
        if held == 0 && gained.is_empty() {
            tracing::debug!("standing by: other replicas hold every shard");
        }
        match failed {
            Some(e) if held == 0 => Err(e),
            _ => Ok(gained),
        }
    }

    /// Gives every Lease up and leaves the members.
    async fn release(&mut self) -> Result<()> {
        let mut outcome = Ok(());
        for election in &mut self.elections {
            if let Err(e) = election.release().await {
                outcome = Err(Error::Lease(format!("releasing the lease: {e}")));
            }
        }
        if let Some(members) = &self.members
            && let Err(e) = members.leave().await
        {
            outcome = Err(Error::Lease(format!("leaving the members: {e}")));
        }
        outcome
    }
}

impl LeaseSettings {
    /// Between two looks: `grace` seconds, so a holder renews `grace` before expiry at the
    /// latest and a standby notices an expired Lease within `grace`.
    fn look(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.grace.max(1))
    }
}
