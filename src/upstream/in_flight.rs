//! Counts of what is under way to an upstream, kept by guards: a request in flight to an
//! endpoint (the balancers' load and the breaker's `max_requests`) and a connection being
//! established (the breaker's `max_pending`). A count goes up when its guard is made and
//! down when the guard is dropped, however the exchange ends: an answer, an error, a
//! retry, or the request's task going away.
//!
//! Counts belong to the snapshot they were taken on: after a reload the worker's state is
//! rebuilt with fresh counts, and a guard from before leaves them alone.

use std::cell::RefCell;

use super::config::UpstreamId;
use super::{Snapshot, UpstreamState, WorkerUpstreams};

/// Where a guard's count lives.
struct Slot<'w> {
    upstreams: &'w RefCell<WorkerUpstreams>,
    config: &'w dyn Snapshot,
    id: UpstreamId,
}

impl Slot<'_> {
    /// Runs `f` on the upstream's state, unless the worker has moved to another snapshot.
    fn with(&self, f: impl FnOnce(&mut UpstreamState)) {
        if let Some(state) = self.upstreams.borrow_mut().get(self.config, self.id) {
            f(state);
        }
    }
}

/// One request in flight to one endpoint.
pub struct InFlight<'w> {
    slot: Slot<'w>,
    endpoint: usize,
}

impl<'w> InFlight<'w> {
    /// Counts a request to `endpoint` of upstream `id` until the guard is dropped.
    pub fn start(
        upstreams: &'w RefCell<WorkerUpstreams>,
        config: &'w dyn Snapshot,
        id: UpstreamId,
        endpoint: usize,
    ) -> Self {
        let slot = Slot {
            upstreams,
            config,
            id,
        };
        slot.with(|state| {
            state.in_flight += 1;
            state.endpoints[endpoint].in_flight += 1;
        });
        InFlight { slot, endpoint }
    }

    /// Runs `f` on the endpoint's upstream state (to return its connection to the pool).
    pub fn with_state(&self, f: impl FnOnce(&mut UpstreamState, usize)) {
        self.slot.with(|state| f(state, self.endpoint));
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let endpoint = self.endpoint;
        self.slot.with(|state| {
            state.in_flight = state.in_flight.saturating_sub(1);
            let e = &mut state.endpoints[endpoint];
            e.in_flight = e.in_flight.saturating_sub(1);
        });
    }
}

/// One connection being established to an upstream.
pub struct Connecting<'w> {
    slot: Slot<'w>,
}

impl<'w> Connecting<'w> {
    pub fn start(
        upstreams: &'w RefCell<WorkerUpstreams>,
        config: &'w dyn Snapshot,
        id: UpstreamId,
    ) -> Self {
        let slot = Slot {
            upstreams,
            config,
            id,
        };
        slot.with(|state| state.connecting += 1);
        Connecting { slot }
    }
}

impl Drop for Connecting<'_> {
    fn drop(&mut self) {
        self.slot
            .with(|state| state.connecting = state.connecting.saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::Config;

    fn config(endpoints: &str) -> Arc<Config> {
        let text = format!(
            "[server]\nlisten = [\"127.0.0.1:1\"]\n[upstreams.a]\nendpoints = [\"127.0.0.1:2\"]\n\
             [upstreams.b]\nendpoints = [{endpoints}]\n[[routes]]\npath = \"/\"\nupstream = \"b\"\n"
        );
        Arc::new(crate::config::load_str(&text, "t.toml").unwrap())
    }

    /// (upstream in flight, each endpoint's in flight, connecting) of upstream `b`.
    fn counts(
        upstreams: &RefCell<WorkerUpstreams>,
        config: &Arc<Config>,
    ) -> (usize, Vec<u32>, usize) {
        let mut upstreams = upstreams.borrow_mut();
        let state = upstreams.get(&**config, 1).unwrap();
        let endpoints = state.endpoints.iter().map(|e| e.in_flight).collect();
        (state.in_flight, endpoints, state.connecting)
    }

    #[test]
    fn counts_last_as_long_as_their_guards() {
        let config = config("\"127.0.0.1:3\", \"127.0.0.1:4\"");
        let upstreams = RefCell::new(WorkerUpstreams::new(&config));
        let first = InFlight::start(&upstreams, &*config, 1, 0);
        let second = InFlight::start(&upstreams, &*config, 1, 1);
        let third = InFlight::start(&upstreams, &*config, 1, 1);
        let connecting = Connecting::start(&upstreams, &*config, 1);
        assert_eq!(counts(&upstreams, &config), (3, vec![1, 2], 1));
        drop(second);
        drop(connecting);
        assert_eq!(counts(&upstreams, &config), (2, vec![1, 1], 0));
        drop((first, third));
        assert_eq!(counts(&upstreams, &config), (0, vec![0, 0], 0));
        // Upstream `a` was never touched.
        assert_eq!(
            upstreams.borrow_mut().get(&*config, 0).unwrap().in_flight,
            0
        );
    }

    #[test]
    fn a_guard_from_an_older_snapshot_leaves_the_new_counts_alone() {
        let old = config("\"127.0.0.1:3\", \"127.0.0.1:4\"");
        let upstreams = RefCell::new(WorkerUpstreams::new(&old));
        let guard = InFlight::start(&upstreams, &*old, 1, 1);
        let connecting = Connecting::start(&upstreams, &*old, 1);
        // A reload: the same endpoints, fresh counts.
        let new = config("\"127.0.0.1:3\", \"127.0.0.1:4\"");
        upstreams.borrow_mut().sync(&new);
        let current = InFlight::start(&upstreams, &*new, 1, 1);
        assert_eq!(counts(&upstreams, &new), (1, vec![0, 1], 0));
        drop((guard, connecting));
        assert_eq!(counts(&upstreams, &new), (1, vec![0, 1], 0));
        drop(current);
        assert_eq!(counts(&upstreams, &new), (0, vec![0, 0], 0));
    }
}
