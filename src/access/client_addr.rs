//! The client address of a request: the TCP peer, or, when the peer is one of
//! `[server] trusted_proxies`, the address those proxies recorded in `X-Forwarded-For`.
//!
//! Where it sits: right after the request head is parsed, before the access lists. The
//! result is what the access lists, `client_ip` rate-limit keys, `hash` balancing, the
//! access log and tracing see. The upstream's `X-Forwarded-For` is unaffected: it stays the
//! client's list with the TCP peer appended.
//!
//! The walk (nginx's `real_ip_recursive`): every `X-Forwarded-For` line, joined in order,
//! is read from the right; each entry a trusted proxy added is skipped, and the first entry
//! that is not a trusted proxy is the client, since only entries right of it were written by
//! proxies we trust (anything to its left the client may have forged). A malformed entry
//! (not a bare IP address: `unknown`, `1.2.3.4:80`, garbage) stops the walk and the last good
//! address stands, which is the peer or a trusted proxy, never a client-controlled value
//! read past the malformed one. Empty list elements are skipped (RFC 9110 §5.6.1). At most
//! [`MAX_FORWARDED_HOPS`] entries are read, so the work per request is bounded.

use std::net::IpAddr;

use crate::access::Cidr;
use crate::http1::headers::trim_ows;
use crate::http1::HeaderSpan;

/// Entries of `X-Forwarded-For` read at most; past them the last address read stands.
pub const MAX_FORWARDED_HOPS: usize = 32;

/// Longest text form of an IP address (`ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255`).
const MAX_IP_TEXT: usize = 45;

/// The client address of a request from `peer` whose head is `raw` with `headers`.
pub fn client_address(
    trusted: &[Cidr],
    peer: IpAddr,
    raw: &[u8],
    headers: &[HeaderSpan],
) -> IpAddr {
    if !is_trusted(trusted, peer) {
        return peer;
    }
    let entries = headers
        .iter()
        .rev()
        .filter(|h| h.name(raw).eq_ignore_ascii_case(b"x-forwarded-for"))
        .flat_map(|h| h.value(raw).rsplit(|&b| b == b','))
        .map(trim_ows)
        .filter(|entry| !entry.is_empty());
    let mut client = peer;
    for entry in entries.take(MAX_FORWARDED_HOPS) {
        let Some(addr) = parse_ip(entry) else { break };
        client = addr;
        if !is_trusted(trusted, addr) {
            break;
        }
    }
    client
}

fn is_trusted(trusted: &[Cidr], addr: IpAddr) -> bool {
    trusted.iter().any(|cidr| cidr.contains(addr))
}

