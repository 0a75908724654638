//! The span exporter: one side thread (never a worker) that takes spans off the bounded
//! queue, batches them, and POSTs each batch as OTLP/HTTP JSON to the collector.
//!
//! The thread looks at the queue every 50 ms rather than waiting on it, so that a worker
//! queueing a span never has to wake it (a futex call per span on the request path). A
//! batch goes out when it reaches `batch_size` or when its oldest span has waited
//! `flush_interval` (give or take one poll). The HTTP client is a plain blocking `std::net::TcpStream`: one
//! connection per export (`Connection: close`), 2 s connect/write/read timeouts, and only
//! the status line of the answer is read. A failed export (no connection, timeout, non-2xx)
//! drops its spans and counts them: no retry, so a dead collector costs one attempt per
//! batch and never grows memory past the queue.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};

use super::otlp::encode_export_request;
use super::{PaddedCounter, SpanData, WorkerTracer};
use crate::observe::config::TracingConfig;

/// Connect, write and read timeout of one export.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest status line we read before giving up on the answer.
const MAX_STATUS_LINE_BYTES: usize = 1024;
/// Path used when `otlp_endpoint` has none (the OTLP/HTTP default for traces).
const DEFAULT_TRACES_PATH: &str = "/v1/traces";
/// How often the thread takes the queued spans. The default queue (4096) holds 80,000
/// spans a second for that long.
const POLL: Duration = Duration::from_millis(50);

/// Counters shared by the exporter thread, the workers and whoever asks.
#[derive(Debug, Default)]
struct Shared {
    exported: AtomicU64,
    /// Spans lost to failed exports.
    failed: AtomicU64,
    /// One counter per worker for spans dropped on a full queue. Locked only when a worker
    /// is created and when the counters are read, never on the request path.
    workers: Mutex<Vec<Arc<PaddedCounter>>>,
}

/// Owns the exporter thread. `Send + Sync`: it lives on the main thread, hands a
/// [`WorkerTracer`] to each worker, and answers the counters for metrics.
pub struct TraceExporter {
    queue: Sender<SpanData>,
    /// Dropped (or sent to) to stop the thread.
    stop: Option<Sender<()>>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for TraceExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceExporter")
            .field("exported", &self.exported())
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl TraceExporter {
    /// Checks the endpoint URL and starts the exporter thread. The collector need not be
    /// up: its address is resolved (DNS, off the workers) at each export.
    pub fn start(config: &TracingConfig) -> io::Result<TraceExporter> {
        let endpoint = Endpoint::parse(&config.otlp_endpoint)?;
        let (queue, spans) = crossbeam_channel::bounded(config.queue_size.max(1));
        let (stop, stopped) = crossbeam_channel::bounded(1);
        let shared = Arc::new(Shared::default());
        let thread = Exporter {
            endpoint,
            service_name: config.service_name.clone(),
            batch_size: config.batch_size.max(1),
            flush_interval: config.flush_interval,
            shared: shared.clone(),
            failing: false,
        };
        let thread = std::thread::Builder::new()
            .name("strait-otlp".into())
            .spawn(move || thread.run(spans, stopped))?;
        Ok(TraceExporter {
            queue,
            stop: Some(stop),
            shared,
            thread: Some(thread),
        })
    }

    /// A tracer for one worker thread (its own RNG and drop counter).
    pub fn worker(&self) -> WorkerTracer {
        let dropped = Arc::new(PaddedCounter::default());
        if let Ok(mut workers) = self.shared.workers.lock() {
            workers.push(dropped.clone());
        }
        WorkerTracer::new(self.queue.clone(), dropped)
    }

    /// Spans lost: dropped on a full queue, or in a failed export.
    pub fn dropped(&self) -> u64 {
        let queue_full: u64 = self
            .shared
            .workers
            .lock()
            .map(|w| w.iter().map(|c| c.0.load(Ordering::Relaxed)).sum())
            .unwrap_or(0);
        queue_full + self.shared.failed.load(Ordering::Relaxed)
    }

    /// Spans the collector accepted (a 2xx answer to their batch).
    pub fn exported(&self) -> u64 {
        self.shared.exported.load(Ordering::Relaxed)
    }

    /// Stops the thread after it exports what is queued (giving up at the first failed
    /// export), and waits for it. Spans finished after this are dropped and counted.
    pub fn shutdown(mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for TraceExporter {
    /// Tells the thread to flush and stop, without waiting for it (see [`Self::shutdown`]).
    fn drop(&mut self) {
        self.stop.take();
    }
}

/// `http://host[:port][/path]`, split for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint {
    /// For DNS: without IPv6 brackets.
    host: String,
    port: u16,
    /// For the `Host` header: as written in the URL.
    authority: String,
    path: String,
}

impl Endpoint {
    fn parse(url: &str) -> io::Result<Endpoint> {
        let invalid = |why: &str| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("otlp_endpoint {url:?}: {why}"),
            )
        };
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| invalid("must start with http://"))?;
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let path = match path {
            "" | "/" => DEFAULT_TRACES_PATH.to_owned(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_owned(),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(invalid("needs a host (and no user info)"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| invalid("unclosed [ in host"))?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(|| invalid("bad port"))?),
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        let port = match port {
            None => 80,
            Some(p) => p.parse().map_err(|_| invalid("bad port"))?,
        };
        if host.is_empty() || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(invalid("bad host or path"));
        }
        Ok(Endpoint {
            host: host.to_owned(),
            port,
            authority: authority.to_owned(),
            path,
        })
    }
}

