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
pub use crate::admin::config::AdminConfig;
pub use crate::auth::config::{ApiKey, ApiKeyAuth, AuthConfig, ConsumerConfig};
pub use crate::auth::oauth2::config::{
    ConsumerClaim, OAuth2Auth, OAuth2Provider, OnIntrospectionError, ProviderId, RequiredScopes,
};
pub use crate::observe::config::{
    AccessLogConfig, AccessLogFormat, LogDestination, ObservabilityConfig, TracingConfig,
};
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
