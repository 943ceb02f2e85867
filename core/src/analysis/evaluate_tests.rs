use std::collections::HashMap;

use super::*;
use crate::analysis::source::{BoxFuture, SourceError};
use crate::analysis::template::TemplateError;
use crate::stats::decision::{Observation, Outcome, decide};

const EXPERIMENT: &str = r#"
apiVersion: forklane.io/v1alpha1
kind: Experiment
metadata: {name: checkout, namespace: shop}
spec:
  service: {name: my-app}
  arms:
    - {name: v1, control: true, selector: {app: my-app, version: v1.0.0}, deployment: my-app-v1}
    - {name: v2, selector: {app: my-app, version: v2.0.0}, deployment: my-app-v2}
  strategy: {abTest: {split: {v1: 50, v2: 50}}}
  analysis:
    method: bayesian
    alpha: 0.01
    minSamplesPerArm: 500
    srm: {enabled: true}
    metrics:
      - name: conversion
        role: goal
        successQuery: 'sum(increase(orders_total{version="{{ arm.selector.version }}"}[{{ window }}]))'
        trialQuery: 'sum(increase(visits_total{version="{{ arm.selector.version }}"}[{{ window }}]))'
      - {name: error-rate, builtin: istio-error-rate, role: guardrail, margin: 0.002}
"#;

fn experiment() -> Experiment {
    serde_yaml_ng::from_str(EXPERIMENT).unwrap()
}

fn with_metrics(extra: &str) -> Experiment {
    let mut exp = experiment();
    let more: Vec<Metric> = serde_yaml_ng::from_str(extra).unwrap();
    exp.spec.analysis.as_mut().unwrap().metrics.extend(more);
    exp
}

/// Answers queries from a table; anything else has no data.
struct Table(HashMap<String, f64>);

impl MetricSource for Table {
    fn value<'a>(&'a self, query: &'a str) -> BoxFuture<'a, Result<f64, SourceError>> {
        let answer =
            self.0.get(query).copied().ok_or(SourceError::NoData { query: query.into(), why: "empty result".into() });
        Box::pin(async move { answer })
    }

    /// Batches read as the table's value for the query over `[2m5s]`, spread evenly.
    fn values<'a>(
        &'a self,
        query: &'a str,
        _step: Duration,
        count: usize,
    ) -> BoxFuture<'a, Result<Vec<f64>, SourceError>> {
        let whole = at_window(query, "2m5s");
        let answer = self.0.get(&whole).map(|v| vec![v / count as f64; count]);
        let answer = answer.ok_or(SourceError::NoData { query: query.into(), why: "empty result".into() });
        Box::pin(async move { answer })
    }
}

/// `query` with every range `[...]` replaced by `[window]`.
fn at_window(query: &str, window: &str) -> String {
    let mut out = String::new();
    let mut rest = query;
    while let (Some(open), Some(close)) = (rest.find('['), rest.find(']')) {
        out.push_str(&rest[..=open]);
        out.push_str(window);
        rest = &rest[close..];
        out.push(']');
        rest = &rest[1..];
    }
    out.push_str(rest);
    out
}

/// The look's deadline in tests that do not exercise it.
const LIMIT: Duration = Duration::from_secs(30);

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

