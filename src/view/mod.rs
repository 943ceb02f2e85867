//! What people see of an experiment: the terminal tree (`forklane get`, `list`), the report
//! (`forklane report`: HTML with plots, or Markdown) and the read-only dashboard. Everything here
//! renders an [`Observed`] experiment, read once from the API.

pub mod dashboard;
pub mod list;
pub mod observed;
pub mod report;
pub mod steps;
pub mod style;
pub mod summary;
pub mod tree;

pub use observed::{Observed, observe, observe_all};
pub use style::Style;
pub use summary::{Summary, summary};
pub use tree::render;
