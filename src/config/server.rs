//! `[server]`: listeners, workers, request limits and timeouts, the global access list and
//! the trusted proxies; the serde mirror, the runtime types and the validation. The limits
//! and timeouts are the connection loop's (`crate::proxy`), read by the codec too.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use toml::Spanned;

use crate::access::config::FileAccess;
use crate::access::{AccessList, Cidr};
use crate::http1::Limits;
use crate::proxy_protocol::config::FileProxyProtocol;
use crate::proxy_protocol::ProxyProtocolListener;
use crate::settings::{Ctx, DurationValue, SizeValue};
use crate::tls::config::FileTlsListener;
use crate::tls::TlsListener;

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
/// An idle upgraded tunnel (a WebSocket) is closed after this, as nginx's `proxy_read_timeout`.
const DEFAULT_TUNNEL_IDLE: Duration = Duration::from_secs(60);
/// More than this many headers per request is a configuration mistake, not a need.
const MAX_MAX_HEADERS: i64 = crate::http1::MAX_HEADERS_CAP as i64;

// ---- the file ----

/// `[server]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileServer {
    /// Plaintext addresses; may be left out when `tls` lists some.
    pub listen: Option<Spanned<Vec<Spanned<String>>>>,
    pub workers: Option<Spanned<i64>>,
    #[serde(default)]
    pub limits: FileLimits,
    #[serde(default)]
    pub timeouts: FileTimeouts,
    #[serde(default)]
    pub paths: super::paths::FilePaths,
    #[serde(default)]
    pub http2: super::http2::FileHttp2,
    pub access: Option<FileAccess>,
    /// CIDRs whose `X-Forwarded-For` is believed (see `client_addr.rs`).
    pub trusted_proxies: Option<Vec<Spanned<String>>>,
    /// `[[server.tls]]`: TLS listeners (see `tls/config.rs`).
    #[serde(default)]
    pub tls: Vec<FileTlsListener>,
    /// PROXY headers on the plaintext listeners (see `proxy_protocol/`).
    pub proxy_protocol: Option<Spanned<FileProxyProtocol>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLimits {
    pub max_header_bytes: Option<Spanned<SizeValue>>,
    pub max_headers: Option<Spanned<i64>>,
    pub max_body_bytes: Option<Spanned<SizeValue>>,
    pub max_uri_bytes: Option<Spanned<SizeValue>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTimeouts {
    pub header_read: Option<Spanned<DurationValue>>,
    pub keepalive_idle: Option<Spanned<DurationValue>>,
    pub body_read: Option<Spanned<DurationValue>>,
    pub upstream_connect: Option<Spanned<DurationValue>>,
    pub upstream_response: Option<Spanned<DurationValue>>,
    pub drain: Option<Spanned<DurationValue>>,
    pub client_send: Option<Spanned<DurationValue>>,
    pub tunnel_idle: Option<Spanned<DurationValue>>,
    pub tunnel_lifetime: Option<Spanned<DurationValue>>,
}

// ---- runtime types ----

/// The validated `[server]`.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: Vec<SocketAddr>,
    /// 0 means one worker per available core.
    pub workers: usize,
    /// Where `workers` is set in the file (line, column), for the startup check against
    /// the CPUs the process may use (see `main.rs`).
    pub workers_position: Option<(usize, usize)>,
    pub limits: Limits,
    pub timeouts: Timeouts,
    /// `[server.paths]`: how request paths are normalised before routing.
    pub paths: crate::http1::path::PathRules,
    /// `[server.http2]`: HTTP/2 to clients, by ALPN and in cleartext.
    pub http2: super::http2::Http2,
    /// `[server.access]`: checked for every request before routing (empty: everyone).
    pub access: AccessList,
    /// Peers whose `X-Forwarded-For` names the client (empty: the TCP peer is the client).
    pub trusted_proxies: Vec<Cidr>,
    /// `[[server.tls]]`: listeners that speak TLS, each with its own addresses.
    pub tls: Vec<Arc<TlsListener>>,
    /// Every listener's `client_identity_header` (lower case, once each). A client's own
    /// copies are removed from every forwarded request, on every listener, whether or not
    /// it presented a certificate: only Strait sets them.
    pub identity_headers: Vec<Bytes>,
    /// Sources that may (or must) open a plaintext connection with a PROXY header.
    pub proxy_protocol: Option<ProxyProtocolListener>,
}

impl ServerConfig {
    /// Every address to listen on: the plaintext ones, then the TLS ones.
    pub fn all_listen(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.listen
            .iter()
            .copied()
            .chain(self.tls.iter().flat_map(|t| t.listen.iter().copied()))
    }

    /// The TLS listener serving `addr`, if `addr` is one.
    pub fn tls_at(&self, addr: SocketAddr) -> Option<&Arc<TlsListener>> {
        self.tls.iter().find(|t| t.listen.contains(&addr))
    }
}

#[derive(Debug, Clone)]
pub struct Timeouts {
    /// Time to receive a whole request head once its first byte arrived (408).
    pub header_read: Duration,
    /// How long an idle client keep-alive connection is kept open.
    pub keepalive_idle: Duration,
    /// Time allowed between two reads of a request body from the client (408).
    pub body_read: Duration,
    /// TCP connect to an upstream endpoint (504 on expiry, 502 on refusal).
    pub upstream_connect: Duration,
    /// From the request sent to the upstream response head received, and between two reads
    /// of the response body (504).
    pub upstream_response: Duration,
    /// On shutdown or upgrade, how long requests in flight may take to finish.
    pub drain: Duration,
    /// How long one write to a client may take: a client that stops reading is dropped
    /// (with the upstream connection serving it) instead of holding both.
    pub client_send: Duration,
    /// An upgraded tunnel with no byte either way for this long is closed.
    pub tunnel_idle: Duration,
    /// An upgraded tunnel is closed this long after it opened, busy or not; `None`: never.
    pub tunnel_lifetime: Option<Duration>,
}

