//! The access log: one line per request, written by one thread that owns the destination.
//!
//! Where it sits: at the end of every request, the worker hands its [`RequestRecord`] to
//! its [`WorkerLog`], which formats the line (JSON or nginx "combined") into a per-worker
//! buffer. Full buffers (256 KiB) and, on the worker's periodic tick, partly filled ones
//! whose first line is 250 ms old are sent as one batch over a bounded channel to the
//! writer thread, which does the only disk I/O. Large, infrequent batches keep the
//! writer's wake-ups and write calls few: it shares the workers' cores.
//!
//! Invariants:
//! - A worker never blocks on the log: formatting is in memory, and a batch that does not
//!   fit in the channel (the writer fell behind) is dropped and counted
//!   ([`AccessLog::dropped`]), never waited for.
//! - No lock on the request path: each worker owns its buffer and sampling RNG; the
//!   channel is crossbeam's lock-free array queue.
//! - Every line is whole: batches hold only complete lines, and each batch is written
//!   with one `write_all` to a file opened in append mode.
//! - `reopen` (SIGUSR1, after logrotate renamed the file) takes effect before the next
//!   batch is written.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use super::config::{AccessLogConfig, AccessLogFormat, LogDestination};
use super::trace::WyRand;
use super::{Outcome, RequestRecord};
use crate::http1::Version;

/// A worker's buffer is sent once it holds this many bytes.
pub const BATCH_BYTES: usize = 256 * 1024;
/// A partly filled buffer is sent on the tick once its first line is this old: the
/// longest a line waits in a worker.
pub const FLUSH_AGE: Duration = Duration::from_millis(250);
/// Batches waiting for the writer; past it, batches are dropped. Worst case memory is
/// this many full batches (64 MiB), reached only while the destination stalls.
pub const QUEUE_BATCHES: usize = 256;
/// Emptied batch buffers kept for reuse, so that a worker does not allocate 256 KiB per
/// batch.
const SPARE_BUFFERS: usize = 16;
/// Buffers grown past this (by a burst of very long lines) are not reused.
const MAX_REUSED_CAPACITY: usize = 2 * BATCH_BYTES;

/// State shared between the handles and the writer thread.
#[derive(Debug, Default)]
struct Shared {
    reopen: AtomicBool,
    dropped: AtomicU64,
}

/// The logger: one thread that owns the destination and writes batches it receives.
pub struct AccessLog {
    tx: Sender<Vec<u8>>,
    spare: Receiver<Vec<u8>>,
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
}

impl AccessLog {
    /// Starts the writer thread for `destination` (a file is opened in append mode and
    /// created if missing; its directory must exist).
    pub fn start(destination: &LogDestination) -> std::io::Result<AccessLog> {
        let sink = Sink::open(destination)?;
        let (tx, rx) = crossbeam_channel::bounded(QUEUE_BATCHES);
        let (spare_tx, spare) = crossbeam_channel::bounded(SPARE_BUFFERS);
        let shared = Arc::new(Shared::default());
        let writer_shared = shared.clone();
        let writer = std::thread::Builder::new()
            .name("strait-access-log".into())
            .spawn(move || write_batches(sink, rx, spare_tx, &writer_shared))?;
        Ok(AccessLog {
            tx,
            spare,
            shared,
            writer: Some(writer),
        })
    }

    /// A per-worker handle (Send; moved into the worker thread).
    pub fn worker(&self) -> WorkerLog {
        WorkerLog {
            tx: self.tx.clone(),
            spare: self.spare.clone(),
            shared: self.shared.clone(),
            buf: Vec::with_capacity(BATCH_BYTES + BATCH_BYTES / 4),
            lines: 0,
            oldest: None,
            rng: WyRand::from_entropy(),
            json_time: SecondText::default(),
            combined_time: SecondText::default(),
        }
    }

    /// Reopens a file destination before the next write (SIGUSR1, for logrotate). A no-op
    /// for stdout and stderr.
    pub fn reopen(&self) {
        self.shared.reopen.store(true, Ordering::Release);
    }

    /// Lines dropped because the writer fell behind (bounded channel full) or had stopped.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Stops the writer once it has written every batch sent so far, and waits for it.
    /// Call it after the workers have stopped: the writer also waits for every
    /// [`WorkerLog`] to be dropped (each flushes on drop).
    pub fn shutdown(mut self) {
        let writer = self.writer.take();
        drop(self);
        if let Some(writer) = writer {
            let _ = writer.join();
        }
    }
}

/// Names the record's indices refer to, looked up by the caller in its snapshot. Logged
/// only when the record has the matching index (`route`, `upstream`), else `null`/`-`.
pub struct LineNames<'a> {
    pub route: &'a str,
    pub upstream: &'a str,
}

/// One worker's side of the log: its line buffer and sampling RNG.
pub struct WorkerLog {
    tx: Sender<Vec<u8>>,
    spare: Receiver<Vec<u8>>,
    shared: Arc<Shared>,
    buf: Vec<u8>,
    /// Lines in `buf`, to count them if the batch is dropped.
    lines: u64,
    /// When the first line of `buf` was written.
    oldest: Option<Instant>,
    rng: WyRand,
    /// The current second as each format writes it.
    json_time: SecondText,
    combined_time: SecondText,
}

