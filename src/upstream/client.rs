//! The upstream client: every request the gateway sends to an upstream goes through
//! [`Client::send`], whoever sends it (a forwarded request, a token introspection).
//!
//! One send is: the breaker's `max_requests` check, then per try an endpoint pick (usable
//! and not tried yet), a pooled connection or a new one (the breaker's `max_pending` and
//! `max_connections`), the request head and the body in hand written, or the body streamed
//! by the caller, and the response head read. The caller gets the head and the connection,
//! streams or reads the body, and calls [`Response::finish`] to give the connection back to
//! the pool.
//!
//! Every try feeds the endpoint's passive health (`outlier.rs`); a failed one is made again
//! on another endpoint when the upstream's retry policy (`retry.rs`), the request, the time
//! left, the endpoints left and the retry budget all allow it. Requests in flight and
//! connects under way are counted by guards (`in_flight.rs`), released however the
//! exchange ends.
//!
//! A pooled connection can turn out dead only once the request meets it: the write fails,
//! or it closes without a byte of answer. The request then goes again on a fresh
//! connection to the same endpoint when that is safe: its whole body is in hand, and (when
//! the write went through) sending it twice is harmless.

use std::cell::RefCell;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::config::UpstreamId;
use super::h2::{H2Connection, H2Stream};
use super::in_flight::{Connecting, InFlight};
use super::retry::{self, Attempt, Decision, TryEnd, MAX_TRIES};
use super::stream::OpenError;
use super::{Snapshot, UpstreamConn, UpstreamStream, WorkerUpstreams};
use crate::deadline;
use crate::error::{ProxyError, Retry};
use crate::http1::{find_head_end, parse_response_head, ResponseHead};
use crate::io::{read_more, take_buffer, write_within, ReadFail, BUFFER_BYTES};
use crate::proxy_protocol;

/// Upstream response heads larger than this are refused (502).
const MAX_RESPONSE_HEAD_BYTES: usize = 64 * 1024;
/// Bodies in hand up to this size are sent in the same write as the head.
const INLINE_BODY_BYTES: usize = 64 * 1024;

/// What follows the request head.
#[derive(Debug, Clone)]
pub enum Body {
    /// The whole body, possibly empty: sent after the head, and again on a retry.
    InHand(Bytes),
    /// A body the caller streams after the head ([`Outgoing::stream_body`]): the request is
    /// sent once, never retried nor replayed.
    Streamed,
}

/// One request to send, besides its bytes.
#[derive(Debug, Clone)]
pub struct Request {
    /// The key of `balance = "hash"`, when the request has one.
    pub key: Option<u64>,
    pub body: Body,
    /// The caller allows a retry on another endpoint (an idempotent method, or a route
    /// that allows retrying others). A streamed body is never retried anyway.
    pub retryable: bool,
    /// Receiving the request twice is harmless: after a pooled connection closed without
    /// answering, it is sent again on a fresh one even though it may have arrived.
    pub idempotent: bool,
    /// A `HEAD` request: its response has no body, whatever its head says.
    pub is_head: bool,
    /// The whole exchange ends by then (besides the retry policy's own `timeout`).
    pub deadline: Option<Instant>,
    /// The client's address and the address it reached Strait on: what the PROXY header
    /// of a new connection announces when the upstream has `proxy_protocol` (`None`: a
    /// LOCAL header, for Strait's own requests).
    pub addresses: Option<(SocketAddr, SocketAddr)>,
}

/// The bytes of a request, written by its sender.
#[allow(async_fn_in_trait)] // used on one worker thread: no `Send` bound is wanted
pub trait Outgoing {
    /// Why streaming the body failed: the sender's own error, handed back as is.
    type BodyError;

    /// Appends the request head for `endpoint` (its `Host` may name it) to `out`. The
    /// client appends a body in hand; a sender may also write a small body of its own here
    /// and send [`Body::InHand`] empty.
    fn write_head(&self, endpoint: SocketAddr, out: &mut BytesMut);

    /// Room to allocate for what `write_head` writes, so that the head and a small body in
    /// hand go out of one allocation.
    fn head_capacity(&self) -> usize;

    /// Streams the body onto `conn` after the head; called only for [`Body::Streamed`].
    async fn stream_body(&mut self, conn: &mut UpstreamConn) -> Result<(), Self::BodyError>;
}

/// Why no response came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure<E> {
    /// The upstream failed, or could not be asked (breaker, no usable endpoint).
    Upstream(UpstreamFailure),
    /// Streaming the request body failed: the sender's error.
    Body(E),
}

