//! The sync thread's bookkeeping: the keys this process has counted recently, what each
//! worker handed over and Redis has (or has not yet) applied, and the cluster totals last
//! read. Pure (time is the `now_ms` argument; I/O is the caller's): one round is
//! [`SyncState::roll`], [`SyncState::commands`], then [`SyncState::apply`] with the replies.
//!
//! Per key it keeps two windows, the current one and the previous one (the sliding-window
//! estimate needs both), each with the Redis total and, per worker, the count applied and
//! the count still pending. A worker's estimate is then `total - applied[me] + mine`: the
//! others' requests as of the last round plus its own, exactly.

use std::sync::Arc;

use ahash::AHashMap;

use super::resp::{encode, Reply};
use super::{Batch, Snapshot, Totals};

/// Keys watched at most (all limits together); past it new keys' deltas are dropped
/// (counted in `strait_cluster_redis_dropped_total`).
pub const MAX_WATCHED: usize = 1_000_000;

/// One key of one limit.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Watched {
    period_ms: u64,
    /// The current window (`unix_ms / period_ms`); index 0 of the pairs below is it, index 1
    /// the window before.
    window: u64,
    /// Totals last read from Redis.
    total: [u64; 2],
    /// Per worker: counts Redis has applied (included in `total`).
    applied: Vec<[u64; 2]>,
    /// Per worker: counts handed over and not yet applied.
    pending: Vec<[u64; 2]>,
    /// Newest window a delta was counted in, to forget idle keys.
    last_active: u64,
}

impl Watched {
    /// Moves to window `to` (never backwards): the current window becomes the previous.
    fn roll(&mut self, to: u64) {
        if to <= self.window {
            return;
        }
        let shift = |pair: &mut [u64; 2]| {
            *pair = if to == self.window + 1 {
                [0, pair[0]]
            } else {
                [0, 0]
            }
        };
        shift(&mut self.total);
        self.applied.iter_mut().for_each(shift);
        self.pending.iter_mut().for_each(shift);
        self.window = to;
    }

    fn pending_sum(&self, slot: usize) -> u64 {
        self.pending.iter().map(|p| p[slot]).sum()
    }
}

/// One limit's watched keys.
type KeyWatch = AHashMap<Arc<[u8]>, Watched>;

/// Everything the sync thread knows about the counted keys.
#[derive(Debug, Default)]
pub struct SyncState {
    /// Limit (Redis key base `prefix:route:limit:`) → key → counts.
    limits: AHashMap<Arc<[u8]>, KeyWatch>,
    watched: usize,
    /// Deltas dropped because [`MAX_WATCHED`] keys were watched already.
    pub dropped: u64,
}

/// Pipelined commands for one round.
pub struct Round {
    pub commands: Vec<u8>,
    pub count: usize,
}

impl SyncState {
    pub fn is_empty(&self) -> bool {
        self.watched == 0
    }

    pub fn len(&self) -> usize {
        self.watched
    }

    /// Forgets everything (the cluster config went away).
    pub fn clear(&mut self) {
        self.limits.clear();
        self.watched = 0;
    }

    /// Adds a worker's hand-over to the pending counts.
    pub fn merge(&mut self, batch: Batch) {
        for delta in batch.deltas {
            let keys = match self.limits.get_mut(&delta.limit.base[..]) {
                Some(keys) => keys,
                None => self.limits.entry(delta.limit.base.clone()).or_default(),
            };
            let entry = match keys.get_mut(&delta.key[..]) {
                Some(entry) => entry,
                None if self.watched >= MAX_WATCHED => {
                    self.dropped += delta.count;
                    continue;
                }
                None => {
                    self.watched += 1;
                    keys.entry(Arc::from(delta.key)).or_insert(Watched {
                        period_ms: delta.limit.period_ms,
                        window: delta.window,
                        total: [0; 2],
                        applied: Vec::new(),
                        pending: Vec::new(),
                        last_active: delta.window,
                    })
                }
            };
            entry.roll(delta.window);
            let Some(slot) = entry.window.checked_sub(delta.window).filter(|s| *s < 2) else {
                continue; // older than the previous window: no estimate uses it any more
            };
            if entry.pending.len() <= batch.worker {
                entry.pending.resize(batch.worker + 1, [0; 2]);
            }
            entry.pending[batch.worker][slot as usize] += delta.count;
            entry.last_active = entry.last_active.max(delta.window);
        }
    }

    /// Moves every key to the window of `now_ms` and forgets keys counted in neither the
    /// current nor the previous window (with nothing pending).
    pub fn roll(&mut self, now_ms: u64) {
        let mut forgotten = 0;
        for keys in self.limits.values_mut() {
            keys.retain(|_, entry| {
                let now = now_ms / entry.period_ms.max(1);
                entry.roll(now);
                let keep =
                    entry.last_active + 1 >= now || entry.pending.iter().any(|p| *p != [0, 0]);
                forgotten += usize::from(!keep);
                keep
            });
        }
        self.limits.retain(|_, keys| !keys.is_empty());
        self.watched -= forgotten;
    }

