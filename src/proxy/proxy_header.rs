//! The PROXY header at the start of a connection on a listener with `proxy_protocol` set:
//! read before HTTP (or the TLS handshake), within `server.timeouts.header_read`.
//!
//! A source in `from` may send one (must, with `required = true`); its source address
//! becomes the connection's peer, so the client address (`access/client_addr.rs`, with
//! `trusted_proxies` on top), access lists, rate limits, hash balancing, logs and the
//! upstream's `X-Forwarded-For` all see the balancer's client instead of the balancer. A
//! LOCAL or UNKNOWN header keeps the TCP peer. A header from any other source, a missing
//! one where required, or a malformed one closes the connection without an answer: the
//! peer is not speaking HTTP yet. The bytes read past the header are the start of the
//! request (or of the ClientHello) and are handed on, never read twice.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use monoio::net::TcpStream;

use super::Worker;
use crate::deadline;
use crate::io::{give_back, read_more, take_buffer, WaitReadable, BUFFER_BYTES};
use crate::observe::proxy_protocol::ProxyRejection;
use crate::proxy_protocol::{self, Parsed, ProxyHeader, ProxyProtocolListener};

/// The connection's peer and the bytes read past its PROXY header when the listener takes
/// one (`settings`); `None`, counted in the worker's metrics, when the connection must close.
pub(super) async fn accept(
    stream: &mut TcpStream,
    peer: SocketAddr,
    settings: Option<&ProxyProtocolListener>,
    worker: &Worker,
) -> Option<(SocketAddr, BytesMut)> {
    let Some(settings) = settings else {
        return Some((peer, BytesMut::new()));
    };
    let timeout = worker.snapshot().server.timeouts.header_read;
    // Boxed: inline, the reader's state (a read and its deadline) would make every
    // connection's future larger for its whole life, on listeners without the header too.
    match Box::pin(read(stream, peer, settings, timeout)).await {
        Ok(read) => Some(read),
        Err(why) => {
            let mut observers = worker.observers.borrow_mut();
            observers.metrics.proxy_rejections.count(why);
            None
        }
    }
}

/// The connection's peer (the header's source, or the TCP peer) and the bytes that
/// followed the header, or why the connection must close.
async fn read(
    stream: &mut TcpStream,
    peer: SocketAddr,
    settings: &ProxyProtocolListener,
    timeout: Duration,
) -> Result<(SocketAddr, BytesMut), ProxyRejection> {
    let trusted = settings.is_trusted(peer.ip());
    let deadline = Instant::now() + timeout;
    let mut buf = BytesMut::new();
    loop {
        match proxy_protocol::parse(&buf) {
            Parsed::Incomplete => {
                if buf.capacity() == 0 {
                    // No buffer while the peer is silent.
                    let left = deadline.saturating_duration_since(Instant::now());
                    match deadline::timeout(left, WaitReadable::readable(&*stream)).await {
                        Ok(Ok(())) => buf = take_buffer(),
                        _ => return Err(ProxyRejection::Incomplete),
                    }
                }
                let left = deadline.saturating_duration_since(Instant::now());
                match read_more(stream, &mut buf, BUFFER_BYTES / 2, left).await {
                    Ok(n) if n > 0 => {}
                    // Closed, failed or silent: nothing to answer. A timed-out read's
                    // buffer is abandoned with it (`io.rs`).
                    _ => return Err(ProxyRejection::Incomplete),
                }
            }
            Parsed::NotProxy if trusted && settings.required => {
                tracing::debug!(%peer, "PROXY header required and missing: closing");
                return Err(ProxyRejection::Missing);
            }
            Parsed::NotProxy => return Ok((peer, buf)),
            Parsed::Complete { header, consumed } if trusted => {
                buf.advance(consumed);
                let client = header.source().unwrap_or(peer);
                log_header(peer, &header);
                if buf.is_empty() {
                    // An idle connection holds no buffer.
                    give_back(std::mem::take(&mut buf));
                }
                return Ok((client, buf));
            }
            Parsed::Complete { .. } => {
                tracing::debug!(%peer, "PROXY header from a source not in `from`: closing");
                return Err(ProxyRejection::Untrusted);
            }
            Parsed::Invalid(why) => {
                tracing::debug!(%peer, %why, "malformed PROXY header: closing");
                return Err(ProxyRejection::Malformed);
            }
        }
    }
}

/// What the balancer told: the addresses, and its TLVs when it sent any.
fn log_header(peer: SocketAddr, header: &ProxyHeader) {
    let tlvs = &header.tlvs;
    let ssl = tlvs.ssl.as_ref();
    tracing::debug!(
        %peer,
        version = header.version.as_str(),
        addresses = ?header.addresses,
        alpn = ?text(&tlvs.alpn),
        authority = ?text(&tlvs.authority),
        ssl = ssl.is_some_and(|s| s.tls),
        ssl_verified = ssl.is_some_and(|s| s.verified),
        ssl_version = ?ssl.and_then(|s| text(&s.version)),
        ssl_cn = ?ssl.and_then(|s| text(&s.common_name)),
        "PROXY header",
    );
}

/// A TLV value as text for the log (lossy: it is the balancer's bytes).
fn text(value: &Option<Box<[u8]>>) -> Option<std::borrow::Cow<'_, str>> {
    value.as_deref().map(String::from_utf8_lossy)
}
