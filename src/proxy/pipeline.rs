//! The per-route filter pipeline: what runs between finding a request's route and
//! answering it.
//!
//! Where it sits (`ClientConn::handle`): read head → route → **request** hooks → the
//! upstream exchange (its head gets the **upstream-request** hooks' lines) or a local
//! answer → the answer's head gets the **response** hooks' lines → write (the upstream's
//! body passes the **body-chunk** hooks) → **log** hooks → record.
//!
//! A route's filters are compiled at config load (`config::filters::compile`, where the
//! capabilities are listed) into a `Vec<Filter>` in the
//! order they apply; [`Filter`] is an enum, so a hook is a `match`, not a virtual call. A
//! filter's settings stay on the route (`access`, `cors`, `auth`, `rate_limits`: what the
//! file said, which the router and the worker's rate-limit state read too), as Envoy's
//! filters read their per-route config from the matched route; the list says which filters
//! run and in what order. A filter's request-path logic lives in its capability (`access`,
//! `cors`, `auth`, `ratelimit`); this module only calls it.
//!
//! A request hook continues or answers locally ([`Flow`], like Envoy's `decodeHeaders`
//! returning `Continue` or calling `sendLocalReply`): the filters after it then do not run
//! and nothing is forwarded. Response hooks run for every answer of the route, local
//! (401, 429, 502, mock…) or forwarded, in reverse order (as Envoy's encoder filters do);
//! each adds what its request hook prepared, so a filter that did not run adds nothing.
//!
//! Per-request state lives in [`RequestCtx`], which the connection keeps and resets between
//! requests, so that its buffers are reused rather than allocated per request.

use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};

use super::cache::CacheState;
use super::transform::ResponseView;
use super::ClientConn;
use crate::auth::oauth2::verdict::Verdicts;
use crate::auth::Identity;
use crate::config::filters::Filter;
use crate::config::{Config, Route};
use crate::cors::{CorsAnswer, CorsPolicy};
use crate::error::ProxyError;
use crate::http1::encode::{AddedLines, HeaderPair, ResponseEdits};
use crate::http1::RequestHead;
use crate::observe::RequestRecord;
use crate::ratelimit::{Decision, WorkerLimits};
use crate::tls::redirect::HttpsRedirect;
use crate::tls::{client_cert, TlsInfo};

/// What a request hook decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow<'c> {
    /// On to the next filter, then the route's action.
    Continue,
    /// Answer locally; nothing is forwarded.
    Respond(LocalAnswer<'c>),
}

