//! Writes the heads Strait sends on: the request to an upstream and the response to a
//! client. Both are rebuilt rather than patched: the framing headers are always our own,
//! hop-by-hop headers (and those the Connection header nominates) are dropped, and the
//! forwarding headers are added (RFC 9110 §7.6).
//!
//! Lines other modules add (trace context, CORS, rate limits) arrive rendered, as
//! [`AddedLines`], together with the test naming the headers they replace: the encoder
//! knows HTTP framing and forwarding, not what those modules mean.

use bytes::BytesMut;

use super::headers::{is_hop_by_hop, is_nominated, list_tokens};
use super::{BodyFraming, HeaderSpan, RequestHead, ResponseHead, Version};

/// How the Host header travels upstream.
#[derive(Debug, Clone, Copy)]
pub enum UpstreamHost<'a> {
    /// The client's Host (or absolute-form authority) unchanged.
    Preserve,
    Rewrite(&'a [u8]),
}

/// A header as (lower-case name, value).
pub type HeaderPair<'a> = (&'a [u8], &'a [u8]);

/// Header lines a caller adds to a head it passes on, rendered by the module that owns
/// them, and which of the passed-on message's own headers they replace.
#[derive(Debug, Clone, Copy)]
pub struct AddedLines<'a> {
    /// Complete header lines, each ending in CRLF; may be empty.
    pub lines: &'a [u8],
    /// True for a header name (in any case) whose copies in the passed-on message are
    /// dropped in favour of `lines`. `None`: nothing is replaced.
    pub replaces: Option<fn(&[u8]) -> bool>,
}

impl<'a> AddedLines<'a> {
    /// `first`, then `rest` (up to 7): a head's own lines ahead of the filters'.
    pub fn prepend(first: AddedLines<'a>, rest: &[AddedLines<'a>]) -> ([AddedLines<'a>; 8], usize) {
        let mut all = [first; 8];
        let n = (1 + rest.len()).min(all.len());
        debug_assert_eq!(n, 1 + rest.len(), "more added lines than room");
        all[1..n].copy_from_slice(&rest[..n - 1]);
        (all, n)
    }

    fn replace(added: &[AddedLines<'_>], name: &[u8]) -> bool {
        added
            .iter()
            .any(|a| a.replaces.is_some_and(|replaces| replaces(name)))
    }

    fn write_all(added: &[AddedLines<'_>], out: &mut BytesMut) {
        for a in added {
            out.extend_from_slice(a.lines);
        }
    }
}

/// What the upstream request head needs beyond the client's head.
#[derive(Debug)]
pub struct ForwardedRequest<'a> {
    /// Path and query to send (after `strip_prefix`); a `/` is put in front when it lacks one.
    pub target: &'a [u8],
    pub host: UpstreamHost<'a>,
    /// The TCP peer's IP address, text form, appended to X-Forwarded-For (a trusted
    /// proxy's list thus keeps every hop).
    pub client_ip: &'a [u8],
    /// `http` or `https`.
    pub scheme: &'static [u8],
    /// The request-ID header (lower-case name, value): the client's copies are replaced.
    pub request_id: (&'a [u8], &'a [u8]),
    /// Lower-case names of client headers never forwarded (the route's API key header).
    pub drop_headers: &'a [&'a [u8]],
    /// Headers (lower-case name, value) Strait sets: the client's copies are replaced
    /// (the authenticated consumer).
    pub set_headers: &'a [HeaderPair<'a>],
    /// Headers (lower-case name, value) written after those, the client's copies kept
    /// (a transform's `append`, a renamed header).
    pub append_headers: &'a [HeaderPair<'a>],
    /// Lines written after those (the trace context, our span becoming the upstream's
    /// parent).
    pub added: &'a [AddedLines<'a>],
    /// The method sent in place of the client's (a transform's override).
    pub method: Option<&'a [u8]>,
}

