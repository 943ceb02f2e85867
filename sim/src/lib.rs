//! Forklane's simulator: a world to run the controller in without a real cluster.
//!
//! `cluster` is an embedded Kubernetes API server (real kubectl is the judge of its fidelity),
//! with the workload controllers and a kubelet in `cluster::workloads`; `traffic` is a service-mesh
//! data plane with synthetic users; `metrics` answers the controller's PromQL from the data
//! plane's counters; `sandbox` runs all of them with the controller on one clock.

pub mod cluster;
pub mod metrics;
pub mod sandbox;
pub mod study;
pub mod traffic;
