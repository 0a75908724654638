//! Local (per-worker) rate limiting: GCRA per key, several limits per route.
//!
//! Where it sits: after the route is found and before the mock or the forward
//! (`proxy::ClientConn::handle`). A denied request is answered 429 locally; an allowed one
//! carries the most restrictive limit's state in `X-RateLimit-*` and `RateLimit*` headers.
//!
//! Invariants: pure (time is the `now` argument, so tests never sleep); no locks and no
//! sharing between workers (each worker enforces `ceil(limit / workers)`); memory bounded
//! (at most [`MAX_KEYS`] keys per limit per worker); a request for a key already present
//! allocates nothing.
//!
//! GCRA (generic cell rate algorithm): each key keeps one number, its theoretical arrival
//! time `tat`. With `limit` requests per `period`, each request costs `T = period / limit`
//! and the bucket holds `period` worth of them: a request is allowed when
//! `max(tat, now) + T - now <= period`. A key with `tat <= now` has its full bucket back and
//! carries no information, so a sweep drops it.

use std::time::{Duration, Instant};

use ahash::AHashMap;
use bytes::BytesMut;

use crate::config::{Config, RateLimitConfig, RateLimitKey};

/// Keys remembered per limit per worker. Past it, idle keys are swept and then the keys
/// closest to a full bucket are forgotten (they restart with a full bucket).
pub const MAX_KEYS: usize = 100_000;

/// One limit's buckets on one worker.
#[derive(Debug)]
pub struct KeyedLimiter {
    /// Cost of one request (`period / limit`), nanoseconds, at least 1.
    cost: u64,
    /// The bucket's depth (`period`), nanoseconds.
    period: u64,
    /// Requests per period this worker allows.
    limit: u64,
    epoch: Instant,
    /// Key → theoretical arrival time, in nanoseconds since `epoch`.
    tats: AHashMap<Box<[u8]>, u64>,
    max_keys: usize,
    /// Scratch for eviction, kept to avoid reallocating.
    scratch: Vec<u64>,
}

/// A limit's answer for one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitState {
    pub allowed: bool,
    /// Requests still allowed now (after this one, when allowed).
    pub remaining: u64,
    /// Until the bucket is full again.
    pub reset: Duration,
    /// When denied: until one request would be allowed.
    pub retry_after: Duration,
}

