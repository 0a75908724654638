//! Deadlines for a worker's socket operations and idle waits, kept in one table per thread
//! instead of a runtime timer each. A monoio timer is 640 bytes (padded to cache lines, so
//! every future holding one is allocated aligned), reads the clock when made and enters and
//! leaves the runtime's timer wheel: a proxied request made four or five of them, and an
//! idle connection kept one, more than everything else it holds.
//!
//! A waiter here is a 40-byte slot. While any waiter is left, a sweeper task wakes every
//! [`RESOLUTION`] to wake those past due and to note the time, which new deadlines count
//! from (no clock read per operation). A deadline fires between its timeout and its timeout
//! plus two resolutions: fine for I/O timeouts, which are hundreds of milliseconds or more.
//!
//! Single-threaded by construction, like the worker that owns the thread. Waiters free
//! their slot when dropped, so the many short waits of a busy worker leave nothing behind;
//! a sweep scans the table only once the earliest deadline it knows of has passed.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// How often the sweeper looks at the table, and how late a deadline may fire.
pub const RESOLUTION: Duration = Duration::from_millis(10);

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
    let (slot, start_sweeper) = TABLE.with(|table| table.insert(timeout));
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
        TABLE.with(|table| match &mut table.slots.borrow_mut()[self.slot] {
            Slot::Waiting { waker, .. } => {
                match waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => *waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
            Slot::Expired | Slot::Free => Poll::Ready(()),
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
        if !TABLE.with(|table| table.sweep(Instant::now())) {
            return;
        }
    }
}

#[derive(Default)]
struct Table {
    slots: RefCell<Vec<Slot>>,
    free: RefCell<Vec<usize>>,
    /// Slots in use.
    waiting: Cell<usize>,
    /// No waiter is due before this (a lower bound: waiters that left may have set it).
    earliest: Cell<Option<Instant>>,
    /// The time at the last sweep (or when the sweeper started).
    now: Cell<Option<Instant>>,
    sweeping: Cell<bool>,
}

enum Slot {
    Free,
    Waiting { due: Instant, waker: Option<Waker> },
    Expired,
}

impl Table {
    /// Takes a slot for a deadline `timeout` from now; also says whether the sweeper must
    /// be started.
    fn insert(&self, timeout: Duration) -> (usize, bool) {
        let start_sweeper = !self.sweeping.replace(true);
        let now = match self.now.get() {
            Some(now) if !start_sweeper => now,
            _ => {
                let now = Instant::now();
                self.now.set(Some(now));
                now
            }
        };
        // `now` may be a resolution old: never fire early.
        let due = now + timeout + RESOLUTION;
        let waiting = Slot::Waiting { due, waker: None };
        let mut slots = self.slots.borrow_mut();
        let slot = match self.free.borrow_mut().pop() {
            Some(i) => {
                slots[i] = waiting;
                i
            }
            None => {
                slots.push(waiting);
                slots.len() - 1
            }
        };
        self.waiting.set(self.waiting.get() + 1);
        if self.earliest.get().is_none_or(|e| due < e) {
            self.earliest.set(Some(due));
        }
        (slot, start_sweeper)
    }

    fn remove(&self, slot: usize) {
        self.slots.borrow_mut()[slot] = Slot::Free;
        self.free.borrow_mut().push(slot);
        self.waiting.set(self.waiting.get() - 1);
    }

    /// Wakes the waiters due by `now`; says whether any waiter is left (else the sweeper
    /// stops, and the next deadline starts it again).
    fn sweep(&self, now: Instant) -> bool {
        self.now.set(Some(now));
        if self.earliest.get().is_some_and(|e| now >= e) {
            let mut earliest: Option<Instant> = None;
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
        let left = self.waiting.get() > 0;
        self.sweeping.set(left);
        left
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn poll_slot(table: &Table, slot: usize, cx: &mut Context<'_>) -> Poll<()> {
        match &mut table.slots.borrow_mut()[slot] {
            Slot::Waiting { waker, .. } => {
                *waker = Some(cx.waker().clone());
                Poll::Pending
            }
            _ => Poll::Ready(()),
        }
    }

    #[test]
    fn wakes_waiters_past_due_and_reuses_the_slots_of_dropped_ones() {
        let table = Table::default();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let (first, start_sweeper) = table.insert(Duration::from_secs(1));
        assert!(start_sweeper);
        let start = table.now.get().unwrap();
        table.remove(first);
        for _ in 0..100 {
            let (slot, start_sweeper) = table.insert(Duration::from_secs(1));
            assert!(!start_sweeper, "one sweeper at a time");
            table.remove(slot);
        }
        assert_eq!(table.slots.borrow().len(), 1, "slots are reused");

        let (soon, _) = table.insert(Duration::from_secs(1));
        let (later, _) = table.insert(Duration::from_secs(5));
        assert!(poll_slot(&table, soon, &mut cx).is_pending());
        assert!(poll_slot(&table, later, &mut cx).is_pending());
        assert!(table.sweep(start + Duration::from_secs(1)));
        assert_eq!(count.0.load(Ordering::Relaxed), 0, "never early");
        assert!(table.sweep(start + Duration::from_secs(1) + RESOLUTION));
        assert_eq!(count.0.load(Ordering::Relaxed), 1, "only the one due");
        assert!(poll_slot(&table, soon, &mut cx).is_ready());
        assert!(poll_slot(&table, later, &mut cx).is_pending());
        table.remove(soon);
        assert!(table.sweep(start + Duration::from_secs(6)));
        assert_eq!(count.0.load(Ordering::Relaxed), 2);
        table.remove(later);
        assert!(
            !table.sweep(start + Duration::from_secs(7)),
            "the sweeper stops"
        );
        assert!(table.insert(Duration::from_secs(1)).1, "and starts again");
    }

    #[test]
    fn times_out_inside_a_runtime() {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        rt.block_on(async {
            let start = Instant::now();
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
