//! Request heads (RFC 9112 §3–§6): parsed once, in place, into offsets over the head bytes,
//! then checked for everything that would let two parsers disagree about where a request
//! ends. A head that passes here has exactly one framing, one Host, and a target we can
//! route and re-serialise.

use std::mem::MaybeUninit;

use super::headers::{list_tokens, parse_content_length, trim_ows};
use super::{span_of, BodyFraming, HeaderSpan, Limits, ParseError, Span, Version, MAX_HEADERS_CAP};

/// The request methods the proxy treats specially; anything else is carried as-is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    Patch,
    Trace,
    Other,
}

impl Method {
    fn parse(token: &[u8]) -> Method {
        match token {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"OPTIONS" => Method::Options,
            b"PATCH" => Method::Patch,
            b"TRACE" => Method::Trace,
            _ => Method::Other,
        }
    }

    /// Idempotent methods (RFC 9110 §9.2.2) may be sent again after a failure.
    pub fn is_idempotent(self) -> bool {
        matches!(
            self,
            Method::Get
                | Method::Head
                | Method::Put
                | Method::Delete
                | Method::Options
                | Method::Trace
        )
    }
}

/// A validated request head as offsets into its own bytes (`raw`, held by the caller).
#[derive(Debug, Clone)]
pub struct RequestHead {
    pub method: Method,
    pub method_span: (u32, u32),
    /// Path and query as sent upstream: origin-form, or `*` for `OPTIONS *`.
    pub target: (u32, u32),
    /// End of the path within `target` (the `?` or the end).
    pub path_end: u32,
    /// Where the request's host comes from: the absolute-form target's authority when
    /// present (RFC 9112 §3.2.2), else the Host header.
    pub authority: Option<(u32, u32)>,
    pub version: Version,
    pub headers: Vec<HeaderSpan>,
    pub framing: BodyFraming,
    pub keep_alive: bool,
    pub expect_continue: bool,
    /// At least one Connection header is present (its tokens nominate hop-by-hop headers).
    pub has_connection_header: bool,
}

impl RequestHead {
    pub fn path<'a>(&self, raw: &'a [u8]) -> &'a [u8] {
        &raw[self.target.0 as usize..self.path_end as usize]
    }

    pub fn target<'a>(&self, raw: &'a [u8]) -> &'a [u8] {
        &raw[self.target.0 as usize..self.target.1 as usize]
    }

    pub fn authority<'a>(&self, raw: &'a [u8]) -> Option<&'a [u8]> {
        self.authority.map(|(s, e)| &raw[s as usize..e as usize])
    }

    pub fn method<'a>(&self, raw: &'a [u8]) -> &'a [u8] {
        &raw[self.method_span.0 as usize..self.method_span.1 as usize]
    }

    pub fn has_body(&self) -> bool {
        !matches!(self.framing, BodyFraming::Length(0))
    }
}

