//! Client certificates through the binary: a listener that requires them, routes that
//! require them on a listener where they are optional, the verified identity sent upstream
//! (and a client's forged copy never), and plaintext requests redirected to HTTPS. Clients
//! are rustls (tests/common/certs.rs) and, once, curl.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use common::certs::{client_config, connect_tls, Ca, Issued, Key};
use common::{free_port, scratch_dir, Reader, Response, ScratchDir, Strait, Upstream};
use sha2::{Digest, Sha256};

const REFUSED_BODY: &str = "{\"error\":\"client certificate required\",\"status\":403}\n";

/// A CA, the server's certificate for `localhost`, and a client certificate it issued.
struct Pki {
    dir: ScratchDir,
    ca: Ca,
    ca_path: PathBuf,
    server: (PathBuf, PathBuf),
    alice: Issued,
}

impl Pki {
    fn new() -> Pki {
        let dir = scratch_dir();
        let ca = Ca::new("test CA");
        let ca_path = ca.write(&dir, "ca");
        let server = ca.server(&["localhost"], Key::P256).write(&dir, "server");
        let alice = ca.client("alice", &["alice.example", "uri:spiffe://example/alice"]);
        Pki {
            dir,
            ca,
            ca_path,
            server,
            alice,
        }
    }

    /// A client that trusts the CA and presents `cert`, if any.
    fn client(&self, cert: Option<&Issued>) -> Arc<rustls::ClientConfig> {
        client_config(&self.ca.pem, cert)
    }
}

/// A plaintext listener and one TLS listener on `port` with `client_auth`, the CA as
/// `client_ca` and `X-Client-Cert` as the identity header; upstream `app`, and `routes`.
fn config(pki: &Pki, port: u16, client_auth: &str, upstream: SocketAddr, routes: &str) -> String {
    let (cert, key) = &pki.server;
    let ca = &pki.ca_path;
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n\n\
         [[server.tls]]\nlisten = [\"127.0.0.1:{port}\"]\n\
         certificates = [{{ cert = {cert:?}, key = {key:?} }}]\n\
         client_auth = \"{client_auth}\"\nclient_ca = {ca:?}\n\
         client_identity_header = \"X-Client-Cert\"\n\n\
         [upstreams.app]\nendpoints = [\"{upstream}\"]\n\n{routes}"
    )
}

/// `/open` and `/private` (which requires a client certificate), both to `app`.
const ROUTES: &str = "[[routes]]\nname = \"open\"\npath = \"/open\"\nupstream = \"app\"\n\n\
                      [[routes]]\nname = \"private\"\npath = \"/private\"\nupstream = \"app\"\n\
                      client_cert = \"required\"\n";

fn tls_addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Sends `raw` over a new TLS connection (SNI `localhost`) and reads one response. An
/// error when the handshake fails, or the server ends the session before answering (a
/// refused client certificate shows there under TLS 1.3).
fn tls_request(
    port: u16,
    client: Arc<rustls::ClientConfig>,
    raw: &str,
) -> std::io::Result<Response> {
    let mut stream = connect_tls(tls_addr(port), "localhost", client)?;
    stream.write_all(raw.as_bytes())?;
    stream.flush()?;
    Reader::new(&mut stream).read_response("GET")
}

fn get(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra}Connection: close\r\n\r\n")
}

/// The lines of a received head whose name is `name` (any case).
fn lines_named<'a>(head: &'a str, name: &str) -> Vec<&'a str> {
    head.split("\r\n")
        .filter(|line| {
            line.split_once(':')
                .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        })
        .collect()
}

/// What `X-Client-Cert` says of `issued`: Envoy's XFCC form.
fn identity_of(issued: &Issued) -> String {
    use rustls_pki_types::pem::PemObject;
    let der = rustls_pki_types::CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap();
    let hash: String = Sha256::digest(der.as_ref())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("Hash={hash};Subject=\"CN=alice\";DNS=alice.example;URI=spiffe://example/alice")
}

#[test]
fn a_required_listener_accepts_only_certificates_from_its_ca() {
    let pki = Pki::new();
    let upstream = Upstream::fixed("ok");
    let port = free_port();
    let _strait = Strait::start(&config(&pki, port, "required", upstream.addr, ROUTES));

    let without = tls_request(port, pki.client(None), &get("/open", ""));
    let err = without.expect_err("no client certificate");
    assert!(
        err.to_string().contains("CertificateRequired"),
        "without a certificate: {err}"
    );

    let stranger = Ca::new("another CA").client("mallory", &["mallory.example"]);
    let other = tls_request(port, pki.client(Some(&stranger)), &get("/open", ""));
    let err = other.expect_err("a certificate from another CA");
    assert!(
        err.to_string().contains("UnknownCA") || err.to_string().contains("BadCertificate"),
        "another CA: {err}"
    );

    let ok = tls_request(port, pki.client(Some(&pki.alice)), &get("/private", "")).unwrap();
    assert_eq!((ok.status, ok.text()), (200, "ok".to_owned()));
    assert_eq!(
        upstream.requests().len(),
        1,
        "only the verified request got through"
    );
}

