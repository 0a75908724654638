//! The response cache on the request path: the hooks of a route's `Cache` filter and the
//! answer made from a stored response. The store and the rules of RFC 9111 are
//! `crate::cache`; this file decides, per request, between them and the upstream.
//!
//! request hook (`lookup`): the key → a stored answer usable now is sent from the store
//! (`answer_stored`); a stale one is revalidated (the upstream request carries its
//! validators, `validators`); a miss becomes a fill, unless another request fills the same
//! key, whose end it waits for first (coalescing) → upstream head (`on_head`): a 304 that
//! validates the stored answer refreshes it and it is sent from the store; a 5xx (or no
//! answer, `stale_on_error`) lets a stale answer out within `stale-if-error`; a storable
//! answer starts being collected → body (`on_body`): collected as it streams to the client,
//! dropped past `max_object` → end (`on_complete`): stored.
//!
//! Unsafe methods invalidate the URL when they succeed (RFC 9111 §4.4); `PURGE` from a
//! trusted address removes it.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};

use super::pipeline::{Flow, LocalAnswer, Request, RequestCtx, UpstreamEdits};
use super::refresh::OwnedEdits;
use super::refresh::Refresh;
use super::ClientConn;
use crate::cache::config::{CacheConfig, RouteCache};
use crate::cache::key::{self, Key};
use crate::cache::object::Object;
use crate::cache::policy::{self, CacheControl, Usable};
use crate::cache::store::{FillGuard, Lookup};
use crate::error::ProxyError;
use crate::http1::encode::{
    encode_response_fields, write_status_line, AddedLines, ClientBody, ClientFraming,
};
use crate::http1::request::Method;
use crate::http1::{
    parse_response_head, reason_phrase, BodyFraming, HeaderSpan, RequestHead, ResponseHead,
};
use crate::http2::StreamBody;
use crate::io::{write_out, write_within, IntoDuplex};
use crate::observe::cache::CacheOutcome;

/// Stored bodies up to this size go out in the same write as the head.
const INLINE_BODY_BYTES: usize = 16 * 1024;
/// How often a request waiting for another's fill looks again.
const FILL_POLL: Duration = Duration::from_millis(2);

/// Request headers that make a request's answer depend on more than the stored response:
/// a miss carrying one is passed on as it is and not stored.
const CONDITIONAL_HEADERS: [&[u8]; 5] = [
    b"if-none-match",
    b"if-modified-since",
    b"if-match",
    b"if-unmodified-since",
    b"range",
];

/// What the cache does for the request being served.
#[derive(Default)]
pub enum CacheState {
    /// Not a caching route, or the request is done.
    #[default]
    Off,
    /// Answer from the store: a hit, a revalidated answer, or a stale one on error.
    Serve(Serve),
    /// The request goes upstream, its answer possibly stored.
    Forward(Box<Forward>),
    /// An unsafe method: a success invalidates the URL.
    Invalidate {
        cache: Arc<CacheConfig>,
        url: String,
    },
}

/// A stored answer on its way out.
pub struct Serve {
    cache: Arc<CacheConfig>,
    object: Arc<Object>,
    outcome: CacheOutcome,
    /// The `Cache-Status` line.
    line: BytesMut,
}

/// A request forwarded by a caching route.
pub struct Forward {
    target: Target,
    /// Held while this request fills its key: requests for the same key wait for it.
    /// Released as soon as the answer is stored, or known not to be.
    fill: Option<FillGuard<Object>>,
    /// The stored answer being revalidated.
    stale: Option<Arc<Object>>,
    /// Whether the answer may be stored at all (a HEAD, a conditional or a ranged miss is
    /// only passed on).
    may_store: bool,
    store_set_cookie: bool,
    request_cc: CacheControl,
    honour_client: bool,
    /// RFC 9211's `fwd` parameter: why the request went upstream.
    fwd: &'static str,
    outcome: CacheOutcome,
    /// The answer being collected for the store, once its head said it may be stored.
    storing: Option<Storing>,
    /// The `Cache-Status` line of the forwarded answer.
    line: BytesMut,
}

