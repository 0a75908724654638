//! Message body framing (RFC 9112 §6–§7) and the chunked decoder.
//!
//! The decoder is a byte-at-a-time state machine over whatever the socket delivered: it
//! never needs the whole body, reports data as ranges of the input (so payload bytes are
//! forwarded without copying), and refuses anything a stricter or looser peer could read
//! differently: bare LF line ends, sizes that overflow, control bytes in extensions.

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// Exactly this many bytes (0 means no body).
    Length(u64),
    Chunked,
    /// Until the sender closes the connection (responses only).
    UntilClose,
}

/// Chunk-size lines and trailer lines longer than this are refused: real ones are short, and
/// a peer that sends more is trying to make us buffer.
pub const MAX_CHUNK_LINE_BYTES: usize = 4096;
/// The whole trailer section, like a head, is bounded.
pub const MAX_TRAILER_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("invalid chunk size")]
    Size,
    #[error("invalid chunk extension")]
    Extension,
    #[error("missing CRLF after chunk data")]
    DataEnd,
    #[error("invalid trailer field")]
    Trailer,
    #[error("chunk line or trailer section too long")]
    TooLong,
}

/// What one call to [`ChunkedDecoder::decode`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkedEvent {
    /// Payload bytes at `input[start..end]`.
    Data { start: usize, end: usize },
    /// The last chunk's size line was consumed: every byte consumed from here up to and
    /// including `Done` is the trailer section (validated field lines and the final CRLF),
    /// which a forwarder copies after its own `0\r\n`.
    LastChunk,
    /// The input was consumed without completing anything; read more.
    NeedMore,
    /// The last chunk and the trailer section are complete.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a chunk size.
    Size {
        digits: u8,
    },
    /// Whitespace after the size, before `;` or CR (RFC 9112 §7.1.1 BWS).
    SizeWhitespace,
    /// Inside chunk extensions, up to CR.
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final CRLF).
    TrailerStart,
    /// Inside a trailer field line.
    TrailerLine {
        seen_colon: bool,
    },
    TrailerLf,
    EndLf,
    Done,
}

