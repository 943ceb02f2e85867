//! Sharding: with `--shards K`, the experiments are split into K shards by a stable hash of
//! `namespace/name`, and each shard is led through its own Lease. A replica reconciles an
//! experiment only while it holds that experiment's shard, and its writes for it go through a
//! client fenced by that shard's lease, so no experiment ever has two writers. Every replica
//! watches everything (its caches stay warm), so a shard it takes over is reconciled at once.

use std::sync::Arc;

use super::Context;
use super::fence::Fence;

/// The shard of the experiment `namespace/name` among `count`: FNV-1a over the key. Stable
/// across versions, platforms and processes: replicas must agree on it without talking.
pub fn shard_of(namespace: &str, name: &str, count: usize) -> usize {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let key = namespace.bytes().chain(std::iter::once(b'/')).chain(name.bytes());
    let hash = key.fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    (hash % count.max(1) as u64) as usize
}

/// One shard: the context whose client writes for its experiments, and the fence on that
/// client (open while this replica holds the shard's lease).
#[derive(Clone)]
pub struct Shard {
    pub ctx: Arc<Context>,
    /// `None`: no election (the sandbox, tests); the shard is always held.
    fence: Option<Arc<Fence>>,
}

impl Shard {
    /// A shard led through a lease; `ctx`'s client must be fenced by `fence`
    /// ([`fenced_client`](super::fence::fenced_client)).
    pub fn fenced(ctx: Arc<Context>, fence: Arc<Fence>) -> Self {
        Shard { ctx, fence: Some(fence) }
    }

    /// The only shard of a controller that runs without an election.
    pub fn unfenced(ctx: Arc<Context>) -> Self {
        Shard { ctx, fence: None }
    }

    /// Whether this replica may write for the shard's experiments now.
    pub(crate) fn held(&self) -> bool {
        self.fence.as_ref().is_none_or(|f| f.admits())
    }

    pub(crate) fn fence(&self) -> Option<&Arc<Fence>> {
        self.fence.as_ref()
    }
}

/// The Lease leading shard `index` of `count`: with one shard it is the controller's Lease
/// itself (`name`), as before sharding.
pub fn lease_name(name: &str, index: usize, count: usize) -> String {
    if count == 1 { name.to_string() } else { format!("{name}-shard-{index}") }
}

/// How many shards a replica may take while `members` replicas are alive: an even split,
/// rounded up, so that every shard has a taker.
pub(crate) fn fair_share(count: usize, members: usize) -> usize {
    count.div_ceil(members.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shard_of_an_experiment_is_stable_and_the_split_is_even() {
        // Fixed values (FNV-1a computed apart, in Python): a change to the hash would move
        // experiments between shards while replicas of two versions run side by side.
        assert_eq!(shard_of("team-a", "checkout", 3), shard_of("team-a", "checkout", 3));
        assert_eq!(shard_of("", "", 1), 0);
        assert_eq!(
            [shard_of("team-a", "checkout", 7), shard_of("team-b", "checkout", 7), shard_of("team-a", "checkou", 7)],
            [1, 5, 6]
        );
        let mut counts = [0usize; 3];
        for i in 0..3000 {
            counts[shard_of(&format!("ns-{}", i % 10), &format!("exp-{i}"), 3)] += 1;
        }
        assert!(counts.iter().all(|c| (900..=1100).contains(c)), "{counts:?}");
    }

    #[test]
    fn a_fair_share_leaves_no_shard_without_a_taker() {
        assert_eq!(fair_share(1, 3), 1);
        assert_eq!(fair_share(3, 3), 1);
        assert_eq!(fair_share(3, 2), 2);
        assert_eq!(fair_share(8, 3), 3);
        assert_eq!(fair_share(4, 0), 4, "alone (not yet counted) it may take them all");
    }

    #[test]
    fn one_shard_keeps_the_controllers_own_lease() {
        assert_eq!(lease_name("forklane-controller", 0, 1), "forklane-controller");
        assert_eq!(lease_name("forklane-controller", 2, 3), "forklane-controller-shard-2");
    }
}