/// A storable answer while its body streams past.
struct Storing {
    raw: Bytes,
    head: ResponseHead,
    body: BytesMut,
    /// The answer's `Vary` names and the request's variant under them.
    vary: (Vec<Box<str>>, String),
}

/// What `relay_response` does with the upstream's final head.
pub enum HeadAction {
    Relay,
    /// Answer from the store instead (the state is [`CacheState::Serve`]).
    ServeStored,
}

pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The `Cache-Status` line (RFC 9211) of this cache's member.
fn status_line(params: &str) -> BytesMut {
    let mut line = BytesMut::with_capacity(40 + params.len());
    line.extend_from_slice(b"cache-status: strait");
    if !params.is_empty() {
        line.extend_from_slice(b"; ");
        line.extend_from_slice(params.as_bytes());
    }
    line.extend_from_slice(b"\r\n");
    line
}

fn has_conditional(raw: &[u8], head: &RequestHead) -> bool {
    head.headers.iter().any(|h| {
        let name = h.name(raw);
        CONDITIONAL_HEADERS
            .iter()
            .any(|c| name.eq_ignore_ascii_case(c))
    })
}

/// The cache filter's request hook.
pub(super) async fn lookup<'c, S: AsyncReadRent + AsyncWriteRent>(
    conn: &mut ClientConn<S>,
    req: &Request<'c, '_>,
) -> Flow<'c> {
    let Some(rc) = &req.route.cache else {
        return Flow::Continue;
    };
    let (raw, head) = (req.raw, req.head);
    let scheme = if conn.ctx.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let consumer = conn.ctx.identity.as_ref().map(|i| &i.consumer[..]);
    let key = key::build(&rc.key, scheme, raw, head, consumer);
    match head.method {
        Method::Get | Method::Head => {}
        Method::Other if head.method(raw) == b"PURGE" => return purge(conn, rc, &key),
        Method::Options | Method::Trace => {
            let mut forward = Forward::new(rc, key, None, None, "method", &CacheControl::default());
            forward.outcome = CacheOutcome::Bypass;
            return pass_on(conn, forward);
        }
        Method::Post | Method::Put | Method::Delete | Method::Patch | Method::Other => {
            conn.ctx.cache = CacheState::Invalidate {
                cache: rc.cache.clone(),
                url: key.url,
            };
            return Flow::Continue;
        }
    }
    let request_cc = policy::request_cache_control((raw, &head.headers));
    let honour = rc.honour_client;
    let store = &rc.cache.store;
    let mut waited = false;
    loop {
        let now = unix_now();
        let found = store.get(&key.url, |names| {
            let mut variant = key.variant.clone();
            variant.push_str(&policy::vary_key((raw, &head.headers), names));
            variant
        });
        let (stale, fwd) = match found {
            Lookup::Hit { value, stale } => {
                let usable = if stale {
                    Usable::Revalidate
                } else {
                    policy::usable(&value.freshness, &request_cc, honour, now)
                };
                match usable {
                    Usable::Fresh => {
                        let params = format!("hit; ttl={}", value.freshness.ttl(now));
                        return serve(conn, &rc.cache, value, CacheOutcome::Hit, &params);
                    }
                    // Served stale at once, revalidated in the background (unless a
                    // revalidation runs already).
                    Usable::StaleWhileRevalidate => {
                        if head.method == Method::Get {
                            if let Some(fill) = store.begin_fill(&key.fill_key()) {
                                spawn_refresh(
                                    conn,
                                    req,
                                    (&rc.cache, key.clone()),
                                    value.clone(),
                                    fill,
                                );
                            }
                        }
                        let ttl = value.freshness.ttl(now);
                        let params = format!("hit; ttl={ttl}; detail=stale-while-revalidate");
                        return serve(conn, &rc.cache, value, CacheOutcome::Stale, &params);
                    }
                    Usable::Revalidate => {}
                }
                let fwd = if honour && (request_cc.no_cache || request_cc.max_age == Some(0)) {
                    "request"
                } else {
                    "stale"
                };
                (Some(value), fwd)
            }
            Lookup::VaryMiss => (None, "vary-miss"),
            Lookup::Miss => (None, "uri-miss"),
        };
        if honour && request_cc.only_if_cached {
            conn.ctx.cache = CacheState::Forward(Box::new(Forward::new(
                rc,
                key,
                None,
                stale,
                "miss",
                &request_cc,
            )));
            return Flow::Respond(LocalAnswer::Error(ProxyError::NotCached, b""));
        }
        let passed_on = head.method == Method::Head
            || (stale.is_none() && has_conditional(raw, head))
            || request_cc.no_store;
        if passed_on {
            return pass_on(conn, Forward::new(rc, key, None, stale, fwd, &request_cc));
        }
        let fill_key = key.fill_key();
        match store.begin_fill(&fill_key) {
            Some(guard) => {
                let forward = Forward::new(rc, key, Some(guard), stale, fwd, &request_cc);
                conn.ctx.cache = CacheState::Forward(Box::new(forward));
                return Flow::Continue;
            }
            None if !waited => {
                waited = true;
                let deadline = std::time::Instant::now() + rc.lock_timeout;
                while store.is_filling(&fill_key) && std::time::Instant::now() < deadline {
                    monoio::time::sleep(FILL_POLL).await;
                }
                conn.worker
                    .observers
                    .borrow_mut()
                    .metrics
                    .cache
                    .coalesced(&rc.cache.name);
            }
            // Still being filled after the wait: go upstream without storing.
            None => return pass_on(conn, Forward::new(rc, key, None, stale, fwd, &request_cc)),
        }
    }
}

