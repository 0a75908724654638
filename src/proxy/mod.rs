//! The request path: one client connection, read top to bottom.
//!
//! read head → parse and validate → route → answer locally (mock, error) or forward
//! (`forward.rs`) → next request on the same connection, or close.
//!
//! Invariants: a request that is rejected never has a byte forwarded; after any answer
//! whose request body was not fully consumed, the connection closes (the next bytes could
//! not be framed); a timed-out read ends the connection.

mod authenticate;
mod body;
mod drain;
mod forward;
mod introspect;
mod io;

pub use drain::DrainSignal;

use std::cell::{Cell, RefCell};
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::{ArcSwap, Cache};
use bytes::{Buf, Bytes, BytesMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};

use crate::config::{Action, Config, MockResponse, RateLimitKey};
use crate::cors::{CorsAnswer, CorsPolicy};
use crate::error::ProxyError;
use crate::http1::encode::{write_connection, write_header};
use crate::http1::{find_head_end, parse_request_head, BodyFraming, RequestHead, Version};
use crate::introspect::cache::TokenCache;
use crate::introspect::single_flight::SingleFlight;
use crate::observe::{Observers, RequestRecord, WorkerObservers};
use crate::ratelimit::WorkerLimits;
use crate::redis_sync::ClusterHub;
use crate::router::RouteMatch;
use crate::upstream::hash_key::header_value;
use crate::upstream::WorkerUpstreams;
use io::{read_more, write_out, ReadFail};

/// Initial read buffer per client connection; grows for large heads and bodies.
const CLIENT_READ_BYTES: usize = 8 * 1024;

/// What one worker thread shares between its connections.
pub struct Worker {
    latest: RefCell<Cache<Arc<ArcSwap<Config>>, Arc<Config>>>,
    /// The snapshot this worker serves, wrapped so that handing it to a request is a
    /// non-atomic increment rather than a cross-core one.
    #[allow(clippy::redundant_allocation)] // the Rc is the point: see above
    current: RefCell<Rc<Arc<Config>>>,
    pub upstreams: RefCell<WorkerUpstreams>,
    pub drain: DrainSignal,
    /// Client connections being served, so that a drain knows when it is done.
    connections: Cell<usize>,
    pub observers: RefCell<WorkerObservers>,
    /// Per-route rate-limit buckets of this worker.
    limits: RefCell<WorkerLimits>,
    /// Introspection results of this worker, by token digest.
    tokens: RefCell<TokenCache>,
    /// Introspections in flight on this worker, which requests with the same token join.
    flights: SingleFlight,
}

impl Worker {
    pub fn new(
        config: Arc<ArcSwap<Config>>,
        observers: &Observers,
        workers: usize,
        cluster: Arc<ClusterHub>,
    ) -> Self {
        let snapshot = config.load_full();
        let limits = WorkerLimits::new(&snapshot, workers, Some(cluster), Instant::now());
        Worker {
            limits: RefCell::new(limits),
            upstreams: RefCell::new(WorkerUpstreams::new(&snapshot)),
            current: RefCell::new(Rc::new(snapshot)),
            latest: RefCell::new(Cache::new(config)),
            drain: DrainSignal::default(),
            connections: Cell::new(0),
            observers: RefCell::new(WorkerObservers::new(observers)),
            tokens: RefCell::new(TokenCache::default()),
            flights: SingleFlight::default(),
        }
    }

    /// How long requests in flight may take once a drain starts (from the current config).
    pub fn drain_timeout(&self) -> std::time::Duration {
        self.snapshot().server.timeouts.drain
    }

    /// Hands a finished request to metrics, the access log and tracing.
    fn finish_request(&self, config: &Config, rec: &RequestRecord) {
        self.observers.borrow_mut().finish(config, rec);
    }

    /// Counts a connection before its task is spawned, so that a drain starting in between
    /// still waits for it.
    pub fn connection_opened(&self) {
        self.connections.set(self.connections.get() + 1);
        self.observers.borrow_mut().metrics.connection_accepted();
    }

    pub fn open_connections(&self) -> usize {
        self.connections.get()
    }

