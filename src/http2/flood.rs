//! The control-frame budget of an HTTP/2 connection. PING, SETTINGS, WINDOW_UPDATE,
//! PRIORITY, RST_STREAM, empty DATA and frames of unknown types cost the worker work (an
//! answer to write, state to update) and ask for nothing; a client can send them in an
//! endless stream (CVE-2019-9512, -9515, -9518). The h2 codec bounds what they make it
//! hold, not how many it handles.
//!
//! So the frame headers of what a client sends are read on the way in (payloads skipped)
//! and each such frame spends one unit of a budget of `max_control_frames`. Real work earns
//! units back, up to that bound: a request (HEADERS), request body bytes (DATA), and every
//! 16 KiB written to the client (a download's window updates are paid by its data). A
//! client that spends the budget gets GOAWAY `ENHANCE_YOUR_CALM`.

use std::cell::Cell;

use super::frames::FrameReader;
use super::io::Inspect;

/// What the connection task learns from the frames read: whether the budget ran out (on
/// which kind of frame), and the counts that tell the codec's own limits apart.
#[derive(Debug, Default)]
pub struct Seen {
    pub flood: Cell<Option<ControlFrame>>,
    pub resets: Cell<u64>,
    pub continuations: Cell<u64>,
    /// RST_STREAMs Strait sent, by error code (see [`ResetCode`]).
    pub resets_sent: [Cell<u64>; 5],
}

/// Why Strait reset a stream, from the RST_STREAM's error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetCode {
    /// REFUSED_STREAM: over `max_concurrent_streams` (nothing was processed).
    Refused,
    /// CANCEL: a request body cut short towards an HTTP/2 upstream.
    Cancel,
    /// INTERNAL_ERROR: an answer that could not be completed (the upstream failed, or the
    /// client left its window shut past `client_send`).
    Internal,
    /// PROTOCOL_ERROR: a malformed stream.
    Protocol,
    Other,
}

impl ResetCode {
    pub const ALL: [ResetCode; 5] = [
        ResetCode::Refused,
        ResetCode::Cancel,
        ResetCode::Internal,
        ResetCode::Protocol,
        ResetCode::Other,
    ];

    fn of(code: u32) -> Self {
        match code {
            7 => ResetCode::Refused,
            8 => ResetCode::Cancel,
            2 => ResetCode::Internal,
            1 => ResetCode::Protocol,
            _ => ResetCode::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ResetCode::Refused => "refused_stream",
            ResetCode::Cancel => "cancel",
            ResetCode::Internal => "internal_error",
            ResetCode::Protocol => "protocol_error",
            ResetCode::Other => "other",
        }
    }
}

/// A server connection's budget as it reads: what it finds goes to the connection task's
/// [`Seen`].
pub struct Guard<'a> {
    pub budget: FrameBudget,
    pub seen: &'a Seen,
    /// Reads what Strait writes, for the resets it sends.
    pub written: FrameReader,
}

impl Inspect for Guard<'_> {
    fn inbound(&mut self, bytes: &[u8]) -> bool {
        let budget = &mut self.budget;
        let result = budget.inbound(bytes);
        self.seen.resets.set(budget.resets);
        self.seen.continuations.set(budget.continuations);
        if let Err(frame) = result {
            self.seen.flood.set(Some(frame));
        }
        result.is_ok()
    }

    fn outbound(&mut self, bytes: &[u8]) {
        self.budget.outbound(bytes.len());
        let resets = &self.seen.resets_sent;
        let _ = self.written.read(bytes, |f| {
            if let Some(code) = f.code {
                let at = &resets[ResetCode::of(code) as usize];
                at.set(at.get() + 1);
            }
            Ok::<(), ()>(())
        });
    }
}

/// Bytes written to the client that earn back one unit.
const EARNED_PER_BYTES: u64 = 16 * 1024;

/// The kinds of frame that cost a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlFrame {
    EmptyData,
    Priority,
    RstStream,
    Settings,
    Ping,
    WindowUpdate,
    Unknown,
}

#[derive(Debug)]
pub struct FrameBudget {
    reader: FrameReader,
    left: i64,
    max: i64,
    written: u64,
    resets: u64,
    continuations: u64,
}

impl FrameBudget {
    /// A budget for a connection whose client starts with the 24-byte preface.
    pub fn new(max_control_frames: usize) -> Self {
        let max = i64::try_from(max_control_frames).unwrap_or(i64::MAX);
        FrameBudget {
            reader: FrameReader::after(24),
            left: max,
            max,
            written: 0,
            resets: 0,
            continuations: 0,
        }
    }

