//! HTTP/2 to clients through the real binary: curl with prior knowledge and by ALPN,
//! h2load for many streams, and Python's h2 (`tests/fixtures/h2_peer.py`, Debian's
//! python3-h2) for what only frames show: trailers, refused streams, and every defence
//! provoked (Rapid Reset, CONTINUATION, PING, SETTINGS and WINDOW_UPDATE floods, oversized
//! header lists, zero-window stalls) with the process serving on afterwards. Idle
//! connections and drains end with GOAWAY, streams in flight finishing.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::certs::{Ca, Key};
use common::{free_port, hello_api_config, metric_value, ok, scratch_dir, Strait, Upstream};
use serde_json::Value;

const PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/h2_peer.py");

/// Runs `h2_peer.py MODE HOST PORT ARGS...`; its JSON report.
fn peer(mode: &str, addr: SocketAddr, args: &[&str]) -> Value {
    let port = addr.port().to_string();
    let out = Command::new("/usr/bin/python3")
        .args([PEER, mode, "127.0.0.1", &port])
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .expect("run /usr/bin/python3 (apt-get install python3-h2)");
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().unwrap_or("");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("h2_peer.py {mode}: {e}: {text:?}"))
}

/// `curl ARGS...`: the status line, headers and body it printed.
fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-s", "-S", "-i", "--max-time", "20"])
        .args(args)
        .output()
        .expect("run curl");
    assert!(out.status.success(), "curl {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A config with `/hello` (mock) and `/api/*` to `upstream`, HTTP/2 in cleartext, and
/// `extra` lines in `[server.http2]`, and `server` ones in `[server]`.
fn h2c_config(upstream: SocketAddr, server: &str, extra: &str) -> String {
    hello_api_config(
        upstream,
        &format!("{server}\n[server.http2]\ncleartext = true\n{extra}\n"),
    )
}

fn closes(strait: &Strait, reason: &str) -> f64 {
    let series = format!("strait_http2_connections_closed_total{{reason=\"{reason}\"}}");
    metric_value(&strait.metrics(), &series).unwrap_or(-1.0)
}

/// Polls the metrics until `reason` has counted `n` closes.
fn wait_closes(strait: &Strait, reason: &str, n: f64) {
    common::wait_until(&format!("{n} HTTP/2 closes for {reason}"), || {
        closes(strait, reason) >= n
    });
}

fn stream(report: &Value, i: usize) -> &Value {
    &report["streams"][i]
}

#[test]
fn prior_knowledge_and_http11_share_a_plaintext_port() {
    let upstream = Upstream::echo();
    let strait = Strait::start(&h2c_config(upstream.addr, "", ""));
    let url = format!("http://{}/hello", strait.addr);
    let h2 = curl(&["--http2-prior-knowledge", &url]);
    assert!(h2.starts_with("HTTP/2 200"), "{h2}");
    assert!(h2.ends_with("\r\n\r\nhi"), "{h2}");
    let h1 = curl(&["--http1.1", &url]);
    assert!(h1.starts_with("HTTP/1.1 200"), "{h1}");

    // A proxied request: the upstream gets HTTP/1.1 with the :authority as Host (before
    // its rewrite) in X-Forwarded-Host, and the body whole.
    let body: String = (0..100_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let api = format!("http://{}/api/items?x=1", strait.addr);
    let answer = curl(&[
        "--http2-prior-knowledge",
        "--data-binary",
        &body,
        "-H",
        "cookie: a=1",
        "-H",
        "cookie: b=2",
        &api,
    ]);
    assert!(answer.starts_with("HTTP/2 200"), "{}", &answer[..200]);
    assert!(answer.ends_with(&format!("POST /api/items?x=1 HTTP/1.1\n{body}")));
    let got = upstream.last();
    assert_eq!(got.body.len(), 100_000);
    assert_eq!(got.header("cookie").as_deref(), Some("a=1; b=2"));
    assert!(got.header("x-request-id").is_some());
}

#[test]
fn request_bodies_without_a_length_stream_through_chunked() {
    let upstream = Upstream::echo();
    let strait = Strait::start(&h2c_config(upstream.addr, "", ""));
    // python-h2 sends no content-length: the upstream gets the body chunked, whole. One
    // after the other: concurrent uploads and downloads past this client's window can
    // stall (docs/configuration.md, "Known issue").
    let report = peer("uploads", strait.addr, &["/api/upload", "3", "300000"]);
    for i in 0..3 {
        let s = stream(&report, i);
        assert_eq!(s["status"], 200, "{report}");
        assert_eq!(
            s["body_len"],
            "POST /api/upload HTTP/1.1\n".len() + 300_000,
            "{report}"
        );
    }
    let received = upstream.requests();
    assert_eq!(received.len(), 3);
    for r in &received {
        assert_eq!(r.header("transfer-encoding").as_deref(), Some("chunked"));
        let want: Vec<u8> = (0..300_000).map(|i| (i % 251) as u8).collect();
        assert!(r.body == want, "body of {} bytes differs", r.body.len());
    }
}

#[test]
fn large_responses_flow_under_flow_control_and_trailers_are_relayed() {
    let big = "x".repeat(2_000_000);
    let upstream = Upstream::start(move |r| {
        if r.request_line().contains("/api/trailers") {
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: grpc-status\r\n\r\n\
              5\r\nhello\r\n0\r\ngrpc-status: 0\r\ngrpc-message: fine\r\n\r\n"
                .to_vec()
        } else {
            ok(&big)
        }
    });
    let strait = Strait::start(&h2c_config(upstream.addr, "", ""));
    // Ten 2 MB answers at once, through 256 KiB stream windows.
    let report = peer("get", strait.addr, &["GET", "/api/big", "10"]);
    for i in 0..10 {
        assert_eq!(stream(&report, i)["body_len"], 2_000_000, "{report}");
        assert_eq!(stream(&report, i)["ended"], true);
    }
    let report = peer("get", strait.addr, &["GET", "/api/trailers"]);
    let s = stream(&report, 0);
    assert_eq!(s["body"], "hello", "{report}");
    assert_eq!(s["trailers"]["grpc-status"], "0", "{report}");
    assert_eq!(s["trailers"]["grpc-message"], "fine", "{report}");
    assert!(s["headers"].get("trailer").is_none(), "{report}");
    // HEAD: the length, no body.
    let head = curl(&[
        "--http2-prior-knowledge",
        "-I",
        &format!("http://{}/api/big", strait.addr),
    ]);
    assert!(head.contains("content-length: 2000000"), "{head}");
}

#[test]
fn alpn_offers_h2_on_tls_listeners_unless_turned_off() {
    let dir = scratch_dir();
    let ca = Ca::new("test CA");
    let (cert, key) = ca.server(&["localhost"], Key::P256).write(&dir, "srv");
    let ca_file = ca.write(&dir, "ca");
    for (table, want) in [
        ("", "HTTP/2 200"),
        ("[server.http2]\ntls = false\n", "HTTP/1.1 200"),
    ] {
        let port = free_port();
        let strait = Strait::start(&format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\n{table}\n[[server.tls]]\nlisten = [\"127.0.0.1:{port}\"]\n\
             certificates = [{{ cert = {cert:?}, key = {key:?} }}]\n\n\
             [[routes]]\npath = \"/{{*rest}}\"\nmock = {{ status = 200, body = \"over tls\" }}\n"
        ));
        let url = format!("https://localhost:{port}/x");
        let resolve = format!("localhost:{port}:127.0.0.1");
        let ca_arg = ca_file.to_str().unwrap();
        let answer = curl(&["--http2", "--cacert", ca_arg, "--resolve", &resolve, &url]);
        assert!(answer.starts_with(want), "{table}: {answer}");
        assert!(answer.ends_with("over tls"), "{answer}");
        drop(strait);
    }
}

#[test]
fn h2load_many_streams_on_one_and_many_connections() {
    let upstream = Upstream::start(|_| ok("from upstream"));
    let strait = Strait::start(&h2c_config(upstream.addr, "", ""));
    for (url, args) in [
        (
            format!("http://{}/hello", strait.addr),
            ["-n", "2000", "-c", "1", "-m", "100"],
        ),
        (
            format!("http://{}/api/x", strait.addr),
            ["-n", "2000", "-c", "8", "-m", "10"],
        ),
    ] {
        let out = Command::new("h2load")
            .args(args)
            .arg(&url)
            .output()
            .expect("run h2load (apt-get install nghttp2-client)");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("2000 total, 2000 started, 2000 done, 2000 succeeded"),
            "{text}"
        );
        assert!(text.contains("status codes: 2000 2xx"), "{text}");
    }
}

#[test]
fn streams_over_the_concurrency_limit_are_refused() {
    let upstream = Upstream::start(|_| {
        std::thread::sleep(Duration::from_millis(300));
        ok("slow")
    });
    let strait = Strait::start(&h2c_config(upstream.addr, "", "max_concurrent_streams = 4"));
    // Sent before the server's SETTINGS arrive: the client does not know the limit yet.
    let report = peer("get", strait.addr, &["GET", "/api/slow", "10"]);
    let streams = report["streams"].as_array().unwrap();
    let served = streams.iter().filter(|s| s["status"] == 200).count();
    // RST_STREAM REFUSED_STREAM (7): safe to retry, nothing was processed.
    let refused = streams.iter().filter(|s| s["reset"] == 7).count();
    assert_eq!((served, refused), (4, 6), "{report}");
    assert_eq!(upstream.requests().len(), 4);
    let series = "strait_http2_streams_reset_total{code=\"refused_stream\"}";
    common::wait_until("the refused streams counted", || {
        metric_value(&strait.metrics(), series) == Some(6.0)
    });
}

#[test]
fn rapid_reset_ends_the_connection_and_others_are_served() {
    let upstream = Upstream::start(|_| ok("slow"));
    let strait = Strait::start(&h2c_config(upstream.addr, "", "max_pending_resets = 20"));
    let report = peer("rapid-reset", strait.addr, &["2000"]);
    assert_eq!(report["goaway"], 11, "ENHANCE_YOUR_CALM: {report}");
    assert_eq!(report["after"], 200, "{report}");
    wait_closes(&strait, "rapid_reset", 1.0);
}

#[test]
fn frame_floods_end_the_connection() {
    let upstream = Upstream::start(|_| ok("x"));
    let strait = Strait::start(&h2c_config(upstream.addr, "", "max_control_frames = 500"));
    for (kind, reason) in [
        ("ping", "control_flood"),
        ("settings", "control_flood"),
        ("window_update", "control_flood"),
        ("continuation", "continuation_flood"),
    ] {
        let before = closes(&strait, reason);
        let report = peer("flood", strait.addr, &[kind, "100000"]);
        assert_eq!(report["goaway"], 11, "{kind}: {report}");
        assert!(
            report["sent"].as_u64().unwrap() < 100_000,
            "{kind}: {report}"
        );
        wait_closes(&strait, reason, before + 1.0);
    }
    let after = curl(&[
        "--http2-prior-knowledge",
        &format!("http://{}/hello", strait.addr),
    ]);
    assert!(after.starts_with("HTTP/2 200"), "{after}");
}

#[test]
fn header_lists_over_the_limit_get_431() {
    let upstream = Upstream::start(|_| ok("x"));
    let strait = Strait::start(&h2c_config(
        upstream.addr,
        "limits = { max_header_bytes = \"8KiB\" }",
        "",
    ));
    let url = format!("http://{}/hello", strait.addr);
    let big = format!("x-big: {}", "a".repeat(10_000));
    let answer = curl(&["--http2-prior-knowledge", "-H", &big, &url]);
    assert!(answer.starts_with("HTTP/2 431"), "{answer}");
    let fine = format!("x-big: {}", "a".repeat(6_000));
    let answer = curl(&["--http2-prior-knowledge", "-H", &fine, &url]);
    assert!(answer.starts_with("HTTP/2 200"), "{answer}");
}

#[test]
fn a_client_that_never_opens_its_window_loses_the_stream() {
    let upstream = Upstream::start(|_| ok(&"z".repeat(100_000)));
    let strait = Strait::start(&h2c_config(
        upstream.addr,
        "timeouts = { client_send = \"1s\" }",
        "",
    ));
    let started = Instant::now();
    let report = peer("zero-window", strait.addr, &["/api/x"]);
    let s = stream(&report, 0);
    assert_eq!(s["status"], 200, "{report}");
    assert_eq!(s["body_len"], 0, "{report}");
    assert_eq!(
        s["reset"], 2,
        "the stalled stream is reset, INTERNAL_ERROR: {report}"
    );
    let series = "strait_http2_streams_reset_total{code=\"internal_error\"}";
    common::wait_until("the reset counted", || {
        metric_value(&strait.metrics(), series) == Some(1.0)
    });
    assert!(started.elapsed() < Duration::from_secs(10));
    let after = curl(&[
        "--http2-prior-knowledge",
        &format!("http://{}/hello", strait.addr),
    ]);
    assert!(after.starts_with("HTTP/2 200"), "{after}");
}

#[test]
fn an_idle_connection_gets_goaway() {
    let upstream = Upstream::start(|_| ok("x"));
    let strait = Strait::start(&h2c_config(
        upstream.addr,
        "timeouts = { keepalive_idle = \"1s\" }",
        "",
    ));
    let report = peer("idle", strait.addr, &[]);
    assert_eq!(report["status"], 200, "{report}");
    assert_eq!(report["goaway"], 0, "NO_ERROR: {report}");
    let after = report["after"].as_f64().unwrap();
    assert!((0.9..5.0).contains(&after), "{report}");
    wait_closes(&strait, "idle", 1.0);
}

#[test]
fn a_drain_sends_goaway_and_lets_streams_finish() {
    let upstream = Upstream::start(|_| {
        std::thread::sleep(Duration::from_millis(800));
        ok("finished")
    });
    let strait = Strait::start(&h2c_config(upstream.addr, "", ""));
    let port = strait.addr.port().to_string();
    let mut child = Command::new("/usr/bin/python3")
        .args([PEER, "drain", "127.0.0.1", &port, "/api/slow"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert_eq!(line.trim(), "started");
    common::wait_until("the upstream to get the request", || {
        !upstream.requests().is_empty()
            || upstream
                .connections
                .load(std::sync::atomic::Ordering::Relaxed)
                > 0
    });
    strait.signal(libc::SIGTERM);
    line.clear();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    let _ = child.wait();
    let report: Value = serde_json::from_str(&line).unwrap();
    let s = stream(&report, 0);
    assert_eq!(report["goaway"], 0, "{report}");
    assert_eq!(s["status"], 200, "{report}");
    assert_eq!(s["body"], "finished", "{report}");
}

#[test]
fn the_access_log_says_http2() {
    let upstream = Upstream::start(|_| ok("x"));
    let dir = scratch_dir();
    let log = dir.join("access.log");
    let strait = Strait::start(&h2c_config(
        upstream.addr,
        &format!(
            "\n[observability.access_log]\ndestination = \"{}\"\n",
            log.display()
        ),
        "",
    ));
    curl(&[
        "--http2-prior-knowledge",
        &format!("http://{}/api/a", strait.addr),
    ]);
    common::wait_until("an access-log line", || {
        std::fs::read_to_string(&log).is_ok_and(|t| !t.is_empty())
    });
    let line: Value = serde_json::from_str(
        std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(line["protocol"], "HTTP/2.0", "{line}");
    assert_eq!(line["status"], 200, "{line}");
}

const GRPC_PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/grpc_peer.py");

/// A gRPC server (`grpc_peer.py server`, python3-grpcio), killed on drop.
struct GrpcServer {
    child: std::process::Child,
    port: u16,
}

impl GrpcServer {
    fn start() -> GrpcServer {
        let mut child = Command::new("/usr/bin/python3")
            .args([GRPC_PEER, "server"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("run /usr/bin/python3 (apt-get install python3-grpcio)");
        let mut line = String::new();
        let stdout = child.stdout.as_mut().unwrap();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
        let port = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("grpc_peer.py said {line:?}"));
        GrpcServer { child, port }
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `grpc_peer.py client 127.0.0.1:PORT CALL ARGS...`: its JSON report.
fn grpc(addr: SocketAddr, call: &[&str]) -> Value {
    let out = Command::new("/usr/bin/python3")
        .args([GRPC_PEER, "client", &addr.to_string()])
        .args(call)
        .output()
        .expect("run grpc_peer.py");
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("grpc_peer.py {call:?}: {e}: {text:?} {out:?}"))
}

/// HTTP/2 in cleartext in front, and `upstream_table` as `[upstreams.app]` behind a
/// catch-all route with `route` lines.
fn grpc_config(upstream_table: &str, route: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[server.http2]\ncleartext = true\n\n\
         [upstreams.app]\n{upstream_table}\n\n[[routes]]\npath = \"/{{*rest}}\"\nupstream = \"app\"\n{route}\n"
    )
}

#[test]
fn grpc_calls_of_every_kind_pass_through_to_an_http2_upstream() {
    let server = GrpcServer::start();
    let strait = Strait::start(&grpc_config(
        &format!("endpoints = [\"127.0.0.1:{}\"]\nhttp2 = true", server.port),
        "",
    ));
    let unary = grpc(strait.addr, &["unary", "hello"]);
    assert_eq!(unary["code"], "OK", "{unary}");
    assert_eq!(unary["messages"][0], "echo:hello");
    assert_eq!(
        unary["trailing"]["x-echo-len"], "5",
        "trailers relayed: {unary}"
    );
    let fail = grpc(strait.addr, &["fail"]);
    assert_eq!(fail["code"], "INVALID_ARGUMENT", "{fail}");
    assert_eq!(fail["details"], "told to fail");
    assert_eq!(fail["trailing"]["x-why"], "asked-to");
    let server_stream = grpc(strait.addr, &["server-stream", "5"]);
    assert_eq!(server_stream["messages"].as_array().unwrap().len(), 5);
    assert_eq!(server_stream["messages"][4], "item-4");
    let client_stream = grpc(strait.addr, &["client-stream", "4"]);
    assert_eq!(client_stream["messages"][0], "part-0+part-1+part-2+part-3");
    let bidi = grpc(strait.addr, &["bidi", "3"]);
    assert_eq!(
        bidi["messages"],
        serde_json::json!(["re:m0", "re:m1", "re:m2"])
    );
    // Each message waits for the answer to the last: both directions stream at once.
    let pingpong = grpc(strait.addr, &["pingpong", "5"]);
    assert_eq!(pingpong["code"], "OK", "{pingpong}");
    assert_eq!(pingpong["messages"].as_array().unwrap().len(), 5);
    // Calls in a row on the worker's connection to the upstream.
    for i in 0..20 {
        let answer = grpc(strait.addr, &["unary", &format!("n{i}")]);
        assert_eq!(answer["messages"][0], format!("echo:n{i}"));
    }
}

#[test]
fn grpc_timeout_bounds_the_call_at_the_gateway() {
    // An HTTP/1.1 upstream that knows nothing of gRPC deadlines, and answers late.
    let upstream = Upstream::start(|_| {
        std::thread::sleep(Duration::from_secs(3));
        ok("late")
    });
    let strait = Strait::start(&grpc_config(
        &format!("endpoints = [\"{}\"]", upstream.addr),
        "",
    ));
    let report = peer("grpc-timeout", strait.addr, &["/test.Echo/Slow", "500m"]);
    let s = stream(&report, 0);
    assert_eq!(s["status"], 200, "{report}");
    assert_eq!(
        s["headers"]["grpc-status"], "4",
        "DEADLINE_EXCEEDED: {report}"
    );
    let after = report["after"].as_f64().unwrap();
    assert!((0.4..2.0).contains(&after), "{report}");
}

#[test]
fn gateway_errors_reach_grpc_clients_as_grpc_statuses() {
    let server = GrpcServer::start();
    let keys = grpc_config(
        &format!("endpoints = [\"127.0.0.1:{}\"]\nhttp2 = true", server.port),
        "auth = { api_key = { header = \"x-api-key\" } }",
    );
    let keys = format!("{keys}\n[consumers.alice]\napi_keys = [\"alice-key-1234567\"]\n");
    let strait = Strait::start(&keys);
    let refused = grpc(strait.addr, &["unary", "x"]);
    assert_eq!(refused["code"], "UNAUTHENTICATED", "{refused}");

    let limited = Strait::start(&grpc_config(
        &format!("endpoints = [\"127.0.0.1:{}\"]\nhttp2 = true", server.port),
        "rate_limits = [{ name = \"one\", key = \"route\", limit = 1, period = \"1h\" }]",
    ));
    assert_eq!(grpc(limited.addr, &["unary", "x"])["code"], "OK");
    let second = grpc(limited.addr, &["unary", "x"]);
    assert_eq!(second["code"], "RESOURCE_EXHAUSTED", "{second}");

    let nothing_there = free_port();
    let down = Strait::start(&grpc_config(
        &format!("endpoints = [\"127.0.0.1:{nothing_there}\"]\nhttp2 = true"),
        "",
    ));
    let unavailable = grpc(down.addr, &["unary", "x"]);
    assert_eq!(unavailable["code"], "UNAVAILABLE", "{unavailable}");
}

#[test]
fn an_http2_upstream_over_tls_is_reached_by_alpn() {
    // The upstream is a second Strait: a TLS listener that speaks h2 by ALPN.
    let dir = scratch_dir();
    let ca = Ca::new("test CA");
    let (cert, key) = ca.server(&["localhost"], Key::P256).write(&dir, "srv");
    let ca_file = ca.write(&dir, "ca");
    let port = free_port();
    let origin = Strait::start(&format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n\n[[server.tls]]\nlisten = [\"127.0.0.1:{port}\"]\n\
         certificates = [{{ cert = {cert:?}, key = {key:?} }}]\n\n\
         [[routes]]\npath = \"/{{*rest}}\"\nmock = {{ status = 200, body = \"from the h2 origin\" }}\n"
    ));
    let front = Strait::start(&grpc_config(
        &format!(
            "endpoints = [\"127.0.0.1:{port}\"]\nhttp2 = true\n\
             tls = {{ ca = {ca_file:?}, server_name = \"localhost\" }}\n\
             pool = {{ idle_timeout = \"1s\" }}"
        ),
        "",
    ));
    // Both an HTTP/1.1 and an HTTP/2 client, several requests each, on the one connection.
    for _ in 0..3 {
        let h1 = curl(&["--http1.1", &format!("http://{}/x", front.addr)]);
        assert!(h1.ends_with("from the h2 origin"), "{h1}");
        let h2 = curl(&[
            "--http2-prior-knowledge",
            &format!("http://{}/y", front.addr),
        ]);
        assert!(h2.starts_with("HTTP/2 200"), "{h2}");
        assert!(h2.ends_with("from the h2 origin"), "{h2}");
    }
    // The origin served them as HTTP/2, on a connection the front lets go once no stream
    // started on it for the pool's idle timeout.
    let series = "strait_http2_connections_closed_total{reason=\"client\"}";
    assert_eq!(metric_value(&origin.metrics(), series), Some(0.0));
    common::wait_until("the front to close its idle HTTP/2 connection", || {
        metric_value(&origin.metrics(), series).unwrap_or(0.0) >= 1.0
    });
    let again = curl(&[
        "--http2-prior-knowledge",
        &format!("http://{}/z", front.addr),
    ]);
    assert!(again.ends_with("from the h2 origin"), "{again}");
}

/// h2spec's sections, covered with raw frames (`h2_peer.py conformance`; h2spec itself is
/// not installable here). Each case must get the answer RFC 9113 asks for, or a stricter
/// one: the connection ended with an error where a stream error (or a more specific
/// code) was asked for. Never an answer, silence or a success. `docs/conformance.md`
/// lists which cases get the stricter answer.
#[test]
fn frames_get_the_answers_rfc_9113_asks_for() {
    let upstream = Upstream::start(|_| ok("x"));
    let strait = Strait::start(&h2c_config(upstream.addr, "", ""));
    let report = peer("conformance", strait.addr, &[]);
    let cases = report.as_array().unwrap();
    assert!(cases.len() >= 30, "{report}");
    let mut stricter = Vec::new();
    for case in cases {
        let (want, got) = (&case["want"], &case["got"]);
        if want == got {
            continue;
        }
        let is_error = |v: &Value| v[0] == "goaway" || v[0] == "rst";
        let connection_error = got[0] == "goaway" && got[1] != 0;
        assert!(
            is_error(want) && connection_error,
            "{} {}: want {want}, got {got}",
            case["section"],
            case["case"]
        );
        stricter.push(format!("{} {}", case["section"], case["case"]));
    }
    // The h2 codec's known choices (docs/conformance.md): PROTOCOL_ERROR for a few
    // frame-size, compression and flow-control errors, and a connection error for
    // malformed field names. More would be a regression.
    assert!(stricter.len() <= 8, "{stricter:#?}");
}
