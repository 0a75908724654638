//! WebSocket tunnels through the real binary, with a real WebSocket client and echo server
//! (`tests/fixtures/ws_peer.py`, Debian's python3-websockets): echoes of text, binary and
//! a 10 MB message, 1,000 tunnels at once, the idle timeout, an upstream refusing the
//! upgrade, a route that does not allow it, a pipelined first frame, the drain, and TLS on
//! either side.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::certs::{Ca, Key};
use common::{free_port, scratch_dir, Reader, Strait, Upstream};

const PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ws_peer.py");

/// A `ws_peer.py` process, killed on drop, whose stdout lines arrive on a channel.
struct Peer {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Peer {
    fn spawn(args: &[&str]) -> Peer {
        let mut child = Command::new("/usr/bin/python3")
            .arg(PEER)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run /usr/bin/python3 (apt-get install python3-websockets)");
        let stdout: ChildStdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Peer { child, lines }
    }

    /// The next stdout line, within `within`.
    fn line(&self, within: Duration) -> String {
        self.lines
            .recv_timeout(within)
            .unwrap_or_else(|e| panic!("ws_peer.py said nothing within {within:?}: {e}"))
    }

    /// An echo server; its port.
    fn server(args: &[&str]) -> (Peer, u16) {
        let mut all = vec!["server"];
        all.extend_from_slice(args);
        let peer = Peer::spawn(&all);
        let line = peer.line(common::DEADLINE);
        let port = line
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        (peer, port)
    }

