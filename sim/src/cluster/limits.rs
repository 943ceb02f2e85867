//! `ServerLimits`: what one client may make the embedded API server hold, with kube-apiserver's
//! defaults, so a hostile or broken client cannot exhaust memory, tasks or sockets.

use std::time::Duration;

/// Bounds on request bodies, connections and slow clients. `Default` holds every default;
/// tests lower them to exercise the bounds quickly.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerLimits {
    /// Largest request body accepted; a longer one gets 413 `RequestEntityTooLarge` and is
    /// never held whole (kube-apiserver's `MaxRequestBodyBytes`, 3 MiB).
    pub max_body_bytes: usize,
    /// Connections served at once. Further clients wait in the listen backlog until one
    /// closes: nothing is spent on them meanwhile, and none is turned away for a burst.
    pub max_connections: usize,
    /// A connection that has not completed its TLS handshake by then is closed (Go's
    /// `tls.Conn` handshake timeout in kube-apiserver, 10 s).
    pub tls_handshake_timeout: Duration,
    /// An HTTP/1.1 request whose headers have not all arrived this long after its first byte
    /// (after the handshake, for a connection's first request) has its connection closed
    /// (kube-apiserver's `ReadHeaderTimeout`, 32 s).
    pub header_read_timeout: Duration,
    /// A connection with no request for this long after its last response is closed
    /// (kube-apiserver's `IdleTimeout`, 90 s; clients keep idle connections as long).
    pub idle_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_body_bytes: 3 * 1024 * 1024,
            max_connections: 1024,
            tls_handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(32),
            idle_timeout: Duration::from_secs(90),
        }
    }
}
