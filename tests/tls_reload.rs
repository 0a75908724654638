//! Certificate reload through the binary: a certificate replaced on disk reaches new
//! connections without a signal and without failing a request under load, a broken
//! replacement is kept out and reported (once per change), and `--check` names a broken
//! certificate by file, position and key.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use common::certs::{client_config, connect_tls, Ca, Issued, Key};
use common::{connect, free_port, read_response, scratch_dir, wait_until, StopOnDrop, Strait};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// A config with a mock route and one TLS listener on `port` serving `cert.pem`/`cert.key`
/// of `dir`. The certificate table is on line 6.
fn config(port: u16, dir: &Path) -> String {
    let (cert, key) = (dir.join("cert.pem"), dir.join("cert.key"));
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n\n[[server.tls]]\nlisten = [\"127.0.0.1:{port}\"]\n\
         certificates = [{{ cert = {cert:?}, key = {key:?} }}]\n\n\
         [[routes]]\nname = \"root\"\npath = \"/{{*rest}}\"\nmock = {{ status = 200, body = \"hello\\n\" }}\n"
    )
}

/// Installs `issued` as `cert.pem`/`cert.key` of `dir` the way certbot and cert-manager do:
/// each file written aside and renamed over, key first. A file whose text stays is left
/// alone (a rename would be a change: the watcher would reload the same files).
fn install(dir: &Path, issued: &Issued) {
    for (name, text) in [
        ("cert.key", &issued.key_pem),
        ("cert.pem", &issued.cert_pem),
    ] {
        if std::fs::read_to_string(dir.join(name)).ok().as_ref() == Some(text) {
            continue;
        }
        let aside = dir.join(format!("{name}.new"));
        std::fs::write(&aside, text).unwrap();
        std::fs::rename(&aside, dir.join(name)).unwrap();
    }
}

/// The leaf certificate of a PEM chain, DER.
fn leaf(issued: &Issued) -> Vec<u8> {
    CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>;

/// The leaf certificate the server presented on `stream`, DER.
fn served(stream: &Tls) -> Vec<u8> {
    stream.conn.peer_certificates().unwrap()[0].to_vec()
}

/// A new connection's view of the server certificate.
fn served_now(addr: SocketAddr, ca: &Ca) -> Vec<u8> {
    served(&connect_tls(addr, "localhost", client_config(&ca.pem, None)).unwrap())
}

/// One keep-alive GET on `stream`; the whole response, or why there was none.
fn get(stream: &mut Tls) -> Result<String, String> {
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 1024];
    while !raw.ends_with(b"hello\n") {
        let n = stream.read(&mut buf).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err(format!("closed after {:?}", String::from_utf8_lossy(&raw)));
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&raw).to_string();
    if text.starts_with("HTTP/1.1 200 OK\r\n") {
        Ok(text)
    } else {
        Err(text)
    }
}

/// `GET path` on the admin API; the JSON body.
fn admin_get(strait: &Strait, path: &str) -> serde_json::Value {
    let mut stream = connect(strait.admin_addr());
    write!(stream, "GET {path} HTTP/1.1\r\nHost: admin\r\n\r\n").unwrap();
    let response = read_response(&mut stream).unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    serde_json::from_slice(&response.body).unwrap()
}

/// What the load's client threads saw.
#[derive(Default)]
struct Load {
    requests: AtomicU64,
    /// Connections whose server certificate was the new one.
    renewed: AtomicU64,
    failures: Mutex<Vec<String>>,
}

