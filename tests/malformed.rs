//! Malformed, smuggling and limit-violating requests through the real binary, with a real
//! recording upstream behind a catch-all route.
//!
//! Every case in [`CASES`] is sent on its own connection and must get exactly its status
//! with the JSON error body, the connection must close when the request's framing cannot
//! be known, the upstream must receive nothing, and strait must still be running. All
//! mismatches are collected before failing, so one run shows every one of them.
//! Valid-but-unusual requests (the positive controls) must be forwarded intact.

mod common;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;

/// What a rejected request may have done upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// Refused from its head: no upstream connection, not a byte sent.
    Nothing,
    /// Refused while its body streamed (chunked errors and limits are found only then):
    /// the head may have gone out, but no complete request reached the upstream.
    NoRequest,
}

#[derive(Debug, Clone, Copy)]
struct Case {
    name: &'static str,
    raw: &'static [u8],
    status: u16,
    /// The request's framing is unknowable after it: the connection must close.
    closes: bool,
    reach: Reach,
}

/// A request refused from its head; the connection must close.
const fn bad(name: &'static str, raw: &'static [u8], status: u16) -> Case {
    Case {
        name,
        raw,
        status,
        closes: true,
        reach: Reach::Nothing,
    }
}

/// A request refused from its head whose framing is known, so the connection may stay.
const fn refused(name: &'static str, raw: &'static [u8], status: u16) -> Case {
    Case {
        name,
        raw,
        status,
        closes: false,
        reach: Reach::Nothing,
    }
}

/// A request whose chunked body is refused while it streams.
const fn bad_body(name: &'static str, raw: &'static [u8], status: u16) -> Case {
    Case {
        name,
        raw,
        status,
        closes: true,
        reach: Reach::NoRequest,
    }
}

/// `prefix`, then `fill` repeated, then `suffix`: `N` bytes in all, built at compile time.
const fn padded<const N: usize>(prefix: &[u8], fill: u8, suffix: &[u8]) -> [u8; N] {
    let mut out = [fill; N];
    let mut i = 0;
    while i < prefix.len() {
        out[i] = prefix[i];
        i += 1;
    }
    let mut j = 0;
    while j < suffix.len() {
        out[N - suffix.len() + j] = suffix[j];
        j += 1;
    }
    out
}

/// The limits in [`config`]: small, so that the cases stay small.
const MAX_HEADER_BYTES: usize = 1024;
const MAX_URI_BYTES: usize = 256;
const MAX_BODY_BYTES: usize = 1024;

