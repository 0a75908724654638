//! Forwarding one request to an upstream and its response back: pick an endpoint, take a
//! pooled connection or open one, send the head (and the body, streamed), read the
//! response head, stream the response body, and give the connection back to the pool when
//! it is clean.
//!
//! A pooled connection can turn out dead only once the request meets it. The request is
//! then sent again on a fresh connection when that is safe: nothing came back, the whole
//! body is still in hand, and the method is idempotent.
//!
//! Beyond that, a failed try (connect failure, reset before any byte, timeout, or a
//! configured 5xx) is retried on another endpoint when the upstream's retry policy, the
//! method, the retry budget and the overall deadline all allow it. Every try feeds the
//! endpoint's passive health; the circuit breaker answers 503 at once past its limits.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::net::TcpStream;

use super::body::{Encode, Pump, PumpError};
use super::io::{read_more, write_out, write_within, ReadFail};
use super::pipeline::{self, AnswerHead};
use super::ClientConn;
use crate::config::{BalancePolicy, Config, ProxyAction, UpstreamId};
use crate::error::ProxyError;
use crate::http1::encode::{
    encode_request_head, encode_response_head, ClientBody, ClientFraming, ForwardedRequest,
    UpstreamHost,
};
use crate::http1::request::Method;
use crate::http1::{
    find_head_end, parse_response_head, BodyFraming, RequestHead, ResponseHead, Version,
};
use crate::observe::Outcome;
use crate::upstream::hash_key::request_key;
use crate::upstream::outlier;
use crate::upstream::UpstreamConn;

/// Read buffer per upstream connection.
const UPSTREAM_READ_BYTES: usize = 16 * 1024;
/// Upstream response heads larger than this are refused (502).
const MAX_RESPONSE_HEAD_BYTES: usize = 64 * 1024;
/// Request bodies up to this size are sent in the same write as the head.
const INLINE_BODY_BYTES: usize = 64 * 1024;

/// Tries of one request at most (the config allows up to 10).
const MAX_ATTEMPTS: usize = 10;

/// Why one try failed.
pub(super) enum TryFailure {
    /// The upstream failed (connect, reset, timeout, bad response): another endpoint may
    /// be tried.
    Upstream(ProxyError),
    /// The client side failed or the request cannot continue: no retry.
    Client(Failure),
}

/// Where the request stands when the upstream exchange fails.
pub(super) enum Failure {
    /// Nothing was answered yet: send this error to the client.
    Answer(ProxyError),
    /// The client side broke or a response was already under way: just close.
    Abort,
}

impl<S: AsyncReadRent + AsyncWriteRent> ClientConn<S> {
    /// Proxies one request; returns whether the client connection may carry another.
    pub(super) async fn forward(
        &mut self,
        config: &Arc<Config>,
        action: &ProxyAction,
        raw: Bytes,
        head: RequestHead,
    ) -> bool {
        let keep_alive = match self.exchange(config, action, &raw, &head).await {
            Ok(keep_alive) => keep_alive,
            Err(Failure::Answer(error)) => {
                // The request body may be half read: the connection cannot continue.
                let _ = self.answer_error(error, &[], head.version, false).await;
                false
            }
            Err(Failure::Abort) => false,
        };
        keep_alive && head.keep_alive
    }

