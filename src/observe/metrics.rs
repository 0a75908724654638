//! Prometheus metrics: per-worker counters and latency histograms, merged only when scraped.
//!
//! Where it sits: a worker owns one [`WorkerMetrics`] (plain data, no atomics, no locks) and
//! calls [`WorkerMetrics::record`] once per finished request, and
//! [`WorkerMetrics::connection_accepted`] / [`WorkerMetrics::connection_closed`] per client
//! connection, [`WorkerMetrics::tls_handshake`] / [`WorkerMetrics::tls_handshake_failed`]
//! per TLS handshake. A scrape (the admin API's `GET /metrics`, or the metrics-only listener) calls
//! [`MetricsHub::scrape`]: it sends every worker's [`ScrapeInbox`] a request carrying a reply
//! channel; each worker answers from its periodic tick with a [`MetricsSnapshot`] (owned,
//! name-keyed, mergeable), and [`render`] merges the answers into the Prometheus text format.
//! `docs/metrics.md` lists every metric.
//!
//! # Invariants
//! - Nothing is shared with another core on the request path: the only cross-thread traffic
//!   is the scrape channel, which the worker touches from its tick, never per request.
//! - Counters are monotonic for the life of the process: across config reloads (the
//!   index-keyed table of the old snapshot is folded into name-keyed totals before a table
//!   for the new one is built) and across a worker missing a scrape deadline (the hub
//!   serves that worker's last answer instead of dropping its counts).
//! - Label values are config names (routes, upstreams, listener addresses, certificate
//!   files) or small fixed sets (method, status class, error kind, TLS version, handshake
//!   failure reason), so the series count is bounded by the config, never by traffic.
//!
//! # Per-request cost
//! [`WorkerMetrics::record`] hashes nothing and allocates nothing (except the first request
//! of a route or upstream, which allocates its histogram, and the first request after a
//! reload that renamed or moved routes, which folds and rebuilds the table). It does: two
//! short string comparisons (the route's and the upstream's name against the table's, which
//! makes the index-keyed table safe even when a new snapshot reuses a freed one's address),
//! one `Instant::now()`, two hdr-histogram records (a leading-zeros count and a shift each),
//! a linear scan of the route's upstreams (one entry in practice) and a few additions.
//! Measured with `cargo test --release --lib -- --ignored record_cost --nocapture`: about
//! 90 ns per request on the development VM, of which 40 ns is the clock read alone (a
//! caller that already read the clock at the end of the request passes it to
//! [`WorkerMetrics::record_at`] and saves it). Against a proxied request's tens of
//! microseconds, that is well under 1%.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use hdrhistogram::Histogram;

use super::{ObserveSections, Outcome, RequestRecord};

/// Method label values; anything else counts as `OTHER` (methods are case-sensitive,
/// RFC 9110 §9.1).
const METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "OTHER",
];
/// Status class label values; `none` when no status was sent (the client went away first).
const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "none"];
/// Route label of requests that matched no route.
pub const NO_ROUTE: &str = "none";
/// Upstream label of requests that were not proxied.
pub const NOT_PROXIED: &str = "";

/// Highest latency the histograms resolve; longer ones are recorded as this (the `_sum`
/// stays exact).
const HISTOGRAM_MAX_MICROS: u64 = 60_000_000;
/// Two significant figures: 1% relative precision, about 20 KiB per histogram (three
/// figures would take 136 KiB, per route, per upstream, per worker). The exported buckets
/// are what Prometheus sees, and 1% is far finer than they are.
const HISTOGRAM_SIGFIG: u8 = 2;
/// Upper bounds of the exported histogram buckets, in microseconds, and as `le` labels
/// (`+Inf` follows).
const BUCKETS: [(u64, &str); 14] = [
    (500, "0.0005"),
    (1_000, "0.001"),
    (2_500, "0.0025"),
    (5_000, "0.005"),
    (10_000, "0.01"),
    (25_000, "0.025"),
    (50_000, "0.05"),
    (100_000, "0.1"),
    (250_000, "0.25"),
    (500_000, "0.5"),
    (1_000_000, "1"),
    (2_500_000, "2.5"),
    (5_000_000, "5"),
    (10_000_000, "10"),
];
/// Unanswered scrape requests a worker's inbox holds; past it a scrape skips that worker
/// (and serves its last answer).
const INBOX_CAPACITY: usize = 4;

type Counts = [[u64; CLASSES.len()]; METHODS.len()];

fn method_index(method: &[u8]) -> usize {
    match method {
        b"GET" => 0,
        b"HEAD" => 1,
        b"POST" => 2,
        b"PUT" => 3,
        b"DELETE" => 4,
        b"CONNECT" => 5,
        b"OPTIONS" => 6,
        b"TRACE" => 7,
        b"PATCH" => 8,
        _ => 9,
    }
}

