//! A user's cookie jar: keeps `Set-Cookie` values for their `Max-Age` (on the load generator's
//! clock) and sends them back in one `Cookie` header. `Expires`, `Domain` and `Path` are not
//! modelled: every cookie goes to the one Service under test.

use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct CookieJar {
    /// name → (value, expiry on the load generator's clock; `None`: a session cookie).
    cookies: BTreeMap<String, (String, Option<Duration>)>,
}

impl CookieJar {
    /// Takes one `Set-Cookie` header received at `now`.
    pub(crate) fn store(&mut self, set_cookie: &str, now: Duration) {
        let mut parts = set_cookie.split(';').map(str::trim);
        let Some((name, value)) = parts.next().and_then(|nv| nv.split_once('=')) else { return };
        let max_age = parts
            .filter_map(|a| a.split_once('='))
            .find(|(k, _)| k.eq_ignore_ascii_case("max-age"))
            .and_then(|(_, v)| v.parse::<i64>().ok());
        match max_age {
            Some(secs) if secs <= 0 => {
                self.cookies.remove(name);
            }
            Some(secs) => {
                self.cookies.insert(name.into(), (value.into(), Some(now + Duration::from_secs(secs.unsigned_abs()))));
            }
            None => {
                self.cookies.insert(name.into(), (value.into(), None));
            }
        }
    }

    /// The `Cookie` header at `now` (expired cookies dropped), or `None` when the jar is empty.
    pub fn header(&mut self, now: Duration) -> Option<String> {
        self.cookies.retain(|_, (_, expiry)| expiry.is_none_or(|e| now < e));
        (!self.cookies.is_empty())
            .then(|| self.cookies.iter().map(|(n, (v, _))| format!("{n}={v}")).collect::<Vec<_>>().join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_cookies_for_their_max_age() {
        let mut jar = CookieJar::default();
        let t = Duration::from_secs;
        jar.store("forklane-checkout=v2; Max-Age=60; Path=/", t(0));
        jar.store("tester=1", t(0));
        assert_eq!(jar.header(t(59)).as_deref(), Some("forklane-checkout=v2; tester=1"));
        assert_eq!(jar.header(t(60)).as_deref(), Some("tester=1"));
        jar.store("tester=1; Max-Age=0", t(61));
        assert_eq!(jar.header(t(61)), None);
    }

    #[test]
    fn a_new_value_replaces_the_old() {
        let mut jar = CookieJar::default();
        jar.store("a=1; Max-Age=10", Duration::ZERO);
        jar.store("a=2; max-age=10", Duration::ZERO);
        assert_eq!(jar.header(Duration::ZERO).as_deref(), Some("a=2"));
    }
}
