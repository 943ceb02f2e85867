//! Istio's Telemetry API as the sidecars apply it to the standard metrics: the
//! `metrics[].overrides[].tagOverrides` of `telemetry.istio.io/v1` `Telemetry` objects add
//! (`UPSERT`) or drop (`REMOVE`) labels of `istio_requests_total` and
//! `istio_request_duration_milliseconds`, with values computed by a CEL expression over the
//! request (`request.host`, `request.headers`, `request.path`, `request.method`).
//!
//! Modelled: the destination-reported metrics (modes `SERVER` and `CLIENT_AND_SERVER`; the
//! simulated clients come through a gateway no Telemetry selects), metrics `ALL_METRICS`,
//! `REQUEST_COUNT` and `REQUEST_DURATION`, providers absent or listing `prometheus`. A Telemetry
//! applies to the pods of its namespace that `spec.selector.matchLabels` selects (all of them
//! without a selector); one in `istio-system` without a selector applies mesh-wide. Overrides are
//! applied mesh-wide first, then namespace-wide, then workload-specific (by name within a level),
//! so the most specific one wins a tag, as Istio merges them. Telemetries using `targetRef(s)`
//! (Gateway API attachment) are not modelled and are skipped. An expression that does not compile
//! or evaluate to a string gives `unknown`, as the proxy does.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Deserialize;
use serde_json::Value;

use super::request::Request;

/// Istio's root namespace: a Telemetry there without a selector applies to the whole mesh.
const ROOT_NAMESPACE: &str = "istio-system";
/// What a failed expression yields.
const UNKNOWN: &str = "unknown";

/// The parts of a `Telemetry` read here.
#[derive(Deserialize)]
struct Telemetry {
    metadata: Metadata,
    #[serde(default)]
    spec: Spec,
}

#[derive(Deserialize)]
struct Metadata {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    selector: Option<Selector>,
    target_ref: Option<Value>,
    target_refs: Option<Value>,
    #[serde(default)]
    metrics: Vec<MetricsConfig>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Selector {
    #[serde(default)]
    match_labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct MetricsConfig {
    providers: Option<Vec<Provider>>,
    #[serde(default)]
    overrides: Vec<Override>,
}

#[derive(Deserialize)]
struct Provider {
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Override {
    #[serde(default, rename = "match")]
    matches: Match,
    #[serde(default)]
    tag_overrides: BTreeMap<String, TagOverride>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Match {
    metric: Option<String>,
    custom_metric: Option<String>,
    mode: Option<String>,
}

#[derive(Deserialize)]
struct TagOverride {
    operation: Option<String>,
    value: Option<String>,
}

/// Which of the two modelled standard metrics a tag override changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Targets {
    pub requests: bool,
    pub duration: bool,
}

/// One tag override, ready to apply.
#[derive(Debug)]
pub(crate) struct Tag {
    pub name: String,
    pub action: Action,
    pub targets: Targets,
}

#[derive(Debug)]
pub(crate) enum Action {
    Upsert(Expression),
    Remove,
}

/// A CEL expression, compiled once; `None` when it does not compile.
pub(crate) struct Expression {
    source: String,
    program: Option<cel::Program>,
    /// Whether a failure has been logged, so that a broken expression warns once, not per request.
    warned: AtomicBool,
}

impl std::fmt::Debug for Expression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Expression").field(&self.source).finish()
    }
}

impl Expression {
    pub(crate) fn compile(source: &str) -> Self {
        let program = cel::Program::compile(source)
            .map_err(|e| tracing::warn!("Telemetry tag expression {source:?} does not compile: {e}"))
            .ok();
        Expression { source: source.into(), program, warned: AtomicBool::new(false) }
    }

    /// The value for `request`, `unknown` when the expression fails or is not a string.
    pub(crate) fn evaluate(&self, request: &cel::Value) -> String {
        let Some(program) = &self.program else { return UNKNOWN.into() };
        let result = ROOT.with(|root| {
            let mut scope = root.new_inner_scope();
            scope.add_variable_from_value("request", request.clone());
            program.execute(&scope)
        });
        match result {
            Ok(cel::Value::String(s)) => s.to_string(),
            other => {
                if !self.warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!("Telemetry tag expression {:?} gave {other:?}; the tag is {UNKNOWN}", self.source);
                }
                UNKNOWN.into()
            }
        }
    }
}

