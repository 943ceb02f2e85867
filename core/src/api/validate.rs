//! Rules the CRD schema cannot express, checked in Rust. Every problem names its field.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use regex::Regex;

use super::duration::HumanDuration;
use super::experiment::*;
use super::names::{is_dns1123_label, is_dns1123_subdomain};
use super::{Analysis, Builtin, Horizon, Method, Role, Routing, Strategy};

/// Envoy refuses longer regexes by default; istiod checks the same bound.
pub(crate) const MAX_REGEX_LEN: usize = 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem { path: path.into(), message: message.into() });
    }
}

/// Every problem of the experiment, for the given routing mode.
pub fn validate(exp: &ExperimentSpec, routing: Routing) -> Vec<Problem> {
    let mut p = Problems::default();
    check_service(&exp.service, &mut p);
    let arms = check_arms(&exp.arms, &mut p);
    check_strategy(exp, &arms, routing, &mut p);
    if let Some(mirror) = &exp.mirror {
        check_mirror(mirror, exp, &arms, routing, &mut p);
    }
    check_routing(exp, routing, &mut p);
    if routing == Routing::GatewayApi {
        check_arm_services(exp, &mut p);
    }
    if let Some(analysis) = &exp.analysis {
        check_analysis(analysis, &mut p);
        if routing == Routing::Istio && !exp.arms.is_empty() && shared_labels(&exp.arms).is_empty() {
            p.add(
                "spec.arms",
                "with Istio and an analysis the arms' selectors must share a label (e.g. app): the Telemetry that labels requests by cohort selects the arms' pods by it",
            );
        }
    }
    p.0
}

/// `spec.routing`: a provider that agrees with `spec.mesh`, and Gateway API attachment only where
/// it is used.
fn check_routing(exp: &ExperimentSpec, routing: Routing, p: &mut Problems) {
    let Some(options) = &exp.routing else { return };
    let disagree = matches!(
        (options.provider, exp.mesh),
        (Some(super::Provider::Istio), super::MeshMode::None)
            | (Some(super::Provider::Native | super::Provider::GatewayApi), super::MeshMode::Istio)
    );
    if let (true, Some(provider)) = (disagree, options.provider) {
        let mesh = serde_json::to_value(exp.mesh).unwrap_or_default();
        let provider = serde_json::to_value(provider).unwrap_or_default();
        p.add(
            "spec.routing.provider",
            format!("{provider} contradicts spec.mesh {mesh}: remove spec.mesh (the provider decides)"),
        );
    }
    let Some(gateway) = &options.gateway_api else { return };
    if routing != Routing::GatewayApi && options.provider.is_some() {
        p.add("spec.routing.gatewayAPI", "is used only with provider: gatewayAPI");
    }
    if gateway.parent_refs.is_empty() && !gateway.hostnames.is_empty() {
        p.add(
            "spec.routing.gatewayAPI.hostnames",
            "needs parentRefs (Gateways): a route attached to the Service (the mesh) matches the Service's own names",
        );
    }
    for (i, parent) in gateway.parent_refs.iter().enumerate() {
        if !is_dns1123_subdomain(&parent.name) {
            p.add(
                format!("spec.routing.gatewayAPI.parentRefs[{i}].name"),
                format!("{:?} is not a valid object name", parent.name),
            );
        }
        if parent.kind.as_deref() == Some("Service") && parent.name != exp.service.name {
            p.add(
                format!("spec.routing.gatewayAPI.parentRefs[{i}]"),
                format!(
                    "a Service parent must be the experiment's Service {:?}, not {:?}",
                    exp.service.name, parent.name
                ),
            );
        }
    }
    for (i, host) in gateway.hostnames.iter().enumerate() {
        let name = host.strip_prefix("*.").unwrap_or(host);
        if !is_dns1123_subdomain(name) {
            p.add(format!("spec.routing.gatewayAPI.hostnames[{i}]"), format!("{host:?} is not a valid hostname"));
        }
    }
}

