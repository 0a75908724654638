//! The client address from a trusted proxy's X-Forwarded-For, through the real binary (the
//! TCP peer is 127.0.0.1): access lists, `client_ip` rate limits, hash balancing and the
//! access log use it when the peer is trusted, and ignore the header when it is not.

mod common;
use common::*;

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;

const FORBIDDEN_BODY: &str = "{\"error\":\"forbidden\",\"status\":403}\n";

/// `trusted`: the `trusted_proxies` line, or "" for none.
fn config(upstream: std::net::SocketAddr, trusted: &str, log: &Path) -> String {
    format!(
        r#"[server]
listen = ["127.0.0.1:0"]
{trusted}
[server.access]
deny = ["203.0.113.0/24"]

[observability.access_log]
destination = "{log}"

[upstreams.app]
endpoints = ["{upstream}"]

[[routes]]
path = "/open"
upstream = "app"

[[routes]]
path = "/office"
upstream = "app"
access = {{ allow = ["198.51.100.0/24"] }}

[[routes]]
path = "/limited"
upstream = "app"
rate_limits = [{{ name = "per-ip", key = "client_ip", limit = 1, period = "1h" }}]
"#,
        log = log.display()
    )
}

const TRUSTED: &str = r#"trusted_proxies = ["127.0.0.1", "10.0.0.0/8"]"#;

struct Setup {
    upstream: Upstream,
    strait: Strait,
    log: std::path::PathBuf,
    _dir: ScratchDir,
}

fn setup(trusted: &str) -> Setup {
    let dir = scratch_dir();
    let log = dir.join("access.log");
    let upstream = Upstream::fixed("ok");
    let strait = Strait::start(&config(upstream.addr, trusted, &log));
    Setup {
        upstream,
        strait,
        log,
        _dir: dir,
    }
}

fn get(path: &str, xff: &[&str]) -> String {
    let mut raw = format!("GET {path} HTTP/1.1\r\nHost: t\r\n");
    for line in xff {
        raw.push_str(&format!("X-Forwarded-For: {line}\r\n"));
    }
    raw.push_str("\r\n");
    raw
}

fn exchange(stream: &mut TcpStream, raw: &str) -> Response {
    stream.write_all(raw.as_bytes()).unwrap();
    Reader::new(stream).read_response("GET").unwrap()
}

#[test]
fn access_lists_use_the_forwarded_address_only_from_a_trusted_peer() {
    let trusted = setup(TRUSTED);
    let untrusted = setup("");
    // (path, X-Forwarded-For lines, status when trusted, status when not)
    let cases: &[(&str, &[&str], u16, u16)] = &[
        ("/open", &[], 200, 200),
        ("/open", &["203.0.113.5"], 403, 200),
        ("/office", &["198.51.100.7"], 200, 403),
        ("/office", &[], 403, 403),
        // Spoofed entries left of the rightmost untrusted one are not believed.
        ("/office", &["198.51.100.7, 203.0.113.5"], 403, 403),
        ("/open", &["203.0.113.5, 198.51.100.7"], 200, 200),
        ("/office", &["203.0.113.5, 198.51.100.7"], 200, 403),
        // Trusted proxies in the chain are skipped; several lines are one list.
        ("/office", &["198.51.100.7, 10.1.2.3"], 200, 403),
        ("/office", &["198.51.100.7", "10.1.2.3, 10.9.9.9"], 200, 403),
        ("/open", &["203.0.113.5", "10.1.2.3"], 403, 200),
        // A malformed entry stops the walk: the last good address (peer or trusted
        // proxy) stands, never an entry left of the bad one.
        ("/open", &["203.0.113.5, unknown"], 200, 200),
        ("/office", &["198.51.100.7, garbage"], 403, 403),
        ("/office", &["198.51.100.7, 1.2.3.4:80, 10.1.2.3"], 403, 403),
        ("/open", &["203.0.113.5, [::1]"], 200, 200),
    ];
    for (which, setup, column) in [("trusted", &trusted, 2), ("untrusted", &untrusted, 3)] {
        let mut stream = setup.strait.connect();
        for (path, xff, when_trusted, when_not) in cases {
            let want = if column == 2 { when_trusted } else { when_not };
            let r = exchange(&mut stream, &get(path, xff));
            assert_eq!(r.status, *want, "{which} {path} {xff:?}: {}", r.head);
            if r.status == 403 {
                assert_eq!(r.text(), FORBIDDEN_BODY);
            }
        }
    }
}

