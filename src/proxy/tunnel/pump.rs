//! The worker's tunnel pump: every tunnel whose two sides are plain TCP is copied by one
//! task over one edge-triggered epoll set, as nginx's event loop does it. A frame costs
//! one `recv` and one `send`; readiness comes from the set, which the runtime is asked
//! about once per wake (one POLL_ADD on io_uring) instead of once per socket and frame,
//! and no per-tunnel future is polled while bytes flow. The connection's task only waits
//! for the tunnel's end, or for its idle, lifetime or drain limit (`super::watch`).
//!
//! Each socket is registered once, for input, output and the peer's close, and stays so
//! until the tunnel ends. A read that fills less than the buffer leaves the socket empty,
//! so the next bytes raise a new edge; when the peer has closed, reading goes on until
//! the end is seen. Bytes the destination has no room for wait in the tunnel's pending
//! buffer, and the source is not read again until they are written (backpressure).

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::os::fd::{FromRawFd, RawFd};
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Instant;

use bytes::BytesMut;

use super::{watch, TunnelEnd, TunnelLimits, TunnelStats};
use crate::io::{recv_now, send_now};
use crate::proxy::drain::DrainSignal;
use crate::slots::Slots;

/// Side 0 is the client, side 1 the upstream.
const CLIENT: usize = 0;
const UPSTREAM: usize = 1;
/// One read's room: a WebSocket frame of ordinary size arrives in one read.
const SCRATCH_BYTES: usize = 64 * 1024;
/// Events taken from the set per call.
const EVENTS: usize = 64;

/// The pump of one worker; the epoll set and its task start with the first tunnel.
#[derive(Default)]
pub struct Pump(RefCell<Option<Rc<Set>>>);

/// An epoll set of tunnel sockets and the tunnels they belong to.
struct Set {
    fd: RawFd,
    /// The set, as a socket type monoio can wait on: an epoll set is readable while it
    /// holds events. It owns `fd` and closes it.
    waiter: monoio::net::UnixDatagram,
    tunnels: RefCell<Slots<Tunnel>>,
    scratch: RefCell<Box<[u8]>>,
    /// Its task stopped (the set could not be waited on): the next tunnel makes a new set.
    dead: Cell<bool>,
}

struct Tunnel {
    fds: [RawFd; 2],
    /// Bytes read from side `i`, not yet written to the other side.
    pending: [BytesMut; 2],
    shared: Rc<Shared>,
}

/// What the pump and the connection's task both see of a tunnel.
struct Shared {
    activity: Cell<Instant>,
    /// Bytes from side `i` (and so owed to the other side), those sent ahead included.
    moved: [Cell<u64>; 2],
    end: Cell<Option<TunnelEnd>>,
    waker: Cell<Option<Waker>>,
}

impl Pump {
    /// Copies between the plain TCP sockets `client` and `upstream` until the tunnel ends.
    /// `ahead[CLIENT]` is what the client sent behind its request head, `ahead[UPSTREAM]`
    /// what the upstream sent behind its 101; both go first. The sockets stay the
    /// caller's: they leave the set before this returns.
    pub async fn run(
        &self,
        fds: [RawFd; 2],
        ahead: [BytesMut; 2],
        limits: TunnelLimits,
        drain: &DrainSignal,
    ) -> TunnelStats {
        let shared = Rc::new(Shared {
            activity: Cell::new(Instant::now()),
            // What went ahead counts as carried, like every later byte.
            moved: ahead.each_ref().map(|bytes| Cell::new(bytes.len() as u64)),
            end: Cell::new(None),
            waker: Cell::new(None),
        });
        let end = match self
            .set()
            .and_then(|set| Registered::new(set, fds, ahead, &shared))
        {
            Ok(_registered) => monoio::select! {
                end = shared.ended() => end,
                end = watch(&shared.activity, limits, drain) => end,
            },
            Err(e) => {
                tracing::warn!(error = %e, "a tunnel could not join the worker's epoll set");
                TunnelEnd::Failed
            }
        };
        TunnelStats {
            upstream: shared.moved[CLIENT].get(),
            downstream: shared.moved[UPSTREAM].get(),
            end,
        }
    }

    /// The worker's set, made (and its task started) on first use.
    fn set(&self) -> std::io::Result<Rc<Set>> {
        if let Some(set) = &*self.0.borrow() {
            if !set.dead.get() {
                return Ok(Rc::clone(set));
            }
        }
        // SAFETY: a plain system call; the result is checked.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor nothing else owns; the waiter takes it.
        let std = unsafe { std::os::unix::net::UnixDatagram::from_raw_fd(fd) };
        let set = Rc::new(Set {
            fd,
            waiter: monoio::net::UnixDatagram::from_std(std)?,
            tunnels: RefCell::new(Slots::default()),
            scratch: RefCell::new(vec![0; SCRATCH_BYTES].into_boxed_slice()),
            dead: Cell::new(false),
        });
        monoio::spawn(Rc::clone(&set).serve());
        *self.0.borrow_mut() = Some(Rc::clone(&set));
        Ok(set)
    }
}

