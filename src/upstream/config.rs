//! `[upstreams.NAME]`: endpoints (IP literals, or host names resolved at build), pooling,
//! balancing, active health checks, outlier detection, retries and circuit-breaker limits;
//! the serde mirror, the runtime types and the validation between them. `tls` has its own
//! module (`tls.rs`).
//!
//! The build resolves endpoint host names through the [`Resolve`] function it is given:
//! the one lookup a config build makes (off the request path: main, admin or resolver
//! thread), injected so that tests use a fake DNS.

use crate::proxy_protocol::ProxyVersion;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use toml::Spanned;

use super::tls::{FileUpstreamTls, UpstreamTls};
use crate::settings::{
    is_host_header, is_name, is_token, show_duration, Ctx, DurationValue, SizeValue,
};

/// Only a bound: reuse is most-recent-first, so the pool holds what the recent peak
/// concurrency needed and the idle timeout closes the rest (see `pool.rs`).
const DEFAULT_POOL_MAX_IDLE: i64 = 4096;
const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_WEIGHT: i64 = 1000;
const DEFAULT_RESOLVE_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_HEALTH_METHOD: &str = "GET";
const DEFAULT_HEALTH_EXPECT: (u16, u16) = (200, 399);
const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
const DEFAULT_HEALTHY_THRESHOLD: u32 = 2;
const DEFAULT_UNHEALTHY_THRESHOLD: u32 = 3;
const MAX_HEALTH_THRESHOLD: i64 = 100;
const DEFAULT_OUTLIER_FAILURES: u32 = 5;
const DEFAULT_BASE_EJECTION: Duration = Duration::from_secs(30);
const DEFAULT_MAX_EJECTION: Duration = Duration::from_secs(300);
const DEFAULT_MAX_EJECTED_PERCENT: u8 = 50;
const DEFAULT_RETRY_ATTEMPTS: u32 = 2;
/// Tries in all; more would turn one slow request into a storm.
const MAX_RETRY_ATTEMPTS: i64 = 10;
const DEFAULT_RETRY_BUDGET_PERCENT: u8 = 20;
const DEFAULT_RETRY_BUFFER_BODY: u64 = 64 * 1024;
/// Upstream statuses a retry may be configured on: the ones that say "not processed here"
/// (a gateway or availability failure), never an application's own answer.
const RETRYABLE_STATUSES: &[u16] = &[502, 503, 504];
const DEFAULT_BREAKER_LIMIT: usize = 10_000;

/// Resolves a `host:port` into its socket addresses: the one lookup a config build makes.
/// Builds call it off the request path (main or admin thread, resolver thread); the
/// assembly passes the system resolver, tests inject a fake one.
pub(crate) type Resolve<'a> = &'a dyn Fn(&str) -> std::io::Result<Vec<SocketAddr>>;

/// Upstream names, each with its index in [`super::Snapshot::upstreams`]: what a
/// route or an OAuth2 provider may name.
pub type UpstreamIds = BTreeMap<String, UpstreamId>;

// ---- the file ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileUpstream {
    pub endpoints: Spanned<Vec<Spanned<FileEndpoint>>>,
    #[serde(default)]
    pub pool: FilePool,
    pub balance: Option<Spanned<String>>,
    pub hash_key: Option<Spanned<String>>,
    pub resolve_interval: Option<Spanned<DurationValue>>,
    /// Spanned so that a missing `path` can point at the table.
    pub health: Option<Spanned<FileHealth>>,
    #[serde(default)]
    pub outlier: FileOutlier,
    #[serde(default)]
    pub retry: FileRetry,
    #[serde(default)]
    pub limits: FileBreakerLimits,
    /// `true`, or a table of TLS settings (`tls.rs`).
    pub tls: Option<Spanned<FileUpstreamTls>>,
    /// `"v1"` or `"v2"`: a PROXY header first on every connection.
    pub proxy_protocol: Option<Spanned<String>>,
    /// Speak HTTP/2 to the endpoints: h2 by ALPN with `tls`, h2c with prior knowledge
    /// without.
    pub http2: Option<Spanned<bool>>,
}

