//! The errors that end a request, and the short JSON answers they become.
//!
//! Every failure on the request path is one [`ProxyError`]. In the shape of pingora's
//! `pingora-error`, each says which side failed ([`Side`]: the client sent something we
//! refuse, an upstream misbehaved, or we did) and whether the request may be sent again
//! ([`Retry`]). Unlike pingora's it is a plain `Copy` enum with no cause chain or context
//! string: the answer is pre-rendered and the variant names the failure.
//!
//! One table, `ProxyError::class`, gives every variant its status, side and retry class.
//! The answers are rendered from it once per process, so an error costs no formatting.
//! The codec's [`ParseError`] becomes a `ProxyError` in one `From` impl: a bad request head
//! is the client's fault, a bad response head the upstream's.

use std::sync::OnceLock;

use bytes::Bytes;

use crate::http1::{reason_phrase, ParseError};

/// Why a request could not be served normally. The side, status and retry class of each
/// variant are in `ProxyError::class`; the message is the answer's `error` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    // The request, as read.
    #[error("malformed request")]
    BadRequest,
    #[error("invalid request framing")]
    BadFraming,
    #[error("invalid chunked body")]
    BadChunk,
    #[error("invalid Host header")]
    BadHost,
    #[error("request head read timed out")]
    HeadTimeout,
    #[error("request body read timed out")]
    BodyTimeout,
    #[error("request body too large")]
    BodyTooLarge,
    #[error("request target too long")]
    UriTooLong,
    #[error("request header fields too large")]
    HeadTooLarge,
    #[error("unsupported Expect value")]
    ExpectationFailed,
    #[error("unsupported transfer coding")]
    UnsupportedTransferCoding,
    #[error("method not implemented")]
    MethodNotImplemented,
    #[error("HTTP version not supported")]
    VersionNotSupported,
    #[error("no route")]
    NoRoute,
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The path cannot be normalised (`http1::path`): it could be read two ways.
    #[error("invalid request path")]
    BadPath,
    // The upstream exchange.
    #[error("upstream connect failed")]
    UpstreamConnect,
    #[error("upstream connect timed out")]
    UpstreamConnectTimeout,
    #[error("upstream response timed out")]
    UpstreamTimeout,
    #[error("invalid upstream response")]
    UpstreamBadResponse,
    #[error("upstream closed the connection")]
    UpstreamClosed,
    #[error("no upstream endpoint available")]
    NoEndpoint,
    #[error("upstream overloaded")]
    Overloaded,
    // The route's policies.
    #[error("rate limit exceeded")]
    RateLimited,
    #[error("missing or invalid credentials")]
    Unauthorized,
    #[error("forbidden")]
    Forbidden,
    #[error("CORS preflight refused")]
    CorsRefused,
    #[error("insufficient scope")]
    InsufficientScope,
    /// The route requires a verified client certificate (`client_cert = "required"`).
    #[error("client certificate required")]
    ClientCertificateRequired,
    #[error("authorization server unavailable")]
    AuthUnavailable,
    /// A cluster rate limit cannot be checked (Redis unreachable, `on_redis_error = "closed"`).
    #[error("rate limit unavailable")]
    RateLimitUnavailable,
    /// The client asked for a stored answer only (`only-if-cached`) and none is usable.
    #[error("not in cache")]
    NotCached,
    /// A route's JSON body edit met a request body that is not JSON.
    #[error("invalid JSON body")]
    BadJsonBody,
    /// A route's JSON body edit refuses an answer body over its `max_bytes`.
    #[error("upstream response body too large")]
    UpstreamBodyTooLarge,
}

/// Which side of an exchange failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client: a request we refuse (malformed, too large, too slow, not allowed).
    Client,
    /// An upstream, or the authorization server: unreachable, slow, closed, garbled, or
    /// without a usable endpoint or capacity.
    Upstream,
    /// Strait itself, or a service it depends on that is neither (the rate limits' Redis).
    Local,
}

/// Whether a request that met an error may be sent again, to another endpoint or on a
/// fresh connection (RFC 9112 §9.3.1, RFC 9110 §9.2.2). This is only whether it is safe;
/// whether it is wanted (`on_connect_failure`, `on_reset`, the budget) is the upstream's
/// retry policy, applied on top.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Sending the request again cannot help: it is at fault, or the refusal is ours.
    Never,
    /// The request never reached the upstream (no connection): any method may be sent again.
    NotSent,
    /// The upstream closed the connection without answering. On a pooled connection that
    /// is most likely its idle close racing our request, so a fresh connection to the same
    /// endpoint is worth one more try (pingora's `RetryType::ReusedOnly`); the upstream may
    /// still have acted on it, so only an idempotent method is sent again.
    ClosedUnanswered,
    /// The upstream may have acted on the request (no answer in time, or one we could not
    /// read): only an idempotent method may be sent again.
    IfIdempotent,
}