    /// The round's commands: per key and window, `INCRBY` + `PEXPIRE` when counts are
    /// pending, else `GET` (to learn the other nodes' counts). A `PING` when there is no key,
    /// so that an unreachable Redis is noticed (and its return) without traffic.
    pub fn commands(&self) -> Round {
        let mut out = Vec::new();
        let mut count = 0;
        let mut key = Vec::new();
        let mut num = itoa::Buffer::new();
        for (base, keys) in &self.limits {
            for (k, entry) in keys {
                for slot in 0..2 {
                    let Some(window) = entry.window.checked_sub(slot as u64) else {
                        continue;
                    };
                    key.clear();
                    key.extend_from_slice(base);
                    key.extend_from_slice(k);
                    key.push(b':');
                    key.extend_from_slice(num.format(window).as_bytes());
                    let pending = entry.pending_sum(slot);
                    if pending > 0 {
                        encode(&mut out, &[b"INCRBY", &key, num.format(pending).as_bytes()]);
                        // Needed until the end of the next window (as the previous one).
                        let ttl = entry.period_ms.saturating_mul(2).saturating_add(1000);
                        encode(&mut out, &[b"PEXPIRE", &key, num.format(ttl).as_bytes()]);
                        count += 2;
                    } else {
                        encode(&mut out, &[b"GET", &key]);
                        count += 1;
                    }
                }
            }
        }
        if count == 0 {
            encode(&mut out, &[b"PING"]);
            count = 1;
        }
        Round {
            commands: out,
            count,
        }
    }

    /// Takes the replies to [`commands`](Self::commands) (same order; the state must not
    /// have changed in between). Returns how many were error replies; a key whose reply is
    /// an error keeps its pending counts for the next round.
    pub fn apply(&mut self, replies: &[Reply]) -> usize {
        let mut replies = replies.iter();
        let mut errors = 0;
        for keys in self.limits.values_mut() {
            for entry in keys.values_mut() {
                for slot in 0..2 {
                    if entry.window < slot as u64 {
                        continue;
                    }
                    let pending = entry.pending_sum(slot);
                    let total = if pending > 0 {
                        let total = replies.next().and_then(Reply::counter);
                        let _pexpire = replies.next();
                        total
                    } else {
                        replies.next().and_then(Reply::counter)
                    };
                    let Some(total) = total else {
                        errors += 1;
                        continue;
                    };
                    // A window's count only grows; less than before plus ours means Redis
                    // lost the key (restarted empty, evicted): what it holds of ours now
                    // is this round's increment only.
                    let lost = total < entry.total[slot].saturating_add(pending);
                    entry.total[slot] = total;
                    if entry.applied.len() < entry.pending.len() {
                        entry.applied.resize(entry.pending.len(), [0; 2]);
                    }
                    for (applied, pending) in entry.applied.iter_mut().zip(&mut entry.pending) {
                        applied[slot] = if lost { 0 } else { applied[slot] } + pending[slot];
                        pending[slot] = 0;
                    }
                }
            }
        }
        errors
    }

