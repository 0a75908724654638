//! The Redis sync thread behind `scope = "cluster"` rate limits: one per process, the only
//! owner of the Redis connection, never on the request path.
//!
//! Workers count their own requests (`crate::ratelimit::cluster`) and, from their periodic
//! tick, hand the new counts over as one [`Batch`] through a channel. Every
//! `cluster.sync_interval` this thread applies everything pending with one pipelined round
//! trip (`INCRBY` + `PEXPIRE` per key and window, `GET` for keys with nothing new), reads
//! the cluster totals back and publishes them as an immutable [`Snapshot`] that each worker
//! picks up at its next tick.
//!
//! Failure: a refused connection, a timeout or an unusable reply marks Redis down at once
//! (one log line per transition, `strait_cluster_redis_up` 0); the snapshot then says so
//! and workers apply `cluster.on_redis_error`. Reconnects back off from one interval to
//! [`MAX_BACKOFF`]; counts handed over meanwhile stay pending (bounded by the watched keys)
//! and are applied once Redis is back. The thread follows reloads: a new URL reconnects, a
//! new interval applies from the next round, no `[cluster]` idles it.

pub mod resp;
pub mod state;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ahash::AHashMap;
use arc_swap::ArcSwap;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::ratelimit::config::{ClusterConfig, OnRedisError, RedisTarget};
use resp::Connection;
use state::SyncState;

/// Longest wait between two reconnection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Batches waiting for the sync thread; past it a worker's hand-over is dropped (its counts
/// then stay local: the other nodes see fewer requests than there were).
const BATCH_QUEUE: usize = 4096;
/// How often an idle thread (no `[cluster]`) looks at the config again.
const IDLE_POLL: Duration = Duration::from_millis(250);

/// One cluster limit as Redis knows it.
#[derive(Debug, PartialEq, Eq)]
pub struct LimitSpec {
    /// `prefix:route:limit:`; a key's Redis name is this, the key, `:` and the window.
    pub base: Arc<[u8]>,
    /// The window length.
    pub period_ms: u64,
}

/// Requests a worker admitted for one key in one window since its last hand-over.
#[derive(Debug)]
pub struct Delta {
    pub limit: Arc<LimitSpec>,
    pub key: Box<[u8]>,
    /// `unix_ms / period_ms`.
    pub window: u64,
    pub count: u64,
}

/// One worker's hand-over.
#[derive(Debug)]
pub struct Batch {
    pub worker: usize,
    pub deltas: Vec<Delta>,
}

/// The cluster totals of one key, as of the last round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Totals {
    /// The window `total[0]` counts; `total[1]` is the window before.
    pub window: u64,
    pub total: [u64; 2],
    /// Per worker: how much of `total` that worker's own counts are.
    pub applied: Box<[[u64; 2]]>,
}

/// What workers know of the cluster between two rounds. Immutable once published.
#[derive(Debug)]
pub struct Snapshot {
    /// False while Redis is unreachable: `on_redis_error` applies.
    pub healthy: bool,
    /// Limit base → key → totals.
    pub tables: AHashMap<Arc<[u8]>, KeyTotals>,
}

/// One limit's keys and their totals.
pub type KeyTotals = AHashMap<Arc<[u8]>, Totals>;

/// Redis sync health for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncStats {
    pub up: bool,
    pub errors: u64,
    pub rounds: u64,
    pub dropped: u64,
}

/// Where workers and the sync thread meet; owned by `Control`, shared with every worker.
pub struct ClusterHub {
    snapshot: ArcSwap<Snapshot>,
    tx: Sender<Batch>,
    rx: Receiver<Batch>,
    workers: AtomicUsize,
    configured: AtomicBool,
    up: AtomicBool,
    errors: AtomicU64,
    rounds: AtomicU64,
    dropped: AtomicU64,
}

impl Default for ClusterHub {
    fn default() -> Self {
        Self::new()
    }
}

