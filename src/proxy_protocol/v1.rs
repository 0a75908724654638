//! Version 1, the text form: `PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n`, or
//! `PROXY UNKNOWN` followed by anything up to the CRLF. At most 107 bytes; single spaces;
//! addresses of the protocol's family; ports decimal in 0..=65535.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{signature, Invalid, Parsed, ProxyHeader, ProxyVersion, Tlvs, MAX_V1_BYTES};

const SIGNATURE: &[u8] = b"PROXY ";

pub(super) fn parse(input: &[u8]) -> Parsed {
    match signature(input, SIGNATURE) {
        None => return Parsed::Incomplete,
        Some(false) => return Parsed::NotProxy,
        Some(true) => {}
    }
    let window = &input[..input.len().min(MAX_V1_BYTES)];
    let Some(lf) = memchr::memchr(b'\n', window) else {
        return if input.len() >= MAX_V1_BYTES {
            Parsed::Invalid(Invalid::V1TooLong)
        } else {
            Parsed::Incomplete
        };
    };
    let Some(line) = window[..lf].strip_suffix(b"\r") else {
        return Parsed::Invalid(Invalid::V1Syntax);
    };
    match fields(&line[SIGNATURE.len()..]) {
        Ok(addresses) => Parsed::Complete {
            header: ProxyHeader {
                version: ProxyVersion::V1,
                addresses,
                tlvs: Tlvs::default(),
            },
            consumed: lf + 1,
        },
        Err(why) => Parsed::Invalid(why),
    }
}

/// The fields after `PROXY `, without the CRLF.
fn fields(rest: &[u8]) -> Result<Option<(SocketAddr, SocketAddr)>, Invalid> {
    if rest == b"UNKNOWN" || rest.starts_with(b"UNKNOWN ") {
        // The receiver must ignore what follows UNKNOWN (and keep the TCP peer).
        return Ok(None);
    }
    let mut parts = rest.split(|&b| b == b' ');
    let protocol = parts.next().ok_or(Invalid::V1Protocol)?;
    let v6 = match protocol {
        b"TCP4" => false,
        b"TCP6" => true,
        _ => return Err(Invalid::V1Protocol),
    };
    let (Some(src), Some(dst), Some(sport), Some(dport), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(Invalid::V1Syntax);
    };
    let source = SocketAddr::new(address(src, v6)?, port(sport)?);
    let destination = SocketAddr::new(address(dst, v6)?, port(dport)?);
    Ok(Some((source, destination)))
}

fn address(text: &[u8], v6: bool) -> Result<IpAddr, Invalid> {
    let text = std::str::from_utf8(text).map_err(|_| Invalid::V1Address)?;
    let parsed = if v6 {
        text.parse::<Ipv6Addr>().map(IpAddr::V6)
    } else {
        text.parse::<Ipv4Addr>().map(IpAddr::V4)
    };
    parsed.map_err(|_| Invalid::V1Address)
}

/// 1 to 5 decimal digits, at most 65535.
fn port(text: &[u8]) -> Result<u16, Invalid> {
    if text.is_empty() || text.len() > 5 || !text.iter().all(u8::is_ascii_digit) {
        return Err(Invalid::V1Port);
    }
    let value = text.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'));
    u16::try_from(value).map_err(|_| Invalid::V1Port)
}
