//! HTTP/2 connections by how they ended: the client's doing, Strait's timeouts and drains,
//! or one of the defences (`[server.http2]`) shutting out an abusive client. Plain
//! per-worker counters like the other metrics, summed when scraped.

use std::fmt::Write as _;

use crate::http2::flood::ResetCode;

/// How an HTTP/2 connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Http2Close {
    /// The client closed it or said GOAWAY.
    Client,
    /// No stream for `keepalive_idle`: GOAWAY.
    Idle,
    /// A drain: GOAWAY, streams in flight finished.
    Drain,
    /// Streams reset faster than served past `max_pending_resets` (Rapid Reset).
    RapidReset,
    /// A header block in more CONTINUATION frames than its size allows.
    ContinuationFlood,
    /// Another limit of the codec's: a header list far over `max_header_bytes`, or more
    /// than `max_error_resets` streams broken by the client.
    Abuse,
    /// PING, SETTINGS, WINDOW_UPDATE… past `max_control_frames`.
    ControlFlood,
    /// Any other protocol violation (HPACK, framing, flow control).
    ProtocolError,
    /// The socket failed or timed out.
    IoError,
}

impl Http2Close {
    const ALL: [Http2Close; 9] = [
        Http2Close::Client,
        Http2Close::Idle,
        Http2Close::Drain,
        Http2Close::RapidReset,
        Http2Close::ContinuationFlood,
        Http2Close::Abuse,
        Http2Close::ControlFlood,
        Http2Close::ProtocolError,
        Http2Close::IoError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Http2Close::Client => "client",
            Http2Close::Idle => "idle",
            Http2Close::Drain => "drain",
            Http2Close::RapidReset => "rapid_reset",
            Http2Close::ContinuationFlood => "continuation_flood",
            Http2Close::Abuse => "abuse",
            Http2Close::ControlFlood => "control_flood",
            Http2Close::ProtocolError => "protocol_error",
            Http2Close::IoError => "io_error",
        }
    }
}

/// One worker's closed HTTP/2 connections, indexed like [`Http2Close::ALL`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Http2Closes([u64; 9]);

impl Http2Closes {
    pub fn count(&mut self, how: Http2Close) {
        self.0[how as usize] += 1;
    }
}

/// One worker's streams reset by Strait, by the RST_STREAM's code, indexed like
/// [`ResetCode::ALL`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Http2Resets([u64; 5]);

impl Http2Resets {
    pub fn add(&mut self, code: ResetCode, n: u64) {
        self.0[code as usize] += n;
    }
}

/// Renders both families, summed over the workers.
pub fn render(out: &mut String, workers: &[(Http2Closes, Http2Resets)]) {
    render_closes(out, &workers.iter().map(|w| w.0).collect::<Vec<_>>());
    let name = "strait_http2_streams_reset_total";
    let _ = writeln!(
        out,
        "# HELP {name} HTTP/2 streams Strait reset, by error code.\n# TYPE {name} counter"
    );
    for code in ResetCode::ALL {
        let sum: u64 = workers.iter().map(|w| w.1 .0[code as usize]).sum();
        let _ = writeln!(out, "{name}{{code=\"{}\"}} {sum}", code.as_str());
    }
}

fn render_closes(out: &mut String, workers: &[Http2Closes]) {
    let name = "strait_http2_connections_closed_total";
    let _ = writeln!(
        out,
        "# HELP {name} HTTP/2 client connections closed, by how they ended.\n# TYPE {name} counter"
    );
    for how in Http2Close::ALL {
        let sum: u64 = workers.iter().map(|w| w.0[how as usize]).sum();
        let _ = writeln!(out, "{name}{{reason=\"{}\"}} {sum}", how.as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_is_summed_over_workers() {
        let mut a = Http2Closes::default();
        a.count(Http2Close::RapidReset);
        a.count(Http2Close::Idle);
        let mut b = Http2Closes::default();
        b.count(Http2Close::RapidReset);
        let mut out = String::new();
        render_closes(&mut out, &[a, b]);
        let count = |reason: &str| {
            out.lines()
                .find(|l| l.contains(&format!("\"{reason}\"")))
                .and_then(|l| l.rsplit(' ').next())
                .map(str::to_owned)
        };
        assert_eq!(count("rapid_reset").as_deref(), Some("2"));
        assert_eq!(count("idle").as_deref(), Some("1"));
        assert_eq!(count("client").as_deref(), Some("0"));
        assert_eq!(out.lines().filter(|l| !l.starts_with('#')).count(), 9);
    }
}
