//! Invariant: any bytes from a Redis server (or something pretending to be one) either
//! fail or parse into replies whose bulk strings fit in the input, never a panic or an
//! allocation past the parser's bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strait::ratelimit::redis_sync::resp::{read_reply, Reply};

fn fits(reply: &Reply, len: usize) -> bool {
    match reply {
        Reply::Bulk(Some(v)) => v.len() <= len,
        Reply::Array(Some(items)) => items.len() <= len && items.iter().all(|r| fits(r, len)),
        _ => true,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = data;
    while let Ok(reply) = read_reply(&mut input) {
        assert!(fits(&reply, data.len()));
    }
});
