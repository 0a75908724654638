//! The request's path made normal right after its head is parsed, so that the route,
//! access lists, authentication, rate limits, logs, tracing and the upstream all see the
//! same path: Strait forwards exactly what it routed on.
//!
//! When the path changes, the head is rebuilt: a copy of its bytes with the target's path
//! replaced, parsed again, so nothing downstream knows it happened. When it does not (most
//! requests), nothing is copied.

use std::borrow::Cow;

use bytes::Bytes;

use crate::config::ServerConfig;
use crate::error::ProxyError;
use crate::http1::path::normalize;
use crate::http1::{parse_request_head, RequestHead};

/// The head with its path normalised by `server.paths`: `None` when the path is already
/// normal, `Err(BadPath)` when it cannot be (logged at debug level with the reason).
pub(super) fn normalize_head(
    raw: &[u8],
    head: &RequestHead,
    server: &ServerConfig,
) -> Result<Option<(Bytes, RequestHead)>, ProxyError> {
    let path = match normalize(head.path(raw), &server.paths) {
        Ok(Cow::Borrowed(_)) => return Ok(None),
        Ok(Cow::Owned(path)) => path,
        Err(reason) => {
            tracing::debug!(%reason, "request path refused");
            return Err(ProxyError::BadPath);
        }
    };
    let (start, end) = (head.target.0 as usize, head.path_end as usize);
    let mut rebuilt = Vec::with_capacity(raw.len());
    rebuilt.extend_from_slice(&raw[..start]);
    rebuilt.extend_from_slice(&path);
    rebuilt.extend_from_slice(&raw[end..]);
    let rebuilt = Bytes::from(rebuilt);
    // A normal path is never longer and holds only bytes the parser accepted in the
    // original, so this parse succeeds; its error is still the client's if it does not.
    let head = parse_request_head(&rebuilt, &server.limits)?;
    Ok(Some((rebuilt, head)))
}