fn conversion(version: &str, series: &str) -> String {
    format!(r#"sum(increase({series}_total{{version="{version}"}}[2m5s]))"#)
}

/// The builtin error rate of the arm with this version: what the destination answered, or
/// the client-side proxy failed on the way to the arm's Deployment (`my-app-v1` for `v1.0.0`).
fn istio_errors(version: &str, errors: bool) -> String {
    let code = if errors { r#",response_code=~"5..""# } else { "" };
    let service = r#"destination_service_namespace="shop",destination_service_name="my-app""#;
    let deployment = format!("my-app-{}", version.split('.').next().unwrap());
    format!(
        r#"sum(increase(istio_requests_total{{reporter="destination",{service},destination_version="{version}",forklane_cohort=~"assigned|returning"{code}}}[2m5s]) or increase(istio_requests_total{{reporter="source",{service},destination_workload="{deployment}",response_flags=~"(.*,)?(UF|UH|NR|NC)(,.*)?"}}[2m5s]))"#
    )
}

/// The SRM check's units of the arm with this version under Istio.
fn first_exposures(version: &str) -> String {
    let service = r#"destination_service_namespace="shop",destination_service_name="my-app""#;
    format!(
        r#"sum(increase(istio_requests_total{{reporter="destination",{service},destination_version="{version}",forklane_cohort="assigned"}}[2m5s]))"#
    )
}

#[test]
fn renders_each_metric_for_each_arm_in_spec_order() {
    let q = queries(&experiment(), Routing::Istio, Duration::from_secs(125)).unwrap();
    assert_eq!(q.iter().map(|m| m.metric.as_str()).collect::<Vec<_>>(), ["conversion", "error-rate"]);
    assert_eq!(
        q[0].arms[1],
        (
            "v2".to_string(),
            QueryPair { success: conversion("v2.0.0", "orders"), trial: conversion("v2.0.0", "visits") }
        )
    );
    assert_eq!(
        q[1].arms[0].1,
        QueryPair { success: istio_errors("v1.0.0", true), trial: istio_errors("v1.0.0", false) }
    );
}

#[test]
fn template_errors_surface_as_config_errors() {
    let exp = with_metrics(
        "[{name: bad, role: guardrail, direction: decrease, successQuery: 'x{a=\"{{ arm.colour }}\"}', trialQuery: 'y'}]",
    );
    let err = run(measure(&exp, Routing::Istio, Duration::from_secs(60), &Table(HashMap::new()), LIMIT)).unwrap_err();
    assert_eq!(
        err,
        AnalysisError::Config(ConfigError::Template(TemplateError::Unknown {
            metric: "bad".into(),
            name: "arm.colour".into()
        }))
    );
}

fn full_table() -> Table {
    let mut t = HashMap::new();
    for (v, visits, orders, requests, errors) in
        [("v1.0.0", 1000.4, 100.0, 10000.0, 40.0), ("v2.0.0", 1010.0, 180.0, 10100.0, 30.0)]
    {
        t.insert(conversion(v, "visits"), visits);
        t.insert(conversion(v, "orders"), orders);
        t.insert(istio_errors(v, false), requests);
        t.insert(istio_errors(v, true), errors);
        t.insert(first_exposures(v), visits);
    }
    Table(t)
}

#[test]
fn measures_every_metric_and_arm() {
    let m = run(measure(&experiment(), Routing::Istio, Duration::from_secs(125), &full_table(), LIMIT)).unwrap();
    assert_eq!(m.metrics[0].metric, "conversion");
    assert_eq!(
        m.metrics[0].arms,
        vec![
            ("v1".into(), Counts { successes: 100.0, trials: 1000.4 }),
            ("v2".into(), Counts { successes: 180.0, trials: 1010.0 })
        ]
    );
    assert_eq!(m.metrics[1].arms[1].1, Counts { successes: 30.0, trials: 10100.0 });
}

#[test]
fn missing_data_names_the_metric_and_arm() {
    let mut table = full_table();
    table.0.remove(&istio_errors("v2.0.0", false));
    let err = run(measure(&experiment(), Routing::Istio, Duration::from_secs(125), &table, LIMIT)).unwrap_err();
    assert!(
        matches!(&err, AnalysisError::Unavailable { metric, arm, error: SourceError::NoData { .. } } if metric == "error-rate" && arm == "v2"),
        "{err}"
    );
    assert!(
        err.to_string().starts_with("metric `error-rate`, arm `v2`: query `sum(increase(istio_requests_total"),
        "{err}"
    );
}

fn counts(rows: &[(&str, f64, f64)]) -> Vec<(String, Counts)> {
    rows.iter().map(|(a, s, t)| (a.to_string(), Counts { successes: *s, trials: *t })).collect()
}

fn weights(v1: f64, v2: f64) -> BTreeMap<String, f64> {
    BTreeMap::from([("v1".into(), v1), ("v2".into(), v2)])
}

#[test]
fn builds_the_decision_input_with_directions_margins_and_srm() {
    let exp = with_metrics(
        "[{name: p99-latency, builtin: istio-latency, thresholdMs: 300, role: guardrail}, {name: crashes, role: guardrail, direction: increase, successQuery: a, trialQuery: b}]",
    );
    let m = Measurements {
        metrics: vec![
            MetricCounts {
                metric: "conversion".into(),
                arms: counts(&[("v1", 100.0, 1000.4), ("v2", 180.0, 1010.0)]),
                batches: vec![],
            },
            MetricCounts {
                metric: "error-rate".into(),
                arms: counts(&[("v1", 4.0, 1000.0), ("v2", 1011.2, 1010.0)]),
                batches: vec![],
            },
            MetricCounts {
                metric: "p99-latency".into(),
                arms: counts(&[("v1", -0.4, 1000.0), ("v2", 2.0, 1010.0)]),
                batches: vec![],
            },
            MetricCounts {
                metric: "crashes".into(),
                arms: counts(&[("v1", 1.0, 10.0), ("v2", 1.0, 10.0)]),
                batches: vec![],
            },
        ],
        assignment: None,
    };
    let input = decision_input(&exp, &m, &weights(90.0, 10.0)).unwrap();
    assert_eq!(input.control, "v1");
    let goal = input.goal.as_ref().unwrap();
    assert_eq!(goal.direction, stats::Direction::HigherIsBetter);
    assert_eq!(goal.arms[0].value, Observation::Proportion { successes: 100, trials: 1000 });
    let guard: Vec<_> =
        input.guardrails.iter().map(|g| (g.metric.name.as_str(), g.metric.direction, g.margin)).collect();
    assert_eq!(
        guard,
        [
            ("error-rate", stats::Direction::LowerIsBetter, stats::Margin::Absolute(0.002)),
            ("p99-latency", stats::Direction::LowerIsBetter, stats::Margin::Absolute(0.0)),
            ("crashes", stats::Direction::HigherIsBetter, stats::Margin::Absolute(0.0)),
        ]
    );
    // Extrapolation can put successes a little outside [0, trials]; they are clamped.
    assert_eq!(input.guardrails[0].metric.arms[1].value, Observation::Proportion { successes: 1010, trials: 1010 });
    assert_eq!(input.guardrails[1].metric.arms[0].value, Observation::Proportion { successes: 0, trials: 1000 });
    let units: Vec<_> = input.assignment.iter().map(|a| (a.arm.as_str(), a.weight, a.units)).collect();
    assert_eq!(units, [("v1", 90.0, 1000), ("v2", 10.0, 1010)]);
}

#[test]
fn guardrails_of_unknown_direction_are_refused() {
    let exp = with_metrics("[{name: crashes, role: guardrail, successQuery: a, trialQuery: b}]");
    let mut m = Measurements { metrics: vec![], assignment: None };
    for name in ["conversion", "error-rate", "crashes"] {
        m.metrics.push(MetricCounts {
            metric: name.into(),
            arms: counts(&[("v1", 1.0, 10.0), ("v2", 1.0, 10.0)]),
            batches: vec![],
        });
    }
    assert_eq!(decision_input(&exp, &m, &weights(50.0, 50.0)), Err(ConfigError::Direction("crashes".into())));
}

#[test]
fn guardrails_alone_make_a_gate_whose_srm_units_are_the_first_guardrails_trials() {
    let mut exp = experiment();
    exp.spec.analysis.as_mut().unwrap().metrics.remove(0);
    let m = Measurements {
        metrics: vec![MetricCounts {
            metric: "error-rate".into(),
            arms: counts(&[("v1", 4.0, 1000.0), ("v2", 3.0, 990.0)]),
            batches: vec![],
        }],
        assignment: None,
    };
    let input = decision_input(&exp, &m, &weights(50.0, 50.0)).unwrap();
    assert_eq!(input.goal, None);
    assert_eq!(input.assignment.iter().map(|a| a.units).collect::<Vec<_>>(), [1000, 990]);
    exp.spec.analysis.as_mut().unwrap().metrics.clear();
    assert_eq!(
        decision_input(&exp, &Measurements { metrics: vec![], assignment: None }, &weights(50.0, 50.0)),
        Err(ConfigError::NoMetrics)
    );
}

#[test]
fn needs_at_most_one_goal_and_positive_weights_for_srm() {
    let m = run(measure(&experiment(), Routing::Istio, Duration::from_secs(125), &full_table(), LIMIT)).unwrap();
    let two_goals = with_metrics("[{name: revenue, role: goal, successQuery: a, trialQuery: b}]");
    assert_eq!(decision_input(&two_goals, &m, &weights(50.0, 50.0)), Err(ConfigError::Goals(2)));
    assert_eq!(
        decision_input(&experiment(), &m, &weights(100.0, 0.0)),
        Err(ConfigError::Weight { arm: "v2".into(), weight: Some(0.0) })
    );
    let only_v1 = BTreeMap::from([("v1".to_string(), 100.0)]);
    assert_eq!(
        decision_input(&experiment(), &m, &only_v1),
        Err(ConfigError::Weight { arm: "v2".into(), weight: None })
    );
    let mut no_srm = experiment();
    no_srm.spec.analysis.as_mut().unwrap().srm = None;
    assert!(decision_input(&no_srm, &m, &BTreeMap::new()).unwrap().assignment.is_empty());
}

#[test]
fn with_istio_the_srm_units_are_first_exposures_read_by_their_own_query() {
    let exp = experiment();
    let mut table = full_table();
    table.0.insert(first_exposures("v1.0.0"), 700.4);
    table.0.remove(&first_exposures("v2.0.0"));
    let m = run(measure(&exp, Routing::Istio, Duration::from_secs(125), &table, LIMIT)).unwrap();
    assert_eq!(m.assignment, Some(vec![("v1".into(), 700.4), ("v2".into(), 0.0)]), "no data is no units yet");
    let input = decision_input(&exp, &m, &weights(50.0, 50.0)).unwrap();
    assert_eq!(
        input.assignment.iter().map(|a| (a.arm.as_str(), a.units)).collect::<Vec<_>>(),
        [("v1", 700), ("v2", 0)]
    );
    assert_eq!(input.goal.unwrap().arms[0].value, Observation::Proportion { successes: 100, trials: 1000 });
    let native = with_metrics("[]");
    assert_eq!(assignment_queries(&native, Routing::Native, Duration::from_secs(125)), Ok(None));
    let mut off = experiment();
    off.spec.analysis.as_mut().unwrap().srm = None;
    assert_eq!(assignment_queries(&off, Routing::Istio, Duration::from_secs(125)), Ok(None));
}

#[test]
fn an_srm_count_that_is_not_finite_fails_the_look_naming_the_arm() {
    let exp = experiment();
    let mut table = full_table();
    table.0.insert(first_exposures("v1.0.0"), 700.0);
    table.0.insert(first_exposures("v2.0.0"), f64::INFINITY);
    let err = run(measure(&exp, Routing::Istio, Duration::from_secs(125), &table, LIMIT)).unwrap_err();
    assert!(
        matches!(&err, AnalysisError::Unavailable { metric, arm, error: SourceError::Query { .. } } if metric == "srm" && arm == "v2"),
        "{err:?}"
    );
}

#[test]
fn srm_reads_that_fail_name_the_check_and_the_arm() {
    struct Down;
    impl MetricSource for Down {
        fn value<'a>(&'a self, query: &'a str) -> BoxFuture<'a, Result<f64, SourceError>> {
            let down = SourceError::Unreachable { source_name: "p".into(), message: "refused".into() };
            let answer = if query.contains(r#"forklane_cohort="assigned""#) { Err(down) } else { Ok(1.0) };
            Box::pin(async move { answer })
        }
        fn values<'a>(&'a self, _: &'a str, _: Duration, count: usize) -> BoxFuture<'a, Result<Vec<f64>, SourceError>> {
            Box::pin(async move { Ok(vec![1.0; count]) })
        }
    }
    let err = run(measure(&experiment(), Routing::Istio, Duration::from_secs(125), &Down, LIMIT)).unwrap_err();
    assert!(matches!(&err, AnalysisError::Unavailable { metric, arm, .. } if metric == "srm" && arm == "v1"), "{err}");
}

#[test]
fn maps_the_analysis_config() {
    let exp = experiment();
    let c = decision_config(exp.spec.analysis.as_ref().unwrap());
    assert_eq!((c.method, c.alpha, c.min_samples_per_arm), (stats::Method::Bayesian, 0.01, 500));
    let defaults = decision_config(&Analysis::default());
    assert_eq!(defaults, DecisionConfig { alpha: 0.05, ..DecisionConfig::default() });
}

#[test]
fn a_clear_winner_is_promoted_end_to_end() {
    let exp = experiment();
    let m = run(measure(&exp, Routing::Istio, Duration::from_secs(125), &full_table(), LIMIT)).unwrap();
    let input = decision_input(&exp, &m, &weights(50.0, 50.0)).unwrap();
    let decision = decide(&input, &decision_config(exp.spec.analysis.as_ref().unwrap())).unwrap();
    assert_eq!(decision.outcome, Outcome::Promote { arm: "v2".into() });
}

#[test]
fn a_duration_horizon_continues_until_it_has_elapsed_then_tests_once() {
    let mut exp = experiment();
    let analysis = exp.spec.analysis.as_mut().unwrap();
    analysis.method = Method::FixedHorizon;
    analysis.horizon = Some(crate::api::Horizon { samples_per_arm: None, duration: Some("2h".parse().unwrap()) });
    let m = run(measure(&exp, Routing::Istio, Duration::from_secs(125), &full_table(), LIMIT)).unwrap();
    let input = decision_input(&exp, &m, &weights(50.0, 50.0)).unwrap();
    let analysis = exp.spec.analysis.as_ref().unwrap();
    let at = |secs| decide(&input, &decision_config_at(analysis, Duration::from_secs(secs))).unwrap().outcome;
    // The same clear winner: no promotion before the horizon, however clear.
    assert_eq!(
        at(3600),
        Outcome::Continue { reason: "fixed-horizon test waits for its horizon duration: 1h00m00s to go".into() }
    );
    assert_eq!(at(7200), Outcome::Promote { arm: "v2".into() });
    assert_eq!(at(7260), Outcome::Promote { arm: "v2".into() });
    // A horizon in samples is not a wait in time.
    let mut by_samples = analysis.clone();
    by_samples.horizon = Some(crate::api::Horizon { samples_per_arm: Some(5000), duration: None });
    let c = decision_config_at(&by_samples, Duration::from_secs(60));
    assert_eq!((c.horizon_wait, c.planned_samples_per_arm), (None, Some(5000)));
}

/// Answers every query with 1 after `delay`.
struct Slow {
    delay: Duration,
}

impl MetricSource for Slow {
    fn value<'a>(&'a self, _query: &'a str) -> BoxFuture<'a, Result<f64, SourceError>> {
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            Ok(1.0)
        })
    }

    fn values<'a>(
        &'a self,
        _query: &'a str,
        _step: Duration,
        count: usize,
    ) -> BoxFuture<'a, Result<Vec<f64>, SourceError>> {
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            Ok(vec![1.0; count])
        })
    }
}

