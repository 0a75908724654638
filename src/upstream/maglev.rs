//! Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable Software
//! Network Load Balancer", NSDI 2016, §3.4) for `balance = hash` upstreams.
//!
//! Built by the control plane once per upstream when a config snapshot is published, and
//! shared by every worker through the snapshot (an upstream whose endpoints a reload leaves
//! alone keeps its table; see [`super::shared`]); never built on the request path. A pick is
//! then `table[key % M]`, O(1) and allocation-free.
//!
//! Why Maglev rather than a hash ring or rendezvous hashing:
//! - minimal disruption: removing an endpoint remaps (almost) only the keys it held, and
//!   adding one takes ≈ 1/(n+1) of the keys, taken evenly from the others;
//! - even spread: every endpoint gets its weighted share of the table to within a slot or
//!   two, where a ring needs many virtual nodes to get close;
//! - O(1) lookup into one flat array of `u16` indices (128 KiB at the usual size).
//!
//! Invariant: the table depends only on the endpoints' addresses and weights, never on
//! their order in the config, on the worker, or on the process. Permutations come from
//! [`stable_hash`] of the address text (no per-process seed), endpoints take their turns in
//! the order of their address text, and the table size depends only on the endpoint count
//! in coarse steps. So every worker, every reload and every restart sends a key to the same
//! endpoint.

use super::config::Endpoint;

use super::hash_key::{mix64, stable_hash};

/// Table sizes: the first prime above each power of two from 2^16. The size must not change
/// when an endpoint comes or goes (a new size remaps nearly every key), so it moves in
/// coarse steps; 65537 serves up to 655 endpoints, which is Envoy's default Maglev size too.
const TABLE_SIZES: [usize; 9] = [
    65_537, 131_101, 262_147, 524_309, 1_048_583, 2_097_169, 4_194_319, 8_388_617, 16_777_259,
];

/// Maglev's disruption and balance bounds hold when the table is much larger than the
/// endpoint count; the paper uses M ≥ 100·N.
const MIN_SLOTS_PER_ENDPOINT: usize = 100;

/// How many table slots a lookup walks past an unusable endpoint before it falls back to
/// rendezvous hashing over the usable endpoints. Consecutive slots belong to endpoints in
/// proportion to their share, so the walk ends after 1/(usable share) steps on average; the
/// fallback only matters when nearly every endpoint is out.
const MAX_WALK: usize = 64;

/// Endpoint indices, in the narrowest type that holds them.
#[derive(Debug)]
enum Slots {
    Narrow(Box<[u16]>),
    Wide(Box<[u32]>),
}

#[derive(Debug)]
pub struct Maglev {
    slots: Slots,
    /// `stable_hash` of each endpoint's address, indexed like the endpoints: the rendezvous
    /// fallback's per-endpoint salt.
    ids: Box<[u64]>,
}

/// One endpoint's state while the table fills.
struct Filler {
    index: usize,
    /// Next slot of this endpoint's permutation: `offset + j·skip mod M` for turn `j`.
    next: usize,
    skip: usize,
    weight: u64,
    credit: u64,
}

impl Maglev {
    pub fn new(endpoints: &[Endpoint]) -> Maglev {
        let names: Vec<String> = endpoints.iter().map(|e| e.addr.to_string()).collect();
        let ids: Box<[u64]> = names.iter().map(|n| stable_hash(n.as_bytes())).collect();
        let size = if endpoints.is_empty() {
            0
        } else {
            table_size(endpoints.len())
        };
        let mut table: Vec<u32> = vec![u32::MAX; size];
        if !endpoints.is_empty() {
            // Turn order by address text (then index, for duplicate addresses): the table
            // must not depend on the order endpoints are listed in.
            let mut order: Vec<usize> = (0..endpoints.len()).collect();
            order.sort_by(|&a, &b| names[a].cmp(&names[b]).then(a.cmp(&b)));
            let m = size as u64;
            let mut fillers: Vec<Filler> = order
                .into_iter()
                .map(|index| {
                    let h = ids[index];
                    Filler {
                        index,
                        next: (h % m) as usize,
                        skip: (mix64(h ^ 0x9e37_79b9_7f4a_7c15) % (m - 1) + 1) as usize,
                        weight: u64::from(endpoints[index].weight.max(1)),
                        credit: 0,
                    }
                })
                .collect();
            fill(&mut table, &mut fillers);
        }
        let slots = if endpoints.len() <= usize::from(u16::MAX) {
            Slots::Narrow(table.iter().map(|&i| i as u16).collect())
        } else {
            Slots::Wide(table.into_boxed_slice())
        };
        Maglev { slots, ids }
    }

