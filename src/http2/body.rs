//! A message body between an HTTP/2 stream and its HTTP/1.1 form, both ways and on both
//! sides (a client's stream, an upstream's): [`Outbound`] takes HTTP/1.1 body bytes
//! (Content-Length, chunked with trailers, or to the end) and sends them as DATA and
//! trailers under the stream's flow control; [`Inbound`] reads DATA and trailers and gives
//! them back as HTTP/1.1 body bytes, chunked when the head said so. Flow control holds
//! each side back: a window opens again only as bytes are taken.

use std::future::poll_fn;
use std::io;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use h2::{Reason, RecvStream, SendStream};

use super::convert;
use crate::http1::body::write_hex;
use crate::http1::{BodyFraming, ChunkedDecoder, ChunkedEvent};

/// A body going out on a stream.
pub struct Outbound {
    stream: SendStream<Bytes>,
    framing: Framing,
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

impl Outbound {
    /// A body framed as `framing` says, on `stream` (whose HEADERS went without
    /// END_STREAM: an empty body is `BodyFraming::Length(0)` and has no `Outbound`).
    pub fn new(stream: SendStream<Bytes>, framing: BodyFraming) -> Self {
        let framing = match framing {
            BodyFraming::Length(n) => Framing::Length(n),
            BodyFraming::Chunked => Framing::Chunked {
                decoder: ChunkedDecoder::new(),
                trailers: None,
            },
            BodyFraming::UntilClose => Framing::UntilEnd,
        };
        Outbound { stream, framing }
    }

    /// Takes HTTP/1.1 body bytes; true once the body ended (and with it the stream). Bytes
    /// after the end are not the body's and are ignored.
    pub async fn take(&mut self, mut data: &[u8]) -> io::Result<bool> {
        let stream = &mut self.stream;
        match &mut self.framing {
            Framing::Length(left) => {
                let n = data.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                *left -= n as u64;
                send(stream, &data[..n], *left == 0).await?;
                Ok(*left == 0)
            }
            Framing::UntilEnd => send(stream, data, false).await.map(|()| false),
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
                            return Ok(true);
                        }
                    }
                    data = &data[used..];
                }
                Ok(false)
            }
        }
    }

    /// The stream, to send the body on directly ([`pipe`]); only before any of it went.
    pub fn into_stream(self) -> SendStream<Bytes> {
        self.stream
    }

    /// Ends the stream when the body's writer is done with it: a body that runs to the end
    /// ends here; one cut short is reset with `cut`, so the peer never takes it for whole.
    pub fn finish(mut self, cut: Reason) {
        match self.framing {
            Framing::UntilEnd => {
                let _ = self.stream.send_data(Bytes::new(), true);
            }
            _ => self.stream.send_reset(cut),
        }
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
    send_bytes(stream, Bytes::copy_from_slice(data), end).await
}

/// [`send`] for bytes already owned.
async fn send_bytes(stream: &mut SendStream<Bytes>, data: Bytes, end: bool) -> io::Result<()> {
    // As hyper does: wait for some window (one byte reserved), then hand over the whole
    // piece, which h2 sends as the windows open. A piece is one read (at most 64 KiB), so
    // what waits in h2 per stream stays bounded.
    stream.reserve_capacity(1);
    while stream.capacity() == 0 {
        match poll_fn(|cx| stream.poll_capacity(cx)).await {
            Some(granted) => {
                granted.map_err(h2_error)?;
            }
            None => return Err(io::ErrorKind::BrokenPipe.into()),
        }
    }
    stream.send_data(data, end).map_err(h2_error)
}

/// A body coming in on a stream, read as HTTP/1.1 body bytes.
pub struct Inbound {
    body: RecvStream,
    chunked: bool,
    ended: bool,
    /// Bytes received and not read yet: a DATA frame (framed as a chunk when `chunked`),
    /// or the last chunk with the trailers.
    pending: Bytes,
}

impl Inbound {
    /// `chunked`: give the body as chunks, with the trailers at the end (the head said
    /// `transfer-encoding: chunked`); otherwise as it is (the head gave its length).
    pub fn new(body: RecvStream, chunked: bool) -> Self {
        Inbound {
            ended: body.is_end_stream() && !chunked,
            body,
            chunked,
            pending: Bytes::new(),
        }
    }

    /// The stream, to take the body from directly ([`pipe`]); once reading began, the
    /// body stays here (`Err`).
    pub fn into_stream(self) -> Result<RecvStream, Self> {
        if self.pending.is_empty() && !self.ended {
            Ok(self.body)
        } else {
            Err(self)
        }
    }

    /// Copies body bytes into `dst`; 0 at the body's end.
    pub async fn read_into(&mut self, dst: &mut [u8]) -> io::Result<usize> {
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
                    // The window opens again as the bytes are taken: at most one window
                    // waits here unread.
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
                        let trailers = poll_fn(|cx| self.body.poll_trailers(cx))
                            .await
                            .map_err(h2_error)?;
                        let mut last = BytesMut::from(&b"0\r\n"[..]);
                        for (name, value) in trailers.iter().flatten() {
                            last.put_slice(name.as_str().as_bytes());
                            last.put_slice(b": ");
                            last.put_slice(value.as_bytes());
                            last.put_slice(b"\r\n");
                        }
                        last.put_slice(b"\r\n");
                        self.pending = last.freeze();
                    }
                }
            }
        }
    }
}

/// Copies a body from one stream to another, DATA as it comes and the trailers (a client's
/// gRPC stream to an HTTP/2 upstream): each side's flow control holds the other back, and
/// neither waits for the whole. More than `max_bytes` resets both.
pub async fn pipe(mut from: RecvStream, mut to: SendStream<Bytes>, max_bytes: u64) {
    let mut total = 0u64;
    loop {
        match poll_fn(|cx| from.poll_data(cx)).await {
            Some(Ok(data)) => {
                total += data.len() as u64;
                if total > max_bytes {
                    to.send_reset(Reason::CANCEL);
                    return;
                }
                let len = data.len();
                let sent = send_bytes(&mut to, data, false).await;
                // Released once sent on: the client's window follows the upstream's.
                let _ = from.flow_control().release_capacity(len);
                if sent.is_err() {
                    return;
                }
            }
            Some(Err(_)) => {
                to.send_reset(Reason::CANCEL);
                return;
            }
            None => break,
        }
    }
    match poll_fn(|cx| from.poll_trailers(cx)).await {
        Ok(Some(trailers)) => {
            let _ = to.send_trailers(trailers);
        }
        Ok(None) => {
            let _ = to.send_data(Bytes::new(), true);
        }
        Err(_) => to.send_reset(Reason::CANCEL),
    }
}

pub fn h2_error(e: h2::Error) -> io::Error {
    io::Error::other(e)
}

pub fn invalid<E: std::error::Error + Send + Sync + 'static>(e: E) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}
