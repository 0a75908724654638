//! HTTP/2 to an upstream (`http2 = true`): one connection per endpoint and worker, shared
//! by the worker's requests to that endpoint as streams, so a few connections carry any
//! concurrency (and gRPC servers, which speak nothing else, can be reached).
//!
//! [`H2Connection`] is the shared connection: opened and then driven on a task of its own,
//! it hands out senders for new streams once ready and says when it is gone (failed to
//! open, closed by the upstream, or GOAWAY), after which the next request opens another.
//! The endpoint's pool keeps it; the task holds it only weakly, so a reload that drops the
//! pool lets the connection finish its streams and close.
//!
//! [`H2Stream`] is one request on it, with the same owned-buffer read and write as a
//! pooled HTTP/1.1 connection, so the upstream client, retries and the body pumps serve it
//! unchanged: the HTTP/1.1 request written to it goes out as HEADERS, DATA and trailers;
//! the response reads back as HTTP/1.1, chunked with its trailers when it has no length.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::io;
use std::rc::{Rc, Weak};
use std::task::{Poll, Waker};

use bytes::{Buf, Bytes, BytesMut};
use h2::client::{ResponseFuture, SendRequest};

use super::stream::UpstreamStream;
use crate::http1::{find_head_end, parse_request_head, BodyFraming, Limits};
use crate::http2::body::{h2_error, invalid, Inbound, Outbound};
use crate::http2::convert;
use crate::http2::io::PollDuplex;
use crate::io::IntoDuplex;

/// Each stream's receive window, and the connection's: a response body (or a gRPC
/// stream) may run this far ahead of the client reading it.
const STREAM_WINDOW: u32 = 256 * 1024;
const CONNECTION_WINDOW: u32 = 1024 * 1024;

/// The heads the upstream client writes are Strait's own, already within the client's
/// limits: these only bound the parse.
const HEAD_LIMITS: Limits = Limits {
    max_header_bytes: 256 * 1024,
    max_headers: crate::http1::MAX_HEADERS_CAP,
    max_body_bytes: u64::MAX,
    max_uri_bytes: 256 * 1024,
};

/// One worker's HTTP/2 connection to one endpoint.
pub struct H2Connection {
    state: RefCell<State>,
    /// Requests waiting for the connection to be ready.
    waiters: RefCell<Vec<Waker>>,
}

enum State {
    Connecting,
    Ready(SendRequest<Bytes>),
    Gone,
}

impl H2Connection {
    /// Starts a connection: `open` connects (and runs the TLS handshake), then the HTTP/2
    /// handshake and the connection itself run on their own task.
    pub fn start(open: impl Future<Output = Option<UpstreamStream>> + 'static) -> Rc<Self> {
        let conn = Rc::new(H2Connection {
            state: RefCell::new(State::Connecting),
            waiters: RefCell::new(Vec::new()),
        });
        let weak = Rc::downgrade(&conn);
        monoio::spawn(async move {
            if let Some(stream) = open.await {
                drive(stream, &weak).await;
            }
            if let Some(conn) = weak.upgrade() {
                conn.set(State::Gone);
            }
        });
        conn
    }

    /// Whether the connection failed or closed: a new one is needed.
    pub fn is_gone(&self) -> bool {
        matches!(*self.state.borrow(), State::Gone)
    }

    /// A sender for a new stream once the connection is ready; `None` if it is gone.
    pub async fn sender(&self) -> Option<SendRequest<Bytes>> {
        poll_fn(|cx| match &*self.state.borrow() {
            State::Connecting => {
                self.waiters.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
            State::Ready(send) => Poll::Ready(Some(send.clone())),
            State::Gone => Poll::Ready(None),
        })
        .await
    }

    fn set(&self, state: State) {
        *self.state.borrow_mut() = state;
        for waiter in self.waiters.borrow_mut().drain(..) {
            waiter.wake();
        }
    }
}

/// The HTTP/2 handshake on `stream`, then the connection until it ends.
async fn drive(mut stream: UpstreamStream, conn: &Weak<H2Connection>) {
    let duplex = stream.duplex();
    let Some(io) = PollDuplex::new(&duplex, BytesMut::new(), ()) else {
        return;
    };
    let handshake = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .handshake::<_, Bytes>(io)
        .await;
    let (send, connection) = match handshake {
        Ok(pair) => pair,
        Err(e) => {
            tracing::warn!(error = %e, "upstream HTTP/2 handshake failed");
            return;
        }
    };
    match conn.upgrade() {
        Some(conn) => conn.set(State::Ready(send)),
        None => return,
    }
    if let Err(e) = connection.await {
        tracing::debug!(error = %e, "upstream HTTP/2 connection ended");
    }
}

/// One request as a stream of an [`H2Connection`].
pub struct H2Stream {
    send: SendRequest<Bytes>,
    /// `http` or `https`: the request's `:scheme`.
    scheme: &'static str,
    request: Request,
    response: Response,
    is_head: bool,
}

enum Request {
    /// The head's bytes so far.
    Head(BytesMut),
    Body(Outbound),
    Sent,
}

enum Response {
    /// Not asked yet (the request head is not out).
    NotAsked,
    Waiting(ResponseFuture),
    /// The head in HTTP/1.1 form, not read yet, then the body.
    Body(Bytes, Option<Inbound>),
}

impl H2Stream {
    pub fn new(send: SendRequest<Bytes>, scheme: &'static str) -> Self {
        H2Stream {
            send,
            scheme,
            request: Request::Head(BytesMut::new()),
            response: Response::NotAsked,
            is_head: false,
        }
    }