/// An answer the gateway makes itself, borrowing from the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalAnswer<'c> {
    /// `error`'s pre-rendered answer with these CRLF-terminated header lines added (a
    /// `www-authenticate` challenge; often none).
    Error(ProxyError, &'c [u8]),
    /// 405 with this `Allow` value.
    NotAllowed(&'c str),
    /// The answer to a CORS preflight under this policy: 204, or 403 when it refuses.
    Preflight(&'c CorsPolicy),
    /// A redirect of a plaintext request to HTTPS.
    Redirect(&'c HttpsRedirect),
    /// The stored answer the cache chose (`ctx.cache`).
    Cached,
    /// A `PURGE` removed this many stored answers.
    Purged(usize),
}

/// The state of the request being served that filters share with the connection.
pub struct RequestCtx {
    /// The client address (see `access/client_addr.rs`): the TCP peer, or the one a
    /// trusted proxy forwarded for. Kept across the connection's requests, like its text.
    pub client_addr: IpAddr,
    /// `client_addr` as text: rate-limit keys, hash balancing, access log, tracing.
    pub client_ip: Bytes,
    /// The index of the request's route, once found: whose filters add to its answer.
    pub route: Option<usize>,
    /// The request is a CORS preflight, routed by the method it asks about.
    pub preflight: bool,
    /// Who the request authenticated as, on a route with `auth`.
    pub identity: Option<Identity>,
    /// The `Access-Control-*` lines of the answer, on a route with `cors`.
    pub cors: CorsAnswer,
    /// The rate-limit header lines (each ending in CRLF) of the answer.
    pub rate_limit_lines: BytesMut,
    /// The TLS session the request came on, if any: version, cipher, name, client
    /// certificate. Kept across the connection's requests.
    pub tls: Option<Rc<TlsInfo>>,
    /// What the route's cache does for the request.
    pub cache: CacheState,
    /// The route's transform rendered for the request.
    pub transform: super::transform::Rendered,
}

impl RequestCtx {
    pub fn new(client_addr: IpAddr, client_ip: Bytes, tls: Option<Rc<TlsInfo>>) -> Self {
        RequestCtx {
            client_addr,
            client_ip,
            route: None,
            preflight: false,
            identity: None,
            cors: CorsAnswer::default(),
            rate_limit_lines: BytesMut::new(),
            tls,
            cache: CacheState::Off,
            transform: Default::default(),
        }
    }

    /// Forgets the previous request's state, keeping the buffers and the client address.
    pub fn reset(&mut self) {
        self.route = None;
        self.preflight = false;
        self.identity = None;
        self.cors.reset();
        self.rate_limit_lines.clear();
        self.cache = CacheState::Off;
        self.transform.reset();
    }
}

/// What a request hook sees of the request.
pub struct Request<'c, 'r> {
    pub config: &'c Arc<Config>,
    pub route: &'c Route,
    /// `route`'s index in `config.routes.routes()`: per-worker state is kept by it.
    pub index: usize,
    pub raw: &'r [u8],
    pub head: &'r RequestHead,
}

/// What the upstream-request hooks change in the head sent upstream.
#[derive(Debug, Default)]
pub struct UpstreamEdits<'a> {
    /// Lower-case names of client headers never forwarded.
    pub drop: Vec<&'a [u8]>,
    /// Headers Strait sets; the client's copies are dropped.
    pub set: Vec<HeaderPair<'a>>,
    /// Headers Strait adds; the client's copies stay.
    pub append: Vec<HeaderPair<'a>>,
    /// The target (path and query) sent in place of the client's.
    pub target: Option<&'a [u8]>,
    /// The Host sent in place of the route's choice.
    pub host: Option<&'a [u8]>,
    /// The method sent in place of the client's.
    pub method: Option<&'a [u8]>,
}

/// The head of an answer as the response hooks see it.
pub enum AnswerHead<'o, 'a> {
    /// A local answer being written: hooks append their lines.
    Local(&'o mut BytesMut),
    /// An upstream's answer, which the encoder rewrites: hooks hand it their lines, which
    /// replace the upstream's own copies of those headers.
    Forwarded(&'o mut ForwardedAdditions<'a>),
}

/// What the response hooks add to a forwarded answer: header lines, in the order the hooks
/// add them, and a request header the answer varies on. One slot per filter at most.
#[derive(Debug)]
pub struct ForwardedAdditions<'a> {
    lines: [AddedLines<'a>; FILTER_KINDS],
    len: usize,
    pub vary: Option<&'a [u8]>,
    /// The route's response transform.
    pub edits: Option<ResponseView<'a>>,
}

/// How many kinds of [`Filter`] there are: a route has each at most once.
const FILTER_KINDS: usize = 8;

impl Default for ForwardedAdditions<'_> {
    fn default() -> Self {
        const NONE: AddedLines<'static> = AddedLines {
            lines: b"",
            replaces: None,
        };
        ForwardedAdditions {
            lines: [NONE; FILTER_KINDS],
            len: 0,
            vary: None,
            edits: None,
        }
    }
}

impl<'a> ForwardedAdditions<'a> {
    fn push(&mut self, lines: AddedLines<'a>) {
        debug_assert!(self.len < FILTER_KINDS, "one addition per filter");
        if let Some(slot) = self.lines.get_mut(self.len) {
            *slot = lines;
            self.len += 1;
        }
    }

    /// The lines added, in order.
    pub fn lines(&self) -> &[AddedLines<'a>] {
        &self.lines[..self.len]
    }

    /// The response transform's edits, as the encoder takes them.
    pub fn edits(&self) -> Option<&dyn ResponseEdits> {
        self.edits.as_ref().map(|edits| edits as &dyn ResponseEdits)
    }

    /// The status an upstream's `status` goes out as.
    pub fn status(&self, status: u16) -> u16 {
        self.edits.map_or(status, |edits| edits.status(status))
    }
}

impl Filter {
    /// The request hook. Only authentication awaits (a token's introspection).
    async fn on_request<'c, S: AsyncReadRent + AsyncWriteRent>(
        self,
        conn: &mut ClientConn<S>,
        req: &Request<'c, '_>,
    ) -> Flow<'c> {
        match self {
            Filter::HttpsRedirect => https_redirect(req.route, &conn.ctx),
            Filter::ClientCert => client_cert(&conn.ctx),
            Filter::RouteAccess => route_access(req.route, &conn.ctx),
            Filter::Cors => cors(req, &mut conn.ctx),
            Filter::Auth => authenticate(conn, req).await,
            Filter::RateLimit => rate_limit(
                &mut conn.worker.limits.borrow_mut(),
                req,
                &mut conn.ctx,
                Instant::now(),
            ),
            Filter::Transform => {
                let mut rendered = std::mem::take(&mut conn.ctx.transform);
                let facts = super::transform::facts(
                    req.route,
                    req.raw,
                    req.head,
                    &conn.ctx,
                    &conn.rec.request_id,
                );
                super::transform::prepare(req.route, &facts, &mut rendered);
                conn.ctx.transform = rendered;
                Flow::Continue
            }
            Filter::Cache => super::cache::lookup(conn, req).await,
        }
    }

    /// The upstream-request hook: what the upstream's copy of the request loses and gains.
    pub fn on_upstream_request<'a>(
        self,
        route: &'a Route,
        ctx: &'a RequestCtx,
        edits: &mut UpstreamEdits<'a>,
    ) {
        match self {
            Filter::Auth => {
                if let (Some(auth), Some(identity)) = (&route.auth, &ctx.identity) {
                    crate::auth::upstream_headers(auth, identity, &mut edits.drop, &mut edits.set);
                }
            }
            Filter::Cache => super::cache::validators(ctx, edits),
            Filter::Transform => super::transform::upstream_edits(route, ctx, edits),
            Filter::HttpsRedirect
            | Filter::ClientCert
            | Filter::RouteAccess
            | Filter::Cors
            | Filter::RateLimit => {}
        }
    }

    /// The response hook: the lines this filter adds to the answer's head.
    pub fn on_response<'a>(
        self,
        route: &'a Route,
        ctx: &'a RequestCtx,
        answer: &mut AnswerHead<'_, 'a>,
    ) {
        match (self, answer) {
            (Filter::Transform, AnswerHead::Local(out)) => {
                super::transform::write_local(route, ctx, out);
            }
            (Filter::Transform, AnswerHead::Forwarded(additions)) => {
                additions.push(AddedLines {
                    lines: super::transform::response_lines(ctx),
                    replaces: None,
                });
                additions.edits = ResponseView::of(route, ctx);
            }
            (Filter::Cors, AnswerHead::Local(out)) => ctx.cors.write_local(out),
            (Filter::Cors, AnswerHead::Forwarded(additions)) => {
                additions.push(ctx.cors.forwarded());
                additions.vary = ctx.cors.vary();
            }
            (Filter::RateLimit, AnswerHead::Local(out)) => {
                out.extend_from_slice(&ctx.rate_limit_lines);
            }
            (Filter::RateLimit, AnswerHead::Forwarded(additions)) => {
                additions.push(crate::ratelimit::added_lines(&ctx.rate_limit_lines));
            }
            (Filter::Cache, AnswerHead::Local(out)) => {
                out.extend_from_slice(super::cache::status_lines(ctx));
            }
            (Filter::Cache, AnswerHead::Forwarded(additions)) => additions.push(AddedLines {
                lines: super::cache::status_lines(ctx),
                replaces: None,
            }),
            (
                Filter::HttpsRedirect | Filter::ClientCert | Filter::RouteAccess | Filter::Auth,
                _,
            ) => {}
        }
    }

    /// The body-chunk hook: one piece of the upstream's response payload (chunked framing
    /// already removed) on its way to the client: the cache collects what it stores.
    pub fn on_body_chunk(self, ctx: &mut RequestCtx, chunk: &[u8]) {
        match self {
            Filter::Cache => super::cache::on_body(ctx, chunk),
            Filter::HttpsRedirect
            | Filter::ClientCert
            | Filter::RouteAccess
            | Filter::Cors
            | Filter::Auth
            | Filter::RateLimit
            | Filter::Transform => {}
        }
    }

    /// The log hook, once the answer is sent and before the request is recorded. No filter
    /// adds to the record yet.
    pub fn on_log(self, ctx: &RequestCtx, rec: &mut RequestRecord) {
        match self {
            Filter::Cache => rec.cache = super::cache::outcome(ctx),
            Filter::HttpsRedirect
            | Filter::ClientCert
            | Filter::RouteAccess
            | Filter::Cors
            | Filter::Auth
            | Filter::RateLimit
            | Filter::Transform => {}
        }
    }
}

