//! One HTTP/2 stream as the connection loop's byte stream: reading it gives the request
//! body (after the head, which the loop already holds), framed as the rendered head says;
//! writing to it takes the HTTP/1.1 answer the loop produces and sends it as HEADERS,
//! DATA and trailers under the stream's flow control, so a client that does not read
//! holds the writer back instead of a buffer growing.

use std::future::poll_fn;
use std::io;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut, RawBuf};
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::BufResult;

use crate::http1::body::write_hex;
use crate::http1::response::parse_response_head;
use crate::http1::{find_head_end, BodyFraming, ChunkedDecoder, ChunkedEvent};
use crate::http2::convert::{self, RequestBody};
use crate::io::{Duplex, IntoDuplex};

pub struct Exchange {
    request: Incoming,
    respond: SendResponse<Bytes>,
    /// The request was HEAD: its answer has no body whatever its head says.
    is_head: bool,
    answer: Answer,
}

/// The request body as the connection loop reads it.
struct Incoming {
    body: RecvStream,
    chunked: bool,
    ended: bool,
    /// Bytes received and not read yet (a DATA frame, framed as a chunk when `chunked`).
    pending: Bytes,
}

/// Where the answer written so far stands.
enum Answer {
    /// The head's bytes so far.
    Head(BytesMut),
    Body(SendStream<Bytes>, Framing),
    /// The stream ended (or was reset).
    Done,
}

enum Framing {
    Length(u64),
    Chunked {
        decoder: ChunkedDecoder,
        /// The trailer section once the last chunk began.
        trailers: Option<BytesMut>,
    },
    /// To the end of the exchange.
    UntilEnd,
}

impl Exchange {
    pub fn new(
        body: RecvStream,
        framing: RequestBody,
        respond: SendResponse<Bytes>,
        is_head: bool,
    ) -> Self {
        Exchange {
            request: Incoming {
                ended: framing == RequestBody::None,
                chunked: framing == RequestBody::Chunked,
                body,
                pending: Bytes::new(),
            },
            respond,
            is_head,
            answer: Answer::Head(BytesMut::new()),
        }
    }

    /// Ends the stream after the connection loop is done with it: an answer that did not
    /// complete resets it, so the client never takes a cut body for a whole one.
    pub fn finish(mut self) {
        match std::mem::replace(&mut self.answer, Answer::Done) {
            Answer::Done => {}
            Answer::Head(_) => self.respond.send_reset(Reason::INTERNAL_ERROR),
            Answer::Body(mut stream, Framing::UntilEnd) => {
                let _ = stream.send_data(Bytes::new(), true);
            }
            Answer::Body(mut stream, _) => stream.send_reset(Reason::INTERNAL_ERROR),
        }
    }

    /// Takes bytes of the HTTP/1.1 answer.
    async fn take(&mut self, mut data: &[u8]) -> io::Result<()> {
        loop {
            let Answer::Head(partial) = &mut self.answer else {
                return self.body(data).await;
            };
            // Most heads come whole in one write (with the body's start): parsed where
            // they are. A head split across writes is gathered first.
            if partial.is_empty() {
                let Some(end) = find_head_end(data, 0) else {
                    partial.extend_from_slice(data);
                    return Ok(());
                };
                self.head(&data[..end])?;
                data = &data[end..];
                continue;
            }
            let seen = partial.len();
            partial.extend_from_slice(data);
            let Some(end) = find_head_end(partial, seen) else {
                return Ok(());
            };
            let raw = partial.split_to(end);
            data = &data[data.len() - partial.len()..];
            partial.clear();
            self.head(&raw)?;
        }
    }

    /// Sends one answer head: an interim one (the answer stays at its head), or the final
    /// one (its body follows, if it has one).
    fn head(&mut self, raw: &[u8]) -> io::Result<()> {
        let parsed = parse_response_head(raw, self.is_head).map_err(invalid)?;
        let response = convert::response_head(raw, &parsed);
        if parsed.status < 200 {
            // 100 Continue is HTTP/1.1's business; other interim answers (103) go on.
            if parsed.status != 100 {
                let _ = self.respond.send_informational(response);
            }
            return Ok(());
        }
        let framing = match parsed.framing {
            BodyFraming::Length(0) => None,
            BodyFraming::Length(n) => Some(Framing::Length(n)),
            BodyFraming::Chunked => Some(Framing::Chunked {
                decoder: ChunkedDecoder::new(),
                trailers: None,
            }),
            BodyFraming::UntilClose => Some(Framing::UntilEnd),
        };
        let stream = self
            .respond
            .send_response(response, framing.is_none())
            .map_err(h2_error)?;
        self.answer = match framing {
            Some(framing) => Answer::Body(stream, framing),
            None => Answer::Done,
        };
        Ok(())
    }

