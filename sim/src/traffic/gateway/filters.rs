//! HTTPRoute filters, at rule level and on backendRefs (two generated type families with the
//! same fields, hence the macro): RequestHeaderModifier and ResponseHeaderModifier (`set`,
//! `add`, `remove`), RequestMirror (`percent` or `fraction`; several allowed). RequestRedirect,
//! URLRewrite, CORS and ExtensionRef are not modelled: a rule or backend that uses one answers
//! 500, as the specification requires of a filter an implementation cannot apply.

use crate::traffic::mesh::HeaderOps;

/// A reference to a mirror's backend, before it is checked.
#[derive(Debug)]
pub(crate) struct MirrorRef {
    pub group: Option<String>,
    pub kind: Option<String>,
    pub name: String,
    pub namespace: Option<String>,
    pub port: Option<i32>,
    /// Share of requests copied, 0 to 100.
    pub percent: f64,
}

/// The filters of a rule or backendRef, compiled.
#[derive(Debug, Default)]
pub(crate) struct Filters {
    pub request: HeaderOps,
    pub response: HeaderOps,
    pub mirrors: Vec<MirrorRef>,
    /// The types of the filters that are not modelled.
    pub unsupported: Vec<&'static str>,
}

/// Compiles a list of filters (`Option<Vec<_>>` of either generated filter type).
macro_rules! compile_filters {
    ($filters:expr) => {{
        let (mut req, mut resp): (
            (Vec<(String, String)>, Vec<(String, String)>, Vec<String>),
            (Vec<(String, String)>, Vec<(String, String)>, Vec<String>),
        ) = Default::default();
        let mut out = $crate::traffic::gateway::filters::Filters::default();
        for f in $filters.iter().flatten() {
            if let Some(m) = &f.request_header_modifier {
                req.0.extend(m.set.iter().flatten().map(|h| (h.name.clone(), h.value.clone())));
                req.1.extend(m.add.iter().flatten().map(|h| (h.name.clone(), h.value.clone())));
                req.2.extend(m.remove.iter().flatten().cloned());
            }
            if let Some(m) = &f.response_header_modifier {
                resp.0.extend(m.set.iter().flatten().map(|h| (h.name.clone(), h.value.clone())));
                resp.1.extend(m.add.iter().flatten().map(|h| (h.name.clone(), h.value.clone())));
                resp.2.extend(m.remove.iter().flatten().cloned());
            }
            if let Some(m) = &f.request_mirror {
                let percent = match (&m.fraction, m.percent) {
                    (Some(fr), _) => {
                        let denominator = f64::from(fr.denominator.unwrap_or(100).max(1));
                        f64::from(fr.numerator) / denominator * 100.0
                    }
                    (None, Some(p)) => f64::from(p),
                    (None, None) => 100.0,
                };
                let b = &m.backend_ref;
                out.mirrors.push($crate::traffic::gateway::filters::MirrorRef {
                    group: b.group.clone(),
                    kind: b.kind.clone(),
                    name: b.name.clone(),
                    namespace: b.namespace.clone(),
                    port: b.port,
                    percent,
                });
            }
            if f.request_redirect.is_some() {
                out.unsupported.push("RequestRedirect");
            }
            if f.url_rewrite.is_some() {
                out.unsupported.push("URLRewrite");
            }
            if f.cors.is_some() {
                out.unsupported.push("CORS");
            }
            if f.extension_ref.is_some() {
                out.unsupported.push("ExtensionRef");
            }
        }
        out.request = $crate::traffic::mesh::HeaderOps::new(req.0, req.1, req.2);
        out.response = $crate::traffic::mesh::HeaderOps::new(resp.0, resp.1, resp.2);
        out
    }};
}

pub(crate) use compile_filters;

impl Filters {
    /// Header changes only (for a backendRef: its mirrors are not modelled).
    pub(crate) fn headers(self) -> (HeaderOps, HeaderOps) {
        (self.request, self.response)
    }
}
