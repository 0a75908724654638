//! What the gateway reads of gRPC (over HTTP/2, the gRPC spec's PROTOCOL-HTTP2): whether
//! a request is a gRPC call, and its `grpc-timeout`, which becomes the request's deadline.

use std::time::Duration;

/// A `content-type` of a gRPC call: `application/grpc`, alone or with a `+proto` or
/// `;params` suffix.
pub fn is_grpc(content_type: &[u8]) -> bool {
    match content_type.strip_prefix(b"application/grpc") {
        Some(rest) => rest.is_empty() || rest[0] == b'+' || rest[0] == b';',
        None => false,
    }
}

/// A `grpc-timeout` value: at most 8 digits and a unit (H, M, S, m, u, n).
pub fn timeout(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        for (value, want) in [
            (&b"application/grpc"[..], true),
            (b"application/grpc+proto", true),
            (b"application/grpc;charset=utf-8", true),
            (b"application/grpc-web", false),
            (b"application/json", false),
            (b"", false),
        ] {
            assert_eq!(is_grpc(value), want, "{}", String::from_utf8_lossy(value));
        }
    }

    #[test]
    fn timeouts() {
        for (value, want) in [
            (&b"1S"[..], Some(Duration::from_secs(1))),
            (b"250m", Some(Duration::from_millis(250))),
            (b"2H", Some(Duration::from_secs(7200))),
            (b"99999999n", Some(Duration::from_nanos(99_999_999))),
            (b"123456789S", None),
            (b"S", None),
            (b"10x", None),
            (b"-1S", None),
            (b"", None),
        ] {
            assert_eq!(timeout(value), want, "{}", String::from_utf8_lossy(value));
        }
    }
}