    /// Takes bytes of the answer's body.
    async fn body(&mut self, mut data: &[u8]) -> io::Result<()> {
        let Answer::Body(stream, framing) = &mut self.answer else {
            return Ok(()); // nothing follows a complete answer
        };
        match framing {
            Framing::Length(left) => {
                let n = data.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                *left -= n as u64;
                let end = *left == 0;
                send(stream, &data[..n], end).await?;
                if end {
                    self.answer = Answer::Done;
                }
            }
            Framing::UntilEnd => send(stream, data, false).await?,
            Framing::Chunked { decoder, trailers } => {
                while !data.is_empty() {
                    let (used, event) = decoder.decode(data).map_err(invalid)?;
                    if let Some(section) = trailers.as_mut() {
                        section.extend_from_slice(&data[..used]);
                    }
                    match event {
                        ChunkedEvent::Data { start, end } => {
                            send(stream, &data[start..end], false).await?;
                        }
                        ChunkedEvent::LastChunk => *trailers = Some(BytesMut::new()),
                        ChunkedEvent::NeedMore => {}
                        ChunkedEvent::Done => {
                            let fields = convert::trailers(trailers.as_deref().unwrap_or(&[]));
                            if fields.is_empty() {
                                send(stream, &[], true).await?;
                            } else {
                                stream.send_trailers(fields).map_err(h2_error)?;
                            }
                            self.answer = Answer::Done;
                            return Ok(());
                        }
                    }
                    data = &data[used..];
                }
            }
        }
        Ok(())
    }
}

/// Sends `data` as the stream's flow control allows, waiting for window as needed; `end`
/// ends the stream with its last byte (or with an empty frame when there is none).
async fn send(stream: &mut SendStream<Bytes>, data: &[u8], end: bool) -> io::Result<()> {
    if data.is_empty() {
        if end {
            stream.send_data(Bytes::new(), true).map_err(h2_error)?;
        }
        return Ok(());
    }
    let mut data = Bytes::copy_from_slice(data);
    while !data.is_empty() {
        stream.reserve_capacity(data.len());
        let granted = match poll_fn(|cx| stream.poll_capacity(cx)).await {
            Some(granted) => granted.map_err(h2_error)?,
            None => return Err(io::ErrorKind::BrokenPipe.into()),
        };
        if granted == 0 {
            continue;
        }
        let piece = data.split_to(granted.min(data.len()));
        stream
            .send_data(piece, end && data.is_empty())
            .map_err(h2_error)?;
    }
    Ok(())
}

impl Incoming {
    /// Copies received body bytes into `dst`; 0 at the body's end.
    async fn read_into(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(dst.len());
                dst[..n].copy_from_slice(&self.pending[..n]);
                self.pending.advance(n);
                return Ok(n);
            }
            if self.ended {
                return Ok(0);
            }
            match poll_fn(|cx| self.body.poll_data(cx)).await {
                Some(Ok(data)) => {
                    // The window opens again as the bytes are taken: a client can have at
                    // most one window unread here.
                    let _ = self.body.flow_control().release_capacity(data.len());
                    self.pending = if self.chunked && !data.is_empty() {
                        let mut chunk = BytesMut::with_capacity(data.len() + 20);
                        write_hex(&mut chunk, data.len() as u64);
                        chunk.put_slice(b"\r\n");
                        chunk.put_slice(&data);
                        chunk.put_slice(b"\r\n");
                        chunk.freeze()
                    } else {
                        data
                    };
                }
                Some(Err(e)) => return Err(h2_error(e)),
                None => {
                    self.ended = true;
                    if self.chunked {
                        self.pending = Bytes::from_static(b"0\r\n\r\n");
                    }
                }
            }
        }
    }
}

fn h2_error(e: h2::Error) -> io::Error {
    io::Error::other(e)
}

fn invalid<E: std::error::Error + Send + Sync + 'static>(e: E) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl AsyncReadRent for Exchange {
    async fn read<T: IoBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        // SAFETY: the buffer's spare room, as monoio's own reads use it; only the bytes
        // written are marked initialised.
        let dst = unsafe { std::slice::from_raw_parts_mut(buf.write_ptr(), buf.bytes_total()) };
        let result = self.request.read_into(dst).await;
        if let Ok(n) = result {
            unsafe { buf.set_init(n) };
        }
        (result, buf)
    }

    async fn readv<T: IoVecBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        // SAFETY: the first non-empty slice of the vector, filled like `read`'s buffer.
        let n = match unsafe { RawBuf::new_from_iovec_mut(&mut buf) } {
            Some(raw) => match self.read(raw).await.0 {
                Ok(n) => n,
                Err(e) => return (Err(e), buf),
            },
            None => 0,
        };
        unsafe { buf.set_init(n) };
        (Ok(n), buf)
    }
}

impl AsyncWriteRent for Exchange {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        // SAFETY: the buffer's initialised bytes, read while we own it.
        let src = unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) };
        let result = self.take(src).await.map(|()| src.len());
        (result, buf)
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        // SAFETY: the first non-empty slice of the vector, read while we own it.
        let result = match unsafe { RawBuf::new_from_iovec(&buf) } {
            Some(raw) => self.write(raw).await.0,
            None => Ok(0),
        };
        (result, buf)
    }

    async fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// An HTTP/2 stream never becomes a tunnel: the codec refuses the Connection and Upgrade
/// fields a WebSocket handshake needs, and extended CONNECT is not offered.
pub struct NoTunnel;

impl Duplex for NoTunnel {
    async fn recv(&self, buf: BytesMut) -> (io::Result<usize>, BytesMut) {
        (Err(io::ErrorKind::Unsupported.into()), buf)
    }

    async fn send(&self, buf: BytesMut) -> (io::Result<()>, BytesMut) {
        (Err(io::ErrorKind::Unsupported.into()), buf)
    }
}

impl IntoDuplex for Exchange {
    type Duplex<'a> = NoTunnel;

    fn duplex(&mut self) -> NoTunnel {
        NoTunnel
    }
}
