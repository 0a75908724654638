//! TLS termination through the binary, with real clients (rustls here, curl and openssl
//! s_client where their view matters) and certificates the test makes.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::certs::{client_config, connect_tls, served_names, Ca, Key};
use common::{free_port, read_response, scratch_dir, Strait, DEADLINE};

/// A config with a mock route and one TLS listener on `port` whose table body is `tls`.
fn tls_config(port: u16, tls: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n\n[[server.tls]]\nlisten = [\"127.0.0.1:{port}\"]\n{tls}\n\
         [[routes]]\nname = \"root\"\npath = \"/{{*rest}}\"\nmock = {{ status = 200, body = \"hello\\n\" }}\n"
    )
}

fn tls_addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// GET / over `stream`; the response's status line and body.
fn get<S: Read + Write>(stream: &mut S) -> (String, String) {
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed before the answer");
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            if text.len() >= end + 4 + 6 {
                let status = text.lines().next().unwrap().to_owned();
                return (status, text[end + 4..].to_owned());
            }
        }
    }
}

#[test]
fn certificates_are_chosen_by_sni_exact_wildcard_and_default() {
    let dir = scratch_dir();
    let ca = Ca::new("test CA");
    let (api_cert, api_key) = ca
        .server(&["api.example.test"], Key::P256)
        .write(&dir, "api");
    let (wild_cert, wild_key) = ca
        .server(&["*.example.test"], Key::Rsa2048)
        .write(&dir, "wild");
    let (default_cert, default_key) = ca
        .server(&["default.test"], Key::Ed25519)
        .write(&dir, "dflt");
    let port = free_port();
    let strait = Strait::start(&tls_config(
        port,
        &format!(
            "certificates = [\n  {{ cert = {default_cert:?}, key = {default_key:?} }},\n  \
             {{ cert = {api_cert:?}, key = {api_key:?} }},\n  {{ cert = {wild_cert:?}, key = {wild_key:?} }},\n]\n"
        ),
    ));
    let client = client_config(&ca.pem, None);
    let addr = tls_addr(port);
    let mut api = connect_tls(addr, "api.example.test", client.clone()).unwrap();
    assert_eq!(served_names(&api), ["DNSName(api.example.test)"]);
    assert_eq!(get(&mut api), ("HTTP/1.1 200 OK".into(), "hello\n".into()));
    let wild = connect_tls(addr, "www.example.test", client.clone()).unwrap();
    assert_eq!(served_names(&wild), ["DNSName(*.example.test)"]);
    // An unknown name gets the default (first) certificate, which the client then refuses
    // to accept for that name: the handshake fails on the client's side.
    let err = connect_tls(addr, "other.test", client.clone()).unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
    let dflt = connect_tls(addr, "default.test", client).unwrap();
    assert_eq!(served_names(&dflt), ["DNSName(default.test)"]);
    drop(strait);
}

#[test]
fn unknown_names_are_refused_when_configured() {
    let dir = scratch_dir();
    let ca = Ca::new("test CA");
    let (cert, key) = ca
        .server(&["api.example.test"], Key::P384)
        .write(&dir, "api");
    let port = free_port();
    let _strait = Strait::start(&tls_config(
        port,
        &format!(
            "certificates = [{{ cert = {cert:?}, key = {key:?} }}]\nunknown_name = \"refuse\"\n"
        ),
    ));
    let client = client_config(&ca.pem, None);
    let err = connect_tls(tls_addr(port), "other.test", client.clone()).unwrap_err();
    // rustls names the alert the server sent.
    assert!(
        err.to_string().contains("AccessDenied") || err.to_string().contains("alert"),
        "{err}"
    );
    let mut ok = connect_tls(tls_addr(port), "api.example.test", client).unwrap();
    assert_eq!(get(&mut ok).0, "HTTP/1.1 200 OK");
}

#[test]
fn plaintext_on_a_tls_port_gets_400_and_is_never_routed() {
    let dir = scratch_dir();
    let ca = Ca::new("test CA");
    let (cert, key) = ca.server(&["localhost"], Key::P256).write(&dir, "site");
    let port = free_port();
    let _strait = Strait::start(&tls_config(
        port,
        &format!("certificates = [{{ cert = {cert:?}, key = {key:?} }}]\n"),
    ));
    let mut plain = TcpStream::connect(tls_addr(port)).unwrap();
    plain.set_read_timeout(Some(DEADLINE)).unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let response = read_response(&mut plain).unwrap();
    assert_eq!(response.status, 400);
    assert!(response.text().contains("HTTPS"), "{}", response.text());
    assert!(common::is_closed(&mut plain));
}

#[test]
fn a_silent_connection_is_closed_after_the_handshake_timeout() {
    let dir = scratch_dir();
    let ca = Ca::new("test CA");
    let (cert, key) = ca.server(&["localhost"], Key::P256).write(&dir, "site");
    let port = free_port();
    let _strait = Strait::start(&tls_config(
        port,
        &format!("certificates = [{{ cert = {cert:?}, key = {key:?} }}]\nhandshake_timeout = \"300ms\"\n"),
    ));
    let mut silent = TcpStream::connect(tls_addr(port)).unwrap();
    silent.set_read_timeout(Some(DEADLINE)).unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 16];
    let n = silent.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the server should close, not answer");
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(290),
        "closed after {waited:?}"
    );
    assert!(waited < DEADLINE, "closed after {waited:?}");
}

