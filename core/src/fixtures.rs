//! Typed builders of Experiments for tests, instead of YAML assembled in strings:
//!
//! ```ignore
//! let exp = ExperimentBuilder::canary("checkout").steps([set_weight(10), pause(), set_weight(50)]).build();
//! ```
//!
//! Defaults: namespace `default`, Service `my-app` without a port, mesh `auto`, arms `v1`
//! (control) and `v2`. An arm `name` running version `version` selects
//! `{app: <service>, version: <version>}` and runs in the Deployment `<service>-<version>`.
//! Compiled for core's own unit tests, and for other crates' tests with the feature `fixtures`.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::ObjectMeta;

use crate::api::*;

/// The one place that builds a duration of the API (`"30s"`, `"5m"`, `"1h30m"`).
fn duration(text: &str) -> HumanDuration {
    text.parse().unwrap_or_else(|e| panic!("fixture duration {text:?}: {e}"))
}

/// An arm as declared: its name, whether it is the control, the version its pods run.
#[derive(Clone, Debug)]
struct ArmDecl {
    name: String,
    control: bool,
    version: String,
}

#[derive(Clone, Debug)]
pub struct ExperimentBuilder {
    name: String,
    namespace: String,
    service: ServiceRef,
    mesh: MeshMode,
    arms: Vec<ArmDecl>,
    strategy: Strategy,
    mirror: Option<Mirror>,
    analysis: Option<Analysis>,
    promotion: Option<Promotion>,
    progress_deadline: Option<HumanDuration>,
    on_progress_deadline: Option<OnProgressDeadline>,
    routing: Option<RoutingOptions>,
}

impl ExperimentBuilder {
    fn new(name: &str, strategy: Strategy) -> Self {
        ExperimentBuilder {
            name: name.into(),
            namespace: "default".into(),
            service: ServiceRef { name: "my-app".into(), port: None, hosts: None, gateways: None },
            mesh: MeshMode::Auto,
            arms: Vec::new(),
            strategy,
            mirror: None,
            analysis: None,
            promotion: None,
            progress_deadline: None,
            on_progress_deadline: None,
            routing: None,
        }
    }

    /// A canary without steps yet (see `steps`).
    pub fn canary(name: &str) -> Self {
        Self::new(name, Strategy::Canary(Canary::default()))
    }

    /// An A/B test without rules and an empty split (see `split`, `rule`).
    pub fn ab_test(name: &str) -> Self {
        Self::new(name, Strategy::AbTest(AbTest::default()))
    }

    pub fn blue_green(name: &str) -> Self {
        Self::new(name, Strategy::BlueGreen(BlueGreen::default()))
    }

    pub fn recreate(name: &str) -> Self {
        Self::new(name, Strategy::Recreate(Recreate::default()))
    }

    pub fn rolling_update(name: &str) -> Self {
        Self::new(name, Strategy::RollingUpdate(RollingUpdate::default()))
    }

    pub fn namespace(mut self, namespace: &str) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// The Service (and so the `app` label and the Deployment names of the arms).
    pub fn service(mut self, name: &str) -> Self {
        self.service.name = name.into();
        self
    }

    pub fn port(mut self, port: i32) -> Self {
        self.service.port = Some(port);
        self
    }

    pub fn mesh(mut self, mesh: MeshMode) -> Self {
        self.mesh = mesh;
        self
    }

    /// `spec.routing.provider`.
    pub fn provider(mut self, provider: crate::api::Provider) -> Self {
        self.routing.get_or_insert_with(Default::default).provider = Some(provider);
        self
    }

    /// The control arm, running the version of its name.
    pub fn control(self, name: &str) -> Self {
        self.control_on(name, name)
    }

    /// A candidate arm, running the version of its name.
    pub fn arm(self, name: &str) -> Self {
        self.arm_on(name, name)
    }

    /// The control arm, running `version` (e.g. rolling back to an older version).
    pub fn control_on(mut self, name: &str, version: &str) -> Self {
        self.arms.push(ArmDecl { name: name.into(), control: true, version: version.into() });
        self
    }

    pub fn arm_on(mut self, name: &str, version: &str) -> Self {
        self.arms.push(ArmDecl { name: name.into(), control: false, version: version.into() });
        self
    }