    /// The config a new request runs on. A reload is noticed here, between requests.
    #[allow(clippy::redundant_allocation)] // see `current`
    fn snapshot(&self) -> Rc<Arc<Config>> {
        let mut cache = self.latest.borrow_mut();
        let latest = cache.load();
        let mut current = self.current.borrow_mut();
        if !Arc::ptr_eq(latest, &current) {
            *current = Rc::new(latest.clone());
            self.upstreams.borrow_mut().sync(latest);
            self.limits.borrow_mut().sync(latest, Instant::now());
        }
        current.clone()
    }

    /// The periodic tick's rate-limit work: cluster counts to and from the sync thread.
    pub fn tick_limits(&self, now: Instant) {
        self.limits
            .borrow_mut()
            .tick(now, std::time::SystemTime::now());
    }

    /// Closes pooled connections that sat idle past their timeout.
    pub fn evict_idle(&self, now: Instant) {
        self.limits.borrow_mut().sweep(now);
        for upstream in self.upstreams.borrow_mut().all_mut() {
            for endpoint in &mut upstream.endpoints {
                endpoint.pool.evict_expired(now);
            }
        }
    }
}

/// One client connection and its buffers.
pub struct ClientConn<S> {
    stream: S,
    /// Bytes read from the client and not consumed yet (pipelined requests, body bytes).
    buf: BytesMut,
    /// Output staging, reused across responses.
    out: BytesMut,
    /// The current request's client address (see `client_addr.rs`): the TCP peer, or the
    /// one a trusted proxy forwarded for. Access lists use it.
    client_addr: IpAddr,
    /// `client_addr` as text: rate-limit keys, hash balancing, access log, tracing.
    client_ip: Bytes,
    /// The TCP peer's address, and as text (appended to the upstream X-Forwarded-For).
    peer_ip: IpAddr,
    peer_text: Bytes,
    worker: Rc<Worker>,
    /// `server.timeouts.client_send` of the request being served.
    send_timeout: std::time::Duration,
    /// What the current request did, for metrics, the access log and tracing.
    rec: RequestRecord,
    /// The snapshot the current request runs on.
    #[allow(clippy::redundant_allocation)] // see `Worker::current`
    config: Rc<Arc<Config>>,
    /// Extra response header lines (each ending in CRLF) for the current request's answer:
    /// the rate-limit headers. Cleared before each request.
    extra_headers: BytesMut,
    /// Who the current request authenticated as, on a route with `auth`.
    identity: Option<crate::auth::Identity>,
    /// The CORS headers of the current request's answer, on a route with `cors`.
    cors: CorsAnswer,
}

impl<S> Drop for ClientConn<S> {
    fn drop(&mut self) {
        self.worker
            .connections
            .set(self.worker.connections.get() - 1);
        self.worker
            .observers
            .borrow_mut()
            .metrics
            .connection_closed();
    }
}

/// How reading the next request head ended.
enum NextHead {
    /// A head ends at this offset of the buffer.
    Head(usize),
    /// The client closed, or stayed idle past the keep-alive timeout: close quietly.
    Closed,
    /// Answer with this error and close.
    Fail(ProxyError),
}

/// Serves requests on `stream` until the client or an error ends the connection. The
/// caller has counted it with [`Worker::connection_opened`].
pub async fn serve_connection<S: AsyncReadRent + AsyncWriteRent>(
    stream: S,
    peer: SocketAddr,
    worker: Rc<Worker>,
) {
    let peer_text = Bytes::from(peer.ip().to_string());
    let mut conn = ClientConn {
        stream,
        buf: BytesMut::with_capacity(CLIENT_READ_BYTES),
        out: BytesMut::with_capacity(CLIENT_READ_BYTES),
        client_addr: peer.ip(),
        client_ip: peer_text.clone(),
        peer_ip: peer.ip(),
        peer_text,
        send_timeout: worker.snapshot().server.timeouts.client_send,
        rec: RequestRecord::new(Bytes::new(), Instant::now()),
        config: worker.snapshot(),
        extra_headers: BytesMut::new(),
        identity: None,
        cors: CorsAnswer::default(),
        worker,
    };
    let mut first = true;
    loop {
        conn.extra_headers.clear();
        conn.identity = None;
        conn.cors.reset();
        let head_end = match conn.read_head(&conn.worker.snapshot(), first).await {
            NextHead::Head(end) => end,
            NextHead::Closed => return,
            NextHead::Fail(error) => {
                let _ = conn.answer_error(error, &[], Version::Http11, false).await;
                return;
            }
        };
        first = false;
        // The request runs on the snapshot current when its head is complete: a reload
        // while the connection sat idle applies to it.
        let config = conn.worker.snapshot();
        conn.send_timeout = config.server.timeouts.client_send;
        conn.config = config.clone();
        let raw = conn.buf.split_to(head_end).freeze();
        conn.rec = RequestRecord::new(conn.peer_text.clone(), Instant::now());
        conn.rec.bytes_in = raw.len() as u64;
        let keep_alive = match parse_request_head(&raw, &config.server.limits) {
            Ok(mut head) => {
                conn.identify_client(&config, &raw, &head);
                conn.rec.describe(&raw, &head);
                conn.worker
                    .observers
                    .borrow_mut()
                    .begin(&config, &raw, &head, &mut conn.rec);
                // Once draining, every answer says `Connection: close`.
                head.keep_alive &= !conn.worker.drain.is_started();
                conn.handle(&config, raw, head).await
            }
            Err(error) => {
                let _ = conn.answer_error(error, &[], version_of(&raw), false).await;
                false
            }
        };
        conn.worker.finish_request(&config, &conn.rec);
        if !keep_alive {
            return;
        }
    }
}

