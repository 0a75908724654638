//! `[[routes]]`: which requests a route takes (path, hosts, methods), what it does (proxy to
//! an upstream, or a mock rendered here once), and its capability sections (rate limits,
//! auth, access, CORS, client certificates, HTTPS redirect), each validated by its
//! capability. The serde mirror, the runtime
//! types and the validation, ending in the compiled [`RouteTable`].

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::ops::Range;

use bytes::Bytes;
use serde::Deserialize;
use toml::Spanned;

use crate::access::config::FileAccess;
use crate::access::AccessList;
use crate::auth::config::{AuthConfig, FileAuth};
use crate::auth::jwt::config::Providers;
use crate::auth::oauth2::config::ProviderIds;
use crate::cache::config::{CacheConfig, FileRouteCache, RouteCache};
use crate::config::router::RouteTable;
use crate::cors::config::FileCors;
use crate::cors::CorsPolicy;
use crate::http1::reason_phrase;
use crate::ratelimit::config::{FileRateLimit, RateLimitConfig};
use crate::settings::{is_host_header, is_tchar, Ctx};
use crate::tls::redirect::{FileHttpsRedirect, HttpsRedirect};
use crate::tls::ListenerFacts;
use crate::transform::config::FileTransform;
use crate::transform::Transform;
use crate::upstream::config::{UpstreamId, UpstreamIds};
use crate::{access, auth, cors, ratelimit, tls};

/// Header names a mock may not set: strait frames the body itself (RFC 9112 §6) and the
/// connection loop owns persistence, so a user value could only contradict them.
const RESERVED_MOCK_HEADERS: &[&str] = &["content-length", "transfer-encoding", "connection"];

// ---- the file ----

/// One `[[routes]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRoute {
    pub name: Option<Spanned<String>>,
    pub path: Spanned<String>,
    pub hosts: Option<Spanned<Vec<Spanned<String>>>>,
    pub methods: Option<Vec<Spanned<String>>>,
    pub upstream: Option<Spanned<String>>,
    pub mock: Option<Spanned<FileMock>>,
    pub strip_prefix: Option<Spanned<String>>,
    pub preserve_host: Option<Spanned<bool>>,
    pub host_rewrite: Option<Spanned<String>>,
    pub retry_non_idempotent: Option<Spanned<bool>>,
    /// Protocols a client may switch to through this route: `["websocket"]`.
    pub upgrades: Option<Spanned<Vec<Spanned<String>>>>,
    pub rate_limits: Option<Vec<Spanned<FileRateLimit>>>,
    pub auth: Option<Spanned<FileAuth>>,
    pub access: Option<FileAccess>,
    pub cors: Option<Spanned<FileCors>>,
    /// `"required"` or `"none"`.
    pub client_cert: Option<Spanned<String>>,
    pub https_redirect: Option<Spanned<FileHttpsRedirect>>,
    pub cache: Option<Spanned<FileRouteCache>>,
    pub transform: Option<Spanned<FileTransform>>,
    pub aggregate: Option<Spanned<crate::aggregate::config::FileAggregate>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileMock {
    pub status: Spanned<i64>,
    #[serde(default)]
    pub headers: BTreeMap<Spanned<String>, Spanned<String>>,
    pub body: Option<Spanned<String>>,
    pub body_file: Option<Spanned<String>>,
}

// ---- runtime types ----

/// What a matched route does.
#[derive(Debug)]
pub enum Action {
    Proxy(ProxyAction),
    Mock(MockResponse),
    /// Answered by calling several upstreams and combining their JSON answers.
    Aggregate(crate::aggregate::Aggregate),
}

