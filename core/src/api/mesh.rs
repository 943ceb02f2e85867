//! Routing modes: what the user asks for (`spec.mesh`, [`MeshMode`]) and what an experiment uses
//! ([`Routing`], recorded in `status.mesh`). [`MeshMode::resolve`] is the one place the first
//! becomes the second.

use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `spec.mesh`: where routing is done, as requested.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MeshMode {
    #[default]
    Auto,
    Istio,
    None,
}

/// The routing mode in use: Istio objects, or native Kubernetes objects (written `none`).
/// It decides which features are available and which objects the plan writes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routing {
    #[serde(rename = "istio")]
    Istio,
    #[serde(rename = "none")]
    Native,
}

impl MeshMode {
    /// The routing mode in use, when the request decides it: `istio` and `none` always; `auto`
    /// keeps the mode `recorded` when the experiment started (it never switches mid-way).
    /// `None`: `auto` before the start, where the caller discovers the mesh (or, offline,
    /// takes [`super::defaults::OFFLINE_ROUTING`]).
    pub fn resolve(self, recorded: Option<Routing>) -> Option<Routing> {
        match self {
            MeshMode::Istio => Some(Routing::Istio),
            MeshMode::None => Some(Routing::Native),
            MeshMode::Auto => recorded,
        }
    }
}

impl Routing {
    pub fn as_str(self) -> &'static str {
        match self {
            Routing::Istio => "istio",
            Routing::Native => "none",
        }
    }
}

/// The command line's `--mesh istio|none`, spelled as in `status.mesh`.
impl FromStr for Routing {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "istio" => Ok(Routing::Istio),
            "none" => Ok(Routing::Native),
            other => Err(format!("{other:?} is not a routing mode: expected istio or none")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_keeps_the_recorded_mode_and_explicit_requests_win() {
        assert_eq!(MeshMode::Auto.resolve(Some(Routing::Native)), Some(Routing::Native));
        assert_eq!(MeshMode::Auto.resolve(None), None);
        assert_eq!(MeshMode::Istio.resolve(Some(Routing::Native)), Some(Routing::Istio));
        assert_eq!(MeshMode::None.resolve(Some(Routing::Istio)), Some(Routing::Native));
    }

    #[test]
    fn routing_reads_and_writes_the_status_spelling() {
        for (routing, text) in [(Routing::Istio, "istio"), (Routing::Native, "none")] {
            assert_eq!(serde_json::to_value(routing).unwrap(), serde_json::json!(text));
            assert_eq!(serde_json::from_value::<Routing>(serde_json::json!(text)).unwrap(), routing);
            assert_eq!(text.parse::<Routing>().unwrap(), routing);
        }
        assert_eq!("Istio".parse::<Routing>().unwrap_err(), "\"Istio\" is not a routing mode: expected istio or none");
    }
}