impl ProxyError {
    /// The one table: status, side and retry class of every variant.
    const fn class(self) -> (u16, Side, Retry) {
        use ProxyError::*;
        use Retry::*;
        use Side::*;
        match self {
            BadRequest | BadFraming | BadChunk | BadHost | BadPath => (400, Client, Never),
            Unauthorized => (401, Client, Never),
            Forbidden | CorsRefused | InsufficientScope | ClientCertificateRequired => {
                (403, Client, Never)
            }
            NoRoute => (404, Client, Never),
            MethodNotAllowed => (405, Client, Never),
            HeadTimeout | BodyTimeout => (408, Client, Never),
            BodyTooLarge => (413, Client, Never),
            UriTooLong => (414, Client, Never),
            ExpectationFailed => (417, Client, Never),
            RateLimited => (429, Client, Never),
            HeadTooLarge => (431, Client, Never),
            // The client asked for what we do not implement.
            UnsupportedTransferCoding | MethodNotImplemented => (501, Client, Never),
            VersionNotSupported => (505, Client, Never),
            UpstreamConnect => (502, Upstream, NotSent),
            UpstreamConnectTimeout => (504, Upstream, NotSent),
            UpstreamClosed => (502, Upstream, ClosedUnanswered),
            UpstreamBadResponse => (502, Upstream, IfIdempotent),
            UpstreamTimeout => (504, Upstream, IfIdempotent),
            // No endpoint is usable, or the upstream's limits (circuit breaker) are reached:
            // trying again at once would meet the same.
            NoEndpoint | Overloaded | AuthUnavailable => (503, Upstream, Never),
            RateLimitUnavailable => (503, Local, Never),
            // `only-if-cached` and nothing usable stored (RFC 9111 §5.2.1.7).
            NotCached => (504, Local, Never),
            BadJsonBody => (400, Client, Never),
            UpstreamBodyTooLarge => (502, Upstream, Never),
        }
    }

    /// The status of the answer.
    pub fn status(self) -> u16 {
        self.class().0
    }

    /// Which side failed.
    pub fn side(self) -> Side {
        self.class().1
    }

    /// Whether sending the request again may be safe, and on what condition.
    pub fn retry(self) -> Retry {
        self.class().2
    }

    /// True when a request of an `idempotent` method (or not) may be sent again after this
    /// error.
    pub fn is_retry_safe(self, idempotent: bool) -> bool {
        match self.retry() {
            Retry::Never => false,
            Retry::NotSent => true,
            Retry::ClosedUnanswered | Retry::IfIdempotent => idempotent,
        }
    }

    /// The pre-rendered response head (without the blank line) and JSON body.
    pub fn response(self) -> &'static ErrorResponse {
        static TABLE: OnceLock<Vec<ErrorResponse>> = OnceLock::new();
        let table = TABLE.get_or_init(|| ALL.iter().map(|e| ErrorResponse::render(*e)).collect());
        // ALL lists every variant in declaration order, so the index is the discriminant.
        &table[self as usize]
    }

    /// The gRPC status a gRPC client gets for this error (the gRPC spec's mapping of HTTP
    /// statuses, with a gateway's timeouts as DEADLINE_EXCEEDED and its limits as
    /// RESOURCE_EXHAUSTED).
    pub fn grpc_code(self) -> u8 {
        match self.status() {
            401 => 16,             // UNAUTHENTICATED
            403 => 7,              // PERMISSION_DENIED
            404 | 405 | 501 => 12, // UNIMPLEMENTED
            408 | 504 => 4,        // DEADLINE_EXCEEDED
            413 | 429 => 8,        // RESOURCE_EXHAUSTED
            502 | 503 => 14,       // UNAVAILABLE
            400..=499 => 13,       // INTERNAL: the request was not one the gateway could pass
            _ => 2,                // UNKNOWN
        }
    }

    /// The answer to a gRPC request: HTTP 200 and the status in the head, no message
    /// (gRPC's Trailers-Only form).
    pub fn grpc_response(self) -> &'static ErrorResponse {
        static TABLE: OnceLock<Vec<ErrorResponse>> = OnceLock::new();
        let table = TABLE.get_or_init(|| ALL.iter().map(|e| ErrorResponse::grpc(*e)).collect());
        &table[self as usize]
    }
}

