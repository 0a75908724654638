//! The tunnel after a protocol switch (a WebSocket): once the upstream answered 101 and
//! the head went back, bytes are copied both ways until either side closes, the tunnel
//! sits idle past `server.timeouts.tunnel_idle`, outlives `tunnel_lifetime`, or a drain's
//! period runs out.
//!
//! When both sides are plain TCP the worker's pump copies (`pump.rs`). Otherwise (TLS on
//! either side) two copy loops, one per direction, run in the connection's task; each does
//! owned-buffer reads and whole writes through the streams' `Duplex`. Activity is one `Cell<Instant>` the loops stamp on every read,
//! checked by a third future on the worker's coarse timer, so no read carries a timeout.
//! Bytes already buffered on either side (the first frames behind the request head or
//! behind the 101) go first. The upstream connection is never pooled again.

mod pump;

pub use pump::Pump;

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent};

use super::drain::DrainSignal;
use super::ClientConn;
use crate::config::Config;
use crate::deadline;
use crate::http2::StreamBody;
use crate::io::{give_back, take_buffer, Duplex, IntoDuplex};
use crate::upstream::client::Response;

/// When a tunnel must end regardless of its peers.
#[derive(Debug, Clone, Copy)]
pub struct TunnelLimits {
    /// No byte either way for this long.
    pub idle: Duration,
    /// Open this long, busy or not.
    pub lifetime: Option<Duration>,
    /// How long it may stay once a drain begins.
    pub drain: Duration,
}

/// Why a tunnel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelEnd {
    ClientClosed,
    UpstreamClosed,
    Idle,
    Lifetime,
    Drained,
    /// The worker could not take the tunnel in (see the log).
    Failed,
}

impl TunnelEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            TunnelEnd::ClientClosed => "client closed",
            TunnelEnd::UpstreamClosed => "upstream closed",
            TunnelEnd::Idle => "idle",
            TunnelEnd::Lifetime => "lifetime",
            TunnelEnd::Drained => "drained",
            TunnelEnd::Failed => "failed",
        }
    }
}

/// What a tunnel carried.
#[derive(Debug, Clone, Copy)]
pub struct TunnelStats {
    /// Bytes from the client to the upstream (buffered ones included).
    pub upstream: u64,
    /// Bytes from the upstream to the client (buffered ones included).
    pub downstream: u64,
    pub end: TunnelEnd,
}

/// Copies between `client` and `upstream` until the tunnel ends. `client_ahead` is what
/// the client sent behind its request head, `upstream_ahead` what the upstream sent behind
/// its 101 head; both go first, and both buffers are given back.
pub async fn run<C: Duplex, U: Duplex>(
    client: &C,
    client_ahead: BytesMut,
    upstream: &U,
    upstream_ahead: BytesMut,
    limits: TunnelLimits,
    drain: &DrainSignal,
) -> TunnelStats {
    let activity = Cell::new(Instant::now());
    let (up, down) = (Cell::new(0u64), Cell::new(0u64));
    // Whichever finishes first ends the tunnel; the other loop's operation in flight is
    // dropped with it (the connections close right after).
    let end = monoio::select! {
        _ = copy(client, upstream, client_ahead, &activity, &up) => TunnelEnd::ClientClosed,
        _ = copy(upstream, client, upstream_ahead, &activity, &down) => TunnelEnd::UpstreamClosed,
        end = watch(&activity, limits, drain) => end,
    };
    TunnelStats {
        upstream: up.get(),
        downstream: down.get(),
        end,
    }
}

/// Copies `from` to `to` until `from` ends or either fails; `ahead` goes first.
async fn copy<F: Duplex, T: Duplex>(
    from: &F,
    to: &T,
    ahead: BytesMut,
    activity: &Cell<Instant>,
    moved: &Cell<u64>,
) {
    let mut buf = ahead;
    if !buf.is_empty() {
        moved.set(moved.get() + buf.len() as u64);
        let (sent, back) = to.send(buf).await;
        buf = back;
        if sent.is_err() {
            give_back(buf);
            return;
        }
    }
    buf.clear();
    if buf.capacity() == 0 {
        buf = take_buffer();
    }
    loop {
        let (read, back) = from.recv(buf).await;
        buf = back;
        match read {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                activity.set(Instant::now());
                moved.set(moved.get() + n as u64);
            }
        }
        let (sent, back) = to.send(buf).await;
        buf = back;
        if sent.is_err() {
            break;
        }
        buf.clear();
    }
    give_back(buf);
}

/// Waits for the tunnel's idle, lifetime or drain limit, on the worker's coarse timer.
async fn watch(activity: &Cell<Instant>, limits: TunnelLimits, drain: &DrainSignal) -> TunnelEnd {
    let lifetime_end = limits.lifetime.map(|l| Instant::now() + l);
    let mut drain_end = drain.is_started().then(|| Instant::now() + limits.drain);
    loop {
        let now = Instant::now();
        let idle_end = activity.get() + limits.idle;
        let (next, end) = [
            (Some(idle_end), TunnelEnd::Idle),
            (lifetime_end, TunnelEnd::Lifetime),
            (drain_end, TunnelEnd::Drained),
        ]
        .into_iter()
        .filter_map(|(at, end)| Some((at?, end)))
        .min_by_key(|(at, _)| *at)
        .unwrap_or((idle_end, TunnelEnd::Idle));
        if next <= now {
            return end;
        }
        let wait = deadline::after(next - now);
        if drain_end.is_some() {
            wait.await;
            continue;
        }
        monoio::select! {
            _ = wait => {}
            _ = drain.started() => drain_end = Some(Instant::now() + limits.drain),
        }
    }
}

impl<S: AsyncReadRent + AsyncWriteRent + IntoDuplex + StreamBody> ClientConn<S> {
    /// Runs the tunnel once the 101 went to the client, then counts it. The upstream
    /// connection closes with `response`; the caller closes the client's.
    pub(super) async fn tunnel(&mut self, config: &Config, mut response: Response<'_>) {
        let timeouts = &config.server.timeouts;
        let limits = TunnelLimits {
            idle: timeouts.tunnel_idle,
            lifetime: timeouts.tunnel_lifetime,
            drain: timeouts.drain,
        };
        let worker = Rc::clone(&self.worker);
        worker.observers.borrow_mut().metrics.tunnels.opened();
        let opened = Instant::now();
        let client_ahead = std::mem::take(&mut self.buf);
        let upstream_ahead = std::mem::take(&mut response.conn.buf);
        let plain = (self.stream.tcp_fd(), response.conn.stream.tcp_fd());
        let stats = if let (Some(client), Some(upstream)) = plain {
            let ahead = [client_ahead, upstream_ahead];
            (worker.tunnels)
                .run([client, upstream], ahead, limits, &worker.drain)
                .await
        } else {
            run(
                &self.stream.duplex(),
                client_ahead,
                &response.conn.stream.duplex(),
                upstream_ahead,
                limits,
                &worker.drain,
            )
            .await
        };
        drop(response);
        worker.observers.borrow_mut().metrics.tunnels.closed(
            stats.upstream,
            stats.downstream,
            opened.elapsed(),
        );
        self.rec.bytes_in += stats.upstream;
        self.rec.bytes_out += stats.downstream;
        tracing::debug!(
            end = stats.end.as_str(),
            upstream = stats.upstream,
            downstream = stats.downstream,
            "tunnel closed"
        );
    }
}