    pub fn steps(mut self, steps: impl IntoIterator<Item = CanaryStep>) -> Self {
        match &mut self.strategy {
            Strategy::Canary(c) => c.steps = steps.into_iter().collect(),
            other => panic!("steps are for canaries, not {other:?}"),
        }
        self
    }

    /// Pods shared by the arms without a mesh (canary and A/B test).
    pub fn total_replicas(mut self, total: i32) -> Self {
        match &mut self.strategy {
            Strategy::Canary(c) => c.total_replicas = Some(total),
            Strategy::AbTest(a) => a.total_replicas = Some(total),
            other => panic!("totalReplicas is for canaries and A/B tests, not {other:?}"),
        }
        self
    }

    /// Pods of the new version (recreate and rolling update).
    pub fn replicas(mut self, replicas: i32) -> Self {
        match &mut self.strategy {
            Strategy::Recreate(r) => r.replicas = Some(replicas),
            Strategy::RollingUpdate(r) => r.replicas = Some(replicas),
            other => panic!("replicas are for recreate and rolling updates, not {other:?}"),
        }
        self
    }

    pub fn max_surge_and_unavailable(mut self, surge: i32, unavailable: i32) -> Self {
        match &mut self.strategy {
            Strategy::RollingUpdate(r) => {
                r.max_surge = Some(IntOrString::Int(surge));
                r.max_unavailable = Some(IntOrString::Int(unavailable));
            }
            other => panic!("maxSurge and maxUnavailable are for rolling updates, not {other:?}"),
        }
        self
    }

    pub fn preview_header(mut self, name: &str, value: &str) -> Self {
        match &mut self.strategy {
            Strategy::BlueGreen(b) => b.preview_header = Some(PreviewHeader { name: name.into(), value: value.into() }),
            other => panic!("a preview header is for blue/green, not {other:?}"),
        }
        self
    }

    /// The A/B split: arm name → weight.
    pub fn split<'a>(mut self, weights: impl IntoIterator<Item = (&'a str, i32)>) -> Self {
        match &mut self.strategy {
            Strategy::AbTest(a) => a.split = weights.into_iter().map(|(arm, w)| (arm.to_string(), w)).collect(),
            other => panic!("a split is for A/B tests, not {other:?}"),
        }
        self
    }

    /// An A/B rule sending requests whose header `header` is exactly `value` to `arm`.
    pub fn header_rule(mut self, name: &str, header: &str, value: &str, arm: &str) -> Self {
        let exact = StringMatch { exact: Some(value.into()), ..Default::default() };
        let matches = RuleMatch { headers: BTreeMap::from([(header.to_string(), exact)]), ..Default::default() };
        match &mut self.strategy {
            Strategy::AbTest(a) => a.rules.push(AbRule { name: name.into(), matches, arm: arm.into() }),
            other => panic!("rules are for A/B tests, not {other:?}"),
        }
        self
    }

    /// An A/B rule sending requests with every header of `headers` (exact values) to `arm`.
    pub fn rule_with_headers(mut self, name: &str, headers: &[(&str, &str)], arm: &str) -> Self {
        let exact = |v: &str| StringMatch { exact: Some(v.into()), ..Default::default() };
        let headers = headers.iter().map(|(h, v)| (h.to_string(), exact(v))).collect();
        let matches = RuleMatch { headers, ..Default::default() };
        match &mut self.strategy {
            Strategy::AbTest(a) => a.rules.push(AbRule { name: name.into(), matches, arm: arm.into() }),
            other => panic!("rules are for A/B tests, not {other:?}"),
        }
        self
    }

    /// An A/B rule sending requests whose user agent matches `regex` to `arm`.
    pub fn user_agent_rule(mut self, name: &str, regex: &str, arm: &str) -> Self {
        let user_agent = Some(StringMatch { regex: Some(regex.into()), ..Default::default() });
        let matches = RuleMatch { user_agent, ..Default::default() };
        match &mut self.strategy {
            Strategy::AbTest(a) => a.rules.push(AbRule { name: name.into(), matches, arm: arm.into() }),
            other => panic!("rules are for A/B tests, not {other:?}"),
        }
        self
    }

    /// Keeps each user in the arm the split gave them, with the cookie `cookie_name`.
    pub fn sticky(mut self, cookie_name: &str) -> Self {
        match &mut self.strategy {
            Strategy::AbTest(a) => {
                a.sticky = Some(Sticky {
                    cookie_name: cookie_name.into(),
                    max_age_seconds: 86_400,
                    secure: false,
                    same_site: None,
                })
            }
            other => panic!("sticky assignment is for A/B tests, not {other:?}"),
        }
        self
    }

    pub fn mirror(mut self, arm: &str, percent: f64) -> Self {
        self.mirror = Some(Mirror { arm: arm.into(), percent });
        self
    }

    pub fn analysis(mut self, analysis: impl Into<Analysis>) -> Self {
        self.analysis = Some(analysis.into());
        self
    }

    pub fn on_inconclusive(mut self, action: OnInconclusive) -> Self {
        self.promotion = Some(Promotion { on_inconclusive: action, ..self.promotion.unwrap_or_default() });
        self
    }

    /// `spec.progressDeadline` and what happens when it passes.
    pub fn progress_deadline(mut self, length: &str, on: OnProgressDeadline) -> Self {
        self.progress_deadline = Some(duration(length));
        self.on_progress_deadline = Some(on);
        self
    }

    /// `spec.routing`: the propagation and scale-down delays.
    pub fn routing_delays(mut self, propagation: &str, scale_down: &str) -> Self {
        self.routing = Some(RoutingOptions {
            propagation_delay: Some(duration(propagation)),
            scale_down_delay: Some(duration(scale_down)),
            ..self.routing.unwrap_or_default()
        });
        self
    }

    pub fn build(self) -> Experiment {
        let service = self.service.name.clone();
        let declared = if self.arms.is_empty() {
            vec![
                ArmDecl { name: "v1".into(), control: true, version: "v1".into() },
                ArmDecl { name: "v2".into(), control: false, version: "v2".into() },
            ]
        } else {
            self.arms
        };
        let arms = declared
            .into_iter()
            .map(|a| Arm {
                selector: BTreeMap::from([("app".into(), service.clone()), ("version".into(), a.version.clone())]),
                deployment: Some(format!("{service}-{}", a.version)),
                name: a.name,
                control: a.control,
            })
            .collect();
        let spec = ExperimentSpec {
            service: self.service,
            mesh: self.mesh,
            arms,
            strategy: self.strategy,
            mirror: self.mirror,
            analysis: self.analysis,
            promotion: self.promotion,
            progress_deadline: self.progress_deadline,
            on_progress_deadline: self.on_progress_deadline,
            routing: self.routing,
        };
        let metadata = ObjectMeta { name: Some(self.name), namespace: Some(self.namespace), ..Default::default() };
        Experiment { metadata, spec, status: None }
    }

    /// The experiment as a YAML document, for tests that apply or write it.
    pub fn yaml(self) -> String {
        serde_yaml_ng::to_string(&self.build()).expect("an Experiment always serialises")
    }
}

