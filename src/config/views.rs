//! What the capabilities below the assembly read of a [`Config`] snapshot, given to them
//! as sections (methods here) or through the small traits they define (implemented here),
//! so that none of them depends on the assembly.

use std::time::Duration;

use super::Config;
use crate::auth::config::ConsumerConfig;
use crate::auth::oauth2::config::OAuth2Provider;
use crate::auth::AuthSections;
use crate::observe::config::ObservabilityConfig;
use crate::observe::ObserveSections;
use crate::ratelimit::config::{ClusterConfig, RateLimitConfig};
use crate::ratelimit::redis_sync::ClusterSection;
use crate::upstream::config::UpstreamConfig;
use crate::upstream::Snapshot;

impl Config {
    /// Each route's name and `rate_limits`, in the route table's order: what
    /// [`crate::ratelimit::WorkerLimits`] is built from.
    pub fn route_rate_limits(&self) -> impl Iterator<Item = (&str, &[RateLimitConfig])> {
        self.routes
            .routes()
            .iter()
            .map(|route| (route.name.as_str(), route.rate_limits.as_slice()))
    }
}

impl ClusterSection for Config {
    fn cluster(&self) -> Option<&ClusterConfig> {
        self.cluster.as_ref()
    }
}

impl AuthSections for Config {
    fn consumers(&self) -> &[ConsumerConfig] {
        &self.consumers
    }

    fn oauth2_providers(&self) -> &[OAuth2Provider] {
        &self.oauth2_providers
    }
}

/// The upstream layer holds and compares snapshots through this view (health flags, worker
/// state built for a snapshot, the checker thread), without depending on the assembly.
impl Snapshot for Config {
    fn upstreams(&self) -> &[UpstreamConfig] {
        &self.upstreams
    }

    fn upstreams_mut(&mut self) -> &mut [UpstreamConfig] {
        &mut self.upstreams
    }

    fn connect_timeout(&self) -> Duration {
        self.server.timeouts.upstream_connect
    }

    fn response_timeout(&self) -> Duration {
        self.server.timeouts.upstream_response
    }
}

impl ObserveSections for Config {
    fn observability(&self) -> &ObservabilityConfig {
        &self.observability
    }

    fn route_count(&self) -> usize {
        self.routes.routes().len()
    }

    fn route_name(&self, i: usize) -> Option<&str> {
        self.routes.routes().get(i).map(|r| r.name.as_str())
    }

    fn route_path(&self, i: usize) -> Option<&str> {
        self.routes.routes().get(i).map(|r| r.path.as_str())
    }

    fn upstream_count(&self) -> usize {
        self.upstreams.len()
    }

    fn upstream_name(&self, i: usize) -> Option<&str> {
        self.upstreams.get(i).map(|u| u.name.as_str())
    }
}
