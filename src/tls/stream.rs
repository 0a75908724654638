//! [`TlsStream`]: a rustls connection over a monoio TCP stream, with the same owned-buffer
//! read and write traits as the plain stream, so that the HTTP/1.1 connection loop and the
//! upstream client serve both the same way.
//!
//! Ciphertext moves through the worker's spare buffers (`crate::io`): a connection idle
//! between requests holds none. rustls decrypts into its own buffer, and `read` copies the
//! plaintext out; `write` hands plaintext to rustls, which encrypts it into records that
//! go out at once. A failed or timed-out operation leaves the stream unusable, like a
//! plain one: the caller closes the connection.

use std::io::{self, Read, Write};
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use monoio::BufResult;
use rustls::{ConnectionCommon, SideData};

use crate::deadline;
use crate::io::{
    give_back, rent_read, rent_readv, rent_write, rent_writev, take_buffer, CloseNotify, SliceIo,
    WaitReadable, BUFFER_BYTES,
};

mod duplex;
pub use duplex::TlsDuplex;

/// How long a closing connection's close_notify may take to write.
const CLOSE_NOTIFY_TIMEOUT: Duration = Duration::from_secs(1);

/// A TLS session over `io`: `C` is `rustls::ServerConnection` or `rustls::ClientConnection`.
pub struct TlsStream<C> {
    io: TcpStream,
    tls: C,
    /// Ciphertext read from the socket that rustls has not taken yet (it takes no more
    /// while its plaintext is unread); empty, and no buffer, otherwise.
    incoming: BytesMut,
    /// Whether rustls holds plaintext not read yet, or `incoming` holds ciphertext: the
    /// stream is then readable without waiting for the socket.
    buffered: bool,
}

/// How a TLS handshake failed.
#[derive(Debug)]
pub enum HandshakeError {
    /// The socket failed, or the peer closed it mid-handshake.
    Io(io::Error),
    /// The peer's messages broke the protocol or its policy (rustls' reason).
    Tls(rustls::Error),
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeError::Io(e) => write!(f, "{e}"),
            HandshakeError::Tls(e) => write!(f, "{e}"),
        }
    }
}

impl<C, D> TlsStream<C>
where
    C: DerefMut + Deref<Target = ConnectionCommon<D>>,
    D: SideData,
{
    /// Runs the handshake of `tls` over `io`, `received` being ciphertext already read
    /// from it (a server reads the first bytes to tell TLS from plaintext).
    pub async fn handshake(
        io: TcpStream,
        tls: C,
        received: BytesMut,
    ) -> Result<TlsStream<C>, HandshakeError> {
        let mut stream = TlsStream {
            io,
            tls,
            buffered: !received.is_empty(),
            incoming: received,
        };
        while stream.tls.is_handshaking() {
            if stream.tls.wants_write() {
                stream.send_records().await.map_err(HandshakeError::Io)?;
                continue;
            }
            match stream.receive_records().await {
                Ok(true) => {}
                Ok(false) => {
                    return Err(HandshakeError::Io(io::ErrorKind::UnexpectedEof.into()));
                }
                Err(Received::Io(e)) => return Err(HandshakeError::Io(e)),
                Err(Received::Tls(e)) => {
                    // The alert rustls queued tells the peer why; it may not get it.
                    let _ = stream.send_records().await;
                    return Err(HandshakeError::Tls(e));
                }
            }
        }
        // A TLS 1.3 server's session tickets, a client's last flight.
        stream.send_records().await.map_err(HandshakeError::Io)?;
        Ok(stream)
    }

    /// The rustls connection: negotiated version, cipher, names, peer certificates.
    pub fn session(&self) -> &C {
        &self.tls
    }

    /// The TCP stream under the session.
    pub fn tcp(&self) -> &TcpStream {
        &self.io
    }

    /// Whether plaintext or ciphertext already read from the socket waits here: the peer
    /// sent bytes nobody asked for yet (an idle pooled connection must have none).
    pub fn has_buffered_input(&self) -> bool {
        self.buffered
    }

    /// Writes every record rustls has queued (handshake messages, alerts, data).
    async fn send_records(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            let mut out = take_buffer();
            {
                let mut writer = (&mut out).writer();
                while self.tls.wants_write() && writer.get_ref().len() < BUFFER_BYTES * 8 {
                    self.tls.write_tls(&mut writer)?;
                }
            }
            let (result, out) = self.io.write_all(out).await;
            give_back(out);
            result?;
        }
        Ok(())
    }

    /// Hands rustls the ciphertext in `incoming`, reading more from the socket first when
    /// there is none. `Ok(false)`: the socket reached its end.
    async fn receive_records(&mut self) -> Result<bool, Received> {
        if self.incoming.is_empty() {
            let mut buf = std::mem::take(&mut self.incoming);
            if buf.capacity() == 0 {
                buf = take_buffer();
            }
            let (result, back) = self.io.read(buf).await;
            self.incoming = back;
            let n = result.map_err(Received::Io)?;
            if n == 0 {
                self.release_incoming();
                // rustls learns of the end: a read then reports a clean close or a
                // truncation.
                let _ = self.tls.read_tls(&mut io::empty());
                self.tls.process_new_packets().map_err(Received::Tls)?;
                return Ok(false);
            }
        }
        while !self.incoming.is_empty() {
            let mut unread = &self.incoming[..];
            let taken = match self.tls.read_tls(&mut unread) {
                Ok(taken) => taken,
                // rustls' buffer is full of plaintext nobody read yet: read it first.
                Err(e) if e.kind() == io::ErrorKind::Other => 0,
                Err(e) => return Err(Received::Io(e)),
            };
            self.incoming.advance(taken);
            let state = self.tls.process_new_packets().map_err(Received::Tls)?;
            if taken == 0 || state.plaintext_bytes_to_read() > 0 {
                break;
            }
        }
        self.release_incoming();
        Ok(true)
    }

    /// Gives the ciphertext buffer back once it is drained, and notes whether anything is
    /// left to read without the socket.
    fn release_incoming(&mut self) {
        if self.incoming.is_empty() && self.incoming.capacity() > 0 {
            give_back(std::mem::take(&mut self.incoming));
        }
        let plaintext = self
            .tls
            .process_new_packets()
            .map(|state| state.plaintext_bytes_to_read() > 0)
            .unwrap_or(true);
        self.buffered = plaintext || !self.incoming.is_empty();
    }

    /// Copies plaintext rustls holds into `dst`: `Ok(None)` when it holds none.
    fn take_plaintext(&mut self, dst: &mut [u8]) -> io::Result<Option<usize>> {
        match self.tls.reader().read(dst) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn read_into(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(n) = self.take_plaintext(dst)? {
                if n > 0 || dst.is_empty() {
                    self.release_incoming();
                }
                return Ok(n);
            }
            // Anything rustls wants to say first: a key update's answer, an alert.
            if self.tls.wants_write() {
                self.send_records().await?;
            }
            match self.receive_records().await {
                Ok(true) => {}
                // The socket ended: rustls says whether cleanly (0) or not (an error).
                Ok(false) => {
                    return self
                        .take_plaintext(dst)?
                        .ok_or_else(|| io::ErrorKind::UnexpectedEof.into());
                }
                Err(Received::Io(e)) => return Err(e),
                Err(Received::Tls(e)) => {
                    let _ = self.send_records().await;
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
            }
        }
    }

    async fn write_from(&mut self, src: &[u8]) -> io::Result<usize> {
        let n = self.tls.writer().write(src)?;
        self.send_records().await?;
        Ok(n)
    }
}

