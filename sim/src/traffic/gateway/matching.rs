//! One `matches` entry of an HTTPRoute rule: path, headers, query parameters and method, all of
//! which must hold. Regular expressions match the whole value, as Envoy's RE2 `safe_regex` does.

use regex::Regex;

use crate::traffic::request::Request;
use forklane_core::gateway::{
    HttpRouteRulesMatches, HttpRouteRulesMatchesHeadersType, HttpRouteRulesMatchesPathType,
    HttpRouteRulesMatchesQueryParamsType,
};

#[derive(Debug)]
pub(crate) struct Match {
    pub path: PathMatch,
    /// Uppercase, e.g. `GET`.
    pub method: Option<String>,
    /// Lowercase names (header names are case-insensitive).
    pub headers: Vec<(String, ValueMatch)>,
    /// Names as given (query parameter names are case-sensitive).
    pub query: Vec<(String, ValueMatch)>,
}

#[derive(Debug)]
pub(crate) enum PathMatch {
    Exact(String),
    /// Matches whole path segments: `/v2` matches `/v2`, `/v2/` and `/v2/x`, not `/v2x`.
    Prefix(String),
    /// The pattern (whose length ranks it) and the anchored regex; `None` when it does not
    /// compile (the API server's validation would have refused it): it never matches.
    Regex(String, Option<Regex>),
}

#[derive(Debug)]
pub(crate) enum ValueMatch {
    Exact(String),
    Regex(Option<Regex>),
}

fn anchored(pattern: &str) -> Option<Regex> {
    Regex::new(&format!("^(?:{pattern})$"))
        .map_err(|e| tracing::warn!("HTTPRoute regex {pattern:?} does not compile: {e}"))
        .ok()
}

impl ValueMatch {
    fn new(regex: bool, value: &str) -> Self {
        if regex { ValueMatch::Regex(anchored(value)) } else { ValueMatch::Exact(value.to_string()) }
    }

    fn holds(&self, value: Option<&str>) -> bool {
        let Some(value) = value else { return false };
        match self {
            ValueMatch::Exact(e) => value == e,
            ValueMatch::Regex(re) => re.as_ref().is_some_and(|re| re.is_match(value)),
        }
    }
}

/// Whether `path` starts with the path segments of `prefix` (a trailing `/` of the prefix is
/// ignored, so `/v2/` matches `/v2` too).
pub(crate) fn prefix_holds(prefix: &str, path: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty() || path == prefix || path.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/'))
}

/// The first value of query parameter `name` (as Envoy matches it), without percent-decoding.
fn query_value<'r>(req: &'r Request, name: &str) -> Option<&'r str> {
    let (_, query) = req.path.split_once('?')?;
    query.split('&').map(|pair| pair.split_once('=').unwrap_or((pair, ""))).find(|(n, _)| *n == name).map(|(_, v)| v)
}

impl Match {
    /// What a rule without `matches` has: `PathPrefix /`, matching every request.
    pub(crate) fn any() -> Self {
        Match { path: PathMatch::Prefix("/".into()), method: None, headers: Vec::new(), query: Vec::new() }
    }

    pub(crate) fn compile(m: &HttpRouteRulesMatches) -> Self {
        let path = m.path.as_ref().map_or(PathMatch::Prefix("/".into()), |p| {
            let value = p.value.clone().unwrap_or_else(|| "/".into());
            match p.r#type {
                Some(HttpRouteRulesMatchesPathType::Exact) => PathMatch::Exact(value),
                Some(HttpRouteRulesMatchesPathType::RegularExpression) => {
                    let re = anchored(&value);
                    PathMatch::Regex(value, re)
                }
                Some(HttpRouteRulesMatchesPathType::PathPrefix) | None => PathMatch::Prefix(value),
            }
        });
        let method =
            m.method.as_ref().and_then(|m| serde_json::to_value(m).ok()).and_then(|v| v.as_str().map(str::to_string));
        let headers = m
            .headers
            .iter()
            .flatten()
            .map(|h| {
                let regex = h.r#type == Some(HttpRouteRulesMatchesHeadersType::RegularExpression);
                (h.name.to_ascii_lowercase(), ValueMatch::new(regex, &h.value))
            })
            .collect();
        let query = m
            .query_params
            .iter()
            .flatten()
            .map(|q| {
                let regex = q.r#type == Some(HttpRouteRulesMatchesQueryParamsType::RegularExpression);
                (q.name.clone(), ValueMatch::new(regex, &q.value))
            })
            .collect();
        Match { path, method, headers, query }
    }

    pub(crate) fn holds(&self, req: &Request) -> bool {
        let path = req.path_only();
        let path_holds = match &self.path {
            PathMatch::Exact(e) => path == e,
            PathMatch::Prefix(p) => prefix_holds(p, path),
            PathMatch::Regex(_, re) => re.as_ref().is_some_and(|re| re.is_match(path)),
        };
        path_holds
            && self.method.as_ref().is_none_or(|m| req.method.eq_ignore_ascii_case(m))
            && self.headers.iter().all(|(name, m)| m.holds(req.header_value(name).as_deref()))
            && self.query.iter().all(|(name, m)| m.holds(query_value(req, name)))
    }

    /// The path's rank for precedence: Exact before PathPrefix before RegularExpression (the
    /// specification ranks exact paths, then prefixes by length; Istio puts regexes after both),
    /// then the longer value first.
    pub(crate) fn path_rank(&self) -> (u8, usize) {
        match &self.path {
            PathMatch::Exact(e) => (3, e.len()),
            PathMatch::Prefix(p) => (2, p.len()),
            PathMatch::Regex(r, _) => (1, r.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_whole_segments() {
        assert!(prefix_holds("/v2", "/v2"));
        assert!(prefix_holds("/v2", "/v2/"));
        assert!(prefix_holds("/v2", "/v2/example"));
        assert!(prefix_holds("/v2/", "/v2"));
        assert!(!prefix_holds("/v2", "/v2example"));
        assert!(!prefix_holds("/v2", "/foo/v2"));
        assert!(prefix_holds("/", "/anything"));
    }

    #[test]
    fn query_parameters_take_the_first_value() {
        let req = Request::get("/p?a=1&b&a=2");
        assert_eq!(query_value(&req, "a"), Some("1"));
        assert_eq!(query_value(&req, "b"), Some(""));
        assert_eq!(query_value(&req, "A"), None, "names are case-sensitive");
    }
}
