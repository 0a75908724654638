//! CORS per route (Fetch standard §3.2): the gateway answers preflights and adds the
//! `Access-Control-*` headers to actual responses, so upstreams need no CORS code.
//!
//! Where it sits: the CORS filter of a route (`proxy/pipeline.rs`). A preflight (OPTIONS
//! with `Origin` and `Access-Control-Request-Method`) on a route with `cors` is answered
//! right after the IP access lists, before `auth` and rate limits, since a browser never
//! sends credentials on a preflight. For any other request on such a route the headers are
//! prepared at the same point, and the filter's response hook adds them to every answer
//! (forwarded, mock, 401, 429, 5xx).
//!
//! Invariants: everything but the echoed origin (and reflected request headers) is rendered
//! at config load; the request path compares the origin and copies lines. A preflight the
//! policy refuses (origin, method, a header, or private-network access) is answered 403
//! without any CORS header, which the browser reports as a CORS failure; a disallowed origin
//! on an actual request gets no CORS header and is otherwise served (the browser withholds
//! the response). Every answer on a CORS route carries `Vary: Origin`, so that a shared
//! cache never hands one origin's answer to another.

pub mod config;

use bytes::{Bytes, BytesMut};

use crate::http1::encode::AddedLines;
use crate::http1::headers::list_tokens;
use crate::http1::request::Method;
use crate::http1::RequestHead;

/// Methods allowed by default on a route that accepts any method.
pub const DEFAULT_METHODS: [&str; 6] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];

const PREFLIGHT_STATUS: &[u8] = b"HTTP/1.1 204 No Content\r\nserver: strait\r\n";
const PREFLIGHT_VARY: &[u8] =
    b"vary: Origin, Access-Control-Request-Method, Access-Control-Request-Headers\r\n";

/// One entry of `allow_origins`, normalised to lower case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginPattern {
    /// A serialized origin: `https://app.example`, `http://localhost:3000`.
    Exact(Box<[u8]>),
    /// `https://*.example.org[:port]`: `prefix` is `https://`, `suffix` is
    /// `.example.org[:port]`; matches one or more labels in between, never the bare domain.
    Subdomains {
        prefix: Box<[u8]>,
        suffix: Box<[u8]>,
    },
}

impl OriginPattern {
    /// Parses `scheme://host[:port]`, where host may start with `*.`. The default port of
    /// http and https is dropped, as browsers do when they serialize an origin.
    pub fn parse(text: &str) -> Result<OriginPattern, String> {
        let bad = |why: &str| {
            format!("invalid origin \"{text}\": {why} (expected scheme://host[:port], such as \"https://app.example\")")
        };
        let lower = text.to_ascii_lowercase();
        let Some((scheme, rest)) = lower.split_once("://") else {
            return Err(bad("no scheme"));
        };
        let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
        if !scheme_ok {
            return Err(bad("invalid scheme"));
        }
        if rest.contains(['/', '?', '#', '@']) {
            return Err(bad("an origin has no path, query, user or trailing slash"));
        }
        let (host, port) = match rest.strip_prefix('[') {
            Some(v6) => match v6.split_once(']') {
                Some((addr, after)) => (&rest[..addr.len() + 2], after),
                None => return Err(bad("unclosed IPv6 literal")),
            },
            None => match rest.find(':') {
                Some(colon) => rest.split_at(colon),
                None => (rest, ""),
            },
        };
        let port = match port.strip_prefix(':') {
            None if port.is_empty() => None,
            Some(digits)
                if !digits.is_empty()
                    && digits.bytes().all(|b| b.is_ascii_digit())
                    && digits.parse::<u16>().is_ok_and(|p| p > 0) =>
            {
                digits.parse::<u16>().ok()
            }
            _ => return Err(bad("invalid port")),
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        if host.ends_with('.') {
            return Err(bad("trailing dot in host"));
        }
        if host
            .strip_prefix("*.")
            .is_some_and(|domain| domain.parse::<std::net::Ipv4Addr>().is_ok())
        {
            return Err(bad("a wildcard cannot apply to an IP address"));
        }
        if host.contains('*') && !host.starts_with("*.") {
            return Err(bad("`*` is only allowed as a leading `*.` label"));
        }
        let host = crate::settings::normalize_host_pattern(host).map_err(|why| bad(&why))?;
        let is_default = matches!((scheme, port), ("https", Some(443)) | ("http", Some(80)));
        let port = match port {
            Some(p) if !is_default => format!(":{p}"),
            _ => String::new(),
        };
        Ok(match host.strip_prefix('*') {
            Some(domain) => OriginPattern::Subdomains {
                prefix: format!("{scheme}://").into_bytes().into(),
                suffix: format!("{domain}{port}").into_bytes().into(),
            },
            None => OriginPattern::Exact(format!("{scheme}://{host}{port}").into_bytes().into()),
        })
    }

    /// Whether the request's `Origin` value is this pattern (ASCII case-insensitively).
    pub fn matches(&self, origin: &[u8]) -> bool {
        match self {
            OriginPattern::Exact(exact) => origin.eq_ignore_ascii_case(exact),
            OriginPattern::Subdomains { prefix, suffix } => {
                let Some(labels) = origin
                    .len()
                    .checked_sub(prefix.len() + suffix.len())
                    .map(|n| &origin[prefix.len()..prefix.len() + n])
                else {
                    return false;
                };
                origin[..prefix.len()].eq_ignore_ascii_case(prefix)
                    && origin[origin.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
                    && is_dns_labels(labels)
            }
        }
    }
}

/// One or more non-empty DNS labels joined by dots (the `*` part of a subdomain pattern).
fn is_dns_labels(labels: &[u8]) -> bool {
    !labels.is_empty()
        && labels.split(|&b| b == b'.').all(|label| {
            !label.is_empty()
                && label
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        })
}

/// `allow_origins` as compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowOrigins {
    /// `["*"]`: every origin, answered with `Access-Control-Allow-Origin: *` (never with
    /// credentials: the config refuses that combination).
    Any,
    List(Vec<OriginPattern>),
}

/// `allow_headers` as compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowHeaders {
    /// Lower-case names; a preflight asking for another header is refused.
    List(Vec<Box<[u8]>>),
    /// `["*"]`: whatever `Access-Control-Request-Headers` lists is allowed and echoed.
    Reflect,
}