/// Why taking in records stopped.
enum Received {
    Io(io::Error),
    Tls(rustls::Error),
}

impl<C, D> SliceIo for TlsStream<C>
where
    C: DerefMut + Deref<Target = ConnectionCommon<D>>,
    D: SideData,
{
    fn read_into(
        &mut self,
        dst: &mut [u8],
    ) -> impl std::future::Future<Output = io::Result<usize>> {
        TlsStream::read_into(self, dst)
    }

    fn write_from(&mut self, src: &[u8]) -> impl std::future::Future<Output = io::Result<usize>> {
        TlsStream::write_from(self, src)
    }
}

impl<C, D> AsyncReadRent for TlsStream<C>
where
    C: DerefMut + Deref<Target = ConnectionCommon<D>>,
    D: SideData,
{
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        rent_read(self, buf).await
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        rent_readv(self, buf).await
    }
}

impl<C, D> AsyncWriteRent for TlsStream<C>
where
    C: DerefMut + Deref<Target = ConnectionCommon<D>>,
    D: SideData,
{
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        rent_write(self, buf).await
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        rent_writev(self, buf).await
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.send_records().await
    }

    /// Says close_notify, then ends the TCP stream's sending side.
    async fn shutdown(&mut self) -> io::Result<()> {
        self.tls.send_close_notify();
        self.send_records().await?;
        self.io.shutdown().await
    }
}

impl<C, D> CloseNotify for TlsStream<C>
where
    C: DerefMut + Deref<Target = ConnectionCommon<D>>,
    D: SideData,
{
    /// Says close_notify, giving a peer that stopped reading [`CLOSE_NOTIFY_TIMEOUT`].
    async fn close_notify(&mut self) {
        self.tls.send_close_notify();
        let _ = deadline::timeout(CLOSE_NOTIFY_TIMEOUT, self.send_records()).await;
    }
}

impl<C> WaitReadable for TlsStream<C> {
    /// Ready at once when decrypted or undecrypted bytes are already here; otherwise when
    /// the socket is (the bytes may then turn out to be a record carrying no data, and
    /// the read that follows waits again).
    async fn readable(&self) -> io::Result<()> {
        if self.buffered {
            return Ok(());
        }
        WaitReadable::readable(&self.io).await
    }
}
