use super::*;

fn eq(label: &str, value: &str) -> Matcher {
    Matcher { label: label.into(), op: MatchOp::Equal(value.into()) }
}

#[test]
fn parses_sums_and_differences_of_increases() {
    let terms = parse(
        "sum(increase(a_count{x=\"1\", y!=\"2\",}[1h2m])) - sum(increase(a_bucket{le=~\"5|5e+00\"}[90s])) # note\n",
    )
    .unwrap();
    assert_eq!(terms.len(), 2);
    let first = &terms[0].selectors[0];
    assert_eq!((terms[0].negative, first.metric.as_str(), first.range), (false, "a_count", Duration::from_secs(3720)));
    assert_eq!(first.matchers, vec![eq("x", "1"), Matcher { label: "y".into(), op: MatchOp::NotEqual("2".into()) }]);
    assert!(terms[1].negative);
    let le = &terms[1].selectors[0].matchers[0];
    assert!(le.matches("5") && !le.matches("50"), "regexes are anchored");
    assert!(parse("sum(increase(a[5m]))").unwrap()[0].selectors[0].matchers.is_empty());
}

#[test]
fn parses_unions_of_disjoint_selectors_inside_a_sum() {
    let terms = parse(
        r#"sum(increase(a{r="d",c=~"5.."}[5m]) or increase(a{r="s"}[1m]) or increase(b[5m])) + sum(increase(a[5m]))"#,
    )
    .unwrap();
    assert_eq!(terms.len(), 2);
    let metrics: Vec<(&str, Duration)> = terms[0].selectors.iter().map(|s| (s.metric.as_str(), s.range)).collect();
    assert_eq!(
        metrics,
        [("a", Duration::from_secs(300)), ("a", Duration::from_secs(60)), ("b", Duration::from_secs(300))]
    );
    assert_eq!(terms[0].selectors[1].matchers, vec![eq("r", "s")]);
    assert_eq!(terms[1].selectors.len(), 1);
    // A value on one side that the other side's regex or `!=` refuses: no series matches both.
    for query in [
        r#"sum(increase(a{r=~"d|w"}[5m]) or increase(a{r="s"}[5m]))"#,
        r#"sum(increase(a{r="s"}[5m]) or increase(a{r!="s"}[5m]))"#,
    ] {
        assert_eq!(parse(query).unwrap()[0].selectors.len(), 2, "{query}");
    }
}

#[test]
fn refuses_unions_whose_selectors_may_share_a_series() {
    // The embedded store sums each selector: a series matched twice would count twice, where
    // PromQL's `or` keeps it once.
    for query in [
        r#"sum(increase(a{r="d"}[5m]) or increase(a{c="503"}[5m]))"#,
        r#"sum(increase(a{r="d"}[5m]) or increase(a{r=~"s|d"}[5m]))"#,
        r#"sum(increase(a{r="d"}[5m]) or increase(a{r="d"}[5m]))"#,
        r#"sum(increase(a[5m]) or increase(b[5m]) or increase(a{r="s"}[5m]))"#,
    ] {
        let err = parse(query).unwrap_err();
        assert!(err.contains("may match the same series"), "{query}: {err}");
    }
}

#[test]
fn unescapes_strings_as_the_promql_lexer_does() {
    let terms = parse(r#"sum(increase(a{v="q\"\\\n\x41\u00e9}", w='it\'s', z=`raw\n`}[5m]))"#).unwrap();
    assert_eq!(terms[0].selectors[0].matchers, vec![eq("v", "q\"\\\nAé}"), eq("w", "it's"), eq("z", "raw\\n")]);
}

#[test]
fn missing_labels_match_as_empty_values() {
    let m = Matcher { label: "code".into(), op: MatchOp::NotRegex(Regex::new("^(?:5..)$").unwrap()) };
    assert!(m.matches(""));
    assert!(!m.matches("503"));
}

#[test]
fn rejects_what_is_outside_the_subset_saying_what_was_expected() {
    for (query, says) in [
        ("rate(a[5m])", "Ident(\"sum\")"),
        ("sum(increase(a{v=\"1\"}))", "range"),
        ("sum(increase(a{v=1}[5m]))", "unexpected character '1'"),
        ("sum(increase(a{v=b}[5m]))", "expected a string after `v`"),
        ("sum(increase(a[5m])) * 2", "unexpected character"),
        ("sum(increase(a{v=\"x\n\"}[5m]))", "newline"),
        ("sum(increase(a{v=\"\\q\"}[5m]))", "unknown escape"),
        ("sum(increase(a[5m])) sum", "after a complete expression"),
        ("sum(increase(a[5m]) or)", "Ident(\"increase\")"),
        ("sum(increase(a[5m])) or sum(increase(b[5m]))", "after a complete expression"),
    ] {
        let err = parse(query).unwrap_err();
        assert!(err.contains(says), "{query}: {err}");
    }
}

#[test]
fn compiled_label_regexes_are_cached_within_a_bound() {
    let re = anchored("a|b").unwrap();
    assert!(re.is_match("a") && !re.is_match("ab"), "anchored as PromQL anchors");
    for i in 0..3 * COMPILED_PATTERNS {
        assert!(anchored(&format!("v{i}")).unwrap().is_match(&format!("v{i}")));
    }
    let cached = COMPILED.with(|c| c.borrow().len());
    assert!((1..=COMPILED_PATTERNS).contains(&cached), "{cached} patterns cached");
}
