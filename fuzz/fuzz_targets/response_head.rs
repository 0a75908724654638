//! Invariant: any upstream response head either fails (502) or parses into spans inside
//! the input, with no body for HEAD requests, 1xx, 204 and 304. Never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strait::http1::{find_head_end, parse_response_head, BodyFraming};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else { return };
    let Some(end) = find_head_end(rest, 0) else { return };
    let head = &rest[..end];
    let was_head = flags & 1 == 1;
    let Ok(parsed) = parse_response_head(head, was_head) else { return };
    for h in &parsed.headers {
        assert!(h.name.1 as usize <= head.len() && h.value.1 as usize <= head.len());
    }
    if was_head || parsed.status < 200 || parsed.status == 204 || parsed.status == 304 {
        assert_eq!(parsed.framing, BodyFraming::Length(0));
    }
    if parsed.framing == BodyFraming::UntilClose {
        assert!(!parsed.keep_alive);
    }
});
