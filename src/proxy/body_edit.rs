//! A route's JSON body edits (`transform.request.body`, `transform.response.body`) on the
//! request path: the body is read whole (up to the edit's `max_bytes`), edited by
//! `transform::json`, and sent on with a new Content-Length.
//!
//! Where it sits: the request edit runs in the upstream exchange (`forward.rs`) before any
//! upstream connection is taken, so the edited body is in hand and a retry sends it again;
//! the response edit runs when the upstream's head has come, before the client's head is
//! written.
//!
//! Invariant: reading never consumes a body it does not edit. The bytes stay in the
//! connection's buffer until the whole body is there and within bounds, so a body that
//! is over the bound, or not to be edited, is streamed on from its first byte as if no
//! edit were configured.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};

use super::forward::Failure;
use super::pipeline::{self, RequestCtx};
use super::ClientConn;
use crate::config::{Config, Route};
use crate::error::ProxyError;
use crate::http1::headers::list_tokens;
use crate::http1::ResponseHead;
use crate::http1::{BodyFraming, ChunkedDecoder, ChunkedEvent, HeaderSpan, RequestHead};
use crate::io::{read_more, ReadFail};
use crate::transform::json::{BodyEdit, Oversize};
use crate::upstream::UpstreamConn;

/// Read size while collecting a body.
const READ_BYTES: usize = 16 * 1024;
/// Room for chunked framing beyond `max_bytes` of payload: a body whose chunk lines take
/// more than this is treated as over the bound.
const FRAMING_SLACK_BYTES: usize = 64 * 1024;

/// How collecting a body ended.
enum Collected {
    /// The whole payload; its bytes were consumed from the buffer.
    Whole(Bytes),
    /// Over the bound: nothing was consumed.
    Oversize,
}

/// Why collecting a body failed.
enum CollectError {
    Read(ReadFail),
    /// The peer closed before the body ended.
    Closed,
    BadChunk,
}

/// True when a message with these headers carries JSON the edit may change: a JSON media
/// type (`application/json`, `*/*+json`, parameters allowed) and no content coding.
pub fn is_editable(raw: &[u8], headers: &[HeaderSpan]) -> bool {
    let mut json = false;
    for h in headers {
        let name = h.name(raw);
        if name.eq_ignore_ascii_case(b"content-type") {
            json = is_json_media_type(h.value(raw));
        } else if name.eq_ignore_ascii_case(b"content-encoding")
            && list_tokens(h.value(raw)).any(|c| !c.eq_ignore_ascii_case(b"identity"))
        {
            return false;
        }
    }
    json
}

/// `application/json`, or any `type/subtype+json` (RFC 6839), with or without parameters.
fn is_json_media_type(value: &[u8]) -> bool {
    let essence = value.split(|&b| b == b';').next().unwrap_or_default();
    let essence = essence.trim_ascii();
    let Some(slash) = memchr::memchr(b'/', essence) else {
        return false;
    };
    let (kind, subtype) = (&essence[..slash], &essence[slash + 1..]);
    let suffix = subtype.len().checked_sub(5).map(|at| &subtype[at..]);
    !kind.is_empty()
        && (essence.eq_ignore_ascii_case(b"application/json")
            || (subtype.len() > 5 && suffix.is_some_and(|s| s.eq_ignore_ascii_case(b"+json"))))
}

fn request_edit(route: Option<&Route>) -> Option<&BodyEdit> {
    route?.transform.as_ref()?.request.as_ref()?.body.as_ref()
}

fn response_edit(route: Option<&Route>) -> Option<&BodyEdit> {
    route?.transform.as_ref()?.response.as_ref()?.body.as_ref()
}

