//! The one error type of the embedded API server. Every variant maps onto the Kubernetes
//! `Status` object (reason + HTTP code) that a real kube-apiserver would answer with.

use crate::cluster::semantics::{FieldError, invalid_status};
use serde_json::{Value, json};

/// A failed API operation, carrying what the `Status` response needs.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("{message}")]
    NotFound { message: String, details: Value },
    #[error("{message}")]
    AlreadyExists { message: String, details: Value },
    #[error("{message}")]
    Conflict { message: String, details: Value },
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    NotAcceptable(String),
    #[error("{0}")]
    RequestEntityTooLarge(String),
    /// 429, answered with a `Retry-After` header as the apiserver's flow control does.
    #[error("Too many requests, please try again later.")]
    TooManyRequests { retry_after_seconds: u64 },
    /// 500, used by fault injection and for unexpected internal failures; worded like
    /// `errors.NewInternalError`.
    #[error("Internal error occurred: {0}")]
    Internal(String),
    /// A ready-made Status (e.g. from the semantics layer), passed through unchanged.
    #[error("{}", .0["message"].as_str().unwrap_or("error"))]
    Status(Value),
    /// Failures outside the request path: TLS setup, binding a port, writing a kubeconfig.
    #[error("{0}")]
    Setup(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `details` for an object-scoped error, as the apiserver fills it.
pub(crate) fn details(group: &str, kind_or_resource: &str, name: &str) -> Value {
    json!({"name": name, "group": group, "kind": kind_or_resource})
}

/// The `group`/`resource` spelling used in apiserver messages: "deployments.apps", "pods".
pub(crate) fn qualified(group: &str, resource: &str) -> String {
    if group.is_empty() { resource.to_string() } else { format!("{resource}.{group}") }
}

impl Error {
    pub(crate) fn not_found(group: &str, resource: &str, name: &str) -> Self {
        Error::NotFound {
            message: format!("{} \"{name}\" not found", qualified(group, resource)),
            details: details(group, resource, name),
        }
    }

    pub(crate) fn already_exists(group: &str, resource: &str, name: &str) -> Self {
        Error::AlreadyExists {
            message: format!("{} \"{name}\" already exists", qualified(group, resource)),
            details: details(group, resource, name),
        }
    }

    /// The optimistic-concurrency conflict, worded as the apiserver words it.
    pub(crate) fn stale(group: &str, resource: &str, name: &str) -> Self {
        Error::Conflict {
            message: format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
                 please apply your changes to the latest version and try again",
                qualified(group, resource)
            ),
            details: details(group, resource, name),
        }
    }

    /// 422 Invalid, built by the semantics layer so messages match apimachinery's.
    pub(crate) fn invalid(kind: &str, group: &str, name: &str, errors: &[FieldError]) -> Self {
        Error::Status(invalid_status(kind, group, name, errors))
    }

    pub(crate) fn code(&self) -> u16 {
        match self {
            Error::NotFound { .. } => 404,
            Error::AlreadyExists { .. } | Error::Conflict { .. } => 409,
            Error::BadRequest(_) => 400,
            Error::Gone(_) => 410,
            Error::Unauthorized(_) => 401,
            Error::Forbidden(_) => 403,
            Error::MethodNotAllowed(_) => 405,
            Error::NotAcceptable(_) => 406,
            Error::UnsupportedMediaType(_) => 415,
            Error::RequestEntityTooLarge(_) => 413,
            Error::TooManyRequests { .. } => 429,
            Error::Internal(_) | Error::Setup(_) => 500,
            Error::Status(s) => s["code"].as_u64().unwrap_or(500) as u16,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Error::NotFound { .. } => "NotFound",
            Error::AlreadyExists { .. } => "AlreadyExists",
            Error::Conflict { .. } => "Conflict",
            Error::BadRequest(_) => "BadRequest",
            // The apiserver reports a compacted watch/list version as reason "Expired", code 410.
            Error::Gone(_) => "Expired",
            Error::Unauthorized(_) => "Unauthorized",
            Error::Forbidden(_) => "Forbidden",
            Error::MethodNotAllowed(_) => "MethodNotAllowed",
            Error::NotAcceptable(_) => "NotAcceptable",
            Error::UnsupportedMediaType(_) => "UnsupportedMediaType",
            Error::RequestEntityTooLarge(_) => "RequestEntityTooLarge",
            Error::TooManyRequests { .. } => "TooManyRequests",
            Error::Internal(_) | Error::Setup(_) => "InternalError",
            Error::Status(_) => "",
        }
    }

    /// The `meta.k8s.io/v1 Status` body for this error.
    pub(crate) fn to_status(&self) -> Value {
        if let Error::Status(s) = self {
            return s.clone();
        }
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code(),
        });
        match self {
            Error::NotFound { details, .. }
            | Error::AlreadyExists { details, .. }
            | Error::Conflict { details, .. } => status["details"] = details.clone(),
            Error::Internal(msg) => status["details"] = json!({"causes": [{"message": msg}]}),
            Error::TooManyRequests { retry_after_seconds } => {
                status["details"] = json!({"retryAfterSeconds": retry_after_seconds});
            }
            _ => {}
        }
        status
    }
}
