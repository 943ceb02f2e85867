//! The Gateway API does not take an HTTPRoute's rules in list order: across rules, an exact path
//! beats a prefix, a longer prefix a shorter one, then a method match, then the larger number of
//! header matches, then of query matches, and only then list order. Forklane's routes all match
//! every path with no method or query, so between them the number of header conditions decides:
//! a targeting rule with fewer conditions listed before one with more that a request can match
//! together would lose to it, unlike Istio's first match. Such an experiment is refused rather
//! than routed differently from what it says. Preview, sticky pins and the split come after the
//! rules and have at most one condition: list order already gives them their place.

use crate::api::AbTest;

use super::routing::{Matcher, rule_headers};

/// One pair of rules whose order the Gateway API cannot keep.
#[derive(Clone, Debug, PartialEq)]
pub struct Inverted {
    /// Index of the rule listed later that would win.
    pub later: usize,
    pub message: String,
}

/// Every pair of targeting rules the Gateway API would take out of order.
pub(crate) fn inverted(ab: &AbTest) -> Vec<Inverted> {
    let headers: Vec<_> = ab.rules.iter().map(|r| rule_headers(&r.matches, ab.region_header())).collect();
    let mut out = Vec::new();
    for (j, later) in headers.iter().enumerate() {
        for (i, earlier) in headers.iter().enumerate().take(j) {
            let overlap = earlier.iter().all(|(name, m)| later.get(name).is_none_or(|n| may_both_match(m, n)));
            if later.len() > earlier.len() && overlap {
                let (a, b) = (&ab.rules[i].name, &ab.rules[j].name);
                out.push(Inverted {
                    later: j,
                    message: format!(
                        "rule {b:?} ({}) would take precedence over rule {a:?} listed before it ({}): the Gateway API \
                         orders rules by their number of header matches, and a request can match both; list {b:?} first \
                         or make the two exclusive (provider gatewayAPI)",
                        conditions(later.len()),
                        conditions(earlier.len())
                    ),
                });
            }
        }
    }
    out
}

fn conditions(n: usize) -> String {
    if n == 1 { "1 header condition".into() } else { format!("{n} header conditions") }
}

/// Whether some value can satisfy both matchers (conservative: `true` unless they surely exclude
/// each other).
fn may_both_match(a: &Matcher, b: &Matcher) -> bool {
    let full = |re: &str, value: &str| regex::Regex::new(&format!("^(?:{re})$")).map_or(true, |r| r.is_match(value));
    match (a, b) {
        (Matcher::Exact(x), Matcher::Exact(y)) => x == y,
        (Matcher::Exact(x), Matcher::Prefix(p)) | (Matcher::Prefix(p), Matcher::Exact(x)) => x.starts_with(p.as_str()),
        (Matcher::Exact(x), Matcher::Regex(r)) | (Matcher::Regex(r), Matcher::Exact(x)) => full(r, x),
        (Matcher::Prefix(p), Matcher::Prefix(q)) => p.starts_with(q.as_str()) || q.starts_with(p.as_str()),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::ExperimentBuilder;

    fn ab(builder: ExperimentBuilder) -> AbTest {
        builder.build().spec.strategy.ab_test().cloned().unwrap()
    }

    fn base() -> ExperimentBuilder {
        ExperimentBuilder::ab_test("checkout").control("v1").arm("v2").arm("v3").split([("v1", 100)])
    }

    #[test]
    fn a_broader_rule_before_a_narrower_one_that_overlaps_is_refused_naming_both() {
        let rules = base().header_rule("beta", "x-group", "beta", "v2").rule_with_headers(
            "beta-eu",
            &[("x-group", "beta"), ("x-region", "eu")],
            "v3",
        );
        let found = inverted(&ab(rules));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].later, 1);
        assert!(found[0].message.contains("\"beta-eu\"") && found[0].message.contains("\"beta\""), "{found:?}");
    }

    #[test]
    fn the_narrower_rule_first_or_rules_that_exclude_each_other_are_kept() {
        let narrower_first = base()
            .rule_with_headers("beta-eu", &[("x-group", "beta"), ("x-region", "eu")], "v3")
            .header_rule("beta", "x-group", "beta", "v2");
        assert_eq!(inverted(&ab(narrower_first)), []);
        let exclusive = base().header_rule("beta", "x-group", "beta", "v2").rule_with_headers(
            "alpha-eu",
            &[("x-group", "alpha"), ("x-region", "eu")],
            "v3",
        );
        assert_eq!(inverted(&ab(exclusive)), [], "x-group beta and alpha never hold together");
        let same_count = base().header_rule("beta", "x-group", "beta", "v2").header_rule("eu", "x-region", "eu", "v3");
        assert_eq!(inverted(&ab(same_count)), [], "a tie keeps list order");
    }

    #[test]
    fn matchers_exclude_each_other_only_when_no_value_holds_both() {
        let (e, p, r) = (
            |s: &str| Matcher::Exact(s.into()),
            |s: &str| Matcher::Prefix(s.into()),
            |s: &str| Matcher::Regex(s.into()),
        );
        assert!(may_both_match(&e("a"), &e("a")) && !may_both_match(&e("a"), &e("b")));
        assert!(may_both_match(&e("beta-1"), &p("beta")) && !may_both_match(&p("beta"), &e("alpha")));
        assert!(may_both_match(&e("eu-west"), &r("eu-.*")) && !may_both_match(&r("eu-.*"), &e("us-east")));
        assert!(may_both_match(&p("ab"), &p("abc")) && !may_both_match(&p("ab"), &p("b")));
        assert!(may_both_match(&r("a.*"), &r("b.*")), "two patterns: assumed to overlap");
    }
}