#[test]
fn a_renewed_certificate_reaches_new_connections_under_load_without_a_signal_or_a_failure() {
    let dir = scratch_dir();
    let ca = Ca::new("test CA");
    let old = ca.server(&["localhost"], Key::P256);
    let new = ca.server(&["localhost"], Key::P384);
    install(&dir, &old);
    let port = free_port();
    let strait = Strait::start_with(&config(port, &dir), &["--workers", "2"]);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    assert_eq!(served_now(addr, &ca), leaf(&old));

    // Client threads open TLS connections one after another and send five keep-alive
    // requests on each, until stopped. Two resume their sessions (a resumed session keeps
    // the certificate it was first made with), two make full handshakes every time.
    let load = Arc::new(Load::default());
    let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
    let new_leaf = leaf(&new);
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let (load, stop) = (load.clone(), stop.0.clone());
            let mut client = (*client_config(&ca.pem, None)).clone();
            if i % 2 == 0 {
                client.resumption = rustls::client::Resumption::disabled();
            }
            let (client, new_leaf) = (Arc::new(client), new_leaf.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let mut stream = match connect_tls(addr, "localhost", client.clone()) {
                        Ok(stream) => stream,
                        Err(e) => {
                            load.failures
                                .lock()
                                .unwrap()
                                .push(format!("handshake: {e}"));
                            continue;
                        }
                    };
                    if served(&stream) == new_leaf {
                        load.renewed.fetch_add(1, Ordering::Relaxed);
                    }
                    for _ in 0..5 {
                        match get(&mut stream) {
                            Ok(_) => load.requests.fetch_add(1, Ordering::Relaxed),
                            Err(e) => {
                                load.failures.lock().unwrap().push(e);
                                break;
                            }
                        };
                    }
                }
            })
        })
        .collect();
    wait_until("the load to run", || {
        load.requests.load(Ordering::Relaxed) >= 200
    });

    install(&dir, &new);
    wait_until("new connections to get the new certificate", || {
        served_now(addr, &ca) == new_leaf
    });
    let renewed = load.renewed.load(Ordering::Relaxed);
    wait_until("the load to go on with the new certificate", || {
        load.renewed.load(Ordering::Relaxed) >= renewed + 20
    });
    stop.0.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    let failures = load.failures.lock().unwrap();
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    let log = strait.log_text();
    assert!(
        log.contains("certificate files changed; reloading"),
        "{log}"
    );
    assert!(
        log.contains("config reloaded (certificate files changed)"),
        "{log}"
    );
    assert!(admin_get(&strait, "/reload/status")["ok"] == true);
}

#[test]
fn a_broken_replacement_is_kept_out_reported_once_and_a_fixed_one_goes_in() {
    let dir = scratch_dir();
    let ca = Ca::new("test CA");
    let good = ca.server(&["localhost"], Key::P256);
    install(&dir, &good);
    let port = free_port();
    let strait = Strait::start(&config(port, &dir));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let origin = strait.config_path().display().to_string();
    let cert_at = format!("{origin}:6:26: server.tls[0].certificates[0].cert");
    let key_at = format!("{origin}:6:");
    let other = ca.server(&["localhost"], Key::P256);

    // (what goes on disk, what the reload status and the log must say)
    let broken: [(Issued, String); 3] = [
        (
            Issued {
                cert_pem: other.cert_pem.clone(),
                key_pem: good.key_pem.clone(),
            },
            "server.tls[0].certificates[0].key: the key in".to_owned(),
        ),
        (
            Issued {
                cert_pem: "not a certificate\n".to_owned(),
                key_pem: good.key_pem.clone(),
            },
            format!("{cert_at}: no certificate in the file"),
        ),
        (
            ca.expired_server(&["localhost"]),
            format!("{cert_at}: the certificate expired on"),
        ),
    ];
    for (i, (issued, expected)) in broken.iter().enumerate() {
        install(&dir, issued);
        wait_until("the failed certificate reload to be reported", || {
            let status = admin_get(&strait, "/reload/status");
            status["ok"] == false
                && status["errors"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e.as_str().unwrap().contains(expected.as_str()))
        });
        let status = admin_get(&strait, "/reload/status");
        let error = status["errors"][0].as_str().unwrap();
        assert!(error.starts_with(&key_at), "{error}");
        assert_eq!(status["generation"], 1, "nothing was swapped in");
        assert_eq!(served_now(addr, &ca), leaf(&good), "case {i}");
        // The log reaches the test through a pipe: it may trail the status.
        wait_until("the failure in the log", || {
            strait.log_text().contains(expected.as_str())
        });
    }
    // One attempt per broken state, however many polls passed.
    let fixed = ca.server(&["localhost"], Key::Ed25519);
    install(&dir, &fixed);
    wait_until("the fixed certificate to be served", || {
        served_now(addr, &ca) == leaf(&fixed)
    });
    let log = strait.log_text();
    let failed = log
        .matches("certificate reload failed, still serving the previous certificates")
        .count();
    // A poll may catch a replacement between its key and its certificate: one more
    // failure, never one per poll.
    assert!(
        (3..=6).contains(&failed),
        "{failed} failed reloads for 3 broken states:\n{log}"
    );
    let status = admin_get(&strait, "/reload/status");
    assert_eq!(status["ok"], true, "{status}");
    assert_eq!(status["generation"], 2);
}

#[test]
fn check_names_a_broken_certificate_by_file_position_and_key() {
    let dir = scratch_dir();
    let ca = Ca::new("test CA");
    install(&dir, &ca.expired_server(&["localhost"]));
    let path = dir.join("strait.toml");
    std::fs::write(&path, config(free_port(), &dir)).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strait"))
        .arg("--check")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let expected = format!(
        "{}:6:26: server.tls[0].certificates[0].cert: the certificate expired on",
        path.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
}
