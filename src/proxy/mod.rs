//! The request path: one client connection, read top to bottom.
//!
//! read head → parse and validate → normalise the path (`path.rs`) → client address →
//! global access list → route → the route's request filters (`pipeline.rs`) → a local
//! answer (a filter's, the mock) or the upstream exchange (`forward.rs`) → response
//! filters → write → log filters → record → next request on the same connection, or close.
//!
//! Invariants: a request that is rejected never has a byte forwarded; after any answer
//! whose request body was not fully consumed, the connection closes (the next bytes could
//! not be framed); a timed-out read ends the connection.

mod aggregate;
mod body;
mod body_edit;
mod cache;
mod drain;
pub mod facts;
mod forward;
mod h2;
mod introspect;
mod path;
pub mod pipeline;
mod proxy_header;
mod refresh;
mod transform;
mod tunnel;

pub use drain::DrainSignal;

use std::cell::{Cell, RefCell};
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::{ArcSwap, Cache};
use bytes::{Buf, Bytes, BytesMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::net::TcpStream;

use crate::auth::oauth2::cache::TokenCache;
use crate::auth::oauth2::single_flight::SingleFlight;
use crate::config::router::RouteMatch;
use crate::config::{Action, Config, MockResponse, Route};
use crate::cors::CorsPolicy;
use crate::deadline;
use crate::error::ProxyError;
use crate::http1::encode::{write_connection, write_header};
use crate::http1::{find_head_end, parse_request_head, BodyFraming, RequestHead, Version};
use crate::http2::StreamBody;
use crate::io::{
    give_back, read_more, take_buffer, write_out, CloseNotify, IntoDuplex, ReadFail, WaitReadable,
    BUFFER_BYTES,
};
use crate::observe::{Observers, RequestRecord, WorkerObservers};
use crate::ratelimit::redis_sync::ClusterHub;
use crate::ratelimit::WorkerLimits;
use crate::tls::redirect::HttpsRedirect;
use crate::tls::{self, TlsInfo, TlsListener};
use crate::upstream::WorkerUpstreams;
use pipeline::{AnswerHead, Flow, LocalAnswer, Request, RequestCtx};

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
    tokens: RefCell<TokenCache<Config>>,
    /// Introspections in flight on this worker, which requests with the same token join.
    flights: SingleFlight,
    /// TLS handshakes running on this worker (bounded by each listener's `max_handshakes`).
    handshakes: Cell<usize>,
    /// Copies this worker's plain-TCP tunnels.
    tunnels: tunnel::Pump,
}

