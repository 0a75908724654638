//! The admin API's routes: one table of (method, path template, handler), the bearer-token
//! check that runs before any of them, and the handlers.
//!
//! [`ROUTES`] is derived from the table at compile time, so the list `tests/admin.rs`
//! compares with `docs/admin-openapi.json` is the list the dispatcher serves.
//!
//! Path templates are literal segments and `{param}` segments; a `{param}` matches one
//! non-empty segment, percent-decoded (`127.0.0.1%3A9003`, `%5B%3A%3A1%5D%3A9003`). When a
//! path matches but the method does not, the answer is 405 with `Allow`.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

use super::json;
use super::Admin;
use crate::config::Config;
use crate::control::registry::{RegistryError, MAX_WEIGHT};
use crate::observe::metrics::{render, unix_seconds, CertificateExpiry, ProcessInfo, CONTENT_TYPE};
use crate::upstream::config::Endpoint;

/// A request as the handlers see it: read whole, the path without its query.
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub authorization: Option<&'a [u8]>,
    pub body: &'a [u8],
}

/// An answer: JSON, except `GET /metrics`.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// For 405: the methods the path accepts.
    pub allow: Option<String>,
    /// For 401: send `WWW-Authenticate: Bearer`.
    pub authenticate: bool,
}

impl Reply {
    pub fn json(status: u16, value: &Value) -> Reply {
        let mut body = serde_json::to_vec(value).unwrap_or_default();
        body.push(b'\n');
        Reply {
            status,
            content_type: "application/json",
            body,
            allow: None,
            authenticate: false,
        }
    }

    /// A non-JSON answer.
    pub fn text(status: u16, content_type: &'static str, body: String) -> Reply {
        Reply {
            status,
            content_type,
            body: body.into_bytes(),
            allow: None,
            authenticate: false,
        }
    }

    /// `{"error": message, "status": status}`.
    pub fn error(status: u16, message: impl Into<String>) -> Reply {
        Reply::json(status, &json!({"error": message.into(), "status": status}))
    }
}

type Handler = fn(&Admin, &[String], &[u8]) -> Reply;

#[derive(Clone, Copy)]
struct Op {
    method: &'static str,
    path: &'static str,
    handler: Handler,
}

const fn op(method: &'static str, path: &'static str, handler: Handler) -> Op {
    Op {
        method,
        path,
        handler,
    }
}

/// Every route the admin API serves. `PUT` comes before `DELETE` on the endpoints so that
/// walking the list in order (as the conformance test does) registers before removing.
const TABLE: [Op; 14] = [
    op("GET", "/healthz", healthz),
    op("GET", "/readyz", readyz),
    op("GET", "/status", status),
    op("GET", "/config", config),
    op("GET", "/routes", routes),
    op("GET", "/upstreams", upstreams),
    op("GET", "/upstreams/{name}", upstream),
    op("PUT", "/upstreams/{name}/endpoints", register),
    op("DELETE", "/upstreams/{name}/endpoints/{addr}", deregister),
    op("POST", "/reload", reload),
    op("GET", "/reload/status", reload_status),
    op("GET", "/metrics", metrics),
    op("GET", "/caches", caches),
    op("POST", "/caches/{name}/purge", purge),
];

/// The only route of the metrics-only listener (`observability.metrics.listen`).
const METRICS_ONLY: [Op; 1] = [op("GET", "/metrics", metrics)];

/// How long a scrape waits for the workers (they answer from a ~20 ms tick); a worker
/// slower than this is shown with its last answer.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(1);

const fn method_and_path<const N: usize>(table: [Op; N]) -> [(&'static str, &'static str); N] {
    let mut out = [("", ""); N];
    let mut i = 0;
    while i < N {
        out[i] = (table[i].method, table[i].path);
        i += 1;
    }
    out
}

const ROUTE_LIST: [(&str, &str); TABLE.len()] = method_and_path(TABLE);

/// `(method, path template)` of every admin route, as served and as documented in
/// `docs/admin-openapi.json`.
pub const ROUTES: &[(&str, &str)] = &ROUTE_LIST;

