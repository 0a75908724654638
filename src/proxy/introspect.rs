//! The introspection exchange (RFC 7662 §2): one POST to the provider's upstream, made by
//! the worker itself over the same per-worker pools, balancing, circuit breaker and health
//! state as forwarded requests (`forward.rs`), and read with the same response-head parser
//! and body framing.
//!
//! Invariants: the whole exchange ends within the provider's `timeout` (connect included);
//! an answer body larger than [`MAX_ANSWER_BYTES`] is refused; a connection goes back to
//! the pool only after a complete answer with nothing unread, and one whose read timed out
//! is closed. A pooled connection found dead is replaced by a fresh one; a failed endpoint
//! is followed by another one when the upstream's retry policy allows it.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};

use super::forward::{read_response_head, Failure, TryFailure};
use super::io::{read_more, write_within, ReadFail};
use super::ClientConn;
use crate::config::{Config, OAuth2Provider};
use crate::error::ProxyError;
use crate::http1::{BodyFraming, ChunkedDecoder, ChunkedEvent};
use crate::upstream::UpstreamConn;

/// Introspection answers larger than this are refused: real ones are a few hundred bytes.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Read size for the answer.
const READ_BYTES: usize = 8 * 1024;
/// Endpoints tried at most for one token.
const MAX_TRIES: usize = 10;

/// Why the authorization server gave no usable answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeError {
    /// Connecting, sending or reading failed, timed out, or the answer was malformed or
    /// too large.
    Upstream(ProxyError),
    /// The server answered with this non-2xx status.
    Status(u16),
}

