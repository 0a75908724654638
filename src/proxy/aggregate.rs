//! Serving an `aggregate` route (`aggregate/`): after the route's request filters, every
//! part is called concurrently on this worker (joined futures of the one task), each through
//! the one upstream client (pools, balancing, health, retries, breaker); a part whose
//! templates read another's answer (`{steps.NAME.a.b}`) starts as soon as that one has
//! ended. The answers are field-filtered, combined and sent as one JSON
//! answer; the response filters add their lines as for any local answer. Each part carries
//! the request's `traceparent` (the request's span is its parent); the parts are not spans
//! of their own.
//!
//! Invariants: every part ends by `min(its timeout, the route's deadline)` (connect, head
//! and body); a part's body is read whole up to its `max_bytes` and its connection goes back
//! to the pool only then; a required part's failure answers 502 (504 for a timeout) naming
//! the part, and the calls still under way are dropped. The request holds its config snapshot (`Arc<Config>`)
//! throughout, so a reload meanwhile changes nothing for it.

use std::cell::RefCell;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use serde_json::Value;

use super::facts::{query_of, RequestFacts};
use super::introspect::read_answer_body;
use super::{ClientConn, Worker};
use crate::aggregate::combine::{combine, CombineError};
use crate::aggregate::{Aggregate, Part};
use crate::config::{Config, Route};
use crate::error::ProxyError;
use crate::http1::request::Method;
use crate::http1::{BodyFraming, RequestHead};
use crate::http2::StreamBody;
use crate::io::IntoDuplex;
use crate::observe::trace::{is_traceparent, traceparent_line, SpanContext};
use crate::observe::{AggregatePart, Outcome};
use crate::transform::template::{Escape, Fact, FactValue, Facts};
use crate::upstream::client::{Body, Client, Failure, Outgoing, Request};
use crate::upstream::UpstreamConn;

/// Why a part gave no usable answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartError {
    Connect,
    Timeout,
    /// No usable endpoint, or the breaker's limits are reached.
    Unavailable,
    /// A non-2xx status.
    Status,
    /// A malformed answer, or one that broke off.
    BadAnswer,
    /// A body over the part's `max_bytes`.
    TooLarge,
    NotJson,
    /// A step it names gave no answer (an optional part that failed).
    StepFailed,
}

impl PartError {
    /// The aggregation's status when a required part fails so.
    fn status(self) -> u16 {
        if self == PartError::Timeout {
            504
        } else {
            502
        }
    }

    /// The `result` label of metrics and the log, and the error answer's `reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            PartError::Connect => "connect_error",
            PartError::Timeout => "timeout",
            PartError::Unavailable => "unavailable",
            PartError::Status => "bad_status",
            PartError::BadAnswer => "bad_answer",
            PartError::TooLarge => "too_large",
            PartError::NotJson => "not_json",
            PartError::StepFailed => "step_failed",
        }
    }

    fn of(error: ProxyError) -> Self {
        match error {
            ProxyError::UpstreamConnect => PartError::Connect,
            ProxyError::UpstreamTimeout | ProxyError::UpstreamConnectTimeout => PartError::Timeout,
            ProxyError::NoEndpoint | ProxyError::Overloaded => PartError::Unavailable,
            _ => PartError::BadAnswer,
        }
    }
}

/// One part's outcome.
struct PartOutcome {
    /// The upstream's status; 0 without an answer.
    status: u16,
    elapsed: Duration,
    answer: Result<Value, PartError>,
}