/// Answers one request: token check, route lookup, handler.
pub fn handle(admin: &Admin, request: &Request<'_>) -> Reply {
    let table: &[Op] = if admin.metrics_only {
        &METRICS_ONLY
    } else {
        &TABLE
    };
    if let Some(token) = &admin.token {
        if !is_authorized(token, request.authorization) {
            let mut reply = Reply::error(401, "missing or invalid bearer token");
            reply.authenticate = true;
            return reply;
        }
    }
    let mut allow: Vec<&str> = Vec::new();
    for op in table {
        match match_path(op.path, request.path) {
            PathMatch::No => {}
            PathMatch::BadEncoding => {
                return Reply::error(400, "invalid percent-encoding in the path")
            }
            PathMatch::Yes(params) => {
                if op.method == request.method {
                    return (op.handler)(admin, &params, request.body);
                }
                allow.push(op.method);
            }
        }
    }
    if allow.is_empty() {
        return Reply::error(404, format!("no admin route for {}", request.path));
    }
    allow.sort_unstable();
    allow.dedup();
    let mut reply = Reply::error(
        405,
        format!("method {} not allowed on {}", request.method, request.path),
    );
    reply.allow = Some(allow.join(", "));
    reply
}

/// `Authorization: Bearer <token>` (scheme case-insensitive, RFC 9110 §11.1) carrying
/// exactly `token`.
fn is_authorized(token: &str, header: Option<&[u8]>) -> bool {
    let Some(value) = header else {
        return false;
    };
    let Some(space) = value.iter().position(|&b| b == b' ') else {
        return false;
    };
    let (scheme, credentials) = value.split_at(space);
    let credentials = credentials.trim_ascii();
    scheme.eq_ignore_ascii_case(b"bearer") && crate::auth::ct_eq(credentials, token.as_bytes())
}

enum PathMatch {
    No,
    /// The values of the template's `{param}` segments, in order, decoded.
    Yes(Vec<String>),
    BadEncoding,
}

fn match_path(template: &str, path: &str) -> PathMatch {
    let mut params = Vec::new();
    let mut want = template.split('/');
    let mut got = path.split('/');
    loop {
        match (want.next(), got.next()) {
            (None, None) => return PathMatch::Yes(params),
            (Some(w), Some(g)) if w.starts_with('{') && w.ends_with('}') => {
                if g.is_empty() {
                    return PathMatch::No;
                }
                match percent_decode(g) {
                    Some(value) => params.push(value),
                    None => return PathMatch::BadEncoding,
                }
            }
            (Some(w), Some(g)) if w == g => {}
            _ => return PathMatch::No,
        }
    }
}

/// Decodes `%XX` escapes (RFC 3986 §2.1); `None` for a bad escape or a result that is not
/// UTF-8.
fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn param(params: &[String], index: usize) -> &str {
    params.get(index).map(String::as_str).unwrap_or_default()
}

// ---- handlers ----

fn healthz(_: &Admin, _: &[String], _: &[u8]) -> Reply {
    Reply::json(200, &json!({"status": "ok"}))
}

fn readyz(admin: &Admin, _: &[String], _: &[u8]) -> Reply {
    if admin.control.is_ready() {
        Reply::json(200, &json!({"status": "ready"}))
    } else {
        Reply::json(503, &json!({"status": "not ready"}))
    }
}

fn status(admin: &Admin, _: &[String], _: &[u8]) -> Reply {
    let control = &admin.control;
    Reply::json(
        200,
        &json!({
            "generation": control.generation(),
            "ready": control.is_ready(),
            "config_source": control.origin(),
            "last_reload": json::reload_status(&control.last_reload()),
            "tls": json::tls_listeners(&control.current()),
        }),
    )
}

fn reload_status(admin: &Admin, _: &[String], _: &[u8]) -> Reply {
    Reply::json(200, &json::reload_status(&admin.control.last_reload()))
}

fn config(admin: &Admin, _: &[String], _: &[u8]) -> Reply {
    let config = admin.control.current();
    let registered = admin.control.registered();
    Reply::json(
        200,
        &json::config(
            &config,
            &registered,
            &admin.control.health(),
            admin.control.generation(),
        ),
    )
}

