//! Single-value checks, each mirroring one istio/istio validation helper
//! (`pkg/config/validation/validation.go`) unless marked "Forklane".

use regex::Regex;

/// Envoy's `re2.max_program_size` is approximated by istiod as the pattern length.
const MAX_REGEX_LEN: usize = 1024;

/// HTTP/2 pseudo-headers istiod accepts as match keys (RFC 7540 §8.1.2.3).
const PSEUDO_HEADERS: [&str; 5] = [":method", ":scheme", ":authority", ":path", ":status"];

/// istiod's `ValidateHTTPHeaderNameOrJwtClaimRoute` allows this routing-claim form.
const JWT_CLAIM_PREFIX: &str = "@request.auth.claims";

/// `validateStringMatchRegexp`: non-empty, at most 1024 bytes, valid RE2 syntax.
/// The `regex` crate accepts RE2 syntax (no backreferences or look-around).
/// Envoy anchors the pattern at both ends, so `v2` matches only the whole value `v2`.
pub(crate) fn regex_problem(re: &str) -> Option<String> {
    if re.is_empty() {
        return Some("regex string match should not be empty".into());
    }
    if re.len() > MAX_REGEX_LEN {
        return Some(format!("regex is too large, max length allowed is {MAX_REGEX_LEN}"));
    }
    Regex::new(re).err().map(|e| format!("regex does not compile as RE2: {e}"))
}

/// Header names used as match keys (`headers`, `withoutHeaders`).
/// istiod: non-empty, RFC 7230 token characters or a known pseudo-header.
/// Forklane: lowercase, because Envoy compares lowercased names and an
/// uppercase key in our output would be a rendering bug.
pub(crate) fn match_header_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("header name cannot be empty".into());
    }
    if name.starts_with(JWT_CLAIM_PREFIX) || PSEUDO_HEADERS.contains(&name) {
        return None;
    }
    if name.starts_with(':') {
        return Some("unknown pseudo-header; allowed are :method, :scheme, :authority, :path, :status".into());
    }
    if !name.bytes().all(is_token_char) {
        return Some("header name is not an RFC 7230 token".into());
    }
    lowercase_problem(name)
}

/// Header names in `headers.request.{set,add}`: istiod's
/// `ValidateHTTPHeaderWithAuthorityOperationName` forbids `:`-prefixed names
/// except `:authority` (and `host`), which rewrite the authority.
pub(crate) fn request_set_header_problem(name: &str) -> Option<String> {
    let authority = name.eq_ignore_ascii_case(":authority") || name.eq_ignore_ascii_case("host");
    if name.starts_with(':') && !authority {
        return Some("header cannot have \":\" prefix".into());
    }
    operation_common_problem(name)
}

/// Header names in `headers.request.remove` and all `headers.response.*`:
/// istiod's `ValidateHTTPHeaderOperationName` forbids `host` and `:`-prefixed names.
pub(crate) fn other_header_operation_problem(name: &str) -> Option<String> {
    if name.eq_ignore_ascii_case("host") {
        return Some("cannot set Host header".into());
    }
    if name.starts_with(':') {
        return Some("header cannot have \":\" prefix".into());
    }
    operation_common_problem(name)
}

fn operation_common_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("header name cannot be empty".into());
    }
    lowercase_problem(name)
}

fn lowercase_problem(name: &str) -> Option<String> {
    (name.to_ascii_lowercase() != name).then(|| "header name must be lowercase (Forklane rule)".into())
}

/// RFC 7230 `tchar`, istiod's `validHeaderNameRegex`.
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Resolves a short service name to its FQDN the way `istioctl analyze`
/// (`util.ConvertHostToFQDN`) does, so `reviews` in namespace `shop` and
/// `reviews.shop.svc.cluster.local` name the same host.
pub(crate) fn fqdn(host: &str, namespace: &str) -> String {
    if host.contains('.') { host.to_string() } else { format!("{host}.{namespace}.svc.cluster.local") }
}
