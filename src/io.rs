//! Owned-buffer I/O helpers over monoio's rent traits, for both sides of the proxy (client
//! connections and the upstream client): appending reads with a deadline and whole-buffer
//! writes. A read that times out is abandoned together with its buffer (an
//! in-flight io_uring read may still land in it), so a timeout always ends the connection.

use std::time::Duration;

use bytes::BytesMut;
use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};

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
    match monoio::time::timeout(timeout, src.read(owned.slice_mut(filled..))).await {
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
    monoio::time::timeout(timeout, dst.write_all(buf))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "write timed out"))
}