/// Starts the background revalidation of `stale` (see `refresh.rs`).
fn spawn_refresh<S>(
    conn: &ClientConn<S>,
    req: &Request<'_, '_>,
    (cache, key): (&Arc<CacheConfig>, Key),
    stale: Arc<Object>,
    fill: FillGuard<Object>,
) {
    let edits = super::pipeline::upstream_edits(req.config, &conn.ctx);
    let refresh = Refresh {
        config: req.config.clone(),
        route: req.index,
        raw: Bytes::copy_from_slice(req.raw),
        head: req.head.clone(),
        peer_text: conn.peer_text.clone(),
        scheme: if conn.ctx.tls.is_some() {
            b"https"
        } else {
            b"http"
        },
        request_id: conn.rec.request_id.clone(),
        edits: OwnedEdits::from(&edits),
        target: Target {
            cache: cache.clone(),
            key,
            request_time: unix_now(),
        },
        stale,
        fill,
    };
    monoio::spawn(refresh.run(conn.worker.clone()));
}

impl Forward {
    fn new(
        rc: &RouteCache,
        key: Key,
        fill: Option<FillGuard<Object>>,
        stale: Option<Arc<Object>>,
        fwd: &'static str,
        request_cc: &CacheControl,
    ) -> Self {
        let outcome = if stale.is_some() {
            CacheOutcome::Revalidated
        } else {
            CacheOutcome::Miss
        };
        Forward {
            target: Target {
                cache: rc.cache.clone(),
                key,
                request_time: unix_now(),
            },
            fill,
            stale,
            may_store: true,
            store_set_cookie: rc.store_set_cookie,
            request_cc: request_cc.clone(),
            honour_client: rc.honour_client,
            fwd,
            outcome,
            storing: None,
            line: status_line(&format!("fwd={fwd}")),
        }
    }
}

/// Forwards the request as `forward` says, without storing its answer.
fn pass_on<'c, S>(conn: &mut ClientConn<S>, mut forward: Forward) -> Flow<'c> {
    forward.may_store = false;
    conn.ctx.cache = CacheState::Forward(Box::new(forward));
    Flow::Continue
}

fn serve<'c, S>(
    conn: &mut ClientConn<S>,
    cache: &Arc<CacheConfig>,
    object: Arc<Object>,
    outcome: CacheOutcome,
    params: &str,
) -> Flow<'c> {
    conn.ctx.cache = CacheState::Serve(Serve {
        cache: cache.clone(),
        object,
        outcome,
        line: status_line(params),
    });
    Flow::Respond(LocalAnswer::Cached)
}

