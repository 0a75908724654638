//! A route's `transform` applied to the request being served (`transform/config.rs` says
//! what each setting means). Its request hook renders every templated value once into
//! [`Rendered`], in the request's context; the upstream head borrows them
//! ([`upstream_edits`]), and the answer's head gets the response lines and edits
//! ([`ResponseView`]).

use std::ops::Range;

use bytes::BytesMut;

use super::facts::{query_of, RequestFacts};
use super::forward::strip_prefix;
use super::pipeline::{RequestCtx, UpstreamEdits};
use crate::config::{Action, Route};
use crate::http1::encode::ResponseEdits;
use crate::http1::RequestHead;
use crate::transform::config::{
    PathRewrite, QueryOps, RequestTransform, ResponseTransform, ServerPolicy,
};
use crate::transform::template::Escape;

/// The route's transform rendered for one request. Reset between requests; its buffers are
/// kept.
#[derive(Debug, Default)]
pub struct Rendered {
    /// Every rendered value, one after the other.
    buf: Vec<u8>,
    /// The upstream target (path and query), when the transform changes it.
    target: Option<Range<usize>>,
    host: Option<Range<usize>>,
    /// The values of `headers.set`, in order.
    set: Vec<Range<usize>>,
    /// The values of `headers.add`; `None` where the request has the header already.
    add: Vec<Option<Range<usize>>>,
    append: Vec<Range<usize>>,
    /// The copies of renamed headers: (index in `headers.rename`, value).
    renamed: Vec<(usize, Range<usize>)>,
    /// Response lines always added (`set`, `append`, a `server` value), and those added
    /// when the upstream's answer lacks the header (`add`).
    response_lines: Range<usize>,
    response_if_absent: Range<usize>,
}

impl Rendered {
    pub fn reset(&mut self) {
        self.buf.clear();
        self.target = None;
        self.host = None;
        self.set.clear();
        self.add.clear();
        self.append.clear();
        self.renamed.clear();
        self.response_lines = 0..0;
        self.response_if_absent = 0..0;
    }

    /// Renders into `buf` with `f`; the range written.
    fn push(&mut self, f: impl FnOnce(&mut Vec<u8>)) -> Range<usize> {
        let start = self.buf.len();
        f(&mut self.buf);
        start..self.buf.len()
    }
}

/// The request hook: renders what the route's transform sends upstream and adds to the
/// answer.
pub fn prepare(route: &Route, facts: &RequestFacts<'_>, rendered: &mut Rendered) {
    let Some(transform) = &route.transform else {
        return;
    };
    if let Some(request) = &transform.request {
        prepare_request(route, request, facts, rendered);
    }
    if let Some(response) = &transform.response {
        prepare_response(response, facts, rendered);
    }
}

fn prepare_request(
    route: &Route,
    request: &RequestTransform,
    facts: &RequestFacts<'_>,
    rendered: &mut Rendered,
) {
    let (raw, head) = (facts.raw, facts.head);
    if request.path.is_some() || !request.query.is_empty() {
        let target = rendered.push(|out| {
            write_target(route, request, facts, out);
        });
        rendered.target = Some(target);
    }
    if let Some(host) = &request.host {
        let range = rendered.push(|out| host.render(facts, Escape::Header, out));
        rendered.host = Some(range);
    }
    let ops = &request.headers;
    for (_, value) in &ops.set {
        let range = rendered.push(|out| value.render(facts, Escape::Header, out));
        rendered.set.push(range);
    }
    for (name, value) in &ops.add {
        let present = crate::http1::headers::header_value(raw, head, name).is_some();
        let range =
            (!present).then(|| rendered.push(|out| value.render(facts, Escape::Header, out)));
        rendered.add.push(range);
    }
    for (_, value) in &ops.append {
        let range = rendered.push(|out| value.render(facts, Escape::Header, out));
        rendered.append.push(range);
    }
    for (index, (old, _)) in ops.rename.iter().enumerate() {
        for h in head
            .headers
            .iter()
            .filter(|h| h.name(raw).eq_ignore_ascii_case(old))
        {
            let range = rendered.push(|out| out.extend_from_slice(h.value(raw)));
            rendered.renamed.push((index, range));
        }
    }
}

