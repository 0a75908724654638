//! Periodic re-resolution of host-name endpoints (`addr = "users.internal:8080"`).
//!
//! The config build resolves host names once (blocking `getaddrinfo`, never on a worker).
//! This module's thread, off the request path, calls [`Control::refresh`] every
//! `resolve_interval` (the shortest among upstreams that name a host), which rebuilds the
//! config from the text being served and swaps it in only when some address changed.
//!
//! The thread re-reads the served snapshot at least every [`RECHECK`]: a reload may add or
//! remove host names or change the interval. A snapshot swapped by anyone (reload,
//! registration, refresh) was just resolved, so it restarts the countdown. A failed refresh
//! (a name that no longer resolves) keeps the current endpoints and is logged; the next
//! interval tries again.

use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::control::Control;
use crate::upstream::config::UpstreamConfig;

/// Longest sleep between two looks at the served config.
const RECHECK: Duration = Duration::from_secs(1);

/// Starts the re-resolution thread; it runs until the process exits.
pub fn spawn(control: Arc<Control>) -> JoinHandle<()> {
    thread::Builder::new()
        .name("strait-resolver".to_owned())
        .spawn(move || run(&control))
        // Like `thread::spawn`: failing to start a thread at start-up is not recoverable.
        .expect("spawning the resolver thread")
}

fn run(control: &Control) {
    let mut schedule = Schedule::new(Instant::now(), control.generation());
    loop {
        let interval = refresh_interval(&control.current().upstreams);
        match schedule.poll(Instant::now(), control.generation(), interval) {
            Step::Wait(duration) => thread::sleep(duration),
            Step::Refresh => {
                if let Err(errors) = control.refresh() {
                    tracing::warn!(
                        %errors,
                        "endpoint re-resolution failed; keeping the current endpoints"
                    );
                }
                schedule.refreshed(Instant::now(), control.generation());
            }
        }
    }
}

/// The shortest `resolve_interval` among upstreams with a host-name endpoint; `None` when
/// no endpoint has a host name (nothing to re-resolve).
fn refresh_interval(upstreams: &[UpstreamConfig]) -> Option<Duration> {
    upstreams
        .iter()
        .filter(|u| u.endpoints.iter().any(|e| e.hostname.is_some()))
        .map(|u| u.resolve_interval)
        .min()
}

#[derive(Debug, PartialEq, Eq)]
enum Step {
    Wait(Duration),
    Refresh,
}

/// When the next refresh is due. Time is an argument, so tests need no sleep.
#[derive(Debug)]
struct Schedule {
    /// When the served endpoints were last resolved (as far as this thread knows).
    last: Instant,
    /// The snapshot generation seen then.
    generation: u64,
}

impl Schedule {
    fn new(now: Instant, generation: u64) -> Self {
        Schedule {
            last: now,
            generation,
        }
    }

    fn poll(&mut self, now: Instant, generation: u64, interval: Option<Duration>) -> Step {
        if generation != self.generation {
            // A new snapshot was built, and so resolved, since we last looked.
            self.refreshed(now, generation);
        }
        let Some(interval) = interval else {
            self.last = now;
            return Step::Wait(RECHECK);
        };
        let Some(due) = self.last.checked_add(interval) else {
            return Step::Wait(RECHECK);
        };
        match due.checked_duration_since(now) {
            Some(left) if !left.is_zero() => Step::Wait(left.min(RECHECK)),
            _ => Step::Refresh,
        }
    }

    fn refreshed(&mut self, now: Instant, generation: u64) {
        self.last = now;
        self.generation = generation;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;
    use crate::upstream::config::Endpoint;

    fn upstreams() -> Vec<UpstreamConfig> {
        load_str(
            "[server]\nlisten = [\"127.0.0.1:1\"]\n\
             [upstreams.a]\nendpoints = [\"10.0.0.1:80\"]\nresolve_interval = \"1s\"\n\
             [upstreams.b]\nendpoints = [\"10.0.0.2:80\"]\nresolve_interval = \"20s\"\n\
             [upstreams.c]\nendpoints = [\"10.0.0.3:80\"]\nresolve_interval = \"10s\"\n",
            "t.toml",
        )
        .unwrap()
        .upstreams
    }

    fn named(upstream: &mut UpstreamConfig) {
        let addr = upstream.endpoints[0].addr;
        upstream.endpoints.push(Endpoint {
            addr: std::net::SocketAddr::new(addr.ip(), 81),
            weight: 1,
            hostname: Some(format!("{}.internal:81", upstream.name)),
        });
    }

    #[test]
    fn interval_is_the_shortest_among_upstreams_with_host_names() {
        let mut list = upstreams();
        assert_eq!(refresh_interval(&list), None, "no host names");
        named(&mut list[1]);
        assert_eq!(refresh_interval(&list), Some(Duration::from_secs(20)));
        named(&mut list[2]);
        assert_eq!(refresh_interval(&list), Some(Duration::from_secs(10)));
        assert_eq!(refresh_interval(&[]), None);
    }

    #[test]
    fn schedule() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let every_5s = Some(s(5));
        let mut schedule = Schedule::new(t0, 1);
        // (seconds since t0, generation, interval, expected step); a refresh is done at once.
        let cases: &[(u64, u64, Option<Duration>, Step)] = &[
            (0, 1, every_5s, Step::Wait(RECHECK)),
            (4, 1, every_5s, Step::Wait(RECHECK)),
            (5, 1, every_5s, Step::Refresh),
            // `refreshed` at 5 (generation unchanged: nothing differed).
            (9, 1, every_5s, Step::Wait(RECHECK)),
            (10, 1, every_5s, Step::Refresh),
            // A reload at 12 (generation 2) resolved everything: the countdown restarts.
            (12, 2, every_5s, Step::Wait(RECHECK)),
            (16, 2, every_5s, Step::Wait(RECHECK)),
            (17, 2, every_5s, Step::Refresh),
            // No host names any more: just look again later.
            (30, 2, None, Step::Wait(RECHECK)),
            (40, 2, None, Step::Wait(RECHECK)),
            // Host names again (same generation): a full interval from the last look.
            (41, 2, every_5s, Step::Wait(RECHECK)),
            (45, 2, every_5s, Step::Refresh),
            // A shorter interval after a reload applies at once.
            (46, 3, Some(s(1)), Step::Wait(RECHECK)),
            (47, 3, Some(s(1)), Step::Refresh),
        ];
        for (at, generation, interval, want) in cases {
            let now = t0 + s(*at);
            let got = schedule.poll(now, *generation, *interval);
            assert_eq!(&got, want, "at {at}s");
            if got == Step::Refresh {
                schedule.refreshed(now, *generation);
            }
        }
        // Less than RECHECK left: sleep just that.
        let mut schedule = Schedule::new(t0, 1);
        assert_eq!(
            schedule.poll(t0 + Duration::from_millis(4_700), 1, every_5s),
            Step::Wait(Duration::from_millis(300))
        );
    }
}