    async fn exchange(
        &mut self,
        config: &Arc<Config>,
        action: &ProxyAction,
        raw: &Bytes,
        head: &RequestHead,
    ) -> Result<bool, Failure> {
        let id = action.upstream;
        let upstream_config = &config.upstreams[id];
        let retry = &upstream_config.retry;
        // A body up to `buffer_body` is read whole before any upstream connection is
        // taken: a slow client then holds no upstream connection, and a retry can send the
        // body again. Larger bodies are streamed and never replayed.
        if let BodyFraming::Length(n) = head.framing {
            if n <= retry.buffer_body_bytes && (self.buf.len() as u64) < n {
                self.read_small_body(config, head, n as usize).await?;
            }
        }
        let body = match head.framing {
            BodyFraming::Length(n) if n <= self.buf.len() as u64 => {
                Some(self.buf.split_to(n as usize).freeze())
            }
            _ => None,
        };
        self.rec.bytes_in += body.as_ref().map_or(0, |b| b.len() as u64);
        self.rec.upstream = Some(id);
        let may_retry =
            body.is_some() && (head.method.is_idempotent() || action.retry_non_idempotent);
        let key = match &upstream_config.balance {
            BalancePolicy::Hash(key) => request_key(key, raw, head, &self.ctx.client_ip),
            _ => None,
        };
        let started = Instant::now();
        let deadline = retry.timeout.map(|t| started + t);
        {
            let mut upstreams = self.worker.upstreams.borrow_mut();
            // Synced to `config` when the head completed, and nothing awaited since.
            let state = upstreams
                .get(config, id)
                .ok_or(Failure::Answer(ProxyError::NoEndpoint))?;
            if state.in_flight >= upstream_config.limits.max_requests {
                return Err(Failure::Answer(ProxyError::Overloaded));
            }
            state.budget.record_request(started);
        }

        let mut tried = [usize::MAX; MAX_ATTEMPTS];
        let mut tries = 0;
        let mut last_error = ProxyError::NoEndpoint;
        loop {
            let now = Instant::now();
            let endpoint = self.pick_endpoint(config, id, key, &tried[..tries], now);
            let Some(endpoint) = endpoint else {
                // No endpoint left to try: the last try's failure is the answer.
                return Err(Failure::Answer(last_error));
            };
            tried[tries] = endpoint;
            tries += 1;
            self.rec.endpoint = Some(upstream_config.endpoints[endpoint].addr);
            self.rec.retries = tries as u32 - 1;
            let per_try = retry
                .per_try_timeout
                .unwrap_or(config.server.timeouts.upstream_response);
            let try_deadline = match deadline {
                Some(d) => (now + per_try).min(d),
                None => now + per_try,
            };
            self.count_in_flight(config, id, endpoint, true);
            let outcome = self
                .try_endpoint(
                    config,
                    action,
                    raw,
                    head,
                    endpoint,
                    body.as_ref(),
                    try_deadline,
                )
                .await;
            let can_retry = |this: &Self, retry_on: bool| {
                retry_on
                    && may_retry
                    && tries < retry.attempts as usize
                    && tries < MAX_ATTEMPTS
                    && deadline.is_none_or(|d| Instant::now() < d)
                    && this.has_untried(config, id, &tried[..tries])
                    && this.take_retry(config, id)
            };
            match outcome {
                Ok((mut upstream, response)) => {
                    self.rec.upstream_time = Some(started.elapsed());
                    self.rec.pool_hit = Some(upstream.reused);
                    let status = response.1.status;
                    let failed = status >= 500;
                    self.record_outcome(config, id, endpoint, !failed);
                    if failed && retry.on_statuses.contains(&status) && can_retry(self, true) {
                        // This answer is dropped with its connection; the next try replaces it.
                        self.count_in_flight(config, id, endpoint, false);
                        continue;
                    }
                    let reuse = self
                        .relay_response(config, head, &mut upstream, response)
                        .await;
                    self.count_in_flight(config, id, endpoint, false);
                    let reuse = reuse?;
                    if reuse.upstream_reusable {
                        // After a reload during the exchange the state is another snapshot's:
                        // the connection is then closed rather than pooled under a wrong index.
                        if let Some(state) = self.worker.upstreams.borrow_mut().get(config, id) {
                            state.endpoints[endpoint]
                                .pool
                                .checkin(upstream, Instant::now());
                        }
                    }
                    return Ok(reuse.client);
                }
                Err(TryFailure::Upstream(error)) => {
                    self.count_in_flight(config, id, endpoint, false);
                    self.record_outcome(config, id, endpoint, false);
                    let retry_on = match error {
                        ProxyError::UpstreamConnect | ProxyError::UpstreamConnectTimeout => {
                            retry.on_connect_failure
                        }
                        ProxyError::UpstreamClosed => retry.on_reset,
                        ProxyError::UpstreamTimeout => retry.on_statuses.contains(&504),
                        _ => false,
                    };
                    if !can_retry(self, retry_on) {
                        self.rec.outcome = match error {
                            ProxyError::UpstreamConnect | ProxyError::UpstreamConnectTimeout => {
                                Outcome::UpstreamConnectError
                            }
                            ProxyError::UpstreamTimeout => Outcome::UpstreamTimeout,
                            _ => Outcome::Answered,
                        };
                        return Err(Failure::Answer(error));
                    }
                    last_error = error;
                    tracing::debug!(upstream = %upstream_config.name, endpoint = %upstream_config.endpoints[endpoint].addr, %error, "retrying on another endpoint");
                }
                Err(TryFailure::Client(failure)) => {
                    self.count_in_flight(config, id, endpoint, false);
                    return Err(failure);
                }
            }
        }
    }

