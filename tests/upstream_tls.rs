//! TLS from the gateway to upstreams, through the binary: the upstream is a rustls server
//! written here (one thread per connection, certificates from `common::certs`), which
//! records what each request came with: the TLS connection, SNI, ALPN, client certificate
//! and whether the session was resumed.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::certs::{common_name, server_config, Ca, Key};
use common::{raw_upstream, scratch_dir, wait_until, Strait};
use rustls::HandshakeKind;

/// What the origin saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    /// The TCP (and TLS) connection it came on, 0-based.
    conn: usize,
    request_line: String,
    sni: Option<String>,
    alpn: Option<Vec<u8>>,
    /// The subject CN of the client certificate, if one was presented.
    client_cn: Option<String>,
    resumed: bool,
}

/// An HTTPS origin answering each request line with `answer`'s bytes (a whole response;
/// one that says `Connection: close` ends the connection).
struct TlsOrigin {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// TCP connections accepted, whether or not their handshake succeeded.
    connections: Arc<AtomicUsize>,
}

impl TlsOrigin {
    fn start(
        config: Arc<rustls::ServerConfig>,
        answer: impl Fn(&str) -> Vec<u8> + Send + Sync + 'static,
    ) -> TlsOrigin {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let (addr, connections) = raw_upstream(move |tcp, conn| {
            serve(tcp, conn, config.clone(), &answer, &record);
        });
        TlsOrigin {
            addr,
            seen,
            connections,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Requests seen, health checks left out.
    fn traffic(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| !s.request_line.starts_with("GET /healthz "))
            .collect()
    }
}

fn serve(
    tcp: TcpStream,
    conn: usize,
    config: Arc<rustls::ServerConfig>,
    answer: &(dyn Fn(&str) -> Vec<u8> + Send + Sync),
    seen: &Mutex<Vec<Seen>>,
) {
    let session = rustls::ServerConnection::new(config).unwrap();
    let mut tls = rustls::StreamOwned::new(session, tcp);
    let mut buf = Vec::new();
    loop {
        // A failed handshake or a closed connection ends the read with nothing.
        let Some(end) = read_head(&mut tls, &mut buf) else {
            return;
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let request_line = head.lines().next().unwrap_or_default().to_owned();
        let client_cn = tls
            .conn
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|leaf| common_name(leaf.as_ref()));
        seen.lock().unwrap().push(Seen {
            conn,
            sni: tls.conn.server_name().map(str::to_owned),
            alpn: tls.conn.alpn_protocol().map(<[u8]>::to_vec),
            client_cn,
            resumed: tls.conn.handshake_kind() == Some(HandshakeKind::Resumed),
            request_line: request_line.clone(),
        });
        let response = answer(&request_line);
        if tls.write_all(&response).and_then(|_| tls.flush()).is_err() {
            return;
        }
        if String::from_utf8_lossy(&response).contains("Connection: close") {
            tls.conn.send_close_notify();
            let _ = tls.flush();
            return;
        }
    }
}

/// Reads until `buf` holds a whole request head (GET requests only: no body); its length.
fn read_head(stream: &mut impl Read, buf: &mut Vec<u8>) -> Option<usize> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(at + 4);
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn ok(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: gateway.test\r\n\r\n").into_bytes()
}

/// A config with one worker and, per `(name, endpoint, tls)`, upstream `name` (its `tls`
/// value as given) and a route `/name/*` to it; `extra` follows.
fn config(upstreams: &[(&str, SocketAddr, String)], extra: &str) -> String {
    let mut text = "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\n\n".to_owned();
    for (name, addr, tls) in upstreams {
        text.push_str(&format!(
            "[upstreams.{name}]\nendpoints = [\"{addr}\"]\ntls = {tls}\n\n\
             [[routes]]\npath = \"/{name}/{{*rest}}\"\nupstream = \"{name}\"\n\n"
        ));
    }
    text.push_str(extra);
    text
}

fn path(p: &Path) -> String {
    format!("\"{}\"", p.display())
}

#[test]
fn a_trusted_upstream_answers_through_tls() {
    let dir = scratch_dir();
    let ca = Ca::new("upstream CA");
    let origin = TlsOrigin::start(
        server_config(&ca.server(&["127.0.0.1"], Key::P256), None),
        |_| ok("hello over tls"),
    );
    let ca_file = ca.write(&dir, "ca");
    let tls = format!("{{ ca = {} }}", path(&ca_file));
    let strait = Strait::start(&config(&[("app", origin.addr, tls)], ""));

    let response = strait.request(&get("/app/x"));
    assert_eq!(response.status, 200, "{}", strait.log_text());
    assert_eq!(response.text(), "hello over tls");
    let seen = origin.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].request_line, "GET /app/x HTTP/1.1");
    assert_eq!(seen[0].alpn.as_deref(), Some(&b"http/1.1"[..]));
    // An endpoint configured by IP is verified under its IP, which is never sent as SNI.
    assert_eq!(seen[0].sni, None);
    assert_eq!(seen[0].client_cn, None);
}