/// The codec's refusals at the proxy's edge: a request head's are the client's, a response
/// head's the upstream's.
impl From<ParseError> for ProxyError {
    fn from(error: ParseError) -> Self {
        use ParseError as P;
        match error {
            P::Incomplete
            | P::Syntax(_)
            | P::InvalidVersion
            | P::AsteriskNotOptions
            | P::InvalidTarget => ProxyError::BadRequest,
            P::TooManyHeaders | P::HeadTooLarge => ProxyError::HeadTooLarge,
            P::UnsupportedVersion => ProxyError::VersionNotSupported,
            P::Connect => ProxyError::MethodNotImplemented,
            P::UriTooLong => ProxyError::UriTooLong,
            P::MissingHost | P::DuplicateHost | P::InvalidHost => ProxyError::BadHost,
            P::InvalidContentLength
            | P::ConflictingContentLength
            | P::InvalidTransferCoding
            | P::ChunkedNotFinal
            | P::ChunkedTwice
            | P::TransferEncodingWithLength
            | P::TransferEncodingInHttp10 => ProxyError::BadFraming,
            P::UnsupportedTransferCoding => ProxyError::UnsupportedTransferCoding,
            P::UnsupportedExpectation => ProxyError::ExpectationFailed,
            P::BodyTooLarge => ProxyError::BodyTooLarge,
            P::ResponseIncomplete
            | P::ResponseSyntax(_)
            | P::ResponseStatus(_)
            | P::ResponseContentLength
            | P::ResponseConflictingContentLength => ProxyError::UpstreamBadResponse,
        }
    }
}

const ALL: [ProxyError; 34] = {
    use ProxyError::*;
    [
        BadRequest,
        BadFraming,
        BadChunk,
        BadHost,
        HeadTimeout,
        BodyTimeout,
        BodyTooLarge,
        UriTooLong,
        HeadTooLarge,
        ExpectationFailed,
        UnsupportedTransferCoding,
        MethodNotImplemented,
        VersionNotSupported,
        NoRoute,
        MethodNotAllowed,
        BadPath,
        UpstreamConnect,
        UpstreamConnectTimeout,
        UpstreamTimeout,
        UpstreamBadResponse,
        UpstreamClosed,
        NoEndpoint,
        Overloaded,
        RateLimited,
        Unauthorized,
        Forbidden,
        CorsRefused,
        InsufficientScope,
        ClientCertificateRequired,
        AuthUnavailable,
        RateLimitUnavailable,
        NotCached,
        BadJsonBody,
        UpstreamBodyTooLarge,
    ]
};

/// A generated answer: head lines (status line, content-type, content-length) and body.
#[derive(Debug)]
pub struct ErrorResponse {
    pub head: Bytes,
    pub body: Bytes,
}

impl ErrorResponse {
    fn render(error: ProxyError) -> Self {
        let status = error.status();
        let body = format!("{{\"error\":\"{error}\",\"status\":{status}}}\n");
        let head = format!(
            "HTTP/1.1 {status} {}\r\nserver: strait\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            reason_phrase(status),
            body.len()
        );
        ErrorResponse {
            head: Bytes::from(head),
            body: Bytes::from(body),
        }
    }

