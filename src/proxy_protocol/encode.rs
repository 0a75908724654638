//! Writing a header for an upstream: the client's address and the address it reached
//! Strait on, in version 1 or version 2 (PROXY command, STREAM transport, no TLV). When
//! the two addresses are of different families, the IPv4 one is written IPv4-mapped, so
//! that the header has one family as both versions require.

use std::net::{IpAddr, SocketAddr};

use super::v2::{
    COMMAND_LOCAL, COMMAND_PROXY, FAMILY_INET, FAMILY_INET6, FAMILY_UNSPEC, INET6_BYTES,
    INET_BYTES, SIGNATURE,
};
use super::ProxyVersion;

/// Version 2, high nibble; STREAM transport, low nibble.
const VERSION_2: u8 = 0x20;
const TRANSPORT_STREAM: u8 = 0x1;

/// The header of a connection that carries no client's traffic (a health check): version
/// 1 `UNKNOWN`, version 2 `LOCAL`. The receiver keeps the TCP peer as the client.
pub fn encode_local(version: ProxyVersion) -> Vec<u8> {
    match version {
        ProxyVersion::V1 => b"PROXY UNKNOWN\r\n".to_vec(),
        ProxyVersion::V2 => {
            let mut out = SIGNATURE.to_vec();
            out.extend_from_slice(&[VERSION_2 | COMMAND_LOCAL, FAMILY_UNSPEC << 4, 0, 0]);
            out
        }
    }
}

/// The header announcing a connection from `source` to `destination`.
pub fn encode(version: ProxyVersion, source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let (source, destination) = same_family(source, destination);
    match version {
        ProxyVersion::V1 => {
            let protocol = if source.is_ipv4() { "TCP4" } else { "TCP6" };
            format!(
                "PROXY {protocol} {} {} {} {}\r\n",
                source.ip(),
                destination.ip(),
                source.port(),
                destination.port()
            )
            .into_bytes()
        }
        ProxyVersion::V2 => {
            let mut out = Vec::with_capacity(16 + INET6_BYTES);
            out.extend_from_slice(SIGNATURE);
            out.push(VERSION_2 | COMMAND_PROXY);
            match (source.ip(), destination.ip()) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    out.push(FAMILY_INET << 4 | TRANSPORT_STREAM);
                    out.extend_from_slice(&(INET_BYTES as u16).to_be_bytes());
                    out.extend_from_slice(&s.octets());
                    out.extend_from_slice(&d.octets());
                }
                (s, d) => {
                    out.push(FAMILY_INET6 << 4 | TRANSPORT_STREAM);
                    out.extend_from_slice(&(INET6_BYTES as u16).to_be_bytes());
                    out.extend_from_slice(&v6(s).octets());
                    out.extend_from_slice(&v6(d).octets());
                }
            }
            out.extend_from_slice(&source.port().to_be_bytes());
            out.extend_from_slice(&destination.port().to_be_bytes());
            out
        }
    }
}

/// Both addresses canonical (IPv4-mapped IPv6 read as IPv4), then both IPv6 if either is.
fn same_family(source: SocketAddr, destination: SocketAddr) -> (SocketAddr, SocketAddr) {
    let canonical = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
    let (s, d) = (canonical(source), canonical(destination));
    if s.is_ipv4() == d.is_ipv4() {
        return (s, d);
    }
    let mapped = |a: SocketAddr| SocketAddr::new(IpAddr::V6(v6(a.ip())), a.port());
    (mapped(s), mapped(d))
}

fn v6(ip: IpAddr) -> std::net::Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}