impl Shared {
    /// Resolves once the pump ended the tunnel.
    async fn ended(&self) -> TunnelEnd {
        poll_fn(|cx| match self.end.get() {
            Some(end) => Poll::Ready(end),
            None => {
                self.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }

    /// Bytes read either way so far.
    fn moved(&self) -> u64 {
        self.moved[CLIENT].get() + self.moved[UPSTREAM].get()
    }

    fn finish(&self, end: TunnelEnd) {
        if self.end.get().is_none() {
            self.end.set(Some(end));
            if let Some(waker) = self.waker.take() {
                waker.wake();
            }
        }
    }
}

/// A tunnel while it is in the set; dropping it takes the sockets out.
struct Registered {
    set: Rc<Set>,
    index: usize,
}

impl Registered {
    fn new(
        set: Rc<Set>,
        fds: [RawFd; 2],
        pending: [BytesMut; 2],
        shared: &Rc<Shared>,
    ) -> std::io::Result<Self> {
        let index = set.tunnels.borrow_mut().insert(Tunnel {
            fds,
            pending,
            shared: Rc::clone(shared),
        });
        let registered = Registered { set, index };
        for side in [CLIENT, UPSTREAM] {
            let mut event = libc::epoll_event {
                events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
                u64: (index << 1 | side) as u64,
            };
            // SAFETY: both descriptors are open sockets the caller holds; `event` lives
            // across the call. Registering reports the sockets' present state at once
            // (writable, so that the bytes ahead go out).
            let added = unsafe {
                libc::epoll_ctl(
                    registered.set.fd,
                    libc::EPOLL_CTL_ADD,
                    fds[side],
                    &mut event,
                )
            };
            if added < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(registered)
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut tunnels = self.set.tunnels.borrow_mut();
        if let Some(tunnel) = tunnels.get_mut(self.index) {
            for fd in tunnel.fds {
                // SAFETY: the socket is still open (its owner outlives this guard); one
                // never added, or added to no set, gives an error that changes nothing.
                unsafe {
                    libc::epoll_ctl(self.set.fd, libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut())
                };
            }
        }
        tunnels.remove(self.index);
    }
}

impl Set {
    /// The pump's task: waits until the set has events, then handles all of them.
    async fn serve(self: Rc<Self>) {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; EVENTS];
        loop {
            if let Err(e) = self.waiter.readable(false).await {
                tracing::error!(error = %e, "the tunnel pump cannot wait on its epoll set");
                self.dead.set(true);
                self.fail_all();
                return;
            }
            loop {
                // SAFETY: `events` has room for `EVENTS` entries; a zero timeout never blocks.
                let n = unsafe { libc::epoll_wait(self.fd, events.as_mut_ptr(), EVENTS as i32, 0) };
                let Ok(n) = usize::try_from(n) else {
                    break; // EINTR: the set stays readable and is asked again
                };
                let now = Instant::now();
                for event in &events[..n] {
                    self.handle(event.u64 as usize, event.events, now);
                }
                if n < EVENTS {
                    break;
                }
            }
        }
    }

    /// One socket's readiness, for the tunnel it belongs to.
    fn handle(&self, token: usize, flags: u32, now: Instant) {
        let (index, side) = (token >> 1, token & 1);
        let mut tunnels = self.tunnels.borrow_mut();
        let Some(tunnel) = tunnels.get_mut(index) else {
            return; // its tunnel has left the set
        };
        if tunnel.shared.end.get().is_some() {
            return;
        }
        let moved = tunnel.shared.moved();
        let result = tunnel.on_ready(side, flags, &mut self.scratch.borrow_mut());
        if tunnel.shared.moved() != moved {
            tunnel.shared.activity.set(now); // one clock read per wake, not per read
        }
        if let Err(end) = result {
            tunnel.shared.finish(end);
        }
    }

    /// Ends every tunnel (their tasks close them): the set cannot be waited on.
    fn fail_all(&self) {
        for tunnel in self.tunnels.borrow_mut().iter_mut() {
            tunnel.shared.finish(TunnelEnd::Failed);
        }
    }
}

impl Tunnel {
    /// Side `side` is ready: first what waits to be written to it, then what it has.
    fn on_ready(&mut self, side: usize, flags: u32, scratch: &mut [u8]) -> Result<(), TunnelEnd> {
        let closing = (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;
        let from = 1 - side;
        if flags & (libc::EPOLLOUT as u32 | closing) != 0 && !self.pending[from].is_empty() {
            if !self.flush(from)? {
                return Ok(());
            }
            // Reading `from` waited for this room; its edge may be gone.
            self.copy(from, scratch, false)?;
        }
        if flags & (libc::EPOLLIN as u32 | closing) != 0 {
            self.copy(side, scratch, flags & closing != 0)?;
        }
        Ok(())
    }

    /// Reads side `from` and writes to the other side until `from` is empty, the other
    /// side has no room, or either ends. `to_end`: the peer closed, so a short read does
    /// not mean the end was seen; read on until it is.
    fn copy(&mut self, from: usize, scratch: &mut [u8], to_end: bool) -> Result<(), TunnelEnd> {
        if !self.pending[from].is_empty() {
            return Ok(()); // waiting for the other side's room
        }
        loop {
            let n = match recv_now(self.fds[from], scratch) {
                Ok(0) => return Err(closed(from)),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return Err(closed(from)),
            };
            let moved = &self.shared.moved[from];
            moved.set(moved.get() + n as u64);
            let sent = send_now(self.fds[1 - from], &scratch[..n]).map_err(|_| closed(1 - from))?;
            if sent < n {
                self.pending[from].extend_from_slice(&scratch[sent..n]);
                return Ok(());
            }
            if n < scratch.len() && !to_end {
                return Ok(());
            }
        }
    }

    /// Writes what waits from side `from`; whether all of it went.
    fn flush(&mut self, from: usize) -> Result<bool, TunnelEnd> {
        let pending = &mut self.pending[from];
        let sent = send_now(self.fds[1 - from], pending).map_err(|_| closed(1 - from))?;
        let _ = pending.split_to(sent);
        Ok(pending.is_empty())
    }
}

fn closed(side: usize) -> TunnelEnd {
    if side == CLIENT {
        TunnelEnd::ClientClosed
    } else {
        TunnelEnd::UpstreamClosed
    }
}
