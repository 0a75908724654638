//! Observability: what each request did, recorded once at its end and handed to the
//! per-worker metrics, the access log and the tracer. Nothing here takes a lock or touches
//! memory another core writes on the request path: workers fill plain per-worker
//! structures, and the control plane gathers them when asked (a scrape) or receives them
//! in batches (log lines, spans) through channels.

pub mod access_log;
pub mod aggregate;
pub mod cache;
pub mod config;
pub mod http2;
pub mod metrics;
pub mod proxy_protocol;
pub mod request_id;
pub mod trace;
pub mod tunnels;

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use crate::http1::{RequestHead, Version};
use crate::tls::TlsInfo;
use access_log::{AccessLog, LineNames, WorkerLog};
use config::ObservabilityConfig;
use metrics::{MetricsHub, ScrapeInbox, WorkerMetrics};
use request_id::RequestIdGen;
use trace::{SpanContext, TraceExporter, WorkerTracer};

/// What observability reads of the config snapshot a request ran on: its
/// `[observability]` section, and the names behind a [`RequestRecord`]'s route and upstream
/// indices (metrics labels, access log fields, span names). The snapshot sits above this
/// module, so it implements this trait (config/views.rs) rather than being named here.
pub trait ObserveSections {
    fn observability(&self) -> &ObservabilityConfig;
    /// How many routes there are; route indices run below it.
    fn route_count(&self) -> usize;
    /// Route `i`'s name; `None` when there is no route `i`.
    fn route_name(&self, i: usize) -> Option<&str>;
    /// Route `i`'s path pattern as written; `None` when there is no route `i`.
    fn route_path(&self, i: usize) -> Option<&str>;
    /// How many upstreams there are; upstream indices run below it.
    fn upstream_count(&self) -> usize;
    /// Upstream `i`'s name; `None` when there is no upstream `i`.
    fn upstream_name(&self, i: usize) -> Option<&str>;
}

/// How a request ended, beyond its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered (by an upstream or locally).
    Answered,
    UpstreamConnectError,
    UpstreamTimeout,
    /// The client went away or the exchange broke mid-response.
    Aborted,
}

/// One request, filled along the request path.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub started: Instant,
    /// `started` on the wall clock, for the log and the trace: set when the request
    /// finishes, and only when something will read it (one clock read fewer per request).
    pub started_wall: SystemTime,
    pub client_ip: Bytes,
    /// Slices of the request head.
    pub method: Bytes,
    pub target: Bytes,
    pub host: Option<Bytes>,
    pub user_agent: Option<Bytes>,
    pub referer: Option<Bytes>,
    pub version: Version,
    /// The TLS session the request came over (shared with the connection), for the access
    /// log and the span; `None` over plain TCP.
    pub tls: Option<Rc<TlsInfo>>,
    /// Index into the snapshot's routes ([`ObserveSections`]), when a route matched.
    pub route: Option<usize>,
    /// Index into the snapshot's `upstreams`, when the request was proxied.
    pub upstream: Option<usize>,
    /// The endpoint that answered (the last one tried).
    pub endpoint: Option<SocketAddr>,
    /// Status sent to the client (0 when nothing was sent).
    pub status: u16,
    pub outcome: Outcome,
    /// Request bytes received (head and body).
    pub bytes_in: u64,
    /// Response bytes sent (head and body).
    pub bytes_out: u64,
    /// From the first upstream try to the upstream response head.
    pub upstream_time: Option<Duration>,
    /// A pooled upstream connection served the request (`None`: no upstream).
    pub pool_hit: Option<bool>,
    pub retries: u32,
    pub request_id: Bytes,
    /// This request's span, when tracing is on.
    pub trace: Option<SpanContext>,
    /// On a caching route: the cache's name and how it took part.
    pub cache: Option<(std::sync::Arc<str>, cache::CacheOutcome)>,
    /// On an aggregate route: each part called, in part order.
    pub aggregate: Vec<AggregatePart>,
}

/// One part of an aggregation, as the access log lists it.
#[derive(Debug, Clone)]
pub struct AggregatePart {
    pub name: std::sync::Arc<str>,
    /// The upstream's status; 0 without an answer.
    pub status: u16,
    pub elapsed: Duration,
    /// `ok`, or why the part failed (`timeout`, `bad_status`…).
    pub result: &'static str,
}

impl RequestRecord {
    /// Copies the request's identity out of its parsed head (slices of `raw`, no copy).
    pub fn describe(&mut self, raw: &Bytes, head: &RequestHead) {
        let slice = |(start, end): (u32, u32)| raw.slice(start as usize..end as usize);
        self.method = slice(head.method_span);
        self.target = slice(head.target);
        self.host = head.authority.map(slice);
        self.version = head.version;
        for h in &head.headers {
            let name = h.name(raw);
            if name.eq_ignore_ascii_case(b"user-agent") {
                self.user_agent = Some(slice(h.value));
            } else if name.eq_ignore_ascii_case(b"referer") {
                self.referer = Some(slice(h.value));
            }
        }
    }

