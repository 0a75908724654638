//! Forwarding one request to an upstream and its response back: pick an endpoint, take a
//! pooled connection or open one, send the head (and the body, streamed), read the
//! response head, stream the response body, and give the connection back to the pool when
//! it is clean.
//!
//! A pooled connection can turn out dead only once the request meets it. The request is
//! then sent again on a fresh connection when that is safe: nothing came back, the whole
//! body is still in hand, and the method is idempotent.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::net::TcpStream;

use super::body::{Encode, Pump, PumpError};
use super::io::{read_more, write_out, write_within, ReadFail};
use super::ClientConn;
use crate::config::{Config, ProxyAction};
use crate::error::ProxyError;
use crate::http1::encode::{
    encode_request_head, encode_response_head, ClientBody, ClientFraming, ForwardedRequest,
    UpstreamHost,
};
use crate::http1::request::Method;
use crate::http1::{
    find_head_end, parse_response_head, BodyFraming, RequestHead, ResponseHead, Version,
};
use crate::upstream::UpstreamConn;

/// Read buffer per upstream connection.
const UPSTREAM_READ_BYTES: usize = 16 * 1024;
/// Upstream response heads larger than this are refused (502).
const MAX_RESPONSE_HEAD_BYTES: usize = 64 * 1024;
/// Request bodies up to this size that arrived with the head are sent in the same write.
const INLINE_BODY_BYTES: usize = 64 * 1024;

/// Where the request stands when the upstream exchange fails.
enum Failure {
    /// Nothing was answered yet: send this error to the client.
    Answer(ProxyError),
    /// The client side broke or a response was already under way: just close.
    Abort,
}

impl<S: AsyncReadRent + AsyncWriteRent> ClientConn<S> {
    /// Proxies one request; returns whether the client connection may carry another.
    pub(super) async fn forward(
        &mut self,
        config: &Arc<Config>,
        action: &ProxyAction,
        raw: Bytes,
        head: RequestHead,
    ) -> bool {
        let keep_alive = match self.exchange(config, action, &raw, &head).await {
            Ok(keep_alive) => keep_alive,
            Err(Failure::Answer(error)) => {
                // The request body may be half read: the connection cannot continue.
                let _ = self.answer_error(error, head.version, false).await;
                false
            }
            Err(Failure::Abort) => false,
        };
        keep_alive && head.keep_alive
    }

