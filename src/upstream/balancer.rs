//! Endpoint selection for one upstream on one worker: the `balance` policy of the config
//! ([`BalancePolicy`]) turned into a [`Balancer`] whose `pick` runs once per try of a request
//! (pick → connect → send; a retry picks again with the endpoints already tried marked
//! unusable).
//!
//! The policies:
//! - round-robin: smooth weighted round-robin (the algorithm nginx uses), see
//!   [`WeightedRoundRobin`];
//! - P2C: two distinct usable endpoints drawn at random in proportion to their weights, and
//!   the one with fewer requests in flight per unit of weight wins;
//! - least-conn: the fewest requests in flight per unit of weight, ties broken by smooth
//!   weighted round-robin so that idle endpoints share the load instead of the first one
//!   taking it all;
//! - hash: the Maglev table of [`super::maglev`], keyed by [`super::hash_key::request_key`];
//!   a request without a key is balanced round-robin. The table is the same for every
//!   worker: it comes built with the config snapshot ([`super::SharedUpstream`]) and the
//!   balancer only holds a reference to it.
//!
//! Invariants: a `Balancer` is per-worker state (no lock, no atomics but the shared table's
//! reference count, touched only when it is built; its random generator is its own, seeded
//! when built), `pick` never returns an endpoint `usable` refuses, and `pick` never
//! allocates (only [`Balancer::new`] does).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::config::{BalancePolicy, Endpoint};

use super::maglev::Maglev;

/// Smooth weighted round-robin: each pick adds every considered endpoint's weight to its
/// running score, takes the highest, and subtracts the considered total from it. Over one
/// cycle each endpoint is picked exactly `weight` times, interleaved rather than in bursts
/// (weights 5,1,1 give a a b a c a a, not a a a a a b c).
///
/// Endpoints left out of a pick (unusable ones) are left out of the arithmetic too: their
/// scores stand still and the total is that of the usable ones, so the usable endpoints
/// keep a smooth weighted sequence among themselves (this is what nginx does with peers
/// that are down), and an endpoint that comes back resumes where it was.
#[derive(Debug)]
pub struct WeightedRoundRobin {
    weights: Vec<i64>,
    scores: Vec<i64>,
}

impl WeightedRoundRobin {
    pub fn new(weights: impl Iterator<Item = u32>) -> Self {
        let weights: Vec<i64> = weights.map(i64::from).collect();
        WeightedRoundRobin {
            scores: vec![0; weights.len()],
            weights,
        }
    }

    /// The index of the next endpoint, or `None` when there are none.
    pub fn pick(&mut self) -> Option<usize> {
        self.pick_where(|_| true)
    }

    /// The index of the next endpoint among those `usable` accepts, or `None` when it
    /// accepts none.
    pub fn pick_where(&mut self, usable: impl Fn(usize) -> bool) -> Option<usize> {
        let mut best: Option<usize> = None;
        let mut total = 0;
        for i in 0..self.weights.len() {
            if !usable(i) {
                continue;
            }
            self.scores[i] += self.weights[i];
            total += self.weights[i];
            if best.is_none_or(|b| self.scores[i] > self.scores[b]) {
                best = Some(i);
            }
        }
        let chosen = best?;
        self.scores[chosen] -= total;
        Some(chosen)
    }
}

/// One upstream's endpoint picker on one worker.
#[derive(Debug)]
pub struct Balancer {
    /// Each endpoint's weight (at least 1), indexed like the endpoints.
    weights: Box<[u32]>,
    policy: Policy,
    /// Round-robin order: the round-robin policy itself, least-conn's tie-break, and the
    /// hash policy's requests without a key.
    wrr: WeightedRoundRobin,
    rng: WyRand,
}

#[derive(Debug)]
enum Policy {
    RoundRobin,
    P2c,
    LeastConn,
    Hash(Arc<Maglev>),
}

impl Balancer {
    /// Builds the picker for `endpoints`, with a random generator seeded afresh. `table`:
    /// the hash policy's Maglev table for these endpoints, as the snapshot carries it;
    /// without one (a config the control plane did not publish) the balancer builds its own.
    pub fn new(
        policy: &BalancePolicy,
        endpoints: &[Endpoint],
        table: Option<&Arc<Maglev>>,
    ) -> Balancer {
        Balancer::with_seed(policy, endpoints, table, fresh_seed())
    }

