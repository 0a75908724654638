//! Per-worker upstream state: a keep-alive pool and a balancer cursor per upstream, built
//! from the config snapshot the worker is serving. Nothing here is shared between workers,
//! so none of it needs a lock.
//!
//! When a reload brings a new snapshot, the state is rebuilt for it, but the pool of every
//! endpoint that is still there (same upstream name, same address, same pool settings)
//! moves over warm. A request that started on an older snapshot still finishes on it: its
//! connection is simply not returned to a pool that no longer matches.

pub mod balancer;
pub mod pool;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::{Config, UpstreamId};

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
    upstreams: Vec<UpstreamState>,
}

impl WorkerUpstreams {
    pub fn new(config: &Arc<Config>) -> Self {
        WorkerUpstreams {
            built_for: config.clone(),
            upstreams: Vec::new(),
        }
        .rebuilt_for(config)
    }

    /// Rebuilds the state when the worker starts serving a different snapshot, keeping the
    /// pools of unchanged endpoints.
    pub fn sync(&mut self, config: &Arc<Config>) {
        if !Arc::ptr_eq(&self.built_for, config) {
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

    fn rebuilt_for(self, config: &Arc<Config>) -> WorkerUpstreams {
        let old_config = self.built_for;
        let mut old_pools: Vec<(String, SocketAddr, EndpointPool)> = Vec::new();
        for (state, upstream) in self.upstreams.into_iter().zip(&old_config.upstreams) {
            for (pool, endpoint) in state.pools.into_iter().zip(&upstream.endpoints) {
                old_pools.push((upstream.name.clone(), endpoint.addr, pool));
            }
        }
        let upstreams = config
            .upstreams
            .iter()
            .map(|u| UpstreamState {
                balancer: WeightedRoundRobin::new(u.endpoints.iter().map(|e| e.weight)),
                pools: u
                    .endpoints
                    .iter()
                    .map(|e| {
                        let kept = old_pools.iter().position(|(name, addr, pool)| {
                            *name == u.name && *addr == e.addr && pool.config() == &u.pool
                        });
                        match kept {
                            Some(i) => old_pools.swap_remove(i).2,
                            None => EndpointPool::new(u.pool.clone()),
                        }
                    })
                    .collect(),
            })
            .collect();
        WorkerUpstreams {
            built_for: config.clone(),
            upstreams,
        }
    }

    /// The state of upstream `id` of `config`, or `None` when the worker has moved on to
    /// another snapshot since `config` was taken.
    pub fn get(&mut self, config: &Arc<Config>, id: UpstreamId) -> Option<&mut UpstreamState> {
        if Arc::ptr_eq(&self.built_for, config) {
            self.upstreams.get_mut(id)
        } else {
            None
        }
    }

    pub fn all_mut(&mut self) -> impl Iterator<Item = &mut UpstreamState> {
        self.upstreams.iter_mut()
    }
}