impl<S: AsyncReadRent + AsyncWriteRent + IntoDuplex + StreamBody> ClientConn<S> {
    /// Answers an aggregate route; returns whether the connection may carry another request.
    pub(super) async fn aggregate(
        &mut self,
        config: &Arc<Config>,
        route: &Route,
        aggregate: &Aggregate,
        raw: &Bytes,
        head: &RequestHead,
    ) -> bool {
        let keep_alive = head.keep_alive && self.discard_buffered_body(head);
        let deadline = Instant::now() + aggregate.deadline;
        let worker = Rc::clone(&self.worker);
        let facts = RequestFacts {
            raw,
            head,
            route,
            client_ip: &self.ctx.client_ip,
            request_id: &self.rec.request_id,
            identity: self.ctx.identity.as_ref(),
        };
        let run = Run {
            worker: &worker,
            config,
            aggregate,
            facts: &facts,
            id_header: config.observability.request_id_header.as_bytes(),
            trace: self.rec.trace,
            deadline,
            outcomes: RefCell::new(Vec::new()),
        };
        run.outcomes
            .borrow_mut()
            .resize_with(aggregate.parts.len(), || None);
        let calls = (0..aggregate.parts.len())
            .map(|i| Box::pin(run.part(i)) as PartCall<'_>)
            .collect();
        Gather::new(calls, &run).await;
        let outcomes = run.outcomes.take();
        self.rec.aggregate = aggregate
            .parts
            .iter()
            .zip(&outcomes)
            .filter_map(|(part, outcome)| {
                let outcome = outcome.as_ref()?;
                Some(AggregatePart {
                    name: Arc::clone(&part.name),
                    status: outcome.status,
                    elapsed: outcome.elapsed,
                    result: outcome.answer.as_ref().err().map_or("ok", |e| e.as_str()),
                })
            })
            .collect();
        let (status, body, partial) = answer(aggregate, outcomes);
        self.rec.status = status;
        if status == 504 {
            self.rec.outcome = Outcome::UpstreamTimeout;
        }
        let mut out = std::mem::take(&mut self.out);
        out.extend_from_slice(match status {
            200 => &b"HTTP/1.1 200 OK\r\n"[..],
            504 => b"HTTP/1.1 504 Gateway Timeout\r\n",
            _ => b"HTTP/1.1 502 Bad Gateway\r\n",
        });
        out.extend_from_slice(b"content-type: application/json\r\n");
        crate::http1::encode::write_content_length(&mut out, body.len() as u64);
        if !partial.is_empty() {
            out.extend_from_slice(&aggregate.partial_header);
            out.extend_from_slice(b": ");
            out.extend_from_slice(&partial);
            out.extend_from_slice(b"\r\n");
        }
        let is_head = head.method == Method::Head;
        self.finish_local_answer(out, &body, keep_alive, head.version, is_head)
            .await
            && keep_alive
    }
}

/// The status, body and partial-header value (empty: complete) of the aggregation.
fn answer(aggregate: &Aggregate, outcomes: Vec<Option<PartOutcome>>) -> (u16, Vec<u8>, Vec<u8>) {
    // The required part that failed, not one abandoned because of it.
    let failed = aggregate
        .parts
        .iter()
        .zip(&outcomes)
        .find_map(|(part, outcome)| {
            let error = *outcome.as_ref()?.answer.as_ref().err()?;
            part.required.then_some((part, error))
        });
    if let Some((part, error)) = failed {
        return part_failed(part, error);
    }
    let mut partial = Vec::new();
    let mut answers = Vec::with_capacity(outcomes.len());
    for (part, outcome) in aggregate.parts.iter().zip(outcomes) {
        let answer = outcome.map_or(Err(PartError::StepFailed), |o| o.answer);
        match answer {
            Ok(mut value) => {
                part.fields.apply(&mut value);
                answers.push(value);
            }
            Err(error) if part.required => return part_failed(part, error),
            Err(_) => {
                if !partial.is_empty() {
                    partial.extend_from_slice(b", ");
                }
                partial.extend_from_slice(part.name.as_bytes());
                answers.push(Value::Null);
            }
        }
    }
    let names: Vec<&str> = aggregate.parts.iter().map(|p| &*p.name).collect();
    match combine(aggregate.combine, &names, answers) {
        Ok(value) => (200, value.to_string().into_bytes(), partial),
        Err(CombineError::Conflict { field, part }) => {
            let body = serde_json::json!({
                "error": "aggregate merge conflict",
                "part": names.get(part),
                "field": field,
                "status": 502,
            });
            (502, json_line(&body), Vec::new())
        }
        Err(CombineError::NotObject { part }) => {
            let body = serde_json::json!({
                "error": "aggregate part answered no JSON object",
                "part": names.get(part),
                "status": 502,
            });
            (502, json_line(&body), Vec::new())
        }
    }
}

/// The gateway's JSON error form, naming the part that failed and why.
fn part_failed(part: &Part, error: PartError) -> (u16, Vec<u8>, Vec<u8>) {
    let status = error.status();
    let body = serde_json::json!({
        "error": "aggregate part failed",
        "part": &*part.name,
        "reason": error.as_str(),
        "status": status,
    });
    (status, json_line(&body), Vec::new())
}

fn json_line(value: &Value) -> Vec<u8> {
    let mut body = value.to_string().into_bytes();
    body.push(b'\n');
    body
}

/// Calls one part and reads its whole answer.
async fn call(
    worker: &Worker,
    config: &Arc<Config>,
    part: &Part,
    mut outgoing: PartRequest,
    deadline: Instant,
) -> PartOutcome {
    let started = Instant::now();
    let deadline = deadline.min(started + part.timeout);
    let (status, answer) = exchange(worker, config, part, &mut outgoing, deadline).await;
    PartOutcome {
        status,
        elapsed: started.elapsed(),
        answer,
    }
}

async fn exchange(
    worker: &Worker,
    config: &Arc<Config>,
    part: &Part,
    outgoing: &mut PartRequest,
    deadline: Instant,
) -> (u16, Result<Value, PartError>) {
    let idempotent = matches!(&part.method[..], b"GET" | b"HEAD" | b"OPTIONS");
    let request = Request {
        key: None,
        body: Body::InHand(Bytes::new()),
        retryable: idempotent,
        idempotent,
        is_head: &part.method[..] == b"HEAD",
        deadline: Some(deadline),
        addresses: None,
    };
    let mut client = Client::new(&worker.upstreams, config, part.upstream);
    let mut response = match client.send(&request, outgoing).await {
        Ok(response) => response,
        Err(Failure::Upstream(failure)) => return (0, Err(PartError::of(failure.error))),
        Err(Failure::Body(never)) => match never {},
    };
    let status = response.head.status;
    if status < 200 {
        return (status, Err(PartError::BadAnswer));
    }
    let framing = response.head.framing;
    if matches!(framing, BodyFraming::Length(n) if n > part.max_bytes as u64) {
        return (status, Err(PartError::TooLarge));
    }
    let body = match read_answer_body(&mut response.conn, framing, deadline, part.max_bytes).await {
        Ok(body) => body,
        Err(ProxyError::UpstreamTimeout) => return (status, Err(PartError::Timeout)),
        // A chunked or close-delimited body past `max_bytes` is refused as a malformed one.
        Err(_) => return (status, Err(PartError::BadAnswer)),
    };
    response.finish();
    if !(200..300).contains(&status) {
        return (status, Err(PartError::Status));
    }
    match serde_json::from_slice(&body) {
        Ok(value) => (status, Ok(value)),
        Err(_) => (status, Err(PartError::NotJson)),
    }
}

/// A part's request, rendered once: the request line and the header lines but `Host`,
/// which names the endpoint picked for each try.
struct PartRequest {
    line: Vec<u8>,
    headers: Vec<u8>,
}

impl PartRequest {
    fn render(
        part: &Part,
        facts: &impl Facts,
        raw: &[u8],
        head: &RequestHead,
        id_header: &[u8],
        trace: Option<&SpanContext>,
    ) -> Self {
        let mut line = Vec::with_capacity(128);
        line.extend_from_slice(&part.method);
        line.push(b' ');
        part.path.render(facts, Escape::Path, &mut line);
        if let Some(query) = &part.query {
            line.push(b'?');
            query.render(facts, Escape::Query, &mut line);
        }
        let client_query = query_of(head.target(raw));
        if part.pass_query && !client_query.is_empty() {
            line.push(if part.query.is_some() { b'&' } else { b'?' });
            line.extend_from_slice(client_query);
        }
        line.extend_from_slice(b" HTTP/1.1\r\n");
        let mut headers = Vec::with_capacity(128);
        // The request's span is each part's parent: it replaces a passed `traceparent`.
        if let Some(trace) = trace {
            headers.extend_from_slice(&traceparent_line(trace));
        }
        for name in part.pass_headers.iter() {
            if trace.is_some() && is_traceparent(name) {
                continue;
            }
            for header in &head.headers {
                if header.name(raw).eq_ignore_ascii_case(name) {
                    headers.extend_from_slice(name);
                    headers.extend_from_slice(b": ");
                    headers.extend_from_slice(header.value(raw));
                    headers.extend_from_slice(b"\r\n");
                }
            }
        }
        if !id_header.is_empty() {
            headers.extend_from_slice(id_header);
            headers.extend_from_slice(b": ");
            if let Some(FactValue::Borrowed(id)) = facts.value(&Fact::RequestId) {
                headers.extend_from_slice(id);
            }
            headers.extend_from_slice(b"\r\n");
        }
        if !matches!(&part.method[..], b"GET" | b"HEAD") {
            headers.extend_from_slice(b"content-length: 0\r\n");
        }
        PartRequest { line, headers }
    }
}

impl Outgoing for PartRequest {
    type BodyError = Infallible;

