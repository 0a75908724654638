//! Validation: the [`file`](super::file) mirror in, runtime [`Config`] or a list of errors out.
//!
//! Runs on the main thread at start, on `--check` and on reload, never on a worker (it reads
//! `body_file`s). It never stops at the first bad value: every problem is collected, each as
//! `file:line:column: key.path: what is wrong`, so one run of `strait --check` shows them all.
//! Only a TOML syntax or type error is reported alone, since nothing after it can be trusted.
//! Everything constant per response (mock heads and bodies) is rendered here, once.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fmt::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use toml::Spanned;

use super::file::{
    CodeValue, DurationValue, FileAccess, FileAdmin, FileAuth, FileBreakerLimits, FileCluster,
    FileConfig, FileConsumer, FileCors, FileEndpoint, FileHealth, FileMock, FileObservability,
    FileOutlier, FileRateLimit, FileRedis, FileRetry, FileRoute, FileServer, FileUpstream,
    SizeValue,
};
use super::units::{parse_duration, parse_size};
use super::{parse_redis_url, ClusterConfig, OnRedisError};
use super::{
    AccessLogConfig, AccessLogFormat, Action, AdminConfig, ApiKeyAuth, AuthConfig, BalancePolicy,
    BreakerLimits, Config, ConsumerConfig, Endpoint, HashKey, HealthCheckConfig, Limits,
    LogDestination, MockResponse, ObservabilityConfig, OutlierConfig, PoolConfig, ProxyAction,
    RateLimitConfig, RateLimitKey, RateLimitScope, RetryPolicy, Route, ServerConfig, Timeouts,
    TracingConfig, UpstreamConfig, UpstreamId,
};
use crate::router::RouteTable;

mod jwt;
mod oauth2;

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
const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(250);
const DEFAULT_REDIS_KEY_PREFIX: &str = "strait:rl";
const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_millis(50);
/// Workers hand their counts over on a 20 ms tick: a shorter interval would gain nothing.
const MIN_SYNC_INTERVAL: Duration = Duration::from_millis(10);
const MAX_SYNC_INTERVAL: Duration = Duration::from_secs(10);
const MIN_CLUSTER_PERIOD: Duration = Duration::from_secs(1);
const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9901";
const DEFAULT_POOL_MAX_IDLE: i64 = 64;
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

/// Resolves a `host:port` into its socket addresses. Config builds call it off the request
/// path (main or admin thread, resolver thread); tests inject a fake one.
pub(crate) type Resolve<'a> = &'a dyn Fn(&str) -> std::io::Result<Vec<SocketAddr>>;

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

/// One problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file path as given, or a name such as `<embedded default>`.
    pub origin: String,
    /// 1-based line and column (in characters), when the problem has a place in the file.
    pub position: Option<(usize, usize)>,
    /// Dotted key path (`routes[1].upstream`); empty when unknown.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin)?;
        if let Some((line, column)) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in a config file, in file order; displayed one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render_errors(.errors))]
pub struct ConfigErrors {
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// One error about the whole of `origin` (an unreadable file, say).
    pub fn single(origin: &str, message: String) -> Self {
        ConfigErrors {
            errors: vec![ConfigError {
                origin: origin.to_owned(),
                position: None,
                key: String::new(),
                message,
            }],
        }
    }
}

fn render_errors(errors: &[ConfigError]) -> String {
    let mut out = String::new();
    for (index, error) in errors.iter().enumerate() {
        if index > 0 {
            out.push('\n');
        }
        let _ = write!(out, "{error}");
    }
    out
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
    let mut ctx = Ctx::new(text, origin, resolve);
    let file: FileConfig = match toml::from_str(text) {
        Ok(file) => file,
        Err(err) => {
            let (position, key) = match err.span() {
                Some(span) => (Some(ctx.line_col(span.start)), key_hint(text, span.start)),
                None => (None, String::new()),
            };
            let message = err.message().trim().replace('\n', " ");
            ctx.errors.push(ConfigError {
                origin: origin.to_owned(),
                position,
                key,
                message,
            });
            return Err(ConfigErrors { errors: ctx.errors });
        }
    };
    let config = ctx.build(file);
    match config {
        Some(config) if ctx.errors.is_empty() => Ok(config),
        _ => {
            ctx.errors.sort_by_key(|error| error.position);
            Err(ConfigErrors { errors: ctx.errors })
        }
    }
}

/// Validation state: the text (for positions) and the errors found so far.
struct Ctx<'a> {
    origin: &'a str,
    text: &'a str,
    /// Byte offset where each line starts.
    line_starts: Vec<usize>,
    base_dir: PathBuf,
    errors: Vec<ConfigError>,
    resolve: Resolve<'a>,
    /// A `[cluster]` table is present (valid or not): `scope = "cluster"` may be used.
    has_cluster: bool,
}

