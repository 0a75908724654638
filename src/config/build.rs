//! Validation: the [`file`](super::file) mirror in, runtime [`Config`] or a list of errors out.
//!
//! Runs on the main thread at start, on `--check` and on reload, never on a worker (it reads
//! `body_file`s). It never stops at the first bad value: every problem is collected, each as
//! `file:line:column: key.path: what is wrong`, so one run of `strait --check` shows them all.
//! Only a TOML syntax or type error is reported alone, since nothing after it can be trusted.
//! Everything constant per response (mock heads and bodies) is rendered here, once.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use toml::Spanned;

use super::file::{FileConfig, FileMock, FileRoute, FileServer};
use super::{Action, Config, Limits, MockResponse, ProxyAction, Route, ServerConfig, Timeouts};
use crate::access;
use crate::admin;
use crate::auth;
use crate::observe;
use crate::ratelimit;
use crate::router::RouteTable;
use crate::settings::{is_host_header, is_tchar, key_hint, ConfigErrors, Ctx};
use crate::upstream;
use crate::upstream::config::{Resolve, UpstreamIds};

const DEFAULT_MAX_HEADER_BYTES: u64 = 16 * 1024;
const DEFAULT_MAX_HEADERS: i64 = 100;
const DEFAULT_MAX_BODY_BYTES: u64 = 10 * 1024 * 1024;
const DEFAULT_MAX_URI_BYTES: u64 = 8 * 1024;
const DEFAULT_HEADER_READ: Duration = Duration::from_secs(10);
const DEFAULT_KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
const DEFAULT_BODY_READ: Duration = Duration::from_secs(30);
const DEFAULT_UPSTREAM_CONNECT: Duration = Duration::from_secs(2);
const DEFAULT_UPSTREAM_RESPONSE: Duration = Duration::from_secs(30);
const DEFAULT_DRAIN: Duration = Duration::from_secs(30);
const DEFAULT_CLIENT_SEND: Duration = Duration::from_secs(60);

/// The system resolver (`getaddrinfo`, blocking).
fn system_resolve(host_port: &str) -> std::io::Result<Vec<SocketAddr>> {
    host_port.to_socket_addrs().map(Iterator::collect)
}
/// More than this many headers per request is a configuration mistake, not a need.
const MAX_MAX_HEADERS: i64 = crate::http1::MAX_HEADERS_CAP as i64;

/// Header names a mock may not set: strait frames the body itself (RFC 9112 §6) and the
/// connection loop owns persistence, so a user value could only contradict them.
const RESERVED_MOCK_HEADERS: &[&str] = &["content-length", "transfer-encoding", "connection"];

/// The canonical reason phrase for `status` (RFC 9110 §15), or `""` when not in the table
/// (a reason phrase is optional: the status line then ends in `"{status} \r\n"`).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        207 => "Multi-Status",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        418 => "I'm a teapot",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        506 => "Variant Also Negotiates",
        507 => "Insufficient Storage",
        508 => "Loop Detected",
        511 => "Network Authentication Required",
        _ => "",
    }
}

/// Reads and validates the config file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let origin = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => load_str(&text, &origin),
        Err(err) => Err(ConfigErrors::single(
            &origin,
            format!("cannot read config file: {err}"),
        )),
    }
}

/// Validates config `text`; `origin` names it in messages, and relative `body_file` paths
/// resolve against its parent directory. Host-name endpoints are resolved with the system
/// resolver (blocking): never call this on a worker.
pub fn load_str(text: &str, origin: &str) -> Result<Config, ConfigErrors> {
    load_str_with(text, origin, &system_resolve)
}