#[tokio::test]
async fn a_look_reads_every_metric_and_arm_at_once() {
    let exp = with_metrics(
        "[{name: a-error, role: guardrail, successQuery: 'a', trialQuery: 'b'},
          {name: b-error, role: guardrail, successQuery: 'c', trialQuery: 'd'},
          {name: c-error, role: guardrail, successQuery: 'e', trialQuery: 'f'}]",
    );
    let source = Slow { delay: Duration::from_millis(200) };
    let started = std::time::Instant::now();
    let m = measure(&exp, Routing::Istio, Duration::from_secs(60), &source, LIMIT).await.unwrap();
    let elapsed = started.elapsed();
    // 5 metrics × 2 arms, each a trial then a success query: 4 s one after the other.
    assert_eq!(m.metrics.iter().map(|mc| mc.arms.len()).sum::<usize>(), 10);
    assert!(m.metrics.iter().all(|mc| mc.arms.iter().all(|(_, c)| *c == Counts { successes: 1.0, trials: 1.0 })));
    assert!(elapsed < Duration::from_millis(1500), "{elapsed:?}");
}

#[tokio::test]
async fn a_look_gives_up_at_its_deadline_as_metrics_unavailable() {
    let source = crate::analysis::PrometheusSource::new(&crate::analysis::prometheus::tests::silent().await).unwrap();
    let limit = Duration::from_secs(1);
    let started = std::time::Instant::now();
    let err = measure(&experiment(), Routing::Istio, Duration::from_secs(60), &source, limit).await.unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(
        err,
        AnalysisError::Unavailable {
            metric: "conversion".into(),
            arm: "v1".into(),
            error: SourceError::Deadline(limit)
        }
    );
    assert!(elapsed >= limit && elapsed < Duration::from_secs(5), "{elapsed:?}");
}