/// Parses `head`, which must be exactly one complete head (request line through the blank
/// line, as found by [`super::find_head_end`]).
pub fn parse_request_head(head: &[u8], limits: &Limits) -> Result<RequestHead, ParseError> {
    let mut storage = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS_CAP];
    let room = limits.max_headers.clamp(1, MAX_HEADERS_CAP);
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(head, &mut storage[..room]) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(ParseError::Incomplete),
        Err(httparse::Error::TooManyHeaders) => return Err(ParseError::TooManyHeaders),
        Err(httparse::Error::Version) => {
            // RFC 9110 §2.5: a higher minor version of 1.x is served as HTTP/1.1. httparse
            // knows only 1.0 and 1.1, so parse a copy that says 1.1: every offset is the
            // same, and the version bytes themselves are never sent on.
            if let Some(as_http11) = with_minor_version_one(head) {
                return parse_request_head(&as_http11, limits);
            }
            return Err(if is_other_http_version(head) {
                ParseError::UnsupportedVersion
            } else {
                ParseError::InvalidVersion
            });
        }
        Err(error) => return Err(ParseError::Syntax(error)),
    }
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(ParseError::Incomplete);
    };
    let version = if minor == 0 {
        Version::Http10
    } else {
        Version::Http11
    };
    if method == "CONNECT" {
        return Err(ParseError::Connect);
    }
    if target.len() > limits.max_uri_bytes {
        return Err(ParseError::UriTooLong);
    }
    // The read loop enforces this only while a head is incomplete: one that arrived whole
    // in a single read is measured here.
    if head.len() > limits.max_header_bytes {
        return Err(ParseError::HeadTooLarge);
    }
    let method_kind = Method::parse(method.as_bytes());
    let (target_span, url_authority) = split_target(head, target.as_bytes(), method_kind)?;

    let mut parsed = RequestHead {
        method: method_kind,
        method_span: span_of(head, method.as_bytes()),
        target: target_span,
        path_end: target_span.0
            + memchr::memchr(b'?', &head[target_span.0 as usize..target_span.1 as usize])
                .unwrap_or((target_span.1 - target_span.0) as usize) as u32,
        authority: url_authority,
        version,
        headers: Vec::with_capacity(req.headers.len()),
        framing: BodyFraming::Length(0),
        keep_alive: version == Version::Http11,
        expect_continue: false,
        has_connection_header: false,
    };

    let mut host: Option<&[u8]> = None;
    let mut hosts = 0;
    let mut content_length: Option<u64> = None;
    // Transfer codings in order across every Transfer-Encoding line (RFC 9110 §5.3).
    let mut transfer_encodings = 0;
    let mut chunked_count = 0;
    let mut last_is_chunked = false;
    let mut other_coding = false;
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        let value = trim_ows(h.value);
        parsed.headers.push(HeaderSpan {
            name: span_of(head, name),
            value: span_of(head, value),
        });
        if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
            host = Some(value);
        } else if name.eq_ignore_ascii_case(b"content-length") {
            let n = parse_content_length(value).ok_or(ParseError::InvalidContentLength)?;
            if content_length.is_some_and(|prev| prev != n) {
                return Err(ParseError::ConflictingContentLength);
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // Judged once all lines are seen: which error applies depends on the last coding.
            for coding in list_tokens(value) {
                if !is_token(coding) {
                    return Err(ParseError::InvalidTransferCoding);
                }
                transfer_encodings += 1;
                last_is_chunked = coding.eq_ignore_ascii_case(b"chunked");
                if last_is_chunked {
                    chunked_count += 1;
                } else {
                    other_coding = true;
                }
            }
            if list_tokens(value).next().is_none() {
                return Err(ParseError::InvalidTransferCoding);
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            parsed.has_connection_header = true;
            for token in list_tokens(value) {
                if token.eq_ignore_ascii_case(b"close") {
                    parsed.keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && version == Version::Http10 {
                    parsed.keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case(b"expect") {
            if value.eq_ignore_ascii_case(b"100-continue") {
                parsed.expect_continue = version == Version::Http11;
            } else {
                return Err(ParseError::UnsupportedExpectation);
            }
        }
    }
    // A `close` anywhere wins over a `keep-alive` elsewhere.
    if parsed.keep_alive && parsed.has_connection_header {
        let closes = req.headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case("connection")
                && list_tokens(h.value).any(|t| t.eq_ignore_ascii_case(b"close"))
        });
        parsed.keep_alive = !closes;
    }

    // RFC 9112 §3.2: exactly one Host in HTTP/1.1, and a valid one whenever present.
    if hosts > 1 {
        return Err(ParseError::DuplicateHost);
    }
    if hosts == 0 && version == Version::Http11 {
        return Err(ParseError::MissingHost);
    }
    if let Some(host) = host {
        if !is_valid_host(host) {
            return Err(ParseError::InvalidHost);
        }
        if parsed.authority.is_none() {
            parsed.authority = Some(span_of(head, host));
        }
    }

    if transfer_encodings > 0 {
        // §6.3: unless chunked is the final coding the body's end is unknowable (400, a
        // MUST that comes before §6.1's 501 for a coding we do not understand); §6.1:
        // chunked appears once; §6.3: Transfer-Encoding with Content-Length is a smuggling
        // attempt; §6.1: an HTTP/1.0 request cannot use it.
        if !last_is_chunked {
            return Err(ParseError::ChunkedNotFinal);
        }
        if chunked_count != 1 {
            return Err(ParseError::ChunkedTwice);
        }
        if content_length.is_some() {
            return Err(ParseError::TransferEncodingWithLength);
        }
        if version == Version::Http10 {
            return Err(ParseError::TransferEncodingInHttp10);
        }
        // Framing is known, but we decode no coding but chunked (§6.1).
        if other_coding {
            return Err(ParseError::UnsupportedTransferCoding);
        }
        parsed.framing = BodyFraming::Chunked;
    } else if let Some(n) = content_length {
        if n > limits.max_body_bytes {
            return Err(ParseError::BodyTooLarge);
        }
        parsed.framing = BodyFraming::Length(n);
    }
    if parsed.expect_continue && !parsed.has_body() {
        parsed.expect_continue = false;
    }
    Ok(parsed)
}

/// Splits the request target into the origin-form part sent upstream and, for the
/// absolute form, its authority (RFC 9112 §3.2).
fn split_target(
    head: &[u8],
    target: &[u8],
    method: Method,
) -> Result<(Span, Option<Span>), ParseError> {
    if target.first() == Some(&b'/') {
        return Ok((span_of(head, target), None));
    }
    if target == b"*" {
        return if method == Method::Options {
            Ok((span_of(head, target), None))
        } else {
            Err(ParseError::AsteriskNotOptions)
        };
    }
    let rest = strip_prefix_ignore_case(target, b"http://")
        .or_else(|| strip_prefix_ignore_case(target, b"https://"))
        .ok_or(ParseError::InvalidTarget)?;
    let authority_len = rest
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_len);
    if authority.is_empty() || !is_valid_host(authority) || path.first() == Some(&b'?') {
        return Err(ParseError::InvalidTarget);
    }
    if path.is_empty() {
        // `http://host` means `/`, but the bytes of a bare authority contain no `/`; the
        // connection loop sends `/` for an empty path.
        return Ok((
            (span_of(head, path).0, span_of(head, path).0),
            Some(span_of(head, authority)),
        ));
    }
    Ok((span_of(head, path), Some(span_of(head, authority))))
}

fn strip_prefix_ignore_case<'a>(s: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &s[prefix.len()..])
}

