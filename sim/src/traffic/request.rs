//! What the data plane handles: a request as the proxy sees it, and what comes back.

use std::time::Duration;

/// An HTTP request. Header names are stored lowercase, as Envoy normalises them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// Path with the query string, e.g. `/` or `/cart?id=1`.
    pub path: String,
    /// The `Host` header (the `:authority`).
    pub authority: String,
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// `GET path` with no headers.
    pub fn get(path: &str) -> Self {
        Request { method: "GET".into(), path: path.into(), authority: String::new(), headers: Vec::new() }
    }

    /// Adds a header (the name is lowercased).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.to_string()));
        self
    }

    /// The value of a header as a proxy matches it: repeated headers are joined, cookies with
    /// `; ` (as HTTP/2 cookie crumbs are rejoined) and others with `,`.
    pub(crate) fn header_value(&self, name: &str) -> Option<String> {
        let mut values = self.headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str());
        let first = values.next()?;
        let separator = if name == "cookie" { "; " } else { "," };
        Some(values.fold(first.to_string(), |joined, v| joined + separator + v))
    }

    /// The path without its query string.
    pub(crate) fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or_default()
    }
}

/// An HTTP response as the client receives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Lowercase names; repeated names (several `set-cookie`) are kept apart.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub(crate) fn new(status: u16, body: impl Into<String>) -> Self {
        Response { status, headers: Vec::new(), body: body.into() }
    }

    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers.iter().filter(move |(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The `Version: ...` of an answer in the article's image format
    /// (`Host: <pod>, Version: <version>`), if the body is one.
    pub fn version(&self) -> Option<&str> {
        parse_answer(&self.body).map(|(_, version)| version)
    }
}

/// Splits `Host: <pod>, Version: <version>[, ...]` into pod and version.
pub(crate) fn parse_answer(body: &str) -> Option<(&str, &str)> {
    let rest = body.trim_end().strip_prefix("Host: ")?;
    let (pod, rest) = rest.split_once(", Version: ")?;
    Some((pod, rest.split(", ").next().unwrap_or(rest)))
}

/// Envoy's response flags that the simulation produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResponseFlag {
    /// `-`: the request reached a pod.
    None,
    /// `NR`: no route matches (or the matching route has no destination with weight).
    NoRoute,
    /// `NC`: the route's destination (host, port, subset) is not a cluster the proxy knows.
    NoClusterFound,
    /// `UH`: the destination exists but has no ready endpoint.
    NoHealthyUpstream,
    /// `UF`: every connection attempt (the first and Istio's retries) went to a pod that is gone.
    UpstreamConnectionFailure,
}

impl ResponseFlag {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ResponseFlag::None => "-",
            ResponseFlag::NoRoute => "NR",
            ResponseFlag::NoClusterFound => "NC",
            ResponseFlag::NoHealthyUpstream => "UH",
            ResponseFlag::UpstreamConnectionFailure => "UF",
        }
    }
}

/// The pod that answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served {
    pub namespace: String,
    pub pod: String,
    /// The `destination_version` of the pod (label `version`, else its `VERSION` env).
    pub version: String,
}

/// What a client gets for one request.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Nothing accepted the connection: no ready endpoint (kube-proxy rejects), or, without a
    /// mesh, kube-proxy's lagging endpoints named a pod that is gone.
    Refused,
    Answered(Answer),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    pub response: Response,
    pub flag: ResponseFlag,
    /// The pod that answered; `None` for the proxy's own replies (NR, NC, UH, UF).
    pub served: Option<Served>,
    /// Simulated time the pod took (slept only where the data plane is told to).
    pub latency: Duration,
    /// Pods that received a mirrored copy; their answers were dropped.
    pub mirrored_to: Vec<Served>,
}

impl Outcome {
    pub fn answer(&self) -> Option<&Answer> {
        match self {
            Outcome::Answered(a) => Some(a),
            Outcome::Refused => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_repeated_headers_as_a_proxy_does() {
        let r = Request::get("/").header("Cookie", "a=1").header("cookie", "b=2").header("x", "1").header("X", "2");
        assert_eq!(r.header_value("cookie").as_deref(), Some("a=1; b=2"));
        assert_eq!(r.header_value("x").as_deref(), Some("1,2"));
        assert_eq!(r.header_value("y"), None);
    }

    #[test]
    fn parses_the_article_answer() {
        assert_eq!(
            parse_answer("Host: my-app-7b4874cd75-pc444, Version: v1.0.0\n"),
            Some(("my-app-7b4874cd75-pc444", "v1.0.0"))
        );
        assert_eq!(parse_answer("Host: p, Version: v2, Error: simulated\n"), Some(("p", "v2")));
        assert_eq!(parse_answer("no healthy upstream"), None);
    }
}