/// The request's route (`ctx.route` of `config`), once found.
pub fn route_of<'c>(config: &'c Config, ctx: &RequestCtx) -> Option<&'c Route> {
    config.routes.routes().get(ctx.route?)
}

/// The filters of the request's route; none before a route is found.
pub fn filters_of<'c>(config: &'c Config, ctx: &RequestCtx) -> &'c [Filter] {
    route_of(config, ctx).map_or(&[], |route| &route.filters)
}

/// Runs the request hooks of `req.route` in order, until one answers.
pub(super) async fn request_filters<'c, S: AsyncReadRent + AsyncWriteRent>(
    conn: &mut ClientConn<S>,
    req: &Request<'c, '_>,
) -> Flow<'c> {
    for filter in &req.route.filters {
        if let Flow::Respond(answer) = filter.on_request(conn, req).await {
            return Flow::Respond(answer);
        }
    }
    Flow::Continue
}

/// The upstream-request hooks' changes for the request, after those every forwarded
/// request gets: the client's copies of the client-certificate identity headers are
/// removed, whatever the route and listener, and the session's verified identity is set.
pub fn upstream_edits<'a>(config: &'a Config, ctx: &'a RequestCtx) -> UpstreamEdits<'a> {
    let mut edits = UpstreamEdits::default();
    edits
        .drop
        .extend(config.server.identity_headers.iter().map(|name| &name[..]));
    if let Some(identity) = client_cert::upstream_identity(ctx.tls.as_deref()) {
        edits.set.push(identity);
    }
    if let Some(route) = route_of(config, ctx) {
        for filter in &route.filters {
            filter.on_upstream_request(route, ctx, &mut edits);
        }
    }
    edits
}