    /// Reads the frame headers in `bytes` (the next bytes from the client). `Err` with the
    /// kind of the frame that spent the budget.
    pub fn inbound(&mut self, bytes: &[u8]) -> Result<(), ControlFrame> {
        let mut reader = self.reader;
        let read = reader.read(bytes, |f| self.frame(f.kind, f.flags, f.length));
        self.reader = reader;
        read
    }

    /// Counts bytes written to the client.
    pub fn outbound(&mut self, bytes: usize) {
        self.written += bytes as u64;
        let earned = self.written / EARNED_PER_BYTES;
        self.written %= EARNED_PER_BYTES;
        self.earn(i64::try_from(earned).unwrap_or(i64::MAX));
    }

    fn earn(&mut self, units: i64) {
        self.left = self.left.saturating_add(units).min(self.max);
    }

    fn frame(&mut self, kind: u8, flags: u8, length: u64) -> Result<(), ControlFrame> {
        const END_STREAM: u8 = 0x1;
        let control = match kind {
            0 if length == 0 && flags & END_STREAM == 0 => ControlFrame::EmptyData,
            0 | 1 => {
                self.earn(1);
                return Ok(());
            }
            2 => ControlFrame::Priority,
            3 => {
                self.resets += 1;
                ControlFrame::RstStream
            }
            4 => ControlFrame::Settings,
            6 => ControlFrame::Ping,
            8 => ControlFrame::WindowUpdate,
            // PUSH_PROMISE (a protocol error from a client), GOAWAY, CONTINUATION: the
            // codec ends the connection or bounds them itself.
            9 => {
                self.continuations += 1;
                return Ok(());
            }
            5 | 7 => return Ok(()),
            _ => ControlFrame::Unknown,
        };
        self.left -= 1;
        if self.left < 0 {
            Err(control)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::http2::frames::frame;

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    #[test]
    fn control_frames_spend_the_budget() {
        let mut budget = FrameBudget::new(3);
        let mut bytes = PREFACE.to_vec();
        for _ in 0..3 {
            bytes.extend(frame(6, 0, &[0; 8]));
        }
        assert_eq!(budget.inbound(&bytes), Ok(()));
        assert_eq!(
            budget.inbound(&frame(8, 0, &[0, 0, 0, 1])),
            Err(ControlFrame::WindowUpdate)
        );
    }

    #[test]
    fn headers_split_across_reads_are_read_whole() {
        let mut budget = FrameBudget::new(1);
        let mut bytes = PREFACE.to_vec();
        bytes.extend(frame(4, 0, &[0, 3, 0, 0, 0, 100]));
        bytes.extend(frame(6, 0, &[0; 8]));
        let mut result = Ok(());
        for byte in &bytes {
            result = result.and(budget.inbound(std::slice::from_ref(byte)));
        }
        assert_eq!(result, Err(ControlFrame::Ping));
    }

    #[test]
    fn work_earns_units_back_up_to_the_bound() {
        let mut budget = FrameBudget::new(2);
        budget.inbound(PREFACE).unwrap();
        let ping = frame(6, 0, &[0; 8]);
        budget.inbound(&ping).unwrap();
        budget.inbound(&ping).unwrap();
        // A request and its body earn two back; an empty DATA does not.
        budget.inbound(&frame(1, 0x4, b"\x82")).unwrap();
        budget.inbound(&frame(0, 0, b"body")).unwrap();
        budget.inbound(&ping).unwrap();
        budget.inbound(&ping).unwrap();
        assert_eq!(
            budget.inbound(&frame(0, 0, b"")),
            Err(ControlFrame::EmptyData)
        );
        // 64 KiB written earn 4, but no more than the bound of 2.
        budget.outbound(64 * 1024);
        budget.inbound(&ping).unwrap();
        budget.inbound(&ping).unwrap();
        assert_eq!(
            budget.inbound(&frame(0xfa, 0, b"")),
            Err(ControlFrame::Unknown)
        );
    }

    #[test]
    fn an_empty_data_frame_ending_the_stream_is_work() {
        let mut budget = FrameBudget::new(0);
        budget.inbound(PREFACE).unwrap();
        assert_eq!(budget.inbound(&frame(0, 0x1, b"")), Ok(()));
        assert_eq!(
            budget.inbound(&frame(2, 0, &[0; 5])),
            Err(ControlFrame::Priority)
        );
    }
}