    fn grpc(error: ProxyError) -> Self {
        // The messages are plain ASCII without `%`: no percent-encoding is needed.
        let head = format!(
            "HTTP/1.1 200 OK\r\nserver: strait\r\ncontent-type: application/grpc\r\n\
             grpc-status: {}\r\ngrpc-message: {error}\r\ncontent-length: 0\r\n",
            error.grpc_code()
        );
        ErrorResponse {
            head: Bytes::from(head),
            body: Bytes::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Retry::*;
    use Side::*;

    #[test]
    fn grpc_answers_say_the_status_in_the_head() {
        let cases = [
            (ProxyError::UpstreamConnect, 14),
            (ProxyError::NoEndpoint, 14),
            (ProxyError::UpstreamTimeout, 4),
            (ProxyError::Unauthorized, 16),
            (ProxyError::Forbidden, 7),
            (ProxyError::RateLimited, 8),
            (ProxyError::NoRoute, 12),
        ];
        for (error, code) in cases {
            assert_eq!(error.grpc_code(), code, "{error:?}");
            let head = std::str::from_utf8(&error.grpc_response().head).unwrap();
            assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
            assert!(head.contains(&format!("grpc-status: {code}\r\n")), "{head}");
            assert!(!error.to_string().contains('%'), "{error}");
        }
        for e in ALL {
            assert!(
                e.to_string().is_ascii() && !e.to_string().contains('%'),
                "{e}"
            );
        }
    }

    #[test]
    fn table_matches_discriminants() {
        for (i, e) in ALL.iter().enumerate() {
            assert_eq!(*e as usize, i);
            let r = e.response();
            assert!(r
                .head
                .starts_with(format!("HTTP/1.1 {} ", e.status()).as_bytes()));
            assert!(std::str::from_utf8(&r.body)
                .unwrap()
                .contains(&format!("\"status\":{}", e.status())));
        }
    }

    #[test]
    fn every_variant_has_its_status_side_and_retry_class() {
        use ProxyError as E;
        let table: [(ProxyError, u16, Side, Retry); ALL.len()] = [
            (E::BadRequest, 400, Client, Never),
            (E::BadFraming, 400, Client, Never),
            (E::BadChunk, 400, Client, Never),
            (E::BadHost, 400, Client, Never),
            (E::HeadTimeout, 408, Client, Never),
            (E::BodyTimeout, 408, Client, Never),
            (E::BodyTooLarge, 413, Client, Never),
            (E::UriTooLong, 414, Client, Never),
            (E::HeadTooLarge, 431, Client, Never),
            (E::ExpectationFailed, 417, Client, Never),
            (E::UnsupportedTransferCoding, 501, Client, Never),
            (E::MethodNotImplemented, 501, Client, Never),
            (E::VersionNotSupported, 505, Client, Never),
            (E::NoRoute, 404, Client, Never),
            (E::MethodNotAllowed, 405, Client, Never),
            (E::BadPath, 400, Client, Never),
            (E::UpstreamConnect, 502, Upstream, NotSent),
            (E::UpstreamConnectTimeout, 504, Upstream, NotSent),
            (E::UpstreamTimeout, 504, Upstream, IfIdempotent),
            (E::UpstreamBadResponse, 502, Upstream, IfIdempotent),
            (E::UpstreamClosed, 502, Upstream, ClosedUnanswered),
            (E::NoEndpoint, 503, Upstream, Never),
            (E::Overloaded, 503, Upstream, Never),
            (E::RateLimited, 429, Client, Never),
            (E::Unauthorized, 401, Client, Never),
            (E::Forbidden, 403, Client, Never),
            (E::CorsRefused, 403, Client, Never),
            (E::InsufficientScope, 403, Client, Never),
            (E::ClientCertificateRequired, 403, Client, Never),
            (E::AuthUnavailable, 503, Upstream, Never),
            (E::RateLimitUnavailable, 503, Local, Never),
            (E::NotCached, 504, Local, Never),
            (E::BadJsonBody, 400, Client, Never),
            (E::UpstreamBodyTooLarge, 502, Upstream, Never),
        ];
        for (row, (error, status, side, retry)) in table.into_iter().enumerate() {
            // Declaration order, so that every variant has exactly one row.
            assert_eq!(error, ALL[row], "row {row}");
            assert_eq!(
                (error.status(), error.side(), error.retry()),
                (status, side, retry),
                "{error:?}"
            );
            let answer = error.response();
            let status_line = format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status));
            assert!(answer.head.starts_with(status_line.as_bytes()), "{error:?}");
        }
    }

    #[test]
    fn retry_safety_follows_the_method() {
        // (error, safe for an idempotent method, safe for any other)
        let cases = [
            (ProxyError::UpstreamConnect, true, true),
            (ProxyError::UpstreamConnectTimeout, true, true),
            (ProxyError::UpstreamClosed, true, false),
            (ProxyError::UpstreamTimeout, true, false),
            (ProxyError::UpstreamBadResponse, true, false),
            (ProxyError::NoEndpoint, false, false),
            (ProxyError::BadRequest, false, false),
            (ProxyError::RateLimitUnavailable, false, false),
        ];
        for (error, idempotent, other) in cases {
            assert_eq!(
                (error.is_retry_safe(true), error.is_retry_safe(false)),
                (idempotent, other),
                "{error:?}"
            );
        }
        for error in ALL {
            if error.side() != Upstream {
                assert_eq!(error.retry(), Never, "{error:?}");
            }
        }
    }