/// With the Gateway API every arm has a Service per cohort (`plan::gateway::arm_services`): each
/// name must be a valid Service name and no two arms may share one.
fn check_arm_services(exp: &ExperimentSpec, p: &mut Problems) {
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    // An arm name that is no label is reported as such (`check_arms`).
    for (i, arm) in exp.arms.iter().enumerate().filter(|(_, a)| is_dns1123_label(&a.name)) {
        for (_, name) in crate::plan::gateway::arm_services(exp, &arm.name) {
            if !is_dns1123_label(&name) || name.starts_with(|c: char| c.is_ascii_digit()) {
                p.add(
                    format!("spec.arms[{i}].name"),
                    format!(
                        "with provider gatewayAPI arm {:?} gets the Service {name:?}, which is not a valid Service name (at most 63 characters, starting with a letter): shorten the arm's or the Service's name",
                        arm.name
                    ),
                );
            } else if let Some(other) = seen.insert(name.clone(), &arm.name) {
                p.add(
                    format!("spec.arms[{i}].name"),
                    format!(
                        "with provider gatewayAPI arms {other:?} and {:?} would both have the Service {name:?}",
                        arm.name
                    ),
                );
            }
        }
    }
}

/// The label pairs every arm's selector has.
pub(crate) fn shared_labels(arms: &[Arm]) -> BTreeMap<String, String> {
    let mut selectors = arms.iter().map(|a| &a.selector);
    let mut shared = selectors.next().cloned().unwrap_or_default();
    for selector in selectors {
        shared.retain(|k, v| selector.get(k) == Some(v));
    }
    shared
}

/// What is allowed but probably wrong: a custom query that counts every request although some
/// are targeted (rules, a blue/green preview) or mirrored, i.e. were never randomised. Builtins
/// restrict themselves; a template does so with `{{ cohort }}` (docs/analysis.md).
pub fn warnings(exp: &ExperimentSpec, routing: Routing) -> Vec<Problem> {
    let mut p = Problems::default();
    let rules = exp.strategy.ab_test().is_some_and(|ab| !ab.rules.is_empty());
    let preview = matches!(&exp.strategy, Strategy::BlueGreen(bg) if bg.preview_header.is_some());
    let unrandomised = match (rules || preview, exp.mirror.is_some()) {
        (true, true) => "targeted and mirrored",
        (true, false) => "targeted",
        (false, true) => "mirrored",
        (false, false) => return p.0,
    };
    let Some(analysis) = exp.analysis.as_ref().filter(|_| routing.routes()) else { return p.0 };
    let cohort = Regex::new(r"\{\{\s*cohort\s*\}\}").expect("a valid regex");
    for (i, m) in analysis.metrics.iter().enumerate() {
        for (field, query) in [("successQuery", &m.success_query), ("trialQuery", &m.trial_query)] {
            if query.as_ref().is_some_and(|q| !cohort.is_match(q)) {
                p.add(
                    format!("spec.analysis.metrics[{i}].{field}"),
                    format!(
                        "metric {:?} does not use {{{{ cohort }}}}: it also counts {unrandomised} requests, which were not randomised; add {{{{ cohort }}}} to its selectors",
                        m.name
                    ),
                );
            }
        }
    }
    p.0
}

fn check_service(service: &ServiceRef, p: &mut Problems) {
    if !is_dns1123_label(&service.name) {
        p.add("spec.service.name", format!("{:?} is not a valid Service name (a DNS-1123 label)", service.name));
    }
    if matches!(&service.hosts, Some(h) if h.is_empty()) {
        p.add("spec.service.hosts", "must not be empty when set");
    }
}

