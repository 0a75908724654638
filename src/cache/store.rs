//! The bounded store behind one named cache, shared by every worker thread.
//!
//! Where it sits: `proxy/cache.rs` looks a request's URL up here before going upstream,
//! stores what comes back, and purges on `PURGE` or unsafe methods; the admin API purges
//! by URL, prefix or tag and reads the sizes.
//!
//! Why shared and not per worker: a per-worker cache holds each hot object once per core
//! and splits the hit ratio, so one store per cache holds it once. Contention is kept low
//! by [`SHARDS`] independent shards, each behind its own mutex, chosen by a fixed-seed hash
//! of the URL so that every variant of a URL (its `Vary` siblings) lives in one shard and
//! the request path takes one lock per lookup.
//!
//! Eviction is S3-FIFO (Yang et al., "FIFO queues are all you need for cache eviction",
//! SOSP'23): a small FIFO takes new objects and lets one-hit wonders leave quickly, so a
//! one-pass scan cannot flush the hot set living in the main FIFO; a ghost FIFO of recently
//! evicted key hashes readmits a key that comes back straight into main. Hits only bump a
//! counter (no list moves), which keeps the critical section short.
//!
//! Invariants, per shard: `bytes` (the sum of the stored weights) never exceeds the shard's
//! capacity after an operation; `bytes == small_bytes + main_bytes`; the tag index lists
//! exactly the (url, variant) pairs whose object carries the tag; a queue entry is live only
//! while an object with its id is stored, in that queue.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use ahash::{AHashMap, AHashSet, RandomState};

/// Independent shards per store: enough that two to a few dozen cores rarely meet on a
/// lock, few enough that a shard still holds a useful share of the capacity.
const SHARDS: usize = 16;

/// The small FIFO's share of a shard's bytes, in percent (the paper's 10%).
const SMALL_PERCENT: u64 = 10;

/// Where a hit's frequency counter saturates (two bits in the paper).
const FREQ_MAX: u8 = 3;

/// Stale queue entries (of objects removed or replaced) tolerated beyond the live ones
/// before a queue is compacted; keeps the queues' memory proportional to the objects.
const QUEUE_SLACK: usize = 64;

/// Fixed hash seeds: shard choice and ghost keys are the same in every run, so tests and
/// measurements are repeatable.
const SEEDS: [u64; 4] = [
    0x243f_6a88_85a3_08d3,
    0x1319_8a2e_0370_7344,
    0xa409_3822_299f_31d0,
    0x082e_fa98_ec4e_6c89,
];

/// The answer of [`Store::get`].
pub enum Lookup<V> {
    /// A stored variant; `stale` when a soft purge marked it (it must be revalidated).
    Hit {
        value: Arc<V>,
        stale: bool,
    },
    /// The URL is stored, but not the variant this request selects.
    VaryMiss,
    Miss,
}

/// Sizes for metrics and the admin API.
pub struct StoreStats {
    pub objects: u64,
    pub bytes: u64,
    /// The capacity the store was made with.
    pub capacity: u64,
    /// Objects evicted to make room (purges and `Vary` changes are not evictions).
    pub evictions: u64,
}

/// One named cache: [`SHARDS`] shards, each a bounded S3-FIFO.
#[derive(Debug)]
pub struct Store<V> {
    shards: Box<[Mutex<Shard<V>>]>,
    hasher: RandomState,
    capacity: u64,
    shard_capacity: u64,
}

/// Held by the one request filling a key; other requests for the key wait on
/// [`Store::is_filling`] instead of going upstream too. Owned (it holds the store), so it
/// can travel with a background revalidation; dropping it releases the key.
pub struct FillGuard<V> {
    store: Arc<Store<V>>,
    key: Box<str>,
}

impl<V> Drop for FillGuard<V> {
    fn drop(&mut self) {
        self.store.shard(&self.key).filling.remove(&*self.key);
    }
}

impl<V> Store<V> {
    pub fn new(capacity_bytes: u64) -> Self {
        let shard_capacity = capacity_bytes / SHARDS as u64;
        let shards = (0..SHARDS)
            .map(|_| Mutex::new(Shard::new(shard_capacity, hasher())))
            .collect();
        Store {
            shards,
            hasher: hasher(),
            capacity: capacity_bytes,
            shard_capacity,
        }
    }