/// The upstream side's failure: its answer is `error`'s status (502, 503 or 504).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamFailure {
    pub error: ProxyError,
    /// The retry policy retries this failure, but no try was left: attempts, time,
    /// untried endpoints or the retry budget ran out.
    pub retries_exhausted: bool,
}

impl UpstreamFailure {
    fn at_once<E>(error: ProxyError) -> Failure<E> {
        Failure::Upstream(UpstreamFailure {
            error,
            retries_exhausted: false,
        })
    }
}

impl fmt::Display for UpstreamFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.error)?;
        if self.retries_exhausted {
            f.write_str(" (no retry left)")?;
        }
        Ok(())
    }
}

/// A response head and the connection it came on, counted in flight until dropped.
pub struct Response<'w> {
    pub raw: Bytes,
    pub head: ResponseHead,
    pub conn: UpstreamConn,
    in_flight: InFlight<'w>,
}

impl Response<'_> {
    /// Ends the exchange once the body of `head` was read whole: the connection goes back
    /// to the endpoint's pool when the upstream keeps it open and sent nothing more. A
    /// response dropped without this closes its connection.
    pub fn finish(self) {
        let Response {
            head,
            conn,
            in_flight,
            ..
        } = self;
        if head.keep_alive && conn.buf.is_empty() {
            // After a reload during the exchange the state is another snapshot's: the
            // connection is then closed rather than pooled under a wrong index.
            in_flight.with_state(|state, endpoint| {
                state.endpoints[endpoint].pool.checkin(conn, Instant::now());
            });
        }
    }
}

/// Why one try failed.
enum TryError<E> {
    /// The endpoint failed: counts against it, may be retried.
    Upstream(ProxyError),
    /// Refused here before reaching it (breaker, reload): no retry.
    Refused(ProxyError),
    Body(E),
}

/// Sends one request to one upstream of one snapshot, over the worker's state; made per
/// request (it remembers the endpoints tried).
pub struct Client<'w, S: Snapshot> {
    upstreams: &'w RefCell<WorkerUpstreams>,
    config: &'w S,
    id: UpstreamId,
    tried: [usize; MAX_TRIES],
    tries: usize,
}

impl<'w, S: Snapshot> Client<'w, S> {
    pub fn new(
        upstreams: &'w RefCell<WorkerUpstreams>,
        config: &'w Arc<S>,
        id: UpstreamId,
    ) -> Self {
        Client {
            upstreams,
            config: &**config,
            id,
            tried: [usize::MAX; MAX_TRIES],
            tries: 0,
        }
    }

    /// The endpoint of the last try, if any.
    pub fn endpoint(&self) -> Option<SocketAddr> {
        let last = *self.tried[..self.tries].last()?;
        Some(self.config.upstreams()[self.id].endpoints[last].addr)
    }

    /// Tries after the first.
    pub fn retries(&self) -> u32 {
        self.tries.saturating_sub(1) as u32
    }

