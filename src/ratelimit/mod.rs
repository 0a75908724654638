//! Rate limiting: GCRA per key per worker (local limits) and sliding windows shared through
//! Redis (cluster limits, [`cluster`]), several limits per route.
//!
//! Where it sits: the last request filter of a route (`proxy/pipeline.rs`), after `auth`
//! (consumer limits count by the authenticated consumer) and before the mock or the
//! forward. A denied request is answered 429 locally; every answer on the route carries
//! the answering limit's state in `X-RateLimit-*` and `RateLimit*` headers.
//!
//! Invariants: pure (time is the `now` argument, so tests never sleep); no locks and no
//! sharing between workers on the request path (each worker enforces
//! `ceil(limit / workers)` of a local limit; cluster counts cross threads only at the
//! worker's tick); memory bounded (at most [`MAX_KEYS`] keys per limit per worker); a
//! request for a key already present allocates nothing.
//!
//! GCRA (generic cell rate algorithm): each key keeps one number, its theoretical arrival
//! time `tat`. With `limit` requests per `period`, each request costs `T = period / limit`
//! and the bucket holds `period` worth of them: a request is allowed when
//! `max(tat, now) + T - now <= period`. A key with `tat <= now` has its full bucket back and
//! carries no information, so a sweep drops it.

pub mod redis_sync;

pub mod cluster;
pub mod config;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ahash::AHashMap;
use bytes::BytesMut;

use crate::http1::encode::AddedLines;
use crate::http1::headers::header_value;
use crate::http1::RequestHead;
use crate::ratelimit::redis_sync::{ClusterHub, LimitSpec};
use cluster::{ClusterCtx, ClusterLimiter, ClusterLink, Mode};
use config::{ClusterConfig, RateLimitConfig, RateLimitKey, RateLimitScope};

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

impl LimitState {
    const EMPTY: LimitState = LimitState {
        allowed: true,
        remaining: 0,
        reset: Duration::ZERO,
        retry_after: Duration::ZERO,
    };
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

/// One limit of a route on one worker.
#[derive(Debug)]
enum Limiter {
    Local(KeyedLimiter),
    Cluster(ClusterLimiter),
}

/// A route's limits on one worker, with the `RateLimit-Policy` value pre-rendered.
#[derive(Debug)]
pub struct RouteLimiter {
    /// Parallel to the route's `rate_limits`.
    limiters: Vec<Limiter>,
    names: Vec<String>,
    keys: Vec<RateLimitKey>,
    /// `"per-second";q=10;w=1, "per-hour";q=1000;w=3600`: local limits with per-worker
    /// quotas, cluster limits with the whole limit.
    policy: Vec<u8>,
    /// The same while cluster limits fall back to their per-worker share.
    fallback_policy: Vec<u8>,
    has_cluster: bool,
    /// Identity of the config the state was built from, to carry it over a reload.
    specs: Vec<RateLimitConfig>,
    route: String,
    /// `cluster.key_prefix` the cluster limits' Redis keys were built with.
    prefix: Option<String>,
}

/// The outcome of [`RouteLimiter::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// The limit that answers: when allowed, the one with the fewest remaining; when
    /// denied, the one that denies longest.
    pub index: usize,
    pub state: LimitState,
    /// The answering limit's quota as enforced here (`X-RateLimit-Limit`).
    pub limit: u64,
    /// Cluster limits were decided by their local fallback (Redis unreachable).
    pub fallback: bool,
    /// Redis is unreachable and `on_redis_error = "closed"`: answer 503, no headers.
    pub unavailable: bool,
}

