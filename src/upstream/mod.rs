//! Per-worker upstream state: per upstream a balancer, a retry budget and circuit-breaker
//! counters; per endpoint a keep-alive pool, the requests in flight and the passive-health
//! (outlier) record. Built from the config snapshot the worker is serving; nothing here is
//! shared between workers. What is the same for every worker (a hash upstream's Maglev
//! table, the active-health flags) is not built here: it comes with the snapshot
//! ([`SharedUpstream`]), so taking up a new snapshot builds no table and takes no lock.
//!
//! Every request the gateway sends to an upstream goes through the one client
//! ([`client::Client`]) over this state: endpoint pick, pooled connect, send, response
//! head, outcome recording and retries.
//!
//! When a reload brings a new snapshot, the state is rebuilt for it, but every endpoint
//! that is still there (same upstream name, same address, same pool and TLS settings) keeps
//! its warm pool and its outlier record. A request that started on an older snapshot still
//! finishes on it: its connection is simply not returned to a pool that no longer matches.

pub mod health_checker;

pub mod balancer;
pub mod budget;
pub mod client;
pub mod config;
pub mod h2;
pub mod hash_key;
pub mod health;
pub mod in_flight;
pub mod maglev;
pub mod outlier;
pub mod pool;
pub mod retry;
pub mod shared;
pub mod snapshot;
pub mod stream;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use self::config::{UpstreamConfig, UpstreamId};
use self::tls::UpstreamTls;

pub use balancer::Balancer;
pub use budget::RetryBudget;
pub use health::{EndpointHealth, HealthRegistry};
pub use outlier::Outlier;
pub use pool::{EndpointPool, UpstreamConn};
pub use shared::{share_tables, SharedUpstream};
pub use snapshot::Snapshot;
pub use stream::UpstreamStream;

/// One endpoint's per-worker state.
pub struct EndpointState {
    pub pool: EndpointPool,
    pub in_flight: u32,
    pub outlier: Outlier,
}

/// One upstream's per-worker state, indexed like [`Snapshot::upstreams`].
pub struct UpstreamState {
    pub balancer: Balancer,
    pub budget: RetryBudget,
    /// Indexed like `UpstreamConfig::endpoints`.
    pub endpoints: Vec<EndpointState>,
    /// Requests in flight to this upstream (the breaker's `max_requests`).
    pub in_flight: usize,
    /// Connections being established (the breaker's `max_pending`).
    pub connecting: usize,
    /// Scratch for [`UpstreamState::refresh_usable`], kept to avoid an allocation per request.
    usable: Vec<bool>,
    scratch_healthy: Vec<bool>,
    scratch_ejected: Vec<bool>,
}

impl UpstreamState {
    /// Recomputes which endpoints may take a request now (healthy, not ejected, or all of
    /// them in panic mode); returns how many may. `config` is this upstream in the snapshot
    /// the state was built for; its health flags are read with one atomic load each. An
    /// ejection ends here when an active check passed since it began.
    pub fn refresh_usable(&mut self, config: &UpstreamConfig, now: Instant) -> usize {
        self.scratch_healthy.clear();
        self.scratch_ejected.clear();
        for (i, endpoint) in self.endpoints.iter_mut().enumerate() {
            let passes = config.shared.health(i).map_or(0, |h| h.passes());
            let mut ejected = endpoint.outlier.is_ejected(now);
            if ejected && endpoint.outlier.end_on_active_pass(passes, now) {
                ejected = false;
                tracing::info!(
                    upstream = %config.name,
                    endpoint = %config.endpoints.get(i).map(|e| e.addr.to_string()).unwrap_or_default(),
                    "ejection ended: active health check passed"
                );
            }
            self.scratch_healthy.push(config.shared.is_healthy(i));
            self.scratch_ejected.push(ejected);
        }
        self.usable.resize(self.endpoints.len(), false);
        outlier::usable_endpoints(
            &self.scratch_healthy,
            &self.scratch_ejected,
            config.outlier.max_ejected_percent,
            &mut self.usable,
        )
        .usable
    }

    /// Picks an endpoint among the usable ones not in `tried`.
    pub fn pick(&mut self, key: Option<u64>, tried: &[usize]) -> Option<usize> {
        let UpstreamState {
            balancer,
            endpoints,
            usable,
            ..
        } = self;
        balancer.pick(key, &|i| endpoints[i].in_flight, &|i| {
            usable[i] && !tried.contains(&i)
        })
    }

    /// Whether an endpoint outside `tried` was usable at the last [`Self::refresh_usable`].
    pub fn has_untried(&self, tried: &[usize]) -> bool {
        self.usable
            .iter()
            .enumerate()
            .any(|(i, &usable)| usable && !tried.contains(&i))
    }

