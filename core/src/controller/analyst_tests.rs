use super::*;
use crate::analysis::AnalysisError;
use crate::analysis::source::{BoxFuture, SourceError};
use crate::api::load::{Document, load_documents};

fn ab_test() -> Experiment {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/ab-test.yaml")).unwrap();
    match load_documents(&text).unwrap().remove(0) {
        Document::Experiment(e) => *e,
        Document::RolloutPolicy(_) => unreachable!(),
    }
}

/// Answers every query alike.
struct Answer(Result<f64, SourceError>);

impl MetricSource for Answer {
    fn value<'a>(&'a self, _query: &'a str) -> BoxFuture<'a, Result<f64, SourceError>> {
        Box::pin(std::future::ready(self.0.clone()))
    }

    fn values<'a>(
        &'a self,
        _query: &'a str,
        _step: Duration,
        count: usize,
    ) -> BoxFuture<'a, Result<Vec<f64>, SourceError>> {
        Box::pin(std::future::ready(self.0.clone().map(|v| vec![v; count])))
    }
}

fn decide_with(analyst: &SourceAnalyst, exp: &Experiment) -> Result<(), AnalysisError> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let weights = [("v1".to_string(), 90), ("v2".to_string(), 10)];
    rt.block_on(analyst.decide(exp, Routing::Istio, Duration::from_secs(600), &weights)).map(|_| ())
}

fn fixed(answer: Result<f64, SourceError>) -> SourceAnalyst {
    SourceAnalyst::fixed(Arc::new(Answer(answer)))
}

#[test]
fn a_readable_source_gives_a_decision() {
    assert_eq!(decide_with(&fixed(Ok(5000.0)), &ab_test()), Ok(()));
}

type Expected = fn(&ConfigError) -> bool;

#[test]
fn configuration_errors_are_classified_as_such() {
    let mut no_provider = ab_test();
    no_provider.spec.analysis.as_mut().unwrap().provider = None;
    let mut bad_template = ab_test();
    bad_template.spec.analysis.as_mut().unwrap().metrics[0].trial_query = Some("sum({{ arm.colour }})".into());
    let mut no_direction = ab_test();
    let guardrail = &mut no_direction.spec.analysis.as_mut().unwrap().metrics[0];
    (guardrail.role, guardrail.direction, guardrail.name) = (crate::api::Role::Guardrail, None, "orders".into());
    let mut bad_address = ab_test();
    let provider = bad_address.spec.analysis.as_mut().unwrap().provider.as_mut().unwrap();
    provider.prometheus.as_mut().unwrap().address = "no url".into();
    let mut bad_alpha = ab_test();
    bad_alpha.spec.analysis.as_mut().unwrap().alpha = Some(2.0);
    let rejected = Err(SourceError::Rejected { query: "q".into(), message: "bad_data: parse error".into() });

    let cases: Vec<(&str, SourceAnalyst, Experiment, Expected)> = vec![
        ("no provider", SourceAnalyst::prometheus(PrometheusAddresses::default()), no_provider, |e| {
            *e == ConfigError::NoProvider
        }),
        (
            "bad address",
            SourceAnalyst::prometheus(PrometheusAddresses { default: None, allowed: vec!["no url".into()] }),
            bad_address.clone(),
            |e| matches!(e, ConfigError::Address { address, .. } if address == "no url"),
        ),
        (
            "address not allowed",
            SourceAnalyst::prometheus(PrometheusAddresses {
                default: Some("http://prometheus:9090".into()),
                allowed: vec![],
            }),
            bad_address,
            |e| matches!(e, ConfigError::AddressNotAllowed { address } if address == "no url"),
        ),
        ("bad template", fixed(Ok(5000.0)), bad_template, |e| matches!(e, ConfigError::Template(_))),
        (
            "rejected query",
            fixed(rejected),
            ab_test(),
            |e| matches!(e, ConfigError::Query { metric, arm, .. } if metric == "conversion" && arm == "v1"),
        ),
        ("no direction", fixed(Ok(5000.0)), no_direction, |e| *e == ConfigError::Direction("orders".into())),
        ("alpha", fixed(Ok(5000.0)), bad_alpha, |e| matches!(e, ConfigError::Decision(_))),
    ];
    for (name, analyst, exp, expected) in cases {
        match decide_with(&analyst, &exp) {
            Err(AnalysisError::Config(e)) => assert!(expected(&e), "{name}: {e}"),
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn an_invalid_address_is_named() {
    // The fallback address (forklane run --prometheus-url) applies when the spec has none.
    let mut exp = ab_test();
    exp.spec.analysis.as_mut().unwrap().provider = None;
    let addresses = PrometheusAddresses { default: Some("http://[::1".into()), allowed: vec![] };
    let err = decide_with(&SourceAnalyst::prometheus(addresses), &exp).unwrap_err();
    assert!(err.to_string().starts_with("spec.analysis.provider.prometheus.address \"http://[::1\""), "{err}");
}

#[test]
fn only_the_flags_addresses_are_allowed() {
    let addresses = PrometheusAddresses {
        default: Some("http://prometheus.monitoring:9090".into()),
        allowed: vec!["http://thanos.monitoring:9090/".into()],
    };
    for allowed in ["http://prometheus.monitoring:9090/", "http://thanos.monitoring:9090"] {
        assert!(addresses.allows(allowed), "{allowed}");
    }
    for refused in ["http://kubernetes.default:443", "http://prometheus.monitoring:9091", "http://thanos.monitoring"] {
        assert!(!addresses.allows(refused), "{refused}");
    }
    assert!(!PrometheusAddresses::default().allows("http://prometheus:9090"), "no flags: no address is allowed");
}

#[test]
fn measurement_failures_are_unavailable() {
    for error in [
        SourceError::Unreachable { source_name: "p".into(), message: "connection refused".into() },
        SourceError::Query { query: "q".into(), message: "timeout: query timed out".into() },
        SourceError::NoData { query: "q".into(), why: "NaN".into() },
    ] {
        let got = decide_with(&fixed(Err(error.clone())), &ab_test());
        assert!(matches!(&got, Err(AnalysisError::Unavailable { error: e, .. }) if *e == error), "{got:?}");
    }
}
