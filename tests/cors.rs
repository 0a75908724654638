//! CORS through the real binary: preflights answered exactly by the gateway (whatever the
//! route's methods, before auth and rate limits, after the access lists), refused ones 403,
//! and the headers of actual answers, forwarded and local, replacing the upstream's own.

mod common;
use common::*;

use std::io::Write;
use std::net::TcpStream;

const REFUSED_BODY: &str = "{\"error\":\"CORS preflight refused\",\"status\":403}\n";

fn config(upstream: std::net::SocketAddr) -> String {
    format!(
        r#"[server]
listen = ["127.0.0.1:0"]

[upstreams.app]
endpoints = ["{upstream}"]

[consumers.alice]
api_keys = ["alice-key-123"]

[[routes]]
path = "/api/{{*rest}}"
upstream = "app"
methods = ["GET", "PUT"]
cors = {{ allow_origins = ["https://app.example", "https://*.example.org"], allow_headers = ["Content-Type", "x-token"], expose_headers = ["x-total"], allow_credentials = true, max_age = "10m" }}

[[routes]]
path = "/public/{{*rest}}"
upstream = "app"
cors = {{ allow_origins = ["*"], allow_headers = ["*"], allow_private_network = true }}

[[routes]]
path = "/mock"
mock = {{ status = 200, body = "local" }}
cors = {{ allow_origins = ["https://app.example"] }}

[[routes]]
path = "/private"
upstream = "app"
auth = {{ api_key = {{}} }}
cors = {{ allow_origins = ["https://app.example"] }}

[[routes]]
path = "/limited"
upstream = "app"
rate_limits = [{{ name = "one", key = "route", limit = 1, period = "1h" }}]
cors = {{ allow_origins = ["https://app.example"] }}

[[routes]]
path = "/denied"
upstream = "app"
access = {{ deny = ["127.0.0.1"] }}
cors = {{ allow_origins = ["https://app.example"] }}

[[routes]]
path = "/plain"
upstream = "app"
"#
    )
}

/// An upstream that answers with CORS headers of its own and a Vary.
fn upstream() -> Upstream {
    Upstream::start(|r| {
        let vary = if r.request_line().contains("/vary-origin") {
            "vary: origin\r\n"
        } else {
            "vary: Accept-Encoding\r\n"
        };
        format!(
            "HTTP/1.1 200 OK\r\naccess-control-allow-origin: https://upstream.example\r\n\
             Access-Control-Allow-Credentials: false\r\nAccess-Control-Max-Age: 1\r\n{vary}\
             x-total: 7\r\ncontent-length: 2\r\n\r\nok"
        )
        .into_bytes()
    })
}

/// Sends `raw` on the keep-alive `stream` and reads one response.
fn exchange(stream: &mut TcpStream, raw: &str) -> Response {
    stream.write_all(raw.as_bytes()).unwrap();
    let method = raw.split(' ').next().unwrap();
    Reader::new(stream).read_response(method).unwrap()
}

fn preflight(path: &str, origin: &str, method: &str, extra: &str) -> String {
    format!(
        "OPTIONS {path} HTTP/1.1\r\nHost: t\r\nOrigin: {origin}\r\n\
         Access-Control-Request-Method: {method}\r\n{extra}\r\n"
    )
}

fn get(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n")
}

/// The response's `access-control-*` lines, in order.
fn cors_lines(r: &Response) -> Vec<String> {
    r.headers
        .iter()
        .filter(|(n, _)| n.starts_with("access-control-"))
        .map(|(n, v)| format!("{n}: {v}"))
        .collect()
}

#[test]
fn preflight_is_answered_exactly_even_without_options_in_methods() {
    let upstream = upstream();
    let strait = Strait::start(&config(upstream.addr));
    let mut stream = strait.connect();
    for origin in ["https://app.example", "https://a.b.example.org"] {
        let request = preflight(
            "/api/items/1",
            origin,
            "PUT",
            "Access-Control-Request-Headers: content-type,x-token\r\n",
        );
        let r = exchange(&mut stream, &request);
        let id = generated_request_id(&r.head);
        assert_eq!(
            r.head,
            format!(
                "HTTP/1.1 204 No Content\r\nserver: strait\r\n\
                 access-control-allow-origin: {origin}\r\n\
                 access-control-allow-methods: GET, PUT, HEAD\r\n\
                 access-control-allow-headers: content-type, x-token\r\n\
                 access-control-max-age: 600\r\n\
                 access-control-allow-credentials: true\r\n\
                 vary: Origin, Access-Control-Request-Method, Access-Control-Request-Headers\r\n\
                 x-request-id: {id}\r\n\r\n"
            )
        );
    }
    // The connection goes on; an OPTIONS without Access-Control-Request-Method is an
    // ordinary request, which this route's methods refuse.
    let r = exchange(
        &mut stream,
        "OPTIONS /api/items/1 HTTP/1.1\r\nHost: t\r\nOrigin: https://app.example\r\n\r\n",
    );
    assert_eq!(r.status, 405, "{}", r.head);
    assert!(cors_lines(&r).is_empty(), "{}", r.head);
    assert!(upstream.requests().is_empty(), "{:?}", upstream.requests());

    // A route without cors forwards a preflight like any request.
    let r = strait.request(preflight("/plain", "https://app.example", "PUT", "").as_bytes());
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(upstream.last().request_line(), "OPTIONS /plain HTTP/1.1");
}

