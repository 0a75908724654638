//! Heads between HTTP/2 and the gateway's HTTP/1.1 form. A stream's request head is
//! rendered as the HTTP/1.1 head the connection loop parses (so routing, filters, logs and
//! the upstream request see one representation); the answer the loop writes is parsed
//! back and becomes the stream's HEADERS, DATA and trailers.
//!
//! RFC 9113 §8.2.2: connection-specific fields never cross into HTTP/2 (the h2 codec
//! already refuses them from clients); §8.2.3: split `cookie` fields are joined again;
//! §8.3.1: `:authority` stands for `Host`.

use bytes::{BufMut, BytesMut};
use http::header::{HeaderName, HeaderValue, COOKIE, HOST};
use http::{HeaderMap, Method};

use crate::http1::headers::{is_hop_by_hop, is_nominated};
use crate::http1::{HeaderSpan, RequestHead, ResponseHead};

/// How the body of a rendered request head is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestBody {
    /// The stream ended with its HEADERS: no body.
    None,
    /// The client declared a Content-Length, which the head keeps; DATA passes as it is.
    Length,
    /// No length: the head says `transfer-encoding: chunked` and DATA goes as chunks.
    Chunked,
}

/// Why a stream's request cannot be served, answered without going further.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// CONNECT (a tunnel over a stream) is not offered.
    Connect,
    /// `:authority` with userinfo (RFC 9113 §8.3.1 forbids it).
    Userinfo,
}

impl Refusal {
    pub fn status(self) -> http::StatusCode {
        match self {
            Refusal::Connect => http::StatusCode::METHOD_NOT_ALLOWED,
            Refusal::Userinfo => http::StatusCode::BAD_REQUEST,
        }
    }
}

/// Renders `request` as an HTTP/1.1 head into `out`. `ended`: the stream ended with its
/// HEADERS frame.
pub fn request_head(
    request: &http::request::Parts,
    ended: bool,
    out: &mut BytesMut,
) -> Result<RequestBody, Refusal> {
    if request.method == Method::CONNECT {
        return Err(Refusal::Connect);
    }
    let authority = request.uri.authority();
    if authority.is_some_and(|a| a.as_str().contains('@')) {
        return Err(Refusal::Userinfo);
    }
    let target = request.uri.path_and_query().map_or("/", |p| p.as_str());
    out.put_slice(request.method.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(target.as_bytes());
    out.put_slice(b" HTTP/1.1\r\n");
    if let Some(authority) = authority {
        line(out, b"host", authority.as_str().as_bytes());
    }
    let mut has_length = false;
    let mut cookies = request.headers.get_all(COOKIE).iter();
    if let Some(first) = cookies.next() {
        out.put_slice(b"cookie: ");
        out.put_slice(first.as_bytes());
        for more in cookies {
            out.put_slice(b"; ");
            out.put_slice(more.as_bytes());
        }
        out.put_slice(b"\r\n");
    }
    for (name, value) in &request.headers {
        if name == COOKIE || (name == HOST && authority.is_some()) {
            continue;
        }
        let name = name.as_str().as_bytes();
        if name == b"content-length" {
            has_length = true;
        } else if is_hop_by_hop(name) && name != b"te" {
            continue;
        }
        line(out, name, value.as_bytes());
    }
    let body = if has_length {
        RequestBody::Length
    } else if ended {
        RequestBody::None
    } else {
        out.put_slice(b"transfer-encoding: chunked\r\n");
        RequestBody::Chunked
    };
    out.put_slice(b"\r\n");
    Ok(body)
}

/// The values of a head's Connection fields: the fields they name are hop-by-hop too.
fn connection_values<'a>(raw: &'a [u8], headers: &[HeaderSpan]) -> Vec<&'a [u8]> {
    headers
        .iter()
        .filter(|h| h.name(raw).eq_ignore_ascii_case(b"connection"))
        .map(|h| h.value(raw))
        .collect()
}

