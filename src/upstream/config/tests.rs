//! The `[upstreams.NAME]` section: defaults, every value form, and each error with its
//! exact position and message.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use super::*;
use crate::config::{load_str, load_str_with, Action, Config, ConfigErrors};

const MINIMAL: &str = "[server]\nlisten = [\"127.0.0.1:8080\"]\n";

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
