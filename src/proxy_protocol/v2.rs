//! Version 2, the binary form: a 12-byte signature, version and command, family and
//! transport, a big-endian length, the addresses, then TLVs (`tlv.rs`).
//!
//! Commands: LOCAL (the balancer's own connection, a health check: addresses ignored) and
//! PROXY. Families: UNSPEC and UNIX carry no address Strait can use (the TCP peer stays
//! the client), INET and INET6 do. A length past [`MAX_V2_BODY_BYTES`] is refused before
//! its bytes are awaited.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{signature, tlv, Invalid, Parsed, ProxyHeader, ProxyVersion, Tlvs, MAX_V2_BODY_BYTES};

pub(super) const SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Signature, version/command, family/transport, length.
pub(super) const FIXED_BYTES: usize = 16;
pub(super) const INET_BYTES: usize = 12;
pub(super) const INET6_BYTES: usize = 36;
const UNIX_BYTES: usize = 216;

pub(super) const COMMAND_LOCAL: u8 = 0x0;
pub(super) const COMMAND_PROXY: u8 = 0x1;
pub(super) const FAMILY_UNSPEC: u8 = 0x0;
pub(super) const FAMILY_INET: u8 = 0x1;
pub(super) const FAMILY_INET6: u8 = 0x2;
const FAMILY_UNIX: u8 = 0x3;
/// Transports: UNSPEC, STREAM, DGRAM.
const MAX_TRANSPORT: u8 = 0x2;

pub(super) fn parse(input: &[u8]) -> Parsed {
    match signature(input, SIGNATURE) {
        None => return Parsed::Incomplete,
        Some(false) => return Parsed::NotProxy,
        Some(true) => {}
    }
    let Some((&[.., ver_cmd, fam, hi, lo], _)) = input.split_first_chunk::<FIXED_BYTES>() else {
        return Parsed::Incomplete;
    };
    if ver_cmd >> 4 != 2 {
        return Parsed::Invalid(Invalid::V2Version);
    }
    let command = ver_cmd & 0x0F;
    if command != COMMAND_LOCAL && command != COMMAND_PROXY {
        return Parsed::Invalid(Invalid::V2Command);
    }
    let (family, transport) = (fam >> 4, fam & 0x0F);
    let address_bytes = match family {
        FAMILY_UNSPEC => 0,
        FAMILY_INET => INET_BYTES,
        FAMILY_INET6 => INET6_BYTES,
        FAMILY_UNIX => UNIX_BYTES,
        _ => return Parsed::Invalid(Invalid::V2Family),
    };
    if transport > MAX_TRANSPORT {
        return Parsed::Invalid(Invalid::V2Family);
    }
    let length = usize::from(u16::from_be_bytes([hi, lo]));
    if length > MAX_V2_BODY_BYTES {
        return Parsed::Invalid(Invalid::V2TooLong);
    }
    // LOCAL may carry any family's block, or none; PROXY must carry its family's.
    if command == COMMAND_PROXY && length < address_bytes {
        return Parsed::Invalid(Invalid::V2Length);
    }
    let Some(body) = input.get(FIXED_BYTES..FIXED_BYTES + length) else {
        return Parsed::Incomplete;
    };
    let address_bytes = if length < address_bytes {
        0
    } else {
        address_bytes
    };
    let (block, tlv_bytes) = body.split_at(address_bytes);
    let tlvs = match tlv::parse(tlv_bytes) {
        Ok(tlvs) => tlvs,
        Err(why) => return Parsed::Invalid(why),
    };
    let addresses = if command == COMMAND_PROXY {
        addresses(family, block)
    } else {
        None
    };
    Parsed::Complete {
        header: ProxyHeader {
            version: ProxyVersion::V2,
            addresses,
            tlvs: if command == COMMAND_PROXY {
                tlvs
            } else {
                Tlvs::default()
            },
        },
        consumed: FIXED_BYTES + length,
    }
}

/// Source and destination of an INET or INET6 block (`None` for the other families).
fn addresses(family: u8, block: &[u8]) -> Option<(SocketAddr, SocketAddr)> {
    let (source, destination, ports): (IpAddr, IpAddr, &[u8]) = match family {
        FAMILY_INET => {
            let (source, rest) = block.split_first_chunk::<4>()?;
            let (destination, rest) = rest.split_first_chunk::<4>()?;
            (
                Ipv4Addr::from(*source).into(),
                Ipv4Addr::from(*destination).into(),
                rest,
            )
        }
        FAMILY_INET6 => {
            let (source, rest) = block.split_first_chunk::<16>()?;
            let (destination, rest) = rest.split_first_chunk::<16>()?;
            (
                Ipv6Addr::from(*source).into(),
                Ipv6Addr::from(*destination).into(),
                rest,
            )
        }
        _ => return None,
    };
    let (&[s0, s1, d0, d1], _) = ports.split_first_chunk::<4>()?;
    Some((
        SocketAddr::new(source, u16::from_be_bytes([s0, s1])),
        SocketAddr::new(destination, u16::from_be_bytes([d0, d1])),
    ))
}
