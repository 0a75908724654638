//! The errors that end a request, and the short JSON answers they become.
//!
//! Every failure on the request path is one [`ProxyError`]: it records which side failed
//! (the client sent something wrong, an upstream misbehaved, or we did) and maps to exactly
//! one status. The answers are rendered once per process, so an error costs no formatting.

use std::sync::OnceLock;

use bytes::Bytes;

use crate::config::reason_phrase;

/// Why a request could not be served normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    // Client side.
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
    // Upstream side.
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
    #[error("authorization server unavailable")]
    AuthUnavailable,
    /// A cluster rate limit cannot be checked (Redis unreachable, `on_redis_error = "closed"`).
    #[error("rate limit unavailable")]
    RateLimitUnavailable,
}

impl ProxyError {
    pub fn status(self) -> u16 {
        use ProxyError::*;
        match self {
            BadRequest | BadFraming | BadChunk | BadHost => 400,
            Unauthorized => 401,
            Forbidden | CorsRefused | InsufficientScope => 403,
            NoRoute => 404,
            RateLimited => 429,
            MethodNotAllowed => 405,
            HeadTimeout | BodyTimeout => 408,
            BodyTooLarge => 413,
            UriTooLong => 414,
            ExpectationFailed => 417,
            HeadTooLarge => 431,
            UnsupportedTransferCoding | MethodNotImplemented => 501,
            UpstreamConnect | UpstreamBadResponse | UpstreamClosed => 502,
            NoEndpoint | Overloaded | AuthUnavailable | RateLimitUnavailable => 503,
            UpstreamConnectTimeout | UpstreamTimeout => 504,
            VersionNotSupported => 505,
        }
    }

    /// The pre-rendered response head (without the blank line) and JSON body.
    pub fn response(self) -> &'static ErrorResponse {
        static TABLE: OnceLock<Vec<ErrorResponse>> = OnceLock::new();
        let table = TABLE.get_or_init(|| ALL.iter().map(|e| ErrorResponse::render(*e)).collect());
        // ALL lists every variant in declaration order, so the index is the discriminant.
        &table[self as usize]
    }
}

const ALL: [ProxyError; 29] = {
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
        AuthUnavailable,
        RateLimitUnavailable,
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
