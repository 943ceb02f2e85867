//! The embedded metric source: the PromQL subset that Forklane's rendered queries use, evaluated
//! against the traffic simulator's in-process counters instead of a time-series database.

pub(crate) mod embedded;
pub mod expr;

pub use embedded::{CounterStore, EmbeddedSource};
pub use expr::{MatchOp, Matcher};
