//! The introspection exchange (RFC 7662 §2): one POST to the provider's upstream, sent by
//! the worker itself through the upstream client (`upstream/client.rs`), so over the same
//! per-worker pools, balancing, circuit breaker, passive health and retry policy as
//! forwarded requests, and read with the same response-head parser and body framing.
//!
//! Invariants: the whole exchange ends within the provider's `timeout` (connect included);
//! an answer body larger than [`MAX_ANSWER_BYTES`] is refused; a connection goes back to
//! the pool only after a complete answer with nothing unread, and one whose read timed out
//! is closed. The request is sent again on a fresh connection when a pooled one turns out
//! dead (an introspection has no side effect), and on another endpoint when the
//! upstream's retry policy allows it.

use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};

use super::ClientConn;
use crate::auth::oauth2::config::OAuth2Provider;
use crate::config::Config;
use crate::error::ProxyError;
use crate::http1::{BodyFraming, ChunkedDecoder, ChunkedEvent};
use crate::io::{read_more, ReadFail};
use crate::upstream::client::{Body, Client, Failure, Outgoing, Request, UpstreamFailure};
use crate::upstream::UpstreamConn;

/// Introspection answers larger than this are refused: real ones are a few hundred bytes.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Read size for the answer.
const READ_BYTES: usize = 8 * 1024;

/// Why the authorization server gave no usable answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeError {
    /// Connecting, sending or reading failed, timed out, or the answer was malformed or
    /// too large.
    Upstream(UpstreamFailure),
    /// The server answered with this non-2xx status.
    Status(u16),
}

impl fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExchangeError::Upstream(failure) => write!(f, "{failure}"),
            ExchangeError::Status(status) => write!(f, "answered status {status}"),
        }
    }
}

impl ExchangeError {
    /// A failure on reading the answer, after the client's tries.
    fn answer(error: ProxyError) -> Self {
        ExchangeError::Upstream(UpstreamFailure {
            error,
            retries_exhausted: false,
        })
    }
}

impl<S: AsyncReadRent + AsyncWriteRent> ClientConn<S> {
    /// Asks `provider` about `token`; the answer body of a 2xx.
    pub(super) async fn introspect(
        &mut self,
        config: &Arc<Config>,
        provider: &OAuth2Provider,
        token: &[u8],
    ) -> Result<Bytes, ExchangeError> {
        let deadline = Instant::now() + provider.timeout;
        let request = Request {
            key: None,
            // The form body is written with the head.
            body: Body::InHand(Bytes::new()),
            retryable: true,
            idempotent: true,
            is_head: false,
            deadline: Some(deadline),
            // Strait's own request: a LOCAL header, if the upstream wants one.
            addresses: None,
        };
        let mut outgoing = Introspection {
            config,
            provider,
            token,
            request_id: &self.rec.request_id,
        };
        let worker = Rc::clone(&self.worker);
        let mut client = Client::new(&worker.upstreams, config, provider.upstream);
        let mut response = match client.send(&request, &mut outgoing).await {
            Ok(response) => response,
            Err(Failure::Upstream(failure)) => return Err(ExchangeError::Upstream(failure)),
            Err(Failure::Body(never)) => match never {},
        };
        if response.head.status < 200 {
            // We never ask for an upgrade nor send `Expect`.
            return Err(ExchangeError::answer(ProxyError::UpstreamBadResponse));
        }
        let framing = response.head.framing;
        let body = read_answer_body(&mut response.conn, framing, deadline, MAX_ANSWER_BYTES)
            .await
            .map_err(ExchangeError::answer)?;
        let status = response.head.status;
        response.finish();
        if (200..300).contains(&status) {
            Ok(body)
        } else {
            Err(ExchangeError::Status(status))
        }
    }
}

/// One introspection request (RFC 7662 §2.1), rendered for each endpoint tried.
struct Introspection<'a> {
    config: &'a Config,
    provider: &'a OAuth2Provider,
    token: &'a [u8],
    request_id: &'a Bytes,
}

impl Outgoing for Introspection<'_> {
    type BodyError = Infallible;

    /// The fixed head, the token form-encoded (3 bytes a byte at most) and the host line.
    fn head_capacity(&self) -> usize {
        self.provider.request_head.0.len() + 3 * self.token.len() + 256
    }

    /// The whole request: head and form body.
    fn write_head(&self, endpoint: SocketAddr, out: &mut BytesMut) {
        let provider = self.provider;
        let endpoint_host;
        let host = match &provider.host {
            Some(host) => host.as_bytes(),
            None => {
                endpoint_host = endpoint.to_string();
                endpoint_host.as_bytes()
            }
        };
        crate::auth::oauth2::write_request(
            out,
            provider,
            host,
            (
                self.config.observability.request_id_header.as_bytes(),
                self.request_id,
            ),
            self.token,
        );
    }

    /// Never called: the body is in hand (written with the head).
    async fn stream_body(&mut self, _: &mut UpstreamConn) -> Result<(), Infallible> {
        Ok(())
    }
}

/// Reads a whole answer body of at most `max` bytes framed by `framing` (an introspection's,
/// a background revalidation's).
pub(super) async fn read_answer_body(
    conn: &mut UpstreamConn,
    framing: BodyFraming,
    deadline: Instant,
    max: usize,
) -> Result<Bytes, ProxyError> {
    let too_large = ProxyError::UpstreamBadResponse;
    let mut body = BytesMut::new();
    let mut decoder = ChunkedDecoder::new();
    loop {
        match framing {
            BodyFraming::Length(n) => {
                let n = usize::try_from(n)
                    .ok()
                    .filter(|n| *n <= max)
                    .ok_or(too_large)?;
                if conn.buf.len() >= n {
                    return Ok(conn.buf.split_to(n).freeze());
                }
            }
            BodyFraming::Chunked => loop {
                let (used, event) = decoder
                    .decode(&conn.buf)
                    .map_err(|_| ProxyError::UpstreamBadResponse)?;
                if let ChunkedEvent::Data { start, end } = event {
                    body.extend_from_slice(&conn.buf[start..end]);
                    if body.len() > max {
                        return Err(too_large);
                    }
                }
                conn.buf.advance(used);
                match event {
                    ChunkedEvent::Done => return Ok(body.freeze()),
                    ChunkedEvent::NeedMore => break,
                    ChunkedEvent::Data { .. } | ChunkedEvent::LastChunk => {}
                }
            },
            BodyFraming::UntilClose => {
                if conn.buf.len() > max {
                    return Err(too_large);
                }
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match read_more(&mut conn.stream, &mut conn.buf, READ_BYTES, left).await {
            Ok(0) if framing == BodyFraming::UntilClose => return Ok(conn.buf.split().freeze()),
            Ok(0) | Err(ReadFail::Io) => return Err(ProxyError::UpstreamBadResponse),
            Ok(_) => {}
            Err(ReadFail::Timeout) => return Err(ProxyError::UpstreamTimeout),
        }
    }
}