#[derive(Debug)]
pub struct ProxyAction {
    pub upstream: UpstreamId,
    /// Removed from the front of the path before forwarding (`/users/1` → `/1`); an empty
    /// result becomes `/`.
    pub strip_prefix: Option<String>,
    /// Send the client's Host upstream unchanged (default). When false, Host becomes
    /// `host_rewrite` if set, else the endpoint's `ip:port`.
    pub preserve_host: bool,
    pub host_rewrite: Option<String>,
    /// Retry non-idempotent methods too (the route says they are safe to repeat).
    pub retry_non_idempotent: bool,
    /// The route's `upgrades` lists `websocket`: an `Upgrade: websocket` request is
    /// forwarded with its upgrade headers and a 101 answer becomes a tunnel. Otherwise the
    /// Upgrade header is dropped and the request is an ordinary one.
    pub websocket: bool,
}

/// A fixed answer rendered once at config load.
#[derive(Debug)]
pub struct MockResponse {
    pub status: u16,
    /// Status line and headers (Content-Length included), each ending in CRLF, without the
    /// blank line that ends the head: the connection loop may add `Connection: close` first.
    pub head: Bytes,
    pub body: Bytes,
}

/// One route after validation.
#[derive(Debug)]
pub struct Route {
    /// `routes[N]` position in the file, or the route's `name` when set; used in logs/errors.
    pub name: String,
    /// The path pattern as written (`/users/{*rest}`).
    pub path: String,
    /// Upper-case method names; empty means any method.
    pub methods: Vec<String>,
    pub action: Action,
    /// Local rate limits, checked before the action (empty: none).
    pub rate_limits: Vec<RateLimitConfig>,
    /// Authentication required before anything else (rate limits included); `None`: open.
    pub auth: Option<AuthConfig>,
    /// The route's `access`, checked after `[server.access]`; `None`: no route list.
    pub access: Option<AccessList>,
    /// CORS answered by the gateway; `None`: requests pass through untouched.
    pub cors: Option<CorsPolicy>,
    /// Only requests whose TLS session has a verified client certificate are served
    /// (`client_cert = "required"`); others get 403.
    pub requires_client_cert: bool,
    /// Plaintext requests are redirected to HTTPS; `None`: served where they came.
    pub https_redirect: Option<HttpsRedirect>,
    /// Answers are cached (RFC 9111) in a named store; `None`: always forwarded.
    pub cache: Option<RouteCache>,
    /// What forwarded requests and their answers are changed into; `None`: passed as they
    /// are.
    pub transform: Option<Transform>,
    /// The parameters of `path` (`{id}`, `{*rest}`), which templates may name.
    pub params: PathParams,
    /// The filters the settings above call for, in the order they apply
    /// (`super::filters::compile`).
    pub filters: Vec<super::filters::Filter>,
}

// ---- validation ----

/// What the top-level sections defined that a route may refer to.
pub(super) struct Defined<'a> {
    pub upstreams: &'a UpstreamIds,
    /// Some consumer has an API key: `auth.api_key` may be used.
    pub has_api_keys: bool,
    pub oauth2_providers: &'a ProviderIds,
    pub jwt_providers: &'a Providers,
    /// A `[cluster]` table is present (valid or not): `scope = "cluster"` may be used.
    pub has_cluster: bool,
    /// The TLS listeners: `https_redirect`'s default port, whether `client_cert` can be met.
    pub tls: ListenerFacts,
    /// `[caches.NAME]`, by name: what a route's `cache.name` may refer to.
    pub caches: &'a HashMap<String, std::sync::Arc<CacheConfig>>,
}

