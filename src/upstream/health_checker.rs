//! Active health checks: one thread for the whole process, off the workers.
//!
//! The thread runs its own monoio runtime (epoll driver, timer) with one task per checked
//! endpoint. Each task probes its endpoint every `interval` — a fresh connection (TLS when
//! the upstream's is: the same session settings as the workers' connections), `METHOD
//! PATH HTTP/1.1` with `Connection: close`, the response head read within `timeout` — and
//! feeds the outcome to a [`HealthState`]; when that flips, the endpoint's shared
//! [`EndpointHealth`](crate::upstream::health::EndpointHealth) flag is written, which the
//! workers read with one atomic load when they pick an endpoint. Each probe that passes
//! with the endpoint healthy is also counted there: that count ends a passive ejection
//! (outlier detection) on every worker.
//!
//! Reloads: every task re-reads the served config before each probe (so a changed interval,
//! path or threshold applies from the next probe, and a task whose endpoint or checks are
//! gone ends, marking its endpoint healthy); a supervisor loop starts tasks for endpoints
//! that gained checks and drops registry entries of removed endpoints.
//!
//! The state machine is a plain struct without I/O or clocks, unit-tested on its own.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::{Buf, BytesMut};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::{LegacyDriver, RuntimeBuilder};

use crate::http1::{find_head_end, parse_response_head};
use crate::proxy_protocol::ProxyVersion;
use crate::tls::HandshakeError;
use crate::upstream::config::{Endpoint, HealthCheckConfig, UpstreamConfig};
use crate::upstream::health::HealthRegistry;
use crate::upstream::stream::{OpenError, UpstreamStream};
use crate::upstream::tls::UpstreamTls;
use crate::upstream::Snapshot;

/// How often the supervisor looks for a new config snapshot or an ended task.
const SUPERVISE_INTERVAL: Duration = Duration::from_millis(100);
/// Floor for a probe interval, so that a zero in the config cannot spin the thread.
const MIN_PROBE_INTERVAL: Duration = Duration::from_millis(10);
/// A health response head larger than this is a failed check.
const MAX_HEALTH_HEAD_BYTES: usize = 16 * 1024;
/// Free space made in the read buffer before each read.
const READ_CHUNK_BYTES: usize = 4096;
/// Statuses counted healthy when the config gives no range.
const DEFAULT_EXPECT: (u16, u16) = (200, 399);

/// Starts the checker thread. It runs for the life of the process, following reloads of
/// `config`; endpoints of upstreams without `health` are never probed.
///
/// Panics, like `std::thread::spawn`, if the OS cannot create a thread; [`try_spawn`]
/// returns that error instead.
pub fn spawn<S: Snapshot>(
    config: Arc<ArcSwap<S>>,
    registry: Arc<HealthRegistry>,
) -> JoinHandle<()> {
    match try_spawn(config, registry) {
        Ok(handle) => handle,
        Err(e) => panic!("cannot start the health checker thread: {e}"),
    }
}

/// [`spawn`], returning an error when the thread cannot be created.
pub fn try_spawn<S: Snapshot>(
    config: Arc<ArcSwap<S>>,
    registry: Arc<HealthRegistry>,
) -> std::io::Result<JoinHandle<()>> {
    spawn_until(config, registry, Arc::new(AtomicBool::new(false)))
}

/// [`spawn`], returning once `stop` is set (checked every `SUPERVISE_INTERVAL`).
pub fn spawn_until<S: Snapshot>(
    config: Arc<ArcSwap<S>>,
    registry: Arc<HealthRegistry>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("strait-health".into())
        .spawn(
            move || match RuntimeBuilder::<LegacyDriver>::new().enable_timer().build() {
                Ok(mut rt) => rt.block_on(supervise(config, registry, stop)),
                Err(e) => tracing::error!(
                    error = %e,
                    "health checker: cannot start its runtime; active health checks are off"
                ),
            },
        )
}

/// The endpoints being probed, shared by the supervisor and the probe tasks (one thread).
#[derive(Default)]
struct Targets {
    running: RefCell<HashSet<(String, SocketAddr)>>,
    /// A task ended since the supervisor last looked: its endpoint may need a new one.
    ended: Cell<bool>,
}