/// A head of 1200 bytes: past `max_header_bytes` although it arrives in one read.
static HEAD_TOO_LARGE: [u8; MAX_HEADER_BYTES + 176] =
    padded(b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: ", b'a', b"\r\n\r\n");
/// A request target of 300 bytes.
static URI_TOO_LONG: [u8; MAX_URI_BYTES + 70] =
    padded(b"GET /", b'u', b" HTTP/1.1\r\nHost: a\r\n\r\n");
/// A request line that never ends.
static ENDLESS_LINE: [u8; 600] = padded(b"GET /", b'u', b"");

const CHUNKED_HEAD: &[u8] =
    b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n";
/// One 2 KiB chunk: past `max_body_bytes`, and only the stream can tell.
static CHUNKED_TOO_LARGE: [u8; CHUNKED_HEAD.len() + 2048 + 7] =
    padded(CHUNKED_HEAD, b'b', b"\r\n0\r\n\r\n");

/// A chunked POST with `$body` after its head.
macro_rules! chunked {
    ($body:literal) => {
        concat!(
            "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            $body
        )
        .as_bytes()
    };
}

/// A request that would smuggle this one if a parser let its body end early.
const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";

static CASES: &[Case] = &[
    // ── Framing: Content-Length and Transfer-Encoding (RFC 9112 §6) ──
    // §6.3: both present "ought to be handled as an error"; a proxy must not pick one.
    bad("CL then TE", concat!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes(), 400),
    bad("TE then CL", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    bad("CL and TE in HTTP/1.0", b"POST / HTTP/1.0\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    // RFC 9110 §8.6: differing values are unrecoverable.
    bad("two differing CL", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhelloX", 400),
    bad("CL with plus sign", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello", 400),
    bad("CL negative", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
    bad("CL with space inside", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 0\r\n\r\nhelloworld", 400),
    bad("CL in hex", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\nhello", 400),
    // RFC 9110 §8.6 lets a recipient reject a list even of identical values.
    bad("CL identical comma list", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello", 400),
    bad("CL differing comma list", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\nhello", 400),
    bad("CL 20 digits overflows u64", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", 400),
    bad("CL empty", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", 400),
    bad("CL 19 digits past the body limit", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9999999999999999999\r\n\r\n", 413),
    bad("CL past the body limit", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1025\r\n\r\n", 413),
    // §6.1: chunked at most once.
    bad("TE chunked, chunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400),
    bad("TE chunked on two lines", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    // §6.3: chunked not the final coding in a request → 400 and close (a MUST, ahead of
    // §6.1's SHOULD-501 for a coding not understood).
    bad("TE gzip", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n", 400),
    bad("TE chunked, gzip", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", 400),
    bad("TE chunked then TE gzip", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n", 400),
    bad("TE identity", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n", 400),
    bad("TE xchunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400),
    bad("TE quoted chunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n0\r\n\r\n", 400),
    bad("TE empty", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\nContent-Length: 5\r\n\r\nhello", 400),
    // RFC 9110 §5.5: control characters are invalid in a field value.
    bad("TE vertical tab before chunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n", 400),
    bad("TE form feed after chunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\x0c\r\n\r\n0\r\n\r\n", 400),
    // RFC 9112 §5.2: obs-fold in a request → 400 (or unfold, which we do not).
    bad("TE obs-folded", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\nContent-Length: 5\r\n\r\nhello", 400),
    bad("TE line folded onto Host", b"POST / HTTP/1.1\r\nHost: a\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    // RFC 9112 §5.1: whitespace between name and colon → 400.
    bad("TE space before colon", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\nhello", 400),
    bad("CL space before colon", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\nhello", 400),
    // RFC 9112 §6.1: TE in HTTP/1.0 means faulty framing.
    bad("TE in HTTP/1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    // §6.1: a coding we do not implement, with chunked final (framing known) → 501.
    bad("TE gzip, chunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    // ── Chunked bodies (RFC 9112 §7.1): refused while streaming ──
    bad_body("chunk size x", chunked!("x\r\nhello\r\n0\r\n\r\n"), 400),
    bad_body("chunk size -1", chunked!("-1\r\nhello\r\n0\r\n\r\n"), 400),
    bad_body("chunk size empty", chunked!("\r\nhello\r\n0\r\n\r\n"), 400),
    bad_body("chunk size 17 hex digits", chunked!("10000000000000005\r\nhello\r\n0\r\n\r\n"), 400),
    bad_body("chunk size 0x5", chunked!("0x5\r\nhello\r\n0\r\n\r\n"), 400),
    bad_body("chunk extension with control char", chunked!("5;a=\x01\r\nhello\r\n0\r\n\r\n"), 400),
    bad_body("no CRLF after chunk data", chunked!("5\r\nhelloGET /smuggled HTTP/1.1\r\n\r\n0\r\n\r\n"), 400),
    bad_body("bare LF in chunk line", chunked!("5\nhello\r\n0\r\n\r\n"), 400),
    bad_body("bare CR in chunk line", chunked!("5\rhello\r\n0\r\n\r\n"), 400),
    bad_body("trailer line without colon", chunked!("5\r\nhello\r\n0\r\nbad trailer\r\n\r\n"), 400),
    bad_body("trailer obs-fold", chunked!("5\r\nhello\r\n0\r\nX-T: a\r\n b\r\n\r\n"), 400),
    bad_body("chunked body past the limit", &CHUNKED_TOO_LARGE, 413),
    // ── Header syntax (RFC 9112 §5, RFC 9110 §5.5) ──
    bad("obs-fold in a header", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", 400),
    bad("whitespace line before first header", b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400),
    bad("Host space before colon", b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
    bad("bare CR in header value", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n", 400),
    bad("NUL in header value", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n", 400),
    bad("NUL in header name", b"GET / HTTP/1.1\r\nHost: a\r\nX-\x00A: b\r\n\r\n", 400),
    bad("control char in header name", b"GET / HTTP/1.1\r\nHost: a\r\nX-\x01A: b\r\n\r\n", 400),
    bad("separator in header name", b"GET / HTTP/1.1\r\nHost: a\r\nX(A): b\r\n\r\n", 400),
    bad("header line without colon", b"GET / HTTP/1.1\r\nHost: a\r\nX-A\r\n\r\n", 400),
    bad("empty header name", b"GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n", 400),
    // ── Request line (RFC 9112 §3) ──
    bad("bare CR in request line", b"GET /\rx HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    bad("NUL in target", b"GET /a\x00b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    bad("control char in target", b"GET /a\x01b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    bad("DEL in target", b"GET /a\x7fb HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    bad("method G@T", b"G@T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    bad("method GET NUL", b"GET\x00 / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    bad("empty method", b" / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    bad("two spaces after method", b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    bad("target not a path", b"GET foo HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    bad("target http:/x", b"GET http:/x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    bad("space inside target", b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    bad("asterisk target with GET", b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    // RFC 9110 §4.2.4: userinfo in an http(s) URI is to be treated as an error.
    bad("userinfo in absolute target", b"GET http://user@a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    bad("absolute target without host", b"GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    // RFC 9110 §9.3.6: CONNECT is for proxies that tunnel; we do not.
    bad("CONNECT", b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 501),
    // RFC 9110 §9.1: methods are case-sensitive, so `get` is not GET and /readonly (GET
    // only) does not take it. The request is well framed, so the connection may stay.
    refused("lowercase get on a GET-only route", b"get /readonly HTTP/1.1\r\nHost: a\r\n\r\n", 405),
    // ── Host (RFC 9112 §3.2: a MUST-400 for missing, repeated or invalid) ──
    bad("missing Host in HTTP/1.1", b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n", 400),
    bad("two Host headers", b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400),
    bad("two differing Host headers", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    bad("Host a b", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    bad("Host a/b", b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
    bad("Host a@b", b"GET / HTTP/1.1\r\nHost: a@b\r\n\r\n", 400),
    bad("Host with non-digit port", b"GET / HTTP/1.1\r\nHost: a:b\r\n\r\n", 400),
    bad("Host with unclosed IP literal", b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400),
    bad("Host list", b"GET / HTTP/1.1\r\nHost: a, b\r\n\r\n", 400),
    // ── Versions (RFC 9112 §2.3: HTTP-version = "HTTP/" DIGIT "." DIGIT, case-sensitive) ──
    bad("HTTP/2.0", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    bad("HTTP/3.0", b"GET / HTTP/3.0\r\nHost: a\r\n\r\n", 505),
    bad("HTTP/0.9 declared", b"GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505),
    bad("HTTP/3 without minor", b"GET / HTTP/3\r\nHost: a\r\n\r\n", 400),
    bad("lowercase http/1.1", b"GET / http/1.1\r\nHost: a\r\n\r\n", 400),
    bad("HTTP/1.10", b"GET / HTTP/1.10\r\nHost: a\r\n\r\n", 400),
    bad("garbage version", b"GET / FOO/1.1\r\nHost: a\r\n\r\n", 400),
    bad("space after version", b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400),
    bad("HTTP/0.9 request line without version", b"GET /\r\n\r\n", 400),
    // ── Limits (docs/configuration.md, [server.limits]) ──
    bad("head past max_header_bytes", &HEAD_TOO_LARGE, 431),
    bad(
        "more than max_headers",
        b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\nF: 6\r\nG: 7\r\nH: 8\r\nI: 9\r\nJ: 10\r\n\r\n",
        431,
    ),
    bad("target past max_uri_bytes", &URI_TOO_LONG, 414),
    bad("request line that never ends", &ENDLESS_LINE, 414),
    // RFC 9110 §10.1.1: an expectation we cannot meet.
    bad("Expect something else", b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\nContent-Length: 5\r\n\r\nhello", 417),
];

/// The config for the table: small limits, a catch-all route to `app`, a GET-only route
/// to it, and `example.com` routed to `byhost`.
fn config(app: &Upstream, byhost: &Upstream, timeouts: &str) -> String {
    format!(
        r#"[server]
listen = ["127.0.0.1:0"]

[server.limits]
max_header_bytes = {MAX_HEADER_BYTES}
max_headers = 10
max_uri_bytes = {MAX_URI_BYTES}
max_body_bytes = {MAX_BODY_BYTES}

[server.timeouts]
{timeouts}

[upstreams.app]
endpoints = ["{app}"]

[upstreams.byhost]
endpoints = ["{byhost}"]

[[routes]]
path = "/readonly"
methods = ["GET"]
upstream = "app"

[[routes]]
path = "/{{*rest}}"
upstream = "app"

[[routes]]
path = "/"
upstream = "app"

[[routes]]
path = "/{{*rest}}"
hosts = ["example.com"]
upstream = "byhost"
"#,
        app = app.addr,
        byhost = byhost.addr,
    )
}

/// Checks one case; returns what went wrong.
fn check_case(strait: &mut Strait, app: &Upstream, case: &Case) -> Vec<String> {
    let mut failures = Vec::new();
    let requests_before = app.requests().len();
    let connections_before = app.connections.load(Ordering::SeqCst);
    let mut stream = strait.connect();
    if let Err(e) = stream.write_all(case.raw) {
        failures.push(format!("write failed: {e}"));
    }
    let mut reader = Reader::new(&mut stream);
    match reader.read_response("GET") {
        Ok(response) => {
            if response.status != case.status {
                failures.push(format!(
                    "status {} (want {}), body {:?}",
                    response.status,
                    case.status,
                    response.text()
                ));
            } else if let Err(why) = check_error_body(&response, case.status) {
                failures.push(why);
            }
            let extra = reader.buffered().to_vec();
            if !extra.is_empty() {
                failures.push(format!(
                    "bytes after the error response: {:?}",
                    String::from_utf8_lossy(&extra)
                ));
            }
            if case.closes {
                if response.header("connection") != Some("close") {
                    failures.push("no `connection: close` on the error".to_owned());
                }
                if !is_closed(&mut stream) {
                    failures.push("connection still open after the error".to_owned());
                }
            } else {
                // Our end of the connection: strait has then finished with it.
                let _ = stream.shutdown(Shutdown::Write);
                let mut rest = Vec::new();
                let _ = stream.read_to_end(&mut rest);
                if !rest.is_empty() {
                    failures.push(format!(
                        "bytes after the response: {:?}",
                        String::from_utf8_lossy(&rest)
                    ));
                }
            }
        }
        Err(e) => failures.push(format!("no response: {e}")),
    }
    // The client saw the answer and the close, so anything forwarded is recorded by now.
    let received = app.requests();
    if received.len() != requests_before {
        let lines: Vec<&str> = received[requests_before..]
            .iter()
            .map(Received::request_line)
            .collect();
        failures.push(format!("upstream received {lines:?}"));
    }
    if case.reach == Reach::Nothing {
        let connections = app.connections.load(Ordering::SeqCst);
        if connections != connections_before {
            failures.push(format!(
                "upstream got {} new connection(s)",
                connections - connections_before
            ));
        }
    }
    if !strait.is_running() {
        failures.push("strait is no longer running".to_owned());
    }
    failures
}

/// An error answer carries `{"error":"…","status":N}` as JSON.
fn check_error_body(response: &Response, status: u16) -> Result<(), String> {
    if response.header("content-type") != Some("application/json") {
        return Err(format!(
            "content-type {:?}",
            response.header("content-type")
        ));
    }
    let text = response.text();
    let suffix = format!("\",\"status\":{status}}}");
    let message = text
        .trim_end()
        .strip_prefix("{\"error\":\"")
        .and_then(|rest| rest.strip_suffix(&suffix))
        .ok_or_else(|| format!("body is not the JSON error for {status}: {text:?}"))?;
    if message.is_empty() || message.contains(['"', '\\']) || message.chars().any(char::is_control)
    {
        return Err(format!("error message {message:?}"));
    }
    Ok(())
}

/// Runs every case, then a valid request whose arrival proves that no rejected request
/// reached the upstream late. Panics with every mismatch at once.
fn run_table(strait: &mut Strait, app: &Upstream) {
    assert!(CASES.len() >= 45);
    let mut failures = Vec::new();
    // Head-level refusals first: their "no connection" check is completed by the sentinel.
    let head_level = CASES.iter().filter(|c| c.reach == Reach::Nothing).count();
    let order = CASES
        .iter()
        .filter(|c| c.reach == Reach::Nothing)
        .chain(CASES.iter().filter(|c| c.reach != Reach::Nothing));
    for (i, case) in order.enumerate() {
        for why in check_case(strait, app, case) {
            failures.push(format!("[{i}] {}: {why}", case.name));
        }
        if i + 1 == head_level {
            // The upstream accepts in order: the sentinel's connection is the first.
            let response = strait.request(b"GET /sentinel HTTP/1.1\r\nHost: a\r\n\r\n");
            assert_eq!(response.status, 200, "sentinel");
            let lines: Vec<String> = app
                .requests()
                .iter()
                .map(|r| r.request_line().to_owned())
                .collect();
            if lines != ["GET /sentinel HTTP/1.1"] || app.connections.load(Ordering::SeqCst) != 1 {
                failures.push(format!(
                    "after the head-level cases the upstream has {} connection(s) and {lines:?}",
                    app.connections.load(Ordering::SeqCst)
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures in {} cases:\n  {}\nstrait log:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n  "),
        strait.log.lock().unwrap()
    );
}

#[test]
fn malformed_requests_are_refused() {
    let (app, byhost) = (Upstream::echo(), Upstream::echo());
    let mut strait = Strait::start(&config(&app, &byhost, ""));
    run_table(&mut strait, &app);
    assert!(byhost.requests().is_empty());
}

#[test]
fn malformed_requests_are_refused_on_epoll() {
    let (app, byhost) = (Upstream::echo(), Upstream::echo());
    let mut strait = Strait::start_with(
        &config(&app, &byhost, ""),
        &["--workers", "1", "--io-driver", "epoll"],
    );
    // The log line naming the driver is recorded just after the address is reported.
    wait_until("the epoll driver in the log", || {
        strait.log.lock().unwrap().contains("\"epoll\"")
    });
    run_table(&mut strait, &app);
    assert!(byhost.requests().is_empty());
}

/// Pipelining is legitimate: a body ends where its Content-Length says, and what follows is
/// the next request. With Transfer-Encoding as well, nothing may go through.
#[test]
fn pipelined_request_after_body_is_separate_but_smuggled_one_is_not() {
    let (app, byhost) = (Upstream::echo(), Upstream::echo());
    let strait = Strait::start(&config(&app, &byhost, ""));

    let mut stream = strait.connect();
    let raw =
        format!("POST /first HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello{SMUGGLED}");
    stream.write_all(raw.as_bytes()).unwrap();
    let mut reader = Reader::new(&mut stream);
    let first = reader.read_response("POST").unwrap();
    let second = reader.read_response("GET").unwrap();
    assert_eq!(
        (first.status, first.text().as_str()),
        (200, "POST /first HTTP/1.1\nhello")
    );
    assert_eq!(
        (second.status, second.text().as_str()),
        (200, "GET /smuggled HTTP/1.1\n")
    );
    let received = app.requests();
    assert_eq!(received.len(), 2);
    assert_eq!(
        (received[0].request_line(), &received[0].body[..]),
        ("POST /first HTTP/1.1", &b"hello"[..])
    );
    assert_eq!(
        (received[1].request_line(), &received[1].body[..]),
        ("GET /smuggled HTTP/1.1", &b""[..])
    );

    let mut stream = strait.connect();
    let raw = format!("POST /first HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}");
    stream.write_all(raw.as_bytes()).unwrap();
    let mut reader = Reader::new(&mut stream);
    let refused = reader.read_response("POST").unwrap();
    assert_eq!(refused.status, 400);
    assert!(reader.buffered().is_empty());
    assert!(is_closed(&mut stream));
    assert_eq!(app.requests().len(), 2, "nothing more reached the upstream");
}

/// Valid but unusual requests that must be accepted and forwarded exactly.
#[test]
fn unusual_valid_requests_are_forwarded() {
    let (app, byhost) = (Upstream::echo(), Upstream::echo());
    let strait = Strait::start(&config(&app, &byhost, ""));
    let mut failures = Vec::new();
    let mut expect =
        |name: &str, raw: &[u8], want_line: &str, want_body: &str| -> Option<Received> {
            let before = app.requests().len();
            let mut stream = strait.connect();
            stream.write_all(raw).unwrap();
            let response = match Reader::new(&mut stream).read_response("GET") {
                Ok(r) => r,
                Err(e) => {
                    failures.push(format!("{name}: no response: {e}"));
                    return None;
                }
            };
            let received = app.requests();
            if response.status != 200 || received.len() != before + 1 {
                failures.push(format!(
                    "{name}: status {} {:?}, upstream got {}",
                    response.status,
                    response.text(),
                    received.len() - before
                ));
                return None;
            }
            let got = received[before].clone();
            if got.request_line() != want_line || got.body != want_body.as_bytes() {
                failures.push(format!(
                    "{name}: upstream got {:?} with body {:?}",
                    got.request_line(),
                    String::from_utf8_lossy(&got.body)
                ));
            }
            Some(got)
        };

    if let Some(r) = expect(
        "chunked with extensions and trailers",
        b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6 ; a=\"b\"\r\n world\r\n0\r\nX-Sum: 1\r\n\r\n",
        "POST /c HTTP/1.1",
        "hello world",
    ) {
        assert_eq!(r.header("transfer-encoding").as_deref(), Some("chunked"));
        assert_eq!(r.header("content-length"), None);
    }
    expect(
        "Transfer-Encoding Chunked in mixed case",
        b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ChUnKeD\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        "POST /c HTTP/1.1",
        "abc",
    );
    // RFC 9110 §5.6.1: empty list elements are ignored; OWS around the value is not content.
    expect(
        "TE with an empty list element and OWS",
        b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \t, chunked \t\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        "POST /c HTTP/1.1",
        "abc",
    );
    // RFC 9112 §2.2: empty lines before the request line are ignored.
    expect(
        "leading CRLFs",
        b"\r\n\r\nGET /lead HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /lead HTTP/1.1",
        "",
    );
    // RFC 9110 §9.1: a lowercase method is just another method; the catch-all takes any.
    expect(
        "lowercase method",
        b"get /x HTTP/1.1\r\nHost: a\r\n\r\n",
        "get /x HTTP/1.1",
        "",
    );
    expect(
        "GET on the GET-only route",
        b"GET /readonly HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /readonly HTTP/1.1",
        "",
    );
    if let Some(r) = expect(
        "identical duplicate Content-Length",
        b"POST /d HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        "POST /d HTTP/1.1",
        "hello",
    ) {
        let lines = r
            .head
            .to_ascii_lowercase()
            .matches("\r\ncontent-length:")
            .count();
        assert_eq!(lines, 1, "one Content-Length forwarded: {:?}", r.head);
    }
    expect(
        "Content-Length with leading zeros",
        b"POST /z HTTP/1.1\r\nHost: a\r\nContent-Length: 005\r\n\r\nhello",
        "POST /z HTTP/1.1",
        "hello",
    );
    expect(
        "body of exactly max_body_bytes",
        &padded::<{ 55 + MAX_BODY_BYTES }>(
            b"POST /m HTTP/1.1\r\nHost: a\r\nContent-Length: 1024\r\n\r\n",
            b'm',
            b"",
        ),
        "POST /m HTTP/1.1",
        &"m".repeat(MAX_BODY_BYTES),
    );
    expect(
        "exactly max_headers headers",
        b"GET /h HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\nF: 6\r\nG: 7\r\nH: 8\r\nI: 9\r\n\r\n",
        "GET /h HTTP/1.1",
        "",
    );
    // RFC 9110 §2.5: a higher minor version is served as the highest we implement.
    expect(
        "HTTP/1.2 as HTTP/1.1",
        b"GET /v HTTP/1.2\r\nHost: a\r\n\r\n",
        "GET /v HTTP/1.1",
        "",
    );
    // RFC 9112 §3.2: Host is an HTTP/1.1 requirement; 1.0 may omit it. We speak 1.1 to the
    // upstream, so it must get a Host (empty: the target URI has no authority).
    if let Some(r) = expect(
        "HTTP/1.0 without Host",
        b"GET /old HTTP/1.0\r\n\r\n",
        "GET /old HTTP/1.1",
        "",
    ) {
        if r.head.to_ascii_lowercase().matches("\r\nhost:").count() != 1 {
            failures.push(format!(
                "HTTP/1.0 without Host: upstream head has no single Host: {:?}",
                r.head
            ));
        }
    }
    // RFC 9112 §3.2.2: an absolute-form target's authority wins over the Host header.
    let before = byhost.requests().len();
    let response =
        strait.request(b"GET http://example.com/x?y=1 HTTP/1.1\r\nHost: other.org\r\n\r\n");
    let got = byhost.requests();
    if response.status != 200 || got.len() != before + 1 {
        failures.push(format!(
            "absolute-form: status {} {:?}",
            response.status,
            response.text()
        ));
    } else if got[before].request_line() != "GET /x?y=1 HTTP/1.1"
        || got[before].header("host").as_deref() != Some("example.com")
    {
        failures.push(format!(
            "absolute-form: upstream got {:?}",
            got[before].head
        ));
    }
    assert!(
        failures.is_empty(),
        "{} controls failed:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

/// The config for the timeout tests: `header_read` and `keepalive_idle` short enough to
/// wait for.
const HEADER_READ: Duration = Duration::from_millis(300);
const KEEPALIVE_IDLE: Duration = Duration::from_millis(400);

fn check_head_timeouts(args: &[&str]) {
    let (app, byhost) = (Upstream::echo(), Upstream::echo());
    let timeouts = "header_read = \"300ms\"\nkeepalive_idle = \"400ms\"";
    let mut strait = Strait::start_with(&config(&app, &byhost, timeouts), args);

    // A partial head: 408 once `header_read` has passed, then the close.
    let start = Instant::now();
    let mut stream = strait.connect();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n").unwrap();
    let response = read_response(&mut stream).expect("a 408");
    assert_eq!(response.status, 408, "{:?}", response.text());
    check_error_body(&response, 408).unwrap();
    assert!(
        start.elapsed() >= HEADER_READ,
        "answered after {:?}",
        start.elapsed()
    );
    assert!(is_closed(&mut stream));

    // An HTTP/0.9-style line without the blank line is just an unfinished head.
    let mut stream = strait.connect();
    stream.write_all(b"GET /\r\n").unwrap();
    assert_eq!(read_response(&mut stream).expect("a 408").status, 408);
    assert!(is_closed(&mut stream));

    // Slowloris: a header line every 50 ms does not extend the deadline, which runs from
    // the first byte. The read timeout paces the writes; the answer ends the loop.
    let start = Instant::now();
    let mut stream = strait.connect();
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    let mut got = Vec::new();
    let mut byte = [0u8; 1024];
    for i in 0.. {
        assert!(start.elapsed() < DEADLINE, "no answer to a slow head");
        match stream.read(&mut byte) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&byte[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if got.is_empty() && i < 40 {
                    let _ = stream.write_all(format!("X-{i}: a\r\n").as_bytes());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("slow head: {e}"),
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408 "), "slow head got {text:?}");
    assert!(
        start.elapsed() < HEADER_READ * 4,
        "the deadline was extended: {:?}",
        start.elapsed()
    );

    // A connection that never sends a byte is closed quietly once `header_read` has passed:
    // there is no request to answer.
    let start = Instant::now();
    let mut stream = strait.connect();
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    assert!(
        rest.is_empty(),
        "idle connection got {:?}",
        String::from_utf8_lossy(&rest)
    );
    let waited = start.elapsed();
    assert!(
        waited >= HEADER_READ && waited < DEADLINE,
        "a silent connection closed after {waited:?}"
    );

    // A keep-alive connection idle after an answer (a 405, which keeps the connection and
    // needs no upstream) is closed once `keepalive_idle` has passed, not `header_read`.
    let mut stream = strait.connect();
    stream
        .write_all(b"POST /readonly HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut stream).expect("a 405").status, 405);
    let start = Instant::now();
    assert!(is_closed(&mut stream), "the idle connection was not closed");
    let waited = start.elapsed();
    assert!(
        waited >= KEEPALIVE_IDLE - Duration::from_millis(20) && waited < DEADLINE,
        "an idle keep-alive connection closed after {waited:?}"
    );

    assert!(app.requests().is_empty() && app.connections.load(Ordering::SeqCst) == 0);
    assert!(strait.is_running());
}

#[test]
fn slow_heads_time_out() {
    check_head_timeouts(&["--workers", "1"]);
}

#[test]
fn slow_heads_time_out_on_epoll() {
    check_head_timeouts(&["--workers", "1", "--io-driver", "epoll"]);
}
