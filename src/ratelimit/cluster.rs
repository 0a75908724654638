//! Cluster-wide rate limits, the worker's side: a sliding-window count per key that adds
//! this worker's own requests (exact, counted here) to the rest of the fleet's (as of the
//! last Redis round, published by `crate::ratelimit::redis_sync`).
//!
//! Where it sits: inside [`super::RouteLimiter::check`], for limits with
//! `scope = "cluster"`. Per request: two hash lookups and integer arithmetic, no lock, no
//! atomic, no I/O. At the worker's tick ([`ClusterLink::tick`]) the counts admitted since
//! the last tick are handed to the sync thread as one batch, and the newest snapshot of
//! cluster totals is picked up.
//!
//! Sliding window: windows are `period` long and aligned on the Unix epoch (so every node
//! agrees on them); a request at `elapsed` into window `W` sees
//! `estimate = count(W-1) * (period - elapsed) / period + count(W)` and is allowed while
//! `estimate + 1 <= limit`. Unlike a fixed window, there is no doubled burst at a window
//! boundary: the previous window's count fades out linearly.
//!
//! Accuracy: a node does not see the others' requests of the last sync round (about
//! `sync_interval` + two 20 ms ticks + one round trip), so the fleet can over-admit by the
//! requests it serves in that time; each worker alone never exceeds `limit`.
//! docs/rate-limiting.md has the measured numbers.
//!
//! Memory: at most `max_keys` keys per limit per worker; a key is forgotten once it was
//! counted in neither the current nor the previous window.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ahash::AHashMap;
use crossbeam_channel::Sender;

use super::{KeyedLimiter, LimitState};
use crate::ratelimit::config::{ClusterConfig, OnRedisError};
use crate::ratelimit::redis_sync::{unix_ms, Batch, ClusterHub, Delta, LimitSpec, Snapshot};

/// Requests counted for one key: in the current window and in the one before.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub cur: u64,
    pub prev: u64,
}

/// The sliding-window decision for one more request, `elapsed_ms` into a window of
/// `period_ms`, given the counts so far. `reset` is when the estimate is back to zero (the
/// whole quota again), `retry_after` (when denied) when one request would be allowed,
/// both assuming no further traffic.
pub fn decide(counts: Counts, limit: u64, period_ms: u64, elapsed_ms: u64) -> LimitState {
    let p = u128::from(period_ms.max(1));
    let e = u128::from(elapsed_ms).min(p - 1);
    let (cur, prev, limit) = (
        u128::from(counts.cur),
        u128::from(counts.prev),
        u128::from(limit),
    );
    // Everything scaled by the period, so the arithmetic stays exact.
    let used = prev * (p - e) + cur * p;
    let cap = limit * p;
    let ms = |v: u128| Duration::from_millis(u64::try_from(v).unwrap_or(u64::MAX));
    if used + p <= cap {
        return LimitState {
            allowed: true,
            remaining: u64::try_from((cap - used - p) / p).unwrap_or(0),
            // This request counts in the current window, which fades out by the end of
            // the next one.
            reset: ms(2 * p - e),
            retry_after: Duration::ZERO,
        };
    }
    let retry_after = if cur < limit {
        // Within this window, once the previous window's share has faded enough
        // (`prev > 0` here, or the request would have been allowed).
        let weight = ((limit - cur - 1) * p) / prev.max(1);
        (p - e).saturating_sub(weight)
    } else {
        // In the next window, when this one (then the previous) has faded enough; a
        // count of `limit` or more with `limit = 1` waits for the whole next window.
        let weight = (((limit - 1) * p) / cur.max(1)).min(p);
        (p - e) + (p - weight)
    };
    let reset = if cur > 0 {
        2 * p - e
    } else if prev > 0 {
        p - e
    } else {
        0
    };
    LimitState {
        allowed: false,
        remaining: 0,
        reset: ms(reset),
        retry_after: ms(retry_after.max(1)),
    }
}

/// This worker's own counts for one key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Local {
    window: u64,
    /// Admitted here, in `window` and the window before.
    mine: [u64; 2],
    /// The part of `mine` not handed to the sync thread yet.
    unsent: [u64; 2],
}

impl Local {
    fn rolled(mut self, to: u64) -> Local {
        if to > self.window {
            let shift = |pair: [u64; 2]| {
                if to == self.window + 1 {
                    [0, pair[0]]
                } else {
                    [0, 0]
                }
            };
            self.mine = shift(self.mine);
            self.unsent = shift(self.unsent);
            self.window = to;
        }
        self
    }
}

