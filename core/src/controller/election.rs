//! Competing for the Lease, with client-go's rule for expiry: a replica judges a Lease expired
//! when it has seen the same record for `duration` by its own monotonic clock, never by comparing
//! the holder's `renewTime` with its own wall clock (kube-lease-manager 0.13 does that, so a
//! standby whose clock runs 10 s ahead takes over from a healthy leader). The leader opens its
//! [`Fence`] only until `duration - grace / 2` after it *sent* the renewal that succeeded: a
//! standby starts counting only after it sees that renewal, so the leader stops writing before
//! any standby can take over, however their wall clocks differ.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::time::Instant;

use super::fence::Fence;
use super::leader::LeaseSettings;

/// What this replica last saw of the Lease, and when (its own monotonic clock).
#[derive(Debug)]
struct Seen {
    record: Record,
    at: Instant,
}

/// The fields whose change shows the holder is alive.
#[derive(Clone, Debug, PartialEq)]
struct Record {
    holder: Option<String>,
    renew: Option<String>,
    transitions: i32,
    version: Option<String>,
}

impl Record {
    fn of(lease: &Lease) -> Self {
        let spec = lease.spec.clone().unwrap_or_default();
        Record {
            holder: spec.holder_identity.filter(|h| !h.is_empty()),
            renew: spec.renew_time.map(|t| t.0.to_string()),
            transitions: spec.lease_transitions.unwrap_or(0),
            version: lease.metadata.resource_version.clone(),
        }
    }
}

/// Whether a look may take a Lease nobody holds (a released one). An expired Lease (its holder
/// died) is always taken: that is what bounds a takeover by the lease duration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Free {
    Take,
    Leave,
}

pub(crate) struct Election {
    api: Api<Lease>,
    lease: LeaseSettings,
    fence: Arc<Fence>,
    seen: Option<Seen>,
}

impl Election {
    pub(crate) fn new(client: kube::Client, lease: LeaseSettings, fence: Arc<Fence>) -> Self {
        let api = Api::namespaced(client, &lease.namespace);
        Election { api, lease, fence, seen: None }
    }

    fn duration(&self) -> Duration {
        Duration::from_secs(self.lease.duration)
    }

    /// Whether this replica leads now: its fence is open.
    pub(crate) fn leading(&self) -> bool {
        self.fence.is_open()
    }

    /// Whether the fence turned work away since the last call.
    pub(crate) fn take_turned_away(&self) -> bool {
        self.fence.take_turned_away()
    }

    /// One attempt to take or renew the Lease; whether this replica holds it. Errors (the API
    /// server unreachable, a conflict with another replica) count as not won: the fence keeps
    /// what it was given and closes by itself.
    pub(crate) async fn step(&mut self, free: Free) -> kube::Result<bool> {
        let sent = Instant::now();
        let won = self.try_acquire_or_renew(sent, free).await;
        match &won {
            Ok(true) => {
                let valid = self.duration().saturating_sub(Duration::from_millis(self.lease.grace * 500));
                self.fence.open_until((sent + valid).into_std());
            }
            Ok(false) => self.fence.close(),
            // Renewal failed: still leading until the fence closes by itself.
            Err(_) => {}
        }
        won
    }

    async fn try_acquire_or_renew(&mut self, sent: Instant, free_ones: Free) -> kube::Result<bool> {
        let me = self.lease.identity.clone();
        let Some(current) = self.api.get_opt(&self.lease.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.lease.name.clone()), ..Default::default() },
                spec: Some(self.spec(&me, None, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => Ok(self.saw(&created, sent)),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let record = Record::of(&current);
        let now = Instant::now();
        if self.seen.as_ref().is_none_or(|s| s.record != record) {
            self.seen = Some(Seen { record: record.clone(), at: now });
        }
        let unchanged_since = self.seen.as_ref().map_or(now, |s| s.at);
        let mine = record.holder.as_deref() == Some(me.as_str());
        let free = record.holder.is_none();
        let expired = now.duration_since(unchanged_since) >= self.duration();
        if !(mine || expired || (free && free_ones == Free::Take)) {
            return Ok(false);
        }
        let transitions = if mine { record.transitions } else { record.transitions + 1 };
        let acquired = if mine { current.spec.as_ref().and_then(|s| s.acquire_time.clone()) } else { None };
        // The resourceVersion makes the write conditional: of two replicas taking an expired
        // Lease at once, one gets 409.
        let patch = json!({
            "metadata": {"resourceVersion": record.version},
            "spec": self.spec(&me, acquired, transitions),
        });
        match self.api.patch(&self.lease.name, &PatchParams::default(), &Patch::Merge(patch)).await {
            Ok(updated) => Ok(self.saw(&updated, sent)),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Records our own write as seen, and says whether we hold the Lease.
    fn saw(&mut self, lease: &Lease, at: Instant) -> bool {
        let record = Record::of(lease);
        let mine = record.holder.as_deref() == Some(self.lease.identity.as_str());
        self.seen = Some(Seen { record, at });
        mine
    }

    fn spec(&self, me: &str, acquired: Option<MicroTime>, transitions: i32) -> LeaseSpec {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        LeaseSpec {
            holder_identity: Some(me.into()),
            lease_duration_seconds: Some(self.lease.duration as i32),
            acquire_time: Some(acquired.unwrap_or_else(|| now.clone())),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// Gives the Lease up (on shutdown, or to even out the shards) so that another replica takes
    /// it at its next look; closes the fence first.
    pub(crate) async fn release(&mut self) -> kube::Result<()> {
        self.fence.close();
        let Some(current) = self.api.get_opt(&self.lease.name).await? else { return Ok(()) };
        let record = Record::of(&current);
        if record.holder.as_deref() != Some(self.lease.identity.as_str()) {
            return Ok(());
        }
        let patch = json!({"metadata": {"resourceVersion": record.version}, "spec": {"holderIdentity": null}});
        match self.api.patch(&self.lease.name, &PatchParams::default(), &Patch::Merge(patch)).await {
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            other => other.map(drop),
        }
    }
}
