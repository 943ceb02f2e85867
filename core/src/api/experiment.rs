//! The `Experiment` custom resource: arms, a strategy, routing rules and the analysis that decides it.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::analysis::{Analysis, Promotion, Unit};
use super::defaults;
use super::duration::HumanDuration;
use super::mesh::{MeshMode, Provider, Requested, Routing};
use super::strategy::{Strategy, StrategyName};

/// One release experiment on one Service.
// kube's `printcolumn(...)` repeats `type_ = "string"` by design; clippy reads it as a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "forklane.io",
    version = "v1alpha1",
    kind = "Experiment",
    namespaced,
    shortname = "exp",
    status = "ExperimentStatus",
    printcolumn(name = "Strategy", type_ = "string", json_path = ".status.strategy"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Weights", type_ = "string", json_path = ".status.weightSummary"),
    printcolumn(name = "Winner", type_ = "string", json_path = ".status.winner"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    // Identity is fixed once the experiment has started (a phase other than Pending): the
    // controller's routing, samples and statistics belong to these arms and this strategy.
    validation = Rule::new(concat!(
        "!has(oldSelf.status) || !has(oldSelf.status.phase) || oldSelf.status.phase == 'Pending'",
        " || self.spec.arms == oldSelf.spec.arms"
    ))
    .message(
        "arms (names, selectors, deployments, which is the control) cannot change once the experiment has started; \
         create a new Experiment instead"
    )
    .field_path(".spec.arms")
    .reason(Reason::FieldValueForbidden),
    validation = Rule::new(concat!(
        "!has(oldSelf.status) || !has(oldSelf.status.phase) || oldSelf.status.phase == 'Pending'",
        " || (has(self.spec.strategy.recreate) == has(oldSelf.spec.strategy.recreate)",
        " && has(self.spec.strategy.rollingUpdate) == has(oldSelf.spec.strategy.rollingUpdate)",
        " && has(self.spec.strategy.blueGreen) == has(oldSelf.spec.strategy.blueGreen)",
        " && has(self.spec.strategy.canary) == has(oldSelf.spec.strategy.canary)",
        " && has(self.spec.strategy.abTest) == has(oldSelf.spec.strategy.abTest))"
    ))
    .message("the strategy kind cannot change once the experiment has started; create a new Experiment instead")
    .field_path(".spec.strategy")
    .reason(Reason::FieldValueForbidden)
)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentSpec {
    /// The Service whose traffic is split between the arms.
    pub service: ServiceRef,
    /// Where routing is done: Istio objects, native Kubernetes objects, or chosen by discovery.
    #[serde(default)]
    pub mesh: MeshMode,
    /// The versions under test; exactly one is the control.
    #[x_kube(validation = Rule::new("self.filter(a, has(a.control) && a.control).size() == 1").message("exactly one arm must have control: true"))]
    #[schemars(length(min = 2, max = 10))]
    pub arms: Vec<Arm>,
    /// How traffic moves between the arms.
    pub strategy: Strategy,
    /// Optional shadow traffic to one arm (Istio only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<Mirror>,
    /// How the arms are measured and compared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<Analysis>,
    /// What happens once the analysis has decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion: Option<Promotion>,
    /// Longest wait for pods or routing (a routed arm without ready pods included) before
    /// `onProgressDeadline` applies; default 10m, as Flagger's and Argo Rollouts'.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline: Option<HumanDuration>,
    /// What to do when the progress deadline passes: `rollback` (default) or `hold`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_progress_deadline: Option<OnProgressDeadline>,
    /// How long routing changes take to reach every proxy, and how long traffic takes to drain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing: Option<RoutingOptions>,
}

/// Timing of routing changes. Proxies receive configuration after their own delays (Envoy's
/// route and cluster updates arrive separately), so a step that depends on an earlier change
/// being everywhere waits for it: a route names a new subset only once the DestinationRule that
/// defines it has settled, a subset goes only once no route can name it, and an arm's pods go
/// only once traffic to them has drained.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoutingOptions {
    /// Settle time after a routing write before a step that relies on it: default 8s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propagation_delay: Option<HumanDuration>,
    /// Wait after routing traffic away from an arm before scaling it down: default 30s, as Argo
    /// Rollouts' `scaleDownDelaySeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_delay: Option<HumanDuration>,
    /// Which API routes the traffic: `istio`, `gatewayAPI` or `native`; default from `spec.mesh`
    /// (`auto`: the Gateway API where the Service already has an HTTPRoute or a waypoint, else
    /// Istio where it is installed, else native).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<Provider>,
    /// Where the HTTPRoute attaches, with `provider: gatewayAPI`.
    #[serde(default, rename = "gatewayAPI", skip_serializing_if = "Option::is_none")]
    pub gateway_api: Option<GatewayApiOptions>,
}

