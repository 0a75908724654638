//! Invariant: whatever HTTP/1.1 answer the connection loop writes for an HTTP/2 stream
//! (here: any bytes that parse as a response head, then a chunked body with trailers),
//! its conversion never panics and never carries a connection-specific field into the
//! HTTP/2 HEADERS or trailers; and the control-frame budget reads any client bytes, in any
//! split, to the same verdict.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strait::http1::response::parse_response_head;
use strait::http1::{find_head_end, ChunkedDecoder, ChunkedEvent};
use strait::http2::convert::{response_head, trailers};
use strait::http2::flood::FrameBudget;

const CONNECTION_SPECIFIC: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
];

fuzz_target!(|data: &[u8]| {
    if let Some(end) = find_head_end(data, 0) {
        if let Ok(head) = parse_response_head(&data[..end], false) {
            let response = response_head(&data[..end], &head);
            for name in CONNECTION_SPECIFIC {
                assert!(!response.headers().contains_key(name), "{name} in HEADERS");
            }
        }
        let mut decoder = ChunkedDecoder::new();
        let mut rest = &data[end..];
        let mut section: Option<Vec<u8>> = None;
        while !rest.is_empty() {
            let Ok((used, event)) = decoder.decode(rest) else { break };
            if let Some(s) = section.as_mut() {
                s.extend_from_slice(&rest[..used]);
            }
            rest = &rest[used..];
            match event {
                ChunkedEvent::LastChunk => section = Some(Vec::new()),
                ChunkedEvent::Done => {
                    let fields = trailers(section.as_deref().unwrap_or(&[]));
                    for name in CONNECTION_SPECIFIC {
                        assert!(!fields.contains_key(name), "{name} in trailers");
                    }
                    break;
                }
                _ => {}
            }
        }
    }
    // The budget's verdict does not depend on how the bytes were split into reads.
    let split = data.first().map_or(1, |&b| usize::from(b).max(1));
    let mut whole = FrameBudget::new(8);
    let mut pieces = FrameBudget::new(8);
    let at_once = whole.inbound(data);
    let mut piecewise = Ok(());
    for piece in data.chunks(split) {
        piecewise = pieces.inbound(piece);
        if piecewise.is_err() {
            break;
        }
    }
    assert_eq!(at_once, piecewise);
});
