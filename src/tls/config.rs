//! `[[server.tls]]`: TLS listeners. Each lists the addresses it serves and its
//! certificates (PEM chain and key files, the names each serves), the protocol versions,
//! session resumption, client certificates, and the handshake's time and concurrency
//! bounds. Certificate files are read and checked here (a key that does not match its
//! certificate, an expired certificate, a file that is not PEM are config errors at the
//! file's key), so a reload with a broken certificate changes nothing. The files read are
//! recorded with their stamps (`TlsListener::files`): when one changes on disk, the
//! certificate watcher (`control/cert_watch.rs`) reloads.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use toml::Spanned;

use super::sni::SniResolver;
use super::tickets;
use crate::http1::encode::is_rewritten_request_header;
use crate::http1::headers::is_hop_by_hop;
use crate::proxy_protocol::config::FileProxyProtocol;
use crate::proxy_protocol::ProxyProtocolListener;
use crate::settings::{is_host_header, is_token, Ctx, DurationValue, WatchedFile};

const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_MAX_HANDSHAKES: i64 = 512;

// ---- the file ----

/// One `[[server.tls]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTlsListener {
    pub listen: Spanned<Vec<Spanned<String>>>,
    pub certificates: Spanned<Vec<FileCertificate>>,
    /// `"default"` (the first certificate) or `"refuse"`.
    pub unknown_name: Option<Spanned<String>>,
    /// `"1.2"` or `"1.3"`.
    pub min_version: Option<Spanned<String>>,
    pub handshake_timeout: Option<Spanned<DurationValue>>,
    pub max_handshakes: Option<Spanned<i64>>,
    pub session_tickets: Option<bool>,
    pub session_cache: Option<bool>,
    /// `"none"`, `"optional"` or `"required"`.
    pub client_auth: Option<Spanned<String>>,
    pub client_ca: Option<Spanned<String>>,
    pub client_identity_header: Option<Spanned<String>>,
    /// The `Strict-Transport-Security` value answers on this listener carry.
    pub hsts: Option<Spanned<String>>,
    /// `{ from = [...], required = false }`: a PROXY header before the TLS handshake.
    pub proxy_protocol: Option<Spanned<FileProxyProtocol>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCertificate {
    pub cert: Spanned<String>,
    pub key: Spanned<String>,
    /// Names it serves; by default the DNS names of its subjectAltName.
    pub names: Option<Vec<Spanned<String>>>,
}

// ---- runtime types ----

/// A validated TLS listener.
pub struct TlsListener {
    pub listen: Vec<SocketAddr>,
    /// Built once per config: a reload brings new certificates to new connections only.
    pub server: Arc<rustls::ServerConfig>,
    pub handshake_timeout: Duration,
    /// Handshakes one worker runs at once on this listener; more connections are closed.
    pub max_handshakes: usize,
    pub client_auth: ClientAuth,
    /// Where a verified client certificate's identity goes upstream (lower case).
    pub identity_header: Option<Bytes>,
    /// `strict-transport-security: VALUE\r\n`, when `hsts` is set.
    pub hsts: Option<Bytes>,
    pub certificates: Vec<CertificateFacts>,
    /// Every certificate, key and CA file this listener was built from, stamped before it
    /// was read: what the certificate watcher compares with the files on disk.
    pub files: Vec<WatchedFile>,
    /// Sources that may (or must) send a PROXY header before the ClientHello.
    pub proxy_protocol: Option<ProxyProtocolListener>,
}

impl std::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener")
            .field("listen", &self.listen)
            .field("client_auth", &self.client_auth)
            .field("certificates", &self.certificates)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    Optional,
    Required,
}

/// What routes need to know of the TLS listeners: `https_redirect`'s default port and
/// whether `client_cert = "required"` can ever be met.
#[derive(Debug, Clone, Copy)]
pub struct ListenerFacts {
    /// The first listener's first port.
    pub default_port: Option<u16>,
    /// Some listener asks for client certificates (`client_auth` other than `"none"`).
    pub verifies_clients: bool,
    /// Every `[[server.tls]]` was built. When one failed (its errors are reported), the
    /// route checks that depend on the listeners are skipped: they could only be wrong.
    pub complete: bool,
}

