//! Observability: what each request did, recorded once at its end and handed to the
//! per-worker metrics, the access log and the tracer. Nothing here takes a lock or touches
//! memory another core writes on the request path: workers fill plain per-worker
//! structures, and the control plane gathers them when asked (a scrape) or receives them
//! in batches (log lines, spans) through channels.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use crate::http1::{RequestHead, Version};

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
    pub started_wall: SystemTime,
    pub client_ip: Bytes,
    /// Slices of the request head.
    pub method: Bytes,
    pub target: Bytes,
    pub host: Option<Bytes>,
    pub user_agent: Option<Bytes>,
    pub referer: Option<Bytes>,
    pub version: Version,
    /// Index into the snapshot's `routes.routes()`, when a route matched.
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
            started_wall: SystemTime::now(),
            client_ip,
            method: Bytes::new(),
            target: Bytes::new(),
            host: None,
            user_agent: None,
            referer: None,
            version: Version::Http11,
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
        }
    }
}