impl WorkerLog {
    /// Formats one line into the worker's buffer if sampled; sends the buffer to the
    /// writer when it passes 64 KiB. Never blocks: when the channel is full, the batch is
    /// dropped and counted. `now` is the request's end (its duration is `now -
    /// rec.started`).
    pub fn log(
        &mut self,
        config: &AccessLogConfig,
        names: &LineNames<'_>,
        rec: &RequestRecord,
        now: Instant,
    ) {
        if !self.rng.sample(config.sample) {
            return;
        }
        let total = now.saturating_duration_since(rec.started);
        match config.format {
            AccessLogFormat::Json => {
                write_json(&mut self.buf, &mut self.json_time, names, rec, total)
            }
            AccessLogFormat::Combined => {
                write_combined(&mut self.buf, &mut self.combined_time, rec, total)
            }
        }
        self.lines += 1;
        self.oldest.get_or_insert(now);
        if self.buf.len() >= BATCH_BYTES {
            self.flush();
        }
    }

    /// Sends the buffer when its first line is [`FLUSH_AGE`] old (called from the
    /// worker's periodic tick, ~every 20 ms).
    pub fn tick(&mut self, now: Instant) {
        if self
            .oldest
            .is_some_and(|oldest| now.saturating_duration_since(oldest) >= FLUSH_AGE)
        {
            self.flush();
        }
    }

    /// Sends whatever is buffered (when full, at drain, and on drop).
    pub fn flush(&mut self) {
        self.oldest = None;
        if self.buf.is_empty() {
            return;
        }
        let next = match self.spare.try_recv() {
            Ok(spare) => spare,
            Err(_) => Vec::with_capacity(BATCH_BYTES + BATCH_BYTES / 4),
        };
        let batch = std::mem::replace(&mut self.buf, next);
        let lines = std::mem::take(&mut self.lines);
        match self.tx.try_send(batch) {
            Ok(()) => {}
            Err(TrySendError::Full(mut batch) | TrySendError::Disconnected(mut batch)) => {
                self.shared.dropped.fetch_add(lines, Ordering::Relaxed);
                // Keep the larger buffer: no allocation next time.
                batch.clear();
                if batch.capacity() > self.buf.capacity() {
                    self.buf = batch;
                }
            }
        }
    }
}

impl Drop for WorkerLog {
    fn drop(&mut self) {
        self.flush();
    }
}

// ---- the writer thread ----

enum Sink {
    Stdout,
    Stderr,
    File { path: PathBuf, file: File },
}

impl Sink {
    fn open(destination: &LogDestination) -> std::io::Result<Sink> {
        Ok(match destination {
            LogDestination::Stdout => Sink::Stdout,
            LogDestination::Stderr => Sink::Stderr,
            LogDestination::File(path) => Sink::File {
                file: open_append(path)?,
                path: path.clone(),
            },
        })
    }

    fn write(&mut self, batch: &[u8]) -> std::io::Result<()> {
        // The std handles are locked per batch, not for the thread's life: other threads
        // (the tracing subscriber) write to them too.
        match self {
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(batch)?;
                out.flush()
            }
            Sink::Stderr => {
                let mut out = std::io::stderr().lock();
                out.write_all(batch)?;
                out.flush()
            }
            Sink::File { file, .. } => {
                file.write_all(batch)?;
                file.flush()
            }
        }
    }

    fn reopen(&mut self) {
        if let Sink::File { path, file } = self {
            match open_append(path) {
                Ok(new) => *file = new,
                // Keep writing to the old file rather than losing lines.
                Err(e) => tracing::warn!(path = %path.display(), error = %e,
                    "cannot reopen access log; still writing to the old file"),
            }
        }
    }
}