#[tokio::test]
async fn the_first_failure_in_spec_order_is_the_error_whichever_answers_first() {
    /// v1's queries fail last, v2's at once.
    struct Staggered;
    impl MetricSource for Staggered {
        fn value<'a>(&'a self, query: &'a str) -> BoxFuture<'a, Result<f64, SourceError>> {
            Box::pin(async move {
                if query.contains("v1.0.0") {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(SourceError::NoData { query: query.into(), why: "empty result".into() })
            })
        }

        fn values<'a>(&'a self, query: &'a str, _: Duration, _: usize) -> BoxFuture<'a, Result<Vec<f64>, SourceError>> {
            Box::pin(async move { Err(self.value(query).await.unwrap_err()) })
        }
    }
    let err = measure(&experiment(), Routing::Istio, Duration::from_secs(60), &Staggered, LIMIT).await.unwrap_err();
    assert!(
        matches!(&err, AnalysisError::Unavailable { metric, arm, .. } if metric == "conversion" && arm == "v1"),
        "{err}"
    );
}

#[test]
fn a_canary_shares_alpha_and_srm_alpha_among_its_analysis_steps() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/canary.yaml")).unwrap();
    let mut canary: Experiment = serde_yaml_ng::from_str(&text).unwrap();
    let one = look_config(&canary, Duration::from_secs(60)).unwrap();
    assert_eq!((one.alpha, one.srm_alpha), (0.05, 0.001));
    let Strategy::Canary(c) = &mut canary.spec.strategy else { panic!("a canary") };
    let analysis_step = c.steps.iter().find(|s| s.analysis.is_some()).unwrap().clone();
    c.steps.extend([analysis_step.clone(), analysis_step.clone(), analysis_step]);
    let four = look_config(&canary, Duration::from_secs(60)).unwrap();
    assert_eq!((four.alpha, four.srm_alpha), (0.05 / 4.0, 0.001 / 4.0));
    assert_eq!(DecisionConfig { alpha: 0.05, srm_alpha: 0.001, ..four }, one);
    // An A/B test is one analysis: the whole α.
    assert_eq!(
        look_config(&experiment(), Duration::from_secs(60)).unwrap(),
        decision_config(experiment().spec.analysis.as_ref().unwrap())
    );
}

