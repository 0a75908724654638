//! OTLP/HTTP JSON encoding of a batch of spans: one `ExportTraceServiceRequest`
//! (`resourceSpans` → `scopeSpans` → `spans`), as the OTLP specification's JSON mapping
//! says: trace and span ids as lower-case hex strings (not base64), 64-bit integers
//! (times, `intValue`) as decimal strings, enums (`kind`, `status.code`) as numbers, field
//! names in lowerCamelCase.
//!
//! Runs on the exporter thread only. Attribute names follow the OpenTelemetry semantic
//! conventions for HTTP server spans (stable since v1.23).

use super::{encode_hex, Field, SpanData};
use crate::http1::Version;

/// `SPAN_KIND_SERVER` in `opentelemetry.proto.trace.v1.Span.SpanKind`.
const SPAN_KIND_SERVER: u8 = 2;
/// `STATUS_CODE_ERROR` in `opentelemetry.proto.trace.v1.Status.StatusCode`.
const STATUS_CODE_ERROR: u8 = 2;
/// The instrumentation scope named in every export.
const SCOPE_NAME: &str = "strait";

/// Appends one `ExportTraceServiceRequest` holding `spans` to `out`.
pub(crate) fn encode_export_request(service_name: &str, spans: &[SpanData], out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"resourceSpans\":[{\"resource\":{\"attributes\":[");
    string_attr(out, "service.name", service_name.as_bytes());
    out.push(b',');
    string_attr(out, "telemetry.sdk.name", b"strait");
    out.push(b',');
    string_attr(out, "telemetry.sdk.language", b"rust");
    out.extend_from_slice(b"]},\"scopeSpans\":[{\"scope\":{\"name\":");
    json_string(out, SCOPE_NAME.as_bytes());
    out.extend_from_slice(b",\"version\":");
    json_string(out, env!("CARGO_PKG_VERSION").as_bytes());
    out.extend_from_slice(b"},\"spans\":[");
    for (i, span) in spans.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        encode_span(span, out);
    }
    out.extend_from_slice(b"]}]}]}");
}

fn encode_span(span: &SpanData, out: &mut Vec<u8>) {
    let mut hex = [0u8; 32];
    out.extend_from_slice(b"{\"traceId\":\"");
    encode_hex(&span.ctx.trace_id, &mut hex);
    out.extend_from_slice(&hex);
    out.extend_from_slice(b"\",\"spanId\":\"");
    encode_hex(&span.ctx.span_id, &mut hex[..16]);
    out.extend_from_slice(&hex[..16]);
    out.push(b'"');
    if let Some(parent) = span.ctx.parent_span_id {
        out.extend_from_slice(b",\"parentSpanId\":\"");
        encode_hex(&parent, &mut hex[..16]);
        out.extend_from_slice(&hex[..16]);
        out.push(b'"');
    }
    // Span name: "{method} {http.route}", or the method alone without a route.
    let method = span.get(Field::Method).unwrap_or(b"_OTHER");
    out.extend_from_slice(b",\"name\":");
    match span.get(Field::Route) {
        Some(route) => {
            let mut name = Vec::with_capacity(method.len() + 1 + route.len());
            name.extend_from_slice(method);
            name.push(b' ');
            name.extend_from_slice(route);
            json_string(out, &name);
        }
        None => json_string(out, method),
    }
    out.extend_from_slice(b",\"kind\":");
    push_int(out, u64::from(SPAN_KIND_SERVER));
    out.extend_from_slice(b",\"startTimeUnixNano\":\"");
    push_int(out, span.start_unix_nanos);
    out.extend_from_slice(b"\",\"endTimeUnixNano\":\"");
    push_int(out, span.end_unix_nanos);
    out.extend_from_slice(b"\",\"attributes\":[");

    let mut first = true;
    let mut attr = |out: &mut Vec<u8>, key: &str, value: &[u8]| {
        if !first {
            out.push(b',');
        }
        first = false;
        string_attr(out, key, value);
    };
    attr(out, "http.request.method", method);
    for (field, key) in [
        (Field::Path, "url.path"),
        (Field::Query, "url.query"),
        (Field::Host, "server.address"),
        (Field::ClientAddress, "client.address"),
        (Field::UserAgent, "user_agent.original"),
        (Field::Route, "http.route"),
        (Field::Upstream, "strait.upstream"),
        (Field::Endpoint, "strait.endpoint"),
        (Field::TlsServerName, "tls.client.server_name"),
    ] {
        if let Some(value) = span.get(field) {
            attr(out, key, value);
        }
    }
    let version: &[u8] = match span.version {
        Version::Http10 => b"1.0",
        Version::Http11 => b"1.1",
        Version::Http2 => b"2",
    };
    attr(out, "network.protocol.version", version);
    if let Some(tls) = span.tls {
        attr(out, "tls.protocol.name", b"tls");
        attr(out, "tls.protocol.version", tls.version.as_bytes());
        attr(out, "tls.cipher", tls.cipher.as_bytes());
        let resumed: &[u8] = if tls.resumed { b"true" } else { b"false" };
        out.extend_from_slice(b",{\"key\":\"tls.resumed\",\"value\":{\"boolValue\":");
        out.extend_from_slice(resumed);
        out.extend_from_slice(b"}}");
    }
    let is_error = span.status >= 500;
    let mut status = itoa::Buffer::new();
    let status = status.format(span.status).as_bytes();
    if is_error {
        // HTTP semconv: `error.type` is the status code when nothing more specific is known.
        attr(out, "error.type", status);
    }
    if span.status != 0 {
        out.extend_from_slice(
            b",{\"key\":\"http.response.status_code\",\"value\":{\"intValue\":\"",
        );
        out.extend_from_slice(status);
        out.extend_from_slice(b"\"}}");
    }
    out.push(b']');
    if is_error {
        // Server spans: 5xx is an error, 4xx is the client's (status left unset).
        out.extend_from_slice(b",\"status\":{\"code\":");
        push_int(out, u64::from(STATUS_CODE_ERROR));
        out.push(b'}');
    }
    out.push(b'}');
}