/// `[[routes]]`, in file order, compiled into the route table; a route naming something
/// undefined, or conflicting with another, is an error here.
pub(super) fn build(
    ctx: &mut Ctx,
    file_routes: Vec<Spanned<FileRoute>>,
    defined: &Defined<'_>,
) -> Option<RouteTable> {
    let mut routes = Vec::with_capacity(file_routes.len());
    let mut hosts = Vec::with_capacity(file_routes.len());
    // Spans of each route's path and hosts, for the router's errors.
    let mut spans: Vec<(Range<usize>, Vec<Range<usize>>)> = Vec::with_capacity(file_routes.len());
    let mut names: HashMap<String, usize> = HashMap::with_capacity(file_routes.len());

    for (index, route) in file_routes.into_iter().enumerate() {
        let span = route.span();
        let route = route.into_inner();
        let prefix = format!("routes[{index}]");

        let name = match &route.name {
            None => prefix.clone(),
            Some(name) => {
                if name.get_ref().trim().is_empty() {
                    ctx.error(name.span(), format!("{prefix}.name"), "must not be empty");
                }
                name.get_ref().clone()
            }
        };
        if let Some(first) = names.insert(name.clone(), index) {
            let at = route.name.as_ref().map_or(span.clone(), Spanned::span);
            ctx.error(
                at,
                format!("{prefix}.name"),
                format!("duplicate route name \"{name}\" (also routes[{first}])"),
            );
        }

        // The router checks the pattern itself (leading '/', matchit syntax).
        let path = route.path.get_ref().clone();
        if let Some(bad) = path
            .chars()
            .find(|c| c.is_whitespace() || c.is_control() || *c == '?' || *c == '#')
        {
            let why = format!(
                "\"{path}\" contains {bad:?}; a pattern matches the path only, without \
                 query or fragment"
            );
            ctx.error(route.path.span(), format!("{prefix}.path"), why);
        }

        // The router validates and normalises host patterns and reports bad ones.
        let mut host_spans = Vec::new();
        let mut route_hosts = Vec::new();
        if let Some(list) = &route.hosts {
            if list.get_ref().is_empty() {
                ctx.error(
                    list.span(),
                    format!("{prefix}.hosts"),
                    "empty list; omit `hosts` to match any host",
                );
            }
            for host in list.get_ref() {
                host_spans.push(host.span());
                route_hosts.push(host.get_ref().clone());
            }
        }
        let methods = methods(ctx, &route, &prefix);
        let action = action(ctx, &route, &prefix, span.clone(), defined.upstreams);
        // The route's capability sections, each validated by the capability that owns it.
        let rate_limits = ratelimit::config::rate_limits(
            ctx,
            route.rate_limits.as_deref(),
            &prefix,
            defined.has_cluster,
        );
        let auth = route.auth.as_ref().and_then(|auth| {
            auth::config::route_auth(
                ctx,
                auth,
                &prefix,
                defined.has_api_keys,
                defined.oauth2_providers,
                defined.jwt_providers,
                &methods,
            )
        });
        let access = route
            .access
            .as_ref()
            .map(|a| access::config::access_list(ctx, a, &format!("{prefix}.access")))
            .filter(|a| !a.is_empty());
        let cors = route
            .cors
            .as_ref()
            .and_then(|cors| cors::config::policy(ctx, cors, &format!("{prefix}.cors"), &methods));
        let requires_client_cert = route.client_cert.as_ref().is_some_and(|value| {
            let key = format!("{prefix}.client_cert");
            tls::client_cert::route_requirement(ctx, value, &key, &defined.tls)
        });
        let https_redirect = route.https_redirect.as_ref().and_then(|value| {
            let key = format!("{prefix}.https_redirect");
            tls::redirect::build(ctx, value, &key, &defined.tls)
        });
        let cache = route.cache.as_ref().and_then(|cache| {
            if route.mock.is_some() || route.aggregate.is_some() {
                let why = "only applies to routes with an `upstream`";
                ctx.error(cache.span(), format!("{prefix}.cache"), why);
                return None;
            }
            let has_auth = route.auth.is_some();
            crate::cache::config::route_cache(
                ctx,
                cache.get_ref(),
                &prefix,
                defined.caches,
                has_auth,
            )
        });

        let params = PathParams::of(&path);
        let transform = route.transform.as_ref().map(|transform| {
            if route.mock.is_some() || route.aggregate.is_some() {
                let why = "only applies to routes with an `upstream`";
                ctx.error(transform.span(), format!("{prefix}.transform"), why);
            }
            let key = format!("{prefix}.transform");
            let built =
                crate::transform::config::build(ctx, transform.get_ref(), &key, &params.names);
            // The store would keep either the upstream's body or the edited one, and the
            // other answers would then differ from it: refused until that is built.
            let edits_response_body = built.response.as_ref().is_some_and(|r| r.body.is_some());
            if edits_response_body && route.cache.is_some() {
                let why = "a response body edit cannot be combined with the route's `cache`";
                ctx.error(transform.span(), format!("{key}.response.body"), why);
            }
            built
        });

        // A route with a bad action still goes to the router (with a placeholder), so its
        // routing conflicts are reported in the same run.
        let action = action.unwrap_or_else(|| {
            Action::Mock(MockResponse {
                status: 500,
                head: Bytes::new(),
                body: Bytes::new(),
            })
        });
        spans.push((route.path.span(), host_spans));
        let mut route = Route {
            name,
            path,
            methods,
            action,
            rate_limits,
            auth,
            access,
            cors,
            requires_client_cert,
            https_redirect,
            cache,
            transform,
            params,
            filters: Vec::new(),
        };
        route.filters = super::filters::compile(&route);
        routes.push(route);
        hosts.push(route_hosts);
    }

    match RouteTable::build(routes, hosts) {
        Ok(table) => Some(table),
        Err(errors) => {
            for error in errors {
                let index = error.route;
                let (path_span, host_spans) = spans.get(index).cloned().unwrap_or_default();
                match error
                    .host
                    .and_then(|h| host_spans.get(h).cloned().map(|span| (h, span)))
                {
                    Some((h, span)) => {
                        ctx.error(span, format!("routes[{index}].hosts[{h}]"), error.message)
                    }
                    None => ctx.error(path_span, format!("routes[{index}].path"), error.message),
                }
            }
            None
        }
    }
}