/// Arm names in order, for lookups by the strategy checks.
fn check_arms(arms: &[Arm], p: &mut Problems) -> Vec<String> {
    if !(2..=10).contains(&arms.len()) {
        p.add("spec.arms", format!("{} arms given, need between 2 and 10", arms.len()));
    }
    let mut seen = BTreeSet::new();
    for (i, arm) in arms.iter().enumerate() {
        if !is_dns1123_label(&arm.name) {
            p.add(
                format!("spec.arms[{i}].name"),
                format!("{:?} must be a DNS-1123 label (lowercase letters, digits and '-', at most 63)", arm.name),
            );
        } else if !seen.insert(arm.name.as_str()) {
            p.add(format!("spec.arms[{i}].name"), format!("duplicate arm name {:?}", arm.name));
        }
        if arm.selector.is_empty() {
            p.add(format!("spec.arms[{i}].selector"), "must not be empty: it identifies the arm's pods");
        }
        for (key, value) in &arm.selector {
            if let Err(why) = check_label(key, value) {
                p.add(format!("spec.arms[{i}].selector.{key}"), why);
            }
        }
        if let Some(deployment) = &arm.deployment
            && !is_dns1123_subdomain(deployment)
        {
            p.add(format!("spec.arms[{i}].deployment"), format!("{deployment:?} is not a valid Deployment name"));
        }
    }
    let controls: Vec<&str> = arms.iter().filter(|a| a.control).map(|a| a.name.as_str()).collect();
    match controls.len() {
        1 => {}
        0 => p.add("spec.arms", "no arm has control: true; exactly one must"),
        _ => p.add("spec.arms", format!("arms {} all have control: true; exactly one must", controls.join(", "))),
    }
    for (i, a) in arms.iter().enumerate() {
        for b in &arms[..i] {
            if a.selector.is_empty() || b.selector.is_empty() {
                continue;
            }
            if a.selector == b.selector {
                p.add(
                    format!("spec.arms[{i}].selector"),
                    format!("identical to the selector of arm {:?}; arms must select different pods", b.name),
                );
            } else if is_subset(&a.selector, &b.selector) || is_subset(&b.selector, &a.selector) {
                p.add(
                    format!("spec.arms[{i}].selector"),
                    format!("overlaps the selector of arm {:?}: one selects every pod of the other", b.name),
                );
            }
        }
    }
    arms.iter().map(|a| a.name.clone()).collect()
}

fn is_subset(small: &BTreeMap<String, String>, big: &BTreeMap<String, String>) -> bool {
    small.iter().all(|(k, v)| big.get(k) == Some(v))
}

fn check_strategy(exp: &ExperimentSpec, arms: &[String], routing: Routing, p: &mut Problems) {
    let name = exp.strategy.name().as_str();
    if !matches!(exp.strategy, Strategy::AbTest(_)) && exp.arms.len() != 2 {
        p.add(
            format!("spec.strategy.{name}"),
            format!("needs exactly 2 arms (a control and a candidate), got {}; use abTest for more", exp.arms.len()),
        );
    }
    match &exp.strategy {
        Strategy::Recreate(r) => {
            if routing == Routing::Native {
                need_deployments(exp, name, p);
            }
            check_replicas(r.replicas, "spec.strategy.recreate.replicas", p);
        }
        Strategy::RollingUpdate(r) => {
            if routing == Routing::Native {
                need_deployments(exp, name, p);
            }
            check_replicas(r.replicas, "spec.strategy.rollingUpdate.replicas", p);
            check_rolling(r, p);
        }
        Strategy::BlueGreen(bg) => {
            if let Some(h) = &bg.preview_header {
                check_header_name(&h.name, "spec.strategy.blueGreen.previewHeader.name", p);
                if routing == Routing::Native {
                    p.add("spec.strategy.blueGreen.previewHeader", "header-based preview needs a mesh (mesh: istio, or provider: gatewayAPI); without one the Service selector switches all traffic at once");
                }
            }
        }
        Strategy::Canary(c) => {
            check_canary(c, p);
            if routing == Routing::Native {
                need_deployments(exp, name, p);
                if c.total_replicas.is_none() {
                    p.add(
                        "spec.strategy.canary.totalReplicas",
                        "required without a mesh: the weights become replica ratios",
                    );
                }
            }
        }
        Strategy::AbTest(ab) => check_ab_test(ab, exp, arms, routing, p),
    }
}

fn check_replicas(replicas: Option<i32>, path: &str, p: &mut Problems) {
    if let Some(n) = replicas
        && n < 1
    {
        p.add(path, format!("{n} must be at least 1"));
    }
}

fn need_deployments(exp: &ExperimentSpec, strategy: &str, p: &mut Problems) {
    for (i, arm) in exp.arms.iter().enumerate() {
        if arm.deployment.is_none() {
            p.add(
                format!("spec.arms[{i}].deployment"),
                format!("required for {strategy} without a mesh: replicas carry the traffic"),
            );
        }
    }
}

/// Resolves a maxSurge/maxUnavailable value against a replica count, as Deployments do.
pub(crate) fn resolve_int_or_percent(value: &IntOrString, replicas: i32, round_up: bool) -> Result<i32, String> {
    match value {
        IntOrString::Int(n) if *n >= 0 => Ok(*n),
        IntOrString::Int(n) => Err(format!("{n} must not be negative")),
        IntOrString::String(s) => {
            let percent: i32 = s
                .strip_suffix('%')
                .and_then(|n| n.parse().ok())
                .filter(|n| (0..=100).contains(n))
                .ok_or_else(|| format!("{s:?} must be an integer or a percentage such as \"25%\""))?;
            let scaled = i64::from(percent) * i64::from(replicas);
            let resolved = if round_up { (scaled + 99) / 100 } else { scaled / 100 };
            Ok(resolved as i32)
        }
    }
}

