//! Active health state shared between the checker thread and the workers.
//!
//! The checker thread (`crate::upstream::health_checker`) probes endpoints and writes one
//! [`EndpointHealth`] flag per endpoint; a worker reads it with one atomic load when it picks
//! an endpoint for a request. The same entry counts the probes that passed while the
//! endpoint was healthy, which ends a passive ejection early on every worker (see
//! [`super::outlier`]). The [`HealthRegistry`] hands out those flags: one per
//! (upstream name, endpoint address), shared by every worker and the checker, so that all
//! of them see the same verdict.
//!
//! Invariants:
//! - Endpoints start healthy: a new endpoint takes traffic until checks say otherwise, and
//!   an upstream without active checks is always healthy.
//! - The registry's mutex is taken when a worker rebuilds its upstream state (a reload), by
//!   the checker once per probe round, and by the admin API; never per request.
//! - An entry lives as long as its endpoint stays configured, across reloads, so that a
//!   reload does not forget that an endpoint is down.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;

use crate::config::Config;

/// The active-check verdict for one endpoint: healthy until the checker says otherwise.
#[derive(Debug)]
pub struct EndpointHealth {
    healthy: AtomicBool,
    /// Probes that passed and left the endpoint healthy (see [`EndpointHealth::passes`]).
    passes: AtomicU64,
}

impl EndpointHealth {
    pub fn new() -> Self {
        EndpointHealth {
            healthy: AtomicBool::new(true),
            passes: AtomicU64::new(0),
        }
    }

    /// One atomic load: cheap enough for the request path.
    #[inline]
    pub fn is_healthy(&self) -> bool {
        // Relaxed is enough: the flag guards no other data, and a worker seeing a change a
        // few requests late is harmless.
        self.healthy.load(Ordering::Relaxed)
    }

    /// Sets the verdict; returns whether it changed.
    pub fn set_healthy(&self, healthy: bool) -> bool {
        self.healthy.swap(healthy, Ordering::Relaxed) != healthy
    }

    /// Counts one probe that passed with the endpoint healthy afterwards (checker thread).
    pub fn record_pass(&self) {
        self.passes.fetch_add(1, Ordering::Relaxed);
    }

    /// How many probes passed with the endpoint healthy afterwards. A worker compares it
    /// with the count taken when it ejected the endpoint: a change means an active check
    /// passed since, which ends the ejection. Only ever goes up (0 without active checks).
    #[inline]
    pub fn passes(&self) -> u64 {
        // Relaxed, like `is_healthy`: the count guards no other data.
        self.passes.load(Ordering::Relaxed)
    }
}

impl Default for EndpointHealth {
    fn default() -> Self {
        EndpointHealth::new()
    }
}

type Key = (String, SocketAddr);

/// One [`EndpointHealth`] per (upstream name, endpoint address), shared by all workers.
#[derive(Debug, Default)]
pub struct HealthRegistry {
    entries: Mutex<HashMap<Key, Arc<EndpointHealth>>>,
}

impl HealthRegistry {
    pub fn new() -> Self {
        HealthRegistry::default()
    }

    /// The flag of `addr` in upstream `upstream`, created healthy when it is new.
    pub fn endpoint(&self, upstream: &str, addr: SocketAddr) -> Arc<EndpointHealth> {
        self.lock()
            .entry((upstream.to_owned(), addr))
            .or_insert_with(|| Arc::new(EndpointHealth::new()))
            .clone()
    }

    /// The flag of `addr` in upstream `upstream`, if the registry has one.
    pub fn get(&self, upstream: &str, addr: SocketAddr) -> Option<Arc<EndpointHealth>> {
        self.lock().get(&(upstream.to_owned(), addr)).cloned()
    }

    /// Every known endpoint and whether it is healthy, sorted by upstream then address
    /// (for the admin API).
    pub fn states(&self) -> Vec<(String, SocketAddr, bool)> {
        let mut states: Vec<_> = self
            .lock()
            .iter()
            .map(|((name, addr), health)| (name.clone(), *addr, health.is_healthy()))
            .collect();
        states.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        states
    }

    /// Drops the entries of endpoints `config` no longer has, and marks healthy the
    /// endpoints of upstreams that no longer have active checks (nothing would ever mark
    /// them healthy again otherwise).
    ///
    /// Prefer [`HealthRegistry::retain_current`] when the config comes from the shared
    /// cell: with a snapshot loaded before the lock, a worker that already serves a newer
    /// snapshot could insert an entry this call then drops, leaving that worker with a flag
    /// nobody updates.
    pub fn retain(&self, config: &Config) {
        let mut entries = self.lock();
        retain_locked(&mut entries, config);
    }