/// `[upstreams.NAME.health]`: active checks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileHealth {
    pub method: Option<Spanned<String>>,
    /// Required; optional here so that its absence is reported with the other errors.
    pub path: Option<Spanned<String>>,
    pub host: Option<Spanned<String>>,
    pub expect: Option<Spanned<Vec<Spanned<CodeValue>>>>,
    pub interval: Option<Spanned<DurationValue>>,
    pub timeout: Option<Spanned<DurationValue>>,
    pub healthy_threshold: Option<Spanned<i64>>,
    pub unhealthy_threshold: Option<Spanned<i64>>,
}

/// `[upstreams.NAME.outlier]`: passive health.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileOutlier {
    pub consecutive_failures: Option<Spanned<i64>>,
    pub base_ejection: Option<Spanned<DurationValue>>,
    pub max_ejection: Option<Spanned<DurationValue>>,
    pub max_ejected_percent: Option<Spanned<i64>>,
}

/// `[upstreams.NAME.retry]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRetry {
    pub attempts: Option<Spanned<i64>>,
    pub on: Option<Spanned<Vec<Spanned<CodeValue>>>>,
    pub per_try_timeout: Option<Spanned<DurationValue>>,
    pub timeout: Option<Spanned<DurationValue>>,
    pub budget_percent: Option<Spanned<i64>>,
    pub buffer_body: Option<Spanned<SizeValue>>,
}

/// `[upstreams.NAME.limits]`: the circuit breaker.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileBreakerLimits {
    pub max_connections: Option<Spanned<i64>>,
    pub max_pending: Option<Spanned<i64>>,
    pub max_requests: Option<Spanned<i64>>,
}