fn check_rolling(r: &RollingUpdate, p: &mut Problems) {
    let replicas = r.replicas.unwrap_or(1).max(1);
    let surge = r.max_surge.as_ref().map(|v| resolve_int_or_percent(v, replicas, true));
    let unavailable = r.max_unavailable.as_ref().map(|v| resolve_int_or_percent(v, replicas, false));
    if let Some(Err(why)) = &surge {
        p.add("spec.strategy.rollingUpdate.maxSurge", why.clone());
    }
    if let Some(Err(why)) = &unavailable {
        p.add("spec.strategy.rollingUpdate.maxUnavailable", why.clone());
    }
    if let (Some(Ok(0)), Some(Ok(0))) = (surge, unavailable) {
        p.add("spec.strategy.rollingUpdate.maxUnavailable", "may not be 0 when maxSurge is 0");
    }
}

fn check_canary(c: &Canary, p: &mut Problems) {
    if c.steps.is_empty() {
        p.add("spec.strategy.canary.steps", "must have at least one step");
    }
    let mut weight = 0;
    let mut analysed = false;
    for (i, step) in c.steps.iter().enumerate() {
        let path = format!("spec.strategy.canary.steps[{i}]");
        let set =
            [step.set_weight.is_some(), step.pause.is_some(), step.analysis.is_some()].iter().filter(|x| **x).count();
        if set != 1 {
            p.add(&path, "a canary step sets exactly one of setWeight, pause, analysis");
        }
        if let Some(w) = step.set_weight {
            if !(0..=100).contains(&w) {
                p.add(format!("{path}.setWeight"), format!("{w} is outside 0..100"));
            } else if w < weight && !analysed {
                p.add(
                    format!("{path}.setWeight"),
                    format!("{w} decreases the weight from {weight} without an analysis step before it"),
                );
            }
            weight = w;
        }
        analysed |= step.analysis.is_some();
    }
    if let Some(total) = c.total_replicas
        && total < 2
    {
        p.add("spec.strategy.canary.totalReplicas", format!("{total} must be at least 2 (one pod per arm)"));
    }
}

