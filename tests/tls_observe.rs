//! TLS observability through the binary: handshake and failure counters, the certificate
//! expiry gauge, the TLS fields of the access log, and the listeners in `GET /status`.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::SocketAddr;

use common::certs::{client_config, connect_tls, Ca, Key};
use common::{connect, free_port, read_response, scratch_dir, wait_until, Strait};
use serde_json::Value;

/// A config with a plaintext listener, a TLS listener on `port` serving `cert`/`key`, a JSON
/// access log at `log`, and a mock route.
fn config(
    port: u16,
    cert: &std::path::Path,
    key: &std::path::Path,
    log: &std::path::Path,
) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n\n[[server.tls]]\nlisten = [\"127.0.0.1:{port}\"]\n\
         certificates = [{{ cert = {cert:?}, key = {key:?} }}]\n\n\
         [observability.access_log]\ndestination = {log:?}\n\n\
         [[routes]]\nname = \"root\"\npath = \"/{{*rest}}\"\nmock = {{ status = 200, body = \"hello\\n\" }}\n"
    )
}

/// `GET path` on the admin API: status and body.
fn admin_get(strait: &Strait, path: &str) -> (u16, String) {
    let mut stream = connect(strait.admin_addr());
    write!(stream, "GET {path} HTTP/1.1\r\nHost: admin\r\n\r\n").unwrap();
    let response = read_response(&mut stream).unwrap();
    (response.status, response.text())
}

/// `GET /metrics`: the samples by series (`name{labels}`).
fn scrape(strait: &Strait) -> BTreeMap<String, f64> {
    let (status, text) = admin_get(strait, "/metrics");
    assert_eq!(status, 200, "{text}");
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .map(|(series, value)| (series.to_owned(), value.parse().unwrap()))
        .collect()
}

/// One keep-alive `GET /` over `stream`, answered 200 with the mock's body.
fn get<S: Read + Write>(stream: &mut S) {
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 1024];
    while !raw.ends_with(b"hello\n") {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&raw));
        raw.extend_from_slice(&buf[..n]);
    }
    assert!(raw.starts_with(b"HTTP/1.1 200 OK\r\n"));
}

#[test]
fn handshakes_failures_expiry_access_log_and_status_describe_tls() {
    let dir = scratch_dir();
    let ca = Ca::new("test CA");
    let issued = ca.server(&["localhost"], Key::P256);
    let (cert, key) = issued.write(&dir, "site");
    let not_after = {
        let der = rustls_pki_types::pem::PemObject::from_pem_slice(issued.cert_pem.as_bytes());
        let der: rustls_pki_types::CertificateDer = der.unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
        parsed.validity().not_after.timestamp()
    };
    let log = dir.join("access.log");
    let port = free_port();
    let strait = Strait::start(&config(port, &cert, &key, &log));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));

    // A full handshake, then a resumed one (the client keeps the ticket), then a plain
    // request on the TLS port and one on the plaintext listener.
    let client = client_config(&ca.pem, None);
    let mut full = connect_tls(addr, "localhost", client.clone()).unwrap();
    get(&mut full);
    let mut resumed = connect_tls(addr, "localhost", client).unwrap();
    get(&mut resumed);
    assert_eq!(
        resumed.conn.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed)
    );
    let mut plain = connect(addr);
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut plain).unwrap().status, 400);
    assert_eq!(
        strait.request(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").status,
        200
    );

    let listener = format!("listener=\"127.0.0.1:{port}\"");
    let handshakes = |resumed: bool| {
        format!(
            "strait_tls_handshakes_total{{{listener},version=\"TLSv1.3\",resumed=\"{resumed}\"}}"
        )
    };
    let failures =
        format!("strait_tls_handshake_failures_total{{{listener},reason=\"plaintext\"}}");
    wait_until("the handshakes to be counted", || {
        let samples = scrape(&strait);
        samples.get(&handshakes(false)) == Some(&1.0)
            && samples.get(&handshakes(true)) == Some(&1.0)
            && samples.get(&failures) == Some(&1.0)
    });
    let samples = scrape(&strait);
    let expiry = format!(
        "strait_tls_certificate_expiry_timestamp_seconds{{{listener},file=\"{}\",name=\"localhost\"}}",
        cert.display()
    );
    assert_eq!(
        samples.get(&expiry),
        Some(&(not_after as f64)),
        "{samples:#?}"
    );

    // The access log: the TLS fields on the two TLS requests, nulls on the plain one.
    wait_until("three access log lines", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.lines().count() >= 3)
    });
    let lines: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{lines:#?}");
    for (line, was_resumed) in lines[..2].iter().zip([false, true]) {
        assert_eq!(line["tls_version"], "TLSv1.3", "{line}");
        assert!(
            line["tls_cipher"].as_str().unwrap().starts_with("TLS_AES_")
                || line["tls_cipher"] == "TLS_CHACHA20_POLY1305_SHA256",
            "{line}"
        );
        assert_eq!(line["tls_sni"], "localhost", "{line}");
        assert_eq!(line["tls_resumed"], was_resumed, "{line}");
    }
    for key in ["tls_version", "tls_cipher", "tls_sni", "tls_resumed"] {
        assert!(lines[2][key].is_null(), "{key}: {}", lines[2]);
    }

    // GET /status lists the listener and its certificate.
    let (status, body) = admin_get(&strait, "/status");
    assert_eq!(status, 200);
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        status["tls"],
        serde_json::json!([{
            "listen": [format!("127.0.0.1:{port}")],
            "certificates": [{
                "file": cert.display().to_string(),
                "names": ["localhost"],
                "not_after": not_after,
            }],
        }])
    );
}