/// `"127.0.0.1:9001"` or `{ addr = "users.internal:9002", weight = 2 }` (`ip:port` or
/// `host:port`).
///
/// Deserialised by hand rather than `#[serde(untagged)]`: untagged buffers the value, which
/// loses both the spans and `deny_unknown_fields`' precise error.
#[derive(Debug)]
pub enum FileEndpoint {
    Addr(String),
    Table(FileEndpointTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEndpointTable {
    pub addr: Spanned<String>,
    pub weight: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePool {
    pub max_idle: Option<Spanned<i64>>,
    pub idle_timeout: Option<Spanned<DurationValue>>,
}

/// A status code or a word as written: `200`, `"200-399"`, `"503"`, `"reset"`. Integers are
/// accepted because `expect = [200]` is what people type.
#[derive(Debug)]
pub enum CodeValue {
    Int(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for FileEndpoint {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EndpointVisitor;
        impl<'de> Visitor<'de> for EndpointVisitor {
            type Value = FileEndpoint;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    r#"an address "ip:port" or "host:port", or a table { addr = "ip:port", weight = N }"#,
                )
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<FileEndpoint, E> {
                Ok(FileEndpoint::Addr(value.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FileEndpoint, A::Error> {
                // The fields are still read through toml's own deserializer, so their spans
                // and `deny_unknown_fields` survive.
                FileEndpointTable::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(FileEndpoint::Table)
            }
        }
        deserializer.deserialize_any(EndpointVisitor)
    }
}

impl<'de> Deserialize<'de> for CodeValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CodeVisitor;
        impl Visitor<'_> for CodeVisitor {
            type Value = CodeValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a status code such as 503 or "200-399", or a name"#)
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<CodeValue, E> {
                Ok(CodeValue::Int(value))
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<CodeValue, E> {
                Ok(CodeValue::Int(i64::try_from(value).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<CodeValue, E> {
                Ok(CodeValue::Text(value.to_owned()))
            }
        }
        deserializer.deserialize_any(CodeVisitor)
    }
}

// ---- runtime types ----

/// Index into [`super::Snapshot::upstreams`].
pub type UpstreamId = usize;

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub name: String,
    pub endpoints: Vec<Endpoint>,
    pub pool: PoolConfig,
    pub balance: BalancePolicy,
    /// Active health checks; `None` when `[upstreams.X.health]` is absent.
    pub health: Option<HealthCheckConfig>,
    pub outlier: OutlierConfig,
    pub retry: RetryPolicy,
    pub limits: BreakerLimits,
    /// TLS to the endpoints; plain TCP when `None`.
    pub tls: Option<UpstreamTls>,
    /// Host names among the endpoints are re-resolved this often (off the request path).
    pub resolve_interval: Duration,
    /// A PROXY header of this version starts every connection (`proxy_protocol/`): the
    /// client's, or LOCAL for Strait's own (health checks, introspection). Pooled
    /// connections are then reused only for the client they announced (`pool.rs`).
    pub proxy_protocol: Option<ProxyVersion>,
    /// HTTP/2 to the endpoints (`h2.rs`): requests become streams multiplexed over one
    /// connection per endpoint and worker.
    pub http2: bool,
    /// What all workers share of this upstream (Maglev table, health flags): empty from the
    /// build, filled in by the control plane before the snapshot is published.
    pub shared: crate::upstream::SharedUpstream,
}

/// How a worker picks an endpoint for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BalancePolicy {
    /// Smooth weighted round-robin (the default).
    RoundRobin,
    /// Two random endpoints, the one with fewer requests in flight (weights scale the count).
    P2c,
    /// The endpoint with the fewest requests in flight relative to its weight.
    LeastConn,
    /// Consistent hashing on a request key (Maglev table): the same key keeps its endpoint,
    /// and a change of endpoints remaps only the keys of the endpoints that changed.
    Hash(HashKey),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    ClientIp,
    /// Header name, lower case.
    Header(String),
    Cookie(String),
    Path,
}

/// Active HTTP health checks, run by one checker thread for the whole process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckConfig {
    pub method: String,
    /// Path and query sent (origin-form).
    pub path: String,
    /// Host header sent; the endpoint's `ip:port` when `None`.
    pub host: Option<String>,
    /// Inclusive status ranges counted as healthy (default 200..=399).
    pub expect: Vec<(u16, u16)>,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive successes that make an unhealthy endpoint healthy again.
    pub healthy_threshold: u32,
    /// Consecutive failures that make a healthy endpoint unhealthy.
    pub unhealthy_threshold: u32,
}

/// Passive health (outlier detection), per worker, from the traffic itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlierConfig {
    /// Consecutive connect failures or 5xx answers that eject an endpoint; 0 disables.
    pub consecutive_failures: u32,
    /// First ejection lasts this long; each repeat multiplies it (up to `max_ejection`).
    pub base_ejection: Duration,
    pub max_ejection: Duration,
    /// Never eject (or count as unhealthy) more than this share of endpoints: past it,
    /// all endpoints are used as if healthy (Envoy's panic threshold).
    pub max_ejected_percent: u8,
}

/// When and how a failed try is made again on another endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all, the first included (1: no retry).
    pub attempts: u32,
    pub on_connect_failure: bool,
    /// The connection was reset or closed before any response byte.
    pub on_reset: bool,
    /// Upstream statuses that are retried (from 502, 503, 504).
    pub on_statuses: Vec<u16>,
    /// Each try's response-head timeout; `server.timeouts.upstream_response` when `None`.
    pub per_try_timeout: Option<Duration>,
    /// All tries together; unbounded (but each try bounded) when `None`.
    pub timeout: Option<Duration>,
    /// Retries may be at most this percentage of requests (per worker, over a sliding
    /// window), so that retries cannot multiply an outage.
    pub budget_percent: u8,
    /// Request bodies up to this size are kept so that a retry can send them again; larger
    /// bodies are streamed and never replayed.
    pub buffer_body_bytes: u64,
}

/// Circuit-breaker limits, per worker: past them, requests get 503 at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerLimits {
    /// Open connections (busy and idle) to the upstream's endpoints.
    pub max_connections: usize,
    /// Requests waiting for a connection to be established.
    pub max_pending: usize,
    /// Requests in flight to the upstream.
    pub max_requests: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// At least 1.
    pub weight: u32,
    /// The host name this address was resolved from (`users.internal:8080`), when the
    /// config named one (lower case); re-resolved every `resolve_interval`. `None` for an
    /// IP literal and for endpoints registered through the admin API.
    pub hostname: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Idle keep-alive connections kept per worker per endpoint.
    pub max_idle: usize,
    /// An idle pooled connection older than this is closed instead of reused.
    pub idle_timeout: Duration,
}

// ---- validation ----

/// `[upstreams.NAME]`, in name order: the runtime upstreams and their ids by name.
pub(crate) fn build(
    ctx: &mut Ctx,
    upstreams: BTreeMap<Spanned<String>, FileUpstream>,
    resolve: Resolve<'_>,
) -> (Vec<UpstreamConfig>, UpstreamIds) {
    let mut configs = Vec::new();
    let mut ids = BTreeMap::new();
    for (name, upstream) in upstreams {
        let prefix = format!("upstreams.{}", name.get_ref());
        if !is_name(name.get_ref()) {
            ctx.error(
                name.span(),
                &prefix,
                "upstream names may only use letters, digits, '-', '_' and '.'",
            );
        }
        let endpoints = endpoints(ctx, &upstream, &prefix, resolve);
        let pool = PoolConfig {
            max_idle: match &upstream.pool.max_idle {
                None => DEFAULT_POOL_MAX_IDLE as usize,
                Some(value) => ctx
                    .count(value, &format!("{prefix}.pool.max_idle"), 0, i64::MAX)
                    .unwrap_or(0),
            },
            idle_timeout: ctx.duration(
                &upstream.pool.idle_timeout,
                &format!("{prefix}.pool.idle_timeout"),
                DEFAULT_POOL_IDLE_TIMEOUT,
            ),
        };
        let balance = balance_policy(ctx, &upstream, &prefix);
        let health = upstream
            .health
            .as_ref()
            .and_then(|health| health_check(ctx, health, &format!("{prefix}.health")));
        let outlier = outlier(ctx, &upstream.outlier, &format!("{prefix}.outlier"));
        let retry = retry_policy(ctx, &upstream.retry, &format!("{prefix}.retry"));
        let limits = breaker_limits(ctx, &upstream.limits, &format!("{prefix}.limits"));
        let http2 = upstream.http2.as_ref().is_some_and(|v| *v.get_ref());
        if let (true, Some(health)) = (http2, &upstream.health) {
            let why = "active health checks speak HTTP/1.1, which an HTTP/2 upstream may not: \
                       rely on outlier detection (`outlier`) for it";
            ctx.error(health.span(), format!("{prefix}.health"), why);
        }
        if let (true, Some(_)) = (http2, &upstream.proxy_protocol) {
            let span = upstream.http2.as_ref().map_or(0..0, |v| v.span());
            let why = "an HTTP/2 upstream's connections carry many clients' requests: \
                       a PROXY header cannot name one (remove `proxy_protocol`)";
            ctx.error(span, format!("{prefix}.http2"), why);
        }
        let tls = upstream.tls.as_ref().and_then(|tls| {
            super::tls::build(
                ctx,
                tls,
                &format!("{prefix}.tls"),
                name.get_ref(),
                &endpoints,
                http2,
            )
        });
        let resolve_interval = ctx.duration(
            &upstream.resolve_interval,
            &format!("{prefix}.resolve_interval"),
            DEFAULT_RESOLVE_INTERVAL,
        );
        let proxy_protocol = upstream.proxy_protocol.as_ref().and_then(|v| {
            crate::proxy_protocol::config::version(ctx, v, &format!("{prefix}.proxy_protocol"))
        });
        ids.insert(name.get_ref().clone(), configs.len());
        configs.push(UpstreamConfig {
            name: name.into_inner(),
            endpoints,
            pool,
            balance,
            health,
            outlier,
            retry,
            limits,
            tls,
            resolve_interval,
            proxy_protocol,
            http2,
            shared: Default::default(),
        });
    }
    (configs, ids)
}

/// The endpoints of one upstream: IP literals as written, host names resolved now into
/// one endpoint per address (sorted, so that the order does not follow DNS rotation).
fn endpoints(
    ctx: &mut Ctx,
    upstream: &FileUpstream,
    prefix: &str,
    resolve: Resolve<'_>,
) -> Vec<Endpoint> {
    let mut endpoints: Vec<Endpoint> = Vec::new();
    if upstream.endpoints.get_ref().is_empty() {
        ctx.error(
            upstream.endpoints.span(),
            format!("{prefix}.endpoints"),
            "at least one endpoint is required",
        );
    }
    // Which entry each endpoint came from, to name it in duplicate errors.
    let mut origins: Vec<usize> = Vec::new();
    for (index, endpoint) in upstream.endpoints.get_ref().iter().enumerate() {
        let key = format!("{prefix}.endpoints[{index}]");
        let (resolved, weight) = match endpoint.get_ref() {
            FileEndpoint::Addr(addr) => (
                endpoint_addrs(
                    ctx,
                    &Spanned::new(endpoint.span(), addr.clone()),
                    &key,
                    resolve,
                ),
                Some(1),
            ),
            FileEndpoint::Table(table) => {
                let addrs = endpoint_addrs(ctx, &table.addr, &format!("{key}.addr"), resolve);
                let weight = match &table.weight {
                    None => Some(1),
                    Some(weight) => ctx.count(weight, &format!("{key}.weight"), 1, MAX_WEIGHT),
                };
                (addrs, weight)
            }
        };
        let (Some((addrs, hostname)), Some(weight)) = (resolved, weight) else {
            continue;
        };
        let duplicate = match &hostname {
            Some(name) if endpoints.iter().any(|e| e.hostname.as_ref() == Some(name)) => {
                Some(format!("duplicate endpoint \"{name}\" in this upstream"))
            }
            _ => addrs.iter().find_map(|addr| {
                let at = endpoints.iter().position(|e| e.addr == *addr)?;
                let first = origins.get(at).copied().unwrap_or_default();
                Some(match &hostname {
                    None => format!("duplicate endpoint \"{addr}\" in this upstream"),
                    Some(name) => format!(
                        "duplicate endpoint \"{addr}\" in this upstream (\"{name}\" resolves \
                         to it, and so does endpoints[{first}])"
                    ),
                })
            }),
        };
        if let Some(message) = duplicate {
            ctx.error(endpoint.span(), key, message);
            continue;
        }
        for addr in addrs {
            // `count` bounded it to 1..=MAX_WEIGHT, which fits in u32.
            endpoints.push(Endpoint {
                addr,
                weight: u32::try_from(weight).unwrap_or(1),
                hostname: hostname.clone(),
            });
            origins.push(index);
        }
    }
    endpoints
}

/// An endpoint address: an IP literal (`hostname` `None`), or a `host:port` resolved
/// with the context's resolver into sorted, de-duplicated addresses.
fn endpoint_addrs(
    ctx: &mut Ctx,
    addr: &Spanned<String>,
    key: &str,
    resolve: Resolve<'_>,
) -> Option<(Vec<SocketAddr>, Option<String>)> {
    let text = addr.get_ref();
    if let Ok(parsed) = text.parse::<SocketAddr>() {
        return Some((vec![parsed], None));
    }
    if !is_host_port(text) {
        ctx.error(
            addr.span(),
            key,
            format!(
                "invalid address \"{text}\": expected ip:port or host:port such as \
                 \"127.0.0.1:8080\", \"[::1]:8080\" or \"users.internal:8080\""
            ),
        );
        return None;
    }
    // DNS names are case-insensitive: one spelling, so duplicates are found.
    let name = text.to_ascii_lowercase();
    match resolve(&name) {
        Ok(mut addrs) if !addrs.is_empty() => {
            addrs.sort();
            addrs.dedup();
            Some((addrs, Some(name)))
        }
        Ok(_) => {
            ctx.error(
                addr.span(),
                key,
                format!("cannot resolve \"{text}\": no addresses"),
            );
            None
        }
        Err(err) => {
            ctx.error(
                addr.span(),
                key,
                format!("cannot resolve \"{text}\": {err}"),
            );
            None
        }
    }
}

fn balance_policy(ctx: &mut Ctx, upstream: &FileUpstream, prefix: &str) -> BalancePolicy {
    let hash_key = upstream.hash_key.as_ref();
    let policy = match upstream.balance.as_ref() {
        None => "round_robin",
        Some(balance) => balance.get_ref().as_str(),
    };
    let balance = match policy {
        "round_robin" => BalancePolicy::RoundRobin,
        "p2c" => BalancePolicy::P2c,
        "least_conn" => BalancePolicy::LeastConn,
        "hash" => match hash_key {
            Some(key) => BalancePolicy::Hash(
                parse_hash_key(ctx, key, &format!("{prefix}.hash_key")).unwrap_or(HashKey::Path),
            ),
            None => {
                let span = upstream
                    .balance
                    .as_ref()
                    .map(Spanned::span)
                    .unwrap_or_default();
                ctx.error(
                    span,
                    format!("{prefix}.balance"),
                    "`balance = \"hash\"` needs `hash_key` (client_ip, path, header:NAME \
                     or cookie:NAME)",
                );
                BalancePolicy::RoundRobin
            }
        },
        other => {
            let span = upstream
                .balance
                .as_ref()
                .map(Spanned::span)
                .unwrap_or_default();
            ctx.error(
                span,
                format!("{prefix}.balance"),
                format!(
                    "unknown policy \"{other}\": expected round_robin, p2c, least_conn or hash"
                ),
            );
            BalancePolicy::RoundRobin
        }
    };
    if let Some(key) = hash_key {
        if policy != "hash" {
            ctx.error(
                key.span(),
                format!("{prefix}.hash_key"),
                "only applies with `balance = \"hash\"`",
            );
        }
    }
    balance
}

fn parse_hash_key(ctx: &mut Ctx, value: &Spanned<String>, key: &str) -> Option<HashKey> {
    let text = value.get_ref();
    let parsed = match text.split_once(':') {
        None if text == "client_ip" => Ok(HashKey::ClientIp),
        None if text == "path" => Ok(HashKey::Path),
        Some(("header", name)) if is_token(name) => Ok(HashKey::Header(name.to_ascii_lowercase())),
        // RFC 6265 §4.1.1: a cookie-name is a token.
        Some(("cookie", name)) if is_token(name) => Ok(HashKey::Cookie(name.to_owned())),
        Some(("header" | "cookie", name)) => Err(format!(
            "invalid name \"{name}\" in \"{text}\": must be a non-empty token"
        )),
        _ => Err(format!(
            "unknown hash key \"{text}\": expected client_ip, path, header:NAME or \
             cookie:NAME"
        )),
    };
    match parsed {
        Ok(hash_key) => Some(hash_key),
        Err(why) => {
            ctx.error(value.span(), key, why);
            None
        }
    }
}

fn health_check(
    ctx: &mut Ctx,
    health: &Spanned<FileHealth>,
    key: &str,
) -> Option<HealthCheckConfig> {
    let span = health.span();
    let health = health.get_ref();
    let mut ok = true;
    let method = match &health.method {
        None => DEFAULT_HEALTH_METHOD.to_owned(),
        Some(method) => {
            let text = method.get_ref();
            if !is_token(text) {
                ctx.error(
                    method.span(),
                    format!("{key}.method"),
                    format!("invalid method \"{text}\": must be a token such as GET or HEAD"),
                );
                ok = false;
            }
            text.to_ascii_uppercase()
        }
    };
    let path = match &health.path {
        None => {
            ctx.error(
                span.clone(),
                key,
                "missing `path`, the request target to check (e.g. path = \"/healthz\")",
            );
            ok = false;
            String::new()
        }
        Some(path) => {
            let text = path.get_ref();
            let why = if !text.starts_with('/') {
                Some("must start with '/' (origin-form)")
            } else if text
                .bytes()
                .any(|b| !(0x21..0x7f).contains(&b) || b == b'#')
            {
                Some("must be visible ASCII without spaces or '#' (percent-encode them)")
            } else {
                None
            };
            if let Some(why) = why {
                ctx.error(
                    path.span(),
                    format!("{key}.path"),
                    format!("\"{text}\" {why}"),
                );
                ok = false;
            }
            text.clone()
        }
    };
    let host = health.host.as_ref().map(|host| {
        let text = host.get_ref();
        if !is_host_header(text) {
            ctx.error(
                host.span(),
                format!("{key}.host"),
                format!("invalid host \"{text}\": expected host or host:port"),
            );
            ok = false;
        }
        text.clone()
    });
    let expect = match &health.expect {
        None => vec![DEFAULT_HEALTH_EXPECT],
        Some(list) => {
            if list.get_ref().is_empty() {
                ctx.error(
                    list.span(),
                    format!("{key}.expect"),
                    "empty list: no answer could count as healthy",
                );
                ok = false;
            }
            let mut ranges = Vec::new();
            for (index, value) in list.get_ref().iter().enumerate() {
                match status_range(value.get_ref()) {
                    Ok(range) => ranges.push(range),
                    Err(why) => {
                        ctx.error(value.span(), format!("{key}.expect[{index}]"), why);
                        ok = false;
                    }
                }
            }
            ranges
        }
    };
    let interval = ctx.duration(
        &health.interval,
        &format!("{key}.interval"),
        DEFAULT_HEALTH_INTERVAL,
    );
    let timeout = ctx.duration(
        &health.timeout,
        &format!("{key}.timeout"),
        DEFAULT_HEALTH_TIMEOUT,
    );
    if !interval.is_zero() && !timeout.is_zero() && timeout >= interval {
        // Point at whichever of the two the user wrote, the timeout first.
        let (at, field) = match (&health.timeout, &health.interval) {
            (Some(t), _) => (t.span(), "timeout"),
            (None, Some(i)) => (i.span(), "interval"),
            (None, None) => (span.clone(), ""),
        };
        let key = if field.is_empty() {
            key.to_owned()
        } else {
            format!("{key}.{field}")
        };
        ctx.error(
            at,
            key,
            format!(
                "timeout ({}) must be shorter than interval ({})",
                show_duration(timeout),
                show_duration(interval)
            ),
        );
        ok = false;
    }
    let healthy_threshold = health_threshold(
        ctx,
        &health.healthy_threshold,
        &format!("{key}.healthy_threshold"),
        DEFAULT_HEALTHY_THRESHOLD,
    );
    let unhealthy_threshold = health_threshold(
        ctx,
        &health.unhealthy_threshold,
        &format!("{key}.unhealthy_threshold"),
        DEFAULT_UNHEALTHY_THRESHOLD,
    );
    let (Some(healthy_threshold), Some(unhealthy_threshold)) =
        (healthy_threshold, unhealthy_threshold)
    else {
        return None;
    };
    ok.then_some(HealthCheckConfig {
        method,
        path,
        host,
        expect,
        interval,
        timeout,
        healthy_threshold,
        unhealthy_threshold,
    })
}

fn health_threshold(
    ctx: &mut Ctx,
    value: &Option<Spanned<i64>>,
    key: &str,
    default: u32,
) -> Option<u32> {
    match value {
        None => Some(default),
        Some(value) => ctx
            .count(value, key, 1, MAX_HEALTH_THRESHOLD)
            .and_then(|n| u32::try_from(n).ok()),
    }
}

fn outlier(ctx: &mut Ctx, outlier: &FileOutlier, key: &str) -> OutlierConfig {
    let consecutive_failures = match &outlier.consecutive_failures {
        None => DEFAULT_OUTLIER_FAILURES,
        Some(value) => ctx
            .count(
                value,
                &format!("{key}.consecutive_failures"),
                0,
                u32::MAX.into(),
            )
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0),
    };
    let base_ejection = ctx.duration(
        &outlier.base_ejection,
        &format!("{key}.base_ejection"),
        DEFAULT_BASE_EJECTION,
    );
    let max_ejection = ctx.duration(
        &outlier.max_ejection,
        &format!("{key}.max_ejection"),
        DEFAULT_MAX_EJECTION,
    );
    if !base_ejection.is_zero() && !max_ejection.is_zero() && max_ejection < base_ejection {
        let (at, field) = match (&outlier.max_ejection, &outlier.base_ejection) {
            (Some(m), _) => (m.span(), "max_ejection"),
            (None, Some(b)) => (b.span(), "base_ejection"),
            (None, None) => (0..0, ""),
        };
        ctx.error(
            at,
            format!("{key}.{field}"),
            format!(
                "max_ejection ({}) must be at least base_ejection ({})",
                show_duration(max_ejection),
                show_duration(base_ejection)
            ),
        );
    }
    let max_ejected_percent = ctx.percent(
        &outlier.max_ejected_percent,
        &format!("{key}.max_ejected_percent"),
        DEFAULT_MAX_EJECTED_PERCENT,
    );
    OutlierConfig {
        consecutive_failures,
        base_ejection,
        max_ejection,
        max_ejected_percent,
    }
}