#[test]
fn upstream_gets_the_whole_chain_with_the_peer_appended() {
    let s = setup(TRUSTED);
    let r = s
        .strait
        .request(get("/open", &["6.6.6.6, 198.51.100.7", "10.1.2.3"]).as_bytes());
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(
        s.upstream.last().header("x-forwarded-for").as_deref(),
        Some("6.6.6.6, 198.51.100.7, 10.1.2.3, 127.0.0.1")
    );
}

#[test]
fn client_ip_rate_limits_count_by_the_forwarded_address() {
    let trusted = setup(TRUSTED);
    let mut stream = trusted.strait.connect();
    let cases: &[(&[&str], u16)] = &[
        (&["198.51.100.1"], 200),
        (&["198.51.100.1"], 429),
        // One client whatever the spelling; a forged left entry changes nothing.
        (&["::ffff:198.51.100.1"], 429),
        (&["6.6.6.6, 198.51.100.1"], 429),
        (&["198.51.100.2"], 200),
        (&["2001:db8::1"], 200),
        (&["2001:DB8:0::1"], 429),
        // The proxy itself is one more client.
        (&[], 200),
    ];
    for (xff, status) in cases {
        let r = exchange(&mut stream, &get("/limited", xff));
        assert_eq!(r.status, *status, "{xff:?}: {}", r.head);
    }

    // Untrusted: every request is the peer's.
    let untrusted = setup("");
    let mut stream = untrusted.strait.connect();
    for (xff, status) in [("198.51.100.1", 200), ("198.51.100.2", 429)] {
        let r = exchange(&mut stream, &get("/limited", &[xff]));
        assert_eq!(r.status, status, "{xff}: {}", r.head);
    }
}

#[test]
fn the_access_log_names_the_forwarded_client() {
    let trusted = setup(TRUSTED);
    let untrusted = setup("");
    for s in [&trusted, &untrusted] {
        let mut stream = s.strait.connect();
        for xff in [&["6.6.6.6, 198.51.100.7"][..], &[], &["garbage"]] {
            assert_eq!(exchange(&mut stream, &get("/open", xff)).status, 200);
        }
    }
    let clients = |log: &Path| -> Vec<String> {
        wait_until("three access log lines", || {
            std::fs::read_to_string(log).is_ok_and(|t| t.lines().count() >= 3)
        });
        std::fs::read_to_string(log)
            .unwrap()
            .lines()
            .map(|line| {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                v["client"].as_str().unwrap_or_default().to_owned()
            })
            .collect()
    };
    assert_eq!(
        clients(&trusted.log),
        ["198.51.100.7", "127.0.0.1", "127.0.0.1"]
    );
    assert_eq!(
        clients(&untrusted.log),
        ["127.0.0.1", "127.0.0.1", "127.0.0.1"]
    );
}

#[test]
fn hash_balancing_by_client_ip_uses_the_forwarded_address() {
    let (a, b) = (Upstream::fixed("a"), Upstream::fixed("b"));
    let config = |trusted: &str| {
        format!(
            r#"[server]
listen = ["127.0.0.1:0"]
{trusted}

[upstreams.app]
endpoints = ["{}", "{}"]
balance = "hash"
hash_key = "client_ip"

[[routes]]
path = "/"
upstream = "app"
"#,
            a.addr, b.addr
        )
    };
    // Which endpoint answers each of 20 forwarded clients, asked twice.
    let answers = |strait: &Strait| -> Vec<String> {
        let mut stream = strait.connect();
        (0..40)
            .map(|i| exchange(&mut stream, &get("/", &[&format!("198.51.100.{}", i % 20)])).text())
            .collect()
    };
    let trusted = answers(&Strait::start(&config(TRUSTED)));
    assert_eq!(trusted[..20], trusted[20..], "one client, one endpoint");
    assert!(
        trusted.iter().any(|e| e == "a") && trusted.iter().any(|e| e == "b"),
        "20 clients spread over both endpoints: {trusted:?}"
    );
    // Untrusted: every request is the peer's, so one endpoint serves them all.
    let untrusted = answers(&Strait::start(&config("")));
    assert!(
        untrusted.iter().all(|e| *e == untrusted[0]),
        "{untrusted:?}"
    );
}
