//! The hash key of a request, for `balance = hash` upstreams: which bytes of the request
//! decide its endpoint (client IP, one header, one cookie, or the path), hashed with
//! [`stable_hash`].
//!
//! Sits between routing and the endpoint pick: the proxy computes the key once per request
//! and hands it to [`super::balancer::Balancer::pick`], which looks it up in the Maglev
//! table ([`super::maglev`]).
//!
//! Invariants: the hash is a fixed function of the bytes (FNV-1a 64 with a murmur3
//! finaliser, no per-process seed), so the same key lands on the same endpoint on every
//! worker, in every process, and after a restart. Nothing here allocates, and nothing
//! indexes the head bytes without a bounds check.

use super::config::HashKey;
use crate::http1::headers::{header_value, trim_ows};
use crate::http1::RequestHead;

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a 64 over `bytes`, then [`mix64`]. FNV alone is deterministic and cheap on the
/// short strings we hash (addresses, IPs, cookie values) but its low bits avalanche poorly,
/// and Maglev reduces the hash modulo the table size: the finaliser spreads every input bit
/// over the whole word first.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h = FNV_OFFSET_BASIS;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    mix64(h)
}

/// The murmur3 64-bit finaliser (`fmix64`): a bijection in which every input bit affects
/// every output bit.
pub fn mix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// The request's hash key, or `None` when the request does not carry it (the header or
/// cookie is absent or empty, or there is no client IP): such requests are balanced
/// round-robin rather than all piled onto the one endpoint an empty key would hash to.
///
/// `raw` is the head buffer `head` was parsed from; `client_ip` is the client address as
/// text (`192.0.2.7`, without the port, so that a client keeps its endpoint across
/// connections).
pub fn request_key(key: &HashKey, raw: &[u8], head: &RequestHead, client_ip: &[u8]) -> Option<u64> {
    let bytes = match key {
        HashKey::ClientIp => client_ip,
        HashKey::Header(name) => header_value(raw, head, name.as_bytes())?,
        HashKey::Cookie(name) => cookie_value(raw, head, name.as_bytes())?,
        HashKey::Path => {
            let path = raw.get(head.target.0 as usize..head.path_end as usize)?;
            // An absolute-form target without a path (`http://h`) means `/`.
            if path.is_empty() {
                b"/"
            } else {
                path
            }
        }
    };
    if bytes.is_empty() {
        return None;
    }
    Some(stable_hash(bytes))
}

/// The value of the first cookie named `name` (case-sensitive, RFC 6265 §5.4) across every
/// Cookie header, in order.
fn cookie_value<'a>(raw: &'a [u8], head: &RequestHead, name: &[u8]) -> Option<&'a [u8]> {
    head.headers.iter().find_map(|h| {
        let header_name = raw.get(h.name.0 as usize..h.name.1 as usize)?;
        if !header_name.eq_ignore_ascii_case(b"cookie") {
            return None;
        }
        find_cookie(raw.get(h.value.0 as usize..h.value.1 as usize)?, name)
    })
}

