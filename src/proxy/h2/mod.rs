//! HTTP/2 to clients: one connection task drives the h2 codec over the client's stream
//! (`io.rs`), and each stream it accepts becomes a task of its own on the same worker that
//! serves one request through the connection loop, exactly as an HTTP/1.1 request is
//! served: its head rendered in HTTP/1.1 form (`http2/convert.rs`), its body read and its answer
//! written through an [`Exchange`] (`exchange.rs`). Routing, filters, the upstream client,
//! metrics, the access log and tracing cannot tell, except by the protocol they record.
//!
//! The codec enforces the connection's defences (`[server.http2]`): concurrent streams,
//! resets before service (Rapid Reset), header-list size, flow-control windows. An idle
//! connection (no stream open for `keepalive_idle`) and a drain end with GOAWAY; streams
//! in flight are allowed to finish.

mod exchange;

use std::cell::Cell;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::pin;
use std::rc::Rc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use h2::server::SendResponse;
use h2::RecvStream;
use monoio::io::AsyncReadRent;

use super::{ClientConn, Idle, Worker};
use crate::deadline;
use crate::http1::Version;
use crate::http2::io::PollDuplex;
use crate::http2::{convert, flood};
use crate::io::{read_more, IntoDuplex};
use crate::observe::http2::Http2Close;
use crate::tls::TlsInfo;
use exchange::Exchange;

