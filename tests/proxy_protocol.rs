//! PROXY protocol through the binary: headers in front of HTTP and TLS on the listeners
//! (the client address they carry, who may send them, what closes the connection), and the
//! header Strait sends an upstream that asks for one. Every connection comes from
//! 127.0.0.1; the headers carry any address.

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use common::certs::{client_config, Ca, Key};

const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// A listener with `proxy_protocol = {pp}`, an upstream `app`, a route open to all and
/// one allowing only 198.51.100.0/24 and 2001:db8::/32.
fn config(upstream: SocketAddr, pp: &str) -> String {
    format!(
        r#"[server]
listen = ["127.0.0.1:0"]
proxy_protocol = {pp}

[upstreams.app]
endpoints = ["{upstream}"]

[[routes]]
path = "/open"
upstream = "app"

[[routes]]
path = "/office"
upstream = "app"
access = {{ allow = ["198.51.100.0/24", "2001:db8::/32"] }}
"#
    )
}

fn v1(src: &str) -> Vec<u8> {
    let family = if src.contains(':') { "TCP6" } else { "TCP4" };
    let dst = if src.contains(':') {
        "::1"
    } else {
        "127.0.0.1"
    };
    format!("PROXY {family} {src} {dst} 40000 80\r\n").into_bytes()
}

/// A version 2 PROXY (command 1) header over TCP from `src` (IPv4 or IPv6).
fn v2(src: &str) -> Vec<u8> {
    let ip: std::net::IpAddr = src.parse().unwrap();
    let mut out = V2_SIGNATURE.to_vec();
    match ip {
        std::net::IpAddr::V4(v4) => {
            out.extend_from_slice(&[0x21, 0x11, 0, 12]);
            out.extend_from_slice(&v4.octets());
            out.extend_from_slice(&[127, 0, 0, 1]);
        }
        std::net::IpAddr::V6(v6) => {
            out.extend_from_slice(&[0x21, 0x21, 0, 36]);
            out.extend_from_slice(&v6.octets());
            out.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
        }
    }
    out.extend_from_slice(&[0x9c, 0x40, 0, 80]);
    out
}

/// A version 2 LOCAL header (the balancer's own health check).
fn v2_local() -> Vec<u8> {
    [V2_SIGNATURE, &[0x20, 0x00, 0, 0]].concat()
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").into_bytes()
}

/// Opens a connection, writes `bytes` in one write, reads one response.
fn send(strait: &Strait, bytes: &[u8]) -> Response {
    let mut stream = strait.connect();
    stream.write_all(bytes).unwrap();
    Reader::new(&mut stream)
        .read_response("GET")
        .unwrap_or_else(|e| panic!("no response to {:?}: {e}", String::from_utf8_lossy(bytes)))
}

/// True when the server closed `stream` without sending a byte.
fn closed_without_answer(stream: &mut TcpStream) -> bool {
    let mut got = Vec::new();
    match stream.read_to_end(&mut got) {
        Ok(_) => got.is_empty(),
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset && got.is_empty(),
    }
}

fn rejected(strait: &Strait, bytes: &[u8]) -> bool {
    let mut stream = strait.connect();
    stream.write_all(bytes).unwrap();
    closed_without_answer(&mut stream)
}