impl KeyedLimiter {
    /// `limit` requests per `period` (both non-zero), at most `max_keys` keys.
    pub fn new(limit: u64, period: Duration, max_keys: usize, now: Instant) -> Self {
        let limit = limit.max(1);
        let period = u64::try_from(period.as_nanos()).unwrap_or(u64::MAX).max(1);
        KeyedLimiter {
            cost: (period / limit).max(1),
            period,
            limit,
            epoch: now,
            tats: AHashMap::new(),
            max_keys: max_keys.max(1),
            scratch: Vec::new(),
        }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn len(&self) -> usize {
        self.tats.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tats.is_empty()
    }

    fn nanos(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// What a request for `key` would get now (`remaining` counted after it), without
    /// taking it.
    pub fn peek(&self, key: &[u8], now: Instant) -> LimitState {
        let now = self.nanos(now);
        let tat = self.tats.get(key).copied().unwrap_or(0).max(now);
        self.state(tat, now)
    }

    fn state(&self, tat: u64, now: u64) -> LimitState {
        let new_tat = tat.saturating_add(self.cost);
        let used = new_tat - now;
        if used <= self.period {
            LimitState {
                allowed: true,
                remaining: (self.period - used) / self.cost,
                reset: Duration::from_nanos(used),
                retry_after: Duration::ZERO,
            }
        } else {
            LimitState {
                allowed: false,
                remaining: 0,
                reset: Duration::from_nanos(tat - now),
                retry_after: Duration::from_nanos(used - self.period),
            }
        }
    }

    /// Takes one request for `key` when allowed; returns the resulting state.
    pub fn take(&mut self, key: &[u8], now: Instant) -> LimitState {
        let now_ns = self.nanos(now);
        let (cost, period) = (self.cost, self.period);
        if let Some(tat) = self.tats.get_mut(key) {
            let base = (*tat).max(now_ns);
            let new_tat = base.saturating_add(cost);
            if new_tat - now_ns <= period {
                *tat = new_tat;
            }
            return self.state(base, now_ns);
        }
        let state = self.state(now_ns, now_ns);
        if state.allowed {
            if self.tats.len() >= self.max_keys {
                self.make_room(now_ns);
            }
            self.tats
                .insert(key.into(), now_ns.saturating_add(self.cost));
        }
        state
    }

    /// Drops every key whose bucket is full again.
    pub fn sweep(&mut self, now: Instant) {
        let now = self.nanos(now);
        self.tats.retain(|_, tat| *tat > now);
    }

    /// Sweeps; when still full, forgets the eighth of the keys closest to a full bucket
    /// (amortised O(1) per new key).
    fn make_room(&mut self, now: u64) {
        self.tats.retain(|_, tat| *tat > now);
        if self.tats.len() < self.max_keys {
            return;
        }
        self.scratch.clear();
        self.scratch.extend(self.tats.values().copied());
        let cut = (self.max_keys / 8).max(1).min(self.scratch.len() - 1);
        let (_, threshold, _) = self.scratch.select_nth_unstable(cut);
        let threshold = *threshold;
        self.tats.retain(|_, tat| *tat > threshold);
        if self.tats.len() >= self.max_keys {
            // Every tat equal: forget one arbitrary key.
            if let Some(key) = self.tats.keys().next().cloned() {
                self.tats.remove(&key);
            }
        }
    }
}

/// A route's limits on one worker, with the `RateLimit-Policy` value pre-rendered.
#[derive(Debug)]
pub struct RouteLimiter {
    /// Parallel to the route's `rate_limits`.
    limiters: Vec<KeyedLimiter>,
    names: Vec<String>,
    keys: Vec<RateLimitKey>,
    /// `"per-second";q=10;w=1, "per-hour";q=1000;w=3600` with per-worker quotas.
    policy: Vec<u8>,
    /// Identity of the config the state was built from, to carry it over a reload.
    specs: Vec<RateLimitConfig>,
    route: String,
}

/// The outcome of [`RouteLimiter::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// The limit that answers: when allowed, the one with the fewest remaining; when
    /// denied, the one that denies longest.
    pub index: usize,
    pub state: LimitState,
}

impl RouteLimiter {
    pub fn new(specs: &[RateLimitConfig], workers: usize, now: Instant) -> Self {
        let workers = workers.max(1) as u64;
        let mut policy = Vec::new();
        let mut limiters = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            let per_worker = u64::from(spec.limit).div_ceil(workers);
            limiters.push(KeyedLimiter::new(per_worker, spec.period, MAX_KEYS, now));
            if i > 0 {
                policy.extend_from_slice(b", ");
            }
            policy.push(b'"');
            policy.extend_from_slice(spec.name.as_bytes());
            policy.extend_from_slice(b"\";q=");
            policy.extend_from_slice(itoa::Buffer::new().format(per_worker).as_bytes());
            policy.extend_from_slice(b";w=");
            policy.extend_from_slice(
                itoa::Buffer::new()
                    .format(ceil_secs(spec.period))
                    .as_bytes(),
            );
        }
        RouteLimiter {
            limiters,
            names: specs.iter().map(|s| s.name.clone()).collect(),
            keys: specs.iter().map(|s| s.key.clone()).collect(),
            policy,
            specs: specs.to_vec(),
            route: String::new(),
        }
    }

    pub fn keys(&self) -> &[RateLimitKey] {
        &self.keys
    }

