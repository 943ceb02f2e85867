//! The one helper root of the integration tests. Each test binary declares it once,
//! `#[allow(dead_code)] mod support;`, and imports only the helpers it uses.

pub mod cluster;
pub mod e2e;
pub mod istio_schema;
pub mod kubectl;
pub mod prometheus;
