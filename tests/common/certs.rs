//! Certificates made by the tests: a CA, server and client certificates it issues (ECDSA
//! P-256/P-384, Ed25519, RSA 2048), expired ones, written as PEM files.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SignatureAlgorithm,
};

/// The key types a certificate can have.
#[derive(Clone, Copy, Debug)]
pub enum Key {
    P256,
    P384,
    Ed25519,
    Rsa2048,
}

fn key_pair(key: Key) -> KeyPair {
    let alg: &'static SignatureAlgorithm = match key {
        Key::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        Key::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        Key::Ed25519 => &rcgen::PKCS_ED25519,
        Key::Rsa2048 => {
            return KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
                .unwrap()
        }
    };
    KeyPair::generate_for(alg).unwrap()
}

/// A certificate and its key, as PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Issued {
    /// Writes `<name>.pem` and `<name>.key` into `dir`; returns their paths.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, &self.cert_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        (cert, key)
    }
}

/// A certificate authority that issues server and client certificates.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// The CA's own certificate, PEM: what clients (or Strait, for client certificates)
    /// trust.
    pub pem: String,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = dn(name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = key_pair(Key::P256);
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// Writes the CA certificate as `<name>.pem` into `dir`.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(format!("{name}.pem"));
        std::fs::write(&path, &self.pem).unwrap();
        path
    }

    /// A server certificate for `names` (DNS names, or IP addresses), valid now. The PEM
    /// file holds the chain without the CA.
    pub fn server(&self, names: &[&str], key: Key) -> Issued {
        self.issue(names, key, ExtendedKeyUsagePurpose::ServerAuth, 0)
    }

    /// A server certificate that expired a day ago.
    pub fn expired_server(&self, names: &[&str]) -> Issued {
        self.issue(names, Key::P256, ExtendedKeyUsagePurpose::ServerAuth, -1)
    }

    /// A client certificate with subject CN `cn` and subjectAltNames `sans` (DNS names,
    /// or `uri:` / `email:` prefixed values).
    pub fn client(&self, cn: &str, sans: &[&str]) -> Issued {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = dn(cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        for san in sans {
            let value = if let Some(uri) = san.strip_prefix("uri:") {
                rcgen::SanType::URI(uri.try_into().unwrap())
            } else if let Some(mail) = san.strip_prefix("email:") {
                rcgen::SanType::Rfc822Name(mail.try_into().unwrap())
            } else {
                rcgen::SanType::DnsName((*san).try_into().unwrap())
            };
            params.subject_alt_names.push(value);
        }
        let key = key_pair(Key::P256);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// `expired_days_ago < 0`: the certificate expired that many days ago.
    fn issue(
        &self,
        names: &[&str],
        key: Key,
        usage: ExtendedKeyUsagePurpose,
        expired_days_ago: i64,
    ) -> Issued {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).unwrap();
        params.distinguished_name = dn(names.first().map_or("strait test", String::as_str));
        params.extended_key_usages = vec![usage];
        let now = time::OffsetDateTime::now_utc();
        if expired_days_ago < 0 {
            params.not_before = now - time::Duration::days(30);
            params.not_after = now + time::Duration::days(expired_days_ago);
        } else {
            params.not_before = now - time::Duration::days(1);
            params.not_after = now + time::Duration::days(30);
        }
        let key = key_pair(key);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

/// A rustls client trusting `ca_pem`, optionally presenting a client certificate.
pub fn client_config(
    ca_pem: &str,
    client: Option<&Issued>,
) -> std::sync::Arc<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match client {
        None => builder.with_no_client_auth(),
        Some(issued) => {
            let chain = CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    std::sync::Arc::new(config)
}

/// A TLS connection to `addr` asking for `name` (SNI), handshake done.
pub fn connect_tls(
    addr: std::net::SocketAddr,
    name: &str,
    config: std::sync::Arc<rustls::ClientConfig>,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>, std::io::Error> {
    let server_name = rustls_pki_types::ServerName::try_from(name.to_owned())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let conn = rustls::ClientConnection::new(config, server_name).map_err(std::io::Error::other)?;
    let tcp = std::net::TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(super::DEADLINE))?;
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

/// The common name of the certificate the server presented on `stream`.
pub fn served_names(
    stream: &rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>,
) -> Vec<String> {
    let leaf = &stream.conn.peer_certificates().unwrap()[0];
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).unwrap();
    match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect(),
        _ => Vec::new(),
    }
}

/// A rustls server presenting `issued` and offering ALPN `http/1.1`; with `client_ca`, it
/// requires a client certificate issued by that CA (PEM).
pub fn server_config(
    issued: &Issued,
    client_ca: Option<&str>,
) -> std::sync::Arc<rustls::ServerConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca_pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
                roots.add(cert.unwrap()).unwrap();
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                std::sync::Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
    };
    let chain = CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap();
    let mut config = builder.with_single_cert(chain, key).unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    std::sync::Arc::new(config)
}

/// The subject common name of a DER certificate.
pub fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}
