//! Accepting a TLS connection: tell a TLS client from a plaintext one, run the handshake
//! within the listener's timeout and concurrency bound, and describe the session for the
//! request path (version, cipher, name, resumption, the client's certificate). Nothing of
//! a failed handshake reaches routing.

use std::cell::Cell;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use rustls::server::ServerConnection;
use sha2::{Digest, Sha256};

use super::config::TlsListener;
use super::stream::{HandshakeError, TlsStream};
use crate::deadline;
use crate::io::{take_buffer, WaitReadable};

/// What a request can know of the TLS session it arrived on.
#[derive(Debug, Clone)]
pub struct TlsInfo {
    /// `TLSv1.2`, `TLSv1.3`.
    pub version: &'static str,
    /// The IANA name: `TLS_AES_128_GCM_SHA256`, `TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256`.
    pub cipher: &'static str,
    /// The name the client asked for (SNI), if any.
    pub sni: Option<Box<str>>,
    pub resumed: bool,
    /// The client chose HTTP/2 by ALPN.
    pub h2: bool,
    /// A client certificate that verified against the listener's CA bundle.
    pub client: Option<ClientIdentity>,
    /// The listener's `client_identity_header` (lower case): where `client` goes upstream.
    /// Kept with the session, like the certificate it describes.
    pub identity_header: Option<Bytes>,
    /// The listener's `Strict-Transport-Security` line (CRLF-terminated), added to every
    /// answer on the session.
    pub hsts: Option<Bytes>,
}

/// A verified client certificate.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    /// The subject's distinguished name, as RFC 4514 writes it.
    pub subject: String,
    /// DNS names, URIs and e-mail addresses of its subjectAltName.
    pub sans: Vec<String>,
    /// SHA-256 of the certificate (DER), lower-case hex.
    pub fingerprint: String,
    /// All of the above in one header value, in Envoy's `x-forwarded-client-cert` form:
    /// `Hash=…;Subject="…";DNS=…;URI=…`.
    pub header_value: Bytes,
}

/// Why a connection never got to send a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// Its first bytes were not a TLS handshake (plain HTTP, typically).
    Plaintext,
    Timeout,
    /// The worker already ran `max_handshakes` handshakes on this listener.
    Overload,
    /// The client closed or reset the connection mid-handshake.
    Closed,
    /// No certificate for the name the client asked for, and no default.
    UnknownName,
    /// No protocol version, cipher suite or ALPN protocol in common.
    Incompatible,
    /// The client's certificate was missing, or did not verify.
    ClientCertificate,
    /// Anything else the client got wrong.
    Protocol,
}

impl HandshakeFailure {
    pub const ALL: [HandshakeFailure; 8] = [
        HandshakeFailure::Plaintext,
        HandshakeFailure::Timeout,
        HandshakeFailure::Overload,
        HandshakeFailure::Closed,
        HandshakeFailure::UnknownName,
        HandshakeFailure::Incompatible,
        HandshakeFailure::ClientCertificate,
        HandshakeFailure::Protocol,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            HandshakeFailure::Plaintext => "plaintext",
            HandshakeFailure::Timeout => "timeout",
            HandshakeFailure::Overload => "overload",
            HandshakeFailure::Closed => "closed",
            HandshakeFailure::UnknownName => "unknown_name",
            HandshakeFailure::Incompatible => "incompatible",
            HandshakeFailure::ClientCertificate => "client_certificate",
            HandshakeFailure::Protocol => "protocol",
        }
    }

    fn of(error: &rustls::Error) -> HandshakeFailure {
        use rustls::Error;
        match error {
            Error::NoCertificatesPresented | Error::InvalidCertificate(_) => {
                HandshakeFailure::ClientCertificate
            }
            Error::PeerIncompatible(_) | Error::NoApplicationProtocol => {
                HandshakeFailure::Incompatible
            }
            Error::General(message) if message.contains("no server certificate") => {
                HandshakeFailure::UnknownName
            }
            _ => HandshakeFailure::Protocol,
        }
    }
}

