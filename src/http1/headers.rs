//! Header-value helpers shared by the request and response parsers: comma-separated token
//! lists, Content-Length values, and the hop-by-hop set a proxy must not forward
//! (RFC 9110 §7.6.1); and the value of one named header of a parsed request head, for the
//! layers above (a hash key, an API key, a rate-limit key).

use super::request::Method;
use super::{BodyFraming, HeaderSpan, RequestHead, Version};

/// Iterates the comma-separated elements of a list header, trimmed of optional whitespace,
/// skipping empty elements (RFC 9110 §5.6.1).
pub fn list_tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|t| !t.is_empty())
}

pub fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// The (already OWS-trimmed) value of the first header named `name`, case-insensitively.
pub fn header_value<'a>(raw: &'a [u8], head: &RequestHead, name: &[u8]) -> Option<&'a [u8]> {
    head.headers.iter().find_map(|h| {
        let header_name = raw.get(h.name.0 as usize..h.name.1 as usize)?;
        if header_name.eq_ignore_ascii_case(name) {
            raw.get(h.value.0 as usize..h.value.1 as usize)
        } else {
            None
        }
    })
}

/// Whether any `name` header lists `token`, case-insensitively (`Connection: upgrade`).
pub fn lists_token(raw: &[u8], headers: &[HeaderSpan], name: &[u8], token: &[u8]) -> bool {
    headers
        .iter()
        .filter(|h| h.name(raw).eq_ignore_ascii_case(name))
        .any(|h| list_tokens(h.value(raw)).any(|t| t.eq_ignore_ascii_case(token)))
}

/// A WebSocket opening handshake (RFC 6455 §4.1, RFC 9110 §7.8): an HTTP/1.1 GET without a
/// body whose Connection lists `upgrade` and whose Upgrade lists `websocket`.
pub fn is_websocket_upgrade(raw: &[u8], head: &RequestHead) -> bool {
    head.method == Method::Get
        && head.version == Version::Http11
        && head.framing == BodyFraming::Length(0)
        && lists_token(raw, &head.headers, b"connection", b"upgrade")
        && lists_token(raw, &head.headers, b"upgrade", b"websocket")
}

/// Parses a Content-Length value: one or more digits, nothing else (RFC 9110 §8.6). A list
/// such as `5, 5` is refused rather than collapsed: a proxy that forwards what it could not
/// read exactly is how smuggling starts.
pub fn parse_content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 19 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in value {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(b - b'0');
    }
    Some(n)
}

/// Headers that describe one connection and never travel past a proxy, in lower case.
/// Content-Length and Transfer-Encoding are here too because Strait always writes its own
/// framing for the next hop.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    const HOP: [&[u8]; 10] = [
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
        b"proxy-authenticate",
        b"proxy-authorization",
    ];
    HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// True when `name` is listed in any of the Connection header values (those headers are
/// hop-by-hop too, RFC 9112 §9.6).
pub fn is_nominated(name: &[u8], connection_values: &[&[u8]]) -> bool {
    connection_values
        .iter()
        .any(|v| list_tokens(v).any(|t| t.eq_ignore_ascii_case(name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_values() {
        let cases: &[(&[u8], Option<u64>)] = &[
            (b"0", Some(0)),
            (b"42", Some(42)),
            (b"007", Some(7)),
            (b"9999999999999999999", Some(9_999_999_999_999_999_999)),
            (b"99999999999999999999", None),
            (b"", None),
            (b"+5", None),
            (b"-5", None),
            (b"5 ", None),
            (b"5,5", None),
            (b"0x10", None),
            (b"1_000", None),
        ];
        for (input, want) in cases {
            assert_eq!(
                parse_content_length(input),
                *want,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn websocket_upgrades_are_recognised() {
        let limits = crate::http1::Limits {
            max_header_bytes: 4096,
            max_headers: 16,
            max_body_bytes: 1024,
            max_uri_bytes: 256,
        };
        let cases: &[(&str, bool)] = &[
            ("GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", true),
            ("GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, upgrade\r\nUpgrade: WebSocket\r\n\r\n", true),
            ("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n", false),
            ("GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n", false),
            ("POST / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", false),
            ("GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: websocket\r\nContent-Length: 2\r\n\r\n", false),
            ("GET / HTTP/1.0\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", false),
        ];
        for (raw, want) in cases {
            let head = crate::http1::parse_request_head(raw.as_bytes(), &limits).unwrap();
            assert_eq!(
                is_websocket_upgrade(raw.as_bytes(), &head),
                *want,
                "{raw:?}"
            );
        }
    }

    #[test]
    fn tokens_are_trimmed() {
        let got: Vec<&[u8]> = list_tokens(b" close ,, X-Foo\t,").collect();
        assert_eq!(got, vec![&b"close"[..], &b"X-Foo"[..]]);
        assert!(is_nominated(b"x-foo", &[b"keep-alive, X-Foo"]));
        assert!(!is_nominated(b"x-bar", &[b"keep-alive, X-Foo"]));
    }
}
