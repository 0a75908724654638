//! [`UpstreamStream`]: a connection to an endpoint, plain TCP or TLS, with the owned-buffer
//! read and write traits the client, the body pump and the health checker use.
//!
//! An enum rather than a trait object or a generic: a plain upstream's read or write costs
//! one branch more and nothing else (no allocation, no indirect call), and the pool, the
//! client and the worker state stay free of a stream type parameter. The TLS session is
//! boxed so that a pooled plain connection stays small; it is allocated once per TLS
//! connection, never per request.

use std::os::fd::AsRawFd;

use bytes::BytesMut;
use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use monoio::BufResult;
use rustls::ClientConnection;

use super::config::Endpoint;
use super::h2::H2Stream;
use super::tls::UpstreamTls;
use crate::io::{rent_read, rent_readv, rent_write, rent_writev, Duplex, IntoDuplex, TcpDuplex};
use crate::tls::{HandshakeError, TlsDuplex, TlsStream};

/// An open connection to an upstream endpoint.
pub enum UpstreamStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<ClientConnection>>),
    /// A stream of a shared HTTP/2 connection (`h2.rs`).
    H2(Box<H2Stream>),
}

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("connect failed: {0}")]
    Connect(std::io::Error),
    /// rustls' reason: a certificate that does not verify, a protocol error, or the peer
    /// closing mid-handshake.
    #[error("TLS handshake failed: {0}")]
    Tls(HandshakeError),
}

impl UpstreamStream {
    /// Connects to `endpoint`, sends `proxy_header` (a PROXY protocol header) when there is
    /// one, then runs the TLS handshake when `tls` is set. The caller bounds the whole of it
    /// with its connect timeout.
    pub async fn open(
        endpoint: &Endpoint,
        tls: Option<&UpstreamTls>,
        proxy_header: Option<Vec<u8>>,
    ) -> Result<UpstreamStream, OpenError> {
        let mut tcp = TcpStream::connect_addr(endpoint.addr)
            .await
            .map_err(OpenError::Connect)?;
        let _ = tcp.set_nodelay(true);
        if let Some(header) = proxy_header {
            let (written, _) = tcp.write_all(header).await;
            written.map_err(OpenError::Connect)?;
        }
        let Some(tls) = tls else {
            return Ok(UpstreamStream::Plain(tcp));
        };
        let session = tls
            .session(endpoint)
            .map_err(|e| OpenError::Tls(HandshakeError::Tls(e)))?;
        match TlsStream::handshake(tcp, session, BytesMut::new()).await {
            Ok(stream) => Ok(UpstreamStream::Tls(Box::new(stream))),
            Err(e) => Err(OpenError::Tls(e)),
        }
    }

    /// The request body's stream of an HTTP/2 stream (see [`H2Stream::take_request_body`]).
    pub fn take_request_body(&mut self) -> Option<h2::SendStream<bytes::Bytes>> {
        match self {
            UpstreamStream::H2(h2) => h2.take_request_body(),
            _ => None,
        }
    }

    pub fn is_h2(&self) -> bool {
        matches!(self, UpstreamStream::H2(_))
    }

    /// True when the peer has neither closed the connection nor sent unsolicited bytes:
    /// nothing waits in the socket, nor (TLS) in the session's buffers. A TLS peer closing
    /// an idle connection sends an alert first, which counts as bytes: such a connection is
    /// not reused either.
    pub fn is_open_and_quiet(&self) -> bool {
        match self {
            UpstreamStream::Plain(tcp) => is_socket_quiet(tcp),
            UpstreamStream::Tls(tls) => !tls.has_buffered_input() && is_socket_quiet(tls.tcp()),
            UpstreamStream::H2(_) => true,
        }
    }
}

/// True when a non-blocking peek finds the socket open and empty.
fn is_socket_quiet(stream: &TcpStream) -> bool {
    let mut byte = 0u8;
    // SAFETY: recv writes at most 1 byte into `byte`, which lives for the call; the fd is
    // owned by `stream` and open.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock
}

impl AsyncReadRent for UpstreamStream {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            UpstreamStream::Plain(tcp) => tcp.read(buf).await,
            UpstreamStream::Tls(tls) => tls.read(buf).await,
            UpstreamStream::H2(h2) => rent_read(&mut **h2, buf).await,
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            UpstreamStream::Plain(tcp) => tcp.readv(buf).await,
            UpstreamStream::Tls(tls) => tls.readv(buf).await,
            UpstreamStream::H2(h2) => rent_readv(&mut **h2, buf).await,
        }
    }
}

impl AsyncWriteRent for UpstreamStream {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            UpstreamStream::Plain(tcp) => tcp.write(buf).await,
            UpstreamStream::Tls(tls) => tls.write(buf).await,
            UpstreamStream::H2(h2) => rent_write(&mut **h2, buf).await,
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            UpstreamStream::Plain(tcp) => tcp.writev(buf).await,
            UpstreamStream::Tls(tls) => tls.writev(buf).await,
            UpstreamStream::H2(h2) => rent_writev(&mut **h2, buf).await,
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        match self {
            UpstreamStream::Plain(tcp) => tcp.flush().await,
            UpstreamStream::Tls(tls) => tls.flush().await,
            UpstreamStream::H2(_) => Ok(()),
        }
    }

    async fn shutdown(&mut self) -> std::io::Result<()> {
        match self {
            UpstreamStream::Plain(tcp) => tcp.shutdown().await,
            UpstreamStream::Tls(tls) => tls.shutdown().await,
            UpstreamStream::H2(_) => Ok(()),
        }
    }
}

/// An upstream connection lent to a tunnel: its two loops read and write it at once.
pub enum UpstreamDuplex<'a> {
    Plain(TcpDuplex<'a>),
    Tls(TlsDuplex<'a, ClientConnection>),
    /// An HTTP/2 stream is never a tunnel: its upstream cannot answer 101.
    Stream,
}

impl IntoDuplex for UpstreamStream {
    type Duplex<'a> = UpstreamDuplex<'a>;

    fn duplex(&mut self) -> UpstreamDuplex<'_> {
        match self {
            UpstreamStream::Plain(tcp) => UpstreamDuplex::Plain(tcp.duplex()),
            UpstreamStream::Tls(tls) => UpstreamDuplex::Tls(tls.duplex()),
            UpstreamStream::H2(_) => UpstreamDuplex::Stream,
        }
    }

    fn tcp_fd(&self) -> Option<std::os::fd::RawFd> {
        match self {
            UpstreamStream::Plain(tcp) => tcp.tcp_fd(),
            UpstreamStream::Tls(_) | UpstreamStream::H2(_) => None,
        }
    }
}

impl Duplex for UpstreamDuplex<'_> {
    async fn recv(&self, buf: BytesMut) -> (std::io::Result<usize>, BytesMut) {
        match self {
            UpstreamDuplex::Plain(tcp) => tcp.recv(buf).await,
            UpstreamDuplex::Tls(tls) => tls.recv(buf).await,
            UpstreamDuplex::Stream => (Err(std::io::ErrorKind::Unsupported.into()), buf),
        }
    }

    async fn send(&self, buf: BytesMut) -> (std::io::Result<()>, BytesMut) {
        match self {
            UpstreamDuplex::Plain(tcp) => tcp.send(buf).await,
            UpstreamDuplex::Tls(tls) => tls.send(buf).await,
            UpstreamDuplex::Stream => (Err(std::io::ErrorKind::Unsupported.into()), buf),
        }
    }
}
