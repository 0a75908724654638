//! The rate-limit sections: a route's `rate_limits = [...]` and `[cluster]`, the Redis that
//! Strait nodes share their counts through (and how a `scope = "cluster"` limit behaves
//! when it cannot be reached): the serde mirrors, the runtime types, the `redis://` URL
//! parser and the validation. `redis_sync` is the one place that connects.

use std::fmt;
use std::time::Duration;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use toml::Spanned;

use crate::settings::{is_name, is_token, parse_duration, show_duration, Ctx, DurationValue};

const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(250);
const DEFAULT_REDIS_KEY_PREFIX: &str = "strait:rl";
const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_millis(50);
/// Workers hand their counts over on a 20 ms tick: a shorter interval would gain nothing.
const MIN_SYNC_INTERVAL: Duration = Duration::from_millis(10);
const MAX_SYNC_INTERVAL: Duration = Duration::from_secs(10);
const MIN_CLUSTER_PERIOD: Duration = Duration::from_secs(1);

// ---- the file ----

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = r#"a rate limit table such as { name = "per-ip", key = "client_ip", limit = 100, period = "1m" }"#
)]
pub struct FileRateLimit {
    pub name: Spanned<String>,
    pub key: Spanned<String>,
    pub limit: Spanned<i64>,
    pub period: Spanned<DurationValue>,
    pub scope: Option<Spanned<String>>,
}

/// `[cluster]`: the Redis shared by `scope = "cluster"` rate limits.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCluster {
    /// Required; optional here so that its absence is reported with the other errors.
    pub redis: Option<Spanned<FileRedis>>,
    pub sync_interval: Option<Spanned<DurationValue>>,
    pub on_redis_error: Option<Spanned<String>>,
}

/// `"redis://host:port/db"` or `{ url = "...", timeout = "250ms", key_prefix = "..." }`;
/// deserialised by hand for the same reason as [`FileEndpoint`].
#[derive(Debug)]
pub enum FileRedis {
    Url(String),
    Table(FileRedisTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRedisTable {
    pub url: Spanned<String>,
    pub timeout: Option<Spanned<DurationValue>>,
    pub key_prefix: Option<Spanned<String>>,
}

impl<'de> Deserialize<'de> for FileRedis {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RedisVisitor;
        impl<'de> Visitor<'de> for RedisVisitor {
            type Value = FileRedis;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a URL "redis://host:port/db", or a table { url = "redis://...", timeout = "250ms" }"#)
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<FileRedis, E> {
                Ok(FileRedis::Url(value.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FileRedis, A::Error> {
                FileRedisTable::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(FileRedis::Table)
            }
        }
        deserializer.deserialize_any(RedisVisitor)
    }
}

// ---- runtime types ----

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

/// The validated `[cluster]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    pub redis: RedisTarget,
    /// Connect, read and write timeout of the sync thread's Redis connection.
    pub timeout: Duration,
    /// How often the sync thread applies the workers' counts and reads the totals back.
    pub sync_interval: Duration,
    pub on_redis_error: OnRedisError,
    /// Every Redis key starts with it (`strait:rl` unless set), so that fleets can share
    /// one Redis.
    pub key_prefix: String,
}

/// What a cluster limit does while Redis is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRedisError {
    /// Fall back to the local limit: each worker allows `ceil(limit / workers)`.
    Open,
    /// Answer 503: better no service than an unlimited one.
    Closed,
}

/// Where Redis listens, from `redis://[[user]:password@]host[:port][/db]`.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisTarget {
    /// A host name or an IP address (without brackets for IPv6).
    pub host: String,
    pub port: u16,
    pub db: u32,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// Never prints the password (config dumps, logs).
impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "redis://{}:{}/{}", self.host, self.port, self.db)
    }
}

