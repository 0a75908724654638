//! Routing through the real binary: host selection, path patterns, prefix stripping,
//! methods and 405, 404, the Host sent upstream, mocks, weighted balancing, `--check`.

mod common;
use common::*;

use std::io::Write;
use std::process::Command;

/// The exact 404 answer, head and body, to a request that sent `X-Request-Id: t-404`.
const NOT_FOUND: &[u8] = b"HTTP/1.1 404 Not Found\r\nserver: strait\r\ncontent-type: application/json\r\ncontent-length: 34\r\nx-request-id: t-404\r\n\r\n{\"error\":\"no route\",\"status\":404}\n";

/// Sends `requests` on one keep-alive connection and returns the response bodies as text.
fn bodies(strait: &Strait, requests: &[String]) -> Vec<(u16, String)> {
    let mut stream = strait.connect();
    let mut reader_stream = stream.try_clone().unwrap();
    let mut reader = Reader::new(&mut reader_stream);
    requests
        .iter()
        .map(|raw| {
            stream.write_all(raw.as_bytes()).unwrap();
            let method = raw.split(' ').next().unwrap();
            let r = reader.read_response(method).unwrap();
            (r.status, r.text())
        })
        .collect()
}

fn get(host: &str, path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n")
}

/// Reads everything strait sends on a fresh connection for `raw` until it closes.
fn raw_exchange(strait: &Strait, raw: &[u8]) -> Vec<u8> {
    let mut stream = strait.connect();
    stream.write_all(raw).unwrap();
    Reader::new(&mut stream).read_to_end().unwrap()
}