/// The answer to a plain HTTP request on a TLS port (nginx answers the same way).
const PLAINTEXT_ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
content-type: text/plain; charset=utf-8\r\n\
content-length: 56\r\n\
connection: close\r\n\
\r\n\
This port speaks HTTPS: send the request with https://.\n";

/// A TLS record's first byte when it carries a handshake message (a ClientHello).
const HANDSHAKE_RECORD: u8 = 0x16;

/// Counts a handshake in flight on a worker for as long as it lives.
struct InFlight<'a>(&'a Cell<usize>);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

/// Accepts a TLS session on `io` for `listener`, all within its `handshake_timeout`.
/// `first` holds the client's first bytes when they were already read (after a PROXY
/// header); empty, they are read here. `in_flight` is the worker's count of handshakes
/// under way: a connection counts once its first bytes are in, since the bound is on the
/// CPU handshakes take, and connections that send nothing would otherwise lock every
/// client out.
pub async fn accept(
    io: TcpStream,
    first: BytesMut,
    listener: &TlsListener,
    in_flight: &Cell<usize>,
) -> Result<(TlsStream<ServerConnection>, TlsInfo), HandshakeFailure> {
    match deadline::timeout(
        listener.handshake_timeout,
        handshake(io, first, listener, in_flight),
    )
    .await
    {
        Ok(result) => result,
        Err(_) => Err(HandshakeFailure::Timeout),
    }
}

async fn handshake(
    mut io: TcpStream,
    first: BytesMut,
    listener: &TlsListener,
    in_flight: &Cell<usize>,
) -> Result<(TlsStream<ServerConnection>, TlsInfo), HandshakeFailure> {
    // No buffer while the client is silent.
    if first.is_empty() {
        WaitReadable::readable(&io)
            .await
            .map_err(|_| HandshakeFailure::Closed)?;
    }
    if in_flight.get() >= listener.max_handshakes {
        return Err(HandshakeFailure::Overload);
    }
    in_flight.set(in_flight.get() + 1);
    let _counted = InFlight(in_flight);
    let first = if first.is_empty() {
        let (result, first) = io.read(take_buffer()).await;
        match result {
            Ok(n) if n > 0 => first,
            _ => return Err(HandshakeFailure::Closed),
        }
    } else {
        first
    };
    if first.first() != Some(&HANDSHAKE_RECORD) {
        if first.first().is_some_and(u8::is_ascii_uppercase) {
            let answer = io.write_all(PLAINTEXT_ANSWER);
            let _ = deadline::timeout(Duration::from_secs(1), answer).await;
        }
        return Err(HandshakeFailure::Plaintext);
    }
    let session =
        ServerConnection::new(listener.server.clone()).map_err(|e| HandshakeFailure::of(&e))?;
    let stream = TlsStream::handshake(io, session, first)
        .await
        .map_err(|e| match e {
            HandshakeError::Io(_) => HandshakeFailure::Closed,
            HandshakeError::Tls(e) => HandshakeFailure::of(&e),
        })?;
    let info = describe(stream.session(), listener);
    Ok((stream, info))
}

/// The session's facts, once its handshake is done.
fn describe(session: &ServerConnection, listener: &TlsListener) -> TlsInfo {
    let version = match session.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "unknown",
    };
    let cipher = session
        .negotiated_cipher_suite()
        .map_or("unknown", |suite| iana_name(suite.suite()));
    TlsInfo {
        version,
        cipher,
        sni: session.server_name().map(Into::into),
        resumed: session.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
        h2: session.alpn_protocol() == Some(b"h2"),
        client: session
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|leaf| client_identity(leaf.as_ref())),
        identity_header: listener.identity_header.clone(),
        hsts: listener.hsts.clone(),
    }
}

