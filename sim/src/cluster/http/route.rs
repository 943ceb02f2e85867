//! Parsing of resource URLs: `/api/v1/...` and `/apis/{group}/{version}/...`, with or
//! without `namespaces/{ns}`, the legacy `/watch/` prefix, and subresources.

use crate::cluster::resources::Gvr;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Target {
    pub gvr: Gvr,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// The deprecated `/watch/` path form.
    pub watch_path: bool,
}

/// Parses a resource path; `None` means it is not one (discovery, openapi, unknown).
pub(crate) fn parse(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, mut rest) = match segs.as_slice() {
        ["api", version, rest @ ..] if !rest.is_empty() => ("", *version, rest),
        ["apis", group, version, rest @ ..] if !rest.is_empty() => (*group, *version, rest),
        _ => return None,
    };
    let mut watch_path = false;
    if rest.first() == Some(&"watch") {
        watch_path = true;
        rest = &rest[1..];
    }
    let mut namespace = None;
    // `/api/v1/namespaces/{ns}` and its `status`/`finalize` subresources address the
    // namespace itself; anything longer is a namespaced resource.
    let namespace_itself = group.is_empty()
        && rest.first() == Some(&"namespaces")
        && (rest.len() <= 2 || (rest.len() == 3 && matches!(rest[2], "status" | "finalize")));
    if rest.first() == Some(&"namespaces") && rest.len() >= 3 && !namespace_itself {
        namespace = Some(rest[1].to_string());
        rest = &rest[2..];
    }
    let (resource, name, subresource) = match rest {
        [r] => (*r, None, None),
        [r, n] => (*r, Some(n.to_string()), None),
        [r, n, s] => (*r, Some(n.to_string()), Some(s.to_string())),
        _ => return None,
    };
    if resource.is_empty() || name.as_deref() == Some("") {
        return None;
    }
    Some(Target { gvr: Gvr::new(group, version, resource), namespace, name, subresource, watch_path })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(path: &str) -> (String, Option<String>, Option<String>, Option<String>) {
        let t = parse(path).unwrap();
        (format!("{}/{}/{}", t.gvr.group, t.gvr.version, t.gvr.resource), t.namespace, t.name, t.subresource)
    }

    #[test]
    fn paths() {
        let s = |x: &str| Some(x.to_string());
        assert_eq!(t("/api/v1/pods"), ("/v1/pods".into(), None, None, None));
        assert_eq!(t("/api/v1/namespaces"), ("/v1/namespaces".into(), None, None, None));
        assert_eq!(t("/api/v1/namespaces/foo"), ("/v1/namespaces".into(), None, s("foo"), None));
        assert_eq!(t("/api/v1/namespaces/foo/finalize"), ("/v1/namespaces".into(), None, s("foo"), s("finalize")));
        assert_eq!(t("/api/v1/namespaces/foo/pods"), ("/v1/pods".into(), s("foo"), None, None));
        assert_eq!(
            t("/apis/apps/v1/namespaces/d/deployments/x/scale"),
            ("apps/v1/deployments".into(), s("d"), s("x"), s("scale"))
        );
        assert_eq!(
            t("/apis/apps/v1/watch/namespaces/d/deployments"),
            ("apps/v1/deployments".into(), s("d"), None, None)
        );
        assert!(parse("/apis/apps/v1").is_none());
        assert!(parse("/api/v1/namespaces/a/pods/b/c/d").is_none());
    }
}