/// [`load_str`] with the host-name resolver given.
pub(crate) fn load_str_with(
    text: &str,
    origin: &str,
    resolve: Resolve<'_>,
) -> Result<Config, ConfigErrors> {
    let mut ctx = Ctx::new(text, origin);
    let file: FileConfig = match toml::from_str(text) {
        Ok(file) => file,
        Err(err) => {
            let (position, key) = match err.span() {
                Some(span) => (Some(ctx.line_col(span.start)), key_hint(text, span.start)),
                None => (None, String::new()),
            };
            let message = err.message().trim().replace('\n', " ");
            ctx.push(position, key, message);
            return Err(ConfigErrors {
                errors: ctx.into_errors(),
            });
        }
    };
    let config = ctx.build(file, resolve);
    match config {
        Some(config) if ctx.error_count() == 0 => Ok(config),
        _ => Err(ConfigErrors {
            errors: ctx.into_errors(),
        }),
    }
}

impl Ctx<'_> {
    fn build(&mut self, file: FileConfig, resolve: Resolve<'_>) -> Option<Config> {
        let server = self.server(file.server);
        let (upstreams, upstream_ids) = upstream::config::build(self, file.upstreams, resolve);
        let consumers = auth::config::consumers(self, file.consumers);
        let has_keys = consumers.iter().any(|c| !c.api_keys.is_empty());
        let (oauth2_providers, provider_ids) =
            auth::oauth2::config::providers(self, file.oauth2_providers, &upstream_ids);
        let jwt_providers = auth::jwt::config::providers(self, file.jwt_providers);
        let has_cluster = file.cluster.is_some();
        let cluster = file
            .cluster
            .as_ref()
            .and_then(|c| ratelimit::config::cluster(self, c));
        let routes = self.routes(
            file.routes,
            &upstream_ids,
            has_keys,
            &provider_ids,
            &jwt_providers,
            has_cluster,
        );
        let admin = admin::config::build(self, file.admin);
        let observability = observe::config::build(self, file.observability);
        Some(Config {
            server: server?,
            upstreams,
            routes: routes?,
            consumers,
            oauth2_providers,
            admin: admin?,
            observability,
            cluster,
        })
    }

    // ---- [server] ----

    fn server(&mut self, server: FileServer) -> Option<ServerConfig> {
        let mut listen = Vec::new();
        if server.listen.get_ref().is_empty() {
            self.error(
                server.listen.span(),
                "server.listen",
                "at least one address is required",
            );
        }
        for (index, addr) in server.listen.get_ref().iter().enumerate() {
            let key = format!("server.listen[{index}]");
            let Some(parsed) = self.socket_addr(addr, &key) else {
                continue;
            };
            if listen.contains(&parsed) {
                self.error(addr.span(), key, format!("duplicate address \"{parsed}\""));
            } else {
                listen.push(parsed);
            }
        }

        let workers = match &server.workers {
            None => 0,
            Some(value) => self
                .count(value, "server.workers", 0, i64::MAX)
                .unwrap_or(0),
        };

        let l = &server.limits;
        let limits = Limits {
            max_header_bytes: self.size_usize(
                &l.max_header_bytes,
                "server.limits.max_header_bytes",
                DEFAULT_MAX_HEADER_BYTES,
            ),
            max_headers: match &l.max_headers {
                None => DEFAULT_MAX_HEADERS as usize,
                Some(value) => self
                    .count(value, "server.limits.max_headers", 1, MAX_MAX_HEADERS)
                    .unwrap_or(0),
            },
            max_body_bytes: self.size(
                &l.max_body_bytes,
                "server.limits.max_body_bytes",
                DEFAULT_MAX_BODY_BYTES,
            ),
            max_uri_bytes: self.size_usize(
                &l.max_uri_bytes,
                "server.limits.max_uri_bytes",
                DEFAULT_MAX_URI_BYTES,
            ),
        };

        let t = &server.timeouts;
        let timeouts = Timeouts {
            header_read: self.duration(
                &t.header_read,
                "server.timeouts.header_read",
                DEFAULT_HEADER_READ,
            ),
            keepalive_idle: self.duration(
                &t.keepalive_idle,
                "server.timeouts.keepalive_idle",
                DEFAULT_KEEPALIVE_IDLE,
            ),
            body_read: self.duration(&t.body_read, "server.timeouts.body_read", DEFAULT_BODY_READ),
            upstream_connect: self.duration(
                &t.upstream_connect,
                "server.timeouts.upstream_connect",
                DEFAULT_UPSTREAM_CONNECT,
            ),
            upstream_response: self.duration(
                &t.upstream_response,
                "server.timeouts.upstream_response",
                DEFAULT_UPSTREAM_RESPONSE,
            ),
            drain: self.duration(&t.drain, "server.timeouts.drain", DEFAULT_DRAIN),
            client_send: self.duration(
                &t.client_send,
                "server.timeouts.client_send",
                DEFAULT_CLIENT_SEND,
            ),
        };
        let access = server
            .access
            .as_ref()
            .map(|a| access::config::access_list(self, a, "server.access"))
            .unwrap_or_default();
        let trusted_proxies = access::config::cidrs(
            self,
            server.trusted_proxies.as_deref(),
            "server.trusted_proxies",
        );
        Some(ServerConfig {
            listen,
            workers,
            limits,
            timeouts,
            access,
            trusted_proxies,
        })
    }

    // ---- [[routes]] ----

    fn routes(
        &mut self,
        file_routes: Vec<Spanned<FileRoute>>,
        upstreams: &UpstreamIds,
        has_keys: bool,
        providers: &auth::oauth2::config::ProviderIds,
        jwt_providers: &auth::jwt::config::Providers,
        has_cluster: bool,
    ) -> Option<RouteTable> {
        let mut routes = Vec::new();
        let mut hosts = Vec::new();
        // Spans of each route's path and hosts, for the router's errors.
        let mut spans: Vec<(Range<usize>, Vec<Range<usize>>)> = Vec::new();
        let mut names: HashMap<String, usize> = HashMap::new();

        for (index, route) in file_routes.into_iter().enumerate() {
            let span = route.span();
            let route = route.into_inner();
            let prefix = format!("routes[{index}]");

            let name = match &route.name {
                None => prefix.clone(),
                Some(name) => {
                    if name.get_ref().trim().is_empty() {
                        self.error(name.span(), format!("{prefix}.name"), "must not be empty");
                    }
                    name.get_ref().clone()
                }
            };
            if let Some(first) = names.insert(name.clone(), index) {
                let at = route.name.as_ref().map_or(span.clone(), Spanned::span);
                self.error(
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
                self.error(route.path.span(), format!("{prefix}.path"), why);
            }

            // The router validates and normalises host patterns and reports bad ones.
            let mut host_spans = Vec::new();
            let mut route_hosts = Vec::new();
            if let Some(list) = &route.hosts {
                if list.get_ref().is_empty() {
                    self.error(
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
            let methods = self.methods(&route, &prefix);
            let action = self.action(&route, &prefix, span.clone(), upstreams);
            let rate_limits = ratelimit::config::rate_limits(
                self,
                route.rate_limits.as_deref(),
                &prefix,
                has_cluster,
            );
            let auth = route.auth.as_ref().and_then(|auth| {
                auth::config::route_auth(
                    self,
                    auth,
                    &prefix,
                    has_keys,
                    providers,
                    jwt_providers,
                    &methods,
                )
            });
            let access = route
                .access
                .as_ref()
                .map(|a| access::config::access_list(self, a, &format!("{prefix}.access")))
                .filter(|a| !a.is_empty());
            let cors = route.cors.as_ref().and_then(|cors| {
                crate::cors::config::policy(self, cors, &format!("{prefix}.cors"), &methods)
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
            routes.push(Route {
                name,
                path,
                methods,
                action,
                rate_limits,
                auth,
                access,
                cors,
            });
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
                            self.error(span, format!("routes[{index}].hosts[{h}]"), error.message)
                        }
                        None => {
                            self.error(path_span, format!("routes[{index}].path"), error.message)
                        }
                    }
                }
                None
            }
        }
    }

    /// Upper-cased, de-duplicated method names; empty = any method.
    fn methods(&mut self, route: &FileRoute, prefix: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (i, method) in route.methods.iter().flatten().enumerate() {
            let text = method.get_ref();
            if text.is_empty() || !text.bytes().all(is_tchar) {
                self.error(
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
        &mut self,
        route: &FileRoute,
        prefix: &str,
        span: Range<usize>,
        upstreams: &UpstreamIds,
    ) -> Option<Action> {
        match (&route.upstream, &route.mock) {
            (Some(_), Some(mock)) => {
                self.error(
                    mock.span(),
                    format!("{prefix}.mock"),
                    "set either `upstream` or `mock`, not both",
                );
                None
            }
            (None, None) => {
                self.error(
                    span,
                    prefix,
                    "no action: set `upstream = \"name\"` or `mock = { status = 200, ... }`",
                );
                None
            }
            (Some(upstream), None) => self
                .proxy(route, prefix, upstream, upstreams)
                .map(Action::Proxy),
            (None, Some(mock)) => {
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
                ] {
                    if let Some(span) = span {
                        self.error(
                            span,
                            format!("{prefix}.{field}"),
                            "only applies to routes with an `upstream`",
                        );
                    }
                }
                self.mock(mock.get_ref(), &format!("{prefix}.mock"))
                    .map(Action::Mock)
            }
        }
    }

    fn proxy(
        &mut self,
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
            self.error(
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
                Some(
                    "must not end with '/': the forwarded path must keep its leading slash"
                        .to_owned(),
                )
            } else if !literal.starts_with(text.as_str()) {
                Some(format!(
                    "is not a prefix of the literal part \"{literal}\" of path \"{path}\""
                ))
            } else if literal.len() > text.len()
                && literal.as_bytes().get(text.len()) != Some(&b'/')
            {
                Some(format!(
                    "must end at a '/' boundary of path \"{path}\" (it would cut a segment in two)"
                ))
            } else {
                None
            };
            if let Some(why) = why {
                self.error(
                    strip.span(),
                    format!("{prefix}.strip_prefix"),
                    format!("\"{text}\" {why}"),
                );
                ok = false;
            }
        }

        let preserve_host = match (&route.preserve_host, &route.host_rewrite) {
            (Some(preserve), Some(_)) if *preserve.get_ref() => {
                self.error(
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
                self.error(
                    rewrite.span(),
                    format!("{prefix}.host_rewrite"),
                    format!("invalid host \"{text}\": expected host or host:port"),
                );
                ok = false;
            }
        }

        (ok && id.is_some()).then(|| ProxyAction {
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

    fn mock(&mut self, mock: &FileMock, key: &str) -> Option<MockResponse> {
        let mut ok = true;
        let raw_status = *mock.status.get_ref();
        // A mock is the final answer, so informational 1xx (and 101's protocol switch) are out.
        let status = match u16::try_from(raw_status) {
            Ok(status) if (200..=599).contains(&status) => status,
            _ => {
                self.error(
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
                self.error(
                    name.span(),
                    &header_key,
                    format!("invalid header name \"{}\"", name.get_ref()),
                );
                ok = false;
            } else if RESERVED_MOCK_HEADERS.contains(&lower.as_str()) {
                self.error(
                    name.span(),
                    &header_key,
                    format!(
                        "\"{}\" is set by strait and cannot be configured",
                        name.get_ref()
                    ),
                );
                ok = false;
            } else if seen.contains(&lower) {
                self.error(
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
                self.error(value.span(), &header_key, why);
                ok = false;
            }
            let _ = write!(head, "{}: {}\r\n", name.get_ref(), text);
        }

        let body: Option<(Vec<u8>, Range<usize>, &str)> = match (&mock.body, &mock.body_file) {
            (Some(_), Some(file)) => {
                self.error(
                    file.span(),
                    format!("{key}.body_file"),
                    "set either `body` or `body_file`, not both",
                );
                ok = false;
                None
            }
            (Some(body), None) => Some((body.get_ref().clone().into_bytes(), body.span(), "body")),
            (None, Some(file)) => {
                let bytes = self.read_relative(file, &format!("{key}.body_file"));
                ok &= bytes.is_some();
                bytes.map(|bytes| (bytes, file.span(), "body_file"))
            }
            (None, None) => None,
        };
        let body = match body {
            Some((_, span, field)) if bodyless => {
                self.error(
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::RouteMatch;

    const MINIMAL: &str = "[server]\nlisten = [\"127.0.0.1:8080\"]\n";

    fn errors(text: &str) -> Vec<String> {
        match load_str(text, "t.toml") {
            Ok(_) => Vec::new(),
            Err(errors) => errors.errors.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn trusted_proxies() {
        let config = |list: &str| {
            format!("[server]\nlisten = [\"127.0.0.1:1\"]\ntrusted_proxies = [{list}]\n")
        };
        assert_eq!(
            errors(&config("\"10.0.0.0/8\", \"x\", \"::1/129\"")),
            [
                "t.toml:3:34: server.trusted_proxies[1]: invalid IP address \"x\" in \"x\"",
                "t.toml:3:39: server.trusted_proxies[2]: invalid prefix length \"129\": must be 0..=128",
            ]
        );
        let built = load_str(&config("\"10.0.0.0/8\", \"::1\""), "t.toml").unwrap();
        let want = ["10.0.0.0/8", "::1"].map(|c| crate::access::Cidr::parse(c).unwrap());
        assert_eq!(built.server.trusted_proxies, want);
        assert!(load_str(MINIMAL, "t.toml")
            .unwrap()
            .server
            .trusted_proxies
            .is_empty());
    }

    #[test]
    fn shipped_configs_load() {
        let mut files = Vec::new();
        for dir in ["conf", "conf/examples"] {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "toml") {
                    files.push(path);
                }
            }
        }
        assert!(files.len() >= 2, "{files:?}");
        for path in files {
            if let Err(err) = load(&path) {
                panic!("{}:\n{err}", path.display());
            }
        }
        load_str(super::super::EMBEDDED_DEFAULT, "<embedded default>").unwrap();
    }

    #[test]
    fn example_gateway_routes() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/examples/api-gateway.toml");
        let config = load(&path).unwrap();
        let table = &config.routes;
        let cases: &[(Option<&str>, &str, &str, &str)] = &[
            (Some("api.example.com"), "GET", "/users/1", "users-read"),
            (
                Some("API.example.com:8080"),
                "HEAD",
                "/users/1",
                "users-read",
            ),
            (Some("api.example.com"), "DELETE", "/users/1", "users-write"),
            (Some("api.example.com"), "GET", "/users/", "users-read"),
            (Some("api.example.com"), "GET", "/users", "fallback"),
            (
                Some("api.example.com"),
                "GET",
                "/billing/x",
                "billing-maintenance",
            ),
            (Some("api.example.com"), "GET", "/healthz", "health"),
            (Some("api.example.com"), "POST", "/healthz", "405 GET, HEAD"),
            (Some("a.tenants.example.com"), "GET", "/x", "tenants"),
            // A more specific pattern beats a host-specific catch-all.
            (Some("a.tenants.example.com"), "GET", "/healthz", "health"),
            (Some("tenants.example.com"), "GET", "/users/1", "fallback"),
            (None, "GET", "/orders/1", "fallback"),
        ];
        for (host, method, path, want) in cases {
            let got = match table.lookup(host.map(str::as_bytes), method.as_bytes(), path) {
                RouteMatch::Found(route) => route.name.clone(),
                RouteMatch::MethodNotAllowed { allow } => format!("405 {allow}"),
                RouteMatch::NotFound => "404".to_owned(),
            };
            assert_eq!(&got, want, "{host:?} {method} {path}");
        }
        // A preflight goes to the route serving the method it asks about; with none
        // there, to the first route with cors (which refuses it); else to normal routing.
        let host = Some(&b"api.example.com"[..]);
        let preflights: &[(&str, &str, Option<&str>)] = &[
            ("PUT", "/users/1", Some("users-write")),
            ("GET", "/users/1", Some("users-read")),
            ("HEAD", "/users/1", Some("users-read")),
            ("TRACE", "/users/1", Some("users-read")),
            ("GET", "/orders/1", None),
            ("PUT", "/healthz", None),
            ("GET", "/nowhere", None),
        ];
        for (method, path, want) in preflights {
            let got = table.lookup_preflight(host, method.as_bytes(), path);
            assert_eq!(got.map(|r| r.name.as_str()), *want, "{method} {path}");
        }
        assert_eq!(config.server.trusted_proxies.len(), 1);
    }

    #[test]
    fn defaults() {
        let config = load_str(MINIMAL, "t.toml").unwrap();
        let s = &config.server;
        assert_eq!(
            s.listen,
            vec!["127.0.0.1:8080".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(s.workers, 0);
        assert_eq!(s.limits.max_header_bytes, 16 * 1024);
        assert_eq!(s.limits.max_headers, 100);
        assert_eq!(s.limits.max_body_bytes, 10 * 1024 * 1024);
        assert_eq!(s.limits.max_uri_bytes, 8 * 1024);
        assert_eq!(s.timeouts.header_read, Duration::from_secs(10));
        assert_eq!(s.timeouts.keepalive_idle, Duration::from_secs(60));
        assert_eq!(s.timeouts.body_read, Duration::from_secs(30));
        assert_eq!(s.timeouts.upstream_connect, Duration::from_secs(2));
        assert_eq!(s.timeouts.upstream_response, Duration::from_secs(30));
        assert!(config.upstreams.is_empty());
        assert!(config.routes.routes().is_empty());
    }

    #[test]
    fn full_config() {
        let text = r#"
[server]
listen = ["127.0.0.1:8080", "[::1]:8080"]
workers = 4
[server.limits]
max_body_bytes = 1024
max_header_bytes = "32KiB"
[server.timeouts]
header_read = "250ms"

[upstreams.users]
endpoints = ["127.0.0.1:9001", { addr = "127.0.0.1:9002", weight = 2 }]
[upstreams.users.pool]
max_idle = 8

[[routes]]
name = "users"
path = "/users/{*rest}"
methods = ["get", "post"]
hosts = ["API.example.com"]
upstream = "users"
strip_prefix = "/users"
host_rewrite = "users.internal"

[[routes]]
path = "/"
mock = { status = 200, headers = { content-type = "application/json" }, body = '{"a":1}' }

[[routes]]
path = "/empty"
mock = { status = 204, headers = { x-a = "b" } }
"#;
        let config = load_str(text, "t.toml").unwrap();
        assert_eq!(config.server.listen.len(), 2);
        assert_eq!(config.server.workers, 4);
        assert_eq!(config.server.limits.max_body_bytes, 1024);
        assert_eq!(config.server.limits.max_header_bytes, 32 * 1024);
        assert_eq!(
            config.server.timeouts.header_read,
            Duration::from_millis(250)
        );
        let users = &config.upstreams[0];
        assert_eq!(users.endpoints[1].weight, 2);
        assert_eq!(users.endpoints[0].weight, 1);
        assert_eq!(users.pool.max_idle, 8);
        assert_eq!(users.pool.idle_timeout, Duration::from_secs(60));

        let routes = config.routes.routes();
        assert_eq!(routes[0].name, "users");
        assert_eq!(routes[0].methods, vec!["GET", "POST"]);
        match &routes[0].action {
            Action::Proxy(p) => {
                assert_eq!(p.upstream, 0);
                assert_eq!(p.strip_prefix.as_deref(), Some("/users"));
                assert!(!p.preserve_host);
                assert_eq!(p.host_rewrite.as_deref(), Some("users.internal"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(routes[1].name, "routes[1]");
        match &routes[1].action {
            Action::Mock(m) => {
                assert_eq!(
                    &m.head[..],
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 7\r\n"
                );
                assert_eq!(&m.body[..], br#"{"a":1}"#);
            }
            other => panic!("{other:?}"),
        }
        match &routes[2].action {
            Action::Mock(m) => assert_eq!(&m.head[..], b"HTTP/1.1 204 No Content\r\nx-a: b\r\n"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            config.routes.lookup(Some(b"api.example.com"), b"GET", "/users/1"),
            RouteMatch::Found(r) if r.name == "users"
        ));
    }

    #[test]
    fn reports_every_error_with_position() {
        let text = r#"[server]
listen = ["127.0.0.1:8080", "nope", "127.0.0.1:8080"]
workers = -1
[server.limits]
max_body_bytes = "10 MiB"
max_headers = 0
[server.timeouts]
header_read = "0s"
body_read = "5"

[upstreams.users]
endpoints = ["127.0.0.1:9001", { addr = "127.0.0.1:9001" }, { addr = "1.2.3.4:1", weight = 0 }]
[upstreams.empty]
endpoints = []

[[routes]]
path = "/x"
upstream = "userz"

[[routes]]
path = "x"
mock = { status = 101, headers = { Content-Length = "1", "bad name" = "v", x-ok = "a\nb" } }

[[routes]]
path = "/y"
upstream = "users"
mock = { status = 200 }

[[routes]]
path = "/z"

[[routes]]
path = "/no-content"
methods = ["GET", "BAD METHOD"]
mock = { status = 204, body = "x", body_file = "f" }

[[routes]]
path = "/users/{*rest}"
upstream = "users"
strip_prefix = "/user"
preserve_host = true
host_rewrite = "a"

[[routes]]
path = "/a/{id}"
hosts = []
mock = { status = 200 }

[[routes]]
path = "/a/{name}"
hosts = ["a.com:80"]
mock = { status = 200 }

[[routes]]
path = "/dup"
mock = { status = 200 }

[[routes]]
path = "/dup"
mock = { status = 404, body_file = "does-not-exist.html" }
"#;
        let got = errors(text);
        let want = [
            "t.toml:2:29: server.listen[1]: invalid address \"nope\"",
            "t.toml:2:37: server.listen[2]: duplicate address \"127.0.0.1:8080\"",
            "t.toml:3:11: server.workers: -1 is out of range: must be at least 0",
            "t.toml:5:18: server.limits.max_body_bytes: invalid size \"10 MiB\"",
            "t.toml:6:15: server.limits.max_headers: 0 is out of range: must be 1..=256",
            "t.toml:8:15: server.timeouts.header_read: must be greater than zero",
            "t.toml:9:13: server.timeouts.body_read: invalid duration \"5\": missing unit",
            "t.toml:12:32: upstreams.users.endpoints[1]: duplicate endpoint \"127.0.0.1:9001\"",
            "t.toml:12:92: upstreams.users.endpoints[2].weight: 0 is out of range: must be 1..=1000",
            "t.toml:14:13: upstreams.empty.endpoints: at least one endpoint is required",
            "t.toml:18:12: routes[0].upstream: unknown upstream \"userz\" (known: empty, users)",
            "t.toml:21:8: routes[1].path: path \"x\" must start with '/'",
            "t.toml:22:19: routes[1].mock.status: 101 is not a final status",
            "t.toml:22:36: routes[1].mock.headers.Content-Length: \"Content-Length\" is set by strait",
            "t.toml:22:58: routes[1].mock.headers.bad name: invalid header name",
            "t.toml:22:83: routes[1].mock.headers.x-ok: invalid header value",
            "t.toml:27:8: routes[2].mock: set either `upstream` or `mock`, not both",
            "t.toml:29:1: routes[3]: no action",
            "t.toml:34:19: routes[4].methods[1]: invalid method \"BAD METHOD\"",
            "t.toml:35:48: routes[4].mock.body_file: set either `body` or `body_file`",
            "t.toml:40:16: routes[5].strip_prefix: \"/user\" must end at a '/' boundary",
            "t.toml:41:17: routes[5].preserve_host: `preserve_host = true` contradicts `host_rewrite`",
            "t.toml:46:9: routes[6].hosts: empty list",
            "t.toml:51:10: routes[7].hosts[0]: invalid host \"a.com:80\": must not include a port",
            "t.toml:59:8: routes[9].path: path \"/dup\" with any method conflicts with routes[8]: same hosts",
            "t.toml:60:36: routes[9].mock.body_file: cannot read \"does-not-exist.html\"",
        ];
        for (one, want) in got.iter().zip(want.iter()) {
            assert!(
                one.starts_with(want),
                "\n got: {one}\nwant: {want}\n all: {got:#?}"
            );
        }
        assert_eq!(got.len(), want.len(), "{got:#?}");
    }

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

    #[test]
    fn syntax_and_unknown_keys() {
        let cases: &[(&str, &str)] = &[
            ("[server]\nlisten = [\"127.0.0.1:1\"]\nworkerz = 1\n", "t.toml:3:1: server.workerz: unknown field `workerz`"),
            ("[server]\nlisten = [\"127.0.0.1:1\"]\n[server.timeouts]\nheader_read = 5\n", "t.toml:4:15: server.timeouts.header_read: invalid type: integer `5`, expected a duration with a unit"),
            ("[server]\nlisten = [\"127.0.0.1:1\"]\n[[routes]]\npath = \"/\"\nmock = { status = 200, bdy = \"x\" }\n", "t.toml:5:24: routes[0].mock: unknown field `bdy`"),
            ("[server]\nlisten = [\"127.0.0.1:1\"]\n[upstreams.u]\nendpoints = [{ adr = \"1.2.3.4:5\" }]\n", "t.toml:4:16: upstreams.u.endpoints: unknown field `adr`"),
            ("[server]\nlisten = [\"127.0.0.1:1\"]\n[upstreams.u]\nendpoints = [\"1.2.3.4:5\"]\n[upstreams.u.retry]\nattempt = 3\n", "t.toml:6:1: upstreams.u.retry.attempt: unknown field `attempt`"),
            ("[server]\nlisten = [\"127.0.0.1:1\"]\n[upstreams.u]\nendpoints = [\"1.2.3.4:5\"]\nhealth = { path = \"/\", intervall = \"1s\" }\n", "t.toml:5:24: upstreams.u.health: unknown field `intervall`"),
            ("[server]\nlisten = [\"127.0.0.1:1\"]\n[upstreams.u]\nendpoints = [\"1.2.3.4:5\"]\n[upstreams.u.retry]\non = \"reset\"\n", "t.toml:6:6: upstreams.u.retry.on: invalid type: string \"reset\", expected a sequence"),
            ("[server]\nlisten = [\"127.0.0.1:1\"\n", "t.toml:3:1: server: invalid array"),
            ("", "t.toml:1:1: missing field `server`"),
        ];
        for (text, want) in cases {
            let got = errors(text);
            assert_eq!(got.len(), 1, "{got:?}");
            assert!(got[0].starts_with(want), "\n got: {}\nwant: {want}", got[0]);
        }
    }

    #[test]
    fn size_forms_and_body_file() {
        let dir = std::env::temp_dir().join(format!("strait-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("page.html"), "<p>hi</p>").unwrap();
        let text = format!(
            "{MINIMAL}[server.limits]\nmax_body_bytes = 1024\nmax_uri_bytes = \"1KB\"\n\
             [[routes]]\npath = \"/\"\nmock = {{ status = 503, body_file = \"page.html\" }}\n"
        );
        let origin = dir.join("strait.toml").display().to_string();
        let config = load_str(&text, &origin).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(config.server.limits.max_body_bytes, 1024);
        assert_eq!(config.server.limits.max_uri_bytes, 1000);
        match &config.routes.routes()[0].action {
            Action::Mock(m) => {
                assert_eq!(&m.body[..], b"<p>hi</p>");
                assert_eq!(
                    &m.head[..],
                    b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 9\r\n"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn missing_file_names_it() {
        let err = load(Path::new("/nonexistent/strait.toml")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/nonexistent/strait.toml: cannot read config file"),
            "{err}"
        );
    }

    #[test]
    fn reasons() {
        let cases = [
            (200, "OK"),
            (404, "Not Found"),
            (431, "Request Header Fields Too Large"),
            (299, ""),
        ];
        for (status, reason) in cases {
            assert_eq!(reason_phrase(status), reason);
        }
    }
}