/// The version a rejected request asked for, so that the error is readable to it.
fn version_of(raw: &[u8]) -> Version {
    let line_end = memchr::memchr(b'\n', raw).unwrap_or(raw.len());
    if raw[..line_end].windows(8).any(|w| w == b"HTTP/1.0") {
        Version::Http10
    } else {
        Version::Http11
    }
}

impl<S: AsyncReadRent + AsyncWriteRent> ClientConn<S> {
    async fn read_head(&mut self, config: &Config, first: bool) -> NextHead {
        let limits = &config.server.limits;
        let timeouts = &config.server.timeouts;
        let mut scanned = 0;
        let mut deadline: Option<Instant> = None;
        loop {
            // RFC 9112 §2.2: empty lines before a request line are ignored.
            while let [b'\r', b'\n', ..] | [b'\n', ..] = &self.buf[..] {
                let skip = if self.buf[0] == b'\r' { 2 } else { 1 };
                self.buf.advance(skip);
                scanned = 0;
            }
            if let Some(end) = find_head_end(&self.buf, scanned) {
                return NextHead::Head(end);
            }
            scanned = self.buf.len();
            let first_line_open = memchr::memchr(b'\n', &self.buf).is_none();
            if first_line_open && self.buf.len() > limits.max_uri_bytes + MAX_REQUEST_LINE_EXTRA {
                return NextHead::Fail(ProxyError::UriTooLong);
            }
            if self.buf.len() > limits.max_header_bytes {
                return NextHead::Fail(ProxyError::HeadTooLarge);
            }
            // Waiting for a new request is bounded by the keep-alive timeout; once its first
            // byte is in, the whole head must arrive within `header_read`.
            let had_bytes = !self.buf.is_empty();
            if had_bytes && deadline.is_none() {
                deadline = Some(Instant::now() + timeouts.header_read);
            }
            let timeout = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None if first => timeouts.header_read,
                None => timeouts.keepalive_idle,
            };
            let read = read_more(
                &mut self.stream,
                &mut self.buf,
                CLIENT_READ_BYTES / 2,
                timeout,
            );
            // A drain closes a keep-alive connection idle between requests at once. A new
            // connection still gets its first request read (it may be queued already), and
            // a head that has begun is read to its end.
            let read = if had_bytes || first {
                read.await
            } else {
                monoio::select! {
                    read = read => read,
                    _ = self.worker.drain.started() => return NextHead::Closed,
                }
            };
            match read {
                Ok(0) | Err(ReadFail::Io) => return NextHead::Closed,
                Ok(_) => {}
                Err(ReadFail::Timeout) if had_bytes => {
                    return NextHead::Fail(ProxyError::HeadTimeout)
                }
                Err(ReadFail::Timeout) => return NextHead::Closed,
            }
        }
    }

    /// Sets the current request's client address: the TCP peer, unless a trusted proxy
    /// forwarded the request (see `client_addr.rs`). The text form is only rebuilt when the
    /// address changes, so a connection from a client (or one proxied client) formats once.
    fn identify_client(&mut self, config: &Config, raw: &[u8], head: &RequestHead) {
        let trusted = &config.server.trusted_proxies;
        let client = crate::client_addr::client_address(trusted, self.peer_ip, raw, &head.headers);
        if client != self.client_addr {
            self.client_addr = client;
            self.client_ip = if client == self.peer_ip {
                self.peer_text.clone()
            } else {
                Bytes::from(client.to_string())
            };
        }
        self.rec.client_ip = self.client_ip.clone();
    }

    /// Serves one parsed request; returns whether the connection may carry another.
    async fn handle(&mut self, config: &Arc<Config>, raw: Bytes, head: RequestHead) -> bool {
        if !config.server.access.permits(self.client_addr) {
            return self.answer_error_after(ProxyError::Forbidden, &head).await;
        }
        let path = head.path(&raw);
        let path = if path.is_empty() { &b"/"[..] } else { path };
        let Ok(path) = std::str::from_utf8(path) else {
            return self.answer_error_after(ProxyError::BadRequest, &head).await;
        };
        let host = head.authority(&raw);
        // A CORS preflight goes to the route of the method it asks about, whatever that
        // route's `methods` say about OPTIONS.
        let preflight_route = crate::cors::preflight_method(&raw, &head)
            .and_then(|method| config.routes.lookup_preflight(host, method, path));
        let matched = match preflight_route {
            Some(route) => RouteMatch::Found(route),
            None => config.routes.lookup(host, head.method(&raw), path),
        };
        match matched {
            RouteMatch::NotFound => self.answer_error_after(ProxyError::NoRoute, &head).await,
            RouteMatch::MethodNotAllowed { allow } => self.answer_not_allowed(allow, &head).await,
            RouteMatch::Found(route) => {
                let index = config.routes.index_of(route);
                self.rec.route = Some(index);
                if route
                    .access
                    .as_ref()
                    .is_some_and(|a| !a.permits(self.client_addr))
                {
                    return self.answer_error_after(ProxyError::Forbidden, &head).await;
                }
                if let Some(cors) = &route.cors {
                    if preflight_route.is_some() {
                        return self.answer_preflight(cors, &raw, &head).await;
                    }
                    self.cors.prepare(cors, &raw, &head);
                }
                if let Some(auth) = &route.auth {
                    match self.authenticate(config, auth, &raw, &head).await {
                        Ok(identity) => self.identity = Some(identity),
                        Err(rejection) => return self.answer_rejection(rejection, &head).await,
                    }
                }
                if !route.rate_limits.is_empty() {
                    if let Err(error) = self.check_rate_limits(index, &raw, &head) {
                        return self.answer_error_after(error, &head).await;
                    }
                }
                match &route.action {
                    Action::Mock(mock) => self.answer_mock(mock, &head).await,
                    Action::Proxy(action) => self.forward(config, action, raw, head).await,
                }
            }
        }
    }

    /// Takes the request from route `index`'s rate limits; fails when one denies it (429)
    /// or a cluster limit cannot be checked (503). The headers describing the answering
    /// limit go to `extra_headers`.
    fn check_rate_limits(
        &mut self,
        index: usize,
        raw: &[u8],
        head: &RequestHead,
    ) -> Result<(), ProxyError> {
        let mut limits = self.worker.limits.borrow_mut();
        let Some(mut limiter) = limits.route_mut(index) else {
            return Ok(());
        };
        let client_ip = &self.client_ip[..];
        // Without authentication on the route, a consumer limit counts by client IP.
        let consumer = self
            .identity
            .as_ref()
            .map_or(client_ip, |identity| &identity.consumer[..]);
        let keys = limiter.keys();
        // One key per limit, resolved before the limiter is borrowed mutably.
        let mut resolved: [&[u8]; 8] = [b""; 8];
        let mut spill: Vec<&[u8]> = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let value: &[u8] = match key {
                RateLimitKey::ClientIp => client_ip,
                RateLimitKey::Route => b"",
                RateLimitKey::Consumer => consumer,
                RateLimitKey::Header(name) => {
                    header_value(raw, head, name.as_bytes()).unwrap_or_default()
                }
            };
            match resolved.get_mut(i) {
                Some(slot) => *slot = value,
                None => spill.push(value),
            }
        }
        let key_of = |i: usize| match resolved.get(i) {
            Some(k) => *k,
            None => spill.get(i - resolved.len()).copied().unwrap_or_default(),
        };
        let verdict = limiter.check(key_of, Instant::now());
        limiter.write_headers(&mut self.extra_headers, &verdict);
        match verdict {
            v if v.allowed => Ok(()),
            v if v.unavailable => Err(ProxyError::RateLimitUnavailable),
            _ => Err(ProxyError::RateLimited),
        }
    }

    /// Drops a request body that arrived entirely with the head, so that the connection can
    /// continue after a local answer. Returns false when the body is not all here: the
    /// connection must then close, since its next bytes cannot be framed.
    fn discard_buffered_body(&mut self, head: &RequestHead) -> bool {
        match head.framing {
            BodyFraming::Length(n) if n <= self.buf.len() as u64 => {
                self.buf.advance(n as usize);
                true
            }
            _ => false,
        }
    }

    async fn answer_error_after(&mut self, error: ProxyError, head: &RequestHead) -> bool {
        self.answer_error_with(error, &[], head).await
    }

    /// `error`'s answer with `lines` (together forming CRLF-terminated header lines) added
    /// to its head, after a parsed request.
    async fn answer_error_with(
        &mut self,
        error: ProxyError,
        lines: &[&[u8]],
        head: &RequestHead,
    ) -> bool {
        let keep_alive = head.keep_alive && self.discard_buffered_body(head);
        self.answer_error(error, lines, head.version, keep_alive)
            .await
            && keep_alive
    }

    async fn answer_not_allowed(&mut self, allow: &str, head: &RequestHead) -> bool {
        let lines: [&[u8]; 3] = [b"allow: ", allow.as_bytes(), b"\r\n"];
        self.answer_error_with(ProxyError::MethodNotAllowed, &lines, head)
            .await
    }

    /// 204 with the route's CORS answer, or 403 when its policy refuses the preflight.
    async fn answer_preflight(
        &mut self,
        cors: &CorsPolicy,
        raw: &[u8],
        head: &RequestHead,
    ) -> bool {
        let mut out = std::mem::take(&mut self.out);
        if !cors.write_preflight(raw, head, &mut out) {
            self.out = out;
            return self.answer_error_after(ProxyError::CorsRefused, head).await;
        }
        let keep_alive = head.keep_alive && self.discard_buffered_body(head);
        self.rec.status = 204;
        self.finish_local_answer(out, b"", keep_alive, head.version, true)
            .await
            && keep_alive
    }

    async fn answer_mock(&mut self, mock: &MockResponse, head: &RequestHead) -> bool {
        let keep_alive = head.keep_alive && self.discard_buffered_body(head);
        self.rec.status = mock.status;
        let mut out = std::mem::take(&mut self.out);
        out.extend_from_slice(&mock.head);
        let is_head = head.method == crate::http1::request::Method::Head;
        self.finish_local_answer(out, &mock.body, keep_alive, head.version, is_head)
            .await
            && keep_alive
    }

    /// Writes a pre-rendered error; returns whether the write succeeded.
    async fn answer_error(
        &mut self,
        error: ProxyError,
        lines: &[&[u8]],
        version: Version,
        keep_alive: bool,
    ) -> bool {
        let response = error.response();
        self.rec.status = error.status();
        let mut out = std::mem::take(&mut self.out);
        out.extend_from_slice(&response.head);
        for line in lines {
            out.extend_from_slice(line);
        }
        self.finish_local_answer(out, &response.body, keep_alive, version, false)
            .await
    }

    /// Ends a locally generated head (`out` holds its lines) and sends it with `body`.
    async fn finish_local_answer(
        &mut self,
        mut out: BytesMut,
        body: &[u8],
        keep_alive: bool,
        version: Version,
        omit_body: bool,
    ) -> bool {
        write_header(
            &mut out,
            self.config.observability.request_id_header.as_bytes(),
            &self.rec.request_id,
        );
        out.extend_from_slice(&self.extra_headers);
        self.cors.write_local(&mut out);
        write_connection(&mut out, keep_alive, version);
        out.extend_from_slice(b"\r\n");
        if !omit_body {
            out.extend_from_slice(body);
        }
        self.rec.bytes_out += out.len() as u64;
        match write_out(&mut self.stream, out, self.send_timeout).await {
            Ok(out) => {
                self.out = out;
                true
            }
            Err(_) => false,
        }
    }
}

/// Room for the method, spaces and version around a request target of maximum length.
const MAX_REQUEST_LINE_EXTRA: usize = 64;