    /// Picks an endpoint that is healthy, not ejected and not tried yet.
    pub(super) fn pick_endpoint(
        &self,
        config: &Arc<Config>,
        id: UpstreamId,
        key: Option<u64>,
        tried: &[usize],
        now: Instant,
    ) -> Option<usize> {
        let mut upstreams = self.worker.upstreams.borrow_mut();
        let state = upstreams.get(config, id)?;
        state.refresh_usable(&config.upstreams[id], now);
        state.pick(key, tried)
    }

    pub(super) fn count_in_flight(
        &self,
        config: &Arc<Config>,
        id: UpstreamId,
        endpoint: usize,
        start: bool,
    ) {
        if let Some(state) = self.worker.upstreams.borrow_mut().get(config, id) {
            let e = &mut state.endpoints[endpoint];
            if start {
                e.in_flight += 1;
                state.in_flight += 1;
            } else {
                e.in_flight = e.in_flight.saturating_sub(1);
                state.in_flight = state.in_flight.saturating_sub(1);
            }
        }
    }

    /// Feeds passive health: a connect failure, reset, timeout or 5xx counts against the
    /// endpoint, anything else for it.
    pub(super) fn record_outcome(
        &self,
        config: &Arc<Config>,
        id: UpstreamId,
        endpoint: usize,
        success: bool,
    ) {
        let upstream = &config.upstreams[id];
        if let Some(state) = self.worker.upstreams.borrow_mut().get(config, id) {
            if success {
                state.endpoints[endpoint].outlier.on_success();
                return;
            }
            let now = Instant::now();
            let ejected = outlier::count_ejected(state.endpoints.iter().map(|e| &e.outlier), now);
            let total = state.endpoints.len();
            let percent = upstream.outlier.max_ejected_percent;
            // Never eject past `max_ejected_percent` of the endpoints.
            let may_eject = || outlier::ejection_allowed(ejected, total, percent);
            if state.endpoints[endpoint].outlier.on_failure_capped(
                &upstream.outlier,
                now,
                may_eject,
            ) {
                tracing::warn!(upstream = %upstream.name, endpoint = %upstream.endpoints[endpoint].addr, "endpoint ejected after consecutive failures");
            }
        }
    }

    fn has_untried(&self, config: &Arc<Config>, id: UpstreamId, tried: &[usize]) -> bool {
        let mut upstreams = self.worker.upstreams.borrow_mut();
        match upstreams.get(config, id) {
            Some(state) => {
                state.refresh_usable(&config.upstreams[id], Instant::now());
                state.has_untried(tried)
            }
            None => false,
        }
    }

    /// Takes a retry from the upstream's budget; false when it is spent.
    pub(super) fn take_retry(&self, config: &Arc<Config>, id: UpstreamId) -> bool {
        match self.worker.upstreams.borrow_mut().get(config, id) {
            Some(state) => state.budget.try_retry(Instant::now()),
            None => false,
        }
    }

