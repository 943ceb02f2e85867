//! The route table of one parent: every match of every rule of every route attached to it, in
//! the specification's order of precedence. A request takes the first entry whose route applies
//! to it (port, namespace, listener, hostname) and whose match holds.

use std::cmp::Reverse;
use std::sync::Arc;

use jiff::Timestamp;

use super::compile::{CompiledRoute, Rule};
use crate::traffic::request::Request;

/// The routes attached to one parent, each with how it is attached (`A`), and the sorted matches.
#[derive(Debug)]
pub(crate) struct Table<A> {
    pub routes: Vec<(Arc<CompiledRoute>, A)>,
    /// (route, rule, match) indices, in order of precedence.
    entries: Vec<(usize, usize, usize)>,
}

/// The sort key of one match: exact path, then the longer prefix (regexes after prefixes), a
/// method match, more header matches, more query parameter matches; then the oldest route, the
/// route first by `namespace/name`, the rule's index, the match's index within the rule.
type Key = (
    Reverse<(u8, usize)>,
    Reverse<bool>,
    Reverse<usize>,
    Reverse<usize>,
    (bool, Option<Timestamp>),
    String,
    usize,
    usize,
);

fn key(route: &CompiledRoute, rule: usize, index: usize) -> Key {
    let m = &route.rules[rule].matches[index];
    (
        Reverse(m.path_rank()),
        Reverse(m.method.is_some()),
        Reverse(m.headers.len()),
        Reverse(m.query.len()),
        // Routes without a creation time (built by hand) come after those with one.
        (route.created.is_none(), route.created),
        format!("{}/{}", route.namespace, route.name),
        rule,
        index,
    )
}

impl<A> Table<A> {
    pub(crate) fn new(routes: Vec<(Arc<CompiledRoute>, A)>) -> Self {
        let mut entries = Vec::new();
        for (r, (route, _)) in routes.iter().enumerate() {
            for (k, rule) in route.rules.iter().enumerate() {
                entries.extend((0..rule.matches.len()).map(|m| (r, k, m)));
            }
        }
        entries.sort_by_cached_key(|&(r, k, m)| key(&routes[r].0, k, m));
        Table { routes, entries }
    }

    /// The rule of the first match, in order of precedence, that holds for `req` among the routes
    /// `applies` accepts.
    pub(crate) fn find(&self, req: &Request, applies: impl Fn(&CompiledRoute, &A) -> bool) -> Option<&Rule> {
        self.entries
            .iter()
            .filter(|&&(r, _, _)| applies(&self.routes[r].0, &self.routes[r].1))
            .find(|&&(r, k, m)| self.routes[r].0.rules[k].matches[m].holds(req))
            .map(|&(r, k, _)| &self.routes[r].0.rules[k])
    }
}