/// `spec.routing.gatewayAPI`: the HTTPRoute's attachment. Without `parentRefs` it attaches to the
/// experiment's Service (the mesh, GAMMA); with them, to those Gateways (north–south).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayApiOptions {
    /// Gateways the route attaches to (kind Gateway of group gateway.networking.k8s.io unless set).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub parent_refs: Vec<ParentRef>,
    /// The route's hostnames, for Gateway attachment (the mesh matches the Service's own names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub hostnames: Vec<String>,
}

/// A Gateway API `parentRef`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParentRef {
    /// Default `gateway.networking.k8s.io`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Default `Gateway`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Default: the experiment's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// A listener of the Gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum OnProgressDeadline {
    /// All traffic back to the control (to an arm that can serve), then RolledBack.
    #[default]
    Rollback,
    /// Keep the routing where it is and keep waiting; the condition says why.
    Hold,
}

impl ExperimentSpec {
    pub(crate) fn progress_deadline(&self) -> std::time::Duration {
        self.progress_deadline.map_or(defaults::PROGRESS_DEADLINE, HumanDuration::get)
    }

    /// `spec.routing.propagationDelay`, or its default.
    pub(crate) fn propagation_delay(&self) -> std::time::Duration {
        let set = self.routing.as_ref().and_then(|r| r.propagation_delay);
        set.map_or(defaults::PROPAGATION_DELAY, HumanDuration::get)
    }

    /// What the experiment asks of routing: `spec.routing.provider`, else `spec.mesh`.
    pub fn requested_routing(&self) -> Requested {
        Requested { provider: self.routing.as_ref().and_then(|r| r.provider), mesh: self.mesh }
    }

    /// `spec.routing.gatewayAPI`, or its default (attached to the Service).
    pub(crate) fn gateway_api(&self) -> GatewayApiOptions {
        self.routing.as_ref().and_then(|r| r.gateway_api.clone()).unwrap_or_default()
    }

    /// `spec.routing.scaleDownDelay`, or its default.
    pub(crate) fn scale_down_delay(&self) -> std::time::Duration {
        let set = self.routing.as_ref().and_then(|r| r.scale_down_delay);
        set.map_or(defaults::SCALE_DOWN_DELAY, HumanDuration::get)
    }

    /// `spec.analysis.unit`, or its default: by user when an A/B test assigns users (sticky), else
    /// by request. The one place the default is resolved.
    pub(crate) fn analysis_unit(&self) -> Unit {
        let unit = self.analysis.as_ref().and_then(|a| a.unit);
        let sticky = self.strategy.ab_test().is_some_and(|ab| ab.sticky.is_some());
        unit.unwrap_or(if sticky { Unit::User } else { Unit::Request })
    }

    /// The control arm. A validated spec has exactly one arm with `control: true`; for any other
    /// spec the rule is the first arm so marked, else the first arm. `None` only without arms.
    pub(crate) fn control_arm(&self) -> Option<&Arm> {
        self.control_index().map(|i| &self.arms[i])
    }

    /// Every arm but the control arm, in order.
    pub(crate) fn candidates(&self) -> impl Iterator<Item = &Arm> {
        let control = self.control_index();
        self.arms.iter().enumerate().filter(move |(i, _)| Some(*i) != control).map(|(_, arm)| arm)
    }

    /// The candidate of a two-arm strategy: the first arm that is not the control.
    pub(crate) fn candidate(&self) -> Option<&Arm> {
        self.candidates().next()
    }