    /// One try on one endpoint: a connection (pooled first; again on a fresh one if the
    /// pooled one was dead), the request, and the response head.
    #[allow(clippy::too_many_arguments)] // the request's parts, borrowed from the caller
    async fn try_endpoint(
        &mut self,
        config: &Arc<Config>,
        action: &ProxyAction,
        raw: &Bytes,
        head: &RequestHead,
        endpoint: usize,
        body: Option<&Bytes>,
        deadline: Instant,
    ) -> Result<(UpstreamConn, (Bytes, ResponseHead)), TryFailure> {
        let endpoint_addr = config.upstreams[action.upstream].endpoints[endpoint].addr;
        let endpoint_host;
        let host = if action.preserve_host {
            UpstreamHost::Preserve
        } else if let Some(rewrite) = &action.host_rewrite {
            UpstreamHost::Rewrite(rewrite.as_bytes())
        } else {
            endpoint_host = endpoint_addr.to_string();
            UpstreamHost::Rewrite(endpoint_host.as_bytes())
        };
        let request_id = self.rec.request_id.clone();
        let trace = self.rec.trace;
        // The route's filters edit the upstream's copy: an authenticated request's
        // credential stays here, its consumer and mapped claims go upstream.
        let edits = pipeline::upstream_edits(config, &self.ctx);
        let forwarded = ForwardedRequest {
            target: strip_prefix(head.target(raw), action.strip_prefix.as_deref()),
            host,
            client_ip: &self.peer_text,
            scheme: b"http",
            request_id: (
                config.observability.request_id_header.as_bytes(),
                &request_id,
            ),
            trace: trace.as_ref(),
            drop_headers: &edits.drop,
            set_headers: &edits.set,
        };
        let body_len = body.map_or(0, Bytes::len);
        let mut request =
            BytesMut::with_capacity(raw.len() + 256 + body_len.min(INLINE_BODY_BYTES));
        encode_request_head(&mut request, raw, head, &forwarded, head.framing);
        // A small body goes in the same write as the head.
        let separate_body = match body {
            Some(b) if b.len() <= INLINE_BODY_BYTES => {
                request.extend_from_slice(b);
                None
            }
            other => other.cloned(),
        };
        let request = request.freeze();
        let write_timeout = config.server.timeouts.upstream_response;

        let mut fresh_only = false;
        loop {
            let mut upstream = self
                .upstream_conn(
                    config,
                    action.upstream,
                    endpoint,
                    fresh_only,
                    config.server.timeouts.upstream_connect,
                )
                .await?;
            let reused = upstream.reused;
            let written =
                match write_within(&mut upstream.stream, request.clone(), write_timeout).await {
                    Ok((Ok(_), _)) => match &separate_body {
                        Some(b) => matches!(
                            write_within(&mut upstream.stream, b.clone(), write_timeout).await,
                            Ok((Ok(_), _))
                        ),
                        None => true,
                    },
                    _ => false,
                };
            if !written {
                if reused && body.is_some() {
                    // The pooled connection was dead before the request reached the upstream.
                    fresh_only = true;
                    continue;
                }
                return Err(TryFailure::Upstream(ProxyError::UpstreamConnect));
            }
            if body.is_none() && head.has_body() {
                self.send_request_body(config, head, &mut upstream)
                    .await
                    .map_err(TryFailure::Client)?;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match read_response_head(&mut upstream, head.method == Method::Head, left).await {
                Ok(response) => return Ok((upstream, response)),
                Err(ProxyError::UpstreamClosed)
                    if reused && body.is_some() && head.method.is_idempotent() =>
                {
                    fresh_only = true;
                }
                Err(error) => return Err(TryFailure::Upstream(error)),
            }
        }
    }

    /// A pooled connection to `endpoint` (unless `fresh_only`), else a new one within
    /// `connect_timeout`, subject to the upstream's circuit breaker.
    pub(super) async fn upstream_conn(
        &mut self,
        config: &Arc<Config>,
        upstream: usize,
        endpoint: usize,
        fresh_only: bool,
        connect_timeout: std::time::Duration,
    ) -> Result<UpstreamConn, TryFailure> {
        let limits = &config.upstreams[upstream].limits;
        {
            let mut upstreams = self.worker.upstreams.borrow_mut();
            let Some(state) = upstreams.get(config, upstream) else {
                return Err(TryFailure::Client(Failure::Answer(ProxyError::NoEndpoint)));
            };
            if !fresh_only {
                if let Some(conn) = state.endpoints[endpoint].pool.checkout(Instant::now()) {
                    return Ok(conn);
                }
            }
            // Circuit breaker: past its limits the answer is an immediate 503.
            // `open_connections()` counts this request (in flight, no connection yet) as
            // one: the new connection is the one it stands for, so only more than the
            // limit is refused.
            if state.connecting >= limits.max_pending
                || state.open_connections() > limits.max_connections
            {
                return Err(TryFailure::Client(Failure::Answer(ProxyError::Overloaded)));
            }
            state.connecting += 1;
        }
        let addr = config.upstreams[upstream].endpoints[endpoint].addr;
        let connected = monoio::time::timeout(connect_timeout, TcpStream::connect_addr(addr)).await;
        if let Some(state) = self.worker.upstreams.borrow_mut().get(config, upstream) {
            state.connecting = state.connecting.saturating_sub(1);
        }
        match connected {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                Ok(UpstreamConn {
                    stream,
                    buf: BytesMut::with_capacity(UPSTREAM_READ_BYTES),
                    reused: false,
                })
            }
            Ok(Err(_)) => Err(TryFailure::Upstream(ProxyError::UpstreamConnect)),
            Err(_) => Err(TryFailure::Upstream(ProxyError::UpstreamConnectTimeout)),
        }
    }

