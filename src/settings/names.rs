//! Checks on the names and tokens a config file carries: header and method tokens, the
//! names of sections and entries, `Host` values.

/// RFC 9110 §5.6.2 `tchar`: the characters of a method or header-name token.
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A method or header-name token (RFC 9110 §5.6.2).
pub fn is_token(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(is_tchar)
}

/// The name of an upstream, consumer, provider or rate limit: letters, digits, '-', '_'
/// and '.', so that it is safe in a header value, a metric label and a Redis key.
pub fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// A `Host` value as configured: `host` or `host:port` (IPv6 in brackets).
pub fn is_host_header(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:[]".contains(&b))
}

/// `bytes` without one trailing line break (`\n` or `\r\n`): what an editor or `echo`
/// appends to a secret kept in a file.
pub fn strip_line_end(bytes: &[u8]) -> &[u8] {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    bytes.strip_suffix(b"\r").unwrap_or(bytes)
}
