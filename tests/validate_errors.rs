//! Every kind of bad Experiment gets a clear error that names the field and the value.

use forklane_core::api::Routing;
use forklane_core::api::load::{Document, load_documents};
use forklane_core::api::validate::validate;

const BASE: &str = r#"
apiVersion: forklane.io/v1alpha1
kind: Experiment
metadata: {name: checkout, namespace: shop}
spec:
  service: {name: my-app}
  arms:
    - {name: v1, control: true, selector: {version: v1}, deployment: my-app-v1}
    - {name: v2, selector: {version: v2}, deployment: my-app-v2}
  strategy:
    abTest:
      rules:
        - name: beta
          match:
            headers: {x-user-group: {exact: beta}}
          arm: v2
      split: {v1: 90, v2: 10}
"#;

/// Problems of `text` as `path: message` lines, parse errors included.
fn problems(text: &str, routing: Routing) -> Vec<String> {
    match load_documents(text) {
        Ok(docs) => docs
            .iter()
            .flat_map(|d| match d {
                Document::Experiment(e) => validate(&e.spec, routing).iter().map(ToString::to_string).collect(),
                Document::RolloutPolicy(_) => vec![],
            })
            .collect(),
        Err(errors) => errors.iter().map(|e| format!("{}: {}", e.path, e.message)).collect(),
    }
}

fn edit(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "fixture does not contain {from:?}");
    BASE.replacen(from, to, 1)
}

#[test]
fn the_base_fixture_is_valid() {
    assert_eq!(problems(BASE, Routing::Istio), Vec::<String>::new());
}

