//! Property: whatever an arm's label value holds, the rendered query parses (with the
//! PromQL lexer's rules, `analysis::expr`) to the same structure as the template with a
//! plain value, and the value comes back out of the string literal unchanged.

use std::collections::BTreeMap;
use std::time::Duration;

use forklane_core::analysis::template::{Cohorts, Context, TemplateError, render};
use forklane_core::api::Arm;
use forklane_sim::metrics::expr::{self, MatchOp, Term};
use proptest::prelude::*;

fn arm(version: &str) -> Arm {
    Arm {
        name: "v2".into(),
        control: false,
        selector: BTreeMap::from([("version".into(), version.into())]),
        deployment: None,
    }
}

fn rendered(template: &str, version: &str) -> Result<String, TemplateError> {
    let arm = arm(version);
    let window = Duration::from_secs(95);
    let ctx =
        Context { arm: &arm, service: "shop", namespace: "prod", experiment: "e", window, cohort: Cohorts::Randomised };
    render(template, &ctx, "conversion")
}

/// One term's sign and, per selector, metric, range and (label, operator) pairs.
type TermShape = (bool, Vec<(String, Duration, Vec<(String, u8)>)>);

/// The query's shape: terms, metric names, labels and operators, without the values.
fn shape(terms: &[Term]) -> Vec<TermShape> {
    let op = |m: &MatchOp| match m {
        MatchOp::Equal(_) => 0,
        MatchOp::NotEqual(_) => 1,
        MatchOp::Regex(_) => 2,
        MatchOp::NotRegex(_) => 3,
    };
    terms
        .iter()
        .map(|t| {
            let selectors = t.selectors.iter().map(|s| {
                (s.metric.clone(), s.range, s.matchers.iter().map(|m| (m.label.clone(), op(&m.op))).collect())
            });
            (t.negative, selectors.collect())
        })
        .collect()
}

const TEMPLATE: &str = r#"sum(increase(orders_total{a="{{ arm.selector.version }}", b='{{ arm.selector.version }}', c=~"{{ arm.selector.version }}", d!~'x|{{ arm.selector.version }}', {{ cohort }}}[{{ window }}])) # {{ arm.name }}
- sum(increase(visits_total{e=`{{ arm.name }}`}[{{ window }}]))"#;

/// Values rich in what could break out of a literal, plus arbitrary Unicode.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::string::string_regex(
            "[\"'`\\\\{}\\[\\]()\n\r\t\u{0}-\u{1f}\u{7f}-\u{9f}#=~!,.*+?|^$ a-z0-9é€😀]{0,24}"
        )
        .unwrap(),
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn label_values_never_change_the_query_structure(v in value()) {
        let plain = expr::parse(&rendered(TEMPLATE, "plain").unwrap()).unwrap();
        let query = rendered(TEMPLATE, &v).unwrap();
        let terms = expr::parse(&query).map_err(|e| TestCaseError::fail(format!("{query:?}: {e}")))?;
        prop_assert_eq!(shape(&terms), shape(&plain));
        let m = &terms[0].selectors[0].matchers;
        prop_assert!(matches!(&m[0].op, MatchOp::Equal(x) if *x == v), "{:?}", m[0]);
        prop_assert!(matches!(&m[1].op, MatchOp::Equal(x) if *x == v), "{:?}", m[1]);
        // Regex operands are quoted: they match the value itself and nothing else.
        prop_assert!(m[2].matches(&v) && !m[2].matches(&(v.clone() + "x")), "{:?}", m[2]);
        prop_assert!(!m[3].matches(&v) && !m[3].matches("x") && m[3].matches(&format!("x{}x", v)), "{:?}", m[3]);
        // The cohort matcher follows whatever the values before it held.
        prop_assert!(m[4].label == "forklane_cohort" && m[4].matches("returning") && !m[4].matches("targeted"), "{:?}", m[4]);
    }

    #[test]
    fn values_outside_strings_are_plain_words_or_refused(v in value()) {
        let template = "sum(increase(orders_{{ arm.selector.version }}_total[5m]))";
        match rendered(template, &v) {
            Ok(query) => {
                let terms = expr::parse(&query).map_err(|e| TestCaseError::fail(format!("{query:?}: {e}")))?;
                prop_assert_eq!(&terms[0].selectors[0].metric, &format!("orders_{v}_total"));
                prop_assert!(terms.len() == 1 && terms[0].selectors[0].matchers.is_empty());
            }
            Err(e) => prop_assert_eq!(e, TemplateError::Unsafe { metric: "conversion".into(), name: "arm.selector.version".into(), value: v.clone() }),
        }
    }
}