impl ClusterHub {
    pub fn new() -> Self {
        let (tx, rx) = crossbeam_channel::bounded(BATCH_QUEUE);
        ClusterHub {
            // Optimistic until the first round says otherwise (within one interval).
            snapshot: ArcSwap::from_pointee(Snapshot {
                healthy: true,
                tables: AHashMap::new(),
            }),
            tx,
            rx,
            workers: AtomicUsize::new(0),
            configured: AtomicBool::new(false),
            up: AtomicBool::new(true),
            errors: AtomicU64::new(0),
            rounds: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// Called once per worker at start: its index (for [`Totals::applied`]) and its end of
    /// the hand-over channel.
    pub fn register_worker(&self) -> (usize, Sender<Batch>) {
        (
            self.workers.fetch_add(1, Ordering::Relaxed),
            self.tx.clone(),
        )
    }

    /// The newest snapshot (read at a worker's tick, not per request).
    pub fn snapshot(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.snapshot.load()
    }

    /// `None` while no `[cluster]` is configured.
    pub fn stats(&self) -> Option<SyncStats> {
        self.configured.load(Ordering::Relaxed).then(|| SyncStats {
            up: self.up.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            rounds: self.rounds.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        })
    }

    fn publish(&self, snapshot: Snapshot) {
        self.snapshot.store(Arc::new(snapshot));
    }
}

/// What the sync thread reads of the served config: its `[cluster]` section. Implemented
/// by the config snapshot (the assembly, which sits above rate limiting), so that the
/// thread follows reloads without knowing the rest of the config.
pub trait ClusterSection {
    /// `[cluster]`; `None` when absent.
    fn cluster(&self) -> Option<&ClusterConfig>;
}

/// Starts the sync thread, following the snapshot served in `config`; it runs for the life
/// of the process.
pub fn spawn<C: ClusterSection + Send + Sync + 'static>(
    config: Arc<ArcSwap<C>>,
    hub: Arc<ClusterHub>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("strait-redis".into())
        .spawn(move || Syncer::new(hub).run(&config))
        .map(drop)
}

/// The wall clock in Unix milliseconds: windows must line up across nodes.
pub fn unix_ms(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

struct Syncer {
    hub: Arc<ClusterHub>,
    state: SyncState,
    conn: Option<(RedisTarget, Connection)>,
    /// As published: whether workers use the cluster counts.
    up: bool,
    backoff: Duration,
    retry_at: Instant,
}

impl Syncer {
    fn new(hub: Arc<ClusterHub>) -> Self {
        Syncer {
            hub,
            state: SyncState::default(),
            conn: None,
            up: true,
            backoff: Duration::ZERO,
            retry_at: Instant::now(),
        }
    }

    fn run<C: ClusterSection>(mut self, config: &ArcSwap<C>) {
        let mut next_round = Instant::now();
        loop {
            let current = config.load_full();
            let Some(cluster) = current.cluster() else {
                self.idle();
                continue;
            };
            self.hub.configured.store(true, Ordering::Relaxed);
            // Gather hand-overs until the round is due. The deadline is checked here, not
            // left to `recv_timeout`: on a loaded machine its spin-and-yield before giving
            // up can outlast the workers' 20 ms between batches, and the round would never
            // come.
            loop {
                let now = Instant::now();
                if now >= next_round {
                    break;
                }
                match self.hub.rx.recv_timeout(next_round - now) {
                    Ok(batch) => self.state.merge(batch),
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
            next_round = Instant::now() + cluster.sync_interval;
            self.round(cluster);
        }
    }

    /// No `[cluster]`: drop the connection and the counts, discard hand-overs.
    fn idle(&mut self) {
        if self.conn.take().is_some() || !self.state.is_empty() {
            tracing::info!("cluster rate limits no longer configured: redis sync idle");
        }
        self.state.clear();
        self.hub.configured.store(false, Ordering::Relaxed);
        if !self.up {
            self.up = true;
            self.hub.up.store(true, Ordering::Relaxed);
            self.hub.publish(Snapshot {
                healthy: true,
                tables: AHashMap::new(),
            });
        }
        let until = Instant::now() + IDLE_POLL;
        while let Some(wait) = until.checked_duration_since(Instant::now()) {
            if self.hub.rx.recv_timeout(wait).is_err() {
                break;
            }
        }
    }

    fn round(&mut self, cluster: &ClusterConfig) {
        self.state.roll(unix_ms(SystemTime::now()));
        if self
            .conn
            .as_ref()
            .is_some_and(|(target, _)| *target != cluster.redis)
        {
            tracing::info!(redis = %cluster.redis, "redis address changed: reconnecting");
            self.conn = None;
        }
        if self.conn.is_none() {
            if Instant::now() < self.retry_at {
                return;
            }
            match Connection::open(&cluster.redis, cluster.timeout) {
                Ok(conn) => self.conn = Some((cluster.redis.clone(), conn)),
                Err(e) => return self.fail(cluster, &e),
            }
        }
        let Some((_, conn)) = self.conn.as_mut() else {
            return;
        };
        let round = self.state.commands();
        let replies = match conn.pipeline(&round.commands, round.count) {
            Ok(replies) => replies,
            Err(e) => return self.fail(cluster, &e),
        };
        let errors = self.state.apply(&replies);
        self.hub
            .dropped
            .store(self.state.dropped, Ordering::Relaxed);
        if errors > 0 {
            self.hub.errors.fetch_add(1, Ordering::Relaxed);
            if errors == replies.len() {
                // Nothing usable (LOADING, NOAUTH, MISCONF...): Redis is not serving us.
                let why = replies
                    .iter()
                    .find_map(|r| match r {
                        resp::Reply::Error(e) => Some(e.as_str()),
                        _ => None,
                    })
                    .unwrap_or("unexpected reply");
                return self.fail(cluster, &std::io::Error::other(format!("redis: {why}")));
            }
            tracing::debug!(errors, "redis sync: some keys answered with errors");
        }
        self.hub.rounds.fetch_add(1, Ordering::Relaxed);
        self.backoff = Duration::ZERO;
        if !self.up {
            tracing::info!(redis = %cluster.redis, "redis reachable again: cluster rate limits resume");
            self.up = true;
            self.hub.up.store(true, Ordering::Relaxed);
        }
        self.hub.publish(self.state.snapshot());
    }

    /// Drops the connection, schedules the next attempt, and tells the workers once.
    fn fail(&mut self, cluster: &ClusterConfig, error: &std::io::Error) {
        self.conn = None;
        self.hub.errors.fetch_add(1, Ordering::Relaxed);
        self.backoff = (self.backoff * 2)
            .max(cluster.sync_interval)
            .min(MAX_BACKOFF);
        self.retry_at = Instant::now() + self.backoff;
        if self.up {
            let fallback = match cluster.on_redis_error {
                OnRedisError::Open => "falling back to local per-worker limits",
                OnRedisError::Closed => "answering 503 on cluster-limited routes",
            };
            tracing::warn!(redis = %cluster.redis, error = %error, "redis unreachable: {fallback}");
            self.up = false;
            self.hub.up.store(false, Ordering::Relaxed);
            self.hub.publish(Snapshot {
                healthy: false,
                tables: AHashMap::new(),
            });
        }
    }
}