impl RouteLimiter {
    /// Route `route`'s limits; cluster limits name their Redis keys `prefix:route:limit:`.
    pub fn new(
        route: &str,
        specs: &[RateLimitConfig],
        workers: usize,
        prefix: Option<&str>,
        now: Instant,
    ) -> Self {
        let workers = workers.max(1) as u64;
        let (mut policy, mut fallback_policy) = (Vec::new(), Vec::new());
        let mut limiters = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            let per_worker = u64::from(spec.limit).div_ceil(workers);
            let local = KeyedLimiter::new(per_worker, spec.period, MAX_KEYS, now);
            let quota = match spec.scope {
                RateLimitScope::Local => {
                    limiters.push(Limiter::Local(local));
                    per_worker
                }
                RateLimitScope::Cluster => {
                    let base = format!("{}:{route}:{}:", prefix.unwrap_or("strait:rl"), spec.name);
                    let spec_ms = u64::try_from(spec.period.as_millis()).unwrap_or(u64::MAX);
                    let limit_spec = Arc::new(LimitSpec {
                        base: Arc::from(base.as_bytes()),
                        period_ms: spec_ms.max(1),
                    });
                    let limit = u64::from(spec.limit);
                    limiters.push(Limiter::Cluster(ClusterLimiter::new(
                        limit_spec, limit, local, MAX_KEYS,
                    )));
                    limit
                }
            };
            write_policy(&mut policy, i, &spec.name, quota, spec.period);
            write_policy(&mut fallback_policy, i, &spec.name, per_worker, spec.period);
        }
        let has_cluster = specs.iter().any(|s| s.scope == RateLimitScope::Cluster);
        RouteLimiter {
            limiters,
            names: specs.iter().map(|s| s.name.clone()).collect(),
            keys: specs.iter().map(|s| s.key.clone()).collect(),
            policy,
            fallback_policy,
            has_cluster,
            specs: specs.to_vec(),
            route: route.to_owned(),
            prefix: prefix.filter(|_| has_cluster).map(str::to_owned),
        }
    }

    pub fn keys(&self) -> &[RateLimitKey] {
        &self.keys
    }

    /// Checks every limit for its key (`key_of(i)` is limit `i`'s key); the request is
    /// taken from all of them only when all allow it. `cluster` tells how cluster limits
    /// decide now (and what the fleet has counted).
    pub fn check<'k>(
        &mut self,
        key_of: impl Fn(usize) -> &'k [u8],
        now: Instant,
        cluster: &ClusterCtx<'_>,
    ) -> Verdict {
        let fallback = self.has_cluster && cluster.mode == Mode::Fallback;
        let verdict = |allowed, index, state, limit| Verdict {
            allowed,
            index,
            state,
            limit,
            fallback,
            unavailable: false,
        };
        if self.has_cluster && cluster.mode == Mode::Unavailable {
            return Verdict {
                unavailable: true,
                ..verdict(false, 0, LimitState::EMPTY, 0)
            };
        }
        let mut denied: Option<Verdict> = None;
        for (i, limiter) in self.limiters.iter().enumerate() {
            let (state, limit) = match limiter {
                Limiter::Local(l) => (l.peek(key_of(i), now), l.limit()),
                Limiter::Cluster(c) if fallback => {
                    (c.fallback.peek(key_of(i), now), c.fallback.limit())
                }
                Limiter::Cluster(c) => {
                    (c.peek(key_of(i), cluster.now_ms, &cluster.view), c.limit())
                }
            };
            if !state.allowed && denied.is_none_or(|d| state.retry_after > d.state.retry_after) {
                denied = Some(verdict(false, i, state, limit));
            }
        }
        if let Some(denied) = denied {
            return denied;
        }
        let mut best: Option<Verdict> = None;
        for (i, limiter) in self.limiters.iter_mut().enumerate() {
            let key = key_of(i);
            let (state, limit) = match limiter {
                Limiter::Local(l) => (l.take(key, now), l.limit()),
                Limiter::Cluster(c) if fallback => {
                    let state = c.fallback.take(key, now);
                    if state.allowed {
                        c.count(key, cluster.now_ms);
                    }
                    (state, c.fallback.limit())
                }
                Limiter::Cluster(c) => (c.take(key, cluster.now_ms, &cluster.view), c.limit()),
            };
            let better = best.is_none_or(|b| {
                (state.remaining, std::cmp::Reverse(state.reset))
                    < (b.state.remaining, std::cmp::Reverse(b.state.reset))
            });
            if better {
                best = Some(verdict(true, i, state, limit));
            }
        }
        best.unwrap_or(verdict(true, 0, LimitState::EMPTY, 0))
    }

    /// Appends the rate-limit response headers for `verdict` (and `Retry-After` when
    /// denied), each line ending in CRLF.
    pub fn write_headers(&self, out: &mut BytesMut, verdict: &Verdict) {
        let Some(name) = self
            .names
            .get(verdict.index)
            .filter(|_| !verdict.unavailable)
        else {
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
        out.extend_from_slice(num.format(verdict.limit).as_bytes());
        out.extend_from_slice(b"\r\nx-ratelimit-remaining: ");
        out.extend_from_slice(num.format(verdict.state.remaining).as_bytes());
        out.extend_from_slice(b"\r\nx-ratelimit-reset: ");
        out.extend_from_slice(num.format(reset).as_bytes());
        out.extend_from_slice(b"\r\nratelimit-policy: ");
        out.extend_from_slice(if verdict.fallback {
            &self.fallback_policy
        } else {
            &self.policy
        });
        out.extend_from_slice(b"\r\nratelimit: \"");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\";r=");
        out.extend_from_slice(num.format(verdict.state.remaining).as_bytes());
        out.extend_from_slice(b";t=");
        out.extend_from_slice(num.format(reset).as_bytes());
        out.extend_from_slice(b"\r\n");
    }

    pub fn sweep(&mut self, now: Instant, now_ms: u64) {
        for limiter in &mut self.limiters {
            match limiter {
                Limiter::Local(l) => l.sweep(now),
                Limiter::Cluster(c) => c.sweep(now_ms, now),
            }
        }
    }

    /// Hands the cluster limits' new counts over (the worker's tick).
    fn hand_over(&mut self, out: &mut Vec<crate::ratelimit::redis_sync::Delta>) {
        for limiter in &mut self.limiters {
            if let Limiter::Cluster(c) = limiter {
                c.hand_over(out);
            }
        }
    }
}

