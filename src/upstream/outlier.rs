//! Passive health (outlier detection): per worker, from the traffic itself, no atomics.
//!
//! Each worker keeps one [`Outlier`] per endpoint. A connect failure or a 5xx answer counts
//! as a failure, any other answer as a success; `consecutive_failures` failures in a row
//! eject the endpoint for `base_ejection * 2^(earlier ejections)`, capped at
//! `max_ejection`. An ejected endpoint gets no traffic until the period ends, then takes
//! traffic again with a clean failure count.
//!
//! The ejection count (the exponent) decays: when an endpoint has gone `max_ejection`
//! without being ejected since its last ejection ended, its next ejection is treated as a
//! first one again.
//!
//! An active health check that passes ends an ejection early, on every worker (Envoy's
//! `successful_active_health_check_uneject_host`, on by default there): the checker thread
//! counts the probes that pass while the endpoint is healthy
//! ([`EndpointHealth::passes`](super::health::EndpointHealth::passes)); each record keeps
//! that count as it was when its ejection began, and a worker that finds the count moved on
//! when it looks at an ejected endpoint ends the ejection. No lock, and one atomic load only
//! for endpoints that are ejected.
//!
//! Which endpoints a request may use combines this with the active checks
//! ([`super::health`]) in [`usable_endpoints`]: healthy and not ejected, unless too few are
//! left, in which case every endpoint is used (Envoy's panic threshold: spreading load over
//! endpoints that might be bad beats crushing the few that are left).
//!
//! Time is an argument (`now`), so every rule here is tested without sleeping.

use std::time::{Duration, Instant};

use super::config::OutlierConfig;

/// How far the ejection time doubles: 2^20 times the base is past any sane `max_ejection`.
const MAX_BACKOFF_SHIFT: u32 = 20;

/// One endpoint's passive-health record, in one worker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outlier {
    consecutive_failures: u32,
    /// End of the current ejection, or of the last one once it is over (kept for the decay
    /// of `ejections`).
    ejected_until: Option<Instant>,
    /// Ejections so far (since the last decay); the next one lasts `base * 2^ejections`.
    ejections: u32,
    /// The active checker's pass count when the current (or last) ejection began.
    passes_at_ejection: u64,
}

impl Outlier {
    pub fn new() -> Self {
        Outlier::default()
    }

    /// Records a response that is not a failure (any status below 500).
    #[inline]
    pub fn on_success(&mut self) {
        self.consecutive_failures = 0;
    }

    /// Records a connect failure or a 5xx; returns true when this ejects the endpoint.
    /// Ignores the `max_ejected_percent` cap and active checks: use
    /// [`Outlier::on_failure_capped`] on the request path.
    pub fn on_failure(&mut self, config: &OutlierConfig, now: Instant) -> bool {
        self.on_failure_capped(config, now, 0, || true)
    }

    /// Records a connect failure or a 5xx; returns true when this ejects the endpoint.
    ///
    /// `may_eject` is asked only when this failure reaches the threshold; it says whether
    /// one more ejection stays within `max_ejected_percent` (see [`ejection_allowed`]).
    /// When it does not, the endpoint stays in and its failure count stays at the
    /// threshold, so the next failure tries again.
    ///
    /// `active_passes` is the endpoint's [`EndpointHealth::passes`](super::health::EndpointHealth::passes)
    /// now: a pass counted after it ends the ejection ([`Outlier::end_on_active_pass`]).
    ///
    /// Failures while ejected (requests already in flight, or panic mode sending traffic to
    /// ejected endpoints) neither count nor extend the ejection.
    pub fn on_failure_capped(
        &mut self,
        config: &OutlierConfig,
        now: Instant,
        active_passes: u64,
        may_eject: impl FnOnce() -> bool,
    ) -> bool {
        if config.consecutive_failures == 0 || self.is_ejected(now) {
            return false;
        }
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        if self.consecutive_failures < config.consecutive_failures || !may_eject() {
            return false;
        }
        // Decay: a long enough quiet spell since the last ejection ended starts over.
        if let Some(last_end) = self.ejected_until {
            if now.saturating_duration_since(last_end) >= config.max_ejection {
                self.ejections = 0;
            }
        }
        let period = ejection_period(config, self.ejections);
        // An `Instant` that cannot be represented is beyond any real uptime: eject for the
        // longest period that is.
        self.ejected_until = Some(
            now.checked_add(period)
                .or_else(|| now.checked_add(Duration::from_secs(u32::MAX as u64)))
                .unwrap_or(now),
        );
        self.ejections = self.ejections.saturating_add(1);
        self.consecutive_failures = 0;
        self.passes_at_ejection = active_passes;
        true
    }

