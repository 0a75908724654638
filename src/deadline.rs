//! Deadlines for a worker's socket operations and idle waits, kept in one table per thread
//! instead of a runtime timer each. A monoio timer is 640 bytes (padded to cache lines, so
//! every future holding one is allocated aligned), reads the clock when made and enters and
//! leaves the runtime's timer wheel: a proxied request made four or five of them, and an
//! idle connection kept one, more than everything else it holds.
//!
//! A waiter here is a 32-byte slot. Deadlines are counted on the kernel's coarse monotonic
//! clock (a value the kernel updates every tick, read without touching the TSC). While any
//! waiter is left, a sweeper task wakes every [`RESOLUTION`] to wake those past due. A
//! deadline fires between its timeout and its timeout plus [`RESOLUTION`] and the clock's
//! tick (or later if the worker is busier than that): fine for I/O timeouts, which are
//! hundreds of milliseconds or more.
//!
//! Single-threaded by construction, like the worker that owns the thread. Waiters free
//! their slot when dropped (see [`Slots`]); a sweep scans the table only once the earliest
//! deadline it knows of has passed.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::slots::Slots;

/// How often the sweeper looks at the table, and how late a deadline may fire.
pub const RESOLUTION: Duration = Duration::from_millis(10);

/// Added to every deadline so that it never fires early: the coarse clock advances once
/// per kernel tick (1 to 10 ms).
const COARSE_TICK_MS: u64 = 10;

/// Milliseconds on the kernel's coarse monotonic clock.
fn coarse_now_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill; the clock exists on every
    // Linux since 2.6.32, and on failure `ts` stays zero (deadlines then fire at the next
    // sweep, early rather than never).
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

thread_local! {
    static TABLE: Table = Table::default();
}

/// A deadline passed before the operation completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

/// Runs `fut` until it completes or `timeout` has passed.
pub async fn timeout<F: Future>(timeout: Duration, fut: F) -> Result<F::Output, Elapsed> {
    let expired = after(timeout);
    monoio::select! {
        out = fut => Ok(out),
        _ = expired => Err(Elapsed),
    }
}

/// A future that completes once `timeout` has passed. Must be made inside a monoio runtime
/// (it may start the thread's sweeper).
pub fn after(timeout: Duration) -> Expired {
    let due = coarse_now_ms()
        .saturating_add(timeout.as_millis().try_into().unwrap_or(u64::MAX))
        .saturating_add(COARSE_TICK_MS);
    let (slot, start_sweeper) = TABLE.with(|table| table.insert(due));
    if start_sweeper {
        monoio::spawn(sweep_while_waited());
    }
    Expired { slot }
}

/// Completes when its deadline has passed; see [`after`].
pub struct Expired {
    slot: usize,
}

impl Future for Expired {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        TABLE.with(|table| match table.slots.borrow_mut().get_mut(self.slot) {
            Some(Slot::Waiting { waker, .. }) => {
                match waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => *waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
            Some(Slot::Expired) | None => Poll::Ready(()),
        })
    }
}

impl Drop for Expired {
    fn drop(&mut self) {
        // At thread exit the table may be gone already: nothing is left to free then.
        let _ = TABLE.try_with(|table| table.remove(self.slot));
    }
}

async fn sweep_while_waited() {
    loop {
        monoio::time::sleep(RESOLUTION).await;
        if !TABLE.with(|table| table.sweep(coarse_now_ms())) {
            return;
        }
    }
}

#[derive(Default)]
struct Table {
    slots: RefCell<Slots<Slot>>,
    /// No waiter is due before this (a lower bound: waiters that left may have set it).
    earliest: Cell<Option<u64>>,
    sweeping: Cell<bool>,
}

enum Slot {
    /// `due`: on the coarse clock, in milliseconds.
    Waiting {
        due: u64,
        waker: Option<Waker>,
    },
    Expired,
}

impl Table {
    /// Takes a slot for a deadline; also says whether the sweeper must be started.
    fn insert(&self, due: u64) -> (usize, bool) {
        let start_sweeper = !self.sweeping.replace(true);
        let slot = self
            .slots
            .borrow_mut()
            .insert(Slot::Waiting { due, waker: None });
        if self.earliest.get().is_none_or(|e| due < e) {
            self.earliest.set(Some(due));
        }
        (slot, start_sweeper)
    }

    fn remove(&self, slot: usize) {
        self.slots.borrow_mut().remove(slot);
    }

    /// Wakes the waiters due by `now`; says whether any waiter is left (else the sweeper
    /// stops, and the next deadline starts it again).
    fn sweep(&self, now: u64) -> bool {
        if self.earliest.get().is_some_and(|e| now >= e) {
            let mut earliest: Option<u64> = None;
            for slot in self.slots.borrow_mut().iter_mut() {
                let Slot::Waiting { due, waker } = slot else {
                    continue;
                };
                if *due <= now {
                    // Waking only schedules the task: nothing runs under this borrow.
                    if let Some(waker) = waker.take() {
                        waker.wake();
                    }
                    *slot = Slot::Expired;
                } else if earliest.is_none_or(|e| *due < e) {
                    earliest = Some(*due);
                }
            }
            self.earliest.set(earliest);
        }
        let left = !self.slots.borrow().is_empty();
        self.sweeping.set(left);
        left
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wake_count::WakeCount;

    fn poll_slot(table: &Table, slot: usize, cx: &mut Context<'_>) -> Poll<()> {
        match table.slots.borrow_mut().get_mut(slot) {
            Some(Slot::Waiting { waker, .. }) => {
                *waker = Some(cx.waker().clone());
                Poll::Pending
            }
            _ => Poll::Ready(()),
        }
    }

    #[test]
    fn wakes_waiters_past_due_and_reuses_the_slots_of_dropped_ones() {
        let table = Table::default();
        let (count, waker) = WakeCount::waker();
        let mut cx = Context::from_waker(&waker);
        let (first, start_sweeper) = table.insert(1000);
        assert!(start_sweeper);
        table.remove(first);
        for _ in 0..100 {
            let (slot, start_sweeper) = table.insert(1000);
            assert!(!start_sweeper, "one sweeper at a time");
            assert_eq!(slot, first, "slots are reused");
            table.remove(slot);
        }

        let (soon, _) = table.insert(1000);
        let (later, _) = table.insert(5000);
        assert!(poll_slot(&table, soon, &mut cx).is_pending());
        assert!(poll_slot(&table, later, &mut cx).is_pending());
        assert!(table.sweep(999));
        assert_eq!(count.get(), 0, "never early");
        assert!(table.sweep(1000));
        assert_eq!(count.get(), 1, "only the one due");
        assert!(poll_slot(&table, soon, &mut cx).is_ready());
        assert!(poll_slot(&table, later, &mut cx).is_pending());
        table.remove(soon);
        assert_eq!(table.earliest.get(), Some(5000));
        assert!(table.sweep(6000));
        assert_eq!(count.get(), 2);
        table.remove(later);
        assert!(!table.sweep(7000), "the sweeper stops");
        assert!(table.insert(8000).1, "and starts again");
    }

    #[test]
    fn times_out_inside_a_runtime() {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        rt.block_on(async {
            let start = std::time::Instant::now();
            let never = std::future::pending::<()>();
            assert_eq!(
                timeout(Duration::from_millis(30), never).await,
                Err(Elapsed)
            );
            assert!(start.elapsed() >= Duration::from_millis(30));
            assert_eq!(timeout(Duration::from_secs(5), async { 7 }).await, Ok(7));
        });
    }
}
