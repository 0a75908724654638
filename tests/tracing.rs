//! Tracing through the real binary: W3C `traceparent` propagation to the upstream and
//! OTLP/HTTP JSON export of the request's SERVER span to a collector on loopback.

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// An OTLP/HTTP receiver on 127.0.0.1: records each POST body as JSON and answers 200.
struct Collector {
    url: String,
    exports: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Collector {
    fn start() -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        let exports = Arc::new(Mutex::new(Vec::new()));
        let sink = exports.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let sink = sink.clone();
                thread::spawn(move || {
                    if let Some(body) = read_post(&mut stream) {
                        if let Ok(json) = serde_json::from_slice(&body) {
                            sink.lock().unwrap().push(json);
                        }
                        let _ = stream.write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
                        );
                    }
                });
            }
        });
        Collector { url, exports }
    }

    /// Every span received so far.
    fn spans(&self) -> Vec<serde_json::Value> {
        let mut spans = Vec::new();
        for export in self.exports.lock().unwrap().iter() {
            for rs in export["resourceSpans"].as_array().into_iter().flatten() {
                for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                    spans.extend(ss["spans"].as_array().into_iter().flatten().cloned());
                }
            }
        }
        spans
    }
}

fn read_post(stream: &mut TcpStream) -> Option<Vec<u8>> {
    stream.set_read_timeout(Some(DEADLINE)).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    assert!(head.starts_with("post /v1/traces http/1.1\r\n"), "{head}");
    assert!(
        head.contains("\r\ncontent-type: application/json\r\n"),
        "{head}"
    );
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())?;
    while buf.len() < head_end + len {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(buf[head_end..head_end + len].to_vec())
}

fn tracing_config(upstream: std::net::SocketAddr, collector: &Collector, ratio: &str) -> String {
    proxy_config(
        upstream,
        &format!(
            "\n[observability.tracing]\notlp_endpoint = \"{}\"\nsample_ratio = {ratio}\nflush_interval = \"100ms\"\n",
            collector.url
        ),
    )
}

/// All values of header `name` in a received head.
fn header_values(received: &Received, name: &str) -> Vec<String> {
    received
        .head
        .split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_owned())
        .collect()
}

/// `(trace, span, flags)` of a `traceparent` value.
fn split_traceparent(value: &str) -> (String, String, String) {
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "{value}");
    assert_eq!(parts[0], "00", "{value}");
    (parts[1].into(), parts[2].into(), parts[3].into())
}

fn attribute<'a>(span: &'a serde_json::Value, key: &str) -> Option<&'a serde_json::Value> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
}

#[test]
fn propagates_the_trace_and_exports_the_server_span() {
    let collector = Collector::start();
    let upstream = Upstream::fixed("ok");
    let strait = Strait::start(&tracing_config(upstream.addr, &collector, "1.0"));

    let request = format!(
        "GET /items/7?full=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: tracing-test\r\n\
         traceparent: 00-{CLIENT_TRACE}-{CLIENT_SPAN}-01\r\n\r\n"
    );
    let unix_nanos = || {
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        u64::try_from(since.unwrap().as_nanos()).unwrap()
    };
    let sent = unix_nanos();
    let response = strait.request(request.as_bytes());
    let answered = unix_nanos();
    assert_eq!(response.status, 200);

    // The upstream sees the same trace, with our span as its parent, still sampled.
    let received = upstream.last();
    let values = header_values(&received, "traceparent");
    assert_eq!(values.len(), 1, "exactly one traceparent: {values:?}");
    let (trace, our_span, flags) = split_traceparent(&values[0]);
    assert_eq!(trace, CLIENT_TRACE);
    assert_ne!(our_span, CLIENT_SPAN);
    assert_ne!(our_span, "0000000000000000");
    assert_eq!(flags, "01");

    // The collector gets our span: child of the client's, named after the route.
    wait_until("the span at the collector", || {
        collector
            .spans()
            .iter()
            .any(|s| s["traceId"] == CLIENT_TRACE)
    });
    let spans = collector.spans();
    let span = spans.iter().find(|s| s["traceId"] == CLIENT_TRACE).unwrap();
    assert_eq!(span["spanId"], our_span.as_str());
    assert_eq!(span["parentSpanId"], CLIENT_SPAN);
    assert_eq!(span["kind"], 2);
    assert_eq!(span["name"], "GET /{*rest}");
    let start: u64 = span["startTimeUnixNano"].as_str().unwrap().parse().unwrap();
    let end: u64 = span["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
    // The span lies within the request as the client saw it (clock reading granularity aside).
    let slack = 2_000_000;
    assert!(
        sent <= start + slack && start <= end && end <= answered + slack,
        "span {start}..{end}, request {sent}..{answered}"
    );
    let string = |key: &str| attribute(span, key).and_then(|v| v["stringValue"].as_str());
    assert_eq!(string("http.request.method"), Some("GET"));
    assert_eq!(string("http.route"), Some("/{*rest}"));
    assert_eq!(string("url.path"), Some("/items/7"));
    assert_eq!(string("url.query"), Some("full=1"));
    assert_eq!(string("server.address"), Some("example.com"));
    assert_eq!(string("client.address"), Some("127.0.0.1"));
    assert_eq!(string("user_agent.original"), Some("tracing-test"));
    assert_eq!(string("network.protocol.version"), Some("1.1"));
    assert_eq!(string("strait.upstream"), Some("app"));
    let endpoint = upstream.addr.to_string();
    assert_eq!(string("strait.endpoint"), Some(endpoint.as_str()));
    assert_eq!(
        attribute(span, "http.response.status_code").unwrap()["intValue"],
        "200"
    );
    assert!(
        span.get("status").is_none(),
        "a 200 leaves the status unset"
    );
}

#[test]
fn an_unsampled_new_trace_still_propagates() {
    let collector = Collector::start();
    let upstream = Upstream::fixed("ok");
    let strait = Strait::start(&tracing_config(upstream.addr, &collector, "0.0"));
    // An invalid (upper-case) traceparent is ignored: a new trace starts.
    let request = format!(
        "GET / HTTP/1.1\r\nHost: example.com\r\ntraceparent: 00-{}-{CLIENT_SPAN}-01\r\n\r\n",
        CLIENT_TRACE.to_uppercase()
    );
    assert_eq!(strait.request(request.as_bytes()).status, 200);
    let values = header_values(&upstream.last(), "traceparent");
    assert_eq!(values.len(), 1, "{values:?}");
    let (trace, span, flags) = split_traceparent(&values[0]);
    assert_ne!(trace.to_uppercase(), CLIENT_TRACE.to_uppercase());
    assert_eq!(trace.len(), 32);
    assert_eq!(span.len(), 16);
    assert_eq!(flags, "00", "sample_ratio 0 never samples a new trace");
}

#[test]
fn without_tracing_the_client_traceparent_is_forwarded_untouched() {
    let upstream = Upstream::fixed("ok");
    let strait = Strait::start(&proxy_config(upstream.addr, ""));
    let value = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let request = format!("GET / HTTP/1.1\r\nHost: example.com\r\ntraceparent: {value}\r\n\r\n");
    assert_eq!(strait.request(request.as_bytes()).status, 200);
    assert_eq!(header_values(&upstream.last(), "traceparent"), [value]);
}