    /// Ends the current ejection when the active checker has passed the endpoint since it
    /// began: `active_passes` (the endpoint's pass count now) differs from the count taken
    /// at ejection. Returns true when this ended an ejection. The ejection still counts
    /// toward the back-off; its decay runs from `now`.
    pub fn end_on_active_pass(&mut self, active_passes: u64, now: Instant) -> bool {
        if active_passes == self.passes_at_ejection || !self.is_ejected(now) {
            return false;
        }
        self.ejected_until = Some(now);
        self.consecutive_failures = 0;
        true
    }

    #[inline]
    pub fn is_ejected(&self, now: Instant) -> bool {
        self.ejected_until.is_some_and(|until| now < until)
    }

    /// When the current ejection ends; `None` when not ejected at `now`.
    pub fn ejected_until(&self, now: Instant) -> Option<Instant> {
        self.ejected_until.filter(|&until| now < until)
    }

    /// Ejections counted toward the back-off (after decay).
    pub fn ejections(&self) -> u32 {
        self.ejections
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }
}

/// How long the ejection after `previous` earlier ones lasts: `base * 2^previous`, capped
/// at `max_ejection`.
pub fn ejection_period(config: &OutlierConfig, previous: u32) -> Duration {
    let factor = 1u32 << previous.min(MAX_BACKOFF_SHIFT);
    config
        .base_ejection
        .saturating_mul(factor)
        .min(config.max_ejection.max(config.base_ejection))
}

/// Whether one more endpoint may be ejected when `already_ejected` of `total` are: ejected
/// endpoints never exceed `max_ejected_percent` of the upstream. Pass the count of
/// endpoints currently ejected (`Outlier::is_ejected`); active-check verdicts are not
/// counted here (they are covered by the panic threshold in [`usable_endpoints`]).
#[inline]
pub fn ejection_allowed(already_ejected: usize, total: usize, max_ejected_percent: u8) -> bool {
    let pct = usize::from(max_ejected_percent.min(100));
    already_ejected.saturating_add(1).saturating_mul(100) <= total.saturating_mul(pct)
}

/// Counts the endpoints ejected at `now`, for [`ejection_allowed`].
pub fn count_ejected<'a>(outliers: impl IntoIterator<Item = &'a Outlier>, now: Instant) -> usize {
    outliers.into_iter().filter(|o| o.is_ejected(now)).count()
}

/// What [`usable_endpoints`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsableSummary {
    /// Endpoints marked usable in `out` (0 only when nothing can be used: answer 503).
    pub usable: usize,
    /// Too few endpoints were healthy and not ejected, so all of them were marked usable.
    pub panic: bool,
}

