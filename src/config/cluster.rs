//! `[cluster]`: the Redis that Strait nodes share their rate-limit counts through, and
//! how a `scope = "cluster"` limit behaves when it cannot be reached.
//!
//! Only types and the `redis://` URL parser live here; `build.rs` validates the table and
//! `crate::ratelimit::redis_sync` is the one place that connects.

use std::time::Duration;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