/// The fleet's counts as this worker last heard them.
#[derive(Debug, Clone, Copy)]
pub struct ClusterView<'a> {
    pub snapshot: &'a Snapshot,
    pub worker: usize,
}

impl ClusterView<'_> {
    /// The other workers' and nodes' requests for `key` of limit `base`, seen from
    /// `window`: the Redis totals minus what this worker contributed to them.
    fn others(&self, base: &[u8], key: &[u8], window: u64) -> Counts {
        let Some(totals) = self.snapshot.tables.get(base).and_then(|t| t.get(key)) else {
            return Counts::default();
        };
        let mine = totals.applied.get(self.worker).copied().unwrap_or([0; 2]);
        let cur = totals.total[0].saturating_sub(mine[0]);
        let prev = totals.total[1].saturating_sub(mine[1]);
        if totals.window == window {
            Counts { cur, prev }
        } else if totals.window + 1 == window {
            Counts { cur: 0, prev: cur }
        } else {
            Counts::default()
        }
    }
}

/// One cluster limit on one worker.
#[derive(Debug)]
pub struct ClusterLimiter {
    spec: Arc<LimitSpec>,
    limit: u64,
    /// Used instead while Redis is unreachable and `on_redis_error = "open"`: the local
    /// limit, `ceil(limit / workers)` per worker.
    pub fallback: KeyedLimiter,
    keys: AHashMap<Rc<[u8]>, Local>,
    /// Keys with unsent counts (a key may appear twice; the second is a no-op). Shared
    /// with `keys`, so that marking a known key allocates nothing.
    dirty: Vec<Rc<[u8]>>,
    max_keys: usize,
}

impl ClusterLimiter {
    pub fn new(spec: Arc<LimitSpec>, limit: u64, fallback: KeyedLimiter, max_keys: usize) -> Self {
        ClusterLimiter {
            spec,
            limit: limit.max(1),
            fallback,
            keys: AHashMap::new(),
            dirty: Vec::new(),
            max_keys: max_keys.max(1),
        }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    #[cfg(test)]
    pub fn base(&self) -> Arc<[u8]> {
        self.spec.base.clone()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn window(&self, now_ms: u64) -> (u64, u64) {
        let period = self.spec.period_ms.max(1);
        (now_ms / period, now_ms % period)
    }

    /// What one more request for `key` would get at `now_ms` (Unix ms), without taking it.
    pub fn peek(&self, key: &[u8], now_ms: u64, view: &ClusterView<'_>) -> LimitState {
        let (window, elapsed) = self.window(now_ms);
        let mine = self
            .keys
            .get(key)
            .map_or_else(Local::default, |l| l.rolled(window));
        let mine = if mine.window == window {
            mine.mine
        } else {
            [0; 2]
        };
        let others = view.others(&self.spec.base, key, window);
        let counts = Counts {
            cur: others.cur + mine[0],
            prev: others.prev + mine[1],
        };
        decide(counts, self.limit, self.spec.period_ms, elapsed)
    }

    /// Takes one request for `key` when allowed; returns the resulting state.
    pub fn take(&mut self, key: &[u8], now_ms: u64, view: &ClusterView<'_>) -> LimitState {
        let state = self.peek(key, now_ms, view);
        if state.allowed {
            self.count(key, now_ms);
        }
        state
    }

    /// Counts one admitted request (also while the fallback decides, so that Redis learns
    /// about it once back).
    pub fn count(&mut self, key: &[u8], now_ms: u64) {
        let (window, _) = self.window(now_ms);
        if !self.keys.contains_key(key) && self.keys.len() >= self.max_keys {
            self.make_room(window);
        }
        if !self.keys.contains_key(key) {
            let local = Local {
                window,
                ..Local::default()
            };
            self.keys.insert(key.into(), local);
        }
        let Some(local) = self.keys.get_mut(key) else {
            return;
        };
        *local = local.rolled(window);
        let newly_dirty = local.unsent == [0, 0];
        local.mine[0] += 1;
        local.unsent[0] += 1;
        if let Some((name, _)) = self.keys.get_key_value(key).filter(|_| newly_dirty) {
            self.dirty.push(name.clone());
        }
    }

    /// Moves the counts not handed over yet into `out`.
    pub fn hand_over(&mut self, out: &mut Vec<Delta>) {
        for key in self.dirty.drain(..) {
            let Some(local) = self.keys.get_mut(&key) else {
                continue;
            };
            let unsent = std::mem::take(&mut local.unsent);
            for (slot, count) in unsent.into_iter().enumerate() {
                if let (true, Some(window)) = (count > 0, local.window.checked_sub(slot as u64)) {
                    out.push(Delta {
                        limit: self.spec.clone(),
                        key: key[..].into(),
                        window,
                        count,
                    });
                }
            }
        }
    }

    /// Forgets keys counted in neither the current nor the previous window.
    pub fn sweep(&mut self, now_ms: u64, now: Instant) {
        let (window, _) = self.window(now_ms);
        self.keys
            .retain(|_, l| l.window + 1 >= window || l.unsent != [0, 0]);
        self.fallback.sweep(now);
    }

    /// Sweeps; when still full, forgets an eighth of the keys (their counts are then
    /// known to this worker only through Redis: a small over-admission, never a denial).
    fn make_room(&mut self, window: u64) {
        self.keys.retain(|_, l| l.window + 1 >= window);
        if self.keys.len() < self.max_keys {
            return;
        }
        let mut forget = (self.max_keys / 8).max(1);
        self.keys.retain(|_, _| {
            let keep = forget == 0;
            forget = forget.saturating_sub(1);
            keep
        });
    }
}

/// What a route's cluster limits do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Redis is answering: the cluster estimate decides.
    Cluster,
    /// Redis is not, `on_redis_error = "open"`: the per-worker local limit decides.
    Fallback,
    /// Redis is not, `on_redis_error = "closed"`: 503.
    Unavailable,
}

/// Everything a check needs from the worker's link to the sync thread.
#[derive(Debug, Clone, Copy)]
pub struct ClusterCtx<'a> {
    pub mode: Mode,
    pub now_ms: u64,
    pub view: ClusterView<'a>,
}

