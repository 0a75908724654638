//! The response cache's metrics: answers by how the cache took part (per worker, summed
//! when scraped), requests that waited for another's fill, and each store's size and
//! evictions (read from the store itself at scrape time).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

/// How the cache took part in an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Sent from the store, fresh.
    Hit,
    /// Forwarded: nothing usable was stored.
    Miss,
    /// Sent from the store although stale (`stale-while-revalidate`, `stale-if-error`).
    Stale,
    /// A stored answer was validated with the upstream (a 304 refreshed it, or a new one
    /// replaced it).
    Revalidated,
    /// Forwarded without the store's involvement (a method that is never cached).
    Bypass,
}

impl CacheOutcome {
    const ALL: [CacheOutcome; 5] = [
        CacheOutcome::Hit,
        CacheOutcome::Miss,
        CacheOutcome::Stale,
        CacheOutcome::Revalidated,
        CacheOutcome::Bypass,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CacheOutcome::Hit => "hit",
            CacheOutcome::Miss => "miss",
            CacheOutcome::Stale => "stale",
            CacheOutcome::Revalidated => "revalidated",
            CacheOutcome::Bypass => "bypass",
        }
    }
}

/// One cache's counters on one worker.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    answers: [u64; 5],
    coalesced: u64,
}

/// One worker's cache counters, by cache name.
#[derive(Debug, Clone, Default)]
pub struct CacheCounts(BTreeMap<Arc<str>, Counts>);

impl CacheCounts {
    fn of(&mut self, cache: &Arc<str>) -> &mut Counts {
        // A lookup first: the name is cloned only the first time a cache is counted.
        if !self.0.contains_key(cache) {
            self.0.insert(cache.clone(), Counts::default());
        }
        self.0.get_mut(cache).expect("inserted above")
    }

    pub fn answer(&mut self, cache: &Arc<str>, outcome: CacheOutcome) {
        self.of(cache).answers[outcome as usize] += 1;
    }

    /// A request waited for another's fill of its key.
    pub fn coalesced(&mut self, cache: &Arc<str>) {
        self.of(cache).coalesced += 1;
    }
}

/// A store's size, read when scraped.
#[derive(Debug, Clone)]
pub struct StoreSize {
    pub cache: Arc<str>,
    pub objects: u64,
    pub bytes: u64,
    pub capacity: u64,
    pub evictions: u64,
}

/// Renders the cache families: counters summed over `workers`, sizes from `stores`.
pub fn render(out: &mut String, workers: &[CacheCounts], stores: &[StoreSize]) {
    if stores.is_empty() && workers.iter().all(|w| w.0.is_empty()) {
        return;
    }
    let mut sums: BTreeMap<&Arc<str>, Counts> = BTreeMap::new();
    for store in stores {
        sums.entry(&store.cache).or_default();
    }
    for worker in workers {
        for (cache, counts) in &worker.0 {
            let sum = sums.entry(cache).or_default();
            for (total, n) in sum.answers.iter_mut().zip(counts.answers) {
                *total += n;
            }
            sum.coalesced += counts.coalesced;
        }
    }
    let name = "strait_cache_answers_total";
    let _ = writeln!(
        out,
        "# HELP {name} Answers of caching routes, by cache and how the cache took part.\n# TYPE {name} counter"
    );
    for (cache, counts) in &sums {
        for outcome in CacheOutcome::ALL {
            let n = counts.answers[outcome as usize];
            let _ = writeln!(
                out,
                "{name}{{cache=\"{cache}\",result=\"{}\"}} {n}",
                outcome.as_str()
            );
        }
    }
    let name = "strait_cache_coalesced_total";
    let _ = writeln!(
        out,
        "# HELP {name} Requests that waited for another request's fill of the same key.\n# TYPE {name} counter"
    );
    for (cache, counts) in &sums {
        let _ = writeln!(out, "{name}{{cache=\"{cache}\"}} {}", counts.coalesced);
    }
    type Gauge = (
        &'static str,
        &'static str,
        &'static str,
        fn(&StoreSize) -> u64,
    );
    let gauges: [Gauge; 4] = [
        (
            "strait_cache_objects",
            "gauge",
            "Stored answers, by cache.",
            |s| s.objects,
        ),
        (
            "strait_cache_bytes",
            "gauge",
            "Bytes stored, by cache (heads, bodies and keys).",
            |s| s.bytes,
        ),
        (
            "strait_cache_capacity_bytes",
            "gauge",
            "The memory bound of each cache.",
            |s| s.capacity,
        ),
        (
            "strait_cache_evictions_total",
            "counter",
            "Answers evicted to stay within the memory bound, by cache.",
            |s| s.evictions,
        ),
    ];
    for (name, kind, help, value) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for store in stores {
            let _ = writeln!(out, "{name}{{cache=\"{}\"}} {}", store.cache, value(store));
        }
    }
}