impl fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExchangeError::Upstream(error) => write!(f, "{error}"),
            ExchangeError::Status(status) => write!(f, "answered status {status}"),
        }
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
        let id = provider.upstream;
        let upstream = &config.upstreams[id];
        {
            let mut upstreams = self.worker.upstreams.borrow_mut();
            let state = upstreams
                .get(config, id)
                .ok_or(ExchangeError::Upstream(ProxyError::NoEndpoint))?;
            if state.in_flight >= upstream.limits.max_requests {
                return Err(ExchangeError::Upstream(ProxyError::Overloaded));
            }
            state.budget.record_request(Instant::now());
        }
        let attempts = (upstream.retry.attempts as usize).clamp(1, MAX_TRIES);
        let mut tried = [usize::MAX; MAX_TRIES];
        let mut tries = 0;
        let mut last = ExchangeError::Upstream(ProxyError::NoEndpoint);
        while tries < attempts && Instant::now() < deadline {
            let Some(endpoint) =
                self.pick_endpoint(config, id, None, &tried[..tries], Instant::now())
            else {
                break;
            };
            tried[tries] = endpoint;
            tries += 1;
            self.count_in_flight(config, id, endpoint, true);
            let outcome = self
                .introspect_at(config, provider, endpoint, token, deadline)
                .await;
            self.count_in_flight(config, id, endpoint, false);
            let retry = match outcome {
                Ok((conn, status, body)) => {
                    self.record_outcome(config, id, endpoint, status < 500);
                    if let Some(conn) = conn {
                        if let Some(state) = self.worker.upstreams.borrow_mut().get(config, id) {
                            state.endpoints[endpoint].pool.checkin(conn, Instant::now());
                        }
                    }
                    if (200..300).contains(&status) {
                        return Ok(body);
                    }
                    last = ExchangeError::Status(status);
                    upstream.retry.on_statuses.contains(&status)
                }
                Err(TryFailure::Upstream(error)) => {
                    self.record_outcome(config, id, endpoint, false);
                    last = ExchangeError::Upstream(error);
                    match error {
                        ProxyError::UpstreamConnect | ProxyError::UpstreamConnectTimeout => {
                            upstream.retry.on_connect_failure
                        }
                        ProxyError::UpstreamClosed => upstream.retry.on_reset,
                        _ => false,
                    }
                }
                // Refused here (circuit breaker): the endpoint is not to blame.
                Err(TryFailure::Client(failure)) => {
                    last = ExchangeError::Upstream(match failure {
                        Failure::Answer(error) => error,
                        Failure::Abort => ProxyError::UpstreamClosed,
                    });
                    false
                }
            };
            // Retries come out of the upstream's budget, shared with forwarded requests.
            if !retry || !self.take_retry(config, id) {
                break;
            }
        }
        Err(last)
    }

    /// One try on one endpoint: the status, the body, and the connection when it may be
    /// pooled again. `TryFailure::Upstream`: the endpoint failed; `TryFailure::Client`:
    /// refused before reaching it.
    async fn introspect_at(
        &mut self,
        config: &Arc<Config>,
        provider: &OAuth2Provider,
        endpoint: usize,
        token: &[u8],
        deadline: Instant,
    ) -> Result<(Option<UpstreamConn>, u16, Bytes), TryFailure> {
        let addr = config.upstreams[provider.upstream].endpoints[endpoint].addr;
        let endpoint_host;
        let host = match &provider.host {
            Some(host) => host.as_bytes(),
            None => {
                endpoint_host = addr.to_string();
                endpoint_host.as_bytes()
            }
        };
        let mut request =
            BytesMut::with_capacity(provider.request_head.0.len() + 3 * token.len() + 256);
        crate::auth::oauth2::write_request(
            &mut request,
            provider,
            host,
            (
                config.observability.request_id_header.as_bytes(),
                &self.rec.request_id,
            ),
            token,
        );
        let request = request.freeze();
        let mut fresh_only = false;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let connect_timeout = left.min(config.server.timeouts.upstream_connect);
            let mut conn = self
                .upstream_conn(
                    config,
                    provider.upstream,
                    endpoint,
                    fresh_only,
                    connect_timeout,
                )
                .await?;
            let reused = conn.reused;
            let left = deadline.saturating_duration_since(Instant::now());
            match write_within(&mut conn.stream, request.clone(), left).await {
                Ok((Ok(_), _)) => {}
                Ok((Err(_), _)) if reused => {
                    // The pooled connection was dead: nothing reached the server.
                    fresh_only = true;
                    continue;
                }
                Ok((Err(_), _)) => return Err(TryFailure::Upstream(ProxyError::UpstreamClosed)),
                Err(_) => return Err(TryFailure::Upstream(ProxyError::UpstreamTimeout)),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let (_, head) = match read_response_head(&mut conn, false, left).await {
                Ok(response) => response,
                Err(ProxyError::UpstreamClosed) if reused => {
                    fresh_only = true;
                    continue;
                }
                Err(error) => return Err(TryFailure::Upstream(error)),
            };
            if head.status < 200 {
                // We never ask for an upgrade nor send `Expect`.
                return Err(TryFailure::Upstream(ProxyError::UpstreamBadResponse));
            }
            let body = read_answer_body(&mut conn, head.framing, deadline)
                .await
                .map_err(TryFailure::Upstream)?;
            let reusable = head.keep_alive && conn.buf.is_empty();
            return Ok((reusable.then_some(conn), head.status, body));
        }
    }
}

/// Reads a whole answer body of at most [`MAX_ANSWER_BYTES`] framed by `framing`.
async fn read_answer_body(
    conn: &mut UpstreamConn,
    framing: BodyFraming,
    deadline: Instant,
) -> Result<Bytes, ProxyError> {
    let too_large = ProxyError::UpstreamBadResponse;
    let mut body = BytesMut::new();
    let mut decoder = ChunkedDecoder::new();
    loop {
        match framing {
            BodyFraming::Length(n) => {
                let n = usize::try_from(n)
                    .ok()
                    .filter(|n| *n <= MAX_ANSWER_BYTES)
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
                    if body.len() > MAX_ANSWER_BYTES {
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
                if conn.buf.len() > MAX_ANSWER_BYTES {
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