    /// The heaviest object the store accepts: one shard's capacity.
    pub fn max_weight(&self) -> u64 {
        self.shard_capacity
    }

    /// Looks `url` up. `variant` gets the URL's vary names (lower-case, sorted; empty if
    /// none) and returns the variant key; it runs under the shard lock, so keep it short.
    /// A hit counts towards the object's frequency.
    pub fn get(&self, url: &str, variant: impl FnOnce(&[Box<str>]) -> String) -> Lookup<V> {
        let mut shard = self.shard(url);
        let Some(record) = shard.urls.get_mut(url) else {
            return Lookup::Miss;
        };
        let key = variant(&record.vary);
        match record.variants.iter_mut().find(|(v, _)| **v == *key) {
            Some((_, object)) => {
                object.freq = (object.freq + 1).min(FREQ_MAX);
                Lookup::Hit {
                    value: object.value.clone(),
                    stale: object.stale,
                }
            }
            None => Lookup::VaryMiss,
        }
    }

    /// Stores `value` as `variant` of `url`, evicting as needed. Returns false, storing
    /// nothing, when `weight` exceeds a shard's capacity. A stored variant is replaced
    /// (value, weight, tags; no longer stale). A `vary` list different from the URL's
    /// drops the URL's other variants: they were keyed by other headers.
    pub fn insert(
        &self,
        url: &str,
        vary: Arc<[Box<str>]>,
        variant: String,
        value: Arc<V>,
        weight: u64,
        tags: Vec<Box<str>>,
    ) -> bool {
        if weight > self.shard_capacity {
            return false;
        }
        let object = Stored {
            value,
            weight,
            tags: tags.into_boxed_slice(),
            stale: false,
            id: 0,
            freq: 0,
            queue: Queue::Small,
        };
        self.shard(url).insert(url, vary, variant.into(), object);
        true
    }

    /// Purges every variant of `url`; `soft` marks them stale instead of removing them.
    /// Returns how many objects were purged or marked.
    pub fn purge_url(&self, url: &str, soft: bool) -> usize {
        self.shard(url).purge_urls(|u| u == url, soft)
    }

    /// Purges every URL starting with `prefix` (all shards).
    pub fn purge_prefix(&self, prefix: &str, soft: bool) -> usize {
        self.each_shard(|shard| shard.purge_urls(|u| u.starts_with(prefix), soft))
    }

    /// Purges every object carrying one of `tags` (all shards).
    pub fn purge_tags(&self, tags: &[&str], soft: bool) -> usize {
        self.each_shard(|shard| shard.purge_tags(tags, soft))
    }

    /// Removes everything; returns how many objects were stored.
    pub fn clear(&self) -> usize {
        self.each_shard(Shard::clear)
    }

    pub fn stats(&self) -> StoreStats {
        let mut stats = StoreStats {
            objects: 0,
            bytes: 0,
            capacity: self.capacity,
            evictions: 0,
        };
        for shard in self.shards.iter() {
            let shard = lock(shard);
            stats.objects += shard.objects() as u64;
            stats.bytes += shard.bytes;
            stats.evictions += shard.evictions;
        }
        stats
    }

    /// Claims `key` for filling; None while another guard holds it.
    pub fn begin_fill(self: &Arc<Self>, key: &str) -> Option<FillGuard<V>> {
        let claimed = self.shard(key).filling.insert(key.into());
        claimed.then(|| FillGuard {
            store: self.clone(),
            key: key.into(),
        })
    }

    pub fn is_filling(&self, key: &str) -> bool {
        self.shard(key).filling.contains(key)
    }

    /// The shard `url` (or a fill key) belongs to, locked.
    fn shard(&self, url: &str) -> MutexGuard<'_, Shard<V>> {
        lock(&self.shards[self.index(url)])
    }

    fn index(&self, url: &str) -> usize {
        // The top bits: the low ones also index the shard's hash maps.
        (self.hasher.hash_one(url) >> 60) as usize % SHARDS
    }

    /// Runs `f` on each shard in turn (one lock at a time) and sums its answers.
    fn each_shard(&self, mut f: impl FnMut(&mut Shard<V>) -> usize) -> usize {
        self.shards.iter().map(|shard| f(&mut lock(shard))).sum()
    }
}