    fn write_head(&self, endpoint: SocketAddr, out: &mut BytesMut) {
        out.extend_from_slice(&self.line);
        out.extend_from_slice(b"host: ");
        // Writing to a BytesMut cannot fail.
        let _ = write!(out, "{endpoint}");
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.headers);
        out.extend_from_slice(b"\r\n");
    }

    fn head_capacity(&self) -> usize {
        self.line.len() + self.headers.len() + 64
    }

    /// Never called: the request has no body.
    async fn stream_body(&mut self, _: &mut UpstreamConn) -> Result<(), Infallible> {
        Ok(())
    }
}

/// The request's facts, and the earlier parts' answers for `{steps.NAME…}`.
struct StepFacts<'a> {
    request: &'a RequestFacts<'a>,
    aggregate: &'a Aggregate,
    outcomes: &'a [Option<PartOutcome>],
}

impl StepFacts<'_> {
    fn answered(&self, part: usize) -> bool {
        matches!(self.outcomes.get(part), Some(Some(outcome)) if outcome.answer.is_ok())
    }
}

impl Facts for StepFacts<'_> {
    fn value(&self, fact: &Fact) -> Option<FactValue<'_>> {
        let Fact::Step(step, pointer) = fact else {
            return self.request.value(fact);
        };
        let at = self
            .aggregate
            .parts
            .iter()
            .position(|p| *p.name == **step)?;
        let answer = self.outcomes.get(at)?.as_ref()?.answer.as_ref().ok()?;
        match answer.pointer(pointer)? {
            Value::String(text) => Some(FactValue::Borrowed(text.as_bytes())),
            Value::Number(n) => Some(FactValue::Owned(n.to_string().into_bytes())),
            Value::Bool(b) => Some(FactValue::Borrowed(if *b { b"true" } else { b"false" })),
            _ => None,
        }
    }
}