/// A canary step that sets the candidate's weight.
pub fn set_weight(weight: i32) -> CanaryStep {
    CanaryStep { set_weight: Some(weight), ..Default::default() }
}

/// A pause until `forklane resume` or a promote command.
pub fn pause() -> CanaryStep {
    CanaryStep { pause: Some(Pause::default()), ..Default::default() }
}

pub fn pause_for(length: &str) -> CanaryStep {
    CanaryStep { pause: Some(Pause { duration: Some(duration(length)) }), ..Default::default() }
}

/// A step that runs `spec.analysis` until it decides.
pub fn analysis_step() -> CanaryStep {
    CanaryStep { analysis: Some(StepAnalysis {}), ..Default::default() }
}

/// `spec.analysis` with these metrics and the API's defaults for everything else.
#[derive(Clone, Debug)]
pub struct AnalysisBuilder(Analysis);

pub fn analysis(metrics: impl IntoIterator<Item = Metric>) -> AnalysisBuilder {
    AnalysisBuilder(Analysis { metrics: metrics.into_iter().collect(), ..Default::default() })
}

impl AnalysisBuilder {
    pub fn interval(mut self, length: &str) -> Self {
        self.0.interval = Some(duration(length));
        self
    }

    pub fn max_duration(mut self, length: &str) -> Self {
        self.0.max_duration = Some(duration(length));
        self
    }

    pub fn max_consecutive_unavailable(mut self, looks: u32) -> Self {
        self.0.max_consecutive_unavailable = Some(looks);
        self
    }

    pub fn min_samples_per_arm(mut self, samples: i64) -> Self {
        self.0.min_samples_per_arm = Some(samples);
        self
    }

    pub fn alpha(mut self, alpha: f64) -> Self {
        self.0.alpha = Some(alpha);
        self
    }