/// One worker's end of the sync thread: where batches go, the snapshot it reads, and a
/// wall-clock anchor so that a request costs no clock call beyond its `Instant`.
pub struct ClusterLink {
    hub: Option<Arc<ClusterHub>>,
    worker: usize,
    tx: Option<Sender<Batch>>,
    snapshot: Arc<Snapshot>,
    anchor: Instant,
    anchor_ms: u64,
    pub on_error: OnRedisError,
    /// `cluster.key_prefix` of the config served (`None`: no `[cluster]`).
    pub prefix: Option<String>,
    scratch: Vec<Delta>,
}

impl ClusterLink {
    /// A worker's link, registered with `hub` (`None`: not connected, as in unit tests:
    /// Redis counts as up with nothing counted elsewhere).
    pub fn new(hub: Option<Arc<ClusterHub>>, cluster: Option<&ClusterConfig>) -> Self {
        let (worker, tx) = hub
            .as_ref()
            .map(|h| h.register_worker())
            .map_or((0, None), |(i, tx)| (i, Some(tx)));
        let snapshot = hub.as_ref().map_or_else(
            || {
                Arc::new(Snapshot {
                    healthy: true,
                    tables: AHashMap::new(),
                })
            },
            |h| Arc::clone(&h.snapshot()),
        );
        let mut link = ClusterLink {
            hub,
            worker,
            tx,
            snapshot,
            anchor: Instant::now(),
            anchor_ms: unix_ms(SystemTime::now()),
            on_error: OnRedisError::Open,
            prefix: None,
            scratch: Vec::new(),
        };
        link.configure(cluster);
        link
    }

    /// Follows the served `[cluster]` section (`None`: absent).
    pub fn configure(&mut self, cluster: Option<&ClusterConfig>) {
        self.on_error = cluster.map_or(OnRedisError::Open, |c| c.on_redis_error);
        self.prefix = cluster.map(|c| c.key_prefix.clone());
    }

