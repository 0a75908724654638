//! The cost of a `get` that hits: one thread alone, then two threads on one shared store
//! (the shard locks are contended and their cache lines move between cores) against two
//! threads each on a private store.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use strait::cache::store::{Lookup, Store};

use crate::rng::{SplitMix, Zipf};

/// Keys stored (all of them fit: every timed `get` hits).
const RESIDENT: u32 = 100_000;
/// Timed lookups per thread.
const GETS: usize = 3_000_000;
/// Each figure is the best of this many runs.
const RUNS: usize = 3;

pub struct Lookups {
    pub one_thread: f64,
    pub two_shared: f64,
    pub two_private: f64,
}

fn url(key: u32) -> String {
    format!("http://example.com/objects/{key}")
}

fn filled() -> Store<()> {
    let store = Store::new(1 << 40);
    for key in 0..RESIDENT {
        let url = url(key);
        store.insert(
            &url,
            Arc::from(Vec::new()),
            String::new(),
            Arc::new(()),
            1024,
            Vec::new(),
        );
    }
    store
}

/// Zipf(0.9)-popular indices into the resident keys, different per thread.
fn keys(seed: u64) -> Vec<u32> {
    let zipf = Zipf::new(RESIDENT, 0.9);
    let mut rng = SplitMix::new(seed);
    (0..GETS).map(|_| zipf.sample(&mut rng)).collect()
}

/// ns per `get` over `keys`.
fn time_gets(store: &Store<()>, urls: &[String], keys: &[u32]) -> f64 {
    let start = Instant::now();
    let mut hits = 0usize;
    for &key in keys {
        let found = store.get(&urls[key as usize], |_| String::new());
        hits += usize::from(matches!(black_box(found), Lookup::Hit { .. }));
    }
    let elapsed = start.elapsed();
    assert_eq!(hits, keys.len(), "every timed get must hit");
    elapsed.as_nanos() as f64 / keys.len() as f64
}

/// Both threads' mean ns per get, each on `stores[thread]`.
fn two_threads(stores: [&Store<()>; 2], urls: &[String], keys: &[Vec<u32>; 2]) -> f64 {
    let times: Vec<f64> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|t| scope.spawn(move || time_gets(stores[t], urls, &keys[t])))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(f64::NAN))
            .collect()
    });
    times.iter().sum::<f64>() / times.len() as f64
}

fn best(mut run: impl FnMut() -> f64) -> f64 {
    (0..RUNS).map(|_| run()).fold(f64::INFINITY, f64::min)
}

pub fn lookups() -> Lookups {
    let urls: Vec<String> = (0..RESIDENT).map(url).collect();
    let keys = [keys(1), keys(2)];
    let shared = filled();
    let private = [filled(), filled()];
    Lookups {
        one_thread: best(|| time_gets(&shared, &urls, &keys[0])),
        two_shared: best(|| two_threads([&shared, &shared], &urls, &keys)),
        two_private: best(|| two_threads([&private[0], &private[1]], &urls, &keys)),
    }
}
