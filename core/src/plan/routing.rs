//! A mesh-independent route table: ordered routes, each with conditions and weighted arms.
//! `istio.rs` turns it into a VirtualService; the traffic simulator can evaluate it directly.

use std::collections::{BTreeMap, BTreeSet};

use crate::api::{BlueGreen, ExperimentSpec, RuleMatch, Sticky, Strategy, StringMatch, defaults};

use super::steps::State;

/// How one header value is compared; Envoy compares against the whole value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Matcher {
    Exact(String),
    Prefix(String),
    Regex(String),
}

impl Matcher {
    fn from_string_match(m: &StringMatch) -> Option<Self> {
        m.exact
            .clone()
            .map(Self::Exact)
            .or_else(|| m.prefix.clone().map(Self::Prefix))
            .or_else(|| m.regex.clone().map(Self::Regex))
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Destination {
    pub arm: String,
    pub weight: i32,
    /// A `Set-Cookie` value added to answers from this destination (sticky assignment).
    pub set_cookie: Option<String>,
}

/// The request header every route sets (overwriting what a client sent) to say how the request
/// reached its arm; Istio's Telemetry copies it into the `forklane_cohort` metric label, so that
/// the analysis counts only randomised traffic (docs/analysis.md).
pub(crate) const COHORT_HEADER: &str = "x-forklane-cohort";

/// How a request was routed, as the cohort header says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cohort {
    /// The weighted split: randomised, and for sticky assignment the user's first exposure.
    Assigned,
    /// A sticky pin: a user coming back to the arm they were assigned.
    Returning,
    /// A targeting rule or the blue/green preview: chosen, not randomised.
    Targeted,
    /// A mirror's copy (no route has it; its answers are dropped).
    Mirrored,
}

impl Cohort {
    pub(crate) fn value(self) -> &'static str {
        match self {
            Cohort::Assigned => "assigned",
            Cohort::Returning => "returning",
            Cohort::Targeted => "targeted",
            Cohort::Mirrored => "mirrored",
        }
    }

