//! A route's `transform`: the serde mirror and its compilation into [`Transform`].
//!
//! ```toml
//! [routes.transform.request]
//! path = "/v2/accounts/{id}"          # or path_regex = { pattern = "^/api/(.*)$", replace = "/v1/$1" }
//! method = "POST"
//! host = "{header.x-tenant}.internal"
//! headers = { set = { x-consumer = "{consumer}" }, add = {}, append = {}, remove = [], rename = {} }
//! query = { set = {}, add = {}, remove = [], rename = {} }
//! body = { set = { "/transformed" = true } }       # JSON bodies, `json.rs`
//!
//! [routes.transform.response]
//! status = { "404" = 410 }
//! headers = { set = {}, add = {}, append = {}, remove = [] }
//! server = "hide"                     # "pass" (default), "hide", or a value to send
//! via = false                         # add `Via: 1.1 strait` (default true)
//! body = { remove = ["/internal"] }
//! ```
//!
//! Templates and JSON Pointers compile here; a bad one is an error naming the key, with the
//! position inside its text.

use std::collections::BTreeMap;

use regex::bytes::Regex;
use serde::Deserialize;
use toml::Spanned;

use super::json::{self, BodyEdit, FileBody};
use super::template::{Scope, Template};
use crate::http1::headers::is_hop_by_hop;
use crate::settings::{is_tchar, Ctx};

