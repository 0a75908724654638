//! The admin listener's accept loop and per-connection HTTP/1.1 loop.
//!
//! Heads are found with [`find_head_end`] and parsed with the request path's own
//! [`parse_request_head`] (same framing rules, RFC 9112 §6), under tighter limits: a 16 KiB
//! head, a 64 KiB body, Content-Length bodies only (a chunked body is answered 411). Every
//! error answer closes the connection; a good request keeps it open unless the client asked
//! otherwise. A read that times out ends the connection.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::{TcpListener, TcpStream};

use super::routes::{self, Reply, Request};
use super::Admin;
use crate::config::Limits;
use crate::error::ProxyError;
use crate::http1::{find_head_end, parse_request_head, reason_phrase, BodyFraming};

/// Request line plus headers (431 past it).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Request body (413 past it).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
const MAX_HEADERS: usize = 64;
const MAX_URI_BYTES: usize = 4 * 1024;
/// How long an idle keep-alive connection waits for the next request's first byte.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// From a head's first byte to its end (408 past it).
const HEAD_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Between two reads of a body (408 past it).
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long writing one answer may take; a client that stops reading is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more are closed at accept.
const MAX_CONNECTIONS: usize = 128;
/// Spare room given to each read.
const READ_CHUNK: usize = 4096;
/// Pause after a failed accept (out of file descriptors, say) before the next one.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

const LIMITS: Limits = Limits {
    max_header_bytes: MAX_HEAD_BYTES,
    max_headers: MAX_HEADERS,
    max_body_bytes: MAX_BODY_BYTES as u64,
    max_uri_bytes: MAX_URI_BYTES,
};

/// How often an idle accept loop looks at the drain flag. The legacy (epoll) driver's
/// accept is readiness-based, so abandoning it loses no connection.
const DRAIN_CHECK: std::time::Duration = std::time::Duration::from_millis(100);

/// Accepts connections until the process drains, each served on its own task.
pub(super) async fn serve(listener: TcpListener, admin: Rc<Admin>) {
    let active = Rc::new(Cell::new(0usize));
    loop {
        // Stop accepting once the process drains: during a binary upgrade the successor's
        // admin listener takes over, and this process's state is on its way out.
        let accepted = monoio::select! {
            accepted = listener.accept() => accepted,
            _ = monoio::time::sleep(DRAIN_CHECK) => {
                if admin.control.is_draining() {
                    return;
                }
                continue;
            }
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "admin api: accept failed");
                monoio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        if active.get() >= MAX_CONNECTIONS {
            tracing::warn!(
                max = MAX_CONNECTIONS,
                "admin api: too many connections, closing a new one"
            );
            continue;
        }
        let _ = stream.set_nodelay(true);
        let (admin, active) = (admin.clone(), active.clone());
        monoio::spawn(async move {
            active.set(active.get() + 1);
            connection(stream, &admin).await;
            active.set(active.get() - 1);
        });
    }
}

