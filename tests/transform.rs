//! Request and response transforms through the binary, against a real upstream that
//! records what it receives: path templates and regex rewrites, method and host, header
//! and query edits with templated values; status maps, header edits, `Server` and `Via`
//! on forwarded, stored and local answers; config errors with their position.

mod common;

use std::net::SocketAddr;

use common::{check, Received, Strait, Upstream};

fn config(upstream: SocketAddr, routes: &str) -> String {
    common::app_config(upstream, routes)
}

/// The upstream's answer to every request: 200 with a body naming the request line.
fn recording_upstream() -> Upstream {
    Upstream::start(|r: &Received| common::ok(r.request_line()))
}

#[test]
fn request_edits_reach_the_upstream() {
    let upstream = recording_upstream();
    let strait = Strait::start(&config(
        upstream.addr,
        r#"
[[routes]]
name = "users"
path = "/users/{id}"
upstream = "app"
auth = { api_key = {} }

[routes.transform.request]
path = "/v2/accounts/{id}"
method = "POST"
host = "{header.x-tenant}.internal"
headers.set = { x-user = "{consumer}:{id}", x-route = "{route}", x-empty = "{query.none}" }
headers.add = { x-source = "gateway", x-kept = "not used" }
headers.append = { x-tag = "from-{client_ip}" }
headers.remove = ["cookie"]
headers.rename = { x-old = "x-new" }
query.set = { page = "{query.p}" }
query.remove = ["debug"]
query.rename = { q = "search" }
query.add = { lang = "en", search = "not used" }
"#,
    ));
    let response = strait.request(
        b"GET /users/42?q=rust&debug=1&p=3&keep=%20x HTTP/1.1\r\nHost: example.com\r\n\
          x-api-key: alice-key\r\nx-tenant: acme\r\ncookie: secret=1\r\nx-kept: client\r\n\
          x-tag: client-tag\r\nx-old: a\r\nx-old: b\r\nx-empty: client\r\n\r\n",
    );
    assert_eq!(response.status, 200, "{}", response.head);
    let got = upstream.last();
    assert_eq!(
        got.request_line(),
        "POST /v2/accounts/42?search=rust&p=3&keep=%20x&page=3&lang=en HTTP/1.1"
    );
    let headers = |name: &str| -> Vec<String> {
        got.head
            .split("\r\n")
            .filter_map(|line| line.split_once(": "))
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.to_owned())
            .collect()
    };
    assert_eq!(headers("host"), ["acme.internal"]);
    assert_eq!(headers("x-user"), ["alice:42"]);
    assert_eq!(headers("x-route"), ["users"]);
    // A set value that renders empty removes the header.
    assert!(headers("x-empty").is_empty(), "{}", got.head);
    // `add` only where the client sent none.
    assert_eq!(headers("x-source"), ["gateway"]);
    assert_eq!(headers("x-kept"), ["client"]);
    // `append` keeps the client's copy.
    assert_eq!(headers("x-tag"), ["client-tag", "from-127.0.0.1"]);
    assert!(headers("cookie").is_empty());
    assert!(headers("x-old").is_empty());
    assert_eq!(headers("x-new"), ["a", "b"]);
    // The credential still never goes upstream.
    assert!(headers("x-api-key").is_empty());
}

#[test]
fn regex_rewrites_keep_the_rest_of_the_path_and_the_query() {
    let upstream = recording_upstream();
    let strait = Strait::start(&config(
        upstream.addr,
        r#"
[[routes]]
path = "/api/{*rest}"
upstream = "app"
transform.request.path_regex = { pattern = "^/api/(?<version>v[0-9]+)/", replace = "/${version}/internal/" }

[[routes]]
path = "/shop/{*rest}"
upstream = "app"
strip_prefix = "/shop"
transform.request.query = { set = { from = "shop" } }
"#,
    ));
    let cases = [
        ("/api/v2/items?x=1", "GET /v2/internal/items?x=1 HTTP/1.1"),
        // A path the pattern does not match goes as it came.
        ("/api/other/items", "GET /api/other/items HTTP/1.1"),
        // Query edits alone keep `strip_prefix`.
        (
            "/shop/cart?from=client&y=2",
            "GET /cart?y=2&from=shop HTTP/1.1",
        ),
    ];
    for (path, want) in cases {
        let response =
            strait.request(format!("GET {path} HTTP/1.1\r\nHost: example.com\r\n\r\n").as_bytes());
        assert_eq!(response.status, 200, "{path}: {}", response.head);
        assert_eq!(upstream.last().request_line(), want, "{path}");
    }
}

