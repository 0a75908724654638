//! Distributed tracing: W3C Trace Context propagation and one OpenTelemetry SERVER span per
//! sampled request, exported as OTLP/HTTP JSON.
//!
//! Where it sits in the request path: right after the head is parsed the worker calls
//! [`WorkerTracer::start`] with the client's `traceparent` (if any) and gets the
//! [`SpanContext`] of this request; the forwarder sends it to the upstream as the line
//! [`traceparent_line`] renders (our span becomes the upstream's parent); once the response is
//! written, [`WorkerTracer::finish`] turns the [`RequestRecord`] into a span and hands it to
//! the exporter thread ([`TraceExporter`]) through a bounded queue.
//!
//! Invariants:
//! - Nothing here blocks a worker or takes a lock: the queue is `try_send`, and a full queue
//!   drops the span and counts it.
//! - The unsampled path allocates nothing: `start` only draws random ids, and `finish`
//!   returns before building anything.
//! - Span ids and trace ids we make are never all-zero (W3C §3.2.2.3, §3.2.2.4).
//! - A span carries copies of the few strings it needs (one allocation), never `Bytes`
//!   slices of the client's read buffer, so a queued span does not pin that buffer.

mod exporter;
mod otlp;

pub use exporter::TraceExporter;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::RequestRecord;
use crate::http1::headers::trim_ows;
use crate::http1::Version;
use crate::observe::config::TracingConfig;

/// The trace identity of one request: ours (`span_id`) and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// The client's span, when it sent a valid `traceparent`.
    pub parent_span_id: Option<[u8; 8]>,
    pub sampled: bool,
}

/// Length of a version-00 `traceparent` value: `00-` + 32 + `-` + 16 + `-` + 2.
pub const TRACEPARENT_LEN: usize = 55;

/// Parses a `traceparent` header value (W3C Trace Context level 1, §3.2).
///
/// Returns the trace id, the caller's span id (our parent) and the sampled flag, or `None`
/// when the value must be ignored (a new trace starts then):
/// - `version` is two lower-case hex digits and not `ff` (§3.2.2.1);
/// - version `00` is exactly 55 characters; a higher version is at least 55, and anything
///   past the flags must start with `-` (§3.2.4, "Versioning of traceparent");
/// - `trace-id` (32) and `parent-id` (16) are lower-case hex and not all zeros;
/// - `trace-flags` is two lower-case hex digits; only the sampled bit (`01`) is read.
///
/// Surrounding spaces and tabs (HTTP optional whitespace) are ignored.
pub fn parse_traceparent(value: &[u8]) -> Option<([u8; 16], [u8; 8], bool)> {
    let value = trim_ows(value);
    if value.len() < TRACEPARENT_LEN {
        return None;
    }
    let version = hex_byte(value[0], value[1])?;
    if version == 0xff || value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
        return None;
    }
    if version == 0 {
        if value.len() != TRACEPARENT_LEN {
            return None;
        }
    } else if value.len() > TRACEPARENT_LEN && value[TRACEPARENT_LEN] != b'-' {
        return None;
    }
    let mut trace_id = [0u8; 16];
    decode_hex(&value[3..35], &mut trace_id)?;
    let mut parent = [0u8; 8];
    decode_hex(&value[36..52], &mut parent)?;
    let flags = hex_byte(value[53], value[54])?;
    if trace_id == [0; 16] || parent == [0; 8] {
        return None;
    }
    Some((trace_id, parent, flags & 0x01 != 0))
}

/// One lower-case hex digit (`HEXDIGLC`); upper case is invalid in `traceparent`.
fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn hex_byte(hi: u8, lo: u8) -> Option<u8> {
    Some(hex_digit(hi)? << 4 | hex_digit(lo)?)
}