/// `PURGE` of the request's URL, from an address `purge_from` lists.
fn purge<'c, S>(conn: &mut ClientConn<S>, rc: &RouteCache, key: &Key) -> Flow<'c> {
    let client = conn.ctx.client_addr;
    if !rc.purge_from.iter().any(|cidr| cidr.contains(client)) {
        return Flow::Respond(LocalAnswer::Error(ProxyError::Forbidden, b""));
    }
    let purged = rc.cache.store.purge_url(&key.url, false);
    Flow::Respond(LocalAnswer::Purged(purged))
}

/// The cache filter's upstream-request hook: a revalidation carries the stored answer's
/// validators (RFC 9111 §4.3.1) in place of the client's own conditions.
pub fn validators<'a>(ctx: &'a RequestCtx, edits: &mut UpstreamEdits<'a>) {
    let CacheState::Forward(forward) = &ctx.cache else {
        return;
    };
    if let Some(stale) = &forward.stale {
        add_validators(stale, edits);
    }
}

/// The client's conditions dropped, `stale`'s validators sent in their place.
pub(super) fn add_validators<'a>(stale: &'a Object, edits: &mut UpstreamEdits<'a>) {
    edits.drop.extend(CONDITIONAL_HEADERS);
    edits.drop.push(b"if-range");
    if let Some(etag) = policy::first(stale.fields(), b"etag") {
        edits.set.push((b"if-none-match", etag));
    }
    if let Some(modified) = policy::first(stale.fields(), b"last-modified") {
        edits.set.push((b"if-modified-since", modified));
    }
}

/// The cache filter's response hook: the `Cache-Status` line of the answer.
pub fn status_lines(ctx: &RequestCtx) -> &[u8] {
    match &ctx.cache {
        CacheState::Forward(forward) => &forward.line,
        CacheState::Serve(serve) => &serve.line,
        CacheState::Off | CacheState::Invalidate { .. } => b"",
    }
}

/// The upstream's final head arrived: decide what the client gets and whether it is
/// stored. `request` is the client's request.
pub(super) fn on_head(
    ctx: &mut RequestCtx,
    request: (&[u8], &RequestHead),
    raw: &Bytes,
    head: &ResponseHead,
) -> HeadAction {
    match &mut ctx.cache {
        CacheState::Invalidate { cache, url } => {
            if policy::invalidates(head.status) {
                cache.store.purge_url(url, false);
                let host = request.1.authority(request.0).unwrap_or_default();
                let prefix = url_origin(url);
                for location in policy::invalidated_locations((raw, &head.headers), host) {
                    let location = String::from_utf8_lossy(&location);
                    cache.store.purge_url(&format!("{prefix}{location}"), false);
                }
            }
            HeadAction::Relay
        }
        CacheState::Forward(forward) => match forward.on_head(request, raw, head) {
            HeadAction::ServeStored => {
                serve_instead(ctx);
                HeadAction::ServeStored
            }
            HeadAction::Relay => HeadAction::Relay,
        },
        CacheState::Off | CacheState::Serve(_) => HeadAction::Relay,
    }
}

/// Turns a forward that answers from the store (its `stale`, set by
/// [`Forward::serve_instead`]) into [`CacheState::Serve`].
fn serve_instead(ctx: &mut RequestCtx) {
    if let CacheState::Forward(forward) = std::mem::take(&mut ctx.cache) {
        let Forward {
            target: Target { cache, .. },
            stale,
            line,
            outcome,
            ..
        } = *forward;
        if let Some(object) = stale {
            ctx.cache = CacheState::Serve(Serve {
                cache,
                object,
                outcome,
                line,
            });
        }
    }
}

