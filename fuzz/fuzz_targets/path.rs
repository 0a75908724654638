//! Invariant: a normalised path is a fixed point (normalising it again changes nothing),
//! starts with `/`, has no `.` or `..` segment, no control byte, and no `//` when slashes
//! are merged; and normalising never panics. The first byte picks the rules.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strait::http1::path::{normalize, EscapedSlashes, PathRules};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let rules = PathRules {
        merge_slashes: pick & 1 == 0,
        escaped_slashes: match (pick >> 1) % 3 {
            0 => EscapedSlashes::Reject,
            1 => EscapedSlashes::Keep,
            _ => EscapedSlashes::Decode,
        },
    };
    let mut path = Vec::with_capacity(rest.len() + 1);
    path.push(b'/');
    path.extend_from_slice(rest);
    let Ok(once) = normalize(&path, &rules) else {
        return;
    };
    assert_eq!(once.first(), Some(&b'/'));
    assert!(!once.iter().any(u8::is_ascii_control));
    let mut segments = once[1..].split(|&b| b == b'/');
    assert!(segments.all(|s| s != b"." && s != b".."), "{once:?}");
    if rules.merge_slashes {
        assert!(!once.windows(2).any(|w| w == b"//"), "{once:?}");
    }
    let twice = normalize(&once, &rules).expect("a normal path normalises");
    assert_eq!(twice, once);
});