    /// What the workers read until the next round.
    pub fn snapshot(&self) -> Snapshot {
        let tables = self
            .limits
            .iter()
            .map(|(base, keys)| {
                let totals = keys
                    .iter()
                    .map(|(k, e)| {
                        let totals = Totals {
                            window: e.window,
                            total: e.total,
                            applied: e.applied.clone().into_boxed_slice(),
                        };
                        (k.clone(), totals)
                    })
                    .collect();
                (base.clone(), totals)
            })
            .collect();
        Snapshot {
            healthy: true,
            tables,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::redis_sync::{Delta, LimitSpec};

    fn limit() -> Arc<LimitSpec> {
        Arc::new(LimitSpec {
            base: Arc::from(&b"strait:rl:r:l:"[..]),
            period_ms: 1000,
        })
    }

    fn batch(worker: usize, deltas: &[(&str, u64, u64)]) -> Batch {
        Batch {
            worker,
            deltas: deltas
                .iter()
                .map(|(key, window, count)| Delta {
                    limit: limit(),
                    key: key.as_bytes().into(),
                    window: *window,
                    count: *count,
                })
                .collect(),
        }
    }

    fn commands(state: &SyncState) -> Vec<String> {
        let round = state.commands();
        let mut reader = &round.commands[..];
        (0..round.count)
            .map(
                |_| match crate::ratelimit::redis_sync::resp::read_reply(&mut reader).unwrap() {
                    Reply::Array(Some(args)) => args
                        .iter()
                        .map(|a| match a {
                            Reply::Bulk(Some(b)) => String::from_utf8_lossy(b).into_owned(),
                            other => panic!("{other:?}"),
                        })
                        .collect::<Vec<_>>()
                        .join(" "),
                    other => panic!("{other:?}"),
                },
            )
            .collect()
    }

    #[test]
    fn batches_merge_into_one_incrby_per_key_and_window() {
        let mut state = SyncState::default();
        // Two workers, two hand-overs each, one key in two windows.
        state.merge(batch(0, &[("a", 7, 2), ("a", 6, 1)]));
        state.merge(batch(1, &[("a", 7, 3)]));
        state.merge(batch(0, &[("a", 7, 1), ("b", 7, 4)]));
        state.roll(7_500);
        let mut cmds = commands(&state);
        cmds.sort();
        assert_eq!(
            cmds,
            [
                "INCRBY strait:rl:r:l:a:6 1",
                "INCRBY strait:rl:r:l:a:7 6",
                "INCRBY strait:rl:r:l:b:7 4",
                "PEXPIRE strait:rl:r:l:a:6 3000",
                "PEXPIRE strait:rl:r:l:a:7 3000",
                "PEXPIRE strait:rl:r:l:b:7 3000",
                "GET strait:rl:r:l:b:6",
            ]
            .map(String::from)
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
        );
    }

    #[test]
    fn applied_counts_are_tracked_per_worker() {
        let mut state = SyncState::default();
        state.merge(batch(0, &[("a", 7, 2)]));
        state.merge(batch(1, &[("a", 7, 3)]));
        state.roll(7_000);
        // Redis answers: current window 105 (100 from other nodes), previous nil.
        let replies = [Reply::Int(105), Reply::Int(1), Reply::Bulk(None)];
        assert_eq!(commands(&state).len(), 3);
        assert_eq!(state.apply(&replies), 0);
        let snapshot = state.snapshot();
        let t = &snapshot.tables[&b"strait:rl:r:l:"[..]][&b"a"[..]];
        assert_eq!((t.window, t.total), (7, [105, 0]));
        assert_eq!(&t.applied[..], &[[2, 0], [3, 0]]);
        // Nothing pending now: the next round only reads.
        assert_eq!(
            commands(&state),
            ["GET strait:rl:r:l:a:7", "GET strait:rl:r:l:a:6"]
        );
        // A window later the counts are the previous window's.
        state.roll(8_000);
        let t = &state.snapshot().tables[&b"strait:rl:r:l:"[..]][&b"a"[..]];
        assert_eq!((t.window, t.total), (8, [0, 105]));
        assert_eq!(&t.applied[..], &[[0, 2], [0, 3]]);
    }

    #[test]
    fn a_redis_that_lost_its_counts_is_believed() {
        let mut state = SyncState::default();
        state.merge(batch(0, &[("a", 7, 40)]));
        state.roll(7_000);
        state.apply(&[Reply::Int(100), Reply::Int(1), Reply::Bulk(None)]);
        // Redis restarted empty; another node has counted 30 since, we add 2.
        state.merge(batch(0, &[("a", 7, 2)]));
        state.apply(&[Reply::Int(32), Reply::Int(1), Reply::Bulk(None)]);
        let t = &state.snapshot().tables[&b"strait:rl:r:l:"[..]][&b"a"[..]];
        assert_eq!(t.total, [32, 0]);
        assert_eq!(
            &t.applied[..],
            &[[2, 0]],
            "the other node's 30 stay visible"
        );
        // Without a new count: a GET that reads less than before also resets.
        state.apply(&[Reply::Int(5), Reply::Bulk(None)]);
        let t = &state.snapshot().tables[&b"strait:rl:r:l:"[..]][&b"a"[..]];
        assert_eq!((t.total, &t.applied[..]), ([5, 0], &[[0, 0]][..]));
    }

    #[test]
    fn failed_keys_keep_their_pending_counts() {
        let mut state = SyncState::default();
        state.merge(batch(0, &[("a", 7, 2)]));
        state.roll(7_000);
        let errors = state.apply(&[
            Reply::Error("WRONGTYPE".into()),
            Reply::Error("WRONGTYPE".into()),
            Reply::Bulk(None),
        ]);
        assert_eq!(errors, 1);
        assert_eq!(commands(&state)[0], "INCRBY strait:rl:r:l:a:7 2");
    }

    #[test]
    fn idle_keys_are_forgotten_and_old_windows_dropped() {
        let mut state = SyncState::default();
        state.merge(batch(0, &[("a", 7, 1)]));
        state.roll(7_000);
        state.apply(&[Reply::Int(1), Reply::Int(1), Reply::Bulk(None)]);
        // A delta two windows old is of no use to anyone.
        state.merge(batch(0, &[("a", 5, 9)]));
        assert_eq!(state.len(), 1);
        state.roll(8_999);
        assert_eq!(state.len(), 1, "counted in the previous window");
        state.roll(9_000);
        assert!(state.is_empty(), "idle for two windows");
        assert_eq!(commands(&state), ["PING"]);
    }
}