fn string_attr(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    out.extend_from_slice(b"{\"key\":");
    json_string(out, key.as_bytes());
    out.extend_from_slice(b",\"value\":{\"stringValue\":");
    json_string(out, value);
    out.extend_from_slice(b"}}");
}

fn push_int(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// A JSON string of `value` (RFC 8259 §7): quotes, backslashes and control characters
/// escaped; bytes that are not UTF-8 (obs-text in a header) become U+FFFD.
pub(crate) fn json_string(out: &mut Vec<u8>, value: &[u8]) {
    out.push(b'"');
    for chunk in value.utf8_chunks() {
        for &b in chunk.valid().as_bytes() {
            match b {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                0..=0x1f | 0x7f => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[usize::from(b >> 4)]);
                    out.push(HEX[usize::from(b & 0x0f)]);
                }
                _ => out.push(b),
            }
        }
        if !chunk.invalid().is_empty() {
            out.extend_from_slice("\u{fffd}".as_bytes());
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::super::tests::record;
    use super::super::{SpanContext, SpanData};
    use super::*;
    use serde_json::Value;
    use std::time::Instant;

    fn ctx(parent: bool) -> SpanContext {
        SpanContext {
            trace_id: [0xab; 16],
            span_id: [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08],
            parent_span_id: parent.then_some([0xcd; 8]),
            sampled: true,
        }
    }

    fn attrs(span: &Value) -> Vec<(String, Value)> {
        span["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| (a["key"].as_str().unwrap().to_owned(), a["value"].clone()))
            .collect()
    }

    fn attr<'a>(attrs: &'a [(String, Value)], key: &str) -> Option<&'a Value> {
        attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    #[test]
    fn export_request_matches_otlp_json() {
        let mut rec = record(Some(ctx(true)));
        let ok = SpanData::from_record(ctx(true), "/users/{id}", "app", &rec, Instant::now());
        rec.status = 503;
        rec.target = bytes::Bytes::from_static(b"/x");
        rec.host = None;
        rec.user_agent = Some(bytes::Bytes::from_static(b"a \"quoted\"\\ \x01 \xff agent"));
        let err = SpanData::from_record(ctx(false), "", "", &rec, Instant::now());

        let mut out = Vec::new();
        encode_export_request("edge \"gw\"", &[ok, err], &mut out);
        let json: Value = serde_json::from_slice(&out).expect("valid JSON");

        let resource_spans = json["resourceSpans"].as_array().unwrap();
        assert_eq!(resource_spans.len(), 1);
        let resource = &resource_spans[0]["resource"];
        assert_eq!(resource["attributes"][0]["key"], "service.name");
        assert_eq!(
            resource["attributes"][0]["value"]["stringValue"],
            "edge \"gw\""
        );
        let scope_spans = resource_spans[0]["scopeSpans"].as_array().unwrap();
        assert_eq!(scope_spans[0]["scope"]["name"], "strait");
        let spans = scope_spans[0]["spans"].as_array().unwrap();
        assert_eq!(spans.len(), 2);

        let span = &spans[0];
        assert_eq!(span["traceId"], "ab".repeat(16));
        assert_eq!(span["spanId"], "0102030405060708");
        assert_eq!(span["parentSpanId"], "cd".repeat(8));
        assert_eq!(span["name"], "GET /users/{id}");
        assert_eq!(span["kind"], 2);
        assert_eq!(span["startTimeUnixNano"], "1700000000000000000");
        let end: u64 = span["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
        assert!(end >= 1_700_000_000_005_000_000);
        assert!(span.get("status").is_none(), "2xx leaves the status unset");
        let a = attrs(span);
        let s = |k: &str| attr(&a, k).map(|v| v["stringValue"].as_str().unwrap().to_owned());
        assert_eq!(s("http.request.method").as_deref(), Some("GET"));
        assert_eq!(s("url.path").as_deref(), Some("/users/42"));
        assert_eq!(s("url.query").as_deref(), Some("full=1"));
        assert_eq!(s("server.address").as_deref(), Some("api.example.com"));
        assert_eq!(s("client.address").as_deref(), Some("10.0.0.7"));
        assert_eq!(s("user_agent.original").as_deref(), Some("curl/8.0"));
        assert_eq!(s("http.route").as_deref(), Some("/users/{id}"));
        assert_eq!(s("strait.upstream").as_deref(), Some("app"));
        assert_eq!(s("strait.endpoint").as_deref(), Some("10.1.2.3:9000"));
        assert_eq!(s("network.protocol.version").as_deref(), Some("1.1"));
        assert_eq!(
            attr(&a, "http.response.status_code").unwrap()["intValue"],
            "200"
        );
        assert!(attr(&a, "error.type").is_none());
        assert!(attr(&a, "tls.protocol.version").is_none(), "plain TCP");
        // Every attribute value is exactly one of the two kinds used.
        for (key, value) in &a {
            let obj = value.as_object().unwrap();
            assert_eq!(obj.len(), 1, "{key}");
            assert!(
                obj.contains_key("stringValue") || obj.contains_key("intValue"),
                "{key}"
            );
        }

        let span = &spans[1];
        assert!(span.get("parentSpanId").is_none());
        assert_eq!(span["name"], "GET");
        assert_eq!(span["status"]["code"], 2);
        let a = attrs(span);
        assert_eq!(
            attr(&a, "http.response.status_code").unwrap()["intValue"],
            "503"
        );
        assert_eq!(attr(&a, "error.type").unwrap()["stringValue"], "503");
        assert!(attr(&a, "url.query").is_none());
        assert!(attr(&a, "server.address").is_none());
        assert!(attr(&a, "http.route").is_none());
        assert_eq!(
            attr(&a, "user_agent.original").unwrap()["stringValue"],
            "a \"quoted\"\\ \u{1} \u{fffd} agent"
        );
    }

    #[test]
    fn a_request_over_tls_carries_the_session_attributes() {
        let mut rec = record(Some(ctx(true)));
        let session = |sni: Option<&str>, resumed| {
            Some(std::rc::Rc::new(crate::tls::TlsInfo {
                identity_header: None,
                hsts: None,
                version: "TLSv1.2",
                cipher: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
                sni: sni.map(Into::into),
                resumed,
                h2: false,
                client: None,
            }))
        };
        rec.tls = session(Some("api.example.com"), true);
        let named = SpanData::from_record(ctx(true), "", "", &rec, Instant::now());
        rec.tls = session(None, false);
        let unnamed = SpanData::from_record(ctx(true), "", "", &rec, Instant::now());
        let mut out = Vec::new();
        encode_export_request("gw", &[named, unnamed], &mut out);
        let json: Value = serde_json::from_slice(&out).expect("valid JSON");
        let spans = &json["resourceSpans"][0]["scopeSpans"][0]["spans"];

        let a = attrs(&spans[0]);
        let s = |a: &[(String, Value)], k: &str| attr(a, k).map(|v| v["stringValue"].clone());
        assert_eq!(s(&a, "tls.protocol.name").unwrap(), "tls");
        assert_eq!(s(&a, "tls.protocol.version").unwrap(), "1.2");
        assert_eq!(
            s(&a, "tls.cipher").unwrap(),
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
        );
        assert_eq!(s(&a, "tls.client.server_name").unwrap(), "api.example.com");
        assert_eq!(attr(&a, "tls.resumed").unwrap()["boolValue"], true);

        let a = attrs(&spans[1]);
        assert!(attr(&a, "tls.client.server_name").is_none(), "no SNI");
        assert_eq!(attr(&a, "tls.resumed").unwrap()["boolValue"], false);
        assert_eq!(s(&a, "tls.protocol.version").unwrap(), "1.2");
    }

    #[test]
    fn json_strings_escape() {
        for (input, want) in [
            (&b"plain"[..], "plain"),
            (b"q\"b\\", "q\"b\\"),
            (b"\r\n\t\x00\x7f", "\r\n\t\u{0}\u{7f}"),
            ("é✓".as_bytes(), "é✓"),
            (b"\xc3", "\u{fffd}"),
        ] {
            let mut out = Vec::new();
            json_string(&mut out, input);
            let parsed: String = serde_json::from_slice(&out).unwrap();
            assert_eq!(parsed, want);
        }
    }
}
