//! What every worker needs of one upstream and that is the same on all of them: the Maglev
//! table of a hash-balanced upstream and each endpoint's active-health flag. It rides in the
//! config snapshot ([`UpstreamConfig::shared`]), so a worker that takes up a new snapshot
//! finds it ready: its first request after a reload builds no table and takes no lock.
//!
//! The control plane (`control/`) fills it in before it publishes a snapshot: the tables
//! through [`share_tables`], the flags through [`super::HealthRegistry::publish`]. The
//! config build leaves it empty: the build stays pure (the flags are process state it cannot
//! see), and the many builds that are never served (`--check`, a re-resolution that finds
//! nothing new, a refused registration) build no table.
//!
//! Invariants: immutable once published (the flags are atomics only the checker and the
//! control plane write). A table is a function of the endpoints' addresses and weights in
//! their order, so an upstream whose endpoints a reload leaves alone keeps the very same
//! table (`Arc`), and any change to them gets a new one.

use std::fmt;
use std::sync::Arc;

use super::config::{BalancePolicy, Endpoint, UpstreamConfig};
use super::health::EndpointHealth;
use super::maglev::Maglev;

/// One upstream's part of the snapshot that workers share; see the module doc.
#[derive(Clone, Default)]
pub struct SharedUpstream {
    /// The Maglev table, for an upstream under the hash policy.
    pub(super) maglev: Option<Arc<Maglev>>,
    /// Each endpoint's active-health flag, indexed like `UpstreamConfig::endpoints`.
    pub(super) health: Box<[Arc<EndpointHealth>]>,
}

impl SharedUpstream {
    /// The Maglev table, when the upstream is hash-balanced.
    pub fn maglev(&self) -> Option<&Arc<Maglev>> {
        self.maglev.as_ref()
    }

    /// The active-health flag of endpoint `endpoint`, shared with the checker thread.
    pub fn health(&self, endpoint: usize) -> Option<&Arc<EndpointHealth>> {
        self.health.get(endpoint)
    }

    /// Whether endpoint `endpoint` passes active health checks: one atomic load. An endpoint
    /// without a flag (a config the control plane never published) is healthy, as every
    /// endpoint is until checks say otherwise.
    #[inline]
    pub fn is_healthy(&self, endpoint: usize) -> bool {
        self.health.get(endpoint).is_none_or(|h| h.is_healthy())
    }
}

impl fmt::Debug for SharedUpstream {
    // Not derived: the table has tens of thousands of slots.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedUpstream")
            .field(
                "maglev_slots",
                &self.maglev.as_ref().map(|m| m.table_size()),
            )
            .field("health", &self.health)
            .finish()
    }
}

/// Gives each hash-balanced upstream of `upstreams` its Maglev table: the one an upstream of
/// `previous` (the snapshot being replaced) built for the same endpoints, else a new one.
/// Other upstreams get none. Runs on the control plane, before the snapshot is published.
pub fn share_tables(upstreams: &mut [UpstreamConfig], previous: &[UpstreamConfig]) {
    for upstream in upstreams {
        upstream.shared.maglev = match upstream.balance {
            BalancePolicy::Hash(_) => Some(
                previous
                    .iter()
                    .filter(|p| same_table_input(&p.endpoints, &upstream.endpoints))
                    .find_map(|p| p.shared.maglev.clone())
                    .unwrap_or_else(|| Arc::new(Maglev::new(&upstream.endpoints))),
            ),
            BalancePolicy::RoundRobin | BalancePolicy::P2c | BalancePolicy::LeastConn => None,
        };
    }
}

