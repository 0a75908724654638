//! HTTP/1.1 wire format, both directions (RFC 9112): request and response heads parsed in
//! place with `httparse`, body framing, and the encoder for the heads we send on.
//!
//! Nothing here does I/O: these are pure functions over byte buffers, so every parser can be
//! unit-tested split at every byte boundary and fuzzed.
//!
//! The codec is the bottom layer: it imports nothing from the rest of the crate
//! (`tests/layers.rs` checks). Its limits are its own type, which the config fills; its
//! errors are [`ParseError`], which the proxy maps to an answer at its edge; the header
//! lines other modules add (trace context, CORS, rate limits) reach the encoder already
//! rendered.

pub mod body;
pub mod encode;
mod error;
pub mod headers;
pub mod path;
pub mod request;
pub mod response;
mod status;

pub use body::{BodyFraming, ChunkedDecoder, ChunkedEvent};
pub use error::ParseError;
pub use request::{parse_request_head, RequestHead};
pub use response::{parse_response_head, ResponseHead};
pub use status::reason_phrase;

/// What a request head may hold (`[server.limits]` in the config file).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Request line plus headers, in bytes (431 past it).
    pub max_header_bytes: usize,
    /// Number of request headers (431 past it).
    pub max_headers: usize,
    /// Request body in bytes, declared or streamed (413 past it).
    pub max_body_bytes: u64,
    /// Request target length in bytes (414 past it).
    pub max_uri_bytes: usize,
}

/// HTTP minor version of a message: HTTP/1.0 or HTTP/1.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
    /// A request that arrived as an HTTP/2 stream (its head is handed to the rest of the
    /// gateway in HTTP/1.1 form; this says what the client spoke).
    Http2,
}

/// `(start, end)` byte offsets of a part of a head buffer.
pub type Span = (u32, u32);

/// The byte offsets of one header line within a head buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderSpan {
    pub name: (u32, u32),
    pub value: (u32, u32),
}

impl HeaderSpan {
    pub fn name<'a>(&self, head: &'a [u8]) -> &'a [u8] {
        &head[self.name.0 as usize..self.name.1 as usize]
    }

    pub fn value<'a>(&self, head: &'a [u8]) -> &'a [u8] {
        &head[self.value.0 as usize..self.value.1 as usize]
    }
}

/// The most header lines httparse is given room for; `limits.max_headers` is capped by it.
pub const MAX_HEADERS_CAP: usize = 256;

/// Offset of `part` inside `whole`; `part` must be a sub-slice of `whole`.
fn offset_in(whole: &[u8], part: &[u8]) -> u32 {
    let offset = part.as_ptr() as usize - whole.as_ptr() as usize;
    debug_assert!(offset + part.len() <= whole.len());
    offset as u32
}

fn span_of(whole: &[u8], part: &[u8]) -> (u32, u32) {
    let start = offset_in(whole, part);
    (start, start + part.len() as u32)
}

/// Finds the end of a head (the index just past the blank line) in `buf`, scanning from
/// `from` so that a head arriving in pieces is not rescanned from the start.
pub fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(3);
    let mut at = start;
    while let Some(i) = memchr::memchr(b'\n', &buf[at..]) {
        let lf = at + i;
        // "\n\r\n" or "\n\n" ends the head.
        match buf.get(lf + 1) {
            Some(b'\n') => return Some(lf + 2),
            Some(b'\r') if buf.get(lf + 2) == Some(&b'\n') => return Some(lf + 3),
            _ => at = lf + 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_end_found_from_any_resume_point() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nrest";
        for split in 0..head.len() {
            assert_eq!(
                find_head_end(head, split.min(26)),
                Some(27),
                "split {split}"
            );
        }
        assert_eq!(find_head_end(b"GET / HTTP/1.1\nHost: a\n\n", 0), Some(24));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nHost: a\r\n", 0), None);
    }
}