#[test]
fn an_untrusted_upstream_is_a_502_with_the_reason_logged() {
    let dir = scratch_dir();
    let ca = Ca::new("upstream CA");
    let other = Ca::new("some other CA");
    let origin = TlsOrigin::start(
        server_config(&ca.server(&["127.0.0.1"], Key::P256), None),
        |_| ok("must not be seen"),
    );
    let tls = format!("{{ ca = {} }}", path(&other.write(&dir, "other")));
    let strait = Strait::start(&config(&[("app", origin.addr, tls)], ""));

    let response = strait.request(&get("/app/x"));
    assert_eq!(response.status, 502);
    assert!(origin.seen().is_empty());
    let endpoint = origin.addr.to_string();
    wait_until("the handshake failure in the log", || {
        strait.log_text().lines().any(|line| {
            line.contains("upstream TLS handshake failed")
                && line.contains("upstream=app")
                && line.contains(&endpoint)
                && line.contains("UnknownIssuer")
        })
    });
}

#[test]
fn server_name_sets_sni_and_the_name_verified() {
    let dir = scratch_dir();
    let ca = Ca::new("upstream CA");
    let answer = |_: &str| ok("named");
    let right = TlsOrigin::start(
        server_config(&ca.server(&["api.internal"], Key::P256), None),
        answer,
    );
    let wrong = TlsOrigin::start(
        server_config(&ca.server(&["other.internal"], Key::P256), None),
        answer,
    );
    let ca_file = path(&ca.write(&dir, "ca"));
    let tls = format!("{{ ca = {ca_file}, server_name = \"api.internal\" }}");
    let strait = Strait::start(&config(
        &[
            ("right", right.addr, tls.clone()),
            ("wrong", wrong.addr, tls),
        ],
        "",
    ));

    let response = strait.request(&get("/right/x"));
    assert_eq!(response.status, 200, "{}", strait.log_text());
    assert_eq!(response.text(), "named");
    assert_eq!(right.seen()[0].sni.as_deref(), Some("api.internal"));

    // A certificate for another name does not verify, even from the trusted CA.
    assert_eq!(strait.request(&get("/wrong/x")).status, 502);
    assert!(wrong.seen().is_empty());
    wait_until("the name mismatch in the log", || {
        strait.log_text().lines().any(|line| {
            line.contains("upstream TLS handshake failed")
                && line.contains("upstream=wrong")
                && line.contains("server_name=api.internal")
                && line.contains("certificate not valid for name")
        })
    });
}

#[test]
fn a_client_certificate_is_presented_to_an_upstream_that_requires_one() {
    let dir = scratch_dir();
    let ca = Ca::new("upstream CA");
    let clients = Ca::new("client CA");
    let origin = TlsOrigin::start(
        server_config(&ca.server(&["127.0.0.1"], Key::P256), Some(&clients.pem)),
        |_| ok("mutual"),
    );
    let ca_file = path(&ca.write(&dir, "ca"));
    let (cert, key) = clients.client("strait-gateway", &[]).write(&dir, "client");
    let with_cert = format!(
        "{{ ca = {ca_file}, client_cert = {}, client_key = {} }}",
        path(&cert),
        path(&key)
    );
    let without = format!("{{ ca = {ca_file} }}");
    let strait = Strait::start(&config(
        &[
            ("mtls", origin.addr, with_cert),
            ("anonymous", origin.addr, without),
        ],
        "",
    ));

    let response = strait.request(&get("/mtls/x"));
    assert_eq!(response.status, 200, "{}", strait.log_text());
    assert_eq!(response.text(), "mutual");
    assert_eq!(
        origin.seen()[0].client_cn.as_deref(),
        Some("strait-gateway")
    );

    // Without one, the upstream refuses the session: a 502, never its answer.
    assert_eq!(strait.request(&get("/anonymous/x")).status, 502);
    assert_eq!(origin.seen().len(), 1);
}