    #[test]
    fn answers_are_rendered_once_with_their_message() {
        let answer = ProxyError::BadFraming.response();
        assert_eq!(
            &answer.head[..],
            b"HTTP/1.1 400 Bad Request\r\nserver: strait\r\ncontent-type: application/json\r\ncontent-length: 49\r\n"
        );
        assert_eq!(
            &answer.body[..],
            b"{\"error\":\"invalid request framing\",\"status\":400}\n"
        );
        assert!(std::ptr::eq(answer, ProxyError::BadFraming.response()));
    }

    /// Every codec refusal and the proxy error it has always been answered with (and so
    /// its status and message).
    #[test]
    fn parse_errors_keep_their_answers() {
        use httparse::Error::Token;
        use ParseError as P;
        let table = [
            (P::Incomplete, ProxyError::BadRequest),
            (P::Syntax(Token), ProxyError::BadRequest),
            (P::TooManyHeaders, ProxyError::HeadTooLarge),
            (P::HeadTooLarge, ProxyError::HeadTooLarge),
            (P::InvalidVersion, ProxyError::BadRequest),
            (P::UnsupportedVersion, ProxyError::VersionNotSupported),
            (P::Connect, ProxyError::MethodNotImplemented),
            (P::UriTooLong, ProxyError::UriTooLong),
            (P::AsteriskNotOptions, ProxyError::BadRequest),
            (P::InvalidTarget, ProxyError::BadRequest),
            (P::MissingHost, ProxyError::BadHost),
            (P::DuplicateHost, ProxyError::BadHost),
            (P::InvalidHost, ProxyError::BadHost),
            (P::InvalidContentLength, ProxyError::BadFraming),
            (P::ConflictingContentLength, ProxyError::BadFraming),
            (P::InvalidTransferCoding, ProxyError::BadFraming),
            (P::ChunkedNotFinal, ProxyError::BadFraming),
            (P::ChunkedTwice, ProxyError::BadFraming),
            (P::TransferEncodingWithLength, ProxyError::BadFraming),
            (P::TransferEncodingInHttp10, ProxyError::BadFraming),
            (
                P::UnsupportedTransferCoding,
                ProxyError::UnsupportedTransferCoding,
            ),
            (P::UnsupportedExpectation, ProxyError::ExpectationFailed),
            (P::BodyTooLarge, ProxyError::BodyTooLarge),
            (P::ResponseIncomplete, ProxyError::UpstreamBadResponse),
            (P::ResponseSyntax(Token), ProxyError::UpstreamBadResponse),
            (P::ResponseStatus(600), ProxyError::UpstreamBadResponse),
            (P::ResponseContentLength, ProxyError::UpstreamBadResponse),
            (
                P::ResponseConflictingContentLength,
                ProxyError::UpstreamBadResponse,
            ),
        ];
        // The match is exhaustive, so a new variant fails to compile here until it has a
        // row; the rows are in declaration order.
        let ordinal = |e: ParseError| match e {
            P::Incomplete => 0,
            P::Syntax(_) => 1,
            P::TooManyHeaders => 2,
            P::HeadTooLarge => 3,
            P::InvalidVersion => 4,
            P::UnsupportedVersion => 5,
            P::Connect => 6,
            P::UriTooLong => 7,
            P::AsteriskNotOptions => 8,
            P::InvalidTarget => 9,
            P::MissingHost => 10,
            P::DuplicateHost => 11,
            P::InvalidHost => 12,
            P::InvalidContentLength => 13,
            P::ConflictingContentLength => 14,
            P::InvalidTransferCoding => 15,
            P::ChunkedNotFinal => 16,
            P::ChunkedTwice => 17,
            P::TransferEncodingWithLength => 18,
            P::TransferEncodingInHttp10 => 19,
            P::UnsupportedTransferCoding => 20,
            P::UnsupportedExpectation => 21,
            P::BodyTooLarge => 22,
            P::ResponseIncomplete => 23,
            P::ResponseSyntax(_) => 24,
            P::ResponseStatus(_) => 25,
            P::ResponseContentLength => 26,
            P::ResponseConflictingContentLength => 27,
        };
        for (row, (parse, proxy)) in table.into_iter().enumerate() {
            assert_eq!(ordinal(parse), row, "{parse:?}");
            assert_eq!(ProxyError::from(parse), proxy, "{parse:?}");
            let side = if row >= ordinal(P::ResponseIncomplete) {
                Upstream
            } else {
                Client
            };
            assert_eq!(proxy.side(), side, "{parse:?}");
        }
    }
}
