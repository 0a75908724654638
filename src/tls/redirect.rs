//! A route's `https_redirect`: a request that came over plaintext is answered with a
//! redirect to the same host and target over HTTPS, by the route's `HttpsRedirect` filter
//! (the first of its filters: nothing else about the route is revealed over plaintext). A
//! request that came over TLS passes, so one route serves both listeners.
//!
//! `https_redirect = true`, or a table `{ port = 8443, status = 308 }`. The port defaults
//! to the first `[[server.tls]]` listener's (omitted from the URL when 443). The status
//! defaults to 301 for GET and HEAD and to 308 for other methods: 308, unlike 301, keeps
//! the method and body (RFC 9110 §15.4.9), so a POST is not turned into a GET.
//!
//! The answer's head is rendered at config load up to the host; a request adds its host
//! (without its port), the port, and its target.

use std::fmt::{self, Write as _};

use bytes::{Bytes, BytesMut};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

use super::ListenerFacts;
use crate::http1::reason_phrase;
use crate::http1::request::Method;
use crate::settings::Ctx;

/// The statuses a redirect may have: permanent or temporary, method kept or not.
const REDIRECT_STATUSES: [u16; 5] = [301, 302, 303, 307, 308];
const HTTPS_PORT: u16 = 443;

// ---- the file ----

/// `https_redirect = true | false` or `https_redirect = { port = N, status = N }`.
///
/// Deserialised by hand rather than `#[serde(untagged)]`, which would lose the table's
/// spans and `deny_unknown_fields` (as `upstream::config::FileEndpoint` explains).
#[derive(Debug)]
pub enum FileHttpsRedirect {
    Enabled(bool),
    Table(FileRedirectTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRedirectTable {
    pub port: Option<Spanned<i64>>,
    pub status: Option<Spanned<i64>>,
}

impl<'de> Deserialize<'de> for FileHttpsRedirect {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RedirectVisitor;
        impl<'de> Visitor<'de> for RedirectVisitor {
            type Value = FileHttpsRedirect;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true, false, or a table { port = 8443, status = 308 }")
            }
            fn visit_bool<E: de::Error>(self, value: bool) -> Result<FileHttpsRedirect, E> {
                Ok(FileHttpsRedirect::Enabled(value))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FileHttpsRedirect, A::Error> {
                FileRedirectTable::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(FileHttpsRedirect::Table)
            }
        }
        deserializer.deserialize_any(RedirectVisitor)
    }
}

// ---- runtime ----

/// A route's redirect to HTTPS, rendered at load.
#[derive(Debug, PartialEq, Eq)]
pub struct HttpsRedirect {
    /// The head up to the Location's host, for GET and HEAD, and for other methods.
    safe: Rendered,
    other: Rendered,
    /// `:8443`, or empty for 443.
    port: Bytes,
}

#[derive(Debug, PartialEq, Eq)]
struct Rendered {
    status: u16,
    /// Status line, `content-length: 0`, then `location: https://` (no line end).
    head: Bytes,
}

impl Rendered {
    fn new(status: u16) -> Self {
        let head = format!(
            "HTTP/1.1 {status} {}\r\ncontent-length: 0\r\nlocation: https://",
            reason_phrase(status)
        );
        Rendered {
            status,
            head: Bytes::from(head),
        }
    }
}

impl HttpsRedirect {
    /// A redirect to `port`, with `status` for every method, or the defaults.
    fn new(port: u16, status: Option<u16>) -> Self {
        let mut suffix = String::new();
        if port != HTTPS_PORT {
            let _ = write!(suffix, ":{port}");
        }
        HttpsRedirect {
            safe: Rendered::new(status.unwrap_or(301)),
            other: Rendered::new(status.unwrap_or(308)),
            port: Bytes::from(suffix),
        }
    }

