//! An embedded, in-memory Kubernetes API server, spoken to by real kubectl and by kube-rs.
//! See docs/cluster.md for what it serves and how faithfully.

pub mod admission;
pub mod audit;
pub mod crd;
pub mod defaults;
pub mod discovery;
pub mod error;
pub mod events;
pub mod faults;
pub mod fields;
pub mod gc;
pub mod http;
pub mod kubeconfig;
pub mod lifecycle;
pub mod meta;
pub mod openapi;
pub mod patch;
pub mod rbac;
pub mod resources;
pub mod scale;
pub mod selectors;
pub mod semantics;
pub mod server;
pub mod service_accounts;
pub mod store;
pub mod tls;
pub mod typed;
pub mod workloads;

pub use audit::{Audit, AuditRecord};
pub use error::{Error, Result};
pub use faults::{FaultSettings, Faults};
pub use resources::Gvr;
pub use server::{Cluster, ClusterConfig, ControllerFn};
pub use store::Store;