#[test]
fn each_bad_input_is_named() {
    let two_strategies = edit("  strategy:\n", "  strategy:\n    canary: {steps: [{setWeight: 10}]}\n");
    let eleven_arms = {
        let extra: String = (3..=11).map(|i| format!("    - {{name: v{i}, selector: {{version: v{i}}}}}\n")).collect();
        edit(
            "    - {name: v2, selector: {version: v2}, deployment: my-app-v2}\n",
            &format!("    - {{name: v2, selector: {{version: v2}}, deployment: my-app-v2}}\n{extra}"),
        )
    };
    let canary = |steps: &str| {
        let start = BASE.find("    abTest:").unwrap();
        format!("{}    canary:\n      steps: {steps}\n", &BASE[..start])
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "unknown strategy",
            edit("    abTest:", "    abTestX:"),
            "spec.strategy.abTestX: unknown field (strategies: recreate, rollingUpdate, blueGreen, canary, abTest)",
        ),
        (
            "two strategies",
            two_strategies,
            "spec.strategy: exactly one strategy must be set: recreate, rollingUpdate, blueGreen, canary or abTest (found: canary, abTest)",
        ),
        (
            "no strategy",
            format!("{}  strategy: {{}}\n", &BASE[..BASE.find("  strategy:").unwrap()]),
            "spec.strategy: exactly one strategy must be set: recreate, rollingUpdate, blueGreen, canary or abTest (found: none)",
        ),
        (
            "one arm",
            edit("    - {name: v2, selector: {version: v2}, deployment: my-app-v2}\n", ""),
            "spec.arms: 1 arms given, need between 2 and 10",
        ),
        ("eleven arms", eleven_arms, "spec.arms: 11 arms given, need between 2 and 10"),
        (
            "duplicate arm",
            edit("name: v2, selector", "name: v1, selector"),
            "spec.arms[1].name: duplicate arm name \"v1\"",
        ),
        (
            "arm name not DNS-1123",
            edit("name: v2, selector", "name: V_2, selector"),
            "spec.arms[1].name: \"V_2\" must be a DNS-1123 label",
        ),
        ("no control", edit("control: true, ", ""), "spec.arms: no arm has control: true; exactly one must"),
        (
            "two controls",
            edit("{name: v2, selector", "{name: v2, control: true, selector"),
            "spec.arms: arms v1, v2 all have control: true; exactly one must",
        ),
        (
            "split sum",
            edit("{v1: 90, v2: 10}", "{v1: 80, v2: 10}"),
            "spec.strategy.abTest.split: weights sum to 90, must be 100",
        ),
        (
            "split unknown arm",
            edit("{v1: 90, v2: 10}", "{v1: 90, v9: 10}"),
            "spec.strategy.abTest.split.v9: unknown arm \"v9\" (arms: v1, v2)",
        ),
        (
            "rule unknown arm",
            edit("          arm: v2", "          arm: v7"),
            "spec.strategy.abTest.rules[0].arm: unknown arm \"v7\" (arms: v1, v2)",
        ),
        (
            "invalid regex",
            edit("{exact: beta}", "{regex: \"(beta\"}"),
            "spec.strategy.abTest.rules[0].match.headers.x-user-group.regex: \"(beta\" is not a valid RE2 regex",
        ),
        ("lookahead is not RE2", edit("{exact: beta}", "{regex: \"(?=beta)\"}"), "is not a valid RE2 regex"),
        (
            "over-long regex",
            edit("{exact: beta}", &format!("{{regex: \"{}\"}}", "a".repeat(1025))),
            "regex is 1025 characters long, at most 1024 allowed",
        ),
        (
            "uppercase header",
            edit("{x-user-group:", "{X-User-Group:"),
            "spec.strategy.abTest.rules[0].match.headers.X-User-Group: \"X-User-Group\": header names must be lowercase (write \"x-user-group\")",
        ),
        (
            "colon header",
            edit("{x-user-group:", "{\":authority\":"),
            "spec.strategy.abTest.rules[0].match.headers.:authority: \":authority\": header names must not contain ':'",
        ),
        ("empty selector", edit("selector: {version: v2}", "selector: {}"), "spec.arms[1].selector: must not be empty"),
        (
            "identical selectors",
            edit("selector: {version: v2}", "selector: {version: v1}"),
            "spec.arms[1].selector: identical to the selector of arm \"v1\"",
        ),
        (
            "canary weight above 100",
            canary("[{setWeight: 120}]"),
            "spec.strategy.canary.steps[0].setWeight: 120 is outside 0..100",
        ),
        (
            "canary weight below 0",
            canary("[{setWeight: -5}]"),
            "spec.strategy.canary.steps[0].setWeight: -5 is outside 0..100",
        ),
        (
            "canary decreasing",
            canary("[{setWeight: 50}, {setWeight: 20}]"),
            "spec.strategy.canary.steps[1].setWeight: 20 decreases the weight from 50 without an analysis step before it",
        ),
        (
            "pause duration not a duration",
            canary("[{setWeight: 10}, {pause: {duration: 5x}}]"),
            "spec.strategy.canary.steps[1].pause.duration: \"5x\" is not a duration (examples: 30s, 5m, 1h30m, 24h)",
        ),
        (
            "analysis interval not a duration",
            format!("{BASE}  analysis:\n    interval: soon\n"),
            "spec.analysis.interval: \"soon\" is not a duration",
        ),
        (
            "propagation delay not a duration",
            format!("{BASE}  routing:\n    propagationDelay: soon\n"),
            "spec.routing.propagationDelay: \"soon\" is not a duration",
        ),
        (
            "scale-down delay not a duration",
            format!("{BASE}  routing:\n    scaleDownDelay: 30 seconds\n"),
            "spec.routing.scaleDownDelay: \"30 seconds\" is not a duration",
        ),
        (
            "analysis interval of zero",
            format!("{BASE}  analysis:\n    interval: 0s\n"),
            "spec.analysis.interval: must be longer than zero",
        ),
        (
            "guardrail without margin",
            format!("{BASE}  analysis:\n    metrics:\n      - {{name: error-rate, builtin: istio-error-rate, role: guardrail}}\n"),
            "spec.analysis.metrics[0].margin: required for guardrail \"error-rate\": e.g. 0.002 to 0.01",
        ),
        (
            "fixed horizon without its horizon",
            format!("{BASE}  analysis:\n    method: fixedHorizon\n"),
            "spec.analysis.horizon: required for method fixedHorizon: the test runs once, at horizon.samplesPerArm",
        ),
        (
            "a horizon on a sequential test",
            format!("{BASE}  analysis:\n    horizon: {{samplesPerArm: 5000}}\n"),
            "spec.analysis.horizon: only method fixedHorizon has a horizon (method sequential, horizon samplesPerArm 5000)",
        ),
        (
            "a minimum exposure beyond maxDuration",
            format!("{BASE}  analysis:\n    minDuration: 48h\n    maxDuration: 24h\n"),
            "spec.analysis.minDuration: 48h must not be longer than maxDuration (24h)",
        ),
        (
            "a horizon with both samples and a duration",
            format!("{BASE}  analysis:\n    method: fixedHorizon\n    horizon: {{samplesPerArm: 5000, duration: 2h}}\n"),
            "spec.analysis.horizon: samplesPerArm 5000 and duration 2h given: set exactly one of samplesPerArm and duration",
        ),
        (
            "an empty horizon",
            format!("{BASE}  analysis:\n    method: fixedHorizon\n    horizon: {{}}\n"),
            "spec.analysis.horizon: an empty horizon given: set exactly one of samplesPerArm and duration",
        ),
        (
            "a horizon duration beyond maxDuration",
            format!("{BASE}  analysis:\n    method: fixedHorizon\n    maxDuration: 24h\n    horizon: {{duration: 36h}}\n"),
            "spec.analysis.horizon.duration: 36h is longer than maxDuration (24h): the test would never run",
        ),
        (
            "a horizon duration that is not a duration",
            format!("{BASE}  analysis:\n    method: fixedHorizon\n    horizon: {{duration: two hours}}\n"),
            "spec.analysis.horizon.duration: \"two hours\" is not a duration",
        ),
        (
            "freeze window not a duration",
            "apiVersion: forklane.io/v1alpha1\nkind: RolloutPolicy\nmetadata: {name: p}\nspec:\n  freezeWindows:\n    - {schedule: '0 16 * * 5', duration: 64 hours}\n".into(),
            "spec.freezeWindows[0].duration: \"64 hours\" is not a duration",
        ),
        (
            "a SameSite=None cookie that is not Secure",
            edit("split: {v1: 90, v2: 10}", "split: {v1: 90, v2: 10}\n      sticky: {cookieName: c, sameSite: None}"),
            "spec.strategy.abTest.sticky.sameSite: \"None\" requires secure: true",
        ),
        (
            "an unknown SameSite",
            edit("split: {v1: 90, v2: 10}", "split: {v1: 90, v2: 10}\n      sticky: {cookieName: c, sameSite: lax}"),
            "spec.strategy.abTest.sticky.sameSite: unknown variant `lax`",
        ),
        (
            "mirror to control",
            format!("{BASE}  mirror: {{arm: v1, percent: 10}}\n"),
            "spec.mirror.arm: \"v1\" is the control arm",
        ),
        (
            "mirror percent",
            format!("{BASE}  mirror: {{arm: v2, percent: 150}}\n"),
            "spec.mirror.percent: 150 is outside 0..100",
        ),
        (
            "not an Experiment",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: my-app}\n".into(),
            "apiVersion: \"apps/v1\" (kind \"Deployment\") is not a Forklane object",
        ),
        ("not a mapping", "- just\n- a list\n".into(), ": not a Kubernetes object"),
        (
            "guardrail without direction",
            format!(
                "{BASE}  analysis:\n    metrics:\n      - {{name: checkout-time, role: guardrail, successQuery: a, trialQuery: b, margin: 1}}\n"
            ),
            "spec.analysis.metrics[0].direction: required for guardrail \"checkout-time\": increase or decrease",
        ),
        (
            "wrong type",
            edit("{name: my-app}", "{name: my-app, port: http}"),
            "spec.service.port: invalid type: string \"http\"",
        ),
    ];
    let mut failures = Vec::new();
    for (name, text, expected) in &cases {
        let got = problems(text, Routing::Istio);
        if !got.iter().any(|line| line.contains(expected)) {
            failures.push(format!("{name}: expected a line containing {expected:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn sticky_cookie_attributes_are_accepted_as_browsers_take_them() {
    for sticky in [
        "{cookieName: c, secure: true, sameSite: None}",
        "{cookieName: c, sameSite: Strict}",
        "{cookieName: c, sameSite: Lax, secure: false}",
        "{cookieName: c, secure: true}",
    ] {
        let text = edit("split: {v1: 90, v2: 10}", &format!("split: {{v1: 90, v2: 10}}\n      sticky: {sticky}"));
        assert_eq!(problems(&text, Routing::Istio), Vec::<String>::new(), "{sticky}");
    }
}

#[test]
fn rules_without_a_mesh_are_refused_unless_degraded() {
    let got = problems(BASE, Routing::Native);
    assert!(
        got.iter()
            .any(|l| l
                .starts_with("spec.strategy.abTest.rules: header, cookie, user-agent and region rules need a mesh")),
        "{got:?}"
    );
    let degraded =
        edit("split: {v1: 90, v2: 10}", "split: {v1: 90, v2: 10}\n      allowDegraded: true\n      totalReplicas: 10");
    assert_eq!(problems(&degraded, Routing::Native), Vec::<String>::new());
}

#[test]
fn an_arm_with_only_mirrored_traffic_is_a_dark_launch() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/dark-launch.yaml")).unwrap();
    assert_eq!(problems(&text, Routing::Istio), Vec::<String>::new());
    let without_copies = text.replace("{arm: rewrite, percent: 25}", "{arm: rewrite, percent: 0}");
    assert_eq!(
        problems(&without_copies, Routing::Istio),
        [
            "spec.arms[1]: arm \"rewrite\" gets no traffic: it has no weight in the split, no rule points at it and it is not mirrored"
        ]
    );
}

#[test]
fn custom_queries_without_the_cohort_are_warned_of_when_some_traffic_is_not_randomised() {
    use forklane_core::api::validate::warnings;
    let analysis = r#"
  analysis:
    metrics:
      - {name: conversion, role: goal, successQuery: 'sum(orders_total{version="{{ arm.selector.version }}"})', trialQuery: 'sum(visits_total{version="{{ arm.selector.version }}",{{cohort}}})'}
      - {name: errors, builtin: istio-error-rate, role: guardrail, margin: 0.01}
"#;
    let warned = |text: &str, routing| match &load_documents(text).unwrap()[0] {
        Document::Experiment(e) => warnings(&e.spec, routing).iter().map(ToString::to_string).collect::<Vec<_>>(),
        Document::RolloutPolicy(_) => unreachable!(),
    };
    let with_rules = format!("{BASE}{analysis}").replace("selector: {version:", "selector: {app: shop, version:");
    let unshared = format!("{BASE}{analysis}");
    assert_eq!(
        problems(&unshared, Routing::Istio),
        [
            "spec.arms: with Istio and an analysis the arms' selectors must share a label (e.g. app): the Telemetry that labels requests by cohort selects the arms' pods by it"
        ]
    );
    let native = problems(&unshared, Routing::Native);
    assert!(!native.iter().any(|p| p.starts_with("spec.arms")), "without a mesh there is no Telemetry: {native:?}");
    assert_eq!(problems(&with_rules, Routing::Istio), Vec::<String>::new(), "allowed");
    assert_eq!(
        warned(&with_rules, Routing::Istio),
        [
            "spec.analysis.metrics[0].successQuery: metric \"conversion\" does not use {{ cohort }}: it also counts targeted requests, which were not randomised; add {{ cohort }} to its selectors"
        ],
        "`{{{{cohort}}}}` without spaces counts, builtins restrict themselves"
    );
    let mirrored = with_rules
        .replace("      rules:\n", "      rules: []\n      unused:\n")
        .replace("  analysis:", "  mirror: {arm: v2, percent: 10}\n  analysis:");
    let mirrored = mirrored.replace("      unused:\n        - name: beta\n          match:\n            headers: {x-user-group: {exact: beta}}\n          arm: v2\n", "");
    let got = warned(&mirrored, Routing::Istio);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].contains("counts mirrored requests"), "{got:?}");
    let randomised = mirrored.replace("  mirror: {arm: v2, percent: 10}\n", "");
    assert_eq!(warned(&randomised, Routing::Istio), Vec::<String>::new(), "only randomised traffic");
}