/// Decodes `chunked` bodies incrementally. Feed it each buffer as it arrives.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    /// Bytes left in the current chunk's data.
    remaining: u64,
    /// Bytes of the current size/extension line, against [`MAX_CHUNK_LINE_BYTES`].
    line_bytes: usize,
    trailer_bytes: usize,
    /// Payload bytes decoded so far.
    pub decoded: u64,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        ChunkedDecoder {
            state: State::Size { digits: 0 },
            remaining: 0,
            line_bytes: 0,
            trailer_bytes: 0,
            decoded: 0,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes a prefix of `input` and returns how many bytes were consumed and what they
    /// completed. Call again with the rest until it returns `NeedMore` (all consumed) or
    /// `Done`.
    pub fn decode(&mut self, input: &[u8]) -> Result<(usize, ChunkedEvent), ChunkError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Size { digits } => match hex_value(b) {
                    Some(v) => {
                        // 16 hex digits already hold u64::MAX: one more overflows.
                        if digits >= 16 || (digits == 15 && self.remaining > (u64::MAX >> 4)) {
                            return Err(ChunkError::Size);
                        }
                        self.remaining = (self.remaining << 4) | u64::from(v);
                        self.state = State::Size { digits: digits + 1 };
                    }
                    None if digits == 0 => return Err(ChunkError::Size),
                    None => match b {
                        b' ' | b'\t' => self.state = State::SizeWhitespace,
                        b';' => self.state = State::Extension,
                        b'\r' => self.state = State::SizeLf,
                        _ => return Err(ChunkError::Size),
                    },
                },
                State::SizeWhitespace => match b {
                    b' ' | b'\t' => {}
                    b';' => self.state = State::Extension,
                    b'\r' => self.state = State::SizeLf,
                    _ => return Err(ChunkError::Size),
                },
                State::Extension => match b {
                    b'\r' => self.state = State::SizeLf,
                    b'\t' | b' '..=b'~' | 0x80..=0xff => {}
                    _ => return Err(ChunkError::Extension),
                },
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(ChunkError::Size);
                    }
                    self.line_bytes = 0;
                    if self.remaining == 0 {
                        self.state = State::TrailerStart;
                        return Ok((i + 1, ChunkedEvent::LastChunk));
                    }
                    self.state = State::Data;
                }
                State::Data => {
                    let available = (input.len() - i) as u64;
                    let take = available.min(self.remaining) as usize;
                    self.remaining -= take as u64;
                    self.decoded += take as u64;
                    if self.remaining == 0 {
                        self.state = State::DataCr;
                    }
                    return Ok((
                        i + take,
                        ChunkedEvent::Data {
                            start: i,
                            end: i + take,
                        },
                    ));
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(ChunkError::DataEnd);
                    }
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(ChunkError::DataEnd);
                    }
                    self.state = State::Size { digits: 0 };
                }
                State::TrailerStart => {
                    if b == b'\r' {
                        self.state = State::EndLf;
                    } else if is_tchar(b) {
                        self.state = State::TrailerLine { seen_colon: false };
                    } else {
                        return Err(ChunkError::Trailer);
                    }
                }
                State::TrailerLine { seen_colon } => {
                    if b == b'\r' {
                        if !seen_colon {
                            return Err(ChunkError::Trailer);
                        }
                        self.state = State::TrailerLf;
                    } else if seen_colon {
                        if !(b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80) {
                            return Err(ChunkError::Trailer);
                        }
                    } else if b == b':' {
                        self.state = State::TrailerLine { seen_colon: true };
                    } else if !is_tchar(b) {
                        return Err(ChunkError::Trailer);
                    }
                }
                State::TrailerLf => {
                    if b != b'\n' {
                        return Err(ChunkError::Trailer);
                    }
                    self.state = State::TrailerStart;
                }
                State::EndLf => {
                    if b != b'\n' {
                        return Err(ChunkError::Trailer);
                    }
                    self.state = State::Done;
                    return Ok((i + 1, ChunkedEvent::Done));
                }
                State::Done => return Ok((i, ChunkedEvent::Done)),
            }
            self.count_line_byte()?;
            i += 1;
        }
        if self.state == State::Done {
            return Ok((i, ChunkedEvent::Done));
        }
        Ok((i, ChunkedEvent::NeedMore))
    }

    fn count_line_byte(&mut self) -> Result<(), ChunkError> {
        match self.state {
            State::Size { .. } | State::SizeWhitespace | State::Extension | State::SizeLf => {
                self.line_bytes += 1;
                if self.line_bytes > MAX_CHUNK_LINE_BYTES {
                    return Err(ChunkError::TooLong);
                }
                Ok(())
            }
            State::TrailerStart | State::TrailerLine { .. } | State::TrailerLf | State::EndLf => {
                self.trailer_bytes += 1;
                if self.trailer_bytes > MAX_TRAILER_BYTES {
                    return Err(ChunkError::TooLong);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Writes `n` as lower-case hex into `out`, for chunk-size lines.
pub fn write_hex(out: &mut bytes::BytesMut, n: u64) {
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    let mut v = n;
    loop {
        i -= 1;
        digits[i] = b"0123456789abcdef"[(v & 0xf) as usize];
        v >>= 4;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in pieces of `step` bytes; returns payload, raw trailer section
    /// and whether the body completed.
    fn decode_in_steps(input: &[u8], step: usize) -> Result<(Vec<u8>, Vec<u8>, bool), ChunkError> {
        let mut d = ChunkedDecoder::new();
        let mut payload = Vec::new();
        let mut trailers = Vec::new();
        let mut in_trailers = false;
        for piece in input.chunks(step.max(1)) {
            let mut at = 0;
            while at < piece.len() {
                let (used, event) = d.decode(&piece[at..])?;
                if in_trailers {
                    trailers.extend_from_slice(&piece[at..at + used]);
                }
                match event {
                    ChunkedEvent::Data { start, end } => {
                        payload.extend_from_slice(&piece[at + start..at + end])
                    }
                    ChunkedEvent::LastChunk => in_trailers = true,
                    ChunkedEvent::Done => return Ok((payload, trailers, true)),
                    ChunkedEvent::NeedMore => {}
                }
                at += used;
            }
        }
        Ok((payload, trailers, d.is_done()))
    }

    #[test]
    fn valid_bodies_decode_at_every_split() {
        let cases: &[(&[u8], &[u8], &[u8])] = &[
            (b"0\r\n\r\n", b"", b"\r\n"),
            (b"5\r\nhello\r\n0\r\n\r\n", b"hello", b"\r\n"),
            (
                b"5;ext=1\r\nhello\r\n6 ; a=\"b\"\r\n world\r\n0\r\n\r\n",
                b"hello world",
                b"\r\n",
            ),
            (
                b"A\r\n0123456789\r\n0\r\nX-Sum: 1\r\nY: 2\r\n\r\n",
                b"0123456789",
                b"X-Sum: 1\r\nY: 2\r\n\r\n",
            ),
            (b"00000003\r\nabc\r\n0\r\n\r\n", b"abc", b"\r\n"),
        ];
        for (input, payload, trailers) in cases {
            for step in 1..=input.len() {
                let (p, t, done) = decode_in_steps(input, step).unwrap();
                assert!(done, "{:?} step {step}", String::from_utf8_lossy(input));
                assert_eq!(&p[..], *payload);
                assert_eq!(&t[..], *trailers, "step {step}");
            }
        }
    }

    #[test]
    fn malformed_bodies_are_refused() {
        let cases: &[(&[u8], ChunkError)] = &[
            (b"\r\n", ChunkError::Size),
            (b"x\r\n", ChunkError::Size),
            (b"-1\r\n", ChunkError::Size),
            (b"5\nhello\r\n", ChunkError::Size),
            (b"5\r\nhelloX\r\n", ChunkError::DataEnd),
            (b"5\r\nhello\n0\r\n", ChunkError::DataEnd),
            (b"10000000000000000\r\n", ChunkError::Size),
            (b"5 x\r\n", ChunkError::Size),
            (b"5;a\x00\r\n", ChunkError::Extension),
            (b"5;a\nb\r\n", ChunkError::Extension),
            (b"0\r\nbad trailer\r\n\r\n", ChunkError::Trailer),
            (b"0\r\n\r\r", ChunkError::Trailer),
            (b"0x5\r\n", ChunkError::Size),
        ];
        for (input, want) in cases {
            for step in 1..=input.len() {
                assert_eq!(
                    decode_in_steps(input, step).err(),
                    Some(*want),
                    "{:?} step {step}",
                    String::from_utf8_lossy(input)
                );
            }
        }
    }

    #[test]
    fn sixteen_hex_digits_fit_and_seventeen_do_not() {
        let mut d = ChunkedDecoder::new();
        assert!(d.decode(b"ffffffffffffffff\r\n").is_ok());
        let mut d = ChunkedDecoder::new();
        assert_eq!(d.decode(b"1ffffffffffffffff"), Err(ChunkError::Size));
    }

    #[test]
    fn long_extension_is_refused() {
        let mut input = b"1;".to_vec();
        input.extend(std::iter::repeat_n(b'a', MAX_CHUNK_LINE_BYTES));
        let mut d = ChunkedDecoder::new();
        assert_eq!(d.decode(&input), Err(ChunkError::TooLong));
    }

    #[test]
    fn hex_rendering() {
        for n in [0u64, 1, 15, 16, 255, 4096, u64::MAX] {
            let mut out = bytes::BytesMut::new();
            write_hex(&mut out, n);
            assert_eq!(std::str::from_utf8(&out).unwrap(), format!("{n:x}"));
        }
    }
}