/// The fixed-seed hasher for shard choice and ghost keys.
fn hasher() -> RandomState {
    RandomState::with_seeds(SEEDS[0], SEEDS[1], SEEDS[2], SEEDS[3])
}

/// A poisoned shard is still consistent enough to serve from (a panic under the lock is a
/// bug, but it must not take every later request down with it).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Queue {
    Small,
    Main,
}

/// A stored variant.
#[derive(Debug)]
struct Stored<V> {
    value: Arc<V>,
    weight: u64,
    tags: Box<[Box<str>]>,
    /// Set by a soft purge: served only after revalidation.
    stale: bool,
    /// Unique within the shard: queue entries with another id are stale.
    id: u64,
    /// Hits since insertion or the last pass through a queue, saturating at [`FREQ_MAX`].
    freq: u8,
    queue: Queue,
}

/// All stored variants of one URL.
#[derive(Debug)]
struct UrlRecord<V> {
    /// The response's `Vary` names, lower-case and sorted.
    vary: Arc<[Box<str>]>,
    variants: Vec<(Arc<str>, Stored<V>)>,
}

/// A stored variant's (url, variant) key.
type Pair = (Arc<str>, Arc<str>);

/// A queue's reference to an object, valid while the object with `id` is stored.
#[derive(Debug)]
struct Entry {
    url: Arc<str>,
    variant: Arc<str>,
    id: u64,
}

#[derive(Debug)]
struct Shard<V> {
    capacity: u64,
    small_capacity: u64,
    bytes: u64,
    small_bytes: u64,
    main_bytes: u64,
    evictions: u64,
    next_id: u64,
    urls: AHashMap<Arc<str>, UrlRecord<V>>,
    small: VecDeque<Entry>,
    main: VecDeque<Entry>,
    /// Objects stored in each queue, to know when stale entries are worth compacting away.
    small_live: usize,
    main_live: usize,
    /// Hashes of (url, variant) evicted from small, oldest first, and how many times each
    /// is in the queue.
    ghost: VecDeque<u64>,
    ghost_counts: AHashMap<u64, u32>,
    /// tag → the (url, variant) pairs carrying it.
    tags: AHashMap<Box<str>, AHashSet<Pair>>,
    /// Keys being filled (see [`FillGuard`]).
    filling: AHashSet<Box<str>>,
    hasher: RandomState,
}

impl<V> Shard<V> {
    fn new(capacity: u64, hasher: RandomState) -> Self {
        Shard {
            capacity,
            small_capacity: capacity * SMALL_PERCENT / 100,
            bytes: 0,
            small_bytes: 0,
            main_bytes: 0,
            evictions: 0,
            next_id: 0,
            urls: AHashMap::new(),
            small: VecDeque::new(),
            main: VecDeque::new(),
            small_live: 0,
            main_live: 0,
            ghost: VecDeque::new(),
            ghost_counts: AHashMap::new(),
            tags: AHashMap::new(),
            filling: AHashSet::new(),
            hasher,
        }
    }

    /// Stores `object` (its weight already checked against the capacity).
    fn insert(
        &mut self,
        url: &str,
        vary: Arc<[Box<str>]>,
        variant: Arc<str>,
        mut object: Stored<V>,
    ) {
        let vary_changed = self.urls.get(url).is_some_and(|r| r.vary != vary);
        if vary_changed {
            self.purge_urls(|u| u == url, false);
        }
        // A replaced object keeps its queue and its hits: a hot object being refreshed is
        // still hot. A new one starts in small, or in main when it was evicted recently.
        match self.take(url, &variant) {
            Some(old) => {
                object.queue = old.queue;
                object.freq = old.freq;
            }
            None if self
                .ghost_counts
                .contains_key(&self.ghost_key(url, &variant)) =>
            {
                object.queue = Queue::Main
            }
            None => {}
        }
        self.make_room(object.weight);

        object.id = self.next_id;
        self.next_id += 1;
        let url: Arc<str> = match self.urls.get_key_value(url) {
            Some((key, _)) => key.clone(),
            None => url.into(),
        };
        for tag in object.tags.iter() {
            self.tags
                .entry(tag.clone())
                .or_default()
                .insert((url.clone(), variant.clone()));
        }
        let entry = Entry {
            url: url.clone(),
            variant: variant.clone(),
            id: object.id,
        };
        self.account(object.queue, object.weight, true);
        self.push(object.queue, entry);
        self.urls
            .entry(url)
            .or_insert_with(|| UrlRecord {
                vary,
                variants: Vec::new(),
            })
            .variants
            .push((variant, object));
    }