    /// Sends `request` (its bytes from `outgoing`) until a response head comes back or no
    /// retry is left. A retried 5xx is dropped with its connection; the last one is the
    /// response.
    pub async fn send<O: Outgoing>(
        &mut self,
        request: &Request,
        outgoing: &mut O,
    ) -> Result<Response<'w>, Failure<O::BodyError>> {
        let upstream = &self.config.upstreams()[self.id];
        let policy = &upstream.retry;
        let started = Instant::now();
        let deadline = earliest(request.deadline, policy.timeout.map(|t| started + t));
        {
            let mut upstreams = self.upstreams.borrow_mut();
            // Synced to `config` when the request began; a reload since leaves nothing.
            let state = upstreams
                .get(self.config, self.id)
                .ok_or(UpstreamFailure::at_once(ProxyError::NoEndpoint))?;
            if state.in_flight >= upstream.limits.max_requests {
                return Err(UpstreamFailure::at_once(ProxyError::Overloaded));
            }
            state.budget.record_request(started);
        }
        let in_hand = matches!(request.body, Body::InHand(_));
        let per_try = policy
            .per_try_timeout
            .unwrap_or(self.config.response_timeout());
        let mut last = UpstreamFailure {
            error: ProxyError::NoEndpoint,
            retries_exhausted: false,
        };
        loop {
            let now = Instant::now();
            let Some(endpoint) = self.pick(request.key, now) else {
                // No endpoint left to try: the last try's failure is the answer.
                return Err(Failure::Upstream(last));
            };
            // `retry::decide` retries only below `MAX_TRIES`.
            self.tried[self.tries] = endpoint;
            self.tries += 1;
            let try_deadline = deadline.map_or(now + per_try, |d| d.min(now + per_try));
            let in_flight = InFlight::start(self.upstreams, self.config, self.id, endpoint);
            let tried = self
                .try_endpoint(request, outgoing, endpoint, try_deadline, deadline)
                .await;
            let error = match tried {
                Ok((conn, raw, head)) => {
                    let status = head.status;
                    self.record_outcome(endpoint, status < 500);
                    let response = Response {
                        raw,
                        head,
                        conn,
                        in_flight,
                    };
                    if status < 500
                        || self.decide(
                            TryEnd::Status(status),
                            request.retryable && in_hand,
                            deadline,
                        ) != Decision::Retry
                    {
                        return Ok(response);
                    }
                    // This answer is dropped with its connection; the next try replaces it.
                    continue;
                }
                Err(TryError::Upstream(error)) => {
                    drop(in_flight);
                    self.record_outcome(endpoint, false);
                    error
                }
                Err(TryError::Refused(error)) => return Err(UpstreamFailure::at_once(error)),
                Err(TryError::Body(error)) => return Err(Failure::Body(error)),
            };
            let end = TryEnd::Failed(error);
            let repeatable = retry::is_repeatable(end, in_hand, request.retryable);
            let decision = self.decide(end, repeatable, deadline);
            last = UpstreamFailure {
                error,
                retries_exhausted: decision == Decision::Exhausted,
            };
            if decision != Decision::Retry {
                return Err(Failure::Upstream(last));
            }
            let addr = upstream.endpoints[endpoint].addr;
            tracing::debug!(upstream = %upstream.name, endpoint = %addr, %error, "retrying on another endpoint");
        }
    }

    /// Picks an endpoint that is healthy, not ejected and not tried yet.
    fn pick(&self, key: Option<u64>, now: Instant) -> Option<usize> {
        let mut upstreams = self.upstreams.borrow_mut();
        let state = upstreams.get(self.config, self.id)?;
        state.refresh_usable(&self.config.upstreams()[self.id], now);
        state.pick(key, &self.tried[..self.tries])
    }

    /// Whether to retry after a try that ended with `end`; a retry is taken from the
    /// upstream's budget (shared by everything sent to it) only when all else allows it.
    fn decide(&self, end: TryEnd, repeatable: bool, deadline: Option<Instant>) -> Decision {
        let now = Instant::now();
        let config = &self.config.upstreams()[self.id];
        let mut upstreams = self.upstreams.borrow_mut();
        let Some(state) = upstreams.get(self.config, self.id) else {
            return Decision::Stop;
        };
        state.refresh_usable(config, now);
        let attempt = Attempt {
            repeatable,
            tries: self.tries,
            before_deadline: deadline.is_none_or(|d| now < d),
            has_untried: state.has_untried(&self.tried[..self.tries]),
        };
        match retry::decide(&config.retry, end, attempt) {
            Decision::Retry if !state.budget.try_retry(now) => Decision::Exhausted,
            decision => decision,
        }
    }

    fn record_outcome(&self, endpoint: usize, success: bool) {
        let config = &self.config.upstreams()[self.id];
        let mut upstreams = self.upstreams.borrow_mut();
        if let Some(state) = upstreams.get(self.config, self.id) {
            if state.record_outcome(config, endpoint, success, Instant::now()) {
                tracing::warn!(upstream = %config.name, endpoint = %config.endpoints[endpoint].addr, "endpoint ejected after consecutive failures");
            }
        }
    }

    /// One try on one endpoint: a connection (pooled first; again on a fresh one if the
    /// pooled one was dead), the request, and the response head by `try_deadline`.
    async fn try_endpoint<O: Outgoing>(
        &self,
        request: &Request,
        outgoing: &mut O,
        endpoint: usize,
        try_deadline: Instant,
        deadline: Option<Instant>,
    ) -> Result<(UpstreamConn, Bytes, ResponseHead), TryError<O::BodyError>> {
        let addr = self.config.upstreams()[self.id].endpoints[endpoint].addr;
        let in_hand = match &request.body {
            Body::InHand(body) => Some(body),
            Body::Streamed => None,
        };
        let inline = in_hand.map_or(0, |body| body.len()).min(INLINE_BODY_BYTES);
        let mut head = BytesMut::with_capacity(outgoing.head_capacity() + inline);
        outgoing.write_head(addr, &mut head);
        // A small body goes in the same write as the head.
        let separate_body = match in_hand {
            Some(body) if body.len() <= INLINE_BODY_BYTES => {
                head.extend_from_slice(body);
                None
            }
            other => other.cloned(),
        };
        let head = head.freeze();
        let mut fresh_only = false;
        loop {
            let connect_timeout = time_left(self.config.connect_timeout(), deadline);
            let mut conn = self
                .connect(endpoint, request.addresses, fresh_only, connect_timeout)
                .await?;
            let write_timeout = time_left(self.config.response_timeout(), deadline);
            let mut written = write_within(&mut conn.stream, head.clone(), write_timeout).await;
            if let (Ok((Ok(_), _)), Some(body)) = (&written, &separate_body) {
                written = write_within(&mut conn.stream, body.clone(), write_timeout).await;
            }
            match written {
                Ok((Ok(_), _)) => {}
                Ok((Err(_), _)) if conn.reused && in_hand.is_some() => {
                    // The pooled connection was dead before the request reached the upstream.
                    fresh_only = true;
                    continue;
                }
                Ok((Err(_), _)) => return Err(TryError::Upstream(ProxyError::UpstreamClosed)),
                Err(_) => return Err(TryError::Upstream(ProxyError::UpstreamTimeout)),
            }
            if in_hand.is_none() {
                outgoing
                    .stream_body(&mut conn)
                    .await
                    .map_err(TryError::Body)?;
            }
            let left = try_deadline.saturating_duration_since(Instant::now());
            match read_response_head(&mut conn, request.is_head, left).await {
                Ok((raw, head)) => return Ok((conn, raw, head)),
                // A pooled connection closed unanswered: most likely the upstream's idle
                // close racing this request; one fresh connection is worth a try.
                Err(error)
                    if conn.reused
                        && in_hand.is_some()
                        && error.retry() == Retry::ClosedUnanswered
                        && error.is_retry_safe(request.idempotent) =>
                {
                    fresh_only = true;
                }
                Err(error) => return Err(TryError::Upstream(error)),
            }
        }
    }

    /// A pooled connection to `endpoint` (unless `fresh_only`), else a new one within
    /// `timeout`, subject to the upstream's circuit breaker. With `proxy_protocol`, a new
    /// connection starts with a header announcing `addresses`, and a pooled one must have
    /// announced the same.
    async fn connect<E>(
        &self,
        endpoint: usize,
        addresses: Option<(SocketAddr, SocketAddr)>,
        fresh_only: bool,
        timeout: Duration,
    ) -> Result<UpstreamConn, TryError<E>> {
        let config = &self.config.upstreams()[self.id];
        if config.http2 {
            return self.connect_h2(endpoint, fresh_only, timeout).await;
        }
        let announced = config.proxy_protocol.and(addresses);
        {
            let mut upstreams = self.upstreams.borrow_mut();
            let Some(state) = upstreams.get(self.config, self.id) else {
                return Err(TryError::Refused(ProxyError::NoEndpoint));
            };
            if !fresh_only {
                if let Some(conn) = state.endpoints[endpoint]
                    .pool
                    .checkout(Instant::now(), announced)
                {
                    return Ok(conn);
                }
            }
            // Circuit breaker: past its limits the answer is an immediate 503.
            // `open_connections()` counts this request (in flight, no connection yet) as
            // one: the new connection is the one it stands for, so only more than the
            // limit is refused.
            let limits = &config.limits;
            if state.connecting >= limits.max_pending
                || state.open_connections() > limits.max_connections
            {
                return Err(TryError::Refused(ProxyError::Overloaded));
            }
        }
        let connecting = Connecting::start(self.upstreams, self.config, self.id);
        let target = &config.endpoints[endpoint];
        // A TLS handshake counts against the connect timeout.
        let header = config.proxy_protocol.map(|version| match announced {
            Some((source, destination)) => proxy_protocol::encode(version, source, destination),
            None => proxy_protocol::encode_local(version),
        });
        // Boxed: a new connection (a TLS handshake in it) is rare next to the requests, and
        // inline it would enlarge every request's future by a third.
        let opened = Box::pin(UpstreamStream::open(target, config.tls.as_ref(), header));
        let connected = deadline::timeout(timeout, opened).await;
        drop(connecting);
        match connected {
            Ok(Ok(stream)) => Ok(UpstreamConn {
                stream,
                buf: take_buffer(),
                reused: false,
                announced,
            }),
            Ok(Err(OpenError::Connect(_))) => Err(TryError::Upstream(ProxyError::UpstreamConnect)),
            Ok(Err(OpenError::Tls(reason))) => {
                // The client sees a 502: the operator needs rustls' reason.
                let server_name = config
                    .tls
                    .as_ref()
                    .map(|tls| tls.server_name(target).to_str().into_owned())
                    .unwrap_or_default();
                tracing::warn!(
                    upstream = %config.name,
                    endpoint = %target.addr,
                    %server_name,
                    %reason,
                    "upstream TLS handshake failed"
                );
                Err(TryError::Upstream(ProxyError::UpstreamConnect))
            }
            Err(_) => Err(TryError::Upstream(ProxyError::UpstreamConnectTimeout)),
        }
    }
}

