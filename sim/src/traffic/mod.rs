//! The data plane of the embedded cluster: simulated apps behind Services, kube-proxy's endpoint
//! choice, a simulated Istio mesh, real NodePort listeners, a load generator and the metrics
//! Prometheus scrapes. The core ([`Dataplane::handle`]) is pure over a [`Snapshot`] of the
//! cluster; the listeners and the HTTP load generator are thin I/O around it.
//!
//! See `docs/traffic.md` for the pod annotations that set each version's behaviour.

pub(crate) mod app;
pub(crate) mod behaviour;
pub(crate) mod cookies;
pub(crate) mod counters;
pub(crate) mod dataplane;
pub(crate) mod distribution;
pub(crate) mod feed;
pub(crate) mod gateway;
pub mod http;
pub mod lag;
pub mod loadgen;
pub mod mesh;
pub(crate) mod metrics;
pub(crate) mod nodeport;
pub mod population;
pub(crate) mod proxy;
pub(crate) mod request;
pub(crate) mod snapshot;
pub(crate) mod telemetry;
pub(crate) mod view;

pub use dataplane::Dataplane;
pub use gateway::GatewayKey;
pub use lag::{Lag, ProxyDelay, ProxyView, Tally};
pub use loadgen::{LoadSpec, Population, Report};
pub use metrics::{Metrics, Recorded, VersionCounts};
pub use nodeport::{NodePort, serve_nodeport};
pub use request::{Answer, Outcome, Request, Response, ResponseFlag, Served};
pub use snapshot::{ConfigKind, Pod, Service, ServiceKey, ServicePort, Snapshot};
pub use view::{ClusterView, LiveView, SnapshotFeed};