fn open_append(path: &std::path::Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn write_batches(mut sink: Sink, rx: Receiver<Vec<u8>>, spare: Sender<Vec<u8>>, shared: &Shared) {
    let mut failing = false;
    // Ends when every sender (the AccessLog and each WorkerLog) is gone and the queue is
    // empty.
    for mut batch in rx {
        if shared.reopen.swap(false, Ordering::AcqRel) {
            sink.reopen();
        }
        match sink.write(&batch) {
            Ok(()) => failing = false,
            Err(e) => {
                shared
                    .dropped
                    .fetch_add(count_lines(&batch), Ordering::Relaxed);
                // Once per failure streak: a full disk must not flood the process log.
                if !failing {
                    tracing::warn!(error = %e, "access log write failed; dropping lines");
                }
                failing = true;
            }
        }
        if batch.capacity() <= MAX_REUSED_CAPACITY {
            batch.clear();
            let _ = spare.try_send(batch);
        }
    }
}

fn count_lines(batch: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', batch).count() as u64
}

// ---- line formats ----

/// One JSON object and a newline.
fn write_json(
    out: &mut Vec<u8>,
    time: &mut SecondText,
    names: &LineNames<'_>,
    rec: &RequestRecord,
    total: Duration,
) {
    out.extend_from_slice(b"{\"time\":\"");
    write_rfc3339(out, time, rec.started_wall);
    out.extend_from_slice(b"\",\"client\":");
    json_str(out, &rec.client_ip);
    out.extend_from_slice(b",\"method\":");
    json_str(out, &rec.method);
    out.extend_from_slice(b",\"path\":");
    json_str(out, &rec.target);
    out.extend_from_slice(b",\"protocol\":\"");
    out.extend_from_slice(protocol(rec.version));
    out.extend_from_slice(b"\",\"status\":");
    write_u64(out, u64::from(rec.status));
    out.extend_from_slice(b",\"bytes_in\":");
    write_u64(out, rec.bytes_in);
    out.extend_from_slice(b",\"bytes_out\":");
    write_u64(out, rec.bytes_out);
    out.extend_from_slice(b",\"duration_ms\":");
    write_millis(out, total);
    out.extend_from_slice(b",\"upstream_ms\":");
    match rec.upstream_time {
        Some(d) => write_millis(out, d),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"route\":");
    json_opt(out, rec.route.map(|_| names.route.as_bytes()));
    out.extend_from_slice(b",\"upstream\":");
    json_opt(out, rec.upstream.map(|_| names.upstream.as_bytes()));
    out.extend_from_slice(b",\"endpoint\":");
    match rec.endpoint {
        Some(addr) => {
            out.push(b'"');
            write_socket_addr(out, addr);
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"request_id\":");
    json_str(out, &rec.request_id);
    out.extend_from_slice(b",\"user_agent\":");
    json_opt(out, rec.user_agent.as_deref());
    out.extend_from_slice(b",\"referer\":");
    json_opt(out, rec.referer.as_deref());
    out.extend_from_slice(b",\"host\":");
    json_opt(out, rec.host.as_deref());
    out.extend_from_slice(b",\"outcome\":\"");
    out.extend_from_slice(outcome_name(rec.outcome).as_bytes());
    out.extend_from_slice(b"\",\"retries\":");
    write_u64(out, u64::from(rec.retries));
    out.extend_from_slice(b",\"cache\":");
    json_opt(out, rec.cache.as_ref().map(|(_, o)| o.as_str().as_bytes()));
    if !rec.aggregate.is_empty() {
        write_aggregate_parts(out, &rec.aggregate);
    }
    match &rec.tls {
        Some(tls) => {
            out.extend_from_slice(b",\"tls_version\":");
            json_str(out, tls.version.as_bytes());
            out.extend_from_slice(b",\"tls_cipher\":");
            json_str(out, tls.cipher.as_bytes());
            out.extend_from_slice(b",\"tls_sni\":");
            json_opt(out, tls.sni.as_deref().map(str::as_bytes));
            out.extend_from_slice(if tls.resumed {
                b",\"tls_resumed\":true}\n"
            } else {
                b",\"tls_resumed\":false}\n"
            });
        }
        None => out.extend_from_slice(
            b",\"tls_version\":null,\"tls_cipher\":null,\"tls_sni\":null,\"tls_resumed\":null}\n",
        ),
    }
}

/// nginx's "combined" line plus ` rt=<secs> urt=<secs|-> rid=<id>` and a newline. The
/// time is UTC (`+0000`), and the bytes field counts the whole response (head and body,
/// nginx's `$bytes_sent`), which is what the record holds.
fn write_combined(out: &mut Vec<u8>, time: &mut SecondText, rec: &RequestRecord, total: Duration) {
    nginx_escaped_or_dash(out, &rec.client_ip);
    out.extend_from_slice(b" - - [");
    time.write(out, rec.started_wall, write_clf_second);
    out.extend_from_slice(b"] \"");
    nginx_escaped(out, &rec.method);
    out.push(b' ');
    nginx_escaped(out, &rec.target);
    out.push(b' ');
    out.extend_from_slice(protocol(rec.version));
    out.extend_from_slice(b"\" ");
    write_u64(out, u64::from(rec.status));
    out.push(b' ');
    write_u64(out, rec.bytes_out);
    out.extend_from_slice(b" \"");
    nginx_escaped_or_dash(out, rec.referer.as_deref().unwrap_or_default());
    out.extend_from_slice(b"\" \"");
    nginx_escaped_or_dash(out, rec.user_agent.as_deref().unwrap_or_default());
    out.extend_from_slice(b"\" rt=");
    write_secs(out, total);
    out.extend_from_slice(b" urt=");
    match rec.upstream_time {
        Some(d) => write_secs(out, d),
        None => out.push(b'-'),
    }
    out.extend_from_slice(b" rid=");
    nginx_escaped_or_dash(out, &rec.request_id);
    out.push(b'\n');
}

fn protocol(version: Version) -> &'static [u8] {
    match version {
        Version::Http10 => b"HTTP/1.0",
        Version::Http11 => b"HTTP/1.1",
        Version::Http2 => b"HTTP/2.0",
    }
}

fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Answered => "answered",
        Outcome::UpstreamConnectError => "upstream_connect_error",
        Outcome::UpstreamTimeout => "upstream_timeout",
        Outcome::Aborted => "aborted",
    }
}

/// `addr` as `Display` renders it (ASCII, no quotes or backslashes); IPv4 without the
/// formatting machinery, since it is written for nearly every line.
fn write_socket_addr(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(v4) => {
            for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                write_u64(out, u64::from(octet));
            }
            out.push(b':');
            write_u64(out, u64::from(v4.port()));
        }
        SocketAddr::V6(_) => {
            let _ = write!(out, "{addr}");
        }
    }
}