/// Why no complete request could be read.
enum ReadError {
    /// The client closed, went quiet between requests, or the socket failed: close quietly.
    Closed,
    /// Answer with this status, then close.
    Respond(u16, &'static str),
}

/// Serves requests on one connection until it closes or a request asks to.
async fn connection(mut stream: TcpStream, admin: &Admin) {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut out = BytesMut::with_capacity(1024);
    loop {
        // A request read whole keeps the connection (whatever its answer); one that could
        // not be read leaves the stream at an unknown point, so it closes.
        let (reply, keep_alive) = match read_request(&mut stream, &mut buf).await {
            Ok(parsed) => {
                let request = Request {
                    method: &parsed.method,
                    path: &parsed.path,
                    authorization: parsed.authorization.as_deref(),
                    body: &parsed.body,
                };
                (routes::handle(admin, &request), parsed.keep_alive)
            }
            Err(ReadError::Closed) => return,
            Err(ReadError::Respond(status, message)) => (Reply::error(status, message), false),
        };
        encode(&mut out, &reply, keep_alive);
        out = match write_out(&mut stream, out).await {
            Ok(out) => out,
            Err(_) => return,
        };
        if !keep_alive {
            linger_close(stream, buf).await;
            return;
        }
    }
}

/// Closes after a last answer without losing it: closing a socket that still has unread
/// input makes the kernel send a reset, which can destroy the answer before the client
/// reads it (a refused 64 KiB+ body is the usual case). So: end our side, then read and
/// discard what the client still sends, for a bounded time and amount.
async fn linger_close(mut stream: TcpStream, mut buf: BytesMut) {
    const LINGER_BYTES: usize = 1024 * 1024;
    const LINGER_TIME: Duration = Duration::from_secs(2);
    if stream.shutdown().await.is_err() {
        return;
    }
    let deadline = Instant::now() + LINGER_TIME;
    let mut discarded = 0;
    while discarded < LINGER_BYTES {
        buf.clear();
        let left = deadline.saturating_duration_since(Instant::now());
        match read_more(&mut stream, &mut buf, READ_CHUNK * 4, left).await {
            Ok(0) | Err(_) => return,
            Ok(n) => discarded += n,
        }
    }
}

/// One request, read whole.
struct Parsed {
    method: String,
    path: String,
    authorization: Option<Vec<u8>>,
    body: BytesMut,
    keep_alive: bool,
}

/// Reads the next request's head and body from `stream`, `buf` holding what was read
/// past the previous request.
async fn read_request(stream: &mut TcpStream, buf: &mut BytesMut) -> Result<Parsed, ReadError> {
    let head_end = read_head(stream, buf).await?;
    let raw = buf.split_to(head_end).freeze();
    let head = parse_request_head(&raw, &LIMITS).map_err(|e| {
        let e = ProxyError::from(e);
        let message = match e.status() {
            413 => "request body too large (the admin api takes at most 64 KiB)",
            431 => "request head too large",
            414 => "request target too long",
            _ => "malformed request",
        };
        ReadError::Respond(e.status(), message)
    })?;
    let length = match head.framing {
        BodyFraming::Length(n) => usize::try_from(n).unwrap_or(usize::MAX),
        BodyFraming::Chunked => {
            return Err(ReadError::Respond(
                411,
                "chunked bodies are not accepted: send Content-Length",
            ))
        }
        BodyFraming::UntilClose => return Err(ReadError::Respond(400, "malformed request")),
    };
    if length > MAX_BODY_BYTES {
        return Err(ReadError::Respond(
            413,
            "request body too large (the admin api takes at most 64 KiB)",
        ));
    }
    if head.expect_continue && buf.len() < length {
        let continue_head = BytesMut::from(&b"HTTP/1.1 100 Continue\r\n\r\n"[..]);
        write_out(stream, continue_head)
            .await
            .map_err(|_| ReadError::Closed)?;
    }
    while buf.len() < length {
        match read_more(stream, buf, length - buf.len(), BODY_READ_TIMEOUT).await {
            Ok(0) | Err(ReadFail::Io) => return Err(ReadError::Closed),
            Ok(_) => {}
            Err(ReadFail::Timeout) => {
                return Err(ReadError::Respond(408, "request body read timed out"))
            }
        }
    }
    let body = buf.split_to(length);
    let text = |span: (u32, u32)| {
        raw.get(span.0 as usize..span.1 as usize)
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default()
    };
    let authorization = head
        .headers
        .iter()
        .find(|h| h.name(&raw).eq_ignore_ascii_case(b"authorization"))
        .map(|h| h.value(&raw).to_vec());
    Ok(Parsed {
        method: text(head.method_span),
        path: text((head.target.0, head.path_end)),
        authorization,
        body,
        keep_alive: head.keep_alive,
    })
}

/// Reads until `buf` holds a whole head; returns where it ends.
async fn read_head(stream: &mut TcpStream, buf: &mut BytesMut) -> Result<usize, ReadError> {
    let mut scanned = 0;
    // A head already begun (pipelined) is on the head clock; otherwise wait as idle.
    let mut deadline = (!buf.is_empty()).then(|| Instant::now() + HEAD_READ_TIMEOUT);
    loop {
        if let Some(end) = find_head_end(buf, scanned) {
            return Ok(end);
        }
        scanned = buf.len();
        if buf.len() >= MAX_HEAD_BYTES {
            return Err(ReadError::Respond(431, "request head too large"));
        }
        let timeout = match deadline {
            None => IDLE_TIMEOUT,
            Some(deadline) => deadline.saturating_duration_since(Instant::now()),
        };
        match read_more(stream, buf, READ_CHUNK, timeout).await {
            Ok(0) | Err(ReadFail::Io) => return Err(ReadError::Closed),
            Ok(_) => {
                deadline.get_or_insert_with(|| Instant::now() + HEAD_READ_TIMEOUT);
            }
            Err(ReadFail::Timeout) if deadline.is_none() => return Err(ReadError::Closed),
            Err(ReadFail::Timeout) => {
                return Err(ReadError::Respond(408, "request head read timed out"))
            }
        }
    }
}

/// Writes a reply's head and body into `out`.
fn encode(out: &mut BytesMut, reply: &Reply, keep_alive: bool) {
    let mut status = itoa::Buffer::new();
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(status.format(reply.status).as_bytes());
    out.put_u8(b' ');
    out.put_slice(reason_phrase(reply.status).as_bytes());
    out.put_slice(b"\r\nserver: strait\r\ncontent-type: ");
    out.put_slice(reply.content_type.as_bytes());
    out.put_slice(b"\r\ncache-control: no-store\r\n");
    if let Some(allow) = &reply.allow {
        out.put_slice(b"allow: ");
        out.put_slice(allow.as_bytes());
        out.put_slice(b"\r\n");
    }
    if reply.authenticate {
        out.put_slice(b"www-authenticate: Bearer realm=\"strait-admin\"\r\n");
    }
    if !keep_alive {
        out.put_slice(b"connection: close\r\n");
    }
    let mut length = itoa::Buffer::new();
    out.put_slice(b"content-length: ");
    out.put_slice(length.format(reply.body.len()).as_bytes());
    out.put_slice(b"\r\n\r\n");
    out.put_slice(&reply.body);
}

/// Why a read brought nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadFail {
    Timeout,
    Io,
}