    async fn exchange(
        &mut self,
        config: &Arc<Config>,
        action: &ProxyAction,
        raw: &Bytes,
        head: &RequestHead,
    ) -> Result<bool, Failure> {
        let timeouts = &config.server.timeouts;
        let upstream_config = &config.upstreams[action.upstream];
        if let BodyFraming::Length(n) = head.framing {
            if n as usize <= INLINE_BODY_BYTES && (self.buf.len() as u64) < n {
                self.read_small_body(config, head, n as usize).await?;
            }
        }
        // The worker's state was synced to `config` when this request's head completed, and
        // nothing awaited since, so it is there.
        let endpoint = self
            .worker
            .upstreams
            .borrow_mut()
            .get(config, action.upstream)
            .and_then(|state| state.balancer.pick())
            .ok_or(Failure::Answer(ProxyError::NoEndpoint))?;
        let endpoint_addr = upstream_config.endpoints[endpoint].addr;

        // The upstream head, followed by the body when it all arrived with the head.
        let inline_body = match head.framing {
            BodyFraming::Length(n)
                if n as usize <= self.buf.len() && n as usize <= INLINE_BODY_BYTES =>
            {
                Some(n as usize)
            }
            _ => None,
        };
        let endpoint_host;
        let host = if action.preserve_host {
            UpstreamHost::Preserve
        } else if let Some(rewrite) = &action.host_rewrite {
            UpstreamHost::Rewrite(rewrite.as_bytes())
        } else {
            endpoint_host = endpoint_addr.to_string();
            UpstreamHost::Rewrite(endpoint_host.as_bytes())
        };
        let forwarded = ForwardedRequest {
            target: strip_prefix(head.target(raw), action.strip_prefix.as_deref()),
            host,
            client_ip: &self.client_ip,
            scheme: b"http",
        };
        let mut request = BytesMut::with_capacity(raw.len() + 256 + inline_body.unwrap_or(0));
        encode_request_head(&mut request, raw, head, &forwarded, head.framing);
        if let Some(n) = inline_body {
            request.extend_from_slice(&self.buf.split_to(n));
        }
        // Kept whole until a response arrives, so that a retry can send it again.
        let request = request.freeze();

        // Send, on a pooled connection first; again on a fresh one if the pooled one was dead.
        let replayable = inline_body.is_some() || head.framing == BodyFraming::Length(0);
        let mut fresh_only = false;
        let (mut upstream, response) = loop {
            let mut upstream = self
                .upstream_conn(config, action.upstream, endpoint, fresh_only)
                .await?;
            let reused = upstream.reused;
            let retry = reused && replayable && head.method.is_idempotent();
            let written = write_within(
                &mut upstream.stream,
                request.clone(),
                timeouts.upstream_response,
            )
            .await;
            match written {
                Ok((Ok(_), _)) => {}
                _ if reused && replayable => {
                    // The pooled connection was dead before the request reached the upstream.
                    fresh_only = true;
                    continue;
                }
                _ => return Err(Failure::Answer(ProxyError::UpstreamConnect)),
            }
            if inline_body.is_none() && head.has_body() {
                self.send_request_body(config, head, &mut upstream).await?;
            }
            match read_response_head(&mut upstream, head, timeouts.upstream_response).await {
                Ok(response) => break (upstream, response),
                Err(ProxyError::UpstreamClosed) if retry => fresh_only = true,
                Err(error) => return Err(Failure::Answer(error)),
            }
        };
        let response_keep_alive = self
            .relay_response(config, head, &mut upstream, response)
            .await?;
        if response_keep_alive.upstream_reusable {
            // After a reload during the exchange the state is another snapshot's: the
            // connection is then closed rather than pooled under the wrong index.
            if let Some(state) = self
                .worker
                .upstreams
                .borrow_mut()
                .get(config, action.upstream)
            {
                state.pools[endpoint].checkin(upstream, Instant::now());
            }
        }
        Ok(response_keep_alive.client)
    }

