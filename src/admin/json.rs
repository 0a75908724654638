//! JSON views of the served config for the admin API. Durations are strings in the config
//! file's syntax (`"10s"`, `"250ms"`), sizes are numbers of bytes, and values are shown the
//! way the config file writes them (`"client_ip"`, `"header:x-key"`, `"200-399"`).
//!
//! Secrets never appear: the admin token, API keys, OAuth2 client secrets and Redis
//! passwords are shown as `"***"` when set (an API key given as its SHA-256 digest as
//! `"sha256:***"`), the credentials in a URL as `***@`, and JWT key material (HMAC
//! secrets, public keys) not at all: only where the keys come from and how many there are.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use crate::access::AccessList;
use crate::auth::config::{ApiKey, AuthConfig};
use crate::auth::jwt::{JwtProvider, KeySource};
use crate::auth::oauth2::config::{ConsumerClaim, OnIntrospectionError};
use crate::config::{Action, Config, ServerConfig};
use crate::control::ReloadStatus;
use crate::cors::{AllowHeaders, AllowOrigins, CorsSettings, OriginPattern};
use crate::observe::config::{AccessLogFormat, LogDestination, ObservabilityConfig};
use crate::ratelimit::config::{
    ClusterConfig, OnRedisError, RateLimitConfig, RateLimitKey, RateLimitScope,
};
use crate::upstream::config::{
    BalancePolicy, Endpoint, HashKey, HealthCheckConfig, RetryPolicy, UpstreamConfig,
};
use crate::upstream::HealthRegistry;

/// Shown instead of a secret that is set.
const REDACTED: &str = "***";

/// Registered endpoints by upstream name, as [`crate::control::Control::registered`] gives
/// them.
pub type Registered = [(String, Vec<Endpoint>)];

/// The whole effective config: every section of the file, defaults filled in.
pub fn config(
    config: &Config,
    registered: &Registered,
    health: &HealthRegistry,
    generation: u64,
) -> Value {
    json!({
        "generation": generation,
        "server": server(&config.server),
        "upstreams": upstreams(config, registered, health),
        "routes": routes(config),
        "consumers": consumers(config),
        "jwt_providers": jwt_providers(config),
        "oauth2_providers": oauth2_providers(config),
        "admin": {
            "enabled": config.admin.listen.is_some(),
            "listen": config.admin.listen.map(|a| a.to_string()),
            "token": config.admin.token.as_ref().map(|_| REDACTED),
            "state_file": config.admin.state_file.as_ref().map(|p| p.display().to_string()),
        },
        "observability": observability(&config.observability),
        "cluster": config.cluster.as_ref().map(cluster),
    })
}

fn server(server: &ServerConfig) -> Value {
    let limits = &server.limits;
    let timeouts = &server.timeouts;
    json!({
        "listen": strings(&server.listen),
        "workers": server.workers,
        "limits": {
            "max_header_bytes": limits.max_header_bytes,
            "max_headers": limits.max_headers,
            "max_body_bytes": limits.max_body_bytes,
            "max_uri_bytes": limits.max_uri_bytes,
        },
        "timeouts": {
            "header_read": duration(timeouts.header_read),
            "keepalive_idle": duration(timeouts.keepalive_idle),
            "body_read": duration(timeouts.body_read),
            "upstream_connect": duration(timeouts.upstream_connect),
            "upstream_response": duration(timeouts.upstream_response),
            "drain": duration(timeouts.drain),
            "client_send": duration(timeouts.client_send),
        },
        "access": access_list(&server.access),
        "trusted_proxies": strings(&server.trusted_proxies),
    })
}

/// An `access` table: `allow` and `deny` networks.
fn access_list(list: &AccessList) -> Value {
    json!({"allow": strings(&list.allow), "deny": strings(&list.deny)})
}

fn strings<T: ToString>(items: &[T]) -> Vec<String> {
    items.iter().map(ToString::to_string).collect()
}