    /// `now` in Unix milliseconds, from the anchor taken at the last tick.
    pub fn now_ms(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.anchor).as_millis();
        self.anchor_ms
            .saturating_add(u64::try_from(since).unwrap_or(u64::MAX))
    }

    pub fn ctx(&self, now: Instant) -> ClusterCtx<'_> {
        let mode = match (self.snapshot.healthy, self.on_error) {
            (true, _) => Mode::Cluster,
            (false, OnRedisError::Open) => Mode::Fallback,
            (false, OnRedisError::Closed) => Mode::Unavailable,
        };
        ClusterCtx {
            mode,
            now_ms: self.now_ms(now),
            view: ClusterView {
                snapshot: &self.snapshot,
                worker: self.worker,
            },
        }
    }

    /// The tick: re-anchors the clock, picks up the newest snapshot, and hands the counts
    /// gathered by `collect` over as one batch.
    pub fn tick(&mut self, now: Instant, wall: SystemTime, collect: impl FnOnce(&mut Vec<Delta>)) {
        self.anchor = now;
        self.anchor_ms = unix_ms(wall);
        if let Some(hub) = &self.hub {
            let latest = hub.snapshot();
            if !Arc::ptr_eq(&latest, &self.snapshot) {
                self.snapshot = Arc::clone(&latest);
            }
        }
        collect(&mut self.scratch);
        if self.scratch.is_empty() {
            return;
        }
        let deltas = std::mem::take(&mut self.scratch);
        if let Some(tx) = &self.tx {
            // Full (the sync thread is stuck on a slow Redis): these counts stay local.
            let _ = tx.try_send(Batch {
                worker: self.worker,
                deltas,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::redis_sync::Totals;

    const MINUTE: u64 = 60_000;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn sliding_window_decisions() {
        // (cur, prev, limit, elapsed, allowed, remaining, reset, retry_after)
        type Case = (u64, u64, u64, u64, bool, u64, u64, u64);
        let cases: &[Case] = &[
            // Empty: allowed, 9 left; this request fades out by the end of the next window.
            (0, 0, 10, 0, true, 9, 2 * MINUTE, 0),
            (0, 0, 10, 15_000, true, 9, 2 * MINUTE - 15_000, 0),
            (9, 0, 10, 0, true, 0, 2 * MINUTE, 0),
            // Full current window: the next window, where 10 * (1 - f) + 1 <= 10 needs
            // f >= 0.1: 6 s into it.
            (10, 0, 10, 30_000, false, 0, 90_000, 30_000 + 6_000),
            // The previous window counts by its remaining share: at 3/4 of the window,
            // 20 * 1/4 = 5 of 10 used.
            (0, 20, 10, 45_000, true, 4, 2 * MINUTE - 45_000, 0),
            (4, 20, 10, 45_000, true, 0, 2 * MINUTE - 45_000, 0),
            // 20 * w + 5 + 1 <= 10 needs w <= 1/5: at 48 s, 3 s from now.
            (5, 20, 10, 45_000, false, 0, 75_000, 3_000),
            // Only the previous window: it is gone at the end of this one.
            (0, 20, 10, 0, false, 0, MINUTE, 33_000),
            // limit 1 with a full window waits for the whole next window.
            (1, 0, 1, 59_999, false, 0, MINUTE + 1, 1 + MINUTE),
        ];
        for (i, &(cur, prev, limit, elapsed, allowed, remaining, reset, retry)) in
            cases.iter().enumerate()
        {
            let s = decide(Counts { cur, prev }, limit, MINUTE, elapsed);
            assert_eq!(
                (s.allowed, s.remaining, s.reset, s.retry_after),
                (allowed, remaining, ms(reset), ms(retry)),
                "case {i}"
            );
            if !allowed {
                // Waiting retry_after really is enough, and 1 ms less is not.
                let at = elapsed + retry;
                let roll = |at: u64| {
                    if at < MINUTE {
                        (Counts { cur, prev }, at)
                    } else if at < 2 * MINUTE {
                        (Counts { cur: 0, prev: cur }, at - MINUTE)
                    } else {
                        (Counts::default(), at - 2 * MINUTE)
                    }
                };
                let (c, e) = roll(at);
                assert!(decide(c, limit, MINUTE, e).allowed, "case {i}: after retry");
                let (c, e) = roll(at - 1);
                assert!(
                    !decide(c, limit, MINUTE, e).allowed,
                    "case {i}: before retry"
                );
            }
        }
    }

    #[test]
    fn no_burst_at_the_window_boundary() {
        // A client that used the whole limit just before the boundary gets almost nothing
        // right after it (a fixed window would give it the whole limit again).
        let full = Counts { cur: 0, prev: 100 };
        assert!(!decide(full, 100, MINUTE, 0).allowed);
        assert_eq!(decide(full, 100, MINUTE, 600).remaining, 0);
        assert_eq!(decide(full, 100, MINUTE, 30_000).remaining, 49);
    }

    fn limiter(limit: u64) -> ClusterLimiter {
        let spec = Arc::new(LimitSpec {
            base: Arc::from(&b"p:r:l:"[..]),
            period_ms: MINUTE,
        });
        let fallback = KeyedLimiter::new(limit, ms(MINUTE), 16, Instant::now());
        ClusterLimiter::new(spec, limit, fallback, 16)
    }

    /// (key, window, total, applied per worker)
    type Entry<'a> = (&'a str, u64, [u64; 2], &'a [[u64; 2]]);

    fn snapshot(entries: &[Entry]) -> Snapshot {
        let mut keys = AHashMap::new();
        for (key, window, total, applied) in entries {
            keys.insert(
                Arc::from(key.as_bytes()),
                Totals {
                    window: *window,
                    total: *total,
                    applied: applied.to_vec().into_boxed_slice(),
                },
            );
        }
        let mut tables = AHashMap::new();
        tables.insert(Arc::from(&b"p:r:l:"[..]), keys);
        Snapshot {
            healthy: true,
            tables,
        }
    }

    #[test]
    fn own_counts_plus_the_others() {
        let t0 = 10 * MINUTE;
        let mut l = limiter(10);
        let empty = snapshot(&[]);
        let view = ClusterView {
            snapshot: &empty,
            worker: 1,
        };
        for _ in 0..3 {
            assert!(l.take(b"a", t0, &view).allowed);
        }
        // Redis has 9 in window 10, 3 of them this worker's (index 1): 6 others + 3 mine.
        let known = snapshot(&[("a", 10, [9, 0], &[[0, 0], [3, 0]])]);
        let view = ClusterView {
            snapshot: &known,
            worker: 1,
        };
        assert_eq!(l.peek(b"a", t0, &view).remaining, 0);
        assert!(l.take(b"a", t0, &view).allowed, "6 + 3 + 1 = 10");
        assert!(!l.take(b"a", t0, &view).allowed);
        assert!(l.peek(b"b", t0, &view).allowed, "another key");
        // Seen from the next window (snapshot not updated yet), the counts are previous.
        let s = l.peek(b"a", t0 + MINUTE + MINUTE / 2, &view);
        assert_eq!((s.allowed, s.remaining), (true, 4), "10 * 1/2 + 1 used");
    }

    #[test]
    fn counts_are_handed_over_once_per_window() {
        let t0 = 10 * MINUTE;
        let mut l = limiter(100);
        let empty = snapshot(&[]);
        let view = ClusterView {
            snapshot: &empty,
            worker: 0,
        };
        let mut out = Vec::new();
        l.hand_over(&mut out);
        assert!(out.is_empty(), "nothing counted");
        for key in ["a", "a", "b", "a"] {
            l.take(key.as_bytes(), t0, &view);
        }
        // Window 10 ends with one more "a"; 11 begins with two.
        l.take(b"a", t0 + MINUTE, &view);
        l.take(b"a", t0 + MINUTE, &view);
        l.hand_over(&mut out);
        let mut got: Vec<(String, u64, u64)> = out
            .iter()
            .map(|d| {
                (
                    String::from_utf8_lossy(&d.key).into_owned(),
                    d.window,
                    d.count,
                )
            })
            .collect();
        got.sort();
        assert_eq!(
            got,
            [
                ("a".into(), 10, 3),
                ("a".into(), 11, 2),
                ("b".into(), 10, 1)
            ]
        );
        out.clear();
        l.hand_over(&mut out);
        assert!(out.is_empty(), "each count is handed over once");
        // Still counted as this worker's own.
        assert_eq!(l.peek(b"a", t0 + MINUTE, &view).remaining, 100 - 3 - 2 - 1);
    }

    #[test]
    fn memory_is_bounded_and_idle_keys_expire() {
        let t0 = 10 * MINUTE;
        let mut l = limiter(5);
        for i in 0..1000u32 {
            l.count(&i.to_be_bytes(), t0);
            assert!(l.len() <= 16, "{} keys after {i}", l.len());
        }
        let mut out = Vec::new();
        l.hand_over(&mut out);
        l.sweep(t0 + MINUTE, Instant::now());
        assert!(!l.is_empty(), "counted in the previous window");
        l.sweep(t0 + 2 * MINUTE, Instant::now());
        assert!(l.is_empty(), "idle for two windows");
    }
}