fn routes(admin: &Admin, _: &[String], _: &[u8]) -> Reply {
    let config = admin.control.current();
    Reply::json(200, &json!({"routes": json::routes(&config)}))
}

fn upstreams(admin: &Admin, _: &[String], _: &[u8]) -> Reply {
    let config = admin.control.current();
    let registered = admin.control.registered();
    Reply::json(
        200,
        &json!({"upstreams": json::upstreams(&config, &registered, &admin.control.health())}),
    )
}

fn upstream(admin: &Admin, params: &[String], _: &[u8]) -> Reply {
    let name = param(params, 0);
    upstream_reply(admin, name, 200)
}

fn upstream_reply(admin: &Admin, name: &str, status: u16) -> Reply {
    let config = admin.control.current();
    let registered = admin.control.registered();
    match config.upstreams.iter().find(|u| u.name == name) {
        Some(upstream) => Reply::json(
            status,
            &json::upstream(upstream, &registered, &admin.control.health()),
        ),
        None => Reply::error(404, format!("unknown upstream \"{name}\"")),
    }
}

/// The Prometheus text format; blocks this thread until the workers answer (at most
/// [`SCRAPE_TIMEOUT`]). Not on the request path: the workers only copy their counters.
fn metrics(admin: &Admin, _: &[String], _: &[u8]) -> Reply {
    let control = &admin.control;
    let snapshots = control.metrics().scrape(SCRAPE_TIMEOUT);
    let last_reload = control.last_reload();
    let process = ProcessInfo {
        generation: control.generation(),
        last_reload_ok: last_reload.ok,
        last_reload_unix: unix_seconds(last_reload.at),
        start_unix: control.metrics().start_unix(),
        version: env!("CARGO_PKG_VERSION"),
        redis: control.cluster().stats(),
        certificates: certificate_expiry(&control.current()),
        caches: cache_sizes(&control.current()),
    };
    Reply::text(200, CONTENT_TYPE, render(&snapshots, &process))
}

/// The sizes of `config`'s caches, read from their stores.
fn cache_sizes(config: &Config) -> Vec<crate::observe::cache::StoreSize> {
    let mut sizes: Vec<_> = config
        .caches
        .iter()
        .map(|cache| {
            let stats = cache.store.stats();
            crate::observe::cache::StoreSize {
                cache: cache.name.clone(),
                objects: stats.objects,
                bytes: stats.bytes,
                capacity: stats.capacity,
                evictions: stats.evictions,
            }
        })
        .collect();
    sizes.sort_by(|a, b| a.cache.cmp(&b.cache));
    sizes
}

/// The certificates `config` serves, once per listener address, file and first name (a
/// file listed twice on one listener would otherwise be a duplicate series).
fn certificate_expiry(config: &Config) -> Vec<CertificateExpiry> {
    let mut out: Vec<CertificateExpiry> = Vec::new();
    for listener in &config.server.tls {
        for &addr in &listener.listen {
            for cert in &listener.certificates {
                let name = cert.names.first().cloned().unwrap_or_default();
                let seen = out
                    .iter()
                    .any(|c| c.listener == addr && c.file == cert.path && c.name == name);
                if !seen {
                    out.push(CertificateExpiry {
                        listener: addr,
                        file: cert.path.clone(),
                        name,
                        not_after: cert.not_after,
                    });
                }
            }
        }
    }
    out
}

fn reload(admin: &Admin, _: &[String], _: &[u8]) -> Reply {
    match admin.control.reload() {
        Ok(status) => {
            tracing::info!(
                generation = status.generation,
                "config reloaded (admin api)"
            );
            Reply::json(
                200,
                &json!({
                    "generation": status.generation,
                    "took_ms": json::millis(status.took),
                }),
            )
        }
        Err(errors) => {
            let lines: Vec<String> = errors.errors.iter().map(ToString::to_string).collect();
            tracing::warn!(errors = %errors, "config reload failed (admin api); still serving the previous config");
            Reply::json(
                400,
                &json!({"error": "invalid config", "status": 400, "errors": lines}),
            )
        }
    }
}

