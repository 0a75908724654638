//! Background revalidation of a stored answer served stale within its
//! `stale-while-revalidate` (RFC 5861 §3): the client already has the stale answer; this
//! task, on the same worker, asks the upstream through the one upstream client (balancing,
//! breaker, retries, pools) with the stored answer's validators, and stores what comes
//! back: the stored answer refreshed by a 304, or the new answer. It holds the key's fill
//! while it runs, so that one revalidation runs per key and stale requests meanwhile are
//! answered at once.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::cache::Target;
use super::forward::UpstreamHead;
use super::introspect::read_answer_body;
use super::pipeline::UpstreamEdits;
use super::Worker;
use crate::cache::object::Object;
use crate::cache::policy;
use crate::cache::store::FillGuard;
use crate::config::{Action, Config};
use crate::http1::RequestHead;
use crate::upstream::client::{Body, Client, Outgoing, Request};
use crate::upstream::UpstreamConn;

/// A header (lower-case name, value) kept past its request.
type OwnedHeader = (Box<[u8]>, Box<[u8]>);

/// The route filters' edits of the upstream's copy of a request ([`UpstreamEdits`]),
/// owned: the request is gone when the revalidation runs.
pub(super) struct OwnedEdits {
    drop: Vec<Box<[u8]>>,
    set: Vec<OwnedHeader>,
    append: Vec<OwnedHeader>,
    target: Option<Box<[u8]>>,
    host: Option<Box<[u8]>>,
    method: Option<Box<[u8]>>,
}

impl From<&UpstreamEdits<'_>> for OwnedEdits {
    fn from(edits: &UpstreamEdits<'_>) -> Self {
        let owned = |pairs: &[(&[u8], &[u8])]| -> Vec<OwnedHeader> {
            pairs
                .iter()
                .map(|(name, value)| (Box::from(*name), Box::from(*value)))
                .collect()
        };
        OwnedEdits {
            drop: edits.drop.iter().map(|name| Box::from(*name)).collect(),
            set: owned(&edits.set),
            append: owned(&edits.append),
            target: edits.target.map(Box::from),
            host: edits.host.map(Box::from),
            method: edits.method.map(Box::from),
        }
    }
}

impl OwnedEdits {
    fn borrowed(&self) -> UpstreamEdits<'_> {
        fn pairs(pairs: &[OwnedHeader]) -> Vec<(&[u8], &[u8])> {
            pairs.iter().map(|(n, v)| (&n[..], &v[..])).collect()
        }
        UpstreamEdits {
            drop: self.drop.iter().map(|name| &name[..]).collect(),
            set: pairs(&self.set),
            append: pairs(&self.append),
            target: self.target.as_deref(),
            host: self.host.as_deref(),
            method: self.method.as_deref(),
        }
    }
}

/// What the revalidation needs of the request that found the answer stale, owned.
pub(super) struct Refresh {
    pub config: Arc<Config>,
    pub route: usize,
    pub raw: Bytes,
    pub head: RequestHead,
    pub peer_text: Bytes,
    pub scheme: &'static [u8],
    pub request_id: Bytes,
    /// The route filters' edits of the upstream's copy.
    pub edits: OwnedEdits,
    pub target: Target,
    pub stale: Arc<Object>,
    pub fill: FillGuard<Object>,
}

impl Refresh {
    /// Runs the revalidation to its end; every failure leaves the stale answer as it is.
    pub(super) async fn run(self, worker: Rc<Worker>) {
        let config = self.config.clone();
        let Some(Action::Proxy(action)) = config.routes.routes().get(self.route).map(|r| &r.action)
        else {
            return;
        };
        let deadline = Instant::now() + config.server.timeouts.upstream_response;
        let request = Request {
            key: None,
            body: Body::InHand(Bytes::new()),
            retryable: true,
            idempotent: true,
            is_head: false,
            deadline: Some(deadline),
            addresses: None,
        };
        let mut edits = self.edits.borrowed();
        super::cache::add_validators(&self.stale, &mut edits);
        let mut outgoing = Revalidation(UpstreamHead {
            config: &config,
            action,
            raw: &self.raw,
            head: &self.head,
            peer_text: &self.peer_text,
            scheme: self.scheme,
            request_id: &self.request_id,
            trace: None,
            upgrade: false,
            edits,
            body_length: None,
        });
        let mut client = Client::new(&worker.upstreams, &config, action.upstream);
        let Ok(mut response) = client.send(&request, &mut outgoing).await else {
            return;
        };
        let now = super::cache::unix_now();
        let request_fields = (&self.raw[..], &self.head);
        let answer = (&response.raw[..], &response.head.headers[..]);
        if response.head.status == 304 {
            if policy::validates(self.stale.fields(), answer) {
                self.target
                    .refreshed(&self.stale, request_fields, answer, now);
            }
            response.finish();
            return;
        }
        let rules = policy::StoreRules {
            store_set_cookie: false,
        };
        let request_headers = (&self.raw[..], &self.head.headers[..]);
        if policy::storable(request_headers, response.head.status, answer, &rules).is_err() {
            return;
        }
        let max = usize::try_from(self.target.cache.max_object).unwrap_or(usize::MAX);
        let framing = response.head.framing;
        let Ok(body) = read_answer_body(&mut response.conn, framing, deadline, max).await else {
            return;
        };
        let object = self
            .target
            .object(response.raw.clone(), response.head.clone(), body, now);
        self.target.store(request_fields, &object);
        response.finish();
        drop(self.fill);
    }
}

/// The revalidation request: the client's head with the validators, no body.
struct Revalidation<'a>(UpstreamHead<'a>);

impl Outgoing for Revalidation<'_> {
    type BodyError = Infallible;

    fn write_head(&self, endpoint: SocketAddr, out: &mut BytesMut) {
        self.0.write(endpoint, out);
    }

    fn head_capacity(&self) -> usize {
        self.0.capacity()
    }

    /// Never called: there is no body.
    async fn stream_body(&mut self, _: &mut UpstreamConn) -> Result<(), Infallible> {
        Ok(())
    }
}
