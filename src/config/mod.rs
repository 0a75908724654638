//! Configuration: the TOML file (`file.rs`, a serde mirror) and the runtime types it is
//! validated into (`build.rs`). Runtime types are immutable once built; a reload builds a
//! whole new [`Config`] and swaps it in, so no request ever sees half a config.

mod build;
mod cluster;
mod file;
mod units;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

pub use build::{load, load_str, reason_phrase, ConfigError, ConfigErrors};
pub use cluster::{parse_redis_url, ClusterConfig, OnRedisError, RedisTarget};
pub use units::{parse_duration, parse_size};

use crate::router::RouteTable;

/// The config served when no file is given and `conf/strait.toml` is absent.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../conf/strait.toml");

/// Everything a worker needs to serve requests, validated and compiled.
#[derive(Debug)]
pub struct Config {
    pub server: ServerConfig,
    /// Indexed by [`UpstreamId`].
    pub upstreams: Vec<UpstreamConfig>,
    pub routes: RouteTable,
    /// `[consumers.NAME]`, sorted by name; routes with `auth` authenticate against them.
    pub consumers: Vec<ConsumerConfig>,
    /// `[oauth2_providers.NAME]`, sorted by name; indexed by [`ProviderId`].
    pub oauth2_providers: Vec<OAuth2Provider>,
    pub admin: AdminConfig,
    pub observability: ObservabilityConfig,
    /// `[cluster]`: the Redis behind `scope = "cluster"` rate limits; `None` when absent.
    pub cluster: Option<ClusterConfig>,
}

/// Metrics, access log, request IDs and tracing (`[observability]`).
#[derive(Debug, Clone)]
pub struct ObservabilityConfig {
    /// Level (or `tracing` filter directives) of the operational logs; `RUST_LOG` wins.
    /// Read at startup.
    pub log_level: String,
    /// `None` when `access_log.enabled = false`.
    pub access_log: Option<AccessLogConfig>,
    /// Extra listener serving only `GET /metrics` (the admin API always serves it too).
    pub metrics_listen: Option<SocketAddr>,
    /// Header carrying the request ID (lower case), kept when the client sent a valid one.
    pub request_id_header: String,
    /// `None` when tracing is off.
    pub tracing: Option<TracingConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogFormat {
    /// One JSON object per line (default).
    Json,
    /// nginx's "combined" format, plus request time, upstream time and request ID.
    Combined,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogDestination {
    Stdout,
    Stderr,
    /// Appended to; reopened on SIGUSR1 (for logrotate).
    File(std::path::PathBuf),
}

#[derive(Debug, Clone, PartialEq)]
pub struct AccessLogConfig {
    pub format: AccessLogFormat,
    pub destination: LogDestination,
    /// Share of requests logged, 0.0..=1.0.
    pub sample: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TracingConfig {
    /// OTLP/HTTP traces endpoint (JSON), e.g. `http://127.0.0.1:4318/v1/traces`.
    pub otlp_endpoint: String,
    /// Share of new traces sampled, 0.0..=1.0; a sampled parent (`traceparent` flag) is
    /// always followed.
    pub sample_ratio: f64,
    pub service_name: String,
    /// Spans waiting for export; past it they are dropped and counted.
    pub queue_size: usize,
    pub batch_size: usize,
    pub flush_interval: Duration,
}

/// The admin API's listener. Read at startup only: a reload does not move it.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// `None` when `admin.enabled = false`.
    pub listen: Option<SocketAddr>,
    /// Bearer token every admin request must carry, when set. Required for a
    /// non-loopback `listen`.
    pub token: Option<String>,
    /// Where endpoints registered through the API are kept across restarts; relative paths
    /// resolve against the config file's directory. `None`: kept in memory only.
    pub state_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: Vec<SocketAddr>,
    /// 0 means one worker per available core.
    pub workers: usize,
    pub limits: Limits,
    pub timeouts: Timeouts,
    /// `[server.access]`: checked for every request before routing (empty: everyone).
    pub access: crate::access::AccessList,
    /// Peers whose `X-Forwarded-For` names the client (empty: the TCP peer is the client).
    pub trusted_proxies: Vec<crate::access::Cidr>,
}

#[derive(Debug, Clone)]
pub struct Limits {
    /// Request line plus headers, in bytes (431 past it).
    pub max_header_bytes: usize,
    /// Number of request headers (431 past it).
    pub max_headers: usize,
    /// Request body in bytes, declared or streamed (413 past it).
    pub max_body_bytes: u64,
    /// Request target length in bytes (414 past it).
    pub max_uri_bytes: usize,
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
}

/// Index into [`Config::upstreams`].
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
    /// Host names among the endpoints are re-resolved this often (off the request path).
    pub resolve_interval: Duration,
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

/// What a matched route does.
#[derive(Debug)]
pub enum Action {
    Proxy(ProxyAction),
    Mock(MockResponse),
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
    pub access: Option<crate::access::AccessList>,
    /// CORS answered by the gateway; `None`: requests pass through untouched.
    pub cors: Option<crate::cors::CorsPolicy>,
}

/// One `[consumers.NAME]`: a caller identified by its API keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerConfig {
    /// Letters, digits, '-', '_' and '.': safe as a header value.
    pub name: String,
    /// At least one; no key belongs to two consumers.
    pub api_keys: Vec<ApiKey>,
}

/// A configured API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiKey {
    /// `sha256:<hex>`: the SHA-256 digest of the key; the key itself is not in the file.
    Sha256([u8; 32]),
    /// The key itself (visible ASCII).
    Plain(Box<[u8]>),
}