    /// Checks the sample ratio against the weights.
    pub fn srm(mut self) -> Self {
        self.0.srm = Some(SrmCheck { enabled: true });
        self
    }
}

impl From<AnalysisBuilder> for Analysis {
    fn from(builder: AnalysisBuilder) -> Analysis {
        builder.0
    }
}

/// A goal metric from two PromQL templates: successes and trials per arm.
pub fn goal(name: &str, success_query: &str, trial_query: &str) -> Metric {
    Metric {
        name: name.into(),
        builtin: None,
        role: Role::Goal,
        direction: None,
        kind: None,
        success_query: Some(success_query.into()),
        trial_query: Some(trial_query.into()),
        margin: None,
        threshold_ms: None,
    }
}

/// The article's conversion goal: orders per visit of each arm's version.
pub fn conversion() -> Metric {
    goal(
        "conversion",
        r#"sum(increase(orders_total{version="{{ arm.selector.version }}"}[{{ window }}]))"#,
        r#"sum(increase(visits_total{version="{{ arm.selector.version }}"}[{{ window }}]))"#,
    )
}

/// A guardrail on a built-in Istio metric, tolerating `margin`.
pub fn guardrail(name: &str, builtin: Builtin, margin: f64) -> Metric {
    Metric {
        name: name.into(),
        builtin: Some(builtin),
        role: Role::Guardrail,
        direction: None,
        kind: None,
        success_query: None,
        trial_query: None,
        margin: Some(margin),
        threshold_ms: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Routing;
    use crate::api::load::{Document, load_documents};
    use crate::api::validate::validate;

    #[test]
    fn builds_what_the_yaml_says() {
        let built = ExperimentBuilder::canary("checkout")
            .port(80)
            .steps([set_weight(10), pause_for("2m"), analysis_step()])
            .analysis(analysis([conversion()]).interval("1m").srm())
            .build();
        let text = r#"apiVersion: forklane.io/v1alpha1
kind: Experiment
metadata: {name: checkout, namespace: default}
spec:
  service: {name: my-app, port: 80}
  arms:
    - {name: v1, control: true, selector: {app: my-app, version: v1}, deployment: my-app-v1}
    - {name: v2, selector: {app: my-app, version: v2}, deployment: my-app-v2}
  strategy:
    canary:
      steps: [{setWeight: 10}, {pause: {duration: 2m}}, {analysis: {}}]
  analysis:
    interval: 1m
    srm: {enabled: true}
    metrics:
      - name: conversion
        role: goal
        successQuery: 'sum(increase(orders_total{version="{{ arm.selector.version }}"}[{{ window }}]))'
        trialQuery: 'sum(increase(visits_total{version="{{ arm.selector.version }}"}[{{ window }}]))'
"#;
        let Ok(Some(Document::Experiment(parsed))) = load_documents(text).map(|docs| docs.into_iter().next()) else {
            panic!("the reference YAML loads");
        };
        assert_eq!((&built.metadata, &built.spec), (&parsed.metadata, &parsed.spec));
    }

    #[test]
    fn every_strategy_builds_a_valid_experiment() {
        let experiments = [
            ExperimentBuilder::canary("c").steps([set_weight(50)]).build(),
            ExperimentBuilder::ab_test("a")
                .split([("v1", 90), ("v2", 10)])
                .header_rule("beta", "x-b", "1", "v2")
                .build(),
            ExperimentBuilder::blue_green("b").preview_header("x-preview", "true").mirror("v2", 5.0).build(),
            ExperimentBuilder::recreate("r").replicas(3).build(),
            ExperimentBuilder::rolling_update("u").replicas(3).max_surge_and_unavailable(1, 0).build(),
        ];
        for exp in experiments {
            assert_eq!(validate(&exp.spec, Routing::Istio), [], "{:?}", exp.metadata.name);
        }
    }

    #[test]
    fn arms_follow_the_service_and_their_version() {
        let exp = ExperimentBuilder::rolling_update("back").service("shop").control_on("v1", "v2").arm_on("v3", "v1");
        let arms = exp.build().spec.arms;
        assert_eq!((arms[0].control, arms[0].deployment.as_deref()), (true, Some("shop-v2")));
        assert_eq!(arms[1].selector, BTreeMap::from([("app".into(), "shop".into()), ("version".into(), "v1".into())]));
    }
}