pub fn upstreams(config: &Config, registered: &Registered, health: &HealthRegistry) -> Vec<Value> {
    config
        .upstreams
        .iter()
        .map(|u| upstream(u, registered, health))
        .collect()
}

/// One upstream: its balancing policy, and per endpoint whether it comes from the config
/// file or was registered through the API, the host name it was resolved from (when it
/// was), and the active-health verdict.
///
/// `healthy` is the shared flag the checker thread writes (true when the upstream has no
/// active checks, or the checker has not judged the endpoint yet). Passive ejection
/// (outlier detection) is per worker and not visible here.
pub fn upstream(
    upstream: &UpstreamConfig,
    registered: &Registered,
    health: &HealthRegistry,
) -> Value {
    let own: &[Endpoint] = registered
        .iter()
        .find(|(name, _)| *name == upstream.name)
        .map(|(_, list)| list.as_slice())
        .unwrap_or_default();
    let endpoints: Vec<Value> = upstream
        .endpoints
        .iter()
        .map(|e| {
            let source = if own.iter().any(|r| r.addr == e.addr) {
                "registered"
            } else {
                "config"
            };
            let healthy = upstream.health.is_none()
                || health
                    .get(&upstream.name, e.addr)
                    .is_none_or(|flag| flag.is_healthy());
            let mut view = json!({
                "addr": e.addr.to_string(),
                "weight": e.weight,
                "source": source,
                "healthy": healthy,
            });
            if let Some(hostname) = &e.hostname {
                view["hostname"] = json!(hostname);
            }
            view
        })
        .collect();
    let outlier = &upstream.outlier;
    let limits = &upstream.limits;
    let mut view = json!({
        "name": upstream.name,
        "balance": balance_name(&upstream.balance),
        "active_health_checks": upstream.health.is_some(),
        "endpoints": endpoints,
        "pool": {
            "max_idle": upstream.pool.max_idle,
            "idle_timeout": duration(upstream.pool.idle_timeout),
        },
        "resolve_interval": duration(upstream.resolve_interval),
        "health": upstream.health.as_ref().map(health_check),
        "outlier": {
            "consecutive_failures": outlier.consecutive_failures,
            "base_ejection": duration(outlier.base_ejection),
            "max_ejection": duration(outlier.max_ejection),
            "max_ejected_percent": outlier.max_ejected_percent,
        },
        "retry": retry(&upstream.retry),
        "limits": {
            "max_connections": limits.max_connections,
            "max_pending": limits.max_pending,
            "max_requests": limits.max_requests,
        },
    });
    if let BalancePolicy::Hash(key) = &upstream.balance {
        view["hash_key"] = json!(hash_key_text(key));
    }
    view
}

/// `[upstreams.NAME.health]`; `expect` as `"NNN"` or `"NNN-MMM"` ranges.
fn health_check(check: &HealthCheckConfig) -> Value {
    let expect: Vec<String> = check
        .expect
        .iter()
        .map(|&(lo, hi)| {
            if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}-{hi}")
            }
        })
        .collect();
    json!({
        "method": check.method,
        "path": check.path,
        "host": check.host,
        "expect": expect,
        "interval": duration(check.interval),
        "timeout": duration(check.timeout),
        "healthy_threshold": check.healthy_threshold,
        "unhealthy_threshold": check.unhealthy_threshold,
    })
}

/// `[upstreams.NAME.retry]`; `on` lists what is retried as the config writes it.
fn retry(retry: &RetryPolicy) -> Value {
    let mut on: Vec<Value> = Vec::new();
    if retry.on_connect_failure {
        on.push(json!("connect_failure"));
    }
    if retry.on_reset {
        on.push(json!("reset"));
    }
    on.extend(retry.on_statuses.iter().map(|s| json!(s)));
    json!({
        "attempts": retry.attempts,
        "on": on,
        "per_try_timeout": retry.per_try_timeout.map(duration),
        "timeout": retry.timeout.map(duration),
        "budget_percent": retry.budget_percent,
        "buffer_body": retry.buffer_body_bytes,
    })
}