    /// Writes the head lines (without the blank line) of the redirect of a request of
    /// `method` for `target` whose host is `authority`; returns the status. `None` when
    /// the request names no host (HTTP/1.0 without Host): there is nowhere to send it.
    pub fn write_head(
        &self,
        method: Method,
        authority: Option<&[u8]>,
        target: &[u8],
        out: &mut BytesMut,
    ) -> Option<u16> {
        let host = host_without_port(authority?);
        let rendered = match method {
            Method::Get | Method::Head => &self.safe,
            _ => &self.other,
        };
        out.extend_from_slice(&rendered.head);
        out.extend_from_slice(host);
        out.extend_from_slice(&self.port);
        // An absolute-form `http://host` has an empty path; `OPTIONS *` names no resource.
        if target.first() == Some(&b'/') {
            out.extend_from_slice(target);
        } else {
            out.extend_from_slice(b"/");
        }
        out.extend_from_slice(b"\r\n");
        Some(rendered.status)
    }
}

/// The host of a validated authority (`is_valid_host`): `[::1]` of `[::1]:8080`,
/// `example.com` of `example.com:80`.
fn host_without_port(authority: &[u8]) -> &[u8] {
    if authority.first() == Some(&b'[') {
        return match memchr::memchr(b']', authority) {
            Some(end) => &authority[..=end],
            None => authority,
        };
    }
    match memchr::memrchr(b':', authority) {
        Some(colon) => &authority[..colon],
        None => authority,
    }
}

// ---- validation ----

/// A route's `https_redirect` at `key`: `None` when it is `false`, or wrong (reported).
pub fn build(
    ctx: &mut Ctx,
    value: &Spanned<FileHttpsRedirect>,
    key: &str,
    listeners: &ListenerFacts,
) -> Option<HttpsRedirect> {
    let (port, status) = match value.get_ref() {
        FileHttpsRedirect::Enabled(false) => return None,
        FileHttpsRedirect::Enabled(true) => (None, None),
        FileHttpsRedirect::Table(table) => (table.port.as_ref(), table.status.as_ref()),
    };
    let mut ok = true;
    let port = match port {
        Some(port) => {
            let n = ctx.count(port, &format!("{key}.port"), 1, u16::MAX.into());
            ok &= n.is_some();
            n.and_then(|n| u16::try_from(n).ok())
        }
        None => {
            if listeners.default_port.is_none() && listeners.complete {
                ctx.error(
                    value.span(),
                    key,
                    "no [[server.tls]] listener to take the HTTPS port from: set \
                     `https_redirect = { port = 443 }`",
                );
            }
            listeners.default_port
        }
    };
    let status = match status {
        None => None,
        Some(status) => {
            let n = *status.get_ref();
            match u16::try_from(n) {
                Ok(n) if REDIRECT_STATUSES.contains(&n) => Some(n),
                _ => {
                    let why =
                        format!("{n} is not a redirect status: expected 301, 302, 303, 307 or 308");
                    ctx.error(status.span(), format!("{key}.status"), why);
                    ok = false;
                    None
                }
            }
        }
    };
    let port = port.filter(|_| ok)?;
    Some(HttpsRedirect::new(port, status))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (port, configured status, method, authority, target, status, location)
    type Case<'a> = (
        u16,
        Option<u16>,
        Method,
        Option<&'a str>,
        &'a str,
        u16,
        &'a str,
    );

