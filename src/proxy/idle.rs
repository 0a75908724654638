//! Deadlines of connections idle between requests, kept in one table per worker rather than
//! as a runtime timer each: a monoio timer is 640 bytes (its entry is padded to cache
//! lines), more than everything else an idle connection holds, and 50,000 idle clients
//! would keep 32 MB of them. A waiter here is a 40-byte slot (due time and waker); the
//! worker's periodic tick calls [`IdleDeadlines::sweep`], which wakes those past due. A
//! deadline fires up to one tick late, which is fine for idle timeouts of seconds.
//!
//! Single-threaded by construction, like the worker that owns it. Waiters leave their slot
//! when dropped, so the many short waits of busy keep-alive connections leave nothing
//! behind; a sweep only scans when the earliest deadline it knows of has passed.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

#[derive(Default)]
pub struct IdleDeadlines {
    table: RefCell<Table>,
    /// No waiter is due before this (a lower bound: waiters that left may have set it).
    earliest: Cell<Option<Instant>>,
}

#[derive(Default)]
struct Table {
    slots: Vec<Slot>,
    free: Vec<usize>,
}

enum Slot {
    Free,
    Waiting { due: Instant, waker: Option<Waker> },
    Expired,
}

impl IdleDeadlines {
    /// A future that completes once `due` has passed (at the first sweep after it).
    pub fn until(&self, due: Instant) -> Expired<'_> {
        let mut table = self.table.borrow_mut();
        let waiting = Slot::Waiting { due, waker: None };
        let slot = match table.free.pop() {
            Some(i) => {
                table.slots[i] = waiting;
                i
            }
            None => {
                table.slots.push(waiting);
                table.slots.len() - 1
            }
        };
        if self.earliest.get().is_none_or(|e| due < e) {
            self.earliest.set(Some(due));
        }
        Expired { owner: self, slot }
    }

    /// Wakes the waiters due by `now`.
    pub fn sweep(&self, now: Instant) {
        if self.earliest.get().is_none_or(|e| now < e) {
            return;
        }
        let mut earliest: Option<Instant> = None;
        for slot in self.table.borrow_mut().slots.iter_mut() {
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
}

/// Completes when its deadline has passed; see [`IdleDeadlines::until`].
pub struct Expired<'a> {
    owner: &'a IdleDeadlines,
    slot: usize,
}

impl Future for Expired<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.owner.table.borrow_mut().slots[self.slot] {
            Slot::Waiting { waker, .. } => {
                match waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => *waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
            Slot::Expired | Slot::Free => Poll::Ready(()),
        }
    }
}

impl Drop for Expired<'_> {
    fn drop(&mut self) {
        let mut table = self.owner.table.borrow_mut();
        table.slots[self.slot] = Slot::Free;
        table.free.push(self.slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;
    use std::time::Duration;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn wakes_waiters_past_due_and_reuses_the_slots_of_dropped_ones() {
        let deadlines = IdleDeadlines::default();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let start = Instant::now();
        for _ in 0..100 {
            let mut gone = Box::pin(deadlines.until(start + Duration::from_secs(1)));
            assert!(gone.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(deadlines.table.borrow().slots.len(), 1, "slots are reused");

        let mut soon = Box::pin(deadlines.until(start + Duration::from_secs(1)));
        let mut later = Box::pin(deadlines.until(start + Duration::from_secs(5)));
        assert!(soon.as_mut().poll(&mut cx).is_pending());
        assert!(later.as_mut().poll(&mut cx).is_pending());
        deadlines.sweep(start + Duration::from_millis(999));
        assert_eq!(count.0.load(Ordering::Relaxed), 0, "nothing is due yet");
        deadlines.sweep(start + Duration::from_secs(1));
        assert_eq!(
            count.0.load(Ordering::Relaxed),
            1,
            "only the one due is woken"
        );
        assert!(soon.as_mut().poll(&mut cx).is_ready());
        assert!(later.as_mut().poll(&mut cx).is_pending());
        assert_eq!(
            deadlines.earliest.get(),
            Some(start + Duration::from_secs(5))
        );
        deadlines.sweep(start + Duration::from_secs(6));
        assert_eq!(count.0.load(Ordering::Relaxed), 2);
        assert!(later.as_mut().poll(&mut cx).is_ready());
        assert_eq!(deadlines.earliest.get(), None, "nothing left to wait for");
    }
}