/// What a client speaking HTTP/2 with prior knowledge sends first (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Reads the first bytes of a plaintext connection into `ahead` until they show whether it
/// starts with the HTTP/2 preface: `Some(true)` for HTTP/2, `Some(false)` for anything else
/// (HTTP/1.1, served with those bytes), `None` when the client closed or sent nothing in
/// `timeout`.
pub(super) async fn is_preface<S: AsyncReadRent>(
    stream: &mut S,
    ahead: &mut BytesMut,
    timeout: std::time::Duration,
) -> Option<bool> {
    loop {
        let n = ahead.len().min(PREFACE.len());
        if ahead[..n] != PREFACE[..n] {
            return Some(false);
        }
        if n == PREFACE.len() {
            return Some(true);
        }
        match read_more(stream, ahead, crate::io::BUFFER_BYTES, timeout).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// Serves an HTTP/2 connection on `stream`; `ahead`: bytes already read from it.
pub(super) async fn serve<S: IntoDuplex>(
    mut stream: S,
    ahead: BytesMut,
    addresses: (SocketAddr, SocketAddr),
    tls: Option<Rc<TlsInfo>>,
    worker: Rc<Worker>,
) {
    let config = worker.snapshot();
    let settings = &config.server.http2;
    let timeouts = config.server.timeouts.clone();
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(settings.max_concurrent_streams)
        .initial_window_size(settings.stream_window)
        .initial_connection_window_size(settings.connection_window)
        .max_header_list_size(
            u32::try_from(config.server.limits.max_header_bytes).unwrap_or(u32::MAX),
        )
        .max_pending_accept_reset_streams(settings.max_pending_resets)
        .max_local_error_reset_streams(Some(settings.max_error_resets));
    let budget = flood::FrameBudget::new(settings.max_control_frames);
    let max_pending_resets = settings.max_pending_resets as u64;
    drop(config);
    let seen = flood::Seen::default();
    let duplex = stream.duplex();
    let close = |how: Http2Close| {
        worker
            .observers
            .borrow_mut()
            .metrics
            .http2_closes
            .count(how)
    };
    let guard = flood::Guard {
        budget,
        seen: &seen,
        written: crate::http2::frames::FrameReader::after(0),
    };
    let Some(io) = PollDuplex::new(&duplex, ahead, guard) else {
        return close(Http2Close::ControlFlood);
    };
    let handshake = builder.handshake::<_, Bytes>(io);
    let mut conn = match deadline::timeout(timeouts.header_read, handshake).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return close(closed_by(&e, &seen, max_pending_resets)),
        Err(_) => return close(Http2Close::IoError),
    };
    let streams = Rc::new(Streams {
        open: Cell::new(0),
        last_active: Cell::new(Instant::now()),
    });
    let peer_text = Bytes::from(addresses.0.ip().to_string());
    let mut drain = pin!(worker.drain.started());
    let mut idle = pin!(deadline::after(timeouts.keepalive_idle));
    // Why Strait ended the connection, once it did.
    let mut ending: Option<Http2Close> = None;
    let how = loop {
        let next = poll_fn(|cx| {
            if ending.is_none() && drain.as_mut().poll(cx).is_ready() {
                ending = Some(Http2Close::Drain);
                conn.graceful_shutdown();
            }
            if ending.is_none() && streams.open.get() == 0 && idle.as_mut().poll(cx).is_ready() {
                let quiet = streams.last_active.get().elapsed();
                if quiet >= timeouts.keepalive_idle {
                    ending = Some(Http2Close::Idle);
                    conn.graceful_shutdown();
                } else {
                    idle.set(deadline::after(timeouts.keepalive_idle - quiet));
                    let _ = idle.as_mut().poll(cx);
                }
            }
            let next = conn.poll_accept(cx);
            count_resets(&seen, &worker);
            if next.is_pending()
                && seen.flood.get().is_some()
                && ending != Some(Http2Close::ControlFlood)
            {
                ending = Some(Http2Close::ControlFlood);
                conn.abrupt_shutdown(h2::Reason::ENHANCE_YOUR_CALM);
                cx.waker().wake_by_ref();
            }
            next
        })
        .await;
        match next {
            Some(Ok((request, respond))) => {
                streams.open.set(streams.open.get() + 1);
                let stream = StreamTask {
                    addresses,
                    peer_text: peer_text.clone(),
                    tls: tls.clone(),
                    worker: worker.clone(),
                    streams: streams.clone(),
                };
                monoio::spawn(stream.serve(request, respond));
            }
            Some(Err(e)) => {
                tracing::debug!(peer = %addresses.0, error = %e, "HTTP/2 connection failed");
                break ending.unwrap_or_else(|| closed_by(&e, &seen, max_pending_resets));
            }
            None => break ending.unwrap_or(Http2Close::Client),
        }
    };
    if let Some(frame) = seen.flood.get() {
        tracing::debug!(peer = %addresses.0, ?frame, "HTTP/2 control-frame flood");
    }
    close(how);
    count_resets(&seen, &worker);
}

/// Moves the resets the connection sent since the last call into the worker's metrics.
fn count_resets(seen: &flood::Seen, worker: &Worker) {
    for code in flood::ResetCode::ALL {
        let sent = seen.resets_sent[code as usize].take();
        if sent > 0 {
            let mut observers = worker.observers.borrow_mut();
            observers.metrics.http2_resets.add(code, sent);
        }
    }
}

/// How a connection that failed with `e` ended. The codec does not say which of its
/// limits a client hit; the frames it sent do.
fn closed_by(e: &h2::Error, seen: &flood::Seen, max_pending_resets: u64) -> Http2Close {
    if seen.flood.get().is_some() {
        return Http2Close::ControlFlood;
    }
    if e.is_io() {
        return Http2Close::IoError;
    }
    if e.is_remote() {
        return Http2Close::Client;
    }
    if e.reason() != Some(h2::Reason::ENHANCE_YOUR_CALM) {
        return Http2Close::ProtocolError;
    }
    if seen.resets.get() > max_pending_resets {
        Http2Close::RapidReset
    } else if seen.continuations.get() > 0 {
        Http2Close::ContinuationFlood
    } else {
        Http2Close::Abuse
    }
}

// HTTP/1.1 connections: their request bodies are bytes, never an HTTP/2 stream.
impl crate::http2::StreamBody for monoio::net::TcpStream {}
impl crate::http2::StreamBody for crate::tls::TlsStream<rustls::ServerConnection> {}

/// The streams of one connection: how many are being served, and when one last ended.
struct Streams {
    open: Cell<usize>,
    last_active: Cell<Instant>,
}

/// What a stream's task needs of its connection.
struct StreamTask {
    addresses: (SocketAddr, SocketAddr),
    peer_text: Bytes,
    tls: Option<Rc<TlsInfo>>,
    worker: Rc<Worker>,
    streams: Rc<Streams>,
}

impl StreamTask {
    /// Serves one stream's request through the connection loop.
    async fn serve(self, request: http::Request<RecvStream>, mut respond: SendResponse<Bytes>) {
        let (parts, body) = request.into_parts();
        let mut head = crate::io::take_buffer();
        let framing = match convert::request_head(&parts, body.is_end_stream(), &mut head) {
            Ok(framing) => framing,
            Err(refusal) => {
                let mut answer = http::Response::new(());
                *answer.status_mut() = refusal.status();
                let _ = respond.send_response(answer, true);
                self.done();
                return;
            }
        };
        let is_head = parts.method == http::Method::HEAD;
        let exchange = Exchange::new(body, framing, respond, is_head);
        let idle = Idle {
            stream: exchange,
            ahead: head,
            tls: self.tls.clone(),
        };
        let mut conn = ClientConn::new(
            idle,
            self.addresses,
            self.peer_text.clone(),
            self.worker.clone(),
        );
        conn.protocol = Version::Http2;
        // Boxed like an HTTP/1.1 request's future, for the same reason: it is large.
        let (_, idle) = Box::pin(conn.serve_request(true)).await;
        idle.stream.finish();
        crate::io::give_back(idle.ahead);
        self.done();
    }

    fn done(&self) {
        let streams = &self.streams;
        streams.open.set(streams.open.get() - 1);
        streams.last_active.set(Instant::now());
    }
}