    /// The cohort whose [`value`](Self::value) is `value`.
    pub(crate) fn parse(value: &str) -> Option<Self> {
        [Cohort::Assigned, Cohort::Returning, Cohort::Targeted, Cohort::Mirrored]
            .into_iter()
            .find(|c| c.value() == value)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Route {
    pub name: String,
    pub cohort: Cohort,
    /// Header name (lowercase) → matcher; all must hold. Empty: matches every request.
    pub headers: BTreeMap<String, Matcher>,
    pub destinations: Vec<Destination>,
    /// A `Set-Cookie` value added to every answer of this route, whichever arm gives it (the
    /// sticky cookie's expiry once the experiment has ended).
    pub set_cookie: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RouteTable {
    pub routes: Vec<Route>,
    /// Arm receiving shadow copies, and the share of requests copied.
    pub mirror: Option<(String, f64)>,
}

impl RouteTable {
    /// Arms a route or the mirror sends traffic to: the subsets that must exist.
    pub(crate) fn referenced_arms(&self) -> BTreeSet<String> {
        let routed = self.routes.iter().flat_map(|r| r.destinations.iter().map(|d| d.arm.clone()));
        routed.chain(self.mirror.iter().map(|(arm, _)| arm.clone())).collect()
    }
}

/// The regex that finds `name=value` among the cookies of a `cookie` header.
pub(crate) fn cookie_regex(name: &str, value_pattern: &str) -> String {
    format!(r"^(.*?;\s*)?({}=({value_pattern}))(;.*)?$", regex::escape(name))
}

/// The sticky cookie's `Set-Cookie` value: `value` for `max_age` seconds (0 expires it). The
/// attributes are the same on every value, so that an expiry replaces the cookie a browser holds.
pub(crate) fn sticky_cookie(sticky: &Sticky, value: &str, max_age: i64) -> String {
    let secure = if sticky.secure { "; Secure" } else { "" };
    let same_site = sticky.same_site().value();
    format!("{}={value}; Max-Age={max_age}; Path=/; HttpOnly; SameSite={same_site}{secure}", sticky.cookie_name)
}

/// Whether `set_cookie` is the expiry of the cookie `name` (whatever its attributes).
pub(crate) fn is_cookie_expiry(set_cookie: &str, name: &str) -> bool {
    set_cookie.strip_prefix(name).and_then(|rest| rest.strip_prefix("=;")).is_some_and(|attributes| {
        attributes.split(';').any(|a| {
            a.trim().split_once('=').is_some_and(|(k, v)| k.trim().eq_ignore_ascii_case("max-age") && v.trim() == "0")
        })
    })
}

/// The routes of one state: targeting rules, preview, sticky pins, then the catch-all split.
pub(crate) fn route_table(spec: &ExperimentSpec, state: &State) -> RouteTable {
    let mut routes = Vec::new();
    let to = |arm: &str| vec![Destination { arm: arm.to_string(), weight: 100, set_cookie: None }];
    let ab = spec.strategy.ab_test().filter(|_| state.experiment_routes);
    let (rules, region_header) = ab.map_or((&[][..], defaults::REGION_HEADER), |a| (&a.rules[..], a.region_header()));
    for rule in rules {
        routes.push(Route {
            name: rule.name.clone(),
            cohort: Cohort::Targeted,
            headers: rule_headers(&rule.matches, region_header),
            destinations: to(&rule.arm),
            set_cookie: None,
        });
    }
    if let (true, Strategy::BlueGreen(BlueGreen { preview_header: Some(header), .. })) = (state.preview, &spec.strategy)
        && let Some(candidate) = spec.candidate().map(|a| a.name.as_str())
    {
        let headers = BTreeMap::from([(header.name.clone(), Matcher::Exact(header.value.clone()))]);
        routes.push(Route {
            name: "preview".into(),
            cohort: Cohort::Targeted,
            headers,
            destinations: to(candidate),
            set_cookie: None,
        });
    }
    let weighted: Vec<&(String, i32)> = state.weights.iter().filter(|(_, w)| *w > 0).collect();
    let sticky = ab.and_then(|a| a.sticky.as_ref());
    if let Some(sticky) = sticky {
        // Users keep the arm they were given while it still has weight; nothing drifts.
        for (arm, _) in &weighted {
            let headers = BTreeMap::from([(
                "cookie".to_string(),
                Matcher::Regex(cookie_regex(&sticky.cookie_name, &regex::escape(arm))),
            )]);
            routes.push(Route {
                name: format!("sticky-{arm}"),
                cohort: Cohort::Returning,
                headers,
                destinations: to(arm),
                set_cookie: None,
            });
        }
    }
    let destinations = weighted
        .iter()
        .map(|(arm, weight)| Destination {
            arm: arm.clone(),
            weight: *weight,
            set_cookie: sticky.map(|s| sticky_cookie(s, arm, s.max_age_seconds)),
        })
        .collect();
    // Once the experiment has ended no route pins anyone: a returning user's cookie (perhaps
    // naming an arm that is gone) matches nothing, the split sends them to the final arm, and
    // its answers expire the cookie.
    let expiry = spec.strategy.ab_test().and_then(|a| a.sticky.as_ref()).filter(|_| state.expire_sticky);
    routes.push(Route {
        name: "split".into(),
        cohort: Cohort::Assigned,
        headers: BTreeMap::new(),
        destinations,
        set_cookie: expiry.map(|s| sticky_cookie(s, "", 0)),
    });
    let mirror = spec.mirror.as_ref().filter(|_| state.experiment_routes).map(|m| (m.arm.clone(), m.percent));
    RouteTable { routes, mirror }
}

/// A targeting rule's conditions as header matchers: its headers, its cookie (a regular expression
/// on the `cookie` header), its user agent and its regions (the region header).
pub(crate) fn rule_headers(matches: &RuleMatch, region_header: &str) -> BTreeMap<String, Matcher> {
    let mut headers = BTreeMap::new();
    for (name, m) in &matches.headers {
        headers.extend(Matcher::from_string_match(m).map(|m| (name.clone(), m)));
    }
    for (name, m) in &matches.cookies {
        let pattern = match (&m.exact, &m.regex) {
            (Some(exact), _) => regex::escape(exact),
            (None, Some(re)) => re.clone(),
            (None, None) => continue,
        };
        headers.insert("cookie".into(), Matcher::Regex(cookie_regex(name, &pattern)));
    }
    if let Some(m) = matches.user_agent.as_ref().and_then(Matcher::from_string_match) {
        headers.insert("user-agent".into(), m);
    }
    if let Some(m) = region_matcher(&matches.regions) {
        headers.insert(region_header.into(), m);
    }
    headers
}

fn region_matcher(regions: &[String]) -> Option<Matcher> {
    match regions {
        [] => None,
        [one] => Some(Matcher::Exact(one.clone())),
        many => {
            Some(Matcher::Regex(format!("^({})$", many.iter().map(|r| regex::escape(r)).collect::<Vec<_>>().join("|"))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::SameSite;

    #[test]
    fn cookie_regex_finds_the_cookie_anywhere_in_the_header() {
        let re = regex::Regex::new(&cookie_regex("forklane-checkout", "v2")).unwrap();
        assert!(re.is_match("forklane-checkout=v2"));
        assert!(re.is_match("a=1; forklane-checkout=v2; b=2"));
        assert!(!re.is_match("forklane-checkout=v21"));
        assert!(!re.is_match("xforklane-checkout=v2"));
        assert!(!re.is_match("a=forklane-checkout=v2"));
    }

    fn sticky(secure: bool, same_site: Option<SameSite>) -> Sticky {
        Sticky { cookie_name: "forklane-checkout".into(), max_age_seconds: 3_600, secure, same_site }
    }

    #[test]
    fn the_sticky_cookie_is_http_only_on_every_path_with_its_same_site_and_secure_when_asked() {
        assert_eq!(
            sticky_cookie(&sticky(false, None), "v2", 3_600),
            "forklane-checkout=v2; Max-Age=3600; Path=/; HttpOnly; SameSite=Lax"
        );
        assert_eq!(
            sticky_cookie(&sticky(true, Some(SameSite::Strict)), "v2", 3_600),
            "forklane-checkout=v2; Max-Age=3600; Path=/; HttpOnly; SameSite=Strict; Secure"
        );
        assert_eq!(
            sticky_cookie(&sticky(true, Some(SameSite::None)), "", 0),
            "forklane-checkout=; Max-Age=0; Path=/; HttpOnly; SameSite=None; Secure"
        );
    }

    #[test]
    fn an_expiry_is_told_from_an_assignment_by_its_empty_value_and_zero_max_age() {
        let expiry = sticky_cookie(&sticky(true, None), "", 0);
        assert!(is_cookie_expiry(&expiry, "forklane-checkout"));
        assert!(is_cookie_expiry("forklane-checkout=; path=/; max-age = 0", "forklane-checkout"));
        assert!(!is_cookie_expiry(&sticky_cookie(&sticky(false, None), "v1", 60), "forklane-checkout"));
        assert!(!is_cookie_expiry("forklane-checkout=; Max-Age=60", "forklane-checkout"));
        assert!(!is_cookie_expiry(&expiry, "forklane"));
    }

    #[test]
    fn escapes_cookie_names_and_values() {
        let re = regex::Regex::new(&cookie_regex("a.b", &regex::escape("1+1"))).unwrap();
        assert!(re.is_match("a.b=1+1"));
        assert!(!re.is_match("axb=11"));
    }
}