/// Headers Strait writes itself on the upstream request, so the client's copies are dropped.
pub fn is_rewritten_request_header(name: &[u8]) -> bool {
    const OWN: [&[u8]; 6] = [
        b"host",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"via",
        b"expect",
    ];
    OWN.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// Headers that must not pass: hop-by-hop, or named by a Connection header.
fn is_dropped(
    name: &[u8],
    raw: &[u8],
    headers: &[HeaderSpan],
    has_connection_header: bool,
) -> bool {
    if is_hop_by_hop(name) {
        return true;
    }
    if !has_connection_header {
        return false;
    }
    let mut values = [&b""[..]; 4];
    let mut n = 0;
    for h in headers
        .iter()
        .filter(|h| h.name(raw).eq_ignore_ascii_case(b"connection"))
    {
        if n == values.len() {
            // More Connection headers than any real client sends: be conservative.
            return true;
        }
        values[n] = h.value(raw);
        n += 1;
    }
    is_nominated(name, &values[..n])
}

/// Appends the comma-joined values of every `name` header, then `extra`.
fn write_joined(out: &mut BytesMut, raw: &[u8], headers: &[HeaderSpan], name: &[u8], extra: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    for h in headers
        .iter()
        .filter(|h| h.name(raw).eq_ignore_ascii_case(name))
    {
        let value = h.value(raw);
        if !value.is_empty() {
            out.extend_from_slice(value);
            out.extend_from_slice(b", ");
        }
    }
    out.extend_from_slice(extra);
    out.extend_from_slice(b"\r\n");
}

/// Writes the request head for the upstream. `framing` is how the body will be sent.
pub fn encode_request_head(
    out: &mut BytesMut,
    raw: &[u8],
    head: &RequestHead,
    fwd: &ForwardedRequest<'_>,
    framing: BodyFraming,
) {
    out.extend_from_slice(fwd.method.unwrap_or(head.method(raw)));
    out.extend_from_slice(b" ");
    if !fwd.target.starts_with(b"/") && fwd.target != b"*" {
        out.extend_from_slice(b"/");
    }
    out.extend_from_slice(fwd.target);
    out.extend_from_slice(b" HTTP/1.1\r\n");

    let original_host = head.authority(raw);
    let host = match fwd.host {
        UpstreamHost::Preserve => original_host,
        UpstreamHost::Rewrite(h) => Some(h),
    };
    // RFC 9112 §3.2: every HTTP/1.1 request carries a Host; when the target URI has no
    // authority (an HTTP/1.0 client sent none) its value is empty.
    out.extend_from_slice(b"host: ");
    out.extend_from_slice(host.unwrap_or_default());
    out.extend_from_slice(b"\r\n");
    let mut had_content_length = false;
    for h in &head.headers {
        let name = h.name(raw);
        if name.eq_ignore_ascii_case(b"content-length") {
            had_content_length = true;
        }
        if is_rewritten_request_header(name)
            || name.eq_ignore_ascii_case(fwd.request_id.0)
            || AddedLines::replace(fwd.added, name)
            || fwd
                .drop_headers
                .iter()
                .any(|d| name.eq_ignore_ascii_case(d))
            || fwd
                .set_headers
                .iter()
                .any(|(n, _)| name.eq_ignore_ascii_case(n))
            || is_dropped(name, raw, &head.headers, head.has_connection_header)
        {
            continue;
        }
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value(raw));
        out.extend_from_slice(b"\r\n");
    }
    write_joined(out, raw, &head.headers, b"x-forwarded-for", fwd.client_ip);
    out.extend_from_slice(b"x-forwarded-proto: ");
    out.extend_from_slice(fwd.scheme);
    out.extend_from_slice(b"\r\n");
    if let Some(host) = original_host {
        out.extend_from_slice(b"x-forwarded-host: ");
        out.extend_from_slice(host);
        out.extend_from_slice(b"\r\n");
    }
    let via: &[u8] = if head.version == Version::Http10 {
        b"1.0 strait"
    } else {
        b"1.1 strait"
    };
    write_joined(out, raw, &head.headers, b"via", via);
    write_header(out, fwd.request_id.0, fwd.request_id.1);
    for (name, value) in fwd.set_headers.iter().chain(fwd.append_headers) {
        write_header(out, name, value);
    }
    AddedLines::write_all(fwd.added, out);
    match framing {
        BodyFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        BodyFraming::Length(n) if n > 0 || had_content_length => write_content_length(out, n),
        _ => {}
    }
    out.extend_from_slice(b"\r\n");
}

/// How the response body is delimited towards the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientBody {
    /// No body follows (HEAD, 1xx, 204, 304). For HEAD and 304 the upstream's own
    /// Content-Length, when it sent one, describes the representation and passes through;
    /// none is invented (RFC 9110 §8.6).
    None {
        content_length: Option<u64>,
    },
    Length(u64),
    Chunked,
    UntilClose,
}

