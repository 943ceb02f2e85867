//! Request bodies read within `ServerLimits::max_body_bytes`, before routing: every handler
//! gets the whole body as bytes, and no request makes the server hold more than the limit.

use crate::cluster::error::Error;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};
use futures::StreamExt;
use std::time::Duration;
use tokio::time::Instant;

/// Bytes past the limit still read, and discarded, from an oversized body, so that a client
/// sending somewhat too much (a 4 MiB object) receives its 413 on a connection that stays
/// usable (Go's net/http drains 256 KiB likewise). Past that the body is left unread and the
/// connection closed.
const DRAIN_BYTES: usize = 1024 * 1024;
/// The longest the server spends draining an oversized body.
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// A body the server will not process.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub error: Error,
    /// The body was read to its end: the connection can serve further requests.
    pub drained: bool,
}

impl Refusal {
    fn too_large(limit: usize, drained: bool) -> Self {
        Refusal { error: Error::RequestEntityTooLarge(format!("Request entity too large: limit is {limit}")), drained }
    }
}

/// Reads the body, holding at most `limit` bytes. A body declared (`Content-Length`) or found
/// longer is refused with 413; its remaining bytes are discarded as they arrive, up to
/// `DRAIN_BYTES` past the limit and for `DRAIN_TIME`.
pub(crate) async fn read(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, Refusal> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    let drain_limit = limit.saturating_add(DRAIN_BYTES);
    if declared.is_some_and(|n| n > drain_limit) {
        return Err(Refusal::too_large(limit, false));
    }
    let mut refused = declared.is_some_and(|n| n > limit);
    let mut drain_deadline = refused.then(|| Instant::now() + DRAIN_TIME);
    let mut held = Vec::new();
    let mut seen = 0usize;
    let mut frames = body.into_data_stream();
    loop {
        let next = match drain_deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, frames.next()).await {
                Ok(next) => next,
                Err(_) => return Err(Refusal::too_large(limit, false)),
            },
            None => frames.next().await,
        };
        let chunk = match next {
            None => break,
            Some(Ok(chunk)) => chunk,
            Some(Err(e)) => {
                let error = Error::BadRequest(format!("error reading the request body: {e}"));
                return Err(Refusal { error, drained: false });
            }
        };
        seen = seen.saturating_add(chunk.len());
        if seen > drain_limit {
            return Err(Refusal::too_large(limit, false));
        }
        if seen > limit && !refused {
            refused = true;
            drain_deadline = Some(Instant::now() + DRAIN_TIME);
            held = Vec::new();
        }
        if !refused {
            held.extend_from_slice(&chunk);
        }
    }
    if refused { Err(Refusal::too_large(limit, true)) } else { Ok(Bytes::from(held)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body of `chunks` chunks of `size` bytes, streamed without a `Content-Length`.
    fn chunked(chunks: usize, size: usize) -> Body {
        Body::from_stream(futures::stream::iter((0..chunks).map(move |_| Ok::<_, std::io::Error>(vec![b'x'; size]))))
    }

    fn declaring(len: usize) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, len.into());
        headers
    }

    #[tokio::test]
    async fn bodies_within_the_limit_are_read_whole() {
        let bytes = read(&HeaderMap::new(), chunked(4, 25), 100).await.unwrap();
        assert_eq!(bytes.len(), 100);
        assert_eq!(read(&declaring(3), Body::from("abc"), 3).await.unwrap(), "abc");
    }

    #[tokio::test]
    async fn a_body_somewhat_over_the_limit_is_refused_and_drained() {
        let refusal = read(&HeaderMap::new(), chunked(5, 25), 100).await.unwrap_err();
        assert_eq!(refusal.error.code(), 413);
        assert_eq!(refusal.error.to_string(), "Request entity too large: limit is 100");
        assert!(refusal.drained);
        let refusal = read(&declaring(101), Body::from(vec![0; 101]), 100).await.unwrap_err();
        assert!(refusal.drained);
    }

    #[tokio::test]
    async fn a_body_far_over_the_limit_is_left_unread() {
        let refusal = read(&HeaderMap::new(), chunked(2 + DRAIN_BYTES / 64, 64), 100).await.unwrap_err();
        assert_eq!(refusal.error.code(), 413);
        assert!(!refusal.drained);
        // A declared length past the drain allowance is refused before anything is read.
        let never: Body = Body::from_stream(futures::stream::pending::<Result<Bytes, std::io::Error>>());
        let refusal = read(&declaring(100 + DRAIN_BYTES + 1), never, 100).await.unwrap_err();
        assert!(!refusal.drained);
    }

    #[tokio::test]
    async fn a_stalled_oversized_body_is_drained_for_a_bounded_time() {
        let stalled =
            futures::stream::iter([Ok::<_, std::io::Error>(vec![0u8; 101])]).chain(futures::stream::pending());
        let headers = HeaderMap::new();
        let reading = read(&headers, Body::from_stream(stalled), 100);
        let refusal = tokio::time::timeout(DRAIN_TIME * 2, reading).await.expect("bounded").unwrap_err();
        assert_eq!(refusal.error.code(), 413);
        assert!(!refusal.drained);
    }
}