#[test]
fn on_an_optional_listener_the_route_decides() {
    let pki = Pki::new();
    let upstream = Upstream::fixed("ok");
    let port = free_port();
    let strait = Strait::start(&config(&pki, port, "optional", upstream.addr, ROUTES));
    let anonymous = pki.client(None);
    let alice = pki.client(Some(&pki.alice));

    let refused = tls_request(port, anonymous.clone(), &get("/private", "")).unwrap();
    assert_eq!(refused.status, 403);
    assert_eq!(refused.text(), REFUSED_BODY);
    let open = tls_request(port, anonymous, &get("/open", "")).unwrap();
    assert_eq!((open.status, open.text()), (200, "ok".to_owned()));
    let served = tls_request(port, alice, &get("/private", "")).unwrap();
    assert_eq!((served.status, served.text()), (200, "ok".to_owned()));

    // Plaintext never has a certificate: refused the same way.
    let plain = strait.request(get("/private", "").as_bytes());
    assert_eq!(plain.status, 403);
    assert_eq!(plain.text(), REFUSED_BODY);
    assert_eq!(
        upstream.requests().len(),
        2,
        "the refused requests were not forwarded"
    );
}

#[test]
fn only_a_verified_certificate_sets_the_identity_header_upstream() {
    let pki = Pki::new();
    let upstream = Upstream::echo();
    let port = free_port();
    let strait = Strait::start(&config(&pki, port, "optional", upstream.addr, ROUTES));
    // Two forged copies, in two spellings.
    let forged = "X-Client-Cert: Hash=forged;Subject=\"CN=admin\"\r\nx-client-cert: DNS=admin\r\n";

    // TLS with a certificate: the forged copies are replaced by the real identity.
    let response = tls_request(port, pki.client(Some(&pki.alice)), &get("/open", forged));
    assert_eq!(response.unwrap().status, 200);
    let received = upstream.last();
    let want = format!("x-client-cert: {}", identity_of(&pki.alice));
    assert_eq!(
        lines_named(&received.head, "x-client-cert"),
        [want.as_str()]
    );
    assert_eq!(
        received.header("x-forwarded-proto").as_deref(),
        Some("https")
    );

    // TLS without a certificate: removed, nothing put back.
    let response = tls_request(port, pki.client(None), &get("/open", forged));
    assert_eq!(response.unwrap().status, 200);
    let received = upstream.last();
    assert_eq!(lines_named(&received.head, "x-client-cert"), [""; 0]);

    // A plaintext listener: removed too.
    let response = strait.request(get("/open", forged).as_bytes());
    assert_eq!(response.status, 200);
    let received = upstream.last();
    assert_eq!(lines_named(&received.head, "x-client-cert"), [""; 0]);
    assert_eq!(
        received.header("x-forwarded-proto").as_deref(),
        Some("http")
    );
    assert_eq!(upstream.requests().len(), 3);
}

#[test]
fn plaintext_is_redirected_to_https_and_tls_is_served() {
    let pki = Pki::new();
    let upstream = Upstream::echo();
    let port = free_port();
    let routes = "[[routes]]\nname = \"moved\"\npath = \"/moved/{*rest}\"\nupstream = \"app\"\n\
                  https_redirect = true\n\n\
                  [[routes]]\nname = \"kept\"\npath = \"/kept\"\nupstream = \"app\"\n\
                  https_redirect = { port = 443, status = 307 }\n";
    let strait = Strait::start(&config(&pki, port, "optional", upstream.addr, routes));

    // The default port is the TLS listener's; the host keeps its name, not its port.
    let get = "GET /moved/a?b=1 HTTP/1.1\r\nHost: api.example.test:8080\r\n\r\n";
    let moved = strait.request(get.as_bytes());
    assert_eq!(moved.status, 301);
    let location = format!("https://api.example.test:{port}/moved/a?b=1");
    assert_eq!(moved.header("location"), Some(location.as_str()));
    assert_eq!(moved.header("content-length"), Some("0"));

    // Another method keeps it: 308, whose body the client sends again.
    let post =
        "POST /moved/form HTTP/1.1\r\nHost: api.example.test\r\nContent-Length: 3\r\n\r\nx=1";
    let moved = strait.request(post.as_bytes());
    assert_eq!(moved.status, 308);
    let location = format!("https://api.example.test:{port}/moved/form");
    assert_eq!(moved.header("location"), Some(location.as_str()));

    // Port 443 is left out of the URL; a configured status is used for every method.
    let kept = strait.request(b"GET /kept HTTP/1.1\r\nHost: api.example.test\r\n\r\n");
    assert_eq!(kept.status, 307);
    assert_eq!(
        kept.header("location"),
        Some("https://api.example.test/kept")
    );
    assert!(
        upstream.requests().is_empty(),
        "nothing forwarded over plaintext"
    );

    // The same route over TLS is served.
    let served = tls_request(
        port,
        pki.client(None),
        "GET /moved/a?b=1 HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .unwrap();
    assert_eq!(served.status, 200);
    assert_eq!(served.text(), "GET /moved/a?b=1 HTTP/1.1\n");
}

#[test]
fn curl_presents_its_certificate() {
    let pki = Pki::new();
    let upstream = Upstream::echo();
    let port = free_port();
    let _strait = Strait::start(&config(&pki, port, "optional", upstream.addr, ROUTES));
    let (cert, key) = pki.alice.write(&pki.dir, "alice");
    let curl = |extra: &[&std::ffi::OsStr]| {
        let out = std::process::Command::new("curl")
            .args(["--silent", "--show-error", "--max-time", "10"])
            .args(["--write-out", "\n%{http_code}"])
            .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
            .arg("--cacert")
            .arg(&pki.ca_path)
            .args(extra)
            .arg(format!("https://localhost:{port}/private"))
            .output()
            .expect("curl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let with = curl(&[
        "--cert".as_ref(),
        cert.as_os_str(),
        "--key".as_ref(),
        key.as_os_str(),
    ]);
    assert_eq!(with, "GET /private HTTP/1.1\n\n200");
    let want = identity_of(&pki.alice);
    assert_eq!(upstream.last().header("x-client-cert"), Some(want));
    let without = curl(&[]);
    assert_eq!(without, format!("{REFUSED_BODY}\n403"));
}
