//! Replays a stream through a cache and counts hits on the popular keys after the warm-up
//! (scan keys are always misses and are not counted: the question is what a scan does to
//! everyone else).

use std::fmt::Write;
use std::sync::Arc;

use strait::cache::store::{Lookup, Store};

use crate::lru::Lru;
use crate::rng::SplitMix;
use crate::workload::{is_popular, size, Stream};

#[derive(Default)]
pub struct Ratio {
    hits: u64,
    requests: u64,
    hit_bytes: u64,
    bytes: u64,
}

impl Ratio {
    /// Request hit ratio, in percent.
    pub fn requests(&self) -> f64 {
        100.0 * self.hits as f64 / self.requests.max(1) as f64
    }

    /// Byte hit ratio, in percent.
    pub fn bytes(&self) -> f64 {
        100.0 * self.hit_bytes as f64 / self.bytes.max(1) as f64
    }
}

/// Sends each key of `stream` to `request(url, weight)`, which answers whether it hit.
fn replay(stream: &Stream, mut request: impl FnMut(u32, &str, u64) -> bool) -> Ratio {
    let mut ratio = Ratio::default();
    let mut url = String::new();
    for (i, &key) in stream.keys.iter().enumerate() {
        url.clear();
        // Writing to a String cannot fail.
        let _ = write!(url, "http://example.com/objects/{key}");
        let weight = size(key);
        let hit = request(key, &url, weight);
        if i >= stream.counted_from && is_popular(key) {
            ratio.requests += 1;
            ratio.bytes += weight;
            if hit {
                ratio.hits += 1;
                ratio.hit_bytes += weight;
            }
        }
    }
    ratio
}

/// A lookup as the request path makes it, and a fill on a miss.
fn through(store: &Store<()>, url: &str, weight: u64) -> bool {
    if let Lookup::Hit { .. } = store.get(url, |_| String::new()) {
        return true;
    }
    store.insert(
        url,
        Arc::from(Vec::new()),
        String::new(),
        Arc::new(()),
        weight,
        Vec::new(),
    );
    false
}

/// One store of `capacity` for both workers.
pub fn shared(stream: &Stream, capacity: u64) -> Ratio {
    let store = Store::new(capacity);
    replay(stream, |_, url, weight| through(&store, url, weight))
}

/// A store of `capacity / 2` per worker; each request goes to a worker at random.
pub fn per_worker(stream: &Stream, capacity: u64) -> Ratio {
    let stores = [Store::new(capacity / 2), Store::new(capacity / 2)];
    let mut rng = SplitMix::new(7);
    replay(stream, |_, url, weight| {
        let worker = rng.below(2) as usize;
        through(&stores[worker], url, weight)
    })
}

pub fn lru(stream: &Stream, capacity: u64) -> Ratio {
    let mut lru = Lru::new(capacity);
    replay(stream, |key, _, weight| lru.request(key, weight))
}