#[test]
fn hosts_exact_then_longest_wildcard_then_default() {
    let config = r#"
[server]
listen = ["127.0.0.1:0"]

[[routes]]
path = "/"
hosts = ["api.example.com"]
mock = { status = 200, body = "exact" }

[[routes]]
path = "/"
hosts = ["*.example.com"]
mock = { status = 200, body = "wild" }

[[routes]]
path = "/"
hosts = ["*.b.example.com"]
mock = { status = 200, body = "wild-b" }

[[routes]]
path = "/"
mock = { status = 200, body = "default" }

[[routes]]
path = "/only-default"
mock = { status = 200, body = "default-only" }
"#;
    let strait = Strait::start(config);
    let cases = [
        ("api.example.com", "/", "exact"),
        ("API.Example.COM", "/", "exact"),
        ("api.example.com:8443", "/", "exact"),
        ("api.example.com.", "/", "exact"),
        ("a.example.com", "/", "wild"),
        ("x.y.example.com", "/", "wild"),
        ("a.b.example.com", "/", "wild-b"),
        ("b.example.com", "/", "wild"),
        ("example.com", "/", "default"),
        ("other.org", "/", "default"),
        ("127.0.0.1:9", "/", "default"),
        // Routes without `hosts` serve every host where the host's own routes leave off.
        ("api.example.com", "/only-default", "default-only"),
        ("a.b.example.com", "/only-default", "default-only"),
    ];
    let requests: Vec<String> = cases.iter().map(|(h, p, _)| get(h, p)).collect();
    let got = bodies(&strait, &requests);
    for ((host, path, want), (status, body)) in cases.iter().zip(got) {
        assert_eq!((status, body.as_str()), (200, *want), "Host: {host} {path}");
    }
    // HTTP/1.0 without a Host header gets the default routes.
    let response = strait.request(b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(
        (response.status, response.text().as_str()),
        (200, "default")
    );
}

#[test]
fn path_params_and_specificity() {
    let config = r#"
[server]
listen = ["127.0.0.1:0"]

[[routes]]
path = "/users/{id}"
mock = { status = 200, body = "user" }

[[routes]]
path = "/users/{id}/posts"
mock = { status = 200, body = "posts" }

[[routes]]
path = "/users/me"
mock = { status = 200, body = "me" }

[[routes]]
path = "/files/{*rest}"
mock = { status = 200, body = "files" }
"#;
    let strait = Strait::start(config);
    let cases = [
        ("/users/42", 200, "user"),
        ("/users/me", 200, "me"),
        ("/users/42/posts", 200, "posts"),
        ("/users/me/posts", 200, "posts"),
        ("/users/42?next=/posts", 200, "user"),
        ("/files/a", 200, "files"),
        ("/files/a/b/c.txt", 200, "files"),
        ("/files/", 200, "files"),
        ("/files", 404, ""),
        ("/users/", 404, ""),
        ("/users", 404, ""),
        ("/users/42/other", 404, ""),
        ("/users/42/posts/1", 404, ""),
        ("/nothing", 404, ""),
    ];
    let requests: Vec<String> = cases.iter().map(|(p, _, _)| get("x", p)).collect();
    let got = bodies(&strait, &requests);
    for ((path, status, want), (got_status, body)) in cases.iter().zip(got) {
        assert_eq!(got_status, *status, "{path}");
        if *status == 200 {
            assert_eq!(body, *want, "{path}");
        } else {
            assert_eq!(body, "{\"error\":\"no route\",\"status\":404}\n", "{path}");
        }
    }
}

#[test]
fn not_found_is_exact_json_and_keeps_the_connection() {
    let config = r#"
[server]
listen = ["127.0.0.1:0"]

[[routes]]
path = "/here"
mock = { status = 200, body = "here" }
"#;
    let strait = Strait::start(config);
    let mut stream = strait.connect();
    stream
        .write_all(b"GET /there HTTP/1.1\r\nHost: x\r\nX-Request-Id: t-404\r\n\r\nGET /here HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut reader = Reader::new(&mut stream);
    let head = reader.read_head().unwrap();
    let body = reader.read_exact_vec(34).unwrap();
    assert_eq!([head.as_bytes(), &body[..]].concat(), NOT_FOUND);
    let next = reader.read_response("GET").unwrap();
    assert_eq!((next.status, next.text().as_str()), (200, "here"));
    // HTTP/1.0 gets the same answer and a close; without a client ID, a generated one
    // sits just before `connection`.
    let raw = raw_exchange(&strait, b"GET /there HTTP/1.0\r\n\r\n");
    let text = String::from_utf8(raw).unwrap();
    let id = generated_request_id(&text);
    assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"), "{text}");
    assert!(
        text.contains(&format!("\r\nx-request-id: {id}\r\nconnection: close\r\n")),
        "{text}"
    );
    assert!(
        text.ends_with("\r\n\r\n{\"error\":\"no route\",\"status\":404}\n"),
        "{text}"
    );
}

fn strip_config(upstream: std::net::SocketAddr, bare_route: bool) -> String {
    let bare = if bare_route {
        r#"
[[routes]]
name = "bare"
path = "/api"
upstream = "app"
strip_prefix = "/api"
"#
    } else {
        ""
    };
    format!(
        r#"
[server]
listen = ["127.0.0.1:0"]

[upstreams.app]
endpoints = ["{upstream}"]

[[routes]]
name = "api"
path = "/api/{{*rest}}"
upstream = "app"
strip_prefix = "/api"
{bare}
[[routes]]
path = "/apix"
mock = {{ status = 200, body = "apix-mock" }}
"#
    )
}

#[test]
fn catch_all_prefix_with_strip_prefix() {
    let upstream = Upstream::echo();
    let strait = Strait::start(&strip_config(upstream.addr, false));
    let cases = [
        ("/api/x", 200, "GET /x HTTP/1.1\n"),
        ("/api/", 200, "GET / HTTP/1.1\n"),
        ("/api/x/y?q=1", 200, "GET /x/y?q=1 HTTP/1.1\n"),
        ("/api/?q=1", 200, "GET /?q=1 HTTP/1.1\n"),
        // `/api/api/x` loses only the first prefix.
        ("/api/api/x", 200, "GET /api/x HTTP/1.1\n"),
        ("/api", 404, "{\"error\":\"no route\",\"status\":404}\n"),
        ("/apix", 200, "apix-mock"),
        ("/apix/y", 404, "{\"error\":\"no route\",\"status\":404}\n"),
    ];
    let requests: Vec<String> = cases.iter().map(|(p, _, _)| get("x", p)).collect();
    let got = bodies(&strait, &requests);
    for ((path, status, want), got) in cases.iter().zip(got) {
        assert_eq!(got, (*status, want.to_string()), "{path}");
    }
    assert_eq!(upstream.requests().len(), 5);
}

#[test]
fn bare_prefix_route_makes_api_match() {
    let upstream = Upstream::echo();
    let strait = Strait::start(&strip_config(upstream.addr, true));
    let cases = [
        ("/api", "GET / HTTP/1.1\n"),
        ("/api?q=1", "GET /?q=1 HTTP/1.1\n"),
        ("/api/", "GET / HTTP/1.1\n"),
        ("/api/x", "GET /x HTTP/1.1\n"),
    ];
    let requests: Vec<String> = cases.iter().map(|(p, _)| get("x", p)).collect();
    let got = bodies(&strait, &requests);
    for ((path, want), got) in cases.iter().zip(got) {
        assert_eq!(got, (200, want.to_string()), "{path}");
    }
}

#[test]
fn methods_route_and_405_lists_allow_exactly() {
    let config = r#"
[server]
listen = ["127.0.0.1:0"]

[[routes]]
path = "/items"
methods = ["get"]
mock = { status = 200, headers = { x-route = "list" }, body = "list" }

[[routes]]
path = "/items"
methods = ["POST", "DELETE"]
mock = { status = 201, body = "created" }

[[routes]]
path = "/any"
mock = { status = 200, body = "any" }
"#;
    let strait = Strait::start(config);
    let mut stream = strait.connect();
    let mut reader_stream = stream.try_clone().unwrap();
    let mut reader = Reader::new(&mut reader_stream);

    stream
        .write_all(b"GET /items HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let r = reader.read_response("GET").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "list"));

    stream
        .write_all(b"POST /items HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
        .unwrap();
    let r = reader.read_response("POST").unwrap();
    assert_eq!((r.status, r.text().as_str()), (201, "created"));

    stream
        .write_all(b"DELETE /items HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let r = reader.read_response("DELETE").unwrap();
    assert_eq!((r.status, r.text().as_str()), (201, "created"));

    // HEAD falls back to the GET route, with no body.
    stream
        .write_all(b"HEAD /items HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let r = reader.read_response("HEAD").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-route"), Some("list"));
    assert_eq!(r.header("content-length"), Some("4"));

    // PUT: 405, exact Allow, JSON body, the connection goes on (the body is discarded).
    stream
        .write_all(b"PUT /items HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nzz")
        .unwrap();
    let r = reader.read_response("PUT").unwrap();
    assert_eq!(r.status, 405);
    assert_eq!(r.headers_named("allow"), vec!["DELETE, GET, HEAD, POST"]);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.text(),
        "{\"error\":\"method not allowed\",\"status\":405}\n"
    );

    // A route without methods takes any token, even an unknown one.
    stream
        .write_all(b"PURGE /any HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let r = reader.read_response("PURGE").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "any"));

    // Methods are case-sensitive on the wire: `get` is not GET.
    stream
        .write_all(b"get /items HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let r = reader.read_response("get").unwrap();
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("DELETE, GET, HEAD, POST"));
}

#[test]
fn host_sent_upstream_preserved_rewritten_or_endpoint() {
    let upstream = Upstream::echo();
    let addr = upstream.addr;
    let config = format!(
        r#"
[server]
listen = ["127.0.0.1:0"]

[upstreams.app]
endpoints = ["{addr}"]

[[routes]]
path = "/keep"
upstream = "app"

[[routes]]
path = "/rewrite"
upstream = "app"
host_rewrite = "internal.svc:8080"

[[routes]]
path = "/endpoint"
upstream = "app"
preserve_host = false
"#
    );
    let strait = Strait::start(&config);
    let cases = [
        ("/keep", "Public.Example.com:8443".to_string()),
        ("/rewrite", "internal.svc:8080".to_string()),
        ("/endpoint", addr.to_string()),
    ];
    for (path, want_host) in cases {
        let r = strait.request(get("Public.Example.com:8443", path).as_bytes());
        assert_eq!(r.status, 200, "{path}");
        let received = upstream.last();
        assert_eq!(received.request_line(), format!("GET {path} HTTP/1.1"));
        let hosts: Vec<&str> = received
            .head
            .split("\r\n")
            .filter(|l| l.to_ascii_lowercase().starts_with("host:"))
            .collect();
        assert_eq!(hosts, vec![format!("host: {want_host}")], "{path}");
        assert_eq!(
            received.header("x-forwarded-host").as_deref(),
            Some("Public.Example.com:8443"),
            "{path}"
        );
    }
}

#[test]
fn mock_responses_exact_bytes() {
    let dir = scratch_dir();
    let page = dir.join("maintenance.html");
    std::fs::write(&page, "<h1>down</h1>\n").unwrap();
    let config = format!(
        r#"
[server]
listen = ["127.0.0.1:0"]

[[routes]]
path = "/inline"
mock = {{ status = 200, headers = {{ content-type = "application/json", x-a = "1 2" }}, body = '{{"ok":true}}' }}

[[routes]]
path = "/file"
mock = {{ status = 503, headers = {{ retry-after = "600" }}, body_file = "{}" }}

[[routes]]
path = "/empty"
mock = {{ status = 204 }}

[[routes]]
path = "/accepted"
mock = {{ status = 202 }}
"#,
        page.display()
    );
    let strait = Strait::start(&config);
    let mut stream = strait.connect();
    let mut reader_stream = stream.try_clone().unwrap();
    let mut reader = Reader::new(&mut reader_stream);
    let mut exchange = |request: &str, want: &str| {
        stream.write_all(request.as_bytes()).unwrap();
        let got = reader.read_exact_vec(want.len()).unwrap();
        assert_eq!(String::from_utf8_lossy(&got), want, "{request}");
    };
    exchange(
        "GET /inline HTTP/1.1\r\nHost: x\r\nX-Request-Id: t-1\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-a: 1 2\r\ncontent-length: 11\r\nx-request-id: t-1\r\n\r\n{\"ok\":true}",
    );
    exchange("HEAD /inline HTTP/1.1\r\nHost: x\r\nX-Request-Id: t-2\r\n\r\n", "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-a: 1 2\r\ncontent-length: 11\r\nx-request-id: t-2\r\n\r\n");
    exchange(
        "GET /file HTTP/1.1\r\nHost: x\r\nX-Request-Id: t-3\r\n\r\n",
        "HTTP/1.1 503 Service Unavailable\r\nretry-after: 600\r\ncontent-length: 14\r\nx-request-id: t-3\r\n\r\n<h1>down</h1>\n",
    );
    exchange(
        "HEAD /file HTTP/1.1\r\nHost: x\r\nX-Request-Id: t-4\r\n\r\n",
        "HTTP/1.1 503 Service Unavailable\r\nretry-after: 600\r\ncontent-length: 14\r\nx-request-id: t-4\r\n\r\n",
    );
    exchange(
        "GET /empty HTTP/1.1\r\nHost: x\r\nX-Request-Id: t-5\r\n\r\n",
        "HTTP/1.1 204 No Content\r\nx-request-id: t-5\r\n\r\n",
    );
    // Each exchange reads exactly the expected bytes from the start, so a body wrongly sent
    // after a HEAD would show up at the start of the next one.
    exchange(
        "GET /accepted HTTP/1.1\r\nHost: x\r\nX-Request-Id: t-6\r\n\r\n",
        "HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\nx-request-id: t-6\r\n\r\n",
    );
    // An HTTP/1.0 client without keep-alive is told the connection closes.
    let raw = raw_exchange(
        &strait,
        b"GET /inline HTTP/1.0\r\nX-Request-Id: t-7\r\n\r\n",
    );
    assert_eq!(
        String::from_utf8(raw).unwrap(),
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-a: 1 2\r\ncontent-length: 11\r\nx-request-id: t-7\r\nconnection: close\r\n\r\n{\"ok\":true}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn weighted_round_robin_follows_weights_exactly() {
    let a = Upstream::fixed("a");
    let b = Upstream::fixed("b");
    let c = Upstream::fixed("c");
    let config = format!(
        r#"
[server]
listen = ["127.0.0.1:0"]

[upstreams.app]
endpoints = [{{ addr = "{}", weight = 1 }}, {{ addr = "{}", weight = 2 }}, {{ addr = "{}", weight = 3 }}]

[[routes]]
path = "/{{*rest}}"
upstream = "app"
"#,
        a.addr, b.addr, c.addr
    );
    let strait = Strait::start(&config);
    let requests: Vec<String> = (0..60).map(|i| get("x", &format!("/r{i}"))).collect();
    let got = bodies(&strait, &requests);
    let order: String = got
        .iter()
        .map(|(s, b)| if *s == 200 { b.as_str() } else { "!" })
        .collect();
    // Smooth WRR interleaves: one cycle of weights 1,2,3 is c b a c b c.
    assert_eq!(&order[..6], "cbacbc", "{order}");
    assert_eq!(order, "cbacbc".repeat(10));
    assert_eq!(
        (a.requests().len(), b.requests().len(), c.requests().len()),
        (10, 20, 30)
    );
}

fn check(config: &str) -> (i32, String, String, std::path::PathBuf) {
    let dir = scratch_dir();
    let path = dir.join("check.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_strait"))
        .arg("--check")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        path,
    )
}

#[test]
fn check_accepts_a_valid_config() {
    let config = proxy_config("127.0.0.1:1".parse().unwrap(), "");
    let (code, stdout, stderr, path) = check(&config);
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert_eq!(
        stdout,
        format!("{}: configuration is valid\n", path.display())
    );
    // Every shipped config passes too.
    let examples = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/conf/examples"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"));
    let shipped = [std::path::PathBuf::from("conf/strait.toml")];
    for file in shipped.into_iter().chain(examples) {
        let file = file.display().to_string();
        let out = Command::new(env!("CARGO_BIN_EXE_strait"))
            .arg("--check")
            .arg("--config")
            .arg(&file)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn check_rejects_an_invalid_config_naming_file_line_column_and_key() {
    // Line 3: workers = -1 (column 11); line 10: an unknown upstream (column 12).
    let config = "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = -1\n\n[upstreams.app]\nendpoints = [\"127.0.0.1:1\"]\n\n[[routes]]\npath = \"/\"\nupstream = \"apq\"\n";
    let (code, stdout, stderr, path) = check(config);
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
    let file = path.display().to_string();
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("{file}:3:11: server.workers: "))),
        "{stderr}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with(&format!(
            "{file}:10:12: routes[0].upstream: unknown upstream \"apq\""
        ))),
        "{stderr}"
    );
    assert!(!stdout.contains("valid"), "{stdout}");

    // A misspelt key stops parsing and is reported alone, with its position.
    let (code, _, stderr, path) = check("[server]\nlisten = [\"127.0.0.1:0\"]\nworkerz = 1\n");
    assert_eq!(code, 1, "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with(&format!("{}:3:1: ", path.display())));
    assert!(line.is_some_and(|l| l.contains("workerz")), "{stderr}");
}