/// What `config.rs` validated, ready to be rendered into a [`CorsPolicy`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsSettings {
    pub origins: AllowOrigins,
    /// Method tokens, compared case-sensitively (RFC 9110 §9.1).
    pub methods: Vec<String>,
    pub headers: AllowHeaders,
    /// Lower-case names.
    pub expose_headers: Vec<String>,
    pub credentials: bool,
    /// `Access-Control-Max-Age` in seconds; `None`: not sent (the browser's default).
    pub max_age: Option<u64>,
    pub private_network: bool,
}

/// A route's compiled `cors` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsPolicy {
    origins: AllowOrigins,
    methods: Vec<Box<[u8]>>,
    headers: AllowHeaders,
    private_network: bool,
    /// After `Access-Control-Allow-Origin` on an actual response: credentials and
    /// expose-headers lines.
    actual_lines: Bytes,
    /// After `Access-Control-Allow-Origin` on a preflight answer: methods, headers (a
    /// configured list), max-age, credentials, Vary.
    preflight_lines: Bytes,
    /// What the policy was built from, for the admin API's view of the config.
    settings: CorsSettings,
}

impl CorsPolicy {
    /// The settings the policy was built from.
    pub fn settings(&self) -> &CorsSettings {
        &self.settings
    }

    pub fn new(settings: CorsSettings) -> CorsPolicy {
        let mut actual = String::new();
        if settings.credentials {
            actual.push_str("access-control-allow-credentials: true\r\n");
        }
        if !settings.expose_headers.is_empty() {
            let list = settings.expose_headers.join(", ");
            actual.push_str(&format!("access-control-expose-headers: {list}\r\n"));
        }
        let mut preflight = format!(
            "access-control-allow-methods: {}\r\n",
            settings.methods.join(", ")
        );
        if let AllowHeaders::List(names) = &settings.headers {
            if !names.is_empty() {
                let names: Vec<&str> = names
                    .iter()
                    .map(|n| std::str::from_utf8(n).unwrap_or_default())
                    .collect();
                let list = names.join(", ");
                preflight.push_str(&format!("access-control-allow-headers: {list}\r\n"));
            }
        }
        if let Some(seconds) = settings.max_age {
            preflight.push_str(&format!("access-control-max-age: {seconds}\r\n"));
        }
        if settings.credentials {
            preflight.push_str("access-control-allow-credentials: true\r\n");
        }
        let mut preflight = preflight.into_bytes();
        preflight.extend_from_slice(PREFLIGHT_VARY);
        CorsPolicy {
            origins: settings.origins.clone(),
            methods: settings
                .methods
                .iter()
                .map(|m| m.as_bytes().into())
                .collect(),
            headers: settings.headers.clone(),
            private_network: settings.private_network,
            actual_lines: Bytes::from(actual),
            preflight_lines: Bytes::from(preflight),
            settings,
        }
    }