fn retry_policy(ctx: &mut Ctx, retry: &FileRetry, key: &str) -> RetryPolicy {
    let attempts = match &retry.attempts {
        None => DEFAULT_RETRY_ATTEMPTS,
        Some(value) => ctx
            .count(value, &format!("{key}.attempts"), 1, MAX_RETRY_ATTEMPTS)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(1),
    };
    let (mut on_connect_failure, mut on_reset, mut on_statuses) = (true, true, Vec::new());
    if let Some(list) = &retry.on {
        (on_connect_failure, on_reset) = (false, false);
        if list.get_ref().is_empty() {
            ctx.error(
                list.span(),
                format!("{key}.on"),
                "empty list; set `attempts = 1` to turn retries off",
            );
        }
        for (index, value) in list.get_ref().iter().enumerate() {
            let status = match value.get_ref() {
                CodeValue::Text(text) if text == "connect_failure" => {
                    on_connect_failure = true;
                    continue;
                }
                CodeValue::Text(text) if text == "reset" => {
                    on_reset = true;
                    continue;
                }
                CodeValue::Text(text) => text.parse::<u16>().ok(),
                CodeValue::Int(n) => u16::try_from(*n).ok(),
            };
            match status.filter(|s| RETRYABLE_STATUSES.contains(s)) {
                Some(status) => {
                    if !on_statuses.contains(&status) {
                        on_statuses.push(status);
                    }
                }
                None => {
                    let shown = match value.get_ref() {
                        CodeValue::Text(text) => format!("\"{text}\""),
                        CodeValue::Int(n) => n.to_string(),
                    };
                    ctx.error(
                        value.span(),
                        format!("{key}.on[{index}]"),
                        format!(
                            "unknown retry condition {shown}: expected connect_failure, \
                             reset, \"502\", \"503\" or \"504\""
                        ),
                    );
                }
            }
        }
        on_statuses.sort_unstable();
    }
    let per_try_timeout =
        ctx.opt_duration(&retry.per_try_timeout, &format!("{key}.per_try_timeout"));
    let timeout = ctx.opt_duration(&retry.timeout, &format!("{key}.timeout"));
    if let (Some(per_try), Some(overall), Some(value)) =
        (per_try_timeout, timeout, &retry.per_try_timeout)
    {
        if per_try > overall {
            ctx.error(
                value.span(),
                format!("{key}.per_try_timeout"),
                format!(
                    "{} is longer than `timeout` ({}), which would always end the request first",
                    show_duration(per_try),
                    show_duration(overall)
                ),
            );
        }
    }
    let budget_percent = ctx.percent(
        &retry.budget_percent,
        &format!("{key}.budget_percent"),
        DEFAULT_RETRY_BUDGET_PERCENT,
    );
    let buffer_body_bytes = ctx.size_or_zero(
        &retry.buffer_body,
        &format!("{key}.buffer_body"),
        DEFAULT_RETRY_BUFFER_BODY,
    );
    RetryPolicy {
        attempts,
        on_connect_failure,
        on_reset,
        on_statuses,
        per_try_timeout,
        timeout,
        budget_percent,
        buffer_body_bytes,
    }
}

