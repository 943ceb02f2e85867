use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::api::{Routing, Unit};

fn arm(version: &str) -> Arm {
    Arm {
        name: "v2".into(),
        control: false,
        selector: BTreeMap::from([("version".into(), version.into())]),
        deployment: Some("shop-v2".into()),
    }
}

fn render_with(template: &str, arm: &Arm) -> Result<String, TemplateError> {
    render_cohort(template, arm, Cohorts::Randomised)
}

fn render_cohort(template: &str, arm: &Arm, cohort: Cohorts) -> Result<String, TemplateError> {
    let window = Duration::from_secs(3723);
    let ctx = Context { arm, service: "shop", namespace: "prod", experiment: "exp-1", window, cohort };
    render(template, &ctx, "conversion")
}

#[test]
fn fills_every_placeholder() {
    let q = render_with(
        r#"sum(increase(x{v="{{ arm.selector.version }}",a="{{arm.name}}",d="{{ arm.deployment }}",s="{{ service.name }}",n="{{ namespace }}",e="{{ experiment }}"}[{{ window }}]))"#,
        &arm("v2.0"),
    )
    .unwrap();
    assert_eq!(q, r#"sum(increase(x{v="v2.0",a="v2",d="shop-v2",s="shop",n="prod",e="exp-1"}[1h2m3s]))"#);
}

#[test]
fn unknown_placeholders_name_the_placeholder_and_the_metric() {
    let err = render_with(r#"x{v="{{ arm.version }}"}"#, &arm("v2")).unwrap_err();
    assert_eq!(err, TemplateError::Unknown { metric: "conversion".into(), name: "arm.version".into() });
    let text = err.to_string();
    assert!(text.contains("`{{ arm.version }}`") && text.contains("`conversion`"), "{text}");
}

#[test]
fn missing_values_name_the_arm() {
    let err = render_with(r#"x{v="{{ arm.selector.track }}"}"#, &arm("v2")).unwrap_err();
    assert_eq!(
        err,
        TemplateError::Missing { metric: "conversion".into(), name: "arm.selector.track".into(), arm: "v2".into() }
    );
    let no_deployment = Arm { deployment: None, ..arm("v2") };
    assert!(matches!(
        render_with(r#"x{d="{{ arm.deployment }}"}"#, &no_deployment),
        Err(TemplateError::Missing { .. })
    ));
}

#[test]
fn unclosed_placeholder_is_an_error() {
    assert_eq!(
        render_with("x[{{ window ]", &arm("v2")),
        Err(TemplateError::Unclosed { metric: "conversion".into(), at: 2 })
    );
}

#[test]
fn escapes_quotes_backslashes_braces_and_newlines_in_strings() {
    let q = render_with(r#"x{v="{{ arm.selector.version }}"}"#, &arm("a\"}\\\nb\u{1}")).unwrap();
    assert_eq!(q, r#"x{v="a\"}\\\nb\u0001"}"#);
    let single = render_with("x{v='{{ arm.selector.version }}'}", &arm("it's \"ok\"")).unwrap();
    assert_eq!(single, r#"x{v='it\'s "ok"'}"#);
}

#[test]
fn regex_matchers_get_regex_quoted_values() {
    let q = render_with(
        r#"x{v=~"{{ arm.selector.version }}|v1", w !~ "{{ arm.selector.version }}", z="{{ arm.selector.version }}"}"#,
        &arm("v2.*"),
    )
    .unwrap();
    assert_eq!(q, r#"x{v=~"v2\\.\\*|v1", w !~ "v2\\.\\*", z="v2.*"}"#);
}

#[test]
fn values_outside_strings_must_be_plain_words() {
    assert_eq!(render_with("x_{{ arm.selector.version }}_total", &arm("v2")).unwrap(), "x_v2_total");
    for bad in ["v2.0", "a-b", "a}", "", "a b", "a\nb"] {
        let err = render_with("x_{{ arm.selector.version }}_total", &arm(bad)).unwrap_err();
        assert_eq!(
            err,
            TemplateError::Unsafe {
                metric: "conversion".into(),
                name: "arm.selector.version".into(),
                value: bad.into()
            }
        );
    }
    // A comment ends at a newline, so the same rule holds there.
    assert!(matches!(render_with("x # {{ arm.selector.version }}\n", &arm("a\nb")), Err(TemplateError::Unsafe { .. })));
}

#[test]
fn quotes_in_comments_and_escaped_quotes_do_not_open_or_close_strings() {
    // The `"` in the comment and the `\"` in the literal must not flip the scanner's state.
    let q =
        render_with("x{a=\"q\\\"{{ arm.selector.version }}\"} # it's \"\n + y_{{ arm.name }}", &arm("a\"b")).unwrap();
    assert_eq!(q, "x{a=\"q\\\"a\\\"b\"} # it's \"\n + y_v2");
}

#[test]
fn raw_strings_take_values_without_backticks_only() {
    assert_eq!(render_with("x{v=`{{ arm.selector.version }}`}", &arm("a\"b")).unwrap(), "x{v=`a\"b`}");
    assert!(matches!(
        render_with("x{v=`{{ arm.selector.version }}`}", &arm("a`b")),
        Err(TemplateError::RawString { .. })
    ));
}

#[test]
fn cohort_renders_the_matcher_of_the_analysed_cohorts() {
    let template = r#"sum(increase(orders_total{version="{{ arm.selector.version }}",{{ cohort }}}[{{ window }}]))"#;
    let render = |mode, unit| render_cohort(template, &arm("v2"), Cohorts::analysed(mode, unit)).unwrap();
    assert_eq!(
        render(Routing::Istio, Unit::User),
        r#"sum(increase(orders_total{version="v2",forklane_cohort="assigned"}[1h2m3s]))"#
    );
    assert_eq!(
        render(Routing::Istio, Unit::Request),
        r#"sum(increase(orders_total{version="v2",forklane_cohort=~"assigned|returning"}[1h2m3s]))"#
    );
    for unit in [Unit::User, Unit::Request] {
        assert_eq!(
            render(Routing::Native, unit),
            r#"sum(increase(orders_total{version="v2",forklane_cohort=~"|none"}[1h2m3s]))"#,
            "without a mesh nothing sets the label"
        );
    }
}

#[test]
fn cohort_inside_a_string_is_an_error_naming_the_metric() {
    for template in [r#"x{a="{{ cohort }}"}"#, r#"x{a=~"{{ cohort }}"}"#, "x{a=`{{ cohort }}`}"] {
        let err = render_cohort(template, &arm("v2"), Cohorts::FirstExposures).unwrap_err();
        assert_eq!(
            err,
            TemplateError::Matcher { metric: "conversion".into(), matcher: r#"forklane_cohort="assigned""# }
        );
        assert!(err.to_string().contains("`conversion`") && err.to_string().contains("{{ cohort }}"), "{err}");
    }
}

#[test]
fn the_quotes_of_the_cohort_matcher_do_not_open_a_string() {
    let q =
        render_cohort(r#"x{{{ cohort }},v="{{ arm.selector.version }}"}"#, &arm("a\"b"), Cohorts::Randomised).unwrap();
    assert_eq!(q, r#"x{forklane_cohort=~"assigned|returning",v="a\"b"}"#);
    let alone = render_cohort("orders_total{{{ cohort }}}", &arm("v2"), Cohorts::FirstExposures).unwrap();
    assert_eq!(alone, r#"orders_total{forklane_cohort="assigned"}"#);
}