    /// Reads a small request body whole before any upstream connection is taken, so that a
    /// slow client holds no upstream connection and the request stays replayable.
    async fn read_small_body(
        &mut self,
        config: &Config,
        head: &RequestHead,
        len: usize,
    ) -> Result<(), Failure> {
        self.send_continue(head).await?;
        while self.buf.len() < len {
            let missing = len - self.buf.len();
            match read_more(
                &mut self.stream,
                &mut self.buf,
                missing,
                config.server.timeouts.body_read,
            )
            .await
            {
                Ok(0) | Err(ReadFail::Io) => return Err(Failure::Abort),
                Ok(_) => {}
                Err(ReadFail::Timeout) => return Err(Failure::Answer(ProxyError::BodyTimeout)),
            }
        }
        Ok(())
    }

    /// Sends `100 Continue` when the client waits for it before sending its body
    /// (RFC 9110 §10.1.1) and has not started anyway.
    async fn send_continue(&mut self, head: &RequestHead) -> Result<(), Failure> {
        if head.expect_continue && self.buf.is_empty() {
            let mut out = std::mem::take(&mut self.out);
            out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            self.out = write_out(&mut self.stream, out, self.send_timeout)
                .await
                .map_err(|_| Failure::Abort)?;
        }
        Ok(())
    }

    /// Streams the part of the request body that did not come with the head.
    async fn send_request_body(
        &mut self,
        config: &Config,
        head: &RequestHead,
        upstream: &mut UpstreamConn,
    ) -> Result<(), Failure> {
        self.send_continue(head).await?;
        let pump = Pump {
            from: head.framing,
            encode: if head.framing == BodyFraming::Chunked {
                Encode::Chunked
            } else {
                Encode::Raw
            },
            max_bytes: config.server.limits.max_body_bytes,
            read_timeout: config.server.timeouts.body_read,
            write_timeout: config.server.timeouts.upstream_response,
        };
        let out = std::mem::take(&mut self.out);
        match pump
            .run(
                &mut self.stream,
                &mut self.buf,
                &mut upstream.stream,
                out,
                |_| {},
            )
            .await
        {
            Ok((out, payload)) => {
                self.out = out;
                self.rec.bytes_in += payload;
                Ok(())
            }
            Err(PumpError::Read(ReadFail::Timeout)) => {
                Err(Failure::Answer(ProxyError::BodyTimeout))
            }
            Err(PumpError::Read(ReadFail::Io) | PumpError::ReadClosed) => Err(Failure::Abort),
            Err(PumpError::BadChunk) => Err(Failure::Answer(ProxyError::BadChunk)),
            Err(PumpError::TooLarge) => Err(Failure::Answer(ProxyError::BodyTooLarge)),
            Err(PumpError::Write) => Err(Failure::Answer(ProxyError::UpstreamClosed)),
        }
    }

