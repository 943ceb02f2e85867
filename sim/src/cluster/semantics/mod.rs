//! Pure object semantics of the embedded API server: functions on `serde_json::Value` that
//! reproduce what kube-apiserver does to objects (CRD schema validation, pruning and defaulting,
//! patches, server-side apply, managed fields, tables, names). No I/O lives here.

pub(crate) mod apply;
pub(crate) mod builtin;
pub(crate) mod field_error;
mod gofmt;
pub(crate) mod managed_fields;
pub(crate) mod names;
pub(crate) mod schema;
pub(crate) mod strategic;
pub(crate) mod table;

pub(crate) use field_error::{FieldError, FieldErrorReason, invalid_status};