#[test]
fn sessions_resume_on_any_worker_through_openssl() {
    let dir = scratch_dir();
    let ca = Ca::new("test CA");
    let (cert, key) = ca.server(&["localhost"], Key::P256).write(&dir, "site");
    let ca_path = ca.write(&dir, "ca");
    let port = free_port();
    let _strait = Strait::start_with(
        &tls_config(
            port,
            &format!("certificates = [{{ cert = {cert:?}, key = {key:?} }}]\n"),
        ),
        &["--workers", "2"],
    );
    let session = dir.join("session.pem");
    let s_client = |extra: &[&str]| {
        let mut out = std::process::Command::new("openssl")
            .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
            .args(["-servername", "localhost", "-CAfile"])
            .arg(&ca_path)
            .args(extra)
            // A TLS 1.3 ticket comes after the handshake: read until the answer's end.
            .arg("-ign_eof")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("openssl s_client");
        let mut stdin = out.stdin.take().unwrap();
        stdin
            .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .unwrap();
        drop(stdin);
        let out = out.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let session_arg = session.to_str().unwrap();
    for version in ["-tls1_2", "-tls1_3"] {
        let first = s_client(&[version, "-sess_out", session_arg]);
        assert!(first.contains("Verify return code: 0 (ok)"), "{first}");
        assert!(first.contains("\nNew, "), "{first}");
        // Two workers: the kernel may hand the next connection to either; both resume.
        for _ in 0..4 {
            let again = s_client(&[version, "-sess_in", session_arg]);
            assert!(again.contains("\nReused, "), "{version}: {again}");
        }
    }
}

#[test]
fn every_answer_says_close_notify_before_the_close() {
    let dir = scratch_dir();
    let ca = Ca::new("test CA");
    let (cert, key) = ca.server(&["localhost"], Key::P256).write(&dir, "site");
    let port = free_port();
    let _strait = Strait::start(&tls_config(
        port,
        &format!("certificates = [{{ cert = {cert:?}, key = {key:?} }}]\n"),
    ));
    let mut stream =
        connect_tls(tls_addr(port), "localhost", client_config(&ca.pem, None)).unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    // rustls reports an end without close_notify as UnexpectedEof (a possible truncation).
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(answer.ends_with(b"hello\n"));
}

#[test]
fn silent_connections_take_no_handshake_slot() {
    let dir = scratch_dir();
    let ca = Ca::new("test CA");
    let (cert, key) = ca.server(&["localhost"], Key::P256).write(&dir, "site");
    let port = free_port();
    let _strait = Strait::start(&tls_config(
        port,
        &format!("certificates = [{{ cert = {cert:?}, key = {key:?} }}]\nmax_handshakes = 4\n"),
    ));
    let silent: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(tls_addr(port)).unwrap())
        .collect();
    for _ in 0..3 {
        let mut client =
            connect_tls(tls_addr(port), "localhost", client_config(&ca.pem, None)).unwrap();
        assert_eq!(get(&mut client).0, "HTTP/1.1 200 OK");
    }
    drop(silent);
}

#[test]
fn hsts_goes_on_every_answer_of_the_listener_and_only_there() {
    let upstream = common::Upstream::start(|_| {
        b"HTTP/1.1 200 OK\r\nstrict-transport-security: max-age=1\r\ncontent-length: 2\r\n\r\nup"
            .to_vec()
    });
    let dir = scratch_dir();
    let ca = Ca::new("test CA");
    let (cert, key) = ca.server(&["localhost"], Key::P256).write(&dir, "site");
    let port = free_port();
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n\n[[server.tls]]\nlisten = [\"127.0.0.1:{port}\"]\n\
         certificates = [{{ cert = {cert:?}, key = {key:?} }}]\n\
         hsts = \"max-age=31536000; includeSubDomains\"\n\n\
         [upstreams.up]\nendpoints = [\"{}\"]\n\n\
         [[routes]]\nname = \"mock\"\npath = \"/mock\"\nmock = {{ status = 200, body = \"hello\\n\" }}\n\n\
         [[routes]]\nname = \"up\"\npath = \"/up\"\nupstream = \"up\"\n",
        upstream.addr
    );
    let strait = Strait::start(&config);
    let want = "max-age=31536000; includeSubDomains";
    for (path, status) in [("/mock", 200), ("/up", 200), ("/nowhere", 404)] {
        let mut tls =
            connect_tls(tls_addr(port), "localhost", client_config(&ca.pem, None)).unwrap();
        tls.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
            .unwrap();
        let response = common::Reader::new(&mut tls).read_response("GET").unwrap();
        assert_eq!(response.status, status, "{path}");
        assert_eq!(
            response.headers_named("strict-transport-security"),
            [want],
            "{path}: one header, the listener's"
        );
        // Plain HTTP never carries it (RFC 6797 §7.2).
        let plain = strait.request(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        assert_eq!(plain.status, status);
        let upstream_copy: &[&str] = if path == "/up" { &["max-age=1"] } else { &[] };
        assert_eq!(
            plain.headers_named("strict-transport-security"),
            upstream_copy
        );
    }
}