/// With the Gateway API each arm has a Service per cohort, `<service>-<arm>[-<cohort>]`: each name
/// must be a Service name, and no two arms may get the same one. Istio needs neither.
#[test]
fn with_the_gateway_api_every_arm_service_is_a_valid_name_of_its_own() {
    let long_service = "s".repeat(55);
    let long = edit("service: {name: my-app}", &format!("service: {{name: {long_service}}}"));
    assert_eq!(problems(&long, Routing::Istio), Vec::<String>::new());
    assert_eq!(
        problems(&long, Routing::GatewayApi),
        [0, 1].map(|i| {
            let arm = ["v1", "v2"][i];
            format!(
                "spec.arms[{i}].name: with provider gatewayAPI arm {arm:?} gets the Service \"{long_service}-{arm}-targeted\", which is not a valid Service name (at most 63 characters, starting with a letter): shorten the arm's or the Service's name"
            )
        })
    );
    let shared = BASE
        .replace("name: v2,", "name: v1-targeted,")
        .replace("arm: v2", "arm: v1-targeted")
        .replace("v2: 10}", "v1-targeted: 10}");
    assert_eq!(problems(&shared, Routing::Istio), Vec::<String>::new());
    assert_eq!(
        problems(&shared, Routing::GatewayApi),
        [
            "spec.arms[1].name: with provider gatewayAPI arms \"v1\" and \"v1-targeted\" would both have the Service \"my-app-v1-targeted\""
        ]
    );
}