    /// Sends the upstream's response to the client: informational heads as they come, then
    /// the final head and its body, re-framed for the client.
    async fn relay_response(
        &mut self,
        config: &Config,
        request: &RequestHead,
        upstream: &mut UpstreamConn,
        mut response: (Bytes, ResponseHead),
    ) -> Result<Reuse, Failure> {
        let timeout = config.server.timeouts.upstream_response;
        while response.1.status < 200 {
            if response.1.status == 101 {
                // Protocol upgrades are not supported yet; we never asked for one.
                return Err(Failure::Answer(ProxyError::UpstreamBadResponse));
            }
            if request.version == Version::Http11 && response.1.status != 100 {
                let mut out = std::mem::take(&mut self.out);
                let request_id = self.rec.request_id.clone();
                let framing = ClientFraming {
                    body: ClientBody::None {
                        content_length: None,
                    },
                    keep_alive: true,
                    client_version: Version::Http11,
                    request_id: (
                        config.observability.request_id_header.as_bytes(),
                        &request_id,
                    ),
                    extra_headers: b"",
                    cors: None,
                };
                encode_response_head(&mut out, &response.0, &response.1, &framing);
                self.out = write_out(&mut self.stream, out, self.send_timeout)
                    .await
                    .map_err(|_| Failure::Abort)?;
            }
            response = read_response_head(upstream, request.method == Method::Head, timeout)
                .await
                .map_err(Failure::Answer)?;
        }
        let (raw, head) = response;
        let is_http11 = request.version == Version::Http11;
        let mut client_keep_alive = request.keep_alive && !self.worker.drain.is_started();
        let (encode, body) = match head.framing {
            _ if request.method == Method::Head || head.status == 304 => (
                Encode::Raw,
                ClientBody::None {
                    content_length: content_length_of(&raw, &head),
                },
            ),
            _ if head.status == 204 => (
                Encode::Raw,
                ClientBody::None {
                    content_length: None,
                },
            ),
            BodyFraming::Length(n) => (Encode::Raw, ClientBody::Length(n)),
            BodyFraming::Chunked | BodyFraming::UntilClose if is_http11 => {
                (Encode::Chunked, ClientBody::Chunked)
            }
            BodyFraming::Chunked | BodyFraming::UntilClose => {
                // An HTTP/1.0 client can only find the end of this body at the close.
                client_keep_alive = false;
                (Encode::Raw, ClientBody::UntilClose)
            }
        };
        let request_id = self.rec.request_id.clone();
        let mut client_framing = ClientFraming {
            body,
            keep_alive: client_keep_alive,
            client_version: request.version,
            request_id: (
                config.observability.request_id_header.as_bytes(),
                &request_id,
            ),
            extra_headers: b"",
            cors: None,
        };
        let filters = pipeline::filters_of(config, &self.ctx);
        let answer = AnswerHead::Forwarded(&mut client_framing);
        pipeline::response_filters(filters, &self.ctx, answer);
        let mut out = std::mem::take(&mut self.out);
        encode_response_head(&mut out, &raw, &head, &client_framing);
        self.rec.status = head.status;
        self.rec.bytes_out += out.len() as u64;
        let pump = Pump {
            from: head.framing,
            encode,
            max_bytes: u64::MAX,
            read_timeout: timeout,
            write_timeout: self.send_timeout,
        };
        let ctx = &mut self.ctx;
        match pump
            .run(
                &mut upstream.stream,
                &mut upstream.buf,
                &mut self.stream,
                out,
                |chunk| pipeline::body_filters(filters, ctx, chunk),
            )
            .await
        {
            Ok((out, payload)) => {
                self.out = out;
                self.rec.bytes_out += payload;
            }
            Err(_) => {
                self.rec.outcome = Outcome::Aborted;
                return Err(Failure::Abort);
            }
        }
        Ok(Reuse {
            client: client_keep_alive,
            upstream_reusable: head.keep_alive && upstream.buf.is_empty(),
        })
    }
}