/// The exporter thread's state.
struct Exporter {
    endpoint: Endpoint,
    service_name: String,
    batch_size: usize,
    flush_interval: Duration,
    shared: Arc<Shared>,
    /// The last export failed (so that a dead collector is logged once, not per batch).
    failing: bool,
}

impl Exporter {
    fn run(mut self, spans: Receiver<SpanData>, stop: Receiver<()>) {
        let mut batch: Vec<SpanData> = Vec::with_capacity(self.batch_size.min(4096));
        let mut body = Vec::new();
        // When the oldest span of the batch must go out.
        let mut deadline: Option<Instant> = None;
        // Until told to stop (a message, or the sender dropped).
        while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(POLL) {
            let senders_gone = loop {
                match spans.try_recv() {
                    Ok(span) => {
                        if batch.is_empty() {
                            deadline = Some(Instant::now() + self.flush_interval);
                        }
                        batch.push(span);
                        if batch.len() >= self.batch_size {
                            self.export(&mut batch, &mut body);
                            deadline = None;
                        }
                    }
                    Err(TryRecvError::Empty) => break false,
                    // Every sender is gone: nothing more can come.
                    Err(TryRecvError::Disconnected) => break true,
                }
            };
            if deadline.is_some_and(|d| Instant::now() >= d) {
                self.export(&mut batch, &mut body);
                deadline = None;
            }
            if senders_gone {
                break;
            }
        }
        // Shutting down: send what is queued, but stop trying once the collector fails.
        batch.extend(
            spans
                .try_iter()
                .take(self.batch_size.saturating_sub(batch.len())),
        );
        while !batch.is_empty() {
            if !self.export(&mut batch, &mut body) {
                let rest = spans.try_iter().count() as u64;
                self.shared.failed.fetch_add(rest, Ordering::Relaxed);
                break;
            }
            batch.extend(spans.try_iter().take(self.batch_size));
        }
    }

    /// POSTs `batch` (emptied) and counts the outcome; true on success.
    fn export(&mut self, batch: &mut Vec<SpanData>, body: &mut Vec<u8>) -> bool {
        let count = batch.len() as u64;
        body.clear();
        encode_export_request(&self.service_name, batch, body);
        batch.clear();
        let result = post(&self.endpoint, body);
        if body.capacity() > 4 * 1024 * 1024 {
            // One huge batch should not keep its buffer for the process's life.
            *body = Vec::new();
        }
        match result {
            Ok(status) if (200..300).contains(&status) => {
                self.shared.exported.fetch_add(count, Ordering::Relaxed);
                if self.failing {
                    tracing::info!(endpoint = %self.endpoint.authority, "otlp export recovered");
                    self.failing = false;
                }
                true
            }
            other => {
                self.shared.failed.fetch_add(count, Ordering::Relaxed);
                if !self.failing {
                    let reason = match other {
                        Ok(status) => format!("collector answered {status}"),
                        Err(e) => e.to_string(),
                    };
                    tracing::warn!(
                        endpoint = %self.endpoint.authority,
                        %reason,
                        spans = count,
                        "otlp export failed; spans are dropped until it recovers"
                    );
                    self.failing = true;
                }
                false
            }
        }
    }
}

/// One `POST` of `body` to `endpoint`; returns the answer's status code.
fn post(endpoint: &Endpoint, body: &[u8]) -> io::Result<u16> {
    let mut stream = connect(endpoint)?;
    stream.set_read_timeout(Some(EXPORT_TIMEOUT))?;
    stream.set_write_timeout(Some(EXPORT_TIMEOUT))?;
    let _ = stream.set_nodelay(true);
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {len}\r\nUser-Agent: strait/{version}\r\nConnection: close\r\n\r\n",
        path = endpoint.path,
        host = endpoint.authority,
        len = body.len(),
        version = env!("CARGO_PKG_VERSION"),
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()?;
    read_status(&mut stream)
}