/// A route's `transform`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTransform {
    pub request: Option<FileRequestTransform>,
    pub response: Option<FileResponseTransform>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRequestTransform {
    pub path: Option<Spanned<String>>,
    pub path_regex: Option<Spanned<FilePathRegex>>,
    pub method: Option<Spanned<String>>,
    pub host: Option<Spanned<String>>,
    pub headers: Option<FileHeaderOps>,
    pub query: Option<FileQueryOps>,
    pub body: Option<Spanned<FileBody>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePathRegex {
    pub pattern: Spanned<String>,
    pub replace: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileResponseTransform {
    pub status: Option<BTreeMap<Spanned<String>, Spanned<i64>>>,
    pub headers: Option<FileHeaderOps>,
    pub server: Option<Spanned<String>>,
    pub via: Option<bool>,
    pub body: Option<Spanned<FileBody>>,
}

type FileValues = BTreeMap<Spanned<String>, Spanned<String>>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileHeaderOps {
    #[serde(default)]
    pub set: FileValues,
    #[serde(default)]
    pub add: FileValues,
    #[serde(default)]
    pub append: FileValues,
    #[serde(default)]
    pub remove: Vec<Spanned<String>>,
    #[serde(default)]
    pub rename: FileValues,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileQueryOps {
    #[serde(default)]
    pub set: FileValues,
    #[serde(default)]
    pub add: FileValues,
    #[serde(default)]
    pub remove: Vec<Spanned<String>>,
    #[serde(default)]
    pub rename: FileValues,
}

// ---- runtime types ----

/// What a route changes in the requests it forwards and the answers it sends.
#[derive(Debug, Default)]
pub struct Transform {
    pub request: Option<RequestTransform>,
    pub response: Option<ResponseTransform>,
}

#[derive(Debug, Default)]
pub struct RequestTransform {
    pub path: Option<PathRewrite>,
    /// The method sent upstream, upper-case.
    pub method: Option<Box<[u8]>>,
    pub host: Option<Template>,
    pub headers: HeaderOps,
    pub query: QueryOps,
    pub body: Option<BodyEdit>,
}

/// How the upstream path is made.
#[derive(Debug)]
pub enum PathRewrite {
    /// A template over the request (`/v2/accounts/{id}`).
    Template(Template),
    /// A regex over the path; a match is replaced by `replace` (`$1`, `${name}`), a path
    /// it does not match goes unchanged.
    Regex { pattern: Regex, replace: Box<[u8]> },
}

/// A rename: (old name, new name).
pub type Rename = (Box<[u8]>, Box<[u8]>);

/// Header edits, applied in this order: remove, rename, set, add, append.
#[derive(Debug, Default)]
pub struct HeaderOps {
    /// Lower-case names whose copies are dropped.
    pub remove: Vec<Box<[u8]>>,
    /// (old, new), lower-case: each copy of `old` goes as `new`; `new`'s own copies drop.
    pub rename: Vec<Rename>,
    /// Replaces every copy, or adds the header when absent.
    pub set: Vec<(Box<[u8]>, Template)>,
    /// Adds the header only when the message has none.
    pub add: Vec<(Box<[u8]>, Template)>,
    /// Adds one more copy, keeping the message's.
    pub append: Vec<(Box<[u8]>, Template)>,
}

impl HeaderOps {
    /// True for a name whose copies in the passed-on message give way to this transform's
    /// (removed, renamed away, renamed onto, or set).
    pub fn replaces(&self, name: &[u8]) -> bool {
        let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
        self.remove.iter().any(|n| is(n))
            || self.rename.iter().any(|(old, new)| is(old) || is(new))
            || self.set.iter().any(|(n, _)| is(n))
    }

    pub fn is_empty(&self) -> bool {
        self.remove.is_empty()
            && self.rename.is_empty()
            && self.set.is_empty()
            && self.add.is_empty()
            && self.append.is_empty()
    }
}

/// Query edits, applied in this order: remove, rename, set, add.
#[derive(Debug, Default)]
pub struct QueryOps {
    pub remove: Vec<Box<[u8]>>,
    pub rename: Vec<Rename>,
    /// Replaces every occurrence, or appends the parameter when absent.
    pub set: Vec<(Box<[u8]>, Template)>,
    /// Appends the parameter only when the query has none.
    pub add: Vec<(Box<[u8]>, Template)>,
}

impl QueryOps {
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty()
            && self.rename.is_empty()
            && self.set.is_empty()
            && self.add.is_empty()
    }
}

#[derive(Debug, Default)]
pub struct ResponseTransform {
    /// (upstream status, status sent), by upstream status.
    pub status: Vec<(u16, u16)>,
    pub headers: HeaderOps,
    pub server: ServerPolicy,
    /// Add Strait to `Via` (RFC 9110 §7.6.3), as every forwarded answer does by default.
    pub via: bool,
    pub body: Option<BodyEdit>,
}

/// What happens to the upstream's `Server` header.
#[derive(Debug, Default, PartialEq, Eq)]
pub enum ServerPolicy {
    #[default]
    Pass,
    Hide,
    Set(Box<[u8]>),
}

impl ResponseTransform {
    /// The status an upstream's `status` goes out as.
    pub fn map_status(&self, status: u16) -> u16 {
        self.status
            .iter()
            .find(|(from, _)| *from == status)
            .map_or(status, |(_, to)| *to)
    }
}

// ---- validation ----

/// Request headers Strait writes itself or that frame the message: a transform may not
/// touch them (the route's `host`, the body edit's framing say what they become).
fn reserved_request_header(name: &[u8]) -> bool {
    is_hop_by_hop(name) || crate::http1::encode::is_rewritten_request_header(name)
}

/// Response headers that frame the message or that the `via` option owns.
fn reserved_response_header(name: &[u8]) -> bool {
    is_hop_by_hop(name) || name.eq_ignore_ascii_case(b"via")
}

/// A route's `transform`; `params` are its path pattern's parameter names.
pub fn build(ctx: &mut Ctx, file: &FileTransform, key: &str, params: &[String]) -> Transform {
    let scope = Scope { params, steps: &[] };
    Transform {
        request: file
            .request
            .as_ref()
            .map(|r| request(ctx, r, &format!("{key}.request"), scope)),
        response: file
            .response
            .as_ref()
            .map(|r| response(ctx, r, &format!("{key}.response"), scope)),
    }
}

fn request(
    ctx: &mut Ctx,
    file: &FileRequestTransform,
    key: &str,
    scope: Scope<'_>,
) -> RequestTransform {
    let path = match (&file.path, &file.path_regex) {
        (Some(_), Some(regex)) => {
            let why = "set either `path` or `path_regex`, not both";
            ctx.error(regex.span(), format!("{key}.path_regex"), why);
            None
        }
        (Some(path), None) => {
            let key = format!("{key}.path");
            let text = path.get_ref();
            if !text.starts_with('/') {
                ctx.error(path.span(), &key, format!("\"{text}\" must start with '/'"));
            } else if text.contains(['?', '#']) {
                let why = "the path has no query or fragment: edit the query with `query`";
                ctx.error(path.span(), &key, why);
            }
            template(ctx, path, &key, scope).map(PathRewrite::Template)
        }
        (None, Some(regex)) => path_regex(ctx, regex, &format!("{key}.path_regex")),
        (None, None) => None,
    };
    let method = file.method.as_ref().and_then(|method| {
        let text = method.get_ref();
        if text.is_empty() || !text.bytes().all(is_tchar) {
            let why = format!("invalid method \"{text}\": must be a token such as GET or POST");
            ctx.error(method.span(), format!("{key}.method"), why);
            return None;
        }
        Some(text.to_ascii_uppercase().into_bytes().into())
    });
    let host = file.host.as_ref().and_then(|host| {
        let key = format!("{key}.host");
        if host
            .get_ref()
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b == b'/')
        {
            let why = format!(
                "invalid host \"{}\": expected host or host:port",
                host.get_ref()
            );
            ctx.error(host.span(), &key, why);
            return None;
        }
        template(ctx, host, &key, scope)
    });
    let headers = file
        .headers
        .as_ref()
        .map_or_else(HeaderOps::default, |ops| {
            header_ops(
                ctx,
                ops,
                &format!("{key}.headers"),
                scope,
                reserved_request_header,
            )
        });
    let query = file.query.as_ref().map_or_else(QueryOps::default, |ops| {
        query_ops(ctx, ops, &format!("{key}.query"), scope)
    });
    let body = file
        .body
        .as_ref()
        .and_then(|body| json::build(ctx, body, &format!("{key}.body"), scope));
    RequestTransform {
        path,
        method,
        host,
        headers,
        query,
        body,
    }
}

fn response(
    ctx: &mut Ctx,
    file: &FileResponseTransform,
    key: &str,
    scope: Scope<'_>,
) -> ResponseTransform {
    let mut status = Vec::new();
    for (from, to) in file.status.iter().flatten() {
        let key = format!("{key}.status.{}", from.get_ref());
        let parsed_from = from.get_ref().parse::<u16>().ok();
        let Some(parsed_from) = parsed_from.filter(|s| (200..=599).contains(s) && !bodiless(*s))
        else {
            let why = format!(
                "\"{}\" is not a status an answer with a body has: 200..=599, not 204 or 304",
                from.get_ref()
            );
            ctx.error(from.span(), &key, why);
            continue;
        };
        let to_value = *to.get_ref();
        match u16::try_from(to_value) {
            Ok(s) if (200..=599).contains(&s) && !bodiless(s) => status.push((parsed_from, s)),
            _ => {
                let why = format!(
                    "{to_value} is not a status the answer can take: 200..=599, not 204 or 304 \
                     (the body is kept)"
                );
                ctx.error(to.span(), &key, why);
            }
        }
    }
    let headers = file
        .headers
        .as_ref()
        .map_or_else(HeaderOps::default, |ops| {
            header_ops(
                ctx,
                ops,
                &format!("{key}.headers"),
                scope,
                reserved_response_header,
            )
        });
    let server = match file.server.as_ref() {
        None => ServerPolicy::Pass,
        Some(value) => match value.get_ref().as_str() {
            "pass" => ServerPolicy::Pass,
            "hide" => ServerPolicy::Hide,
            text if is_header_text(text) && !text.is_empty() => {
                ServerPolicy::Set(text.as_bytes().into())
            }
            text => {
                let why = format!(
                    "\"{text}\": use \"pass\", \"hide\", or a header value (visible ASCII)"
                );
                ctx.error(value.span(), format!("{key}.server"), why);
                ServerPolicy::Pass
            }
        },
    };
    if server != ServerPolicy::Pass && headers.replaces(b"server") {
        let why = "`server` and a header edit of `server` contradict each other; keep one";
        ctx.error(
            file.server.as_ref().map_or(0..0, Spanned::span),
            format!("{key}.server"),
            why,
        );
    }
    let body = file
        .body
        .as_ref()
        .and_then(|body| json::build(ctx, body, &format!("{key}.body"), scope));
    ResponseTransform {
        status,
        headers,
        server,
        via: file.via.unwrap_or(true),
        body,
    }
}

fn bodiless(status: u16) -> bool {
    status == 204 || status == 304
}

fn template(
    ctx: &mut Ctx,
    text: &Spanned<String>,
    key: &str,
    scope: Scope<'_>,
) -> Option<Template> {
    Template::compile(text.get_ref(), scope)
        .map_err(|err| ctx.error(text.span(), key, format!("\"{}\": {err}", text.get_ref())))
        .ok()
}

fn path_regex(ctx: &mut Ctx, file: &Spanned<FilePathRegex>, key: &str) -> Option<PathRewrite> {
    let file = file.get_ref();
    let pattern = match Regex::new(file.pattern.get_ref()) {
        Ok(pattern) => pattern,
        Err(err) => {
            let why = format!("\"{}\" is not a regex: {err}", file.pattern.get_ref());
            ctx.error(file.pattern.span(), format!("{key}.pattern"), why);
            return None;
        }
    };
    let replace = file.replace.get_ref();
    if !replace.starts_with('/') && !replace.starts_with('$') {
        let why = format!("\"{replace}\" must start with '/' (or a capture that does)");
        ctx.error(file.replace.span(), format!("{key}.replace"), why);
        return None;
    }
    if replace.contains(['?', '#']) || replace.bytes().any(|b| b <= b' ' || b == 0x7f) {
        let why = format!("\"{replace}\" must be a path: no query, fragment, space or control");
        ctx.error(file.replace.span(), format!("{key}.replace"), why);
        return None;
    }
    Some(PathRewrite::Regex {
        pattern,
        replace: replace.as_bytes().into(),
    })
}

/// A header value as configured: visible ASCII, spaces and tabs inside.
fn is_header_text(text: &str) -> bool {
    text.bytes()
        .all(|b| b == b' ' || b == b'\t' || (0x21..0x7f).contains(&b))
}

/// A lower-cased header name, or an error naming the key.
fn header_name(
    ctx: &mut Ctx,
    name: &Spanned<String>,
    key: &str,
    reserved: fn(&[u8]) -> bool,
) -> Option<Box<[u8]>> {
    let text = name.get_ref();
    if text.is_empty() || !text.bytes().all(is_tchar) {
        ctx.error(name.span(), key, format!("invalid header name \"{text}\""));
        return None;
    }
    if reserved(text.as_bytes()) {
        let why = format!(
            "\"{text}\" is set by Strait (framing, hop-by-hop or forwarding) and cannot be edited"
        );
        ctx.error(name.span(), key, why);
        return None;
    }
    Some(text.to_ascii_lowercase().into_bytes().into())
}

fn header_ops(
    ctx: &mut Ctx,
    file: &FileHeaderOps,
    key: &str,
    scope: Scope<'_>,
    reserved: fn(&[u8]) -> bool,
) -> HeaderOps {
    let mut ops = HeaderOps::default();
    for (i, name) in file.remove.iter().enumerate() {
        if let Some(name) = header_name(ctx, name, &format!("{key}.remove[{i}]"), reserved) {
            ops.remove.push(name);
        }
    }
    for (old, new) in &file.rename {
        let key = format!("{key}.rename.{}", old.get_ref());
        let old_name = header_name(ctx, old, &key, reserved);
        let new_name = header_name(ctx, new, &key, reserved);
        if let (Some(old), Some(new)) = (old_name, new_name) {
            ops.rename.push((old, new));
        }
    }
    for (list, field, out) in [
        (&file.set, "set", &mut ops.set),
        (&file.add, "add", &mut ops.add),
        (&file.append, "append", &mut ops.append),
    ] {
        for (name, value) in list {
            let key = format!("{key}.{field}.{}", name.get_ref());
            let name = header_name(ctx, name, &key, reserved);
            if !is_header_text(value.get_ref()) {
                let why = "invalid header value: visible ASCII, no CR/LF or control characters";
                ctx.error(value.span(), &key, why);
                continue;
            }
            if let (Some(name), Some(value)) = (name, template(ctx, value, &key, scope)) {
                out.push((name, value));
            }
        }
    }
    ops
}

/// A query parameter's name as configured: what may stand in a query without escaping.
fn query_name(ctx: &mut Ctx, name: &Spanned<String>, key: &str) -> Option<Box<[u8]>> {
    let text = name.get_ref();
    let valid = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'&' | b'=' | b'#' | b'+' | b'?'));
    if !valid {
        let why = format!("invalid query parameter name \"{text}\"");
        ctx.error(name.span(), key, why);
        return None;
    }
    Some(text.as_bytes().into())
}

fn query_ops(ctx: &mut Ctx, file: &FileQueryOps, key: &str, scope: Scope<'_>) -> QueryOps {
    let mut ops = QueryOps::default();
    for (i, name) in file.remove.iter().enumerate() {
        if let Some(name) = query_name(ctx, name, &format!("{key}.remove[{i}]")) {
            ops.remove.push(name);
        }
    }
    for (old, new) in &file.rename {
        let key = format!("{key}.rename.{}", old.get_ref());
        if let (Some(old), Some(new)) = (query_name(ctx, old, &key), query_name(ctx, new, &key)) {
            ops.rename.push((old, new));
        }
    }
    for (list, field, out) in [
        (&file.set, "set", &mut ops.set),
        (&file.add, "add", &mut ops.add),
    ] {
        for (name, value) in list {
            let key = format!("{key}.{field}.{}", name.get_ref());
            let name = query_name(ctx, name, &key);
            if let (Some(name), Some(value)) = (name, template(ctx, value, &key, scope)) {
                out.push((name, value));
            }
        }
    }
    ops
}