/// Runs the response hooks of `route`'s filters, last filter first, then adds the TLS
/// listener's `Strict-Transport-Security` (every answer on the listener carries it, routed
/// or not; an upstream's own copy gives way to it).
pub fn response_filters<'a>(
    route: Option<&'a Route>,
    ctx: &'a RequestCtx,
    mut answer: AnswerHead<'_, 'a>,
) {
    if let Some(route) = route {
        for filter in route.filters.iter().rev() {
            filter.on_response(route, ctx, &mut answer);
        }
    }
    if let Some(hsts) = ctx.tls.as_ref().and_then(|tls| tls.hsts.as_ref()) {
        match answer {
            AnswerHead::Local(out) => out.extend_from_slice(hsts),
            AnswerHead::Forwarded(additions) => additions.push(AddedLines {
                lines: hsts,
                replaces: Some(is_strict_transport_security),
            }),
        }
    }
}

fn is_strict_transport_security(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"strict-transport-security")
}

/// Runs the body-chunk hooks of `filters` on one piece of payload.
#[inline]
pub fn body_filters(filters: &[Filter], ctx: &mut RequestCtx, chunk: &[u8]) {
    for filter in filters {
        filter.on_body_chunk(ctx, chunk);
    }
}

/// Runs the log hooks of `filters`.
pub fn log_filters(filters: &[Filter], ctx: &RequestCtx, rec: &mut RequestRecord) {
    for filter in filters {
        filter.on_log(ctx, rec);
    }
}

