//! Forwarding one request to an upstream and its response back: the request is rendered
//! for the upstream and sent by the upstream client (`upstream/client.rs`: endpoint pick,
//! pooled connect, retries, passive health, circuit breaker), its body streamed from the
//! client when it was not read whole; the response head and body are relayed to the
//! client, re-framed, and the connection goes back to the pool when it is clean.
//!
//! A body up to the upstream's `buffer_body` is read before any upstream connection is
//! taken, so that a retry (or the replacement of a dead pooled connection) can send it
//! again; larger bodies are streamed once.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};

use super::body::{Encode, Pump, PumpError};
use super::pipeline::{self, AnswerHead, ForwardedAdditions, UpstreamEdits};
use super::ClientConn;
use crate::config::{Config, ProxyAction};
use crate::error::ProxyError;
use crate::http1::encode::{
    encode_request_head, encode_response_head, AddedLines, ClientBody, ClientFraming,
    ForwardedRequest, UpstreamHost,
};
use crate::http1::headers::{is_websocket_upgrade, lists_token};
use crate::http1::request::Method;
use crate::http1::{BodyFraming, RequestHead, ResponseHead, Version};
use crate::http2::StreamBody;
use crate::io::{read_more, write_out, IntoDuplex, ReadFail};
use crate::observe::trace::{is_traceparent, traceparent_line, SpanContext};
use crate::observe::Outcome;
use crate::upstream::client::{
    read_response_head, Body, Client, Failure as SendFailure, Outgoing, Request, Response,
    UpstreamFailure,
};
use crate::upstream::config::BalancePolicy;
use crate::upstream::hash_key::request_key;
use crate::upstream::UpstreamConn;

/// The upgrade headers of a WebSocket handshake, sent upstream and relayed with its 101.
/// The client's own Connection and Upgrade are hop-by-hop and dropped like any others:
/// these replace them only when the route allows the upgrade.
const WEBSOCKET_UPGRADE_LINES: &[u8] = b"connection: upgrade\r\nupgrade: websocket\r\n";

/// How relaying the upstream's answer ended.
enum Relayed {
    /// A final response went out; whether the client connection may carry another.
    Done(bool),
    /// The upstream switched protocols and the 101 went out: the tunnel starts.
    Upgraded,
    /// The route's cache answers from its store instead (a 304 refreshed the stored
    /// answer, or a 5xx lets a stale one out): nothing was sent yet.
    FromStore,
}

/// Where the request stands when the upstream exchange fails.
pub(super) enum Failure {
    /// Nothing was answered yet: send this error to the client.
    Answer(ProxyError),
    /// The client side broke or a response was already under way: just close.
    Abort,
}