/// A route's path parameters: their names, and a matcher of the route's pattern alone that
/// finds their values in a request's path.
#[derive(Debug, Default)]
pub struct PathParams {
    pub names: Vec<String>,
    matcher: Option<matchit::Router<()>>,
}

impl PathParams {
    /// `{id}` and `{*rest}` in `pattern` give `id` and `rest`. A pattern the router refuses
    /// gets no matcher (the router reports it).
    pub fn of(pattern: &str) -> PathParams {
        let mut names = Vec::new();
        let mut rest = pattern;
        while let Some(start) = rest.find('{') {
            let Some(len) = rest[start..].find('}') else {
                break;
            };
            let name = rest[start + 1..start + len].trim_start_matches('*');
            if !name.is_empty() && !name.starts_with('{') {
                names.push(name.to_owned());
            }
            rest = &rest[start + len..];
        }
        let matcher = (!names.is_empty())
            .then(|| {
                let mut router = matchit::Router::new();
                router.insert(pattern, ()).ok().map(|()| router)
            })
            .flatten();
        PathParams { names, matcher }
    }

    /// The value of parameter `name` in `path` (which the route matched).
    pub fn value<'p>(&self, path: &'p str, name: &str) -> Option<&'p str> {
        self.matcher.as_ref()?.at(path).ok()?.params.get(name)
    }
}

/// Upper-cased, de-duplicated method names; empty = any method.
fn methods(ctx: &mut Ctx, route: &FileRoute, prefix: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, method) in route.methods.iter().flatten().enumerate() {
        let text = method.get_ref();
        if text.is_empty() || !text.bytes().all(is_tchar) {
            ctx.error(
                method.span(),
                format!("{prefix}.methods[{i}]"),
                format!("invalid method \"{text}\": must be a token such as GET or POST"),
            );
            continue;
        }
        let upper = text.to_ascii_uppercase();
        if !out.contains(&upper) {
            out.push(upper);
        }
    }
    out
}