/// A plaintext request to a route with `https_redirect` goes to HTTPS; one over TLS
/// passes.
fn https_redirect<'c>(route: &'c Route, ctx: &RequestCtx) -> Flow<'c> {
    match &route.https_redirect {
        Some(redirect) if ctx.tls.is_none() => Flow::Respond(LocalAnswer::Redirect(redirect)),
        _ => Flow::Continue,
    }
}

/// The route requires a verified client certificate and the request has none (a TLS
/// session without one, or plaintext): 403.
fn client_cert<'c>(ctx: &RequestCtx) -> Flow<'c> {
    if client_cert::is_verified(ctx.tls.as_deref()) {
        Flow::Continue
    } else {
        Flow::Respond(LocalAnswer::Error(
            ProxyError::ClientCertificateRequired,
            b"",
        ))
    }
}

/// The route's access list refuses the client: 403.
fn route_access<'c>(route: &'c Route, ctx: &RequestCtx) -> Flow<'c> {
    match &route.access {
        Some(list) if !list.permits(ctx.client_addr) => {
            Flow::Respond(LocalAnswer::Error(ProxyError::Forbidden, b""))
        }
        _ => Flow::Continue,
    }
}

/// A preflight is answered; any other request gets its answer's CORS lines prepared.
fn cors<'c>(req: &Request<'c, '_>, ctx: &mut RequestCtx) -> Flow<'c> {
    let Some(policy) = &req.route.cors else {
        return Flow::Continue;
    };
    if ctx.preflight {
        return Flow::Respond(LocalAnswer::Preflight(policy));
    }
    ctx.cors.prepare(policy, req.raw, req.head);
    Flow::Continue
}

/// Who the request is (kept in the context), or its refusal.
async fn authenticate<'c, S: AsyncReadRent + AsyncWriteRent>(
    conn: &mut ClientConn<S>,
    req: &Request<'c, '_>,
) -> Flow<'c> {
    let Some(auth) = &req.route.auth else {
        return Flow::Continue;
    };
    let worker = conn.worker.clone();
    let verdicts = Verdicts {
        cache: &worker.tokens,
        flights: &worker.flights,
    };
    let config = req.config;
    let outcome = crate::auth::authenticate_request(
        auth,
        config,
        req.raw,
        req.head,
        &verdicts,
        async |provider, token| conn.introspect(config, provider, token).await,
    )
    .await;
    match outcome {
        Ok(identity) => {
            conn.ctx.identity = Some(identity);
            Flow::Continue
        }
        Err(refused) => Flow::Respond(LocalAnswer::Error(refused.error, refused.challenge)),
    }
}

