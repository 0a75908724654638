//! Local rate limiting through the real binary: exact headers and 429s, keys, the
//! route-wide bucket, local answers, and the per-worker division with two workers.

mod common;
use common::*;

use std::io::Write;

const LIMITED_BODY: &str = "{\"error\":\"rate limit exceeded\",\"status\":429}\n";

fn config(upstream: std::net::SocketAddr, limits: &str) -> String {
    format!(
        r#"[server]
listen = ["127.0.0.1:0"]

[upstreams.app]
endpoints = ["{upstream}"]

[[routes]]
path = "/api/{{*rest}}"
upstream = "app"
rate_limits = [{limits}]

[[routes]]
path = "/mock"
mock = {{ status = 200, body = "local" }}
rate_limits = [{{ name = "m", key = "route", limit = 1, period = "1h" }}]

[[routes]]
path = "/free"
upstream = "app"
"#
    )
}

fn get(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n")
}

/// Sends `raw` on the keep-alive `stream` and reads one response.
fn exchange(stream: &mut std::net::TcpStream, raw: &str) -> Response {
    stream.write_all(raw.as_bytes()).unwrap();
    let method = raw.split(' ').next().unwrap();
    Reader::new(stream).read_response(method).unwrap()
}

#[test]
fn exact_headers_then_429_on_a_kept_alive_connection() {
    // The upstream's own rate-limit header is replaced by ours.
    let upstream = Upstream::start(|_| {
        b"HTTP/1.1 200 OK\r\nx-ratelimit-limit: 999\r\ncontent-length: 2\r\n\r\nok".to_vec()
    });
    let strait = Strait::start(&config(
        upstream.addr,
        r#"{ name = "hourly", key = "client_ip", limit = 3, period = "1h" }"#,
    ));
    let mut stream = strait.connect();
    for (remaining, reset) in [(2, 1200), (1, 2400), (0, 3600)] {
        let r = exchange(&mut stream, &get("/api/x", ""));
        assert_eq!(r.status, 200, "{}", r.head);
        assert_eq!(r.headers_named("x-ratelimit-limit"), ["3"], "{}", r.head);
        assert_eq!(
            r.header("x-ratelimit-remaining"),
            Some(&*remaining.to_string())
        );
        assert_eq!(r.header("x-ratelimit-reset"), Some(&*reset.to_string()));
        assert_eq!(
            r.header("ratelimit-policy"),
            Some("\"hourly\";q=3;w=3600"),
            "{}",
            r.head
        );
        assert_eq!(
            r.header("ratelimit"),
            Some(&*format!("\"hourly\";r={remaining};t={reset}"))
        );
        assert_eq!(r.header("retry-after"), None);
    }
    let r = exchange(&mut stream, &get("/api/x", ""));
    assert_eq!(r.status, 429, "{}", r.head);
    assert_eq!(r.header("retry-after"), Some("1200"), "{}", r.head);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(r.header("ratelimit"), Some("\"hourly\";r=0;t=3600"));
    assert_eq!(r.text(), LIMITED_BODY);
    assert_eq!(r.header("connection"), None, "kept alive: {}", r.head);
    // A denied request with a body that arrived whole keeps the connection too.
    let r = exchange(
        &mut stream,
        "POST /api/x HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc",
    );
    assert_eq!(r.status, 429);
    // Routes without limits are untouched and carry no rate-limit headers.
    let r = exchange(&mut stream, &get("/free", ""));
    assert_eq!(r.status, 200);
    assert_eq!(r.headers_named("x-ratelimit-limit"), ["999"]);
    assert_eq!(r.header("ratelimit"), None);
    let limited = upstream
        .requests()
        .iter()
        .filter(|r| r.request_line().contains(" /api/"))
        .count();
    assert_eq!(limited, 3, "the upstream saw exactly the three allowed");
}

#[test]
fn header_keys_are_independent() {
    let upstream = Upstream::fixed("ok");
    let strait = Strait::start(&config(
        upstream.addr,
        r#"{ name = "key", key = "header:X-Api-Key", limit = 1, period = "1h" }"#,
    ));
    let cases = [
        ("x-api-key: a\r\n", 200),
        ("x-api-key: a\r\n", 429),
        ("X-API-Key: b\r\n", 200),
        ("x-api-key: b\r\n", 429),
        // Without the header: one shared bucket (the empty value).
        ("", 200),
        ("", 429),
        ("x-api-key: c\r\n", 200),
    ];
    for (i, (header, status)) in cases.into_iter().enumerate() {
        let r = strait.request(get("/api/k", header).as_bytes());
        assert_eq!(r.status, status, "case {i}: {}", r.head);
    }
    assert_eq!(upstream.requests().len(), 4);
}

#[test]
fn route_key_is_shared_and_local_answers_carry_headers() {
    let upstream = Upstream::fixed("ok");
    let strait = Strait::start(&config(
        upstream.addr,
        r#"{ name = "burst", key = "client_ip", limit = 100, period = "1s" },
           { name = "all", key = "route", limit = 2, period = "1h" }"#,
    ));
    // Different API keys and connections: the route-wide bucket is one.
    let statuses: Vec<u16> = (0..3)
        .map(|i| {
            let r = strait.request(get("/api/r", &format!("x-api-key: k{i}\r\n")).as_bytes());
            if r.status == 200 {
                // The most restrictive limit answers; the policy lists both.
                assert_eq!(
                    r.header("ratelimit-policy"),
                    Some("\"burst\";q=100;w=1, \"all\";q=2;w=3600")
                );
                assert!(r.header("ratelimit").unwrap().starts_with("\"all\";"));
            }
            r.status
        })
        .collect();
    assert_eq!(statuses, [200, 200, 429]);
    assert_eq!(upstream.requests().len(), 2);

    let r = strait.request(get("/mock", "").as_bytes());
    assert_eq!((r.status, r.text().as_str()), (200, "local"));
    assert_eq!(r.header("ratelimit"), Some("\"m\";r=0;t=3600"));
    assert_eq!(r.header("x-ratelimit-limit"), Some("1"));
    let r = strait.request(get("/mock", "").as_bytes());
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("3600"));
    assert_eq!(r.text(), LIMITED_BODY);
}

#[test]
fn two_workers_split_the_limit() {
    let upstream = Upstream::fixed("ok");
    let workers = 2;
    let strait = Strait::start_with(
        &config(
            upstream.addr,
            r#"{ name = "all", key = "route", limit = 10, period = "1h" }"#,
        ),
        &["--workers", "2"],
    );
    // New connections spread over both workers (SO_REUSEPORT hashes the 4-tuple); each
    // allows ceil(10 / 2) = 5.
    let mut accepted = 0;
    for _ in 0..80 {
        let r = strait.request(get("/api/w", "Connection: close\r\n").as_bytes());
        match r.status {
            200 => {
                accepted += 1;
                assert_eq!(r.header("x-ratelimit-limit"), Some("5"), "per-worker view");
            }
            429 => {}
            other => panic!("status {other}"),
        }
    }
    eprintln!("two workers, limit 10: accepted {accepted}");
    assert!(
        (10..=10 + workers).contains(&accepted),
        "accepted {accepted} of limit 10 with {workers} workers"
    );
    assert_eq!(upstream.requests().len(), accepted);
}