fn action(
    ctx: &mut Ctx,
    route: &FileRoute,
    prefix: &str,
    span: Range<usize>,
    upstreams: &UpstreamIds,
) -> Option<Action> {
    if let Some(aggregate) = &route.aggregate {
        return aggregate_action(ctx, route, aggregate, prefix, upstreams);
    }
    match (&route.upstream, &route.mock) {
        (Some(_), Some(mock)) => {
            ctx.error(
                mock.span(),
                format!("{prefix}.mock"),
                "set either `upstream` or `mock`, not both",
            );
            None
        }
        (None, None) => {
            ctx.error(
                span,
                prefix,
                "no action: set `upstream = \"name\"` or `mock = { status = 200, ... }`",
            );
            None
        }
        (Some(upstream), None) => proxy(ctx, route, prefix, upstream, upstreams).map(Action::Proxy),
        (None, Some(mock)) => {
            refuse_proxy_settings(ctx, route, prefix);
            mock_response(ctx, mock.get_ref(), &format!("{prefix}.mock")).map(Action::Mock)
        }
    }
}

/// Errors for the settings of a forwarding route on a route that does not forward.
fn refuse_proxy_settings(ctx: &mut Ctx, route: &FileRoute, prefix: &str) {
    for (field, span) in [
        (
            "strip_prefix",
            route.strip_prefix.as_ref().map(Spanned::span),
        ),
        (
            "preserve_host",
            route.preserve_host.as_ref().map(Spanned::span),
        ),
        (
            "host_rewrite",
            route.host_rewrite.as_ref().map(Spanned::span),
        ),
        (
            "retry_non_idempotent",
            route.retry_non_idempotent.as_ref().map(Spanned::span),
        ),
        ("upgrades", route.upgrades.as_ref().map(Spanned::span)),
    ] {
        if let Some(span) = span {
            ctx.error(
                span,
                format!("{prefix}.{field}"),
                "only applies to routes with an `upstream`",
            );
        }
    }
}

/// An `aggregate` route: it has no `upstream` or `mock` of its own.
fn aggregate_action(
    ctx: &mut Ctx,
    route: &FileRoute,
    aggregate: &Spanned<crate::aggregate::config::FileAggregate>,
    prefix: &str,
    upstreams: &UpstreamIds,
) -> Option<Action> {
    if route.upstream.is_some() || route.mock.is_some() {
        let why = "set one of `upstream`, `mock` or `aggregate`";
        ctx.error(aggregate.span(), format!("{prefix}.aggregate"), why);
        return None;
    }
    refuse_proxy_settings(ctx, route, prefix);
    let params = PathParams::of(route.path.get_ref());
    let key = format!("{prefix}.aggregate");
    crate::aggregate::config::build(ctx, aggregate.get_ref(), &key, &params.names, upstreams)
        .map(Action::Aggregate)
}