impl std::fmt::Display for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// Parses a `redis://` URL; the error says what is wrong, for a config error.
pub fn parse_redis_url(url: &str) -> Result<RedisTarget, String> {
    let Some(rest) = url.strip_prefix("redis://") else {
        return Err(if url.starts_with("rediss://") {
            "TLS (rediss://) is not supported: use redis:// on a trusted network".to_owned()
        } else {
            "must be a redis:// URL such as \"redis://127.0.0.1:6379/0\"".to_owned()
        });
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((userinfo, hostport)) => (Some(userinfo), hostport),
        None => (None, authority),
    };
    let (username, password) = match userinfo {
        None => (None, None),
        Some(info) => {
            let (user, password) = info.split_once(':').unwrap_or(("", info));
            let user = percent_decode(user)?;
            let password = percent_decode(password)?;
            (
                Some(user).filter(|u| !u.is_empty()),
                Some(password).filter(|p| !p.is_empty()),
            )
        }
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("unclosed '[' in host \"{hostport}\""))?;
        (host, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err("missing host".to_owned());
    }
    let port = match port {
        None => 6379,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("invalid port \"{port}\""))?,
    };
    let db = match path {
        "" => 0,
        db => db
            .parse::<u32>()
            .map_err(|_| format!("invalid database number \"{db}\""))?,
    };
    Ok(RedisTarget {
        host: host.to_owned(),
        port,
        db,
        username,
        password,
    })
}

/// `%XX` escapes of a URL's user information.
fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("invalid %-escape in the user information")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "user information is not UTF-8".to_owned())
}

// ---- validation ----

