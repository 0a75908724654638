//! Active health state shared between the checker thread and the workers.
//!
//! The checker thread (`crate::upstream::health_checker`) probes endpoints and writes one
//! [`EndpointHealth`] flag per endpoint; a worker reads it with one atomic load when it picks
//! an endpoint for a request. The same entry counts the probes that passed while the
//! endpoint was healthy, which ends a passive ejection early on every worker (see
//! [`super::outlier`]). The [`HealthRegistry`] hands out those flags: one per
//! (upstream name, endpoint address), shared by every worker and the checker, so that all
//! of them see the same verdict. The control plane attaches each endpoint's flag to the
//! config snapshot before publishing it ([`HealthRegistry::publish`]); workers read the
//! flags through the snapshot and never see the registry.
//!
//! Invariants:
//! - Endpoints start healthy: a new endpoint takes traffic until checks say otherwise, and
//!   an upstream without active checks is always healthy.
//! - The registry's mutex is taken by the control plane when it publishes a snapshot, by
//!   the checker once per probe round, and by the admin API; never by a worker.
//! - An entry lives as long as its endpoint stays configured, across reloads, so that a
//!   reload does not forget that an endpoint is down.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;

use super::config::UpstreamConfig;
use super::Snapshot;

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

    /// Gives each endpoint of `upstreams` its flag (in `UpstreamConfig::shared`), for a
    /// config nobody else sees yet: the first one, before the shared cell exists.
    pub fn attach(&self, upstreams: &mut [UpstreamConfig]) {
        attach_locked(&mut self.lock(), upstreams);
    }

    /// Publishes `config` in `shared`: gives each endpoint its flag (the one the registry
    /// already holds for that upstream name and address, so a reload keeps verdicts), drops
    /// the entries of endpoints `config` no longer has, marks healthy the endpoints of
    /// upstreams that no longer have active checks (nothing would ever mark them healthy
    /// again otherwise), then stores it.
    ///
    /// All under the lock: a [`HealthRegistry::retain_current`] between the attach and the
    /// store would judge against the old snapshot and drop the new endpoints' entries, and
    /// the checker would then write flags that no worker reads.
    pub fn publish<S: Snapshot>(&self, mut config: S, shared: &ArcSwap<S>) {
        let mut entries = self.lock();
        retain_locked(&mut entries, config.upstreams());
        attach_locked(&mut entries, config.upstreams_mut());
        shared.store(Arc::new(config));
    }

    /// Drops the entries of endpoints the snapshot in `shared` no longer has, and marks
    /// healthy the endpoints of upstreams that no longer have active checks; the snapshot is
    /// loaded under the lock, so that it cannot be older than one [`Self::publish`] stored.
    pub fn retain_current<S: Snapshot>(&self, shared: &ArcSwap<S>) {
        let mut entries = self.lock();
        let config = shared.load();
        retain_locked(&mut entries, config.upstreams());
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

fn attach_locked(
    entries: &mut HashMap<Key, Arc<EndpointHealth>>,
    upstreams: &mut [UpstreamConfig],
) {
    for upstream in upstreams {
        upstream.shared.health = upstream
            .endpoints
            .iter()
            .map(|e| {
                entries
                    .entry((upstream.name.clone(), e.addr))
                    .or_insert_with(|| Arc::new(EndpointHealth::new()))
                    .clone()
            })
            .collect();
    }
}

fn retain_locked(entries: &mut HashMap<Key, Arc<EndpointHealth>>, upstreams: &[UpstreamConfig]) {
    entries.retain(|(name, addr), health| {
        let Some(upstream) = upstreams.iter().find(|u| u.name == *name) else {
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
    use crate::config::{load_str, Config};
    use crate::upstream::config::HealthCheckConfig;
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
    fn publish_keeps_configured_endpoints_and_their_state() {
        let registry = HealthRegistry::new();
        let kept = registry.endpoint("app", addr("127.0.0.1:1"));
        kept.set_healthy(false);
        registry.endpoint("app", addr("127.0.0.1:2"));
        registry.endpoint("gone", addr("127.0.0.1:1"));
        let shared = ArcSwap::from_pointee(config(&["127.0.0.1:1"]));
        registry.publish(checked(config(&["127.0.0.1:1", "127.0.0.1:3"])), &shared);
        assert_eq!(
            registry.states(),
            vec![
                ("app".to_string(), addr("127.0.0.1:1"), false),
                ("app".to_string(), addr("127.0.0.1:3"), true),
            ]
        );
        // The same flag is handed out again: the state survived the reload.
        assert!(Arc::ptr_eq(
            &kept,
            &registry.endpoint("app", addr("127.0.0.1:1"))
        ));
        let published = shared.load();
        assert!(Arc::ptr_eq(
            &kept,
            published.upstreams[0].shared.health(0).unwrap()
        ));
        assert!(!published.upstreams[0].shared.is_healthy(0));
        assert!(published.upstreams[0].shared.is_healthy(1));
    }

    #[test]
    fn publish_and_retain_mark_healthy_when_checks_are_removed() {
        let registry = HealthRegistry::new();
        let flag = registry.endpoint("app", addr("127.0.0.1:1"));
        flag.set_healthy(false);
        let shared = ArcSwap::from_pointee(config(&["127.0.0.1:1"]));
        registry.publish(checked(config(&["127.0.0.1:1"])), &shared);
        assert!(!flag.is_healthy());
        // Published by someone else: the checker's retain_current sees it.
        shared.store(Arc::new(config(&["127.0.0.1:1"])));
        registry.retain_current(&shared);
        assert!(flag.is_healthy());
        assert_eq!(registry.len(), 1);
        // Published here.
        registry.publish(checked(config(&["127.0.0.1:1"])), &shared);
        flag.set_healthy(false);
        registry.publish(config(&["127.0.0.1:1"]), &shared);
        assert!(flag.is_healthy());
        assert!(shared.load().upstreams[0].shared.is_healthy(0));
    }

    /// What a worker sees is what the checker writes: every published snapshot carries the
    /// registry's flag of each endpoint, the same one from reload to reload.
    #[test]
    fn snapshots_carry_the_flags_the_checker_writes() {
        let registry = HealthRegistry::new();
        let mut first = checked(config(&["127.0.0.1:1", "127.0.0.1:2"]));
        registry.attach(&mut first.upstreams);
        let shared = ArcSwap::from_pointee(first);
        let checker = registry.endpoint("app", addr("127.0.0.1:2"));
        assert!(Arc::ptr_eq(
            &checker,
            shared.load().upstreams[0].shared.health(1).unwrap()
        ));
        checker.set_healthy(false);
        assert!(!shared.load().upstreams[0].shared.is_healthy(1));
        // A reload that moves the endpoint to another index: the flag follows the address.
        registry.publish(
            checked(config(&["127.0.0.1:2", "127.0.0.1:1", "127.0.0.1:3"])),
            &shared,
        );
        let snapshot = shared.load();
        let upstream = &snapshot.upstreams[0].shared;
        assert!(Arc::ptr_eq(&checker, upstream.health(0).unwrap()));
        assert_eq!(
            (0..3).map(|i| upstream.is_healthy(i)).collect::<Vec<_>>(),
            [false, true, true]
        );
        assert_eq!(registry.len(), 3);
    }

    /// A worker takes up a new snapshot and checks health without the registry's lock: here
    /// the lock is held throughout, and the worker must still finish.
    #[test]
    fn workers_sync_and_read_flags_without_the_lock() {
        use crate::upstream::WorkerUpstreams;
        use std::time::Instant;

        let registry = HealthRegistry::new();
        let shared = ArcSwap::from_pointee(config(&["127.0.0.1:1"]));
        registry.publish(checked(config(&["127.0.0.1:1"])), &shared);
        let old = shared.load_full();
        registry.publish(checked(config(&["127.0.0.1:1", "127.0.0.1:2"])), &shared);
        let new = shared.load_full();
        registry
            .endpoint("app", addr("127.0.0.1:2"))
            .set_healthy(false);

        let _locked = registry.lock();
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut upstreams = WorkerUpstreams::new(&old);
            upstreams.sync(&new);
            let state = upstreams.get(&*new, 0).unwrap();
            let usable = state.refresh_usable(&new.upstreams[0], Instant::now());
            let _ = done.send((usable, state.pick(None, &[])));
        });
        let outcome = finished.recv_timeout(Duration::from_secs(30));
        assert_eq!(outcome, Ok((1, Some(0))), "the worker waited for the lock");
    }
}
