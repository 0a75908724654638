//! JSON views of the served config for the admin API. Durations are strings in the config
//! file's syntax (`"10s"`, `"250ms"`), sizes are numbers of bytes, and the admin token is
//! never shown (`"***"` when one is set).

use std::time::{Duration, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::config::{Action, BalancePolicy, Config, Endpoint, HashKey, UpstreamConfig};
use crate::control::ReloadStatus;
use crate::upstream::HealthRegistry;

/// Registered endpoints by upstream name, as [`crate::control::Control::registered`] gives
/// them.
pub type Registered = [(String, Vec<Endpoint>)];

/// The whole effective config.
pub fn config(
    config: &Config,
    registered: &Registered,
    health: &HealthRegistry,
    generation: u64,
) -> Value {
    let server = &config.server;
    let limits = &server.limits;
    let timeouts = &server.timeouts;
    let listen: Vec<String> = server.listen.iter().map(ToString::to_string).collect();
    json!({
        "generation": generation,
        "server": {
            "listen": listen,
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
        },
        "upstreams": upstreams(config, registered, health),
        "routes": routes(config),
        "admin": {
            "enabled": config.admin.listen.is_some(),
            "listen": config.admin.listen.map(|a| a.to_string()),
            "token": config.admin.token.as_ref().map(|_| "***"),
            "state_file": config.admin.state_file.as_ref().map(|p| p.display().to_string()),
        },
    })
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
    let mut view = json!({
        "name": upstream.name,
        "balance": balance_name(&upstream.balance),
        "active_health_checks": upstream.health.is_some(),
        "endpoints": endpoints,
        "pool": {
            "max_idle": upstream.pool.max_idle,
            "idle_timeout": duration(upstream.pool.idle_timeout),
        },
    });
    if let BalancePolicy::Hash(key) = &upstream.balance {
        view["hash_key"] = json!(hash_key_text(key));
    }
    view
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
        .map(|route| {
            let action = match &route.action {
                Action::Proxy(proxy) => json!({
                    "type": "proxy",
                    "upstream": config.upstreams.get(proxy.upstream).map(|u| u.name.as_str()),
                    "strip_prefix": proxy.strip_prefix,
                    "preserve_host": proxy.preserve_host,
                    "host_rewrite": proxy.host_rewrite,
                }),
                Action::Mock(mock) => json!({
                    "type": "mock",
                    "status": mock.status,
                    "body_bytes": mock.body.len(),
                }),
            };
            json!({
                "name": route.name,
                "path": route.path,
                "methods": route.methods,
                "action": action,
            })
        })
        .collect()
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
            assert_eq!(crate::config::parse_duration(text).ok(), Some(d), "{text}");
        }
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