thread_local! {
    /// CEL's standard functions, registered once per thread rather than per request.
    static ROOT: cel::Context<'static> = cel::Context::default();
}

/// The Telemetries of a snapshot, compiled.
#[derive(Debug, Default)]
pub(crate) struct Telemetries(Vec<Compiled>);

#[derive(Debug)]
struct Compiled {
    namespace: String,
    name: String,
    /// `None`: the whole namespace (or mesh, in the root namespace).
    selector: Option<BTreeMap<String, String>>,
    tags: Vec<Arc<Tag>>,
}

impl Compiled {
    /// 0 mesh-wide, 1 namespace-wide, 2 workload-specific; `None` when it does not apply.
    fn level(&self, namespace: &str, labels: &BTreeMap<String, String>) -> Option<u8> {
        match &self.selector {
            Some(s) if self.namespace == namespace => s.iter().all(|(k, v)| labels.get(k) == Some(v)).then_some(2),
            Some(_) => None,
            None if self.namespace == namespace => Some(1),
            None => (self.namespace == ROOT_NAMESPACE).then_some(0),
        }
    }
}

impl Telemetries {
    /// Compiles `telemetry.istio.io` Telemetry objects as the store holds them; ones that do not
    /// parse or attach by `targetRef(s)` are skipped with a warning.
    pub(crate) fn compile(objects: &[Value]) -> Self {
        let mut out: Vec<Compiled> = objects
            .iter()
            .filter_map(|o| {
                let t: Telemetry = serde_json::from_value(o.clone())
                    .map_err(|e| tracing::warn!(name = %o["metadata"]["name"], "skipping a Telemetry that does not parse: {e}"))
                    .ok()?;
                if t.spec.target_ref.is_some() || t.spec.target_refs.is_some() {
                    tracing::warn!(name = %t.metadata.name, "skipping a Telemetry attached by targetRef (not modelled)");
                    return None;
                }
                Some(Compiled {
                    namespace: t.metadata.namespace.unwrap_or_else(|| "default".into()),
                    name: t.metadata.name,
                    selector: t.spec.selector.map(|s| s.match_labels),
                    tags: t.spec.metrics.iter().filter(|m| to_prometheus(m)).flat_map(|m| tags(&m.overrides)).collect(),
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        Telemetries(out)
    }

    /// The tag overrides for the server-side metrics of a pod, least specific first.
    pub(crate) fn for_pod(&self, namespace: &str, labels: &BTreeMap<String, String>) -> Vec<Arc<Tag>> {
        let mut applying: Vec<(u8, &Compiled)> =
            self.0.iter().filter_map(|t| Some((t.level(namespace, labels)?, t))).collect();
        // Stable: within a level, the name order of `compile` stays.
        applying.sort_by_key(|(level, _)| *level);
        applying.into_iter().flat_map(|(_, t)| t.tags.iter().cloned()).collect()
    }
}

/// Providers absent (the default provider, Prometheus in a default install) or listing it.
fn to_prometheus(m: &MetricsConfig) -> bool {
    m.providers.as_ref().is_none_or(|p| p.iter().any(|p| p.name == "prometheus"))
}

fn tags(overrides: &[Override]) -> Vec<Arc<Tag>> {
    let mut out = Vec::new();
    for o in overrides {
        let server = o.matches.mode.as_deref().is_none_or(|m| m == "SERVER" || m == "CLIENT_AND_SERVER");
        let targets = match (o.matches.metric.as_deref(), &o.matches.custom_metric) {
            (_, Some(_)) => Targets::default(),
            (None | Some("ALL_METRICS"), None) => Targets { requests: true, duration: true },
            (Some("REQUEST_COUNT"), None) => Targets { requests: true, duration: false },
            (Some("REQUEST_DURATION"), None) => Targets { requests: false, duration: true },
            (Some(_), None) => Targets::default(),
        };
        if !server || targets == Targets::default() {
            continue;
        }
        for (name, t) in &o.tag_overrides {
            let action = match t.operation.as_deref() {
                Some("REMOVE") => Action::Remove,
                // UPSERT is the default operation.
                _ => Action::Upsert(Expression::compile(t.value.as_deref().unwrap_or_default())),
            };
            out.push(Arc::new(Tag { name: name.clone(), action, targets }));
        }
    }
    out
}

/// Labels a set of tag overrides gives one request: name → value (`None`: removed), per metric.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct Overrides {
    pub requests: Vec<(String, Option<String>)>,
    pub duration: Vec<(String, Option<String>)>,
}

/// Applies `tags` (least specific first: a later one wins a tag) to a request to `host`.
pub(crate) fn evaluate(tags: &[Arc<Tag>], req: &Request, host: &str) -> Overrides {
    if tags.is_empty() {
        return Overrides::default();
    }
    let request = attributes(req, host);
    let (mut requests, mut duration) = (BTreeMap::new(), BTreeMap::new());
    for tag in tags {
        let value = match &tag.action {
            Action::Upsert(e) => Some(e.evaluate(&request)),
            Action::Remove => None,
        };
        if tag.targets.requests {
            requests.insert(tag.name.clone(), value.clone());
        }
        if tag.targets.duration {
            duration.insert(tag.name.clone(), value);
        }
    }
    Overrides { requests: requests.into_iter().collect(), duration: duration.into_iter().collect() }
}

/// The CEL variable `request`: host, lowercase headers (repeated ones joined), path, method.
fn attributes(req: &Request, host: &str) -> cel::Value {
    let headers: HashMap<String, String> =
        req.headers.iter().map(|(name, _)| (name.clone(), req.header_value(name).unwrap_or_default())).collect();
    let fields: HashMap<String, cel::Value> = HashMap::from([
        ("host".to_string(), host.into()),
        ("headers".to_string(), cel::Value::Map(headers.into())),
        ("path".to_string(), req.path.as_str().into()),
        ("method".to_string(), req.method.as_str().into()),
    ]);
    cel::Value::Map(fields.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The expression of the experiment contract (docs/statistics.md, cohorts).
    const COHORT: &str = "request.host.matches('-shadow(:[0-9]+)?$') ? 'mirrored' : ('x-forklane-cohort' in request.headers ? request.headers['x-forklane-cohort'] : 'none')";

    fn upsert(expr: &str) -> Vec<Arc<Tag>> {
        let targets = Targets { requests: true, duration: true };
        vec![Arc::new(Tag { name: "t".into(), action: Action::Upsert(Expression::compile(expr)), targets })]
    }

    fn value(tags: &[Arc<Tag>], req: &Request, host: &str) -> Option<String> {
        evaluate(tags, req, host).requests[0].1.clone()
    }

    #[test]
    fn the_cohort_expression_reads_the_header_and_the_shadow_host() {
        let tags = upsert(COHORT);
        let host = "my-app.default.svc.cluster.local";
        let assigned = Request::get("/").header("X-Forklane-Cohort", "assigned");
        assert_eq!(value(&tags, &assigned, host).as_deref(), Some("assigned"));
        assert_eq!(value(&tags, &Request::get("/"), host).as_deref(), Some("none"));
        assert_eq!(value(&tags, &assigned, &format!("{host}-shadow")).as_deref(), Some("mirrored"));
        // Envoy puts the suffix before a port.
        assert_eq!(value(&tags, &assigned, "my-app-shadow:8080").as_deref(), Some("mirrored"));
        assert_eq!(value(&tags, &assigned, "my-app-shadowing:8080").as_deref(), Some("assigned"));
    }

    #[test]
    fn a_broken_expression_gives_unknown() {
        let req = Request::get("/");
        // Istio's pre-CEL `a | b` default syntax does not compile as CEL.
        assert_eq!(value(&upsert("request.headers['x'] | 'none'"), &req, "h").as_deref(), Some(UNKNOWN));
        // A missing key fails at evaluation; a non-string result is not a tag value.
        assert_eq!(value(&upsert("request.headers['x']"), &req, "h").as_deref(), Some(UNKNOWN));
        assert_eq!(value(&upsert("1 + 1"), &req, "h").as_deref(), Some(UNKNOWN));
        assert_eq!(value(&upsert("request.method + ' ' + request.path"), &req, "h").as_deref(), Some("GET /"));
    }

    fn telemetry(namespace: &str, name: &str, selector: Option<Value>, overrides: Value) -> Value {
        let mut spec = json!({"metrics": [{"providers": [{"name": "prometheus"}], "overrides": overrides}]});
        if let Some(s) = selector {
            spec["selector"] = json!({"matchLabels": s});
        }
        json!({"apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec})
    }

    fn names(tags: &[Arc<Tag>]) -> Vec<(String, Targets)> {
        tags.iter().map(|t| (t.name.clone(), t.targets)).collect()
    }

    #[test]
    fn selects_pods_by_namespace_and_labels_most_specific_last() {
        let set = |tag: &str, expr: &str| json!({tag: {"operation": "UPSERT", "value": expr}});
        let all = json!([{"match": {"metric": "ALL_METRICS", "mode": "SERVER"}, "tagOverrides": set("a", "'ns'")}]);
        let objects = [
            telemetry("shop", "by-app", Some(json!({"app": "checkout"})), json!([{"tagOverrides": set("a", "'app'")}])),
            telemetry("shop", "namespace", None, all),
            telemetry("istio-system", "mesh", None, json!([{"tagOverrides": set("m", "'mesh'")}])),
            telemetry("other", "elsewhere", None, json!([{"tagOverrides": set("x", "'x'")}])),
        ];
        let t = Telemetries::compile(&objects);
        let checkout = BTreeMap::from([("app".to_string(), "checkout".to_string())]);
        let tags = t.for_pod("shop", &checkout);
        let both = Targets { requests: true, duration: true };
        assert_eq!(names(&tags), [("m".into(), both), ("a".into(), both), ("a".into(), both)]);
        let o = evaluate(&tags, &Request::get("/"), "h");
        assert_eq!(o.requests, [("a".into(), Some("app".into())), ("m".into(), Some("mesh".into()))]);
        assert_eq!(names(&t.for_pod("shop", &BTreeMap::new())).len(), 2, "no app label: mesh and namespace");
    }

    #[test]
    fn only_server_side_request_metrics_to_prometheus_are_changed() {
        let set = json!({"t": {"value": "'v'"}, "r": {"operation": "REMOVE"}});
        let overrides = json!([
            {"match": {"metric": "REQUEST_COUNT", "mode": "CLIENT_AND_SERVER"}, "tagOverrides": set},
            {"match": {"metric": "REQUEST_DURATION"}, "tagOverrides": {"d": {"value": "'v'"}}},
            {"match": {"metric": "ALL_METRICS", "mode": "CLIENT"}, "tagOverrides": {"client": {"value": "'v'"}}},
            {"match": {"metric": "TCP_SENT_BYTES"}, "tagOverrides": {"tcp": {"value": "'v'"}}},
            {"match": {"customMetric": "my_metric"}, "tagOverrides": {"custom": {"value": "'v'"}}},
        ]);
        let mut other_provider = telemetry("shop", "b", None, json!([{"tagOverrides": {"o": {"value": "'v'"}}}]));
        other_provider["spec"]["metrics"][0]["providers"] = json!([{"name": "stackdriver"}]);
        let mut by_ref = telemetry("shop", "c", None, json!([{"tagOverrides": {"g": {"value": "'v'"}}}]));
        by_ref["spec"]["targetRefs"] = json!([{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "gw"}]);
        let t = Telemetries::compile(&[telemetry("shop", "a", None, overrides), other_provider, by_ref]);
        let o = evaluate(&t.for_pod("shop", &BTreeMap::new()), &Request::get("/"), "h");
        assert_eq!(o.requests, [("r".into(), None), ("t".into(), Some("v".into()))]);
        assert_eq!(o.duration, [("d".into(), Some("v".into()))]);
    }
}