fn check_ab_test(ab: &AbTest, exp: &ExperimentSpec, arms: &[String], routing: Routing, p: &mut Problems) {
    let base = "spec.strategy.abTest";
    let known = |name: &str| arms.iter().any(|a| a == name);
    let arm_list = arms.join(", ");
    let sum: i64 = ab.split.values().map(|w| i64::from(*w)).sum();
    if sum != 100 {
        p.add(format!("{base}.split"), format!("weights sum to {sum}, must be 100"));
    }
    for (arm, weight) in &ab.split {
        if !known(arm) {
            p.add(format!("{base}.split.{arm}"), format!("unknown arm {arm:?} (arms: {arm_list})"));
        }
        if !(0..=100).contains(weight) {
            p.add(format!("{base}.split.{arm}"), format!("{weight} is outside 0..100"));
        }
    }
    let mut rule_names = BTreeSet::new();
    for (i, rule) in ab.rules.iter().enumerate() {
        let path = format!("{base}.rules[{i}]");
        if !is_dns1123_label(&rule.name) {
            p.add(format!("{path}.name"), format!("{:?} must be a DNS-1123 label", rule.name));
        } else if !rule_names.insert(rule.name.as_str()) {
            p.add(format!("{path}.name"), format!("duplicate rule name {:?}", rule.name));
        }
        if !known(&rule.arm) {
            p.add(format!("{path}.arm"), format!("unknown arm {:?} (arms: {arm_list})", rule.arm));
        }
        check_rule_match(&rule.matches, &format!("{path}.match"), p);
    }
    for (i, arm) in exp.arms.iter().enumerate() {
        let in_split = ab.split.get(&arm.name).is_some_and(|w| *w > 0);
        // A dark launch (weight 0, mirrored) is measured on its copies of live traffic.
        let mirrored = exp.mirror.as_ref().is_some_and(|m| m.arm == arm.name && m.percent > 0.0);
        if !in_split && !mirrored && !ab.rules.iter().any(|r| r.arm == arm.name) {
            p.add(
                format!("spec.arms[{i}]"),
                format!(
                    "arm {:?} gets no traffic: it has no weight in the split, no rule points at it and it is not mirrored",
                    arm.name
                ),
            );
        }
    }
    if let Some(header) = &ab.region_header {
        check_header_name(header, &format!("{base}.regionHeader"), p);
    }
    if let Some(sticky) = &ab.sticky {
        if !is_cookie_name(&sticky.cookie_name) {
            p.add(format!("{base}.sticky.cookieName"), format!("{:?} is not a valid cookie name", sticky.cookie_name));
        }
        if sticky.max_age_seconds < 1 {
            p.add(format!("{base}.sticky.maxAgeSeconds"), format!("{} must be at least 1", sticky.max_age_seconds));
        }
        if sticky.same_site() == SameSite::None && !sticky.secure {
            p.add(
                format!("{base}.sticky.sameSite"),
                "\"None\" requires secure: true (browsers refuse a SameSite=None cookie without Secure)",
            );
        }
    }
    if routing == Routing::GatewayApi {
        for inverted in crate::plan::precedence::inverted(ab) {
            p.add(format!("{base}.rules[{}]", inverted.later), inverted.message);
        }
    }
    if routing == Routing::Native {
        if !ab.rules.is_empty() && !ab.allow_degraded {
            p.add(format!("{base}.rules"), "header, cookie, user-agent and region rules need a mesh (mesh: istio, or provider: gatewayAPI); set allowDegraded: true to keep only the split");
        }
        if ab.total_replicas.is_none() {
            p.add(format!("{base}.totalReplicas"), "required without a mesh: the split becomes replica ratios");
        }
        let positive = ab.split.values().filter(|w| **w > 0).count();
        if let Some(total) = ab.total_replicas
            && (total as usize) < positive
        {
            p.add(
                format!("{base}.totalReplicas"),
                format!("{total} is fewer than the {positive} arms with a weight: each needs at least one pod"),
            );
        }
        need_deployments(exp, "abTest", p);
    }
}

fn check_rule_match(m: &RuleMatch, path: &str, p: &mut Problems) {
    if m.is_empty() {
        p.add(path, "a rule needs at least one condition (headers, cookies, userAgent or regions)");
    }
    for (name, matcher) in &m.headers {
        let field = format!("{path}.headers.{name}");
        check_header_name(name, &field, p);
        check_string_match(matcher, &field, p);
        if name == "cookie" && !m.cookies.is_empty() {
            p.add(&field, "conflicts with match.cookies, which is matched on the cookie header; use one or the other");
        }
        if name == "user-agent" && m.user_agent.is_some() {
            p.add(&field, "conflicts with match.userAgent; use one or the other");
        }
    }
    if m.cookies.len() > 1 {
        p.add(
            format!("{path}.cookies"),
            "at most one cookie condition per rule: Istio matches one pattern on the cookie header",
        );
    }
    for (name, matcher) in &m.cookies {
        let field = format!("{path}.cookies.{name}");
        if !is_cookie_name(name) {
            p.add(&field, format!("{name:?} is not a valid cookie name"));
        }
        if matcher.prefix.is_some() {
            p.add(format!("{field}.prefix"), "cookies match with exact or regex only");
        }
        check_string_match(matcher, &field, p);
    }
    if let Some(ua) = &m.user_agent {
        check_string_match(ua, &format!("{path}.userAgent"), p);
    }
    for (i, region) in m.regions.iter().enumerate() {
        if region.is_empty() || region.chars().any(|c| c.is_whitespace() || c == ',') {
            p.add(format!("{path}.regions[{i}]"), format!("{region:?} is not a region name"));
        }
    }
}

fn check_string_match(m: &StringMatch, path: &str, p: &mut Problems) {
    let set = [m.exact.is_some(), m.prefix.is_some(), m.regex.is_some()].iter().filter(|x| **x).count();
    if set != 1 {
        p.add(path, "set exactly one of exact, prefix, regex");
    }
    if let Some(re) = &m.regex {
        check_regex(re, &format!("{path}.regex"), p);
    }
}

