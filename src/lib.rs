//! Forklane: release experiments on a service mesh, decided with statistics.

pub mod analysis;
pub mod api;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod controller;
pub mod istio;
pub mod plan;
pub mod policy;
pub mod sandbox;
pub mod stats;
pub mod traffic;