/// The `balance` value as written in the config file.
fn balance_name(policy: &BalancePolicy) -> &'static str {
    match policy {
        BalancePolicy::RoundRobin => "round_robin",
        BalancePolicy::P2c => "p2c",
        BalancePolicy::LeastConn => "least_conn",
        BalancePolicy::Hash(_) => "hash",
    }
}

/// The `hash_key` value in config syntax (header names lower case, as served).
fn hash_key_text(key: &HashKey) -> String {
    match key {
        HashKey::ClientIp => "client_ip".to_string(),
        HashKey::Path => "path".to_string(),
        HashKey::Header(name) => format!("header:{name}"),
        HashKey::Cookie(name) => format!("cookie:{name}"),
    }
}

pub fn routes(config: &Config) -> Vec<Value> {
    config
        .routes
        .routes()
        .iter()
        .enumerate()
        .map(|(index, route)| {
            let action = match &route.action {
                Action::Proxy(proxy) => json!({
                    "type": "proxy",
                    "upstream": config.upstreams.get(proxy.upstream).map(|u| u.name.as_str()),
                    "strip_prefix": proxy.strip_prefix,
                    "preserve_host": proxy.preserve_host,
                    "host_rewrite": proxy.host_rewrite,
                    "retry_non_idempotent": proxy.retry_non_idempotent,
                }),
                Action::Mock(mock) => json!({
                    "type": "mock",
                    "status": mock.status,
                    "headers": mock_headers(&mock.head),
                    "body_bytes": mock.body.len(),
                }),
                Action::Aggregate(aggregate) => json!({
                    "type": "aggregate",
                    "parts": aggregate.parts.iter().map(|part| json!({
                        "name": &*part.name,
                        "upstream": config.upstreams.get(part.upstream).map(|u| u.name.as_str()),
                        "required": part.required,
                    })).collect::<Vec<_>>(),
                }),
            };
            json!({
                "name": route.name,
                "path": route.path,
                "hosts": config.routes.hosts(index),
                "methods": route.methods,
                "action": action,
                "rate_limits": route.rate_limits.iter().map(rate_limit).collect::<Vec<_>>(),
                "auth": route.auth.as_ref().map(|auth| route_auth(config, auth)),
                "access": route.access.as_ref().map(access_list),
                "cors": route.cors.as_ref().map(|cors| cors_view(cors.settings())),
            })
        })
        .collect()
}

/// A mock's configured headers, read back from its pre-rendered head (the status line and
/// the `content-length` Strait adds are left out).
fn mock_headers(head: &[u8]) -> Map<String, Value> {
    let head = String::from_utf8_lossy(head);
    head.split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(": "))
        .filter(|(name, _)| !name.eq_ignore_ascii_case("content-length"))
        .map(|(name, value)| (name.to_string(), json!(value)))
        .collect()
}

fn rate_limit(limit: &RateLimitConfig) -> Value {
    let key = match &limit.key {
        RateLimitKey::ClientIp => "client_ip".to_string(),
        RateLimitKey::Route => "route".to_string(),
        RateLimitKey::Consumer => "consumer".to_string(),
        RateLimitKey::Header(name) => format!("header:{name}"),
    };
    let scope = match limit.scope {
        RateLimitScope::Local => "local",
        RateLimitScope::Cluster => "cluster",
    };
    json!({
        "name": limit.name,
        "key": key,
        "limit": limit.limit,
        "period": duration(limit.period),
        "scope": scope,
    })
}