    fn allows_origin(&self, origin: &[u8]) -> bool {
        match &self.origins {
            AllowOrigins::Any => true,
            AllowOrigins::List(patterns) => patterns.iter().any(|p| p.matches(origin)),
        }
    }

    /// `Access-Control-Allow-Origin` for an allowed `origin`.
    fn write_allow_origin(&self, out: &mut BytesMut, origin: &[u8]) {
        out.extend_from_slice(b"access-control-allow-origin: ");
        match self.origins {
            AllowOrigins::Any => out.extend_from_slice(b"*"),
            AllowOrigins::List(_) => out.extend_from_slice(origin),
        }
        out.extend_from_slice(b"\r\n");
    }

    /// The whole head of the answer to a preflight (status line and CORS lines, without the
    /// blank line), or false, with `out` untouched, when the policy refuses it.
    pub fn write_preflight(&self, raw: &[u8], head: &RequestHead, out: &mut BytesMut) -> bool {
        let Some(origin) = single(raw, head, b"origin").filter(|o| self.allows_origin(o)) else {
            return false;
        };
        let method = single(raw, head, b"access-control-request-method");
        if !method.is_some_and(|m| self.methods.iter().any(|allowed| **allowed == *m)) {
            return false;
        }
        let mut requested =
            header_values(raw, head, b"access-control-request-headers").flat_map(list_tokens);
        let headers_ok = match &self.headers {
            AllowHeaders::List(names) => {
                requested.all(|r| names.iter().any(|n| r.eq_ignore_ascii_case(n)))
            }
            AllowHeaders::Reflect => requested.all(is_token),
        };
        // Private Network Access: the browser asks before a public page reaches a private
        // address, and fails unless the answer says yes.
        let private_network = header_values(raw, head, b"access-control-request-private-network")
            .any(|v| v.eq_ignore_ascii_case(b"true"));
        if !headers_ok || (private_network && !self.private_network) {
            return false;
        }
        out.extend_from_slice(PREFLIGHT_STATUS);
        self.write_allow_origin(out, origin);
        if self.headers == AllowHeaders::Reflect {
            let mut first = true;
            for name in
                header_values(raw, head, b"access-control-request-headers").flat_map(list_tokens)
            {
                out.extend_from_slice(if first {
                    b"access-control-allow-headers: "
                } else {
                    b", "
                });
                out.extend_from_slice(name);
                first = false;
            }
            if !first {
                out.extend_from_slice(b"\r\n");
            }
        }
        if private_network {
            out.extend_from_slice(b"access-control-allow-private-network: true\r\n");
        }
        out.extend_from_slice(&self.preflight_lines);
        true
    }
}

/// The `Access-Control-Request-Method` of a CORS preflight (OPTIONS with an `Origin` and
/// that header, Fetch §3.2.2); `None` for any other request, an OPTIONS without it included.
pub fn preflight_method<'r>(raw: &'r [u8], head: &RequestHead) -> Option<&'r [u8]> {
    if head.method != Method::Options || header_values(raw, head, b"origin").next().is_none() {
        return None;
    }
    header_values(raw, head, b"access-control-request-method").next()
}

/// The CORS headers of the answer to the current request; reset before each request.
#[derive(Debug, Default)]
pub struct CorsAnswer {
    /// The request's route has `cors`.
    on_route: bool,
    /// `Access-Control-*` lines for an allowed origin; empty otherwise.
    lines: BytesMut,
}

impl CorsAnswer {
    pub fn reset(&mut self) {
        self.on_route = false;
        self.lines.clear();
    }

    /// The request is not a preflight and its route has `policy`: the lines for its origin.
    pub fn prepare(&mut self, policy: &CorsPolicy, raw: &[u8], head: &RequestHead) {
        self.on_route = true;
        if let Some(origin) = single(raw, head, b"origin").filter(|o| policy.allows_origin(o)) {
            policy.write_allow_origin(&mut self.lines, origin);
            self.lines.extend_from_slice(&policy.actual_lines);
        }
    }

    /// Adds the lines and `Vary: Origin` to a locally generated answer.
    pub fn write_local(&self, out: &mut BytesMut) {
        if self.on_route {
            out.extend_from_slice(&self.lines);
            out.extend_from_slice(b"vary: Origin\r\n");
        }
    }