    /// M, the number of table slots.
    pub fn table_size(&self) -> usize {
        match &self.slots {
            Slots::Narrow(s) => s.len(),
            Slots::Wide(s) => s.len(),
        }
    }

    fn slot(&self, i: usize) -> usize {
        match &self.slots {
            Slots::Narrow(s) => usize::from(s[i]),
            Slots::Wide(s) => s[i] as usize,
        }
    }

    /// The endpoint that owns `key` when every endpoint is usable.
    pub fn lookup(&self, key: u64) -> Option<usize> {
        if self.ids.is_empty() {
            return None;
        }
        Some(self.slot((key % self.table_size() as u64) as usize))
    }

    /// The endpoint for `key` among the usable ones: the owner of `table[key % M]`, else the
    /// owner of the next slot whose endpoint is usable, else (after [`MAX_WALK`] slots) the
    /// usable endpoint with the highest rendezvous score for `key`. Deterministic: the same
    /// key and the same usable set give the same endpoint on every worker. Keys whose owner
    /// is usable never move.
    pub fn pick(&self, key: u64, usable: &dyn Fn(usize) -> bool) -> Option<usize> {
        if self.ids.is_empty() {
            return None;
        }
        let size = self.table_size();
        let start = (key % size as u64) as usize;
        for step in 0..MAX_WALK.min(size) {
            let at = start + step;
            let endpoint = self.slot(if at >= size { at - size } else { at });
            if usable(endpoint) {
                return Some(endpoint);
            }
        }
        (0..self.ids.len())
            .filter(|&i| usable(i))
            .max_by_key(|&i| mix64(key ^ self.ids[i]))
    }
}

/// The table size for `endpoints` endpoints: the smallest of [`TABLE_SIZES`] with at least
/// [`MIN_SLOTS_PER_ENDPOINT`] slots each (the largest past 167,772 endpoints).
fn table_size(endpoints: usize) -> usize {
    let want = endpoints.saturating_mul(MIN_SLOTS_PER_ENDPOINT);
    TABLE_SIZES
        .iter()
        .copied()
        .find(|&m| m >= want)
        .unwrap_or(TABLE_SIZES[TABLE_SIZES.len() - 1])
}

