//! Pre-flight checks for the VirtualService/DestinationRule pair Forklane
//! renders, mirroring istiod's validating webhook (istio/istio
//! `pkg/config/validation/validation.go`, `virtualservice.go`) and
//! `istioctl analyze` (IST0101 missing subset, IST0130 unreachable rule),
//! plus stricter Forklane rules where marked. The CRD schema itself (types,
//! required fields, one-ofs) is covered by `tests/support/istio_schema.rs`.

mod checks;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use self::checks::{
    fqdn, match_header_problem, other_header_operation_problem, regex_problem, request_set_header_problem,
};
use super::destinationrule::DestinationRule;
use super::virtualservice::*;
use crate::api::names::is_dns1123_label;

/// One rule broken by a rendered object.
#[derive(Clone, Debug, PartialEq)]
pub struct RoutingProblem {
    /// `VirtualService/<name>` or `DestinationRule/<name>`.
    pub object: String,
    /// Field path inside the object, e.g. `spec.http[2].route[0].weight`.
    pub path: String,
    /// The offending value as JSON (`-5`, `"Canary"`, `null` if absent).
    pub value: String,
    pub rule: Rule,
    pub message: String,
}

/// The rule a [`RoutingProblem`] breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// istiod: `weight %d < 0`.
    NegativeWeight,
    /// Forklane: the weights of an http route's destinations sum to 100.
    /// (istiod only rejects a zero sum since 1.15; weights are relative.)
    WeightSum,
    /// istiod header-name checks for matches and header operations; lowercase is Forklane's.
    HeaderName,
    /// istiod/CRD: a string match sets exactly one of exact|prefix|regex, prefix non-empty.
    StringMatch,
    /// istiod `validateStringMatchRegexp`: non-empty, <= 1024 bytes, compiles as RE2.
    Regex,
    /// `istioctl analyze` IST0101: no DestinationRule for the host defines the subset.
    MissingSubset,
    /// `istioctl analyze` IST0130: a route without match that is not the last one.
    UnreachableRoute,
    /// istiod: mirror percentage within 0..=100.
    MirrorPercentage,
    /// istiod `validateSubsetName`: a DNS-1123 label.
    SubsetName,
    /// istiod: duplicate subset names in one DestinationRule.
    DuplicateSubset,
    /// Forklane: a subset selects pods by at least one label.
    SubsetLabels,
}

impl fmt::Display for RoutingProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} = {}: {} ({:?})", self.object, self.path, self.value, self.message, self.rule)
    }
}

/// Checks `vs` and the DestinationRules that may define its subsets; an empty
/// result means istiod would admit both and `istioctl analyze` finds no
/// missing subset. DestinationRules are taken to live in the VirtualService's
/// namespace when they have none.
pub fn validate_routing(vs: &VirtualService, drs: &[DestinationRule]) -> Vec<RoutingProblem> {
    let namespace = vs.metadata.namespace.as_deref().unwrap_or("default");
    let mut out = Problems { object: object_name("VirtualService", &vs.metadata.name), found: Vec::new() };
    let subsets = known_subsets(drs, namespace);
    let routes = vs.spec.http.as_deref().unwrap_or_default();
    for (i, route) in routes.iter().enumerate() {
        let path = format!("spec.http[{i}]");
        check_route(&mut out, &path, route, &|host, subset| {
            subsets.contains(&(fqdn(host, namespace), subset.to_string()))
        });
        if route.r#match.as_ref().is_none_or(Vec::is_empty) && i + 1 < routes.len() {
            out.push(
                &path,
                "match",
                "null".into(),
                Rule::UnreachableRoute,
                "a route without match catches all traffic and must be the last http route",
            );
        }
    }
    let mut found = out.found;
    for dr in drs {
        found.extend(check_destination_rule(dr));
    }
    found
}

/// Collects problems for one object.
struct Problems {
    object: String,
    found: Vec<RoutingProblem>,
}

impl Problems {
    fn push(&mut self, base: &str, field: &str, value: String, rule: Rule, message: impl Into<String>) {
        let path = if field.is_empty() { base.to_string() } else { format!("{base}.{field}") };
        self.found.push(RoutingProblem { object: self.object.clone(), path, value, rule, message: message.into() });
    }
}

fn object_name(kind: &str, name: &Option<String>) -> String {
    format!("{kind}/{}", name.as_deref().unwrap_or("<unnamed>"))
}

fn json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "<unserializable>".into())
}

/// (FQDN host, subset name) pairs defined by the DestinationRules, as IST0101 resolves them.
fn known_subsets(drs: &[DestinationRule], vs_namespace: &str) -> BTreeSet<(String, String)> {
    drs.iter()
        .flat_map(|dr| {
            let ns = dr.metadata.namespace.as_deref().unwrap_or(vs_namespace);
            let host = fqdn(&dr.spec.host, ns);
            dr.spec.subsets.iter().flatten().map(move |s| (host.clone(), s.name.clone()))
        })
        .collect()
}

