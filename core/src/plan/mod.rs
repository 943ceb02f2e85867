//! Pure translation: an Experiment, a target state and a routing mode become the ordered list of
//! objects to apply. No I/O; the controller observes, calls [`plan`], and applies in order.

pub(crate) mod gateway;
pub(crate) mod istio;
pub(crate) mod native;
pub(crate) mod precedence;
pub(crate) mod routing;
pub mod steps;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::api::validate::validate;
use crate::api::{Experiment, Routing, StrategyName};
use crate::gateway::HttpRoute;
use crate::istio::{DestinationRule, Telemetry, VirtualService};

pub(crate) use gateway::RemoveServices;
pub(crate) use native::{Scale, ServiceSelector};
pub(crate) use steps::State;

/// Which state to plan for.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// State N of the strategy: 0 is the start, N the state after the strategy's N-th step.
    Step(usize),
    /// All traffic to one arm: the promoted winner, or the control after a rollback. With sticky
    /// assignment its answers expire the cookie (`Max-Age=0`); the controller removes that header
    /// from the live routing once the expiry period is over (`controller::decide`).
    Final(String),
}

/// What the cluster holds now, as far as the plan depends on it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    /// The arms with a routing destination in place: the subsets of the experiment's
    /// DestinationRule if it exists (Istio), or the arms whose Service exists (Gateway API).
    pub subsets: Option<BTreeSet<String>>,
    /// The ports of the experiment's Service, which each arm's Service repeats (Gateway API);
    /// empty when unknown (offline), where `spec.service.port` (or 80) stands in.
    pub service_ports: Vec<k8s_openapi::api::core::v1::ServicePort>,
    /// Current replicas per arm.
    pub replicas: BTreeMap<String, i32>,
    /// Arms whose pods are all ready (at least one): their subsets can be defined ahead of the
    /// step that routes to them, the endpoints having reached the proxies with the rule.
    pub serving: BTreeSet<String>,
}

/// One object to write, in plan order.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Labels the experiment's requests with their cohort (Istio, with an analysis).
    Telemetry(Box<Telemetry>),
    DestinationRule(Box<DestinationRule>),
    VirtualService(Box<VirtualService>),
    /// The Service of one arm (Gateway API backends are Services, not subsets).
    ArmService(Box<k8s_openapi::api::core::v1::Service>),
    HttpRoute(Box<HttpRoute>),
    /// Arm Services no route names any more.
    RemoveArmServices(RemoveServices),
    ServiceSelector(ServiceSelector),
    Scale(Scale),
}

impl Action {
    /// The object as it is applied (server-side apply body).
    pub fn object(&self) -> Value {
        match self {
            Action::Telemetry(t) => serde_json::to_value(t).expect("typed objects serialise"),
            Action::DestinationRule(dr) => serde_json::to_value(dr).expect("typed objects serialise"),
            Action::VirtualService(vs) => serde_json::to_value(vs).expect("typed objects serialise"),
            Action::ArmService(s) => gateway::service_object(s),
            Action::HttpRoute(r) => serde_json::to_value(r).expect("typed objects serialise"),
            Action::RemoveArmServices(r) => r.object(),
            Action::ServiceSelector(s) => s.object(),
            Action::Scale(s) => s.object(),
        }
    }

    /// The kubectl command with the same effect, for native actions.
    pub fn kubectl(&self) -> Option<String> {
        match self {
            Action::ServiceSelector(s) => Some(s.kubectl()),
            Action::Scale(s) => Some(s.kubectl()),
            Action::RemoveArmServices(r) => Some(r.kubectl()),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ArmWeight {
    pub arm: String,
    /// The weight the strategy asks for.
    pub desired: i32,
    /// The share of traffic the objects give (replica ratios without a mesh), in percent.
    pub achieved: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub mode: Routing,
    pub strategy: StrategyName,
    /// Number of states of the strategy (`Target::Step` takes 0..states).
    pub states: usize,
    pub weights: Vec<ArmWeight>,
    pub replicas: Option<Vec<(String, i32)>>,
    pub actions: Vec<Action>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PlanError {
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
    #[error("--step {step} is out of range: this experiment has steps 0 to {last}")]
    StepOutOfRange { step: usize, last: usize },
    #[error("unknown arm {0:?}")]
    UnknownArm(String),
}

/// Plans the objects for `target`. Validates first: invalid experiments plan nothing.
pub fn plan(exp: &Experiment, target: &Target, mode: Routing, observed: &Observed) -> Result<Plan, PlanError> {
    let spec = &exp.spec;
    let problems = validate(spec, mode);
    if !problems.is_empty() {
        return Err(PlanError::Invalid(problems.iter().map(ToString::to_string).collect()));
    }
    let strategy = spec.strategy.name();
    let sizes = steps::Replicas { control: spec.control_arm().and_then(|a| observed.replicas.get(&a.name)).copied() };
    let states = steps::states(spec, &sizes)?;
    let state = match target {
        Target::Step(n) => {
            states.get(*n).cloned().ok_or(PlanError::StepOutOfRange { step: *n, last: states.len() - 1 })?
        }
        Target::Final(arm) => final_state(spec, arm, &states)?,
    };
    let namespace = exp.metadata.namespace.clone();
    let actions = match mode {
        Routing::Native => native::actions(spec, &namespace, strategy, &state, observed)?,
        Routing::Istio => istio::actions(exp, &state, observed),
        Routing::GatewayApi => gateway::actions(exp, &state, observed),
    };
    let replicas = match mode {
        Routing::Native if strategy != StrategyName::BlueGreen => Some(native::replicas(spec, &state)?),
        _ => state.replicas.clone(),
    };
    let weights = achieved(&state, mode, replicas.as_deref());
    Ok(Plan { mode, strategy, states: states.len(), weights, replicas, actions })
}

/// All traffic to `arm`; where replicas carry the strategy, all pods too.
fn final_state(spec: &crate::api::ExperimentSpec, arm: &str, states: &[State]) -> Result<State, PlanError> {
    if !spec.arms.iter().any(|a| a.name == arm) {
        return Err(PlanError::UnknownArm(arm.to_string()));
    }
    let size = states.iter().filter_map(|s| s.replicas.as_ref()).flat_map(|r| r.iter().map(|(_, n)| *n)).max();
    Ok(State {
        weights: steps::all_to(spec, arm),
        preview: false,
        replicas: size.map(|n| spec.arms.iter().map(|a| (a.name.clone(), if a.name == arm { n } else { 0 })).collect()),
        experiment_routes: false,
        expire_sticky: true,
    })
}

fn achieved(state: &State, mode: Routing, replicas: Option<&[(String, i32)]>) -> Vec<ArmWeight> {
    let total: i32 = replicas.map(|r| r.iter().map(|(_, n)| n).sum()).unwrap_or(0);
    state
        .weights
        .iter()
        .map(|(arm, desired)| {
            let pods = replicas.and_then(|r| r.iter().find(|(a, _)| a == arm)).map(|(_, n)| *n);
            let achieved = match (mode, pods) {
                (Routing::Native, Some(n)) if total > 0 => 100.0 * f64::from(n) / f64::from(total),
                (Routing::Native, Some(_)) => 0.0,
                _ => f64::from(*desired),
            };
            ArmWeight { arm: arm.clone(), desired: *desired, achieved }
        })
        .collect()
}