fn connect(endpoint: &Endpoint) -> io::Result<TcpStream> {
    let addrs: Vec<SocketAddr> = (endpoint.host.as_str(), endpoint.port)
        .to_socket_addrs()?
        .collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, "host resolved to no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, EXPORT_TIMEOUT) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Reads the status line (`HTTP/1.x NNN reason`) and returns its code.
fn read_status(stream: &mut impl Read) -> io::Result<u16> {
    let mut buf = [0u8; MAX_STATUS_LINE_BYTES];
    let mut len = 0;
    loop {
        if let Some(end) = memchr::memchr(b'\n', &buf[..len]) {
            return parse_status_line(&buf[..end])
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad status line"));
        }
        if len == buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "status line too long",
            ));
        }
        let n = stream.read(&mut buf[len..])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before a status line",
            ));
        }
        len += n;
    }
}

/// `HTTP/1.1 200 OK` → 200 (RFC 9112 §4: three digits after the version and a space).
fn parse_status_line(line: &[u8]) -> Option<u16> {
    let rest = line
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| line.strip_prefix(b"HTTP/1.0 "))?;
    match rest {
        [a, b, c, ..]
            if [a, b, c].iter().all(|d| d.is_ascii_digit())
                && rest.get(3).is_none_or(|&s| s == b' ' || s == b'\r') =>
        {
            Some(u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::record;
    use super::*;
    use std::net::TcpListener;

    fn config(endpoint: &str, queue_size: usize, batch_size: usize, flush: u64) -> TracingConfig {
        TracingConfig {
            otlp_endpoint: endpoint.to_owned(),
            sample_ratio: 1.0,
            service_name: "strait-test".into(),
            queue_size,
            batch_size,
            flush_interval: Duration::from_millis(flush),
        }
    }

    /// One received export: its head and body.
    type Recorded = (String, Vec<u8>);

    /// A collector on 127.0.0.1 that records POST bodies and answers `status`.
    struct Collector {
        url: String,
        bodies: Arc<Mutex<Vec<Recorded>>>,
    }

    impl Collector {
        fn start(status: u16) -> Collector {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
            let bodies = Arc::new(Mutex::new(Vec::new()));
            let sink = bodies.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(mut stream) = stream else { return };
                    let Some((head, body)) = read_request(&mut stream) else {
                        continue;
                    };
                    sink.lock().unwrap().push((head, body));
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}"
                    );
                }
            });
            Collector { url, bodies }
        }

        fn batches(&self) -> Vec<serde_json::Value> {
            self.bodies
                .lock()
                .unwrap()
                .iter()
                .map(|(_, b)| serde_json::from_slice(b).expect("valid JSON"))
                .collect()
        }

        fn wait_for_spans(&self, n: usize) -> Vec<serde_json::Value> {
            let start = Instant::now();
            loop {
                let batches = self.batches();
                if batches.iter().map(span_count).sum::<usize>() >= n {
                    return batches;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "spans not received"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    fn read_request(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = stream.read(&mut chunk).ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        while buf.len() < head_end + len {
            let n = stream.read(&mut chunk).ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Some((head, buf[head_end..head_end + len].to_vec()))
    }

    fn span_count(batch: &serde_json::Value) -> usize {
        batch["resourceSpans"][0]["scopeSpans"][0]["spans"]
            .as_array()
            .map_or(0, Vec::len)
    }

    fn send_spans(tracer: &mut WorkerTracer, cfg: &TracingConfig, n: usize) {
        for _ in 0..n {
            let ctx = tracer.start(cfg, None);
            tracer.finish(cfg, "/items/{id}", "app", &record(Some(ctx)));
        }
    }

    fn wait(what: &str, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "timed out: {what}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn spans_arrive_in_full_batches() {
        let collector = Collector::start(200);
        // A long interval: only full batches go out.
        let cfg = config(&collector.url, 64, 3, 60_000);
        let exporter = TraceExporter::start(&cfg).unwrap();
        let mut tracer = exporter.worker();
        send_spans(&mut tracer, &cfg, 7);
        let batches = collector.wait_for_spans(6);
        assert_eq!(batches.iter().map(span_count).collect::<Vec<_>>(), [3, 3]);
        wait("exported count", || exporter.exported() == 6);
        assert_eq!(exporter.dropped(), 0);

        let (head, _) = collector.bodies.lock().unwrap()[0].clone();
        assert!(head.starts_with("POST /v1/traces HTTP/1.1\r\n"), "{head}");
        let lower = head.to_ascii_lowercase();
        assert!(
            lower.contains("\r\ncontent-type: application/json\r\n"),
            "{head}"
        );
        let resource = &batches[0]["resourceSpans"][0]["resource"];
        assert_eq!(
            resource["attributes"][0]["value"]["stringValue"],
            "strait-test"
        );

        // The seventh goes out at shutdown.
        exporter.shutdown();
        assert_eq!(collector.batches().iter().map(span_count).sum::<usize>(), 7);
    }

    #[test]
    fn partial_batch_goes_out_after_the_flush_interval() {
        let collector = Collector::start(200);
        let cfg = config(&collector.url, 64, 100, 50);
        let exporter = TraceExporter::start(&cfg).unwrap();
        let mut tracer = exporter.worker();
        send_spans(&mut tracer, &cfg, 2);
        let batches = collector.wait_for_spans(2);
        assert_eq!(batches.iter().map(span_count).collect::<Vec<_>>(), [2]);
        wait("exported count", || exporter.exported() == 2);
    }

    #[test]
    fn queue_overflow_drops_and_counts_without_blocking() {
        // A collector that accepts connections (the kernel's backlog) but never answers:
        // the exporter thread sits in its first export while the queue fills.
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1/traces", silent.local_addr().unwrap());
        let cfg = config(&url, 4, 1, 10);
        let exporter = TraceExporter::start(&cfg).unwrap();
        let mut tracer = exporter.worker();
        let started = Instant::now();
        send_spans(&mut tracer, &cfg, 1000);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "finish must never block"
        );
        // At most the queue plus the one batch in flight got through.
        assert!(exporter.dropped() >= 1000 - 4 - 2, "{}", exporter.dropped());
        assert_eq!(exporter.exported(), 0);
        drop(silent);
    }

    #[test]
    fn failed_exports_are_dropped_and_counted() {
        // Nothing listens on this port any more: every connect is refused.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = config(&format!("http://127.0.0.1:{port}/v1/traces"), 64, 2, 10);
        let exporter = TraceExporter::start(&cfg).unwrap();
        let mut tracer = exporter.worker();
        send_spans(&mut tracer, &cfg, 4);
        wait("failed exports counted", || exporter.dropped() == 4);
        assert_eq!(exporter.exported(), 0);

        // A collector answering 500 counts as failed too.
        let collector = Collector::start(500);
        let cfg = config(&collector.url, 64, 2, 10);
        let exporter = TraceExporter::start(&cfg).unwrap();
        let mut tracer = exporter.worker();
        send_spans(&mut tracer, &cfg, 2);
        wait("500 counted as failed", || exporter.dropped() == 2);
        assert_eq!(exporter.exported(), 0);
    }

    #[test]
    fn endpoints_parse() {
        let ok = |url: &str, host: &str, port: u16, authority: &str, path: &str| {
            assert_eq!(
                Endpoint::parse(url).unwrap(),
                Endpoint {
                    host: host.into(),
                    port,
                    authority: authority.into(),
                    path: path.into()
                },
                "{url}"
            );
        };
        ok(
            "http://127.0.0.1:4318/v1/traces",
            "127.0.0.1",
            4318,
            "127.0.0.1:4318",
            "/v1/traces",
        );
        ok(
            "http://collector",
            "collector",
            80,
            "collector",
            "/v1/traces",
        );
        ok(
            "http://collector:4318/",
            "collector",
            4318,
            "collector:4318",
            "/v1/traces",
        );
        ok(
            "http://[::1]:4318/otlp/v1/traces",
            "::1",
            4318,
            "[::1]:4318",
            "/otlp/v1/traces",
        );
        ok("http://[::1]/x?y=1", "::1", 80, "[::1]", "/x?y=1");
        for bad in [
            "https://collector/v1/traces",
            "collector:4318",
            "http://",
            "http://:4318/x",
            "http://h:port/x",
            "http://h:70000/x",
            "http://user@h/x",
            "http://[::1/x",
            "http://h/a b",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn status_lines() {
        for (line, want) in [
            (&b"HTTP/1.1 200 OK"[..], Some(200)),
            (b"HTTP/1.0 503 Busy\r", Some(503)),
            (b"HTTP/1.1 204", Some(204)),
            (b"HTTP/1.1 204\r", Some(204)),
            (b"HTTP/1.1 20 OK", None),
            (b"HTTP/1.1 2000 OK", None),
            (b"HTTP/2 200 OK", None),
            (b"garbage", None),
        ] {
            assert_eq!(parse_status_line(line), want, "{line:?}");
        }
        let mut split: &[u8] = b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(read_status(&mut split).unwrap(), 202);
        let mut eof: &[u8] = b"HTTP/1.1 2";
        assert!(read_status(&mut eof).is_err());
    }

    #[test]
    fn exporter_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<TraceExporter>();
        fn send<T: Send>() {}
        send::<WorkerTracer>();
    }
}