    /// [`Balancer::new`] with a given seed for P2C's random draws, for reproducible tests.
    pub fn with_seed(
        policy: &BalancePolicy,
        endpoints: &[Endpoint],
        table: Option<&Arc<Maglev>>,
        seed: u64,
    ) -> Balancer {
        let weights: Box<[u32]> = endpoints.iter().map(|e| e.weight.max(1)).collect();
        Balancer {
            policy: match policy {
                BalancePolicy::RoundRobin => Policy::RoundRobin,
                BalancePolicy::P2c => Policy::P2c,
                BalancePolicy::LeastConn => Policy::LeastConn,
                BalancePolicy::Hash(_) => Policy::Hash(match table {
                    Some(table) => table.clone(),
                    None => Arc::new(Maglev::new(endpoints)),
                }),
            },
            wrr: WeightedRoundRobin::new(weights.iter().copied()),
            weights,
            rng: WyRand(seed),
        }
    }

    /// Picks an endpoint index. `key`: the request's hash key (used by the hash policy only;
    /// when `None` under it, round-robin). `load(i)`: requests in flight at endpoint `i` on
    /// this worker (P2C, least-conn). `usable(i)`: false for endpoints that are unhealthy,
    /// ejected, or already tried by this request; those are never picked. `None` when no
    /// endpoint is usable.
    pub fn pick(
        &mut self,
        key: Option<u64>,
        load: &dyn Fn(usize) -> u32,
        usable: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        match &self.policy {
            Policy::RoundRobin => self.wrr.pick_where(usable),
            Policy::P2c => self.pick_p2c(load, usable),
            Policy::LeastConn => self.pick_least_conn(load, usable),
            Policy::Hash(maglev) => match key {
                Some(key) => maglev.pick(key, usable),
                None => self.wrr.pick_where(usable),
            },
        }
    }

    /// Power of two choices (Mitzenmacher): two distinct endpoints drawn by weight, the
    /// lighter one per unit of weight wins; on a tie the first drawn, itself random.
    fn pick_p2c(
        &mut self,
        load: &dyn Fn(usize) -> u32,
        usable: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let total: u64 = (0..self.weights.len())
            .filter(|&i| usable(i))
            .map(|i| u64::from(self.weights[i]))
            .sum();
        let a = self.draw(total, None, usable)?;
        let weight_a = u64::from(self.weights[a]);
        let Some(b) = self.draw(total - weight_a, Some(a), usable) else {
            return Some(a);
        };
        let weight_b = u64::from(self.weights[b]);
        // load_a / weight_a <= load_b / weight_b, without division.
        if u64::from(load(a)) * weight_b <= u64::from(load(b)) * weight_a {
            Some(a)
        } else {
            Some(b)
        }
    }

    /// A usable endpoint other than `except`, drawn in proportion to weight; `total` is the
    /// sum of the weights it may draw from.
    fn draw(
        &mut self,
        total: u64,
        except: Option<usize>,
        usable: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        if total == 0 {
            return None;
        }
        let mut ticket = self.rng.below(total);
        for (i, &weight) in self.weights.iter().enumerate() {
            if Some(i) == except || !usable(i) {
                continue;
            }
            let weight = u64::from(weight);
            if ticket < weight {
                return Some(i);
            }
            ticket -= weight;
        }
        None
    }

    /// The least requests in flight per unit of weight; among equals, the next in smooth
    /// weighted round-robin order.
    fn pick_least_conn(
        &mut self,
        load: &dyn Fn(usize) -> u32,
        usable: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let weights = &self.weights;
        let mut best: Option<(u64, u64)> = None;
        for (i, &weight) in weights.iter().enumerate() {
            if !usable(i) {
                continue;
            }
            let (l, w) = (u64::from(load(i)), u64::from(weight));
            if best.is_none_or(|(bl, bw)| l * bw < bl * w) {
                best = Some((l, w));
            }
        }
        let (best_load, best_weight) = best?;
        self.wrr.pick_where(|i| {
            usable(i) && u64::from(load(i)) * best_weight == best_load * u64::from(weights[i])
        })
    }
}