/// The IANA registry's name of `suite`, which logs and traces carry (OpenTelemetry's
/// `tls.cipher` asks for it). rustls names the TLS 1.3 suites `TLS13_…` where IANA says
/// `TLS_…`; its TLS 1.2 names are IANA's.
fn iana_name(suite: rustls::CipherSuite) -> &'static str {
    use rustls::CipherSuite as S;
    match suite {
        S::TLS13_AES_128_GCM_SHA256 => "TLS_AES_128_GCM_SHA256",
        S::TLS13_AES_256_GCM_SHA384 => "TLS_AES_256_GCM_SHA384",
        S::TLS13_CHACHA20_POLY1305_SHA256 => "TLS_CHACHA20_POLY1305_SHA256",
        S::TLS13_AES_128_CCM_SHA256 => "TLS_AES_128_CCM_SHA256",
        S::TLS13_AES_128_CCM_8_SHA256 => "TLS_AES_128_CCM_8_SHA256",
        other => other.as_str().unwrap_or("unknown"),
    }
}

/// The identity in a client certificate (DER) rustls has verified; `None` when it does
/// not parse. Its `header_value` carries only printable ASCII, spaces and tabs, whatever
/// the certificate holds (the `client_identity` fuzz target checks it).
pub fn client_identity(der: &[u8]) -> Option<ClientIdentity> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject().to_string();
    let mut sans = Vec::new();
    let mut header = String::new();
    let fingerprint: String = Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    header.push_str("Hash=");
    header.push_str(&fingerprint);
    header.push_str(";Subject=\"");
    header.push_str(&subject.replace('\\', "\\\\").replace('"', "\\\""));
    header.push('"');
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            let (kind, value) = match name {
                GeneralName::DNSName(v) => ("DNS", *v),
                GeneralName::URI(v) => ("URI", *v),
                GeneralName::RFC822Name(v) => ("Email", *v),
                _ => continue,
            };
            // Only printable, header-safe values go into the header.
            if value
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b';' && b != b',')
            {
                header.push(';');
                header.push_str(kind);
                header.push('=');
                header.push_str(value);
            }
            sans.push(value.to_owned());
        }
    }
    // A subject with bytes a header cannot carry leaves only the hash.
    let header_value = if header
        .bytes()
        .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic())
    {
        Bytes::from(header)
    } else {
        Bytes::from(format!("Hash={fingerprint}"))
    };
    Some(ClientIdentity {
        subject,
        sans,
        fingerprint,
        header_value,
    })
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

    use super::client_identity;

    fn certificate(cn: &str, sans: Vec<SanType>) -> Vec<u8> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        params.subject_alt_names = sans;
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn the_identity_header_names_hash_subject_and_sans() {
        let der = certificate(
            "client \"one\"",
            vec![
                SanType::DnsName("svc.internal".try_into().unwrap()),
                SanType::URI("spiffe://example.test/ns/a/sa/b".try_into().unwrap()),
            ],
        );
        let id = client_identity(&der).unwrap();
        assert_eq!(id.subject, "CN=client \"one\"");
        assert_eq!(id.sans, ["svc.internal", "spiffe://example.test/ns/a/sa/b"]);
        assert_eq!(id.fingerprint.len(), 64);
        let want = format!(
            "Hash={};Subject=\"CN=client \\\"one\\\"\";DNS=svc.internal;URI=spiffe://example.test/ns/a/sa/b",
            id.fingerprint
        );
        assert_eq!(id.header_value, want.as_bytes());
    }

    #[test]
    fn a_subject_that_could_split_the_header_leaves_only_the_hash() {
        let der = certificate("evil\r\nx-injected: 1", Vec::new());
        let id = client_identity(&der).unwrap();
        assert_eq!(
            id.header_value,
            format!("Hash={}", id.fingerprint).as_bytes()
        );
        assert!(client_identity(b"not a certificate").is_none());
    }
}
