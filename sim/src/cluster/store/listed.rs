//! A list's result between the store and the response: the matching objects as stored (shared,
//! not copied) and the list's metadata. The HTTP layer serialises it straight into the response
//! body, each item from the stored object, so a list of 10,000 objects costs one encoding and
//! no copy of the objects; in-process callers get the usual `<Kind>List` value.

use super::{present, presented};
use crate::cluster::resources::Gvr;
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::{Value, json};
use std::sync::Arc;

pub(crate) struct Listed {
    pub(super) list_kind: String,
    /// The requested version, which the items are rendered in.
    pub(super) gvr: Gvr,
    pub(super) metadata: Value,
    pub(super) items: Vec<Arc<Value>>,
}

impl Listed {
    /// The `<Kind>List` object.
    pub(crate) fn into_value(self) -> Value {
        let items: Vec<Value> = self.items.iter().map(|obj| present(obj, &self.gvr)).collect();
        json!({
            "kind": self.list_kind,
            "apiVersion": self.gvr.api_version(),
            "metadata": self.metadata,
            "items": items,
        })
    }

    /// The `<Kind>List` as JSON text, the same text `into_value` would serialise to.
    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(self).expect("JSON values always serialise")
    }
}

/// Keys in the order `serde_json::Map` (sorted) writes them, so both renderings agree.
impl Serialize for Listed {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(4))?;
        map.serialize_entry("apiVersion", &self.gvr.api_version())?;
        map.serialize_entry("items", &Items(self))?;
        map.serialize_entry("kind", &self.list_kind)?;
        map.serialize_entry("metadata", &self.metadata)?;
        map.end()
    }
}

struct Items<'a>(&'a Listed);

impl Serialize for Items<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.items.len()))?;
        for obj in &self.0.items {
            seq.serialize_element(presented(obj, &self.0.gvr).as_ref())?;
        }
        seq.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_text_is_the_list_value_serialised() {
        let gvr = Gvr::new("apps", "v1", "deployments");
        let stored = |name: &str, api_version: &str| {
            Arc::new(
                json!({"apiVersion": api_version, "kind": "Deployment", "metadata": {"name": name}, "spec": {"replicas": 2}}),
            )
        };
        let listed = || Listed {
            list_kind: "DeploymentList".into(),
            gvr: gvr.clone(),
            metadata: json!({"resourceVersion": "7", "continue": "abc"}),
            items: vec![stored("a", "apps/v1"), stored("b", "apps/v1beta2")],
        };
        let text = listed().to_json();
        assert_eq!(text, listed().into_value().to_string());
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["items"][1]["apiVersion"], "apps/v1", "items are rendered in the requested version");
        assert_eq!(parsed["kind"], "DeploymentList");
    }
}
