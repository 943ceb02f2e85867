//! Helpers shared by the cluster integration tests (`tests/cluster_*.rs`).
#![allow(dead_code)]

use forklane::cluster::{Cluster, ClusterConfig};

pub async fn cluster() -> Cluster {
    Cluster::start(ClusterConfig::default()).await.expect("cluster starts")
}