/// Writes the upstream target: the rewritten path (or the client's, after `strip_prefix`),
/// then the query with its edits.
fn write_target(
    route: &Route,
    request: &RequestTransform,
    facts: &RequestFacts<'_>,
    out: &mut Vec<u8>,
) {
    let (raw, head) = (facts.raw, facts.head);
    let target = head.target(raw);
    match &request.path {
        Some(PathRewrite::Template(template)) => template.render(facts, Escape::Path, out),
        Some(PathRewrite::Regex { pattern, replace }) => {
            let path = head.path(raw);
            match pattern.captures(path) {
                Some(captures) => {
                    let whole = captures.get_match();
                    out.extend_from_slice(&path[..whole.start()]);
                    captures.expand(replace, out);
                    out.extend_from_slice(&path[whole.end()..]);
                }
                None => out.extend_from_slice(path),
            }
        }
        None => {
            let strip = match &route.action {
                Action::Proxy(action) => action.strip_prefix.as_deref(),
                Action::Mock(_) | Action::Aggregate(_) => None,
            };
            let stripped = strip_prefix(target, strip);
            let path_end = memchr::memchr(b'?', stripped).unwrap_or(stripped.len());
            out.extend_from_slice(&stripped[..path_end]);
        }
    }
    if out.is_empty() {
        out.push(b'/');
    }
    write_query(&request.query, query_of(target), facts, out);
}

/// Appends `?` and the query after `ops` (nothing when it ends up empty): the client's
/// parameters in order, less those removed or set, renamed ones under their new name, then
/// the set ones, then the added ones the query lacks.
fn write_query(ops: &QueryOps, query: &[u8], facts: &RequestFacts<'_>, out: &mut Vec<u8>) {
    let start = out.len();
    let separator = |out: &mut Vec<u8>| {
        out.push(if out.len() == start { b'?' } else { b'&' });
    };
    let mut names_out: Vec<&[u8]> = Vec::new();
    for pair in query.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let (name, rest) = match memchr::memchr(b'=', pair) {
            Some(at) => pair.split_at(at),
            None => (pair, &b""[..]),
        };
        if ops.remove.iter().any(|n| **n == *name) || ops.set.iter().any(|(n, _)| **n == *name) {
            continue;
        }
        let name = ops
            .rename
            .iter()
            .find(|(old, _)| **old == *name)
            .map_or(name, |(_, new)| &**new);
        separator(out);
        out.extend_from_slice(name);
        out.extend_from_slice(rest);
        names_out.push(name);
    }
    for (name, value) in &ops.set {
        separator(out);
        out.extend_from_slice(name);
        out.push(b'=');
        value.render(facts, Escape::Query, out);
    }
    for (name, value) in &ops.add {
        if names_out.contains(&&**name) {
            continue;
        }
        separator(out);
        out.extend_from_slice(name);
        out.push(b'=');
        value.render(facts, Escape::Query, out);
    }
}

fn prepare_response(
    response: &ResponseTransform,
    facts: &RequestFacts<'_>,
    rendered: &mut Rendered,
) {
    let ops = &response.headers;
    rendered.response_lines = rendered.push(|out| {
        for (name, value) in ops.set.iter().chain(&ops.append) {
            write_line(out, name, |out| value.render(facts, Escape::Header, out));
        }
        if let ServerPolicy::Set(server) = &response.server {
            write_line(out, b"server", |out| out.extend_from_slice(server));
        }
    });
    rendered.response_if_absent = rendered.push(|out| {
        for (name, value) in &ops.add {
            write_line(out, name, |out| value.render(facts, Escape::Header, out));
        }
    });
}

/// Writes `name: value` CRLF, unless the value `write` renders is empty.
fn write_line(out: &mut Vec<u8>, name: &[u8], write: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    let value_start = out.len();
    write(out);
    if out.len() == value_start {
        out.truncate(start);
    } else {
        out.extend_from_slice(b"\r\n");
    }
}