/// A bare IPv4 or IPv6 address, IPv4-mapped IPv6 read as the IPv4 address it is (so that
/// one client has one rate-limit key whatever its spelling).
fn parse_ip(entry: &[u8]) -> Option<IpAddr> {
    if entry.len() > MAX_IP_TEXT {
        return None;
    }
    let text = std::str::from_utf8(entry).ok()?;
    text.parse::<IpAddr>().ok().map(|addr| addr.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::parse_request_head;
    use crate::http1::Limits;

    fn walk(trusted: &[&str], peer: &str, xff: &[&str]) -> String {
        let trusted: Vec<Cidr> = trusted.iter().map(|c| Cidr::parse(c).unwrap()).collect();
        let mut raw = String::from("GET / HTTP/1.1\r\nHost: t\r\n");
        for line in xff {
            raw.push_str(&format!("X-Forwarded-For: {line}\r\nX-Other: 9.9.9.9\r\n"));
        }
        raw.push_str("\r\n");
        let limits = Limits {
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            max_body_bytes: 0,
            max_uri_bytes: 256,
        };
        let head = parse_request_head(raw.as_bytes(), &limits).unwrap();
        client_address(
            &trusted,
            peer.parse().unwrap(),
            raw.as_bytes(),
            &head.headers,
        )
        .to_string()
    }

    #[test]
    fn walks_from_the_right() {
        let proxies = ["10.0.0.0/8", "::1"];
        // (trusted, peer, X-Forwarded-For lines, client)
        let cases: &[(&[&str], &str, &[&str], &str)] = &[
            // No trusted proxies, or an untrusted peer: the header is ignored.
            (&[], "10.1.1.1", &["1.2.3.4"], "10.1.1.1"),
            (&proxies, "192.0.2.1", &["1.2.3.4"], "192.0.2.1"),
            // A trusted peer without the header: the peer.
            (&proxies, "10.1.1.1", &[], "10.1.1.1"),
            (&proxies, "10.1.1.1", &["1.2.3.4"], "1.2.3.4"),
            (&proxies, "::1", &["2001:db8::1"], "2001:db8::1"),
            // Forged entries left of the first untrusted one are never read.
            (&proxies, "10.1.1.1", &["6.6.6.6, 1.2.3.4"], "1.2.3.4"),
            (
                &proxies,
                "10.1.1.1",
                &["10.9.9.9, 1.2.3.4, 10.0.0.2"],
                "1.2.3.4",
            ),
            // Several lines are one list, in order.
            (
                &proxies,
                "10.1.1.1",
                &["6.6.6.6, 1.2.3.4", "10.0.0.2"],
                "1.2.3.4",
            ),
            (
                &proxies,
                "10.1.1.1",
                &["6.6.6.6", "1.2.3.4, 10.0.0.2"],
                "1.2.3.4",
            ),
            // Every entry trusted: the leftmost.
            (&proxies, "10.1.1.1", &["10.0.0.3, 10.0.0.2"], "10.0.0.3"),
            // Malformed entries stop the walk: the last good address stands.
            (&proxies, "10.1.1.1", &["1.2.3.4, unknown"], "10.1.1.1"),
            (
                &proxies,
                "10.1.1.1",
                &["1.2.3.4, 10.0.0.2, 1.2.3.4:80"],
                "10.1.1.1",
            ),
            (
                &proxies,
                "10.1.1.1",
                &["1.2.3.4, garbage, 10.0.0.2"],
                "10.0.0.2",
            ),
            (
                &proxies,
                "10.1.1.1",
                &["1.2.3.4, [2001:db8::1]"],
                "10.1.1.1",
            ),
            (&proxies, "10.1.1.1", &["1.2.3.4, 01.2.3.4"], "10.1.1.1"),
            // Empty elements are skipped; whitespace trimmed.
            (&proxies, "10.1.1.1", &["1.2.3.4 ,, \t"], "1.2.3.4"),
            // IPv4-mapped addresses are the IPv4 address; IPv6 spelled canonically.
            (&proxies, "10.1.1.1", &["::ffff:1.2.3.4"], "1.2.3.4"),
            (&proxies, "10.1.1.1", &["::ffff:10.0.0.5"], "10.0.0.5"),
            (&proxies, "::ffff:10.1.1.1", &["1.2.3.4"], "1.2.3.4"),
            (&proxies, "10.1.1.1", &["2001:DB8:0:0::1"], "2001:db8::1"),
        ];
        for (trusted, peer, xff, want) in cases {
            assert_eq!(
                walk(trusted, peer, xff),
                *want,
                "{trusted:?} {peer} {xff:?}"
            );
        }
    }

    #[test]
    fn stops_after_the_hop_limit() {
        let forged: Vec<String> = (0..100)
            .map(|i| format!("10.0.{}.{}", i / 256, i % 256))
            .collect();
        let line = format!("1.2.3.4, {}", forged.join(", "));
        // The walk stops at the 32nd entry from the right, a trusted address.
        let want = forged[forged.len() - MAX_FORWARDED_HOPS].clone();
        assert_eq!(walk(&["10.0.0.0/8"], "10.1.1.1", &[&line]), want);
        let long = format!("{}1", "1".repeat(MAX_IP_TEXT));
        assert_eq!(walk(&["10.0.0.0/8"], "10.1.1.1", &[&long]), "10.1.1.1");
    }
}
