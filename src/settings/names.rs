//! Checks on the names and tokens a config file carries: header and method tokens, the
//! names of sections and entries, `Host` values and host patterns.

use std::net::Ipv6Addr;

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

/// Validates and normalises one `hosts` entry: lower-cased, one trailing dot removed.
/// Accepts DNS names, IPv4 literals, bracketed IPv6 literals and `*.` wildcards of DNS names.
pub fn normalize_host_pattern(pattern: &str) -> Result<String, String> {
    let lower = pattern.to_ascii_lowercase();
    let (wild, name) = match lower.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, lower.as_str()),
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name == "*" {
        return Err("empty host name (omit `hosts` to match any host)".to_owned());
    }
    if let Some(inner) = name.strip_prefix('[') {
        let Some(inner) = inner.strip_suffix(']') else {
            return Err("IPv6 literal must be written as [addr] without a port".to_owned());
        };
        if wild {
            return Err("a wildcard cannot apply to an IP address".to_owned());
        }
        inner
            .parse::<Ipv6Addr>()
            .map_err(|_| format!("invalid IPv6 literal [{inner}]"))?;
        return Ok(name.to_owned());
    }
    if name.contains(':') {
        return Err("must not include a port (hosts match on the name only)".to_owned());
    }
    if name.len() > 253 {
        return Err("host name longer than 253 bytes".to_owned());
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("empty label (\"..\" or a leading dot)".to_owned());
        }
        if label.contains('*') {
            return Err("`*` is only allowed as a whole first label (`*.example.com`)".to_owned());
        }
        if let Some(bad) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(format!("invalid character {bad:?} in host name"));
        }
    }
    Ok(if wild {
        format!("*.{name}")
    } else {
        name.to_owned()
    })
}