    /// Takes bytes of the HTTP/1.1 request.
    async fn take(&mut self, data: &[u8]) -> io::Result<()> {
        let Request::Head(partial) = &mut self.request else {
            return self.body(data).await;
        };
        // The head (and a small body with it) comes in one write: parsed where it is. A
        // head split across writes is gathered first.
        if partial.is_empty() {
            let Some(end) = find_head_end(data, 0) else {
                partial.extend_from_slice(data);
                return Ok(());
            };
            self.send_head(&data[..end]).await?;
            return self.body(&data[end..]).await;
        }
        let seen = partial.len();
        partial.extend_from_slice(data);
        let Some(end) = find_head_end(partial, seen) else {
            return Ok(());
        };
        let raw = partial.split_to(end);
        let rest = std::mem::take(partial);
        self.send_head(&raw).await?;
        self.body(&rest).await
    }

    /// Sends the request's HEADERS (with END_STREAM when it has no body).
    async fn send_head(&mut self, raw: &[u8]) -> io::Result<()> {
        let parsed = parse_request_head(raw, &HEAD_LIMITS).map_err(invalid)?;
        self.is_head = parsed.method == crate::http1::request::Method::Head;
        let request = convert::upstream_request(raw, &parsed, self.scheme).map_err(invalid)?;
        let ended = parsed.framing == BodyFraming::Length(0);
        poll_fn(|cx| self.send.poll_ready(cx))
            .await
            .map_err(h2_error)?;
        let (response, stream) = self.send.send_request(request, ended).map_err(h2_error)?;
        self.response = Response::Waiting(response);
        self.request = if ended {
            Request::Sent
        } else {
            Request::Body(Outbound::new(stream, parsed.framing))
        };
        Ok(())
    }

    /// Takes bytes of the request body, once its head went.
    async fn body(&mut self, data: &[u8]) -> io::Result<()> {
        if let Request::Body(body) = &mut self.request {
            if body.take(data).await? {
                self.request = Request::Sent;
            }
        }
        Ok(())
    }

    /// Copies response bytes (HTTP/1.1 head, then body) into `dst`.
    async fn read_into(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        if let Response::Waiting(future) = &mut self.response {
            let response = future.await.map_err(h2_error)?;
            let (parts, body) = response.into_parts();
            let mut head = BytesMut::with_capacity(256);
            let ended = body.is_end_stream();
            let chunked = convert::http1_response_head(&parts, ended, self.is_head, &mut head);
            let body = (!ended).then(|| Inbound::new(body, chunked));
            self.response = Response::Body(head.freeze(), body);
        }
        match &mut self.response {
            Response::NotAsked => Err(io::ErrorKind::NotConnected.into()),
            Response::Waiting(_) => unreachable!("answered above"),
            Response::Body(head, _) if !head.is_empty() => {
                let n = head.len().min(dst.len());
                dst[..n].copy_from_slice(&head[..n]);
                head.advance(n);
                Ok(n)
            }
            Response::Body(_, Some(body)) => body.read_into(dst).await,
            Response::Body(_, None) => Ok(0),
        }
    }

    /// The request body's stream, once the head went and before any of the body did: the
    /// body can then come from a client's stream directly (`http2::body::pipe`).
    pub fn take_request_body(&mut self) -> Option<h2::SendStream<Bytes>> {
        match std::mem::replace(&mut self.request, Request::Sent) {
            Request::Body(body) => Some(body.into_stream()),
            other => {
                self.request = other;
                None
            }
        }
    }

    /// Resets the stream if its request body was cut short, so the upstream never takes
    /// it for whole (a request body always has a length or chunks: none runs to the end).
    fn finish(&mut self) {
        if let Request::Body(body) = std::mem::replace(&mut self.request, Request::Sent) {
            body.finish(h2::Reason::CANCEL);
        }
    }
}

impl crate::io::SliceIo for H2Stream {
    async fn read_into(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        H2Stream::read_into(self, dst).await
    }

    async fn write_from(&mut self, src: &[u8]) -> io::Result<usize> {
        self.take(src).await.map(|()| src.len())
    }
}

impl Drop for H2Stream {
    fn drop(&mut self) {
        self.finish();
    }
}