impl<S: AsyncReadRent + AsyncWriteRent> ClientConn<S> {
    /// The request body edited, when the route edits it and it is JSON within the bound;
    /// `None` leaves the body as it came (unread). Over the bound with `oversize =
    /// "refuse"`: 413; not valid JSON: 400.
    pub(super) async fn edited_request_body(
        &mut self,
        config: &Config,
        raw: &[u8],
        head: &RequestHead,
    ) -> Result<Option<Bytes>, Failure> {
        let route = pipeline::route_of(config, &self.ctx);
        let Some(edit) = request_edit(route) else {
            return Ok(None);
        };
        let has_body = matches!(
            head.framing,
            BodyFraming::Length(1..) | BodyFraming::Chunked
        );
        if !has_body || !is_editable(raw, &head.headers) {
            return Ok(None);
        }
        let timeout = config.server.timeouts.body_read;
        let max = edit.max_bytes.min(config.server.limits.max_body_bytes);
        // Known too large from its Content-Length: decided before `100 Continue`, which
        // the streaming path would otherwise send a second time.
        if matches!(head.framing, BodyFraming::Length(n) if n > max) {
            return match edit.oversize {
                Oversize::Refuse => Err(Failure::Answer(ProxyError::BodyTooLarge)),
                Oversize::Pass => Ok(None),
            };
        }
        if head.expect_continue && self.buf.is_empty() {
            let mut out = std::mem::take(&mut self.out);
            out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            self.out = crate::io::write_out(&mut self.stream, out, self.send_timeout)
                .await
                .map_err(|_| Failure::Abort)?;
        }
        let collected = collect(&mut self.stream, &mut self.buf, head.framing, max, timeout)
            .await
            .map_err(|e| match e {
                CollectError::Read(ReadFail::Timeout) => Failure::Answer(ProxyError::BodyTimeout),
                CollectError::Read(ReadFail::Io) | CollectError::Closed => Failure::Abort,
                CollectError::BadChunk => Failure::Answer(ProxyError::BadChunk),
            })?;
        let body = match collected {
            Collected::Whole(body) => body,
            Collected::Oversize if edit.oversize == Oversize::Refuse => {
                return Err(Failure::Answer(ProxyError::BodyTooLarge));
            }
            Collected::Oversize => return Ok(None),
        };
        self.rec.bytes_in += body.len() as u64;
        let route = route.ok_or(Failure::Abort)?;
        let facts = super::transform::facts(route, raw, head, &self.ctx, &self.rec.request_id);
        let mut out = Vec::with_capacity(body.len() + 64);
        match edit.apply(&body, &facts, &mut out) {
            Ok(()) => Ok(Some(out.into())),
            Err(err) => {
                tracing::debug!(error = %err.0, "request body is not valid JSON");
                Err(Failure::Answer(ProxyError::BadJsonBody))
            }
        }
    }
}

/// The upstream's answer body edited, for a route with a response body edit: `Ok(None)`
/// when the answer is not edited (not JSON, coded, bodiless, or over the bound with
/// `oversize = "pass"`), and its body is still unread. An answer that is not valid JSON
/// comes back unchanged (read whole, so it is sent with a Content-Length).
pub(super) async fn edited_response_body(
    config: &Config,
    ctx: &RequestCtx,
    facts: (&[u8], &RequestHead, &[u8]),
    (raw, head): (&[u8], &ResponseHead),
    conn: &mut UpstreamConn,
) -> Result<Option<EditedAnswer>, Failure> {
    let route = pipeline::route_of(config, ctx);
    let Some((edit, route)) = response_edit(route).zip(route) else {
        return Ok(None);
    };
    let (request_raw, request, request_id) = facts;
    let bodiless = request.method == crate::http1::request::Method::Head
        || matches!(head.status, 204 | 304)
        || head.framing == BodyFraming::Length(0);
    if bodiless || !is_editable(raw, &head.headers) {
        return Ok(None);
    }
    let timeout = config.server.timeouts.upstream_response;
    let collected = collect(
        &mut conn.stream,
        &mut conn.buf,
        head.framing,
        edit.max_bytes,
        timeout,
    )
    .await
    .map_err(|e| {
        Failure::Answer(match e {
            CollectError::Read(ReadFail::Timeout) => ProxyError::UpstreamTimeout,
            _ => ProxyError::UpstreamBadResponse,
        })
    })?;
    let body = match collected {
        Collected::Whole(body) => body,
        Collected::Oversize if edit.oversize == Oversize::Refuse => {
            tracing::debug!(
                limit = edit.max_bytes,
                "upstream answer over the body edit's bound"
            );
            return Err(Failure::Answer(ProxyError::UpstreamBodyTooLarge));
        }
        Collected::Oversize => return Ok(None),
    };
    let facts = super::transform::facts(route, request_raw, request, ctx, request_id);
    let mut out = Vec::with_capacity(body.len() + 64);
    let edited = match edit.apply(&body, &facts, &mut out) {
        Ok(()) if out[..] != body[..] => Some(Bytes::from(out)),
        Ok(()) => None,
        Err(err) => {
            tracing::debug!(error = %err.0, "upstream answer is not valid JSON: passed unchanged");
            None
        }
    };
    let etag = edited.as_ref().and_then(|_| weak_etag(raw, &head.headers));
    Ok(Some(EditedAnswer {
        body: edited.unwrap_or(body),
        etag,
    }))
}

