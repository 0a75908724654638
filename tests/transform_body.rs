//! JSON body edits (`transform.request.body`, `transform.response.body`) through the
//! binary, against real upstreams: what the upstream receives and what the client gets,
//! with Content-Length and chunked bodies both ways, bodies over `max_bytes` passed or
//! refused, non-JSON and encoded bodies untouched, invalid JSON, the ETag of an edited
//! answer, keep-alive after an edited answer, and config errors.

mod common;

use std::io::Write;
use std::net::SocketAddr;

use common::{check, Reader, Received, Strait, Upstream};

fn config(upstream: SocketAddr, routes: &str) -> String {
    common::app_config(upstream, routes)
}

/// The upstream answers every request with the body it received, as JSON.
fn echo_json() -> Upstream {
    Upstream::start(|r: &Received| json_answer("", &r.body))
}

/// A 200 JSON answer with a Content-Length, `extra` header lines first.
fn json_answer(extra: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{extra}content-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// `body` as a chunked body cut into pieces of `piece` bytes.
fn chunked(body: &[u8], piece: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for part in body.chunks(piece) {
        out.extend_from_slice(format!("{:x};ext=1\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// A POST of `body` with `content-type`, Content-Length framed.
fn post(path: &str, content_type: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "POST {path} HTTP/1.1\r\nHost: example.com\r\ncontent-type: {content_type}\r\n{extra}\
         content-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// A POST of a JSON `body`, chunked in pieces of `piece` bytes.
fn chunked_post(path: &str, body: &[u8], piece: usize) -> Vec<u8> {
    let mut out = format!(
        "POST {path} HTTP/1.1\r\nHost: example.com\r\ncontent-type: application/json\r\n\
         transfer-encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    out.extend_from_slice(&chunked(body, piece));
    out
}

/// The framing headers a message was sent with must describe its body exactly: a
/// Content-Length of its size, no Transfer-Encoding.
fn assert_length_framed(head: &str, body: &[u8]) {
    let lower = head.to_ascii_lowercase();
    assert!(
        lower.contains(&format!("\r\ncontent-length: {}\r\n", body.len())),
        "{head}"
    );
    assert!(!lower.contains("transfer-encoding"), "{head}");
}

#[test]
fn post_bodies_get_a_transformed_field() {
    let upstream = echo_json();
    let strait = Strait::start(&config(
        upstream.addr,
        r#"
[[routes]]
name = "orders"
path = "/orders"
upstream = "app"
auth = { api_key = {} }

[routes.transform.request]
body = { set = { "/transformed" = true, "/meta/by" = "{consumer}", "/meta/route" = "{route}-{header.x-note}" }, remove = ["/password", "/absent"], rename = { "/user_name" = "/username" } }
"#,
    ));
    let sent = br#"{"user_name":"bob","password":"s3cret","items":[1,2],"z":{"k":"v"}}"#;
    let response = strait.request(&post(
        "/orders",
        "application/json; charset=utf-8",
        "x-api-key: alice-key\r\nx-note: \"quoted\"\r\n",
        sent,
    ));
    assert_eq!(response.status, 200, "{}", response.head);
    let got = upstream.last();
    let want = r#"{"items":[1,2],"z":{"k":"v"},"username":"bob","meta":{"by":"alice","route":"orders-\"quoted\""},"transformed":true}"#;
    assert_json_eq(&got.body, want);
    assert_length_framed(&got.head, &got.body);
    // The client sees what the upstream answered: the edited body.
    assert_json_eq(&response.body, want);

    // A request without a body goes as it came.
    let response = strait
        .request(b"GET /orders HTTP/1.1\r\nHost: example.com\r\nx-api-key: alice-key\r\n\r\n");
    assert_eq!(response.status, 200, "{}", response.head);
    assert!(upstream.last().body.is_empty());
}

/// The exact JSON text: valid, compact, members in the order the edit leaves them (the
/// body's own order, added members last).
fn assert_json_eq(got: &[u8], want: &str) {
    let text = String::from_utf8_lossy(got);
    serde_json::from_slice::<serde_json::Value>(got)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    assert_eq!(text, want);
}

#[test]
fn chunked_request_bodies_are_edited_and_sent_with_a_length() {
    let upstream = echo_json();
    let strait = Strait::start(&config(
        upstream.addr,
        r#"
[[routes]]
path = "/in"
upstream = "app"
transform.request.body = { set = { "/transformed" = true }, wrap = "data" }
"#,
    ));
    let body = br#"{"name":"a long enough name to be cut into several chunks","n":1}"#;
    let response = strait.request(&chunked_post("/in", body, 7));
    assert_eq!(response.status, 200, "{}", response.head);
    let got = upstream.last();
    assert_json_eq(
        &got.body,
        r#"{"data":{"name":"a long enough name to be cut into several chunks","n":1,"transformed":true}}"#,
    );
    assert_length_framed(&got.head, &got.body);
}

#[test]
fn response_bodies_are_edited_whether_sized_or_chunked() {
    let body = br#"{"data":{"id":7,"internal":"x","name":"n"},"debug":true}"#;
    let upstream = Upstream::start(move |r: &Received| {
        if r.request_line().contains("/chunked") {
            let mut out = b"HTTP/1.1 200 OK\r\ncontent-type: application/vnd.api+json\r\n\
                            transfer-encoding: chunked\r\n\r\n"
                .to_vec();
            out.extend_from_slice(&chunked(body, 5));
            out
        } else {
            json_answer("", body)
        }
    });
    let strait = Strait::start(&config(
        upstream.addr,
        r#"
[[routes]]
path = "/out/{*rest}"
upstream = "app"
transform.response.body = { unwrap = "data", remove = ["/internal"], set = { "/served_by" = "{route}" } }
name = "edge"
"#,
    ));
    for path in ["/out/sized", "/out/chunked"] {
        let response =
            strait.request(format!("GET {path} HTTP/1.1\r\nHost: example.com\r\n\r\n").as_bytes());
        assert_eq!(response.status, 200, "{path}: {}", response.head);
        assert_json_eq(&response.body, r#"{"id":7,"name":"n","served_by":"edge"}"#);
        assert_length_framed(&response.head, &response.body);
    }
}

#[test]
fn request_bodies_over_the_bound_pass_or_are_refused() {
    let upstream = echo_json();
    let strait = Strait::start(&config(
        upstream.addr,
        r#"
[[routes]]
path = "/pass"
upstream = "app"
transform.request.body = { set = { "/t" = 1 }, max_bytes = 64 }

[[routes]]
path = "/refuse"
upstream = "app"
transform.request.body = { set = { "/t" = 1 }, max_bytes = 64, oversize = "refuse" }
"#,
    ));
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(200));
    let small = br#"{"a":1}"#;

    // Sized and chunked, over the bound: passed untouched on one route…
    let response = strait.request(&post("/pass", "application/json", "", big.as_bytes()));
    assert_eq!(response.status, 200, "{}", response.head);
    assert_eq!(upstream.last().body, big.as_bytes());
    let response = strait.request(&chunked_post("/pass", big.as_bytes(), 50));
    assert_eq!(response.status, 200, "{}", response.head);
    assert_eq!(upstream.last().body, big.as_bytes());

    // …refused with 413 on the other, and never sent upstream.
    let before = upstream.requests().len();
    let response = strait.request(&post("/refuse", "application/json", "", big.as_bytes()));
    assert_eq!(response.status, 413, "{}", response.head);
    let response = strait.request(&chunked_post("/refuse", big.as_bytes(), 50));
    assert_eq!(response.status, 413, "{}", response.head);
    assert_eq!(
        upstream.requests().len(),
        before,
        "refused bodies never go upstream"
    );

    // Under the bound, both routes edit.
    for path in ["/pass", "/refuse"] {
        let response = strait.request(&post(path, "application/json", "", small));
        assert_eq!(response.status, 200, "{path}: {}", response.head);
        assert_json_eq(&upstream.last().body, r#"{"a":1,"t":1}"#);
    }
}

#[test]
fn response_bodies_over_the_bound_pass_or_are_refused() {
    let big = format!(r#"{{"pad":"{}"}}"#, "y".repeat(300));
    let answer = big.clone();
    let upstream = Upstream::start(move |r: &Received| {
        if r.request_line().contains("chunked") {
            let mut out = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                            transfer-encoding: chunked\r\n\r\n"
                .to_vec();
            out.extend_from_slice(&chunked(answer.as_bytes(), 40));
            out
        } else {
            json_answer("", answer.as_bytes())
        }
    });
    let strait = Strait::start(&config(
        upstream.addr,
        r#"
[[routes]]
path = "/pass/{*rest}"
upstream = "app"
transform.response.body = { set = { "/t" = 1 }, max_bytes = 64 }

[[routes]]
path = "/refuse/{*rest}"
upstream = "app"
transform.response.body = { set = { "/t" = 1 }, max_bytes = 64, oversize = "refuse" }
"#,
    ));
    for path in ["/pass/sized", "/pass/chunked"] {
        let response =
            strait.request(format!("GET {path} HTTP/1.1\r\nHost: example.com\r\n\r\n").as_bytes());
        assert_eq!(response.status, 200, "{path}: {}", response.head);
        assert_eq!(response.text(), big, "{path}: passed whole and untouched");
    }
    for path in ["/refuse/sized", "/refuse/chunked"] {
        let response =
            strait.request(format!("GET {path} HTTP/1.1\r\nHost: example.com\r\n\r\n").as_bytes());
        assert_eq!(response.status, 502, "{path}: {}", response.head);
        assert!(
            response.text().contains("\"error\""),
            "{path}: {}",
            response.text()
        );
    }
}

#[test]
fn non_json_and_encoded_bodies_pass_untouched() {
    let upstream = Upstream::start(|r: &Received| {
        let (content_type, encoding) = if r.request_line().contains("/text") {
            ("text/plain", "")
        } else {
            ("application/json", "content-encoding: br\r\n")
        };
        let body = br#"{"a":1}"#;
        let mut out = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\n{encoding}content-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(body);
        out
    });
    let strait = Strait::start(&config(
        upstream.addr,
        r#"
[[routes]]
path = "/{kind}"
upstream = "app"
transform.request.body = { set = { "/t" = 1 } }
transform.response.body = { set = { "/t" = 1 } }
"#,
    ));
    // A request body that is not JSON, or is encoded, goes as it came (even when invalid).
    let cases: [(&str, &str, &[u8]); 3] = [
        ("text/plain", "", b"{not json"),
        (
            "application/json",
            "content-encoding: gzip\r\n",
            b"\x1f\x8b\x08binary",
        ),
        ("application/jsonx", "", br#"{"a":1}"#),
    ];
    for (content_type, extra, body) in cases {
        let response = strait.request(&post("/text", content_type, extra, body));
        assert_eq!(response.status, 200, "{content_type}: {}", response.head);
        assert_eq!(upstream.last().body, body, "{content_type}");
        // The answer is text/plain: not edited either.
        assert_eq!(response.body, br#"{"a":1}"#);
    }
    // A JSON answer with a Content-Encoding is not edited.
    let response = strait.request(b"GET /encoded HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_eq!(response.status, 200, "{}", response.head);
    assert_eq!(response.body, br#"{"a":1}"#);
    assert_eq!(response.header("content-encoding"), Some("br"));
}

#[test]
fn invalid_json_requests_are_refused_and_invalid_json_answers_pass() {
    let upstream = Upstream::start(|_: &Received| json_answer("", b"{broken"));
    let strait = Strait::start(&config(
        upstream.addr,
        r#"
[[routes]]
path = "/in"
upstream = "app"
transform.request.body = { set = { "/t" = 1 } }

[[routes]]
path = "/out"
upstream = "app"
transform.response.body = { set = { "/t" = 1 } }
"#,
    ));
    for body in [&b"{broken"[..], b"{\"a\":1} trailing", b"\xff\xfe"] {
        let response = strait.request(&post("/in", "application/json", "", body));
        assert_eq!(response.status, 400, "{body:?}: {}", response.head);
        assert!(
            response
                .header("content-type")
                .is_some_and(|v| v.contains("json")),
            "{}",
            response.head
        );
        let error: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
        assert!(error.get("error").is_some(), "{error}");
    }
    assert!(
        upstream.requests().is_empty(),
        "no invalid body went upstream"
    );

    let response = strait.request(b"GET /out HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_eq!(response.status, 200, "{}", response.head);
    assert_eq!(response.body, b"{broken");
}

#[test]
fn an_edited_answer_loses_its_strong_etag_and_an_unchanged_one_keeps_it() {
    let upstream = Upstream::start(|r: &Received| {
        let body: &[u8] = if r.request_line().contains("/same") {
            br#"{"t":1}"#
        } else {
            br#"{"a":1}"#
        };
        let mut answer = json_answer("etag: \"v1\"\r\n", body);
        if r.request_line().starts_with("HEAD") {
            answer.truncate(answer.len() - body.len());
        }
        answer
    });
    let strait = Strait::start(&config(
        upstream.addr,
        r#"
[[routes]]
path = "/{x}"
upstream = "app"
transform.response.body = { set = { "/t" = 1 } }
"#,
    ));
    let response = strait.request(b"GET /changed HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_eq!(response.status, 200, "{}", response.head);
    assert_json_eq(&response.body, r#"{"a":1,"t":1}"#);
    // Dropped or weakened: never the strong validator of the upstream's bytes.
    let etag = response.header("etag");
    assert!(matches!(etag, None | Some("W/\"v1\"")), "{}", response.head);
    // An edit that changes nothing leaves the validator alone.
    let response = strait.request(b"GET /same HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_eq!(response.body, br#"{"t":1}"#);
    assert_eq!(response.header("etag"), Some("\"v1\""), "{}", response.head);

    // A HEAD answer passes as it is, its Content-Length that of the representation.
    let mut stream = strait.connect();
    stream
        .write_all(b"HEAD /changed HTTP/1.1\r\nHost: example.com\r\n\r\n")
        .unwrap();
    let response = Reader::new(&mut stream).read_response("HEAD").unwrap();
    assert_eq!(response.status, 200, "{}", response.head);
    assert_eq!(
        response.header("content-length"),
        Some("7"),
        "{}",
        response.head
    );
}

#[test]
fn a_keep_alive_connection_carries_more_requests_after_an_edited_answer() {
    let upstream = Upstream::start(|r: &Received| {
        if r.request_line().contains("/chunked") {
            let mut out = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                            transfer-encoding: chunked\r\n\r\n"
                .to_vec();
            out.extend_from_slice(&chunked(br#"{"n":2}"#, 3));
            out
        } else {
            json_answer("", br#"{"n":1}"#)
        }
    });
    let strait = Strait::start(&config(
        upstream.addr,
        r#"
[[routes]]
path = "/{x}"
upstream = "app"
transform.response.body = { set = { "/t" = true } }
"#,
    ));
    let mut stream = strait.connect();
    let mut second = stream.try_clone().unwrap();
    let mut reader = Reader::new(&mut second);
    let wants = [
        ("/sized", r#"{"n":1,"t":true}"#),
        ("/chunked", r#"{"n":2,"t":true}"#),
        ("/sized", r#"{"n":1,"t":true}"#),
    ];
    for (path, want) in wants {
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: example.com\r\n\r\n").as_bytes())
            .unwrap();
        let response = reader.read_response("GET").unwrap();
        assert_eq!(response.status, 200, "{path}: {}", response.head);
        assert_json_eq(&response.body, want);
        assert_length_framed(&response.head, &response.body);
    }
    // The upstream connection went back to the pool each time: one carried all three.
    assert_eq!(
        upstream
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

#[test]
fn bad_body_edits_are_config_errors_with_their_position() {
    let upstream = echo_json();
    let route = |extra: &str| {
        config(
            upstream.addr,
            &format!("[[routes]]\npath = \"/x\"\nupstream = \"app\"\n{extra}\n"),
        )
    };
    let cases = [
        (
            r#"transform.request.body = { remove = ["password"] }"#,
            "routes[0].transform.request.body.remove[0]",
        ),
        (
            r#"transform.request.body = { set = { "/a~7" = 1 } }"#,
            "routes[0].transform.request.body.set",
        ),
        (
            r#"transform.response.body = { set = { "/a" = "{user}" } }"#,
            "unknown placeholder {user}",
        ),
        (
            r#"transform.response.body = { set = { "/a" = 1 }, oversize = "drop" }"#,
            "routes[0].transform.response.body.oversize",
        ),
        (
            r#"transform.response.body = { set = { "/a" = 1 }, max_bytes = "lots" }"#,
            "routes[0].transform.response.body.max_bytes",
        ),
        (
            r#"transform.request.body = { sett = {} }"#,
            "unknown field `sett`",
        ),
    ];
    for (transform, want) in cases {
        let (ok, text) = check(&route(transform));
        assert!(!ok, "{transform} was accepted");
        assert!(text.contains(want), "{transform}:\n{text}");
        assert!(text.contains("strait.toml:13:"), "{transform}:\n{text}");
    }
    // A stored answer cannot be the edited one: the combination is refused.
    let (ok, text) = check(&format!(
        "{}\n[caches.c]\n",
        route("cache = { name = \"c\" }\ntransform.response.body = { set = { \"/a\" = 1 } }")
    ));
    assert!(!ok, "cache + response body edit was accepted");
    assert!(text.contains("routes[0]"), "{text}");
    let (ok, text) = check(&route(
        r#"transform.request.body = { set = { "/a" = 1 }, max_bytes = "1MiB", oversize = "refuse" }"#,
    ));
    assert!(ok, "{text}");
}

#[test]
fn http2_clients_get_their_bodies_edited_both_ways() {
    let upstream = echo_json();
    let strait = Strait::start(&format!(
        "{}\n[server.http2]\ncleartext = true\n",
        config(
            upstream.addr,
            r#"
[[routes]]
path = "/h2"
upstream = "app"
transform.request.body = { set = { "/in" = true } }
transform.response.body = { set = { "/out" = true } }
"#,
        )
    ));
    let url = format!("http://{}/h2", strait.addr);
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-S",
            "-i",
            "--max-time",
            "20",
            "--http2-prior-knowledge",
        ])
        .args([
            "-H",
            "content-type: application/json",
            "--data-binary",
            r#"{"a":1}"#,
        ])
        .arg(&url)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/2 200"), "{text}");
    let got = upstream.last();
    assert_json_eq(&got.body, r#"{"a":1,"in":true}"#);
    assert_length_framed(&got.head, &got.body);
    assert!(
        text.ends_with("\r\n\r\n{\"a\":1,\"in\":true,\"out\":true}"),
        "{text}"
    );
}

#[test]
fn answers_framed_by_the_close_are_edited_and_http10_clients_get_passed_ones_whole() {
    let big = format!(r#"{{"pad":"{}"}}"#, "z".repeat(300));
    let answer = big.clone();
    let (addr, _) = common::raw_upstream(move |mut stream, _| {
        let mut reader_stream = stream.try_clone().unwrap();
        let Ok(head) = Reader::new(&mut reader_stream).read_head() else {
            return;
        };
        let reply = if head.contains("/close") {
            // No length, no chunks: the body ends at the close.
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n{\"a\":1}"
                .to_owned()
        } else {
            let mut out = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                           transfer-encoding: chunked\r\n\r\n"
                .to_owned();
            out.push_str(std::str::from_utf8(&chunked(answer.as_bytes(), 64)).unwrap());
            out
        };
        let _ = stream.write_all(reply.as_bytes());
    });
    let strait = Strait::start(&config(
        addr,
        r#"
[[routes]]
path = "/{x}"
upstream = "app"
transform.response.body = { set = { "/t" = 1 }, max_bytes = 64 }
"#,
    ));
    let response = strait.request(b"GET /close HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_eq!(response.status, 200, "{}", response.head);
    assert_json_eq(&response.body, r#"{"a":1,"t":1}"#);
    assert_length_framed(&response.head, &response.body);

    // Over the bound and chunked, to an HTTP/1.0 client: the body whole, to the close.
    let mut stream = strait.connect();
    stream
        .write_all(b"GET /big HTTP/1.0\r\nHost: example.com\r\n\r\n")
        .unwrap();
    let response = Reader::new(&mut stream).read_response("GET").unwrap();
    assert_eq!(response.status, 200, "{}", response.head);
    assert!(
        response.header("transfer-encoding").is_none(),
        "{}",
        response.head
    );
    assert_eq!(response.text(), big);
}

#[test]
fn an_edited_request_body_is_sent_again_on_a_retry() {
    // One endpoint reads each request whole and closes without answering.
    let (closer, closed) = common::raw_upstream(|stream, _| {
        let mut reader_stream = stream.try_clone().unwrap();
        let mut reader = Reader::new(&mut reader_stream);
        let Ok(head) = reader.read_head() else { return };
        let length = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length: ")?
                    .parse()
                    .ok()
            })
            .unwrap_or(0);
        let _ = reader.read_exact_vec(length);
        let _ = stream.shutdown(std::net::Shutdown::Both);
    });
    let upstream = echo_json();
    let text = config(
        upstream.addr,
        r#"
[[routes]]
path = "/put"
upstream = "app"
transform.request.body = { set = { "/t" = 1 } }
"#,
    )
    .replace(
        &format!("endpoints = [\"{}\"]", upstream.addr),
        &format!(
            "endpoints = [\"{closer}\", \"{}\"]\nretry = {{ budget_percent = 100 }}",
            upstream.addr
        ),
    );
    let strait = Strait::start(&text);
    for _ in 0..4 {
        let mut request = post("/put", "application/json", "", br#"{"a":1}"#);
        request[..4].copy_from_slice(b"PUT ");
        request.remove(4);
        let response = strait.request(&request);
        assert_eq!(response.status, 200, "{}", response.head);
        assert_json_eq(&response.body, r#"{"a":1,"t":1}"#);
    }
    assert!(
        closed.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "the closing endpoint was tried"
    );
    assert_eq!(upstream.requests().len(), 4);
}

#[test]
fn expect_continue_is_answered_once_and_malformed_bodies_get_errors() {
    let upstream = Upstream::start(|r: &Received| {
        if r.request_line().contains("/bad-answer") {
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"
                .to_vec()
        } else {
            json_answer("", &r.body)
        }
    });
    let strait = Strait::start(&config(
        upstream.addr,
        r#"
[[routes]]
path = "/{x}"
upstream = "app"
transform.request.body = { set = { "/t" = 1 } }
transform.response.body = { set = { "/u" = 1 } }
"#,
    ));
    // The client waits for 100 Continue before its body.
    let mut stream = strait.connect();
    stream
        .write_all(
            b"POST /wait HTTP/1.1\r\nHost: example.com\r\ncontent-type: application/json\r\n\
              expect: 100-continue\r\ncontent-length: 7\r\n\r\n",
        )
        .unwrap();
    let mut second = stream.try_clone().unwrap();
    let mut reader = Reader::new(&mut second);
    assert_eq!(reader.read_head().unwrap(), "HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(br#"{"a":1}"#).unwrap();
    let response = reader.read_response("POST").unwrap();
    assert_eq!(response.status, 200, "{}", response.head);
    assert_json_eq(&response.body, r#"{"a":1,"t":1,"u":1}"#);

    // A broken chunked request body: 400, nothing sent upstream.
    let before = upstream.requests().len();
    let response = strait.request(
        b"POST /x HTTP/1.1\r\nHost: example.com\r\ncontent-type: application/json\r\n\
          transfer-encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    );
    assert_eq!(response.status, 400, "{}", response.head);
    assert_eq!(upstream.requests().len(), before);

    // A broken chunked answer: 502.
    let response = strait.request(b"GET /bad-answer HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_eq!(response.status, 502, "{}", response.head);
}

#[test]
fn pipelined_requests_after_an_edited_body_are_read_where_it_ended() {
    let upstream = echo_json();
    let strait = Strait::start(&config(
        upstream.addr,
        r#"
[[routes]]
path = "/{x}"
upstream = "app"
transform.request.body = { set = { "/t" = 1 } }
"#,
    ));
    // Three requests in one write: a chunked body with a trailer, a sized one, a GET.
    let mut requests = chunked_post("/one", br#"{"n":1}"#, 3);
    requests.truncate(requests.len() - 2);
    requests.extend_from_slice(b"x-trailer: 1\r\n\r\n");
    requests.extend_from_slice(&post("/two", "application/json", "", br#"{"n":2}"#));
    requests.extend_from_slice(b"GET /three HTTP/1.1\r\nHost: example.com\r\n\r\n");
    let mut stream = strait.connect();
    stream.write_all(&requests).unwrap();
    let mut second = stream.try_clone().unwrap();
    let mut reader = Reader::new(&mut second);
    for want in [r#"{"n":1,"t":1}"#, r#"{"n":2,"t":1}"#, ""] {
        let response = reader.read_response("GET").unwrap();
        assert_eq!(response.status, 200, "{}", response.head);
        assert_eq!(response.text(), want);
    }
    let lines: Vec<String> = upstream
        .requests()
        .iter()
        .map(|r| r.request_line().to_owned())
        .collect();
    assert_eq!(
        lines,
        [
            "POST /one HTTP/1.1",
            "POST /two HTTP/1.1",
            "GET /three HTTP/1.1"
        ]
    );
}
