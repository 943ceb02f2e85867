//! A user's cookie jar, as a browser keeps one (RFC 6265, sections 5.2 to 5.4): `Set-Cookie` values
//! are kept per name and path for their `Max-Age` (on the load generator's clock; `Max-Age=0` or
//! less deletes the cookie) and sent back in one `Cookie` header to the paths they match, longest
//! path first. Attribute names are case-insensitive and the last of a kind wins; `Expires` (there
//! is no wall clock) and `Domain` (every cookie goes to the one Service under test) are not
//! modelled, and `Secure`, `HttpOnly` and `SameSite` change nothing here: the users are the site's
//! own pages, behind a gateway that terminates TLS. Unknown attributes are ignored.

use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct CookieJar {
    /// (name, path) → the cookie.
    cookies: BTreeMap<(String, String), Stored>,
    /// Creation order, for the order of cookies with paths of the same length.
    created: u64,
}

#[derive(Clone, Debug, PartialEq)]
struct Stored {
    value: String,
    /// Expiry on the load generator's clock; `None`: a session cookie.
    expiry: Option<Duration>,
    created: u64,
}

/// What a `Set-Cookie` says, once parsed.
#[derive(Debug, PartialEq)]
struct SetCookie<'a> {
    name: &'a str,
    value: &'a str,
    max_age: Option<i64>,
    path: Option<&'a str>,
}

/// Parses one `Set-Cookie` value; `None` when a browser would ignore it (no `=`, no name).
fn parse(set_cookie: &str) -> Option<SetCookie<'_>> {
    let mut parts = set_cookie.split(';');
    let (name, value) = parts.next()?.split_once('=')?;
    let name = name.trim();
    if name.is_empty() {
        return None;
    }
    let mut out = SetCookie { name, value: value.trim(), max_age: None, path: None };
    for attribute in parts {
        let (key, value) = attribute.split_once('=').unwrap_or((attribute, ""));
        let (key, value) = (key.trim(), value.trim());
        if key.eq_ignore_ascii_case("max-age") {
            // Not a (negative) integer: the attribute is ignored.
            if let Some(delta) = max_age(value) {
                out.max_age = Some(delta);
            }
        } else if key.eq_ignore_ascii_case("path") {
            out.path = Some(value).filter(|v| v.starts_with('/'));
        }
    }
    Some(out)
}

/// A `Max-Age` value: an optional `-` and digits; a number too large to hold saturates.
fn max_age(value: &str) -> Option<i64> {
    let digits = value.strip_prefix('-').unwrap_or(value);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let negative = digits.len() < value.len();
    Some(value.parse::<i64>().unwrap_or(if negative { i64::MIN } else { i64::MAX }))
}

/// The path of a request target, without its query.
fn request_path(target: &str) -> &str {
    target.split(['?', '#']).next().unwrap_or_default()
}

/// The path a cookie without a `Path` attribute gets: the request path up to its last `/`.
fn default_path(target: &str) -> &str {
    let path = request_path(target);
    match path.rfind('/') {
        Some(i) if i > 0 && path.starts_with('/') => &path[..i],
        _ => "/",
    }
}

/// Whether a cookie of `cookie_path` goes with a request for `path`.
fn path_matches(cookie_path: &str, path: &str) -> bool {
    path.strip_prefix(cookie_path)
        .is_some_and(|rest| rest.is_empty() || cookie_path.ends_with('/') || rest.starts_with('/'))
}

impl CookieJar {
    /// Takes one `Set-Cookie` header of the answer to a request for `target`, received at `now`.
    pub(crate) fn store(&mut self, set_cookie: &str, target: &str, now: Duration) {
        let Some(cookie) = parse(set_cookie) else { return };
        let path = cookie.path.unwrap_or_else(|| default_path(target));
        let key = (cookie.name.to_string(), path.to_string());
        let expiry = match cookie.max_age {
            Some(secs) if secs <= 0 => {
                self.cookies.remove(&key);
                return;
            }
            Some(secs) => Some(now.saturating_add(Duration::from_secs(secs.unsigned_abs()))),
            None => None,
        };
        // A replaced cookie keeps its place in the order.
        let created = self.cookies.get(&key).map_or_else(
            || {
                self.created += 1;
                self.created
            },
            |old| old.created,
        );
        self.cookies.insert(key, Stored { value: cookie.value.to_string(), expiry, created });
    }

