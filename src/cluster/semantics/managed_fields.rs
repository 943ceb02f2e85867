//! (in progress)

/// How a list is merged by server-side apply (`x-kubernetes-list-type`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListType {
    Atomic,
    Set,
    /// Associative list keyed by these fields.
    Map(Vec<String>),
}
