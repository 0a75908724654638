//! Invariant: any bytes given to the PROXY header parser yield "need more", "not a
//! header", "invalid" or a header whose consumed length is within the input (and within
//! the protocol's bounds), never a panic; and every proper prefix of a complete header
//! says "need more", so a header split across reads is never judged early.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strait::proxy_protocol::{parse, Parsed, MAX_V1_BYTES, MAX_V2_BODY_BYTES};

fuzz_target!(|data: &[u8]| {
    if let Parsed::Complete { consumed, .. } = parse(data) {
        assert!(consumed <= data.len());
        assert!(consumed <= MAX_V1_BYTES.max(16 + MAX_V2_BODY_BYTES));
        for end in 0..consumed {
            assert_eq!(parse(&data[..end]), Parsed::Incomplete, "prefix of {end} bytes");
        }
    }
});