/// Reads what is available into the spare capacity of `buf` (at least `min_spare` free
/// bytes are made first); 0 means end of stream. Same pattern as `io::read_more`.
async fn read_more(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    min_spare: usize,
    timeout: Duration,
) -> Result<usize, ReadFail> {
    let min_spare = min_spare.clamp(1, READ_CHUNK * 4);
    if buf.capacity() - buf.len() < min_spare {
        buf.reserve(min_spare);
    }
    let owned = std::mem::take(buf);
    let filled = owned.len();
    match monoio::time::timeout(timeout, stream.read(owned.slice_mut(filled..))).await {
        Ok((result, slice)) => {
            *buf = slice.into_inner();
            result.map_err(|_| ReadFail::Io)
        }
        // The epoll driver's read is not in flight once dropped; the buffer goes with it and
        // the connection ends anyway.
        Err(_) => Err(ReadFail::Timeout),
    }
}

/// Writes all of `out` within [`WRITE_TIMEOUT`], then hands it back emptied for reuse.
async fn write_out<W: AsyncWriteRent>(dst: &mut W, out: BytesMut) -> std::io::Result<BytesMut> {
    let (result, mut out) = monoio::time::timeout(WRITE_TIMEOUT, dst.write_all(out))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?;
    result?;
    out.clear();
    Ok(out)
}