/// Which endpoints a request may use: those healthy (active checks) and not ejected
/// (passive), unless that would leave fewer than `100 - max_ejected_percent` percent of
/// them, in which case (panic mode) all are usable.
///
/// `healthy[i]` and `ejected[i]` describe endpoint `i`; `out[i]` receives its verdict, and
/// `out.len()` is the endpoint count (the caller keeps these buffers, so nothing is
/// allocated per request). A missing `healthy` entry counts as healthy, a missing
/// `ejected` one as not ejected. With `max_ejected_percent = 100` there is no panic mode:
/// when every endpoint is down, `usable` is 0 (answer 503).
pub fn usable_endpoints(
    healthy: &[bool],
    ejected: &[bool],
    max_ejected_percent: u8,
    out: &mut [bool],
) -> UsableSummary {
    debug_assert!(
        healthy.len() == out.len() && ejected.len() == out.len(),
        "one entry per endpoint"
    );
    let total = out.len();
    let mut usable = 0usize;
    for (i, slot) in out.iter_mut().enumerate() {
        let is_healthy = healthy.get(i).copied().unwrap_or(true);
        let is_ejected = ejected.get(i).copied().unwrap_or(false);
        *slot = is_healthy && !is_ejected;
        usable += usize::from(*slot);
    }
    // Panic when usable / total < (100 - max_ejected_percent) / 100.
    let required = usize::from(100 - max_ejected_percent.min(100));
    if usable.saturating_mul(100) < total.saturating_mul(required) {
        out.fill(true);
        return UsableSummary {
            usable: total,
            panic: true,
        };
    }
    UsableSummary {
        usable,
        panic: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::health::EndpointHealth;

    fn config(failures: u32, base_ms: u64, max_ms: u64) -> OutlierConfig {
        OutlierConfig {
            consecutive_failures: failures,
            base_ejection: Duration::from_millis(base_ms),
            max_ejection: Duration::from_millis(max_ms),
            max_ejected_percent: 50,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn ejects_after_consecutive_failures_only() {
        let c = config(3, 1000, 10_000);
        let t0 = Instant::now();
        let mut o = Outlier::new();
        assert!(!o.on_failure(&c, t0));
        assert!(!o.on_failure(&c, t0));
        o.on_success();
        assert!(!o.on_failure(&c, t0));
        assert!(!o.on_failure(&c, t0));
        assert!(!o.is_ejected(t0));
        assert!(o.on_failure(&c, t0));
        assert!(o.is_ejected(t0));
        assert!(o.is_ejected(t0 + ms(999)));
        assert_eq!(o.ejected_until(t0), Some(t0 + ms(1000)));
        // Back after the period, with a clean count.
        assert!(!o.is_ejected(t0 + ms(1000)));
        assert_eq!(o.ejected_until(t0 + ms(1000)), None);
        assert_eq!(o.consecutive_failures(), 0);
    }

    #[test]
    fn zero_threshold_disables() {
        let c = config(0, 1000, 10_000);
        let t0 = Instant::now();
        let mut o = Outlier::new();
        for _ in 0..100 {
            assert!(!o.on_failure(&c, t0));
        }
        assert!(!o.is_ejected(t0));
    }

    #[test]
    fn failures_while_ejected_do_not_count_or_extend() {
        let c = config(1, 1000, 10_000);
        let t0 = Instant::now();
        let mut o = Outlier::new();
        assert!(o.on_failure(&c, t0));
        assert!(!o.on_failure(&c, t0 + ms(500)));
        assert_eq!(o.consecutive_failures(), 0);
        assert_eq!(o.ejected_until(t0), Some(t0 + ms(1000)));
    }

    #[test]
    fn back_off_doubles_and_is_capped() {
        let c = config(1, 1000, 5000);
        let mut now = Instant::now();
        let mut o = Outlier::new();
        // Each ejection right after the previous one ends: no decay.
        for expected in [1000, 2000, 4000, 5000, 5000] {
            assert!(o.on_failure(&c, now));
            let until = o.ejected_until(now).unwrap();
            assert_eq!(until - now, ms(expected));
            now = until;
        }
        // Huge exponents neither overflow nor exceed the cap.
        assert_eq!(ejection_period(&c, u32::MAX), ms(5000));
        let c = config(1, 1000, u64::MAX / 2);
        assert_eq!(ejection_period(&c, 3), ms(8000));
        assert_eq!(ejection_period(&c, 40), ms(1000) * (1 << MAX_BACKOFF_SHIFT));
    }

    #[test]
    fn ejection_count_decays_after_a_quiet_max_ejection() {
        let c = config(1, 1000, 5000);
        let t0 = Instant::now();
        let mut o = Outlier::new();
        assert!(o.on_failure(&c, t0)); // 1 s, ends t0+1s
        assert!(o.on_failure(&c, t0 + ms(1000))); // 2 s, ends t0+3s
        assert_eq!(o.ejections(), 2);
        // Out for less than max_ejection: the back-off continues (4 s).
        assert!(o.on_failure(&c, t0 + ms(7999)));
        assert_eq!(o.ejected_until(t0 + ms(7999)), Some(t0 + ms(11_999)));
        // Out for max_ejection (5 s) since that ended: starts over at 1 s.
        let later = t0 + ms(11_999) + ms(5000);
        assert!(o.on_failure(&c, later));
        assert_eq!(o.ejected_until(later), Some(later + ms(1000)));
        assert_eq!(o.ejections(), 1);
    }

    #[test]
    fn cap_is_checked_only_at_the_threshold() {
        let c = config(2, 1000, 5000);
        let t0 = Instant::now();
        let mut o = Outlier::new();
        let mut asked = 0;
        assert!(!o.on_failure_capped(&c, t0, 0, || {
            asked += 1;
            false
        }));
        assert_eq!(asked, 0);
        // Threshold reached but the cap refuses: stays in, at the threshold.
        assert!(!o.on_failure_capped(&c, t0, 0, || {
            asked += 1;
            false
        }));
        assert_eq!(asked, 1);
        assert!(!o.is_ejected(t0));
        assert_eq!(o.consecutive_failures(), 2);
        // The next failure, with room under the cap, ejects.
        assert!(o.on_failure_capped(&c, t0, 0, || true));
        assert!(o.is_ejected(t0));
    }

    #[test]
    fn ejection_allowed_table() {
        // (already ejected, total, max percent, allowed)
        let table = [
            (0, 2, 50, true),
            (1, 2, 50, false),
            (0, 1, 50, false),
            (0, 1, 100, true),
            (1, 3, 66, false),
            (1, 3, 67, true),
            (2, 3, 100, true),
            (0, 10, 10, true),
            (1, 10, 10, false),
            (0, 5, 0, false),
            (0, 0, 100, false),
            (0, 2, 255, true),
        ];
        for (ejected, total, pct, allowed) in table {
            assert_eq!(
                ejection_allowed(ejected, total, pct),
                allowed,
                "{ejected} of {total} at {pct}%"
            );
        }
    }

    #[test]
    fn cap_with_count_ejected() {
        let c = config(1, 1000, 5000);
        let t0 = Instant::now();
        let mut outliers = vec![Outlier::new(); 4];
        let mut ejected = 0;
        for i in 0..4 {
            let already = count_ejected(&outliers, t0);
            if outliers[i].on_failure_capped(&c, t0, 0, || ejection_allowed(already, 4, 50)) {
                ejected += 1;
            }
        }
        assert_eq!(ejected, 2);
        assert_eq!(count_ejected(&outliers, t0), 2);
        assert_eq!(count_ejected(&outliers, t0 + ms(1000)), 0);
    }

    #[test]
    fn an_active_pass_ends_the_ejection_on_every_worker() {
        let c = config(1, 10_000, 60_000);
        let t0 = Instant::now();
        let health = EndpointHealth::new();
        // A pass before the ejection does not end it.
        health.record_pass();
        // Two workers, each ejecting the endpoint on its own traffic.
        let mut workers = [Outlier::new(), Outlier::new()];
        for o in &mut workers {
            assert!(o.on_failure_capped(&c, t0, health.passes(), || true));
        }
        for o in &mut workers {
            assert!(!o.end_on_active_pass(health.passes(), t0 + ms(500)));
            assert!(o.is_ejected(t0 + ms(500)));
        }
        // One pass ends it everywhere, long before the 10 s are over.
        health.record_pass();
        let t1 = t0 + ms(1000);
        for o in &mut workers {
            assert!(o.end_on_active_pass(health.passes(), t1));
            assert!(!o.is_ejected(t1));
            assert_eq!(o.ejected_until(t1), None);
            assert_eq!(o.consecutive_failures(), 0);
            // Ended once; the same count changes nothing more.
            assert!(!o.end_on_active_pass(health.passes(), t1 + ms(1)));
        }
        // The ejection still counts toward the back-off: the next one lasts 20 s.
        let [first, second] = &mut workers;
        assert_eq!(first.ejections(), 1);
        assert!(first.on_failure_capped(&c, t1, health.passes(), || true));
        assert_eq!(first.ejected_until(t1), Some(t1 + ms(20_000)));
        // Its decay runs from the early end: a quiet max_ejection after t1 starts over.
        let later = t1 + ms(60_000);
        assert!(second.on_failure_capped(&c, later, health.passes(), || true));
        assert_eq!(second.ejected_until(later), Some(later + ms(10_000)));
    }

    #[test]
    fn a_pass_after_the_ejection_ended_changes_nothing() {
        let c = config(2, 1000, 10_000);
        let t0 = Instant::now();
        let mut o = Outlier::new();
        assert!(!o.on_failure_capped(&c, t0, 7, || true));
        assert!(o.on_failure_capped(&c, t0, 7, || true));
        let over = t0 + ms(1000);
        assert!(!o.end_on_active_pass(8, over));
        assert_eq!(o.ejected_until(t0), Some(over));
        // Not ejected at all: a pass neither ejects nor touches the failure count.
        let mut fresh = Outlier::new();
        assert!(!fresh.on_failure_capped(&c, t0, 0, || true));
        assert!(!fresh.end_on_active_pass(1, t0));
        assert_eq!(fresh.consecutive_failures(), 1);
    }

    fn usable(healthy: &[bool], ejected: &[bool], pct: u8) -> (Vec<bool>, UsableSummary) {
        let mut out = vec![false; healthy.len()];
        let summary = usable_endpoints(healthy, ejected, pct, &mut out);
        (out, summary)
    }

    #[test]
    fn usable_endpoints_table() {
        const T: bool = true;
        const F: bool = false;
        // (healthy, ejected, max percent, usable slots, panic)
        type Row = (&'static [bool], &'static [bool], u8, &'static [bool], bool);
        let table: &[Row] = &[
            // All fine.
            (&[T, T, T], &[F, F, F], 50, &[T, T, T], false),
            // Active down, passive ejected, both: each removes its endpoint.
            (&[F, T, T, T], &[F, F, F, F], 50, &[F, T, T, T], false),
            (&[T, T, T, T], &[F, T, F, F], 50, &[T, F, T, T], false),
            (&[F, T, T, T], &[F, T, F, F], 50, &[F, F, T, T], false),
            (&[F, T, T, T], &[F, F, F, F], 50, &[F, T, T, T], false),
            // Unhealthy and ejected on the same endpoint counts once.
            (&[F, T], &[T, F], 50, &[F, T], false),
            // Past the threshold: panic, everything is usable.
            (&[F, F, T, T], &[F, F, T, F], 50, &[T, T, T, T], true),
            (&[F, F], &[F, F], 50, &[T, T], true),
            (&[F, T], &[F, T], 99, &[T, T], true),
            // 100%: no panic mode, nothing usable.
            (&[F, F], &[F, F], 100, &[F, F], false),
            (&[F, T], &[F, T], 100, &[F, F], false),
            (&[F, T], &[F, F], 100, &[F, T], false),
            // 0%: any loss panics (checks are advisory only).
            (&[F, T, T], &[F, F, F], 0, &[T, T, T], true),
            (&[T, T, T], &[F, F, F], 0, &[T, T, T], false),
            // No endpoints.
            (&[], &[], 50, &[], false),
        ];
        for (i, &(healthy, ejected, pct, slots, panic)) in table.iter().enumerate() {
            let (out, summary) = usable(healthy, ejected, pct);
            assert_eq!(out, slots, "row {i}");
            assert_eq!(summary.panic, panic, "row {i}");
            assert_eq!(
                summary.usable,
                slots.iter().filter(|&&u| u).count(),
                "row {i}"
            );
        }
    }

    #[test]
    fn active_and_passive_combined_over_time() {
        let c = OutlierConfig {
            max_ejected_percent: 100,
            ..config(2, 1000, 10_000)
        };
        let t0 = Instant::now();
        let healthy = [true, false, true];
        let mut outliers = vec![Outlier::new(); 3];
        for _ in 0..2 {
            let already = count_ejected(&outliers, t0);
            outliers[2].on_failure_capped(&c, t0, 0, || ejection_allowed(already, 3, 100));
        }
        let state = |now: Instant| {
            let ejected: Vec<bool> = outliers.iter().map(|o| o.is_ejected(now)).collect();
            let mut out = [false; 3];
            let summary = usable_endpoints(&healthy, &ejected, c.max_ejected_percent, &mut out);
            (out, summary.usable)
        };
        assert_eq!(state(t0), ([true, false, false], 1));
        assert_eq!(state(t0 + ms(999)), ([true, false, false], 1));
        assert_eq!(state(t0 + ms(1000)), ([true, false, true], 2));
    }
}