/// The upstream-request hook: what the transform changes in the upstream's head.
pub fn upstream_edits<'a>(route: &'a Route, ctx: &'a RequestCtx, edits: &mut UpstreamEdits<'a>) {
    let Some(request) = route.transform.as_ref().and_then(|t| t.request.as_ref()) else {
        return;
    };
    let rendered = &ctx.transform;
    let value = |range: &Range<usize>| rendered.buf.get(range.clone()).unwrap_or_default();
    let ops = &request.headers;
    edits.drop.extend(ops.remove.iter().map(|n| &n[..]));
    for (old, new) in &ops.rename {
        edits.drop.extend([&old[..], &new[..]]);
    }
    for ((name, _), range) in ops.set.iter().zip(&rendered.set) {
        edits.set.push((name, value(range)));
    }
    for ((name, _), range) in ops.add.iter().zip(&rendered.add) {
        if let Some(range) = range {
            edits.set.push((name, value(range)));
        }
    }
    for ((name, _), range) in ops.append.iter().zip(&rendered.append) {
        edits.append.push((name, value(range)));
    }
    for (index, range) in &rendered.renamed {
        if let Some((_, new)) = ops.rename.get(*index) {
            edits.append.push((new, value(range)));
        }
    }
    edits.target = rendered.target.as_ref().map(value);
    edits.host = rendered.host.as_ref().map(value);
    edits.method = request.method.as_deref();
}

/// The response lines always added to the answer.
pub fn response_lines(ctx: &RequestCtx) -> &[u8] {
    let rendered = &ctx.transform;
    rendered
        .buf
        .get(rendered.response_lines.clone())
        .unwrap_or_default()
}

/// Appends the transform's lines to a local answer's head (which has none of them).
pub fn write_local(route: &Route, ctx: &RequestCtx, out: &mut BytesMut) {
    if route
        .transform
        .as_ref()
        .is_some_and(|t| t.response.is_some())
    {
        let rendered = &ctx.transform;
        out.extend_from_slice(response_lines(ctx));
        out.extend_from_slice(
            rendered
                .buf
                .get(rendered.response_if_absent.clone())
                .unwrap_or_default(),
        );
    }
}

/// A response transform as the encoder applies it to a forwarded answer.
#[derive(Debug, Clone, Copy)]
pub struct ResponseView<'a> {
    pub transform: &'a ResponseTransform,
    /// The rendered `add` lines.
    pub if_absent: &'a [u8],
}

impl<'a> ResponseView<'a> {
    pub fn of(route: &'a Route, ctx: &'a RequestCtx) -> Option<ResponseView<'a>> {
        let transform = route.transform.as_ref()?.response.as_ref()?;
        let rendered = &ctx.transform;
        Some(ResponseView {
            transform,
            if_absent: rendered
                .buf
                .get(rendered.response_if_absent.clone())
                .unwrap_or_default(),
        })
    }
}

impl ResponseEdits for ResponseView<'_> {
    fn status(&self, status: u16) -> u16 {
        self.transform.map_status(status)
    }

    fn drops(&self, name: &[u8]) -> bool {
        self.transform.headers.replaces(name)
            || (self.transform.server != ServerPolicy::Pass && name.eq_ignore_ascii_case(b"server"))
    }

    fn via(&self) -> bool {
        self.transform.via
    }

    fn write_if_absent(&self, has: &dyn Fn(&[u8]) -> bool, out: &mut BytesMut) {
        for line in self.if_absent.split_inclusive(|&b| b == b'\n') {
            let name = line.split(|&b| b == b':').next().unwrap_or_default();
            if !has(name) {
                out.extend_from_slice(line);
            }
        }
    }
}

/// The request's facts for a transform's templates, from the connection's state.
pub fn facts<'a>(
    route: &'a Route,
    raw: &'a [u8],
    head: &'a RequestHead,
    ctx: &'a RequestCtx,
    request_id: &'a [u8],
) -> RequestFacts<'a> {
    RequestFacts {
        raw,
        head,
        route,
        client_ip: &ctx.client_ip,
        request_id,
        identity: ctx.identity.as_ref(),
    }
}