/// A route's `auth`: which methods it accepts, with providers by name.
fn route_auth(config: &Config, auth: &AuthConfig) -> Value {
    let api_key = auth
        .api_key
        .as_ref()
        .map(|key| json!({"header": key.header, "query": key.query}));
    let jwt = auth.jwt.as_ref().map(|jwt| {
        let providers: Vec<&str> = jwt.providers.iter().map(|p| p.name.as_str()).collect();
        json!({"providers": providers, "forward_token": jwt.forward_token})
    });
    let oauth2 = auth.oauth2.as_ref().map(|oauth2| {
        let method_scopes: Map<String, Value> = oauth2
            .method_scopes
            .iter()
            .map(|(method, scopes)| (method.clone(), json!(scopes.scopes)))
            .collect();
        json!({
            "provider": config.oauth2_providers.get(oauth2.provider).map(|p| p.name.as_str()),
            "scopes": oauth2.scopes.scopes,
            "method_scopes": method_scopes,
            "forward_token": oauth2.forward_token,
            "scope_header": oauth2.scope_header,
        })
    });
    json!({
        "api_key": api_key,
        "jwt": jwt,
        "oauth2": oauth2,
        "consumer_header": auth.consumer_header,
    })
}

/// A route's `cors`, as compiled (origins lower case, `allow_methods` filled in).
fn cors_view(cors: &CorsSettings) -> Value {
    let origins: Vec<String> = match &cors.origins {
        AllowOrigins::Any => vec!["*".to_string()],
        AllowOrigins::List(patterns) => patterns
            .iter()
            .map(|p| match p {
                OriginPattern::Exact(origin) => String::from_utf8_lossy(origin).into_owned(),
                OriginPattern::Subdomains { prefix, suffix } => format!(
                    "{}*{}",
                    String::from_utf8_lossy(prefix),
                    String::from_utf8_lossy(suffix)
                ),
            })
            .collect(),
    };
    let headers: Vec<String> = match &cors.headers {
        AllowHeaders::Reflect => vec!["*".to_string()],
        AllowHeaders::List(names) => names
            .iter()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect(),
    };
    json!({
        "allow_origins": origins,
        "allow_methods": cors.methods,
        "allow_headers": headers,
        "expose_headers": cors.expose_headers,
        "allow_credentials": cors.credentials,
        "max_age": cors.max_age.map(|s| duration(Duration::from_secs(s))),
        "allow_private_network": cors.private_network,
    })
}

/// `[consumers.NAME]`, each API key redacted.
fn consumers(config: &Config) -> Vec<Value> {
    config
        .consumers
        .iter()
        .map(|consumer| {
            let keys: Vec<&str> = consumer
                .api_keys
                .iter()
                .map(|key| match key {
                    ApiKey::Sha256(_) => "sha256:***",
                    ApiKey::Plain(_) => REDACTED,
                })
                .collect();
            json!({"name": consumer.name, "api_keys": keys})
        })
        .collect()
}

/// The `[jwt_providers.NAME]` the routes use, by name; no key material.
fn jwt_providers(config: &Config) -> Vec<Value> {
    let mut providers: BTreeMap<&str, &Arc<JwtProvider>> = BTreeMap::new();
    for route in config.routes.routes() {
        let jwt = route.auth.as_ref().and_then(|auth| auth.jwt.as_ref());
        for provider in jwt.into_iter().flat_map(|jwt| &jwt.providers) {
            providers.entry(&provider.name).or_insert(provider);
        }
    }
    providers
        .values()
        .map(|p| {
            let keys = match &p.keys {
                KeySource::Static(set) => json!({"source": "static", "count": set.keys.len()}),
                KeySource::Jwks(store) => json!({
                    "source": "jwks_url",
                    "url": redact_userinfo(store.url()),
                    "refresh": duration(store.refresh()),
                }),
            };
            let algorithms: Vec<String> = p
                .algorithms
                .iter()
                .map(|(alg, _)| format!("{alg:?}"))
                .collect();
            let claims_to_headers: Map<String, Value> = p
                .claims_to_headers
                .iter()
                .map(|(header, claim)| (String::from_utf8_lossy(header).into_owned(), json!(claim)))
                .collect();
            json!({
                "name": p.name,
                "issuer": p.issuer,
                "audiences": p.audiences,
                "algorithms": algorithms,
                "keys": keys,
                "leeway": duration(Duration::from_secs(p.leeway)),
                "required_claims": p.required_claims,
                "consumer_claim": p.consumer_claim,
                "claims_to_headers": claims_to_headers,
                "forward_token": p.forward_token,
            })
        })
        .collect()
}