fn check_route(out: &mut Problems, path: &str, route: &VirtualServiceHttp, subset_exists: &dyn Fn(&str, &str) -> bool) {
    for (j, m) in route.r#match.iter().flatten().enumerate() {
        check_match(out, &format!("{path}.match[{j}]"), m);
    }
    if let Some(h) = &route.headers {
        let (req, resp) = (h.request.as_ref(), h.response.as_ref());
        check_header_ops(
            out,
            &format!("{path}.headers.request"),
            req.and_then(|r| r.add.as_ref()),
            req.and_then(|r| r.set.as_ref()),
            req.and_then(|r| r.remove.as_ref()),
            true,
        );
        check_header_ops(
            out,
            &format!("{path}.headers.response"),
            resp.and_then(|r| r.add.as_ref()),
            resp.and_then(|r| r.set.as_ref()),
            resp.and_then(|r| r.remove.as_ref()),
            false,
        );
    }
    check_destinations(out, path, route.route.as_deref().unwrap_or_default(), subset_exists);
    check_mirrors(out, path, route, subset_exists);
}

fn check_destinations(
    out: &mut Problems,
    path: &str,
    dests: &[VirtualServiceHttpRoute],
    subset_exists: &dyn Fn(&str, &str) -> bool,
) {
    let mut sum = 0i64;
    for (k, d) in dests.iter().enumerate() {
        let dpath = format!("{path}.route[{k}]");
        if let Some(w) = d.weight {
            sum += i64::from(w);
            if w < 0 {
                out.push(&dpath, "weight", w.to_string(), Rule::NegativeWeight, "weight must not be negative");
            }
        }
        check_subset_ref(
            out,
            &format!("{dpath}.destination"),
            &d.destination.host,
            d.destination.subset.as_deref(),
            subset_exists,
        );
        if let Some(h) = &d.headers {
            let (req, resp) = (h.request.as_ref(), h.response.as_ref());
            check_header_ops(
                out,
                &format!("{dpath}.headers.request"),
                req.and_then(|r| r.add.as_ref()),
                req.and_then(|r| r.set.as_ref()),
                req.and_then(|r| r.remove.as_ref()),
                true,
            );
            check_header_ops(
                out,
                &format!("{dpath}.headers.response"),
                resp.and_then(|r| r.add.as_ref()),
                resp.and_then(|r| r.set.as_ref()),
                resp.and_then(|r| r.remove.as_ref()),
                false,
            );
        }
    }
    // A lone destination without weight gets all traffic (Istio treats it as 100).
    let lone_unweighted = dests.len() == 1 && dests[0].weight.is_none();
    if !dests.is_empty() && !lone_unweighted && sum != 100 {
        let weights: Vec<Option<i32>> = dests.iter().map(|d| d.weight).collect();
        out.push(
            path,
            "route[*].weight",
            json(&weights),
            Rule::WeightSum,
            format!("destination weights sum to {sum}, not 100"),
        );
    }
}

fn check_mirrors(
    out: &mut Problems,
    path: &str,
    route: &VirtualServiceHttp,
    subset_exists: &dyn Fn(&str, &str) -> bool,
) {
    if let Some(m) = &route.mirror {
        check_subset_ref(out, &format!("{path}.mirror"), &m.host, m.subset.as_deref(), subset_exists);
    }
    check_percentage(out, path, "mirrorPercentage.value", route.mirror_percentage.as_ref().and_then(|p| p.value));
    for (k, m) in route.mirrors.iter().flatten().enumerate() {
        let mpath = format!("{path}.mirrors[{k}]");
        check_subset_ref(
            out,
            &format!("{mpath}.destination"),
            &m.destination.host,
            m.destination.subset.as_deref(),
            subset_exists,
        );
        check_percentage(out, &mpath, "percentage.value", m.percentage.as_ref().and_then(|p| p.value));
    }
}

fn check_percentage(out: &mut Problems, path: &str, field: &str, value: Option<f64>) {
    if let Some(v) = value.filter(|v| !(0.0..=100.0).contains(v)) {
        out.push(path, field, v.to_string(), Rule::MirrorPercentage, "mirror percentage must be within 0..=100");
    }
}

fn check_subset_ref(
    out: &mut Problems,
    path: &str,
    host: &str,
    subset: Option<&str>,
    subset_exists: &dyn Fn(&str, &str) -> bool,
) {
    let Some(subset) = subset else { return };
    if !is_dns1123_label(subset) {
        out.push(path, "subset", json(subset), Rule::SubsetName, "subset name must be a DNS-1123 label");
    } else if !subset_exists(host, subset) {
        out.push(
            path,
            "subset",
            json(subset),
            Rule::MissingSubset,
            format!("no DestinationRule for host {host:?} defines subset {subset:?}"),
        );
    }
}