/// Appends `"name";q=quota;w=seconds` (comma-separated after the first) to a policy.
fn write_policy(out: &mut Vec<u8>, i: usize, name: &str, quota: u64, period: Duration) {
    if i > 0 {
        out.extend_from_slice(b", ");
    }
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\";q=");
    out.extend_from_slice(itoa::Buffer::new().format(quota).as_bytes());
    out.extend_from_slice(b";w=");
    out.extend_from_slice(itoa::Buffer::new().format(ceil_secs(period)).as_bytes());
}

/// Whole seconds, rounded up (a client waiting that long is sure to be allowed).
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Every route's limiters on one worker, indexed like the route table.
pub struct WorkerLimits {
    routes: Vec<Option<RouteLimiter>>,
    workers: usize,
    /// This worker's end of the Redis sync thread.
    link: ClusterLink,
}

/// A route's limiters with what a check needs from the worker (see [`WorkerLimits::route_mut`]).
pub struct RouteCheck<'a> {
    limiter: &'a mut RouteLimiter,
    link: &'a ClusterLink,
}

/// How a request fared against its route's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// A limit is spent: 429.
    Denied,
    /// A cluster limit cannot be checked and `on_redis_error = "closed"`: 503.
    Unavailable,
}

/// Limits per route above this many resolve their keys into a spill vector.
const INLINE_KEYS: usize = 8;

impl RouteCheck<'_> {
    /// Takes the request from every limit of its route, each counting by its own key (see
    /// [`RateLimitKey`]): the client address `client_ip`, the authenticated `consumer`
    /// (the client address on a route without `auth`), a request header (empty when
    /// absent), or the route as a whole. The lines describing the answering limit go to
    /// `lines` (none when a cluster limit cannot be checked).
    pub fn take_request(
        &mut self,
        raw: &[u8],
        head: &RequestHead,
        client_ip: &[u8],
        consumer: Option<&[u8]>,
        lines: &mut BytesMut,
        now: Instant,
    ) -> Decision {
        let consumer = consumer.unwrap_or(client_ip);
        // One key per limit, resolved before the limiter is borrowed mutably.
        let mut resolved: [&[u8]; INLINE_KEYS] = [b""; INLINE_KEYS];
        let mut spill: Vec<&[u8]> = Vec::new();
        for (i, key) in self.limiter.keys().iter().enumerate() {
            let value: &[u8] = match key {
                RateLimitKey::ClientIp => client_ip,
                RateLimitKey::Route => b"",
                RateLimitKey::Consumer => consumer,
                RateLimitKey::Header(name) => {
                    header_value(raw, head, name.as_bytes()).unwrap_or_default()
                }
            };
            match resolved.get_mut(i) {
                Some(slot) => *slot = value,
                None => spill.push(value),
            }
        }
        let key_of = |i: usize| match resolved.get(i) {
            Some(k) => *k,
            None => spill.get(i - resolved.len()).copied().unwrap_or_default(),
        };
        let verdict = self.limiter.check(key_of, now, &self.link.ctx(now));
        self.limiter.write_headers(lines, &verdict);
        match verdict {
            v if v.allowed => Decision::Allowed,
            v if v.unavailable => Decision::Unavailable,
            _ => Decision::Denied,
        }
    }
}

