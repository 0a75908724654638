//! Measures Strait's cache store (`src/cache/store.rs`) at equal total memory:
//! 1. one store shared by two workers against a private store of half the capacity per
//!    worker: hit ratio, and the cost of a hit with one and two threads;
//! 2. its S3-FIFO eviction against a plain byte-bounded LRU, with and without one-pass
//!    scans mixed into the stream.
//!
//! Every stream comes from a fixed seed: the figures are the same on every run but for
//! the timings. Run with `cargo run --release`; the output is the README's tables.

mod lru;
mod ratio;
mod rng;
mod timing;
mod workload;

use std::time::Instant;

use workload::{KEYS, REQUESTS, SCAN_EVERY, SCAN_LEN, WARMUP};

const MIB: u64 = 1 << 20;
/// The memory bounds compared; the 1M keys weigh about 50 GiB in all.
const BOUNDS: [u64; 3] = [512 * MIB, 2048 * MIB, 8192 * MIB];
const EXPONENTS: [f64; 2] = [0.9, 1.1];

fn gib(bytes: u64) -> String {
    format!("{} GiB", bytes as f64 / (1024.0 * MIB as f64))
}

fn main() {
    let start = Instant::now();
    println!(
        "Zipf streams: {KEYS} keys of 1–100 KiB, {REQUESTS} requests, the first {WARMUP} not \
         counted; scans: {SCAN_LEN} fresh keys after every {SCAN_EVERY} requests. \
         Hit ratios in %, requests (bytes).\n"
    );

    let mut placement =
        String::from("| s | memory | shared store | per-worker stores |\n|---|---|---|---|\n");
    let mut eviction = String::from(
        "| s | memory | S3-FIFO | LRU | S3-FIFO, scans | LRU, scans |\n|---|---|---|---|---|---|\n",
    );
    for s in EXPONENTS {
        let plain = workload::stream(s, false, 42);
        let scanned = workload::stream(s, true, 42);
        for bound in BOUNDS {
            let shared = ratio::shared(&plain, bound);
            let per_worker = ratio::per_worker(&plain, bound);
            let lru = ratio::lru(&plain, bound);
            let shared_scan = ratio::shared(&scanned, bound);
            let lru_scan = ratio::lru(&scanned, bound);
            let cell = |r: &ratio::Ratio| format!("{:.1} ({:.1})", r.requests(), r.bytes());
            placement.push_str(&format!(
                "| {s} | {} | {} | {} |\n",
                gib(bound),
                cell(&shared),
                cell(&per_worker)
            ));
            eviction.push_str(&format!(
                "| {s} | {} | {} | {} | {} | {} |\n",
                gib(bound),
                cell(&shared),
                cell(&lru),
                cell(&shared_scan),
                cell(&lru_scan)
            ));
            eprintln!("s={s} {}: {:.0?}", gib(bound), start.elapsed());
        }
    }
    println!("Shared or per worker (2 workers, S3-FIFO, equal total memory):\n\n{placement}");
    println!("S3-FIFO (the shared store) or LRU:\n\n{eviction}");

    let t = timing::lookups();
    println!(
        "ns per get hit (100000 resident keys, Zipf 0.9 lookups, best of 3):\n\n\
         | one thread, one store | 2 threads, one shared store | 2 threads, a store each |\n\
         |---|---|---|\n| {:.0} | {:.0} | {:.0} |\n",
        t.one_thread, t.two_shared, t.two_private
    );
    eprintln!("total: {:.0?}", start.elapsed());
}
