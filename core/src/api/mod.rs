//! The custom resources Forklane serves, group `forklane.io`, version `v1alpha1`.

pub(crate) mod analysis;
pub mod defaults;
pub mod duration;
pub(crate) mod experiment;
pub(crate) mod history;
pub mod load;
pub(crate) mod mesh;
pub mod names;
pub(crate) mod policy;
pub(crate) mod strategy;
pub mod validate;

pub use analysis::*;
pub use duration::HumanDuration;
pub use experiment::*;
pub use history::{Look, MetricLook};
pub use mesh::{MeshMode, Provider, Requested, Routing};
pub use policy::{Enforcement, FreezeWindow, PolicyRule, RolloutPolicy, RolloutPolicySpec, RolloutPolicyStatus};
pub use strategy::{Strategy, StrategyName};

use kube::CustomResourceExt;

/// The CRDs as multi-document YAML, exactly as checked in under `crds/`.
pub fn crds_yaml() -> String {
    let docs = [serde_yaml_ng::to_string(&Experiment::crd()), serde_yaml_ng::to_string(&RolloutPolicy::crd())];
    docs.into_iter().map(|doc| doc.expect("a CRD always serialises")).collect::<Vec<_>>().join("---\n")
}