/// What a route's response transform changes in a forwarded head beyond the lines it adds.
pub trait ResponseEdits: std::fmt::Debug {
    /// The status sent for the upstream's `status`.
    fn status(&self, status: u16) -> u16;
    /// True for an upstream header that is not passed on.
    fn drops(&self, name: &[u8]) -> bool;
    /// Whether Strait adds itself to `Via`.
    fn via(&self) -> bool;
    /// Writes the lines added only when the head has no header of their name; `has`
    /// tells whether it has one.
    fn write_if_absent(&self, has: &dyn Fn(&[u8]) -> bool, out: &mut BytesMut);
}

/// What the client side of a response needs besides the upstream's head.
#[derive(Debug, Clone, Copy)]
pub struct ClientFraming<'a> {
    pub body: ClientBody,
    pub keep_alive: bool,
    pub client_version: Version,
    /// The request-ID header (lower-case name, value), returned to the client in place of
    /// any the upstream sent.
    pub request_id: (&'a [u8], &'a [u8]),
    /// Lines Strait adds after the request ID (rate limits, CORS), in order.
    pub added: &'a [AddedLines<'a>],
    /// A request header the answer depends on beyond what the upstream said (CORS:
    /// `Origin`): the upstream's Vary lines become one that names it too.
    pub vary: Option<&'a [u8]>,
    /// The route's response transform, if it has one.
    pub edits: Option<&'a dyn ResponseEdits>,
}

/// Writes the response head for the client, ending with the blank line.
pub fn encode_response_head(
    out: &mut BytesMut,
    raw: &[u8],
    head: &ResponseHead,
    client: &ClientFraming,
) {
    let status = client
        .edits
        .map_or(head.status, |edits| edits.status(head.status));
    let reason = if status == head.status {
        &raw[head.reason.0 as usize..head.reason.1 as usize]
    } else {
        super::reason_phrase(status).as_bytes()
    };
    write_status_line(out, status, reason);
    encode_response_fields(out, raw, head, client);
}

/// `HTTP/1.1 <status> <reason>` and its CRLF.
pub fn write_status_line(out: &mut BytesMut, status: u16, reason: &[u8]) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
    out.extend_from_slice(b" ");
    out.extend_from_slice(reason);
    out.extend_from_slice(b"\r\n");
}

/// Writes the header fields of a response head for the client after its status line
/// (which a stored answer may change: a 304, a 206), ending with the blank line.
pub fn encode_response_fields(
    out: &mut BytesMut,
    raw: &[u8],
    head: &ResponseHead,
    client: &ClientFraming,
) {
    for h in &head.headers {
        let name = h.name(raw);
        if name.eq_ignore_ascii_case(b"via")
            || name.eq_ignore_ascii_case(client.request_id.0)
            || (client.vary.is_some() && name.eq_ignore_ascii_case(b"vary"))
            || AddedLines::replace(client.added, name)
            || client.edits.is_some_and(|edits| edits.drops(name))
            || is_dropped(name, raw, &head.headers, head.has_connection_header)
        {
            continue;
        }
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value(raw));
        out.extend_from_slice(b"\r\n");
    }
    if client.edits.is_none_or(|edits| edits.via()) {
        let via: &[u8] = if head.version == Version::Http10 {
            b"1.0 strait"
        } else {
            b"1.1 strait"
        };
        write_joined(out, raw, &head.headers, b"via", via);
    } else {
        // Without Strait's own entry, the upstream's chain passes as it came.
        for h in head
            .headers
            .iter()
            .filter(|h| h.name(raw).eq_ignore_ascii_case(b"via"))
        {
            write_header(out, b"via", h.value(raw));
        }
    }
    write_header(out, client.request_id.0, client.request_id.1);
    AddedLines::write_all(client.added, out);
    if let Some(edits) = client.edits {
        let has = |name: &[u8]| {
            head.headers
                .iter()
                .any(|h| h.name(raw).eq_ignore_ascii_case(name))
        };
        edits.write_if_absent(&has, out);
    }
    if let Some(vary) = client.vary {
        write_vary(out, raw, &head.headers, vary);
    }
    match client.body {
        ClientBody::None {
            content_length: Some(n),
        }
        | ClientBody::Length(n) => write_content_length(out, n),
        ClientBody::None {
            content_length: None,
        } => {}
        ClientBody::Chunked => write_transfer_codings(out, raw, head, true),
        ClientBody::UntilClose => write_transfer_codings(out, raw, head, false),
    }
    write_connection(out, client.keep_alive, client.client_version);
    out.extend_from_slice(b"\r\n");
}

