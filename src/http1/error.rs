//! Why a head was refused: one variant per malformed case, so a test or a log line can say
//! exactly which rule a message broke.
//!
//! The codec does not decide answers. The proxy turns a [`ParseError`] into its own error
//! (and so a status) in one `From` impl at its edge (`src/error.rs`): a bad request head
//! is the client's fault, a bad response head the upstream's.

/// A request or response head that cannot be used as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    // Request heads (RFC 9112 §2–§3, §6; RFC 9110 §7.2, §10.1.1).
    #[error("request head ends before its request line is complete")]
    Incomplete,
    #[error("malformed request head: {0}")]
    Syntax(httparse::Error),
    #[error("more request header fields than the limit")]
    TooManyHeaders,
    #[error("request head larger than the limit")]
    HeadTooLarge,
    #[error("malformed HTTP version")]
    InvalidVersion,
    #[error("HTTP version other than 1.x")]
    UnsupportedVersion,
    #[error("CONNECT is not implemented")]
    Connect,
    #[error("request target longer than the limit")]
    UriTooLong,
    #[error("asterisk-form target on a method other than OPTIONS")]
    AsteriskNotOptions,
    #[error("request target neither origin-form nor a valid http(s) absolute-form")]
    InvalidTarget,
    #[error("no Host header in an HTTP/1.1 request")]
    MissingHost,
    #[error("more than one Host header")]
    DuplicateHost,
    #[error("invalid Host header value")]
    InvalidHost,
    #[error("invalid Content-Length value")]
    InvalidContentLength,
    #[error("Content-Length headers that disagree")]
    ConflictingContentLength,
    #[error("empty or invalid transfer coding")]
    InvalidTransferCoding,
    #[error("chunked is not the final transfer coding")]
    ChunkedNotFinal,
    #[error("chunked applied more than once")]
    ChunkedTwice,
    #[error("both Transfer-Encoding and Content-Length")]
    TransferEncodingWithLength,
    #[error("Transfer-Encoding in an HTTP/1.0 request")]
    TransferEncodingInHttp10,
    #[error("a transfer coding other than chunked")]
    UnsupportedTransferCoding,
    #[error("Expect value other than 100-continue")]
    UnsupportedExpectation,
    #[error("declared body larger than the limit")]
    BodyTooLarge,

    // Response heads (RFC 9112 §4, §6.3).
    #[error("response head ends before its status line is complete")]
    ResponseIncomplete,
    #[error("malformed response head: {0}")]
    ResponseSyntax(httparse::Error),
    #[error("status code {0} outside 100..=599")]
    ResponseStatus(u16),
    #[error("invalid Content-Length value in a response")]
    ResponseContentLength,
    #[error("response Content-Length headers that disagree")]
    ResponseConflictingContentLength,
}
