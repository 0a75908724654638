//! Configuration: the TOML file (`file.rs`, a serde mirror) and the runtime types it is
//! validated into (`build.rs`). Runtime types are immutable once built; a reload builds a
//! whole new [`Config`] and swaps it in, so no request ever sees half a config.

mod build;
mod file;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

pub use crate::settings::{parse_duration, parse_size, ConfigError, ConfigErrors};
#[cfg(test)]
pub(crate) use build::load_str_with;
pub use build::{load, load_str, reason_phrase};

use crate::router::RouteTable;

// transitional re-exports: removed once every user imports from the owning module
pub use crate::ratelimit::config::{
    parse_redis_url, ClusterConfig, OnRedisError, RateLimitConfig, RateLimitKey, RateLimitScope,
    RedisTarget,
};
pub use crate::upstream::config::{
    BalancePolicy, BreakerLimits, Endpoint, HashKey, HealthCheckConfig, OutlierConfig, PoolConfig,
    RetryPolicy, UpstreamConfig, UpstreamId,
};

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
    pub jwt: Option<crate::auth::jwt::JwtAuth>,
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
    pub request_head: crate::auth::oauth2::Secret,
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
