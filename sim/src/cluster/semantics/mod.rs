//! Pure object semantics of the embedded API server: functions on `serde_json::Value` that
//! reproduce what kube-apiserver does to objects (CRD schema validation, pruning and defaulting,
//! patches, server-side apply, managed fields, tables, names). No I/O lives here.

pub mod apply;
pub mod builtin;
pub mod field_error;
mod gofmt;
pub mod managed_fields;
pub mod names;
pub mod schema;
pub mod strategic;
pub mod table;

pub use field_error::{FieldError, FieldErrorReason, invalid_status};