    #[test]
    fn the_location_keeps_host_and_target_and_takes_the_https_port() {
        let cases: &[Case<'_>] = &[
            (
                443,
                None,
                Method::Get,
                Some("example.com"),
                "/a?b=1",
                301,
                "https://example.com/a?b=1",
            ),
            (
                443,
                None,
                Method::Head,
                Some("example.com:80"),
                "/",
                301,
                "https://example.com/",
            ),
            (
                8443,
                None,
                Method::Get,
                Some("example.com:8080"),
                "/x",
                301,
                "https://example.com:8443/x",
            ),
            (
                8443,
                None,
                Method::Post,
                Some("example.com"),
                "/x",
                308,
                "https://example.com:8443/x",
            ),
            (
                443,
                None,
                Method::Delete,
                Some("[::1]:8080"),
                "/x",
                308,
                "https://[::1]/x",
            ),
            (
                443,
                None,
                Method::Get,
                Some("[::1]"),
                "/x",
                301,
                "https://[::1]/x",
            ),
            (
                443,
                Some(302),
                Method::Post,
                Some("h"),
                "/x",
                302,
                "https://h/x",
            ),
            (
                443,
                Some(307),
                Method::Get,
                Some("h"),
                "/x",
                307,
                "https://h/x",
            ),
            // Absolute-form `http://h` has an empty path; `OPTIONS *` names no resource.
            (443, None, Method::Get, Some("h"), "", 301, "https://h/"),
            (
                443,
                None,
                Method::Options,
                Some("h"),
                "*",
                308,
                "https://h/",
            ),
        ];
        for &(port, configured, method, authority, target, status, location) in cases {
            let mut out = BytesMut::new();
            let got = HttpsRedirect::new(port, configured).write_head(
                method,
                authority.map(str::as_bytes),
                target.as_bytes(),
                &mut out,
            );
            assert_eq!(got, Some(status), "{authority:?} {target}");
            let want = format!(
                "HTTP/1.1 {status} {}\r\ncontent-length: 0\r\nlocation: {location}\r\n",
                reason_phrase(status)
            );
            assert_eq!(String::from_utf8_lossy(&out), want);
        }
    }

    #[test]
    fn a_request_without_a_host_cannot_be_redirected() {
        let mut out = BytesMut::new();
        let got = HttpsRedirect::new(443, None).write_head(Method::Get, None, b"/", &mut out);
        assert_eq!(got, None);
        assert!(out.is_empty());
    }
}

#[cfg(test)]
mod config_tests {
    use crate::config::{load_errors as errors, load_str};

    const PLAIN: &str = "[server]\nlisten = [\"127.0.0.1:8080\"]\n\n[[routes]]\npath = \"/\"\n\
                         mock = { status = 200 }\n";

    #[test]
    fn redirect_settings_are_validated() {
        let cases: &[(&str, &[&str])] = &[
            ("https_redirect = false", &[]),
            ("https_redirect = { port = 8443 }", &[]),
            ("https_redirect = { port = 443, status = 307 }", &[]),
            (
                "https_redirect = true",
                &[
                    "t.toml:7:18: routes[0].https_redirect: no [[server.tls]] listener to take \
                   the HTTPS port from: set `https_redirect = { port = 443 }`",
                ],
            ),
            (
                "https_redirect = { port = 0, status = 200 }",
                &[
                    "t.toml:7:27: routes[0].https_redirect.port: 0 is out of range: must be \
                     1..=65535",
                    "t.toml:7:39: routes[0].https_redirect.status: 200 is not a redirect \
                     status: expected 301, 302, 303, 307 or 308",
                ],
            ),
            (
                "https_redirect = { port = 8443, code = 301 }",
                &[
                    "t.toml:7:33: routes[0].https_redirect.code: unknown field `code`, expected \
                   `port` or `status`",
                ],
            ),
            (
                "https_redirect = \"yes\"",
                &[
                    "t.toml:7:18: routes[0].https_redirect: invalid type: string \"yes\", \
                   expected true, false, or a table { port = 8443, status = 308 }",
                ],
            ),
        ];
        for (line, want) in cases {
            assert_eq!(errors(&format!("{PLAIN}{line}\n")), *want, "{line}");
        }
    }

    #[test]
    fn the_route_gets_the_filter_only_when_enabled() {
        use crate::config::filters::Filter;
        for (line, want) in [
            ("https_redirect = false", &[][..]),
            (
                "https_redirect = { port = 8443 }",
                &[Filter::HttpsRedirect][..],
            ),
        ] {
            let config = load_str(&format!("{PLAIN}{line}\n"), "t.toml").unwrap();
            assert_eq!(config.routes.routes()[0].filters, want, "{line}");
        }
    }
}
