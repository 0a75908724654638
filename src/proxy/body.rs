//! Streams one message body from a reader to a writer without collecting it: each read is
//! decoded (Content-Length, chunked, or until close) and re-framed for the other side (as
//! is, or as chunked), then written before the next read. Memory stays at one read buffer
//! whatever the body's size.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};

use crate::http1::body::write_hex;
use crate::http1::{BodyFraming, ChunkedDecoder, ChunkedEvent};
use crate::io::{read_more, write_out, write_within, ReadFail};

/// Read size while streaming a body.
const BODY_READ_BYTES: usize = 64 * 1024;
/// Payload pieces at least this large are written straight from the read buffer instead of
/// being copied behind pending output.
const DIRECT_WRITE_BYTES: usize = 16 * 1024;

/// How the body leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encode {
    /// Payload bytes as they are (the receiver knows the length, or reads to the close).
    Raw,
    /// Re-chunked with canonical size lines; extensions dropped, trailers kept.
    Chunked,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PumpError {
    /// The source failed, timed out, or ended before the body did.
    Read(ReadFail),
    ReadClosed,
    /// The source sent a malformed chunked body.
    BadChunk,
    /// More payload than `max_bytes`.
    TooLarge,
    Write,
}

pub struct Pump {
    pub from: BodyFraming,
    pub encode: Encode,
    pub max_bytes: u64,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
}

impl Pump {
    /// Streams the body. `inbuf` holds bytes already read from `src` (they may contain the
    /// whole body and more); on return it holds whatever followed the body. `out` holds
    /// bytes to send before the body (a head) and is handed back empty, with the number of
    /// payload bytes that went through. `on_payload` sees each piece of payload (chunked
    /// framing removed) before it is framed for `dst`.
    pub async fn run<R: AsyncReadRent, W: AsyncWriteRent>(
        &self,
        src: &mut R,
        inbuf: &mut BytesMut,
        dst: &mut W,
        mut out: BytesMut,
        mut on_payload: impl FnMut(&[u8]),
    ) -> Result<(BytesMut, u64), PumpError> {
        let mut remaining = match self.from {
            BodyFraming::Length(n) => n,
            _ => 0,
        };
        let mut decoder = ChunkedDecoder::new();
        let mut trailers: Option<BytesMut> = None;
        let mut total: u64 = 0;
        loop {
            let mut done = false;
            match self.from {
                BodyFraming::Length(_) => {
                    let take = remaining.min(inbuf.len() as u64) as usize;
                    if take > 0 {
                        let data = inbuf.split_to(take);
                        out = self
                            .emit(dst, out, data, &mut total, &mut on_payload)
                            .await?;
                    }
                    remaining -= take as u64;
                    done = remaining == 0;
                }
                BodyFraming::UntilClose => {
                    if !inbuf.is_empty() {
                        let data = inbuf.split();
                        out = self
                            .emit(dst, out, data, &mut total, &mut on_payload)
                            .await?;
                    }
                }
                BodyFraming::Chunked => {
                    while !inbuf.is_empty() && !done {
                        let (used, event) =
                            decoder.decode(inbuf).map_err(|_| PumpError::BadChunk)?;
                        if let Some(t) = trailers.as_mut() {
                            t.extend_from_slice(&inbuf[..used]);
                        }
                        match event {
                            ChunkedEvent::Data { start, end } => {
                                let mut piece = inbuf.split_to(used);
                                piece.advance(start);
                                piece.truncate(end - start);
                                out = self
                                    .emit(dst, out, piece, &mut total, &mut on_payload)
                                    .await?;
                                continue;
                            }
                            ChunkedEvent::LastChunk => trailers = Some(BytesMut::new()),
                            ChunkedEvent::NeedMore => {}
                            ChunkedEvent::Done => done = true,
                        }
                        inbuf.advance(used);
                    }
                }
            }
            if done {
                if self.encode == Encode::Chunked {
                    out.extend_from_slice(b"0\r\n");
                    match &trailers {
                        Some(t) if !t.is_empty() => out.extend_from_slice(t),
                        _ => out.extend_from_slice(b"\r\n"),
                    }
                }
                return Ok((self.flush(dst, out).await?, total));
            }
            if !out.is_empty() {
                out = self.flush(dst, out).await?;
            }
            let n = read_more(src, inbuf, BODY_READ_BYTES, self.read_timeout)
                .await
                .map_err(PumpError::Read)?;
            if n == 0 {
                if self.from != BodyFraming::UntilClose {
                    return Err(PumpError::ReadClosed);
                }
                if self.encode == Encode::Chunked {
                    out.extend_from_slice(b"0\r\n\r\n");
                }
                return Ok((self.flush(dst, out).await?, total));
            }
        }
    }

    /// Frames one piece of payload into `out`, or writes a large raw piece directly.
    async fn emit<W: AsyncWriteRent>(
        &self,
        dst: &mut W,
        mut out: BytesMut,
        data: BytesMut,
        total: &mut u64,
        on_payload: &mut impl FnMut(&[u8]),
    ) -> Result<BytesMut, PumpError> {
        *total += data.len() as u64;
        if *total > self.max_bytes {
            return Err(PumpError::TooLarge);
        }
        on_payload(&data);
        match self.encode {
            Encode::Chunked => {
                if !data.is_empty() {
                    write_hex(&mut out, data.len() as u64);
                    out.extend_from_slice(b"\r\n");
                    out.extend_from_slice(&data);
                    out.extend_from_slice(b"\r\n");
                }
            }
            Encode::Raw if data.len() >= DIRECT_WRITE_BYTES => {
                if !out.is_empty() {
                    out = self.flush(dst, out).await?;
                }
                let (result, _) = write_within(dst, data.freeze(), self.write_timeout)
                    .await
                    .map_err(|_| PumpError::Write)?;
                result.map_err(|_| PumpError::Write)?;
            }
            Encode::Raw => out.extend_from_slice(&data),
        }
        Ok(out)
    }

    async fn flush<W: AsyncWriteRent>(
        &self,
        dst: &mut W,
        out: BytesMut,
    ) -> Result<BytesMut, PumpError> {
        if out.is_empty() {
            return Ok(out);
        }
        write_out(dst, out, self.write_timeout)
            .await
            .map_err(|_| PumpError::Write)
    }
}
