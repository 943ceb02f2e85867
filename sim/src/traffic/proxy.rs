//! kube-proxy's choice: a connection to a Service goes to one of its ready endpoints, uniformly at
//! random (iptables `statistic --mode random`); with none, the connection is rejected.

use rand::Rng;

use super::snapshot::ServiceKey;

/// A pod chosen for a request: the destination Service and the index of the pod in the snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Picked {
    pub service: ServiceKey,
    pub pod: usize,
}

/// One of `endpoints` (pod indices), uniformly; `None` when there is none.
pub(crate) fn pick(rng: &mut impl Rng, endpoints: &[usize], service: &ServiceKey) -> Option<Picked> {
    (!endpoints.is_empty())
        .then(|| Picked { service: service.clone(), pod: endpoints[rng.random_range(0..endpoints.len())] })
}