/// `[oauth2_providers.NAME]`, the client secret redacted.
fn oauth2_providers(config: &Config) -> Vec<Value> {
    config
        .oauth2_providers
        .iter()
        .map(|p| {
            let consumer_claim = match p.consumer_claim {
                ConsumerClaim::Sub => "sub",
                ConsumerClaim::Username => "username",
                ConsumerClaim::ClientId => "client_id",
            };
            let on_error = match p.on_error {
                OnIntrospectionError::Unavailable => "unavailable",
                OnIntrospectionError::Unauthorized => "unauthorized",
            };
            json!({
                "name": p.name,
                "upstream": config.upstreams.get(p.upstream).map(|u| u.name.as_str()),
                "path": p.path,
                "host": p.host,
                "client_id": p.client_id,
                "client_secret": REDACTED,
                "timeout": duration(p.timeout),
                "cache_ttl": duration(p.cache_ttl),
                "negative_cache_ttl": duration(p.negative_cache_ttl),
                "cache_size": p.cache_size,
                "consumer_claim": consumer_claim,
                "audience": p.audience,
                "issuer": p.issuer,
                "on_error": on_error,
            })
        })
        .collect()
}

fn observability(o: &ObservabilityConfig) -> Value {
    let access_log = o.access_log.as_ref().map(|log| {
        let destination = match &log.destination {
            LogDestination::Stdout => "stdout".to_string(),
            LogDestination::Stderr => "stderr".to_string(),
            LogDestination::File(path) => path.display().to_string(),
        };
        let format = match log.format {
            AccessLogFormat::Json => "json",
            AccessLogFormat::Combined => "combined",
        };
        json!({"format": format, "destination": destination, "sample": log.sample})
    });
    let tracing = o.tracing.as_ref().map(|t| {
        json!({
            "otlp_endpoint": redact_userinfo(&t.otlp_endpoint),
            "sample_ratio": t.sample_ratio,
            "service_name": t.service_name,
            "queue_size": t.queue_size,
            "batch_size": t.batch_size,
            "flush_interval": duration(t.flush_interval),
        })
    });
    json!({
        "log_level": o.log_level,
        "access_log": access_log,
        "metrics": {"listen": o.metrics_listen.map(|a| a.to_string())},
        "request_id_header": o.request_id_header,
        "tracing": tracing,
    })
}

/// `[cluster]`: the Redis URL without its credentials, the password redacted.
fn cluster(cluster: &ClusterConfig) -> Value {
    let redis = &cluster.redis;
    let on_redis_error = match cluster.on_redis_error {
        OnRedisError::Open => "open",
        OnRedisError::Closed => "closed",
    };
    json!({
        "redis": {
            // `RedisTarget` displays without credentials.
            "url": redis.to_string(),
            "username": redis.username,
            "password": redis.password.as_ref().map(|_| REDACTED),
            "timeout": duration(cluster.timeout),
            "key_prefix": cluster.key_prefix,
        },
        "sync_interval": duration(cluster.sync_interval),
        "on_redis_error": on_redis_error,
    })
}

/// `url` with any `user:password@` in its authority replaced by `***@`.
fn redact_userinfo(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) if scheme.is_empty() => format!("{REDACTED}{}", &rest[at..]),
        Some(at) => format!("{scheme}://{REDACTED}{}", &rest[at..]),
        None => url.to_string(),
    }
}

/// The last reload's outcome.
pub fn reload_status(status: &ReloadStatus) -> Value {
    json!({
        "ok": status.ok,
        "generation": status.generation,
        "at": status.at.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "errors": status.errors,
        "took_ms": millis(status.took),
    })
}