/// The caches of the served config and their stores' sizes.
fn caches(admin: &Admin, _: &[String], _: &[u8]) -> Reply {
    let sizes = cache_sizes(&admin.control.current());
    let list: Vec<Value> = sizes
        .iter()
        .map(|s| {
            json!({
                "name": &*s.cache,
                "objects": s.objects,
                "bytes": s.bytes,
                "capacity": s.capacity,
                "evictions": s.evictions,
            })
        })
        .collect();
    Reply::json(200, &json!({ "caches": list }))
}

/// `POST /caches/{name}/purge` body: exactly one of `url`, `prefix`, `tags`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeBody {
    url: Option<String>,
    prefix: Option<String>,
    tags: Option<Vec<String>>,
    #[serde(default)]
    soft: bool,
}

/// Removes stored answers (or, `soft`, marks them stale so that the next request
/// revalidates them). The store is shared by every worker: when this answers, no worker
/// serves a purged answer any more.
fn purge(admin: &Admin, params: &[String], body: &[u8]) -> Reply {
    let name = param(params, 0);
    let config = admin.control.current();
    let Some(cache) = config.caches.iter().find(|c| &*c.name == name) else {
        return Reply::error(404, format!("unknown cache \"{name}\""));
    };
    let parsed: PurgeBody = match serde_json::from_slice(body) {
        Ok(parsed) => parsed,
        Err(e) => return Reply::error(400, format!("invalid JSON body: {e}")),
    };
    let store = &cache.store;
    let purged = match (&parsed.url, &parsed.prefix, &parsed.tags) {
        (Some(url), None, None) => store.purge_url(url, parsed.soft),
        (None, Some(prefix), None) => store.purge_prefix(prefix, parsed.soft),
        (None, None, Some(tags)) if !tags.is_empty() => {
            let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
            store.purge_tags(&tags, parsed.soft)
        }
        _ => {
            return Reply::error(
                400,
                "give exactly one of \"url\", \"prefix\" or \"tags\" (a non-empty list)",
            )
        }
    };
    tracing::info!(cache = %name, purged, soft = parsed.soft, "cache purged (admin api)");
    Reply::json(200, &json!({ "purged": purged, "soft": parsed.soft }))
}

/// `PUT /upstreams/{name}/endpoints` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterBody {
    endpoints: Vec<RegisterEndpoint>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterEndpoint {
    addr: String,
    weight: Option<i64>,
}

fn register(admin: &Admin, params: &[String], body: &[u8]) -> Reply {
    let name = param(params, 0);
    let parsed: RegisterBody = match serde_json::from_slice(body) {
        Ok(parsed) => parsed,
        Err(e) => return Reply::error(400, format!("invalid JSON body: {e}")),
    };
    if parsed.endpoints.is_empty() {
        return Reply::error(400, "\"endpoints\" must list at least one endpoint");
    }
    let mut endpoints: Vec<Endpoint> = Vec::with_capacity(parsed.endpoints.len());
    for (index, e) in parsed.endpoints.iter().enumerate() {
        let Ok(addr) = e.addr.parse::<SocketAddr>() else {
            return Reply::error(
                400,
                format!(
                    "endpoints[{index}].addr: invalid address \"{}\": expected ip:port such as \"127.0.0.1:9003\" or \"[::1]:9003\" (host names are not resolved)",
                    e.addr
                ),
            );
        };
        let weight = e.weight.unwrap_or(1);
        let Some(weight) = u32::try_from(weight)
            .ok()
            .filter(|w| (1..=MAX_WEIGHT).contains(w))
        else {
            return Reply::error(
                400,
                format!("endpoints[{index}].weight: {weight} is out of range: must be within 1..={MAX_WEIGHT}"),
            );
        };
        if endpoints.iter().any(|known| known.addr == addr) {
            return Reply::error(
                400,
                format!("endpoints[{index}].addr: {addr} is listed twice"),
            );
        }
        endpoints.push(Endpoint {
            addr,
            weight,
            hostname: None,
        });
    }
    match admin.control.register(name, &endpoints) {
        Ok(()) => {
            tracing::info!(upstream = %name, endpoints = endpoints.len(), "endpoints registered (admin api)");
            upstream_reply(admin, name, 200)
        }
        Err(e) => registry_error(e),
    }
}

