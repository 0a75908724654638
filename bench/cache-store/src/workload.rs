//! The request streams: Zipf-popular keys with fixed sizes, optionally interrupted by
//! one-pass scans of keys never seen before (a crawler, a batch export, a cache warmer).

use crate::rng::{mix, SplitMix, Zipf};

/// Distinct popular keys.
pub const KEYS: u32 = 1_000_000;
/// Popular-key requests per stream.
pub const REQUESTS: usize = 4_000_000;
/// Popular-key requests at the start of a stream that fill the cache and are not counted.
pub const WARMUP: usize = 1_000_000;
/// With scans: one scan after every this many popular-key requests…
pub const SCAN_EVERY: usize = 250_000;
/// …of this many fresh keys, each requested once.
pub const SCAN_LEN: u32 = 100_000;

const KIB: u64 = 1024;

/// A key's object size: fixed per key, uniform in 1..=100 KiB.
pub fn size(key: u32) -> u64 {
    KIB + mix(u64::from(key)) % (99 * KIB + 1)
}

/// Whether `key` is a popular key (scan keys are numbered from [`KEYS`] up).
pub fn is_popular(key: u32) -> bool {
    key < KEYS
}

/// The keys in request order; `counted_from` is the first index after the warm-up.
pub struct Stream {
    pub keys: Vec<u32>,
    pub counted_from: usize,
}

pub fn stream(s: f64, scans: bool, seed: u64) -> Stream {
    let zipf = Zipf::new(KEYS, s);
    let mut rng = SplitMix::new(seed);
    let mut keys = Vec::with_capacity(REQUESTS * 3 / 2);
    let mut counted_from = 0;
    let mut next_scan_key = KEYS;
    for i in 0..REQUESTS {
        if i == WARMUP {
            counted_from = keys.len();
        }
        if scans && i > 0 && i % SCAN_EVERY == 0 {
            keys.extend(next_scan_key..next_scan_key + SCAN_LEN);
            next_scan_key += SCAN_LEN;
        }
        keys.push(zipf.sample(&mut rng));
    }
    Stream { keys, counted_from }
}