    /// Evicts until `weight` more bytes fit: from small while it holds its share (or main
    /// is empty), else from main.
    fn make_room(&mut self, weight: u64) {
        while self.bytes + weight > self.capacity {
            let from_small = self.small_bytes > 0
                && (self.small_bytes >= self.small_capacity || self.main_bytes == 0);
            if from_small {
                self.evict_small();
            } else {
                self.evict_main();
            }
        }
    }

    /// Takes small's oldest object: a hit since it came in earns it a place in main, else
    /// it leaves and its key is remembered in the ghost.
    fn evict_small(&mut self) {
        let Some(entry) = self.pop_live(Queue::Small) else {
            return;
        };
        let Some(object) = self.object_mut(&entry.url, &entry.variant) else {
            return;
        };
        if object.freq > 0 {
            object.freq = 0;
            object.queue = Queue::Main;
            let weight = object.weight;
            // Moved, not taken: `account` keeps the per-queue counts right.
            self.account(Queue::Small, weight, false);
            self.account(Queue::Main, weight, true);
            self.push(Queue::Main, entry);
            return;
        }
        if self.take(&entry.url, &entry.variant).is_some() {
            self.evictions += 1;
            self.remember(&entry);
        }
    }

    /// Takes main's oldest object: one with hits goes round again with one fewer, else it
    /// leaves.
    fn evict_main(&mut self) {
        let Some(entry) = self.pop_live(Queue::Main) else {
            return;
        };
        let Some(object) = self.object_mut(&entry.url, &entry.variant) else {
            return;
        };
        if object.freq > 0 {
            object.freq -= 1;
            self.main.push_back(entry);
            return;
        }
        if self.take(&entry.url, &entry.variant).is_some() {
            self.evictions += 1;
        }
    }

    /// Puts an evicted key in the ghost, which holds about as many keys as main holds
    /// objects (estimated from the mean weight, so it is useful before main fills up).
    fn remember(&mut self, entry: &Entry) {
        let hash = self.ghost_key(&entry.url, &entry.variant);
        self.ghost.push_back(hash);
        *self.ghost_counts.entry(hash).or_default() += 1;
        let main_capacity = u128::from(self.capacity - self.small_capacity);
        let limit = main_capacity * self.objects().max(1) as u128 / u128::from(self.bytes.max(1));
        while self.ghost.len() as u128 > limit.max(1) {
            let Some(old) = self.ghost.pop_front() else {
                break;
            };
            if let Some(count) = self.ghost_counts.get_mut(&old) {
                *count -= 1;
                if *count == 0 {
                    self.ghost_counts.remove(&old);
                }
            }
        }
    }

    /// The oldest entry of `queue` whose object is still stored there; stale ones are
    /// dropped on the way.
    fn pop_live(&mut self, queue: Queue) -> Option<Entry> {
        loop {
            let entry = match queue {
                Queue::Small => self.small.pop_front()?,
                Queue::Main => self.main.pop_front()?,
            };
            if is_live(&self.urls, &entry, queue) {
                return Some(entry);
            }
        }
    }

    /// Appends to `queue`, compacting it when stale entries outnumber the live ones.
    fn push(&mut self, queue: Queue, entry: Entry) {
        let (entries, live) = match queue {
            Queue::Small => (&mut self.small, &mut self.small_live),
            Queue::Main => (&mut self.main, &mut self.main_live),
        };
        entries.push_back(entry);
        if entries.len() > 2 * *live + QUEUE_SLACK {
            let urls = &self.urls;
            entries.retain(|entry| is_live(urls, entry, queue));
        }
    }