    /// For the response encoder: nothing off CORS routes; else the lines (none for a
    /// disallowed origin), which replace the upstream's `Access-Control-*` headers.
    pub fn forwarded(&self) -> AddedLines<'_> {
        AddedLines {
            lines: &self.lines,
            replaces: if self.on_route {
                Some(is_access_control_header)
            } else {
                None
            },
        }
    }

    /// The request header a forwarded answer varies on, merged into the upstream's Vary:
    /// `Origin` on CORS routes.
    pub fn vary(&self) -> Option<&'static [u8]> {
        self.on_route.then_some(b"Origin")
    }
}

/// The headers a CORS route's answers get from the gateway only.
fn is_access_control_header(name: &[u8]) -> bool {
    const PREFIX: &[u8] = b"access-control-";
    name.get(..PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(PREFIX))
}

fn header_values<'r: 'h, 'h>(
    raw: &'r [u8],
    head: &'h RequestHead,
    name: &'h [u8],
) -> impl Iterator<Item = &'r [u8]> + 'h {
    head.headers
        .iter()
        .filter(move |h| h.name(raw).eq_ignore_ascii_case(name))
        .map(move |h| h.value(raw))
}

/// The value of a header the request carries exactly once: a repeated `Origin` or
/// requested method is ambiguous, so it is treated as not allowed.
fn single<'r>(raw: &'r [u8], head: &RequestHead, name: &[u8]) -> Option<&'r [u8]> {
    let mut values = head
        .headers
        .iter()
        .filter(|h| h.name(raw).eq_ignore_ascii_case(name))
        .map(|h| h.value(raw));
    let first = values.next()?;
    values.next().is_none().then_some(first)
}

