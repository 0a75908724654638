//! The PROXY protocol (HAProxy's `proxy-protocol.txt`, versions 1 and 2): the header a
//! load balancer in front of Strait sends first on a connection to say who the client is,
//! and the header Strait sends to an upstream that wants the same.
//!
//! Where it sits: before anything else on a listener that has `proxy_protocol` set
//! (`proxy/proxy_header.rs` reads it, then HTTP or the TLS handshake starts on the bytes
//! after it); and at the start of each new upstream connection of an upstream with
//! `proxy_protocol = "v1" | "v2"` (`upstream/stream.rs`).
//!
//! The parser is incremental and never reads past the header: [`parse`] on the bytes
//! received so far says "need more", "not a PROXY header", "complete, N bytes consumed" or
//! "invalid, and why". The codec files (`v1.rs`, `v2.rs`, `tlv.rs`, `encode.rs`) import
//! nothing from the crate; `config.rs` is the listener's and the upstream's setting.

pub mod config;
mod encode;
mod tlv;
mod v1;
mod v2;

use std::net::SocketAddr;

pub use config::{ProxyProtocolListener, ProxyVersion};
pub use encode::{encode, encode_local};
pub use tlv::{SslInfo, Tlvs};

/// Longest version 1 header, CRLF included (the specification's bound).
pub const MAX_V1_BYTES: usize = 107;
/// Longest version 2 header accepted: the 16 fixed bytes and at most this much address and
/// TLV data. The format allows 64 KiB; a load balancer's TLVs (ALPN, authority, an SSL
/// summary) fit in a fraction of this, and the bound keeps a peer from holding a large
/// buffer before it has said anything.
pub const MAX_V2_BODY_BYTES: usize = 2048;

/// What the bytes received so far are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A prefix of a header (or too little to tell): read more.
    Incomplete,
    /// Not a PROXY header: the first bytes match neither signature.
    NotProxy,
    /// A whole header, the first `consumed` bytes of the input.
    Complete {
        header: ProxyHeader,
        consumed: usize,
    },
    Invalid(Invalid),
}

/// A parsed header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyHeader {
    pub version: ProxyVersion,
    /// The client's address and the address it connected to, when the header carries
    /// them. `None` for version 1 `UNKNOWN`, the version 2 `LOCAL` command (a health
    /// check from the balancer itself), and the UNSPEC and UNIX families: the TCP peer
    /// then stays the client.
    pub addresses: Option<(SocketAddr, SocketAddr)>,
    /// Version 2 TLVs Strait reads (empty for version 1).
    pub tlvs: Tlvs,
}

impl ProxyHeader {
    /// The client's address, when the header names one.
    pub fn source(&self) -> Option<SocketAddr> {
        self.addresses.map(|(source, _)| source)
    }
}

/// Why a header is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("version 1 header longer than 107 bytes")]
    V1TooLong,
    #[error("version 1 header with a bare LF or a stray byte")]
    V1Syntax,
    #[error("version 1 protocol is not TCP4, TCP6 or UNKNOWN")]
    V1Protocol,
    #[error("version 1 address is not of its protocol's family")]
    V1Address,
    #[error("version 1 port is not a decimal number up to 65535")]
    V1Port,
    #[error("version 2 header with a version other than 2")]
    V2Version,
    #[error("version 2 command is neither LOCAL nor PROXY")]
    V2Command,
    #[error("version 2 address family or transport is unknown")]
    V2Family,
    #[error("version 2 length exceeds the limit")]
    V2TooLong,
    #[error("version 2 length too short for its address family")]
    V2Length,
    #[error("version 2 TLV runs past the header")]
    V2Tlv,
}

/// Reads a PROXY header at the start of `input`.
pub fn parse(input: &[u8]) -> Parsed {
    match input.first() {
        None => Parsed::Incomplete,
        Some(b'P') => v1::parse(input),
        Some(0x0D) => v2::parse(input),
        Some(_) => Parsed::NotProxy,
    }
}

/// Whether `input` begins with `signature`: `Some(true)` when it does, `Some(false)` when
/// it cannot, `None` while it is a shorter prefix of it.
fn signature(input: &[u8], signature: &[u8]) -> Option<bool> {
    let n = input.len().min(signature.len());
    if input[..n] != signature[..n] {
        Some(false)
    } else if n < signature.len() {
        None
    } else {
        Some(true)
    }
}

#[cfg(test)]
mod tests;
