//! The binary starts on the default config and answers through a real upstream.

mod common;
use common::*;

#[test]
fn default_config_answers_on_root() {
    let config = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/conf/strait.toml"))
        .unwrap()
        .replace("127.0.0.1:8080", "127.0.0.1:0");
    let strait = Strait::start(&config);
    let response = strait.request(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(response.status, 200);
    assert!(response.text().contains("strait"));
}

#[test]
fn proxies_to_upstream() {
    let upstream = Upstream::echo();
    let strait = Strait::start(&proxy_config(upstream.addr, ""));
    let response = strait.request(b"GET /a/b?c=d HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "GET /a/b?c=d HTTP/1.1\n");
    let received = upstream.last();
    assert_eq!(received.header("host").as_deref(), Some("example.com"));
    assert_eq!(
        received.header("x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
}