/// Whether a table built for `a` serves `b`: the same addresses and weights in the same
/// order (a table holds endpoint indices). Host names do not enter the table.
fn same_table_input(a: &[Endpoint], b: &[Endpoint]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.addr == y.addr && x.weight == y.weight)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    /// The upstreams of a config with upstream `app` balanced as `balance` says (TOML lines)
    /// over `endpoints` (TOML array items), and upstream `other` by hash over one endpoint.
    fn upstreams(balance: &str, endpoints: &str) -> Vec<UpstreamConfig> {
        load_str(
            &format!(
                "[server]\nlisten = [\"127.0.0.1:0\"]\n\
                 [upstreams.app]\nendpoints = [{endpoints}]\n{balance}\n\
                 [upstreams.other]\nendpoints = [\"10.0.9.1:80\"]\n\
                 balance = \"hash\"\nhash_key = \"path\"\n"
            ),
            "test.toml",
        )
        .unwrap()
        .upstreams
    }

    const HASH: &str = "balance = \"hash\"\nhash_key = \"client_ip\"";
    const TWO: &str = "\"10.0.0.1:80\", \"10.0.0.2:80\"";

    fn table(upstream: &UpstreamConfig) -> &Arc<Maglev> {
        upstream
            .shared
            .maglev()
            .expect("a hash upstream has a table")
    }

    #[test]
    fn identical_endpoints_keep_the_table_and_changed_ones_get_a_new_one() {
        let mut old = upstreams(HASH, TWO);
        share_tables(&mut old, &[]);
        let cases: &[(&str, &str, &str, bool)] = &[
            ("identical", HASH, TWO, true),
            (
                "another hash key",
                "balance = \"hash\"\nhash_key = \"path\"",
                TWO,
                true,
            ),
            (
                "a weight changed",
                HASH,
                "\"10.0.0.1:80\", { addr = \"10.0.0.2:80\", weight = 2 }",
                false,
            ),
            (
                "an address changed",
                HASH,
                "\"10.0.0.1:80\", \"10.0.0.3:80\"",
                false,
            ),
            (
                "an endpoint added",
                HASH,
                "\"10.0.0.1:80\", \"10.0.0.2:80\", \"10.0.0.3:80\"",
                false,
            ),
            ("an endpoint removed", HASH, "\"10.0.0.1:80\"", false),
            // Same mapping by address, but the table holds indices.
            ("reordered", HASH, "\"10.0.0.2:80\", \"10.0.0.1:80\"", false),
        ];
        for &(what, balance, endpoints, reused) in cases {
            let mut new = upstreams(balance, endpoints);
            share_tables(&mut new, &old);
            assert_eq!(
                Arc::ptr_eq(table(&old[0]), table(&new[0])),
                reused,
                "{what}"
            );
            // The untouched upstream keeps its table whatever happened to the other one.
            assert!(Arc::ptr_eq(table(&old[1]), table(&new[1])), "{what}");
            if !reused {
                let fresh = Maglev::new(&new[0].endpoints);
                assert!(
                    (0..1000u64).all(|k| table(&new[0]).lookup(k) == fresh.lookup(k)),
                    "{what}: the new table is the one of the new endpoints"
                );
            }
        }
    }

    #[test]
    fn only_hash_upstreams_get_a_table() {
        let mut old = upstreams("balance = \"round_robin\"", TWO);
        share_tables(&mut old, &[]);
        assert!(old[0].shared.maglev().is_none());
        for balance in [
            "balance = \"round_robin\"",
            "balance = \"p2c\"",
            "balance = \"least_conn\"",
        ] {
            let mut new = upstreams(balance, TWO);
            share_tables(&mut new, &[]);
            assert!(new[0].shared.maglev().is_none(), "{balance}");
        }
        // Switching to hash builds one, though the endpoints did not change.
        let mut new = upstreams(HASH, TWO);
        share_tables(&mut new, &old);
        assert_eq!(
            table(&new[0]).lookup(7),
            Maglev::new(&new[0].endpoints).lookup(7)
        );
    }

    #[test]
    fn an_unpublished_config_has_no_flags_and_is_healthy() {
        let upstreams = upstreams(HASH, TWO);
        let shared = &upstreams[0].shared;
        assert!(shared.health(0).is_none());
        assert!(shared.is_healthy(0) && shared.is_healthy(1));
    }
}
