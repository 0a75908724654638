//! Version 2 TLVs (type, 16-bit big-endian length, value) after the address block. Strait
//! reads ALPN (0x01), AUTHORITY (0x02) and SSL (0x20, with its VERSION and CN sub-TLVs) to
//! log them; every other type (CRC32C, NOOP, UNIQUE_ID, NETNS, custom ones) is skipped
//! unchecked. A TLV that runs past the header makes the whole header invalid.

use super::Invalid;

const TYPE_ALPN: u8 = 0x01;
const TYPE_AUTHORITY: u8 = 0x02;
const TYPE_SSL: u8 = 0x20;
const SUBTYPE_SSL_VERSION: u8 = 0x21;
const SUBTYPE_SSL_CN: u8 = 0x22;
/// SSL TLV: `client` flags (1 byte) and `verify` (4 bytes) before its sub-TLVs.
const SSL_FIXED_BYTES: usize = 5;
/// `client` flag: the client connected over TLS.
const CLIENT_SSL: u8 = 0x01;

/// What the balancer said about the connection, as far as Strait reads it. Values are
/// kept as bytes: they are the balancer's word, logged, never trusted as text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tlvs {
    /// The protocol the client negotiated with the balancer (`h2`, `http/1.1`).
    pub alpn: Option<Box<[u8]>>,
    /// The host name the client asked for (its TLS SNI, typically).
    pub authority: Option<Box<[u8]>>,
    pub ssl: Option<SslInfo>,
}

/// The SSL TLV: the client's TLS session with the balancer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SslInfo {
    /// The client connected over TLS.
    pub tls: bool,
    /// The client's certificate verified (`verify` is zero).
    pub verified: bool,
    /// `TLSv1.3`, …
    pub version: Option<Box<[u8]>>,
    /// The client certificate's subject common name.
    pub common_name: Option<Box<[u8]>>,
}

impl Tlvs {
    pub fn is_empty(&self) -> bool {
        self.alpn.is_none() && self.authority.is_none() && self.ssl.is_none()
    }
}

/// Reads the TLVs filling `bytes` exactly.
pub(super) fn parse(bytes: &[u8]) -> Result<Tlvs, Invalid> {
    let mut tlvs = Tlvs::default();
    for (kind, value) in entries(bytes) {
        let value = value?;
        match kind {
            TYPE_ALPN => tlvs.alpn = Some(value.into()),
            TYPE_AUTHORITY => tlvs.authority = Some(value.into()),
            TYPE_SSL => tlvs.ssl = Some(ssl(value)?),
            _ => {}
        }
    }
    Ok(tlvs)
}

fn ssl(value: &[u8]) -> Result<SslInfo, Invalid> {
    let Some((fixed, subs)) = value.split_first_chunk::<SSL_FIXED_BYTES>() else {
        return Err(Invalid::V2Tlv);
    };
    let [client, verify @ ..] = *fixed;
    let mut info = SslInfo {
        tls: client & CLIENT_SSL != 0,
        verified: verify == [0; 4],
        ..SslInfo::default()
    };
    for (kind, value) in entries(subs) {
        let value = value?;
        match kind {
            SUBTYPE_SSL_VERSION => info.version = Some(value.into()),
            SUBTYPE_SSL_CN => info.common_name = Some(value.into()),
            _ => {}
        }
    }
    Ok(info)
}

/// The (type, value) entries of `bytes`; an entry that runs past its end is an error
/// (and the last item).
fn entries(mut bytes: &[u8]) -> impl Iterator<Item = (u8, Result<&[u8], Invalid>)> {
    std::iter::from_fn(move || {
        if bytes.is_empty() {
            return None;
        }
        let Some((&[kind, hi, lo], rest)) = bytes.split_first_chunk::<3>() else {
            bytes = &[];
            return Some((0, Err(Invalid::V2Tlv)));
        };
        let length = usize::from(u16::from_be_bytes([hi, lo]));
        if length > rest.len() {
            bytes = &[];
            return Some((kind, Err(Invalid::V2Tlv)));
        }
        let (value, after) = rest.split_at(length);
        bytes = after;
        Some((kind, Ok(value)))
    })
}