/// The upstream's Vary values on one line, with `field` added unless they name it already
/// (or are `*`, RFC 9110 §12.5.5).
fn write_vary(out: &mut BytesMut, raw: &[u8], headers: &[HeaderSpan], field: &[u8]) {
    let values = headers
        .iter()
        .filter(|h| h.name(raw).eq_ignore_ascii_case(b"vary"))
        .flat_map(|h| list_tokens(h.value(raw)));
    out.extend_from_slice(b"vary: ");
    let (mut has_any, mut names_field) = (false, false);
    for value in values {
        if has_any {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(value);
        has_any = true;
        names_field |= value == b"*" || value.eq_ignore_ascii_case(field);
    }
    if !names_field {
        if has_any {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(field);
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes Transfer-Encoding for a body Strait sends chunked or until close: the upstream's
/// codings other than `chunked` stay (the payload is still coded with them; we only
/// decode chunked), then `chunked` when we chunk.
fn write_transfer_codings(out: &mut BytesMut, raw: &[u8], head: &ResponseHead, chunked: bool) {
    let mut wrote_any = false;
    for h in head
        .headers
        .iter()
        .filter(|h| h.name(raw).eq_ignore_ascii_case(b"transfer-encoding"))
    {
        for coding in list_tokens(h.value(raw)).filter(|c| !c.eq_ignore_ascii_case(b"chunked")) {
            out.extend_from_slice(if wrote_any {
                b", "
            } else {
                b"transfer-encoding: "
            });
            out.extend_from_slice(coding);
            wrote_any = true;
        }
    }
    match (wrote_any, chunked) {
        (true, true) => out.extend_from_slice(b", chunked\r\n"),
        (true, false) => out.extend_from_slice(b"\r\n"),
        (false, true) => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        (false, false) => {}
    }
}

/// Writes the Connection header a client of `version` needs to know the connection's fate.
pub fn write_connection(out: &mut BytesMut, keep_alive: bool, version: Version) {
    match (keep_alive, version) {
        (false, _) => out.extend_from_slice(b"connection: close\r\n"),
        (true, Version::Http10) => out.extend_from_slice(b"connection: keep-alive\r\n"),
        (true, Version::Http11 | Version::Http2) => {}
    }
}

/// Writes `name: value` unless the value is empty.
pub fn write_header(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    if value.is_empty() {
        return;
    }
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

pub fn write_content_length(out: &mut BytesMut, n: u64) {
    let mut digits = itoa::Buffer::new();
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(digits.format(n).as_bytes());
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::{parse_request_head, parse_response_head, Limits};

    fn forwarded(raw: &[u8]) -> String {
        forwarded_with(raw, &[])
    }

    fn forwarded_with(raw: &[u8], added: &[AddedLines<'_>]) -> String {
        let limits = Limits {
            max_header_bytes: 4096,
            max_headers: 16,
            max_body_bytes: 1024,
            max_uri_bytes: 256,
        };
        let head = parse_request_head(raw, &limits).unwrap();
        let fwd = ForwardedRequest {
            target: head.target(raw),
            host: UpstreamHost::Preserve,
            client_ip: b"10.0.0.1",
            scheme: b"http",
            request_id: (b"x-request-id", b"id-1"),
            drop_headers: &[],
            set_headers: &[],
            append_headers: &[],
            added,
            method: None,
        };
        let mut out = BytesMut::new();
        encode_request_head(&mut out, raw, &head, &fwd, head.framing);
        String::from_utf8(out.to_vec()).unwrap()
    }

    /// What a CORS route adds: `Access-Control-*` lines that replace the upstream's.
    fn is_access_control(name: &[u8]) -> bool {
        name.len() >= 15 && name[..15].eq_ignore_ascii_case(b"access-control-")
    }

    #[test]
    fn added_lines_replace_what_they_name_and_vary_is_merged() {
        let encode = |upstream_headers: &str, cors: Option<&[u8]>| {
            let raw = format!("HTTP/1.1 200 OK\r\n{upstream_headers}content-length: 0\r\n\r\n");
            let head = parse_response_head(raw.as_bytes(), false).unwrap();
            let added = cors.map(|lines| AddedLines {
                lines,
                replaces: Some(is_access_control),
            });
            let framing = ClientFraming {
                body: ClientBody::Length(0),
                keep_alive: true,
                client_version: Version::Http11,
                request_id: (b"x-request-id", b"id-1"),
                added: added.as_slice(),
                vary: cors.map(|_| &b"Origin"[..]),
                edits: None,
            };
            let mut out = BytesMut::new();
            encode_response_head(&mut out, raw.as_bytes(), &head, &framing);
            let out = String::from_utf8(out.to_vec()).unwrap();
            out.split("\r\n")
                .filter(|l| {
                    let l = l.to_ascii_lowercase();
                    l.starts_with("vary") || l.starts_with("access-control")
                })
                .map(str::to_owned)
                .collect::<Vec<String>>()
        };
        let ours: &[u8] = b"access-control-allow-origin: https://a.example\r\n";
        let theirs = "Access-Control-Allow-Origin: *\r\naccess-control-expose-headers: x\r\n";
        // (upstream headers, CORS lines, lines out)
        type Case<'a> = (String, Option<&'a [u8]>, &'a [&'a str]);
        let cases: &[Case] = &[
            (
                theirs.to_owned(),
                Some(ours),
                &[
                    "access-control-allow-origin: https://a.example",
                    "vary: Origin",
                ],
            ),
            (theirs.to_owned(), Some(b""), &["vary: Origin"]),
            (
                format!("{theirs}Vary: a\r\nvary: b, c\r\n"),
                Some(b""),
                &["vary: a, b, c, Origin"],
            ),
            (
                "Vary: Accept, ORIGIN\r\n".to_owned(),
                Some(b""),
                &["vary: Accept, ORIGIN"],
            ),
            ("Vary: *\r\n".to_owned(), Some(b""), &["vary: *"]),
            ("Vary: \r\n".to_owned(), Some(b""), &["vary: Origin"]),
            // Off a CORS route, nothing changes.
            (
                format!("{theirs}Vary: a\r\n"),
                None,
                &[
                    "Access-Control-Allow-Origin: *",
                    "access-control-expose-headers: x",
                    "Vary: a",
                ],
            ),
        ];
        for (upstream, cors, want) in cases {
            assert_eq!(encode(upstream, *cors), *want, "{upstream:?}");
        }
    }

    #[test]
    fn upstream_request_always_has_one_host() {
        // RFC 9112 §3.2: an HTTP/1.0 client may omit Host; the HTTP/1.1 request we send may
        // not, so it gets an empty one (the target URI has no authority).
        let out = forwarded(b"GET /old HTTP/1.0\r\n\r\n");
        assert!(
            out.starts_with("GET /old HTTP/1.1\r\nhost: \r\n"),
            "{out:?}"
        );
        assert_eq!(out.matches("host:").count(), 1, "{out:?}");
        assert!(!out.contains("x-forwarded-host"), "{out:?}");

        let out = forwarded(b"GET http://example.com/x HTTP/1.1\r\nHost: other\r\n\r\n");
        assert!(
            out.starts_with("GET /x HTTP/1.1\r\nhost: example.com\r\n"),
            "{out:?}"
        );
        assert_eq!(
            out.matches("host:").count(),
            2,
            "host and x-forwarded-host: {out:?}"
        );
    }

    #[test]
    fn added_request_lines_replace_the_clients_copies() {
        fn is_trace(name: &[u8]) -> bool {
            name.eq_ignore_ascii_case(b"traceparent")
        }
        let raw = b"POST /a HTTP/1.1\r\nHost: h\r\nTraceParent: theirs\r\nX-Keep: 1\r\nContent-Length: 2\r\n\r\n";
        let ours: &[u8] = b"traceparent: ours\r\n";
        let replacing = [AddedLines {
            lines: ours,
            replaces: Some(is_trace),
        }];
        let out = forwarded_with(raw, &replacing);
        assert!(!out.contains("theirs"), "{out:?}");
        assert!(
            out.ends_with("traceparent: ours\r\ncontent-length: 2\r\n\r\n"),
            "added lines go last, before the framing: {out:?}"
        );
        assert!(out.contains("X-Keep: 1\r\n"), "{out:?}");
        // Lines that replace nothing leave the client's copies alone.
        let adding = [AddedLines {
            lines: ours,
            replaces: None,
        }];
        let out = forwarded_with(raw, &adding);
        assert!(out.contains("TraceParent: theirs\r\n"), "{out:?}");
        assert!(out.contains("traceparent: ours\r\n"), "{out:?}");
    }
}
