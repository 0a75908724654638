//! Owned-buffer I/O helpers over monoio's rent traits, for both sides of the proxy (client
//! connections and the upstream client): appending reads with a deadline, whole-buffer
//! writes, waiting for input without lending a buffer, and the worker's spare buffers. A
//! read that times out is abandoned together with its buffer (an in-flight io_uring read
//! may still land in it), so a timeout always ends the connection.

use std::cell::RefCell;
use std::future::Future;
use std::time::Duration;

use bytes::BytesMut;
use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut, RawBuf};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use monoio::BufResult;

use crate::deadline;

/// The size of a worker's I/O buffers: client reads, answer staging, upstream reads. A
/// buffer grows past it for a large head or body, and is then not kept as a spare.
pub const BUFFER_BYTES: usize = 8 * 1024;
/// A spare grown past this is dropped rather than kept.
const MAX_SPARE_CAPACITY: usize = 8 * BUFFER_BYTES;
/// Spares kept per worker: as many as were in use at once, up to this (8 MiB).
const MAX_SPARES: usize = 1024;

thread_local! {
    /// This worker's spare buffers. Connections take one when bytes arrive and give it back
    /// once a request is through, so an idle connection holds none (a thread is a worker).
    static SPARES: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer of at least [`BUFFER_BYTES`], a spare if the worker has one.
pub fn take_buffer() -> BytesMut {
    SPARES
        .with_borrow_mut(Vec::pop)
        .unwrap_or_else(|| BytesMut::with_capacity(BUFFER_BYTES))
}

/// Gives `buf` back as a spare if nothing else still refers to its memory (a `Bytes` split
/// off it, say) and it has not grown large; otherwise it is dropped.
pub fn give_back(mut buf: BytesMut) {
    buf.clear();
    if buf.capacity() > MAX_SPARE_CAPACITY || !buf.try_reclaim(BUFFER_BYTES) {
        return;
    }
    SPARES.with_borrow_mut(|spares| {
        if spares.len() < MAX_SPARES {
            spares.push(buf);
        }
    });
}

/// Waiting until a socket has input (or an end or error to report) without lending it a
/// buffer: what an idle keep-alive connection does between requests.
pub trait WaitReadable {
    fn readable(&self) -> impl Future<Output = std::io::Result<()>>;
}

impl WaitReadable for TcpStream {
    /// io_uring: one POLL_ADD, and the read that follows completes at once. The epoll
    /// driver is asked for real readiness (`relaxed: false`), not its possibly stale flag.
    fn readable(&self) -> impl Future<Output = std::io::Result<()>> {
        TcpStream::readable(self, false)
    }
}

/// Ending a connection the way its protocol asks. TLS says close_notify first (RFC 8446
/// §6.1): the peer can then tell the end from a truncation, and OpenSSL clients keep the
/// session to resume only from a connection that ended so. Plain TCP has nothing to say.
pub trait CloseNotify {
    fn close_notify(&mut self) -> impl Future<Output = ()>;
}

impl CloseNotify for TcpStream {
    async fn close_notify(&mut self) {}
}

/// Why a read brought nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFail {
    Timeout,
    Io,
}

/// Reads what is available into the spare capacity of `buf` (growing it to at least
/// `min_spare` free bytes first) and returns how many bytes arrived; 0 means end of stream.
pub async fn read_more<R: AsyncReadRent>(
    src: &mut R,
    buf: &mut BytesMut,
    min_spare: usize,
    timeout: Duration,
) -> Result<usize, ReadFail> {
    if buf.capacity() - buf.len() < min_spare {
        buf.reserve(min_spare);
    }
    let owned = std::mem::take(buf);
    let filled = owned.len();
    match deadline::timeout(timeout, src.read(owned.slice_mut(filled..))).await {
        Ok((result, slice)) => {
            *buf = slice.into_inner();
            result.map_err(|_| ReadFail::Io)
        }
        Err(_) => Err(ReadFail::Timeout),
    }
}

