//! API-key authentication through the real binary: keys from the header or the query,
//! hashed and plain keys, exact 401s, what the upstream sees, and consumer-keyed limits.

mod common;
use common::*;

const UNAUTHORIZED_BODY: &str = "{\"error\":\"missing or invalid credentials\",\"status\":401}\n";

fn config(upstream: std::net::SocketAddr, bob_key: &str) -> String {
    format!(
        r#"[server]
listen = ["127.0.0.1:0"]

[upstreams.app]
endpoints = ["{upstream}"]

[consumers.alice]
api_keys = ["plain-secret-key-123"]

[consumers.bob]
api_keys = ["{bob_key}"]

[[routes]]
path = "/api/{{*rest}}"
upstream = "app"
auth = {{ api_key = {{ header = "x-api-key", query = "api_key" }}, consumer_header = "x-consumer" }}

[[routes]]
path = "/limited"
upstream = "app"
auth = {{ api_key = {{}} }}
rate_limits = [{{ name = "per-consumer", key = "consumer", limit = 2, period = "1h" }}]

[[routes]]
path = "/open"
upstream = "app"
rate_limits = [{{ name = "per-consumer", key = "consumer", limit = 1, period = "1h" }}]
"#
    )
}

fn sha256_hex(key: &str) -> String {
    // The test computes the digest with the same crate the gateway uses.
    use sha2::Digest;
    let digest = sha2::Sha256::digest(key.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn get(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{extra}\r\n")
}

#[test]
fn valid_keys_from_header_or_query_reach_the_upstream_as_the_consumer() {
    let upstream = Upstream::fixed("ok");
    let bob = format!("sha256:{}", sha256_hex("bob-secret-key"));
    let strait = Strait::start(&config(upstream.addr, &bob));

    // Header; the client's own x-consumer is replaced, the key is not forwarded.
    let r = strait.request(
        get(
            "/api/a",
            "X-Api-Key: plain-secret-key-123\r\nx-consumer: mallory\r\n",
        )
        .as_bytes(),
    );
    assert_eq!((r.status, r.text().as_str()), (200, "ok"), "{}", r.head);
    let seen = upstream.last();
    assert_eq!(
        seen.header("x-consumer").as_deref(),
        Some("alice"),
        "{}",
        seen.head
    );
    assert_eq!(seen.header("x-api-key"), None, "{}", seen.head);
    assert_eq!(seen.head.matches("x-consumer").count(), 1, "{}", seen.head);

    // Query parameter, and a key stored as its SHA-256 digest.
    let r = strait.request(get("/api/b?x=1&api_key=bob-secret-key", "").as_bytes());
    assert_eq!(r.status, 200, "{}", r.head);
    let seen = upstream.last();
    assert_eq!(
        seen.header("x-consumer").as_deref(),
        Some("bob"),
        "{}",
        seen.head
    );
    assert_eq!(
        seen.request_line(),
        "GET /api/b?x=1&api_key=bob-secret-key HTTP/1.1"
    );

    // sha256 key in the header too.
    let r = strait.request(get("/api/c", "x-api-key: bob-secret-key\r\n").as_bytes());
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(upstream.last().header("x-consumer").as_deref(), Some("bob"));
    assert_eq!(upstream.requests().len(), 3);
}

#[test]
fn missing_or_wrong_keys_get_an_exact_401_and_nothing_is_forwarded() {
    let upstream = Upstream::fixed("ok");
    let bob = format!("sha256:{}", sha256_hex("bob-secret-key"));
    let strait = Strait::start(&config(upstream.addr, &bob));
    let cases = [
        get("/api/x", ""),
        get("/api/x", "x-api-key: wrong\r\n"),
        get("/api/x", "x-api-key: plain-secret-key-12\r\n"),
        get("/api/x", "x-api-key: plain-secret-key-1234\r\n"),
        // The stored digest itself is not a key.
        get("/api/x", &format!("x-api-key: {bob}\r\n")),
        // The header wins over the query.
        get(
            "/api/x?api_key=plain-secret-key-123",
            "x-api-key: wrong\r\n",
        ),
        get("/api/x?other=plain-secret-key-123", ""),
        // Another header than the configured one.
        get("/api/x", "authorization: plain-secret-key-123\r\n"),
    ];
    for raw in &cases {
        let r = strait.request(raw.as_bytes());
        assert_eq!(r.status, 401, "{raw}: {}", r.head);
        assert!(
            r.head.starts_with("HTTP/1.1 401 Unauthorized\r\n"),
            "{}",
            r.head
        );
        assert_eq!(r.text(), UNAUTHORIZED_BODY);
        assert_eq!(
            r.header("www-authenticate"),
            Some("ApiKey header=\"x-api-key\"")
        );
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    assert!(upstream.requests().is_empty(), "the upstream saw a request");

    // A 401 keeps a persistent connection open.
    let mut stream = strait.connect();
    use std::io::Write;
    stream
        .write_all(b"GET /api/x HTTP/1.1\r\nHost: t\r\n\r\nGET /api/y HTTP/1.1\r\nHost: t\r\nx-api-key: plain-secret-key-123\r\n\r\n")
        .unwrap();
    let mut reader = Reader::new(&mut stream);
    assert_eq!(reader.read_response("GET").unwrap().status, 401);
    assert_eq!(reader.read_response("GET").unwrap().status, 200);
}

#[test]
fn consumer_rate_limits_separate_consumers() {
    let upstream = Upstream::fixed("ok");
    let bob = format!("sha256:{}", sha256_hex("bob-secret-key"));
    let strait = Strait::start(&config(upstream.addr, &bob));
    let alice = "x-api-key: plain-secret-key-123\r\n";
    let bob = "x-api-key: bob-secret-key\r\n";
    let cases = [
        (alice, 200),
        (alice, 200),
        (alice, 429),
        // Same client IP, another consumer: its own bucket.
        (bob, 200),
        (bob, 200),
        (bob, 429),
        // Unauthenticated requests are refused before the limit counts them.
        ("", 401),
    ];
    for (i, (header, status)) in cases.into_iter().enumerate() {
        let r = strait.request(get("/limited", header).as_bytes());
        assert_eq!(r.status, status, "case {i}: {}", r.head);
    }
    assert_eq!(upstream.requests().len(), 4);

    // Without auth on the route, a consumer limit counts by client IP.
    let statuses: Vec<u16> = (0..2)
        .map(|_| strait.request(get("/open", alice).as_bytes()).status)
        .collect();
    assert_eq!(statuses, [200, 429]);
}