fn decode_hex(hex: &[u8], out: &mut [u8]) -> Option<()> {
    debug_assert_eq!(hex.len(), out.len() * 2);
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = hex_byte(pair[0], pair[1])?;
    }
    Some(())
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Writes `bytes` as lower-case hex into `out` (twice as long).
pub(crate) fn encode_hex(bytes: &[u8], out: &mut [u8]) {
    debug_assert_eq!(out.len(), bytes.len() * 2);
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 0x0f)];
    }
}

const TRACEPARENT_NAME: &[u8] = b"traceparent: ";
/// A rendered `traceparent` line: name, value and CRLF.
pub const TRACEPARENT_LINE_LEN: usize = TRACEPARENT_NAME.len() + TRACEPARENT_LEN + 2;

/// Renders `traceparent: 00-<trace>-<span>-<flags>\r\n` for the upstream request: our span
/// is the upstream's parent. It replaces the client's own (see [`is_traceparent`]).
pub fn traceparent_line(ctx: &SpanContext) -> [u8; TRACEPARENT_LINE_LEN] {
    const NAME: &[u8] = TRACEPARENT_NAME;
    let mut line = [0u8; TRACEPARENT_LINE_LEN];
    let (name, rest) = line.split_at_mut(NAME.len());
    name.copy_from_slice(NAME);
    rest[..3].copy_from_slice(b"00-");
    encode_hex(&ctx.trace_id, &mut rest[3..35]);
    rest[35] = b'-';
    encode_hex(&ctx.span_id, &mut rest[36..52]);
    rest[52] = b'-';
    rest[53..55].copy_from_slice(if ctx.sampled { b"01" } else { b"00" });
    rest[55..57].copy_from_slice(b"\r\n");
    line
}

/// The header [`traceparent_line`] replaces on the upstream request.
pub fn is_traceparent(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"traceparent")
}

/// wyrand (Wang Yi's PRNG): fast, 64-bit state, good enough statistics for ids and
/// sampling. Not cryptographic: trace ids are not secrets.
#[derive(Debug, Clone)]
pub(crate) struct WyRand(u64);

impl WyRand {
    #[cfg(test)]
    pub(crate) fn new(seed: u64) -> Self {
        WyRand(seed)
    }