/// Maglev's population loop (the paper's Pseudocode 1) with weights: in each pass over the
/// endpoints, an endpoint of the highest weight takes one turn and one of weight `w` takes
/// `w / max_weight` of a turn (credit carried over), so over `max_weight` passes each
/// endpoint takes `w` turns. A turn claims the first still-empty slot of the endpoint's
/// permutation. Every turn fills one slot, so shares follow weights exactly up to rounding.
fn fill(table: &mut [u32], fillers: &mut [Filler]) {
    let size = table.len();
    let max_weight = fillers.iter().map(|f| f.weight).max().unwrap_or(1);
    let mut filled = 0;
    while filled < size {
        for f in fillers.iter_mut() {
            f.credit += f.weight;
            if f.credit < max_weight {
                continue;
            }
            f.credit -= max_weight;
            // The permutation visits every slot once per M steps (M prime, 0 < skip < M)
            // and a slot is empty, so this ends within M steps.
            while table[f.next] != u32::MAX {
                f.next += f.skip;
                if f.next >= size {
                    f.next -= size;
                }
            }
            table[f.next] = f.index as u32;
            filled += 1;
            if filled == size {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(spec: &[(&str, u32)]) -> Vec<Endpoint> {
        spec.iter()
            .map(|&(addr, weight)| Endpoint {
                addr: addr.parse().unwrap(),
                weight,
                hostname: None,
            })
            .collect()
    }

    /// Endpoint addresses and weights.
    type Spec = &'static [(&'static str, u32)];

    /// Deterministic pseudo-random keys (splitmix64).
    fn keys(n: usize) -> impl Iterator<Item = u64> {
        let mut state = 0x1234_5678_u64;
        (0..n).map(move |_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            mix64(state)
        })
    }

    fn addr_of(eps: &[Endpoint], maglev: &Maglev, key: u64) -> std::net::SocketAddr {
        eps[maglev.lookup(key).unwrap()].addr
    }

    const A: &str = "10.0.0.1:80";
    const B: &str = "10.0.0.2:80";
    const C: &str = "10.0.0.3:80";
    const D: &str = "10.0.0.4:80";

    #[test]
    fn table_shares_and_key_spread_follow_weights() {
        let cases: &[&[(&str, u32)]] = &[
            &[(A, 1), (B, 1), (C, 1)],
            &[(A, 1), (B, 2), (C, 3)],
            &[(A, 5), (B, 1), (C, 1)],
            &[(A, 1000), (B, 1), (C, 1)],
        ];
        for spec in cases {
            let eps = endpoints(spec);
            let maglev = Maglev::new(&eps);
            let size = maglev.table_size();
            let total: u32 = spec.iter().map(|s| s.1).sum();
            let mut slots = vec![0usize; eps.len()];
            for i in 0..size {
                slots[maglev.slot(i)] += 1;
            }
            let mut hits = vec![0usize; eps.len()];
            for key in keys(10_000) {
                hits[maglev.lookup(key).unwrap()] += 1;
            }
            for (i, &(_, w)) in spec.iter().enumerate() {
                let share = f64::from(w) / f64::from(total);
                let slot_share = slots[i] as f64 / size as f64;
                assert!(
                    (slot_share - share).abs() * (size as f64) < 2.0,
                    "{spec:?} {slots:?}"
                );
                let want = 10_000.0 * share;
                // ±10% of the expected count (or a few keys, for a tiny share).
                let tolerance = (want * 0.10).max(10.0);
                assert!(
                    (hits[i] as f64 - want).abs() <= tolerance,
                    "{spec:?}: endpoint {i} got {} of 10000, want {want}",
                    hits[i]
                );
            }
        }
    }

    #[test]
    fn removing_an_endpoint_keeps_the_others_keys() {
        let before = endpoints(&[(A, 1), (B, 1), (C, 1)]);
        let after = endpoints(&[(A, 1), (C, 1)]);
        let (old, new) = (Maglev::new(&before), Maglev::new(&after));
        let (mut survivors, mut stayed) = (0, 0);
        for key in keys(10_000) {
            let was = addr_of(&before, &old, key);
            let now = addr_of(&after, &new, key);
            if was != before[1].addr {
                survivors += 1;
                stayed += usize::from(was == now);
            }
        }
        assert!(
            stayed * 100 >= survivors * 90,
            "only {stayed} of {survivors} keys on surviving endpoints stayed"
        );
    }

    #[test]
    fn adding_an_endpoint_moves_about_its_share() {
        let cases: &[(Spec, Spec)] = &[
            (&[(A, 1), (B, 1), (C, 1)], &[(A, 1), (B, 1), (C, 1), (D, 1)]),
            (&[(A, 1), (B, 1)], &[(A, 1), (B, 1), (C, 1)]),
            (&[(B, 1)], &[(A, 1), (B, 1)]),
        ];
        for (before, after) in cases {
            let (be, ae) = (endpoints(before), endpoints(after));
            let (old, new) = (Maglev::new(&be), Maglev::new(&ae));
            let n = keys(10_000)
                .filter(|&k| addr_of(&be, &old, k) != addr_of(&ae, &new, k))
                .count();
            let moved = n as f64 / 10_000.0;
            let bound = 1.0 / ae.len() as f64 + 0.10;
            assert!(
                moved <= bound,
                "{before:?} → {after:?}: moved {moved}, bound {bound}"
            );
            // The keys that moved went to the new endpoint (almost all of them).
            let to_new = keys(10_000)
                .filter(|&k| addr_of(&be, &old, k) != addr_of(&ae, &new, k))
                .filter(|&k| !be.iter().any(|e| e.addr == addr_of(&ae, &new, k)))
                .count();
            assert!(to_new * 100 >= n * 90, "{before:?} → {after:?}");
        }
    }

    #[test]
    fn same_endpoints_in_any_order_give_the_same_mapping() {
        let orders: &[&[(&str, u32)]] = &[
            &[(A, 1), (B, 2), (C, 1)],
            &[(C, 1), (A, 1), (B, 2)],
            &[(B, 2), (C, 1), (A, 1)],
        ];
        let reference = endpoints(orders[0]);
        let reference_table = Maglev::new(&reference);
        for spec in orders {
            let eps = endpoints(spec);
            let maglev = Maglev::new(&eps);
            for key in keys(2_000) {
                assert_eq!(
                    addr_of(&eps, &maglev, key),
                    addr_of(&reference, &reference_table, key),
                    "{spec:?} key {key}"
                );
            }
        }
        // Pinned: a change to the table construction remaps every hashed client.
        let pinned: Vec<usize> = [0u64, 1, 2, 65_536, 1 << 40]
            .iter()
            .map(|&k| reference_table.lookup(k).unwrap())
            .collect();
        assert_eq!(pinned, PINNED);
    }

    const PINNED: [usize; 5] = [2, 2, 1, 2, 0];

    #[test]
    fn unusable_endpoints_are_walked_past_deterministically() {
        let eps = endpoints(&[(A, 1), (B, 1), (C, 1)]);
        let maglev = Maglev::new(&eps);
        let again = Maglev::new(&eps);
        let cases: &[(&[bool], &[usize])] = &[
            (&[true, true, true], &[0, 1, 2]),
            (&[false, true, true], &[1, 2]),
            (&[true, false, true], &[0, 2]),
            (&[false, false, true], &[2]),
            (&[false, false, false], &[]),
        ];
        for (usable, allowed) in cases {
            let usable_fn = |i: usize| usable[i];
            let mut seen = [0usize; 3];
            for key in keys(3_000) {
                let got = maglev.pick(key, &usable_fn);
                assert_eq!(got, again.pick(key, &usable_fn), "{usable:?}");
                assert_eq!(got, maglev.pick(key, &usable_fn), "{usable:?}");
                let owner = maglev.lookup(key).unwrap();
                if usable[owner] {
                    assert_eq!(got, Some(owner), "{usable:?}: a usable owner keeps its key");
                }
                match got {
                    Some(i) => {
                        assert!(allowed.contains(&i), "{usable:?} picked {i}");
                        seen[i] += 1;
                    }
                    None => assert!(allowed.is_empty()),
                }
            }
            // The keys of an unusable endpoint spread over the usable ones.
            for &i in *allowed {
                assert!(seen[i] > 0, "{usable:?}: {seen:?}");
            }
        }
    }

    #[test]
    fn walk_falls_back_when_almost_everything_is_out() {
        // 200 endpoints, one usable: most walks of MAX_WALK slots miss it.
        let spec: Vec<(String, u32)> = (0..200)
            .map(|i| (format!("10.0.{}.{}:80", i / 250, i % 250), 1))
            .collect();
        let spec: Vec<(&str, u32)> = spec.iter().map(|(a, w)| (a.as_str(), *w)).collect();
        let eps = endpoints(&spec);
        let maglev = Maglev::new(&eps);
        for key in keys(500) {
            assert_eq!(maglev.pick(key, &|i| i == 137), Some(137));
        }
    }

    #[test]
    fn table_sizes_are_prime_and_large_enough() {
        let is_prime = |n: usize| {
            n > 1
                && (2..)
                    .take_while(|d| d * d <= n)
                    .all(|d| !n.is_multiple_of(d))
        };
        for &m in &TABLE_SIZES {
            assert!(is_prime(m), "{m}");
        }
        let cases: &[(usize, usize)] = &[
            (0, 65_537),
            (1, 65_537),
            (655, 65_537),
            (656, 131_101),
            (200_000, 16_777_259),
        ];
        for &(n, want) in cases {
            assert_eq!(table_size(n), want, "{n} endpoints");
        }
        assert_eq!(Maglev::new(&[]).lookup(7), None);
        assert_eq!(Maglev::new(&[]).pick(7, &|_| true), None);
    }
}