impl<S: Snapshot> Client<'_, S> {
    /// A stream on the endpoint's HTTP/2 connection: the one open (unless `fresh_only`:
    /// the last stream found it dead), else a new one, ready within `timeout`.
    async fn connect_h2<E>(
        &self,
        endpoint: usize,
        fresh_only: bool,
        timeout: Duration,
    ) -> Result<UpstreamConn, TryError<E>> {
        let config = &self.config.upstreams()[self.id];
        let (conn, reused) = {
            let mut upstreams = self.upstreams.borrow_mut();
            let Some(state) = upstreams.get(self.config, self.id) else {
                return Err(TryError::Refused(ProxyError::NoEndpoint));
            };
            let pool = &mut state.endpoints[endpoint].pool;
            let now = Instant::now();
            match pool
                .h2
                .as_mut()
                .filter(|(c, _)| !fresh_only && !c.is_gone())
            {
                Some((conn, used)) => {
                    *used = now;
                    (conn.clone(), true)
                }
                None => {
                    let target = config.endpoints[endpoint].clone();
                    let tls = config.tls.clone();
                    let name = config.name.clone();
                    let open = async move {
                        let opened = UpstreamStream::open(&target, tls.as_ref(), None);
                        match deadline::timeout(timeout, opened).await {
                            Ok(Ok(stream)) => Some(stream),
                            Ok(Err(e)) => {
                                tracing::warn!(upstream = %name, endpoint = %target.addr, error = %e, "upstream HTTP/2 connection failed");
                                None
                            }
                            Err(_) => None,
                        }
                    };
                    let conn = H2Connection::start(open);
                    pool.h2 = Some((conn.clone(), now));
                    (conn, false)
                }
            }
        };
        let scheme = if config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        match deadline::timeout(timeout, conn.sender()).await {
            Ok(Some(send)) => Ok(UpstreamConn {
                stream: UpstreamStream::H2(Box::new(H2Stream::new(send, scheme))),
                buf: take_buffer(),
                reused,
                announced: None,
            }),
            Ok(None) => Err(TryError::Upstream(ProxyError::UpstreamConnect)),
            Err(_) => Err(TryError::Upstream(ProxyError::UpstreamConnectTimeout)),
        }
    }
}