    /// Counts an object of `weight` in (`add`) or out of `queue`.
    fn account(&mut self, queue: Queue, weight: u64, add: bool) {
        let (part, live) = match queue {
            Queue::Small => (&mut self.small_bytes, &mut self.small_live),
            Queue::Main => (&mut self.main_bytes, &mut self.main_live),
        };
        if add {
            *part += weight;
            *live += 1;
            self.bytes += weight;
        } else {
            *part -= weight;
            *live -= 1;
            self.bytes -= weight;
        }
    }

    fn objects(&self) -> usize {
        self.small_live + self.main_live
    }

    fn ghost_key(&self, url: &str, variant: &str) -> u64 {
        self.hasher.hash_one((url, variant))
    }

    fn object_mut(&mut self, url: &str, variant: &str) -> Option<&mut Stored<V>> {
        let record = self.urls.get_mut(url)?;
        let (_, object) = record.variants.iter_mut().find(|(v, _)| **v == *variant)?;
        Some(object)
    }

    /// Removes one variant with everything that points at it but its queue entry (which
    /// becomes stale), and returns it.
    fn take(&mut self, url: &str, variant: &str) -> Option<Stored<V>> {
        let (url, record) = self.urls.get_key_value(url)?;
        let url = url.clone();
        let index = record.variants.iter().position(|(v, _)| **v == *variant)?;
        let record = self.urls.get_mut(&*url)?;
        let (variant, object) = record.variants.swap_remove(index);
        if record.variants.is_empty() {
            self.urls.remove(&*url);
        }
        for tag in object.tags.iter() {
            if let Some(pairs) = self.tags.get_mut(tag) {
                pairs.remove(&(url.clone(), variant.clone()));
                if pairs.is_empty() {
                    self.tags.remove(tag);
                }
            }
        }
        self.account(object.queue, object.weight, false);
        Some(object)
    }

    /// Purges every variant of the URLs `matches` selects.
    fn purge_urls(&mut self, matches: impl Fn(&str) -> bool, soft: bool) -> usize {
        let pairs: Vec<Pair> = self
            .urls
            .iter()
            .filter(|(url, _)| matches(url))
            .flat_map(|(url, record)| {
                record
                    .variants
                    .iter()
                    .map(|(v, _)| (url.clone(), v.clone()))
            })
            .collect();
        self.purge(&pairs, soft)
    }

    fn purge_tags(&mut self, tags: &[&str], soft: bool) -> usize {
        let pairs: AHashSet<Pair> = tags
            .iter()
            .filter_map(|tag| self.tags.get(*tag))
            .flatten()
            .cloned()
            .collect();
        let pairs: Vec<_> = pairs.into_iter().collect();
        self.purge(&pairs, soft)
    }

    /// Marks stale (`soft`) or removes each stored pair; returns how many.
    fn purge(&mut self, pairs: &[Pair], soft: bool) -> usize {
        let mut purged = 0;
        for (url, variant) in pairs {
            let found = if soft {
                self.object_mut(url, variant)
                    .map(|object| object.stale = true)
                    .is_some()
            } else {
                self.take(url, variant).is_some()
            };
            purged += usize::from(found);
        }
        purged
    }

    /// Empties the shard but for its counters and the keys being filled.
    fn clear(&mut self) -> usize {
        let objects = self.objects();
        *self = Shard {
            evictions: self.evictions,
            next_id: self.next_id,
            filling: std::mem::take(&mut self.filling),
            ..Shard::new(self.capacity, self.hasher.clone())
        };
        objects
    }
}