    /// Runs a client to its end; its output, or a panic with the log when it failed.
    fn client(url: &str, mode: &str, args: &[&str], strait: &Strait) -> String {
        let mut all = vec!["client", url, mode];
        all.extend_from_slice(args);
        let mut peer = Peer::spawn(&all);
        let start = Instant::now();
        let status = loop {
            if let Some(status) = peer.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "client {mode} did not finish; log:\n{}",
                strait.log_text()
            );
            thread::sleep(Duration::from_millis(10));
        };
        let out: Vec<String> = peer.lines.try_iter().collect();
        assert!(
            status.success(),
            "client {mode} failed: {out:?}; log:\n{}",
            strait.log_text()
        );
        out.join("\n")
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A config with `/ws` allowing WebSocket upgrades and `/plain` not, both to `upstream`.
fn config(upstream: &str, extra: &str) -> String {
    format!(
        r#"[server]
listen = ["127.0.0.1:0"]
{extra}
[upstreams.ws]
endpoints = ["{upstream}"]

[[routes]]
name = "ws"
path = "/ws"
upstream = "ws"
upgrades = ["websocket"]

[[routes]]
name = "plain"
path = "/plain"
upstream = "ws"
"#
    )
}

fn url(strait: &Strait, path: &str) -> String {
    format!("ws://{}{path}", strait.addr)
}

#[test]
fn text_binary_and_a_10_mb_message_are_echoed() {
    let (_server, port) = Peer::server(&[]);
    let dir = scratch_dir();
    let access_log = dir.join("access.log");
    let strait = Strait::start(&config(
        &format!("127.0.0.1:{port}"),
        &format!(
            "\n[observability.access_log]\ndestination = \"{}\"\n",
            access_log.display()
        ),
    ));
    assert_eq!(
        Peer::client(&url(&strait, "/ws"), "echo", &[], &strait),
        "ok"
    );
    assert_eq!(
        Peer::client(&url(&strait, "/ws"), "big", &[], &strait),
        "ok"
    );
    let metrics = strait.metrics();
    assert!(
        metrics.contains("strait_tunnels_total 2\n"),
        "two tunnels ended:\n{metrics}"
    );
    let up = common::metric_value(
        &metrics,
        "strait_tunnel_bytes_total{direction=\"upstream\"}",
    )
    .unwrap_or_else(|| panic!("no upstream bytes in\n{metrics}"));
    assert!(up > 10.0 * 1024.0 * 1024.0, "10 MB went up: {up}");
    assert!(
        metrics.contains("strait_worker_tunnels{worker=\"0\"} 0\n"),
        "{metrics}"
    );
    // One access-log line per tunnel, written when it ends: status 101, bytes both ways.
    common::wait_until("two access-log lines", || {
        std::fs::read_to_string(&access_log).is_ok_and(|t| t.lines().count() >= 2)
    });
    let lines = std::fs::read_to_string(&access_log).unwrap();
    let mut bytes = (0, 0);
    for line in lines.lines() {
        let line: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(line["status"], 101, "{line}");
        assert_eq!(line["path"], "/ws", "{line}");
        // The handshake's head and the (compressed) frames each way.
        let (bytes_in, bytes_out) = (line["bytes_in"].as_u64(), line["bytes_out"].as_u64());
        assert!(
            bytes_in.unwrap() > 400 && bytes_out.unwrap() > 400,
            "{line}"
        );
        bytes.0 += bytes_in.unwrap();
        bytes.1 += bytes_out.unwrap();
    }
    assert!(bytes.0 > 10 << 20 && bytes.1 > 10 << 20, "{bytes:?}");
}

#[test]
fn a_thousand_tunnels_at_once() {
    let (_server, port) = Peer::server(&[]);
    let strait = Strait::start(&config(&format!("127.0.0.1:{port}"), ""));
    let out = Peer::client(&url(&strait, "/ws"), "many", &["--count", "1000"], &strait);
    assert_eq!(out, "ok 1000");
}

#[test]
fn an_idle_tunnel_is_closed_after_tunnel_idle() {
    let (_server, port) = Peer::server(&[]);
    let strait = Strait::start(&config(
        &format!("127.0.0.1:{port}"),
        "[server.timeouts]\ntunnel_idle = \"1s\"\n",
    ));
    let out = Peer::client(&url(&strait, "/ws"), "hold", &["--quiet"], &strait);
    let after = seconds_open(&out);
    assert!(
        (0.9..5.0).contains(&after),
        "closed {after} s after the last byte, tunnel_idle is 1 s"
    );
}

#[test]
fn a_busy_tunnel_is_closed_at_tunnel_lifetime() {
    let (_server, port) = Peer::server(&[]);
    let strait = Strait::start(&config(
        &format!("127.0.0.1:{port}"),
        "[server.timeouts]\ntunnel_lifetime = \"1s\"\n",
    ));
    // A tick every 50 ms both ways: never idle, so only the lifetime can end it.
    let out = Peer::client(&url(&strait, "/ws"), "hold", &[], &strait);
    let open_for = seconds_open(&out);
    assert!(
        (0.9..5.0).contains(&open_for),
        "closed after {open_for} s open, tunnel_lifetime is 1 s"
    );
}

/// How long the `hold` client's tunnel stayed open, from its `closed SECONDS LAST` line.
fn seconds_open(out: &str) -> f64 {
    out.lines()
        .find_map(|l| l.strip_prefix("closed "))
        .and_then(|rest| rest.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("{out:?}"))
}

#[test]
fn an_upstream_refusing_the_upgrade_is_an_ordinary_answer() {
    let (_server, port) = Peer::server(&["--refuse", "403"]);
    let strait = Strait::start(&config(&format!("127.0.0.1:{port}"), ""));
    let mut stream = strait.connect();
    stream.write_all(&handshake("/ws", b"")).unwrap();
    let response = common::read_response(&mut stream).unwrap();
    assert_eq!(response.status, 403);
    assert_eq!(response.text(), "refused");
    assert_eq!(response.header("upgrade"), None);
    assert!(!strait.metrics().contains("strait_tunnels_total 1"));
}

#[test]
fn a_route_without_upgrades_forwards_no_upgrade_header() {
    let upstream = Upstream::fixed("plain answer");
    let strait = Strait::start(&config(&upstream.addr.to_string(), ""));
    for (path, h2c) in [("/plain", false), ("/plain", true), ("/ws", true)] {
        let request = if h2c {
            format!(
                "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n\
                 Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n"
            )
            .into_bytes()
        } else {
            handshake(path, b"")
        };
        let response = strait.request(&request);
        assert_eq!(response.status, 200, "{path} h2c={h2c}");
        assert_eq!(response.text(), "plain answer");
        let seen = upstream.last();
        assert_eq!(seen.header("upgrade"), None, "{path} h2c={h2c}");
        assert_eq!(seen.header("http2-settings"), None, "{path} h2c={h2c}");
        assert!(
            !seen
                .header("connection")
                .is_some_and(|c| c.to_ascii_lowercase().contains("upgrade")),
            "{path} h2c={h2c}"
        );
    }
}

#[test]
fn a_frame_pipelined_behind_the_handshake_is_delivered() {
    let (_server, port) = Peer::server(&[]);
    let strait = Strait::start(&config(&format!("127.0.0.1:{port}"), ""));
    let mut stream = strait.connect();
    // The handshake and a masked text frame "hi" in one write.
    let frame = [0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2];
    stream.write_all(&handshake("/ws", &frame)).unwrap();
    let mut reader = Reader::new(&mut stream);
    let head = reader.read_head().unwrap();
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("upgrade: websocket\r\n"), "{head}");
    assert!(lower.contains("connection: upgrade\r\n"), "{head}");
    assert!(lower.contains("sec-websocket-accept: "), "{head}");
    // The echo: an unmasked text frame "hi".
    assert_eq!(reader.read_exact_vec(4).unwrap(), [0x81, 2, b'h', b'i']);
    // The frame that went ahead counts among the tunnel's bytes, once it ended.
    drop(stream);
    common::wait_until("the tunnel to end", || {
        strait.metrics().contains("strait_tunnels_total 1\n")
    });
    let up = common::metric_value(
        &strait.metrics(),
        "strait_tunnel_bytes_total{direction=\"upstream\"}",
    );
    assert_eq!(up, Some(frame.len() as f64));
}

#[test]
fn a_tunnel_gets_the_drain_period_then_closes() {
    let (_server, port) = Peer::server(&[]);
    let strait = Strait::start(&config(
        &format!("127.0.0.1:{port}"),
        "[server.timeouts]\ndrain = \"2s\"\n",
    ));
    let client = Peer::spawn(&["client", &url(&strait, "/ws"), "hold"]);
    assert_eq!(client.line(common::DEADLINE), "open");
    let sigterm = unix_now();
    strait.signal(libc::SIGTERM);
    let line = client.line(Duration::from_secs(8));
    let last_echo: f64 = line
        .split(' ')
        .nth(2)
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("{line:?}"));
    let closed = unix_now();
    assert!(
        last_echo - sigterm > 1.5,
        "echoes went on for {:.2} s of the 2 s drain",
        last_echo - sigterm
    );
    assert!(
        closed - sigterm < 5.0,
        "closed {:.2} s after SIGTERM",
        closed - sigterm
    );
}

