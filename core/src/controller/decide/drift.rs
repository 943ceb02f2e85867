//! Routing someone else changed while the experiment ran: a person's edit of the VirtualService, a
//! deleted DestinationRule, a patched Service selector. The reconcile puts it back like any other
//! difference; this names what it put back, for an event.

use std::time::Duration;

use serde_json::Value;

use crate::clock::parse_time;
use crate::plan::Action;

use super::super::apply::FIELD_MANAGER;
use super::Input;

/// A routing write of this controller may not be in its cache yet for this long: its object's
/// absence then is not a deletion.
const CACHE_LAG: Duration = Duration::from_secs(5);

/// The writes of `writes` that put back a change made outside Forklane since its last write:
/// objects another manager updated after Forklane did, or a DestinationRule that is gone while
/// the live routes still name its subsets (Forklane writes the rule before any route naming it;
/// a missing VirtualService cannot be told from one not written yet, so it is put back unreported).
pub(super) fn corrected(input: &Input, writes: &[Action]) -> Vec<String> {
    let live = &input.obs.live;
    let settled_in_cache =
        input.routed_at.is_none_or(|t| Duration::try_from(t.duration_until(input.now)).is_ok_and(|d| d >= CACHE_LAG));
    let rule_deleted = !input.obs.routed_subsets.is_empty() && settled_in_cache;
    writes
        .iter()
        .filter_map(|write| {
            let (kind, object, deleted) = match write {
                Action::VirtualService(_) => ("VirtualService", live.virtual_service.as_ref(), false),
                Action::DestinationRule(_) => ("DestinationRule", live.destination_rule.as_ref(), rule_deleted),
                Action::ServiceSelector(_) => ("Service", live.service.as_ref(), false),
                Action::HttpRoute(_) => ("HTTPRoute", live.http_route.as_ref(), false),
                // An arm's Service is written before any route names it: gone while the live
                // route names its arm, someone deleted it.
                Action::ArmService(s) => {
                    let arm = s.metadata.labels.as_ref().and_then(|l| l.get(crate::plan::gateway::ARM_LABEL));
                    let routed = arm.is_some_and(|a| input.obs.routed_subsets.contains(a)) && settled_in_cache;
                    ("Service", s.metadata.name.as_ref().and_then(|n| live.arm_services.get(n)), routed)
                }
                Action::Telemetry(_) | Action::Scale(_) | Action::RemoveArmServices(_) => return None,
            };
            let name = write.object()["metadata"]["name"].as_str().unwrap_or_default().to_string();
            match object {
                None if deleted => Some(format!("{kind} {name} (deleted)")),
                None => None,
                Some(o) => changed_by(o).map(|manager| format!("{kind} {name} (changed by {manager})")),
            }
        })
        .collect()
}

/// The manager that changed `object` since Forklane last did. managedFields times are whole
/// seconds: a change in the same second as Forklane's is not told apart (put back, unreported).
fn changed_by(object: &Value) -> Option<String> {
    let entries = object.pointer("/metadata/managedFields")?.as_array()?;
    let time = |e: &Value| e["time"].as_str().and_then(parse_time);
    let ours = entries.iter().filter(|e| e["manager"] == FIELD_MANAGER).filter_map(time).max()?;
    entries
        .iter()
        .filter(|e| e["manager"] != FIELD_MANAGER && e["subresource"].is_null())
        .find(|e| time(e).is_some_and(|t| t > ours))
        .and_then(|e| e["manager"].as_str().map(String::from))
}