async fn supervise<S: Snapshot>(
    shared: Arc<ArcSwap<S>>,
    registry: Arc<HealthRegistry>,
    stop: Arc<AtomicBool>,
) {
    let targets = Rc::new(Targets::default());
    let mut seen: Option<Arc<S>> = None;
    while !stop.load(Ordering::Acquire) {
        let config = shared.load_full();
        let changed = seen.as_ref().is_none_or(|s| !Arc::ptr_eq(s, &config));
        if changed || targets.ended.replace(false) {
            if changed {
                registry.retain_current(&shared);
            }
            for upstream in config.upstreams().iter().filter(|u| u.health.is_some()) {
                for endpoint in &upstream.endpoints {
                    let key = (upstream.name.clone(), endpoint.addr);
                    if targets.running.borrow_mut().insert(key.clone()) {
                        monoio::spawn(check_endpoint(
                            key,
                            shared.clone(),
                            registry.clone(),
                            targets.clone(),
                        ));
                    }
                }
            }
            seen = Some(config);
        }
        monoio::time::sleep(SUPERVISE_INTERVAL).await;
    }
}

/// What probing one endpoint takes from the served config.
struct Target {
    check: HealthCheckConfig,
    endpoint: Endpoint,
    /// The upstream's TLS: the probe speaks it too.
    tls: Option<UpstreamTls>,
    /// The upstream's PROXY protocol: the probe sends a LOCAL header first.
    proxy_protocol: Option<ProxyVersion>,
}

/// The health check of `addr` in upstream `name`, if it is still configured and checked.
fn target_config(upstreams: &[UpstreamConfig], name: &str, addr: SocketAddr) -> Option<Target> {
    let upstream = upstreams.iter().find(|u| u.name == name)?;
    let health = upstream.health.as_ref()?;
    let endpoint = upstream.endpoints.iter().find(|e| e.addr == addr)?;
    Some(Target {
        check: health.clone(),
        endpoint: endpoint.clone(),
        tls: upstream.tls.clone(),
        proxy_protocol: upstream.proxy_protocol,
    })
}

/// Probes one endpoint until its config no longer asks for it.
async fn check_endpoint<S: Snapshot>(
    key: (String, SocketAddr),
    shared: Arc<ArcSwap<S>>,
    registry: Arc<HealthRegistry>,
    targets: Rc<Targets>,
) {
    let (name, addr) = (key.0.as_str(), key.1);
    let mut state: Option<HealthState> = None;
    loop {
        let Some(target) = target_config(shared.load().upstreams(), name, addr) else {
            break;
        };
        let check = &target.check;
        // Looked up each round: after the endpoint was removed and added back, the workers
        // hold a new flag, and this is the one they read.
        let flag = registry.endpoint(name, addr);
        let state = state.get_or_insert_with(|| {
            HealthState::new(check.healthy_threshold, check.unhealthy_threshold)
        });
        state.set_thresholds(check.healthy_threshold, check.unhealthy_threshold);
        if state.is_healthy() != flag.is_healthy() {
            // Changed elsewhere (checks removed and added back): start from its verdict.
            state.reset(flag.is_healthy());
        }

        let started = Instant::now();
        let outcome = probe(
            &target.endpoint,
            target.tls.as_ref(),
            target.proxy_protocol,
            check,
        )
        .await;
        match &outcome {
            Ok(status) => {
                tracing::trace!(upstream = name, endpoint = %addr, status, "health check passed")
            }
            Err(e) => {
                tracing::debug!(upstream = name, endpoint = %addr, reason = %e, "health check failed")
            }
        }
        if let Some(healthy) = state.record(outcome.is_ok()) {
            if flag.set_healthy(healthy) {
                log_change(name, addr, &outcome);
            }
        }
        if state.is_pass(outcome.is_ok()) {
            // Every such pass, not only the one that makes the endpoint healthy again: an
            // ejection that began since ends on the next one (as in Envoy).
            flag.record_pass();
        }
        let interval = check.interval.max(MIN_PROBE_INTERVAL);
        monoio::time::sleep(interval.saturating_sub(started.elapsed())).await;
    }
    targets.running.borrow_mut().remove(&key);
    targets.ended.set(true);
    // Nothing checks this endpoint any more: it must not stay marked down.
    if let Some(flag) = registry.get(name, addr) {
        if flag.set_healthy(true) {
            tracing::info!(
                upstream = name,
                endpoint = %addr,
                healthy = true,
                reason = "active health checks removed",
                "health check: endpoint is now healthy"
            );
        }
    }
}