/// RE2 syntax (the `regex` crate accepts the same language) and Envoy's length bound.
pub(crate) fn check_regex_text(re: &str) -> Result<(), String> {
    if re.len() > MAX_REGEX_LEN {
        return Err(format!("regex is {} characters long, at most {MAX_REGEX_LEN} allowed", re.len()));
    }
    Regex::new(re)
        .map(|_| ())
        .map_err(|e| format!("{re:?} is not a valid RE2 regex: {}", e.to_string().lines().last().unwrap_or_default()))
}

fn check_regex(re: &str, path: &str, p: &mut Problems) {
    if let Err(why) = check_regex_text(re) {
        p.add(path, why);
    }
}

fn check_header_name(name: &str, path: &str, p: &mut Problems) {
    if name.is_empty() {
        p.add(path, "header name must not be empty");
    } else if name.contains(':') {
        p.add(path, format!("{name:?}: header names must not contain ':' (pseudo-headers cannot be matched here)"));
    } else if name.chars().any(|c| c.is_ascii_uppercase()) {
        p.add(path, format!("{name:?}: header names must be lowercase (write {:?})", name.to_ascii_lowercase()));
    } else if !name.bytes().all(is_token_byte) {
        p.add(path, format!("{name:?} is not a valid header name"));
    }
}

fn check_mirror(mirror: &Mirror, exp: &ExperimentSpec, arms: &[String], routing: Routing, p: &mut Problems) {
    if !arms.contains(&mirror.arm) {
        p.add("spec.mirror.arm", format!("unknown arm {:?} (arms: {})", mirror.arm, arms.join(", ")));
    } else if exp.control_arm().is_some_and(|a| a.name == mirror.arm) {
        p.add(
            "spec.mirror.arm",
            format!("{:?} is the control arm: mirroring to it would duplicate live traffic", mirror.arm),
        );
    }
    if !(0.0..=100.0).contains(&mirror.percent) || mirror.percent.is_nan() {
        p.add("spec.mirror.percent", format!("{} is outside 0..100", mirror.percent));
    }
    if routing == Routing::Native {
        p.add("spec.mirror", "mirroring needs a mesh (mesh: istio, or provider: gatewayAPI)");
    }
}

/// The horizon as written, for messages.
fn horizon_text(h: &Horizon) -> String {
    match (h.samples_per_arm, h.duration) {
        (Some(n), None) => format!("samplesPerArm {n}"),
        (None, Some(d)) => format!("duration {d}"),
        (Some(n), Some(d)) => format!("samplesPerArm {n} and duration {d}"),
        (None, None) => "an empty horizon".into(),
    }
}

/// Exactly one of `samplesPerArm` (at least 1) and `duration` (within maxDuration).
fn check_horizon(h: &Horizon, a: &Analysis, p: &mut Problems) {
    match (h.samples_per_arm, h.duration) {
        (Some(_), Some(_)) | (None, None) => p.add(
            "spec.analysis.horizon",
            format!("{} given: set exactly one of samplesPerArm and duration", horizon_text(h)),
        ),
        (Some(n), None) if n < 1 => p.add("spec.analysis.horizon.samplesPerArm", format!("{n} must be at least 1")),
        (None, Some(d)) if d.get().is_zero() => p.add("spec.analysis.horizon.duration", "0s must be longer than zero"),
        (None, Some(d)) if d.get() > a.max_duration() => p.add(
            "spec.analysis.horizon.duration",
            format!(
                "{d} is longer than maxDuration ({}): the test would never run",
                HumanDuration::from(a.max_duration())
            ),
        ),
        _ => {}
    }
}