fn breaker_limits(ctx: &mut Ctx, limits: &FileBreakerLimits, key: &str) -> BreakerLimits {
    let mut limit = |value: &Option<Spanned<i64>>, field: &str| match value {
        None => DEFAULT_BREAKER_LIMIT,
        Some(value) => ctx
            .count(value, &format!("{key}.{field}"), 1, i64::MAX)
            .unwrap_or(1),
    };
    BreakerLimits {
        max_connections: limit(&limits.max_connections, "max_connections"),
        max_pending: limit(&limits.max_pending, "max_pending"),
        max_requests: limit(&limits.max_requests, "max_requests"),
    }
}

/// `host:port` where `host` is a DNS name (RFC 1123 §2.1 labels; the last label is not
/// all digits, so that a malformed IP such as `1.2.3:80` is never sent to the resolver,
/// which might read it as `1.2.0.3`).
fn is_host_port(text: &str) -> bool {
    let Some((host, port)) = text.rsplit_once(':') else {
        return false;
    };
    let port_ok =
        !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok();
    let host = host.strip_suffix('.').unwrap_or(host);
    let labels_ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        && !host
            .rsplit('.')
            .next()
            .is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()));
    port_ok && labels_ok
}

/// A status or an inclusive range of statuses: `200`, `"204"`, `"200-399"`; 100..=599.
fn status_range(value: &CodeValue) -> Result<(u16, u16), String> {
    let status = |n: i64| u16::try_from(n).ok().filter(|s| (100..=599).contains(s));
    let bad = |shown: String| {
        format!(
            "invalid status range {shown}: expected \"NNN\" or \"NNN-MMM\" with \
             100 <= NNN <= MMM <= 599"
        )
    };
    match value {
        CodeValue::Int(n) => status(*n).map(|s| (s, s)).ok_or_else(|| bad(n.to_string())),
        CodeValue::Text(text) => {
            let parse = |part: &str| {
                (part.len() == 3 && part.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| part.parse::<i64>().ok())
                    .flatten()
                    .and_then(status)
            };
            let (low, high) = match text.split_once('-') {
                None => (parse(text), parse(text)),
                Some((low, high)) => (parse(low), parse(high)),
            };
            match (low, high) {
                (Some(low), Some(high)) if low <= high => Ok((low, high)),
                _ => Err(bad(format!("\"{text}\""))),
            }
        }
    }
}

#[cfg(test)]
mod tests;
