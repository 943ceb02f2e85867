//! The kubeconfig clients use: one cluster, user and context named `forklane`, carrying the
//! generated CA and the bearer token.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

pub(crate) const CONTEXT: &str = "forklane";

pub(crate) fn render(url: &str, ca_pem: &str, token: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: {CONTEXT}
  cluster:
    server: {url}
    certificate-authority-data: {ca}
users:
- name: {CONTEXT}
  user:
    token: {token}
contexts:
- name: {CONTEXT}
  context:
    cluster: {CONTEXT}
    user: {CONTEXT}
    namespace: default
current-context: {CONTEXT}
preferences: {{}}
",
        ca = B64.encode(ca_pem)
    )
}