/// The three alternatives of Istio's `StringMatch`; kopium emits one struct per use site.
trait StringMatch {
    fn alternatives(&self) -> [(&'static str, Option<&str>); 3];
}

macro_rules! impl_string_match {
    ($($ty:ty),*) => {$(
        impl StringMatch for $ty {
            fn alternatives(&self) -> [(&'static str, Option<&str>); 3] {
                [("exact", self.exact.as_deref()), ("prefix", self.prefix.as_deref()), ("regex", self.regex.as_deref())]
            }
        }
    )*};
}

impl_string_match!(
    VirtualServiceHttpMatchUri,
    VirtualServiceHttpMatchScheme,
    VirtualServiceHttpMatchMethod,
    VirtualServiceHttpMatchAuthority,
    VirtualServiceHttpMatchHeaders,
    VirtualServiceHttpMatchQueryParams,
    VirtualServiceHttpMatchWithoutHeaders
);

fn check_match(out: &mut Problems, path: &str, m: &VirtualServiceHttpMatch) {
    let singles: [(&str, Option<&dyn StringMatch>); 4] = [
        ("uri", m.uri.as_ref().map(|s| s as &dyn StringMatch)),
        ("scheme", m.scheme.as_ref().map(|s| s as &dyn StringMatch)),
        ("method", m.method.as_ref().map(|s| s as &dyn StringMatch)),
        ("authority", m.authority.as_ref().map(|s| s as &dyn StringMatch)),
    ];
    for (field, sm) in singles {
        if let Some(sm) = sm {
            check_string_match(out, &format!("{path}.{field}"), sm);
        }
    }
    check_keyed(out, path, "headers", m.headers.as_ref(), true);
    check_keyed(out, path, "withoutHeaders", m.without_headers.as_ref(), true);
    check_keyed(out, path, "queryParams", m.query_params.as_ref(), false);
}

fn check_keyed<T: StringMatch>(
    out: &mut Problems,
    path: &str,
    field: &str,
    map: Option<&BTreeMap<String, T>>,
    header_keys: bool,
) {
    for (key, sm) in map.into_iter().flatten() {
        let kpath = format!("{path}.{field}[{}]", json(key));
        if header_keys && let Some(msg) = match_header_problem(key) {
            out.push(&kpath, "", json(key), Rule::HeaderName, msg);
        }
        check_string_match(out, &kpath, sm);
    }
}

fn check_string_match(out: &mut Problems, path: &str, sm: &dyn StringMatch) {
    let set: Vec<(&str, &str)> = sm.alternatives().into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect();
    match set.as_slice() {
        [("prefix", "")] => {
            out.push(path, "prefix", "\"\"".into(), Rule::StringMatch, "prefix string match should not be empty")
        }
        [("regex", re)] => {
            if let Some(msg) = regex_problem(re) {
                out.push(path, "regex", json(re), Rule::Regex, msg);
            }
        }
        [_] => {}
        _ => {
            let names: Vec<&str> = set.iter().map(|(k, _)| *k).collect();
            out.push(
                path,
                "",
                json(&names),
                Rule::StringMatch,
                "a string match sets exactly one of exact, prefix, regex",
            );
        }
    }
}

/// `request` selects istiod's rules for request add/set (which may rewrite `:authority`).
fn check_header_ops(
    out: &mut Problems,
    path: &str,
    add: Option<&BTreeMap<String, String>>,
    set: Option<&BTreeMap<String, String>>,
    remove: Option<&Vec<String>>,
    request: bool,
) {
    let upsert_check = if request { request_set_header_problem } else { other_header_operation_problem };
    let upserts = [("add", add), ("set", set)];
    for (op, map) in upserts {
        for name in map.into_iter().flat_map(BTreeMap::keys) {
            if let Some(msg) = upsert_check(name) {
                out.push(path, &format!("{op}[{}]", json(name)), json(name), Rule::HeaderName, msg);
            }
        }
    }
    for (i, name) in remove.into_iter().flatten().enumerate() {
        if let Some(msg) = other_header_operation_problem(name) {
            out.push(path, &format!("remove[{i}]"), json(name), Rule::HeaderName, msg);
        }
    }
}

fn check_destination_rule(dr: &DestinationRule) -> Vec<RoutingProblem> {
    let mut out = Problems { object: object_name("DestinationRule", &dr.metadata.name), found: Vec::new() };
    let mut seen = BTreeSet::new();
    for (i, subset) in dr.spec.subsets.iter().flatten().enumerate() {
        let path = format!("spec.subsets[{i}]");
        if !is_dns1123_label(&subset.name) {
            out.push(&path, "name", json(&subset.name), Rule::SubsetName, "subset name must be a DNS-1123 label");
        }
        if !seen.insert(subset.name.as_str()) {
            out.push(&path, "name", json(&subset.name), Rule::DuplicateSubset, "duplicate subset name");
        }
        // istiod admits a label-less subset, but it selects every pod of the
        // host, which would silently turn a canary into the whole fleet.
        if subset.labels.as_ref().is_none_or(BTreeMap::is_empty) {
            out.push(
                &path,
                "labels",
                json(&subset.labels),
                Rule::SubsetLabels,
                "subset must select pods by at least one label",
            );
        }
    }
    out.found
}