    fn control_index(&self) -> Option<usize> {
        self.arms.iter().position(|a| a.control).or((!self.arms.is_empty()).then_some(0))
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRef {
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// Hosts of the VirtualService; default `[name]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<String>>,
    /// Gateways of the VirtualService; default: the mesh only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateways: Option<Vec<String>>,
}

impl ServiceRef {
    pub(crate) fn hosts(&self) -> Vec<String> {
        self.hosts.clone().unwrap_or_else(|| vec![self.name.clone()])
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Arm {
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub control: bool,
    /// Pod labels that identify this arm's pods (the DestinationRule subset's labels).
    #[schemars(length(min = 1))]
    pub selector: BTreeMap<String, String>,
    /// The Deployment that runs this arm (needed without a mesh, where replicas carry the split).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
}

/// All control pods stop before any candidate pod starts (the article's `Recreate`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Recreate {
    /// Pods of the new version; default: the control Deployment's current replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub replicas: Option<i32>,
}

/// Pods are replaced a few at a time, as a Deployment's `RollingUpdate` does.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollingUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_surge: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub replicas: Option<i32>,
}

/// Both versions run; traffic switches at once. A header previews the candidate beforehand.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlueGreen {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_header: Option<PreviewHeader>,
    #[serde(default)]
    pub auto_promote: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreviewHeader {
    pub name: String,
    pub value: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Canary {
    #[schemars(length(min = 1))]
    pub steps: Vec<CanaryStep>,
    /// Pods shared by control and candidate without a mesh, where replica ratios carry the weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 2))]
    pub total_replicas: Option<i32>,
}

/// One canary step: exactly one of setWeight, pause, analysis.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new("[has(self.setWeight), has(self.pause), has(self.analysis)].filter(x, x).size() == 1").message("a canary step sets exactly one of setWeight, pause, analysis"))]
#[serde(rename_all = "camelCase")]
pub struct CanaryStep {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub set_weight: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<Pause>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<StepAnalysis>,
}

/// A pause; without a duration it lasts until `forklane resume`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Pause {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<HumanDuration>,
}

/// Runs `spec.analysis` at this step until it decides.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepAnalysis {}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AbTest {
    /// Ordered targeting rules; the first that matches wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<AbRule>,
    /// Weights for everyone no rule matched: arm name → integer weight; they sum to 100.
    #[x_kube(
        validation = Rule::new("self.all(k, self[k] >= 0 && self[k] <= 100)").message("each weight must be between 0 and 100"),
        validation = Rule::new("self.map(k, self[k]).sum() == 100").message("split weights must sum to 100")
    )]
    pub split: BTreeMap<String, i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky: Option<Sticky>,
    /// The request header that carries the client's region; default `x-region`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region_header: Option<String>,
    /// Without a mesh, drop the rules and keep only the split (as replica ratios).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_degraded: bool,
    /// Pods shared by the arms without a mesh, where replica ratios carry the split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 2))]
    pub total_replicas: Option<i32>,
}

impl AbTest {
    pub(crate) fn region_header(&self) -> &str {
        self.region_header.as_deref().unwrap_or(defaults::REGION_HEADER)
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AbRule {
    pub name: String,
    #[serde(rename = "match")]
    pub matches: RuleMatch,
    pub arm: String,
}

/// Conditions of one rule; all must hold.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleMatch {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, StringMatch>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cookies: BTreeMap<String, StringMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<StringMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<String>,
}

impl RuleMatch {
    pub(crate) fn is_empty(&self) -> bool {
        self.headers.is_empty() && self.cookies.is_empty() && self.user_agent.is_none() && self.regions.is_empty()
    }
}

/// One of exact, prefix or regex (RE2, matched against the whole value).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new("[has(self.exact), has(self.prefix), has(self.regex)].filter(x, x).size() == 1").message("set exactly one of exact, prefix, regex"))]
#[serde(rename_all = "camelCase")]
pub struct StringMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub regex: Option<String>,
}

/// Keeps each user in the arm the split gave them, with a cookie. The cookie is always
/// `HttpOnly` (page scripts never see the assignment) with `Path=/`; once the experiment has
/// ended, answers expire it for a while (docs/traffic.md).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("!has(self.sameSite) || self.sameSite != 'None' || (has(self.secure) && self.secure)").message("sameSite None requires secure: true"))]
#[serde(rename_all = "camelCase")]
pub struct Sticky {
    pub cookie_name: String,
    #[serde(default = "defaults::sticky_max_age_seconds")]
    #[schemars(range(min = 1))]
    pub max_age_seconds: i64,
    /// Adds `Secure`: browsers send the cookie over HTTPS only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secure: bool,
    /// The cookie's `SameSite`: whether browsers send it with requests other sites start (`Lax`,
    /// the default: with top-level navigations only; `Strict`: never; `None`: always, and then
    /// `secure: true` is required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_site: Option<SameSite>,
}

impl Sticky {
    pub(crate) fn same_site(&self) -> SameSite {
        self.same_site.unwrap_or(defaults::STICKY_SAME_SITE)
    }
}

/// The sticky cookie's `SameSite` attribute (the values are described on `Sticky::same_site`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SameSite {
    Lax,
    Strict,
    None,
}