impl Worker {
    pub fn new(
        config: Arc<ArcSwap<Config>>,
        observers: &Observers,
        workers: usize,
        cluster: Arc<ClusterHub>,
    ) -> Self {
        let snapshot = config.load_full();
        let limits = WorkerLimits::new(
            snapshot.route_rate_limits(),
            snapshot.cluster.as_ref(),
            workers,
            Some(cluster),
            Instant::now(),
        );
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
            handshakes: Cell::new(0),
            tunnels: tunnel::Pump::default(),
        }
    }

    /// How long requests in flight may take once a drain starts (from the current config).
    pub fn drain_timeout(&self) -> std::time::Duration {
        self.snapshot().server.timeouts.drain
    }

    /// Hands a finished request to metrics, the access log and tracing.
    fn finish_request(&self, config: &Config, rec: &mut RequestRecord) {
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
    pub fn snapshot(&self) -> Rc<Arc<Config>> {
        let mut cache = self.latest.borrow_mut();
        let latest = cache.load();
        let mut current = self.current.borrow_mut();
        if !Arc::ptr_eq(latest, &current) {
            *current = Rc::new(latest.clone());
            self.upstreams.borrow_mut().sync(latest);
            self.limits.borrow_mut().sync(
                latest.route_rate_limits(),
                latest.cluster.as_ref(),
                Instant::now(),
            );
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

/// A client connection between requests: its socket, and any bytes the client sent ahead
/// (a pipelined request). Nothing else: an idle keep-alive connection holds no buffer and
/// no request state, only this and its task.
struct Idle<S> {
    stream: S,
    ahead: BytesMut,
    /// The TLS session's facts, on a TLS connection.
    tls: Option<Rc<TlsInfo>>,
}

/// A client connection serving one request: its socket, buffers from the worker's spares,
/// and the request's state. Built when a request's first bytes are in, taken apart into an
/// [`Idle`] when its answer is out.
pub struct ClientConn<S> {
    stream: S,
    /// Bytes read from the client and not consumed yet (pipelined requests, body bytes).
    buf: BytesMut,
    /// Output staging for the answer.
    out: BytesMut,
    /// The current request's state shared with its filters (client address, identity, the
    /// lines its answer gets).
    ctx: RequestCtx,
    /// The TCP peer's address, and as text (appended to the upstream X-Forwarded-For).
    peer_ip: IpAddr,
    peer_text: Bytes,
    /// The peer (with its port) and the address it reached Strait on: what an upstream's
    /// PROXY header announces (`forward.rs`).
    addresses: (SocketAddr, SocketAddr),
    worker: Rc<Worker>,
    /// `server.timeouts.client_send` of the request being served.
    send_timeout: std::time::Duration,
    /// What the current request did, for metrics, the access log and tracing.
    rec: RequestRecord,
    /// The snapshot the current request runs on.
    #[allow(clippy::redundant_allocation)] // see `Worker::current`
    config: Rc<Arc<Config>>,
    /// What the client speaks: HTTP/1.x (the head says which), or HTTP/2 (`h2/`), whose
    /// streams reach this loop in HTTP/1.1 form.
    protocol: Version,
    /// The request is a gRPC call: errors are answered in gRPC's form.
    grpc: bool,
}

/// Counts a client connection as open for as long as it lives (drains wait for the count).
struct OpenConnection(Rc<Worker>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        let worker = &self.0;
        worker.connections.set(worker.connections.get() - 1);
        worker.observers.borrow_mut().metrics.connection_closed();
    }
}

/// How reading the next request head ended.
enum NextHead {
    /// A head ends at this offset of the buffer.
    Head(usize),
    /// The client closed, or stayed idle past the keep-alive timeout: close quietly.
    Closed,
    /// A drain began and the connection stayed idle past its grace: lingering close.
    Drained,
    /// Answer with this error and close.
    Fail(ProxyError),
}

/// Serves requests on `stream` until the client or an error ends the connection. The
/// caller has counted it with [`Worker::connection_opened`].
pub async fn serve_connection(mut stream: TcpStream, peer: SocketAddr, worker: Rc<Worker>) {
    let _open = OpenConnection(worker.clone());
    let local = local_addr(&stream, peer);
    let config = worker.snapshot();
    let settings = config.server.proxy_protocol.as_ref();
    let Some((peer, mut ahead)) = proxy_header::accept(&mut stream, peer, settings, &worker).await
    else {
        return;
    };
    if config.server.http2.cleartext {
        let timeout = config.server.timeouts.header_read;
        match h2::is_preface(&mut stream, &mut ahead, timeout).await {
            Some(true) => {
                drop(config);
                return h2::serve(stream, ahead, (peer, local), None, worker).await;
            }
            Some(false) => {}
            None => return,
        }
    }
    drop(config);
    serve_requests(stream, (peer, local), ahead, None, worker).await;
}

/// Runs the TLS handshake on `stream`, accepted on `addr` (one of `listener`'s addresses),
/// then serves requests on the session like [`serve_connection`]. Every handshake is
/// counted, by its version or its reason to fail; a failed one closes the connection.
pub async fn serve_tls_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    addr: SocketAddr,
    listener: Arc<TlsListener>,
    worker: Rc<Worker>,
) {
    let _open = OpenConnection(worker.clone());
    let local = local_addr(&stream, addr);
    let settings = listener.proxy_protocol.as_ref();
    let Some((peer, first)) = proxy_header::accept(&mut stream, peer, settings, &worker).await
    else {
        return;
    };
    match tls::accept::accept(stream, first, &listener, &worker.handshakes).await {
        Ok((session, info)) => {
            drop(listener);
            worker
                .observers
                .borrow_mut()
                .metrics
                .tls_handshake(addr, info.version, info.resumed);
            let h2 = info.h2;
            let info = Some(Rc::new(info));
            if h2 {
                h2::serve(session, BytesMut::new(), (peer, local), info, worker).await;
            } else {
                serve_requests(session, (peer, local), BytesMut::new(), info, worker).await;
            }
        }
        Err(failure) => {
            worker
                .observers
                .borrow_mut()
                .metrics
                .tls_handshake_failed(addr, failure.as_str());
            tracing::debug!(%peer, reason = failure.as_str(), "TLS handshake failed");
        }
    }
}

/// The address `stream` was accepted on (`fallback` if the socket cannot say).
fn local_addr(stream: &TcpStream, fallback: SocketAddr) -> SocketAddr {
    stream.local_addr().unwrap_or(fallback)
}

async fn serve_requests<
    S: AsyncReadRent + AsyncWriteRent + WaitReadable + CloseNotify + IntoDuplex + StreamBody,
>(
    stream: S,
    (peer, local): (SocketAddr, SocketAddr),
    ahead: BytesMut,
    tls: Option<Rc<TlsInfo>>,
    worker: Rc<Worker>,
) {
    let peer_text = Bytes::from(peer.ip().to_string());
    let mut idle = Idle { stream, ahead, tls };
    let mut first = true;
    loop {
        if idle.ahead.is_empty() {
            match wait_for_request(&idle.stream, &worker, first).await {
                NextHead::Head(_) => {}
                NextHead::Closed => break,
                NextHead::Fail(_) => return,
                NextHead::Drained => {
                    // Boxed, like a request: only a draining connection needs its state.
                    Box::pin(drain::linger_close(&mut idle.stream, &mut idle.ahead)).await;
                    return;
                }
            }
        }
        let conn = ClientConn::new(idle, (peer, local), peer_text.clone(), worker.clone());
        // Boxed: the request's future (filters, the upstream exchange, body pumps) is
        // several kilobytes, and lives only while a request does.
        let (keep_alive, back) = Box::pin(conn.serve_request(first)).await;
        idle = back;
        if !keep_alive {
            break;
        }
        first = false;
    }
    idle.stream.close_notify().await;
}

/// Waits, holding no buffer, until the client sends something (or closes) on an idle
/// connection. A new connection's first request must begin within `header_read`, the next
/// ones within `keepalive_idle`. A drain gives a connection idle between requests a short
/// grace for its next request (answered with `Connection: close`): a busy client has it on
/// the way, and closing under it would lose it. A new connection still gets its first
/// request read (it may be queued already).
async fn wait_for_request<S: WaitReadable>(stream: &S, worker: &Worker, first: bool) -> NextHead {
    let timeout = {
        let timeouts = &worker.snapshot().server.timeouts;
        if first {
            timeouts.header_read
        } else {
            timeouts.keepalive_idle
        }
    };
    let mut readable = std::pin::pin!(stream.readable());
    let expired = deadline::after(timeout);
    if first {
        return monoio::select! {
            _ = readable => NextHead::Head(0),
            _ = expired => NextHead::Closed,
        };
    }
    let before_drain = monoio::select! {
        _ = readable.as_mut() => Some(NextHead::Head(0)),
        _ = expired => Some(NextHead::Closed),
        _ = worker.drain.started() => None,
    };
    match before_drain {
        Some(next) => next,
        None => monoio::select! {
            _ = readable => NextHead::Head(0),
            _ = deadline::after(drain::IDLE_GRACE) => NextHead::Drained,
        },
    }
}

impl<S: AsyncReadRent + AsyncWriteRent + IntoDuplex + StreamBody> ClientConn<S> {
    fn new(
        idle: Idle<S>,
        addresses: (SocketAddr, SocketAddr),
        peer_text: Bytes,
        worker: Rc<Worker>,
    ) -> Self {
        let peer_ip = addresses.0.ip();
        let buf = if idle.ahead.is_empty() {
            take_buffer()
        } else {
            idle.ahead
        };
        let config = worker.snapshot();
        ClientConn {
            stream: idle.stream,
            buf,
            out: take_buffer(),
            ctx: RequestCtx::new(peer_ip, peer_text.clone(), idle.tls),
            peer_ip,
            peer_text,
            addresses,
            send_timeout: config.server.timeouts.client_send,
            rec: RequestRecord::new(Bytes::new(), Instant::now()),
            config,
            worker,
            protocol: Version::Http11,
            grpc: false,
        }
    }

    /// Reads one request and answers it. Returns whether the connection may carry another,
    /// and the connection to wait on for it.
    async fn serve_request(mut self, first: bool) -> (bool, Idle<S>) {
        let keep_alive = self.read_and_answer(first).await;
        (keep_alive, self.into_idle())
    }

    /// Gives the buffers back to the worker, keeping bytes the client sent ahead.
    fn into_idle(self) -> Idle<S> {
        let ClientConn {
            stream,
            buf,
            out,
            rec,
            mut ctx,
            ..
        } = self;
        let tls = ctx.tls.take();
        // The request's record and context hold slices of `buf`: gone first, so that the
        // buffer's memory is free to reuse.
        drop((rec, ctx));
        give_back(out);
        let ahead = if buf.is_empty() {
            give_back(buf);
            BytesMut::new()
        } else {
            buf
        };
        Idle { stream, ahead, tls }
    }

    async fn read_and_answer(&mut self, first: bool) -> bool {
        let head_end = match self.read_head(&self.worker.snapshot(), first).await {
            NextHead::Head(end) => end,
            NextHead::Closed => return false,
            NextHead::Drained => {
                drain::linger_close(&mut self.stream, &mut self.buf).await;
                return false;
            }
            NextHead::Fail(error) => {
                let _ = self.answer_error(error, &[], Version::Http11, false).await;
                return false;
            }
        };
        // The request runs on the snapshot current when its head is complete: a reload
        // while the connection sat idle applies to it.
        let config = self.worker.snapshot();
        self.send_timeout = config.server.timeouts.client_send;
        self.config = config.clone();
        let raw = self.buf.split_to(head_end).freeze();
        self.rec = RequestRecord::new(self.peer_text.clone(), Instant::now());
        self.rec.bytes_in = raw.len() as u64;
        self.rec.tls = self.ctx.tls.clone();
        let keep_alive = match parse_request_head(&raw, &config.server.limits) {
            Ok(head) => {
                let (raw, mut head, bad_path) =
                    match path::normalize_head(&raw, &head, &config.server) {
                        Ok(Some((raw, head))) => (raw, head, None),
                        Ok(None) => (raw, head, None),
                        Err(error) => (raw, head, Some(error)),
                    };
                self.identify_client(&config, &raw, &head);
                self.rec.describe(&raw, &head);
                if self.protocol == Version::Http2 {
                    self.rec.version = Version::Http2;
                    self.grpc = crate::http1::headers::header_value(&raw, &head, b"content-type")
                        .is_some_and(crate::http2::grpc::is_grpc);
                }
                self.worker.observers.borrow_mut().begin(
                    &config.observability,
                    &raw,
                    &head,
                    &mut self.rec,
                );
                // Once draining, every answer says `Connection: close`.
                head.keep_alive &= !self.worker.drain.is_started();
                match bad_path {
                    Some(error) => self.answer_error_after(error, &head).await,
                    None => self.handle(&config, raw, head).await,
                }
            }
            Err(error) => {
                let _ = self
                    .answer_error(error.into(), &[], version_of(&raw), false)
                    .await;
                false
            }
        };
        self.worker.finish_request(&config, &mut self.rec);
        keep_alive
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

impl<S: AsyncReadRent + AsyncWriteRent + IntoDuplex + StreamBody> ClientConn<S> {
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
            let read = read_more(&mut self.stream, &mut self.buf, BUFFER_BYTES / 2, timeout);
            // A drain gives a keep-alive connection idle between requests a short grace for
            // its next request (answered with `Connection: close`): a busy client has it on
            // the way, and closing under it would lose it. The same read goes on, so nothing
            // it brings is lost. A new connection still gets its first request read (it may
            // be queued already), and a head that has begun is read to its end.
            let read = if had_bytes || first {
                read.await
            } else {
                let mut read = std::pin::pin!(read);
                let before_drain = monoio::select! {
                    read = read.as_mut() => Some(read),
                    _ = self.worker.drain.started() => None,
                };
                match before_drain {
                    Some(read) => read,
                    None => match monoio::time::timeout(drain::IDLE_GRACE, read).await {
                        Ok(Err(ReadFail::Timeout)) | Err(_) => return NextHead::Drained,
                        Ok(read) => read,
                    },
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
        let client =
            crate::access::client_addr::client_address(trusted, self.peer_ip, raw, &head.headers);
        if client != self.ctx.client_addr {
            self.ctx.client_addr = client;
            self.ctx.client_ip = if client == self.peer_ip {
                self.peer_text.clone()
            } else {
                Bytes::from(client.to_string())
            };
        }
        self.rec.client_ip = self.ctx.client_ip.clone();
    }

    /// Serves one parsed request; returns whether the connection may carry another.
    async fn handle(&mut self, config: &Arc<Config>, raw: Bytes, head: RequestHead) -> bool {
        // Before routing, so that a refused client learns nothing about the routes.
        if !config.server.access.permits(self.ctx.client_addr) {
            return self.answer_error_after(ProxyError::Forbidden, &head).await;
        }
        let (route, index) = match self.find_route(config, &raw, &head) {
            Ok(found) => found,
            Err(answer) => return self.answer_local(answer, &raw, &head).await,
        };
        self.rec.route = Some(index);
        self.ctx.route = Some(index);
        let request = Request {
            config,
            route,
            index,
            raw: &raw,
            head: &head,
        };
        // The response filters run where each answer's head is written.
        let keep_alive = match pipeline::request_filters(self, &request).await {
            Flow::Respond(answer) => self.answer_local(answer, &raw, &head).await,
            Flow::Continue => match &route.action {
                Action::Mock(mock) => self.answer_mock(mock, &head).await,
                Action::Proxy(action) => self.forward(config, action, raw, head).await,
                Action::Aggregate(aggregate) => {
                    self.aggregate(config, route, aggregate, &raw, &head).await
                }
            },
        };
        pipeline::log_filters(&route.filters, &self.ctx, &mut self.rec);
        // Releases a fill this request held: requests waiting for it go on.
        self.ctx.cache = cache::CacheState::Off;
        keep_alive
    }

    /// The request's route and its index, or the answer when there is none. A CORS
    /// preflight goes to the route of the method it asks about, whatever that route's
    /// `methods` say about OPTIONS (noted in the context for the CORS filter).
    fn find_route<'c>(
        &mut self,
        config: &'c Config,
        raw: &[u8],
        head: &RequestHead,
    ) -> Result<(&'c Route, usize), LocalAnswer<'c>> {
        let path = head.path(raw);
        let path = if path.is_empty() { &b"/"[..] } else { path };
        let Ok(path) = std::str::from_utf8(path) else {
            return Err(LocalAnswer::Error(ProxyError::BadRequest, b""));
        };
        let host = head.authority(raw);
        let preflight_route = crate::cors::preflight_method(raw, head)
            .and_then(|method| config.routes.lookup_preflight(host, method, path));
        self.ctx.preflight = preflight_route.is_some();
        let matched = match preflight_route {
            Some(route) => RouteMatch::Found(route),
            None => config.routes.lookup(host, head.method(raw), path),
        };
        match matched {
            RouteMatch::Found(route) => Ok((route, config.routes.index_of(route))),
            RouteMatch::NotFound => Err(LocalAnswer::Error(ProxyError::NoRoute, b"")),
            RouteMatch::MethodNotAllowed { allow } => Err(LocalAnswer::NotAllowed(allow)),
        }
    }

    /// Sends a local answer: a routing error or a filter's.
    async fn answer_local(
        &mut self,
        answer: LocalAnswer<'_>,
        raw: &[u8],
        head: &RequestHead,
    ) -> bool {
        match answer {
            LocalAnswer::Error(error, lines) => self.answer_error_with(error, &[lines], head).await,
            LocalAnswer::NotAllowed(allow) => self.answer_not_allowed(allow, head).await,
            LocalAnswer::Preflight(policy) => self.answer_preflight(policy, raw, head).await,
            LocalAnswer::Redirect(redirect) => self.answer_redirect(redirect, raw, head).await,
            LocalAnswer::Cached => self.answer_stored(raw, head).await,
            LocalAnswer::Purged(n) => self.answer_purged(n, head).await,
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

    /// The redirect of a plaintext request to HTTPS; 400 when the request names no host
    /// (HTTP/1.0 without Host), since there is then no URL to send it to.
    async fn answer_redirect(
        &mut self,
        redirect: &HttpsRedirect,
        raw: &[u8],
        head: &RequestHead,
    ) -> bool {
        let mut out = std::mem::take(&mut self.out);
        let written =
            redirect.write_head(head.method, head.authority(raw), head.target(raw), &mut out);
        let Some(status) = written else {
            self.out = out;
            return self.answer_error_after(ProxyError::BadHost, head).await;
        };
        let keep_alive = head.keep_alive && self.discard_buffered_body(head);
        self.rec.status = status;
        self.finish_local_answer(out, b"", keep_alive, head.version, true)
            .await
            && keep_alive
    }

    /// 200 with how many stored answers a `PURGE` removed.
    async fn answer_purged(&mut self, purged: usize, head: &RequestHead) -> bool {
        let keep_alive = head.keep_alive && self.discard_buffered_body(head);
        let body = format!("{{\"purged\":{purged}}}\n");
        let mut out = std::mem::take(&mut self.out);
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n");
        crate::http1::encode::write_content_length(&mut out, body.len() as u64);
        self.rec.status = 200;
        self.finish_local_answer(out, body.as_bytes(), keep_alive, head.version, false)
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
        // A gRPC client gets its status in gRPC's form, on an HTTP 200.
        let (response, status) = if self.grpc {
            (error.grpc_response(), 200)
        } else {
            (error.response(), error.status())
        };
        self.rec.status = status;
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
        let route = pipeline::route_of(&self.config, &self.ctx);
        pipeline::response_filters(route, &self.ctx, AnswerHead::Local(&mut out));
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