impl ListenerFacts {
    /// The facts of `built`, the listeners of the `in_file` `[[server.tls]]` tables that
    /// validated.
    pub fn of(built: &[Arc<TlsListener>], in_file: usize) -> Self {
        ListenerFacts {
            default_port: built
                .first()
                .and_then(|l| l.listen.first())
                .map(SocketAddr::port),
            verifies_clients: built.iter().any(|l| l.client_auth != ClientAuth::None),
            complete: built.len() == in_file,
        }
    }
}

/// What the metrics and the admin API tell about a loaded certificate.
#[derive(Debug, Clone)]
pub struct CertificateFacts {
    /// The certificate file as configured.
    pub path: String,
    pub names: Vec<String>,
    /// Seconds since the Unix epoch.
    pub not_after: i64,
}

// ---- validation ----

/// Builds `[[server.tls]]` entry `index`, reading its certificate and key files.
/// Builds `[[server.tls]]` entry `index`; `http2`: offer `h2` by ALPN ahead of `http/1.1`.
pub fn build(
    ctx: &mut Ctx,
    index: usize,
    file: &FileTlsListener,
    http2: bool,
) -> Option<TlsListener> {
    let at = |key: &str| format!("server.tls[{index}].{key}");
    let errors_before = ctx.error_count();
    let provider = super::provider();

    let mut listen = Vec::new();
    if file.listen.get_ref().is_empty() {
        ctx.error(
            file.listen.span(),
            at("listen"),
            "at least one address is required",
        );
    }
    for (i, addr) in file.listen.get_ref().iter().enumerate() {
        if let Some(parsed) = ctx.socket_addr(addr, &format!("{}[{i}]", at("listen"))) {
            listen.push(parsed);
        }
    }

    let refuse_unknown = match file.unknown_name.as_ref() {
        None => false,
        Some(v) => match v.get_ref().as_str() {
            "default" => false,
            "refuse" => true,
            other => {
                let why = format!("unknown value \"{other}\": expected \"default\" or \"refuse\"");
                ctx.error(v.span(), at("unknown_name"), why);
                false
            }
        },
    };

    let mut resolver = SniResolver::default();
    let mut certificates = Vec::new();
    let mut files = Vec::new();
    if file.certificates.get_ref().is_empty() {
        ctx.error(
            file.certificates.span(),
            at("certificates"),
            "at least one certificate is required",
        );
    }
    for (i, entry) in file.certificates.get_ref().iter().enumerate() {
        let key_of = |field: &str| format!("{}[{i}].{field}", at("certificates"));
        let Some((key, facts)) = load_certificate(ctx, entry, &provider, &key_of, &mut files)
        else {
            continue;
        };
        let key = Arc::new(key);
        for name in &facts.names {
            resolver.add(name, key.clone());
        }
        if i == 0 && !refuse_unknown {
            resolver.add_default(key);
        }
        certificates.push(facts);
    }

    let versions: &[&rustls::SupportedProtocolVersion] = match file.min_version.as_ref() {
        None => rustls::DEFAULT_VERSIONS,
        Some(v) => match v.get_ref().as_str() {
            "1.2" => rustls::DEFAULT_VERSIONS,
            "1.3" => &[&rustls::version::TLS13],
            other => {
                let why = format!("unknown version \"{other}\": expected \"1.2\" or \"1.3\"");
                ctx.error(v.span(), at("min_version"), why);
                rustls::DEFAULT_VERSIONS
            }
        },
    };

    let client_auth = match file.client_auth.as_ref() {
        None => ClientAuth::None,
        Some(v) => match v.get_ref().as_str() {
            "none" => ClientAuth::None,
            "optional" => ClientAuth::Optional,
            "required" => ClientAuth::Required,
            other => {
                let why = format!(
                    "unknown value \"{other}\": expected \"none\", \"optional\" or \"required\""
                );
                ctx.error(v.span(), at("client_auth"), why);
                ClientAuth::None
            }
        },
    };
    let verifier = client_verifier(ctx, file, client_auth, &provider, &at, &mut files);

    let identity_header = file.client_identity_header.as_ref().and_then(|name| {
        let text = name.get_ref();
        let why = if !is_token(text) {
            format!("invalid header name \"{text}\"")
        } else if is_hop_by_hop(text.as_bytes()) || is_rewritten_request_header(text.as_bytes()) {
            format!("\"{text}\" is a header Strait writes or drops itself: choose another name")
        } else {
            return Some(Bytes::from(text.to_ascii_lowercase()));
        };
        ctx.error(name.span(), at("client_identity_header"), why);
        None
    });

    let hsts = file.hsts.as_ref().and_then(|value| {
        let text = value.get_ref();
        let max_age = text
            .strip_prefix("max-age=")
            .map(|rest| rest.split(';').next().unwrap_or("").trim());
        let printable = text.bytes().all(|b| b == b' ' || b.is_ascii_graphic());
        if printable
            && max_age.is_some_and(|age| !age.is_empty() && age.bytes().all(|b| b.is_ascii_digit()))
        {
            Some(Bytes::from(format!(
                "strict-transport-security: {text}\r\n"
            )))
        } else {
            let why = format!(
                "invalid value \"{text}\": expected \"max-age=SECONDS\" and optional \
                 directives, such as \"max-age=31536000; includeSubDomains\""
            );
            ctx.error(value.span(), at("hsts"), why);
            None
        }
    });

    let handshake_timeout = ctx.duration(
        &file.handshake_timeout,
        &at("handshake_timeout"),
        DEFAULT_HANDSHAKE_TIMEOUT,
    );
    let max_handshakes = match &file.max_handshakes {
        None => DEFAULT_MAX_HANDSHAKES as usize,
        Some(v) => ctx.count(v, &at("max_handshakes"), 1, 1 << 20).unwrap_or(1),
    };

    let proxy_protocol = file
        .proxy_protocol
        .as_ref()
        .and_then(|p| crate::proxy_protocol::config::listener(ctx, p, &at("proxy_protocol")));
    if ctx.error_count() > errors_before {
        return None;
    }
    let builder = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .ok()?;
    let mut server = builder
        .with_client_cert_verifier(verifier?)
        .with_cert_resolver(Arc::new(resolver));
    server.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    // The server's order (rustls': AES-256-GCM, AES-128-GCM, ChaCha20-Poly1305; ECDHE
    // and AEAD only), not whatever a client prefers.
    server.ignore_client_order = true;
    if file.session_tickets.unwrap_or(true) {
        if let Some(ticketer) = tickets::ticketer() {
            server.ticketer = ticketer;
        }
    }
    server.session_storage = if file.session_cache.unwrap_or(true) {
        tickets::session_cache()
    } else {
        Arc::new(NoServerSessionStorage {})
    };
    Some(TlsListener {
        listen,
        server: Arc::new(server),
        handshake_timeout,
        max_handshakes,
        client_auth,
        identity_header,
        hsts,
        certificates,
        files,
        proxy_protocol,
    })
}