// ---- validation ----

/// `[server]`: at least one distinct listen address, limits within their ranges, timeouts
/// greater than zero.
pub(super) fn build(ctx: &mut Ctx, server: FileServer) -> Option<ServerConfig> {
    let mut listen = Vec::new();
    let plain = server.listen.as_ref().map_or(&[][..], |l| l.get_ref());
    if plain.is_empty() && server.tls.is_empty() {
        let message = "at least one address is required (or a [[server.tls]] listener)";
        match &server.listen {
            Some(list) => ctx.error(list.span(), "server.listen", message),
            None => ctx.push(None, "server.listen".into(), message.into()),
        }
    }
    for (index, addr) in plain.iter().enumerate() {
        let key = format!("server.listen[{index}]");
        let Some(parsed) = ctx.socket_addr(addr, &key) else {
            continue;
        };
        if listen.contains(&parsed) {
            ctx.error(addr.span(), key, format!("duplicate address \"{parsed}\""));
        } else {
            listen.push(parsed);
        }
    }

    let http2 = super::http2::build(ctx, &server.http2);
    let mut tls = Vec::new();
    for (index, file) in server.tls.iter().enumerate() {
        let Some(built) = crate::tls::config::build(ctx, index, file, http2.tls) else {
            continue;
        };
        for (i, addr) in built.listen.iter().enumerate() {
            if listen.contains(addr)
                || tls
                    .iter()
                    .any(|t: &Arc<TlsListener>| t.listen.contains(addr))
            {
                let span = file.listen.get_ref()[i].span();
                let key = format!("server.tls[{index}].listen[{i}]");
                ctx.error(span, key, format!("duplicate address \"{addr}\""));
            }
        }
        tls.push(Arc::new(built));
    }

    let mut identity_headers: Vec<Bytes> = Vec::new();
    for name in tls.iter().filter_map(|t| t.identity_header.as_ref()) {
        if !identity_headers.contains(name) {
            identity_headers.push(name.clone());
        }
    }

    let workers = match &server.workers {
        None => 0,
        Some(value) => ctx.count(value, "server.workers", 0, i64::MAX).unwrap_or(0),
    };

    let l = &server.limits;
    let limits = Limits {
        max_header_bytes: ctx.size_usize(
            &l.max_header_bytes,
            "server.limits.max_header_bytes",
            DEFAULT_MAX_HEADER_BYTES,
        ),
        max_headers: match &l.max_headers {
            None => DEFAULT_MAX_HEADERS as usize,
            Some(value) => ctx
                .count(value, "server.limits.max_headers", 1, MAX_MAX_HEADERS)
                .unwrap_or(0),
        },
        max_body_bytes: ctx.size(
            &l.max_body_bytes,
            "server.limits.max_body_bytes",
            DEFAULT_MAX_BODY_BYTES,
        ),
        max_uri_bytes: ctx.size_usize(
            &l.max_uri_bytes,
            "server.limits.max_uri_bytes",
            DEFAULT_MAX_URI_BYTES,
        ),
    };

    let t = &server.timeouts;
    let timeouts = Timeouts {
        header_read: ctx.duration(
            &t.header_read,
            "server.timeouts.header_read",
            DEFAULT_HEADER_READ,
        ),
        keepalive_idle: ctx.duration(
            &t.keepalive_idle,
            "server.timeouts.keepalive_idle",
            DEFAULT_KEEPALIVE_IDLE,
        ),
        body_read: ctx.duration(&t.body_read, "server.timeouts.body_read", DEFAULT_BODY_READ),
        upstream_connect: ctx.duration(
            &t.upstream_connect,
            "server.timeouts.upstream_connect",
            DEFAULT_UPSTREAM_CONNECT,
        ),
        upstream_response: ctx.duration(
            &t.upstream_response,
            "server.timeouts.upstream_response",
            DEFAULT_UPSTREAM_RESPONSE,
        ),
        drain: ctx.duration(&t.drain, "server.timeouts.drain", DEFAULT_DRAIN),
        client_send: ctx.duration(
            &t.client_send,
            "server.timeouts.client_send",
            DEFAULT_CLIENT_SEND,
        ),
        tunnel_idle: ctx.duration(
            &t.tunnel_idle,
            "server.timeouts.tunnel_idle",
            DEFAULT_TUNNEL_IDLE,
        ),
        tunnel_lifetime: ctx.opt_duration(&t.tunnel_lifetime, "server.timeouts.tunnel_lifetime"),
    };
    let access = server
        .access
        .as_ref()
        .map(|a| crate::access::config::access_list(ctx, a, "server.access"))
        .unwrap_or_default();
    let trusted_proxies = crate::access::config::cidrs(
        ctx,
        server.trusted_proxies.as_deref(),
        "server.trusted_proxies",
    );
    let proxy_protocol = server
        .proxy_protocol
        .as_ref()
        .and_then(|p| crate::proxy_protocol::config::listener(ctx, p, "server.proxy_protocol"));
    Some(ServerConfig {
        listen,
        workers,
        workers_position: server
            .workers
            .as_ref()
            .map(|v| ctx.line_col(v.span().start)),
        limits,
        timeouts,
        paths: super::paths::build(ctx, &server.paths),
        http2,
        access,
        trusted_proxies,
        tls,
        identity_headers,
        proxy_protocol,
    })
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use crate::config::load_str;

    const MINIMAL: &str = "[server]\nlisten = [\"127.0.0.1:8080\"]\n";

    use crate::config::load_errors as errors;

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
}