impl SameSite {
    pub(crate) fn value(self) -> &'static str {
        match self {
            SameSite::Lax => "Lax",
            SameSite::Strict => "Strict",
            SameSite::None => "None",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Mirror {
    pub arm: String,
    #[schemars(range(min = 0.0, max = 100.0))]
    pub percent: f64,
}

/// What the controller reports; written only through the status subresource.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<StrategyName>,
    /// `istio` or `none`: the routing mode in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    // Typed here, a plain string in the CRD as it always was.
    #[schemars(with = "Option<String>")]
    pub mesh: Option<Routing>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step: Option<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weights: Vec<ArmWeightStatus>,
    /// The weights as one short string, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub winner: Option<String>,
    /// Set once the experiment has ended: all traffic goes to this arm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_arm: Option<String>,
    /// When the experiment finished (RFC 3339): its final routing was in place, or it failed.
    /// With sticky assignment, answers expire the cookie for a while from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// What the experiment is doing or waiting for, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the current step began (RFC 3339): pauses count from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_started_at: Option<String>,
    /// When the current analysis began: `{{ window }}` and maxDuration count from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis_started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_analysis_at: Option<String>,
    /// Looks in a row that found no metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_unavailable: Option<u32>,
    /// Since when the experiment waits for pods or routing (RFC 3339); the progress deadline
    /// counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_since: Option<String>,
    /// When Forklane last wrote routing (VirtualService, DestinationRule or Service selector), by
    /// its own clock (RFC 3339): the propagation and scale-down delays count from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_changed_at: Option<String>,
    /// The `forklane.io/promote` annotation value last acted on, kept until the annotation is
    /// gone: a promote acts exactly once, even if the controller stops between its two writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled_promote: Option<String>,
    /// The pod template revision of each routed arm's Deployment the analysis measures; a new
    /// revision restarts the analysis (the promoted version must be the one analysed).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub revisions: BTreeMap<String, String>,
    /// Samples per arm at the last analysis.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<ArmSamples>,
    /// The statistics behind the last decision (outcome, comparisons, SRM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_unknown")]
    pub statistics: Option<serde_json::Value>,
    /// The looks and routing changes so far, oldest first, thinned as they grow.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<super::Look>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArmSamples {
    pub arm: String,
    pub samples: f64,
}

/// A free-form object the API server keeps as it is.
fn preserve_unknown(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArmWeightStatus {
    pub arm: String,
    pub desired: i32,
    pub achieved: f64,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    Pending,
    Progressing,
    Paused,
    Analysing,
    Promoting,
    Succeeded,
    RolledBack,
    Failed,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(controls: &[bool]) -> ExperimentSpec {
        let arms = controls
            .iter()
            .enumerate()
            .map(|(i, &control)| Arm {
                name: format!("v{}", i + 1),
                control,
                selector: BTreeMap::from([("version".into(), format!("v{}", i + 1))]),
                deployment: None,
            })
            .collect();
        ExperimentSpec {
            service: ServiceRef { name: "app".into(), port: None, hosts: None, gateways: None },
            mesh: MeshMode::Auto,
            arms,
            strategy: Strategy::BlueGreen(BlueGreen::default()),
            mirror: None,
            analysis: None,
            promotion: None,
            progress_deadline: None,
            on_progress_deadline: None,
            routing: None,
        }
    }

    fn names<'a>(arms: impl Iterator<Item = &'a Arm>) -> Vec<&'a str> {
        arms.map(|a| a.name.as_str()).collect()
    }

    #[test]
    fn the_control_is_the_arm_marked_control_wherever_it_is() {
        let s = spec(&[false, false, true]);
        assert_eq!(s.control_arm().map(|a| a.name.as_str()), Some("v3"));
        assert_eq!(names(s.candidates()), ["v1", "v2"]);
        assert_eq!(s.candidate().map(|a| a.name.as_str()), Some("v1"));
    }

    #[test]
    fn unvalidated_specs_follow_one_rule() {
        let two = spec(&[false, true, true]);
        assert_eq!(two.control_arm().map(|a| a.name.as_str()), Some("v2"), "the first arm marked control");
        assert_eq!(names(two.candidates()), ["v1", "v3"]);
        let none = spec(&[false, false]);
        assert_eq!(none.control_arm().map(|a| a.name.as_str()), Some("v1"), "else the first arm");
        assert_eq!(names(none.candidates()), ["v2"]);
        let empty = spec(&[]);
        assert!(empty.control_arm().is_none() && empty.candidate().is_none());
    }
}
