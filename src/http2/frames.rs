//! Frame headers read out of an HTTP/2 byte stream as it passes, in pieces of any size,
//! payloads skipped: what the control-frame budget counts on the way in and the resets
//! counted on the way out. RFC 9113 §4.1: a 9-byte header (length, type, flags, stream).

const FRAME_HEADER: usize = 9;
const RST_STREAM: u8 = 3;

/// One frame's header, and a RST_STREAM's error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHead {
    pub kind: u8,
    pub flags: u8,
    pub length: u64,
    /// The error code of a RST_STREAM.
    pub code: Option<u32>,
}

#[derive(Debug, Clone, Copy)]
pub struct FrameReader {
    /// Bytes to pass over before the next header (a preface, then each payload).
    skip: u64,
    buf: [u8; FRAME_HEADER + 4],
    filled: usize,
}

impl FrameReader {
    /// A reader whose stream starts with `skip` bytes that are not frames (a client's
    /// 24-byte preface).
    pub fn after(skip: u64) -> Self {
        FrameReader {
            skip,
            buf: [0; FRAME_HEADER + 4],
            filled: 0,
        }
    }

    /// Reads the next bytes of the stream, calling `each` for every header completed; stops
    /// at `each`'s first error.
    pub fn read<E>(
        &mut self,
        mut bytes: &[u8],
        mut each: impl FnMut(FrameHead) -> Result<(), E>,
    ) -> Result<(), E> {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = bytes
                    .len()
                    .min(usize::try_from(self.skip).unwrap_or(usize::MAX));
                self.skip -= n as u64;
                bytes = &bytes[n..];
                continue;
            }
            let want = self.wanted();
            let n = bytes.len().min(want - self.filled);
            self.buf[self.filled..self.filled + n].copy_from_slice(&bytes[..n]);
            self.filled += n;
            bytes = &bytes[n..];
            if self.filled < self.wanted() {
                continue; // more of the header, or a RST_STREAM's code, to come
            }
            let head = self.head();
            self.filled = 0;
            self.skip = head.length - u64::from(head.code.is_some()) * 4;
            each(head)?;
        }
        Ok(())
    }

    /// Bytes needed before the frame can be told: its header, and a RST_STREAM's code.
    fn wanted(&self) -> usize {
        let is_reset = self.buf[3] == RST_STREAM && self.length() >= 4;
        if self.filled >= FRAME_HEADER && is_reset {
            FRAME_HEADER + 4
        } else {
            FRAME_HEADER
        }
    }

    fn length(&self) -> u64 {
        u64::from(u32::from_be_bytes([
            0,
            self.buf[0],
            self.buf[1],
            self.buf[2],
        ]))
    }

    fn head(&self) -> FrameHead {
        let code = (self.filled > FRAME_HEADER).then(|| {
            let c = &self.buf[FRAME_HEADER..];
            u32::from_be_bytes([c[0], c[1], c[2], c[3]])
        });
        FrameHead {
            kind: self.buf[3],
            flags: self.buf[4],
            length: self.length(),
            code,
        }
    }
}

/// A frame on stream 1, for tests.
#[cfg(test)]
pub fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_be_bytes();
    let mut out = vec![len[1], len[2], len[3], kind, flags, 0, 0, 0, 1];
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_reset_codes_in_any_split() {
        let mut bytes = b"preface!".to_vec();
        bytes.extend(frame(6, 1, b"12345678"));
        bytes.extend(frame(3, 0, &7u32.to_be_bytes()));
        bytes.extend(frame(0, 1, b"body"));
        let want = vec![
            FrameHead {
                kind: 6,
                flags: 1,
                length: 8,
                code: None,
            },
            FrameHead {
                kind: 3,
                flags: 0,
                length: 4,
                code: Some(7),
            },
            FrameHead {
                kind: 0,
                flags: 1,
                length: 4,
                code: None,
            },
        ];
        for split in 1..bytes.len() {
            let mut reader = FrameReader::after(8);
            let mut got = Vec::new();
            for piece in bytes.chunks(split) {
                reader
                    .read(piece, |f| {
                        got.push(f);
                        Ok::<(), ()>(())
                    })
                    .unwrap();
            }
            assert_eq!(got, want, "split {split}");
        }
    }
}
