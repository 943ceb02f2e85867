//! Forklane's product library: release experiments on a service mesh, decided with statistics.
//!
//! `api` (the custom resources) → `plan` (pure: the objects that route each step) → `istio`
//! (the generated Istio types and istiod's checks) → `controller` (observe, decide, apply), with
//! `analysis` (metrics to counts) and `stats` (counts to decisions) behind the decision, and
//! `policy` for platform teams' constraints. Nothing here links the simulator; see
//! docs/architecture.md.

pub mod analysis;
pub mod api;
pub mod clock;
pub mod controller;
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
pub mod gateway;
pub mod istio;
pub mod plan;
pub mod policy;
pub mod stats;
