//! One Event resource, two versions: as in kube-apiserver, `events.k8s.io/v1` Events are the
//! core `v1` Events (one storage, `/registry/events`) seen through a conversion. Objects are
//! stored in core form; `Convert_core_Event_To_v1_Event` and back (`pkg/apis/events/v1`) map
//! the renamed fields, and the events.k8s.io field selectors are translated to the core
//! labels the storage filters on (`AddFieldLabelConversionsForEvent`).

use crate::cluster::error::{Error, Result};
use crate::cluster::resources::GroupResource;
use serde_json::{Map, Value, json};

pub(crate) const GROUP: &str = "events.k8s.io";

/// (core/v1 field, events.k8s.io/v1 field) for the fields whose names differ; all others
/// (reason, type, eventTime, series, action, related, reportingInstance, metadata) are shared.
const RENAMED: [(&str, &str); 7] = [
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
    ("reportingComponent", "reportingController"),
];

/// Whether this group/resource is the events.k8s.io view of the core Events.
pub(crate) fn is_events_view(group: &str, resource: &str) -> bool {
    group == GROUP && resource == "events"
}

/// Where events.k8s.io Events are stored: with the core ones.
pub(crate) fn storage() -> GroupResource {
    GroupResource { group: String::new(), resource: "events".into() }
}

fn rename(obj: &Value, api_version: &str, into_core: bool) -> Value {
    let mut out: Map<String, Value> = obj.as_object().cloned().unwrap_or_default();
    for (core, v1) in RENAMED {
        let (from, to) = if into_core { (v1, core) } else { (core, v1) };
        if let Some(v) = out.remove(from) {
            out.insert(to.into(), v);
        }
    }
    out.insert("apiVersion".into(), json!(api_version));
    Value::Object(out)
}

/// `Convert_v1_Event_To_core_Event`: an events.k8s.io/v1 Event in core/v1 form.
pub(crate) fn to_core(obj: &Value) -> Value {
    let mut core = rename(obj, "v1", true);
    // Non-pointer structs in the Go types: always present in the core encoding.
    for field in ["involvedObject", "source"] {
        core.as_object_mut().expect("object").entry(field).or_insert_with(|| json!({}));
    }
    core
}

/// `Convert_core_Event_To_v1_Event`: a core/v1 Event in events.k8s.io/v1 form.
pub(crate) fn to_events(obj: &Value) -> Value {
    rename(obj, &format!("{GROUP}/v1"), false)
}

/// The events.k8s.io field labels and the core labels they select on.
const FIELD_LABELS: [(&str, &str); 12] = [
    ("metadata.name", "metadata.name"),
    ("metadata.namespace", "metadata.namespace"),
    ("reason", "reason"),
    ("type", "type"),
    ("reportingController", "reportingComponent"),
    ("regarding.kind", "involvedObject.kind"),
    ("regarding.namespace", "involvedObject.namespace"),
    ("regarding.name", "involvedObject.name"),
    ("regarding.uid", "involvedObject.uid"),
    ("regarding.apiVersion", "involvedObject.apiVersion"),
    ("regarding.resourceVersion", "involvedObject.resourceVersion"),
    ("regarding.fieldPath", "involvedObject.fieldPath"),
];

/// Rewrites an events.k8s.io field selector into core labels; the core spellings
/// (`involvedObject.name`) are not accepted there, as on a real cluster.
pub(crate) fn core_field_selector(selector: &str) -> Result<String> {
    let terms: Result<Vec<String>> = selector
        .split(',')
        .filter(|t| !t.trim().is_empty())
        .map(|term| {
            let term = term.trim();
            let split = term.find(['=', '!']).unwrap_or(term.len());
            let (label, rest) = term.split_at(split);
            let label = label.trim();
            match FIELD_LABELS.iter().find(|(v1, _)| *v1 == label) {
                Some((_, core)) => Ok(format!("{core}{rest}")),
                None => Err(Error::BadRequest(format!("field label not supported: {label}"))),
            }
        })
        .collect();
    Ok(terms?.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded() -> Value {
        json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "web.17a", "namespace": "d"},
            "eventTime": "2026-01-01T00:00:00.000000Z",
            "series": {"count": 2, "lastObservedTime": "2026-01-01T00:01:00.000000Z"},
            "reportingController": "forklane", "reportingInstance": "forklane-0",
            "action": "Promote", "reason": "Promoted", "type": "Normal", "note": "all traffic to v2",
            "regarding": {"kind": "Deployment", "name": "web", "namespace": "d", "uid": "u1"},
        })
    }

    #[test]
    fn converts_both_ways_without_loss() {
        let core = to_core(&recorded());
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(core["message"], "all traffic to v2");
        assert_eq!(core["reportingComponent"], "forklane");
        assert_eq!(core["involvedObject"]["name"], "web");
        assert_eq!(core["source"], json!({}));
        assert_eq!(core["series"]["count"], 2);
        assert!(core.get("note").is_none() && core.get("regarding").is_none());
        let mut back = to_events(&core);
        back.as_object_mut().unwrap().remove("deprecatedSource");
        assert_eq!(back, recorded());

        let legacy = json!({"apiVersion": "v1", "kind": "Event", "involvedObject": {"kind": "Pod", "name": "p"}, "message": "m",
            "source": {"component": "kubelet", "host": "n1"}, "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:05Z", "count": 3});
        let v1 = to_events(&legacy);
        assert_eq!(
            (&v1["deprecatedSource"]["host"], &v1["deprecatedCount"], &v1["deprecatedLastTimestamp"]),
            (&json!("n1"), &json!(3), &json!("2026-01-01T00:00:05Z"))
        );
        assert_eq!(to_core(&v1), legacy);
    }

    #[test]
    fn field_selectors_use_the_events_labels() {
        assert_eq!(
            core_field_selector("regarding.name=web,reportingController!=x,type==Normal").unwrap(),
            "involvedObject.name=web,reportingComponent!=x,type==Normal"
        );
        assert_eq!(core_field_selector("").unwrap(), "");
        assert_eq!(
            core_field_selector("involvedObject.name=web").unwrap_err().to_string(),
            "field label not supported: involvedObject.name"
        );
    }
}