fn class_index(status: u16) -> usize {
    match status {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        500..=599 => 4,
        _ => 5,
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// A latency distribution: hdr-histogram counts in microseconds and their exact sum.
#[derive(Debug, Clone)]
struct Latency {
    histogram: Histogram<u64>,
    sum_micros: u64,
}

impl Latency {
    fn new() -> Latency {
        // The bounds are constants (1 ≤ 2·low ≤ max, sigfig ≤ 5); a test builds one.
        let histogram = Histogram::new_with_bounds(1, HISTOGRAM_MAX_MICROS, HISTOGRAM_SIGFIG)
            .expect("constant histogram bounds are valid");
        Latency {
            histogram,
            sum_micros: 0,
        }
    }

    fn record(&mut self, duration: Duration) {
        let us = micros(duration);
        self.histogram.saturating_record(us);
        self.sum_micros = self.sum_micros.saturating_add(us);
    }

    fn add(&mut self, other: &Latency) {
        // Same bounds on both sides, so `add` cannot run out of range.
        let added = self.histogram.add(&other.histogram);
        debug_assert!(added.is_ok(), "histograms with the same bounds merge");
        self.sum_micros = self.sum_micros.saturating_add(other.sum_micros);
    }

    fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// Values ≤ `le_micros`, to the histogram's resolution: the hdr bucket holding
    /// `le_micros` counts whole (it spans at most 1% above it).
    fn count_up_to(&self, le_micros: u64) -> u64 {
        self.histogram.count_between(0, le_micros)
    }
}

/// Adds into a lazily allocated latency (most routes of a big config see no traffic on a
/// given worker, and a histogram is 20 KiB).
fn record_latency(slot: &mut Option<Box<Latency>>, duration: Duration) {
    slot.get_or_insert_with(|| Box::new(Latency::new()))
        .record(duration);
}

/// What one worker counted for one route of the current snapshot.
#[derive(Debug)]
struct RouteSlot {
    /// The route's name ([`NO_ROUTE`] for the last slot, "no route matched").
    name: String,
    /// Requests by upstream slot (`None`: not proxied). A route proxies to one upstream, so
    /// this holds one or two entries and is scanned linearly.
    requests: Vec<(Option<usize>, Box<Counts>)>,
    /// `Some` once the route saw a request.
    duration: Option<Box<Latency>>,
    bytes_in: u64,
    bytes_out: u64,
}

/// What one worker counted for one upstream of the current snapshot.
#[derive(Debug)]
struct UpstreamSlot {
    name: String,
    /// A request went to this upstream (its counters are exported, zeros included).
    seen: bool,
    duration: Option<Box<Latency>>,
    connect_errors: u64,
    timeouts: u64,
    retries: u64,
}

/// Index-keyed counters for the snapshot the worker is serving: a request costs array
/// indexing, not a hash of its route's name.
#[derive(Debug, Default)]
struct Table {
    /// One per route of the snapshot, then one for "no route".
    routes: Vec<RouteSlot>,
    upstreams: Vec<UpstreamSlot>,
}

impl Table {
    fn for_snapshot(snapshot: &impl ObserveSections) -> Table {
        let route_slot = |name: &str| RouteSlot {
            name: name.to_string(),
            requests: Vec::new(),
            duration: None,
            bytes_in: 0,
            bytes_out: 0,
        };
        let mut routes: Vec<RouteSlot> = (0..snapshot.route_count())
            .map(|i| route_slot(snapshot.route_name(i).unwrap_or_default()))
            .collect();
        routes.push(route_slot(NO_ROUTE));
        let upstreams = (0..snapshot.upstream_count())
            .map(|i| UpstreamSlot {
                name: snapshot.upstream_name(i).unwrap_or_default().to_string(),
                seen: false,
                duration: None,
                connect_errors: 0,
                timeouts: 0,
                retries: 0,
            })
            .collect();
        Table { routes, upstreams }
    }

    /// Whether this table's slots `route` and `upstream` stand for the same names in
    /// `snapshot`. Names, not the snapshot's address: a new snapshot can be allocated where a
    /// freed one was, with other routes at the same indices.
    fn fits(
        &self,
        snapshot: &impl ObserveSections,
        route: Option<usize>,
        upstream: Option<usize>,
    ) -> bool {
        self.routes.len() == snapshot.route_count() + 1
            && self.upstreams.len() == snapshot.upstream_count()
            && route.is_none_or(|i| {
                matches!((self.routes.get(i), snapshot.route_name(i)), (Some(s), Some(r)) if s.name == r)
            })
            && upstream.is_none_or(|i| {
                matches!((self.upstreams.get(i), snapshot.upstream_name(i)), (Some(s), Some(u)) if s.name == u)
            })
    }
}

/// Name-keyed counters: what earlier snapshots' tables were folded into, and what a
/// snapshot carries.
#[derive(Debug, Clone, Default)]
struct Totals {
    requests: BTreeMap<RequestKey, u64>,
    request_duration: BTreeMap<String, Latency>,
    request_bytes: BTreeMap<String, u64>,
    response_bytes: BTreeMap<String, u64>,
    upstream_duration: BTreeMap<String, Latency>,
    /// By upstream and kind (`connect`, `timeout`).
    upstream_errors: BTreeMap<(String, &'static str), u64>,
    upstream_retries: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct RequestKey {
    route: String,
    upstream: String,
    method: &'static str,
    code_class: &'static str,
}

fn add_latency(map: &mut BTreeMap<String, Latency>, name: &str, latency: &Latency) {
    match map.get_mut(name) {
        Some(total) => total.add(latency),
        None => {
            map.insert(name.to_string(), latency.clone());
        }
    }
}

fn add_count<K: Ord>(map: &mut BTreeMap<K, u64>, key: K, n: u64) {
    let total = map.entry(key).or_insert(0);
    *total = total.saturating_add(n);
}

impl Totals {
    fn add_table(&mut self, table: &Table) {
        for route in &table.routes {
            for (upstream, counts) in &route.requests {
                let upstream = upstream
                    .and_then(|u| table.upstreams.get(u))
                    .map_or(NOT_PROXIED, |u| u.name.as_str());
                for (m, by_class) in counts.iter().enumerate() {
                    for (c, &n) in by_class.iter().enumerate() {
                        if n > 0 {
                            let key = RequestKey {
                                route: route.name.clone(),
                                upstream: upstream.to_string(),
                                method: METHODS[m],
                                code_class: CLASSES[c],
                            };
                            add_count(&mut self.requests, key, n);
                        }
                    }
                }
            }
            if let Some(duration) = &route.duration {
                add_latency(&mut self.request_duration, &route.name, duration);
                add_count(&mut self.request_bytes, route.name.clone(), route.bytes_in);
                add_count(
                    &mut self.response_bytes,
                    route.name.clone(),
                    route.bytes_out,
                );
            }
        }
        for upstream in table.upstreams.iter().filter(|u| u.seen) {
            if let Some(duration) = &upstream.duration {
                add_latency(&mut self.upstream_duration, &upstream.name, duration);
            }
            let name = &upstream.name;
            add_count(
                &mut self.upstream_errors,
                (name.clone(), "connect"),
                upstream.connect_errors,
            );
            add_count(
                &mut self.upstream_errors,
                (name.clone(), "timeout"),
                upstream.timeouts,
            );
            add_count(&mut self.upstream_retries, name.clone(), upstream.retries);
        }
    }

    fn add(&mut self, other: &Totals) {
        for (key, &n) in &other.requests {
            add_count(&mut self.requests, key.clone(), n);
        }
        for (name, latency) in &other.request_duration {
            add_latency(&mut self.request_duration, name, latency);
        }
        for (name, latency) in &other.upstream_duration {
            add_latency(&mut self.upstream_duration, name, latency);
        }
        for (name, &n) in &other.request_bytes {
            add_count(&mut self.request_bytes, name.clone(), n);
        }
        for (name, &n) in &other.response_bytes {
            add_count(&mut self.response_bytes, name.clone(), n);
        }
        for (key, &n) in &other.upstream_errors {
            add_count(&mut self.upstream_errors, key.clone(), n);
        }
        for (name, &n) in &other.upstream_retries {
            add_count(&mut self.upstream_retries, name.clone(), n);
        }
    }
}

/// One worker's metrics: plain data owned by the worker thread.
#[derive(Debug, Default)]
pub struct WorkerMetrics {
    /// Counters of the snapshot being served, by route and upstream index.
    table: Table,
    /// Everything counted on earlier snapshots, by name.
    folded: Totals,
    connections_open: u64,
    connections_accepted: u64,
    pool_hits: u64,
    pool_misses: u64,
    tls: TlsCounts,
    pub tunnels: super::tunnels::TunnelCounts,
    pub proxy_rejections: super::proxy_protocol::ProxyRejections,
    pub http2_closes: super::http2::Http2Closes,
    pub http2_resets: super::http2::Http2Resets,
    pub cache: super::cache::CacheCounts,
    pub aggregate: super::aggregate::AggregateCounts,
}

/// TLS handshakes, counted per connection (not per request). Keyed by the listener address
/// the connection came in on: a config that drops a listener leaves its counts in place.
#[derive(Debug, Clone, Default)]
struct TlsCounts {
    /// By listener, protocol version (`TLSv1.3`) and whether the session was resumed.
    handshakes: BTreeMap<(SocketAddr, &'static str, bool), u64>,
    /// By listener and reason (`HandshakeFailure::as_str`).
    failures: BTreeMap<(SocketAddr, &'static str), u64>,
}

impl TlsCounts {
    fn is_empty(&self) -> bool {
        self.handshakes.is_empty() && self.failures.is_empty()
    }

    fn add(&mut self, other: &TlsCounts) {
        for (key, &n) in &other.handshakes {
            add_count(&mut self.handshakes, *key, n);
        }
        for (key, &n) in &other.failures {
            add_count(&mut self.failures, *key, n);
        }
    }
}

impl WorkerMetrics {
    pub fn new() -> Self {
        WorkerMetrics::default()
    }

    /// Counts one finished request. `snapshot` is the one the request ran on (route and
    /// upstream indices in `rec` refer to it). Its duration runs from `rec.started` to now.
    pub fn record(&mut self, snapshot: &impl ObserveSections, rec: &RequestRecord) {
        self.record_at(snapshot, rec, Instant::now());
    }

    /// [`record`](Self::record) with the end of the request given (tests pass their own).
    pub fn record_at(
        &mut self,
        snapshot: &impl ObserveSections,
        rec: &RequestRecord,
        now: Instant,
    ) {
        let route = rec.route.filter(|&i| i < snapshot.route_count());
        let upstream = rec.upstream.filter(|&i| i < snapshot.upstream_count());
        debug_assert_eq!(route, rec.route, "route index out of the snapshot");
        debug_assert_eq!(upstream, rec.upstream, "upstream index out of the snapshot");
        if !self.table.fits(snapshot, route, upstream) {
            self.folded.add_table(&self.table);
            self.table = Table::for_snapshot(snapshot);
        }
        if let Some((cache, outcome)) = &rec.cache {
            self.cache.answer(cache, *outcome);
        }
        if let (false, Some(name)) = (
            rec.aggregate.is_empty(),
            route.and_then(|i| snapshot.route_name(i)),
        ) {
            self.aggregate.parts(name, &rec.aggregate);
        }
        match rec.pool_hit {
            Some(true) => self.pool_hits += 1,
            Some(false) => self.pool_misses += 1,
            None => {}
        }
        let no_route = self.table.routes.len() - 1;
        if let Some(slot) = self.table.routes.get_mut(route.unwrap_or(no_route)) {
            let at = match slot.requests.iter().position(|(u, _)| *u == upstream) {
                Some(at) => at,
                None => {
                    slot.requests
                        .push((upstream, Box::new([[0; CLASSES.len()]; METHODS.len()])));
                    slot.requests.len() - 1
                }
            };
            slot.requests[at].1[method_index(&rec.method)][class_index(rec.status)] += 1;
            record_latency(
                &mut slot.duration,
                now.saturating_duration_since(rec.started),
            );
            slot.bytes_in = slot.bytes_in.saturating_add(rec.bytes_in);
            slot.bytes_out = slot.bytes_out.saturating_add(rec.bytes_out);
        }
        if let Some(slot) = upstream.and_then(|u| self.table.upstreams.get_mut(u)) {
            slot.seen = true;
            if let Some(time) = rec.upstream_time {
                record_latency(&mut slot.duration, time);
            }
            match rec.outcome {
                Outcome::UpstreamConnectError => slot.connect_errors += 1,
                Outcome::UpstreamTimeout => slot.timeouts += 1,
                Outcome::Answered | Outcome::Aborted => {}
            }
            slot.retries = slot.retries.saturating_add(u64::from(rec.retries));
        }
    }

    /// A client connection was accepted (and is open).
    pub fn connection_accepted(&mut self) {
        self.connections_accepted += 1;
        self.connections_open += 1;
    }

    /// A client connection closed.
    pub fn connection_closed(&mut self) {
        debug_assert!(self.connections_open > 0, "more closes than accepts");
        self.connections_open = self.connections_open.saturating_sub(1);
    }

    /// A TLS handshake on `listener` succeeded with protocol `version`, as a new session or
    /// a resumed one.
    pub fn tls_handshake(&mut self, listener: SocketAddr, version: &'static str, resumed: bool) {
        add_count(&mut self.tls.handshakes, (listener, version, resumed), 1);
    }

    /// A connection on TLS `listener` never completed its handshake, for `reason`.
    pub fn tls_handshake_failed(&mut self, listener: SocketAddr, reason: &'static str) {
        add_count(&mut self.tls.failures, (listener, reason), 1);
    }

    /// Everything counted so far, keyed by name. Worker 0 unless taken by
    /// [`ScrapeInbox::answer`], which sets its worker index.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let mut totals = self.folded.clone();
        totals.add_table(&self.table);
        MetricsSnapshot {
            worker: 0,
            sequence: 0,
            totals,
            connections_open: self.connections_open,
            connections_accepted: self.connections_accepted,
            pool_hits: self.pool_hits,
            pool_misses: self.pool_misses,
            tls: self.tls.clone(),
            tunnels: self.tunnels,
            proxy_rejections: self.proxy_rejections,
            http2_closes: self.http2_closes,
            http2_resets: self.http2_resets,
            cache: self.cache.clone(),
            aggregate: self.aggregate.clone(),
        }
    }
}

/// One worker's counters at one moment, by name: owned, `Send`, mergeable with others.
#[derive(Debug, Clone)]
pub struct MetricsSnapshot {
    /// The worker's index (the `worker` label).
    pub worker: usize,
    /// Increases with every answer of that worker, so that the hub keeps the newest.
    sequence: u64,
    totals: Totals,
    connections_open: u64,
    connections_accepted: u64,
    pool_hits: u64,
    pool_misses: u64,
    tls: TlsCounts,
    pub tunnels: super::tunnels::TunnelCounts,
    pub proxy_rejections: super::proxy_protocol::ProxyRejections,
    pub http2_closes: super::http2::Http2Closes,
    pub http2_resets: super::http2::Http2Resets,
    pub cache: super::cache::CacheCounts,
    pub aggregate: super::aggregate::AggregateCounts,
}

/// A scrape request: where the worker sends its snapshot.
type ScrapeRequest = Sender<MetricsSnapshot>;

struct WorkerEntry {
    inbox: Sender<ScrapeRequest>,
    /// The newest answer, served when the worker misses a scrape's deadline (or has ended),
    /// so that counters never go backwards.
    last: Option<MetricsSnapshot>,
}

/// The control plane's side of the metrics: the workers' inboxes and their last answers.
/// Touched by scrapes (admin thread, metrics thread) and worker start, never per request.
pub struct MetricsHub {
    started: SystemTime,
    workers: Mutex<Vec<WorkerEntry>>,
}

impl Default for MetricsHub {
    fn default() -> Self {
        MetricsHub::new()
    }
}

impl MetricsHub {
    pub fn new() -> Self {
        MetricsHub {
            started: SystemTime::now(),
            workers: Mutex::new(Vec::new()),
        }
    }

    /// When the hub was made (by the control plane, at process start), in Unix seconds.
    pub fn start_unix(&self) -> f64 {
        unix_seconds(self.started)
    }

    /// Called once per worker at start: the worker keeps the inbox and answers scrapes from
    /// its event loop. Workers are numbered in registration order from 0.
    pub fn register_worker(&self) -> ScrapeInbox {
        let (tx, rx) = crossbeam_channel::bounded(INBOX_CAPACITY);
        let mut workers = lock(&self.workers);
        workers.push(WorkerEntry {
            inbox: tx,
            last: None,
        });
        ScrapeInbox {
            worker: workers.len() - 1,
            requests: rx,
            answered: std::cell::Cell::new(0),
        }
    }

    /// Asks every registered worker for a snapshot and waits (bounded by `timeout`) for the
    /// answers. A worker that does not answer in time, or has ended, is represented by its
    /// last answer (absent if it never answered). Sorted by worker.
    pub fn scrape(&self, timeout: Duration) -> Vec<MetricsSnapshot> {
        let deadline = Instant::now() + timeout;
        let (reply, answers) = crossbeam_channel::unbounded();
        let mut asked = 0;
        for worker in lock(&self.workers).iter() {
            match worker.inbox.try_send(reply.clone()) {
                Ok(()) => asked += 1,
                // Full: the worker has not served earlier scrapes yet. Disconnected: ended.
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {}
            }
        }
        // Only the workers hold senders now: if they all drop theirs, the wait ends.
        drop(reply);
        let mut fresh = Vec::with_capacity(asked);
        while fresh.len() < asked {
            match answers.recv_deadline(deadline) {
                Ok(snapshot) => fresh.push(snapshot),
                Err(_) => break,
            }
        }
        let mut workers = lock(&self.workers);
        for snapshot in fresh {
            if let Some(entry) = workers.get_mut(snapshot.worker) {
                if entry
                    .last
                    .as_ref()
                    .is_none_or(|last| last.sequence < snapshot.sequence)
                {
                    entry.last = Some(snapshot);
                }
            }
        }
        workers.iter().filter_map(|w| w.last.clone()).collect()
    }
}

/// A worker's end of the scrape channel (moved into the worker thread).
pub struct ScrapeInbox {
    worker: usize,
    requests: Receiver<ScrapeRequest>,
    answered: std::cell::Cell<u64>,
}

impl ScrapeInbox {
    /// This worker's index (its `worker` label).
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// Answers pending scrape requests; called from the worker's periodic tick (every
    /// ~20 ms). Costs nothing when no scrape is pending; otherwise one snapshot (a copy of
    /// the counters and histograms) per tick, however many scrapes wait.
    pub fn answer(&self, metrics: &WorkerMetrics) {
        let mut snapshot: Option<MetricsSnapshot> = None;
        while let Ok(reply) = self.requests.try_recv() {
            let snapshot = snapshot.get_or_insert_with(|| {
                self.answered.set(self.answered.get() + 1);
                let mut snapshot = metrics.snapshot();
                snapshot.worker = self.worker;
                snapshot.sequence = self.answered.get();
                snapshot
            });
            // The scraper may have given up (deadline passed): nothing to do.
            let _ = reply.send(snapshot.clone());
        }
    }
}

/// Process-wide values for the render.
#[derive(Debug, Clone)]
pub struct ProcessInfo {
    pub generation: u64,
    pub last_reload_ok: bool,
    pub last_reload_unix: f64,
    pub start_unix: f64,
    pub version: &'static str,
    /// The cluster rate limits' Redis sync, when `[cluster]` is configured.
    pub redis: Option<crate::ratelimit::redis_sync::SyncStats>,
    /// Every certificate the served config's TLS listeners serve, once per address.
    pub certificates: Vec<CertificateExpiry>,
    /// The served config's caches: their stores' sizes.
    pub caches: Vec<super::cache::StoreSize>,
}

/// When one certificate of one TLS listener address expires.
#[derive(Debug, Clone)]
pub struct CertificateExpiry {
    pub listener: SocketAddr,
    /// The certificate file as configured.
    pub file: String,
    /// The first name it serves (it may serve more; one label keeps the series few).
    pub name: String,
    /// `notAfter`, in Unix seconds.
    pub not_after: i64,
}

/// `time` in Unix seconds (0 before the epoch).
pub fn unix_seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders the Prometheus text exposition format (version 0.0.4): every family has its
/// HELP and TYPE lines, series are sorted by labels, per-worker series by worker.
pub fn render(snapshots: &[MetricsSnapshot], process: &ProcessInfo) -> String {
    let mut totals = Totals::default();
    let mut tls = TlsCounts::default();
    for snapshot in snapshots {
        totals.add(&snapshot.totals);
        tls.add(&snapshot.tls);
    }
    let mut out = String::with_capacity(4096);
    let o = &mut out;

    family(
        o,
        "strait_requests_total",
        "counter",
        "Requests finished, by route, upstream (empty when not proxied), method and status class.",
    );
    for (key, n) in &totals.requests {
        let _ = writeln!(
            o,
            "strait_requests_total{{route=\"{}\",upstream=\"{}\",method=\"{}\",code_class=\"{}\"}} {n}",
            escape(&key.route),
            escape(&key.upstream),
            key.method,
            key.code_class
        );
    }
    histogram(
        o,
        "strait_request_duration_seconds",
        "Time from the request's first byte to the end of its response, by route.",
        "route",
        &totals.request_duration,
    );
    histogram(
        o,
        "strait_upstream_duration_seconds",
        "Time from the first upstream try to the upstream response head, by upstream.",
        "upstream",
        &totals.upstream_duration,
    );
    family(
        o,
        "strait_upstream_errors_total",
        "counter",
        "Requests that failed at the upstream, by kind: connect (no connection) or timeout.",
    );
    for ((upstream, kind), n) in &totals.upstream_errors {
        let _ = writeln!(
            o,
            "strait_upstream_errors_total{{upstream=\"{}\",kind=\"{kind}\"}} {n}",
            escape(upstream)
        );
    }
    family(
        o,
        "strait_upstream_retries_total",
        "counter",
        "Upstream tries beyond the first, by upstream.",
    );
    for (upstream, n) in &totals.upstream_retries {
        let _ = writeln!(
            o,
            "strait_upstream_retries_total{{upstream=\"{}\"}} {n}",
            escape(upstream)
        );
    }
    by_route(
        o,
        "strait_request_bytes_total",
        "Request bytes received from clients (head and body), by route.",
        &totals.request_bytes,
    );
    by_route(
        o,
        "strait_response_bytes_total",
        "Response bytes sent to clients (head and body), by route.",
        &totals.response_bytes,
    );

    by_worker(
        o,
        "strait_worker_connections",
        "gauge",
        "Client connections open, by worker.",
        snapshots,
        |s| s.connections_open,
    );
    by_worker(
        o,
        "strait_worker_connections_accepted_total",
        "counter",
        "Client connections accepted, by worker.",
        snapshots,
        |s| s.connections_accepted,
    );
    family(
        o,
        "strait_upstream_pool_total",
        "counter",
        "Upstream connections taken for a request, by worker: hit (an idle pooled one) or miss (a new one).",
    );
    for s in snapshots {
        let _ = writeln!(
            o,
            "strait_upstream_pool_total{{worker=\"{}\",result=\"hit\"}} {}",
            s.worker, s.pool_hits
        );
        let _ = writeln!(
            o,
            "strait_upstream_pool_total{{worker=\"{}\",result=\"miss\"}} {}",
            s.worker, s.pool_misses
        );
    }

    let tunnels: Vec<_> = snapshots.iter().map(|s| (s.worker, s.tunnels)).collect();
    super::tunnels::render(o, &tunnels);
    let rejections: Vec<_> = snapshots.iter().map(|s| s.proxy_rejections).collect();
    super::proxy_protocol::render(o, &rejections);
    let http2: Vec<_> = snapshots
        .iter()
        .map(|s| (s.http2_closes, s.http2_resets))
        .collect();
    super::http2::render(o, &http2);
    let caches: Vec<_> = snapshots.iter().map(|s| s.cache.clone()).collect();
    super::cache::render(o, &caches, &process.caches);
    let aggregates: Vec<_> = snapshots.iter().map(|s| s.aggregate.clone()).collect();
    super::aggregate::render(o, &aggregates);

    // Only where TLS is (or was) served, like the Redis families with `[cluster]`.
    let is_tls = !process.certificates.is_empty() || !tls.is_empty();
    if is_tls {
        render_tls(o, &tls, &process.certificates);
    }

    family(
        o,
        "strait_build_info",
        "gauge",
        "Always 1; the version is a label.",
    );
    let _ = writeln!(
        o,
        "strait_build_info{{version=\"{}\"}} 1",
        escape(process.version)
    );
    family(
        o,
        "strait_config_generation",
        "gauge",
        "Config snapshots swapped in since start (1: the startup config).",
    );
    let _ = writeln!(o, "strait_config_generation {}", process.generation);
    family(
        o,
        "strait_config_last_reload_success",
        "gauge",
        "1 if the last reload (or the startup load) succeeded, 0 if it failed.",
    );
    let _ = writeln!(
        o,
        "strait_config_last_reload_success {}",
        u8::from(process.last_reload_ok)
    );
    family(
        o,
        "strait_config_last_reload_timestamp_seconds",
        "gauge",
        "When the last reload (or the startup load) ended, in Unix seconds.",
    );
    let _ = writeln!(
        o,
        "strait_config_last_reload_timestamp_seconds {}",
        process.last_reload_unix
    );
    family(
        o,
        "strait_process_start_time_seconds",
        "gauge",
        "When the process started, in Unix seconds.",
    );
    let _ = writeln!(
        o,
        "strait_process_start_time_seconds {}",
        process.start_unix
    );
    if let Some(redis) = &process.redis {
        render_redis(o, redis);
    }
    out
}

/// TLS handshakes and the certificates served.
fn render_tls(o: &mut String, tls: &TlsCounts, certificates: &[CertificateExpiry]) {
    family(
        o,
        "strait_tls_handshakes_total",
        "counter",
        "TLS handshakes completed, by listener address, protocol version and whether the session was resumed.",
    );
    for ((listener, version, resumed), n) in &tls.handshakes {
        let _ = writeln!(
            o,
            "strait_tls_handshakes_total{{listener=\"{listener}\",version=\"{version}\",resumed=\"{resumed}\"}} {n}"
        );
    }
    family(
        o,
        "strait_tls_handshake_failures_total",
        "counter",
        "Connections to a TLS listener that never completed the handshake, by listener address and reason.",
    );
    for ((listener, reason), n) in &tls.failures {
        let _ = writeln!(
            o,
            "strait_tls_handshake_failures_total{{listener=\"{listener}\",reason=\"{reason}\"}} {n}"
        );
    }
    family(
        o,
        "strait_tls_certificate_expiry_timestamp_seconds",
        "gauge",
        "When a served certificate expires (notAfter), in Unix seconds, by listener address, certificate file and first name.",
    );
    for cert in certificates {
        let _ = writeln!(
            o,
            "strait_tls_certificate_expiry_timestamp_seconds{{listener=\"{}\",file=\"{}\",name=\"{}\"}} {}",
            cert.listener,
            escape(&cert.file),
            escape(&cert.name),
            cert.not_after
        );
    }
}

/// The Redis sync thread of cluster rate limits (only with `[cluster]`).
fn render_redis(o: &mut String, redis: &crate::ratelimit::redis_sync::SyncStats) {
    let families: [(&str, &str, &str, u64); 4] = [
        (
            "strait_cluster_redis_up",
            "gauge",
            "1 while the last Redis sync round succeeded, 0 while cluster rate limits fall back (on_redis_error).",
            u64::from(redis.up),
        ),
        (
            "strait_cluster_redis_errors_total",
            "counter",
            "Redis sync rounds or connection attempts that failed (refused, timeout, error reply).",
            redis.errors,
        ),
        (
            "strait_cluster_redis_syncs_total",
            "counter",
            "Redis sync rounds that succeeded (one pipelined round trip each).",
            redis.rounds,
        ),
        (
            "strait_cluster_redis_dropped_total",
            "counter",
            "Counted requests not sent to Redis because the sync thread watched too many keys.",
            redis.dropped,
        ),
    ];
    for (name, kind, help, value) in families {
        family(o, name, kind, help);
        let _ = writeln!(o, "{name} {value}");
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn by_worker<T: std::fmt::Display>(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    snapshots: &[MetricsSnapshot],
    value: impl Fn(&MetricsSnapshot) -> T,
) {
    family(out, name, kind, help);
    for s in snapshots {
        let _ = writeln!(out, "{name}{{worker=\"{}\"}} {}", s.worker, value(s));
    }
}

fn by_route(out: &mut String, name: &str, help: &str, values: &BTreeMap<String, u64>) {
    family(out, name, "counter", help);
    for (route, n) in values {
        let _ = writeln!(out, "{name}{{route=\"{}\"}} {n}", escape(route));
    }
}

fn histogram(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    values: &BTreeMap<String, Latency>,
) {
    family(out, name, "histogram", help);
    for (value, latency) in values {
        let value = escape(value);
        for (le_micros, le) in BUCKETS {
            let _ = writeln!(
                out,
                "{name}_bucket{{{label}=\"{value}\",le=\"{le}\"}} {}",
                latency.count_up_to(le_micros)
            );
        }
        let count = latency.count();
        let _ = writeln!(
            out,
            "{name}_bucket{{{label}=\"{value}\",le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "{name}_sum{{{label}=\"{value}\"}} {}",
            latency.sum_micros as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{{{label}=\"{value}\"}} {count}");
    }
}

/// A label value escaped for the text format: `\`, `"` and line feed.
fn escape(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return std::borrow::Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Locks the hub's list; a panic while holding it leaves whole entries, so poisoning is
/// ignored.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{self, Config};
    use bytes::Bytes;

    const CONFIG: &str = r#"
[server]
listen = ["127.0.0.1:1"]
[admin]
enabled = false
[upstreams.app]
endpoints = ["10.0.0.1:80"]
[upstreams.db]
endpoints = ["10.0.0.2:80"]
[[routes]]
name = "api"
path = "/api/{*rest}"
upstream = "app"
[[routes]]
name = "health"
path = "/healthz"
mock = { status = 200, body = "ok" }
"#;

    fn load(text: &str) -> Config {
        config::load_str(text, "t.toml").unwrap()
    }

    /// A finished request of `micros` µs, ending at `now`.
    struct Req {
        route: Option<usize>,
        upstream: Option<usize>,
        method: &'static str,
        status: u16,
        micros: u64,
        outcome: Outcome,
        upstream_micros: Option<u64>,
        bytes: (u64, u64),
        pool_hit: Option<bool>,
        retries: u32,
    }

    const GET_API: Req = Req {
        route: Some(0),
        upstream: Some(0),
        method: "GET",
        status: 200,
        micros: 300,
        outcome: Outcome::Answered,
        upstream_micros: Some(200),
        bytes: (100, 1000),
        pool_hit: Some(true),
        retries: 0,
    };

    fn record(metrics: &mut WorkerMetrics, config: &Config, req: &Req) {
        let now = Instant::now() + Duration::from_secs(100);
        let mut rec = RequestRecord::new(
            Bytes::from_static(b"127.0.0.1"),
            now - Duration::from_micros(req.micros),
        );
        rec.method = Bytes::from_static(req.method.as_bytes());
        rec.route = req.route;
        rec.upstream = req.upstream;
        rec.status = req.status;
        rec.outcome = req.outcome;
        rec.bytes_in = req.bytes.0;
        rec.bytes_out = req.bytes.1;
        rec.upstream_time = req.upstream_micros.map(Duration::from_micros);
        rec.pool_hit = req.pool_hit;
        rec.retries = req.retries;
        metrics.record_at(config, &rec, now);
    }

    fn process() -> ProcessInfo {
        ProcessInfo {
            generation: 3,
            last_reload_ok: false,
            last_reload_unix: 1_700_000_000.5,
            start_unix: 1_699_999_999.25,
            version: "0.1.0",
            redis: None,
            certificates: Vec::new(),
            caches: Vec::new(),
        }
    }

    /// The sample lines of `text` whose name is `name` (or starts with `name` followed by
    /// `{`), in order.
    fn samples<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
        text.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
            .collect()
    }

    /// The 15 `_bucket` lines, `_sum` and `_count` of one histogram series.
    fn histogram_lines(name: &str, labels: &str, cumulative: [u64; 15], sum: &str) -> Vec<String> {
        let mut lines: Vec<String> = BUCKETS
            .iter()
            .map(|(_, le)| le.to_string())
            .chain(["+Inf".to_string()])
            .zip(cumulative)
            .map(|(le, n)| format!("{name}_bucket{{{labels},le=\"{le}\"}} {n}"))
            .collect();
        lines.push(format!("{name}_sum{{{labels}}} {sum}"));
        lines.push(format!("{name}_count{{{labels}}} {}", cumulative[14]));
        lines
    }

    #[test]
    fn renders_known_requests_exactly() {
        let config = load(CONFIG);
        let mut m = WorkerMetrics::new();
        m.connection_accepted();
        m.connection_accepted();
        m.connection_closed();
        record(&mut m, &config, &GET_API);
        // A proxied POST whose connect failed after one retry: 30 ms.
        record(
            &mut m,
            &config,
            &Req {
                method: "POST",
                status: 502,
                micros: 30_000,
                outcome: Outcome::UpstreamConnectError,
                upstream_micros: None,
                bytes: (50, 200),
                pool_hit: Some(false),
                retries: 1,
                ..GET_API
            },
        );
        // No route matched, unknown method: 2 ms.
        record(
            &mut m,
            &config,
            &Req {
                route: None,
                upstream: None,
                method: "BREW",
                status: 404,
                micros: 2_000,
                upstream_micros: None,
                bytes: (10, 20),
                pool_hit: None,
                ..GET_API
            },
        );
        // A mock route whose client left before any answer, after 12 s (past every bucket).
        record(
            &mut m,
            &config,
            &Req {
                route: Some(1),
                upstream: None,
                status: 0,
                micros: 12_000_000,
                outcome: Outcome::Aborted,
                upstream_micros: None,
                bytes: (30, 0),
                pool_hit: None,
                ..GET_API
            },
        );
        let mut snapshot = m.snapshot();
        snapshot.worker = 2;
        let text = render(&[snapshot], &process());

        assert_eq!(
            samples(&text, "strait_requests_total"),
            [
                r#"strait_requests_total{route="api",upstream="app",method="GET",code_class="2xx"} 1"#,
                r#"strait_requests_total{route="api",upstream="app",method="POST",code_class="5xx"} 1"#,
                r#"strait_requests_total{route="health",upstream="",method="GET",code_class="none"} 1"#,
                r#"strait_requests_total{route="none",upstream="",method="OTHER",code_class="4xx"} 1"#,
            ]
        );
        let name = "strait_request_duration_seconds";
        let mut want = histogram_lines(
            name,
            r#"route="api""#,
            [1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2],
            "0.0303",
        );
        want.extend(histogram_lines(
            name,
            r#"route="health""#,
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            "12",
        ));
        want.extend(histogram_lines(
            name,
            r#"route="none""#,
            [0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
            "0.002",
        ));
        assert_eq!(
            samples(&text, "strait_request_duration_seconds_bucket").len(),
            45
        );
        let got: Vec<&str> = text.lines().filter(|l| l.starts_with(name)).collect();
        assert_eq!(got, want);
        let got: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("strait_upstream_duration_seconds"))
            .collect();
        assert_eq!(
            got,
            histogram_lines(
                "strait_upstream_duration_seconds",
                r#"upstream="app""#,
                [1; 15],
                "0.0002",
            )
        );

        // Everything after the histograms, HELP and TYPE included.
        let rest = &text[text.find("# HELP strait_upstream_errors_total").unwrap()..];
        assert_eq!(
            rest,
            "\
# HELP strait_upstream_errors_total Requests that failed at the upstream, by kind: connect (no connection) or timeout.
# TYPE strait_upstream_errors_total counter
strait_upstream_errors_total{upstream=\"app\",kind=\"connect\"} 1
strait_upstream_errors_total{upstream=\"app\",kind=\"timeout\"} 0
# HELP strait_upstream_retries_total Upstream tries beyond the first, by upstream.
# TYPE strait_upstream_retries_total counter
strait_upstream_retries_total{upstream=\"app\"} 1
# HELP strait_request_bytes_total Request bytes received from clients (head and body), by route.
# TYPE strait_request_bytes_total counter
strait_request_bytes_total{route=\"api\"} 150
strait_request_bytes_total{route=\"health\"} 30
strait_request_bytes_total{route=\"none\"} 10
# HELP strait_response_bytes_total Response bytes sent to clients (head and body), by route.
# TYPE strait_response_bytes_total counter
strait_response_bytes_total{route=\"api\"} 1200
strait_response_bytes_total{route=\"health\"} 0
strait_response_bytes_total{route=\"none\"} 20
# HELP strait_worker_connections Client connections open, by worker.
# TYPE strait_worker_connections gauge
strait_worker_connections{worker=\"2\"} 1
# HELP strait_worker_connections_accepted_total Client connections accepted, by worker.
# TYPE strait_worker_connections_accepted_total counter
strait_worker_connections_accepted_total{worker=\"2\"} 2
# HELP strait_upstream_pool_total Upstream connections taken for a request, by worker: hit (an idle pooled one) or miss (a new one).
# TYPE strait_upstream_pool_total counter
strait_upstream_pool_total{worker=\"2\",result=\"hit\"} 1
strait_upstream_pool_total{worker=\"2\",result=\"miss\"} 1
# HELP strait_worker_tunnels Upgraded tunnels (WebSockets) open, by worker.
# TYPE strait_worker_tunnels gauge
strait_worker_tunnels{worker=\"2\"} 0
# HELP strait_tunnels_total Upgraded tunnels that ended.
# TYPE strait_tunnels_total counter
strait_tunnels_total 0
# HELP strait_tunnel_bytes_total Bytes carried by ended tunnels after the 101, by direction: upstream (from clients) or downstream (to clients).
# TYPE strait_tunnel_bytes_total counter
strait_tunnel_bytes_total{direction=\"upstream\"} 0
strait_tunnel_bytes_total{direction=\"downstream\"} 0
# HELP strait_tunnel_duration_seconds_total Summed lifetime of the tunnels that ended.
# TYPE strait_tunnel_duration_seconds_total counter
strait_tunnel_duration_seconds_total 0
# HELP strait_proxy_protocol_rejected_total Connections closed at their PROXY protocol header, by reason.
# TYPE strait_proxy_protocol_rejected_total counter
strait_proxy_protocol_rejected_total{reason=\"missing\"} 0
strait_proxy_protocol_rejected_total{reason=\"untrusted\"} 0
strait_proxy_protocol_rejected_total{reason=\"malformed\"} 0
strait_proxy_protocol_rejected_total{reason=\"incomplete\"} 0
# HELP strait_http2_connections_closed_total HTTP/2 client connections closed, by how they ended.
# TYPE strait_http2_connections_closed_total counter
strait_http2_connections_closed_total{reason=\"client\"} 0
strait_http2_connections_closed_total{reason=\"idle\"} 0
strait_http2_connections_closed_total{reason=\"drain\"} 0
strait_http2_connections_closed_total{reason=\"rapid_reset\"} 0
strait_http2_connections_closed_total{reason=\"continuation_flood\"} 0
strait_http2_connections_closed_total{reason=\"abuse\"} 0
strait_http2_connections_closed_total{reason=\"control_flood\"} 0
strait_http2_connections_closed_total{reason=\"protocol_error\"} 0
strait_http2_connections_closed_total{reason=\"io_error\"} 0
# HELP strait_http2_streams_reset_total HTTP/2 streams Strait reset, by error code.
# TYPE strait_http2_streams_reset_total counter
strait_http2_streams_reset_total{code=\"refused_stream\"} 0
strait_http2_streams_reset_total{code=\"cancel\"} 0
strait_http2_streams_reset_total{code=\"internal_error\"} 0
strait_http2_streams_reset_total{code=\"protocol_error\"} 0
strait_http2_streams_reset_total{code=\"other\"} 0
# HELP strait_aggregate_parts_total Calls of aggregation parts, by route, part and result.
# TYPE strait_aggregate_parts_total counter
# HELP strait_build_info Always 1; the version is a label.
# TYPE strait_build_info gauge
strait_build_info{version=\"0.1.0\"} 1
# HELP strait_config_generation Config snapshots swapped in since start (1: the startup config).
# TYPE strait_config_generation gauge
strait_config_generation 3
# HELP strait_config_last_reload_success 1 if the last reload (or the startup load) succeeded, 0 if it failed.
# TYPE strait_config_last_reload_success gauge
strait_config_last_reload_success 0
# HELP strait_config_last_reload_timestamp_seconds When the last reload (or the startup load) ended, in Unix seconds.
# TYPE strait_config_last_reload_timestamp_seconds gauge
strait_config_last_reload_timestamp_seconds 1700000000.5
# HELP strait_process_start_time_seconds When the process started, in Unix seconds.
# TYPE strait_process_start_time_seconds gauge
strait_process_start_time_seconds 1699999999.25
"
        );
        assert_well_formed(&text);
    }

    /// Every family has one HELP and one TYPE line before its samples; every sample line is
    /// `name{labels} number` or `name number`.
    fn assert_well_formed(text: &str) {
        let mut typed: Vec<(String, String)> = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(typed.iter().all(|(n, _)| n != name), "{name} typed twice");
                typed.push((name.to_string(), kind.to_string()));
            } else if line.starts_with("# HELP ") {
            } else {
                let (series, value) = line.rsplit_once(' ').unwrap();
                assert!(value.parse::<f64>().is_ok(), "{line}");
                let name = series.split('{').next().unwrap();
                let (family, kind) = typed.last().expect("a sample before any TYPE");
                let ok = match kind.as_str() {
                    "histogram" => [
                        format!("{family}_bucket"),
                        format!("{family}_sum"),
                        format!("{family}_count"),
                    ]
                    .contains(&name.to_string()),
                    _ => name == family,
                };
                assert!(ok, "{line} under {family}");
                assert!(name.starts_with("strait_"));
            }
        }
        assert_eq!(typed.len(), 23, "every metric family is rendered");
    }

    #[test]
    fn two_workers_merge_by_name_and_keep_their_own_gauges() {
        let config = load(CONFIG);
        let mut a = WorkerMetrics::new();
        let mut b = WorkerMetrics::new();
        for _ in 0..3 {
            record(&mut a, &config, &GET_API);
        }
        record(
            &mut b,
            &config,
            &Req {
                micros: 4_000,
                ..GET_API
            },
        );
        b.connection_accepted();
        let mut sa = a.snapshot();
        sa.worker = 0;
        let mut sb = b.snapshot();
        sb.worker = 1;
        let text = render(&[sa, sb], &process());
        assert_eq!(
            samples(&text, "strait_requests_total"),
            [
                r#"strait_requests_total{route="api",upstream="app",method="GET",code_class="2xx"} 4"#
            ]
        );
        let got: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("strait_request_duration_seconds"))
            .collect();
        assert_eq!(
            got,
            histogram_lines(
                "strait_request_duration_seconds",
                r#"route="api""#,
                [3, 3, 3, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4],
                "0.0049",
            )
        );
        assert_eq!(
            samples(&text, "strait_worker_connections_accepted_total"),
            [
                r#"strait_worker_connections_accepted_total{worker="0"} 0"#,
                r#"strait_worker_connections_accepted_total{worker="1"} 1"#,
            ]
        );
        assert_eq!(
            samples(&text, "strait_upstream_pool_total"),
            [
                r#"strait_upstream_pool_total{worker="0",result="hit"} 3"#,
                r#"strait_upstream_pool_total{worker="0",result="miss"} 0"#,
                r#"strait_upstream_pool_total{worker="1",result="hit"} 1"#,
                r#"strait_upstream_pool_total{worker="1",result="miss"} 0"#,
            ]
        );
        assert_eq!(
            samples(&text, "strait_request_bytes_total"),
            [r#"strait_request_bytes_total{route="api"} 400"#]
        );
    }

    #[test]
    fn counters_survive_a_snapshot_change() {
        let before = load(CONFIG);
        let mut m = WorkerMetrics::new();
        record(&mut m, &before, &GET_API);
        record(
            &mut m,
            &before,
            &Req {
                route: Some(1),
                upstream: None,
                ..GET_API
            },
        );
        let first = render(&[m.snapshot()], &process());

        // The reload puts a new route first and moves the others down; `app` becomes the
        // second upstream. The old indices now name other routes.
        let after = load(
            &CONFIG
                .replace(
                    "[[routes]]\nname = \"api\"",
                    "[[routes]]\nname = \"new\"\npath = \"/new\"\nupstream = \"db\"\n\
             [[routes]]\nname = \"api\"",
                )
                .replace("[upstreams.app]", "[upstreams.zz_app]")
                .replace("upstream = \"app\"", "upstream = \"zz_app\""),
        );
        assert_eq!(after.routes.routes()[1].name, "api");
        record(
            &mut m,
            &after,
            &Req {
                route: Some(1),
                upstream: Some(1),
                ..GET_API
            },
        );
        record(
            &mut m,
            &after,
            &Req {
                route: Some(0),
                upstream: Some(0),
                ..GET_API
            },
        );
        // A request still in flight on the old snapshot ends after the reload.
        record(&mut m, &before, &GET_API);
        let second = render(&[m.snapshot()], &process());

        assert_eq!(
            samples(&first, "strait_requests_total"),
            [
                r#"strait_requests_total{route="api",upstream="app",method="GET",code_class="2xx"} 1"#,
                r#"strait_requests_total{route="health",upstream="",method="GET",code_class="2xx"} 1"#,
            ]
        );
        assert_eq!(
            samples(&second, "strait_requests_total"),
            [
                r#"strait_requests_total{route="api",upstream="app",method="GET",code_class="2xx"} 2"#,
                r#"strait_requests_total{route="api",upstream="zz_app",method="GET",code_class="2xx"} 1"#,
                r#"strait_requests_total{route="health",upstream="",method="GET",code_class="2xx"} 1"#,
                r#"strait_requests_total{route="new",upstream="db",method="GET",code_class="2xx"} 1"#,
            ]
        );
        assert!(second.contains("strait_request_duration_seconds_count{route=\"api\"} 3\n"));
        assert!(second.contains("strait_upstream_duration_seconds_count{upstream=\"app\"} 2\n"));
        assert!(second.contains("strait_upstream_pool_total{worker=\"0\",result=\"hit\"} 5\n"));
    }

    #[test]
    fn same_indices_with_other_names_are_not_mixed_up() {
        // Two snapshots with the same shape but the routes swapped: what a new snapshot
        // allocated at a freed one's address could look like.
        let a = load(CONFIG);
        let swapped = CONFIG
            .replace("name = \"api\"", "name = \"tmp\"")
            .replace("name = \"health\"", "name = \"api\"")
            .replace("name = \"tmp\"", "name = \"health\"");
        let b = load(&swapped);
        let mut m = WorkerMetrics::new();
        record(&mut m, &a, &GET_API);
        record(&mut m, &b, &GET_API);
        let text = render(&[m.snapshot()], &process());
        assert_eq!(
            samples(&text, "strait_requests_total"),
            [
                r#"strait_requests_total{route="api",upstream="app",method="GET",code_class="2xx"} 1"#,
                r#"strait_requests_total{route="health",upstream="app",method="GET",code_class="2xx"} 1"#,
            ]
        );
    }

    #[test]
    fn tls_handshakes_merge_across_workers_and_certificates_render_from_the_config() {
        let a: SocketAddr = "127.0.0.1:8443".parse().unwrap();
        let b: SocketAddr = "[::1]:443".parse().unwrap();
        let mut w0 = WorkerMetrics::new();
        w0.tls_handshake(a, "TLSv1.3", false);
        w0.tls_handshake(a, "TLSv1.3", true);
        w0.tls_handshake_failed(a, "plaintext");
        let mut w1 = WorkerMetrics::new();
        w1.tls_handshake(a, "TLSv1.3", false);
        w1.tls_handshake(b, "TLSv1.2", false);
        w1.tls_handshake_failed(a, "plaintext");
        w1.tls_handshake_failed(b, "timeout");
        let mut info = process();
        info.certificates = vec![
            CertificateExpiry {
                listener: a,
                file: "certs/api.pem".into(),
                name: "api.example.com".into(),
                not_after: 1_767_225_600,
            },
            CertificateExpiry {
                listener: b,
                file: "certs/\"odd\".pem".into(),
                name: "*.example.com".into(),
                not_after: 1_767_225_601,
            },
        ];
        let text = render(&[w0.snapshot(), w1.snapshot()], &info);
        assert_eq!(
            samples(&text, "strait_tls_handshakes_total"),
            [
                r#"strait_tls_handshakes_total{listener="127.0.0.1:8443",version="TLSv1.3",resumed="false"} 2"#,
                r#"strait_tls_handshakes_total{listener="127.0.0.1:8443",version="TLSv1.3",resumed="true"} 1"#,
                r#"strait_tls_handshakes_total{listener="[::1]:443",version="TLSv1.2",resumed="false"} 1"#,
            ]
        );
        assert_eq!(
            samples(&text, "strait_tls_handshake_failures_total"),
            [
                r#"strait_tls_handshake_failures_total{listener="127.0.0.1:8443",reason="plaintext"} 2"#,
                r#"strait_tls_handshake_failures_total{listener="[::1]:443",reason="timeout"} 1"#,
            ]
        );
        assert_eq!(
            samples(&text, "strait_tls_certificate_expiry_timestamp_seconds"),
            [
                r#"strait_tls_certificate_expiry_timestamp_seconds{listener="127.0.0.1:8443",file="certs/api.pem",name="api.example.com"} 1767225600"#,
                r#"strait_tls_certificate_expiry_timestamp_seconds{listener="[::1]:443",file="certs/\"odd\".pem",name="*.example.com"} 1767225601"#,
            ]
        );
    }

    #[test]
    fn methods_and_status_classes() {
        for (method, want) in [
            ("GET", "GET"),
            ("HEAD", "HEAD"),
            ("POST", "POST"),
            ("PUT", "PUT"),
            ("DELETE", "DELETE"),
            ("CONNECT", "CONNECT"),
            ("OPTIONS", "OPTIONS"),
            ("TRACE", "TRACE"),
            ("PATCH", "PATCH"),
            ("get", "OTHER"),
            ("PROPFIND", "OTHER"),
            ("", "OTHER"),
        ] {
            assert_eq!(METHODS[method_index(method.as_bytes())], want, "{method}");
        }
        for (status, want) in [
            (0, "none"),
            (99, "none"),
            (100, "1xx"),
            (101, "1xx"),
            (200, "2xx"),
            (299, "2xx"),
            (304, "3xx"),
            (404, "4xx"),
            (499, "4xx"),
            (500, "5xx"),
            (599, "5xx"),
            (600, "none"),
        ] {
            assert_eq!(CLASSES[class_index(status)], want, "{status}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("plain"), "plain");
        assert_eq!(escape(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape("a\nb"), "a\\nb");
    }

    #[test]
    fn histogram_edges_and_overflow() {
        let mut l = Latency::new();
        for us in [0, 499, 500, 501, 1_000, 9_000, 70_000_000] {
            l.record(Duration::from_micros(us));
        }
        assert_eq!(l.count(), 7);
        assert_eq!(l.sum_micros, 70_011_500);
        // 501 shares the hdr bucket of 500 (2 µs wide there): counted ≤ 0.0005 s, the
        // documented resolution at the bucket edges.
        assert_eq!(l.count_up_to(500), 4);
        assert_eq!(l.count_up_to(1_000), 5);
        assert_eq!(l.count_up_to(10_000), 6);
        assert_eq!(l.count_up_to(10_000_000), 6);
    }

    #[test]
    fn hub_gathers_every_worker_and_keeps_a_silent_ones_last_answer() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let hub = Arc::new(MetricsHub::new());
        let config = Arc::new(load(CONFIG));
        let stop = Arc::new(AtomicBool::new(false));
        // Worker 1 answers only while `answering` is set.
        let answering = Arc::new(AtomicBool::new(true));
        let mut threads = Vec::new();
        for requests in [2, 5] {
            let inbox = hub.register_worker();
            let (config, stop, answering) = (config.clone(), stop.clone(), answering.clone());
            threads.push(std::thread::spawn(move || {
                let mut m = WorkerMetrics::new();
                for _ in 0..requests {
                    record(&mut m, &config, &GET_API);
                }
                while !stop.load(Ordering::Acquire) {
                    if inbox.worker() == 0 || answering.load(Ordering::Acquire) {
                        inbox.answer(&m);
                        // Counted after the answer: the next one differs.
                        record(&mut m, &config, &GET_API);
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            }));
        }
        let count = |snapshots: &[MetricsSnapshot]| -> Vec<(usize, u64)> {
            snapshots
                .iter()
                .map(|s| (s.worker, s.totals.requests.values().sum()))
                .collect()
        };
        let first = hub.scrape(Duration::from_secs(5));
        assert_eq!(first.iter().map(|s| s.worker).collect::<Vec<_>>(), [0, 1]);
        let first = count(&first);
        assert!(first[0].1 >= 2 && first[1].1 >= 5, "{first:?}");

        answering.store(false, Ordering::Release);
        std::thread::sleep(Duration::from_millis(20));
        let frozen = count(&hub.scrape(Duration::from_millis(50)));
        let second = count(&hub.scrape(Duration::from_millis(50)));
        assert_eq!(
            second[1], frozen[1],
            "the silent worker's last answer is served"
        );
        assert!(second[1].1 >= first[1].1, "never backwards");
        assert!(second[0].1 > first[0].1, "the live worker answers afresh");

        stop.store(true, Ordering::Release);
        for thread in threads {
            thread.join().unwrap();
        }
        // Ended workers are represented by their last answers.
        assert_eq!(hub.scrape(Duration::from_millis(10)).len(), 2);
        // A worker that never answered is absent.
        let _silent = hub.register_worker();
        assert_eq!(hub.scrape(Duration::from_millis(10)).len(), 2);
    }

    /// Per-request cost of `record` (run in release: `cargo test --release -- --ignored
    /// record_cost --nocapture`).
    #[test]
    #[ignore = "a measurement, not a check"]
    fn record_cost() {
        let config = load(CONFIG);
        let mut m = WorkerMetrics::new();
        let mut rec = RequestRecord::new(Bytes::from_static(b"127.0.0.1"), Instant::now());
        rec.method = Bytes::from_static(b"GET");
        rec.route = Some(0);
        rec.upstream = Some(0);
        rec.status = 200;
        rec.bytes_in = 100;
        rec.bytes_out = 1000;
        rec.upstream_time = Some(Duration::from_micros(700));
        rec.pool_hit = Some(true);
        const N: u32 = 10_000_000;
        let start = Instant::now();
        for _ in 0..N {
            m.record(std::hint::black_box(&config), std::hint::black_box(&rec));
        }
        let per = start.elapsed() / N;
        println!("record: {per:?} per request");
        let start = Instant::now();
        for _ in 0..N {
            std::hint::black_box(Instant::now());
        }
        println!("Instant::now alone: {:?}", start.elapsed() / N);
    }
}