/// The upstream gave no answer: true when a stale answer may go out instead
/// (`stale-if-error`, RFC 5861 §4), the state then being [`CacheState::Serve`].
pub(super) fn stale_on_error(ctx: &mut RequestCtx, error: ProxyError) -> bool {
    let CacheState::Forward(forward) = &mut ctx.cache else {
        return false;
    };
    let Some(stale) = forward.stale.clone() else {
        return false;
    };
    let (request_cc, honour) = (&forward.request_cc, forward.honour_client);
    if !policy::usable_on_error(&stale.freshness, request_cc, honour, unix_now()) {
        return false;
    }
    let params = format!("fwd-status={}; detail=stale-if-error", error.status());
    forward.serve_instead(stale, CacheOutcome::Stale, &params);
    serve_instead(ctx);
    true
}

/// The cache filter's body hook: a piece of a storable answer's payload. Past
/// `max_object` the answer is no longer collected.
pub fn on_body(ctx: &mut RequestCtx, chunk: &[u8]) {
    let CacheState::Forward(forward) = &mut ctx.cache else {
        return;
    };
    let max = forward.target.cache.max_object;
    if let Some(storing) = &mut forward.storing {
        if (storing.body.len() + chunk.len()) as u64 > max {
            forward.storing = None;
            forward.fill = None;
            return;
        }
        storing.body.extend_from_slice(chunk);
        // A body of known length is stored with its last byte, before that byte is sent:
        // whoever got the answer finds it stored.
        if storing.head.framing == BodyFraming::Length(storing.body.len() as u64) {
            forward.store_collected();
        }
    }
}

/// The answer went out whole: one collected (a chunked or close-delimited body) is
/// stored.
pub(super) fn on_complete(ctx: &mut RequestCtx) {
    if let CacheState::Forward(forward) = &mut ctx.cache {
        forward.store_collected();
    }
}

/// How the request's cache part went, for metrics and the access log.
pub fn outcome(ctx: &RequestCtx) -> Option<(Arc<str>, CacheOutcome)> {
    match &ctx.cache {
        CacheState::Off => None,
        CacheState::Serve(serve) => Some((serve.cache.name.clone(), serve.outcome)),
        CacheState::Forward(forward) => Some((forward.target.cache.name.clone(), forward.outcome)),
        CacheState::Invalidate { cache, .. } => Some((cache.name.clone(), CacheOutcome::Bypass)),
    }
}

/// Where an answer is stored: the cache, the request's key, and when the request left
/// (for the stored answer's age, RFC 9111 §4.2.3).
pub(super) struct Target {
    pub cache: Arc<CacheConfig>,
    pub key: Key,
    pub request_time: u64,
}

impl Target {
    /// The stored answer updated by a 304 (RFC 9111 §4.3.4), stored again.
    pub(super) fn refreshed(
        &self,
        stale: &Object,
        request: (&[u8], &RequestHead),
        update: (&[u8], &[HeaderSpan]),
        now: u64,
    ) -> Option<Arc<Object>> {
        let reason = &stale.raw[stale.head.reason.0 as usize..stale.head.reason.1 as usize];
        let merged = policy::merge_not_modified(stale.fields(), stale.head.status, reason, update);
        let head = parse_response_head(&merged, false).ok()?;
        let object = self.object(merged, head, stale.body.clone(), now);
        self.store(request, &object);
        Some(object)
    }

    pub(super) fn object(
        &self,
        raw: Bytes,
        head: ResponseHead,
        body: Bytes,
        now: u64,
    ) -> Arc<Object> {
        let freshness = policy::freshness(
            (&raw, &head.headers),
            head.status,
            self.request_time,
            now,
            self.cache.heuristic_max,
        );
        Arc::new(Object {
            raw,
            head,
            body,
            freshness,
        })
    }

    /// Stores `object` under the request's key and the object's own `Vary`.
    pub(super) fn store(&self, request: (&[u8], &RequestHead), object: &Arc<Object>) {
        if let Some((names, variant)) = self.variant(request, object.fields()) {
            self.insert(names, variant, object);
        }
    }

    /// The `Vary` names of `response` and the request's variant under them; `None` for
    /// `Vary: *`.
    fn variant(
        &self,
        request: (&[u8], &RequestHead),
        response: (&[u8], &[HeaderSpan]),
    ) -> Option<(Vec<Box<str>>, String)> {
        let names = policy::vary_names(response)?;
        let mut variant = self.key.variant.clone();
        variant.push_str(&policy::vary_key((request.0, &request.1.headers), &names));
        Some((names, variant))
    }