/// Writes all of `out` within `timeout`, then hands it back emptied for reuse. A peer that
/// stops reading must not hold the connection (and the upstream behind it) forever.
pub async fn write_out<W: AsyncWriteRent>(
    dst: &mut W,
    out: BytesMut,
    timeout: Duration,
) -> std::io::Result<BytesMut> {
    let (result, mut out) = write_within(dst, out, timeout).await?;
    result?;
    out.clear();
    Ok(out)
}

/// Writes all of `buf` within `timeout`. On expiry the buffer is abandoned with the write
/// (an io_uring write may still be in flight), and the connection must be closed.
pub async fn write_within<W: AsyncWriteRent, B: IoBuf + 'static>(
    dst: &mut W,
    buf: B,
    timeout: Duration,
) -> std::io::Result<(std::io::Result<usize>, B)> {
    deadline::timeout(timeout, dst.write_all(buf))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "write timed out"))
}

/// A connection read and written at the same time by two loops of one task (a tunnel):
/// both operations take `&self`, so neither waits for the other and neither polls for
/// readiness. `send` writes the whole buffer and hands it back.
pub trait Duplex {
    fn recv(&self, buf: BytesMut) -> impl Future<Output = (std::io::Result<usize>, BytesMut)>;
    fn send(&self, buf: BytesMut) -> impl Future<Output = (std::io::Result<()>, BytesMut)>;
}

/// A stream that can lend itself as a [`Duplex`] for as long as it is borrowed.
pub trait IntoDuplex {
    type Duplex<'a>: Duplex
    where
        Self: 'a;
    fn duplex(&mut self) -> Self::Duplex<'_>;
    /// The socket, when the stream is plain TCP (no TLS session in between): then a tunnel
    /// can copy its bytes with plain system calls.
    fn tcp_fd(&self) -> Option<std::os::fd::RawFd> {
        None
    }
}

/// A borrowed TCP stream read and written from two loops at once.
pub struct TcpDuplex<'a>(&'a std::cell::UnsafeCell<TcpStream>);

impl IntoDuplex for TcpStream {
    type Duplex<'a> = TcpDuplex<'a>;
    fn tcp_fd(&self) -> Option<std::os::fd::RawFd> {
        Some(std::os::fd::AsRawFd::as_raw_fd(self))
    }
    fn duplex(&mut self) -> TcpDuplex<'_> {
        TcpDuplex(std::cell::UnsafeCell::from_mut(self))
    }
}

impl TcpDuplex<'_> {
    // The loops' halves, as monoio's split hands them out: see the SAFETY note.
    #[allow(clippy::mut_from_ref)]
    fn stream(&self) -> &mut TcpStream {
        // SAFETY: `TcpStream: monoio::io::Split`: its reads and writes are independent
        // io_uring operations on a shared fd, which monoio's own `OwnedReadHalf` and
        // `OwnedWriteHalf` run concurrently through the same `UnsafeCell`. The tunnel
        // calls `recv` from one loop and `send` from the other, never two of a kind.
        unsafe { &mut *self.0.get() }
    }
}

impl Duplex for TcpDuplex<'_> {
    async fn recv(&self, buf: BytesMut) -> (std::io::Result<usize>, BytesMut) {
        self.stream().read(buf).await
    }

    /// Tries one non-blocking `send` first: a tunnel's writes are small and the socket
    /// buffer has room nearly always, so the common case costs one syscall and no trip
    /// through the ring (a submission, a completion and a wake of the task). What does not
    /// fit goes through the runtime's whole write.
    async fn send(&self, buf: BytesMut) -> (std::io::Result<()>, BytesMut) {
        let stream = self.stream();
        let done = match send_now(std::os::fd::AsRawFd::as_raw_fd(stream), &buf) {
            Ok(done) => done,
            Err(e) => return (Err(e), buf),
        };
        if done == buf.len() {
            return (Ok(()), buf);
        }
        let (result, rest) = stream.write_all(buf.slice(done..)).await;
        (result.map(|_| ()), rest.into_inner())
    }
}