#[test]
fn refused_preflights_get_403_without_cors_headers() {
    let upstream = upstream();
    let strait = Strait::start(&config(upstream.addr));
    let cases = [
        ("/api/x", "https://evil.example", "GET", ""),
        ("/api/x", "https://example.org", "GET", ""),
        ("/api/x", "http://app.example", "GET", ""),
        // Not a method of the route, or not in the allowed list.
        ("/api/x", "https://app.example", "DELETE", ""),
        ("/api/x", "https://app.example", "put", ""),
        (
            "/api/x",
            "https://app.example",
            "PUT",
            "Access-Control-Request-Headers: content-type, x-other\r\n",
        ),
        (
            "/api/x",
            "https://app.example",
            "PUT",
            "Access-Control-Request-Private-Network: true\r\n",
        ),
        (
            "/public/x",
            "https://any.example",
            "GET",
            "Access-Control-Request-Headers: x(bad)\r\n",
        ),
    ];
    let mut stream = strait.connect();
    for (path, origin, method, extra) in cases {
        let r = exchange(&mut stream, &preflight(path, origin, method, extra));
        assert_eq!(
            r.status, 403,
            "{path} {origin} {method} {extra}: {}",
            r.head
        );
        assert!(
            r.head.starts_with("HTTP/1.1 403 Forbidden\r\n"),
            "{}",
            r.head
        );
        assert_eq!(r.text(), REFUSED_BODY);
        assert!(cors_lines(&r).is_empty(), "{}", r.head);
    }
    // The access list answers first, with its own 403.
    let r = exchange(
        &mut stream,
        &preflight("/denied", "https://app.example", "GET", ""),
    );
    assert_eq!(r.status, 403, "{}", r.head);
    assert_eq!(r.text(), "{\"error\":\"forbidden\",\"status\":403}\n");
    assert!(upstream.requests().is_empty(), "{:?}", upstream.requests());
}

#[test]
fn any_origin_is_answered_with_a_star_and_reflected_headers() {
    let upstream = upstream();
    let strait = Strait::start(&config(upstream.addr));
    let r = strait.request(
        preflight(
            "/public/x",
            "https://anyone.example",
            "PATCH",
            "Access-Control-Request-Headers: X-One, x-two\r\n\
             Access-Control-Request-Private-Network: true\r\n",
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 204, "{}", r.head);
    assert_eq!(
        cors_lines(&r),
        [
            "access-control-allow-origin: *",
            "access-control-allow-headers: X-One, x-two",
            "access-control-allow-private-network: true",
            "access-control-allow-methods: GET, HEAD, POST, PUT, PATCH, DELETE",
        ]
    );

    let r = strait.request(get("/public/x", "Origin: https://anyone.example\r\n").as_bytes());
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(cors_lines(&r), ["access-control-allow-origin: *"]);
    assert_eq!(r.headers_named("vary"), ["Accept-Encoding, Origin"]);
    assert_eq!(upstream.requests().len(), 1);
}

#[test]
fn forwarded_answers_carry_the_gateways_cors_headers_only() {
    let upstream = upstream();
    let strait = Strait::start(&config(upstream.addr));
    let mut stream = strait.connect();
    let r = exchange(
        &mut stream,
        &get("/api/x", "Origin: https://app.example\r\n"),
    );
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(
        cors_lines(&r),
        [
            "access-control-allow-origin: https://app.example",
            "access-control-allow-credentials: true",
            "access-control-expose-headers: x-total",
        ]
    );
    assert_eq!(r.headers_named("vary"), ["Accept-Encoding, Origin"]);
    assert_eq!(r.header("x-total"), Some("7"));
    assert_eq!(r.text(), "ok");
    // The upstream sees the Origin (it may still care).
    assert_eq!(
        upstream.last().header("origin").as_deref(),
        Some("https://app.example")
    );

    // Vary already naming Origin is kept as it is.
    let r = exchange(
        &mut stream,
        &get("/api/vary-origin", "Origin: https://x.example.org\r\n"),
    );
    assert_eq!(r.headers_named("vary"), ["origin"], "{}", r.head);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://x.example.org")
    );

    // A disallowed origin, or none: served, without any CORS header, still varying.
    for extra in ["Origin: https://evil.example\r\n", "Origin: null\r\n", ""] {
        let r = exchange(&mut stream, &get("/api/x", extra));
        assert_eq!(r.status, 200, "{}", r.head);
        assert_eq!(r.text(), "ok");
        assert!(cors_lines(&r).is_empty(), "{extra}: {}", r.head);
        assert_eq!(r.headers_named("vary"), ["Accept-Encoding, Origin"]);
    }
    assert_eq!(upstream.requests().len(), 5);

    // Off a cors route, the upstream's own headers pass untouched.
    let r = exchange(
        &mut stream,
        &get("/plain", "Origin: https://app.example\r\n"),
    );
    assert_eq!(
        cors_lines(&r),
        [
            "access-control-allow-origin: https://upstream.example",
            "access-control-allow-credentials: false",
            "access-control-max-age: 1",
        ]
    );
    assert_eq!(r.headers_named("vary"), ["Accept-Encoding"]);
}