/// Reads one certificate chain and its key, checks that they match and that the
/// certificate is valid now, and finds the names it serves.
fn load_certificate(
    ctx: &mut Ctx,
    entry: &FileCertificate,
    provider: &rustls::crypto::CryptoProvider,
    key_of: &dyn Fn(&str) -> String,
    watched: &mut Vec<WatchedFile>,
) -> Option<(CertifiedKey, CertificateFacts)> {
    let cert_pem = ctx.read_watched(&entry.cert, &key_of("cert"), watched);
    let key_pem = ctx.read_watched(&entry.key, &key_of("key"), watched);
    let (cert_pem, key_pem) = (cert_pem?, key_pem?);
    let chain = match read_chain(&cert_pem) {
        Ok(chain) => chain,
        Err(why) => {
            ctx.error(entry.cert.span(), key_of("cert"), why);
            return None;
        }
    };
    let key = match PrivateKeyDer::from_pem_slice(&key_pem) {
        Ok(key) => key,
        Err(e) => {
            let why = format!("no private key in \"{}\": {e}", entry.key.get_ref());
            ctx.error(entry.key.span(), key_of("key"), why);
            return None;
        }
    };
    let facts = match leaf_facts(&chain[0]) {
        Ok(facts) => facts,
        Err(why) => {
            ctx.error(entry.cert.span(), key_of("cert"), why);
            return None;
        }
    };
    let now = unix_now();
    if facts.not_after < now {
        let why = format!("the certificate expired on {}", facts.not_after_text);
        ctx.error(entry.cert.span(), key_of("cert"), why);
        return None;
    }
    if facts.not_before > now {
        let why = format!(
            "the certificate is not valid before {}",
            facts.not_before_text
        );
        ctx.error(entry.cert.span(), key_of("cert"), why);
        return None;
    }
    let certified = match CertifiedKey::from_der(chain, key, provider) {
        Ok(certified) => certified,
        Err(e) => {
            let why = match e {
                rustls::Error::InconsistentKeys(_) => {
                    format!(
                        "the key in \"{}\" does not match the certificate",
                        entry.key.get_ref()
                    )
                }
                other => format!(
                    "unusable private key in \"{}\": {other}",
                    entry.key.get_ref()
                ),
            };
            ctx.error(entry.key.span(), key_of("key"), why);
            return None;
        }
    };
    let names = match &entry.names {
        Some(list) => {
            let mut names = Vec::new();
            for (i, name) in list.iter().enumerate() {
                let text = name.get_ref().to_ascii_lowercase();
                let bare = text.strip_prefix("*.").unwrap_or(&text);
                if bare.is_empty() || bare.contains('*') || !is_host_header(bare) {
                    let why = format!(
                        "invalid name \"{}\": expected a host name or *.parent",
                        name.get_ref()
                    );
                    ctx.error(name.span(), format!("{}[{i}]", key_of("names")), why);
                } else {
                    names.push(text);
                }
            }
            names
        }
        None if facts.dns_names.is_empty() => {
            let why = "the certificate has no DNS names in subjectAltName: list them in `names`";
            ctx.error(entry.cert.span(), key_of("cert"), why);
            return None;
        }
        None => facts.dns_names,
    };
    Some((
        certified,
        CertificateFacts {
            path: entry.cert.get_ref().clone(),
            names,
            not_after: facts.not_after,
        },
    ))
}