#[test]
fn batches_cover_whole_intervals_up_to_sixteen() {
    let minute = Duration::from_secs(60);
    assert_eq!(batch_plan(Duration::from_secs(119), minute), None);
    assert_eq!(batch_plan(Duration::from_secs(125), minute), Some((2, Duration::from_secs(62))));
    assert_eq!(batch_plan(Duration::from_secs(600), minute), Some((10, minute)));
    assert_eq!(batch_plan(Duration::from_secs(3600), minute), Some((16, Duration::from_secs(225))));
}

/// Answers batch reads with a fixed split per arm and query kind; counts come from `full_table`.
struct Split {
    counts: Table,
    fail_v2_batches: bool,
    asked: std::sync::Mutex<Vec<(String, Duration, usize)>>,
}

impl MetricSource for Split {
    fn value<'a>(&'a self, query: &'a str) -> BoxFuture<'a, Result<f64, SourceError>> {
        self.counts.value(query)
    }

    fn values<'a>(
        &'a self,
        query: &'a str,
        step: Duration,
        count: usize,
    ) -> BoxFuture<'a, Result<Vec<f64>, SourceError>> {
        self.asked.lock().unwrap().push((query.to_string(), step, count));
        let v2 = query.contains("v2.0.0");
        let answer = if v2 && self.fail_v2_batches {
            Err(SourceError::Query { query: query.into(), message: "boom".into() })
        } else if query.contains("orders") {
            Ok((0..count).map(|i| i as f64 + if v2 { 10.0 } else { 5.0 }).collect())
        } else if query.contains("5..") {
            // No error series in any interval.
            Err(SourceError::NoData { query: query.into(), why: "empty result".into() })
        } else {
            Ok(vec![100.0; count])
        };
        Box::pin(std::future::ready(answer))
    }
}