fn log_change(name: &str, addr: SocketAddr, outcome: &Result<u16, ProbeError>) {
    match outcome {
        Ok(status) => tracing::info!(
            upstream = name,
            endpoint = %addr,
            healthy = true,
            reason = %format_args!("status {status}"),
            "health check: endpoint is now healthy"
        ),
        Err(e) => tracing::warn!(
            upstream = name,
            endpoint = %addr,
            healthy = false,
            reason = %e,
            "health check: endpoint is now unhealthy"
        ),
    }
}

/// Consecutive-outcome thresholds for one endpoint, without I/O or clocks. Starts healthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthState {
    healthy: bool,
    /// Successes in a row while unhealthy.
    successes: u32,
    /// Failures in a row while healthy.
    failures: u32,
    healthy_threshold: u32,
    unhealthy_threshold: u32,
}

impl HealthState {
    /// Thresholds below 1 count as 1.
    pub fn new(healthy_threshold: u32, unhealthy_threshold: u32) -> Self {
        HealthState {
            healthy: true,
            successes: 0,
            failures: 0,
            healthy_threshold: healthy_threshold.max(1),
            unhealthy_threshold: unhealthy_threshold.max(1),
        }
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy
    }

    /// Applies thresholds from a reloaded config; the counts so far are kept.
    pub fn set_thresholds(&mut self, healthy_threshold: u32, unhealthy_threshold: u32) {
        self.healthy_threshold = healthy_threshold.max(1);
        self.unhealthy_threshold = unhealthy_threshold.max(1);
    }

    /// Takes `healthy` as the verdict and forgets the counts.
    pub fn reset(&mut self, healthy: bool) {
        self.healthy = healthy;
        self.successes = 0;
        self.failures = 0;
    }

    /// Whether a probe with outcome `success`, already [recorded](Self::record), counts as
    /// a pass that ends a passive ejection: it succeeded and the endpoint is healthy (a
    /// success still short of `healthy_threshold` does not count).
    pub fn is_pass(&self, success: bool) -> bool {
        success && self.healthy
    }

    /// Records one probe; returns the new verdict when this probe changes it.
    pub fn record(&mut self, success: bool) -> Option<bool> {
        if success {
            self.failures = 0;
            if !self.healthy {
                self.successes = self.successes.saturating_add(1);
                if self.successes >= self.healthy_threshold {
                    self.reset(true);
                    return Some(true);
                }
            }
        } else {
            self.successes = 0;
            if self.healthy {
                self.failures = self.failures.saturating_add(1);
                if self.failures >= self.unhealthy_threshold {
                    self.reset(false);
                    return Some(false);
                }
            }
        }
        None
    }
}

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("connect failed: {0}")]
    Connect(std::io::Error),
    #[error("TLS handshake failed: {0}")]
    Tls(HandshakeError),
    #[error("no response head within {0:?}")]
    Timeout(Duration),
    #[error("i/o error: {0}")]
    Io(std::io::Error),
    #[error("connection closed before a response head")]
    Closed,
    #[error("response head larger than {MAX_HEALTH_HEAD_BYTES} bytes")]
    HeadTooLarge,
    #[error("invalid response head")]
    BadResponse,
    #[error("status {0} outside the expected ranges")]
    Status(u16),
}

/// Whether `status` is in one of the inclusive `expect` ranges (200–399 when empty).
pub fn is_expected(expect: &[(u16, u16)], status: u16) -> bool {
    if expect.is_empty() {
        return (DEFAULT_EXPECT.0..=DEFAULT_EXPECT.1).contains(&status);
    }
    expect.iter().any(|&(lo, hi)| (lo..=hi).contains(&status))
}

/// The probe request: the configured Host, else the endpoint's `ip:port`.
pub fn render_request(check: &HealthCheckConfig, addr: SocketAddr) -> Vec<u8> {
    let host = match &check.host {
        Some(host) => host.clone(),
        None => addr.to_string(),
    };
    format!(
        "{} {} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nUser-Agent: strait-health-check\r\n\r\n",
        check.method, check.path
    )
    .into_bytes()
}