    /// Checks every limit for its key (`key_of(i)` is limit `i`'s key); the request is
    /// taken from all of them only when all allow it.
    pub fn check<'k>(&mut self, key_of: impl Fn(usize) -> &'k [u8], now: Instant) -> Verdict {
        let mut denied: Option<Verdict> = None;
        for (i, limiter) in self.limiters.iter().enumerate() {
            let state = limiter.peek(key_of(i), now);
            if !state.allowed && denied.is_none_or(|d| state.retry_after > d.state.retry_after) {
                denied = Some(Verdict {
                    allowed: false,
                    index: i,
                    state,
                });
            }
        }
        if let Some(denied) = denied {
            return denied;
        }
        let mut best: Option<Verdict> = None;
        for (i, limiter) in self.limiters.iter_mut().enumerate() {
            let state = limiter.take(key_of(i), now);
            let better = best.is_none_or(|b| {
                (state.remaining, std::cmp::Reverse(state.reset))
                    < (b.state.remaining, std::cmp::Reverse(b.state.reset))
            });
            if better {
                best = Some(Verdict {
                    allowed: true,
                    index: i,
                    state,
                });
            }
        }
        best.unwrap_or(Verdict {
            allowed: true,
            index: 0,
            state: LimitState {
                allowed: true,
                remaining: 0,
                reset: Duration::ZERO,
                retry_after: Duration::ZERO,
            },
        })
    }

    /// Appends the rate-limit response headers for `verdict` (and `Retry-After` when
    /// denied), each line ending in CRLF.
    pub fn write_headers(&self, out: &mut BytesMut, verdict: &Verdict) {
        let Some(limiter) = self.limiters.get(verdict.index) else {
            return;
        };
        let mut num = itoa::Buffer::new();
        let reset = ceil_secs(verdict.state.reset);
        if !verdict.allowed {
            out.extend_from_slice(b"retry-after: ");
            out.extend_from_slice(num.format(ceil_secs(verdict.state.retry_after)).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"x-ratelimit-limit: ");
        out.extend_from_slice(num.format(limiter.limit()).as_bytes());
        out.extend_from_slice(b"\r\nx-ratelimit-remaining: ");
        out.extend_from_slice(num.format(verdict.state.remaining).as_bytes());
        out.extend_from_slice(b"\r\nx-ratelimit-reset: ");
        out.extend_from_slice(num.format(reset).as_bytes());
        out.extend_from_slice(b"\r\nratelimit-policy: ");
        out.extend_from_slice(&self.policy);
        out.extend_from_slice(b"\r\nratelimit: \"");
        out.extend_from_slice(self.names[verdict.index].as_bytes());
        out.extend_from_slice(b"\";r=");
        out.extend_from_slice(num.format(verdict.state.remaining).as_bytes());
        out.extend_from_slice(b";t=");
        out.extend_from_slice(num.format(reset).as_bytes());
        out.extend_from_slice(b"\r\n");
    }

    pub fn sweep(&mut self, now: Instant) {
        for limiter in &mut self.limiters {
            limiter.sweep(now);
        }
    }
}

/// Whole seconds, rounded up (a client waiting that long is sure to be allowed).
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Every route's limiters on one worker, indexed like `config.routes.routes()`.
#[derive(Debug, Default)]
pub struct WorkerLimits {
    routes: Vec<Option<RouteLimiter>>,
    workers: usize,
}

impl WorkerLimits {
    pub fn new(config: &Config, workers: usize, now: Instant) -> Self {
        let mut limits = WorkerLimits {
            routes: Vec::new(),
            workers,
        };
        limits.sync(config, now);
        limits
    }

    /// Rebuilds for a new config. A route keeps its buckets when its name and limits are
    /// unchanged; anything else starts with full buckets.
    pub fn sync(&mut self, config: &Config, now: Instant) {
        let mut old: Vec<RouteLimiter> = std::mem::take(&mut self.routes)
            .into_iter()
            .flatten()
            .collect();
        self.routes = config
            .routes
            .routes()
            .iter()
            .map(|route| {
                if route.rate_limits.is_empty() {
                    return None;
                }
                let reused = old
                    .iter()
                    .position(|l| l.route == route.name && l.specs == route.rate_limits)
                    .map(|i| old.swap_remove(i));
                Some(reused.unwrap_or_else(|| {
                    let mut limiter = RouteLimiter::new(&route.rate_limits, self.workers, now);
                    limiter.route.clone_from(&route.name);
                    limiter
                }))
            })
            .collect();
    }

    pub fn route_mut(&mut self, index: usize) -> Option<&mut RouteLimiter> {
        self.routes.get_mut(index)?.as_mut()
    }

