//! Routing modes: what the user asks for (`spec.routing.provider`, [`Provider`], or the older
//! `spec.mesh`, [`MeshMode`]) and what an experiment uses ([`Routing`], recorded in
//! `status.mesh`). [`Requested::resolve`] is the one place the first becomes the second.

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

/// `spec.routing.provider`: which API routes the experiment's traffic. Set, it wins over
/// `spec.mesh` (validation refuses the two when they disagree).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Provider {
    /// Istio's VirtualService and DestinationRule (sidecars).
    #[serde(rename = "istio")]
    Istio,
    /// The Gateway API's HTTPRoute, with one Service per arm (Istio ambient, Linkerd, Cilium,
    /// Envoy Gateway, …).
    #[serde(rename = "gatewayAPI")]
    GatewayApi,
    /// No mesh: Service selectors and replica ratios.
    #[serde(rename = "native")]
    Native,
}

/// The routing mode in use: Istio objects, Gateway API HTTPRoutes, or native Kubernetes objects
/// (written `none`). It decides which features are available and which objects the plan writes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routing {
    #[serde(rename = "istio")]
    Istio,
    #[serde(rename = "gatewayAPI")]
    GatewayApi,
    #[serde(rename = "none")]
    Native,
}

/// What an experiment asks for: `spec.routing.provider` if set, else `spec.mesh`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Requested {
    pub provider: Option<Provider>,
    pub mesh: MeshMode,
}

impl Requested {
    /// The routing mode in use, when the request decides it: a provider, `istio` and `none`
    /// always; `auto` keeps the mode `recorded` when the experiment started (it never switches
    /// mid-way). `None`: `auto` before the start, where the caller discovers what is installed and
    /// in use (or, offline, takes [`super::defaults::OFFLINE_ROUTING`]).
    pub fn resolve(self, recorded: Option<Routing>) -> Option<Routing> {
        match (self.provider, self.mesh) {
            (Some(Provider::Istio), _) | (None, MeshMode::Istio) => Some(Routing::Istio),
            (Some(Provider::GatewayApi), _) => Some(Routing::GatewayApi),
            (Some(Provider::Native), _) | (None, MeshMode::None) => Some(Routing::Native),
            (None, MeshMode::Auto) => recorded,
        }
    }
}

impl Routing {
    pub fn as_str(self) -> &'static str {
        match self {
            Routing::Istio => "istio",
            Routing::GatewayApi => "gatewayAPI",
            Routing::Native => "none",
        }
    }

    /// Whether traffic is split by routes (weights, header rules, stickiness) rather than by pods.
    pub fn routes(self) -> bool {
        self != Routing::Native
    }
}

/// The command line's `--mesh istio|none` and `--provider istio|gateway-api|native`, spelled
/// as in `status.mesh` or as the provider.
impl FromStr for Routing {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "istio" => Ok(Routing::Istio),
            "gateway-api" | "gatewayAPI" => Ok(Routing::GatewayApi),
            "none" | "native" => Ok(Routing::Native),
            other => Err(format!("{other:?} is not a routing mode: expected istio, gateway-api or none")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_keeps_the_recorded_mode_and_explicit_requests_win() {
        let mesh = |mesh| Requested { provider: None, mesh };
        assert_eq!(mesh(MeshMode::Auto).resolve(Some(Routing::Native)), Some(Routing::Native));
        assert_eq!(mesh(MeshMode::Auto).resolve(None), None);
        assert_eq!(mesh(MeshMode::Istio).resolve(Some(Routing::Native)), Some(Routing::Istio));
        assert_eq!(mesh(MeshMode::None).resolve(Some(Routing::Istio)), Some(Routing::Native));
        let provider = |p| Requested { provider: Some(p), mesh: MeshMode::Auto };
        assert_eq!(provider(Provider::GatewayApi).resolve(Some(Routing::Istio)), Some(Routing::GatewayApi));
        assert_eq!(provider(Provider::Native).resolve(None), Some(Routing::Native));
        assert_eq!(provider(Provider::Istio).resolve(None), Some(Routing::Istio));
    }

    #[test]
    fn routing_reads_and_writes_the_status_spelling() {
        for (routing, text) in
            [(Routing::Istio, "istio"), (Routing::GatewayApi, "gatewayAPI"), (Routing::Native, "none")]
        {
            assert_eq!(serde_json::to_value(routing).unwrap(), serde_json::json!(text));
            assert_eq!(serde_json::from_value::<Routing>(serde_json::json!(text)).unwrap(), routing);
            assert_eq!(text.parse::<Routing>().unwrap(), routing);
        }
        assert_eq!("gateway-api".parse::<Routing>().unwrap(), Routing::GatewayApi);
        assert_eq!(
            "Istio".parse::<Routing>().unwrap_err(),
            "\"Istio\" is not a routing mode: expected istio, gateway-api or none"
        );
    }
}