fn line(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    out.put_slice(name);
    out.put_slice(b": ");
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

/// The HTTP/2 response for an HTTP/1.1 head the connection loop wrote: its status and its
/// fields but the connection-specific ones (Content-Length stays: it is end-to-end).
pub fn response_head(raw: &[u8], head: &ResponseHead) -> http::Response<()> {
    let connection = connection_values(raw, &head.headers);
    let mut response = http::Response::new(());
    *response.status_mut() =
        http::StatusCode::from_u16(head.status).unwrap_or(http::StatusCode::BAD_GATEWAY);
    let fields = response.headers_mut();
    for h in &head.headers {
        let name = h.name(raw);
        let end_to_end = name.eq_ignore_ascii_case(b"content-length")
            || !(is_hop_by_hop(name) || is_nominated(name, &connection));
        if end_to_end {
            append(fields, name, h.value(raw));
        }
    }
    response
}

/// The HTTP/2 request for an HTTP/1.1 head the upstream client wrote (`raw`, parsed as
/// `head`), to an upstream reached over `scheme`: `:authority` from its Host, the
/// connection-specific fields left out, and `te: trailers` for gRPC (its servers insist).
pub fn upstream_request(
    raw: &[u8],
    head: &RequestHead,
    scheme: &'static str,
) -> Result<http::Request<()>, http::Error> {
    let connection = connection_values(raw, &head.headers);
    let authority = head.authority(raw).unwrap_or(b"localhost");
    let mut uri = Vec::with_capacity(scheme.len() + 3 + authority.len() + 64);
    uri.extend_from_slice(scheme.as_bytes());
    uri.extend_from_slice(b"://");
    uri.extend_from_slice(authority);
    uri.extend_from_slice(head.target(raw));
    let mut request = http::Request::builder()
        .method(head.method(raw))
        .uri(uri)
        .body(())?;
    let fields = request.headers_mut();
    let mut grpc = false;
    for h in &head.headers {
        let name = h.name(raw);
        if name.eq_ignore_ascii_case(b"host") {
            continue;
        }
        if name.eq_ignore_ascii_case(b"content-type") {
            grpc = h.value(raw).starts_with(b"application/grpc");
        }
        let end_to_end = name.eq_ignore_ascii_case(b"content-length")
            || !(is_hop_by_hop(name) || is_nominated(name, &connection));
        if end_to_end {
            append(fields, name, h.value(raw));
        }
    }
    if grpc {
        fields.insert(http::header::TE, HeaderValue::from_static("trailers"));
    }
    Ok(request)
}

/// Renders an upstream's HTTP/2 response head as the HTTP/1.1 head the upstream client
/// reads. `ended`: the stream ended with its HEADERS; `is_head`: it answers a HEAD.
/// Returns whether the body follows chunked (no Content-Length: DATA become chunks and
/// the trailers the last chunk's trailer section).
pub fn http1_response_head(
    response: &http::response::Parts,
    ended: bool,
    is_head: bool,
    out: &mut BytesMut,
) -> bool {
    let status = response.status;
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(status.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.put_slice(b"\r\n");
    let mut has_length = false;
    for (name, value) in &response.headers {
        let name = name.as_str().as_bytes();
        if name == b"content-length" {
            has_length = true;
        } else if is_hop_by_hop(name) {
            continue;
        }
        line(out, name, value.as_bytes());
    }
    let bodiless = is_head || status.is_informational() || status == 204 || status == 304;
    let chunked = !bodiless && !has_length && !ended;
    if chunked {
        out.put_slice(b"transfer-encoding: chunked\r\n");
    } else if !bodiless && !has_length {
        out.put_slice(b"content-length: 0\r\n");
    }
    out.put_slice(b"\r\n");
    chunked
}

/// The fields of a chunked body's trailer section (`name: value` lines, each ending in
/// CRLF, then an empty line), as the chunked decoder validated it.
pub fn trailers(section: &[u8]) -> HeaderMap {
    let mut fields = HeaderMap::new();
    for line in section.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let name = &line[..colon];
        if !is_hop_by_hop(name) {
            append(
                &mut fields,
                name,
                crate::http1::headers::trim_ows(&line[colon + 1..]),
            );
        }
    }
    fields
}

/// Adds one field; one that HTTP/2 cannot carry (an invalid name or value) is left out.
fn append(fields: &mut HeaderMap, name: &[u8], value: &[u8]) {
    if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
        fields.append(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::response::parse_response_head;

    fn request(method: &str, uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut builder = http::Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    fn render(parts: &http::request::Parts, ended: bool) -> (String, Result<RequestBody, Refusal>) {
        let mut out = BytesMut::new();
        let body = request_head(parts, ended, &mut out);
        (String::from_utf8(out.to_vec()).unwrap(), body)
    }

    #[test]
    fn request_heads_render_as_http11() {
        let get = request(
            "GET",
            "https://api.example.com/users/1?x=2",
            &[
                ("host", "other.example"),
                ("accept", "*/*"),
                ("te", "trailers"),
            ],
        );
        assert_eq!(
            render(&get, true),
            (
                "GET /users/1?x=2 HTTP/1.1\r\nhost: api.example.com\r\naccept: */*\r\nte: trailers\r\n\r\n"
                    .into(),
                Ok(RequestBody::None)
            )
        );
        let post = request("POST", "http://a.test/p", &[("content-length", "5")]);
        assert_eq!(
            render(&post, false),
            (
                "POST /p HTTP/1.1\r\nhost: a.test\r\ncontent-length: 5\r\n\r\n".into(),
                Ok(RequestBody::Length)
            )
        );
        let streamed = request("POST", "http://a.test/p", &[]);
        assert_eq!(
            render(&streamed, false),
            (
                "POST /p HTTP/1.1\r\nhost: a.test\r\ntransfer-encoding: chunked\r\n\r\n".into(),
                Ok(RequestBody::Chunked)
            )
        );
        // No :authority: the client's Host stays.
        let relative = request("GET", "/only-path", &[("host", "h.test")]);
        assert_eq!(
            render(&relative, true).0,
            "GET /only-path HTTP/1.1\r\nhost: h.test\r\n\r\n"
        );
    }

    #[test]
    fn split_cookies_are_joined() {
        let get = request(
            "GET",
            "http://a.test/",
            &[("cookie", "a=1"), ("x", "y"), ("cookie", "b=2")],
        );
        assert_eq!(
            render(&get, true).0,
            "GET / HTTP/1.1\r\nhost: a.test\r\ncookie: a=1; b=2\r\nx: y\r\n\r\n"
        );
    }

    #[test]
    fn connect_and_userinfo_are_refused() {
        let connect = request("CONNECT", "a.test:443", &[]);
        assert_eq!(render(&connect, true).1, Err(Refusal::Connect));
        let userinfo = request("GET", "http://user@a.test/", &[]);
        assert_eq!(render(&userinfo, true).1, Err(Refusal::Userinfo));
    }

    #[test]
    fn response_heads_lose_connection_fields() {
        let raw = b"HTTP/1.1 201 Created\r\nContent-Length: 3\r\nConnection: close, x-hop\r\n\
            X-Hop: 1\r\nKeep-Alive: timeout=5\r\nX-Kept: yes\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n";
        let head = parse_response_head(raw, false).unwrap();
        let response = response_head(raw, &head);
        assert_eq!(response.status(), 201);
        let names: Vec<_> = response
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
            .collect();
        assert_eq!(
            names,
            [
                ("content-length", "3"),
                ("x-kept", "yes"),
                ("set-cookie", "a=1"),
                ("set-cookie", "b=2")
            ]
        );
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        let head = parse_response_head(chunked, false).unwrap();
        assert!(response_head(chunked, &head).headers().is_empty());
    }

    #[test]
    fn upstream_requests_carry_the_authority_and_te_for_grpc() {
        let raw = b"POST /pkg.Svc/Call HTTP/1.1\r\nhost: backend:50051\r\ncontent-type: application/grpc\r\n\
            transfer-encoding: chunked\r\nconnection: keep-alive\r\nx-request-id: r1\r\n\r\n";
        let head = crate::http1::parse_request_head(
            raw,
            &crate::http1::Limits {
                max_header_bytes: 4096,
                max_headers: 32,
                max_body_bytes: u64::MAX,
                max_uri_bytes: 1024,
            },
        )
        .unwrap();
        let request = upstream_request(raw, &head, "http").unwrap();
        assert_eq!(request.method(), "POST");
        assert_eq!(request.uri(), "http://backend:50051/pkg.Svc/Call");
        let names: Vec<_> = request.headers().keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["content-type", "x-request-id", "te"]);
        assert_eq!(request.headers()["te"], "trailers");
    }

    #[test]
    fn upstream_response_heads_render_as_http11() {
        let render = |status: u16, fields: &[(&str, &str)], ended: bool, is_head: bool| {
            let mut response = http::Response::builder().status(status);
            for (n, v) in fields {
                response = response.header(*n, *v);
            }
            let (parts, ()) = response.body(()).unwrap().into_parts();
            let mut out = BytesMut::new();
            let chunked = http1_response_head(&parts, ended, is_head, &mut out);
            (String::from_utf8(out.to_vec()).unwrap(), chunked)
        };
        assert_eq!(
            render(200, &[("content-type", "application/grpc")], false, false),
            ("HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\ntransfer-encoding: chunked\r\n\r\n".into(), true)
        );
        assert_eq!(
            render(200, &[("grpc-status", "14")], true, false),
            (
                "HTTP/1.1 200 OK\r\ngrpc-status: 14\r\ncontent-length: 0\r\n\r\n".into(),
                false
            )
        );
        assert_eq!(
            render(200, &[("content-length", "5")], false, false),
            ("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n".into(), false)
        );
        assert_eq!(
            render(204, &[], false, false),
            ("HTTP/1.1 204 No Content\r\n\r\n".into(), false)
        );
        assert_eq!(
            render(200, &[("content-length", "9")], true, true),
            ("HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n".into(), false)
        );
    }

    #[test]
    fn trailer_sections_become_fields() {
        let fields = trailers(b"grpc-status: 0\r\ngrpc-message:  ok \r\nTrailer: x\r\n\r\n");
        assert_eq!(fields.len(), 2);
        assert_eq!(fields["grpc-status"], "0");
        assert_eq!(fields["grpc-message"], "ok");
    }
}
