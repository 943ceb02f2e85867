//! An embedded, in-memory Kubernetes API server, spoken to by real kubectl and by kube-rs.
//! See docs/cluster.md for what it serves and how faithfully.

pub(crate) mod admission;
pub(crate) mod admission_policy;
pub(crate) mod audit;
pub(crate) mod crd;
pub(crate) mod defaults;
pub(crate) mod discovery;
pub(crate) mod error;
pub(crate) mod events;
pub(crate) mod faults;
pub(crate) mod fields;
pub(crate) mod gc;
pub(crate) mod http;
pub(crate) mod kubeconfig;
pub(crate) mod lifecycle;
pub(crate) mod limits;
pub(crate) mod meta;
pub(crate) mod openapi;
pub(crate) mod patch;
pub(crate) mod protobuf;
pub(crate) mod rbac;
pub mod resources;
pub(crate) mod scale;
pub(crate) mod selectors;
pub(crate) mod semantics;
pub(crate) mod server;
pub(crate) mod service_accounts;
pub mod store;
pub(crate) mod tls;
pub(crate) mod typed;
pub mod workloads;

pub use audit::{Audit, AuditRecord};
pub use crd::validate_custom_object;
pub use error::{Error, Result};
pub use faults::{FaultSettings, Faults};
pub use limits::ServerLimits;
pub use resources::Gvr;
pub use server::{Cluster, ClusterConfig, ControllerFn};
pub use store::Store;
