//! `tls` of `[upstreams.NAME]`: TLS from the gateway to an upstream's endpoints.
//!
//! `tls = true` verifies the endpoints' certificates against the system's roots; a table
//! names a CA bundle (`ca`), the name sent as SNI and verified (`server_name`), a client
//! certificate (`client_cert`, `client_key`), or turns verification off (`verify = false`,
//! warned about at every load). The rustls `ClientConfig` is built here, at config load and
//! never on a worker: the files are read and checked then (a key that does not match its
//! certificate is an error at its key). One `ClientConfig` serves every worker, and its
//! in-memory session cache lets a new connection resume an earlier session; a reload that
//! leaves the settings alone keeps it ([`share_sessions`]), cache included.
//!
//! When a connection opens, [`UpstreamTls::session`] starts its rustls session, named by
//! the configured `server_name`, else by the host name the endpoint was configured by, else
//! by its IP address (an endpoint registered through the admin API has none).

use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use toml::Spanned;

use super::config::{Endpoint, UpstreamConfig};
use crate::settings::Ctx;
use crate::tls::config::read_chain;

// ---- the file ----

/// `tls = true` (or `false`), or a table of settings.
///
/// Deserialised by hand rather than `#[serde(untagged)]`, which would lose the table's
/// spans and `deny_unknown_fields`' precise error.
#[derive(Debug)]
pub enum FileUpstreamTls {
    Enabled(bool),
    Table(FileUpstreamTlsTable),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileUpstreamTlsTable {
    /// A PEM bundle the endpoints' certificates must chain to; the system's roots if absent.
    pub ca: Option<Spanned<String>>,
    /// The name sent as SNI and verified: a DNS name or an IP address.
    pub server_name: Option<Spanned<String>>,
    pub verify: Option<Spanned<bool>>,
    /// A PEM chain, leaf first, presented to endpoints that ask for one.
    pub client_cert: Option<Spanned<String>>,
    pub client_key: Option<Spanned<String>>,
}

impl<'de> Deserialize<'de> for FileUpstreamTls {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TlsVisitor;
        impl<'de> Visitor<'de> for TlsVisitor {
            type Value = FileUpstreamTls;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "true, false, or a table { ca, server_name, verify, client_cert, client_key }",
                )
            }
            fn visit_bool<E: de::Error>(self, value: bool) -> Result<FileUpstreamTls, E> {
                Ok(FileUpstreamTls::Enabled(value))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FileUpstreamTls, A::Error> {
                FileUpstreamTlsTable::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(FileUpstreamTls::Table)
            }
        }
        deserializer.deserialize_any(TlsVisitor)
    }
}

// ---- runtime types ----

/// TLS to an upstream's endpoints.
#[derive(Clone)]
pub struct UpstreamTls {
    /// Shared by every worker, with its session cache.
    client: Arc<ClientConfig>,
    /// `server_name` as configured; the endpoint's own name when `None`.
    server_name: Option<ServerName<'static>>,
    /// A digest of the settings and of the files' contents: connections made under one
    /// `UpstreamTls` may serve another with the same fingerprint.
    fingerprint: u64,
}

impl fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("server_name", &self.server_name)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl UpstreamTls {
    /// A new client session to `endpoint`, named by [`Self::server_name`].
    pub fn session(&self, endpoint: &Endpoint) -> Result<ClientConnection, rustls::Error> {
        ClientConnection::new(self.client.clone(), self.server_name(endpoint))
    }

    /// The name `endpoint` is asked for (SNI) and verified under: `server_name`, else the
    /// host the endpoint was configured by, else its IP address.
    pub fn server_name(&self, endpoint: &Endpoint) -> ServerName<'static> {
        match &self.server_name {
            Some(name) => name.clone(),
            None => endpoint_name(endpoint),
        }
    }

    /// Whether a connection opened under `self` may serve `other`: both were built from
    /// the same settings and files.
    pub fn is_same_as(&self, other: &UpstreamTls) -> bool {
        self.fingerprint == other.fingerprint
    }
}