/// `,"parts":[{"name":…,"status":…,"duration_ms":…,"result":…},…]`: an aggregation's calls.
fn write_aggregate_parts(out: &mut Vec<u8>, parts: &[super::AggregatePart]) {
    out.extend_from_slice(b",\"parts\":[");
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"name\":");
        json_str(out, part.name.as_bytes());
        out.extend_from_slice(b",\"status\":");
        write_u64(out, u64::from(part.status));
        out.extend_from_slice(b",\"duration_ms\":");
        write_millis(out, part.elapsed);
        out.extend_from_slice(b",\"result\":\"");
        out.extend_from_slice(part.result.as_bytes());
        out.extend_from_slice(b"\"}");
    }
    out.push(b']');
}

fn write_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// `n` in decimal, zero-padded to `width` digits.
fn write_padded(out: &mut Vec<u8>, n: u64, width: usize) {
    let mut buf = itoa::Buffer::new();
    let digits = buf.format(n).as_bytes();
    out.extend(std::iter::repeat_n(
        b'0',
        width.saturating_sub(digits.len()),
    ));
    out.extend_from_slice(digits);
}

/// Milliseconds with microsecond precision: `12.345`.
fn write_millis(out: &mut Vec<u8>, d: Duration) {
    let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    write_u64(out, micros / 1000);
    out.push(b'.');
    write_padded(out, micros % 1000, 3);
}

/// Seconds with millisecond precision, like nginx's `$request_time`: `0.012`.
fn write_secs(out: &mut Vec<u8>, d: Duration) {
    let millis = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    write_u64(out, millis / 1000);
    out.push(b'.');
    write_padded(out, millis % 1000, 3);
}

// ---- time ----

/// A UTC calendar time.
#[derive(Debug, PartialEq, Eq)]
struct Civil {
    year: u64,
    month: u64,
    day: u64,
    hour: u64,
    minute: u64,
    second: u64,
    millis: u64,
}

/// `t` in UTC; times before 1970 are clamped to the epoch.
fn civil(t: SystemTime) -> Civil {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    Civil {
        year,
        month,
        day,
        hour: rem / 3600,
        minute: rem % 3600 / 60,
        second: rem % 60,
        millis: u64::from(since.subsec_millis()),
    }
}

/// (year, month 1..=12, day 1..=31) of a day count since 1970-01-01, in the proleptic
/// Gregorian calendar (Howard Hinnant's `civil_from_days`, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift the epoch to 0000-03-01, so that the leap day ends each 4/100/400-year era.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097; // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of March-based year
    let mp = (5 * doy + 2) / 153; // March = 0
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// The text a format writes for one second, kept until the second changes: a worker logs
/// thousands of lines per second and the calendar arithmetic need not run for each.
#[derive(Default)]
struct SecondText {
    /// Seconds since the epoch that `text` renders.
    secs: Option<u64>,
    text: Vec<u8>,
}

impl SecondText {
    /// Writes `render`'s text for `t`'s second (rendering it when the second changed);
    /// returns `t`'s milliseconds within that second.
    fn write(&mut self, out: &mut Vec<u8>, t: SystemTime, render: fn(&mut Vec<u8>, &Civil)) -> u64 {
        let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        if self.secs != Some(since.as_secs()) {
            self.text.clear();
            render(&mut self.text, &civil(t));
            self.secs = Some(since.as_secs());
        }
        out.extend_from_slice(&self.text);
        u64::from(since.subsec_millis())
    }
}

/// RFC 3339, UTC, milliseconds: `2024-02-29T13:05:09.042Z`.
fn write_rfc3339(out: &mut Vec<u8>, time: &mut SecondText, t: SystemTime) {
    let millis = time.write(out, t, write_rfc3339_second);
    out.push(b'.');
    write_padded(out, millis, 3);
    out.push(b'Z');
}

/// `2024-02-29T13:05:09`.
fn write_rfc3339_second(out: &mut Vec<u8>, c: &Civil) {
    write_padded(out, c.year, 4);
    out.push(b'-');
    write_padded(out, c.month, 2);
    out.push(b'-');
    write_padded(out, c.day, 2);
    out.push(b'T');
    write_padded(out, c.hour, 2);
    out.push(b':');
    write_padded(out, c.minute, 2);
    out.push(b':');
    write_padded(out, c.second, 2);
}

/// Common Log Format time, in UTC: `29/Feb/2024:13:05:09 +0000`.
fn write_clf_second(out: &mut Vec<u8>, c: &Civil) {
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    write_padded(out, c.day, 2);
    out.push(b'/');
    let month = MONTHS.get((c.month as usize).wrapping_sub(1)).copied();
    out.extend_from_slice(month.unwrap_or(b"???"));
    out.push(b'/');
    write_padded(out, c.year, 4);
    out.push(b':');
    write_padded(out, c.hour, 2);
    out.push(b':');
    write_padded(out, c.minute, 2);
    out.push(b':');
    write_padded(out, c.second, 2);
    out.extend_from_slice(b" +0000");
}