/// The TLS listeners being served and their certificates: the names each serves and when
/// it expires (`notAfter`, Unix seconds), so that a renewal can be checked from outside.
pub fn tls_listeners(config: &Config) -> Vec<Value> {
    config
        .server
        .tls
        .iter()
        .map(|listener| {
            let certificates: Vec<Value> = listener
                .certificates
                .iter()
                .map(|cert| {
                    json!({
                        "file": cert.path,
                        "names": cert.names,
                        "not_after": cert.not_after,
                    })
                })
                .collect();
            json!({
                "listen": strings(&listener.listen),
                "certificates": certificates,
            })
        })
        .collect()
}

/// Milliseconds with microsecond precision.
pub fn millis(took: Duration) -> f64 {
    (took.as_micros() as f64) / 1000.0
}

/// A duration in the config file's syntax, in the largest unit up to seconds that keeps it
/// exact (seconds, like the documented defaults: `"60s"`, not `"1m"`).
pub fn duration(d: Duration) -> String {
    const UNITS: [(u128, &str); 4] = [
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "us"),
        (1, "ns"),
    ];
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    for (size, unit) in UNITS {
        if nanos.is_multiple_of(size) {
            return format!("{}{unit}", nanos / size);
        }
    }
    format!("{nanos}ns")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_config_syntax() {
        for (d, text) in [
            (Duration::ZERO, "0s"),
            (Duration::from_secs(10), "10s"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_secs(120), "120s"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_micros(1500), "1500us"),
            (Duration::from_nanos(7), "7ns"),
        ] {
            assert_eq!(duration(d), text);
            assert_eq!(
                crate::settings::parse_duration(text).ok(),
                Some(d),
                "{text}"
            );
        }
    }

    #[test]
    fn urls_lose_their_credentials() {
        for (url, want) in [
            (
                "http://127.0.0.1:4318/v1/traces",
                "http://127.0.0.1:4318/v1/traces",
            ),
            (
                "https://u:p@idp.example/jwks",
                "https://***@idp.example/jwks",
            ),
            ("https://token@idp.example", "https://***@idp.example"),
            (
                "https://idp.example/a@b?c=@d",
                "https://idp.example/a@b?c=@d",
            ),
            ("u:p@host/x", "***@host/x"),
        ] {
            assert_eq!(redact_userinfo(url), want, "{url}");
        }
    }

    #[test]
    fn mock_headers_from_the_rendered_head() {
        let head = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 30\r\nx-a: b: c\r\ncontent-length: 9\r\n";
        assert_eq!(
            Value::Object(mock_headers(head)),
            json!({"Retry-After": "30", "x-a": "b: c"})
        );
    }

    #[test]
    fn config_view_redacts_the_token() {
        let config = crate::config::load_str(
            r#"
[server]
listen = ["127.0.0.1:0"]
[upstreams.app]
endpoints = ["127.0.0.1:9001"]
[[routes]]
path = "/"
upstream = "app"
[admin]
token = "0123456789abcdef-secret"
"#,
            "test.toml",
        )
        .unwrap();
        let health = HealthRegistry::new();
        let view = super::config(&config, &[], &health, 1);
        let text = view.to_string();
        assert!(!text.contains("0123456789abcdef-secret"));
        assert_eq!(view["admin"]["token"], "***");
        assert_eq!(view["server"]["timeouts"]["header_read"], "10s");
        assert_eq!(view["upstreams"][0]["endpoints"][0]["source"], "config");
        assert_eq!(view["upstreams"][0]["endpoints"][0]["healthy"], true);
        assert!(view["upstreams"][0]["endpoints"][0]
            .get("hostname")
            .is_none());
        assert_eq!(view["upstreams"][0]["balance"], "round_robin");
        assert!(view["upstreams"][0].get("hash_key").is_none());
        assert_eq!(view["routes"][0]["action"]["upstream"], "app");
    }
}