fn proxy(
    ctx: &mut Ctx,
    route: &FileRoute,
    prefix: &str,
    upstream: &Spanned<String>,
    upstreams: &UpstreamIds,
) -> Option<ProxyAction> {
    let id = upstreams.get(upstream.get_ref()).copied();
    if id.is_none() {
        let known = if upstreams.is_empty() {
            "no upstreams are defined".to_owned()
        } else {
            format!(
                "known: {}",
                upstreams
                    .keys()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        ctx.error(
            upstream.span(),
            format!("{prefix}.upstream"),
            format!("unknown upstream \"{}\" ({known})", upstream.get_ref()),
        );
    }

    let mut ok = true;
    if let Some(strip) = &route.strip_prefix {
        let text = strip.get_ref();
        let path = route.path.get_ref();
        // The literal part of the pattern, before its first parameter.
        let literal = &path[..path.find('{').unwrap_or(path.len())];
        let why = if !text.starts_with('/') {
            Some("must start with '/'".to_owned())
        } else if text.ends_with('/') {
            Some("must not end with '/': the forwarded path must keep its leading slash".to_owned())
        } else if !literal.starts_with(text.as_str()) {
            Some(format!(
                "is not a prefix of the literal part \"{literal}\" of path \"{path}\""
            ))
        } else if literal.len() > text.len() && literal.as_bytes().get(text.len()) != Some(&b'/') {
            Some(format!(
                "must end at a '/' boundary of path \"{path}\" (it would cut a segment in two)"
            ))
        } else {
            None
        };
        if let Some(why) = why {
            ctx.error(
                strip.span(),
                format!("{prefix}.strip_prefix"),
                format!("\"{text}\" {why}"),
            );
            ok = false;
        }
    }

    let preserve_host = match (&route.preserve_host, &route.host_rewrite) {
        (Some(preserve), Some(_)) if *preserve.get_ref() => {
            ctx.error(
                preserve.span(),
                format!("{prefix}.preserve_host"),
                "`preserve_host = true` contradicts `host_rewrite`; remove one",
            );
            ok = false;
            true
        }
        (_, Some(_)) => false,
        (Some(preserve), None) => *preserve.get_ref(),
        (None, None) => true,
    };
    if let Some(rewrite) = &route.host_rewrite {
        let text = rewrite.get_ref();
        if !is_host_header(text) {
            ctx.error(
                rewrite.span(),
                format!("{prefix}.host_rewrite"),
                format!("invalid host \"{text}\": expected host or host:port"),
            );
            ok = false;
        }
    }

    let websocket = match &route.upgrades {
        Some(upgrades) => {
            let parsed = upgrade_protocols(ctx, upgrades.get_ref(), &format!("{prefix}.upgrades"));
            ok &= parsed.is_some();
            parsed.unwrap_or(false)
        }
        None => false,
    };

    (ok && id.is_some()).then(|| ProxyAction {
        websocket,
        retry_non_idempotent: route
            .retry_non_idempotent
            .as_ref()
            .is_some_and(|r| *r.get_ref()),
        upstream: id.unwrap_or_default(),
        strip_prefix: route.strip_prefix.as_ref().map(|s| s.get_ref().clone()),
        preserve_host,
        host_rewrite: route.host_rewrite.as_ref().map(|s| s.get_ref().clone()),
    })
}

/// A route's `upgrades`: whether it lists `websocket`, the one protocol a tunnel may carry;
/// `None` after an error. `h2c` is refused by name: Strait does not speak cleartext HTTP/2,
/// and a tunnel to an upstream that does would carry requests no filter ever saw (the
/// "h2c smuggling" of proxies that pass the upgrade through).
fn upgrade_protocols(ctx: &mut Ctx, upgrades: &[Spanned<String>], key: &str) -> Option<bool> {
    let mut ok = true;
    let mut websocket = false;
    for protocol in upgrades {
        match protocol.get_ref().to_ascii_lowercase().as_str() {
            "websocket" => websocket = true,
            "h2c" => {
                ctx.error(
                    protocol.span(),
                    key,
                    "\"h2c\" cannot be tunnelled: Strait does not speak cleartext HTTP/2, and \
                     a tunnel would carry requests past the route's filters",
                );
                ok = false;
            }
            _ => {
                ctx.error(
                    protocol.span(),
                    key,
                    format!(
                        "unknown upgrade \"{}\" (known: websocket)",
                        protocol.get_ref()
                    ),
                );
                ok = false;
            }
        }
    }
    ok.then_some(websocket)
}

fn mock_response(ctx: &mut Ctx, mock: &FileMock, key: &str) -> Option<MockResponse> {
    let mut ok = true;
    let raw_status = *mock.status.get_ref();
    // A mock is the final answer, so informational 1xx (and 101's protocol switch) are out.
    let status = match u16::try_from(raw_status) {
        Ok(status) if (200..=599).contains(&status) => status,
        _ => {
            ctx.error(
                mock.status.span(),
                format!("{key}.status"),
                format!("{raw_status} is not a final status: must be 200..=599"),
            );
            ok = false;
            200
        }
    };
    let bodyless = status == 204 || status == 304;

    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status));
    let mut seen: Vec<String> = Vec::new();
    for (name, value) in &mock.headers {
        let header_key = format!("{key}.headers.{}", name.get_ref());
        let lower = name.get_ref().to_ascii_lowercase();
        if name.get_ref().is_empty() || !name.get_ref().bytes().all(is_tchar) {
            ctx.error(
                name.span(),
                &header_key,
                format!("invalid header name \"{}\"", name.get_ref()),
            );
            ok = false;
        } else if RESERVED_MOCK_HEADERS.contains(&lower.as_str()) {
            ctx.error(
                name.span(),
                &header_key,
                format!(
                    "\"{}\" is set by strait and cannot be configured",
                    name.get_ref()
                ),
            );
            ok = false;
        } else if seen.contains(&lower) {
            ctx.error(
                name.span(),
                &header_key,
                format!(
                    "header \"{}\" is set twice (names are case-insensitive)",
                    name.get_ref()
                ),
            );
            ok = false;
        }
        seen.push(lower);
        let text = value.get_ref();
        // RFC 9110 §5.5: visible ASCII with inner spaces/tabs; CR/LF would split the head.
        let valid = text
            .bytes()
            .all(|b| b == b' ' || b == b'\t' || (0x21..0x7f).contains(&b))
            && !text.starts_with([' ', '\t'])
            && !text.ends_with([' ', '\t']);
        if !valid {
            let why = "invalid header value: use visible ASCII, no CR/LF or control \
                       characters, no leading/trailing blanks";
            ctx.error(value.span(), &header_key, why);
            ok = false;
        }
        let _ = write!(head, "{}: {}\r\n", name.get_ref(), text);
    }

    let body: Option<(Vec<u8>, Range<usize>, &str)> = match (&mock.body, &mock.body_file) {
        (Some(_), Some(file)) => {
            ctx.error(
                file.span(),
                format!("{key}.body_file"),
                "set either `body` or `body_file`, not both",
            );
            ok = false;
            None
        }
        (Some(body), None) => Some((body.get_ref().clone().into_bytes(), body.span(), "body")),
        (None, Some(file)) => {
            let bytes = ctx.read_relative(file, &format!("{key}.body_file"));
            ok &= bytes.is_some();
            bytes.map(|bytes| (bytes, file.span(), "body_file"))
        }
        (None, None) => None,
    };
    let body = match body {
        Some((_, span, field)) if bodyless => {
            ctx.error(
                span,
                format!("{key}.{field}"),
                format!("a {status} response has no body"),
            );
            ok = false;
            Vec::new()
        }
        Some((bytes, _, _)) => bytes,
        None => Vec::new(),
    };
    // RFC 9110 §8.6: no Content-Length on 204; on 304 it would describe the cached
    // representation, which a mock does not have.
    if !bodyless {
        let _ = write!(head, "content-length: {}\r\n", body.len());
    }
    ok.then(|| MockResponse {
        status,
        head: Bytes::from(head),
        body: Bytes::from(body),
    })
}

#[cfg(test)]
mod tests {

    const MINIMAL: &str = "[server]\nlisten = [\"127.0.0.1:8080\"]\n";

    use crate::config::load_errors as errors;

    #[test]
    fn conflicting_patterns_name_both_routes() {
        let text = format!(
            "{MINIMAL}[[routes]]\nname = \"a\"\npath = \"/u/{{id}}\"\nmock = {{ status = 200 }}\n\
             [[routes]]\nname = \"b\"\npath = \"/u/{{name}}\"\nmock = {{ status = 200 }}\n"
        );
        assert_eq!(
            errors(&text),
            vec![
                "t.toml:9:8: routes[1].path: path \"/u/{name}\" conflicts with route \"a\" \
                 (routes[0]) (path \"/u/{id}\"): the router cannot tell them apart (rename the \
                 parameter or merge the routes)"
            ]
        );
    }
}