/// Probes `endpoint` once: connect (and TLS handshake, with `tls`), send, read the
/// response head, all within `check.timeout`. `Ok` carries an expected status; anything
/// else is an error saying why.
pub async fn probe(
    endpoint: &Endpoint,
    tls: Option<&UpstreamTls>,
    proxy_protocol: Option<ProxyVersion>,
    check: &HealthCheckConfig,
) -> Result<u16, ProbeError> {
    let request = render_request(check, endpoint.addr);
    let is_head = check.method.eq_ignore_ascii_case("HEAD");
    // The connection is dropped on expiry; on the epoll driver nothing is left in flight.
    let header = proxy_protocol.map(crate::proxy_protocol::encode_local);
    let exchanged = exchange(endpoint, tls, header, request, is_head);
    let status = monoio::time::timeout(check.timeout, exchanged)
        .await
        .map_err(|_| ProbeError::Timeout(check.timeout))??;
    if is_expected(&check.expect, status) {
        Ok(status)
    } else {
        Err(ProbeError::Status(status))
    }
}

/// Sends `request` on a new connection and returns the final response's status.
async fn exchange(
    endpoint: &Endpoint,
    tls: Option<&UpstreamTls>,
    proxy_header: Option<Vec<u8>>,
    request: Vec<u8>,
    is_head: bool,
) -> Result<u16, ProbeError> {
    let mut stream = UpstreamStream::open(endpoint, tls, proxy_header)
        .await
        .map_err(|e| match e {
            OpenError::Connect(e) => ProbeError::Connect(e),
            OpenError::Tls(e) => ProbeError::Tls(e),
        })?;
    let (written, _) = stream.write_all(request).await;
    written.map_err(ProbeError::Io)?;
    let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
    let mut scanned = 0;
    loop {
        if let Some(end) = find_head_end(&buf, scanned) {
            if end > MAX_HEALTH_HEAD_BYTES {
                return Err(ProbeError::HeadTooLarge);
            }
            let head = buf.get(..end).ok_or(ProbeError::BadResponse)?;
            let parsed = parse_response_head(head, is_head).map_err(|_| ProbeError::BadResponse)?;
            // Interim answers (100, 103) precede the one that counts; 101 is final.
            if (100..200).contains(&parsed.status) && parsed.status != 101 {
                buf.advance(end);
                scanned = 0;
                continue;
            }
            return Ok(parsed.status);
        }
        scanned = buf.len();
        if buf.len() > MAX_HEALTH_HEAD_BYTES {
            return Err(ProbeError::HeadTooLarge);
        }
        if buf.capacity() - buf.len() < READ_CHUNK_BYTES {
            buf.reserve(READ_CHUNK_BYTES);
        }
        let filled = buf.len();
        let (read, slice) = stream.read(buf.slice_mut(filled..)).await;
        buf = slice.into_inner();
        if read.map_err(ProbeError::Io)? == 0 {
            return Err(ProbeError::Closed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::atomic::AtomicU16;

    #[test]
    fn state_machine_thresholds() {
        // (healthy_threshold, unhealthy_threshold, outcomes, expected changes per outcome)
        type Row = (u32, u32, &'static str, &'static [Option<bool>]);
        const N: Option<bool> = None;
        const UP: Option<bool> = Some(true);
        const DOWN: Option<bool> = Some(false);
        // Outcomes: '+' success, '-' failure.
        const TABLE: &[Row] = &[
            (1, 1, "+-+", &[N, DOWN, UP]),
            (2, 3, "--+--", &[N, N, N, N, N]),
            (2, 3, "---", &[N, N, DOWN]),
            (2, 3, "---+-++", &[N, N, DOWN, N, N, N, UP]),
            (2, 3, "---++---", &[N, N, DOWN, N, UP, N, N, DOWN]),
            (1, 2, "-+-+--", &[N, N, N, N, N, DOWN]),
            // Zero thresholds act as 1.
            (0, 0, "-+", &[DOWN, UP]),
            // Successes while healthy and failures while unhealthy change nothing.
            (1, 1, "++", &[N, N]),
            (1, 1, "---", &[DOWN, N, N]),
        ];
        for &(ht, ut, outcomes, expected) in TABLE {
            let mut state = HealthState::new(ht, ut);
            assert!(state.is_healthy());
            let got: Vec<_> = outcomes.chars().map(|c| state.record(c == '+')).collect();
            assert_eq!(got, expected, "{ht}/{ut} {outcomes}");
        }
    }

    #[test]
    fn passes_count_only_while_healthy() {
        // (healthy_threshold, outcomes, passes after each outcome)
        let table: &[(u32, &str, &[bool])] = &[
            (1, "++", &[true, true]),
            (1, "-+", &[false, true]),
            (2, "-++-++", &[false, false, true, false, false, true]),
            (3, "-++", &[false, false, false]),
        ];
        for &(ht, outcomes, expected) in table {
            let mut state = HealthState::new(ht, 1);
            let got: Vec<bool> = outcomes
                .chars()
                .map(|c| {
                    state.record(c == '+');
                    state.is_pass(c == '+')
                })
                .collect();
            assert_eq!(got, expected, "{ht} {outcomes}");
        }
    }

    #[test]
    fn thresholds_can_change_and_reset_forgets_counts() {
        let mut state = HealthState::new(1, 3);
        assert_eq!(state.record(false), None);
        assert_eq!(state.record(false), None);
        state.set_thresholds(1, 2);
        assert_eq!(state.record(false), Some(false));
        let mut state = HealthState::new(1, 2);
        state.record(false);
        state.reset(true);
        assert_eq!(state.record(false), None);
        state.reset(false);
        assert!(!state.is_healthy());
        assert_eq!(state.record(true), Some(true));
    }

    #[test]
    fn expected_statuses() {
        assert!(is_expected(&[], 200));
        assert!(is_expected(&[], 399));
        assert!(!is_expected(&[], 400));
        assert!(!is_expected(&[], 199));
        let ranges = [(200, 200), (204, 204), (500, 503)];
        assert!(is_expected(&ranges, 200));
        assert!(!is_expected(&ranges, 201));
        assert!(is_expected(&ranges, 204));
        assert!(is_expected(&ranges, 503));
        assert!(!is_expected(&ranges, 504));
    }

    fn check(path: &str, timeout_ms: u64) -> HealthCheckConfig {
        HealthCheckConfig {
            method: "GET".into(),
            path: path.into(),
            host: None,
            expect: vec![(200, 399)],
            interval: Duration::from_millis(10),
            timeout: Duration::from_millis(timeout_ms),
            healthy_threshold: 1,
            unhealthy_threshold: 1,
        }
    }

    #[test]
    fn request_bytes() {
        let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(
            render_request(&check("/health?x=1", 50), addr),
            b"GET /health?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nConnection: close\r\n\
              User-Agent: strait-health-check\r\n\r\n"
        );
        let v6: SocketAddr = "[::1]:81".parse().unwrap();
        let mut c = check("/", 50);
        c.method = "HEAD".into();
        assert!(String::from_utf8(render_request(&c, v6))
            .unwrap()
            .starts_with("HEAD / HTTP/1.1\r\nHost: [::1]:81\r\n"));
        c.host = Some("app.internal".into());
        assert!(String::from_utf8(render_request(&c, v6))
            .unwrap()
            .contains("\r\nHost: app.internal\r\n"));
    }

    /// A one-shot server: reads the request head, hands it over, writes `answer` in
    /// `pieces` (empty: close without answering; `None`: say nothing and hold the socket).
    fn server(
        answer: Option<&'static [u8]>,
        pieces: usize,
    ) -> (SocketAddr, std::sync::mpsc::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
            match answer {
                Some(bytes) => {
                    let step = bytes.len().div_ceil(pieces.max(1)).max(1);
                    for chunk in bytes.chunks(step) {
                        let _ = s.write_all(chunk);
                        let _ = s.flush();
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }
                None => std::thread::sleep(Duration::from_millis(500)),
            }
        });
        (addr, rx)
    }

    /// A probe of the plain endpoint at `addr`.
    async fn probe_at(addr: SocketAddr, check: &HealthCheckConfig) -> Result<u16, ProbeError> {
        let endpoint = Endpoint {
            addr,
            weight: 1,
            hostname: None,
        };
        probe(&endpoint, None, None, check).await
    }

    fn run<F: std::future::Future>(f: F) -> F::Output {
        RuntimeBuilder::<LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn probe_outcomes() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let (addr, rx) = server(Some(ok), 1);
        assert_eq!(run(probe_at(addr, &check("/health", 1000))).unwrap(), 200);
        let head = rx.recv().unwrap();
        assert!(head.starts_with("GET /health HTTP/1.1\r\n"), "{head}");
        assert!(head.contains("\r\nConnection: close\r\n"), "{head}");
        assert!(
            head.contains("\r\nUser-Agent: strait-health-check\r\n"),
            "{head}"
        );

        // A head in many pieces, after an interim 100.
        let (addr, _rx) = server(
            Some(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nServer: x\r\n\r\n"),
            13,
        );
        assert_eq!(run(probe_at(addr, &check("/", 1000))).unwrap(), 204);

        let (addr, _rx) = server(Some(b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n"), 1);
        assert!(matches!(
            run(probe_at(addr, &check("/", 1000))),
            Err(ProbeError::Status(500))
        ));

        let (addr, _rx) = server(Some(b"HELLO\r\n\r\n"), 1);
        assert!(matches!(
            run(probe_at(addr, &check("/", 1000))),
            Err(ProbeError::BadResponse)
        ));

        let (addr, _rx) = server(Some(b""), 1);
        assert!(matches!(
            run(probe_at(addr, &check("/", 1000))),
            Err(ProbeError::Closed)
        ));

        let (addr, _rx) = server(Some(b"HTTP/1.1 200 OK\r\n"), 1);
        assert!(matches!(
            run(probe_at(addr, &check("/", 1000))),
            Err(ProbeError::Closed)
        ));

        let (addr, _rx) = server(None, 1);
        let started = Instant::now();
        assert!(matches!(
            run(probe_at(addr, &check("/", 50))),
            Err(ProbeError::Timeout(_))
        ));
        assert!(started.elapsed() < Duration::from_millis(400));

        // Refused: a port nobody listens on (bound, then closed).
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        assert!(matches!(
            run(probe_at(closed, &check("/", 1000))),
            Err(ProbeError::Connect(_))
        ));
    }

    #[test]
    fn oversized_head_fails() {
        static BIG: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        let big = BIG.get_or_init(|| {
            let mut v = b"HTTP/1.1 200 OK\r\n".to_vec();
            while v.len() <= MAX_HEALTH_HEAD_BYTES + 100 {
                v.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
            }
            v.extend_from_slice(b"\r\n");
            v
        });
        let (addr, _rx) = server(Some(big.as_slice()), 1);
        assert!(matches!(
            run(probe_at(addr, &check("/", 1000))),
            Err(ProbeError::HeadTooLarge)
        ));
    }

    /// An origin answering every connection with the status in `status`.
    fn flipping_server(status: Arc<AtomicU16>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let code = status.load(Ordering::Relaxed);
                let _ = write!(s, "HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n");
            }
        });
        addr
    }

    fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
        let started = Instant::now();
        while !condition() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn checker_thread_follows_endpoints_and_reloads() {
        let status = Arc::new(AtomicU16::new(200));
        let a = flipping_server(status.clone());
        let text = format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstreams.app]\nendpoints = [\"{a}\"]\n\
             [[routes]]\npath = \"/\"\nupstream = \"app\"\n"
        );
        let with_checks = |text: &str| {
            let mut config = crate::config::load_str(text, "test.toml").unwrap();
            let mut c = check("/health", 200);
            c.unhealthy_threshold = 2;
            config.upstreams[0].health = Some(c);
            config
        };
        let shared = Arc::new(ArcSwap::from_pointee(with_checks(&text)));
        let registry = Arc::new(HealthRegistry::new());
        let stop = Arc::new(AtomicBool::new(false));
        let handle = spawn_until(shared.clone(), registry.clone(), stop.clone()).unwrap();
        let flag = || registry.endpoint("app", a);

        wait_for("first probe", || registry.len() == 1);
        assert!(flag().is_healthy());
        // Passing probes are counted.
        let passes = flag().passes();
        wait_for("passes counted", || flag().passes() > passes);
        status.store(503, Ordering::Relaxed);
        wait_for("unhealthy", || !flag().is_healthy());
        let passes = flag().passes();
        status.store(200, Ordering::Relaxed);
        wait_for("healthy again", || flag().is_healthy());
        wait_for("the pass that made it healthy counted", || {
            flag().passes() > passes
        });

        // Reload without checks while down: the endpoint is marked healthy.
        status.store(500, Ordering::Relaxed);
        wait_for("unhealthy again", || !flag().is_healthy());
        shared.store(Arc::new(
            crate::config::load_str(&text, "test.toml").unwrap(),
        ));
        wait_for("healthy once unchecked", || flag().is_healthy());
        std::thread::sleep(Duration::from_millis(100));
        assert!(flag().is_healthy());

        stop.store(true, Ordering::Release);
        handle.join().unwrap();
    }
}
