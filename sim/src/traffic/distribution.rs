//! istiod's configuration distribution report (`PILOT_ENABLE_STATUS`, off by default in Istio):
//! it writes into each VirtualService's and DestinationRule's status whether every proxy has
//! applied the object's current generation, as a `Reconciled` condition whose message counts
//! the proxies ("4/5 proxies up to date."). Fields as istiod writes them: generations as
//! strings, a probe time, no `reason`.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::task::JoinHandle;

use forklane_core::clock::format_time;

use crate::cluster::store::{ListParams, Patch, Subresource, WriteOptions};
use crate::cluster::{Gvr, Store};

use super::{ConfigKind, SnapshotFeed};

/// The field manager of istiod's status writes.
const MANAGER: &str = "pilot-discovery";

/// Reports distribution every `every` (real time) until the handle is aborted.
pub(crate) fn report(store: Store, feed: SnapshotFeed, every: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            for kind in [ConfigKind::VirtualService, ConfigKind::DestinationRule] {
                report_kind(&store, &feed, kind);
            }
        }
    })
}

fn gvr(kind: ConfigKind) -> Gvr {
    let resource = match kind {
        ConfigKind::VirtualService => "virtualservices",
        ConfigKind::DestinationRule => "destinationrules",
    };
    Gvr::new("networking.istio.io", "v1", resource)
}

fn report_kind(store: &Store, feed: &SnapshotFeed, kind: ConfigKind) {
    let gvr = gvr(kind);
    let Ok(list) = store.list(&gvr, None, &ListParams::default()) else { return };
    for object in list["items"].as_array().into_iter().flatten() {
        let meta = &object["metadata"];
        let (Some(namespace), Some(name)) = (meta["namespace"].as_str(), meta["name"].as_str()) else { continue };
        if !meta["deletionTimestamp"].is_null() {
            continue;
        }
        let generation = meta["generation"].as_i64().unwrap_or(1);
        let (applied, proxies) = feed.distribution(kind, namespace, name, generation);
        let wanted = status(generation, applied, proxies);
        if reported(&object["status"]) == reported(&wanted) {
            continue;
        }
        let mut written = wanted;
        let now = format_time(store.now());
        written["conditions"][0]["lastProbeTime"] = json!(now);
        written["conditions"][0]["lastTransitionTime"] = json!(now);
        let opts = WriteOptions {
            field_manager: Some(MANAGER.into()),
            subresource: Subresource::Status,
            ..Default::default()
        };
        let patch = Patch::Merge(json!({"status": written}));
        if let Err(e) = store.patch(&gvr, Some(namespace), name, patch, &opts) {
            tracing::debug!(%namespace, %name, error = %e, "could not report distribution");
        }
    }
}

/// The status istiod writes for `applied` of `proxies` proxies holding `generation`.
fn status(generation: i64, applied: usize, proxies: usize) -> Value {
    let reconciled = if applied == proxies { "True" } else { "False" };
    json!({
        "observedGeneration": generation.to_string(),
        "conditions": [{
            "type": "Reconciled",
            "status": reconciled,
            "message": format!("{applied}/{proxies} proxies up to date."),
            "observedGeneration": generation.to_string(),
        }],
    })
}

/// What a status says, without its times.
fn reported(status: &Value) -> (Value, Vec<(Value, Value, Value)>) {
    let conditions = status["conditions"].as_array().into_iter().flatten();
    let said = conditions.map(|c| (c["type"].clone(), c["status"].clone(), c["message"].clone())).collect();
    (status["observedGeneration"].clone(), said)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconciled_only_when_every_proxy_holds_the_generation() {
        let pending = status(3, 4, 5);
        assert_eq!(pending["observedGeneration"], "3");
        assert_eq!(pending["conditions"][0]["status"], "False");
        assert_eq!(pending["conditions"][0]["message"], "4/5 proxies up to date.");
        assert_eq!(status(3, 5, 5)["conditions"][0]["status"], "True");
        assert_eq!(reported(&status(3, 5, 5)), reported(&status(3, 5, 5)));
        assert_ne!(reported(&status(3, 5, 5)), reported(&status(4, 5, 5)), "a new generation is reported again");
    }
}