impl WorkerLimits {
    /// The limiters of `routes` (each route's name and `rate_limits`, in the route table's
    /// order) with `cluster`, the `[cluster]` section. `hub`: the process's Redis sync
    /// thread (`None` in unit tests).
    pub fn new<'a>(
        routes: impl IntoIterator<Item = (&'a str, &'a [RateLimitConfig])>,
        cluster: Option<&ClusterConfig>,
        workers: usize,
        hub: Option<Arc<ClusterHub>>,
        now: Instant,
    ) -> Self {
        let mut limits = WorkerLimits {
            routes: Vec::new(),
            workers,
            link: ClusterLink::new(hub, cluster),
        };
        limits.sync(routes, cluster, now);
        limits
    }

    /// Rebuilds for a new config (its routes and `[cluster]`, as for [`WorkerLimits::new`]).
    /// A route keeps its buckets when its name and limits are unchanged; anything else
    /// starts with full buckets.
    pub fn sync<'a>(
        &mut self,
        routes: impl IntoIterator<Item = (&'a str, &'a [RateLimitConfig])>,
        cluster: Option<&ClusterConfig>,
        now: Instant,
    ) {
        self.link.configure(cluster);
        let prefix = self.link.prefix.clone();
        // By route name: a linear search per route made a reload on a worker quadratic in
        // the number of limited routes.
        let mut old: AHashMap<String, Vec<RouteLimiter>> = AHashMap::new();
        for limiter in std::mem::take(&mut self.routes).into_iter().flatten() {
            old.entry(limiter.route.clone()).or_default().push(limiter);
        }
        self.routes = routes
            .into_iter()
            .map(|(name, specs)| {
                if specs.is_empty() {
                    return None;
                }
                let reused = old.get_mut(name).and_then(|same_name| {
                    let i = same_name
                        .iter()
                        .position(|l| l.specs == specs && (!l.has_cluster || l.prefix == prefix))?;
                    Some(same_name.swap_remove(i))
                });
                Some(reused.unwrap_or_else(|| {
                    RouteLimiter::new(name, specs, self.workers, prefix.as_deref(), now)
                }))
            })
            .collect();
    }

    pub fn route_mut(&mut self, index: usize) -> Option<RouteCheck<'_>> {
        Some(RouteCheck {
            limiter: self.routes.get_mut(index)?.as_mut()?,
            link: &self.link,
        })
    }

    pub fn sweep(&mut self, now: Instant) {
        let now_ms = self.link.now_ms(now);
        for route in self.routes.iter_mut().flatten() {
            route.sweep(now, now_ms);
        }
    }

    /// The worker's periodic tick (every ~20 ms, never per request): hands the cluster
    /// limits' counts to the sync thread and picks up the newest cluster totals.
    pub fn tick(&mut self, now: Instant, wall: SystemTime) {
        let routes = &mut self.routes;
        self.link.tick(now, wall, |out| {
            for route in routes.iter_mut().flatten() {
                route.hand_over(out);
            }
        });
    }
}

/// The rate-limit lines of a forwarded answer (from [`RouteLimiter::write_headers`]) for the
/// response encoder: when there are any, they replace the upstream's own rate-limit headers.
pub fn added_lines(lines: &[u8]) -> AddedLines<'_> {
    AddedLines {
        lines,
        replaces: if lines.is_empty() {
            None
        } else {
            Some(is_rate_limit_header)
        },
    }
}