/// Reads and parses one response head from `conn` within `timeout`.
pub async fn read_response_head(
    conn: &mut UpstreamConn,
    request_was_head: bool,
    timeout: Duration,
) -> Result<(Bytes, ResponseHead), ProxyError> {
    let deadline = Instant::now() + timeout;
    let mut scanned = 0;
    loop {
        if let Some(end) = find_head_end(&conn.buf, scanned) {
            let raw = conn.buf.split_to(end).freeze();
            let head = parse_response_head(&raw, request_was_head)?;
            return Ok((raw, head));
        }
        scanned = conn.buf.len();
        if scanned > MAX_RESPONSE_HEAD_BYTES {
            return Err(ProxyError::UpstreamBadResponse);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match read_more(&mut conn.stream, &mut conn.buf, BUFFER_BYTES / 2, left).await {
            Ok(0) | Err(ReadFail::Io) if scanned == 0 => return Err(ProxyError::UpstreamClosed),
            Ok(0) | Err(ReadFail::Io) => return Err(ProxyError::UpstreamBadResponse),
            Ok(_) => {}
            Err(ReadFail::Timeout) => return Err(ProxyError::UpstreamTimeout),
        }
    }
}

/// The earlier of two optional instants.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// `timeout`, cut short by `deadline`.
fn time_left(timeout: Duration, deadline: Option<Instant>) -> Duration {
    match deadline {
        Some(d) => timeout.min(d.saturating_duration_since(Instant::now())),
        None => timeout,
    }
}