// ---- escaping ----

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// `s` as a JSON string, quotes included (RFC 8259 §7). Valid UTF-8 is kept; each
/// invalid sequence becomes U+FFFD (as `String::from_utf8_lossy` would). Control
/// characters and DEL are escaped so that a line never carries raw terminal controls.
fn json_str(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    // Nearly every logged value is printable ASCII without quotes or backslashes: copied
    // as is, without the UTF-8 walk.
    if s.iter()
        .all(|&b| matches!(b, 0x20..=0x7e) && b != b'"' && b != b'\\')
    {
        out.extend_from_slice(s);
        out.push(b'"');
        return;
    }
    for chunk in s.utf8_chunks() {
        json_escape_valid(out, chunk.valid().as_bytes());
        if !chunk.invalid().is_empty() {
            out.extend_from_slice(b"\\ufffd");
        }
    }
    out.push(b'"');
}

fn json_opt(out: &mut Vec<u8>, s: Option<&[u8]>) {
    match s {
        Some(s) => json_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// Escapes the ASCII that JSON requires (and DEL) in valid UTF-8, copying runs of bytes
/// that need nothing in one go.
fn json_escape_valid(out: &mut Vec<u8>, s: &[u8]) {
    let mut start = 0;
    for (i, &b) in s.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f | 0x7f => b"",
            _ => continue,
        };
        out.extend_from_slice(&s[start..i]);
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX_UPPER[usize::from(b >> 4)].to_ascii_lowercase());
            out.push(HEX_UPPER[usize::from(b & 0xf)].to_ascii_lowercase());
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&s[start..]);
}

/// nginx's access-log escaping (`ngx_http_log_escape`): `"`, `\`, control bytes and bytes
/// from 0x7f up become `\xHH`.
fn nginx_escaped(out: &mut Vec<u8>, s: &[u8]) {
    for &b in s {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            out.extend_from_slice(b"\\x");
            out.push(HEX_UPPER[usize::from(b >> 4)]);
            out.push(HEX_UPPER[usize::from(b & 0xf)]);
        } else {
            out.push(b);
        }
    }
}

