//! The sticky cookie after the end. The final routing (`Target::Final`) sends everyone to one arm
//! and its answers expire the cookie (`Max-Age=0`), so that no returning user stays pinned to an
//! arm that is gone. That lasts `min(maxAgeSeconds, 24h)` from `status.finishedAt`: by then every
//! cookie set before the end has either come back and been expired or expired by itself (or, past
//! a day, the user will meet a routing that no longer names their arm). Then the expiry is taken
//! out of the live VirtualService, and the routing sets no cookie at all.

use std::time::Duration;

use jiff::Timestamp;

use crate::api::{Experiment, Phase, Routing, defaults};
use crate::clock::parse_time;
use crate::plan::Action;
use crate::plan::istio::without_cookie_expiry;

use super::super::observe::Observation;
use super::{identity, rewritten, still_needed};

/// Where the expiry of the sticky cookie stands for a finished experiment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Expiry {
    /// No cookie to expire: no sticky assignment, or no final routing that expires it.
    None,
    /// Answers expire the cookie for this much longer: look again then.
    Running(Duration),
    /// The period is over: the expiry goes from the routing.
    Over,
}

/// How long answers expire the cookie after the end.
fn period(max_age_seconds: i64) -> Duration {
    Duration::from_secs(max_age_seconds.max(0).unsigned_abs()).min(defaults::STICKY_EXPIRY_PERIOD)
}

/// The expiry of `exp`'s sticky cookie at `now`. Only an experiment that ended by its final
/// routing (Succeeded, RolledBack) has one; a `finishedAt` that is missing or unreadable (an
/// experiment finished before it was recorded) counts as long past.
pub(super) fn expiry(exp: &Experiment, now: Timestamp) -> Expiry {
    let Some(sticky) = exp.spec.strategy.ab_test().and_then(|ab| ab.sticky.as_ref()) else { return Expiry::None };
    let status = exp.status.as_ref();
    let ended = status.is_some_and(|s| {
        matches!(s.phase, Some(Phase::Succeeded | Phase::RolledBack)) && s.mesh.is_some_and(Routing::routes)
    });
    if !ended {
        return Expiry::None;
    }
    let Some(finished) = status.and_then(|s| s.finished_at.as_deref()).and_then(parse_time) else {
        return Expiry::Over;
    };
    let since = Duration::from_secs_f64(finished.duration_until(now).as_secs_f64().max(0.0));
    match period(sticky.max_age_seconds).checked_sub(since) {
        Some(left) if !left.is_zero() => Expiry::Running(left),
        _ => Expiry::Over,
    }
}

/// The writes that end the expiry: the live VirtualService or HTTPRoute without it (only that
/// header goes; what people changed since the end stays). Empty when it has none (any more).
pub(super) fn end(exp: &Experiment, obs: &Observation) -> Vec<Action> {
    let Some(sticky) = exp.spec.strategy.ab_test().and_then(|ab| ab.sticky.as_ref()) else { return vec![] };
    if let Some(live_json) = obs.live.http_route.as_ref() {
        let Ok(live) = serde_json::from_value::<crate::gateway::HttpRoute>(live_json.clone()) else { return vec![] };
        let Some(mut route) = crate::plan::gateway::without_cookie_expiry(&live, &sticky.cookie_name) else {
            return vec![];
        };
        route.metadata = identity(&live.metadata, kube::Resource::controller_owner_ref(exp, &()).map(|r| vec![r]));
        route.status = None;
        return still_needed(live_json, Action::HttpRoute(Box::new(route)));
    }
    let Some(live_json) = obs.live.virtual_service.as_ref() else { return vec![] };
    let Ok(live) = serde_json::from_value::<crate::istio::VirtualService>(live_json.clone()) else { return vec![] };
    match without_cookie_expiry(&live, &sticky.cookie_name) {
        Some(vs) => rewritten(exp, live_json, &live, vs, true),
        None => vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ExperimentStatus;
    use crate::clock::format_time;
    use crate::fixtures::ExperimentBuilder;

    fn finished(max_age: i64, phase: Phase, finished_at: Option<Timestamp>) -> Experiment {
        let mut exp = ExperimentBuilder::ab_test("checkout")
            .control("v1")
            .arm("v2")
            .split([("v1", 50), ("v2", 50)])
            .sticky("forklane-checkout")
            .build();
        if let crate::api::Strategy::AbTest(ab) = &mut exp.spec.strategy {
            ab.sticky.as_mut().unwrap().max_age_seconds = max_age;
        }
        exp.status = Some(ExperimentStatus {
            phase: Some(phase),
            mesh: Some(Routing::Istio),
            final_arm: Some("v1".into()),
            finished_at: finished_at.map(format_time),
            ..Default::default()
        });
        exp
    }

    #[test]
    fn the_expiry_runs_for_the_cookies_max_age_capped_at_a_day_then_is_over() {
        let end = Timestamp::from_second(1_800_000_000).unwrap();
        let at = |secs: i64| Timestamp::from_second(1_800_000_000 + secs).unwrap();
        let hours = |h: u64| Duration::from_secs(h * 3_600);
        // (maxAgeSeconds, seconds since the end, expected)
        let cases = [
            (3_600, 0, Expiry::Running(hours(1))),
            (3_600, 1_800, Expiry::Running(Duration::from_secs(1_800))),
            (3_600, 3_599, Expiry::Running(Duration::from_secs(1))),
            (3_600, 3_600, Expiry::Over),
            (3_600, 90_000, Expiry::Over),
            (7 * 86_400, 0, Expiry::Running(hours(24))),
            (7 * 86_400, 23 * 3_600, Expiry::Running(hours(1))),
            (7 * 86_400, 24 * 3_600, Expiry::Over),
            // A clock behind the recorded end: the whole period is still ahead.
            (60, -30, Expiry::Running(Duration::from_secs(60))),
        ];
        for (max_age, since, expected) in cases {
            for phase in [Phase::Succeeded, Phase::RolledBack] {
                let exp = finished(max_age, phase, Some(end));
                assert_eq!(expiry(&exp, at(since)), expected, "maxAge {max_age}, {since}s after the end, {phase:?}");
            }
        }
    }

    #[test]
    fn only_a_sticky_experiment_ended_by_its_final_istio_routing_has_an_expiry() {
        let end = Timestamp::from_second(1_800_000_000).unwrap();
        assert_eq!(expiry(&finished(60, Phase::Failed, Some(end)), end), Expiry::None, "failed: nothing planned");
        assert_eq!(expiry(&finished(60, Phase::Promoting, None), end), Expiry::None, "not finished yet");
        let mut native = finished(60, Phase::Succeeded, Some(end));
        native.status.as_mut().unwrap().mesh = Some(Routing::Native);
        assert_eq!(expiry(&native, end), Expiry::None, "no cookies without a mesh");
        let mut not_sticky = finished(60, Phase::Succeeded, Some(end));
        if let crate::api::Strategy::AbTest(ab) = &mut not_sticky.spec.strategy {
            ab.sticky = None;
        }
        assert_eq!(expiry(&not_sticky, end), Expiry::None);
        assert_eq!(expiry(&finished(60, Phase::Succeeded, None), end), Expiry::Over, "finished before it was recorded");
    }
}