/// The headers [`RouteLimiter::write_headers`] may write.
fn is_rate_limit_header(name: &[u8]) -> bool {
    const OWN: [&[u8]; 6] = [
        b"x-ratelimit-limit",
        b"x-ratelimit-remaining",
        b"x-ratelimit-reset",
        b"ratelimit",
        b"ratelimit-policy",
        b"retry-after",
    ];
    OWN.iter().any(|h| h.eq_ignore_ascii_case(name))
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
            scope: RateLimitScope::Local,
        }
    }

    /// A check context for routes without cluster limits.
    fn local(f: impl FnOnce(&ClusterCtx<'_>)) {
        let link = ClusterLink::new(None, None);
        f(&link.ctx(Instant::now()));
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
        let mut r = RouteLimiter::new("r", &specs, 1, None, start);
        let key = |_| &b"ip"[..];
        let expect = [(true, 1, 2), (true, 1, 1), (true, 1, 0), (false, 1, 0)];
        let mut out = BytesMut::new();
        local(|ctx| {
            for (i, (allowed, index, remaining)) in expect.into_iter().enumerate() {
                let v = r.check(key, start, ctx);
                assert_eq!(
                    (v.allowed, v.index, v.state.remaining),
                    (allowed, index, remaining),
                    "step {i}"
                );
            }
            // A denied request takes nothing from the other limit: 3 of 10 taken, so one
            // more would leave 6.
            let Limiter::Local(first) = &r.limiters[0] else {
                panic!("local")
            };
            assert_eq!(first.peek(b"ip", start).remaining, 6);
            let v = r.check(key, start, ctx);
            r.write_headers(&mut out, &v);
        });
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
            let specs = [spec("s", limit, Duration::from_secs(1))];
            let r = RouteLimiter::new("r", &specs, workers, None, start);
            let Limiter::Local(l) = &r.limiters[0] else {
                panic!("local")
            };
            assert_eq!(l.limit(), want, "{limit}/{workers}");
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

    #[test]
    fn cluster_limits_by_redis_state() {
        use crate::ratelimit::redis_sync::Snapshot;
        let start = Instant::now();
        let mut specs = [
            spec("local", 100, Duration::from_secs(1)),
            spec("fleet", 4, Duration::from_secs(60)),
        ];
        specs[1].scope = RateLimitScope::Cluster;
        let mut r = RouteLimiter::new("api", &specs, 2, Some("sx"), start);
        let Limiter::Cluster(c) = &r.limiters[1] else {
            panic!("cluster")
        };
        assert_eq!(&c.base()[..], b"sx:api:fleet:");
        let key = |_| &b"k"[..];
        let now_ms = 600_000 + 30_000; // half way through a minute window
        let snapshot = |healthy| Snapshot {
            healthy,
            tables: AHashMap::new(),
        };
        fn ctx(s: &Snapshot, mode: Mode, now_ms: u64) -> ClusterCtx<'_> {
            ClusterCtx {
                mode,
                now_ms,
                view: cluster::ClusterView {
                    snapshot: s,
                    worker: 0,
                },
            }
        }
        let headers = |r: &RouteLimiter, v: &Verdict| {
            let mut out = BytesMut::new();
            r.write_headers(&mut out, v);
            String::from_utf8(out.to_vec()).unwrap()
        };
        let up = snapshot(true);
        // Cluster mode: the whole limit, in the header and the policy.
        let v = r.check(key, start, &ctx(&up, Mode::Cluster, now_ms));
        assert_eq!(
            headers(&r, &v),
            "x-ratelimit-limit: 4\r\nx-ratelimit-remaining: 3\r\nx-ratelimit-reset: 90\r\n\
             ratelimit-policy: \"local\";q=50;w=1, \"fleet\";q=4;w=60\r\n\
             ratelimit: \"fleet\";r=3;t=90\r\n"
        );
        // Redis down, "open": the per-worker share ceil(4 / 2) = 2 of a fresh bucket.
        let down = snapshot(false);
        let statuses: Vec<(bool, u64)> = (0..3)
            .map(|_| {
                let v = r.check(key, start, &ctx(&down, Mode::Fallback, now_ms));
                (v.allowed, v.limit)
            })
            .collect();
        assert_eq!(statuses, [(true, 2), (true, 2), (false, 2)]);
        let v = r.check(key, start, &ctx(&down, Mode::Fallback, now_ms));
        assert!(headers(&r, &v)
            .contains("ratelimit-policy: \"local\";q=50;w=1, \"fleet\";q=2;w=60\r\n"));
        // The fallback's admissions still count for the cluster: 1 + 2 of 4 used.
        let v = r.check(key, start, &ctx(&up, Mode::Cluster, now_ms));
        assert_eq!((v.allowed, v.state.remaining), (true, 0));
        // "closed": unavailable, no headers, nothing taken.
        let v = r.check(key, start, &ctx(&down, Mode::Unavailable, now_ms));
        assert!(v.unavailable && !v.allowed);
        assert_eq!(headers(&r, &v), "");
        // A route without cluster limits ignores the Redis state.
        let mut plain = RouteLimiter::new("p", &specs[..1], 2, Some("sx"), start);
        assert!(
            plain
                .check(key, start, &ctx(&down, Mode::Unavailable, now_ms))
                .allowed
        );
    }

    /// `take_request` resolves each limit's key from the request: a header (empty when
    /// absent), the consumer (the client address without one), the route; past
    /// [`INLINE_KEYS`] limits too.
    #[test]
    fn requests_are_counted_by_each_limits_key() {
        let filler: String = (1..INLINE_KEYS)
            .map(|i| {
                format!("{{ name = \"f{i}\", key = \"route\", limit = 1000, period = \"1h\" }}, ")
            })
            .collect();
        let config = crate::config::load_str(
            &format!(
                "[server]\nlisten = [\"127.0.0.1:1\"]\n\n[[routes]]\npath = \"/t\"\n\
                 mock = {{ status = 200 }}\nrate_limits = [\
                 {{ name = \"tenant\", key = \"header:x-tenant\", limit = 1, period = \"1h\" }}, \
                 {filler}{{ name = \"who\", key = \"consumer\", limit = 1, period = \"1h\" }}]\n"
            ),
            "t.toml",
        )
        .unwrap();
        assert_eq!(config.routes.routes()[0].rate_limits.len(), INLINE_KEYS + 1);
        let limits = crate::http1::Limits {
            max_header_bytes: 4096,
            max_headers: 32,
            max_body_bytes: 0,
            max_uri_bytes: 1024,
        };
        let now = Instant::now();
        let mut worker = WorkerLimits::new(
            config.route_rate_limits(),
            config.cluster.as_ref(),
            1,
            None,
            now,
        );
        // (x-tenant header, consumer, decision)
        let cases: &[(Option<&str>, Option<&str>, Decision)] = &[
            (Some("a"), None, Decision::Allowed),
            (Some("b"), Some("alice"), Decision::Allowed),
            // The anonymous consumer is the client address, spent by the first request.
            (Some("c"), None, Decision::Denied),
            (Some("a"), Some("bob"), Decision::Denied),
            (None, Some("carol"), Decision::Allowed),
            (None, Some("dave"), Decision::Denied),
            (Some("c"), Some("erin"), Decision::Allowed),
        ];
        for (tenant, consumer, want) in cases {
            let header = tenant.map_or(String::new(), |t| format!("x-tenant: {t}\r\n"));
            let request = format!("GET /t HTTP/1.1\r\nHost: t\r\n{header}\r\n");
            let raw = request.as_bytes();
            let head = crate::http1::parse_request_head(raw, &limits).unwrap();
            let mut lines = BytesMut::new();
            let decision = worker.route_mut(0).unwrap().take_request(
                raw,
                &head,
                b"10.0.0.1",
                consumer.map(str::as_bytes),
                &mut lines,
                now,
            );
            assert_eq!(decision, *want, "{tenant:?} {consumer:?}");
            assert!(lines.ends_with(b"\r\n") && !lines.is_empty());
        }
    }
}
