//! TLS with rustls: listeners that terminate it (`config.rs`, `sni.rs`, `accept.rs`), the
//! session tickets every worker shares (`tickets.rs`), and the stream adapter both sides of
//! the proxy use (`stream.rs`). On the request path: client certificates per route and the
//! identity sent upstream (`client_cert.rs`), and plaintext requests sent to HTTPS
//! (`redirect.rs`).
//!
//! One crypto provider serves the whole binary, aws-lc-rs: TLS here, the JWKS client
//! (ureq) and JWT verification (jsonwebtoken) all use it.

pub mod accept;
pub mod client_cert;
pub mod config;
pub mod redirect;
mod sni;
mod stream;
mod tickets;

use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;
use rustls_pki_types::CertificateDer;

pub use accept::{ClientIdentity, HandshakeFailure, TlsInfo};
pub use config::{ListenerFacts, TlsListener};
pub use stream::{HandshakeError, TlsDuplex, TlsStream};

/// The crypto provider of every TLS session and signature check in the process.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .clone()
}

/// TLS for ureq (the JWKS fetcher): this process's provider and the system's roots.
pub fn ureq_tls() -> ureq::tls::TlsConfig {
    let roots = native_certs()
        .iter()
        .map(|der| ureq::tls::Certificate::from_der(der.as_ref()).to_owned())
        .collect();
    ureq::tls::TlsConfig::builder()
        .unversioned_rustls_crypto_provider(provider())
        .root_certs(ureq::tls::RootCerts::Specific(Arc::new(roots)))
        .build()
}

/// The system's trusted roots (`/etc/ssl/certs` and the like), read once.
fn native_certs() -> &'static [CertificateDer<'static>] {
    static CERTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    CERTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for error in &found.errors {
            tracing::warn!(%error, "a system root certificate could not be loaded");
        }
        found.certs
    })
}

/// The system's trusted roots as a rustls store. Unusable entries are skipped: a client
/// then fails to verify, with rustls' reason.
pub fn system_roots() -> Arc<rustls::RootCertStore> {
    static ROOTS: OnceLock<Arc<rustls::RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            let (added, ignored) = roots.add_parsable_certificates(native_certs().iter().cloned());
            if ignored > 0 {
                tracing::warn!(
                    added,
                    ignored,
                    "some system root certificates were not usable"
                );
            }
            Arc::new(roots)
        })
        .clone()
}
