//! The controller's one error type.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("serialising {0}")]
    Json(#[from] serde_json::Error),
    #[error("experiment has no namespace")]
    NoNamespace,
    #[error("leader election: {0}")]
    Lease(String),
    #[error("the reconcile ran longer than {0:?} and was cancelled")]
    Timeout(std::time::Duration),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