    pub fn sweep(&mut self, now: Instant) {
        for route in self.routes.iter_mut().flatten() {
            route.sweep(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn spec(name: &str, limit: u32, period: Duration) -> RateLimitConfig {
        RateLimitConfig {
            name: name.into(),
            key: RateLimitKey::ClientIp,
            limit,
            period,
        }
    }

    #[test]
    fn exact_sequences() {
        // (limit, period, [(ms since start, allowed, remaining)])
        type Case = (u64, Duration, &'static [(u64, bool, u64)]);
        let cases: &[Case] = &[
            (
                3,
                Duration::from_secs(3600),
                &[(0, true, 2), (1, true, 1), (2, true, 0), (3, false, 0)],
            ),
            // 2 per second: one slot back every 500 ms.
            (
                2,
                Duration::from_secs(1),
                &[
                    (0, true, 1),
                    (0, true, 0),
                    (0, false, 0),
                    (499, false, 0),
                    (500, true, 0),
                    (600, false, 0),
                    (2000, true, 1),
                    (2000, true, 0),
                ],
            ),
            (
                1,
                Duration::from_secs(1),
                &[(0, true, 0), (999, false, 0), (1000, true, 0)],
            ),
        ];
        let start = Instant::now();
        for (limit, period, steps) in cases {
            let mut l = KeyedLimiter::new(*limit, *period, 10, start);
            for (i, (at, allowed, remaining)) in steps.iter().enumerate() {
                let s = l.take(b"k", start + MS * (*at as u32));
                assert_eq!(
                    (s.allowed, s.remaining),
                    (*allowed, *remaining),
                    "limit {limit} step {i}"
                );
            }
        }
    }

    #[test]
    fn reset_and_retry_after() {
        let start = Instant::now();
        let hour = Duration::from_secs(3600);
        let mut l = KeyedLimiter::new(3, hour, 10, start);
        assert_eq!(l.take(b"k", start).reset, hour / 3);
        assert_eq!(l.take(b"k", start).reset, hour * 2 / 3);
        assert_eq!(l.take(b"k", start).reset, hour);
        let denied = l.take(b"k", start + Duration::from_secs(60));
        assert!(!denied.allowed);
        assert_eq!(denied.retry_after, hour / 3 - Duration::from_secs(60));
        // Refilled: after the whole period the bucket is full again.
        let s = l.take(b"k", start + hour);
        assert_eq!((s.allowed, s.remaining), (true, 2));
    }

    #[test]
    fn keys_are_independent() {
        let start = Instant::now();
        let mut l = KeyedLimiter::new(1, Duration::from_secs(10), 10, start);
        assert!(l.take(b"a", start).allowed);
        assert!(!l.take(b"a", start).allowed);
        assert!(l.take(b"b", start).allowed);
        assert!(l.take(b"", start).allowed);
    }

    #[test]
    fn most_restrictive_answers() {
        let start = Instant::now();
        let specs = [
            spec("per-second", 10, Duration::from_secs(1)),
            spec("per-minute", 3, Duration::from_secs(60)),
        ];
        let mut r = RouteLimiter::new(&specs, 1, start);
        let key = |_| &b"ip"[..];
        let expect = [(true, 1, 2), (true, 1, 1), (true, 1, 0), (false, 1, 0)];
        for (i, (allowed, index, remaining)) in expect.into_iter().enumerate() {
            let v = r.check(key, start);
            assert_eq!(
                (v.allowed, v.index, v.state.remaining),
                (allowed, index, remaining),
                "step {i}"
            );
        }
        // A denied request takes nothing from the other limit: 3 of 10 taken, so one more
        // would leave 6.
        assert_eq!(r.limiters[0].peek(b"ip", start).remaining, 6);
        let mut out = BytesMut::new();
        let v = r.check(key, start);
        r.write_headers(&mut out, &v);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "retry-after: 20\r\nx-ratelimit-limit: 3\r\nx-ratelimit-remaining: 0\r\n\
             x-ratelimit-reset: 60\r\nratelimit-policy: \"per-second\";q=10;w=1, \
             \"per-minute\";q=3;w=60\r\nratelimit: \"per-minute\";r=0;t=60\r\n"
        );
    }

    #[test]
    fn per_worker_share_rounds_up() {
        let start = Instant::now();
        for (limit, workers, want) in [(10, 1, 10), (10, 2, 5), (10, 3, 4), (1, 8, 1)] {
            let r = RouteLimiter::new(&[spec("s", limit, Duration::from_secs(1))], workers, start);
            assert_eq!(r.limiters[0].limit(), want, "{limit}/{workers}");
        }
    }

    #[test]
    fn memory_is_bounded() {
        let start = Instant::now();
        let mut l = KeyedLimiter::new(5, Duration::from_secs(60), 64, start);
        for i in 0..10_000u32 {
            l.take(&i.to_be_bytes(), start + MS * i);
            assert!(l.len() <= 64, "{} keys after {i}", l.len());
        }
        // The newest key is remembered (one more request would leave 3); the oldest was
        // evicted (a fresh bucket: one request leaves 4).
        assert_eq!(
            l.peek(&9_999u32.to_be_bytes(), start + MS * 9_999)
                .remaining,
            3
        );
        assert_eq!(l.peek(&0u32.to_be_bytes(), start + MS * 9_999).remaining, 4);
        // Once every bucket is full again, a sweep empties the table.
        l.sweep(start + Duration::from_secs(3600));
        assert!(l.is_empty());
    }

    #[test]
    fn sweep_keeps_keys_still_limited() {
        let start = Instant::now();
        let mut l = KeyedLimiter::new(2, Duration::from_secs(1), 10, start);
        l.take(b"a", start);
        l.take(b"b", start);
        l.take(b"b", start);
        l.sweep(start + 600 * MS);
        assert_eq!(l.len(), 1, "a is full again after 500 ms; b needs 1 s");
    }
}
