//! The controller's one error type.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {}", kube_message(.0))]
    Kube(#[from] kube::Error),
    #[error("serialising {0}")]
    Json(#[from] serde_json::Error),
    #[error("experiment has no namespace")]
    NoNamespace,
    #[error("leader election: {0}")]
    Lease(String),
    #[error("the reconcile ran longer than {0:?} and was cancelled")]
    Timeout(std::time::Duration),
    #[error(
        "Istio's Telemetry API is not installed (CRD telemetries.telemetry.istio.io, Istio 1.22 or later): the analysis needs it to count only randomised requests; install it, or remove spec.analysis"
    )]
    NoTelemetryApi,
    #[error(
        "the Gateway API is not installed (CRD httproutes.gateway.networking.k8s.io): spec.routing.provider gatewayAPI needs it; install it, or choose another provider"
    )]
    NoGatewayApi,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A write refused because the object changed since it was read (409): the next try, on a
    /// newer copy, goes through. Nothing a person needs to hear about.
    pub(crate) fn is_conflict(&self) -> bool {
        matches!(self, Error::Kube(kube::Error::Api(status)) if status.code == 409)
    }

    /// A write the fence held back: this replica is not (or no longer) leading. The election
    /// stops the controller; nothing to report, and no status could be written anyway.
    pub(crate) fn is_fenced(&self) -> bool {
        matches!(self, Error::Kube(e) if super::fence::is_fenced(e))
    }
}

/// What the API server said, as `kubectl` shows it (`Service "x" is invalid: ... (422 Invalid)`),
/// rather than kube's debug dump of the whole Status: it ends up in a condition people read.
fn kube_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) if !status.message.is_empty() => {
            let reason = if status.reason.is_empty() { String::new() } else { format!(" {}", status.reason) };
            format!("{} ({}{reason})", status.message, status.code)
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_api_error_reads_as_the_server_wrote_it() {
        let status =
            kube::core::Status::failure(r#"Service "my-app" is invalid: spec.ports: Required value"#, "Invalid")
                .with_code(422);
        let error = Error::from(kube::Error::Api(Box::new(status)));
        assert_eq!(
            error.to_string(),
            r#"Kubernetes API: Service "my-app" is invalid: spec.ports: Required value (422 Invalid)"#
        );
        let no_reason = kube::core::Status::failure("the server is on fire", "").with_code(500);
        assert_eq!(
            Error::from(kube::Error::Api(Box::new(no_reason))).to_string(),
            "Kubernetes API: the server is on fire (500)"
        );
        assert!(!error.is_conflict());
        let conflict = kube::core::Status::failure("the object has been modified", "Conflict").with_code(409);
        assert!(Error::from(kube::Error::Api(Box::new(conflict))).is_conflict());
    }
}
