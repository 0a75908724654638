//! The retry budget: retries may be at most a percentage of the requests a worker sent to an
//! upstream over the last few seconds (plus a small floor, so that a quiet upstream can still
//! be retried). When an upstream fails outright, every request would otherwise be tried
//! `attempts` times and the outage multiplied; the budget caps that at `1 + percent/100`.
//!
//! Per worker, no atomics. Time is an argument, so tests need no clock.

use std::time::{Duration, Instant};

/// The window is this many slots of `SLOT` each.
const SLOTS: usize = 10;
const SLOT: Duration = Duration::from_secs(1);
/// Retries always allowed per window (one a second on average), whatever the percentage,
/// so that an endpoint dying under light traffic is retried around until outlier detection
/// ejects it.
const MIN_RETRIES: u32 = 10;

#[derive(Debug, Clone)]
pub struct RetryBudget {
    percent: u32,
    /// (requests, retries) per slot; `head` is the slot for `head_started`.
    slots: [(u32, u32); SLOTS],
    head: usize,
    head_started: Option<Instant>,
}

impl RetryBudget {
    pub fn new(percent: u8) -> Self {
        RetryBudget {
            percent: u32::from(percent),
            slots: [(0, 0); SLOTS],
            head: 0,
            head_started: None,
        }
    }

    /// Counts a request (its first try).
    pub fn record_request(&mut self, now: Instant) {
        self.advance(now);
        self.slots[self.head].0 += 1;
    }

    /// Takes one retry from the budget if there is room; false means: do not retry.
    pub fn try_retry(&mut self, now: Instant) -> bool {
        self.advance(now);
        let (requests, retries) = self.slots.iter().fold((0u64, 0u64), |(r, t), (a, b)| {
            (r + u64::from(*a), t + u64::from(*b))
        });
        let allowed = (requests * u64::from(self.percent) / 100).max(u64::from(MIN_RETRIES));
        if retries >= allowed {
            return false;
        }
        self.slots[self.head].1 += 1;
        true
    }

    /// Moves the window forward to `now`, clearing slots that fell out of it.
    fn advance(&mut self, now: Instant) {
        let Some(started) = self.head_started else {
            self.head_started = Some(now);
            return;
        };
        let elapsed = now.saturating_duration_since(started);
        let steps = (elapsed.as_millis() / SLOT.as_millis()) as usize;
        if steps == 0 {
            return;
        }
        for _ in 0..steps.min(SLOTS) {
            self.head = (self.head + 1) % SLOTS;
            self.slots[self.head] = (0, 0);
        }
        self.head_started = Some(started + SLOT * steps as u32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_capped_at_the_percentage() {
        let t0 = Instant::now();
        let mut budget = RetryBudget::new(20);
        for _ in 0..100 {
            budget.record_request(t0);
        }
        let granted = (0..100).filter(|_| budget.try_retry(t0)).count();
        assert_eq!(granted, 20);
    }

    #[test]
    fn a_floor_allows_a_few_retries_when_quiet() {
        let t0 = Instant::now();
        let mut budget = RetryBudget::new(20);
        budget.record_request(t0);
        assert_eq!(
            (0..10).filter(|_| budget.try_retry(t0)).count(),
            MIN_RETRIES as usize
        );
        let mut none = RetryBudget::new(0);
        none.record_request(t0);
        assert_eq!(
            (0..10).filter(|_| none.try_retry(t0)).count(),
            MIN_RETRIES as usize
        );
    }

    #[test]
    fn the_window_slides() {
        let t0 = Instant::now();
        let mut budget = RetryBudget::new(10);
        for _ in 0..100 {
            budget.record_request(t0);
        }
        assert_eq!((0..100).filter(|_| budget.try_retry(t0)).count(), 10);
        // Ten seconds on, the old requests and retries are gone: only the floor is left.
        let later = t0 + Duration::from_secs(11);
        assert_eq!(
            (0..100).filter(|_| budget.try_retry(later)).count(),
            MIN_RETRIES as usize
        );
    }
}