impl<S: AsyncReadRent + AsyncWriteRent + IntoDuplex + StreamBody> ClientConn<S> {
    /// What an upstream's PROXY header announces for this request: the client address (the
    /// peer's port with it when the client is the peer, else 0: a forwarded client's port is
    /// not known) and the address the connection reached Strait on.
    fn announced_addresses(&self) -> (SocketAddr, SocketAddr) {
        let (peer, local) = self.addresses;
        let client = self.ctx.client_addr;
        let port = if client == peer.ip() { peer.port() } else { 0 };
        (SocketAddr::new(client, port), local)
    }

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
            Err(Failure::Answer(error)) if super::cache::stale_on_error(&mut self.ctx, error) => {
                self.answer_stored(&raw, &head).await
            }
            Err(Failure::Answer(error)) => {
                // The request body may be half read: the connection cannot continue.
                let _ = self.answer_error(error, &[], head.version, false).await;
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
        let id = action.upstream;
        let upstream_config = &config.upstreams[id];
        // A route's JSON body edit reads the body whole and edits it (`body_edit.rs`).
        let edited = self.edited_request_body(config, raw, head).await?;
        let body_length = edited.as_ref().map(|body| body.len() as u64);
        // A body up to `buffer_body` is read whole before any upstream connection is
        // taken: a slow client then holds no upstream connection, and a retry can send the
        // body again. Larger bodies are streamed and never replayed.
        if let BodyFraming::Length(n) = head.framing {
            if edited.is_none()
                && n <= upstream_config.retry.buffer_body_bytes
                && (self.buf.len() as u64) < n
            {
                self.read_small_body(config, head, n as usize).await?;
            }
        }
        let body = match (edited, head.framing) {
            (Some(edited), _) => Body::InHand(edited),
            (None, BodyFraming::Length(n)) if n <= self.buf.len() as u64 => {
                let body = self.buf.split_to(n as usize).freeze();
                self.rec.bytes_in += body.len() as u64;
                Body::InHand(body)
            }
            (None, _) => Body::Streamed,
        };
        self.rec.upstream = Some(id);
        let upgrade = action.websocket && is_websocket_upgrade(raw, head);
        let request = Request {
            key: match &upstream_config.balance {
                BalancePolicy::Hash(key) => request_key(key, raw, head, &self.ctx.client_ip),
                _ => None,
            },
            body,
            retryable: head.method.is_idempotent() || action.retry_non_idempotent,
            idempotent: head.method.is_idempotent(),
            is_head: head.method == Method::Head,
            // A gRPC call's own deadline bounds the whole exchange.
            deadline: self
                .grpc
                .then(|| crate::http1::headers::header_value(raw, head, b"grpc-timeout"))
                .flatten()
                .and_then(crate::http2::grpc::timeout)
                .map(|t| Instant::now() + t),
            addresses: Some(self.announced_addresses()),
        };
        let started = Instant::now();
        // The client borrows the worker's upstream state while this connection is borrowed
        // for the body: a handle of its own keeps the two apart.
        let worker = Rc::clone(&self.worker);
        let mut client = Client::new(&worker.upstreams, config, id);
        let sent = {
            let ClientConn {
                stream,
                buf,
                out,
                peer_text,
                rec,
                ctx,
                send_timeout,
                ..
            } = &mut *self;
            // The route's filters edit the upstream's copy: an authenticated request's
            // credential stays here, its consumer and mapped claims go upstream.
            let edits = pipeline::upstream_edits(config, ctx);
            let mut outgoing = Upstreaming {
                head: UpstreamHead {
                    config,
                    scheme: if ctx.tls.is_some() { b"https" } else { b"http" },
                    action,
                    raw,
                    head,
                    peer_text,
                    request_id: &rec.request_id,
                    trace: rec.trace,
                    upgrade,
                    edits,
                    body_length,
                },
                client: ClientSide {
                    stream,
                    buf,
                    out,
                    send_timeout: *send_timeout,
                },
                streamed: 0,
            };
            let sent = client.send(&request, &mut outgoing).await;
            rec.bytes_in += outgoing.streamed;
            sent
        };
        self.rec.endpoint = client.endpoint();
        self.rec.retries = client.retries();
        let mut response = match sent {
            Ok(response) => response,
            Err(SendFailure::Upstream(failure)) => {
                self.rec.outcome = outcome_of(failure);
                return Err(Failure::Answer(failure.error));
            }
            Err(SendFailure::Body(failure)) => return Err(failure),
        };
        self.rec.upstream_time = Some(started.elapsed());
        self.rec.pool_hit = Some(response.conn.reused);
        // Dropped on failure: the connection closes and the request stops counting.
        match self
            .relay_response(config, (raw, head), upgrade, &mut response)
            .await?
        {
            Relayed::Done(keep_alive) => {
                response.finish();
                Ok(keep_alive)
            }
            Relayed::FromStore => {
                // A 304 has no body: its connection goes back to the pool. Another
                // answer's body is not read; its connection closes.
                if response.head.status == 304 {
                    response.finish();
                }
                Ok(self.answer_stored(raw, head).await)
            }
            Relayed::Upgraded => {
                // The upstream connection is the tunnel's, and closes with it.
                self.tunnel(config, response).await;
                Ok(false)
            }
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
        ClientSide {
            stream: &mut self.stream,
            buf: &mut self.buf,
            out: &mut self.out,
            send_timeout: self.send_timeout,
        }
        .send_continue(head)
        .await?;
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

    /// Sends the upstream's response to the client: informational heads as they come, then
    /// the final head and its body, re-framed for the client. Returns whether the client
    /// connection may carry another request; `response` ends with the final head and the
    /// body read whole. A 101 to an `upgrade` request goes out as it is, and the caller
    /// starts the tunnel.
    async fn relay_response(
        &mut self,
        config: &Config,
        (request_raw, request): (&[u8], &RequestHead),
        upgrade: bool,
        response: &mut Response<'_>,
    ) -> Result<Relayed, Failure> {
        let timeout = config.server.timeouts.upstream_response;
        while response.head.status < 200 {
            if response.head.status == 101 {
                // RFC 6455 §4.1: the switch must be to the protocol asked for. A 101 we
                // never asked for (no upgrade allowed) is as broken.
                let (raw, head) = (&response.raw, &response.head);
                if !upgrade || !lists_token(raw, &head.headers, b"upgrade", b"websocket") {
                    return Err(Failure::Answer(ProxyError::UpstreamBadResponse));
                }
                self.send_switch(config, response).await?;
                return Ok(Relayed::Upgraded);
            }
            if request.version == Version::Http11 && response.head.status != 100 {
                let mut out = std::mem::take(&mut self.out);
                let request_id = self.rec.request_id.clone();
                let framing = bodiless_framing(config, &request_id, &[], None);
                encode_response_head(&mut out, &response.raw, &response.head, &framing);
                self.out = write_out(&mut self.stream, out, self.send_timeout)
                    .await
                    .map_err(|_| Failure::Abort)?;
            }
            let is_head = request.method == Method::Head;
            (response.raw, response.head) =
                read_response_head(&mut response.conn, is_head, timeout)
                    .await
                    .map_err(Failure::Answer)?;
        }
        let (raw, head) = (&response.raw, &response.head);
        if let super::cache::HeadAction::ServeStored =
            super::cache::on_head(&mut self.ctx, (request_raw, request), raw, head)
        {
            return Ok(Relayed::FromStore);
        }
        // A route's JSON body edit reads the body whole and edits it (`body_edit.rs`).
        let request_facts = (request_raw, request, &self.rec.request_id[..]);
        let edited = super::body_edit::edited_response_body(
            config,
            &self.ctx,
            request_facts,
            (raw, head),
            &mut response.conn,
        )
        .await?;
        let is_http11 = request.version == Version::Http11;
        let mut client_keep_alive = request.keep_alive && !self.worker.drain.is_started();
        let (encode, body) = match head.framing {
            _ if edited.is_some() => {
                let length = edited.as_ref().map_or(0, |e| e.body.len() as u64);
                (Encode::Raw, ClientBody::Length(length))
            }
            _ if request.method == Method::Head || head.status == 304 => (
                Encode::Raw,
                ClientBody::None {
                    content_length: content_length_of(raw, head),
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
        let request_id = self.rec.request_id.clone();
        let filters = pipeline::filters_of(config, &self.ctx);
        let route = pipeline::route_of(config, &self.ctx);
        let mut additions = ForwardedAdditions::default();
        pipeline::response_filters(route, &self.ctx, AnswerHead::Forwarded(&mut additions));
        // An edited body's weakened ETag replaces the upstream's.
        let etag = edited.as_ref().and_then(|e| e.etag.as_deref());
        let (with_etag, n);
        let added = match etag {
            Some(lines) => {
                let etag = AddedLines {
                    lines,
                    replaces: Some(super::body_edit::is_etag),
                };
                (with_etag, n) = AddedLines::prepend(etag, additions.lines());
                &with_etag[..n]
            }
            None => additions.lines(),
        };
        let client_framing = ClientFraming {
            body,
            keep_alive: client_keep_alive,
            client_version: request.version,
            request_id: (
                config.observability.request_id_header.as_bytes(),
                &request_id,
            ),
            added,
            vary: additions.vary,
            edits: additions.edits(),
        };
        let mut out = std::mem::take(&mut self.out);
        encode_response_head(&mut out, raw, head, &client_framing);
        self.rec.status = additions.status(head.status);
        self.rec.bytes_out += out.len() as u64;
        if let Some(edited) = edited {
            out.extend_from_slice(&edited.body);
            self.rec.bytes_out += edited.body.len() as u64;
            self.out = write_out(&mut self.stream, out, self.send_timeout)
                .await
                .map_err(|_| {
                    self.rec.outcome = Outcome::Aborted;
                    Failure::Abort
                })?;
            return Ok(Relayed::Done(client_keep_alive));
        }
        let pump = Pump {
            from: head.framing,
            encode,
            max_bytes: u64::MAX,
            read_timeout: timeout,
            write_timeout: self.send_timeout,
        };
        let conn = &mut response.conn;
        let ctx = &mut self.ctx;
        match pump
            .run(
                &mut conn.stream,
                &mut conn.buf,
                &mut self.stream,
                out,
                |chunk| pipeline::body_filters(filters, ctx, chunk),
            )
            .await
        {
            Ok((out, payload)) => {
                self.out = out;
                self.rec.bytes_out += payload;
                super::cache::on_complete(&mut self.ctx);
            }
            Err(_) => {
                self.rec.outcome = Outcome::Aborted;
                return Err(Failure::Abort);
            }
        }
        Ok(Relayed::Done(client_keep_alive))
    }

    /// Sends the upstream's 101 to the client with the upgrade headers and the lines the
    /// response filters add (CORS, rate limits), as any answer gets them.
    async fn send_switch(
        &mut self,
        config: &Config,
        response: &Response<'_>,
    ) -> Result<(), Failure> {
        let request_id = self.rec.request_id.clone();
        let route = pipeline::route_of(config, &self.ctx);
        let mut additions = ForwardedAdditions::default();
        pipeline::response_filters(route, &self.ctx, AnswerHead::Forwarded(&mut additions));
        let upgrade_lines = AddedLines {
            lines: WEBSOCKET_UPGRADE_LINES,
            replaces: None,
        };
        // The upgrade lines, then each filter's (a route has at most one filter of a kind).
        let (added, n) = AddedLines::prepend(upgrade_lines, additions.lines());
        let framing = bodiless_framing(config, &request_id, &added[..n], additions.vary);
        let mut out = std::mem::take(&mut self.out);
        encode_response_head(&mut out, &response.raw, &response.head, &framing);
        self.rec.status = 101;
        self.rec.bytes_out += out.len() as u64;
        self.out = write_out(&mut self.stream, out, self.send_timeout)
            .await
            .map_err(|_| Failure::Abort)?;
        Ok(())
    }
}

/// How a failed upstream exchange shows in metrics and the access log.
fn outcome_of(failure: UpstreamFailure) -> Outcome {
    match failure.error {
        ProxyError::UpstreamConnect | ProxyError::UpstreamConnectTimeout => {
            Outcome::UpstreamConnectError
        }
        ProxyError::UpstreamTimeout => Outcome::UpstreamTimeout,
        _ => Outcome::Answered,
    }
}

/// The client connection's side of a request body: what `100 Continue` and the streamed
/// body need, borrowed apart from the rest of the connection.
struct ClientSide<'a, S> {
    stream: &'a mut S,
    buf: &'a mut BytesMut,
    out: &'a mut BytesMut,
    send_timeout: std::time::Duration,
}

impl<S: AsyncReadRent + AsyncWriteRent> ClientSide<'_, S> {
    /// Sends `100 Continue` when the client waits for it before sending its body
    /// (RFC 9110 §10.1.1) and has not started anyway.
    async fn send_continue(&mut self, head: &RequestHead) -> Result<(), Failure> {
        if head.expect_continue && self.buf.is_empty() {
            let mut out = std::mem::take(self.out);
            out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            *self.out = write_out(self.stream, out, self.send_timeout)
                .await
                .map_err(|_| Failure::Abort)?;
        }
        Ok(())
    }
}

/// The request as the upstream gets it: the head rendered for each endpoint, the body
/// streamed from the client when it was not read whole.
struct Upstreaming<'a, S> {
    head: UpstreamHead<'a>,
    client: ClientSide<'a, S>,
    /// Payload bytes of the body streamed.
    streamed: u64,
}

/// The client's request head as the upstream gets it, rendered for each endpoint tried.
pub(super) struct UpstreamHead<'a> {
    pub config: &'a Config,
    pub action: &'a ProxyAction,
    pub raw: &'a Bytes,
    pub head: &'a RequestHead,
    /// The TCP peer, appended to `X-Forwarded-For`.
    pub peer_text: &'a Bytes,
    /// How the client reached Strait (`X-Forwarded-Proto`): `http` or `https`.
    pub scheme: &'static [u8],
    pub request_id: &'a Bytes,
    pub trace: Option<SpanContext>,
    /// A WebSocket handshake on a route that allows it: the upgrade headers go upstream.
    pub upgrade: bool,
    pub edits: UpstreamEdits<'a>,
    /// The length of a body sent in place of the client's (a JSON body edit's), which
    /// then goes with this Content-Length whatever the client's framing.
    pub body_length: Option<u64>,
}

impl UpstreamHead<'_> {
    pub(super) fn write(&self, endpoint: std::net::SocketAddr, out: &mut BytesMut) {
        let action = self.action;
        let endpoint_host;
        // A client without a Host (HTTP/1.0 may omit it) leaves nothing to preserve: the
        // upstream gets the name it would get without `preserve_host`, as nginx sends.
        let host = if let Some(host) = self.edits.host {
            UpstreamHost::Rewrite(host)
        } else if action.preserve_host && self.head.authority(self.raw).is_some() {
            UpstreamHost::Preserve
        } else if let Some(rewrite) = &action.host_rewrite {
            UpstreamHost::Rewrite(rewrite.as_bytes())
        } else {
            endpoint_host = endpoint.to_string();
            UpstreamHost::Rewrite(endpoint_host.as_bytes())
        };
        let traceparent = self.trace.as_ref().map(traceparent_line);
        let trace = traceparent.as_ref().map(|lines| AddedLines {
            lines,
            replaces: Some(is_traceparent),
        });
        let upgrade = self.upgrade.then_some(AddedLines {
            lines: WEBSOCKET_UPGRADE_LINES,
            replaces: None,
        });
        // The trace context's line, then the upgrade's, each when there is one.
        let mut added = [AddedLines {
            lines: b"",
            replaces: None,
        }; 2];
        let mut n = 0;
        for lines in [trace, upgrade].into_iter().flatten() {
            added[n] = lines;
            n += 1;
        }
        let forwarded = ForwardedRequest {
            target: self.edits.target.unwrap_or_else(|| {
                strip_prefix(self.head.target(self.raw), action.strip_prefix.as_deref())
            }),
            host,
            client_ip: self.peer_text,
            scheme: self.scheme,
            request_id: (
                self.config.observability.request_id_header.as_bytes(),
                self.request_id,
            ),
            drop_headers: &self.edits.drop,
            set_headers: &self.edits.set,
            append_headers: &self.edits.append,
            added: &added[..n],
            method: self.edits.method,
        };
        let framing = self
            .body_length
            .map_or(self.head.framing, BodyFraming::Length);
        encode_request_head(out, self.raw, self.head, &forwarded, framing);
    }