#[test]
fn local_answers_carry_cors_headers_and_preflights_skip_auth_and_limits() {
    let upstream = upstream();
    let strait = Strait::start(&config(upstream.addr));
    let mut stream = strait.connect();
    let origin = "Origin: https://app.example\r\n";
    let allowed = ["access-control-allow-origin: https://app.example"];

    let r = exchange(&mut stream, &get("/mock", origin));
    assert_eq!((r.status, r.text().as_str()), (200, "local"), "{}", r.head);
    assert_eq!(cors_lines(&r), allowed);
    assert_eq!(r.headers_named("vary"), ["Origin"]);

    // A preflight carries no credentials: answered before auth.
    let r = exchange(
        &mut stream,
        &preflight("/private", "https://app.example", "GET", ""),
    );
    assert_eq!(r.status, 204, "{}", r.head);
    let r = exchange(&mut stream, &get("/private", origin));
    assert_eq!(r.status, 401, "{}", r.head);
    assert_eq!(cors_lines(&r), allowed);
    assert_eq!(r.headers_named("vary"), ["Origin"]);
    let r = exchange(
        &mut stream,
        &get("/private", &format!("{origin}x-api-key: alice-key-123\r\n")),
    );
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(cors_lines(&r), allowed);

    // Preflights do not spend the limit (one request per hour).
    for _ in 0..2 {
        let r = exchange(
            &mut stream,
            &preflight("/limited", "https://app.example", "GET", ""),
        );
        assert_eq!(r.status, 204, "{}", r.head);
        assert_eq!(r.header("ratelimit"), None, "{}", r.head);
    }
    let r = exchange(&mut stream, &get("/limited", origin));
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(cors_lines(&r), allowed);
    assert!(r.header("ratelimit").is_some(), "{}", r.head);
    let r = exchange(&mut stream, &get("/limited", origin));
    assert_eq!(r.status, 429, "{}", r.head);
    assert_eq!(cors_lines(&r), allowed);
    assert_eq!(r.headers_named("vary"), ["Origin"]);

    // A disallowed origin on a local answer: no CORS header.
    let r = exchange(
        &mut stream,
        &get("/mock", "Origin: https://evil.example\r\n"),
    );
    assert!(cors_lines(&r).is_empty(), "{}", r.head);
    assert_eq!(r.headers_named("vary"), ["Origin"]);

    let paths: Vec<String> = upstream
        .requests()
        .iter()
        .map(|r| r.request_line().to_owned())
        .collect();
    assert_eq!(paths, ["GET /private HTTP/1.1", "GET /limited HTTP/1.1"]);
}

#[test]
fn upstream_failures_answered_locally_carry_cors_headers() {
    // Nothing listens on the upstream port: 502 from the gateway.
    let port = free_port();
    let strait = Strait::start(&config(format!("127.0.0.1:{port}").parse().unwrap()));
    let r = strait.request(
        get(
            "/api/x",
            "Origin: https://app.example\r\nConnection: close\r\n",
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 502, "{}", r.head);
    assert_eq!(
        cors_lines(&r),
        [
            "access-control-allow-origin: https://app.example",
            "access-control-allow-credentials: true",
            "access-control-expose-headers: x-total",
        ]
    );
}