fn deregister(admin: &Admin, params: &[String], _: &[u8]) -> Reply {
    let name = param(params, 0);
    let raw = param(params, 1);
    let Ok(addr) = raw.parse::<SocketAddr>() else {
        return Reply::error(
            400,
            format!("invalid address \"{raw}\": expected ip:port, percent-encoded in the path"),
        );
    };
    match admin.control.deregister(name, addr) {
        Ok(()) => {
            tracing::info!(upstream = %name, %addr, "endpoint deregistered (admin api)");
            upstream_reply(admin, name, 200)
        }
        Err(e) => registry_error(e),
    }
}

fn registry_error(error: RegistryError) -> Reply {
    let status = match &error {
        RegistryError::UnknownUpstream(_) | RegistryError::NotRegistered(_) => 404,
        RegistryError::FromConfig { .. } => 409,
        RegistryError::InvalidEndpoint { .. } => 400,
        RegistryError::Config(_) | RegistryError::Persist(_) => {
            tracing::error!(error = %error, "admin api: registry change failed");
            500
        }
    };
    Reply::error(status, error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_header_forms() {
        let token = "0123456789abcdef";
        for (header, ok) in [
            (Some("Bearer 0123456789abcdef"), true),
            (Some("bearer 0123456789abcdef"), true),
            (Some("BEARER 0123456789abcdef "), true),
            (Some("Bearer 0123456789abcdeF"), false),
            (Some("Basic 0123456789abcdef"), false),
            (Some("Bearer"), false),
            (Some("Bearer "), false),
            (Some("0123456789abcdef"), false),
            (None, false),
        ] {
            assert_eq!(
                is_authorized(token, header.map(str::as_bytes)),
                ok,
                "{header:?}"
            );
        }
    }

    #[test]
    fn path_matching_and_decoding() {
        let yes = |t: &str, p: &str| match match_path(t, p) {
            PathMatch::Yes(params) => Some(params),
            _ => None,
        };
        assert_eq!(yes("/config", "/config"), Some(vec![]));
        assert_eq!(yes("/config", "/config/"), None);
        assert_eq!(yes("/config", "/configs"), None);
        assert_eq!(
            yes("/upstreams/{name}/endpoints", "/upstreams/app/endpoints"),
            Some(vec!["app".to_string()])
        );
        assert_eq!(
            yes("/upstreams/{name}/endpoints", "/upstreams//endpoints"),
            None
        );
        assert_eq!(
            yes(
                "/upstreams/{name}/endpoints/{addr}",
                "/upstreams/app/endpoints/%5B%3A%3A1%5D%3A9003"
            ),
            Some(vec!["app".to_string(), "[::1]:9003".to_string()])
        );
        assert_eq!(
            yes(
                "/upstreams/{name}/endpoints/{addr}",
                "/upstreams/app/endpoints/127.0.0.1:9003"
            ),
            Some(vec!["app".to_string(), "127.0.0.1:9003".to_string()])
        );
        assert!(matches!(
            match_path("/upstreams/{name}", "/upstreams/%zz"),
            PathMatch::BadEncoding
        ));
        assert!(matches!(
            match_path("/upstreams/{name}", "/upstreams/%4"),
            PathMatch::BadEncoding
        ));
        assert!(matches!(
            match_path("/upstreams/{name}", "/upstreams/%ff"),
            PathMatch::BadEncoding
        ));
    }

    #[test]
    fn routes_list_matches_the_table() {
        assert_eq!(ROUTES.len(), TABLE.len());
        for (route, op) in ROUTES.iter().zip(TABLE.iter()) {
            assert_eq!(*route, (op.method, op.path));
        }
        let mut unique = ROUTES.to_vec();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ROUTES.len(), "a route is listed twice");
    }
}