    fn insert(&self, names: Vec<Box<str>>, variant: String, object: &Arc<Object>) {
        let weight = object.weight(self.key.url.len() + variant.len());
        let tags = policy::tags(object.fields());
        self.cache.store.insert(
            &self.key.url,
            names.into(),
            variant,
            object.clone(),
            weight,
            tags,
        );
    }
}

/// `scheme://host` of a key's URL (empty when the key has neither), to which a
/// same-origin path is appended.
fn url_origin(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let path_start = url[after_scheme..]
        .find('/')
        .map_or(url.len(), |i| after_scheme + i);
    &url[..path_start]
}

impl Forward {
    fn on_head(
        &mut self,
        request: (&[u8], &RequestHead),
        raw: &Bytes,
        head: &ResponseHead,
    ) -> HeadAction {
        let now = unix_now();
        let response = (&raw[..], &head.headers[..]);
        if let Some(stale) = self.stale.clone() {
            if head.status == 304 && policy::validates(stale.fields(), response) {
                let object = self.target.refreshed(&stale, request, response, now);
                self.serve_instead(
                    object.unwrap_or(stale),
                    CacheOutcome::Revalidated,
                    "fwd-status=304",
                );
                return HeadAction::ServeStored;
            }
            let (request_cc, honour) = (&self.request_cc, self.honour_client);
            if head.status >= 500
                && policy::usable_on_error(&stale.freshness, request_cc, honour, now)
            {
                let params = format!("fwd-status={}; detail=stale-if-error", head.status);
                self.serve_instead(stale, CacheOutcome::Stale, &params);
                return HeadAction::ServeStored;
            }
        }
        let mut params = format!("fwd={}; fwd-status={}", self.fwd, head.status);
        if self.may_store {
            let rules = policy::StoreRules {
                store_set_cookie: self.store_set_cookie,
            };
            let too_large =
                matches!(head.framing, BodyFraming::Length(n) if n > self.target.cache.max_object);
            match policy::storable(
                (request.0, &request.1.headers),
                head.status,
                response,
                &rules,
            ) {
                Ok(()) if too_large => params.push_str("; detail=too-large"),
                Ok(()) => {
                    params.push_str("; stored");
                    self.storing = self.target.variant(request, response).map(|vary| Storing {
                        raw: raw.clone(),
                        head: head.clone(),
                        body: BytesMut::new(),
                        vary,
                    });
                }
                Err(why) => {
                    params.push_str("; detail=");
                    params.push_str(why.as_str());
                }
            }
        }
        if self.storing.is_none() {
            // Nothing to wait for: requests for the key go on at once.
            self.fill = None;
        }
        self.line = status_line(&params);
        HeadAction::Relay
    }

    /// Stores the collected answer, if any, and releases the fill.
    fn store_collected(&mut self) {
        if let Some(storing) = self.storing.take() {
            let body = storing.body.freeze();
            let object = self
                .target
                .object(storing.raw, storing.head, body, unix_now());
            let (names, variant) = storing.vary;
            self.target.insert(names, variant, &object);
        }
        self.fill = None;
    }

    /// Answers from the store with `object` (see [`serve_instead`]).
    fn serve_instead(&mut self, object: Arc<Object>, outcome: CacheOutcome, params: &str) {
        self.outcome = outcome;
        self.line = status_line(&format!("fwd={}; {params}", self.fwd));
        self.stale = Some(object);
    }
}

