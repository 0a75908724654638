//! Idle keep-alive connections to one endpoint, owned by one worker.
//!
//! The most recently returned connection is reused first, so the pool holds what the recent
//! peak concurrency needed: a connection is only opened when none is idle, and those a
//! quieter period leaves unused age at the front until the idle timeout closes them. The
//! `max_idle` cap is only a bound; set low, it makes busy workers close and reopen.
//! Connections come back only after a response was read completely and the upstream left
//! the connection open with nothing unread. A connection is not reused past the pool's idle
//! timeout, and one that sat idle for a while is probed first (a non-blocking peek at the
//! socket, and for TLS at the session's buffers): if the upstream closed it meanwhile, the
//! request never touches it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::config::PoolConfig;
use super::stream::UpstreamStream;
use crate::io::{give_back, take_buffer};

/// Idle longer than this, a pooled connection is probed before reuse. Below it, the
/// upstream had no time to close it and the probe's syscall is skipped.
const PROBE_AFTER_IDLE: Duration = Duration::from_secs(1);

/// An open connection to an upstream endpoint and its read buffer.
pub struct UpstreamConn {
    pub stream: UpstreamStream,
    pub buf: BytesMut,
    /// Taken from the pool rather than freshly connected.
    pub reused: bool,
    /// The client and listener addresses its PROXY header announced (`None`: no header,
    /// or a LOCAL one). It serves only requests that would announce the same.
    pub announced: Option<(SocketAddr, SocketAddr)>,
}

pub struct EndpointPool {
    config: PoolConfig,
    idle: VecDeque<(UpstreamConn, Instant)>,
    /// The shared connection of an HTTP/2 upstream (`h2.rs`), whose streams are never
    /// pooled: each request opens one. With when a stream last started on it.
    pub h2: Option<(std::rc::Rc<super::h2::H2Connection>, Instant)>,
}

impl EndpointPool {
    pub fn new(config: PoolConfig) -> Self {
        EndpointPool {
            config,
            idle: VecDeque::new(),
            h2: None,
        }
    }

    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// The most recently returned live connection that announced `announced`, if any.
    /// Without PROXY headers every connection announced `None`, so the newest is taken.
    pub fn checkout(
        &mut self,
        now: Instant,
        announced: Option<(SocketAddr, SocketAddr)>,
    ) -> Option<UpstreamConn> {
        loop {
            let at = self
                .idle
                .iter()
                .rposition(|(conn, _)| conn.announced == announced)?;
            let (mut conn, since) = self.idle.remove(at)?;
            let idle = now.saturating_duration_since(since);
            if idle > self.config.idle_timeout {
                // Everything older is older still.
                self.idle.drain(..at);
                return None;
            }
            if idle >= PROBE_AFTER_IDLE && !conn.stream.is_open_and_quiet() {
                continue;
            }
            conn.reused = true;
            conn.buf = take_buffer();
            return Some(conn);
        }
    }

    /// Keeps `conn` for a later request, unless the pool is full. Its buffer (empty: only a
    /// connection with nothing unread comes back) goes back to the worker's spares.
    pub fn checkin(&mut self, mut conn: UpstreamConn, now: Instant) {
        if self.config.max_idle == 0 || matches!(conn.stream, UpstreamStream::H2(_)) {
            return;
        }
        give_back(std::mem::take(&mut conn.buf));
        if self.idle.len() >= self.config.max_idle {
            self.idle.pop_front();
        }
        self.idle.push_back((conn, now));
    }

    /// Closes connections idle past the timeout; run periodically so that idle sockets do
    /// not outlive their usefulness on quiet workers.
    pub fn evict_expired(&mut self, now: Instant) {
        // An HTTP/2 connection no stream started on for the idle timeout is let go: it
        // closes once the streams still on it end.
        if let Some((_, used)) = &self.h2 {
            if now.saturating_duration_since(*used) > self.config.idle_timeout {
                self.h2 = None;
            }
        }
        while let Some((_, since)) = self.idle.front() {
            if now.saturating_duration_since(*since) <= self.config.idle_timeout {
                break;
            }
            self.idle.pop_front();
        }
    }

    pub fn idle_count(&self) -> usize {
        self.idle.len()
    }
}
