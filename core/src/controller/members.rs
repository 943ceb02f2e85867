//! Who else is running, so that the shards are split evenly: each sharded replica renews a
//! Lease of its own (`<name>-member-<identity>`, labelled with `<name>`) at every look, and counts
//! the members' Leases that changed within the lease duration by its own monotonic clock (the
//! election's rule: never the holder's wall clock). A wrong count only unbalances the split for a
//! while; it can never give an experiment two writers, which the shards' own Leases prevent.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::json;
use tokio::time::Instant;

use super::apply::FIELD_MANAGER;
use super::leader::LeaseSettings;

/// The label naming the controller a member Lease belongs to.
pub(crate) const MEMBER_OF: &str = "forklane.io/member-of";

pub(crate) struct Members {
    api: Api<Lease>,
    lease: LeaseSettings,
    /// Each member Lease's resourceVersion when last seen, and when it last changed.
    seen: HashMap<String, (String, Instant)>,
}

impl Members {
    pub(crate) fn new(client: kube::Client, lease: &LeaseSettings) -> Self {
        Members { api: Api::namespaced(client, &lease.namespace), lease: lease.clone(), seen: HashMap::new() }
    }

    fn own_name(&self) -> String {
        format!("{}-member-{}", self.lease.name, self.lease.identity)
    }

    /// Renews this replica's member Lease and counts the live members, itself included.
    pub(crate) async fn renew_and_count(&mut self) -> kube::Result<usize> {
        let own = self.own_name();
        let body = json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": own, "labels": {MEMBER_OF: self.lease.name}},
            "spec": {
                "holderIdentity": self.lease.identity,
                "leaseDurationSeconds": self.lease.duration,
                "renewTime": MicroTime(k8s_openapi::jiff::Timestamp::now()),
            },
        });
        self.api.patch(&own, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(body)).await?;
        let listed = self.api.list(&ListParams::default().labels(&format!("{MEMBER_OF}={}", self.lease.name))).await?;
        let now = Instant::now();
        let versions = listed.items.iter().map(|l| (l.name_any(), l.resource_version().unwrap_or_default()));
        Ok(self.live(versions, now, &own))
    }

    /// Counts the members whose Lease changed within the lease duration, remembering what was
    /// seen; forgets Leases that are gone.
    fn live(&mut self, versions: impl Iterator<Item = (String, String)>, now: Instant, own: &str) -> usize {
        let duration = Duration::from_secs(self.lease.duration);
        let mut next = HashMap::new();
        for (name, version) in versions {
            let changed = match self.seen.get(&name) {
                Some((seen, at)) if *seen == version => *at,
                _ => now,
            };
            next.insert(name, (version, changed));
        }
        self.seen = next;
        let alive =
            self.seen.iter().filter(|(name, (_, at))| name.as_str() == own || now.duration_since(*at) < duration);
        alive.count().max(1)
    }

    /// Removes this replica's member Lease (on shutdown): the others count one fewer at once.
    pub(crate) async fn leave(&self) -> kube::Result<()> {
        match self.api.delete(&self.own_name(), &DeleteParams::default()).await {
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            other => other.map(drop),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members() -> Members {
        let config = kube::Config::new("http://127.0.0.1:1".parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        let lease = LeaseSettings {
            namespace: "ops".into(),
            name: "forklane-controller".into(),
            identity: "a".into(),
            duration: 10,
            grace: 3,
        };
        Members::new(client, &lease)
    }

    #[tokio::test]
    async fn a_member_whose_lease_stops_changing_stops_counting_after_the_lease_duration() {
        let mut m = members();
        let own = m.own_name();
        let t0 = Instant::now();
        let seen = |own: &str, b: &str, c: &str| {
            vec![(own.to_string(), "1".to_string()), ("b".to_string(), b.to_string()), ("c".to_string(), c.to_string())]
        };
        assert_eq!(m.live(seen(&own, "1", "1").into_iter(), t0, &own), 3, "first seen: alive");
        let later = t0 + Duration::from_secs(6);
        assert_eq!(m.live(seen(&own, "2", "1").into_iter(), later, &own), 3);
        let expired = t0 + Duration::from_secs(11);
        assert_eq!(m.live(seen(&own, "2", "1").into_iter(), expired, &own), 2, "c has not renewed for 11 s");
        assert_eq!(m.live(seen(&own, "2", "5").into_iter(), expired, &own), 3, "c renewed: alive again");
        let much_later = t0 + Duration::from_secs(60);
        assert_eq!(m.live(vec![(own.clone(), "1".into())].into_iter(), much_later, &own), 1, "itself always counts");
        assert_eq!(m.seen.len(), 1, "gone Leases are forgotten");
    }
}