/// A route's `rate_limits`: unique names usable in a structured-field string, a known
/// key, `limit` 1..=1_000_000_000, `period` from 1ms.
pub(crate) fn rate_limits(
    ctx: &mut Ctx,
    list: Option<&[Spanned<FileRateLimit>]>,
    prefix: &str,
    has_cluster: bool,
) -> Vec<RateLimitConfig> {
    let mut out: Vec<RateLimitConfig> = Vec::new();
    for (i, entry) in list.unwrap_or_default().iter().enumerate() {
        let entry = entry.get_ref();
        let at = format!("{prefix}.rate_limits[{i}]");
        let name = entry.name.get_ref();
        if !is_name(name) {
            ctx.error(
                entry.name.span(),
                format!("{at}.name"),
                format!("invalid name \"{name}\": use letters, digits, '-', '_' and '.'"),
            );
        } else if out.iter().any(|l| l.name == *name) {
            ctx.error(
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
                ctx.error(
                    entry.key.span(),
                    format!("{at}.key"),
                    format!("invalid name \"{header}\" in \"{text}\": must be a non-empty token"),
                );
                None
            }
            _ => {
                ctx.error(
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
        let limit = ctx.count(&entry.limit, &format!("{at}.limit"), 1, 1_000_000_000);
        let period = match parse_duration(&entry.period.get_ref().0) {
            Ok(d) if d < Duration::from_millis(1) => {
                ctx.error(
                    entry.period.span(),
                    format!("{at}.period"),
                    "must be at least 1ms",
                );
                None
            }
            Ok(d) => Some(d),
            Err(why) => {
                ctx.error(entry.period.span(), format!("{at}.period"), why);
                None
            }
        };
        let scope = match entry.scope.as_ref().map(|s| (s, s.get_ref().as_str())) {
            None | Some((_, "local")) => Some(RateLimitScope::Local),
            Some((s, "cluster")) if !has_cluster => {
                ctx.error(
                    s.span(),
                    format!("{at}.scope"),
                    "a cluster limit needs a [cluster] table with redis = \"redis://...\"",
                );
                None
            }
            Some((_, "cluster")) => Some(RateLimitScope::Cluster),
            Some((s, other)) => {
                ctx.error(
                    s.span(),
                    format!("{at}.scope"),
                    format!("unknown scope \"{other}\": expected \"local\" or \"cluster\""),
                );
                None
            }
        };
        if scope == Some(RateLimitScope::Cluster) && period.is_some_and(|p| p < MIN_CLUSTER_PERIOD)
        {
            ctx.error(
                entry.period.span(),
                format!("{at}.period"),
                "a cluster limit's period must be at least 1s (many sync intervals)",
            );
        }
        if let (Some(key), Some(limit), Some(period), Some(scope)) = (key, limit, period, scope) {
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

/// `[cluster]`: a `redis://` URL (string or table), the sync interval and the failure
/// behaviour.
pub(crate) fn cluster(ctx: &mut Ctx, table: &Spanned<FileCluster>) -> Option<ClusterConfig> {
    let file = table.get_ref();
    let none = None;
    let (url, url_key, timeout, prefix) = match file.redis.as_ref().map(|r| (r, r.get_ref())) {
        None => {
            ctx.error(
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
            ctx.error(span, url_key, why);
            None
        }
    });
    let timeout = ctx.duration(timeout, "cluster.redis.timeout", DEFAULT_REDIS_TIMEOUT);
    let key_prefix = match prefix {
        None => DEFAULT_REDIS_KEY_PREFIX.to_owned(),
        Some(p) if !p.get_ref().is_empty() && p.get_ref().bytes().all(|b| b.is_ascii_graphic()) => {
            p.get_ref().clone()
        }
        Some(p) => {
            ctx.error(
                p.span(),
                "cluster.redis.key_prefix",
                "must be non-empty visible ASCII without spaces",
            );
            String::new()
        }
    };
    let sync_interval = ctx.duration(
        &file.sync_interval,
        "cluster.sync_interval",
        DEFAULT_SYNC_INTERVAL,
    );
    if let Some(value) = &file.sync_interval {
        if !sync_interval.is_zero()
            && !(MIN_SYNC_INTERVAL..=MAX_SYNC_INTERVAL).contains(&sync_interval)
        {
            ctx.error(
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
            ctx.error(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    use crate::config::load_errors as errors;

    #[test]
    fn urls() {
        type Case<'a> = (&'a str, &'a str, u16, u32, Option<&'a str>, Option<&'a str>);
        let ok: &[Case] = &[
            ("redis://127.0.0.1:6379/0", "127.0.0.1", 6379, 0, None, None),
            (
                "redis://cache.internal",
                "cache.internal",
                6379,
                0,
                None,
                None,
            ),
            ("redis://[::1]:7000/3", "::1", 7000, 3, None, None),
            ("redis://:s%40cret@h:1/", "h", 1, 0, None, Some("s@cret")),
            ("redis://app:pw@h/2", "h", 6379, 2, Some("app"), Some("pw")),
        ];
        for (url, host, port, db, user, password) in ok {
            let t = parse_redis_url(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(
                (
                    t.host.as_str(),
                    t.port,
                    t.db,
                    t.username.as_deref(),
                    t.password.as_deref()
                ),
                (*host, *port, *db, *user, *password),
                "{url}"
            );
        }
        let bad: &[(&str, &str)] = &[
            ("http://h", "must be a redis:// URL"),
            ("rediss://h", "TLS (rediss://) is not supported"),
            ("redis://", "missing host"),
            ("redis://h:0", "invalid port \"0\""),
            ("redis://h:x", "invalid port \"x\""),
            ("redis://h/x", "invalid database number \"x\""),
            ("redis://[::1", "unclosed '['"),
            ("redis://:%zz@h", "invalid %-escape"),
        ];
        for (url, want) in bad {
            let err = parse_redis_url(url).unwrap_err();
            assert!(err.starts_with(want), "{url}: {err}");
        }
        // The password never shows.
        let t = parse_redis_url("redis://:hunter2@h").unwrap();
        assert_eq!(format!("{t:?} {t}"), "redis://h:6379/0 redis://h:6379/0");
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
            // Errors the TOML parser reports name the entry and its key like any other path.
            ("{ name = \"s\", key = \"route\", limit = 1, period = \"1s\", burst = 2 }", &["t.toml:7:56: routes[0].rate_limits[0].burst: unknown field `burst`, expected one of `name`, `key`, `limit`, `period`, `scope`"]),
            ("{ name = \"s\", key = \"route\", limit = 1, period = \"1s\" },\n{ name = \"t\", key = \"route\", limit = \"x\", period = \"1s\" }", &["t.toml:8:38: routes[0].rate_limits[1].limit: invalid type: string \"x\", expected i64"]),
            ("{ name = \"s\", key = \"route\", limit = 1.5, period = \"1s\" }", &["t.toml:7:38: routes[0].rate_limits[0].limit: invalid type: floating point `1.5`, expected i64"]),
            ("{ name = \"s\", key = 5, limit = 1, period = \"1s\" }", &["t.toml:7:21: routes[0].rate_limits[0].key: invalid type: integer `5`, expected a string"]),
            ("{ name = \"s\", key = \"route\", limit = 1, period = 5 }", &["t.toml:7:50: routes[0].rate_limits[0].period: invalid type: integer `5`, expected a duration with a unit, such as \"5s\" or \"250ms\""]),
            ("{ name = \"s\", key = \"route\", limit = 1, period = \"1s\", scope = true }", &["t.toml:7:64: routes[0].rate_limits[0].scope: invalid type: boolean `true`, expected a string"]),
            ("{ name = \"s\", key = \"route\", limit = 1 }", &["t.toml:7:1: routes[0].rate_limits[0]: missing field `period`"]),
            ("  { key = \"route\", limit = 1, period = \"1s\" }", &["t.toml:7:3: routes[0].rate_limits[0]: missing field `name`"]),
            ("{ name = \"s\", key = \"route\", limit = 1, period = \"1s\" },\n\"s\"", &["t.toml:8:1: routes[0].rate_limits[1]: invalid type: string \"s\", expected a rate limit table such as { name = \"per-ip\", key = \"client_ip\", limit = 100, period = \"1m\" }"]),
            ("{ name = \"s\", key = \"route\", key = \"t\", limit = 1, period = \"1s\" }", &["t.toml:7:30: routes[0].rate_limits[0].key: duplicate key"]),
        ];
        for (limits, want) in cases {
            assert_eq!(errors(&format!("{base}{limits}\n]\n")), *want, "{limits}");
        }
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
    fn rate_limit_tables_name_their_route() {
        let text = |limit: &str, extra: &str| {
            format!(
                "[server]\nlisten = [\"127.0.0.1:1\"]\n\
                 [[routes]]\npath = \"/a\"\nmock = {{ status = 200 }}\n\
                 [[routes.rate_limits]]\nname = \"s\"\nkey = \"route\"\nlimit = 1\nperiod = \"1s\"\n\
                 [[routes]]\npath = \"/b\"\nmock = {{ status = 200 }}\n\
                 [[routes.rate_limits]]\nname = \"s\"\nkey = \"route\"\nlimit = {limit}\n{extra}\n"
            )
        };
        let period = "period = \"1s\"";
        let cases: &[(String, &[&str])] = &[
            (text("1", period), &[]),
            (text("0", period), &["t.toml:17:9: routes[1].rate_limits[0].limit: 0 is out of range: must be 1..=1000000000"]),
            (text("\"x\"", period), &["t.toml:17:9: routes[1].rate_limits[0].limit: invalid type: string \"x\", expected i64"]),
            (text("1", &format!("{period}\nbogus = 1")), &["t.toml:19:1: routes[1].rate_limits[0].bogus: unknown field `bogus`, expected one of `name`, `key`, `limit`, `period`, `scope`"]),
            (text("1", ""), &["t.toml:14:1: routes[1].rate_limits[0]: missing field `period`"]),
            (text("1", &format!("{period}\n[[routes.rate_limits]]\nname = \"t\"\nkey = \"rout\"\nlimit = 1\n{period}")), &["t.toml:21:7: routes[1].rate_limits[1].key: unknown rate limit key \"rout\": expected client_ip, consumer, route or header:NAME"]),
        ];
        for (text, want) in cases {
            assert_eq!(errors(text), *want, "{text}");
        }
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
}