/// One non-blocking `recv` into `buf`, bypassing the runtime (the tunnel pump).
pub fn recv_now(fd: std::os::fd::RawFd, buf: &mut [u8]) -> std::io::Result<usize> {
    // SAFETY: `buf` is valid for writes of its length; `fd` is an open socket the caller holds.
    let got = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    usize::try_from(got).map_err(|_| std::io::Error::last_os_error())
}

/// Non-blocking `send`s of `buf` until it is all written or the socket has no room;
/// how much went. A closed peer is an error, not a signal.
pub fn send_now(fd: std::os::fd::RawFd, buf: &[u8]) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: the range is inside `buf`; `fd` is an open socket the caller holds.
        let sent = unsafe {
            libc::send(
                fd,
                buf[done..].as_ptr().cast(),
                buf.len() - done,
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        match usize::try_from(sent) {
            Ok(n) => done += n,
            Err(_) => match std::io::Error::last_os_error() {
                e if e.kind() == std::io::ErrorKind::WouldBlock => break,
                e if e.kind() == std::io::ErrorKind::Interrupted => {}
                e => return Err(e),
            },
        }
    }
    Ok(done)
}

/// A stream whose reads fill a slice and whose writes take one (a TLS session, an HTTP/2
/// stream): monoio's owned-buffer reads and writes follow from these two through
/// [`rent_read`], [`rent_readv`], [`rent_write`] and [`rent_writev`].
pub trait SliceIo {
    fn read_into(&mut self, dst: &mut [u8]) -> impl Future<Output = std::io::Result<usize>>;
    fn write_from(&mut self, src: &[u8]) -> impl Future<Output = std::io::Result<usize>>;
}

/// `AsyncReadRent::read` for a [`SliceIo`].
pub async fn rent_read<S: SliceIo, T: IoBufMut>(stream: &mut S, mut buf: T) -> BufResult<usize, T> {
    // SAFETY: the buffer's spare room, as monoio's own reads use it; only the bytes written
    // are marked initialised.
    let dst = unsafe { std::slice::from_raw_parts_mut(buf.write_ptr(), buf.bytes_total()) };
    let result = stream.read_into(dst).await;
    if let Ok(n) = result {
        unsafe { buf.set_init(n) };
    }
    (result, buf)
}

/// `AsyncReadRent::readv` for a [`SliceIo`]: the first non-empty slice is filled.
pub async fn rent_readv<S: SliceIo, T: IoVecBufMut>(
    stream: &mut S,
    mut buf: T,
) -> BufResult<usize, T> {
    // SAFETY: the first non-empty slice of the vector, filled like `rent_read`'s buffer.
    let n = match unsafe { RawBuf::new_from_iovec_mut(&mut buf) } {
        Some(raw) => match rent_read(stream, raw).await.0 {
            Ok(n) => n,
            Err(e) => return (Err(e), buf),
        },
        None => 0,
    };
    unsafe { buf.set_init(n) };
    (Ok(n), buf)
}

/// `AsyncWriteRent::write` for a [`SliceIo`].
pub async fn rent_write<S: SliceIo, T: IoBuf>(stream: &mut S, buf: T) -> BufResult<usize, T> {
    // SAFETY: the buffer's initialised bytes, read while we own it.
    let src = unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) };
    let result = stream.write_from(src).await;
    (result, buf)
}

/// `AsyncWriteRent::writev` for a [`SliceIo`]: the first non-empty slice is written.
pub async fn rent_writev<S: SliceIo, T: IoVecBuf>(stream: &mut S, buf: T) -> BufResult<usize, T> {
    // SAFETY: the first non-empty slice of the vector, read while we own it.
    let result = match unsafe { RawBuf::new_from_iovec(&buf) } {
        Some(raw) => rent_write(stream, raw).await.0,
        None => Ok(0),
    };
    (result, buf)
}