#[test]
fn headers_from_an_allowed_source_set_the_client_address() {
    let upstream = Upstream::fixed("ok");
    let strait = Strait::start(&config(upstream.addr, r#"{ from = ["127.0.0.1"] }"#));
    // (header, path, status, X-Forwarded-For at the upstream)
    let cases: Vec<(Vec<u8>, &str, u16, &str)> = vec![
        (v1("198.51.100.7"), "/office", 200, "198.51.100.7"),
        (v1("203.0.113.9"), "/office", 403, ""),
        (v1("203.0.113.9"), "/open", 200, "203.0.113.9"),
        (v1("2001:db8::7"), "/office", 200, "2001:db8::7"),
        (v2("198.51.100.8"), "/office", 200, "198.51.100.8"),
        (v2("2001:db8::8"), "/office", 200, "2001:db8::8"),
        (v2("203.0.113.10"), "/open", 200, "203.0.113.10"),
        // UNKNOWN and LOCAL keep the TCP peer; so does no header at all.
        (b"PROXY UNKNOWN\r\n".to_vec(), "/office", 403, ""),
        (b"PROXY UNKNOWN\r\n".to_vec(), "/open", 200, "127.0.0.1"),
        (v2_local(), "/office", 403, ""),
        (v2_local(), "/open", 200, "127.0.0.1"),
        (Vec::new(), "/office", 403, ""),
        (Vec::new(), "/open", 200, "127.0.0.1"),
    ];
    for (header, path, status, xff) in &cases {
        let before = upstream.requests().len();
        let r = send(&strait, &[header.as_slice(), &get(path)].concat());
        let what = String::from_utf8_lossy(header);
        assert_eq!(r.status, *status, "{what:?} {path}: {}", r.head);
        if *status == 200 {
            assert_eq!(upstream.requests().len(), before + 1);
            assert_eq!(
                upstream.last().header("x-forwarded-for").as_deref(),
                Some(*xff),
                "{what:?}"
            );
        }
    }
}

#[test]
fn a_header_and_pipelined_requests_in_one_write() {
    let upstream = Upstream::fixed("ok");
    let strait = Strait::start(&config(upstream.addr, r#"{ from = ["127.0.0.0/8"] }"#));
    let mut stream = strait.connect();
    let bytes = [v1("198.51.100.7"), get("/office"), get("/open")].concat();
    stream.write_all(&bytes).unwrap();
    let mut reader = Reader::new(&mut stream);
    for _ in 0..2 {
        let r = reader.read_response("GET").unwrap();
        assert_eq!(r.status, 200, "{}", r.head);
    }
    // The header holds for the connection: a later request is still the same client.
    drop(reader);
    stream.write_all(&get("/office")).unwrap();
    assert_eq!(
        Reader::new(&mut stream)
            .read_response("GET")
            .unwrap()
            .status,
        200
    );
    let xffs: Vec<_> = upstream
        .requests()
        .iter()
        .map(|r| r.header("x-forwarded-for").unwrap_or_default())
        .collect();
    assert_eq!(xffs, ["198.51.100.7"; 3]);
    // A header split over several writes is read whole.
    let mut stream = strait.connect();
    let header = v2("198.51.100.9");
    for part in header.chunks(5) {
        stream.write_all(part).unwrap();
        stream.flush().unwrap();
    }
    stream.write_all(&get("/office")).unwrap();
    assert_eq!(
        Reader::new(&mut stream)
            .read_response("GET")
            .unwrap()
            .status,
        200
    );
}

#[test]
fn a_header_from_a_source_not_in_from_closes_the_connection() {
    let upstream = Upstream::fixed("ok");
    let strait = Strait::start(&config(upstream.addr, r#"{ from = ["10.0.0.0/8"] }"#));
    for header in [v1("198.51.100.7"), v2("198.51.100.7"), v2_local()] {
        let bytes = [header.as_slice(), &get("/open")].concat();
        assert!(
            rejected(&strait, &bytes),
            "{:?}",
            String::from_utf8_lossy(&header)
        );
    }
    // Without a header, the source is served as usual.
    assert_eq!(send(&strait, &get("/open")).status, 200);
    assert_eq!(upstream.requests().len(), 1);
    assert_eq!(rejections(&strait, "untrusted"), 3.0);
}

/// `strait_proxy_protocol_rejected_total` for `reason`.
fn rejections(strait: &Strait, reason: &str) -> f64 {
    let series = format!("strait_proxy_protocol_rejected_total{{reason=\"{reason}\"}}");
    let metrics = strait.metrics();
    metric_value(&metrics, &series).unwrap_or_else(|| panic!("no {series} in\n{metrics}"))
}

#[test]
fn a_required_header_that_is_missing_closes_the_connection() {
    let upstream = Upstream::fixed("ok");
    let strait = Strait::start(&config(
        upstream.addr,
        r#"{ from = ["127.0.0.1"], required = true }"#,
    ));
    assert!(rejected(&strait, &get("/open")));
    // HTTP/1.1 starting with P, and empty lines before the request line, are no header.
    assert!(rejected(
        &strait,
        b"POST /open HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"
    ));
    assert!(rejected(
        &strait,
        &[b"\r\n".as_slice(), &get("/open")].concat()
    ));
    assert_eq!(
        send(&strait, &[v1("198.51.100.7"), get("/open")].concat()).status,
        200
    );
    assert_eq!(rejections(&strait, "missing"), 3.0);
    // Not required: a client without a header is served.
    let relaxed = Strait::start(&config(upstream.addr, r#"{ from = ["127.0.0.1"] }"#));
    let r = send(
        &relaxed,
        b"POST /open HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(upstream.requests().len(), 2);
}

#[test]
fn a_malformed_header_closes_the_connection() {
    let upstream = Upstream::fixed("ok");
    let strait = Strait::start(&config(upstream.addr, r#"{ from = ["127.0.0.1"] }"#));
    let mut too_long_v2 = V2_SIGNATURE.to_vec();
    too_long_v2.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
    let cases: Vec<Vec<u8>> = vec![
        b"PROXY TCP4 198.51.100.7 127.0.0.1 99999 80\r\n".to_vec(),
        b"PROXY TCP4 2001:db8::1 127.0.0.1 1 80\r\n".to_vec(),
        b"PROXY TCP5 198.51.100.7 127.0.0.1 1 80\r\n".to_vec(),
        b"PROXY TCP4 198.51.100.7 127.0.0.1 1 80\n".to_vec(),
        format!("PROXY TCP4 {}\r\n", "1".repeat(120)).into_bytes(),
        [V2_SIGNATURE, &[0x11, 0x11, 0, 12], &[0; 12]].concat(),
        [V2_SIGNATURE, &[0x21, 0x51, 0, 12], &[0; 12]].concat(),
        [V2_SIGNATURE, &[0x21, 0x11, 0, 4], &[0; 4]].concat(),
        too_long_v2,
    ];
    for header in &cases {
        let bytes = [header.as_slice(), &get("/open")].concat();
        assert!(
            rejected(&strait, &bytes),
            "{:?}",
            String::from_utf8_lossy(header)
        );
    }
    // A truncated header is not served either: the peer closes, or the deadline passes.
    let mut stream = strait.connect();
    stream.write_all(b"PROXY TCP4 198.51.").unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(closed_without_answer(&mut stream));
    assert_eq!(upstream.requests().len(), 0);
    assert_eq!(rejections(&strait, "malformed"), cases.len() as f64);
    assert_eq!(rejections(&strait, "incomplete"), 1.0);
    // The listener still serves well-formed connections.
    assert_eq!(
        send(&strait, &[v1("198.51.100.7"), get("/open")].concat()).status,
        200
    );
}

#[test]
fn a_tls_listener_reads_the_header_before_the_handshake() {
    let dir = scratch_dir();
    let ca = Ca::new("test CA");
    let (cert, key) = ca.server(&["localhost"], Key::P256).write(&dir, "site");
    let upstream = Upstream::fixed("ok");
    let port = free_port();
    let strait = Strait::start(&format!(
        r#"[server]
listen = ["127.0.0.1:0"]

[[server.tls]]
listen = ["127.0.0.1:{port}"]
certificates = [{{ cert = {cert:?}, key = {key:?} }}]
proxy_protocol = {{ from = ["127.0.0.1"], required = true }}

[upstreams.app]
endpoints = ["{}"]

[[routes]]
path = "/office"
upstream = "app"
access = {{ allow = ["198.51.100.0/24"] }}
"#,
        upstream.addr
    ));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let tls = |header: &[u8]| {
        let mut tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(DEADLINE)).unwrap();
        tcp.write_all(header).unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(client_config(&ca.pem, None), name).unwrap();
        rustls::StreamOwned::new(conn, tcp)
    };
    for header in [v1("198.51.100.7"), v2("198.51.100.7")] {
        let mut stream = tls(&header);
        stream.write_all(&get("/office")).unwrap();
        let r = Reader::new(&mut stream).read_response("GET").unwrap();
        assert_eq!(r.status, 200, "{}", r.head);
        assert_eq!(
            upstream.last().header("x-forwarded-for").as_deref(),
            Some("198.51.100.7")
        );
    }
    // Required: a ClientHello without a header is dropped before the handshake.
    let mut stream = tls(b"");
    assert!(
        stream.write_all(&get("/office")).is_err() || {
            let mut byte = [0u8; 1];
            stream.read(&mut byte).is_err()
        }
    );
    assert_eq!(upstream.requests().len(), 2);
    // The plaintext listener has no proxy_protocol: a header there is a bad request line.
    let plain = send(&strait, &[v1("198.51.100.7"), get("/office")].concat());
    assert_eq!(plain.status, 400);
}

/// What a PROXY-speaking upstream saw: per connection, the header as text (version 2
/// decoded into the version 1 form) and the requests it served.
type Seen = Arc<Mutex<Vec<(String, usize)>>>;

use std::sync::{Arc, Mutex};

/// An upstream that reads a PROXY header (either version) first on every connection, then
/// answers keep-alive GETs with `ok`.
fn proxy_upstream() -> (SocketAddr, Seen) {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let (addr, _) = raw_upstream(move |mut stream, conn| {
        let header = read_proxy_header(&mut stream);
        record.lock().unwrap().push((header, 0));
        let mut writer = stream.try_clone().unwrap();
        let mut reader = Reader::new(&mut stream);
        while reader.read_head().is_ok() {
            record.lock().unwrap()[conn].1 += 1;
            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
            if writer.write_all(answer).is_err() {
                break;
            }
        }
    });
    (addr, seen)
}

fn read_proxy_header(stream: &mut TcpStream) -> String {
    let mut first = [0u8; 16];
    stream.read_exact(&mut first[..6]).unwrap();
    if &first[..6] == b"PROXY " {
        let mut line = b"PROXY ".to_vec();
        let mut byte = [0u8; 1];
        while !line.ends_with(b"\r\n") {
            stream.read_exact(&mut byte).unwrap();
            line.push(byte[0]);
        }
        return String::from_utf8(line).unwrap().trim_end().to_owned();
    }
    stream.read_exact(&mut first[6..]).unwrap();
    assert_eq!(&first[..12], V2_SIGNATURE);
    let mut body = vec![0u8; usize::from(u16::from_be_bytes([first[14], first[15]]))];
    stream.read_exact(&mut body).unwrap();
    let port = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]);
    match (first[12], first[13]) {
        (0x20, _) => "LOCAL".to_owned(),
        (0x21, 0x11) => {
            let ip = |at: usize| {
                std::net::Ipv4Addr::new(body[at], body[at + 1], body[at + 2], body[at + 3])
            };
            format!("PROXY TCP4 {} {} {} {}", ip(0), ip(4), port(8), port(10))
        }
        other => panic!("unexpected version 2 header {other:?}"),
    }
}

/// Two clients through an upstream with `proxy_protocol = version`: each gets its own
/// connection with its own header, reused for its next request, never for the other's.
fn upstream_receives_the_client_header(version: &str) {
    let (upstream, seen) = proxy_upstream();
    let config = format!(
        r#"[server]
listen = ["127.0.0.1:0"]
proxy_protocol = {{ from = ["127.0.0.1"] }}

[upstreams.app]
endpoints = ["{upstream}"]
proxy_protocol = "{version}"

[[routes]]
path = "/"
upstream = "app"
"#
    );
    let strait = Strait::start(&config);
    let port = strait.addr.port();
    let mut balanced = strait.connect();
    balanced.write_all(&v1("198.51.100.7")).unwrap();
    let mut direct = strait.connect();
    let direct_port = direct.local_addr().unwrap().port();
    for round in 0..2 {
        for stream in [&mut balanced, &mut direct] {
            stream.write_all(&get("/")).unwrap();
            let r = Reader::new(stream).read_response("GET").unwrap();
            assert_eq!(r.status, 200, "round {round}: {}", r.head);
            assert_eq!(r.text(), "ok");
        }
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            (format!("PROXY TCP4 198.51.100.7 127.0.0.1 40000 {port}"), 2),
            (
                format!("PROXY TCP4 127.0.0.1 127.0.0.1 {direct_port} {port}"),
                2
            ),
        ],
        "{version}"
    );
}

#[test]
fn an_upstream_with_proxy_protocol_v1_gets_each_client_header() {
    upstream_receives_the_client_header("v1");
}

#[test]
fn an_upstream_with_proxy_protocol_v2_gets_each_client_header() {
    upstream_receives_the_client_header("v2");
}