    /// Feeds passive health with how a try on `endpoint` ended: a connect failure, reset,
    /// timeout or 5xx counts against it, anything else for it. Returns true when this
    /// failure ejects the endpoint, which never happens past `max_ejected_percent` of the
    /// endpoints.
    pub fn record_outcome(
        &mut self,
        config: &UpstreamConfig,
        endpoint: usize,
        success: bool,
        now: Instant,
    ) -> bool {
        if success {
            self.endpoints[endpoint].outlier.on_success();
            return false;
        }
        let ejected = outlier::count_ejected(self.endpoints.iter().map(|e| &e.outlier), now);
        let total = self.endpoints.len();
        let percent = config.outlier.max_ejected_percent;
        let may_eject = || outlier::ejection_allowed(ejected, total, percent);
        let passes = config.shared.health(endpoint).map_or(0, |h| h.passes());
        self.endpoints[endpoint]
            .outlier
            .on_failure_capped(&config.outlier, now, passes, may_eject)
    }

    /// Open connections: idle in the pools plus those serving requests (the breaker's
    /// `max_connections`).
    pub fn open_connections(&self) -> usize {
        self.endpoints
            .iter()
            .map(|e| e.pool.idle_count())
            .sum::<usize>()
            + self.in_flight
    }
}

/// Whether connections opened under `was` may serve `now`: both plain, or TLS with the same
/// settings and files (the pooled connections were verified, and present a client
/// certificate, as `now` asks).
fn same_tls(was: &Option<UpstreamTls>, now: &Option<UpstreamTls>) -> bool {
    match (was, now) {
        (None, None) => true,
        (Some(was), Some(now)) => was.is_same_as(now),
        _ => false,
    }
}

/// The worker's upstream state and the snapshot it was built for.
pub struct WorkerUpstreams {
    built_for: Arc<dyn Snapshot>,
    upstreams: Vec<UpstreamState>,
}

impl WorkerUpstreams {
    pub fn new<S: Snapshot>(config: &Arc<S>) -> Self {
        WorkerUpstreams {
            built_for: config.clone(),
            upstreams: Vec::new(),
        }
        .rebuilt_for(config)
    }

    /// Whether the state was built for `config`. The address identifies the snapshot: the
    /// state holds its own `Arc` to the one it was built for, so no other live snapshot can
    /// have that address.
    fn built_for<S: Snapshot + ?Sized>(&self, config: &S) -> bool {
        std::ptr::addr_eq(Arc::as_ptr(&self.built_for), config)
    }

    /// Rebuilds the state when the worker starts serving a different snapshot, keeping
    /// unchanged endpoints' pools and outlier records.
    pub fn sync<S: Snapshot>(&mut self, config: &Arc<S>) {
        if !self.built_for(&**config) {
            let old = std::mem::replace(
                self,
                WorkerUpstreams {
                    built_for: config.clone(),
                    upstreams: Vec::new(),
                },
            );
            *self = old.rebuilt_for(config);
        }
    }

    fn rebuilt_for<S: Snapshot>(self, config: &Arc<S>) -> WorkerUpstreams {
        let old_config = self.built_for;
        let mut old: Vec<(&UpstreamConfig, SocketAddr, EndpointState)> = Vec::new();
        for (state, upstream) in self.upstreams.into_iter().zip(old_config.upstreams()) {
            for (endpoint, config) in state.endpoints.into_iter().zip(&upstream.endpoints) {
                old.push((upstream, config.addr, endpoint));
            }
        }
        let upstreams = config
            .upstreams()
            .iter()
            .map(|u| UpstreamState {
                balancer: Balancer::new(&u.balance, &u.endpoints, u.shared.maglev()),
                budget: RetryBudget::new(u.retry.budget_percent),
                endpoints: u
                    .endpoints
                    .iter()
                    .map(|e| {
                        let kept = old.iter().position(|(was, addr, state)| {
                            was.name == u.name
                                && *addr == e.addr
                                && state.pool.config() == &u.pool
                                && same_tls(&was.tls, &u.tls)
                        });
                        let mut state = match kept {
                            Some(i) => old.swap_remove(i).2,
                            None => EndpointState {
                                pool: EndpointPool::new(u.pool.clone()),
                                in_flight: 0,
                                outlier: Outlier::default(),
                            },
                        };
                        // Requests counted under the old snapshot finish there.
                        state.in_flight = 0;
                        state
                    })
                    .collect(),
                in_flight: 0,
                connecting: 0,
                usable: Vec::new(),
                scratch_healthy: Vec::new(),
                scratch_ejected: Vec::new(),
            })
            .collect();
        WorkerUpstreams {
            built_for: config.clone(),
            upstreams,
        }
    }

    /// The state of upstream `id` of `config`, or `None` when the worker has moved on to
    /// another snapshot since `config` was taken.
    pub fn get<S: Snapshot + ?Sized>(
        &mut self,
        config: &S,
        id: UpstreamId,
    ) -> Option<&mut UpstreamState> {
        if self.built_for(config) {
            self.upstreams.get_mut(id)
        } else {
            None
        }
    }

    pub fn all_mut(&mut self) -> impl Iterator<Item = &mut UpstreamState> {
        self.upstreams.iter_mut()
    }
}
