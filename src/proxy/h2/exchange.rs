//! One HTTP/2 stream as the connection loop's byte stream: reading it gives the request
//! body (after the head, which the loop already holds), framed as the rendered head says;
//! writing to it takes the HTTP/1.1 answer the loop produces and sends it as HEADERS,
//! DATA and trailers under the stream's flow control, so a client that does not read
//! holds the writer back instead of a buffer growing.

use std::io;

use bytes::{Bytes, BytesMut};
use h2::server::SendResponse;
use h2::{Reason, RecvStream};
use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::BufResult;

use crate::http1::response::parse_response_head;
use crate::http1::{find_head_end, BodyFraming};
use crate::http2::body::{h2_error, invalid, Inbound, Outbound};
use crate::http2::convert::{self, RequestBody};
use crate::http2::StreamBody;
use crate::io::{rent_read, rent_readv, rent_write, rent_writev, Duplex, IntoDuplex, SliceIo};

pub struct Exchange {
    /// The request body; `None` once taken to go to an HTTP/2 upstream directly.
    request: Option<Inbound>,
    respond: SendResponse<Bytes>,
    /// The request was HEAD: its answer has no body whatever its head says.
    is_head: bool,
    answer: Answer,
}

/// Where the answer written so far stands.
enum Answer {
    /// The head's bytes so far.
    Head(BytesMut),
    Body(Outbound),
    /// The stream ended (or was reset).
    Done,
}

impl Exchange {
    pub fn new(
        body: RecvStream,
        framing: RequestBody,
        respond: SendResponse<Bytes>,
        is_head: bool,
    ) -> Self {
        Exchange {
            request: Some(Inbound::new(body, framing == RequestBody::Chunked)),
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
            Answer::Body(body) => body.finish(Reason::INTERNAL_ERROR),
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
        let ended = parsed.framing == BodyFraming::Length(0);
        let stream = self
            .respond
            .send_response(response, ended)
            .map_err(h2_error)?;
        self.answer = if ended {
            Answer::Done
        } else {
            Answer::Body(Outbound::new(stream, parsed.framing))
        };
        Ok(())
    }

    /// Takes bytes of the answer's body.
    async fn body(&mut self, data: &[u8]) -> io::Result<()> {
        let Answer::Body(body) = &mut self.answer else {
            return Ok(()); // nothing follows a complete answer
        };
        if body.take(data).await? {
            self.answer = Answer::Done;
        }
        Ok(())
    }
}

impl SliceIo for Exchange {
    async fn read_into(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        match self.request.as_mut() {
            Some(body) => body.read_into(dst).await,
            None => Ok(0),
        }
    }

    async fn write_from(&mut self, src: &[u8]) -> io::Result<usize> {
        self.take(src).await.map(|()| src.len())
    }
}

impl AsyncReadRent for Exchange {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        rent_read(self, buf).await
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        rent_readv(self, buf).await
    }
}

impl AsyncWriteRent for Exchange {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        rent_write(self, buf).await
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        rent_writev(self, buf).await
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

impl StreamBody for Exchange {
    fn take_stream_body(&mut self) -> Option<RecvStream> {
        match self.request.take()?.into_stream() {
            Ok(stream) => Some(stream),
            Err(begun) => {
                // Reading began: the loop goes on reading it.
                self.request = Some(begun);
                None
            }
        }
    }
}

impl IntoDuplex for Exchange {
    type Duplex<'a> = NoTunnel;

    fn duplex(&mut self) -> NoTunnel {
        NoTunnel
    }
}