/// Finds `name` in one Cookie header value, `a=1; b=2` (RFC 6265 §4.2.1, read leniently as
/// §5.4 asks: pairs split on `;`, whitespace around names and values ignored, a pair
/// without `=` skipped). A value in double quotes is returned without them, so that `"x"`
/// and `x` keep the same endpoint.
fn find_cookie<'a>(header: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    header.split(|&b| b == b';').find_map(|pair| {
        let eq = memchr::memchr(b'=', pair)?;
        let (pair_name, rest) = pair.split_at(eq);
        if trim_ows(pair_name) != name {
            return None;
        }
        let value = trim_ows(rest.get(1..)?);
        Some(match value {
            [b'"', inner @ .., b'"'] => inner,
            _ => value,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::parse_request_head;
    use crate::http1::Limits;

    const LIMITS: Limits = Limits {
        max_header_bytes: 4096,
        max_headers: 32,
        max_body_bytes: 1024,
        max_uri_bytes: 1024,
    };

    fn key_of(key: &HashKey, raw: &str, client_ip: &str) -> Option<u64> {
        let head = parse_request_head(raw.as_bytes(), &LIMITS).unwrap();
        request_key(key, raw.as_bytes(), &head, client_ip.as_bytes())
    }

    fn h(s: &str) -> Option<u64> {
        Some(stable_hash(s.as_bytes()))
    }

    #[test]
    fn keys_come_from_the_configured_part_of_the_request() {
        let header = |n: &str| HashKey::Header(n.to_string());
        let cookie = |n: &str| HashKey::Cookie(n.to_string());
        let get = |extra: &str| format!("GET /a/b?x=1 HTTP/1.1\r\nHost: h\r\n{extra}\r\n");
        let cases: &[(HashKey, String, &str, Option<u64>)] = &[
            (HashKey::ClientIp, get(""), "192.0.2.7", h("192.0.2.7")),
            (HashKey::ClientIp, get(""), "", None),
            // Header: first occurrence, name case-insensitive, value trimmed.
            (header("x-user"), get("X-User:  alice \r\n"), "", h("alice")),
            (
                header("x-user"),
                get("x-user: bob\r\nX-User: alice\r\n"),
                "",
                h("bob"),
            ),
            (header("x-user"), get("X-Other: alice\r\n"), "", None),
            (header("x-user"), get("X-User:\r\n"), "", None),
            (header("x-us"), get("X-User: alice\r\n"), "", None),
            // Cookie: pairs split on `;`, spaces ignored, quotes stripped, exact names.
            (cookie("a"), get("Cookie: a=1; b=2\r\n"), "", h("1")),
            (cookie("b"), get("Cookie: a=1; b=2\r\n"), "", h("2")),
            (cookie("b"), get("Cookie: a=1;b=2\r\n"), "", h("2")),
            (cookie("b"), get("Cookie:a=1 ;  b = 2 \r\n"), "", h("2")),
            (cookie("a"), get("Cookie: ab=1; a=2\r\n"), "", h("2")),
            (cookie("ab"), get("Cookie: a=1; ab=2\r\n"), "", h("2")),
            (cookie("a"), get("Cookie: ab=1; ba=2; xa=3\r\n"), "", None),
            (cookie("a"), get("Cookie: a=\"q v\"\r\n"), "", h("q v")),
            (cookie("a"), get("Cookie: a=\"\r\n"), "", h("\"")),
            (cookie("a"), get("Cookie: a=x=y\r\n"), "", h("x=y")),
            (cookie("a"), get("Cookie: a=1; a=2\r\n"), "", h("1")),
            (cookie("a"), get("Cookie: a; a=3\r\n"), "", h("3")),
            (cookie("a"), get("Cookie: a=\r\n"), "", None),
            (cookie("a"), get("Cookie: a=\"\"\r\n"), "", None),
            (cookie("A"), get("Cookie: a=1\r\n"), "", None),
            (
                cookie("a"),
                get("Cookie: b=1\r\ncookie: a=2\r\n"),
                "",
                h("2"),
            ),
            (cookie("a"), get("X-Cookie: a=1\r\n"), "", None),
            (cookie("a"), get(""), "", None),
            // Path: without the query.
            (HashKey::Path, get(""), "", h("/a/b")),
            (
                HashKey::Path,
                "GET /a/b HTTP/1.1\r\nHost: h\r\n\r\n".to_string(),
                "",
                h("/a/b"),
            ),
            (
                HashKey::Path,
                "GET http://h HTTP/1.1\r\nHost: h\r\n\r\n".to_string(),
                "",
                h("/"),
            ),
        ];
        for (key, raw, ip, want) in cases {
            assert_eq!(key_of(key, raw, ip), *want, "{key:?} {raw:?} {ip:?}");
        }
    }

    #[test]
    fn stable_hash_is_a_fixed_function() {
        // Pinned values: a change here remaps every hashed client in production.
        let cases: &[(&[u8], u64)] = &[
            (b"", mix64(FNV_OFFSET_BASIS)),
            (b"a", mix64(0xaf63_dc4c_8601_ec8c)),
        ];
        for (input, want) in cases {
            assert_eq!(stable_hash(input), *want, "{input:?}");
        }
        assert_ne!(stable_hash(b"ab"), stable_hash(b"ba"));
    }
}