    /// The client's head plus room for the lines Strait adds.
    pub(super) fn capacity(&self) -> usize {
        self.raw.len() + 256
    }
}

impl<S: AsyncReadRent + AsyncWriteRent + StreamBody> Outgoing for Upstreaming<'_, S> {
    type BodyError = Failure;

    fn write_head(&self, endpoint: std::net::SocketAddr, out: &mut BytesMut) {
        self.head.write(endpoint, out);
    }

    fn head_capacity(&self) -> usize {
        self.head.capacity()
    }

    /// Streams the part of the request body that did not come with the head. From an
    /// HTTP/2 client to an HTTP/2 upstream it goes stream to stream on a task of its own,
    /// while the answer comes back: both directions at once, as a bidirectional gRPC call
    /// needs.
    async fn stream_body(&mut self, upstream: &mut UpstreamConn) -> Result<(), Failure> {
        let (config, head) = (self.head.config, self.head.head);
        if upstream.stream.is_h2() {
            if let Some(from) = self.client.stream.take_stream_body() {
                if let Some(to) = upstream.stream.take_request_body() {
                    let max = config.server.limits.max_body_bytes;
                    monoio::spawn(crate::http2::body::pipe(from, to, max));
                }
                return Ok(());
            }
        }
        self.client.send_continue(head).await?;
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
        let client = &mut self.client;
        let out = std::mem::take(client.out);
        match pump
            .run(client.stream, client.buf, &mut upstream.stream, out, |_| {})
            .await
        {
            Ok((out, payload)) => {
                *client.out = out;
                self.streamed += payload;
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
pub(super) fn strip_prefix<'a>(target: &'a [u8], prefix: Option<&str>) -> &'a [u8] {
    let Some(prefix) = prefix.map(str::as_bytes) else {
        return target;
    };
    let prefix = prefix.strip_suffix(b"/").unwrap_or(prefix);
    match target.strip_prefix(prefix) {
        Some(rest) if rest.is_empty() || rest[0] == b'/' || rest[0] == b'?' => rest,
        _ => target,
    }
}

/// The framing of a head that carries no body and leaves the connection open: an interim
/// 1xx relayed to an HTTP/1.1 client, or the 101 that starts a tunnel.
fn bodiless_framing<'a>(
    config: &'a Config,
    request_id: &'a [u8],
    added: &'a [AddedLines<'a>],
    vary: Option<&'a [u8]>,
) -> ClientFraming<'a> {
    ClientFraming {
        body: ClientBody::None {
            content_length: None,
        },
        keep_alive: true,
        client_version: Version::Http11,
        request_id: (
            config.observability.request_id_header.as_bytes(),
            request_id,
        ),
        added,
        vary,
        edits: None,
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