    async fn upstream_conn(
        &mut self,
        config: &Arc<Config>,
        upstream: usize,
        endpoint: usize,
        fresh_only: bool,
    ) -> Result<UpstreamConn, Failure> {
        if !fresh_only {
            let pooled = self
                .worker
                .upstreams
                .borrow_mut()
                .get(config, upstream)
                .and_then(|state| state.pools[endpoint].checkout(Instant::now()));
            if let Some(conn) = pooled {
                return Ok(conn);
            }
        }
        let addr = config.upstreams[upstream].endpoints[endpoint].addr;
        match monoio::time::timeout(
            config.server.timeouts.upstream_connect,
            TcpStream::connect_addr(addr),
        )
        .await
        {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                Ok(UpstreamConn {
                    stream,
                    buf: BytesMut::with_capacity(UPSTREAM_READ_BYTES),
                    reused: false,
                })
            }
            Ok(Err(_)) => Err(Failure::Answer(ProxyError::UpstreamConnect)),
            Err(_) => Err(Failure::Answer(ProxyError::UpstreamConnectTimeout)),
        }
    }

    /// Reads a small request body whole before any upstream connection is taken, so that a
    /// slow client holds no upstream connection and the request stays replayable.
    async fn read_small_body(
        &mut self,
        config: &Config,
        head: &RequestHead,
        len: usize,
    ) -> Result<(), Failure> {
        self.send_continue(head).await?;
        while self.buf.len() < len {
            let missing = len - self.buf.len();
            match read_more(
                &mut self.stream,
                &mut self.buf,
                missing,
                config.server.timeouts.body_read,
            )
            .await
            {
                Ok(0) | Err(ReadFail::Io) => return Err(Failure::Abort),
                Ok(_) => {}
                Err(ReadFail::Timeout) => return Err(Failure::Answer(ProxyError::BodyTimeout)),
            }
        }
        Ok(())
    }

    /// Sends `100 Continue` when the client waits for it before sending its body
    /// (RFC 9110 §10.1.1) and has not started anyway.
    async fn send_continue(&mut self, head: &RequestHead) -> Result<(), Failure> {
        if head.expect_continue && self.buf.is_empty() {
            let mut out = std::mem::take(&mut self.out);
            out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            self.out = write_out(&mut self.stream, out, self.send_timeout)
                .await
                .map_err(|_| Failure::Abort)?;
        }
        Ok(())
    }

    /// Streams the part of the request body that did not come with the head.
    async fn send_request_body(
        &mut self,
        config: &Config,
        head: &RequestHead,
        upstream: &mut UpstreamConn,
    ) -> Result<(), Failure> {
        self.send_continue(head).await?;
        let pump = Pump {
            from: head.framing,
            encode: if head.framing == BodyFraming::Chunked {
                Encode::Chunked
            } else {
                Encode::Raw
            },
            max_bytes: config.server.limits.max_body_bytes,
            read_timeout: config.server.timeouts.body_read,
            write_timeout: config.server.timeouts.upstream_response,
        };
        let out = std::mem::take(&mut self.out);
        match pump
            .run(&mut self.stream, &mut self.buf, &mut upstream.stream, out)
            .await
        {
            Ok(out) => {
                self.out = out;
                Ok(())
            }
            Err(PumpError::Read(ReadFail::Timeout)) => {
                Err(Failure::Answer(ProxyError::BodyTimeout))
            }
            Err(PumpError::Read(ReadFail::Io) | PumpError::ReadClosed) => Err(Failure::Abort),
            Err(PumpError::BadChunk) => Err(Failure::Answer(ProxyError::BadChunk)),
            Err(PumpError::TooLarge) => Err(Failure::Answer(ProxyError::BodyTooLarge)),
            Err(PumpError::Write) => Err(Failure::Answer(ProxyError::UpstreamClosed)),
        }
    }

    /// Sends the upstream's response to the client: informational heads as they come, then
    /// the final head and its body, re-framed for the client.
    async fn relay_response(
        &mut self,
        config: &Config,
        request: &RequestHead,
        upstream: &mut UpstreamConn,
        mut response: (Bytes, ResponseHead),
    ) -> Result<Reuse, Failure> {
        let timeout = config.server.timeouts.upstream_response;
        while response.1.status < 200 {
            if response.1.status == 101 {
                // Protocol upgrades are not supported yet; we never asked for one.
                return Err(Failure::Answer(ProxyError::UpstreamBadResponse));
            }
            if request.version == Version::Http11 && response.1.status != 100 {
                let mut out = std::mem::take(&mut self.out);
                let framing = ClientFraming {
                    body: ClientBody::None {
                        content_length: None,
                    },
                    keep_alive: true,
                    client_version: Version::Http11,
                };
                encode_response_head(&mut out, &response.0, &response.1, &framing);
                self.out = write_out(&mut self.stream, out, self.send_timeout)
                    .await
                    .map_err(|_| Failure::Abort)?;
            }
            response = read_response_head(upstream, request, timeout)
                .await
                .map_err(Failure::Answer)?;
        }
        let (raw, head) = response;
        let is_http11 = request.version == Version::Http11;
        let mut client_keep_alive = request.keep_alive && !self.worker.drain.is_started();
        let (encode, body) = match head.framing {
            _ if request.method == Method::Head || head.status == 304 => (
                Encode::Raw,
                ClientBody::None {
                    content_length: content_length_of(&raw, &head),
                },
            ),
            _ if head.status == 204 => (
                Encode::Raw,
                ClientBody::None {
                    content_length: None,
                },
            ),
            BodyFraming::Length(n) => (Encode::Raw, ClientBody::Length(n)),
            BodyFraming::Chunked | BodyFraming::UntilClose if is_http11 => {
                (Encode::Chunked, ClientBody::Chunked)
            }
            BodyFraming::Chunked | BodyFraming::UntilClose => {
                // An HTTP/1.0 client can only find the end of this body at the close.
                client_keep_alive = false;
                (Encode::Raw, ClientBody::UntilClose)
            }
        };
        let client_framing = ClientFraming {
            body,
            keep_alive: client_keep_alive,
            client_version: request.version,
        };
        let mut out = std::mem::take(&mut self.out);
        encode_response_head(&mut out, &raw, &head, &client_framing);
        let pump = Pump {
            from: head.framing,
            encode,
            max_bytes: u64::MAX,
            read_timeout: timeout,
            write_timeout: self.send_timeout,
        };
        match pump
            .run(
                &mut upstream.stream,
                &mut upstream.buf,
                &mut self.stream,
                out,
            )
            .await
        {
            Ok(out) => self.out = out,
            Err(_) => return Err(Failure::Abort),
        }
        Ok(Reuse {
            client: client_keep_alive,
            upstream_reusable: head.keep_alive && upstream.buf.is_empty(),
        })
    }
}