/// A route's `auth`: the methods a request may authenticate with (at least one).
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// API keys of `[consumers.NAME]`; `None`: not accepted on this route.
    pub api_key: Option<ApiKeyAuth>,
    /// Bearer tokens checked by introspection; `None`: not accepted on this route.
    pub oauth2: Option<OAuth2Auth>,
    /// Bearer tokens of `[jwt_providers.NAME]`; `None`: not accepted on this route.
    pub jwt: Option<crate::jwt::JwtAuth>,
    /// Header that tells the upstream who called (default `x-consumer`); the client's
    /// copies are replaced.
    pub consumer_header: String,
    /// The `www-authenticate` lines of the 401 answer, one per method, each CRLF-terminated
    /// (a refused bearer token gets `JwtAuth::rejected` instead).
    pub challenge: Bytes,
    /// The same lines when a bearer token was presented and refused: the Bearer line then
    /// says `error="invalid_token"` (RFC 6750 §3.1). Equal to `challenge` without `oauth2`.
    pub challenge_invalid_token: Bytes,
}

/// Index into [`Config::oauth2_providers`].
pub type ProviderId = usize;

/// One `[oauth2_providers.NAME]`: where and how bearer tokens are introspected (RFC 7662).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuth2Provider {
    pub name: String,
    /// The upstream serving the introspection endpoint: its pools, balancing, health and
    /// circuit breaker carry the introspection requests.
    pub upstream: UpstreamId,
    /// The fixed part of every introspection request head: request line, client
    /// credentials (`authorization: Basic`), content type and accept lines.
    pub request_head: crate::introspect::Secret,
    /// `Host` sent; the endpoint's `ip:port` when `None`.
    pub host: Option<String>,
    /// The whole exchange (connect, request, response) must finish within it.
    pub timeout: Duration,
    /// Active tokens are cached until their `exp`, but at most this long (0: not cached).
    pub cache_ttl: Duration,
    /// Inactive tokens are cached this long (0: not cached).
    pub negative_cache_ttl: Duration,
    /// Cached tokens per worker, at most.
    pub cache_size: usize,
    /// The response member naming the consumer; `client_id` when it is absent.
    pub consumer_claim: ConsumerClaim,
    /// When set, the token's `aud` (a string or an array) must contain it.
    pub audience: Option<String>,
    /// When set, the token's `iss` must equal it.
    pub issuer: Option<String>,
    /// What a request gets when the authorization server fails.
    pub on_error: OnIntrospectionError,
}

/// Which introspection response member becomes [`crate::auth::Identity::consumer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerClaim {
    Sub,
    Username,
    ClientId,
}

/// The answer when the authorization server is unreachable, slow or answers nonsense.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnIntrospectionError {
    /// 503 with a JSON error: the client may retry the same token later (default).
    Unavailable,
    /// 401 `invalid_token`, as if the token were refused.
    Unauthorized,
}

/// A route's `auth.oauth2`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuth2Auth {
    pub provider: ProviderId,
    /// What methods without an entry in `method_scopes` need.
    pub scopes: RequiredScopes,
    /// (upper-case method, what it needs instead of `scopes`).
    pub method_scopes: Vec<(String, RequiredScopes)>,
    /// Send the `Authorization` header upstream (default: removed).
    pub forward_token: bool,
    /// Header carrying the granted scopes upstream (lower case); the client's copies are
    /// always removed.
    pub scope_header: Option<String>,
}

/// Scopes a request must all have been granted, and the 403 challenge naming them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequiredScopes {
    pub scopes: Vec<String>,
    /// `www-authenticate: Bearer error="insufficient_scope", scope="..."` and CRLF.
    pub challenge: Bytes,
}

/// Where a route looks for an API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyAuth {
    /// Header carrying the key, lower case (default `x-api-key`). Never forwarded.
    pub header: String,
    /// Query parameter carrying the key when the header is absent.
    pub query: Option<String>,
}

/// One `rate_limits` entry of a route: `limit` requests per `period` per key, enforced per
/// worker (each worker allows `ceil(limit / workers)`) or, with `scope = "cluster"`,
/// across every node sharing the `[cluster]` Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Shown in the `RateLimit` and `RateLimit-Policy` headers.
    pub name: String,
    pub key: RateLimitKey,
    /// At least 1.
    pub limit: u32,
    /// Greater than zero (at least 1s for a cluster limit).
    pub period: Duration,
    pub scope: RateLimitScope,
}

/// Where a rate limit's count lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimitScope {
    /// Per worker (the default).
    Local,
    /// Shared by the fleet through `[cluster]`'s Redis (`crate::ratelimit::cluster`).
    Cluster,
}

/// What a rate limit counts requests by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateLimitKey {
    ClientIp,
    /// Header name, lower case. Requests without it share the bucket of the empty value.
    Header(String),
    /// The route as a whole: one bucket.
    Route,
    /// The authenticated consumer's name; the client IP on a route without `auth`.
    Consumer,
}
