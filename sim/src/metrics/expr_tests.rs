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
    assert_eq!(
        (terms[0].negative, terms[0].metric.as_str(), terms[0].range),
        (false, "a_count", Duration::from_secs(3720))
    );
    assert_eq!(terms[0].matchers, vec![eq("x", "1"), Matcher { label: "y".into(), op: MatchOp::NotEqual("2".into()) }]);
    assert!(terms[1].negative);
    assert!(terms[1].matchers[0].matches("5") && !terms[1].matchers[0].matches("50"), "regexes are anchored");
    assert!(parse("sum(increase(a[5m]))").unwrap()[0].matchers.is_empty());
}

#[test]
fn unescapes_strings_as_the_promql_lexer_does() {
    let terms = parse(r#"sum(increase(a{v="q\"\\\n\x41\u00e9}", w='it\'s', z=`raw\n`}[5m]))"#).unwrap();
    assert_eq!(terms[0].matchers, vec![eq("v", "q\"\\\nAé}"), eq("w", "it's"), eq("z", "raw\\n")]);
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
    ] {
        let err = parse(query).unwrap_err();
        assert!(err.contains(says), "{query}: {err}");
    }
}