fn split(fail_v2_batches: bool) -> Split {
    Split { counts: full_table(), fail_v2_batches, asked: Default::default() }
}

#[test]
fn a_look_reads_per_interval_batches_with_the_batch_window() {
    // The table's counts are keyed by a 2m5s window: this look spans 10m, 10 intervals of 1m.
    let table = Table(full_table().0.into_iter().map(|(q, v)| (at_window(&q, "10m"), v)).collect());
    let source = Split { counts: table, ..split(false) };
    let m = run(measure(&experiment(), Routing::Istio, Duration::from_secs(600), &source, LIMIT)).unwrap();
    let asked = source.asked.lock().unwrap();
    assert_eq!(asked.len(), 8, "trial and success × 2 metrics × 2 arms");
    assert!(
        asked.iter().all(|(q, step, count)| q.contains("[1m]") && *step == Duration::from_secs(60) && *count == 10)
    );
    let conversion = &m.metrics[0];
    assert_eq!(conversion.batches.len(), 2);
    assert_eq!(conversion.batches[1][3], Counts { successes: 13.0, trials: 100.0 });
    assert_eq!(conversion.batches[0].len(), 10);
    // The error series has data in total (40 and 30 errors) but none per interval: no batches.
    assert!(m.metrics[1].batches.is_empty());
    let input = decision_input(&experiment(), &m, &weights(50.0, 50.0)).unwrap();
    let goal = input.goal.unwrap();
    assert_eq!(goal.arms[0].batches[9], stats::Batch { successes: 14, trials: 100 });
    assert!(input.guardrails[0].metric.arms.iter().all(|a| a.batches.is_empty()));
}

#[test]
fn a_failing_batch_read_fails_the_look_like_a_failing_count_read() {
    let table = Table(full_table().0.into_iter().map(|(q, v)| (at_window(&q, "10m"), v)).collect());
    let source = Split { counts: table, ..split(true) };
    let err = run(measure(&experiment(), Routing::Istio, Duration::from_secs(600), &source, LIMIT)).unwrap_err();
    assert!(
        matches!(&err, AnalysisError::Unavailable { metric, arm, error: SourceError::Query { .. } } if metric == "conversion" && arm == "v2"),
        "{err:?}"
    );
}