impl<'a> Ctx<'a> {
    fn new(text: &'a str, origin: &'a str, resolve: Resolve<'a>) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        let base_dir = Path::new(origin)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        Ctx {
            origin,
            text,
            line_starts,
            base_dir,
            errors: Vec::new(),
            resolve,
            has_cluster: false,
        }
    }

    fn line_col(&self, offset: usize) -> (usize, usize) {
        let line = self
            .line_starts
            .partition_point(|&start| start <= offset)
            .max(1);
        let start = self.line_starts.get(line - 1).copied().unwrap_or(0);
        let column = self
            .text
            .get(start..offset)
            .map_or(1, |s| s.chars().count() + 1);
        (line, column)
    }

    fn error(&mut self, span: Range<usize>, key: impl Into<String>, message: impl Into<String>) {
        let position = Some(self.line_col(span.start));
        self.errors.push(ConfigError {
            origin: self.origin.to_owned(),
            position,
            key: key.into(),
            message: message.into(),
        });
    }

    fn build(&mut self, file: FileConfig) -> Option<Config> {
        let server = self.server(file.server);
        let (upstreams, upstream_ids) = self.upstreams(file.upstreams);
        let consumers = self.consumers(file.consumers);
        let has_keys = consumers.iter().any(|c| !c.api_keys.is_empty());
        let (oauth2_providers, provider_ids) =
            self.oauth2_providers(file.oauth2_providers, &upstream_ids);
        let jwt_providers = self.jwt_providers(file.jwt_providers);
        self.has_cluster = file.cluster.is_some();
        let cluster = file.cluster.as_ref().and_then(|c| self.cluster(c));
        let routes = self.routes(
            file.routes,
            &upstream_ids,
            has_keys,
            &provider_ids,
            &jwt_providers,
        );
        let admin = self.admin(file.admin);
        let observability = self.observability(file.observability);
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

    // ---- [cluster] ----

    /// `[cluster]`: a `redis://` URL (string or table), the sync interval and the failure
    /// behaviour.
    fn cluster(&mut self, table: &Spanned<FileCluster>) -> Option<ClusterConfig> {
        let file = table.get_ref();
        let none = None;
        let (url, url_key, timeout, prefix) = match file.redis.as_ref().map(|r| (r, r.get_ref())) {
            None => {
                self.error(
                    table.span(),
                    "cluster",
                    "missing `redis`, the shared Redis (e.g. redis = \"redis://127.0.0.1:6379/0\")",
                );
                (None, "cluster.redis", &none, &None)
            }
            Some((spanned, FileRedis::Url(url))) => {
                (Some((url, spanned.span())), "cluster.redis", &none, &None)
            }
            Some((_, FileRedis::Table(t))) => (
                Some((t.url.get_ref(), t.url.span())),
                "cluster.redis.url",
                &t.timeout,
                &t.key_prefix,
            ),
        };
        let redis = url.and_then(|(url, span)| match parse_redis_url(url) {
            Ok(target) => Some(target),
            Err(why) => {
                self.error(span, url_key, why);
                None
            }
        });
        let timeout = self.duration(timeout, "cluster.redis.timeout", DEFAULT_REDIS_TIMEOUT);
        let key_prefix = match prefix {
            None => DEFAULT_REDIS_KEY_PREFIX.to_owned(),
            Some(p)
                if !p.get_ref().is_empty() && p.get_ref().bytes().all(|b| b.is_ascii_graphic()) =>
            {
                p.get_ref().clone()
            }
            Some(p) => {
                self.error(
                    p.span(),
                    "cluster.redis.key_prefix",
                    "must be non-empty visible ASCII without spaces",
                );
                String::new()
            }
        };
        let sync_interval = self.duration(
            &file.sync_interval,
            "cluster.sync_interval",
            DEFAULT_SYNC_INTERVAL,
        );
        if let Some(value) = &file.sync_interval {
            if !sync_interval.is_zero()
                && !(MIN_SYNC_INTERVAL..=MAX_SYNC_INTERVAL).contains(&sync_interval)
            {
                self.error(
                    value.span(),
                    "cluster.sync_interval",
                    format!(
                        "{} is out of range: must be {}..={}",
                        value.get_ref().0,
                        show_duration(MIN_SYNC_INTERVAL),
                        show_duration(MAX_SYNC_INTERVAL)
                    ),
                );
            }
        }
        let on_redis_error = match file
            .on_redis_error
            .as_ref()
            .map(|v| (v, v.get_ref().as_str()))
        {
            None | Some((_, "open")) => OnRedisError::Open,
            Some((_, "closed")) => OnRedisError::Closed,
            Some((v, other)) => {
                self.error(
                    v.span(),
                    "cluster.on_redis_error",
                    format!("unknown value \"{other}\": expected \"open\" or \"closed\""),
                );
                OnRedisError::Open
            }
        };
        Some(ClusterConfig {
            redis: redis?,
            timeout,
            sync_interval,
            on_redis_error,
            key_prefix,
        })
    }

    // ---- [observability] ----

    fn observability(&mut self, file: FileObservability) -> ObservabilityConfig {
        let log = &file.access_log;
        let format = match log.format.as_ref().map(|f| (f, f.get_ref().as_str())) {
            None | Some((_, "json")) => AccessLogFormat::Json,
            Some((_, "combined")) => AccessLogFormat::Combined,
            Some((f, other)) => {
                self.error(
                    f.span(),
                    "observability.access_log.format",
                    format!("unknown format \"{other}\": expected \"json\" or \"combined\""),
                );
                AccessLogFormat::Json
            }
        };
        let destination = match log.destination.as_ref().map(|d| d.get_ref().as_str()) {
            None | Some("stdout") => LogDestination::Stdout,
            Some("stderr") => LogDestination::Stderr,
            Some(path) => LogDestination::File(self.base_dir.join(path)),
        };
        let sample = self.ratio(&log.sample, "observability.access_log.sample", 1.0);
        let access_log = (log.enabled != Some(false)).then_some(AccessLogConfig {
            format,
            destination,
            sample,
        });

        let metrics_listen = file
            .metrics
            .listen
            .as_ref()
            .and_then(|addr| self.socket_addr(addr, "observability.metrics.listen"));

        let request_id_header = match &file.request_id_header {
            None => "x-request-id".to_owned(),
            Some(name) => {
                if !is_token(name.get_ref()) {
                    self.error(
                        name.span(),
                        "observability.request_id_header",
                        "must be a header name (a token)",
                    );
                }
                name.get_ref().to_ascii_lowercase()
            }
        };

        let tracing = file
            .tracing
            .as_ref()
            .filter(|t| t.enabled != Some(false))
            .map(|t| {
                let key = "observability.tracing";
                let otlp_endpoint = match &t.otlp_endpoint {
                    Some(url) if url.get_ref().starts_with("http://") => url.get_ref().clone(),
                    Some(url) => {
                        self.error(
                            url.span(),
                            format!("{key}.otlp_endpoint"),
                            "must be an http:// URL (OTLP over HTTP)",
                        );
                        String::new()
                    }
                    None => "http://127.0.0.1:4318/v1/traces".to_owned(),
                };
                let count = |ctx: &mut Self,
                             value: &Option<Spanned<i64>>,
                             name: &str,
                             default: usize| match value {
                    None => default,
                    Some(v) => ctx
                        .count(v, &format!("{key}.{name}"), 1, 1_000_000)
                        .unwrap_or(default),
                };
                TracingConfig {
                    otlp_endpoint,
                    sample_ratio: self.ratio(&t.sample_ratio, &format!("{key}.sample_ratio"), 0.01),
                    service_name: t
                        .service_name
                        .as_ref()
                        .map_or_else(|| "strait".to_owned(), |s| s.get_ref().clone()),
                    queue_size: count(self, &t.queue_size, "queue_size", 4096),
                    batch_size: count(self, &t.batch_size, "batch_size", 512),
                    flush_interval: self.duration(
                        &t.flush_interval,
                        &format!("{key}.flush_interval"),
                        Duration::from_secs(1),
                    ),
                }
            });
        let log_level = match &file.log_level {
            None => "info".to_owned(),
            Some(level) => {
                let text = level.get_ref();
                let is_level =
                    ["error", "warn", "info", "debug", "trace", "off"].contains(&text.as_str());
                // Anything else must be filter directives (`target=level`, comma-separated).
                if !is_level
                    && (!text.contains('=')
                        || tracing_subscriber::EnvFilter::try_new(text).is_err())
                {
                    self.error(
                        level.span(),
                        "observability.log_level",
                        format!("invalid level \"{}\": expected error, warn, info, debug or trace (or filter directives)", level.get_ref()),
                    );
                }
                level.get_ref().clone()
            }
        };
        ObservabilityConfig {
            log_level,
            access_log,
            metrics_listen,
            request_id_header,
            tracing,
        }
    }

    /// A share within 0.0..=1.0; `default` when absent.
    fn ratio(&mut self, value: &Option<Spanned<f64>>, key: &str, default: f64) -> f64 {
        match value {
            None => default,
            Some(v) if (0.0..=1.0).contains(v.get_ref()) => *v.get_ref(),
            Some(v) => {
                self.error(
                    v.span(),
                    key,
                    format!("{} is out of range: must be 0.0..=1.0", v.get_ref()),
                );
                default
            }
        }
    }

    // ---- [admin] ----

    fn admin(&mut self, admin: Option<FileAdmin>) -> Option<AdminConfig> {
        let Some(admin) = admin else {
            let listen = DEFAULT_ADMIN_LISTEN.parse().ok();
            return Some(AdminConfig {
                listen,
                token: None,
                state_file: None,
            });
        };
        let token = admin.token.as_ref().map(|t| t.get_ref().clone());
        if let Some(t) = &admin.token {
            if t.get_ref().len() < 16 {
                self.error(t.span(), "admin.token", "must be at least 16 characters");
            }
        }
        let listen = match (&admin.enabled, &admin.listen) {
            (Some(false), _) => None,
            (_, None) => DEFAULT_ADMIN_LISTEN.parse().ok(),
            (_, Some(addr)) => {
                let parsed = self.socket_addr(addr, "admin.listen")?;
                if !parsed.ip().is_loopback() && token.is_none() {
                    self.error(
                        addr.span(),
                        "admin.listen",
                        format!("\"{parsed}\" is not a loopback address: set admin.token to expose the admin API"),
                    );
                }
                Some(parsed)
            }
        };
        let state_file = admin
            .state_file
            .as_ref()
            .map(|f| self.base_dir.join(f.get_ref()));
        Some(AdminConfig {
            listen,
            token,
            state_file,
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
            .map(|a| self.access(a, "server.access"))
            .unwrap_or_default();
        let trusted_proxies =
            self.cidrs(server.trusted_proxies.as_deref(), "server.trusted_proxies");
        Some(ServerConfig {
            listen,
            workers,
            limits,
            timeouts,
            access,
            trusted_proxies,
        })
    }

    fn socket_addr(&mut self, addr: &Spanned<String>, key: &str) -> Option<SocketAddr> {
        match addr.get_ref().parse::<SocketAddr>() {
            Ok(parsed) => Some(parsed),
            Err(_) => {
                self.error(
                    addr.span(),
                    key,
                    format!(
                        "invalid address \"{}\": expected ip:port such as \"127.0.0.1:8080\" or \
                         \"[::1]:8080\" (host names are not resolved)",
                        addr.get_ref()
                    ),
                );
                None
            }
        }
    }

    /// An integer within `min..=max`, as a `usize`.
    fn count(&mut self, value: &Spanned<i64>, key: &str, min: i64, max: i64) -> Option<usize> {
        let n = *value.get_ref();
        match usize::try_from(n) {
            Ok(converted) if (min..=max).contains(&n) => Some(converted),
            _ => {
                let range = if max == i64::MAX {
                    format!("at least {min}")
                } else {
                    format!("{min}..={max}")
                };
                self.error(
                    value.span(),
                    key,
                    format!("{n} is out of range: must be {range}"),
                );
                None
            }
        }
    }

    /// A size greater than zero; `default` when absent. On error, records it and returns 0
    /// (the config is discarded anyway).
    fn size(&mut self, value: &Option<Spanned<SizeValue>>, key: &str, default: u64) -> u64 {
        let Some(value) = value else { return default };
        match size_value(value.get_ref()) {
            Ok(0) => self.error(value.span(), key, "must be greater than zero"),
            Ok(n) => return n,
            Err(why) => self.error(value.span(), key, why),
        }
        0
    }

    /// A size where zero is meaningful; `default` when absent.
    fn size_or_zero(&mut self, value: &Option<Spanned<SizeValue>>, key: &str, default: u64) -> u64 {
        let Some(value) = value else { return default };
        size_value(value.get_ref()).unwrap_or_else(|why| {
            self.error(value.span(), key, why);
            0
        })
    }

    /// A duration where zero is meaningful (it turns a cache off, allows no skew);
    /// `default` when absent.
    fn duration_or_zero(
        &mut self,
        value: &Option<Spanned<DurationValue>>,
        key: &str,
        default: Duration,
    ) -> Duration {
        let Some(value) = value else { return default };
        parse_duration(&value.get_ref().0).unwrap_or_else(|why| {
            self.error(value.span(), key, why);
            Duration::ZERO
        })
    }

    /// The file at `path` (relative to the config file's directory), or an error naming it.
    fn read_relative(&mut self, path: &Spanned<String>, key: &str) -> Option<Vec<u8>> {
        let full = self.base_dir.join(path.get_ref());
        std::fs::read(&full)
            .map_err(|err| {
                let why = format!("cannot read \"{}\": {err}", full.display());
                self.error(path.span(), key, why);
            })
            .ok()
    }

    /// A percentage, 0..=100; `default` when absent.
    fn percent(&mut self, value: &Option<Spanned<i64>>, key: &str, default: u8) -> u8 {
        match value {
            None => default,
            Some(value) => self
                .count(value, key, 0, 100)
                .and_then(|n| u8::try_from(n).ok())
                .unwrap_or(0),
        }
    }

    fn size_usize(&mut self, value: &Option<Spanned<SizeValue>>, key: &str, default: u64) -> usize {
        let n = self.size(value, key, default);
        usize::try_from(n).unwrap_or_else(|_| {
            if let Some(value) = value {
                self.error(value.span(), key, "too large for this platform");
            }
            0
        })
    }

    /// A duration greater than zero (a zero timeout would fail every request); `default`
    /// when absent.
    fn duration(
        &mut self,
        value: &Option<Spanned<DurationValue>>,
        key: &str,
        default: Duration,
    ) -> Duration {
        let Some(value) = value else { return default };
        match parse_duration(&value.get_ref().0) {
            Ok(d) if d.is_zero() => self.error(value.span(), key, "must be greater than zero"),
            Ok(d) => return d,
            Err(why) => self.error(value.span(), key, why),
        }
        Duration::ZERO
    }

    /// An optional duration greater than zero; `None` when absent (or invalid: the error is
    /// recorded and the config discarded).
    fn opt_duration(
        &mut self,
        value: &Option<Spanned<DurationValue>>,
        key: &str,
    ) -> Option<Duration> {
        value.as_ref()?;
        Some(self.duration(value, key, Duration::ZERO)).filter(|d| !d.is_zero())
    }

    // ---- [upstreams.NAME] ----

    fn upstreams(
        &mut self,
        upstreams: BTreeMap<Spanned<String>, FileUpstream>,
    ) -> (Vec<UpstreamConfig>, BTreeMap<String, UpstreamId>) {
        let mut configs = Vec::new();
        let mut ids = BTreeMap::new();
        for (name, upstream) in upstreams {
            let prefix = format!("upstreams.{}", name.get_ref());
            if !is_name(name.get_ref()) {
                self.error(
                    name.span(),
                    &prefix,
                    "upstream names may only use letters, digits, '-', '_' and '.'",
                );
            }
            let endpoints = self.endpoints(&upstream, &prefix);
            let pool = PoolConfig {
                max_idle: match &upstream.pool.max_idle {
                    None => DEFAULT_POOL_MAX_IDLE as usize,
                    Some(value) => self
                        .count(value, &format!("{prefix}.pool.max_idle"), 0, i64::MAX)
                        .unwrap_or(0),
                },
                idle_timeout: self.duration(
                    &upstream.pool.idle_timeout,
                    &format!("{prefix}.pool.idle_timeout"),
                    DEFAULT_POOL_IDLE_TIMEOUT,
                ),
            };
            let balance = self.balance(&upstream, &prefix);
            let health = upstream
                .health
                .as_ref()
                .and_then(|health| self.health(health, &format!("{prefix}.health")));
            let outlier = self.outlier(&upstream.outlier, &format!("{prefix}.outlier"));
            let retry = self.retry(&upstream.retry, &format!("{prefix}.retry"));
            let limits = self.breaker_limits(&upstream.limits, &format!("{prefix}.limits"));
            let resolve_interval = self.duration(
                &upstream.resolve_interval,
                &format!("{prefix}.resolve_interval"),
                DEFAULT_RESOLVE_INTERVAL,
            );
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
                resolve_interval,
                shared: Default::default(),
            });
        }
        (configs, ids)
    }

    /// The endpoints of one upstream: IP literals as written, host names resolved now into
    /// one endpoint per address (sorted, so that the order does not follow DNS rotation).
    fn endpoints(&mut self, upstream: &FileUpstream, prefix: &str) -> Vec<Endpoint> {
        let mut endpoints: Vec<Endpoint> = Vec::new();
        if upstream.endpoints.get_ref().is_empty() {
            self.error(
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
                    self.endpoint_addrs(&Spanned::new(endpoint.span(), addr.clone()), &key),
                    Some(1),
                ),
                FileEndpoint::Table(table) => {
                    let addrs = self.endpoint_addrs(&table.addr, &format!("{key}.addr"));
                    let weight = match &table.weight {
                        None => Some(1),
                        Some(weight) => self.count(weight, &format!("{key}.weight"), 1, MAX_WEIGHT),
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
                self.error(endpoint.span(), key, message);
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
        &mut self,
        addr: &Spanned<String>,
        key: &str,
    ) -> Option<(Vec<SocketAddr>, Option<String>)> {
        let text = addr.get_ref();
        if let Ok(parsed) = text.parse::<SocketAddr>() {
            return Some((vec![parsed], None));
        }
        if !is_host_port(text) {
            self.error(
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
        match (self.resolve)(&name) {
            Ok(mut addrs) if !addrs.is_empty() => {
                addrs.sort();
                addrs.dedup();
                Some((addrs, Some(name)))
            }
            Ok(_) => {
                self.error(
                    addr.span(),
                    key,
                    format!("cannot resolve \"{text}\": no addresses"),
                );
                None
            }
            Err(err) => {
                self.error(
                    addr.span(),
                    key,
                    format!("cannot resolve \"{text}\": {err}"),
                );
                None
            }
        }
    }

    fn balance(&mut self, upstream: &FileUpstream, prefix: &str) -> BalancePolicy {
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
                    self.hash_key(key, &format!("{prefix}.hash_key"))
                        .unwrap_or(HashKey::Path),
                ),
                None => {
                    let span = upstream
                        .balance
                        .as_ref()
                        .map(Spanned::span)
                        .unwrap_or_default();
                    self.error(
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
                self.error(
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
                self.error(
                    key.span(),
                    format!("{prefix}.hash_key"),
                    "only applies with `balance = \"hash\"`",
                );
            }
        }
        balance
    }

    fn hash_key(&mut self, value: &Spanned<String>, key: &str) -> Option<HashKey> {
        let text = value.get_ref();
        let parsed = match text.split_once(':') {
            None if text == "client_ip" => Ok(HashKey::ClientIp),
            None if text == "path" => Ok(HashKey::Path),
            Some(("header", name)) if is_token(name) => {
                Ok(HashKey::Header(name.to_ascii_lowercase()))
            }
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
                self.error(value.span(), key, why);
                None
            }
        }
    }

    // ---- [upstreams.NAME.health | outlier | retry | limits] ----

    fn health(&mut self, health: &Spanned<FileHealth>, key: &str) -> Option<HealthCheckConfig> {
        let span = health.span();
        let health = health.get_ref();
        let mut ok = true;
        let method = match &health.method {
            None => DEFAULT_HEALTH_METHOD.to_owned(),
            Some(method) => {
                let text = method.get_ref();
                if !is_token(text) {
                    self.error(
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
                self.error(
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
                    self.error(
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
                self.error(
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
                    self.error(
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
                            self.error(value.span(), format!("{key}.expect[{index}]"), why);
                            ok = false;
                        }
                    }
                }
                ranges
            }
        };
        let interval = self.duration(
            &health.interval,
            &format!("{key}.interval"),
            DEFAULT_HEALTH_INTERVAL,
        );
        let timeout = self.duration(
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
            self.error(
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
        let healthy_threshold = self.threshold(
            &health.healthy_threshold,
            &format!("{key}.healthy_threshold"),
            DEFAULT_HEALTHY_THRESHOLD,
        );
        let unhealthy_threshold = self.threshold(
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

    fn threshold(&mut self, value: &Option<Spanned<i64>>, key: &str, default: u32) -> Option<u32> {
        match value {
            None => Some(default),
            Some(value) => self
                .count(value, key, 1, MAX_HEALTH_THRESHOLD)
                .and_then(|n| u32::try_from(n).ok()),
        }
    }

    fn outlier(&mut self, outlier: &FileOutlier, key: &str) -> OutlierConfig {
        let consecutive_failures = match &outlier.consecutive_failures {
            None => DEFAULT_OUTLIER_FAILURES,
            Some(value) => self
                .count(
                    value,
                    &format!("{key}.consecutive_failures"),
                    0,
                    u32::MAX.into(),
                )
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0),
        };
        let base_ejection = self.duration(
            &outlier.base_ejection,
            &format!("{key}.base_ejection"),
            DEFAULT_BASE_EJECTION,
        );
        let max_ejection = self.duration(
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
            self.error(
                at,
                format!("{key}.{field}"),
                format!(
                    "max_ejection ({}) must be at least base_ejection ({})",
                    show_duration(max_ejection),
                    show_duration(base_ejection)
                ),
            );
        }
        let max_ejected_percent = self.percent(
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

    fn retry(&mut self, retry: &FileRetry, key: &str) -> RetryPolicy {
        let attempts = match &retry.attempts {
            None => DEFAULT_RETRY_ATTEMPTS,
            Some(value) => self
                .count(value, &format!("{key}.attempts"), 1, MAX_RETRY_ATTEMPTS)
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(1),
        };
        let (mut on_connect_failure, mut on_reset, mut on_statuses) = (true, true, Vec::new());
        if let Some(list) = &retry.on {
            (on_connect_failure, on_reset) = (false, false);
            if list.get_ref().is_empty() {
                self.error(
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
                        self.error(
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
            self.opt_duration(&retry.per_try_timeout, &format!("{key}.per_try_timeout"));
        let timeout = self.opt_duration(&retry.timeout, &format!("{key}.timeout"));
        if let (Some(per_try), Some(overall), Some(value)) =
            (per_try_timeout, timeout, &retry.per_try_timeout)
        {
            if per_try > overall {
                self.error(
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
        let budget_percent = self.percent(
            &retry.budget_percent,
            &format!("{key}.budget_percent"),
            DEFAULT_RETRY_BUDGET_PERCENT,
        );
        let buffer_body_bytes = self.size_or_zero(
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

    fn breaker_limits(&mut self, limits: &FileBreakerLimits, key: &str) -> BreakerLimits {
        let mut limit = |value: &Option<Spanned<i64>>, field: &str| match value {
            None => DEFAULT_BREAKER_LIMIT,
            Some(value) => self
                .count(value, &format!("{key}.{field}"), 1, i64::MAX)
                .unwrap_or(1),
        };
        BreakerLimits {
            max_connections: limit(&limits.max_connections, "max_connections"),
            max_pending: limit(&limits.max_pending, "max_pending"),
            max_requests: limit(&limits.max_requests, "max_requests"),
        }
    }

    // ---- [[routes]] ----

    fn routes(
        &mut self,
        file_routes: Vec<Spanned<FileRoute>>,
        upstreams: &BTreeMap<String, UpstreamId>,
        has_keys: bool,
        providers: &oauth2::ProviderIds,
        jwt_providers: &jwt::Providers,
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
            let rate_limits = self.rate_limits(route.rate_limits.as_deref(), &prefix);
            let auth = route.auth.as_ref().and_then(|auth| {
                self.auth(auth, &prefix, has_keys, providers, jwt_providers, &methods)
            });
            let access = route
                .access
                .as_ref()
                .map(|a| self.access(a, &format!("{prefix}.access")))
                .filter(|a| !a.is_empty());
            let cors = route
                .cors
                .as_ref()
                .and_then(|cors| self.cors(cors, &format!("{prefix}.cors"), &methods));

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

    /// A route's `rate_limits`: unique names usable in a structured-field string, a known
    /// key, `limit` 1..=1_000_000_000, `period` from 1ms.
    fn rate_limits(
        &mut self,
        list: Option<&[Spanned<FileRateLimit>]>,
        prefix: &str,
    ) -> Vec<RateLimitConfig> {
        let mut out: Vec<RateLimitConfig> = Vec::new();
        for (i, entry) in list.unwrap_or_default().iter().enumerate() {
            let entry = entry.get_ref();
            let at = format!("{prefix}.rate_limits[{i}]");
            let name = entry.name.get_ref();
            if !is_name(name) {
                self.error(
                    entry.name.span(),
                    format!("{at}.name"),
                    format!("invalid name \"{name}\": use letters, digits, '-', '_' and '.'"),
                );
            } else if out.iter().any(|l| l.name == *name) {
                self.error(
                    entry.name.span(),
                    format!("{at}.name"),
                    format!("duplicate rate limit name \"{name}\" in this route"),
                );
            }
            let text = entry.key.get_ref();
            let key = match text.split_once(':') {
                None if text == "client_ip" => Some(RateLimitKey::ClientIp),
                None if text == "route" => Some(RateLimitKey::Route),
                None if text == "consumer" => Some(RateLimitKey::Consumer),
                Some(("header", header)) if is_token(header) => {
                    Some(RateLimitKey::Header(header.to_ascii_lowercase()))
                }
                Some(("header", header)) => {
                    self.error(
                        entry.key.span(),
                        format!("{at}.key"),
                        format!(
                            "invalid name \"{header}\" in \"{text}\": must be a non-empty token"
                        ),
                    );
                    None
                }
                _ => {
                    self.error(
                        entry.key.span(),
                        format!("{at}.key"),
                        format!(
                            "unknown rate limit key \"{text}\": expected client_ip, consumer, route \
                             or header:NAME"
                        ),
                    );
                    None
                }
            };
            let limit = self.count(&entry.limit, &format!("{at}.limit"), 1, 1_000_000_000);
            let period = match parse_duration(&entry.period.get_ref().0) {
                Ok(d) if d < Duration::from_millis(1) => {
                    self.error(
                        entry.period.span(),
                        format!("{at}.period"),
                        "must be at least 1ms",
                    );
                    None
                }
                Ok(d) => Some(d),
                Err(why) => {
                    self.error(entry.period.span(), format!("{at}.period"), why);
                    None
                }
            };
            let scope = match entry.scope.as_ref().map(|s| (s, s.get_ref().as_str())) {
                None | Some((_, "local")) => Some(RateLimitScope::Local),
                Some((s, "cluster")) if !self.has_cluster => {
                    self.error(
                        s.span(),
                        format!("{at}.scope"),
                        "a cluster limit needs a [cluster] table with redis = \"redis://...\"",
                    );
                    None
                }
                Some((_, "cluster")) => Some(RateLimitScope::Cluster),
                Some((s, other)) => {
                    self.error(
                        s.span(),
                        format!("{at}.scope"),
                        format!("unknown scope \"{other}\": expected \"local\" or \"cluster\""),
                    );
                    None
                }
            };
            if scope == Some(RateLimitScope::Cluster)
                && period.is_some_and(|p| p < MIN_CLUSTER_PERIOD)
            {
                self.error(
                    entry.period.span(),
                    format!("{at}.period"),
                    "a cluster limit's period must be at least 1s (many sync intervals)",
                );
            }
            if let (Some(key), Some(limit), Some(period), Some(scope)) = (key, limit, period, scope)
            {
                out.push(RateLimitConfig {
                    name: name.clone(),
                    key,
                    limit: u32::try_from(limit).unwrap_or(u32::MAX),
                    period,
                    scope,
                });
            }
        }
        out
    }

    /// An `access` table: every entry a CIDR (or a bare address) with no host bits set.
    fn access(&mut self, file: &FileAccess, key: &str) -> crate::access::AccessList {
        crate::access::AccessList {
            allow: self.cidrs(file.allow.as_deref(), &format!("{key}.allow")),
            deny: self.cidrs(file.deny.as_deref(), &format!("{key}.deny")),
        }
    }

    /// A list of CIDRs (or bare addresses) with no host bits set.
    fn cidrs(
        &mut self,
        entries: Option<&[Spanned<String>]>,
        key: &str,
    ) -> Vec<crate::access::Cidr> {
        let mut out = Vec::new();
        for (i, entry) in entries.unwrap_or_default().iter().enumerate() {
            match crate::access::Cidr::parse(entry.get_ref()) {
                Ok(cidr) => out.push(cidr),
                Err(why) => self.error(entry.span(), format!("{key}[{i}]"), why),
            }
        }
        out
    }

    /// A route's `cors`: valid origins (`*` alone, and never with credentials), method and
    /// header tokens, a whole-second `max_age`. `methods` are the route's, the default for
    /// `allow_methods`.
    fn cors(
        &mut self,
        cors: &Spanned<FileCors>,
        key: &str,
        methods: &[String],
    ) -> Option<crate::cors::CorsPolicy> {
        use crate::cors::{AllowHeaders, CorsPolicy, CorsSettings};
        let file = cors.get_ref();
        let errors_before = self.errors.len();
        let credentials = file
            .allow_credentials
            .as_ref()
            .is_some_and(|c| *c.get_ref());

        let origins = self.cors_origins(cors, key, credentials);
        let allow_methods = self.cors_methods(file, key, methods);

        let allow_headers = self.cors_header_names(
            file.allow_headers.as_deref(),
            &format!("{key}.allow_headers"),
            false,
        );
        let headers = match allow_headers {
            Some(names) if names.iter().any(|n| n == "*") => {
                if names.len() > 1 {
                    let span = file
                        .allow_headers
                        .iter()
                        .flatten()
                        .find(|n| n.get_ref() == "*")
                        .map_or(cors.span(), Spanned::span);
                    self.error(
                        span,
                        format!("{key}.allow_headers"),
                        "\"*\" reflects any requested header: list it alone",
                    );
                }
                AllowHeaders::Reflect
            }
            Some(names) => {
                AllowHeaders::List(names.into_iter().map(|n| n.into_bytes().into()).collect())
            }
            None => AllowHeaders::List(Vec::new()),
        };
        let expose_headers = self
            .cors_header_names(
                file.expose_headers.as_deref(),
                &format!("{key}.expose_headers"),
                credentials,
            )
            .unwrap_or_default();

        let max_age = file.max_age.as_ref().and_then(|value| {
            let at = format!("{key}.max_age");
            match parse_duration(&value.get_ref().0) {
                Ok(d) if d.subsec_nanos() != 0 => {
                    self.error(
                        value.span(),
                        at,
                        "must be whole seconds (Access-Control-Max-Age counts seconds)",
                    );
                    None
                }
                Ok(d) => Some(d.as_secs()),
                Err(why) => {
                    self.error(value.span(), at, why);
                    None
                }
            }
        });

        if self.errors.len() != errors_before {
            return None;
        }
        Some(CorsPolicy::new(CorsSettings {
            origins,
            methods: allow_methods,
            headers,
            expose_headers,
            credentials,
            max_age,
            private_network: file.allow_private_network.unwrap_or(false),
        }))
    }

    /// `allow_origins`: required, `*` alone and never with credentials, else valid and
    /// distinct origin patterns.
    fn cors_origins(
        &mut self,
        cors: &Spanned<FileCors>,
        key: &str,
        credentials: bool,
    ) -> crate::cors::AllowOrigins {
        use crate::cors::{AllowOrigins, OriginPattern};
        let mut patterns = Vec::new();
        let mut any = false;
        match &cors.get_ref().allow_origins {
            None => self.error(
                cors.span(),
                key,
                "allow_origins is required: list the origins, such as [\"https://app.example\"], or [\"*\"]",
            ),
            Some(list) if list.get_ref().is_empty() => self.error(
                list.span(),
                format!("{key}.allow_origins"),
                "empty list: name at least one origin",
            ),
            Some(list) => {
                let entries = list.get_ref();
                for (i, entry) in entries.iter().enumerate() {
                    let at = format!("{key}.allow_origins[{i}]");
                    if entry.get_ref() == "*" {
                        any = true;
                        if entries.len() > 1 {
                            self.error(entry.span(), at, "\"*\" allows every origin: list it alone");
                        } else if credentials {
                            self.error(
                                entry.span(),
                                at,
                                "\"*\" cannot be combined with allow_credentials = true (browsers \
                                 refuse credentialed responses for any origin): list the origins",
                            );
                        }
                        continue;
                    }
                    match OriginPattern::parse(entry.get_ref()) {
                        Ok(pattern) if patterns.contains(&pattern) => {
                            self.error(entry.span(), at, format!("duplicate origin \"{}\"", entry.get_ref()))
                        }
                        Ok(pattern) => patterns.push(pattern),
                        Err(why) => self.error(entry.span(), at, why),
                    }
                }
            }
        }
        if any {
            AllowOrigins::Any
        } else {
            AllowOrigins::List(patterns)
        }
    }

    /// `allow_methods`: method tokens; by default the route's `methods` (with `HEAD` when
    /// they have `GET`), or the common methods for a route accepting any.
    fn cors_methods(&mut self, file: &FileCors, key: &str, methods: &[String]) -> Vec<String> {
        match &file.allow_methods {
            Some(list) => {
                if list.get_ref().is_empty() {
                    self.error(
                        list.span(),
                        format!("{key}.allow_methods"),
                        "empty list: omit it to allow the route's methods",
                    );
                }
                let mut out: Vec<String> = Vec::new();
                for (i, method) in list.get_ref().iter().enumerate() {
                    let text = method.get_ref();
                    if text == "*" || !is_token(text) {
                        self.error(
                            method.span(),
                            format!("{key}.allow_methods[{i}]"),
                            format!(
                                "invalid method \"{text}\": list method tokens such as GET or PUT"
                            ),
                        );
                    } else if !out.contains(text) {
                        out.push(text.clone());
                    }
                }
                out
            }
            None if methods.is_empty() => crate::cors::DEFAULT_METHODS
                .iter()
                .map(|m| m.to_string())
                .collect(),
            None => {
                let mut out = methods.to_vec();
                // The router serves HEAD on a GET route.
                if out.iter().any(|m| m == "GET") && !out.iter().any(|m| m == "HEAD") {
                    out.push("HEAD".to_owned());
                }
                out
            }
        }
    }

    /// Header names of `allow_headers` / `expose_headers`, lower-cased and de-duplicated;
    /// `*` is kept for the caller. With credentials, `*` means a header literally named `*`
    /// to browsers, so it is refused.
    fn cors_header_names(
        &mut self,
        list: Option<&[Spanned<String>]>,
        key: &str,
        credentials: bool,
    ) -> Option<Vec<String>> {
        let list = list?;
        let mut out: Vec<String> = Vec::new();
        for (i, name) in list.iter().enumerate() {
            let text = name.get_ref();
            if !is_token(text) {
                self.error(
                    name.span(),
                    format!("{key}[{i}]"),
                    format!("invalid header name \"{text}\": must be a non-empty token"),
                );
            } else if text == "*" && credentials {
                self.error(
                    name.span(),
                    format!("{key}[{i}]"),
                    "\"*\" is not a wildcard with allow_credentials = true: list the headers",
                );
            } else {
                let lower = text.to_ascii_lowercase();
                if !out.contains(&lower) {
                    out.push(lower);
                }
            }
        }
        Some(out)
    }

    /// `[consumers.NAME]`: valid names, at least one key each, every key well formed and
    /// owned by one consumer only (a plain key and the `sha256:` of the same key count as
    /// the same key).
    fn consumers(&mut self, file: BTreeMap<Spanned<String>, FileConsumer>) -> Vec<ConsumerConfig> {
        let mut out = Vec::new();
        // Digest of every key seen → where it was first configured.
        let mut seen: HashMap<[u8; 32], String> = HashMap::new();
        for (name, consumer) in file {
            let prefix = format!("consumers.{}", name.get_ref());
            if !is_name(name.get_ref()) {
                self.error(
                    name.span(),
                    prefix.clone(),
                    format!(
                        "invalid consumer name \"{}\": use letters, digits, '-', '_' and '.'",
                        name.get_ref()
                    ),
                );
            }
            if consumer.api_keys.get_ref().is_empty() {
                self.error(
                    consumer.api_keys.span(),
                    format!("{prefix}.api_keys"),
                    "empty list: a consumer needs at least one key",
                );
            }
            let mut keys = Vec::new();
            for (i, key) in consumer.api_keys.get_ref().iter().enumerate() {
                let at = format!("{prefix}.api_keys[{i}]");
                let parsed = match crate::auth::parse_api_key(key.get_ref()) {
                    Ok(parsed) => parsed,
                    Err(why) => {
                        self.error(key.span(), at, why);
                        continue;
                    }
                };
                let digest = crate::auth::digest_of(&parsed);
                if let Some(first) = seen.get(&digest) {
                    let why = format!("duplicate API key (also {first})");
                    self.error(key.span(), at, why);
                    continue;
                }
                seen.insert(digest, at);
                keys.push(parsed);
            }
            out.push(ConsumerConfig {
                name: name.into_inner(),
                api_keys: keys,
            });
        }
        out
    }

    /// A route's `auth`: at least one method. `api_key` needs some consumer with a key;
    /// header names are tokens (lower-cased), the query name a plain word, and no header
    /// plays two parts (a credential is never mistaken for what Strait sets upstream).
    fn auth(
        &mut self,
        auth: &Spanned<FileAuth>,
        prefix: &str,
        has_keys: bool,
        providers: &oauth2::ProviderIds,
        jwt_providers: &jwt::Providers,
        methods: &[String],
    ) -> Option<AuthConfig> {
        let at = format!("{prefix}.auth");
        let file = auth.get_ref();
        if file.api_key.is_none() && file.jwt.is_none() && file.oauth2.is_none() {
            self.error(
                auth.span(),
                at,
                "no authentication method: set api_key = { header = \"x-api-key\" } or \
                 jwt = { providers = [\"NAME\"] } or oauth2 = { provider = \"NAME\" }",
            );
            return None;
        }
        let mut ok = true;
        let header_name =
            |this: &mut Self, value: Option<&Spanned<String>>, key: String, default: &str| {
                let Some(value) = value else {
                    return Some(String::from(default));
                };
                let text = value.get_ref();
                if is_token(text) {
                    Some(text.to_ascii_lowercase())
                } else {
                    this.error(
                        value.span(),
                        key,
                        format!("invalid header name \"{text}\": must be a non-empty token"),
                    );
                    None
                }
            };
        let consumer_header = header_name(
            self,
            file.consumer_header.as_ref(),
            format!("{at}.consumer_header"),
            "x-consumer",
        )?;
        let oauth2 = match &file.oauth2 {
            None => None,
            Some(oauth2) => {
                let built = self.oauth2_auth(oauth2, &at, providers, methods);
                ok &= built.is_some();
                built
            }
        };
        let mut api_key = None;
        if let Some(file_key) = &file.api_key {
            if !has_keys {
                self.error(
                    file_key.span(),
                    format!("{at}.api_key"),
                    "no consumer has an API key: add [consumers.NAME] with api_keys = [...]",
                );
                ok = false;
            }
            let header = header_name(
                self,
                file_key.get_ref().header.as_ref(),
                format!("{at}.api_key.header"),
                "x-api-key",
            );
            let query = match &file_key.get_ref().query {
                None => None,
                Some(q) if is_name(q.get_ref()) => Some(q.get_ref().clone()),
                Some(q) => {
                    self.error(
                        q.span(),
                        format!("{at}.api_key.query"),
                        format!(
                            "invalid query parameter name \"{}\": use letters, digits, '-', '_' \
                             and '.'",
                            q.get_ref()
                        ),
                    );
                    ok = false;
                    None
                }
            };
            let header = header?;
            if header == consumer_header {
                let span = file
                    .consumer_header
                    .as_ref()
                    .map_or(auth.span(), Spanned::span);
                self.error(
                    span,
                    format!("{at}.consumer_header"),
                    format!("\"{header}\" is also the API key header"),
                );
                ok = false;
            }
            if header == "authorization" && oauth2.is_some() {
                let span = file_key
                    .get_ref()
                    .header
                    .as_ref()
                    .map_or(auth.span(), Spanned::span);
                self.error(
                    span,
                    format!("{at}.api_key.header"),
                    "\"authorization\" carries the OAuth2 bearer token on this route",
                );
                ok = false;
            }
            api_key = Some(ApiKeyAuth { header, query });
        }
        if let Some(scope_header) = oauth2.as_ref().and_then(|o| o.scope_header.as_deref()) {
            let api_key_header = api_key.as_ref().map(|k| k.header.as_str());
            if scope_header == consumer_header
                || scope_header == "authorization"
                || Some(scope_header) == api_key_header
            {
                let span = file
                    .oauth2
                    .as_ref()
                    .and_then(|o| o.get_ref().scope_header.as_ref())
                    .map_or(auth.span(), Spanned::span);
                self.error(
                    span,
                    format!("{at}.oauth2.scope_header"),
                    format!("\"{scope_header}\" is already the consumer or a credential header"),
                );
                ok = false;
            }
        }
        let mut challenge = String::new();
        if let Some(api_key) = &api_key {
            let _ = write!(
                challenge,
                "www-authenticate: ApiKey header=\"{}\"\r\n",
                api_key.header
            );
        }
        let jwt = match &file.jwt {
            None => None,
            Some(jwt) => {
                let built = self.jwt_auth(
                    jwt,
                    &format!("{at}.jwt"),
                    jwt_providers,
                    &challenge,
                    &consumer_header,
                    api_key.as_ref().map(|k| k.header.as_str()),
                );
                ok &= built.is_some();
                built
            }
        };
        let mut challenge_invalid_token = challenge.clone();
        if oauth2.is_some() || jwt.is_some() {
            challenge.push_str(jwt::BEARER_CHALLENGE);
            challenge_invalid_token
                .push_str("www-authenticate: Bearer realm=\"strait\", error=\"invalid_token\"\r\n");
        }
        ok.then(|| AuthConfig {
            api_key,
            jwt,
            oauth2,
            consumer_header,
            challenge: Bytes::from(challenge),
            challenge_invalid_token: Bytes::from(challenge_invalid_token),
        })
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
        upstreams: &BTreeMap<String, UpstreamId>,
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
        upstreams: &BTreeMap<String, UpstreamId>,
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

/// RFC 9110 §5.6.2 `tchar`: the characters of a method or header-name token.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `bytes` without one trailing line break (`\n` or `\r\n`): what an editor or `echo`
/// appends to a secret kept in a file.
fn strip_line_end(bytes: &[u8]) -> &[u8] {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    bytes.strip_suffix(b"\r").unwrap_or(bytes)
}

fn is_token(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(is_tchar)
}

/// A `Host` value as configured: `host` or `host:port` (IPv6 in brackets).
fn is_host_header(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:[]".contains(&b))
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

fn size_value(value: &SizeValue) -> Result<u64, String> {
    match value {
        SizeValue::Bytes(n) => {
            u64::try_from(*n).map_err(|_| format!("invalid size {n}: must not be negative"))
        }
        SizeValue::Text(text) => parse_size(text),
    }
}

fn show_duration(duration: Duration) -> String {
    format!("{duration:?}")
}

fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// Best-effort dotted key for a TOML error at `offset`: the enclosing `[table]` (with an index
/// for `[[array]]` tables) plus the key on the error's line. Empty when it cannot tell.
fn key_hint(text: &str, offset: usize) -> String {
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    let mut table = String::new();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for raw in text[..line_start].lines().chain(std::iter::once(line)) {
        let trimmed = raw.trim_start();
        if let Some(rest) = trimmed.strip_prefix("[[") {
            if let Some(name) = rest.split("]]").next() {
                let name = name.trim().to_owned();
                let n = counts
                    .entry(name.clone())
                    .and_modify(|n| *n += 1)
                    .or_insert(0);
                table = format!("{name}[{n}]");
            }
        } else if let Some(rest) = trimmed.strip_prefix('[') {
            if let Some(name) = rest.split(']').next() {
                let name = name.trim();
                // `[routes.mock]`-style subtables of the last array element keep its index.
                table = match counts
                    .iter()
                    .find(|(array, _)| name.starts_with(&format!("{array}.")))
                {
                    Some((array, n)) => format!("{array}[{n}]{}", &name[array.len()..]),
                    None => name.to_owned(),
                };
            }
        }
    }
    let trimmed = line.trim_start();
    let key = if trimmed.starts_with('[') {
        ""
    } else {
        trimmed
            .split('=')
            .next()
            .filter(|_| trimmed.contains('='))
            .unwrap_or("")
            .trim()
    };
    match (table.is_empty(), key.is_empty()) {
        (_, true) => table,
        (true, false) => key.to_owned(),
        (false, false) => format!("{table}.{key}"),
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
    fn access_lists() {
        let config = |server: &str, route: &str| {
            format!(
                "[server]\nlisten = [\"127.0.0.1:1\"]\n[server.access]\n{server}\n\
                 [[routes]]\npath = \"/\"\nmock = {{ status = 200 }}\naccess = {route}\n"
            )
        };
        let cases: &[(&str, &str, &[&str])] = &[
            ("allow = [\"10.0.0.0/8\", \"::1/128\"]", "{ deny = [\"10.0.0.5\"] }", &[]),
            ("deny = [\"10.0.0.1/8\"]", "{}", &["t.toml:4:9: server.access.deny[0]: host bits set in \"10.0.0.1/8\": the network is 10.0.0.0/8"]),
            ("allow = [\"::1/128\", \"x\"]", "{}", &["t.toml:4:21: server.access.allow[1]: invalid IP address \"x\" in \"x\""]),
            ("", "{ allow = [\"10.0.0.0/40\"] }", &["t.toml:8:21: routes[0].access.allow[0]: invalid prefix length \"40\": must be 0..=32"]),
        ];
        for (server, route, want) in cases {
            assert_eq!(errors(&config(server, route)), *want, "{server} {route}");
        }
        assert!(errors(&config("", "{ alow = [] }"))[0].contains("unknown field `alow`"));
        let built = load_str(&config("deny = [\"10.0.0.0/8\"]", "{}"), "t.toml").unwrap();
        assert!(!built.server.access.permits("10.1.1.1".parse().unwrap()));
        assert!(built.server.access.permits("127.0.0.1".parse().unwrap()));
        // An empty route table is no list at all.
        assert!(built.routes.routes()[0].access.is_none());
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
    fn cors() {
        use crate::cors::{AllowHeaders, AllowOrigins, CorsPolicy, CorsSettings, OriginPattern};
        let config = |methods: &str, cors: &str| {
            format!(
                "[server]\nlisten = [\"127.0.0.1:1\"]\n[[routes]]\npath = \"/\"\n\
                 mock = {{ status = 200 }}\nmethods = [{methods}]\ncors = {cors}\n"
            )
        };
        let origins = "allow_origins = [\"https://app.example\"]";
        let cases: Vec<(String, Vec<&str>)> = vec![
            (format!("{{ {origins} }}"), vec![]),
            ("{ allow_origins = [\"*\"], allow_headers = [\"*\"] }".into(), vec![]),
            ("{}".into(), vec!["t.toml:7:8: routes[0].cors: allow_origins is required: list the origins, such as [\"https://app.example\"], or [\"*\"]"]),
            ("{ allow_origins = [] }".into(), vec!["t.toml:7:26: routes[0].cors.allow_origins: empty list: name at least one origin"]),
            ("{ allow_origins = [\"*\"], allow_credentials = true }".into(), vec!["t.toml:7:27: routes[0].cors.allow_origins[0]: \"*\" cannot be combined with allow_credentials = true (browsers refuse credentialed responses for any origin): list the origins"]),
            ("{ allow_origins = [\"*\", \"https://a.example\"] }".into(), vec!["t.toml:7:27: routes[0].cors.allow_origins[0]: \"*\" allows every origin: list it alone"]),
            ("{ allow_origins = [\"https://a.example/\", \"https://x.*.example\", \"a.example\"] }".into(), vec![
                "t.toml:7:27: routes[0].cors.allow_origins[0]: invalid origin \"https://a.example/\": an origin has no path, query, user or trailing slash (expected scheme://host[:port], such as \"https://app.example\")",
                "t.toml:7:49: routes[0].cors.allow_origins[1]: invalid origin \"https://x.*.example\": `*` is only allowed as a leading `*.` label (expected scheme://host[:port], such as \"https://app.example\")",
                "t.toml:7:72: routes[0].cors.allow_origins[2]: invalid origin \"a.example\": no scheme (expected scheme://host[:port], such as \"https://app.example\")",
            ]),
            ("{ allow_origins = [\"https://a.example\", \"HTTPS://A.example:443\"] }".into(), vec!["t.toml:7:48: routes[0].cors.allow_origins[1]: duplicate origin \"HTTPS://A.example:443\""]),
            (format!("{{ {origins}, allow_methods = [\"*\", \"GET POST\"] }}"), vec![
                "t.toml:7:68: routes[0].cors.allow_methods[0]: invalid method \"*\": list method tokens such as GET or PUT",
                "t.toml:7:73: routes[0].cors.allow_methods[1]: invalid method \"GET POST\": list method tokens such as GET or PUT",
            ]),
            (format!("{{ {origins}, allow_methods = [] }}"), vec!["t.toml:7:67: routes[0].cors.allow_methods: empty list: omit it to allow the route's methods"]),
            (format!("{{ {origins}, allow_headers = [\"x-a\", \"*\", \"a b\"] }}"), vec![
                "t.toml:7:75: routes[0].cors.allow_headers: \"*\" reflects any requested header: list it alone",
                "t.toml:7:80: routes[0].cors.allow_headers[2]: invalid header name \"a b\": must be a non-empty token",
            ]),
            (format!("{{ {origins}, allow_credentials = true, expose_headers = [\"*\"] }}"), vec!["t.toml:7:95: routes[0].cors.expose_headers[0]: \"*\" is not a wildcard with allow_credentials = true: list the headers"]),
            (format!("{{ {origins}, max_age = \"1500ms\" }}"), vec!["t.toml:7:61: routes[0].cors.max_age: must be whole seconds (Access-Control-Max-Age counts seconds)"]),
            (format!("{{ {origins}, max_age = \"soon\" }}"), vec!["t.toml:7:61: routes[0].cors.max_age: invalid duration \"soon\": must start with a non-negative integer, e.g. \"5s\""]),
        ];
        for (cors, want) in &cases {
            assert_eq!(errors(&config("", cors)), *want, "{cors}");
        }
        assert!(errors(&config("", "{ allow_origin = [] }"))[0]
            .contains("unknown field `allow_origin`"));

        let policy = |methods: &str, cors: &str| {
            let built = load_str(&config(methods, cors), "t.toml").unwrap();
            built.routes.routes()[0].cors.clone().unwrap()
        };
        let settings = |methods: &[&str]| CorsSettings {
            origins: AllowOrigins::List(vec![OriginPattern::parse("https://app.example").unwrap()]),
            methods: methods.iter().map(|m| m.to_string()).collect(),
            headers: AllowHeaders::List(Vec::new()),
            expose_headers: Vec::new(),
            credentials: false,
            max_age: None,
            private_network: false,
        };
        // allow_methods defaults to the route's methods (HEAD with GET), else the common ones.
        assert_eq!(
            policy("\"get\", \"POST\"", &format!("{{ {origins} }}")),
            CorsPolicy::new(settings(&["GET", "POST", "HEAD"]))
        );
        assert_eq!(
            policy("", &format!("{{ {origins} }}")),
            CorsPolicy::new(settings(&crate::cors::DEFAULT_METHODS))
        );
        let full = format!(
            "{{ {origins}, allow_methods = [\"PUT\", \"PUT\"], allow_headers = [\"X-A\", \"x-a\"], \
             expose_headers = [\"X-Total\"], allow_credentials = true, max_age = \"10m\", \
             allow_private_network = true }}"
        );
        assert_eq!(
            policy("", &full),
            CorsPolicy::new(CorsSettings {
                headers: AllowHeaders::List(vec![b"x-a"[..].into()]),
                expose_headers: vec!["x-total".into()],
                credentials: true,
                max_age: Some(600),
                private_network: true,
                ..settings(&["PUT"])
            })
        );
    }

    #[test]
    fn consumers_and_auth() {
        let config = |keys: &str, auth: &str| {
            format!(
                "[server]\nlisten = [\"127.0.0.1:1\"]\n[consumers.alice]\napi_keys = [{keys}]\n\
                 [[routes]]\npath = \"/\"\nmock = {{ status = 200 }}\nauth = {auth}\n"
            )
        };
        let sha_test = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let ok_auth = "{ api_key = {} }";
        let cases: &[(String, &str, &[&str])] = &[
            ("\"k1\"".into(), ok_auth, &[]),
            ("\"\", \"k9\"".into(), ok_auth, &["t.toml:4:13: consumers.alice.api_keys[0]: must not be empty"]),
            ("\"a b\", \"k9\"".into(), ok_auth, &["t.toml:4:13: consumers.alice.api_keys[0]: must be visible ASCII without spaces (or sha256:<64 hex>)"]),
            ("\"sha256:abc\", \"k9\"".into(), ok_auth, &["t.toml:4:13: consumers.alice.api_keys[0]: sha256 key must be 64 hex characters, found 3"]),
            ("\"k1\", \"k1\"".into(), ok_auth, &["t.toml:4:19: consumers.alice.api_keys[1]: duplicate API key (also consumers.alice.api_keys[0])"]),
            (format!("\"test\", \"{sha_test}\""), ok_auth, &["t.toml:4:21: consumers.alice.api_keys[1]: duplicate API key (also consumers.alice.api_keys[0])"]),
            ("".into(), ok_auth, &[
                "t.toml:4:12: consumers.alice.api_keys: empty list: a consumer needs at least one key",
                "t.toml:8:20: routes[0].auth.api_key: no consumer has an API key: add [consumers.NAME] with api_keys = [...]",
            ]),
            ("\"k1\"".into(), "{}", &["t.toml:8:8: routes[0].auth: no authentication method: set api_key = { header = \"x-api-key\" } or jwt = { providers = [\"NAME\"] } or oauth2 = { provider = \"NAME\" }"]),
            ("\"k1\"".into(), "{ api_key = { header = \"a b\" } }", &["t.toml:8:31: routes[0].auth.api_key.header: invalid header name \"a b\": must be a non-empty token"]),
            ("\"k1\"".into(), "{ api_key = { query = \"a&b\" } }", &["t.toml:8:30: routes[0].auth.api_key.query: invalid query parameter name \"a&b\": use letters, digits, '-', '_' and '.'"]),
            ("\"k1\"".into(), "{ api_key = {}, consumer_header = \"X-Api-Key\" }", &["t.toml:8:42: routes[0].auth.consumer_header: \"x-api-key\" is also the API key header"]),
        ];
        for (keys, auth, want) in cases {
            assert_eq!(errors(&config(keys, auth)), *want, "{keys} {auth}");
        }
        // A key shared by two consumers.
        let text = format!(
            "{}[consumers.bob]\napi_keys = [\"k1\"]\n",
            config("\"k1\"", ok_auth)
        );
        assert_eq!(
            errors(&text),
            ["t.toml:10:13: consumers.bob.api_keys[0]: duplicate API key (also consumers.alice.api_keys[0])"]
        );
        // deny_unknown_fields on the new tables.
        assert!(
            errors(&config("\"k1\"", "{ api_key = {}, realm = \"x\" }"))[0]
                .contains("unknown field `realm`")
        );
        assert!(errors(&format!(
            "{}[consumers.bob]\nkeys = []\n",
            config("\"k1\"", ok_auth)
        ))[0]
            .contains("unknown field `keys`"));

        let config = load_str(
            &config(
                &format!("\"k1\", \"{sha_test}\""),
                "{ api_key = { header = \"X-Key\", query = \"api_key\" }, consumer_header = \"X-Who\" }",
            ),
            "t.toml",
        )
        .unwrap();
        assert_eq!(config.consumers.len(), 1);
        assert_eq!(config.consumers[0].name, "alice");
        assert_eq!(config.consumers[0].api_keys.len(), 2);
        let auth = config.routes.routes()[0].auth.clone().unwrap();
        let api_key = auth.api_key.clone().unwrap();
        assert_eq!(
            (
                api_key.header.as_str(),
                api_key.query.as_deref(),
                auth.consumer_header.as_str()
            ),
            ("x-key", Some("api_key"), "x-who")
        );
        assert_eq!(
            &auth.challenge[..],
            b"www-authenticate: ApiKey header=\"x-key\"\r\n"
        );
    }

    #[test]
    fn rate_limits() {
        let base = "[server]\nlisten = [\"127.0.0.1:1\"]\n[[routes]]\npath = \"/\"\nmock = { status = 200 }\nrate_limits = [\n";
        let cases: &[(&str, &[&str])] = &[
            ("{ name = \"s\", key = \"client_ip\", limit = 10, period = \"1s\" }", &[]),
            ("{ name = \"a b\", key = \"route\", limit = 1, period = \"1s\" }", &["t.toml:7:10: routes[0].rate_limits[0].name: invalid name \"a b\": use letters, digits, '-', '_' and '.'"]),
            ("{ name = \"s\", key = \"ip\", limit = 1, period = \"1s\" }", &["t.toml:7:21: routes[0].rate_limits[0].key: unknown rate limit key \"ip\": expected client_ip, consumer, route or header:NAME"]),
            ("{ name = \"s\", key = \"header:\", limit = 1, period = \"1s\" }", &["t.toml:7:21: routes[0].rate_limits[0].key: invalid name \"\" in \"header:\": must be a non-empty token"]),
            ("{ name = \"s\", key = \"route\", limit = 0, period = \"1s\" }", &["t.toml:7:38: routes[0].rate_limits[0].limit: 0 is out of range: must be 1..=1000000000"]),
            ("{ name = \"s\", key = \"route\", limit = 1, period = \"0s\" }", &["t.toml:7:50: routes[0].rate_limits[0].period: must be at least 1ms"]),
            ("{ name = \"s\", key = \"route\", limit = 1, period = \"1s\" },\n{ name = \"s\", key = \"route\", limit = 2, period = \"1h\" }", &["t.toml:8:10: routes[0].rate_limits[1].name: duplicate rate limit name \"s\" in this route"]),
        ];
        for (limits, want) in cases {
            assert_eq!(errors(&format!("{base}{limits}\n]\n")), *want, "{limits}");
        }
        // deny_unknown_fields: a misspelt or unsupported key is an error, not ignored.
        let unknown = errors(&format!(
            "{base}{{ name = \"s\", key = \"route\", limit = 1, period = \"1s\", burst = 2 }}\n]\n"
        ));
        assert!(
            unknown.len() == 1
                && unknown[0].starts_with("t.toml:7:56: ")
                && unknown[0].contains("unknown field `burst`"),
            "{unknown:?}"
        );
        let config = load_str(
            &format!(
                "{base}{{ name = \"k\", key = \"header:X-Key\", limit = 5, period = \"1m\" }}\n]\n"
            ),
            "t.toml",
        )
        .unwrap();
        assert_eq!(
            config.routes.routes()[0].rate_limits,
            [RateLimitConfig {
                name: "k".into(),
                key: RateLimitKey::Header("x-key".into()),
                limit: 5,
                period: Duration::from_secs(60),
                scope: RateLimitScope::Local,
            }]
        );
    }

    #[test]
    fn cluster_keys() {
        let route = "[[routes]]\npath = \"/\"\nmock = { status = 200 }\nrate_limits = [";
        let config = |cluster: &str, scope: &str| {
            format!(
                "[server]\nlisten = [\"127.0.0.1:1\"]\n{cluster}\n{route}{{ name = \"f\", key = \"route\", limit = 5, period = \"1m\"{scope} }}]\n"
            )
        };
        let cluster = "[cluster]\nredis = \"redis://127.0.0.1:6379/0\"";
        let cases: &[(&str, &str, &[&str])] = &[
            (cluster, ", scope = \"cluster\"", &[]),
            (cluster, ", scope = \"local\"", &[]),
            ("", "", &[]),
            ("", ", scope = \"cluster\"", &["t.toml:7:79: routes[0].rate_limits[0].scope: a cluster limit needs a [cluster] table with redis = \"redis://...\""]),
            (cluster, ", scope = \"fleet\"", &["t.toml:8:79: routes[0].rate_limits[0].scope: unknown scope \"fleet\": expected \"local\" or \"cluster\""]),
            ("[cluster]\nredis = \"http://h\"", "", &["t.toml:4:9: cluster.redis: must be a redis:// URL such as \"redis://127.0.0.1:6379/0\""]),
            ("[cluster]\nredis = { url = \"redis://h:0\" }", "", &["t.toml:4:17: cluster.redis.url: invalid port \"0\""]),
            ("[cluster]\nredis = { url = \"redis://h\", timeout = \"0s\", key_prefix = \"a b\" }", "", &[
                "t.toml:4:40: cluster.redis.timeout: must be greater than zero",
                "t.toml:4:59: cluster.redis.key_prefix: must be non-empty visible ASCII without spaces",
            ]),
            ("[cluster]\nsync_interval = \"50ms\"", ", scope = \"cluster\"", &["t.toml:3:1: cluster: missing `redis`, the shared Redis (e.g. redis = \"redis://127.0.0.1:6379/0\")"]),
            (&format!("{cluster}\nsync_interval = \"5ms\""), "", &["t.toml:5:17: cluster.sync_interval: 5ms is out of range: must be 10ms..=10s"]),
            (&format!("{cluster}\non_redis_error = \"retry\""), "", &["t.toml:5:18: cluster.on_redis_error: unknown value \"retry\": expected \"open\" or \"closed\""]),
        ];
        for (cluster, scope, want) in cases {
            assert_eq!(errors(&config(cluster, scope)), *want, "{cluster} {scope}");
        }
        // A cluster limit's period is long enough for many sync rounds.
        let short = config(cluster, ", scope = \"cluster\"").replace("\"1m\"", "\"500ms\"");
        assert_eq!(
            errors(&short),
            ["t.toml:8:65: routes[0].rate_limits[0].period: a cluster limit's period must be at least 1s (many sync intervals)"]
        );
        // deny_unknown_fields in the new tables.
        assert!(
            errors(&config("[cluster]\nredis = \"redis://h\"\nnodes = 3", ""))[0]
                .contains("unknown field `nodes`")
        );
        assert!(errors(&config(
            "[cluster]\nredis = { url = \"redis://h\", pool = 2 }",
            ""
        ))[0]
            .contains("unknown field `pool`"));

        let built = load_str(
            &config(
                "[cluster]\nredis = { url = \"redis://:pw@cache:7000/2\", timeout = \"1s\", key_prefix = \"edge:rl\" }\nsync_interval = \"100ms\"\non_redis_error = \"closed\"",
                ", scope = \"cluster\"",
            ),
            "t.toml",
        )
        .unwrap();
        let cluster = built.cluster.unwrap();
        assert_eq!(
            (
                cluster.redis.host.as_str(),
                cluster.redis.port,
                cluster.redis.db,
                cluster.redis.password.as_deref(),
                cluster.timeout,
                cluster.sync_interval,
                cluster.on_redis_error,
                cluster.key_prefix.as_str()
            ),
            (
                "cache",
                7000,
                2,
                Some("pw"),
                Duration::from_secs(1),
                Duration::from_millis(100),
                OnRedisError::Closed,
                "edge:rl"
            )
        );
        assert_eq!(
            built.routes.routes()[0].rate_limits[0].scope,
            RateLimitScope::Cluster
        );
        // Defaults.
        let built = load_str(&config(cluster_default(), ""), "t.toml").unwrap();
        let cluster = built.cluster.unwrap();
        assert_eq!(
            (
                cluster.timeout,
                cluster.sync_interval,
                cluster.on_redis_error,
                cluster.key_prefix.as_str()
            ),
            (
                Duration::from_millis(250),
                Duration::from_millis(50),
                OnRedisError::Open,
                "strait:rl"
            )
        );
    }

    fn cluster_default() -> &'static str {
        "[cluster]\nredis = \"redis://127.0.0.1\""
    }

    #[test]
    fn observability_keys() {
        let base = "[server]\nlisten = [\"127.0.0.1:1\"]\n[observability]\n";
        let cases: &[(&str, &[&str])] = &[
            ("log_level = \"debug\"\n", &[]),
            ("log_level = \"strait=debug,warn\"\n", &[]),
            ("log_level = \"loud\"\n", &["t.toml:4:13: observability.log_level: invalid level \"loud\": expected error, warn, info, debug or trace (or filter directives)"]),
            ("request_id_header = \"X Id\"\n", &["t.toml:4:21: observability.request_id_header: must be a header name (a token)"]),
            ("[observability.access_log]\nformat = \"xml\"\n", &["t.toml:5:10: observability.access_log.format: unknown format \"xml\": expected \"json\" or \"combined\""]),
            ("[observability.access_log]\nsample = 1.5\n", &["t.toml:5:10: observability.access_log.sample: 1.5 is out of range: must be 0.0..=1.0"]),
            ("[observability.tracing]\notlp_endpoint = \"https://c:4318\"\n", &["t.toml:5:17: observability.tracing.otlp_endpoint: must be an http:// URL (OTLP over HTTP)"]),
        ];
        for (extra, want) in cases {
            assert_eq!(errors(&format!("{base}{extra}")), *want, "{extra}");
        }
        let config = load_str(base, "t.toml").unwrap();
        assert_eq!(config.observability.log_level, "info");
        assert_eq!(config.observability.request_id_header, "x-request-id");
        assert!(
            config.observability.access_log.is_some() && config.observability.tracing.is_none()
        );
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

    // ---- upstream resilience: balance, health, outlier, retry, limits, host names ----

    /// A fake DNS for deterministic tests: unknown names fail like `getaddrinfo` does.
    fn fake_resolve(name: &str) -> std::io::Result<Vec<SocketAddr>> {
        let addrs: &[&str] = match name {
            // Unsorted and with a repeat, as DNS answers may be.
            "users.internal:8080" => &["10.0.0.7:8080", "10.0.0.6:8080", "10.0.0.7:8080"],
            "dual.internal:80" => &["[fd00::1]:80", "10.0.0.1:80"],
            "alias.internal:80" => &["10.0.0.1:80"],
            "empty.internal:80" => &[],
            _ => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such host",
                ))
            }
        };
        Ok(addrs.iter().map(|a| a.parse().unwrap()).collect())
    }

    fn load_fake(text: &str) -> Result<Config, ConfigErrors> {
        load_str_with(text, "t.toml", &fake_resolve)
    }

    fn fake_errors(text: &str) -> Vec<String> {
        match load_fake(text) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.errors.iter().map(ToString::to_string).collect(),
        }
    }

    /// `MINIMAL` plus upstream `u` with one endpoint, then `extra` (keys of `[upstreams.u]`
    /// unless it opens a table).
    fn with_upstream(extra: &str) -> String {
        format!("{MINIMAL}[upstreams.u]\nendpoints = [\"10.0.0.1:80\"]\n{extra}\n")
    }

    fn upstream_u(extra: &str) -> UpstreamConfig {
        match load_fake(&with_upstream(extra)) {
            Ok(config) => config.upstreams[0].clone(),
            Err(err) => panic!("{extra}:\n{err}"),
        }
    }

    #[test]
    fn resilience_defaults() {
        let u = upstream_u("");
        assert_eq!(u.balance, BalancePolicy::RoundRobin);
        assert_eq!(u.health, None);
        assert_eq!(
            u.outlier,
            OutlierConfig {
                consecutive_failures: 5,
                base_ejection: Duration::from_secs(30),
                max_ejection: Duration::from_secs(300),
                max_ejected_percent: 50,
            }
        );
        assert_eq!(
            u.retry,
            RetryPolicy {
                attempts: 2,
                on_connect_failure: true,
                on_reset: true,
                on_statuses: Vec::new(),
                per_try_timeout: None,
                timeout: None,
                budget_percent: 20,
                buffer_body_bytes: 64 * 1024,
            }
        );
        assert_eq!(
            u.limits,
            BreakerLimits {
                max_connections: 10_000,
                max_pending: 10_000,
                max_requests: 10_000,
            }
        );
        assert_eq!(u.resolve_interval, Duration::from_secs(30));
        assert_eq!(u.endpoints[0].hostname, None);

        // A health table with only its required key takes every other default.
        let u = upstream_u("[upstreams.u.health]\npath = \"/healthz\"");
        assert_eq!(
            u.health,
            Some(HealthCheckConfig {
                method: "GET".into(),
                path: "/healthz".into(),
                host: None,
                expect: vec![(200, 399)],
                interval: Duration::from_secs(5),
                timeout: Duration::from_secs(1),
                healthy_threshold: 2,
                unhealthy_threshold: 3,
            })
        );
    }

    #[test]
    fn resilience_full() {
        let text = format!(
            r#"{MINIMAL}
[upstreams.users]
endpoints = ["10.0.0.1:80", {{ addr = "users.internal:8080", weight = 2 }}]
balance = "hash"
hash_key = "header:X-User"
resolve_interval = "10s"

[upstreams.users.health]
method = "head"
path = "/healthz?full=1"
host = "users.internal"
expect = ["200-299", 304, "418"]
interval = "2s"
timeout = "500ms"
healthy_threshold = 1
unhealthy_threshold = 100

[upstreams.users.outlier]
consecutive_failures = 0
base_ejection = "10s"
max_ejection = "10s"
max_ejected_percent = 100

[upstreams.users.retry]
attempts = 10
on = ["502", 504, "reset", "502"]
per_try_timeout = "5s"
timeout = "15s"
budget_percent = 0
buffer_body = 0

[upstreams.users.limits]
max_connections = 1
max_pending = 2
max_requests = 3

[[routes]]
path = "/users/{{*rest}}"
upstream = "users"
retry_non_idempotent = true

[[routes]]
path = "/other"
upstream = "users"
"#
        );
        let config = load_fake(&text).unwrap();
        let u = &config.upstreams[0];
        let ep = |addr: &str, weight, hostname: Option<&str>| Endpoint {
            addr: addr.parse().unwrap(),
            weight,
            hostname: hostname.map(str::to_owned),
        };
        assert_eq!(
            u.endpoints,
            vec![
                ep("10.0.0.1:80", 1, None),
                // Sorted, de-duplicated, each with the entry's weight and name.
                ep("10.0.0.6:8080", 2, Some("users.internal:8080")),
                ep("10.0.0.7:8080", 2, Some("users.internal:8080")),
            ]
        );
        assert_eq!(
            u.balance,
            BalancePolicy::Hash(HashKey::Header("x-user".into()))
        );
        assert_eq!(u.resolve_interval, Duration::from_secs(10));
        assert_eq!(
            u.health,
            Some(HealthCheckConfig {
                method: "HEAD".into(),
                path: "/healthz?full=1".into(),
                host: Some("users.internal".into()),
                expect: vec![(200, 299), (304, 304), (418, 418)],
                interval: Duration::from_secs(2),
                timeout: Duration::from_millis(500),
                healthy_threshold: 1,
                unhealthy_threshold: 100,
            })
        );
        assert_eq!(
            u.outlier,
            OutlierConfig {
                consecutive_failures: 0,
                base_ejection: Duration::from_secs(10),
                max_ejection: Duration::from_secs(10),
                max_ejected_percent: 100,
            }
        );
        assert_eq!(
            u.retry,
            RetryPolicy {
                attempts: 10,
                on_connect_failure: false,
                on_reset: true,
                on_statuses: vec![502, 504],
                per_try_timeout: Some(Duration::from_secs(5)),
                timeout: Some(Duration::from_secs(15)),
                budget_percent: 0,
                buffer_body_bytes: 0,
            }
        );
        assert_eq!(
            u.limits,
            BreakerLimits {
                max_connections: 1,
                max_pending: 2,
                max_requests: 3,
            }
        );
        let retry_flags: Vec<bool> = config
            .routes
            .routes()
            .iter()
            .map(|r| match &r.action {
                Action::Proxy(p) => p.retry_non_idempotent,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(retry_flags, vec![true, false]);
    }

    #[test]
    fn balance_policies() {
        let cases: &[(&str, BalancePolicy)] = &[
            ("", BalancePolicy::RoundRobin),
            ("balance = \"round_robin\"", BalancePolicy::RoundRobin),
            ("balance = \"p2c\"", BalancePolicy::P2c),
            ("balance = \"least_conn\"", BalancePolicy::LeastConn),
            (
                "balance = \"hash\"\nhash_key = \"client_ip\"",
                BalancePolicy::Hash(HashKey::ClientIp),
            ),
            (
                "balance = \"hash\"\nhash_key = \"path\"",
                BalancePolicy::Hash(HashKey::Path),
            ),
            (
                "balance = \"hash\"\nhash_key = \"header:X-Tenant-Id\"",
                BalancePolicy::Hash(HashKey::Header("x-tenant-id".into())),
            ),
            // Cookie names are case-sensitive (RFC 6265): kept as written.
            (
                "balance = \"hash\"\nhash_key = \"cookie:Session\"",
                BalancePolicy::Hash(HashKey::Cookie("Session".into())),
            ),
        ];
        for (extra, want) in cases {
            assert_eq!(&upstream_u(extra).balance, want, "{extra}");
        }
    }

    #[test]
    fn value_forms() {
        type Check = dyn Fn(&UpstreamConfig) -> bool;
        let cases: &[(&str, &Check)] = &[
            ("[upstreams.u.retry]\non = [\"connect_failure\"]", &|u| {
                u.retry.on_connect_failure && !u.retry.on_reset && u.retry.on_statuses.is_empty()
            }),
            ("[upstreams.u.retry]\non = [503, \"503\"]", &|u| {
                !u.retry.on_connect_failure && !u.retry.on_reset && u.retry.on_statuses == [503]
            }),
            ("[upstreams.u.retry]\nattempts = 1", &|u| {
                u.retry.attempts == 1
            }),
            ("[upstreams.u.retry]\nbuffer_body = \"1MiB\"", &|u| {
                u.retry.buffer_body_bytes == 1 << 20
            }),
            ("[upstreams.u.retry]\nbuffer_body = 512", &|u| {
                u.retry.buffer_body_bytes == 512
            }),
            (
                "[upstreams.u.retry]\nper_try_timeout = \"15s\"\ntimeout = \"15s\"",
                &|u| u.retry.per_try_timeout == u.retry.timeout,
            ),
            (
                "[upstreams.u.health]\npath = \"/\"\nexpect = [\"100-599\"]",
                &|u| u.health.as_ref().is_some_and(|h| h.expect == [(100, 599)]),
            ),
            // timeout < interval is checked on the values, defaults included.
            (
                "[upstreams.u.health]\npath = \"/\"\ninterval = \"2s\"",
                &|u| {
                    u.health
                        .as_ref()
                        .is_some_and(|h| h.interval == Duration::from_secs(2))
                },
            ),
            ("[upstreams.u.outlier]\nbase_ejection = \"300s\"", &|u| {
                u.outlier.base_ejection == u.outlier.max_ejection
            }),
            ("[upstreams.u.limits]\nmax_requests = 1", &|u| {
                u.limits.max_requests == 1 && u.limits.max_connections == 10_000
            }),
        ];
        for (extra, check) in cases {
            assert!(
                check(&upstream_u(extra)),
                "{extra}: {:#?}",
                upstream_u(extra)
            );
        }
    }

    #[test]
    fn resilience_errors() {
        // (extra lines for `[upstreams.u]`, the one expected error after "t.toml:L:C: ")
        let cases: &[(&str, &str)] = &[
            ("balance = \"random\"", "upstreams.u.balance: unknown policy \"random\": expected round_robin, p2c, least_conn or hash"),
            ("balance = \"hash\"", "upstreams.u.balance: `balance = \"hash\"` needs `hash_key`"),
            ("hash_key = \"path\"", "upstreams.u.hash_key: only applies with `balance = \"hash\"`"),
            ("balance = \"p2c\"\nhash_key = \"path\"", "upstreams.u.hash_key: only applies with"),
            ("balance = \"hash\"\nhash_key = \"ip\"", "upstreams.u.hash_key: unknown hash key \"ip\""),
            ("balance = \"hash\"\nhash_key = \"header:\"", "upstreams.u.hash_key: invalid name \"\" in \"header:\""),
            ("balance = \"hash\"\nhash_key = \"cookie:a b\"", "upstreams.u.hash_key: invalid name \"a b\""),
            ("balance = \"hash\"\nhash_key = \"query:x\"", "upstreams.u.hash_key: unknown hash key"),
            ("resolve_interval = \"0s\"", "upstreams.u.resolve_interval: must be greater than zero"),
            ("resolve_interval = \"30\"", "upstreams.u.resolve_interval: invalid duration \"30\": missing unit"),
            ("[upstreams.u.health]\ninterval = \"5s\"", "upstreams.u.health: missing `path`"),
            ("[upstreams.u.health]\npath = \"healthz\"", "upstreams.u.health.path: \"healthz\" must start with '/'"),
            ("[upstreams.u.health]\npath = \"/a b\"", "upstreams.u.health.path: \"/a b\" must be visible ASCII"),
            ("[upstreams.u.health]\npath = \"/a#b\"", "upstreams.u.health.path: \"/a#b\" must be visible ASCII"),
            ("[upstreams.u.health]\npath = \"/\"\nmethod = \"GE T\"", "upstreams.u.health.method: invalid method \"GE T\""),
            ("[upstreams.u.health]\npath = \"/\"\nmethod = \"\"", "upstreams.u.health.method: invalid method \"\""),
            ("[upstreams.u.health]\npath = \"/\"\nhost = \"a b\"", "upstreams.u.health.host: invalid host \"a b\""),
            ("[upstreams.u.health]\npath = \"/\"\nexpect = []", "upstreams.u.health.expect: empty list"),
            ("[upstreams.u.health]\npath = \"/\"\nexpect = [\"2xx\"]", "upstreams.u.health.expect[0]: invalid status range \"2xx\""),
            ("[upstreams.u.health]\npath = \"/\"\nexpect = [200, \"399-200\"]", "upstreams.u.health.expect[1]: invalid status range \"399-200\""),
            ("[upstreams.u.health]\npath = \"/\"\nexpect = [600]", "upstreams.u.health.expect[0]: invalid status range 600"),
            ("[upstreams.u.health]\npath = \"/\"\nexpect = [\"099-200\"]", "upstreams.u.health.expect[0]: invalid status range"),
            ("[upstreams.u.health]\npath = \"/\"\nexpect = [\"2000\"]", "upstreams.u.health.expect[0]: invalid status range"),
            ("[upstreams.u.health]\npath = \"/\"\ntimeout = \"5s\"", "upstreams.u.health.timeout: timeout (5s) must be shorter than interval (5s)"),
            ("[upstreams.u.health]\npath = \"/\"\ninterval = \"1s\"", "upstreams.u.health.interval: timeout (1s) must be shorter than interval (1s)"),
            ("[upstreams.u.health]\npath = \"/\"\ninterval = \"0s\"", "upstreams.u.health.interval: must be greater than zero"),
            ("[upstreams.u.health]\npath = \"/\"\nhealthy_threshold = 0", "upstreams.u.health.healthy_threshold: 0 is out of range: must be 1..=100"),
            ("[upstreams.u.health]\npath = \"/\"\nunhealthy_threshold = 101", "upstreams.u.health.unhealthy_threshold: 101 is out of range: must be 1..=100"),
            ("[upstreams.u.outlier]\nconsecutive_failures = -1", "upstreams.u.outlier.consecutive_failures: -1 is out of range: must be 0..=4294967295"),
            ("[upstreams.u.outlier]\nbase_ejection = \"60s\"\nmax_ejection = \"30s\"", "upstreams.u.outlier.max_ejection: max_ejection (30s) must be at least base_ejection (60s)"),
            ("[upstreams.u.outlier]\nbase_ejection = \"10m\"", "upstreams.u.outlier.base_ejection: max_ejection (300s) must be at least base_ejection (600s)"),
            ("[upstreams.u.outlier]\nmax_ejected_percent = 101", "upstreams.u.outlier.max_ejected_percent: 101 is out of range: must be 0..=100"),
            ("[upstreams.u.retry]\nattempts = 0", "upstreams.u.retry.attempts: 0 is out of range: must be 1..=10"),
            ("[upstreams.u.retry]\nattempts = 11", "upstreams.u.retry.attempts: 11 is out of range: must be 1..=10"),
            ("[upstreams.u.retry]\non = []", "upstreams.u.retry.on: empty list; set `attempts = 1` to turn retries off"),
            ("[upstreams.u.retry]\non = [\"reset\", \"500\"]", "upstreams.u.retry.on[1]: unknown retry condition \"500\""),
            ("[upstreams.u.retry]\non = [429]", "upstreams.u.retry.on[0]: unknown retry condition 429"),
            ("[upstreams.u.retry]\non = [\"timeout\"]", "upstreams.u.retry.on[0]: unknown retry condition \"timeout\""),
            ("[upstreams.u.retry]\nper_try_timeout = \"0s\"", "upstreams.u.retry.per_try_timeout: must be greater than zero"),
            ("[upstreams.u.retry]\ntimeout = \"1\"", "upstreams.u.retry.timeout: invalid duration \"1\": missing unit"),
            ("[upstreams.u.retry]\nper_try_timeout = \"10s\"\ntimeout = \"5s\"", "upstreams.u.retry.per_try_timeout: 10s is longer than `timeout` (5s)"),
            ("[upstreams.u.retry]\nbudget_percent = -1", "upstreams.u.retry.budget_percent: -1 is out of range: must be 0..=100"),
            ("[upstreams.u.retry]\nbuffer_body = \"1 KiB\"", "upstreams.u.retry.buffer_body: invalid size \"1 KiB\""),
            ("[upstreams.u.retry]\nbuffer_body = -1", "upstreams.u.retry.buffer_body: invalid size -1: must not be negative"),
            ("[upstreams.u.limits]\nmax_connections = 0", "upstreams.u.limits.max_connections: 0 is out of range: must be at least 1"),
            ("[upstreams.u.limits]\nmax_pending = 0", "upstreams.u.limits.max_pending: 0 is out of range: must be at least 1"),
            ("[upstreams.u.limits]\nmax_requests = -5", "upstreams.u.limits.max_requests: -5 is out of range: must be at least 1"),
            ("[[routes]]\npath = \"/\"\nmock = { status = 200 }\nretry_non_idempotent = true", "routes[0].retry_non_idempotent: only applies to routes with an `upstream`"),
        ];
        for (extra, want) in cases {
            let got = fake_errors(&with_upstream(extra));
            assert_eq!(got.len(), 1, "{extra}: {got:#?}");
            let message = got[0]
                .splitn(4, ':')
                .nth(3)
                .unwrap_or_default()
                .trim_start();
            assert!(
                message.starts_with(want),
                "{extra}\n got: {}\nwant: {want}",
                got[0]
            );
        }
    }

    #[test]
    fn resilience_errors_have_positions() {
        let text = r#"[server]
listen = ["127.0.0.1:8080"]

[upstreams.users]
endpoints = ["10.0.0.1:80", { addr = "missing.internal:80", weight = 2 }, "nope"]
balance = "hash"
resolve_interval = "0s"

[upstreams.users.health]
path = "healthz"
expect = ["200-399", "5xx"]
timeout = "10s"

[upstreams.users.outlier]
base_ejection = "1m"
max_ejection = "30s"

[upstreams.users.retry]
attempts = 0
on = ["connect_failure", "500"]
per_try_timeout = "20s"
timeout = "10s"

[upstreams.users.limits]
max_pending = 0

[upstreams.other]
endpoints = ["10.0.0.2:80"]
[upstreams.other.health]
interval = "1s"

[[routes]]
path = "/"
mock = { status = 200 }
retry_non_idempotent = false
"#;
        let want = [
            "t.toml:5:38: upstreams.users.endpoints[1].addr: cannot resolve \"missing.internal:80\": no such host",
            "t.toml:5:75: upstreams.users.endpoints[2]: invalid address \"nope\": expected ip:port or host:port",
            "t.toml:6:11: upstreams.users.balance: `balance = \"hash\"` needs `hash_key`",
            "t.toml:7:20: upstreams.users.resolve_interval: must be greater than zero",
            "t.toml:10:8: upstreams.users.health.path: \"healthz\" must start with '/'",
            "t.toml:11:22: upstreams.users.health.expect[1]: invalid status range \"5xx\"",
            "t.toml:12:11: upstreams.users.health.timeout: timeout (10s) must be shorter than interval (5s)",
            "t.toml:16:16: upstreams.users.outlier.max_ejection: max_ejection (30s) must be at least base_ejection (60s)",
            "t.toml:19:12: upstreams.users.retry.attempts: 0 is out of range: must be 1..=10",
            "t.toml:20:26: upstreams.users.retry.on[1]: unknown retry condition \"500\"",
            "t.toml:21:19: upstreams.users.retry.per_try_timeout: 20s is longer than `timeout` (10s)",
            "t.toml:25:15: upstreams.users.limits.max_pending: 0 is out of range: must be at least 1",
            // A missing key points at its table's header.
            "t.toml:29:1: upstreams.other.health: missing `path`, the request target to check",
            // The default timeout (1s) against a written interval: the interval is named.
            "t.toml:30:12: upstreams.other.health.interval: timeout (1s) must be shorter than interval (1s)",
            "t.toml:35:24: routes[0].retry_non_idempotent: only applies to routes with an `upstream`",
        ];
        let got = fake_errors(text);
        for (one, want) in got.iter().zip(want.iter()) {
            assert!(
                one.starts_with(want),
                "\n got: {one}\nwant: {want}\n all: {got:#?}"
            );
        }
        assert_eq!(got.len(), want.len(), "{got:#?}");
    }

    #[test]
    fn host_name_endpoints() {
        // (the `endpoints` list, the expected (address, hostname) of each endpoint)
        type Want<'a> = &'a [(&'a str, Option<&'a str>)];
        let ok: &[(&str, Want)] = &[
            (
                "\"dual.internal:80\"",
                &[
                    ("10.0.0.1:80", Some("dual.internal:80")),
                    ("[fd00::1]:80", Some("dual.internal:80")),
                ],
            ),
            // DNS names are case-insensitive: stored lower case.
            (
                "\"Dual.Internal:80\"",
                &[
                    ("10.0.0.1:80", Some("dual.internal:80")),
                    ("[fd00::1]:80", Some("dual.internal:80")),
                ],
            ),
            (
                "\"10.0.0.9:80\", \"[::1]:80\"",
                &[("10.0.0.9:80", None), ("[::1]:80", None)],
            ),
            // Other ports of a resolved address are other endpoints.
            (
                "\"10.0.0.1:81\", \"alias.internal:80\"",
                &[
                    ("10.0.0.1:81", None),
                    ("10.0.0.1:80", Some("alias.internal:80")),
                ],
            ),
        ];
        for (list, want) in ok {
            let text = format!("{MINIMAL}[upstreams.u]\nendpoints = [{list}]\n");
            let config = match load_fake(&text) {
                Ok(config) => config,
                Err(err) => panic!("{list}:\n{err}"),
            };
            let got: Vec<(SocketAddr, Option<&str>)> = config.upstreams[0]
                .endpoints
                .iter()
                .map(|e| (e.addr, e.hostname.as_deref()))
                .collect();
            let want: Vec<(SocketAddr, Option<&str>)> =
                want.iter().map(|(a, h)| (a.parse().unwrap(), *h)).collect();
            assert_eq!(got, want, "{list}");
        }

        let bad: &[(&str, &str)] = &[
            ("\"missing.internal:80\"", "endpoints[0]: cannot resolve \"missing.internal:80\": no such host"),
            ("\"empty.internal:80\"", "endpoints[0]: cannot resolve \"empty.internal:80\": no addresses"),
            ("\"users.internal\"", "endpoints[0]: invalid address \"users.internal\""),
            ("\"users.internal:http\"", "endpoints[0]: invalid address"),
            ("\"users.internal:65536\"", "endpoints[0]: invalid address"),
            ("\"http://users.internal:80\"", "endpoints[0]: invalid address"),
            ("\"-bad.internal:80\"", "endpoints[0]: invalid address"),
            ("\"a..b:80\"", "endpoints[0]: invalid address"),
            ("\":80\"", "endpoints[0]: invalid address"),
            // A malformed IP is not sent to the resolver (which might read 1.2.3 as 1.2.0.3).
            ("\"1.2.3:80\"", "endpoints[0]: invalid address \"1.2.3:80\""),
            ("\"::1:80\"", "endpoints[0]: invalid address"),
            ("\"dual.internal:80\", \"DUAL.internal:80\"", "endpoints[1]: duplicate endpoint \"dual.internal:80\" in this upstream"),
            ("\"10.0.0.1:80\", \"alias.internal:80\"", "endpoints[1]: duplicate endpoint \"10.0.0.1:80\" in this upstream (\"alias.internal:80\" resolves to it, and so does endpoints[0])"),
            ("\"dual.internal:80\", \"alias.internal:80\"", "endpoints[1]: duplicate endpoint \"10.0.0.1:80\" in this upstream (\"alias.internal:80\" resolves to it, and so does endpoints[0])"),
            ("\"alias.internal:80\", \"10.0.0.1:80\"", "endpoints[1]: duplicate endpoint \"10.0.0.1:80\" in this upstream"),
            ("{ addr = \"missing.internal:80\", weight = 2 }", "endpoints[0].addr: cannot resolve"),
        ];
        for (list, want) in bad {
            let text = format!("{MINIMAL}[upstreams.u]\nendpoints = [{list}]\n");
            let got = fake_errors(&text);
            assert_eq!(got.len(), 1, "{list}: {got:#?}");
            assert!(
                got[0].contains(&format!("upstreams.u.{want}")),
                "{list}\n got: {}\nwant: {want}",
                got[0]
            );
        }
    }

    /// The system resolver, with the one name every machine has. `localhost` may resolve to
    /// 127.0.0.1, ::1 or both, so the expectations are derived from what it resolves to here.
    #[test]
    fn localhost_resolves_with_the_system_resolver() {
        let port = 9;
        let resolved: Vec<SocketAddr> = ("localhost", port).to_socket_addrs().unwrap().collect();
        assert!(!resolved.is_empty());
        let text = format!(
            "{MINIMAL}[upstreams.u]\nendpoints = [{{ addr = \"localhost:{port}\", weight = 3 }}]\n"
        );
        let config = load_str(&text, "t.toml").unwrap();
        let endpoints = &config.upstreams[0].endpoints;
        let mut want = resolved.clone();
        want.sort();
        want.dedup();
        assert_eq!(endpoints.iter().map(|e| e.addr).collect::<Vec<_>>(), want);
        for e in endpoints {
            assert!(e.addr.ip().is_loopback(), "{e:?}");
            assert_eq!(e.weight, 3);
            assert_eq!(e.hostname.as_deref(), Some(&*format!("localhost:{port}")));
        }

        // Next to the IPv4 literal: a duplicate exactly when localhost includes 127.0.0.1.
        let text = format!(
            "{MINIMAL}[upstreams.u]\nendpoints = [\"127.0.0.1:{port}\", \"localhost:{port}\"]\n"
        );
        let v4: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        match load_str(&text, "t.toml") {
            Ok(config) => {
                assert!(!resolved.contains(&v4), "{resolved:?}");
                assert_eq!(config.upstreams[0].endpoints.len(), 1 + want.len());
            }
            Err(err) => {
                assert!(resolved.contains(&v4), "{resolved:?}: {err}");
                assert!(
                    err.to_string()
                        .contains("duplicate endpoint \"127.0.0.1:9\""),
                    "{err}"
                );
            }
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