fn check_analysis(a: &Analysis, p: &mut Problems) {
    if let Some(alpha) = a.alpha
        && !(alpha > 0.0 && alpha <= 0.5)
    {
        p.add("spec.analysis.alpha", format!("{alpha} must be in (0, 0.5]"));
    }
    for (field, duration) in [("interval", a.interval), ("maxDuration", a.max_duration)] {
        if duration.is_some_and(|d| d.get().is_zero()) {
            p.add(format!("spec.analysis.{field}"), "must be longer than zero");
        }
    }
    if let Some(n) = a.min_samples_per_arm
        && n < 0
    {
        p.add("spec.analysis.minSamplesPerArm", format!("{n} must not be negative"));
    }
    match (&a.method, &a.horizon) {
        (Method::FixedHorizon, None) => p.add(
            "spec.analysis.horizon",
            "required for method fixedHorizon: the test runs once, at horizon.samplesPerArm or horizon.duration (use sequential to look every interval)",
        ),
        (Method::Sequential | Method::Bayesian, Some(h)) => p.add(
            "spec.analysis.horizon",
            format!(
                "only method fixedHorizon has a horizon (method {}, horizon {})",
                if a.method == Method::Sequential { "sequential" } else { "bayesian" },
                horizon_text(h)
            ),
        ),
        (Method::FixedHorizon, Some(h)) => check_horizon(h, a, p),
        (Method::Sequential | Method::Bayesian, None) => {}
    }
    if let Some(min) = a.min_duration
        && min.get() > a.max_duration()
    {
        p.add(
            "spec.analysis.minDuration",
            format!(
                "{min} must not be longer than maxDuration ({}): nothing could ever be promoted",
                HumanDuration::from(a.max_duration())
            ),
        );
    }
    if let Some(prom) = a.provider.as_ref().and_then(|pr| pr.prometheus.as_ref())
        && !(prom.address.starts_with("http://") || prom.address.starts_with("https://"))
    {
        p.add(
            "spec.analysis.provider.prometheus.address",
            format!("{:?} must be an http:// or https:// URL", prom.address),
        );
    }
    let mut names = BTreeSet::new();
    for (i, m) in a.metrics.iter().enumerate() {
        let path = format!("spec.analysis.metrics[{i}]");
        if !is_dns1123_label(&m.name) {
            p.add(format!("{path}.name"), format!("{:?} must be a DNS-1123 label", m.name));
        } else if !names.insert(m.name.as_str()) {
            p.add(format!("{path}.name"), format!("duplicate metric name {:?}", m.name));
        }
        match m.builtin {
            Some(_) if m.success_query.is_some() || m.trial_query.is_some() => {
                p.add(&path, "set either builtin or successQuery/trialQuery, not both")
            }
            Some(Builtin::IstioLatency) if m.threshold_ms.is_none() => {
                p.add(format!("{path}.thresholdMs"), "required for istio-latency: slower requests count as failures")
            }
            Some(_) => {}
            None if m.success_query.is_none() || m.trial_query.is_none() => {
                p.add(&path, "needs a builtin or both successQuery and trialQuery")
            }
            None => {}
        }
        // Without a margin harm must be shown below zero, which identical arms never show: the
        // gate could not pass. The suggested values are docs/statistics.md's table.
        if m.role == Role::Guardrail && m.margin.is_none() {
            let suggested = match m.builtin {
                Some(Builtin::IstioErrorRate) => "e.g. 0.002 to 0.01 (0.2 to 1 percentage points of errors)",
                Some(Builtin::IstioLatency) => {
                    "e.g. 0.01 to 0.02 (1 to 2 points more requests slower than thresholdMs)"
                }
                None => "the largest acceptable harm in the metric's own unit",
            };
            p.add(format!("{path}.margin"), format!("required for guardrail {:?}: {suggested}", m.name));
        }
        // Guessing a guardrail's direction could invert it: it would roll back on improvement.
        let named_lower = m.name.contains("error") || m.name.contains("latency");
        if m.role == Role::Guardrail && m.direction.is_none() && m.builtin.is_none() && !named_lower {
            p.add(format!("{path}.direction"), format!("required for guardrail {:?}: increase or decrease", m.name));
        }
        if m.role == Role::Goal && m.margin.is_some() {
            p.add(format!("{path}.margin"), "margins apply to guardrails only");
        }
        if let Some(margin) = m.margin
            && !(margin >= 0.0 && margin.is_finite())
        {
            p.add(format!("{path}.margin"), format!("{margin} must be a non-negative number"));
        }
    }
}

fn check_label(key: &str, value: &str) -> Result<(), String> {
    let (prefix, name) = key.rsplit_once('/').map_or((None, key), |(p, n)| (Some(p), n));
    let name_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && s.as_bytes()[0].is_ascii_alphanumeric()
            && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
    };
    if prefix.is_some_and(|p| !is_dns1123_subdomain(p)) || !name_ok(name) {
        return Err(format!("{key:?} is not a valid label key"));
    }
    if !value.is_empty() && !name_ok(value) {
        return Err(format!("{value:?} is not a valid label value"));
    }
    Ok(())
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_cookie_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(is_token_byte)
}