/// An answer body read whole, edited or not, and sent with a Content-Length.
pub(super) struct EditedAnswer {
    pub body: Bytes,
    /// The `etag: W/"..."` line that replaces the ETag of a changed body.
    pub etag: Option<Vec<u8>>,
}

/// True for the header an edited answer's ETag line replaces.
pub(super) fn is_etag(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"etag")
}

/// The weak form of the answer's ETag as a header line (RFC 9110 §8.8.3: a changed
/// representation keeps at most a weak validator); `None` without an ETag. A weak one
/// stays as it is.
fn weak_etag(raw: &[u8], headers: &[HeaderSpan]) -> Option<Vec<u8>> {
    let value = headers.iter().find(|h| is_etag(h.name(raw)))?.value(raw);
    let mut line = Vec::with_capacity(value.len() + 12);
    line.extend_from_slice(b"etag: ");
    if !value.starts_with(b"W/") {
        line.extend_from_slice(b"W/");
    }
    line.extend_from_slice(value);
    line.extend_from_slice(b"\r\n");
    Some(line)
}

/// Reads a whole body framed by `framing` from `src` into `buf`, up to `max` payload
/// bytes. Nothing is consumed from `buf` unless the whole body was read.
async fn collect<R: AsyncReadRent>(
    src: &mut R,
    buf: &mut BytesMut,
    framing: BodyFraming,
    max: u64,
    timeout: Duration,
) -> Result<Collected, CollectError> {
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    match framing {
        BodyFraming::Length(n) => {
            let Some(n) = usize::try_from(n).ok().filter(|n| *n <= max) else {
                return Ok(Collected::Oversize);
            };
            while buf.len() < n {
                read(src, buf, n - buf.len(), timeout, false).await?;
            }
            Ok(Collected::Whole(buf.split_to(n).freeze()))
        }
        BodyFraming::UntilClose => loop {
            if buf.len() > max {
                return Ok(Collected::Oversize);
            }
            if read(src, buf, READ_BYTES, timeout, true).await? == 0 {
                return Ok(Collected::Whole(buf.split().freeze()));
            }
        },
        BodyFraming::Chunked => {
            let mut decoder = ChunkedDecoder::new();
            let mut payload = BytesMut::new();
            let mut scanned = 0;
            let raw_limit = max.saturating_add(FRAMING_SLACK_BYTES);
            loop {
                while scanned < buf.len() {
                    let (used, event) = decoder
                        .decode(&buf[scanned..])
                        .map_err(|_| CollectError::BadChunk)?;
                    if let ChunkedEvent::Data { start, end } = event {
                        payload.extend_from_slice(&buf[scanned + start..scanned + end]);
                        if payload.len() > max {
                            return Ok(Collected::Oversize);
                        }
                    }
                    scanned += used;
                    if event == ChunkedEvent::Done {
                        // The trailer section goes with the framing it belonged to.
                        let _ = buf.split_to(scanned);
                        return Ok(Collected::Whole(payload.freeze()));
                    }
                }
                if buf.len() > raw_limit {
                    return Ok(Collected::Oversize);
                }
                read(src, buf, READ_BYTES, timeout, false).await?;
            }
        }
    }
}

/// One read into `buf`; 0 (the end) is an error unless `end_ok`.
async fn read<R: AsyncReadRent>(
    src: &mut R,
    buf: &mut BytesMut,
    want: usize,
    timeout: Duration,
    end_ok: bool,
) -> Result<usize, CollectError> {
    match read_more(src, buf, want.clamp(1, READ_BYTES), timeout).await {
        Ok(0) if !end_ok => Err(CollectError::Closed),
        Ok(n) => Ok(n),
        Err(fail) => Err(CollectError::Read(fail)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_media_types_are_recognised() {
        let cases: &[(&[u8], bool)] = &[
            (b"application/json", true),
            (b"Application/JSON; charset=utf-8", true),
            (b" application/problem+json ", true),
            (b"application/vnd.api+json;v=2", true),
            (b"text/plain", false),
            (b"application/jsonx", false),
            (b"application/+json", false),
            (b"/+json", false),
            (b"json", false),
            (b"", false),
        ];
        for (value, want) in cases {
            assert_eq!(
                is_json_media_type(value),
                *want,
                "{:?}",
                String::from_utf8_lossy(value)
            );
        }
    }
}