/// wyrand (Wang Yi's wyhash PRNG): one add and one 64×64→128 multiply per number, good
/// enough for load balancing and tiny. Each balancer owns one, so there is no shared or
/// locked random state on the request path.
#[derive(Debug)]
struct WyRand(u64);

impl WyRand {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.0) * u128::from(self.0 ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    }

    /// Uniform in `0..n` (`n > 0`), by Lemire's multiply-shift.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
}

/// A seed that differs between balancers, workers and processes: std's `RandomState` keys
/// (random per thread, bumped on every call, no lock), the thread id, and the time.
fn fresh_seed() -> u64 {
    let mut h = RandomState::new().build_hasher();
    std::thread::current().id().hash(&mut h);
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
        .hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::config::HashKey;
    use crate::upstream::hash_key::mix64;

    /// Policy, weights, usable, the picks wanted in order.
    type SequenceCase<'a> = (BalancePolicy, &'a [u32], &'a [bool], &'a [Option<usize>]);
    /// Weights, loads, usable, the endpoints that may be picked.
    type AllowedCase<'a> = (&'a [u32], &'a [u32], &'a [bool], &'a [usize]);
    /// Weights, loads, usable, the picks wanted in order.
    type LoadCase<'a> = (&'a [u32], &'a [u32], &'a [bool], &'a [Option<usize>]);

    fn endpoints(weights: &[u32]) -> Vec<Endpoint> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| Endpoint {
                addr: format!("10.0.0.{}:80", i + 1).parse().unwrap(),
                weight,
                hostname: None,
            })
            .collect()
    }

    fn balancer(policy: BalancePolicy, weights: &[u32]) -> Balancer {
        Balancer::with_seed(&policy, &endpoints(weights), None, 42)
    }

    fn picks(b: &mut Balancer, n: usize, loads: &[u32], usable: &[bool]) -> Vec<Option<usize>> {
        (0..n)
            .map(|_| b.pick(None, &|i| loads[i], &|i| usable[i]))
            .collect()
    }

    #[test]
    fn picks_follow_weights_smoothly() {
        let mut wrr = WeightedRoundRobin::new([5, 1, 1].into_iter());
        let picks: Vec<usize> = (0..7).map(|_| wrr.pick().unwrap()).collect();
        assert_eq!(picks, vec![0, 0, 1, 0, 2, 0, 0]);
        let mut counts = [0; 3];
        for _ in 0..700 {
            counts[wrr.pick().unwrap()] += 1;
        }
        assert_eq!(counts, [500, 100, 100]);
    }

    #[test]
    fn empty_has_no_pick() {
        assert_eq!(WeightedRoundRobin::new(std::iter::empty()).pick(), None);
        for policy in [
            BalancePolicy::RoundRobin,
            BalancePolicy::P2c,
            BalancePolicy::LeastConn,
            BalancePolicy::Hash(HashKey::Path),
        ] {
            let mut b = balancer(policy.clone(), &[]);
            assert_eq!(b.pick(Some(7), &|_| 0, &|_| true), None, "{policy:?}");
        }
    }

    #[test]
    fn round_robin_sequences() {
        let s = Some;
        let cases: &[SequenceCase<'_>] = &[
            (
                BalancePolicy::RoundRobin,
                &[5, 1, 1],
                &[true, true, true],
                &[s(0), s(0), s(1), s(0), s(2), s(0), s(0), s(0), s(0), s(1)],
            ),
            (
                BalancePolicy::RoundRobin,
                &[5, 1, 1],
                &[false, true, true],
                &[s(1), s(2), s(1), s(2), s(1), s(2)],
            ),
            (
                BalancePolicy::RoundRobin,
                &[5, 1, 1],
                &[true, false, true],
                &[s(0), s(0), s(0), s(2), s(0), s(0), s(0)],
            ),
            (
                BalancePolicy::RoundRobin,
                &[5, 1, 1],
                &[false, false, false],
                &[None, None],
            ),
            // The hash policy without a key is round-robin.
            (
                BalancePolicy::Hash(HashKey::ClientIp),
                &[5, 1, 1],
                &[true, true, true],
                &[s(0), s(0), s(1), s(0), s(2), s(0), s(0)],
            ),
            (
                BalancePolicy::Hash(HashKey::ClientIp),
                &[5, 1, 1],
                &[false, true, true],
                &[s(1), s(2), s(1), s(2)],
            ),
        ];
        for (policy, weights, usable, want) in cases {
            let mut b = balancer(policy.clone(), weights);
            let loads = vec![0; weights.len()];
            assert_eq!(
                picks(&mut b, want.len(), &loads, usable),
                *want,
                "{policy:?} {weights:?} {usable:?}"
            );
        }
    }

    #[test]
    fn round_robin_stays_smooth_as_endpoints_come_and_go() {
        let mut b = balancer(BalancePolicy::RoundRobin, &[5, 1, 1]);
        let loads = [0; 3];
        // Endpoint 0 out for a while, then back: the full cycle resumes.
        assert_eq!(picks(&mut b, 4, &loads, &[false, true, true]).len(), 4);
        let mut counts = [0usize; 3];
        for p in picks(&mut b, 700, &loads, &[true, true, true]) {
            counts[p.unwrap()] += 1;
        }
        assert!(
            counts
                .iter()
                .zip([500, 100, 100])
                .all(|(&c, w)| c.abs_diff(w) <= 2),
            "{counts:?}"
        );
        // Scores stay bounded however the usable set changes.
        let mut state = 7u64;
        for _ in 0..10_000 {
            state = mix64(state.wrapping_add(1));
            let usable = [state & 1 != 0, state & 2 != 0, state & 4 != 0];
            b.pick(None, &|_| 0, &|i| usable[i]);
            assert!(
                b.wrr.scores.iter().all(|s| s.abs() <= 14),
                "{:?}",
                b.wrr.scores
            );
        }
    }

    /// Counts of `n` picks under `loads`, every endpoint usable.
    fn counts(policy: BalancePolicy, weights: &[u32], loads: &[u32], n: usize) -> Vec<usize> {
        let mut b = balancer(policy, weights);
        let mut counts = vec![0; weights.len()];
        for p in picks(&mut b, n, loads, &vec![true; weights.len()]) {
            counts[p.unwrap()] += 1;
        }
        counts
    }

    #[test]
    fn p2c_distribution_follows_weights_at_equal_load() {
        // Idle endpoints, or loads in proportion to weights, tie: picks follow weights.
        let cases: &[(&[u32], &[u32])] = &[
            (&[1, 1, 1], &[0, 0, 0]),
            (&[1, 2, 3], &[0, 0, 0]),
            (&[1, 2, 3], &[2, 4, 6]),
            (&[5, 1, 1, 1], &[0, 0, 0, 0]),
        ];
        const N: usize = 60_000;
        for (weights, loads) in cases {
            let got = counts(BalancePolicy::P2c, weights, loads, N);
            let total: u32 = weights.iter().sum();
            for (i, &w) in weights.iter().enumerate() {
                let want = N as f64 * f64::from(w) / f64::from(total);
                assert!(
                    (got[i] as f64 - want).abs() <= want * 0.05,
                    "{weights:?} {loads:?}: {got:?}"
                );
            }
        }
    }

    #[test]
    fn p2c_prefers_the_lighter_of_two() {
        // `want`: the endpoints that may be picked (one: exactly that one; none: `None`).
        let cases: &[AllowedCase<'_>] = &[
            // Two endpoints: both are always drawn, so the lighter always wins.
            (&[1, 1], &[5, 0], &[true, true], &[1]),
            (&[1, 1], &[0, 5], &[true, true], &[0]),
            // Per unit of weight: 4/4 < 2/1.
            (&[1, 4], &[2, 4], &[true, true], &[1]),
            (&[1, 1, 1], &[0, 9, 9], &[false, true, true], &[1, 2]),
            (&[1, 1, 1], &[9, 0, 9], &[true, false, true], &[0, 2]),
            (&[1, 1, 1], &[0, 0, 0], &[false, false, true], &[2]),
            (&[1, 1, 1], &[0, 0, 0], &[false, false, false], &[]),
        ];
        for (weights, loads, usable, want) in cases {
            let mut b = balancer(BalancePolicy::P2c, weights);
            for got in picks(&mut b, 200, loads, usable) {
                let ok = match got {
                    Some(i) => want.contains(&i),
                    None => want.is_empty(),
                };
                assert!(ok, "{weights:?} {loads:?} {usable:?}: {got:?}");
            }
        }
        // Three equal endpoints, one idle: it wins whenever drawn, 2/3 of the time, and
        // the busy ones share the rest.
        let got = counts(BalancePolicy::P2c, &[1, 1, 1], &[10, 0, 10], 30_000);
        assert!(got[1].abs_diff(20_000) < 600, "{got:?}");
        assert!(
            got[0].abs_diff(5_000) < 400 && got[2].abs_diff(5_000) < 400,
            "{got:?}"
        );
    }

    #[test]
    fn least_conn_picks_the_least_loaded_and_rotates_ties() {
        let s = Some;
        let cases: &[LoadCase<'_>] = &[
            (
                &[1, 1, 1],
                &[3, 1, 2],
                &[true, true, true],
                &[s(1), s(1), s(1)],
            ),
            (&[1, 1, 1], &[3, 1, 2], &[true, false, true], &[s(2), s(2)]),
            // Per unit of weight: 3/3 < 2/1.
            (&[1, 3, 1], &[2, 3, 2], &[true, true, true], &[s(1), s(1)]),
            // Ties rotate.
            (
                &[1, 1, 1],
                &[0, 0, 0],
                &[true, true, true],
                &[s(0), s(1), s(2), s(0), s(1), s(2)],
            ),
            (
                &[1, 1, 1],
                &[4, 9, 4],
                &[true, true, true],
                &[s(0), s(2), s(0), s(2)],
            ),
            (
                &[1, 1, 1],
                &[0, 0, 0],
                &[true, false, true],
                &[s(0), s(2), s(0), s(2)],
            ),
            // Ties rotate in weighted round-robin order: 2/2 = 1/1.
            (
                &[2, 1],
                &[2, 1],
                &[true, true],
                &[s(0), s(1), s(0), s(0), s(1), s(0)],
            ),
            (&[1, 1], &[0, 0], &[false, false], &[None]),
        ];
        for (weights, loads, usable, want) in cases {
            let mut b = balancer(BalancePolicy::LeastConn, weights);
            assert_eq!(
                picks(&mut b, want.len(), loads, usable),
                *want,
                "{weights:?} {loads:?} {usable:?}"
            );
        }
    }

    #[test]
    fn hash_picks_are_stable_across_balancers() {
        let weights = [1, 2, 1];
        let eps = endpoints(&weights);
        let policy = BalancePolicy::Hash(HashKey::Header("x-user".into()));
        // Different seeds: as on different workers, or in different processes.
        let mut a = Balancer::with_seed(&policy, &eps, None, 1);
        let mut b = Balancer::new(&policy, &eps, None);
        // The table the snapshot carries: held, not copied, and the same picks.
        let table = Arc::new(Maglev::new(&eps));
        let mut c = Balancer::new(&policy, &eps, Some(&table));
        assert_eq!(Arc::strong_count(&table), 2);
        let usable_sets: &[[bool; 3]] = &[
            [true, true, true],
            [true, false, true],
            [false, false, true],
        ];
        for usable in usable_sets {
            for k in 0..2_000u64 {
                let key = mix64(k);
                let got = a.pick(Some(key), &|_| 0, &|i| usable[i]);
                assert_eq!(got, b.pick(Some(key), &|_| 9, &|i| usable[i]), "{usable:?}");
                assert_eq!(got, c.pick(Some(key), &|_| 0, &|i| usable[i]), "{usable:?}");
                assert!(got.is_some_and(|i| usable[i]), "{usable:?}: {got:?}");
            }
        }
        assert_eq!(a.pick(Some(1), &|_| 0, &|_| false), None);
    }
}