    /// The `Cookie` header of a request for `target` at `now` (expired cookies dropped), or `None`
    /// when no cookie goes with it.
    pub fn header(&mut self, target: &str, now: Duration) -> Option<String> {
        self.cookies.retain(|_, c| c.expiry.is_none_or(|e| now < e));
        let path = request_path(target);
        let mut sent: Vec<(&(String, String), &Stored)> =
            self.cookies.iter().filter(|((_, p), _)| path_matches(p, path)).collect();
        sent.sort_by_key(|((_, p), c)| (std::cmp::Reverse(p.len()), c.created));
        (!sent.is_empty())
            .then(|| sent.iter().map(|((n, _), c)| format!("{n}={}", c.value)).collect::<Vec<_>>().join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn keeps_cookies_for_their_max_age() {
        let mut jar = CookieJar::default();
        jar.store("forklane-checkout=v2; Max-Age=60; Path=/", "/", t(0));
        jar.store("tester=1", "/", t(0));
        assert_eq!(jar.header("/", t(59)).as_deref(), Some("forklane-checkout=v2; tester=1"));
        assert_eq!(jar.header("/", t(60)).as_deref(), Some("tester=1"));
        jar.store("tester=1; Max-Age=0", "/", t(61));
        assert_eq!(jar.header("/", t(61)), None);
    }

    #[test]
    fn a_new_value_replaces_the_old() {
        let mut jar = CookieJar::default();
        jar.store("a=1; Max-Age=10", "/", Duration::ZERO);
        jar.store("a=2; max-age=10", "/", Duration::ZERO);
        assert_eq!(jar.header("/", Duration::ZERO).as_deref(), Some("a=2"));
    }

    #[test]
    fn an_expiry_deletes_the_cookie_of_its_name_and_path_whatever_its_other_attributes() {
        let mut jar = CookieJar::default();
        jar.store("forklane-ab=v2; Max-Age=86400; Path=/; HttpOnly; SameSite=Lax", "/shop/cart", t(0));
        jar.store("forklane-ab=; Max-Age=0; Path=/shop; HttpOnly; SameSite=Lax", "/", t(1));
        assert_eq!(jar.header("/shop/cart", t(1)).as_deref(), Some("forklane-ab=v2"), "another path: another cookie");
        jar.store("forklane-ab=; max-age=-1; path=/; Secure; SameSite=None; Partitioned", "/", t(2));
        assert_eq!(jar.header("/shop/cart", t(2)), None);
    }

    #[test]
    fn attributes_are_read_as_a_browser_reads_them() {
        let mut jar = CookieJar::default();
        // The last Max-Age wins; one that is not a number is ignored; unknown attributes too.
        jar.store("a=1; Max-Age=5; Max-Age=100; Colour=blue; Max-Age=soon", "/", t(0));
        assert_eq!(jar.header("/", t(99)).as_deref(), Some("a=1"));
        assert_eq!(jar.header("/", t(100)), None);
        // Spaces around names and values, a value with `=` in it, a nameless cookie refused.
        jar.store("  b = x=y ;  MAX-AGE = 10 ", "/", t(0));
        jar.store("=nameless", "/", t(0));
        jar.store("no-equals-sign", "/", t(0));
        assert_eq!(jar.header("/", t(1)).as_deref(), Some("b=x=y"));
        // An overlong Max-Age saturates rather than being dropped.
        jar.store("c=1; Max-Age=99999999999999999999999", "/", t(0));
        assert_eq!(jar.header("/", t(1_000_000)).as_deref(), Some("c=1"));
    }

    #[test]
    fn cookies_go_only_to_the_paths_they_match_longest_path_first() {
        let mut jar = CookieJar::default();
        jar.store("root=1; Path=/", "/", t(0));
        jar.store("shop=1; Path=/shop", "/", t(0));
        jar.store("cart=1", "/shop/cart/add?item=3", t(0)); // default path: /shop/cart
        jar.store("relative=1; Path=shop", "/checkout", t(0)); // not a path: the default, /
        assert_eq!(jar.header("/", t(1)).as_deref(), Some("root=1; relative=1"));
        assert_eq!(jar.header("/shopping", t(1)).as_deref(), Some("root=1; relative=1"), "/shop is no prefix of it");
        assert_eq!(jar.header("/shop", t(1)).as_deref(), Some("shop=1; root=1; relative=1"));
        assert_eq!(jar.header("/shop/cart/view?x=1", t(1)).as_deref(), Some("cart=1; shop=1; root=1; relative=1"));
    }

    #[test]
    fn the_default_path_is_the_request_paths_directory() {
        for (target, expected) in
            [("/", "/"), ("/a", "/"), ("/a/b", "/a"), ("/a/b/?q=/x", "/a/b"), ("", "/"), ("x", "/")]
        {
            assert_eq!(default_path(target), expected, "{target:?}");
        }
    }
}