fn keep_alive_reuses_one_tls_connection(args: &[&str]) {
    let dir = scratch_dir();
    let ca = Ca::new("upstream CA");
    let origin = TlsOrigin::start(
        server_config(&ca.server(&["127.0.0.1"], Key::P256), None),
        ok,
    );
    let tls = format!("{{ ca = {} }}", path(&ca.write(&dir, "ca")));
    let strait = Strait::start_with(&config(&[("app", origin.addr, tls)], ""), args);

    for i in 0..5 {
        let response = strait.request(&get(&format!("/app/{i}")));
        assert_eq!(response.status, 200, "{}", strait.log_text());
        assert_eq!(response.text(), format!("GET /app/{i} HTTP/1.1"));
    }
    let seen = origin.seen();
    assert_eq!(seen.len(), 5);
    assert!(seen.iter().all(|s| s.conn == 0), "{seen:#?}");
    assert_eq!(origin.connections.load(Ordering::SeqCst), 1);
}

#[test]
fn keep_alive_reuses_one_tls_connection_io_uring() {
    keep_alive_reuses_one_tls_connection(&[]);
}

#[test]
fn keep_alive_reuses_one_tls_connection_epoll() {
    keep_alive_reuses_one_tls_connection(&["--io-driver", "epoll"]);
}

#[test]
fn reconnects_resume_the_tls_session() {
    let dir = scratch_dir();
    let ca = Ca::new("upstream CA");
    // Every answer closes its connection: each request needs a new one.
    let origin = TlsOrigin::start(
        server_config(&ca.server(&["127.0.0.1"], Key::P256), None),
        |_| b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".to_vec(),
    );
    let tls = format!("{{ ca = {} }}", path(&ca.write(&dir, "ca")));
    let strait = Strait::start(&config(&[("app", origin.addr, tls)], ""));

    for _ in 0..3 {
        assert_eq!(strait.request(&get("/app/x")).status, 200);
    }
    let seen = origin.seen();
    let conns: Vec<(usize, bool)> = seen.iter().map(|s| (s.conn, s.resumed)).collect();
    assert_eq!(conns, [(0, false), (1, true), (2, true)]);
}

#[test]
fn health_checks_speak_tls() {
    let dir = scratch_dir();
    let ca = Ca::new("upstream CA");
    let sick = Arc::new(AtomicBool::new(true));
    let is_sick = sick.clone();
    let origin = TlsOrigin::start(
        server_config(&ca.server(&["127.0.0.1"], Key::P256), None),
        move |line| {
            if line.starts_with("GET /healthz ") && is_sick.load(Ordering::SeqCst) {
                b"HTTP/1.1 503 Sick\r\nContent-Length: 0\r\n\r\n".to_vec()
            } else {
                ok("up")
            }
        },
    );
    let tls = format!("{{ ca = {} }}", path(&ca.write(&dir, "ca")));
    let health = "[upstreams.app.health]\npath = \"/healthz\"\ninterval = \"200ms\"\n\
                  timeout = \"150ms\"\nhealthy_threshold = 1\nunhealthy_threshold = 1\n";
    let strait = Strait::start(&config(&[("app", origin.addr, tls)], health));
    let endpoint = origin.addr.to_string();
    let logged = |what: &str| {
        strait
            .log_text()
            .lines()
            .any(|line| line.contains(what) && line.contains(&endpoint))
    };

    // The checks reach the origin over TLS and read its 503.
    wait_until("the endpoint marked unhealthy", || {
        logged("endpoint is now unhealthy")
    });
    assert!(strait
        .log_text()
        .contains("status 503 outside the expected ranges"));
    // Healthy again: the next check over TLS marks it up, and traffic flows.
    sick.store(false, Ordering::SeqCst);
    wait_until("the endpoint marked healthy", || {
        logged("endpoint is now healthy")
    });
    let response = strait.request(&get("/app/x"));
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "up");
    assert_eq!(origin.traffic().len(), 1);
    assert!(!strait.log_text().contains("upstream TLS handshake failed"));
}