/// What may continue after a response: the client connection, the upstream connection.
struct Reuse {
    client: bool,
    upstream_reusable: bool,
}

/// Reads and parses one response head from `upstream`.
pub(super) async fn read_response_head(
    upstream: &mut UpstreamConn,
    request_was_head: bool,
    timeout: std::time::Duration,
) -> Result<(Bytes, ResponseHead), ProxyError> {
    let deadline = Instant::now() + timeout;
    let mut scanned = 0;
    loop {
        if let Some(end) = find_head_end(&upstream.buf, scanned) {
            let raw = upstream.buf.split_to(end).freeze();
            let head = parse_response_head(&raw, request_was_head)?;
            return Ok((raw, head));
        }
        scanned = upstream.buf.len();
        if scanned > MAX_RESPONSE_HEAD_BYTES {
            return Err(ProxyError::UpstreamBadResponse);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match read_more(
            &mut upstream.stream,
            &mut upstream.buf,
            UPSTREAM_READ_BYTES / 2,
            left,
        )
        .await
        {
            Ok(0) | Err(ReadFail::Io) if scanned == 0 => return Err(ProxyError::UpstreamClosed),
            Ok(0) | Err(ReadFail::Io) => return Err(ProxyError::UpstreamBadResponse),
            Ok(_) => {}
            Err(ReadFail::Timeout) => return Err(ProxyError::UpstreamTimeout),
        }
    }
}

/// The Content-Length an upstream declared on a bodiless response (HEAD, 304), if any.
fn content_length_of(raw: &[u8], head: &ResponseHead) -> Option<u64> {
    head.headers
        .iter()
        .find(|h| h.name(raw).eq_ignore_ascii_case(b"content-length"))
        .and_then(|h| crate::http1::headers::parse_content_length(h.value(raw)))
}

/// Removes `prefix` from the front of `target` at a segment boundary (`/users` strips
/// `/users` and `/users/1`, not `/usersX`). The result may be empty or start with `?`; the
/// encoder then sends `/` in front.
fn strip_prefix<'a>(target: &'a [u8], prefix: Option<&str>) -> &'a [u8] {
    let Some(prefix) = prefix.map(str::as_bytes) else {
        return target;
    };
    let prefix = prefix.strip_suffix(b"/").unwrap_or(prefix);
    match target.strip_prefix(prefix) {
        Some(rest) if rest.is_empty() || rest[0] == b'/' || rest[0] == b'?' => rest,
        _ => target,
    }
}

#[cfg(test)]
mod tests {
    use super::strip_prefix;

    #[test]
    fn prefix_is_stripped_at_segment_boundaries() {
        let cases: &[(&str, Option<&str>, &str)] = &[
            ("/users/1", Some("/users"), "/1"),
            ("/users/1", Some("/users/"), "/1"),
            ("/users", Some("/users"), ""),
            ("/users?x=1", Some("/users"), "?x=1"),
            ("/usersX", Some("/users"), "/usersX"),
            ("/other", Some("/users"), "/other"),
            ("/users/1", None, "/users/1"),
        ];
        for (target, prefix, want) in cases {
            assert_eq!(
                strip_prefix(target.as_bytes(), *prefix),
                want.as_bytes(),
                "{target} {prefix:?}"
            );
        }
    }
}
