//! Invariant: the chunked decoder reaches the same verdict and payload however the input
//! is split across reads (the first byte picks the split point), never reports data
//! outside its input, and never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strait::http1::{ChunkedDecoder, ChunkedEvent};

/// Feeds `pieces` in order; returns the payload and whether the body completed, or `None`
/// on a decoding error.
fn decode(pieces: &[&[u8]]) -> Option<(Vec<u8>, bool)> {
    let mut decoder = ChunkedDecoder::new();
    let mut payload = Vec::new();
    for piece in pieces {
        let mut at = 0;
        while at < piece.len() {
            let (used, event) = decoder.decode(&piece[at..]).ok()?;
            assert!(at + used <= piece.len());
            match event {
                ChunkedEvent::Data { start, end } => {
                    assert!(start <= end && end <= used);
                    payload.extend_from_slice(&piece[at + start..at + end]);
                }
                ChunkedEvent::Done => return Some((payload, true)),
                ChunkedEvent::LastChunk | ChunkedEvent::NeedMore => {}
            }
            at += used;
        }
    }
    Some((payload, decoder.is_done()))
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, body)) = data.split_first() else { return };
    let split = usize::from(split).min(body.len());
    let whole = decode(&[body]);
    let halves = decode(&[&body[..split], &body[split..]]);
    assert_eq!(whole, halves);
    if let Some((payload, _)) = whole {
        assert!(payload.len() <= body.len());
    }
});
