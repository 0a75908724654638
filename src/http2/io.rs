//! The h2 codec is written against poll-based `AsyncRead`/`AsyncWrite`; the connection is
//! a monoio stream with owned-buffer operations. [`PollDuplex`] joins the two over the
//! stream's [`Duplex`] (a read and a write may be in flight at once, as the codec wants):
//! each poll drives a boxed operation that owns its buffer.
//!
//! Writes are staged and go out on flush, which the codec asks for after each batch of
//! frames: many small frames leave in one system call. Staging is bounded, so a peer that
//! stops reading stalls the codec instead of growing a buffer.
//!
//! An [`Inspect`] sees every byte read and counts those written before the codec does: a
//! server's control-frame budget (`flood.rs`); a client needs none (`()`).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::io::Duplex;

/// Looks at a connection's bytes on their way to and from the codec.
pub trait Inspect: Unpin {
    /// Bytes read; `false` stops reading (the connection's owner ends it).
    fn inbound(&mut self, bytes: &[u8]) -> bool;
    /// Bytes written.
    fn outbound(&mut self, bytes: &[u8]);
}

impl Inspect for () {
    fn inbound(&mut self, _: &[u8]) -> bool {
        true
    }

    fn outbound(&mut self, _: &[u8]) {}
}

/// Bytes read from the socket at a time.
const READ_BYTES: usize = 16 * 1024;
/// A send buffer up to this size is kept for the next one.
const KEPT_SPARE_BYTES: usize = 16 * 1024;
/// Bytes staged for writing before the codec has to wait for the socket.
const MAX_STAGED: usize = 64 * 1024;

type Op<'a, T> = Pin<Box<dyn Future<Output = (io::Result<T>, BytesMut)> + 'a>>;

pub struct PollDuplex<'a, D: Duplex, I: Inspect> {
    duplex: &'a D,
    /// Bytes read and not handed to the codec yet (at first, those read before the
    /// connection was known to be HTTP/2).
    unread: BytesMut,
    reading: Option<Op<'a, usize>>,
    /// Bytes the codec wrote that are not on their way yet.
    staged: BytesMut,
    sending: Option<Op<'a, ()>>,
    /// The buffer of the last finished send, reused for the next staging.
    spare: BytesMut,
    inspect: I,
    /// Set once `inspect` stopped reading.
    stopped: bool,
}

impl<'a, D: Duplex, I: Inspect> PollDuplex<'a, D, I> {
    /// `unread`: bytes already read from the connection. `None` when `inspect` refuses
    /// them.
    pub fn new(duplex: &'a D, unread: BytesMut, mut inspect: I) -> Option<Self> {
        if !inspect.inbound(&unread) {
            return None;
        }
        Some(PollDuplex {
            duplex,
            unread,
            reading: None,
            staged: BytesMut::new(),
            sending: None,
            spare: BytesMut::new(),
            inspect,
            stopped: false,
        })
    }

    /// Drives the send in flight, if any, to its end.
    fn poll_sending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(op) = self.sending.as_mut() {
            let (result, mut buf) = ready!(op.as_mut().poll(cx));
            self.sending = None;
            // Kept for the next staging unless a burst grew it: an idle connection should
            // not hold a large buffer.
            if buf.capacity() <= KEPT_SPARE_BYTES {
                buf.clear();
                self.spare = buf;
            }
            result?;
        }
        Poll::Ready(Ok(()))
    }

    /// Starts sending what is staged.
    fn start_send(&mut self) {
        let next = std::mem::take(&mut self.spare);
        let staged = std::mem::replace(&mut self.staged, next);
        let duplex = self.duplex;
        self.sending = Some(Box::pin(duplex.send(staged)));
    }
}

impl<D: Duplex, I: Inspect> AsyncRead for PollDuplex<'_, D, I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.stopped {
            return Poll::Pending; // the connection's owner is ending it
        }
        if this.unread.is_empty() {
            let op = this.reading.get_or_insert_with(|| {
                let mut buf = std::mem::take(&mut this.unread);
                buf.clear();
                buf.reserve(READ_BYTES);
                Box::pin(this.duplex.recv(buf))
            });
            let (result, buf) = ready!(op.as_mut().poll(cx));
            this.reading = None;
            this.unread = buf;
            if result? == 0 {
                return Poll::Ready(Ok(())); // the end of the stream
            }
            if !this.inspect.inbound(&this.unread) {
                this.unread.clear();
                this.stopped = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
        let n = this.unread.len().min(out.remaining());
        out.put_slice(&this.unread[..n]);
        this.unread.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<D: Duplex, I: Inspect> AsyncWrite for PollDuplex<'_, D, I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.staged.len() >= MAX_STAGED {
            ready!(this.poll_sending(cx))?;
            this.start_send();
            // Staging is free again; the send runs while the codec writes on.
            if let Poll::Ready(Err(e)) = this.poll_sending(cx) {
                return Poll::Ready(Err(e));
            }
        }
        let n = buf.len().min(MAX_STAGED - this.staged.len());
        this.staged.extend_from_slice(&buf[..n]);
        this.inspect.outbound(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            ready!(this.poll_sending(cx))?;
            if this.staged.is_empty() {
                return Poll::Ready(Ok(()));
            }
            this.start_send();
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}