/// The name of an endpoint without `server_name`: the host of the `host:port` it was
/// configured by, else its IP address (the build checked that the host is a valid name).
fn endpoint_name(endpoint: &Endpoint) -> ServerName<'static> {
    endpoint
        .hostname
        .as_deref()
        .and_then(|hostport| hostport.rsplit_once(':'))
        .and_then(|(host, _)| ServerName::try_from(host.to_owned()).ok())
        .unwrap_or_else(|| ServerName::IpAddress(endpoint.addr.ip().into()))
}

/// Gives each TLS upstream of `upstreams` the client config of the upstream of `previous`
/// (the snapshot being replaced) with the same name and settings, so that the sessions it
/// cached still resume after a reload. Runs on the control plane, before publishing.
pub fn share_sessions(upstreams: &mut [UpstreamConfig], previous: &[UpstreamConfig]) {
    for upstream in upstreams {
        let Some(tls) = upstream.tls.as_mut() else {
            continue;
        };
        let kept = previous
            .iter()
            .filter(|p| p.name == upstream.name)
            .filter_map(|p| p.tls.as_ref())
            .find(|p| p.is_same_as(tls));
        if let Some(kept) = kept {
            tls.client = kept.client.clone();
        }
    }
}

// ---- validation ----

/// Builds `tls` (at `key`) of upstream `upstream`, reading its files; `None` for
/// `tls = false` and on errors (recorded in `ctx`).
pub(crate) fn build(
    ctx: &mut Ctx,
    file: &Spanned<FileUpstreamTls>,
    key: &str,
    upstream: &str,
    endpoints: &[Endpoint],
    http2: bool,
) -> Option<UpstreamTls> {
    let enabled_only = FileUpstreamTlsTable::default();
    let table = match file.get_ref() {
        FileUpstreamTls::Enabled(false) => return None,
        FileUpstreamTls::Enabled(true) => &enabled_only,
        FileUpstreamTls::Table(table) => table,
    };
    let errors_before = ctx.error_count();
    let provider = crate::tls::provider();
    let mut fingerprint = DefaultHasher::new();

    let verify = table.verify.as_ref().is_none_or(|v| *v.get_ref());
    verify.hash(&mut fingerprint);

    let server_name = match &table.server_name {
        Some(name) => {
            name.get_ref().hash(&mut fingerprint);
            match ServerName::try_from(name.get_ref().clone()) {
                Ok(parsed) => Some(parsed),
                Err(_) => {
                    let why = format!(
                        "invalid name \"{}\": expected a DNS name or an IP address",
                        name.get_ref()
                    );
                    ctx.error(name.span(), format!("{key}.server_name"), why);
                    None
                }
            }
        }
        None => {
            check_endpoint_names(ctx, file, key, endpoints);
            None
        }
    };

    let roots = match (&table.ca, verify) {
        (Some(ca), true) => {
            let roots = load_roots(ctx, ca, &format!("{key}.ca"), &mut fingerprint);
            roots.map(Arc::new)
        }
        (None, true) => {
            let roots = crate::tls::system_roots();
            if roots.is_empty() {
                ctx.error(
                    file.span(),
                    key,
                    "no usable system root certificate to verify the endpoints against: \
                     set `ca`",
                );
            }
            Some(roots)
        }
        (Some(ca), false) => {
            let why = "`ca` is not used with `verify = false`: remove one of them";
            ctx.error(ca.span(), format!("{key}.ca"), why);
            None
        }
        (None, false) => None,
    };

    let client_auth = client_identity(ctx, table, key, &mut fingerprint);

    if ctx.error_count() > errors_before {
        return None;
    }
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .ok()?;
    let builder = match roots {
        Some(roots) => builder.with_root_certificates(roots),
        None => {
            tracing::warn!(
                upstream,
                key = %format!("{key}.verify"),
                "TLS certificate verification is OFF for this upstream: any certificate is \
                 accepted, so anyone on the path can impersonate it"
            );
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
        }
    };
    let mut client = match client_auth {
        None => builder.with_no_client_auth(),
        Some((chain, private_key)) => {
            match builder.with_client_auth_cert(chain, private_key) {
                Ok(client) => client,
                Err(e) => {
                    // Both were given: `client_identity` checked.
                    let at = table.client_key.as_ref().map_or(0..0, Spanned::span);
                    let path = table
                        .client_key
                        .as_ref()
                        .map_or("", |k| k.get_ref().as_str());
                    let why = match e {
                        rustls::Error::InconsistentKeys(_) => {
                            format!("the key in \"{path}\" does not match the certificate in client_cert")
                        }
                        other => format!("unusable private key in \"{path}\": {other}"),
                    };
                    ctx.error(at, format!("{key}.client_key"), why);
                    return None;
                }
            }
        }
    };
    // The one protocol the upstream is declared to speak: an HTTP/2 upstream that cannot
    // fails its handshake (a clear error) rather than quietly serving HTTP/1.1.
    client.alpn_protocols = if http2 {
        vec![b"h2".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Some(UpstreamTls {
        client: Arc::new(client),
        server_name,
        fingerprint: fingerprint.finish(),
    })
}

/// Without `server_name`, each endpoint configured by host name is verified under that
/// name: it must be one rustls accepts.
fn check_endpoint_names(
    ctx: &mut Ctx,
    file: &Spanned<FileUpstreamTls>,
    key: &str,
    endpoints: &[Endpoint],
) {
    let mut seen: Option<&str> = None;
    for hostport in endpoints.iter().filter_map(|e| e.hostname.as_deref()) {
        if seen == Some(hostport) {
            continue;
        }
        seen = Some(hostport);
        let host = hostport.rsplit_once(':').map_or(hostport, |(host, _)| host);
        if ServerName::try_from(host).is_err() {
            let why =
                format!("endpoint host \"{host}\" is not a name TLS can verify: set `server_name`");
            ctx.error(file.span(), key, why);
        }
    }
}

/// The CA bundle at `ca`, as a root store with at least one certificate.
fn load_roots(
    ctx: &mut Ctx,
    ca: &Spanned<String>,
    key: &str,
    fingerprint: &mut DefaultHasher,
) -> Option<rustls::RootCertStore> {
    let pem = ctx.read_relative(ca, key)?;
    pem.hash(fingerprint);
    let mut roots = rustls::RootCertStore::empty();
    match read_chain(&pem).map(|chain| roots.add_parsable_certificates(chain)) {
        Ok((added, _)) if added > 0 => Some(roots),
        Ok(_) => {
            ctx.error(ca.span(), key, "no usable CA certificate in the file");
            None
        }
        Err(why) => {
            ctx.error(ca.span(), key, why);
            None
        }
    }
}

/// The client certificate chain and key, when both are configured and readable.
fn client_identity(
    ctx: &mut Ctx,
    table: &FileUpstreamTlsTable,
    key: &str,
    fingerprint: &mut DefaultHasher,
) -> Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let (cert, private_key) = match (&table.client_cert, &table.client_key) {
        (None, None) => return None,
        (Some(cert), Some(private_key)) => (cert, private_key),
        (Some(cert), None) => {
            let why = "client_cert needs client_key, the file of its private key";
            ctx.error(cert.span(), format!("{key}.client_cert"), why);
            return None;
        }
        (None, Some(private_key)) => {
            let why = "client_key needs client_cert, the file of its certificate chain";
            ctx.error(private_key.span(), format!("{key}.client_key"), why);
            return None;
        }
    };
    let cert_key = format!("{key}.client_cert");
    let private_key_key = format!("{key}.client_key");
    let cert_pem = ctx.read_relative(cert, &cert_key);
    let key_pem = ctx.read_relative(private_key, &private_key_key);
    let (cert_pem, key_pem) = (cert_pem?, key_pem?);
    cert_pem.hash(fingerprint);
    key_pem.hash(fingerprint);
    let chain = match read_chain(&cert_pem) {
        Ok(chain) => Some(chain),
        Err(why) => {
            ctx.error(cert.span(), cert_key, why);
            None
        }
    };
    let parsed_key = match PrivateKeyDer::from_pem_slice(&key_pem) {
        Ok(parsed) => Some(parsed),
        Err(e) => {
            let why = format!("no private key in \"{}\": {e}", private_key.get_ref());
            ctx.error(private_key.span(), private_key_key, why);
            None
        }
    };
    Some((chain?, parsed_key?))
}

/// `verify = false`: any certificate is accepted. The handshake's signatures are still
/// checked, as rustls requires, which proves only that the peer holds the key of the
/// certificate it sent.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests;
