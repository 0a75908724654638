//! IP allow/deny lists through the real binary (the client is 127.0.0.1): exact 403s,
//! deny over allow, global before route, and nothing forwarded when refused.

mod common;
use common::*;

const FORBIDDEN_BODY: &str = "{\"error\":\"forbidden\",\"status\":403}\n";

fn config(upstream: std::net::SocketAddr, global: &str) -> String {
    format!(
        r#"[server]
listen = ["127.0.0.1:0"]
[server.access]
{global}

[upstreams.app]
endpoints = ["{upstream}"]

[[routes]]
path = "/open"
upstream = "app"

[[routes]]
path = "/allowed"
upstream = "app"
access = {{ allow = ["127.0.0.0/8", "::1/128"] }}

[[routes]]
path = "/denied"
upstream = "app"
access = {{ allow = ["127.0.0.0/8"], deny = ["127.0.0.1"] }}

[[routes]]
path = "/elsewhere"
upstream = "app"
access = {{ allow = ["10.0.0.0/8"] }}
"#
    )
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
}

#[test]
fn route_lists_allow_and_deny_the_peer() {
    let upstream = Upstream::fixed("ok");
    let strait = Strait::start(&config(upstream.addr, ""));
    for (path, status) in [
        ("/open", 200),
        ("/allowed", 200),
        ("/denied", 403),
        ("/elsewhere", 403),
    ] {
        let r = strait.request(get(path).as_bytes());
        assert_eq!(r.status, status, "{path}: {}", r.head);
        if status == 403 {
            assert!(
                r.head.starts_with("HTTP/1.1 403 Forbidden\r\n"),
                "{}",
                r.head
            );
            assert_eq!(r.text(), FORBIDDEN_BODY);
            assert_eq!(r.header("content-type"), Some("application/json"));
        }
    }
    let paths: Vec<String> = upstream
        .requests()
        .iter()
        .map(|r| r.request_line().to_owned())
        .collect();
    assert_eq!(paths, ["GET /open HTTP/1.1", "GET /allowed HTTP/1.1"]);
}

#[test]
fn the_global_list_refuses_before_routing() {
    let upstream = Upstream::fixed("ok");
    let strait = Strait::start(&config(upstream.addr, "deny = [\"127.0.0.0/8\"]"));
    // Even an unknown path gets 403, not 404.
    for path in ["/open", "/allowed", "/nowhere"] {
        let r = strait.request(get(path).as_bytes());
        assert_eq!(r.status, 403, "{path}: {}", r.head);
        assert_eq!(r.text(), FORBIDDEN_BODY);
    }
    assert!(upstream.requests().is_empty());

    let upstream = Upstream::fixed("ok");
    let strait = Strait::start(&config(upstream.addr, "allow = [\"10.0.0.0/8\"]"));
    assert_eq!(strait.request(get("/open").as_bytes()).status, 403);
    let strait2 = Strait::start(&config(upstream.addr, "allow = [\"127.0.0.1/32\"]"));
    assert_eq!(strait2.request(get("/open").as_bytes()).status, 200);
    assert_eq!(upstream.requests().len(), 1);
}