/// What may continue after a response: the client connection, the upstream connection.
struct Reuse {
    client: bool,
    upstream_reusable: bool,
}

/// Reads and parses one response head from `upstream`.
async fn read_response_head(
    upstream: &mut UpstreamConn,
    request: &RequestHead,
    timeout: std::time::Duration,
) -> Result<(Bytes, ResponseHead), ProxyError> {
    let deadline = Instant::now() + timeout;
    let mut scanned = 0;
    loop {
        if let Some(end) = find_head_end(&upstream.buf, scanned) {
            let raw = upstream.buf.split_to(end).freeze();
            let head = parse_response_head(&raw, request.method == Method::Head)?;
            return Ok((raw, head));
        }
        scanned = upstream.buf.len();
        if scanned > MAX_RESPONSE_HEAD_BYTES {
            return Err(ProxyError::UpstreamBadResponse);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match read_more(
            &mut upstream.stream,
            &mut upstream.buf,
            UPSTREAM_READ_BYTES / 2,
            left,
        )
        .await
        {
            Ok(0) | Err(ReadFail::Io) if scanned == 0 => return Err(ProxyError::UpstreamClosed),
            Ok(0) | Err(ReadFail::Io) => return Err(ProxyError::UpstreamBadResponse),
            Ok(_) => {}
            Err(ReadFail::Timeout) => return Err(ProxyError::UpstreamTimeout),
        }
    }
}

/// The Content-Length an upstream declared on a bodiless response (HEAD, 304), if any.
fn content_length_of(raw: &[u8], head: &ResponseHead) -> Option<u64> {
    head.headers
        .iter()
        .find(|h| h.name(raw).eq_ignore_ascii_case(b"content-length"))
        .and_then(|h| crate::http1::headers::parse_content_length(h.value(raw)))
}

/// Removes `prefix` from the front of `target` at a segment boundary (`/users` strips
/// `/users` and `/users/1`, not `/usersX`). The result may be empty or start with `?`; the
/// encoder then sends `/` in front.
fn strip_prefix<'a>(target: &'a [u8], prefix: Option<&str>) -> &'a [u8] {
    let Some(prefix) = prefix.map(str::as_bytes) else {
        return target;
    };
    let prefix = prefix.strip_suffix(b"/").unwrap_or(prefix);
    match target.strip_prefix(prefix) {
        Some(rest) if rest.is_empty() || rest[0] == b'/' || rest[0] == b'?' => rest,
        _ => target,
    }
}

#[cfg(test)]
mod tests {
    use super::strip_prefix;

    #[test]
    fn prefix_is_stripped_at_segment_boundaries() {
        let cases: &[(&str, Option<&str>, &str)] = &[
            ("/users/1", Some("/users"), "/1"),
            ("/users/1", Some("/users/"), "/1"),
            ("/users", Some("/users"), ""),
            ("/users?x=1", Some("/users"), "?x=1"),
            ("/usersX", Some("/users"), "/usersX"),
            ("/other", Some("/users"), "/other"),
            ("/users/1", None, "/users/1"),
        ];
        for (target, prefix, want) in cases {
            assert_eq!(
                strip_prefix(target.as_bytes(), *prefix),
                want.as_bytes(),
                "{target} {prefix:?}"
            );
        }
    }
}