/// uri-host [ ":" port ] (RFC 3986 §3.2.2): reg-name characters, an IP literal in brackets,
/// and digits after the last colon. Anything that could confuse a router or an upstream
/// (whitespace, `/`, `@`, `,`) is refused.
pub fn is_valid_host(host: &[u8]) -> bool {
    if host.is_empty() || host.len() > 255 {
        return false;
    }
    let (name, port) = match host.first() {
        Some(b'[') => match memchr::memchr(b']', host) {
            Some(end) => {
                let literal = &host[1..end];
                if literal.is_empty()
                    || !literal
                        .iter()
                        .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
                {
                    return false;
                }
                (&host[..=end], &host[end + 1..])
            }
            None => return false,
        },
        _ => match memchr::memrchr(b':', host) {
            Some(colon) => (&host[..colon], &host[colon..]),
            None => (host, &b""[..]),
        },
    };
    let port_ok = match port {
        [] => true,
        [b':', digits @ ..] => digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    let name_ok = name.first() == Some(&b'[')
        || (!name.is_empty()
            && name
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+;=%".contains(&b)));
    port_ok && name_ok
}

fn is_token(s: &[u8]) -> bool {
    !s.is_empty()
        && s.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The request line, without its line end.
fn request_line(head: &[u8]) -> &[u8] {
    let line_end = memchr::memchr(b'\n', head).unwrap_or(head.len());
    head[..line_end]
        .strip_suffix(b"\r")
        .unwrap_or(&head[..line_end])
}

/// True when the request line is well formed (`method SP target SP HTTP/d.d`) but names a
/// version we do not speak, so the answer is 505 rather than 400. A space inside the
/// target makes the line malformed whatever it ends with.
fn is_other_http_version(head: &[u8]) -> bool {
    let mut parts = request_line(head).split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let version_ok = match version {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor] => {
            major.is_ascii_digit() && minor.is_ascii_digit() && !(*major == b'1' && *minor <= b'1')
        }
        _ => false,
    };
    version_ok && is_token(method) && !target.is_empty() && target.iter().all(u8::is_ascii_graphic)
}

/// A copy of `head` whose request line says `HTTP/1.1` instead of `HTTP/1.2`…`HTTP/1.9`.
fn with_minor_version_one(head: &[u8]) -> Option<Vec<u8>> {
    let line = request_line(head);
    let minor_at = line.len().checked_sub(1)?;
    match line.get(minor_at.checked_sub(8)?..) {
        Some([b' ', b'H', b'T', b'T', b'P', b'/', b'1', b'.', b'2'..=b'9']) => {
            let mut copy = head.to_vec();
            *copy.get_mut(minor_at)? = b'1';
            Some(copy)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use httparse::Error::{NewLine, Token};
    use ParseError::*;

    const LIMITS: Limits = Limits {
        max_header_bytes: 256,
        max_headers: 8,
        max_body_bytes: 1024,
        max_uri_bytes: 64,
    };

    fn framing(head: &[u8]) -> Result<BodyFraming, ParseError> {
        parse_request_head(head, &LIMITS).map(|h| h.framing)
    }

    #[test]
    fn transfer_codings_follow_rfc_9112_section_6() {
        let post = |te: &str| format!("POST / HTTP/1.1\r\nHost: a\r\n{te}\r\n\r\n");
        let cases: &[(&str, Result<BodyFraming, ParseError>)] = &[
            ("Transfer-Encoding: chunked", Ok(BodyFraming::Chunked)),
            ("Transfer-Encoding: ChUnKeD", Ok(BodyFraming::Chunked)),
            ("Transfer-Encoding: , chunked ", Ok(BodyFraming::Chunked)),
            // §6.3: chunked not final → the body's end is unknowable (400), even for a
            // coding we would not understand anyway.
            ("Transfer-Encoding: gzip", Err(ChunkedNotFinal)),
            ("Transfer-Encoding: identity", Err(ChunkedNotFinal)),
            ("Transfer-Encoding: xchunked", Err(ChunkedNotFinal)),
            ("Transfer-Encoding: chunked, gzip", Err(ChunkedNotFinal)),
            (
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip",
                Err(ChunkedNotFinal),
            ),
            ("Transfer-Encoding: \"chunked\"", Err(InvalidTransferCoding)),
            ("Transfer-Encoding: ", Err(InvalidTransferCoding)),
            // §6.1: chunked once.
            ("Transfer-Encoding: chunked, chunked", Err(ChunkedTwice)),
            (
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
                Err(ChunkedTwice),
            ),
            (
                "Transfer-Encoding: chunked\r\nContent-Length: 5",
                Err(TransferEncodingWithLength),
            ),
            (
                "Content-Length: 5\r\nTransfer-Encoding: gzip, chunked",
                Err(TransferEncodingWithLength),
            ),
            // §6.1: framing known, coding not implemented (501).
            (
                "Transfer-Encoding: gzip, chunked",
                Err(UnsupportedTransferCoding),
            ),
            (
                "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked",
                Err(UnsupportedTransferCoding),
            ),
        ];
        for (te, want) in cases {
            assert_eq!(framing(post(te).as_bytes()), *want, "{te:?}");
        }
        assert_eq!(
            framing(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(TransferEncodingInHttp10)
        );
    }

    #[test]
    fn versions_505_only_for_a_well_formed_line() {
        let cases: &[(&[u8], Result<BodyFraming, ParseError>)] = &[
            (
                b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
                Err(UnsupportedVersion),
            ),
            (
                b"GET / HTTP/0.9\r\nHost: a\r\n\r\n",
                Err(UnsupportedVersion),
            ),
            (b"GET / HTTP/3\r\nHost: a\r\n\r\n", Err(InvalidVersion)),
            (b"GET / http/1.1\r\nHost: a\r\n\r\n", Err(InvalidVersion)),
            (b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", Err(InvalidVersion)),
            (b"GET /a b HTTP/2.0\r\nHost: a\r\n\r\n", Err(InvalidVersion)),
            (
                b"GET /a\x01 HTTP/2.0\r\nHost: a\r\n\r\n",
                Err(Syntax(Token)),
            ),
            (b"G@T / HTTP/2.0\r\nHost: a\r\n\r\n", Err(Syntax(Token))),
            (b"GET /\r\n\r\n", Err(Syntax(Token))),
            // RFC 9110 §2.5: a higher 1.x minor version is served as 1.1.
            (
                b"GET / HTTP/1.2\r\nHost: a\r\n\r\n",
                Ok(BodyFraming::Length(0)),
            ),
            (b"GET / HTTP/1.9\nHost: a\n\n", Ok(BodyFraming::Length(0))),
            (b"GET / HTTP/1.2\r\n\r\n", Err(MissingHost)),
            (b"GET / HTTP/1.10\r\nHost: a\r\n\r\n", Err(Syntax(NewLine))),
        ];
        for (head, want) in cases {
            assert_eq!(framing(head), *want, "{:?}", String::from_utf8_lossy(head));
        }
    }

    #[test]
    fn higher_minor_version_keeps_offsets() {
        let raw = b"POST /p?q HTTP/1.5\r\nHost: h\r\nContent-Length: 3\r\n\r\n";
        let head = parse_request_head(raw, &LIMITS).unwrap();
        assert_eq!(head.version, Version::Http11);
        assert!(head.keep_alive);
        assert_eq!(
            (head.method(raw), head.target(raw), head.path(raw)),
            (&b"POST"[..], &b"/p?q"[..], &b"/p"[..])
        );
        assert_eq!(head.authority(raw), Some(&b"h"[..]));
        assert_eq!(head.framing, BodyFraming::Length(3));
    }

    #[test]
    fn head_size_is_limited_even_when_it_arrived_whole() {
        let head = |filler: usize| {
            format!(
                "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
                "a".repeat(filler)
            )
        };
        let fits = head(LIMITS.max_header_bytes - head(0).len());
        assert_eq!(fits.len(), LIMITS.max_header_bytes);
        assert_eq!(framing(fits.as_bytes()), Ok(BodyFraming::Length(0)));
        assert_eq!(
            framing(head(LIMITS.max_header_bytes + 1 - head(0).len()).as_bytes()),
            Err(HeadTooLarge)
        );
        // A long target is the more precise answer.
        let target = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "u".repeat(300));
        assert_eq!(framing(target.as_bytes()), Err(UriTooLong));
    }
}
