//! Invariant: any bytes given to the request-head parser either fail with a client error
//! or yield a head whose every span lies inside the input, with exactly one body framing
//! that never says "until close" (requests cannot be close-delimited). Never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strait::config::Limits;
use strait::http1::{find_head_end, parse_request_head, BodyFraming};

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_header_bytes: 16 * 1024, max_headers: 64, max_body_bytes: 1 << 20, max_uri_bytes: 4096 };
    let Some(end) = find_head_end(data, 0) else { return };
    let head = &data[..end];
    let Ok(parsed) = parse_request_head(head, &limits) else { return };
    let within = |(s, e): (u32, u32)| s <= e && (e as usize) <= head.len();
    assert!(within(parsed.method_span) && within(parsed.target));
    assert!(parsed.target.0 <= parsed.path_end && parsed.path_end <= parsed.target.1);
    assert!(parsed.authority.is_none_or(within));
    for h in &parsed.headers {
        assert!(within(h.name) && within(h.value));
    }
    match parsed.framing {
        BodyFraming::Length(n) => assert!(n <= limits.max_body_bytes),
        BodyFraming::Chunked => {}
        BodyFraming::UntilClose => panic!("a request body cannot run until close"),
    }
});