    /// [`HealthRegistry::retain`] against the snapshot in `shared`, loaded under the lock:
    /// a worker inserts only for a snapshot it loaded, so it cannot race with this.
    pub fn retain_current(&self, shared: &ArcSwap<Config>) {
        let mut entries = self.lock();
        let config = shared.load();
        retain_locked(&mut entries, &config);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Arc<EndpointHealth>>> {
        // Every update under this lock is a whole insert or remove: a panic cannot leave the
        // map half-written, so poisoning is ignored.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn retain_locked(entries: &mut HashMap<Key, Arc<EndpointHealth>>, config: &Config) {
    entries.retain(|(name, addr), health| {
        let Some(upstream) = config.upstreams.iter().find(|u| u.name == *name) else {
            return false;
        };
        if !upstream.endpoints.iter().any(|e| e.addr == *addr) {
            return false;
        }
        if upstream.health.is_none() && health.set_healthy(true) {
            tracing::info!(
                upstream = %name,
                endpoint = %addr,
                "active health checks removed: endpoint marked healthy"
            );
        }
        true
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load_str, HealthCheckConfig};
    use std::time::Duration;

    fn config(endpoints: &[&str]) -> Config {
        let list = endpoints
            .iter()
            .map(|e| format!("\"{e}\""))
            .collect::<Vec<_>>()
            .join(", ");
        load_str(
            &format!(
                "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstreams.app]\nendpoints = [{list}]\n\
                 [[routes]]\npath = \"/\"\nupstream = \"app\"\n"
            ),
            "test.toml",
        )
        .unwrap()
    }

    fn checked(mut config: Config) -> Config {
        config.upstreams[0].health = Some(HealthCheckConfig {
            method: "GET".into(),
            path: "/health".into(),
            host: None,
            expect: vec![(200, 399)],
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            healthy_threshold: 1,
            unhealthy_threshold: 1,
        });
        config
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn set_healthy_reports_changes_only() {
        let h = EndpointHealth::new();
        assert!(h.is_healthy());
        assert!(!h.set_healthy(true));
        assert!(h.set_healthy(false));
        assert!(!h.is_healthy());
        assert!(!h.set_healthy(false));
        assert!(h.set_healthy(true));
        assert!(h.is_healthy());
    }

    #[test]
    fn passes_count_up_and_are_shared() {
        let registry = HealthRegistry::new();
        let a = registry.endpoint("app", addr("127.0.0.1:1"));
        let b = registry.endpoint("app", addr("127.0.0.1:1"));
        assert_eq!(a.passes(), 0);
        a.record_pass();
        a.record_pass();
        assert_eq!(b.passes(), 2);
        // The verdict and the count are independent.
        assert!(b.is_healthy());
        assert_eq!(registry.endpoint("app", addr("127.0.0.1:2")).passes(), 0);
    }

    #[test]
    fn endpoint_is_shared_per_upstream_and_address() {
        let registry = HealthRegistry::new();
        let a = registry.endpoint("app", addr("127.0.0.1:1"));
        let b = registry.endpoint("app", addr("127.0.0.1:1"));
        assert!(Arc::ptr_eq(&a, &b));
        let other_upstream = registry.endpoint("other", addr("127.0.0.1:1"));
        assert!(!Arc::ptr_eq(&a, &other_upstream));
        a.set_healthy(false);
        assert!(!b.is_healthy());
        assert!(other_upstream.is_healthy());
        assert_eq!(
            registry.states(),
            vec![
                ("app".to_string(), addr("127.0.0.1:1"), false),
                ("other".to_string(), addr("127.0.0.1:1"), true),
            ]
        );
    }

    #[test]
    fn retain_keeps_configured_endpoints_and_their_state() {
        let registry = HealthRegistry::new();
        let kept = registry.endpoint("app", addr("127.0.0.1:1"));
        kept.set_healthy(false);
        registry.endpoint("app", addr("127.0.0.1:2"));
        registry.endpoint("gone", addr("127.0.0.1:1"));
        registry.retain(&checked(config(&["127.0.0.1:1", "127.0.0.1:3"])));
        assert_eq!(
            registry.states(),
            vec![("app".to_string(), addr("127.0.0.1:1"), false)]
        );
        // The same flag is handed out again: the state survived the reload.
        assert!(Arc::ptr_eq(
            &kept,
            &registry.endpoint("app", addr("127.0.0.1:1"))
        ));
    }

    #[test]
    fn retain_marks_healthy_when_checks_are_removed() {
        let registry = HealthRegistry::new();
        let flag = registry.endpoint("app", addr("127.0.0.1:1"));
        flag.set_healthy(false);
        registry.retain(&checked(config(&["127.0.0.1:1"])));
        assert!(!flag.is_healthy());
        let shared = ArcSwap::from_pointee(config(&["127.0.0.1:1"]));
        registry.retain_current(&shared);
        assert!(flag.is_healthy());
        assert_eq!(registry.len(), 1);
    }
}
