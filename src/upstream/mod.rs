//! Per-worker upstream state: a keep-alive pool and a balancer cursor per upstream, built
//! from the config snapshot the worker is serving. Nothing here is shared between workers,
//! so none of it needs a lock.

pub mod balancer;
pub mod pool;

use std::sync::Arc;

use crate::config::Config;

pub use balancer::WeightedRoundRobin;
pub use pool::{EndpointPool, UpstreamConn};

/// One upstream's per-worker state, indexed like `Config::upstreams`.
pub struct UpstreamState {
    pub balancer: WeightedRoundRobin,
    /// One pool per endpoint, indexed like `UpstreamConfig::endpoints`.
    pub pools: Vec<EndpointPool>,
}

/// The worker's upstream state and the snapshot it was built for.
pub struct WorkerUpstreams {
    built_for: Arc<Config>,
    pub upstreams: Vec<UpstreamState>,
}

impl WorkerUpstreams {
    pub fn new(config: &Arc<Config>) -> Self {
        let upstreams = config
            .upstreams
            .iter()
            .map(|u| UpstreamState {
                balancer: WeightedRoundRobin::new(u.endpoints.iter().map(|e| e.weight)),
                pools: u
                    .endpoints
                    .iter()
                    .map(|_| EndpointPool::new(u.pool.clone()))
                    .collect(),
            })
            .collect();
        WorkerUpstreams {
            built_for: config.clone(),
            upstreams,
        }
    }

    /// Rebuilds the state when the worker starts serving a different snapshot.
    pub fn sync(&mut self, config: &Arc<Config>) {
        if !Arc::ptr_eq(&self.built_for, config) {
            *self = WorkerUpstreams::new(config);
        }
    }
}
