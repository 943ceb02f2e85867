//! Routing changes reach proxies one at a time: Envoy gets routes (RDS) and clusters and endpoints
//! (CDS/EDS) separately, each proxy after its own delay, and kube-proxy on each node follows the
//! endpoints at its own pace. A write that relies on an earlier routing change being everywhere
//! waits for it, or a proxy that has one change and not the other answers 503:
//! - a route that names a new subset waits until the DestinationRule defining it has propagated
//!   (else 503 NC: the route names a cluster the proxy does not know);
//! - a subset is removed only once no proxy can still route to it (503 NC the other way round);
//! - an arm is scaled down only once traffic to it has drained (`scaleDownDelay`): proxies still
//!   holding the old routes or endpoints would send requests to pods that are gone.
//!
//! The delays count from the last routing write, as this controller remembers it (a write made in
//! this very batch, or one made moments ago that the cached status does not show yet) or as the
//! status records it (across restarts and leader changes).

use std::collections::BTreeSet;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::api::{Experiment, duration::HumanDuration};
use crate::clock::parse_time;
use crate::plan::{Action, gateway};

use super::distribution::Distribution;
use super::observe::{Observation, referenced_subsets};

/// How soon to look again while the mesh reports a write not yet everywhere (its status change
/// triggers a look sooner).
const MESH_POLL: Duration = Duration::from_secs(1);

/// Status times are whole seconds, truncated: the write may have been up to a second later.
const STATUS_RESOLUTION: Duration = Duration::from_secs(1);

/// When routing was last written, from everything the reconcile knows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct RoutingClock {
    pub now: Timestamp,
    /// The controller's own memory of its last routing write for this experiment.
    pub remembered: Option<Timestamp>,
}

/// A write that must wait, why, and for how long.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Hold {
    pub why: String,
    pub left: Duration,
}

/// Whether `action` is a routing write (what the delays count from).
pub(crate) fn is_routing(action: &Action) -> bool {
    matches!(
        action,
        Action::VirtualService(_)
            | Action::DestinationRule(_)
            | Action::HttpRoute(_)
            | Action::ArmService(_)
            | Action::RemoveArmServices(_)
            | Action::ServiceSelector(_)
    )
}

/// What a write relies on: the delay it needs after the last routing write, what it waits to do,
/// and the routing object whose distribution the mesh may report (its kind and the report).
struct Reliance<'o> {
    delay: Duration,
    what: String,
    on: Option<(&'static str, &'o Distribution)>,
}

/// What `action` (to be written) relies on; `None` when it relies on nothing. `shrinks`: a Scale
/// that lowers the arm's replicas.
fn relies_on<'o>(exp: &Experiment, action: &Action, obs: &'o Observation, shrinks: bool) -> Option<Reliance<'o>> {
    let delay = exp.spec.propagation_delay();
    match action {
        Action::VirtualService(vs) => {
            let new: Vec<String> = referenced_subsets(vs).difference(&obs.routed_subsets).cloned().collect();
            let what = format!("routing to subset {}", new.join(", "));
            let on = Some(("DestinationRule", &obs.distribution.subsets));
            (!new.is_empty()).then_some(Reliance { delay, what, on })
        }
        Action::DestinationRule(dr) => {
            let kept: BTreeSet<&String> = dr.spec.subsets.iter().flatten().map(|s| &s.name).collect();
            let live = obs.plan.subsets.iter().flatten();
            let removed: Vec<&str> = live.filter(|s| !kept.contains(s)).map(String::as_str).collect();
            let what = format!("removing subset {}", removed.join(", "));
            let on = Some(("VirtualService", &obs.distribution.routes));
            (!removed.is_empty()).then_some(Reliance { delay, what, on })
        }
        // The Gateway API's arm Services play the subsets' part: a route names a new one only once
        // it has reached every proxy, and one goes only once no proxy can still route to it.
        // By Service, not by arm: an arm already routed may get a Service for another cohort
        // (an experiment edited to pin users, say).
        Action::HttpRoute(route) => {
            let new: Vec<String> = gateway::service_names(route).difference(&obs.routed_services).cloned().collect();
            let what = format!("routing to Service {}", new.join(", "));
            (!new.is_empty()).then_some(Reliance { delay, what, on: None })
        }
        Action::RemoveArmServices(r) => {
            let names: Vec<&str> = r.services.iter().map(|(_, name)| name.as_str()).collect();
            let what = format!("removing Service {}", names.join(", "));
            Some(Reliance { delay, what, on: None })
        }
        Action::Scale(s) if shrinks => {
            let what = format!("scaling down {}", s.deployment);
            Some(Reliance { delay: exp.spec.scale_down_delay(), what, on: None })
        }
        _ => None,
    }
}

/// Whether `action` must wait: `routed_before` says a routing write precedes it in this batch.
pub(crate) fn hold(
    exp: &Experiment,
    action: &Action,
    obs: &Observation,
    clock: RoutingClock,
    routed_before: bool,
    shrinks: bool,
) -> Option<Hold> {
    let Reliance { delay, what, on } = relies_on(exp, action, obs, shrinks)?;
    if let Some(hold) = wait(exp, delay, &what, clock, routed_before) {
        return Some(hold);
    }
    // The delay is over; where the mesh reports, the object must also have reached every proxy
    // (a report read in the batch that writes the object is of its previous generation).
    let (object, pending) = match on? {
        (_, Distribution::Unreported) => return None,
        (_, Distribution::Reached) if !routed_before => return None,
        (object, Distribution::Reached) => (object, "written just now".to_string()),
        (object, Distribution::Pending(said)) => (object, said.clone()),
    };
    Some(Hold {
        why: format!("waiting for the mesh to report the {object} on every proxy ({pending}), before {what}"),
        left: MESH_POLL,
    })
}

/// Whether `what` must wait for `delay` after the last routing write (`routed_before`: one in
/// this very batch).
pub(crate) fn wait(
    exp: &Experiment,
    delay: Duration,
    what: &str,
    clock: RoutingClock,
    routed_before: bool,
) -> Option<Hold> {
    let left = if routed_before {
        delay
    } else {
        let now = clock.now;
        let recorded = exp.status.as_ref().and_then(|s| s.routing_changed_at.as_deref()).and_then(parse_time);
        // The status only adds to what memory knows when it records a later write (another
        // replica's, before a leader change); its own copy of a remembered write is coarser.
        let truncated = |t: Timestamp| Timestamp::from_second(t.as_second()).unwrap_or(t);
        let later = |r: &Timestamp| clock.remembered.is_none_or(|m| *r > truncated(m));
        let from_status = recorded.filter(later).map(|t| t + signed(delay + STATUS_RESOLUTION));
        let from_memory = clock.remembered.map(|t| t + signed(delay));
        let ready_at = from_status.into_iter().chain(from_memory).max()?;
        Duration::try_from(now.duration_until(ready_at)).ok().filter(|d| !d.is_zero())?
    };
    // The delay, not the time left: the message (and so the status) stays the same while it runs.
    let delay = HumanDuration::from(delay);
    Some(Hold {
        why: format!("waiting {delay} after the last routing change, for every proxy to have it, before {what}"),
        left,
    })
}

fn signed(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}
