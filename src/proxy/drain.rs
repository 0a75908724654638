//! The worker-local signal that a drain has begun (shutdown or binary upgrade): accept loops
//! stop, answers say `Connection: close`, and a keep-alive connection idle between requests
//! gets [`IDLE_GRACE`] for its next one before it is closed with [`linger_close`].
//!
//! Single-threaded by construction (`Cell`, `RefCell`): the runtime thread that owns the
//! worker sets it and awaits it. Waiters sit in [`Slots`] and leave when dropped.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent};

use crate::io::read_more;
use crate::slots::Slots;

/// How long a keep-alive connection idle between requests when a drain starts may take to
/// send its next request's first byte; that request is answered with `Connection: close`.
/// A client in a request loop sends its next request within a round trip of the last
/// answer, well inside this; a connection idle for longer is closed. It lengthens a stop
/// only when idle keep-alive connections are open, and never past `server.timeouts.drain`.
pub const IDLE_GRACE: Duration = Duration::from_secs(1);
/// How long a lingering close reads and discards what the client still sends.
const LINGER_TIME: Duration = Duration::from_secs(1);
/// How much a lingering close discards before it gives up and closes.
const LINGER_BYTES: usize = 1024 * 1024;
/// Read size while discarding.
const LINGER_READ_BYTES: usize = 16 * 1024;

/// Closes an idle connection without a reset: closing a socket with unread input makes the
/// kernel answer with a reset, which a client whose request crossed our close would see
/// instead of a clean end of stream. So: end our side (the client reads end of stream and
/// knows the connection is over), then read and discard what still arrives until the client
/// closes too, for at most [`LINGER_TIME`] and [`LINGER_BYTES`]; the caller then closes.
pub async fn linger_close<S: AsyncReadRent + AsyncWriteRent>(stream: &mut S, buf: &mut BytesMut) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let deadline = Instant::now() + LINGER_TIME;
    let mut discarded = 0;
    while discarded < LINGER_BYTES {
        buf.clear();
        let left = deadline.saturating_duration_since(Instant::now());
        match read_more(stream, buf, LINGER_READ_BYTES, left).await {
            Ok(0) | Err(_) => return,
            Ok(n) => discarded += n,
        }
    }
}

#[derive(Default)]
pub struct DrainSignal {
    started: Cell<bool>,
    /// A waiter's waker, once it was polled (taken when the drain starts).
    waiters: RefCell<Slots<Option<Waker>>>,
}

impl DrainSignal {
    pub fn is_started(&self) -> bool {
        self.started.get()
    }

    /// Starts the drain and wakes everything waiting for it. Idempotent.
    pub fn start(&self) {
        if !self.started.replace(true) {
            for waker in self
                .waiters
                .borrow_mut()
                .iter_mut()
                .filter_map(Option::take)
            {
                waker.wake();
            }
        }
    }

    /// Resolves once the drain has started.
    pub fn started(&self) -> Started<'_> {
        Started {
            signal: self,
            slot: None,
        }
    }
}

pub struct Started<'a> {
    signal: &'a DrainSignal,
    slot: Option<usize>,
}

impl Future for Started<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.signal.started.get() {
            return Poll::Ready(());
        }
        let mut waiters = self.signal.waiters.borrow_mut();
        match self.slot.and_then(|i| waiters.get_mut(i)) {
            Some(waker) => *waker = Some(cx.waker().clone()),
            None => {
                let i = waiters.insert(Some(cx.waker().clone()));
                drop(waiters);
                self.slot = Some(i);
            }
        }
        Poll::Pending
    }
}

impl Drop for Started<'_> {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            self.signal.waiters.borrow_mut().remove(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wake_count::WakeCount;

    #[test]
    fn wakes_waiters_and_forgets_dropped_ones() {
        let signal = DrainSignal::default();
        let (count, waker) = WakeCount::waker();
        let mut cx = Context::from_waker(&waker);
        for _ in 0..100 {
            let mut gone = Box::pin(signal.started());
            assert!(gone.as_mut().poll(&mut cx).is_pending());
        }
        assert!(signal.waiters.borrow().is_empty(), "dropped waiters leave");
        let mut waiting = Box::pin(signal.started());
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
        signal.start();
        assert_eq!(count.get(), 1);
        assert!(waiting.as_mut().poll(&mut cx).is_ready());
        assert!(Box::pin(signal.started()).as_mut().poll(&mut cx).is_ready());
    }
}
