//! Upstream response heads (RFC 9112 §4, §6.3): parsed in place like requests, and framed
//! by the rules a client would apply, given the request method we sent.

use std::mem::MaybeUninit;

use super::headers::{list_tokens, parse_content_length, trim_ows};
use super::{span_of, BodyFraming, HeaderSpan, ParseError, Version, MAX_HEADERS_CAP};

#[derive(Debug, Clone)]
pub struct ResponseHead {
    pub status: u16,
    pub version: Version,
    /// The status line's reason phrase (may be empty).
    pub reason: (u32, u32),
    pub headers: Vec<HeaderSpan>,
    pub framing: BodyFraming,
    /// The upstream connection can carry another request after this response.
    pub keep_alive: bool,
    pub has_connection_header: bool,
}

/// Parses one complete response head. `request_was_head` and the status decide whether a
/// body follows at all (RFC 9112 §6.3 rules 1–2).
pub fn parse_response_head(
    head: &[u8],
    request_was_head: bool,
) -> Result<ResponseHead, ParseError> {
    let mut storage = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS_CAP];
    let mut res = httparse::Response::new(&mut []);
    match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut res,
        head,
        &mut storage,
    ) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(ParseError::ResponseIncomplete),
        Err(error) => return Err(ParseError::ResponseSyntax(error)),
    }
    let (Some(minor), Some(status)) = (res.version, res.code) else {
        return Err(ParseError::ResponseIncomplete);
    };
    let version = if minor == 0 {
        Version::Http10
    } else {
        Version::Http11
    };
    if !(100..=599).contains(&status) {
        return Err(ParseError::ResponseStatus(status));
    }
    let reason = res.reason.unwrap_or("");
    let mut parsed = ResponseHead {
        status,
        version,
        reason: if reason.is_empty() {
            (0, 0)
        } else {
            span_of(head, reason.as_bytes())
        },
        headers: Vec::with_capacity(res.headers.len()),
        framing: BodyFraming::UntilClose,
        keep_alive: version == Version::Http11,
        has_connection_header: false,
    };
    let mut content_length: Option<u64> = None;
    let mut transfer_encoding: Option<bool> = None; // Some(final coding is chunked)
    for h in res.headers.iter() {
        let name = h.name.as_bytes();
        let value = trim_ows(h.value);
        parsed.headers.push(HeaderSpan {
            name: span_of(head, name),
            value: span_of(head, value),
        });
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = parse_content_length(value).ok_or(ParseError::ResponseContentLength)?;
            if content_length.is_some_and(|prev| prev != n) {
                return Err(ParseError::ResponseConflictingContentLength);
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            if let Some(last) = list_tokens(value).last() {
                transfer_encoding = Some(last.eq_ignore_ascii_case(b"chunked"));
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
        }
    }
    let no_body =
        request_was_head || (100..200).contains(&status) || status == 204 || status == 304;
    parsed.framing = if no_body {
        BodyFraming::Length(0)
    } else {
        match (transfer_encoding, content_length) {
            (Some(true), None) => BodyFraming::Chunked,
            // Transfer-Encoding overrides Content-Length; a sender of both may be attempting
            // smuggling, so the connection is not reused (§6.3 rule 3).
            (Some(true), Some(_)) => {
                parsed.keep_alive = false;
                BodyFraming::Chunked
            }
            // A coding other than a final chunked: the body runs to the close (§6.3 rule 4).
            (Some(false), _) => BodyFraming::UntilClose,
            (None, Some(n)) => BodyFraming::Length(n),
            (None, None) => BodyFraming::UntilClose,
        }
    };
    if parsed.framing == BodyFraming::UntilClose {
        parsed.keep_alive = false;
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use httparse::Error::Version as BadVersion;
    use ParseError::*;

    /// The framing and whether the connection may carry another request.
    type Framed = Result<(BodyFraming, bool), ParseError>;

    #[test]
    fn response_heads_are_framed_or_refused() {
        let cases: &[(&[u8], Framed)] = &[
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                Ok((BodyFraming::Length(5), true)),
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
                Ok((BodyFraming::Chunked, false)),
            ),
            (
                b"HTTP/1.1 200 OK\r\n\r\n",
                Ok((BodyFraming::UntilClose, false)),
            ),
            (
                b"HTTP/1.1 204 No Content\r\n\r\n",
                Ok((BodyFraming::Length(0), true)),
            ),
            (b"HTTP/1.1 600 Nope\r\n\r\n", Err(ResponseStatus(600))),
            (b"HTTP/1.1 099 Early\r\n\r\n", Err(ResponseStatus(99))),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\n",
                Err(ResponseContentLength),
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                Err(ResponseConflictingContentLength),
            ),
            (b"HTTP/1.1 200 OK\r\n", Err(ResponseIncomplete)),
            (b"HTTX/1.1 200 OK\r\n\r\n", Err(ResponseSyntax(BadVersion))),
        ];
        for (raw, want) in cases {
            let got = parse_response_head(raw, false).map(|h| (h.framing, h.keep_alive));
            assert_eq!(got, *want, "{:?}", String::from_utf8_lossy(raw));
        }
    }
}