#[test]
fn tunnels_through_a_tls_listener_to_a_tls_upstream() {
    let dir = scratch_dir();
    let ca = Ca::new("ws CA");
    let ca_file = ca.write(&dir, "ca");
    let (up_cert, up_key) = ca.server(&["127.0.0.1"], Key::P256).write(&dir, "upstream");
    let (cert, key) = ca.server(&["localhost"], Key::P256).write(&dir, "site");
    let (_server, port) = Peer::server(&["--cert", text(&up_cert), "--key", text(&up_key)]);
    let tls_port = free_port();
    let extra = format!(
        "\n[[server.tls]]\nlisten = [\"127.0.0.1:{tls_port}\"]\n\
         certificates = [{{ cert = {cert:?}, key = {key:?} }}]\n"
    );
    let config = config(&format!("127.0.0.1:{port}"), &extra).replace(
        "endpoints = [",
        &format!("tls = {{ ca = {:?} }}\nendpoints = [", text(&ca_file)),
    );
    let strait = Strait::start(&config);
    let ca_arg = text(&ca_file);
    for (url, what) in [
        (format!("wss://localhost:{tls_port}/ws"), "TLS both sides"),
        (url(&strait, "/ws"), "TLS upstream only"),
    ] {
        let out = Peer::client(&url, "echo", &["--ca", ca_arg], &strait);
        assert_eq!(out, "ok", "{what}");
    }
    let out = Peer::client(
        &format!("wss://localhost:{tls_port}/ws"),
        "big",
        &["--ca", ca_arg],
        &strait,
    );
    assert_eq!(out, "ok", "10 MB over TLS");
}

fn text(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A WebSocket opening handshake for `path`, then `after` in the same write.
fn handshake(path: &str, after: &[u8]) -> Vec<u8> {
    let mut raw = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    .into_bytes();
    raw.extend_from_slice(after);
    raw
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}
