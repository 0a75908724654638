//! The h2 codec is written against poll-based `AsyncRead`/`AsyncWrite`; the connection is
//! a monoio stream with owned-buffer operations. [`PollDuplex`] joins the two over the
//! stream's [`Duplex`] (a read and a write may be in flight at once, as the codec wants):
//! each poll drives a boxed operation that owns its buffer.
//!
//! Writes are staged and go out on flush, which the codec asks for after each batch of
//! frames: many small frames leave in one system call. Staging is bounded, so a client
//! that stops reading stalls the codec instead of growing a buffer.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::http2::flood::{ControlFrame, FrameBudget, Seen};
use crate::io::Duplex;

/// Bytes read from the socket at a time.
const READ_BYTES: usize = 16 * 1024;
/// Bytes staged for writing before the codec has to wait for the socket.
const MAX_STAGED: usize = 64 * 1024;

type Op<'a, T> = Pin<Box<dyn Future<Output = (io::Result<T>, BytesMut)> + 'a>>;

pub struct PollDuplex<'a, D: Duplex> {
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
    budget: FrameBudget,
    /// Once it says the client spent its control-frame budget, nothing more is read, and
    /// the connection task ends the connection.
    seen: &'a Seen,
}

impl<'a, D: Duplex> PollDuplex<'a, D> {
    pub fn new(
        duplex: &'a D,
        unread: BytesMut,
        budget: FrameBudget,
        seen: &'a Seen,
    ) -> Result<Self, ControlFrame> {
        let mut io = PollDuplex {
            duplex,
            unread: BytesMut::new(),
            reading: None,
            staged: BytesMut::new(),
            sending: None,
            spare: BytesMut::new(),
            budget,
            seen,
        };
        io.budget.read(&unread, seen)?;
        io.unread = unread;
        Ok(io)
    }

    /// Drives the send in flight, if any, to its end.
    fn poll_sending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(op) = self.sending.as_mut() {
            let (result, mut buf) = ready!(op.as_mut().poll(cx));
            self.sending = None;
            buf.clear();
            self.spare = buf;
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

impl<D: Duplex> AsyncRead for PollDuplex<'_, D> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.seen.flood.get().is_some() {
            return Poll::Pending; // the connection task is ending the connection
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
            if this.budget.read(&this.unread, this.seen).is_err() {
                this.unread.clear();
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

impl<D: Duplex> AsyncWrite for PollDuplex<'_, D> {
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
        this.budget.outbound(n);
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
