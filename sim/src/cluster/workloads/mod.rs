//! The workload simulation of the embedded cluster: what kube-controller-manager, the
//! scheduler and a kubelet do to Deployments, ReplicaSets, Pods and Services, as seen
//! through the API.
//!
//! The controllers are pure functions from objects and a time to the writes a real controller
//! would send (`deployment`, `replicaset`, `pods`, `endpoints`); `driver` runs them against the
//! store, re-triggered by changes and by timers of the simulated `Clock`.
//!
//! Faithful to Kubernetes: ReplicaSet naming `<deployment>-<pod-template-hash>` and pod
//! naming by generateName; revision, revision-history, desired/max-replicas annotations and
//! change-cause copying; RollingUpdate (surge rounded up, unavailability down, unhealthy old
//! replicas cleaned first), Recreate (waits until old pods are gone, terminating ones
//! included), proportional scaling, paused, minReadySeconds, progress deadline, history
//! cleanup; conditions and counters as `calculateStatus`/`syncRolloutStatus` write them;
//! pod deletion ranking with LogarithmicScaleDown; readiness from probe timing; Endpoints
//! and EndpointSlices with ready/serving/terminating and named target ports.
//!
//! Not faithful (by design or not yet): the hash is FNV over canonical JSON, not over Go's
//! spew dump, so values differ from a real cluster's (see `hash`); ReplicaSets and pods are
//! matched by controller reference only (no adoption of orphans, no release); no events are
//! recorded; probes always succeed and containers never crash or restart (liveness and
//! startup probes are ignored); one node, no resources or scheduling constraints; a deleted
//! pod's containers stop `KubeletSettings::termination_seconds` after the deletion (default
//! 2 s, at most the grace period) — a real app's shutdown time is its own; the Endpoints
//! `last-change-trigger-time` is the time of the write; no ReplicaFailure conditions.
//! The simulator and the store read one `forklane_core::clock::Clock`, so the API server's own
//! timestamps (creation, deletion, managed fields) are simulated time too.

pub(crate) mod deployment;
mod deployment_status;
pub(crate) mod driver;
pub(crate) mod endpoints;
pub(crate) mod hash;
pub(crate) mod objects;
pub(crate) mod pods;
#[cfg(test)]
mod quiescence;
pub(crate) mod replicaset;
mod rollout;
#[cfg(test)]
mod scenarios;
#[cfg(test)]
mod sim;

pub use driver::{WorkloadsHandle, run, start_workloads};
pub use pods::KubeletSettings;

use forklane_core::clock::Time;
use serde_json::Value;

/// The resources the simulator reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Deployment,
    ReplicaSet,
    Pod,
    Endpoints,
    EndpointSlice,
    Service,
}

/// One API request a controller sends, carrying the field manager real components use.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Write {
    /// POST; the object may use `generateName`.
    Create { kind: Kind, object: Value, manager: &'static str },
    /// PUT of the main resource; the object carries the `resourceVersion` it was read at.
    Update { kind: Kind, object: Value, manager: &'static str },
    /// PUT of the `status` subresource.
    UpdateStatus { kind: Kind, object: Value, manager: &'static str },
    /// DELETE with a UID precondition; `grace_period_seconds: Some(0)` is the kubelet's final
    /// delete, `None` the default grace period.
    Delete {
        kind: Kind,
        namespace: String,
        name: String,
        uid: String,
        grace_period_seconds: Option<i64>,
        manager: &'static str,
    },
}

impl Write {
    pub(crate) fn kind(&self) -> Kind {
        match self {
            Write::Create { kind, .. }
            | Write::Update { kind, .. }
            | Write::UpdateStatus { kind, .. }
            | Write::Delete { kind, .. } => *kind,
        }
    }
}

/// What a reconcile decides: writes to send now, and when to look again if nothing changes
/// before (probe ticks, grace periods, minReadySeconds, progress deadlines).
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Reconciled {
    pub writes: Vec<Write>,
    pub requeue_at: Option<Time>,
}

impl Reconciled {
    pub(crate) fn requeue(&mut self, at: Time) {
        self.requeue_at = Some(self.requeue_at.map_or(at, |t| t.min(at)));
    }

    pub(crate) fn merge(&mut self, other: Reconciled) {
        self.writes.extend(other.writes);
        if let Some(t) = other.requeue_at {
            self.requeue(t);
        }
    }
}

/// The field manager of everything kube-controller-manager writes.
pub(crate) const CONTROLLER_MANAGER: &str = "kube-controller-manager";