impl<S: AsyncReadRent + AsyncWriteRent + IntoDuplex + StreamBody> ClientConn<S> {
    /// Sends the stored answer of [`CacheState::Serve`]: as stored, or 304 when the
    /// client's conditions hold, or the part a single `Range` asks for (RFC 9110 §14).
    /// Returns whether the connection may carry another request.
    pub(super) async fn answer_stored(&mut self, raw: &[u8], head: &RequestHead) -> bool {
        let CacheState::Serve(serve) = &self.ctx.cache else {
            return self.answer_error_after(ProxyError::NotCached, head).await;
        };
        let object = serve.object.clone();
        let keep_alive = head.keep_alive && self.discard_buffered_body(head);
        let request = (raw, &head.headers[..]);
        let len = object.body.len() as u64;
        let mut lines = BytesMut::with_capacity(96);
        lines.extend_from_slice(b"age: ");
        lines.extend_from_slice(
            itoa::Buffer::new()
                .format(object.freshness.age(unix_now()))
                .as_bytes(),
        );
        lines.extend_from_slice(b"\r\n");
        let full = object.head.status == 200;
        let (status, body) = if full && policy::not_modified(request, object.fields()) {
            (304, None)
        } else {
            match policy::byte_range(request, len)
                .filter(|_| full && policy::if_range_matches(request, object.fields()))
            {
                Some(Ok((first, last))) => {
                    lines.extend_from_slice(
                        format!("content-range: bytes {first}-{last}/{len}\r\n").as_bytes(),
                    );
                    (
                        206,
                        Some(object.body.slice(first as usize..last as usize + 1)),
                    )
                }
                Some(Err(())) => {
                    lines.extend_from_slice(format!("content-range: bytes */{len}\r\n").as_bytes());
                    (416, Some(Bytes::new()))
                }
                None => (object.head.status, Some(object.body.clone())),
            }
        };
        let omit_body = head.method == Method::Head || body.is_none();
        let client_body = match &body {
            Some(body) if object.head.status != 204 => ClientBody::Length(body.len() as u64),
            _ => ClientBody::None {
                content_length: None,
            },
        };
        let config = self.config.clone();
        let route = super::pipeline::route_of(&config, &self.ctx);
        let mut additions = super::pipeline::ForwardedAdditions::default();
        super::pipeline::response_filters(
            route,
            &self.ctx,
            super::pipeline::AnswerHead::Forwarded(&mut additions),
        );
        let own = AddedLines {
            lines: &lines,
            replaces: Some(if matches!(status, 206 | 416) {
                is_age_or_content_range
            } else {
                is_age
            }),
        };
        let (added, n) = AddedLines::prepend(own, additions.lines());
        let request_id = self.rec.request_id.clone();
        let framing = ClientFraming {
            body: client_body,
            keep_alive,
            client_version: head.version,
            request_id: (
                config.observability.request_id_header.as_bytes(),
                &request_id,
            ),
            added: &added[..n],
            vary: additions.vary,
            edits: additions.edits(),
        };
        let mut out = std::mem::take(&mut self.out);
        // A route's status map applies to a stored answer as to a forwarded one; a 304,
        // 206 or 416 made here stays what it is.
        let status = if status == object.head.status {
            additions.status(status)
        } else {
            status
        };
        let reason = if status == object.head.status {
            &object.raw[object.head.reason.0 as usize..object.head.reason.1 as usize]
        } else {
            reason_phrase(status).as_bytes()
        };
        write_status_line(&mut out, status, reason);
        encode_response_fields(&mut out, &object.raw, &object.head, &framing);
        self.rec.status = status;
        self.rec.bytes_out += out.len() as u64;
        let body = if omit_body {
            Bytes::new()
        } else {
            body.unwrap_or_default()
        };
        self.rec.bytes_out += body.len() as u64;
        if body.len() <= INLINE_BODY_BYTES {
            out.extend_from_slice(&body);
            return match write_out(&mut self.stream, out, self.send_timeout).await {
                Ok(out) => {
                    self.out = out;
                    keep_alive
                }
                Err(_) => false,
            };
        }
        let Ok(out) = write_out(&mut self.stream, out, self.send_timeout).await else {
            return false;
        };
        self.out = out;
        match write_within(&mut self.stream, body, self.send_timeout).await {
            Ok((Ok(_), _)) => keep_alive,
            _ => false,
        }
    }
}

/// The stored header a served answer replaces with its own: its age.
fn is_age(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"age")
}

/// What a served part replaces: the age, and the stored answer's own Content-Range.
fn is_age_or_content_range(name: &[u8]) -> bool {
    is_age(name) || name.eq_ignore_ascii_case(b"content-range")
}