/// Whether `entry` still names an object stored in `queue`.
fn is_live<V>(urls: &AHashMap<Arc<str>, UrlRecord<V>>, entry: &Entry, queue: Queue) -> bool {
    urls.get(&*entry.url).is_some_and(|record| {
        record
            .variants
            .iter()
            .any(|(v, o)| *v == entry.variant && o.id == entry.id && o.queue == queue)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed-seed PRNG (splitmix64), so the random workloads are the same every run.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn no_vary() -> Arc<[Box<str>]> {
        Arc::from(Vec::new())
    }

    fn vary(names: &[&str]) -> Arc<[Box<str>]> {
        names.iter().map(|n| Box::from(*n)).collect()
    }

    fn put(store: &Store<u32>, url: &str, variant: &str, weight: u64, tags: &[&str]) -> bool {
        let tags = tags.iter().map(|t| Box::from(*t)).collect();
        store.insert(url, no_vary(), variant.into(), Arc::new(1), weight, tags)
    }

    /// Some(stale) on a hit of `variant`, None otherwise (counts a hit, like a request).
    fn hit(store: &Store<u32>, url: &str, variant: &str) -> Option<bool> {
        match store.get(url, |_| variant.into()) {
            Lookup::Hit { stale, .. } => Some(stale),
            Lookup::VaryMiss | Lookup::Miss => None,
        }
    }

    /// Whether `url` is stored, without counting a hit.
    fn holds(store: &Store<u32>, url: &str) -> bool {
        store.shard(url).urls.contains_key(url)
    }

    /// Checks every shard's invariants (see the module's doc).
    fn check<V>(store: &Store<V>) {
        let mut total = 0;
        for shard in store.shards.iter() {
            let shard = lock(shard);
            let (mut small, mut main, mut small_live, mut main_live) = (0, 0, 0, 0);
            let mut tags: AHashMap<Box<str>, AHashSet<Pair>> = AHashMap::new();
            for (url, record) in &shard.urls {
                assert!(!record.variants.is_empty(), "empty record for {url}");
                for (variant, object) in &record.variants {
                    match object.queue {
                        Queue::Small => (small += object.weight, small_live += 1),
                        Queue::Main => (main += object.weight, main_live += 1),
                    };
                    for tag in object.tags.iter() {
                        tags.entry(tag.clone())
                            .or_default()
                            .insert((url.clone(), variant.clone()));
                    }
                    let queue = match object.queue {
                        Queue::Small => &shard.small,
                        Queue::Main => &shard.main,
                    };
                    let entries = queue
                        .iter()
                        .filter(|e| e.id == object.id && *e.url == **url && e.variant == *variant)
                        .count();
                    assert_eq!(entries, 1, "queue entries of {url} {variant}");
                }
            }
            assert_eq!((shard.small_bytes, shard.main_bytes), (small, main));
            assert_eq!((shard.small_live, shard.main_live), (small_live, main_live));
            assert_eq!(shard.bytes, small + main);
            assert!(
                shard.bytes <= shard.capacity,
                "{} > {}",
                shard.bytes,
                shard.capacity
            );
            assert_eq!(shard.tags, tags, "tag index");
            assert!(shard.small.len() <= 2 * small_live + QUEUE_SLACK + 1);
            assert!(shard.main.len() <= 2 * main_live + QUEUE_SLACK + 1);
            total += shard.bytes;
        }
        assert!(total <= store.capacity);
    }

    /// One random operation of the workloads below.
    fn random_op(store: &Store<u32>, rng: &mut Rng) {
        let url = format!("/p{}/u{}", rng.below(5), rng.below(300));
        let variant = ["", "gzip", "br"][rng.below(3) as usize];
        let tag_names = ["t0", "t1", "t2", "t3", "t4", "t5"];
        match rng.below(100) {
            0..=49 => {
                let tags: Vec<Box<str>> = (0..rng.below(3))
                    .map(|_| Box::from(tag_names[rng.below(6) as usize]))
                    .collect();
                let names = if rng.below(20) == 0 {
                    vary(&["accept"])
                } else {
                    no_vary()
                };
                let weight = 1 + rng.below(store.max_weight() / 3);
                let weight = if rng.below(50) == 0 {
                    store.max_weight() + 1
                } else {
                    weight
                };
                let stored = store.insert(&url, names, variant.into(), Arc::new(7), weight, tags);
                assert_eq!(stored, weight <= store.max_weight());
            }
            50..=84 => {
                hit(store, &url, variant);
            }
            85..=89 => {
                store.purge_url(&url, rng.below(2) == 0);
            }
            90..=94 => {
                store.purge_tags(&[tag_names[rng.below(6) as usize]], rng.below(2) == 0);
            }
            95..=98 => {
                store.purge_prefix(&format!("/p{}/u1", rng.below(5)), rng.below(2) == 0);
            }
            _ => {
                store.clear();
            }
        }
    }

    #[test]
    fn bound_and_indexes_hold_under_a_random_workload() {
        let store = Store::new(16 * 10_000);
        let mut rng = Rng(42);
        for i in 0..30_000 {
            random_op(&store, &mut rng);
            if i % 7 == 0 {
                check(&store);
            }
        }
        check(&store);
        let stats = store.stats();
        assert!(stats.evictions > 0 && stats.objects > 0);
        assert!(stats.bytes <= stats.capacity);
    }

    #[test]
    fn a_one_pass_scan_does_not_flush_the_hot_set() {
        let store = Store::new(16 * 10_000);
        let hot: Vec<String> = (0..320).map(|i| format!("/hot/{i}")).collect();
        for url in &hot {
            assert!(put(&store, url, "", 100, &[]));
        }
        for url in hot.iter().chain(&hot) {
            assert_eq!(hit(&store, url, ""), Some(false));
        }
        for i in 0..20_000 {
            assert!(put(&store, &format!("/cold/{i}"), "", 100, &[]));
        }
        check(&store);
        let survivors = hot.iter().filter(|url| holds(&store, url)).count();
        assert_eq!(survivors, hot.len());
        assert!(store.stats().evictions >= 20_000 - 16 * 100);
    }

    #[test]
    fn a_key_evicted_recently_comes_back_into_main() {
        // A shard holds 10 objects of 100 bytes; its small FIFO, one.
        let store = Store::new(16 * 1000);
        let same_shard: Vec<String> = (0..10_000)
            .map(|i| format!("/k{i}"))
            .filter(|url| store.index(url) == store.index("/a"))
            .collect();
        let mut cold = same_shard.iter();
        assert!(put(&store, "/a", "", 100, &[]));
        while holds(&store, "/a") {
            let url = cold.next().expect("enough keys in /a's shard");
            assert!(put(&store, url, "", 100, &[]));
        }
        assert!(put(&store, "/a", "", 100, &[]));
        let queue = store.shard("/a").object_mut("/a", "").map(|o| o.queue);
        assert_eq!(queue, Some(Queue::Main));
        // Main keeps it while new keys churn through small.
        for url in cold.by_ref().take(50) {
            assert!(put(&store, url, "", 100, &[]));
        }
        assert!(holds(&store, "/a"));
        check(&store);
    }

    #[test]
    fn vary_records_and_vary_misses() {
        let store: Store<u32> = Store::new(1 << 20);
        let names = vary(&["accept-encoding"]);
        let stored = store.insert("/v", names.clone(), "gzip".into(), Arc::new(1), 10, vec![]);
        assert!(stored);
        assert!(store.insert("/v", names, "br".into(), Arc::new(2), 10, vec![]));
        let mut seen = Vec::new();
        let found = store.get("/v", |n| {
            seen = n.to_vec();
            "gzip".into()
        });
        assert!(matches!(found, Lookup::Hit { value, stale: false } if *value == 1));
        assert_eq!(seen, vec![Box::<str>::from("accept-encoding")]);
        assert!(matches!(
            store.get("/v", |_| "zstd".into()),
            Lookup::VaryMiss
        ));
        assert!(matches!(
            store.get("/other", |_| "gzip".into()),
            Lookup::Miss
        ));
        assert_eq!(store.stats().objects, 2);

        // A different vary list drops the old variants: removed, not evicted.
        let stored = store.insert(
            "/v",
            vary(&["accept"]),
            "json".into(),
            Arc::new(3),
            10,
            vec![],
        );
        assert!(stored);
        assert!(matches!(
            store.get("/v", |_| "gzip".into()),
            Lookup::VaryMiss
        ));
        assert!(
            matches!(store.get("/v", |_| "json".into()), Lookup::Hit { value, .. } if *value == 3)
        );
        let stats = store.stats();
        assert_eq!((stats.objects, stats.bytes, stats.evictions), (1, 10, 0));
        check(&store);
    }

    #[test]
    fn replacing_clears_stale_and_updates_weight_and_tags() {
        let store = Store::new(1 << 20);
        assert!(put(&store, "/r", "", 10, &["old"]));
        assert_eq!(store.purge_url("/r", true), 1);
        assert_eq!(hit(&store, "/r", ""), Some(true));
        assert!(put(&store, "/r", "", 30, &["new"]));
        assert_eq!(hit(&store, "/r", ""), Some(false));
        let stats = store.stats();
        assert_eq!((stats.objects, stats.bytes), (1, 30));
        assert_eq!(store.purge_tags(&["old"], false), 0);
        assert_eq!(store.purge_tags(&["new"], false), 1);
        check(&store);
    }

    #[test]
    fn soft_purges_mark_hard_purges_remove() {
        let store = Store::new(1 << 20);
        assert!(put(&store, "/a/1", "x", 10, &["t"]));
        assert!(put(&store, "/a/1", "y", 10, &[]));
        assert!(put(&store, "/a/2", "", 10, &["t", "u"]));
        assert!(put(&store, "/b/1", "", 10, &["u"]));

        assert_eq!(store.purge_url("/nothing", false), 0);
        assert_eq!(store.purge_url("/nothing", true), 0);

        assert_eq!(store.purge_url("/a/1", true), 2);
        assert_eq!(hit(&store, "/a/1", "x"), Some(true));
        assert_eq!(hit(&store, "/a/2", ""), Some(false));
        assert_eq!(store.purge_prefix("/a/", true), 3);
        assert_eq!(hit(&store, "/a/2", ""), Some(true));
        assert_eq!(store.purge_tags(&["u"], true), 2);
        assert_eq!(hit(&store, "/b/1", ""), Some(true));
        assert_eq!(store.stats().objects, 4);

        assert_eq!(store.purge_tags(&["t", "u"], false), 3);
        assert_eq!(hit(&store, "/a/1", "y"), Some(true));
        assert_eq!(hit(&store, "/a/1", "x"), None);
        assert_eq!(store.purge_prefix("/a/", false), 1);
        assert_eq!(store.purge_url("/a/1", false), 0);
        assert_eq!(store.stats().objects, 0);

        assert!(put(&store, "/c", "", 10, &[]));
        assert!(put(&store, "/d", "", 10, &[]));
        assert_eq!(store.clear(), 2);
        let stats = store.stats();
        assert_eq!((stats.objects, stats.bytes, stats.evictions), (0, 0, 0));
        check(&store);
    }

    #[test]
    fn an_object_heavier_than_a_shard_is_refused() {
        let store = Store::new(16 * 1000);
        assert_eq!(store.max_weight(), 1000);
        assert!(!put(&store, "/big", "", 1001, &["t"]));
        assert!(hit(&store, "/big", "").is_none());
        assert!(put(&store, "/fits", "", 1000, &["t"]));
        assert!(put(&store, "/zero", "", 0, &[]));
        assert_eq!(store.stats().capacity, 16 * 1000);
        check(&store);
    }

    #[test]
    fn a_fill_guard_holds_its_key_until_dropped() {
        let store: Arc<Store<u32>> = Arc::new(Store::new(1 << 20));
        assert!(!store.is_filling("/f\n"));
        let guard = store.begin_fill("/f\n").expect("a free key");
        assert!(store.is_filling("/f\n"));
        assert!(store.begin_fill("/f\n").is_none());
        let other = store.begin_fill("/g\n").expect("another key");
        store.clear();
        assert!(store.is_filling("/f\n"));
        drop(guard);
        assert!(!store.is_filling("/f\n"));
        assert!(store.is_filling("/g\n"));
        assert!(store.begin_fill("/f\n").is_some());
        drop(other);
        assert!(!store.is_filling("/g\n"));
    }

    #[test]
    fn two_threads_share_one_store() {
        fn shared<T: Send + Sync>(_: &T) {}
        let store = Arc::new(Store::new(16 * 10_000));
        shared(&store);
        std::thread::scope(|scope| {
            for seed in [1, 2] {
                let store = store.clone();
                scope.spawn(move || {
                    let mut rng = Rng(seed);
                    for _ in 0..20_000 {
                        random_op(&store, &mut rng);
                    }
                    let guard = store.begin_fill(&format!("/thread{seed}"));
                    assert!(guard.is_some());
                });
            }
        });
        check(&store);
        assert!(!store.is_filling("/thread1") && !store.is_filling("/thread2"));
        assert!(store.stats().bytes <= store.stats().capacity);
    }
}