type PartCall<'a> = Pin<Box<dyn Future<Output = PartOutcome> + 'a>>;

/// One aggregation under way: what every part's call needs, and the outcomes so far (by
/// part index), which later parts read for their steps.
struct Run<'a> {
    worker: &'a Worker,
    config: &'a Arc<Config>,
    aggregate: &'a Aggregate,
    facts: &'a RequestFacts<'a>,
    id_header: &'a [u8],
    trace: Option<SpanContext>,
    deadline: Instant,
    outcomes: RefCell<Vec<Option<PartOutcome>>>,
}

impl Run<'_> {
    /// Part `i`: once every step it names has an outcome, its request rendered and sent.
    async fn part(&self, i: usize) -> PartOutcome {
        let part = &self.aggregate.parts[i];
        Needs {
            needs: &part.needs,
            outcomes: &self.outcomes,
        }
        .await;
        let outgoing = {
            let outcomes = self.outcomes.borrow();
            let steps = StepFacts {
                request: self.facts,
                aggregate: self.aggregate,
                outcomes: &outcomes,
            };
            if part.needs.iter().any(|&s| !steps.answered(s)) {
                return PartOutcome {
                    status: 0,
                    elapsed: Duration::ZERO,
                    answer: Err(PartError::StepFailed),
                };
            }
            let (raw, head) = (self.facts.raw, self.facts.head);
            PartRequest::render(part, &steps, raw, head, self.id_header, self.trace.as_ref())
        };
        call(self.worker, self.config, part, outgoing, self.deadline).await
    }
}

/// Ready once every part in `needs` has an outcome. It registers no waker: the parts it
/// waits for are polled by the same [`Gather`], which polls again after any part ends.
struct Needs<'a> {
    needs: &'a [usize],
    outcomes: &'a RefCell<Vec<Option<PartOutcome>>>,
}

impl Future for Needs<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        let outcomes = self.outcomes.borrow();
        let done = |&i: &usize| matches!(outcomes.get(i), Some(Some(_)));
        if self.needs.iter().all(done) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// Runs every part's call concurrently on this task, storing each outcome in the run as it
/// comes. Ends when all have ended, or as soon as a required part fails: the calls still
/// under way are then dropped (their connections closed, never pooled).
struct Gather<'a> {
    calls: Vec<Option<PartCall<'a>>>,
    run: &'a Run<'a>,
}

impl<'a> Gather<'a> {
    fn new(calls: Vec<PartCall<'a>>, run: &'a Run<'a>) -> Self {
        Gather {
            calls: calls.into_iter().map(Some).collect(),
            run,
        }
    }
}

impl Future for Gather<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        loop {
            let mut ended = false;
            for (i, slot) in this.calls.iter_mut().enumerate() {
                let Some(call) = slot else { continue };
                let Poll::Ready(outcome) = call.as_mut().poll(cx) else {
                    continue;
                };
                *slot = None;
                ended = true;
                let failed = outcome.answer.is_err() && this.run.aggregate.parts[i].required;
                this.run.outcomes.borrow_mut()[i] = Some(outcome);
                if failed {
                    return Poll::Ready(());
                }
            }
            if this.calls.iter().all(Option::is_none) {
                return Poll::Ready(());
            }
            // A part that ended may be a step another part waits for (`Needs`).
            if !ended {
                return Poll::Pending;
            }
        }
    }
}