/// Takes the request from the route's limits: 429 past one (503 when a cluster limit
/// cannot be checked). The lines describing the answering limit go to the context.
fn rate_limit<'c>(
    limits: &mut WorkerLimits,
    req: &Request<'c, '_>,
    ctx: &mut RequestCtx,
    now: Instant,
) -> Flow<'c> {
    let Some(mut check) = limits.route_mut(req.index) else {
        return Flow::Continue;
    };
    let consumer = ctx.identity.as_ref().map(|identity| &identity.consumer[..]);
    let decision = check.take_request(
        req.raw,
        req.head,
        &ctx.client_ip,
        consumer,
        &mut ctx.rate_limit_lines,
        now,
    );
    match decision {
        Decision::Allowed => Flow::Continue,
        Decision::Denied => Flow::Respond(LocalAnswer::Error(ProxyError::RateLimited, b"")),
        Decision::Unavailable => {
            Flow::Respond(LocalAnswer::Error(ProxyError::RateLimitUnavailable, b""))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Limits;
    use crate::http1::parse_request_head;

    const CONFIG: &str = r#"[server]
listen = ["127.0.0.1:1"]

[consumers.alice]
api_keys = ["alice-key-123"]

[[routes]]
path = "/plain"
mock = { status = 200 }

[[routes]]
path = "/all"
mock = { status = 200 }
rate_limits = [{ name = "one", key = "consumer", limit = 1, period = "1h" }]
auth = { api_key = {} }
cors = { allow_origins = ["https://app.example"] }
access = { deny = ["10.0.0.0/8"] }

[[routes]]
path = "/limited"
mock = { status = 200 }
rate_limits = [{ name = "one", key = "client_ip", limit = 1, period = "1h" }]
cors = { allow_origins = ["https://app.example"] }

[[routes]]
path = "/private"
mock = { status = 200 }
auth = { api_key = {} }

[[routes]]
path = "/inner"
mock = { status = 200 }
access = { allow = ["10.0.0.0/8"] }

[[routes]]
path = "/secure"
mock = { status = 200 }
https_redirect = { port = 8443 }
access = { allow = ["10.0.0.0/8"] }
"#;

    fn config() -> Arc<Config> {
        Arc::new(crate::config::load_str(CONFIG, "t.toml").unwrap())
    }

    fn route<'c>(config: &'c Config, path: &str) -> (&'c Route, usize) {
        let routes = config.routes.routes();
        let index = routes.iter().position(|r| r.path == path).unwrap();
        (&routes[index], index)
    }

    fn ctx(ip: &str) -> RequestCtx {
        RequestCtx::new(
            ip.parse().unwrap(),
            Bytes::copy_from_slice(ip.as_bytes()),
            None,
        )
    }

    /// Parses `head` and hands the request on `path` to `f`.
    fn with_request<'c, T>(
        config: &'c Arc<Config>,
        path: &str,
        head: &str,
        f: impl FnOnce(&Request<'c, '_>) -> T,
    ) -> T {
        let limits = Limits {
            max_header_bytes: 4096,
            max_headers: 32,
            max_body_bytes: 0,
            max_uri_bytes: 1024,
        };
        let raw = head.as_bytes();
        let head = parse_request_head(raw, &limits).unwrap();
        let (route, index) = route(config, path);
        f(&Request {
            config,
            route,
            index,
            raw,
            head: &head,
        })
    }

    #[test]
    fn routes_get_their_filters_in_order() {
        use Filter::*;
        let config = config();
        // The file lists the settings in another order on purpose: the order is fixed.
        let cases: &[(&str, &[Filter])] = &[
            ("/plain", &[]),
            ("/all", &[RouteAccess, Cors, Auth, RateLimit]),
            ("/limited", &[Cors, RateLimit]),
            ("/private", &[Auth]),
            ("/inner", &[RouteAccess]),
            ("/secure", &[HttpsRedirect, RouteAccess]),
        ];
        for (path, want) in cases {
            assert_eq!(route(&config, path).0.filters, *want, "{path}");
        }
    }

    #[test]
    fn the_route_access_list_answers_403() {
        let config = config();
        let get = "GET /inner HTTP/1.1\r\nHost: t\r\n\r\n";
        let forbidden = Flow::Respond(LocalAnswer::Error(ProxyError::Forbidden, b""));
        for (ip, want) in [("10.1.2.3", Flow::Continue), ("192.168.0.1", forbidden)] {
            let flow = with_request(&config, "/inner", get, |req| {
                route_access(req.route, &ctx(ip))
            });
            assert_eq!(flow, want, "{ip}");
        }
    }

    #[test]
    fn cors_answers_preflights_and_prepares_other_answers() {
        let config = config();
        let (limited, _) = route(&config, "/limited");
        let policy = limited.cors.as_ref().unwrap();
        let preflight = "OPTIONS /limited HTTP/1.1\r\nHost: t\r\nOrigin: https://app.example\r\n\
                         Access-Control-Request-Method: GET\r\n\r\n";
        let mut c = ctx("127.0.0.1");
        c.preflight = true;
        let flow = with_request(&config, "/limited", preflight, |req| cors(req, &mut c));
        assert_eq!(flow, Flow::Respond(LocalAnswer::Preflight(policy)));
        assert_eq!(
            c.cors.forwarded().lines,
            b"",
            "nothing prepared for a preflight"
        );

        let get = "GET /limited HTTP/1.1\r\nHost: t\r\nOrigin: https://app.example\r\n\r\n";
        let mut c = ctx("127.0.0.1");
        let flow = with_request(&config, "/limited", get, |req| cors(req, &mut c));
        assert_eq!(flow, Flow::Continue);
        assert_eq!(
            c.cors.forwarded().lines,
            b"access-control-allow-origin: https://app.example\r\n"
        );
    }

    #[test]
    fn rate_limits_answer_429_past_the_limit() {
        let config = config();
        let now = Instant::now();
        let mut limits = WorkerLimits::new(
            config.route_rate_limits(),
            config.cluster.as_ref(),
            1,
            None,
            now,
        );
        let get = "GET /limited HTTP/1.1\r\nHost: t\r\n\r\n";
        let mut c = ctx("127.0.0.1");
        let take = |c: &mut RequestCtx, limits: &mut WorkerLimits| {
            c.reset();
            with_request(&config, "/limited", get, |req| {
                rate_limit(limits, req, c, now)
            })
        };
        assert_eq!(take(&mut c, &mut limits), Flow::Continue);
        assert!(c.rate_limit_lines.starts_with(b"x-ratelimit-limit: 1\r\n"));
        assert_eq!(
            take(&mut c, &mut limits),
            Flow::Respond(LocalAnswer::Error(ProxyError::RateLimited, b""))
        );
        assert!(c.rate_limit_lines.starts_with(b"retry-after: 3600\r\n"));
        // Another client has a limit of its own.
        let mut other = ctx("127.0.0.2");
        assert_eq!(take(&mut other, &mut limits), Flow::Continue);
    }

    #[test]
    fn response_filters_add_their_lines_to_local_and_forwarded_answers() {
        let config = config();
        let (limited, _) = route(&config, "/limited");
        let get = "GET /limited HTTP/1.1\r\nHost: t\r\nOrigin: https://app.example\r\n\r\n";
        let mut c = ctx("127.0.0.1");
        with_request(&config, "/limited", get, |req| cors(req, &mut c));
        c.rate_limit_lines
            .extend_from_slice(b"x-ratelimit-limit: 1\r\n");

        // A local answer: last filter first, so the rate-limit lines precede CORS.
        let mut out = BytesMut::new();
        response_filters(Some(limited), &c, AnswerHead::Local(&mut out));
        assert_eq!(
            &out[..],
            b"x-ratelimit-limit: 1\r\n\
              access-control-allow-origin: https://app.example\r\n\
              vary: Origin\r\n"
        );

        // A forwarded answer: the encoder gets the lines, in the same order, and the
        // header the answer varies on.
        let mut additions = ForwardedAdditions::default();
        response_filters(Some(limited), &c, AnswerHead::Forwarded(&mut additions));
        let lines: Vec<&[u8]> = additions.lines().iter().map(|a| a.lines).collect();
        assert_eq!(
            lines,
            [
                &b"x-ratelimit-limit: 1\r\n"[..],
                &b"access-control-allow-origin: https://app.example\r\n"[..]
            ]
        );
        assert_eq!(additions.vary, Some(&b"Origin"[..]));

        // A route without filters adds nothing.
        let mut out = BytesMut::new();
        response_filters(None, &c, AnswerHead::Local(&mut out));
        assert!(out.is_empty());
    }

    #[test]
    fn auth_sets_the_consumer_upstream_in_place_of_the_key() {
        let config = config();
        let mut c = ctx("127.0.0.1");
        c.identity = Some(Identity {
            consumer: Bytes::from_static(b"alice"),
            scopes: None,
            headers: std::rc::Rc::from([]),
            claims: std::rc::Rc::from([]),
            forward_token: false,
        });
        let edits = upstream_edits(&config, &c);
        assert!(edits.set.is_empty(), "no route yet");
        c.route = Some(route(&config, "/private").1);
        let edits = upstream_edits(&config, &c);
        assert_eq!(edits.drop, [&b"x-api-key"[..]]);
        assert_eq!(edits.set, [(&b"x-consumer"[..], &b"alice"[..])]);
        c.route = Some(route(&config, "/plain").1);
        assert!(upstream_edits(&config, &c).set.is_empty());
    }

    /// A TLS session's facts, with a verified client certificate or not.
    fn tls(client: bool) -> Rc<TlsInfo> {
        Rc::new(TlsInfo {
            version: "TLSv1.3",
            cipher: "TLS13_AES_128_GCM_SHA256",
            sni: None,
            resumed: false,
            h2: false,
            client: client.then(|| crate::tls::ClientIdentity {
                subject: "CN=alice".into(),
                sans: Vec::new(),
                fingerprint: "00".into(),
                header_value: Bytes::from_static(b"Hash=00;Subject=\"CN=alice\""),
            }),
            identity_header: Some(Bytes::from_static(b"x-client-cert")),
            hsts: None,
        })
    }

    #[test]
    fn plaintext_is_redirected_and_tls_passes() {
        let config = config();
        let (secure, _) = route(&config, "/secure");
        let redirect = secure.https_redirect.as_ref().unwrap();
        let mut c = ctx("10.0.0.1");
        assert_eq!(
            https_redirect(secure, &c),
            Flow::Respond(LocalAnswer::Redirect(redirect))
        );
        c.tls = Some(tls(false));
        assert_eq!(https_redirect(secure, &c), Flow::Continue);
    }

    #[test]
    fn a_client_certificate_is_required_of_every_request_without_one() {
        let refused = Flow::Respond(LocalAnswer::Error(
            ProxyError::ClientCertificateRequired,
            b"",
        ));
        let mut c = ctx("127.0.0.1");
        assert_eq!(client_cert(&c), refused, "plaintext");
        c.tls = Some(tls(false));
        assert_eq!(client_cert(&c), refused, "TLS without a certificate");
        c.tls = Some(tls(true));
        assert_eq!(client_cert(&c), Flow::Continue);
    }

    #[test]
    fn identity_headers_are_always_dropped_and_set_only_from_a_verified_certificate() {
        let mut config = config();
        Arc::get_mut(&mut config)
            .unwrap()
            .server
            .identity_headers
            .push(Bytes::from_static(b"x-client-cert"));
        let mut c = ctx("127.0.0.1");
        c.route = Some(route(&config, "/plain").1);
        for (tls, set) in [
            (None, &[][..]),
            (Some(tls(false)), &[][..]),
            (
                Some(tls(true)),
                &[(&b"x-client-cert"[..], &b"Hash=00;Subject=\"CN=alice\""[..])][..],
            ),
        ] {
            c.tls = tls;
            let edits = upstream_edits(&config, &c);
            assert_eq!(edits.drop, [&b"x-client-cert"[..]]);
            assert_eq!(edits.set, set);
        }
    }
}