/// Every certificate of a PEM file, leaf first.
pub(crate) fn read_chain(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate file: {e}"))?;
    if chain.is_empty() {
        return Err("no certificate in the file (expected PEM \"BEGIN CERTIFICATE\")".into());
    }
    Ok(chain)
}

/// What the leaf certificate says about itself.
struct LeafFacts {
    dns_names: Vec<String>,
    not_before: i64,
    not_after: i64,
    not_before_text: String,
    not_after_text: String,
}

fn leaf_facts(der: &CertificateDer<'_>) -> Result<LeafFacts, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| format!("the certificate cannot be parsed: {e}"))?;
    let validity = cert.validity();
    let dns_names = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                x509_parser::extensions::GeneralName::DNSName(dns) => {
                    Some(dns.to_ascii_lowercase())
                }
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(LeafFacts {
        dns_names,
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
        not_before_text: validity.not_before.to_string(),
        not_after_text: validity.not_after.to_string(),
    })
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The client certificate policy: none asked for, or checked against `client_ca`.
fn client_verifier(
    ctx: &mut Ctx,
    file: &FileTlsListener,
    auth: ClientAuth,
    provider: &Arc<rustls::crypto::CryptoProvider>,
    at: &dyn Fn(&str) -> String,
    watched: &mut Vec<WatchedFile>,
) -> Option<Arc<dyn ClientCertVerifier>> {
    let ca = match (&file.client_ca, auth) {
        (None, ClientAuth::None) => return Some(WebPkiClientVerifier::no_client_auth()),
        (Some(ca), _) => ca,
        (None, _) => {
            let span = file.client_auth.as_ref().map_or(0..0, Spanned::span);
            ctx.error(
                span,
                at("client_ca"),
                "client_auth needs client_ca, the CA bundle to check against",
            );
            return None;
        }
    };
    if auth == ClientAuth::None {
        ctx.error(
            ca.span(),
            at("client_ca"),
            "client_ca is set but client_auth is \"none\"",
        );
        return None;
    }
    let pem = ctx.read_watched(ca, &at("client_ca"), watched)?;
    let mut roots = rustls::RootCertStore::empty();
    let added = read_chain(&pem).map(|chain| roots.add_parsable_certificates(chain));
    match added {
        Ok((added, _)) if added > 0 => {}
        Ok(_) => {
            ctx.error(
                ca.span(),
                at("client_ca"),
                "no usable CA certificate in the file",
            );
            return None;
        }
        Err(why) => {
            ctx.error(ca.span(), at("client_ca"), why);
            return None;
        }
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    let builder = if auth == ClientAuth::Optional {
        builder.allow_unauthenticated()
    } else {
        builder
    };
    match builder.build() {
        Ok(verifier) => Some(verifier),
        Err(e) => {
            ctx.error(
                ca.span(),
                at("client_ca"),
                format!("unusable CA bundle: {e}"),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rcgen::{CertificateParams, KeyPair};

    use crate::config::{load, load_errors};
    use crate::scratch::ScratchDir;

    /// Writes a self-signed certificate for `names` (P-256) valid from `from` to `to`
    /// (days from now) as `<name>.pem` / `<name>.key` in `dir`.
    fn cert(dir: &Path, name: &str, names: &[&str], from: i64, to: i64) {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now + time::Duration::days(from);
        params.not_after = now + time::Duration::days(to);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    }

    /// The errors of a config with one TLS listener whose table holds `body`, written in
    /// `dir` (so that relative paths resolve there), with the directory cut from messages.
    fn errors_in(dir: &Path, body: &str) -> Vec<String> {
        let text = format!(
            "[server]\n[[server.tls]]\nlisten = [\"127.0.0.1:8443\"]\n{body}\n\
             [[routes]]\nname = \"r\"\npath = \"/\"\nmock = {{ status = 200 }}\n"
        );
        let path = dir.join("t.toml");
        std::fs::write(&path, &text).unwrap();
        match load(&path) {
            Ok(_) => Vec::new(),
            Err(errors) => errors
                .to_string()
                .lines()
                .map(|l| l.replace(&format!("{}/", dir.display()), ""))
                .collect(),
        }
    }

    #[test]
    fn a_listener_with_good_certificates_builds() {
        let dir = ScratchDir::new("tls-config");
        cert(&dir, "a", &["a.example.test", "*.a.example.test"], -1, 30);
        let body = "certificates = [{ cert = \"a.pem\", key = \"a.key\" }]\n";
        assert_eq!(errors_in(&dir, body), Vec::<String>::new());
        let config = load(&dir.join("t.toml")).unwrap();
        let tls = &config.server.tls[0];
        assert!(config.server.listen.is_empty());
        assert_eq!(
            tls.certificates[0].names,
            ["a.example.test", "*.a.example.test"]
        );
        assert_eq!(
            tls.server.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        let text = std::fs::read_to_string(dir.join("t.toml")).unwrap();
        std::fs::write(
            dir.join("t.toml"),
            format!("{text}[server.http2]\ntls = false\n"),
        )
        .unwrap();
        let config = load(&dir.join("t.toml")).unwrap();
        assert_eq!(
            config.server.tls[0].server.alpn_protocols,
            [b"http/1.1".to_vec()]
        );
    }

    #[test]
    fn broken_certificates_are_errors_at_their_key() {
        let dir = ScratchDir::new("tls-config");
        cert(&dir, "good", &["good.test"], -1, 30);
        cert(&dir, "other", &["other.test"], -1, 30);
        cert(&dir, "expired", &["old.test"], -30, -1);
        cert(&dir, "future", &["new.test"], 2, 30);
        cert(&dir, "nameless", &[], -1, 30);
        std::fs::write(dir.join("garbage.pem"), "not a certificate\n").unwrap();
        let cases: &[(&str, &str)] = &[
            (
                "certificates = [{ cert = \"missing.pem\", key = \"good.key\" }]",
                "t.toml:4:26: server.tls[0].certificates[0].cert: cannot read \"missing.pem\"",
            ),
            (
                "certificates = [{ cert = \"garbage.pem\", key = \"good.key\" }]",
                "t.toml:4:26: server.tls[0].certificates[0].cert: no certificate in the file",
            ),
            (
                "certificates = [{ cert = \"good.pem\", key = \"other.key\" }]",
                "t.toml:4:44: server.tls[0].certificates[0].key: the key in \"other.key\" does not match the certificate",
            ),
            (
                "certificates = [{ cert = \"expired.pem\", key = \"expired.key\" }]",
                "t.toml:4:26: server.tls[0].certificates[0].cert: the certificate expired on",
            ),
            (
                "certificates = [{ cert = \"future.pem\", key = \"future.key\" }]",
                "t.toml:4:26: server.tls[0].certificates[0].cert: the certificate is not valid before",
            ),
            (
                "certificates = [{ cert = \"nameless.pem\", key = \"nameless.key\" }]",
                "t.toml:4:26: server.tls[0].certificates[0].cert: the certificate has no DNS names",
            ),
            (
                "certificates = [{ cert = \"good.pem\", key = \"good.key\", names = [\"a*b.test\"] }]",
                "t.toml:4:65: server.tls[0].certificates[0].names[0]: invalid name \"a*b.test\"",
            ),
            (
                "certificates = [{ cert = \"good.pem\", key = \"good.key\" }]\nclient_auth = \"required\"",
                "t.toml:5:15: server.tls[0].client_ca: client_auth needs client_ca",
            ),
            (
                "certificates = [{ cert = \"good.pem\", key = \"good.key\" }]\nmin_version = \"1.1\"",
                "t.toml:5:15: server.tls[0].min_version: unknown version \"1.1\"",
            ),
            (
                "certificates = [{ cert = \"good.pem\", key = \"good.key\" }]\nhsts = \"1 year\"",
                "t.toml:5:8: server.tls[0].hsts: invalid value \"1 year\"",
            ),
            (
                "certificates = []",
                "t.toml:4:16: server.tls[0].certificates: at least one certificate is required",
            ),
        ];
        for (body, want) in cases {
            let got = errors_in(&dir, body);
            assert!(
                got.len() == 1 && got[0].starts_with(want),
                "{body}\n  got: {got:?}\n want: {want}"
            );
        }
    }

    #[test]
    fn an_address_serves_one_listener() {
        let dir = ScratchDir::new("tls-config");
        cert(&dir, "good", &["good.test"], -1, 30);
        let text = "[server]\nlisten = [\"127.0.0.1:8443\"]\n[[server.tls]]\n\
                    listen = [\"127.0.0.1:8443\"]\ncertificates = [{ cert = \"good.pem\", key = \"good.key\" }]\n";
        std::fs::write(dir.join("t.toml"), text).unwrap();
        let err = load(&dir.join("t.toml")).unwrap_err().to_string();
        assert!(
            err.contains(
                "t.toml:4:11: server.tls[0].listen[0]: duplicate address \"127.0.0.1:8443\""
            ),
            "{err}"
        );
        assert_eq!(
            load_errors("[server]\n"),
            ["t.toml: server.listen: at least one address is required (or a [[server.tls]] listener)"]
        );
    }
}