    /// A record for a request whose head was just read (`raw` holds it).
    pub fn new(client_ip: Bytes, started: Instant) -> Self {
        RequestRecord {
            started,
            started_wall: SystemTime::UNIX_EPOCH,
            client_ip,
            method: Bytes::new(),
            target: Bytes::new(),
            host: None,
            user_agent: None,
            referer: None,
            version: Version::Http11,
            tls: None,
            route: None,
            upstream: None,
            endpoint: None,
            status: 0,
            outcome: Outcome::Answered,
            bytes_in: 0,
            bytes_out: 0,
            upstream_time: None,
            pool_hit: None,
            retries: 0,
            request_id: Bytes::new(),
            trace: None,
            cache: None,
            aggregate: Vec::new(),
        }
    }
}

/// The process-wide ends of observability, set up at startup and shared with every worker.
#[derive(Clone)]
pub struct Observers {
    pub metrics: Arc<MetricsHub>,
    pub access_log: Option<Arc<AccessLog>>,
    pub tracing: Option<Arc<TraceExporter>>,
}

/// One worker's ends: its counters, its log buffer, its tracer and its ID generator.
pub struct WorkerObservers {
    pub metrics: WorkerMetrics,
    inbox: ScrapeInbox,
    log: Option<WorkerLog>,
    tracer: Option<WorkerTracer>,
    ids: RequestIdGen,
}

impl WorkerObservers {
    pub fn new(observers: &Observers) -> Self {
        WorkerObservers {
            metrics: WorkerMetrics::new(),
            inbox: observers.metrics.register_worker(),
            log: observers.access_log.as_ref().map(|log| log.worker()),
            tracer: observers.tracing.as_ref().map(|exporter| exporter.worker()),
            ids: RequestIdGen::new(),
        }
    }

    /// Gives a request its ID (the client's when acceptable) and, with tracing on, its span.
    /// `observability` is the section of the snapshot the request runs on.
    pub fn begin(
        &mut self,
        observability: &ObservabilityConfig,
        raw: &Bytes,
        head: &RequestHead,
        rec: &mut RequestRecord,
    ) {
        rec.request_id = match request_id::incoming(raw, head, &observability.request_id_header) {
            Some((start, end)) => raw.slice(start as usize..end as usize),
            None => self.ids.next(),
        };
        if let (Some(tracer), Some(tracing)) = (self.tracer.as_mut(), &observability.tracing) {
            let traceparent = head
                .headers
                .iter()
                .find(|h| h.name(raw).eq_ignore_ascii_case(b"traceparent"))
                .map(|h| h.value(raw));
            rec.trace = Some(tracer.start(tracing, traceparent));
        }
    }

    /// Counts, logs and traces a finished request. `snapshot` is the one the request ran on
    /// (`rec`'s indices refer to it).
    pub fn finish(&mut self, snapshot: &impl ObserveSections, rec: &mut RequestRecord) {
        let now = Instant::now();
        self.metrics.record_at(snapshot, rec, now);
        let observability = snapshot.observability();
        if self.log.is_some() || self.tracer.is_some() {
            let elapsed = now.saturating_duration_since(rec.started);
            rec.started_wall = SystemTime::now()
                .checked_sub(elapsed)
                .unwrap_or(SystemTime::UNIX_EPOCH);
        }
        let rec = &*rec;
        let upstream = rec
            .upstream
            .and_then(|i| snapshot.upstream_name(i))
            .unwrap_or("");
        if let (Some(log), Some(log_config)) = (self.log.as_mut(), &observability.access_log) {
            let names = LineNames {
                route: rec.route.and_then(|i| snapshot.route_name(i)).unwrap_or(""),
                upstream,
            };
            log.log(log_config, &names, rec, now);
        }
        if let (Some(tracer), Some(tracing)) = (self.tracer.as_mut(), &observability.tracing) {
            let path = rec.route.and_then(|i| snapshot.route_path(i)).unwrap_or("");
            tracer.finish(tracing, path, upstream, rec);
        }
    }

    /// At the end of a drain: hands the last log lines over and lets go of the log and the
    /// tracer, so that their writer threads can finish.
    pub fn close(&mut self) {
        self.inbox.answer(&self.metrics);
        if let Some(log) = self.log.as_mut() {
            log.flush();
        }
        self.log = None;
        self.tracer = None;
    }

    /// Periodic work off the request path: answer scrapes, hand log lines over once the
    /// oldest has waited long enough.
    pub fn tick(&mut self) {
        self.inbox.answer(&self.metrics);
        if let Some(log) = self.log.as_mut() {
            log.tick(Instant::now());
        }
    }
}