#[test]
fn response_edits_apply_to_forwarded_stored_and_local_answers() {
    let upstream = Upstream::start(|r: &Received| {
        let status = if r.request_line().contains("/missing") {
            "404 Not Found"
        } else {
            "200 OK"
        };
        format!(
            "HTTP/1.1 {status}\r\nserver: origin/1.0\r\nx-internal: 1\r\nx-powered-by: php\r\n\
             cache-control: max-age=60\r\nvia: 1.1 edge\r\ncontent-length: 2\r\n\r\nok"
        )
        .into_bytes()
    });
    let strait = Strait::start(&config(
        upstream.addr,
        r#"
[upstreams.dead]
endpoints = ["127.0.0.1:1"]

[caches.main]
memory = "1MiB"

[[routes]]
path = "/open/{*rest}"
upstream = "app"
cache = { name = "main" }

[routes.transform.response]
status = { "404" = 410 }
headers.set = { x-request = "{request_id}", cache-control = "public, max-age=5" }
headers.add = { x-frame-options = "DENY", x-powered-by = "not used" }
headers.append = { x-served-by = "strait" }
headers.remove = ["x-internal"]
server = "hide"
via = false

[[routes]]
path = "/closed"
upstream = "app"
auth = { api_key = {} }
transform.response = { headers.set = { x-note = "closed" }, server = "gateway" }

[[routes]]
path = "/down"
upstream = "dead"
transform.response = { headers.set = { x-note = "down" } }
"#,
    ));
    for (attempt, cached) in [("first", false), ("second", true)] {
        let response = strait
            .request(b"GET /open/a HTTP/1.1\r\nHost: example.com\r\nx-request-id: rid-7\r\n\r\n");
        assert_eq!(response.status, 200, "{attempt}: {}", response.head);
        let status = response.header("cache-status").unwrap_or("");
        assert_eq!(
            status.contains("hit"),
            cached,
            "{attempt}: {}",
            response.head
        );
        assert_eq!(response.header("x-request"), Some("rid-7"), "{attempt}");
        assert_eq!(
            response.headers_named("cache-control"),
            ["public, max-age=5"],
            "{attempt}"
        );
        assert_eq!(response.header("x-frame-options"), Some("DENY"));
        assert_eq!(response.headers_named("x-powered-by"), ["php"]);
        assert_eq!(response.header("x-served-by"), Some("strait"));
        assert_eq!(response.header("x-internal"), None);
        assert_eq!(response.header("server"), None);
        // The upstream's chain passes; Strait does not add itself.
        assert_eq!(response.headers_named("via"), ["1.1 edge"]);
        assert_eq!(response.text(), "ok");
    }
    let gone = strait.request(b"GET /open/missing HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_eq!(gone.status, 410, "{}", gone.head);
    assert!(
        gone.head.starts_with("HTTP/1.1 410 Gone\r\n"),
        "{}",
        gone.head
    );
    assert_eq!(gone.text(), "ok");
    let again = strait.request(b"GET /open/missing HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_eq!(
        again.status, 410,
        "a stored 404 is mapped too: {}",
        again.head
    );

    // A request the route's guards refuse is answered before the transform runs, as
    // nginx's `add_header` leaves error answers alone.
    let refused = strait.request(b"GET /closed HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_eq!(refused.status, 401);
    assert_eq!(refused.header("x-note"), None);
    let served = strait
        .request(b"GET /closed HTTP/1.1\r\nHost: example.com\r\nx-api-key: alice-key\r\n\r\n");
    assert_eq!(served.status, 200);
    assert_eq!(served.headers_named("server"), ["gateway"]);
    assert_eq!(served.header("x-note"), Some("closed"));
    assert_eq!(served.headers_named("via"), ["1.1 edge, 1.1 strait"]);

    // The gateway's own answer after the transform ran (no upstream) gets the lines.
    let down = strait.request(b"GET /down HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_eq!(down.status, 502, "{}", down.head);
    assert_eq!(down.header("x-note"), Some("down"));
}

#[test]
fn bad_transforms_are_config_errors_with_their_position() {
    let upstream = recording_upstream();
    let route = |transform: &str| {
        config(
            upstream.addr,
            &format!("[[routes]]\npath = \"/users/{{id}}\"\nupstream = \"app\"\n{transform}\n"),
        )
    };
    let cases = [
        (
            r#"transform.request.path = "/v2/{user}""#,
            "routes[0].transform.request.path: \"/v2/{user}\": at character 5: unknown \
             placeholder {user}: use a path parameter (id)",
        ),
        (
            r#"transform.request.headers.set = { content-length = "1" }"#,
            "routes[0].transform.request.headers.set.content-length: \"content-length\" is set \
             by Strait",
        ),
        (
            r#"transform.request.path_regex = { pattern = "(", replace = "/x" }"#,
            "routes[0].transform.request.path_regex.pattern: \"(\" is not a regex",
        ),
        (
            r#"transform.response.status = { "404" = 204 }"#,
            "routes[0].transform.response.status.404: 204 is not a status the answer can take",
        ),
        (
            r#"transform.request.headers.set = { x-a = "{header.x b}" }"#,
            "{header.x b} needs a name after the dot",
        ),
        (
            r#"transform.request.path = "/v2?x=1""#,
            "the path has no query or fragment",
        ),
        (
            r#"transform.request.methd = "GET""#,
            "unknown field `methd`",
        ),
    ];
    for (transform, want) in cases {
        let (ok, text) = check(&route(transform));
        assert!(!ok, "{transform} was accepted");
        assert!(text.contains(want), "{transform}:\n{text}");
        // Each error names the file and the line of the route's transform.
        assert!(text.contains("strait.toml:13:"), "{transform}:\n{text}");
    }
    let (ok, text) = check(&route(r#"transform.request.path = "/v2/{id}/{{literal}}""#));
    assert!(ok, "{text}");
}

#[test]
fn an_http2_stream_is_transformed_like_an_http11_request() {
    let upstream = Upstream::start(|r: &Received| {
        let body = r.request_line();
        format!(
            "HTTP/1.1 404 Not Found\r\nx-internal: 1\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    });
    let strait = Strait::start(&format!(
        r#"[server]
listen = ["127.0.0.1:0"]

[server.http2]
cleartext = true

[upstreams.app]
endpoints = ["{}"]

[[routes]]
path = "/items/{{id}}"
upstream = "app"
transform.request = {{ path = "/v2/items/{{id}}", headers.set = {{ x-proto = "h2" }} }}
transform.response = {{ status = {{ "404" = 410 }}, headers.remove = ["x-internal"], headers.set = {{ x-edited = "yes" }} }}
"#,
        upstream.addr
    ));
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-S",
            "-i",
            "--max-time",
            "20",
            "--http2-prior-knowledge",
        ])
        .arg(format!("http://{}/items/9?x=1", strait.addr))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(text.starts_with("http/2 410"), "{text}");
    assert!(text.contains("\r\nx-edited: yes\r\n"), "{text}");
    assert!(!text.contains("x-internal"), "{text}");
    assert!(text.ends_with("get /v2/items/9?x=1 http/1.1"), "{text}");
    assert_eq!(upstream.last().header("x-proto").as_deref(), Some("h2"));
}