/// RFC 9110 §5.6.2 token: what a header name or method must be.
pub fn is_token(text: &[u8]) -> bool {
    !text.is_empty()
        && text
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::parse_request_head;
    use crate::http1::Limits;

    #[test]
    fn parses_origin_patterns() {
        let exact = |s: &str| Ok(OriginPattern::Exact(s.as_bytes().into()));
        let subs = |p: &str, s: &str| {
            Ok(OriginPattern::Subdomains {
                prefix: p.as_bytes().into(),
                suffix: s.as_bytes().into(),
            })
        };
        let err = |text: &str, why: &str| {
            Err(format!("invalid origin \"{text}\": {why} (expected scheme://host[:port], such as \"https://app.example\")"))
        };
        let cases: Vec<(&str, Result<OriginPattern, String>)> = vec![
            ("https://app.example", exact("https://app.example")),
            ("HTTPS://App.Example", exact("https://app.example")),
            ("http://localhost:3000", exact("http://localhost:3000")),
            ("https://app.example:443", exact("https://app.example")),
            ("http://app.example:80", exact("http://app.example")),
            ("http://app.example:443", exact("http://app.example:443")),
            ("http://10.0.0.1:8080", exact("http://10.0.0.1:8080")),
            ("http://[::1]:8080", exact("http://[::1]:8080")),
            (
                "chrome-extension://abcdef",
                exact("chrome-extension://abcdef"),
            ),
            ("https://*.example.org", subs("https://", ".example.org")),
            (
                "https://*.example.org:8443",
                subs("https://", ".example.org:8443"),
            ),
            ("app.example", err("app.example", "no scheme")),
            ("1http://a", err("1http://a", "invalid scheme")),
            (
                "https://app.example/",
                err(
                    "https://app.example/",
                    "an origin has no path, query, user or trailing slash",
                ),
            ),
            (
                "https://u@app.example",
                err(
                    "https://u@app.example",
                    "an origin has no path, query, user or trailing slash",
                ),
            ),
            (
                "https://app.example:0",
                err("https://app.example:0", "invalid port"),
            ),
            (
                "https://app.example:99999",
                err("https://app.example:99999", "invalid port"),
            ),
            (
                "https://app.example:",
                err("https://app.example:", "invalid port"),
            ),
            (
                "https://app.example.",
                err("https://app.example.", "trailing dot in host"),
            ),
            (
                "https://a.*.example",
                err(
                    "https://a.*.example",
                    "`*` is only allowed as a leading `*.` label",
                ),
            ),
            (
                "https://*example.org",
                err(
                    "https://*example.org",
                    "`*` is only allowed as a leading `*.` label",
                ),
            ),
            (
                "https://*.10.0.0.1",
                err(
                    "https://*.10.0.0.1",
                    "a wildcard cannot apply to an IP address",
                ),
            ),
            ("http://[::1", err("http://[::1", "unclosed IPv6 literal")),
            ("https://", err("https://", "no host")),
            ("https://:8080", err("https://:8080", "no host")),
        ];
        for (text, want) in cases {
            assert_eq!(OriginPattern::parse(text), want, "{text}");
        }
    }

    #[test]
    fn matches_origins() {
        let cases: &[(&str, &str, bool)] = &[
            ("https://app.example", "https://app.example", true),
            ("https://app.example", "HTTPS://APP.EXAMPLE", true),
            ("https://app.example", "http://app.example", false),
            ("https://app.example", "https://app.example:8443", false),
            ("https://app.example", "https://app.example.evil", false),
            ("https://app.example", "null", false),
            ("https://*.example.org", "https://a.example.org", true),
            ("https://*.example.org", "https://a.b.example.org", true),
            ("https://*.example.org", "https://A-1.Example.Org", true),
            ("https://*.example.org", "https://example.org", false),
            ("https://*.example.org", "https://.example.org", false),
            ("https://*.example.org", "https://a..example.org", false),
            (
                "https://*.example.org",
                "https://evil.com/.example.org",
                false,
            ),
            (
                "https://*.example.org",
                "https://evil.com:1@x.example.org",
                false,
            ),
            ("https://*.example.org", "http://a.example.org", false),
            ("https://*.example.org", "https://a.example.org:8443", false),
            ("https://*.example.org", "https://aexample.org", false),
            ("https://*.example.org", "https://a.example.org.evil", false),
            (
                "https://*.example.org:8443",
                "https://a.example.org:8443",
                true,
            ),
            ("https://*.example.org:8443", "https://a.example.org", false),
            ("https://*.example.org", "", false),
            ("https://*.example.org", "https://", false),
        ];
        for (pattern, origin, want) in cases {
            let p = OriginPattern::parse(pattern).unwrap();
            assert_eq!(p.matches(origin.as_bytes()), *want, "{pattern} vs {origin}");
        }
    }

    fn policy(origins: AllowOrigins, headers: AllowHeaders, credentials: bool) -> CorsPolicy {
        CorsPolicy::new(CorsSettings {
            origins,
            methods: vec!["GET".into(), "PUT".into()],
            headers,
            expose_headers: vec!["x-total".into()],
            credentials,
            max_age: Some(600),
            private_network: false,
        })
    }

    fn preflight(policy: &CorsPolicy, request: &str) -> Option<String> {
        let limits = Limits {
            max_header_bytes: 4096,
            max_headers: 32,
            max_body_bytes: 0,
            max_uri_bytes: 256,
        };
        let raw = format!("OPTIONS /x HTTP/1.1\r\nHost: t\r\n{request}\r\n");
        let head = parse_request_head(raw.as_bytes(), &limits).unwrap();
        let mut out = BytesMut::new();
        let ok = policy.write_preflight(raw.as_bytes(), &head, &mut out);
        assert_eq!(ok, !out.is_empty());
        ok.then(|| String::from_utf8(out.to_vec()).unwrap())
    }

    #[test]
    fn answers_preflights() {
        let app = || AllowOrigins::List(vec![OriginPattern::parse("https://app.example").unwrap()]);
        let listed = || AllowHeaders::List(vec![b"content-type"[..].into(), b"x-a"[..].into()]);
        let p = policy(app(), listed(), true);
        let from_app = "Origin: https://app.example\r\nAccess-Control-Request-Method: PUT\r\n";
        assert_eq!(
            preflight(&p, from_app).as_deref(),
            Some(
                "HTTP/1.1 204 No Content\r\nserver: strait\r\n\
                 access-control-allow-origin: https://app.example\r\n\
                 access-control-allow-methods: GET, PUT\r\n\
                 access-control-allow-headers: content-type, x-a\r\n\
                 access-control-max-age: 600\r\n\
                 access-control-allow-credentials: true\r\n\
                 vary: Origin, Access-Control-Request-Method, Access-Control-Request-Headers\r\n"
            )
        );
        let refused = [
            "Origin: https://evil.example\r\nAccess-Control-Request-Method: PUT\r\n",
            "Origin: https://app.example\r\nAccess-Control-Request-Method: DELETE\r\n",
            "Origin: https://app.example\r\nAccess-Control-Request-Method: put\r\n",
            "Origin: https://app.example\r\nOrigin: https://app.example\r\nAccess-Control-Request-Method: PUT\r\n",
            "Origin: https://app.example\r\nAccess-Control-Request-Method: PUT\r\nAccess-Control-Request-Headers: content-type, x-b\r\n",
            "Origin: https://app.example\r\nAccess-Control-Request-Method: PUT\r\nAccess-Control-Request-Private-Network: true\r\n",
        ];
        for request in refused {
            assert_eq!(preflight(&p, request), None, "{request}");
        }
        let with_headers = format!(
            "{from_app}Access-Control-Request-Headers: X-A\r\nAccess-Control-Request-Headers: content-type\r\n"
        );
        assert!(preflight(&p, &with_headers).is_some());

        let any = policy(AllowOrigins::Any, AllowHeaders::Reflect, false);
        let got = preflight(
            &any,
            &format!("{from_app}Access-Control-Request-Headers: x-one,X-Two ,, x-three\r\n"),
        )
        .unwrap();
        assert!(got.contains("access-control-allow-origin: *\r\n"), "{got}");
        assert!(
            got.contains("access-control-allow-headers: x-one, X-Two, x-three\r\n"),
            "{got}"
        );
        assert!(!got.contains("credentials"), "{got}");
        let bad_token = format!("{from_app}Access-Control-Request-Headers: x(y)\r\n");
        assert_eq!(preflight(&any, &bad_token), None);
        // No requested headers: no allow-headers line.
        assert!(!preflight(&any, from_app).unwrap().contains("allow-headers"));
    }

    #[test]
    fn detects_preflights_and_prepares_actual_headers() {
        let limits = Limits {
            max_header_bytes: 4096,
            max_headers: 32,
            max_body_bytes: 0,
            max_uri_bytes: 256,
        };
        let parse = |raw: &str| parse_request_head(raw.as_bytes(), &limits).unwrap();
        let cases: &[(&str, Option<&str>)] = &[
            ("OPTIONS / HTTP/1.1\r\nHost: t\r\nOrigin: https://a\r\nAccess-Control-Request-Method: PUT\r\n\r\n", Some("PUT")),
            ("OPTIONS / HTTP/1.1\r\nHost: t\r\nAccess-Control-Request-Method: PUT\r\n\r\n", None),
            ("OPTIONS / HTTP/1.1\r\nHost: t\r\nOrigin: https://a\r\n\r\n", None),
            ("GET / HTTP/1.1\r\nHost: t\r\nOrigin: https://a\r\nAccess-Control-Request-Method: PUT\r\n\r\n", None),
        ];
        for (raw, want) in cases {
            let head = parse(raw);
            let got =
                preflight_method(raw.as_bytes(), &head).map(|m| std::str::from_utf8(m).unwrap());
            assert_eq!(got, *want, "{raw}");
        }

        let p = policy(
            AllowOrigins::List(vec![OriginPattern::parse("https://*.example.org").unwrap()]),
            AllowHeaders::Reflect,
            true,
        );
        let actual = |raw: &str| {
            let head = parse(raw);
            let mut answer = CorsAnswer::default();
            answer.prepare(&p, raw.as_bytes(), &head);
            let mut out = BytesMut::new();
            answer.write_local(&mut out);
            (
                String::from_utf8(out.to_vec()).unwrap(),
                answer.forwarded().replaces.is_some().then(|| {
                    assert_eq!(answer.vary(), Some(&b"Origin"[..]));
                    String::from_utf8(answer.forwarded().lines.to_vec()).unwrap()
                }),
            )
        };
        let (local, forwarded) =
            actual("GET / HTTP/1.1\r\nHost: t\r\nOrigin: https://a.example.org\r\n\r\n");
        let lines = "access-control-allow-origin: https://a.example.org\r\n\
                     access-control-allow-credentials: true\r\n\
                     access-control-expose-headers: x-total\r\n";
        assert_eq!(local, format!("{lines}vary: Origin\r\n"));
        assert_eq!(forwarded.as_deref(), Some(lines));
        let (local, forwarded) =
            actual("GET / HTTP/1.1\r\nHost: t\r\nOrigin: https://example.org\r\n\r\n");
        assert_eq!(local, "vary: Origin\r\n");
        assert_eq!(forwarded.as_deref(), Some(""));
        let (local, _) = actual("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(local, "vary: Origin\r\n");
        let mut off_route = CorsAnswer::default();
        off_route.reset();
        assert!(off_route.forwarded().replaces.is_none());
        assert!(off_route.forwarded().lines.is_empty());
        assert_eq!(off_route.vary(), None);
    }
}