/// As nginx logs an empty variable: `-`.
fn nginx_escaped_or_dash(out: &mut Vec<u8>, s: &[u8]) {
    if s.is_empty() {
        out.push(b'-');
    } else {
        nginx_escaped(out, s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn json(s: &[u8]) -> String {
        let mut out = Vec::new();
        json_str(&mut out, s);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn json_escaping() {
        let cases: &[(&[u8], &str)] = &[
            (b"", r#""""#),
            (b"plain /path?a=1&b=2", r#""plain /path?a=1&b=2""#),
            (b"q\"uote", r#""q\"uote""#),
            (b"back\\slash", r#""back\\slash""#),
            (b"\n\r\t\x08\x0c", r#""\n\r\t\b\f""#),
            (b"\x00\x01\x1f\x7f", r#""\u0000\u0001\u001f\u007f""#),
            (b"\x1b[31mred", r#""\u001b[31mred""#),
            ("caf\u{e9} \u{1F600}".as_bytes(), "\"caf\u{e9} \u{1F600}\""),
            (b"\xff", r#""\ufffd""#),
            (b"a\xc3", r#""a\ufffd""#),
            (b"\xc3\x28x", r#""\ufffd(x""#),
            (b"\xed\xa0\x80", r#""\ufffd\ufffd\ufffd""#),
            (b"\xe2\x82", r#""\ufffd""#),
            (b"</script>", r#""</script>""#),
        ];
        for (input, want) in cases {
            let got = json(input);
            assert_eq!(got, *want, "{input:?}");
            // Whatever went in, a JSON parser reads it back as the lossy string.
            let parsed: String = serde_json::from_str(&got).unwrap();
            assert_eq!(parsed, String::from_utf8_lossy(input), "{input:?}");
        }
        // Every byte value, alone and in context, yields valid JSON.
        for b in 0..=255u8 {
            let input = [b'a', b, b'"', b];
            let got = json(&input);
            let parsed: String = serde_json::from_str(&got).unwrap();
            assert_eq!(parsed, String::from_utf8_lossy(&input));
        }
    }

    fn at(secs: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)
    }

    fn rfc3339(cache: &mut SecondText, t: SystemTime) -> String {
        let mut out = Vec::new();
        write_rfc3339(&mut out, cache, t);
        String::from_utf8(out).unwrap()
    }

    fn clf(cache: &mut SecondText, t: SystemTime) -> String {
        let mut out = Vec::new();
        cache.write(&mut out, t, write_clf_second);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn socket_addrs_render_as_display_does() {
        for text in [
            "0.0.0.0:0",
            "10.0.0.7:8080",
            "255.255.255.255:65535",
            "127.0.0.1:1",
            "[::1]:443",
            "[2001:db8::7]:8080",
        ] {
            let addr: SocketAddr = text.parse().unwrap();
            let mut out = Vec::new();
            write_socket_addr(&mut out, addr);
            assert_eq!(String::from_utf8(out).unwrap(), addr.to_string());
        }
    }

    #[test]
    fn time_formatting() {
        let cases: &[(u64, u64, &str)] = &[
            (0, 0, "1970-01-01T00:00:00.000Z"),
            (951_782_400, 0, "2000-02-29T00:00:00.000Z"), // 400-year leap
            (951_868_799, 999, "2000-02-29T23:59:59.999Z"),
            (951_868_800, 0, "2000-03-01T00:00:00.000Z"),
            (4_107_456_000, 0, "2100-02-28T00:00:00.000Z"), // 100-year: no Feb 29
            (4_107_542_400, 0, "2100-03-01T00:00:00.000Z"),
            (1_709_211_909, 42, "2024-02-29T13:05:09.042Z"),
            // The same second again (its text is reused), then an earlier one.
            (1_709_211_909, 43, "2024-02-29T13:05:09.043Z"),
            (1_709_211_908, 999, "2024-02-29T13:05:08.999Z"),
            (1_709_251_199, 1, "2024-02-29T23:59:59.001Z"),
            (1_709_251_200, 0, "2024-03-01T00:00:00.000Z"),
            (1_704_067_199, 500, "2023-12-31T23:59:59.500Z"),
            (1_704_067_200, 0, "2024-01-01T00:00:00.000Z"),
            (1_735_603_200, 0, "2024-12-31T00:00:00.000Z"), // day 366
            (2_147_483_647, 0, "2038-01-19T03:14:07.000Z"),
            (253_402_300_799, 0, "9999-12-31T23:59:59.000Z"),
        ];
        // One cache for the whole table, as a worker keeps one.
        let cache = &mut SecondText::default();
        for &(secs, millis, want) in cases {
            assert_eq!(rfc3339(cache, at(secs, millis)), want, "{secs}");
        }
        assert_eq!(
            rfc3339(cache, UNIX_EPOCH - Duration::from_secs(1)),
            "1970-01-01T00:00:00.000Z"
        );
        let cache = &mut SecondText::default();
        assert_eq!(
            clf(cache, at(1_709_211_909, 42)),
            "29/Feb/2024:13:05:09 +0000"
        );
        assert_eq!(clf(cache, at(0, 0)), "01/Jan/1970:00:00:00 +0000");
        assert_eq!(
            clf(cache, at(1_704_067_199, 0)),
            "31/Dec/2023:23:59:59 +0000"
        );
        assert_eq!(
            clf(cache, at(1_704_067_199, 1)),
            "31/Dec/2023:23:59:59 +0000"
        );
    }

    #[test]
    fn civil_from_days_matches_a_day_by_day_walk() {
        // Walk 1970-01-01 .. 2401-01-01 one day at a time with the plain leap-year rule.
        let is_leap =
            |y: u64| (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
        let month_len = |y: u64, m: u64| match m {
            2 if is_leap(y) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        let (mut y, mut m, mut d) = (1970, 1, 1);
        for days in 0..157_000 {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            d += 1;
            if d > month_len(y, m) {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }

    fn record() -> RequestRecord {
        let mut rec = RequestRecord::new(Bytes::from_static(b"127.0.0.1"), Instant::now());
        rec.started_wall = at(1_709_211_909, 42);
        rec.method = Bytes::from_static(b"GET");
        rec.target = Bytes::from_static(b"/users/1?x=\"y\"");
        rec.host = Some(Bytes::from_static(b"api.example.com"));
        rec.user_agent = Some(Bytes::from_static(b"curl/8.5.0"));
        rec.referer = None;
        rec.version = Version::Http11;
        rec.route = Some(0);
        rec.upstream = Some(0);
        rec.endpoint = Some("10.0.0.7:8080".parse().unwrap());
        rec.status = 200;
        rec.outcome = Outcome::Answered;
        rec.bytes_in = 78;
        rec.bytes_out = 512;
        rec.upstream_time = Some(Duration::from_micros(10_250));
        rec.pool_hit = Some(true);
        rec.retries = 1;
        rec.request_id = Bytes::from_static(b"abc-123");
        rec
    }

    const NAMES: LineNames<'static> = LineNames {
        route: "users",
        upstream: "app",
    };

    #[test]
    fn json_line_exact() {
        let rec = record();
        let mut out = Vec::new();
        write_json(
            &mut out,
            &mut SecondText::default(),
            &NAMES,
            &rec,
            Duration::from_micros(12_345),
        );
        let want = concat!(
            r#"{"time":"2024-02-29T13:05:09.042Z","client":"127.0.0.1","method":"GET","#,
            r#""path":"/users/1?x=\"y\"","protocol":"HTTP/1.1","status":200,"bytes_in":78,"#,
            r#""bytes_out":512,"duration_ms":12.345,"upstream_ms":10.250,"route":"users","#,
            r#""upstream":"app","endpoint":"10.0.0.7:8080","request_id":"abc-123","#,
            r#""user_agent":"curl/8.5.0","referer":null,"host":"api.example.com","#,
            r#""outcome":"answered","retries":1,"cache":null,"tls_version":null,"tls_cipher":null,"#,
            r#""tls_sni":null,"tls_resumed":null}"#,
            "\n"
        );
        assert_eq!(String::from_utf8(out.clone()).unwrap(), want);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["duration_ms"].as_f64(), Some(12.345));
        assert_eq!(v["path"], "/users/1?x=\"y\"");
    }

    #[test]
    fn json_line_over_tls_names_the_session() {
        let tls = |sni: Option<&str>, resumed| {
            Some(std::rc::Rc::new(crate::tls::TlsInfo {
                identity_header: None,
                hsts: None,
                version: "TLSv1.3",
                cipher: "TLS_AES_128_GCM_SHA256",
                sni: sni.map(Into::into),
                resumed,
                h2: false,
                client: None,
            }))
        };
        for (session, want) in [
            (
                tls(Some("api.example.com"), false),
                r#""tls_version":"TLSv1.3","tls_cipher":"TLS_AES_128_GCM_SHA256","tls_sni":"api.example.com","tls_resumed":false}"#,
            ),
            (
                tls(None, true),
                r#""tls_version":"TLSv1.3","tls_cipher":"TLS_AES_128_GCM_SHA256","tls_sni":null,"tls_resumed":true}"#,
            ),
        ] {
            let rec = RequestRecord {
                tls: session,
                ..record()
            };
            let mut out = Vec::new();
            write_json(
                &mut out,
                &mut SecondText::default(),
                &NAMES,
                &rec,
                Duration::ZERO,
            );
            let line = String::from_utf8(out).unwrap();
            assert!(line.ends_with(&format!(",{want}\n")), "{line}");
            assert!(serde_json::from_str::<serde_json::Value>(&line).is_ok());
        }
    }

    #[test]
    fn json_line_without_upstream_has_nulls() {
        let rec = RequestRecord {
            route: None,
            upstream: None,
            endpoint: None,
            upstream_time: None,
            host: None,
            user_agent: None,
            status: 404,
            outcome: Outcome::Answered,
            version: Version::Http10,
            client_ip: Bytes::from_static(b"::1"),
            ..record()
        };
        let mut out = Vec::new();
        write_json(
            &mut out,
            &mut SecondText::default(),
            &NAMES,
            &rec,
            Duration::from_millis(3),
        );
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        for key in [
            "upstream_ms",
            "route",
            "upstream",
            "endpoint",
            "user_agent",
            "referer",
            "host",
            "cache",
        ] {
            assert!(v[key].is_null(), "{key}: {v}");
        }
        assert_eq!(v["status"], 404);
        assert_eq!(v["protocol"], "HTTP/1.0");
        assert_eq!(v["client"], "::1");
        assert_eq!(v["duration_ms"].as_f64(), Some(3.0));
        assert_eq!(v.as_object().unwrap().len(), 24);
    }

    #[test]
    fn json_line_survives_hostile_bytes() {
        let rec = RequestRecord {
            method: Bytes::from_static(b"G\"ET"),
            target: Bytes::from_static(b"/\xff\x00\n\\"),
            user_agent: Some(Bytes::from_static(b"evil\r\n{\"status\":1}")),
            referer: Some(Bytes::from_static(b"\xc3\xa9")),
            request_id: Bytes::from_static(b"\x1b"),
            ..record()
        };
        let mut out = Vec::new();
        write_json(
            &mut out,
            &mut SecondText::default(),
            &NAMES,
            &rec,
            Duration::ZERO,
        );
        assert_eq!(memchr::memchr_iter(b'\n', &out).count(), 1);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["method"], "G\"ET");
        assert_eq!(v["path"], "/\u{fffd}\u{0}\n\\");
        assert_eq!(v["user_agent"], "evil\r\n{\"status\":1}");
        assert_eq!(v["referer"], "\u{e9}");
        assert_eq!(v["request_id"], "\u{1b}");
        assert_eq!(v["status"], 200);
    }

    #[test]
    fn combined_line_exact() {
        let rec = record();
        let mut out = Vec::new();
        write_combined(
            &mut out,
            &mut SecondText::default(),
            &rec,
            Duration::from_micros(12_345),
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "127.0.0.1 - - [29/Feb/2024:13:05:09 +0000] \"GET /users/1?x=\\x22y\\x22 HTTP/1.1\" \
             200 512 \"-\" \"curl/8.5.0\" rt=0.012 urt=0.010 rid=abc-123\n"
        );

        let rec = RequestRecord {
            upstream_time: None,
            user_agent: Some(Bytes::from_static(b"a\"b\\c\x01\xc3\xa9")),
            referer: Some(Bytes::from_static(b"http://r/")),
            status: 404,
            bytes_out: 0,
            version: Version::Http10,
            ..record()
        };
        let mut out = Vec::new();
        write_combined(
            &mut out,
            &mut SecondText::default(),
            &rec,
            Duration::from_millis(1_500),
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "127.0.0.1 - - [29/Feb/2024:13:05:09 +0000] \"GET /users/1?x=\\x22y\\x22 HTTP/1.0\" \
             404 0 \"http://r/\" \"a\\x22b\\x5Cc\\x01\\xC3\\xA9\" rt=1.500 urt=- rid=abc-123\n"
        );
    }

    #[test]
    fn sampling_extremes() {
        let mut rng = WyRand::from_entropy();
        assert!((0..10_000).all(|_| rng.sample(1.0)));
        assert!((0..10_000).all(|_| !rng.sample(0.0)));
        assert!((0..10_000).all(|_| !rng.sample(f64::NAN)));
        let hits = (0..100_000).filter(|_| rng.sample(0.25)).count();
        assert!((22_000..28_000).contains(&hits), "{hits}");
    }

    fn config(path: &std::path::Path, sample: f64) -> (AccessLogConfig, AccessLog) {
        let destination = LogDestination::File(path.to_owned());
        let log = AccessLog::start(&destination).unwrap();
        (
            AccessLogConfig {
                format: AccessLogFormat::Json,
                destination,
                sample,
            },
            log,
        )
    }

    fn scratch(name: &str) -> crate::scratch::ScratchDir {
        crate::scratch::ScratchDir::new(&format!("access-log-{name}"))
    }

    #[test]
    fn lines_reach_the_file_in_whole_batches_and_reopen_follows_a_rename() {
        let dir = scratch("file");
        let path = dir.join("access.log");
        let (config, log) = config(&path, 1.0);
        let mut worker = log.worker();
        let rec = record();
        let now = rec.started + Duration::from_millis(5);
        // Below a batch: nothing is sent until a flush.
        worker.log(&config, &NAMES, &rec, now);
        assert!(!worker.buf.is_empty());
        worker.flush();
        assert!(worker.buf.is_empty());
        // Enough lines to pass a batch size several times: batches leave without a flush.
        for _ in 0..2000 {
            worker.log(&config, &NAMES, &rec, now);
            assert!(worker.buf.len() < BATCH_BYTES);
        }
        assert!(worker.lines < 2000);
        worker.flush();
        wait_for_lines(&path, 2001);

        std::fs::rename(&path, dir.join("access.log.1")).unwrap();
        log.reopen();
        worker.log(&config, &NAMES, &rec, now);
        worker.flush();
        wait_for_lines(&path, 1);
        drop(worker);
        log.shutdown();
        for file in ["access.log", "access.log.1"] {
            let text = std::fs::read_to_string(dir.join(file)).unwrap();
            for line in text.lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                assert_eq!(v["request_id"], "abc-123");
            }
        }
    }

    #[test]
    fn sample_zero_writes_nothing_and_shutdown_writes_what_was_buffered() {
        let dir = scratch("sample");
        let path = dir.join("access.log");
        let (config, log) = config(&path, 0.0);
        let mut worker = log.worker();
        let rec = record();
        for _ in 0..100 {
            worker.log(&config, &NAMES, &rec, rec.started);
        }
        assert!(worker.buf.is_empty());
        let all = AccessLogConfig {
            sample: 1.0,
            ..config
        };
        worker.log(&all, &NAMES, &rec, rec.started);
        // Dropping the handle flushes it; shutdown waits for the write.
        drop(worker);
        log.shutdown();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
    }

    /// A worker's log whose batches go to a queue of `capacity` built by hand (no writer).
    fn worker_log(capacity: usize) -> (WorkerLog, Receiver<Vec<u8>>, Arc<Shared>) {
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        let (_spare_tx, spare) = crossbeam_channel::bounded(1);
        let shared = Arc::new(Shared::default());
        let worker = WorkerLog {
            tx,
            spare,
            shared: shared.clone(),
            buf: Vec::new(),
            lines: 0,
            oldest: None,
            rng: WyRand::from_entropy(),
            json_time: SecondText::default(),
            combined_time: SecondText::default(),
        };
        (worker, rx, shared)
    }

    const COMBINED_TO_STDOUT: AccessLogConfig = AccessLogConfig {
        format: AccessLogFormat::Combined,
        destination: LogDestination::Stdout,
        sample: 1.0,
    };

    #[test]
    fn the_tick_sends_a_partial_batch_once_its_first_line_is_old_enough() {
        let (mut worker, rx, _) = worker_log(4);
        let rec = record();
        let t0 = rec.started;
        worker.tick(t0 + FLUSH_AGE); // nothing buffered: nothing sent
        worker.log(&COMBINED_TO_STDOUT, &NAMES, &rec, t0);
        worker.log(&COMBINED_TO_STDOUT, &NAMES, &rec, t0 + FLUSH_AGE / 2);
        worker.tick(t0 + FLUSH_AGE - Duration::from_millis(1));
        assert!(
            rx.try_recv().is_err(),
            "sent before its first line was old enough"
        );
        worker.tick(t0 + FLUSH_AGE);
        let batch = rx
            .try_recv()
            .expect("a batch once the first line is FLUSH_AGE old");
        assert_eq!(count_lines(&batch), 2);
        // The age starts again with the next line.
        worker.log(&COMBINED_TO_STDOUT, &NAMES, &rec, t0 + FLUSH_AGE * 2);
        worker.tick(t0 + FLUSH_AGE * 2 + FLUSH_AGE / 2);
        assert!(rx.try_recv().is_err());
        worker.tick(t0 + FLUSH_AGE * 3);
        assert_eq!(count_lines(&rx.try_recv().unwrap()), 1);
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_blocking() {
        // A writer that never drains.
        let (mut worker, _rx, shared) = worker_log(1);
        let config = COMBINED_TO_STDOUT;
        let rec = record();
        for _ in 0..3 {
            worker.log(&config, &NAMES, &rec, rec.started);
        }
        worker.flush(); // fills the queue
        for _ in 0..2 {
            worker.log(&config, &NAMES, &rec, rec.started);
        }
        worker.flush(); // dropped
        assert_eq!(shared.dropped.load(Ordering::Relaxed), 2);
        assert!(worker.buf.is_empty() && worker.lines == 0);
    }

    fn wait_for_lines(path: &std::path::Path, n: usize) {
        let start = Instant::now();
        loop {
            let lines = std::fs::read_to_string(path).map_or(0, |t| t.lines().count());
            if lines >= n {
                assert_eq!(lines, n);
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "{lines} of {n}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
