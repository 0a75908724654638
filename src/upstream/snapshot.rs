//! What the upstream layer reads from a config snapshot: the upstream sections and the two
//! server timeouts an upstream exchange uses. The snapshot type itself belongs to the config
//! assembly above this layer, which implements [`Snapshot`] for it; code here holds or
//! compares a snapshot through this trait (worker state built for a snapshot, the client,
//! the health registry, the checker thread), so it never depends on the assembly.

use std::time::Duration;

use super::config::UpstreamConfig;

/// A config snapshot as the upstream layer sees it.
pub trait Snapshot: Send + Sync + 'static {
    /// Every upstream, indexed by [`super::config::UpstreamId`].
    fn upstreams(&self) -> &[UpstreamConfig];

    /// The same, to attach shared state before the snapshot is published.
    fn upstreams_mut(&mut self) -> &mut [UpstreamConfig];

    /// TCP connect to an upstream endpoint (`server.timeouts.upstream_connect`).
    fn connect_timeout(&self) -> Duration;

    /// Each try's response-head timeout when the upstream's retry policy sets none
    /// (`server.timeouts.upstream_response`).
    fn response_timeout(&self) -> Duration;
}