    /// A seed that differs per thread and per process start.
    pub(crate) fn from_entropy() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let local = 0u8;
        let mut seed = nanos
            ^ u64::from(std::process::id()).rotate_left(32)
            ^ (&local as *const u8 as u64)
            ^ NEXT
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        // splitmix64 finaliser, so that close seeds give unrelated streams.
        seed = (seed ^ (seed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        seed = (seed ^ (seed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        WyRand(seed ^ (seed >> 31))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.0) * u128::from(self.0 ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    pub(crate) fn span_id(&mut self) -> [u8; 8] {
        loop {
            let id = self.next_u64();
            if id != 0 {
                return id.to_be_bytes();
            }
        }
    }

    pub(crate) fn trace_id(&mut self) -> [u8; 16] {
        loop {
            let id = (u128::from(self.next_u64()) << 64) | u128::from(self.next_u64());
            if id != 0 {
                return id.to_be_bytes();
            }
        }
    }

    /// True with probability `ratio`: never at 0.0, always at 1.0.
    pub(crate) fn sample(&mut self, ratio: f64) -> bool {
        ratio >= 1.0 || (ratio > 0.0 && self.next_f64() < ratio)
    }
}

/// The text fields of a span, in the order they are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub(crate) enum Field {
    Method,
    Path,
    Query,
    Host,
    ClientAddress,
    UserAgent,
    Route,
    Upstream,
    Endpoint,
    /// The name the client asked for in its TLS handshake (SNI).
    TlsServerName,
}

pub(crate) const FIELD_COUNT: usize = 10;

/// The TLS session a span's request came over (its SNI name is [`Field::TlsServerName`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SpanTls {
    /// `1.2`, `1.3`: OpenTelemetry's `tls.protocol.version` is the number alone.
    pub(crate) version: &'static str,
    /// The IANA name of the cipher suite.
    pub(crate) cipher: &'static str,
    pub(crate) resumed: bool,
}

/// One finished, sampled request as the exporter encodes it: ids, times, status, and the
/// text fields copied into one buffer.
#[derive(Debug, Clone)]
pub(crate) struct SpanData {
    pub(crate) ctx: SpanContext,
    pub(crate) start_unix_nanos: u64,
    pub(crate) end_unix_nanos: u64,
    pub(crate) status: u16,
    pub(crate) version: Version,
    /// `None` over plain TCP.
    pub(crate) tls: Option<SpanTls>,
    text: Vec<u8>,
    /// `(start, end)` in `text` per [`Field`]; `None` when absent.
    fields: [Option<(u32, u32)>; FIELD_COUNT],
}

impl SpanData {
    pub(crate) fn new(ctx: SpanContext, start_unix_nanos: u64, end_unix_nanos: u64) -> Self {
        SpanData {
            ctx,
            start_unix_nanos,
            end_unix_nanos,
            status: 0,
            version: Version::Http11,
            tls: None,
            text: Vec::new(),
            fields: [None; FIELD_COUNT],
        }
    }

    pub(crate) fn set(&mut self, field: Field, value: &[u8]) {
        let start = self.text.len();
        self.text.extend_from_slice(value);
        self.fields[field as usize] = Some((start as u32, self.text.len() as u32));
    }

    fn set_addr(&mut self, field: Field, addr: SocketAddr) {
        use std::io::Write;
        let start = self.text.len();
        // Writing into a Vec cannot fail.
        let _ = write!(self.text, "{addr}");
        self.fields[field as usize] = Some((start as u32, self.text.len() as u32));
    }

    pub(crate) fn get(&self, field: Field) -> Option<&[u8]> {
        let (start, end) = self.fields[field as usize]?;
        self.text.get(start as usize..end as usize)
    }

    /// Copies what a span needs out of `rec`.
    fn from_record(
        ctx: SpanContext,
        route_pattern: &str,
        upstream: &str,
        rec: &RequestRecord,
        now: Instant,
    ) -> Self {
        let start = unix_nanos(rec.started_wall);
        let elapsed = now.saturating_duration_since(rec.started).as_nanos();
        let end = start.saturating_add(u64::try_from(elapsed).unwrap_or(u64::MAX));
        let mut span = SpanData::new(ctx, start, end);
        span.status = rec.status;
        span.version = rec.version;
        let text_len = rec.method.len()
            + rec.target.len()
            + rec.host.as_ref().map_or(0, |h| h.len())
            + rec.client_ip.len()
            + rec.user_agent.as_ref().map_or(0, |u| u.len())
            + route_pattern.len()
            + upstream.len()
            + rec
                .tls
                .as_ref()
                .and_then(|t| t.sni.as_ref())
                .map_or(0, |n| n.len())
            + 48;
        span.text.reserve_exact(text_len);
        span.set(Field::Method, &rec.method);
        let (path, query) = split_target(&rec.target);
        span.set(Field::Path, path);
        if let Some(query) = query {
            span.set(Field::Query, query);
        }
        if let Some(host) = rec.host.as_deref() {
            span.set(Field::Host, host_without_port(host));
        }
        if !rec.client_ip.is_empty() {
            span.set(Field::ClientAddress, &rec.client_ip);
        }
        if let Some(agent) = rec.user_agent.as_deref() {
            span.set(Field::UserAgent, agent);
        }
        if !route_pattern.is_empty() {
            span.set(Field::Route, route_pattern.as_bytes());
        }
        if !upstream.is_empty() {
            span.set(Field::Upstream, upstream.as_bytes());
        }
        if let Some(endpoint) = rec.endpoint {
            span.set_addr(Field::Endpoint, endpoint);
        }
        if let Some(tls) = rec.tls.as_deref() {
            span.tls = Some(SpanTls {
                version: tls.version.strip_prefix("TLSv").unwrap_or(tls.version),
                cipher: tls.cipher,
                resumed: tls.resumed,
            });
            if let Some(name) = tls.sni.as_deref() {
                span.set(Field::TlsServerName, name.as_bytes());
            }
        }
        span
    }
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Splits a request target into path and query (without the `?`). An absolute-form target
/// (`http://host/p?q`, RFC 9112 §3.2.2) gives its path; `*` stays `*`.
pub(crate) fn split_target(target: &[u8]) -> (&[u8], Option<&[u8]>) {
    let mut rest = target;
    if !rest.starts_with(b"/") && rest != b"*" {
        if let Some(scheme_end) = memchr::memmem::find(rest, b"://") {
            let after = &rest[scheme_end + 3..];
            rest = match memchr::memchr2(b'/', b'?', after) {
                Some(i) => &after[i..],
                None => b"/",
            };
        }
    }
    match memchr::memchr(b'?', rest) {
        Some(i) => {
            let path = &rest[..i];
            (
                if path.is_empty() { b"/" } else { path },
                Some(&rest[i + 1..]),
            )
        }
        None => (rest, None),
    }
}

/// `server.address` is the host without its port (and an IPv6 literal without brackets).
pub(crate) fn host_without_port(host: &[u8]) -> &[u8] {
    if let Some(rest) = host.strip_prefix(b"[") {
        return match memchr::memchr(b']', rest) {
            Some(i) => &rest[..i],
            None => host,
        };
    }
    match memchr::memrchr(b':', host) {
        Some(i) if host[i + 1..].iter().all(u8::is_ascii_digit) => &host[..i],
        _ => host,
    }
}

/// A counter padded to its own cache line, so that workers counting drops do not contend.
#[derive(Debug, Default)]
#[repr(align(64))]
pub(crate) struct PaddedCounter(pub(crate) AtomicU64);

/// Per worker: id generation, sampling, and the sending end of the span queue. Lives in the
/// worker's own state; it is `Send`, so it can be made on the main thread
/// ([`TraceExporter::worker`]) and moved into the worker.
pub struct WorkerTracer {
    rng: WyRand,
    queue: crossbeam_channel::Sender<SpanData>,
    /// Spans this worker dropped because the queue was full.
    dropped: Arc<PaddedCounter>,
}

impl WorkerTracer {
    pub(crate) fn new(
        queue: crossbeam_channel::Sender<SpanData>,
        dropped: Arc<PaddedCounter>,
    ) -> Self {
        WorkerTracer {
            rng: WyRand::from_entropy(),
            queue,
            dropped,
        }
    }

    /// Starts this request's span: a valid incoming `traceparent` gives the trace id, the
    /// parent span and the sampling decision; otherwise a new trace starts, sampled with
    /// probability `config.sample_ratio`. Returns the context to propagate upstream.
    pub fn start(&mut self, config: &TracingConfig, traceparent: Option<&[u8]>) -> SpanContext {
        let span_id = self.rng.span_id();
        match traceparent.and_then(parse_traceparent) {
            Some((trace_id, parent, sampled)) => SpanContext {
                trace_id,
                span_id,
                parent_span_id: Some(parent),
                sampled,
            },
            None => SpanContext {
                trace_id: self.rng.trace_id(),
                span_id,
                parent_span_id: None,
                sampled: self.rng.sample(config.sample_ratio),
            },
        }
    }

    /// Ends the span of `rec` (its `trace` context): when sampled, copies what the span needs
    /// and queues it for export. A full queue drops the span and counts it; nothing blocks.
    pub fn finish(
        &mut self,
        _config: &TracingConfig,
        route_pattern: &str,
        upstream: &str,
        rec: &RequestRecord,
    ) {
        let Some(ctx) = rec.trace else { return };
        if !ctx.sampled {
            return;
        }
        let span = SpanData::from_record(ctx, route_pattern, upstream, rec, Instant::now());
        if self.queue.try_send(span).is_err() {
            // Full, or the exporter is gone (shutting down): either way the span is lost.
            self.dropped.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::collections::HashSet;
    use std::time::Duration;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const SPAN: &str = "00f067aa0ba902b7";

    fn hex16(s: &str) -> [u8; 16] {
        let mut out = [0; 16];
        decode_hex(s.as_bytes(), &mut out).unwrap();
        out
    }

    fn hex8(s: &str) -> [u8; 8] {
        let mut out = [0; 8];
        decode_hex(s.as_bytes(), &mut out).unwrap();
        out
    }

    #[test]
    fn parse_traceparent_table() {
        // (value, expected (sampled) or None for "ignore")
        let valid_sampled = format!("00-{TRACE}-{SPAN}-01");
        let cases: Vec<(String, Option<bool>)> = vec![
            (valid_sampled.clone(), Some(true)),
            (format!("00-{TRACE}-{SPAN}-00"), Some(false)),
            // Other flag bits are ignored; only bit 0 means sampled.
            (format!("00-{TRACE}-{SPAN}-09"), Some(true)),
            (format!("00-{TRACE}-{SPAN}-fe"), Some(false)),
            // Optional whitespace around the value.
            (format!(" \t00-{TRACE}-{SPAN}-01 "), Some(true)),
            // Version ff is forbidden.
            (format!("ff-{TRACE}-{SPAN}-01"), None),
            // Future versions: parsed by the version-00 layout; more fields after a dash.
            (format!("01-{TRACE}-{SPAN}-01"), Some(true)),
            (
                format!("cc-{TRACE}-{SPAN}-01-what-the-future-will-be"),
                Some(true),
            ),
            (format!("cc-{TRACE}-{SPAN}-01what"), None),
            // Version 00 must be exactly 55 characters.
            (format!("00-{TRACE}-{SPAN}-01-extra"), None),
            (format!("00-{TRACE}-{SPAN}-01x"), None),
            // All-zero ids.
            (format!("00-{}-{SPAN}-01", "0".repeat(32)), None),
            (format!("00-{TRACE}-{}-01", "0".repeat(16)), None),
            // Upper case anywhere.
            (format!("00-{}-{SPAN}-01", TRACE.to_uppercase()), None),
            (format!("00-{TRACE}-{}-01", "00F067AA0BA902B7"), None),
            (format!("0A-{TRACE}-{SPAN}-01"), None),
            (format!("00-{TRACE}-{SPAN}-0A"), None),
            // Wrong lengths of the parts.
            (format!("00-{}-{SPAN}-01", &TRACE[1..]), None),
            (format!("00-{TRACE}0-{SPAN}-01"), None),
            (format!("00-{TRACE}-{}-01", &SPAN[1..]), None),
            (format!("00-{TRACE}-{SPAN}0-01"), None),
            (format!("00-{TRACE}-{SPAN}-1"), None),
            (format!("0-{TRACE}-{SPAN}-01"), None),
            (format!("000-{TRACE}-{SPAN}-01"), None),
            // Wrong separators, non-hex.
            (format!("00_{TRACE}-{SPAN}-01"), None),
            (format!("00-{TRACE}_{SPAN}-01"), None),
            (format!("00-{TRACE}-{SPAN}_01"), None),
            (format!("00-{}g-{SPAN}-01", &TRACE[..31]), None),
            (format!("00-{TRACE}-{SPAN}-0g"), None),
            ("".to_string(), None),
            ("00".to_string(), None),
            ("garbage".to_string(), None),
        ];
        for (value, expected) in cases {
            let parsed = parse_traceparent(value.as_bytes());
            assert_eq!(parsed.map(|p| p.2), expected, "{value:?}");
            if let Some((trace, span, _)) = parsed {
                assert_eq!(trace, hex16(TRACE), "{value:?}");
                assert_eq!(span, hex8(SPAN), "{value:?}");
            }
        }
    }

    #[test]
    fn traceparent_line_round_trips() {
        let ctx = SpanContext {
            trace_id: hex16(TRACE),
            span_id: hex8(SPAN),
            parent_span_id: None,
            sampled: true,
        };
        let out = traceparent_line(&ctx);
        assert_eq!(
            &out[..],
            format!("traceparent: 00-{TRACE}-{SPAN}-01\r\n").as_bytes()
        );
        let value = &out[b"traceparent: ".len()..out.len() - 2];
        assert_eq!(
            parse_traceparent(value),
            Some((ctx.trace_id, ctx.span_id, true))
        );

        let out = traceparent_line(&SpanContext {
            sampled: false,
            ..ctx
        });
        assert!(out.ends_with(b"-00\r\n"));
        assert!(is_traceparent(b"TraceParent") && !is_traceparent(b"tracestate"));
    }

    fn config(sample_ratio: f64) -> TracingConfig {
        TracingConfig {
            otlp_endpoint: "http://127.0.0.1:1/v1/traces".into(),
            sample_ratio,
            service_name: "strait".into(),
            queue_size: 16,
            batch_size: 4,
            flush_interval: Duration::from_millis(100),
        }
    }

    fn tracer() -> (WorkerTracer, crossbeam_channel::Receiver<SpanData>) {
        let (tx, rx) = crossbeam_channel::bounded(16);
        (WorkerTracer::new(tx, Arc::default()), rx)
    }

    #[test]
    fn ids_are_non_zero_and_unique() {
        let mut rng = WyRand::from_entropy();
        let mut spans = HashSet::new();
        let mut traces = HashSet::new();
        for _ in 0..100_000 {
            let span = rng.span_id();
            let trace = rng.trace_id();
            assert_ne!(span, [0; 8]);
            assert_ne!(trace, [0; 16]);
            assert!(spans.insert(span));
            assert!(traces.insert(trace));
        }
        // Two threads' generators differ.
        let a = WyRand::from_entropy().next_u64();
        let b = std::thread::spawn(|| WyRand::from_entropy().next_u64())
            .join()
            .unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn sampling_follows_the_ratio() {
        let mut rng = WyRand::new(42);
        assert!((0..10_000).all(|_| !rng.sample(0.0)));
        assert!((0..10_000).all(|_| rng.sample(1.0)));
        let hits = (0..100_000).filter(|_| rng.sample(0.5)).count();
        assert!((48_000..52_000).contains(&hits), "{hits}");
        let hits = (0..100_000).filter(|_| rng.sample(0.01)).count();
        assert!((700..1_300).contains(&hits), "{hits}");
    }

    #[test]
    fn start_continues_a_valid_parent_and_starts_new_traces_otherwise() {
        let (mut tracer, _rx) = tracer();
        let incoming = format!("00-{TRACE}-{SPAN}-01");
        let ctx = tracer.start(&config(0.0), Some(incoming.as_bytes()));
        assert_eq!(ctx.trace_id, hex16(TRACE));
        assert_eq!(ctx.parent_span_id, Some(hex8(SPAN)));
        assert_ne!(ctx.span_id, hex8(SPAN));
        assert!(
            ctx.sampled,
            "a sampled parent is followed whatever the ratio"
        );

        let unsampled = format!("00-{TRACE}-{SPAN}-00");
        let ctx = tracer.start(&config(1.0), Some(unsampled.as_bytes()));
        assert!(
            !ctx.sampled,
            "an unsampled parent is followed whatever the ratio"
        );
        assert_eq!(ctx.trace_id, hex16(TRACE));

        let invalid = format!("00-{}-{SPAN}-01", TRACE.to_uppercase());
        let ctx = tracer.start(&config(1.0), Some(invalid.as_bytes()));
        assert_ne!(ctx.trace_id, hex16(TRACE));
        assert_eq!(ctx.parent_span_id, None);
        assert!(ctx.sampled);

        let ctx = tracer.start(&config(0.0), None);
        assert_eq!(ctx.parent_span_id, None);
        assert!(!ctx.sampled);
    }

    /// A proxied `GET /users/42?full=1` that started 5 ms ago.
    pub(crate) fn record(ctx: Option<SpanContext>) -> RequestRecord {
        let mut rec = RequestRecord::new(
            Bytes::from_static(b"10.0.0.7"),
            Instant::now() - Duration::from_millis(5),
        );
        rec.started_wall = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        rec.method = Bytes::from_static(b"GET");
        rec.target = Bytes::from_static(b"/users/42?full=1");
        rec.host = Some(Bytes::from_static(b"api.example.com:8080"));
        rec.user_agent = Some(Bytes::from_static(b"curl/8.0"));
        rec.version = Version::Http11;
        rec.route = Some(0);
        rec.upstream = Some(0);
        rec.endpoint = Some("10.1.2.3:9000".parse().unwrap());
        rec.status = 200;
        rec.trace = ctx;
        rec
    }

    #[test]
    fn finish_queues_sampled_spans_only() {
        let (mut tracer, rx) = tracer();
        let cfg = config(1.0);
        let ctx = tracer.start(&cfg, None);
        tracer.finish(&cfg, "/users/{id}", "app", &record(Some(ctx)));
        let span = rx.try_recv().expect("a sampled span is queued");
        assert_eq!(span.ctx, ctx);
        assert_eq!(span.get(Field::Method), Some(&b"GET"[..]));
        assert_eq!(span.get(Field::Path), Some(&b"/users/42"[..]));
        assert_eq!(span.get(Field::Query), Some(&b"full=1"[..]));
        assert_eq!(span.get(Field::Host), Some(&b"api.example.com"[..]));
        assert_eq!(span.get(Field::Route), Some(&b"/users/{id}"[..]));
        assert_eq!(span.get(Field::Upstream), Some(&b"app"[..]));
        assert_eq!(span.get(Field::Endpoint), Some(&b"10.1.2.3:9000"[..]));
        assert_eq!(span.start_unix_nanos, 1_700_000_000_000_000_000);
        assert!(span.end_unix_nanos >= span.start_unix_nanos + 5_000_000);

        let unsampled = SpanContext {
            sampled: false,
            ..ctx
        };
        tracer.finish(&cfg, "/", "app", &record(Some(unsampled)));
        tracer.finish(&cfg, "/", "app", &record(None));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn full_queue_drops_and_counts() {
        let (tx, _rx) = crossbeam_channel::bounded(2);
        let dropped = Arc::new(PaddedCounter::default());
        let mut tracer = WorkerTracer::new(tx, dropped.clone());
        let cfg = config(1.0);
        for _ in 0..10 {
            let ctx = tracer.start(&cfg, None);
            tracer.finish(&cfg, "/", "app", &record(Some(ctx)));
        }
        assert_eq!(dropped.0.load(Ordering::Relaxed), 8);
    }

    #[test]
    fn targets_and_hosts() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("/a/b", "/a/b", None),
            ("/a?b=c", "/a", Some("b=c")),
            ("/?", "/", Some("")),
            ("?x", "/", Some("x")),
            ("*", "*", None),
            ("http://h:80/p?q", "/p", Some("q")),
            ("http://h", "/", None),
            ("http://h?q", "/", Some("q")),
        ];
        for (target, path, query) in cases {
            let (p, q) = split_target(target.as_bytes());
            assert_eq!(p, path.as_bytes(), "{target}");
            assert_eq!(q, query.map(str::as_bytes), "{target}");
        }
        for (host, want) in [
            ("example.com", "example.com"),
            ("example.com:8080", "example.com"),
            ("[::1]:8080", "::1"),
            ("[::1]", "::1"),
            ("10.0.0.1:1", "10.0.0.1"),
        ] {
            assert_eq!(host_without_port(host.as_bytes()), want.as_bytes());
        }
    }
}
