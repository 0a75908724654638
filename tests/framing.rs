//! Message framing through the real binary: every way an upstream can delimit a response,
//! every way a client can send a body, pipelining, HTTP/1.0, `Expect: 100-continue`,
//! 100 MB streamed both ways in bounded memory, and the headers a proxy must drop or add.

mod common;
use common::*;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// An origin that reads one request head per connection, answers with `response`, and
/// closes (a close-delimited body ends there).
fn answer_once_and_close(response: &'static [u8]) -> (SocketAddr, Arc<AtomicUsize>) {
    raw_upstream(move |mut stream, _| {
        let mut reading = stream.try_clone().unwrap();
        if Reader::new(&mut reading).read_head().is_ok() {
            let _ = stream.write_all(response);
        }
    })
}

/// A keep-alive client connection with a reader over it.
struct Client {
    stream: TcpStream,
    reading: TcpStream,
}

impl Client {
    fn new(strait: &Strait) -> Client {
        let stream = strait.connect();
        let reading = stream.try_clone().unwrap();
        Client { stream, reading }
    }

    fn send(&mut self, raw: &[u8]) {
        self.stream.write_all(raw).unwrap();
    }

    fn reader(&mut self) -> Reader<'_, TcpStream> {
        Reader::new(&mut self.reading)
    }

    fn exchange(&mut self, raw: &[u8]) -> Response {
        self.send(raw);
        let method = String::from_utf8_lossy(raw)
            .split(' ')
            .next()
            .unwrap()
            .to_string();
        self.reader().read_response(&method).unwrap()
    }
}

// ---- Response framing -------------------------------------------------------------------

#[test]
fn content_length_response_exact_bytes() {
    let upstream = Upstream::start(|_| {
        b"HTTP/1.1 200 OK\r\nX-Up: 1\r\nContent-Length: 5\r\n\r\nhello".to_vec()
    });
    let strait = Strait::start(&proxy_config(upstream.addr, ""));
    let mut client = Client::new(&strait);
    for i in 1..=2 {
        client.send(format!("GET / HTTP/1.1\r\nHost: x\r\nX-Request-Id: t-{i}\r\n\r\n").as_bytes());
        let want = format!(
            "HTTP/1.1 200 OK\r\nX-Up: 1\r\nvia: 1.1 strait\r\nx-request-id: t-{i}\r\ncontent-length: 5\r\n\r\nhello"
        );
        let got = client.reader().read_exact_vec(want.len()).unwrap();
        assert_eq!(String::from_utf8_lossy(&got), want);
        assert_eq!(
            upstream.last().header("x-request-id"),
            Some(format!("t-{i}"))
        );
    }
    assert_eq!(upstream.connections.load(Ordering::SeqCst), 1);
}

#[test]
fn chunked_response_with_trailers_stays_chunked_for_http11() {
    let upstream = Upstream::start(|_| {
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 42\r\nX-Other: b\r\n\r\n"
            .to_vec()
    });
    let strait = Strait::start(&proxy_config(upstream.addr, ""));
    let mut client = Client::new(&strait);
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Request-Id: t-1\r\n\r\n");
    let mut reader = client.reader();
    let head = reader.read_head().unwrap();
    assert_eq!(
        head,
        "HTTP/1.1 200 OK\r\nvia: 1.1 strait\r\nx-request-id: t-1\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    // Chunk boundaries may follow reads; the payload and trailer section may not change.
    let (payload, trailers) = read_chunked_strict(&mut reader);
    assert_eq!(String::from_utf8(payload).unwrap(), "hello world");
    assert_eq!(trailers, vec!["X-Sum: 42", "X-Other: b"]);
    // The connection carries another request.
    let again = client.exchange(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((again.status, again.text().as_str()), (200, "hello world"));
    assert_eq!(
        again.trailers,
        vec![
            ("x-sum".into(), "42".into()),
            ("x-other".into(), "b".into())
        ]
    );
}

#[test]
fn chunked_response_to_http10_client_is_close_delimited() {
    let upstream = Upstream::start(|_| {
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n".to_vec()
    });
    let strait = Strait::start(&proxy_config(upstream.addr, ""));
    let mut stream = strait.connect();
    stream
        .write_all(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nX-Request-Id: t-1\r\n\r\n")
        .unwrap();
    let all = Reader::new(&mut stream).read_to_end().unwrap();
    assert_eq!(
        String::from_utf8(all).unwrap(),
        "HTTP/1.1 200 OK\r\nvia: 1.1 strait\r\nx-request-id: t-1\r\nconnection: close\r\n\r\nabc"
    );
}

#[test]
fn close_delimited_response_is_rechunked_for_http11_and_connection_stays() {
    let (addr, connections) =
        answer_once_and_close(b"HTTP/1.1 200 OK\r\nX-Up: 1\r\n\r\nuntil the end");
    let strait = Strait::start(&proxy_config(addr, ""));
    let mut client = Client::new(&strait);
    for i in 1..=2 {
        client.send(format!("GET / HTTP/1.1\r\nHost: x\r\nX-Request-Id: t-{i}\r\n\r\n").as_bytes());
        let mut reader = client.reader();
        let head = reader.read_head().unwrap();
        assert_eq!(
            head,
            format!("HTTP/1.1 200 OK\r\nX-Up: 1\r\nvia: 1.1 strait\r\nx-request-id: t-{i}\r\ntransfer-encoding: chunked\r\n\r\n")
        );
        let mut body = Vec::new();
        loop {
            let size = usize::from_str_radix(&reader.read_line().unwrap(), 16).unwrap();
            if size == 0 {
                assert_eq!(reader.read_line().unwrap(), "");
                break;
            }
            let data = reader.read_exact_vec(size + 2).unwrap();
            body.extend_from_slice(&data[..size]);
        }
        assert_eq!(body, b"until the end");
        // Every response needed its own upstream connection.
        assert_eq!(connections.load(Ordering::SeqCst), i);
    }
}

#[test]
fn close_delimited_response_to_http10_client_closes() {
    let (addr, _) = answer_once_and_close(b"HTTP/1.1 200 OK\r\nX-Up: 1\r\n\r\nuntil the end");
    let strait = Strait::start(&proxy_config(addr, ""));
    for (request, id) in [
        (&b"GET / HTTP/1.0\r\nX-Request-Id: t-1\r\n\r\n"[..], "t-1"),
        (
            b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nX-Request-Id: t-2\r\n\r\n",
            "t-2",
        ),
    ] {
        let mut stream = strait.connect();
        stream.write_all(request).unwrap();
        let all = Reader::new(&mut stream).read_to_end().unwrap();
        assert_eq!(
            String::from_utf8(all).unwrap(),
            format!("HTTP/1.1 200 OK\r\nX-Up: 1\r\nvia: 1.1 strait\r\nx-request-id: {id}\r\nconnection: close\r\n\r\nuntil the end")
        );
    }
}

#[test]
fn head_response_passes_content_length_without_body() {
    let upstream = Upstream::start(|r| {
        if r.request_line().starts_with("HEAD") {
            b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nETag: \"v1\"\r\n\r\n".to_vec()
        } else {
            ok("next")
        }
    });
    let strait = Strait::start(&proxy_config(upstream.addr, ""));
    let mut client = Client::new(&strait);
    client.send(b"HEAD /f HTTP/1.1\r\nHost: x\r\nX-Request-Id: t-1\r\n\r\nGET /g HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut reader = client.reader();
    let head = reader.read_head().unwrap();
    assert_eq!(
        head,
        "HTTP/1.1 200 OK\r\nETag: \"v1\"\r\nvia: 1.1 strait\r\nx-request-id: t-1\r\ncontent-length: 1234\r\n\r\n"
    );
    // No body bytes: the next thing on the wire is the next response.
    let next = reader.read_response("GET").unwrap();
    assert_eq!((next.status, next.text().as_str()), (200, "next"));
    assert_eq!(upstream.requests()[0].request_line(), "HEAD /f HTTP/1.1");
    assert_eq!(upstream.connections.load(Ordering::SeqCst), 1);
}

#[test]
fn head_response_without_content_length_gets_none() {
    // RFC 9110 §8.6: a Content-Length on a HEAD response must be what a GET would carry;
    // when the upstream sent none (a chunked GET), inventing `0` would be a lie.
    let upstream = Upstream::start(|r| {
        if r.request_line().starts_with("HEAD") {
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n".to_vec()
        } else {
            ok("next")
        }
    });
    let strait = Strait::start(&proxy_config(upstream.addr, ""));
    let mut client = Client::new(&strait);
    client.send(b"HEAD /f HTTP/1.1\r\nHost: x\r\n\r\nGET /g HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut reader = client.reader();
    let head = reader.read_head().unwrap();
    assert!(
        head.starts_with("HTTP/1.1 200 OK\r\nX-A: 1\r\nvia: 1.1 strait\r\n"),
        "{head}"
    );
    assert!(
        !head.to_ascii_lowercase().contains("content-length"),
        "{head}"
    );
    let next = reader.read_response("GET").unwrap();
    assert_eq!((next.status, next.text().as_str()), (200, "next"));
}

#[test]
fn no_content_and_not_modified_have_no_body() {
    let upstream = Upstream::start(|r| match r.request_line() {
        l if l.starts_with("GET /204") => b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n".to_vec(),
        l if l.starts_with("GET /304cl") => {
            b"HTTP/1.1 304 Not Modified\r\nETag: \"v2\"\r\nContent-Length: 99\r\n\r\n".to_vec()
        }
        l if l.starts_with("GET /304") => {
            b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n".to_vec()
        }
        _ => ok("after"),
    });
    let strait = Strait::start(&proxy_config(upstream.addr, ""));
    let mut client = Client::new(&strait);
    client.send(
        b"GET /204 HTTP/1.1\r\nHost: x\r\nX-Request-Id: t-204\r\n\r\nGET /304 HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"v1\"\r\nX-Request-Id: t-304\r\n\r\nGET /304cl HTTP/1.1\r\nHost: x\r\nX-Request-Id: t-304cl\r\n\r\nGET /end HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    let mut reader = client.reader();
    assert_eq!(
        reader.read_head().unwrap(),
        "HTTP/1.1 204 No Content\r\nX-A: 1\r\nvia: 1.1 strait\r\nx-request-id: t-204\r\n\r\n"
    );
    // RFC 9110 §8.6: a 304 carries the Content-Length a 200 would have, or none; a cache
    // that merges this head into its stored one must not learn a length of 0.
    assert_eq!(
        reader.read_head().unwrap(),
        "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nvia: 1.1 strait\r\nx-request-id: t-304\r\n\r\n"
    );
    assert_eq!(
        reader.read_head().unwrap(),
        "HTTP/1.1 304 Not Modified\r\nETag: \"v2\"\r\nvia: 1.1 strait\r\nx-request-id: t-304cl\r\ncontent-length: 99\r\n\r\n"
    );
    let last = reader.read_response("GET").unwrap();
    assert_eq!((last.status, last.text().as_str()), (200, "after"));
    assert_eq!(upstream.connections.load(Ordering::SeqCst), 1);
}

// ---- Request bodies ---------------------------------------------------------------------

#[test]
fn content_length_request_bodies_small_and_streamed() {
    let upstream = Upstream::echo();
    let strait = Strait::start(&proxy_config(upstream.addr, ""));
    let mut client = Client::new(&strait);
    let r = client
        .exchange(b"POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world");
    assert_eq!(r.text(), "POST /small HTTP/1.1\nhello world");
    assert_eq!(
        upstream.last().header("content-length").as_deref(),
        Some("11")
    );

    // Larger than what is sent along with the head: streamed in pieces.
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    client.send(
        format!(
            "PUT /big HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    for piece in body.chunks(70_001) {
        client.send(piece);
    }
    let r = client.reader().read_response("PUT").unwrap();
    assert_eq!(r.status, 200);
    let received = upstream.last();
    assert_eq!(received.request_line(), "PUT /big HTTP/1.1");
    assert_eq!(
        received.header("content-length"),
        Some(body.len().to_string())
    );
    assert!(
        received.body == body,
        "body differs ({} bytes received)",
        received.body.len()
    );

    // An explicit empty body keeps its Content-Length: 0.
    let r = client.exchange(b"POST /empty HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(r.text(), "POST /empty HTTP/1.1\n");
    assert_eq!(
        upstream.last().header("content-length").as_deref(),
        Some("0")
    );
    assert_eq!(upstream.connections.load(Ordering::SeqCst), 1);
}

/// Reads a chunked body strictly (canonical hex sizes, CRLF everywhere), returning the
/// payload and the trailer lines.
fn read_chunked_strict(reader: &mut Reader<'_, TcpStream>) -> (Vec<u8>, Vec<String>) {
    let mut payload = Vec::new();
    loop {
        let line = reader.read_line().unwrap();
        assert!(
            !line.is_empty() && line.bytes().all(|b| b.is_ascii_hexdigit()),
            "size line {line:?}"
        );
        let size = usize::from_str_radix(&line, 16).unwrap();
        if size == 0 {
            let mut trailers = Vec::new();
            loop {
                let t = reader.read_line().unwrap();
                if t.is_empty() {
                    return (payload, trailers);
                }
                trailers.push(t);
            }
        }
        let data = reader.read_exact_vec(size + 2).unwrap();
        assert_eq!(&data[size..], b"\r\n", "chunk data not followed by CRLF");
        payload.extend_from_slice(&data[..size]);
    }
}

#[test]
fn chunked_request_reaches_upstream_as_valid_chunked() {
    /// Head, payload and trailer lines of each request the origin read.
    type Seen = Vec<(String, Vec<u8>, Vec<String>)>;
    let seen: Arc<Mutex<Seen>> = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let (addr, _) = raw_upstream(move |mut stream, _| {
        let mut reading = stream.try_clone().unwrap();
        let mut reader = Reader::new(&mut reading);
        while let Ok(head) = reader.read_head() {
            let (payload, trailers) = read_chunked_strict(&mut reader);
            record.lock().unwrap().push((head, payload, trailers));
            stream.write_all(&ok("got it")).unwrap();
        }
    });
    let strait = Strait::start(&proxy_config(addr, ""));
    let mut client = Client::new(&strait);
    client.send(
        b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;name=val\r\nhello\r\n",
    );
    client.send(b"00006\r\n world\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n");
    client.send(b"0\r\nX-Checksum: 7\r\n\r\n");
    let r = client.reader().read_response("POST").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "got it"));
    let (head, payload, trailers) = seen.lock().unwrap().pop().unwrap();
    assert!(head.starts_with("POST /c HTTP/1.1\r\n"), "{head}");
    assert!(
        head.contains("\r\ntransfer-encoding: chunked\r\n"),
        "{head}"
    );
    assert!(
        !head.to_ascii_lowercase().contains("content-length"),
        "{head}"
    );
    assert_eq!(
        String::from_utf8(payload).unwrap(),
        "hello worldabcdefghijklmnopqrstuvwxyz"
    );
    assert_eq!(trailers, vec!["X-Checksum: 7"]);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let upstream = Upstream::echo();
    let strait = Strait::start(&proxy_config(upstream.addr, ""));
    let mut client = Client::new(&strait);
    client.send(
        b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n\
POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc\
GET /3 HTTP/1.1\r\nHost: x\r\n\r\n\
POST /4 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n0\r\n\r\n\
HEAD /5 HTTP/1.1\r\nHost: x\r\n\r\n\
GET /6 HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    let mut reader = client.reader();
    let mut got = Vec::new();
    for method in ["GET", "POST", "GET", "POST", "HEAD", "GET"] {
        let r = reader.read_response(method).unwrap();
        assert_eq!(r.status, 200);
        got.push(r.text());
    }
    assert_eq!(
        got,
        vec![
            "GET /1 HTTP/1.1\n",
            "POST /2 HTTP/1.1\nabc",
            "GET /3 HTTP/1.1\n",
            "POST /4 HTTP/1.1\nde",
            "",
            "GET /6 HTTP/1.1\n"
        ]
    );
    let lines: Vec<String> = upstream
        .requests()
        .iter()
        .map(|r| r.request_line().to_string())
        .collect();
    assert_eq!(
        lines,
        ["GET /1", "POST /2", "GET /3", "POST /4", "HEAD /5", "GET /6"]
            .map(|l| format!("{l} HTTP/1.1"))
    );
}

#[test]
fn http10_with_and_without_keep_alive() {
    let upstream = Upstream::echo();
    let strait = Strait::start(&proxy_config(upstream.addr, ""));

    // Without keep-alive: answered with `connection: close`, then closed.
    let mut stream = strait.connect();
    stream
        .write_all(b"GET /a HTTP/1.0\r\nHost: h\r\nX-Request-Id: t-1\r\n\r\n")
        .unwrap();
    let all = String::from_utf8(Reader::new(&mut stream).read_to_end().unwrap()).unwrap();
    assert_eq!(all, "HTTP/1.1 200 OK\r\nvia: 1.1 strait\r\nx-request-id: t-1\r\ncontent-length: 16\r\nconnection: close\r\n\r\nGET /a HTTP/1.1\n");
    let received = upstream.last();
    assert_eq!(received.header("via").as_deref(), Some("1.0 strait"));
    assert_eq!(received.header("x-request-id").as_deref(), Some("t-1"));

    // With keep-alive: acknowledged, and the connection carries a second request.
    let mut client = Client::new(&strait);
    for path in ["/b", "/c"] {
        client.send(
            format!("GET {path} HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\n").as_bytes(),
        );
        let r = client.reader().read_response("GET").unwrap();
        assert_eq!(r.header("connection"), Some("keep-alive"));
        assert_eq!(r.text(), format!("GET {path} HTTP/1.1\n"));
    }
    // HTTP/1.1 with `Connection: close` is closed after its answer.
    client.send(b"GET /d HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    let r = client.reader().read_response("GET").unwrap();
    assert_eq!(r.header("connection"), Some("close"));
    assert!(is_closed(&mut client.reading));
    assert_eq!(upstream.connections.load(Ordering::SeqCst), 1);
}

#[test]
fn http10_request_without_host_gets_a_host_upstream() {
    // The upstream request is HTTP/1.1, which requires a Host (RFC 9112 §3.2); an HTTP/1.0
    // client may have sent none, leaving nothing to preserve: the upstream gets the
    // endpoint's address, as nginx sends its upstream's name (an empty Host would be
    // correct too, but origins such as nginx refuse it with 400).
    let upstream = Upstream::echo();
    let strait = Strait::start(&proxy_config(upstream.addr, ""));
    let r = strait.request(b"GET /a HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 200);
    // The client sent no request ID: one was generated, and the client got the one the
    // upstream saw.
    let id = generated_request_id(&r.head);
    assert_eq!(
        r.head,
        format!("HTTP/1.1 200 OK\r\nvia: 1.1 strait\r\nx-request-id: {id}\r\ncontent-length: 16\r\nconnection: close\r\n\r\n")
    );
    let received = upstream.last();
    assert_eq!(
        received.head,
        format!("GET /a HTTP/1.1\r\nhost: {}\r\nx-forwarded-for: 127.0.0.1\r\nx-forwarded-proto: http\r\nvia: 1.0 strait\r\nx-request-id: {id}\r\n\r\n", upstream.addr)
    );
}

fn expect_continue(args: &[&str]) {
    let upstream = Upstream::echo();
    // Only host `x` is proxied below `/`; other hosts get 404 there.
    let config = proxy_config(upstream.addr, "").replacen(
        "path = \"/{*rest}\"",
        "path = \"/{*rest}\"\nhosts = [\"x\"]",
        1,
    );
    let strait = Strait::start_with(&config, args);
    let mut client = Client::new(&strait);
    // The client sends the head only and waits for the go-ahead.
    client
        .send(b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    let interim = client.reader().read_head().unwrap();
    assert_eq!(interim, "HTTP/1.1 100 Continue\r\n\r\n");
    client.send(b"hello");
    let r = client.reader().read_response("POST").unwrap();
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "POST /e HTTP/1.1\nhello")
    );
    assert_eq!(upstream.last().header("expect"), None);

    // Chunked, same dance.
    client.send(
        b"PUT /f HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
    );
    assert_eq!(
        client.reader().read_head().unwrap(),
        "HTTP/1.1 100 Continue\r\n\r\n"
    );
    client.send(b"3\r\nabc\r\n0\r\n\r\n");
    let r = client.reader().read_response("PUT").unwrap();
    assert_eq!(r.text(), "PUT /f HTTP/1.1\nabc");

    // A client that sent the body anyway gets the final answer straight away.
    client.send(
        b"POST /g HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nhi",
    );
    let mut reader = client.reader();
    let head = reader.read_head().unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(reader.read_exact_vec(19).unwrap(), b"POST /g HTTP/1.1\nhi");

    // A request answered locally gets no go-ahead: the answer, and the connection closes
    // since the body that may follow cannot be told from the next request.
    drop(reader);
    client.send(
        b"POST /elsewhere HTTP/1.1\r\nHost: y\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    );
    let mut reader = client.reader();
    let head = reader.read_head().unwrap();
    assert!(head.starts_with("HTTP/1.1 404 Not Found\r\n"), "{head}");
    assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
}

#[test]
fn expect_100_continue() {
    expect_continue(&["--workers", "1"]);
}

#[test]
fn expect_100_continue_epoll() {
    expect_continue(&["--workers", "1", "--io-driver", "epoll"]);
}

// ---- Large bodies in bounded memory -----------------------------------------------------

const HUNDRED_MB: u64 = 100 * 1024 * 1024;
/// Strait's resident memory must stay below this while 100 MB pass through it.
const MAX_RSS_KB: u64 = 64 * 1024;

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Bytes of the test bodies: the byte at offset `o` is `o % 251`, so that a lost, repeated
/// or reordered piece shows. Pieces are compared and filled by slicing this table (memcmp
/// and memcpy: fast even in a debug build).
fn pattern_table() -> Vec<u8> {
    (0..PIECE_BYTES + 251).map(|i| (i % 251) as u8).collect()
}

/// Largest piece read or written at once by the 100 MB tests.
const PIECE_BYTES: usize = 1024 * 1024;

fn pattern_at(table: &[u8], offset: u64, len: usize) -> &[u8] {
    let start = (offset % 251) as usize;
    &table[start..start + len]
}

fn stream_100mb_request(args: &[&str]) {
    // The origin counts and checks the body without keeping it.
    let (addr, _) = raw_upstream(|mut stream, _| {
        let mut reading = stream.try_clone().unwrap();
        let mut reader = Reader::new(&mut reading);
        let head = reader.read_head().unwrap();
        let length: u64 = head
            .split("\r\n")
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let table = pattern_table();
        let (mut count, mut mismatches) = (0u64, 0u64);
        while count < length {
            let piece = reader
                .read_exact_vec((length - count).min(64 * 1024) as usize)
                .unwrap();
            mismatches += u64::from(piece != pattern_at(&table, count, piece.len()));
            count += piece.len() as u64;
        }
        let body = format!("{count} {mismatches}");
        stream
            .write_all(
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            )
            .unwrap();
    });
    let config = proxy_config(addr, "[server.limits]\nmax_body_bytes = \"200MiB\"\n");
    let strait = Strait::start_with(&config, args);
    let pid = strait.pid();
    let mut client = Client::new(&strait);
    client.send(
        format!("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {HUNDRED_MB}\r\n\r\n")
            .as_bytes(),
    );
    let table = pattern_table();
    let mut max_rss = 0;
    let mut sent = 0u64;
    while sent < HUNDRED_MB {
        client.send(pattern_at(&table, sent, PIECE_BYTES));
        sent += PIECE_BYTES as u64;
        if sent.is_multiple_of(4 * 1024 * 1024) {
            max_rss = max_rss.max(rss_kb(pid));
        }
    }
    let r = client.reader().read_response("POST").unwrap();
    max_rss = max_rss.max(rss_kb(pid));
    assert_eq!((r.status, r.text()), (200, format!("{HUNDRED_MB} 0")));
    eprintln!("strait max RSS {max_rss} kB");
    assert!(max_rss < MAX_RSS_KB, "strait RSS reached {max_rss} kB");
}

#[test]
fn request_body_of_100mb_streams_in_bounded_memory() {
    stream_100mb_request(&["--workers", "1"]);
}

#[test]
fn request_body_of_100mb_streams_in_bounded_memory_epoll() {
    stream_100mb_request(&["--workers", "1", "--io-driver", "epoll"]);
}

fn stream_100mb_response(args: &[&str]) {
    let (addr, _) = raw_upstream(|mut stream, _| {
        let mut reading = stream.try_clone().unwrap();
        let mut reader = Reader::new(&mut reading);
        while reader.read_head().is_ok() {
            stream
                .write_all(
                    format!("HTTP/1.1 200 OK\r\ncontent-length: {HUNDRED_MB}\r\n\r\n").as_bytes(),
                )
                .unwrap();
            let table = pattern_table();
            let mut sent = 0u64;
            while sent < HUNDRED_MB {
                if stream
                    .write_all(pattern_at(&table, sent, PIECE_BYTES))
                    .is_err()
                {
                    return;
                }
                sent += PIECE_BYTES as u64;
            }
        }
    });
    let strait = Strait::start_with(&proxy_config(addr, ""), args);
    let pid = strait.pid();
    let mut client = Client::new(&strait);
    client.send(b"GET /download HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut reader = client.reader();
    let head = reader.read_head().unwrap();
    assert!(
        head.contains(&format!("\r\ncontent-length: {HUNDRED_MB}\r\n")),
        "{head}"
    );
    let table = pattern_table();
    let (mut count, mut mismatches, mut max_rss) = (0u64, 0u64, 0u64);
    let mut next_sample = 0u64;
    while count < HUNDRED_MB {
        let piece = reader
            .read_exact_vec((HUNDRED_MB - count).min(64 * 1024) as usize)
            .unwrap();
        mismatches += u64::from(piece != pattern_at(&table, count, piece.len()));
        count += piece.len() as u64;
        if count >= next_sample {
            max_rss = max_rss.max(rss_kb(pid));
            next_sample += 4 * 1024 * 1024;
        }
    }
    assert_eq!((count, mismatches), (HUNDRED_MB, 0));
    eprintln!("strait max RSS {max_rss} kB");
    assert!(max_rss < MAX_RSS_KB, "strait RSS reached {max_rss} kB");
    // Nothing followed the body, and the connection goes on.
    drop(reader);
    client.send(b"GET /download HTTP/1.1\r\nHost: x\r\n\r\n");
    let head = client.reader().read_head().unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
}

#[test]
fn response_body_of_100mb_streams_in_bounded_memory() {
    stream_100mb_response(&["--workers", "1"]);
}

// ---- Hop-by-hop and forwarding headers --------------------------------------------------

#[test]
fn hop_by_hop_request_headers_are_dropped_and_forwarding_headers_added() {
    let upstream = Upstream::echo();
    let strait = Strait::start(&proxy_config(upstream.addr, ""));
    let mut client = Client::new(&strait);
    let r = client.exchange(
        b"GET /h?q=1 HTTP/1.1\r\n\
Host: api.example.com\r\n\
Connection: close, X-Secret\r\n\
X-Secret: s3cret\r\n\
Keep-Alive: timeout=5\r\n\
TE: trailers\r\n\
Proxy-Connection: keep-alive\r\n\
Upgrade: websocket\r\n\
Trailer: X-T\r\n\
Proxy-Authorization: Basic Zm9vOmJhcg==\r\n\
X-Keep: yes\r\n\
X-Forwarded-For: 10.0.0.1, 10.0.0.2\r\n\
X-Forwarded-Proto: https\r\n\
X-Forwarded-Host: spoofed.example\r\n\
Via: 1.1 edge\r\n\
X-Request-Id: t-hop\r\n\
Accept: */*\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(r.headers_named("x-request-id"), ["t-hop"]);
    assert!(is_closed(&mut client.reading));
    assert_eq!(
        upstream.last().head,
        "GET /h?q=1 HTTP/1.1\r\n\
host: api.example.com\r\n\
X-Keep: yes\r\n\
Accept: */*\r\n\
x-forwarded-for: 10.0.0.1, 10.0.0.2, 127.0.0.1\r\n\
x-forwarded-proto: http\r\n\
x-forwarded-host: api.example.com\r\n\
via: 1.1 edge, 1.1 strait\r\n\
x-request-id: t-hop\r\n\r\n"
    );
    // Several X-Forwarded-For lines are joined in order.
    client = Client::new(&strait);
    client.exchange(b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2\r\n\r\n");
    assert_eq!(
        upstream.last().header("x-forwarded-for").as_deref(),
        Some("1.1.1.1, 2.2.2.2, 127.0.0.1")
    );
}

#[test]
fn hop_by_hop_response_headers_are_dropped_and_via_added() {
    let upstream = Upstream::start(|_| {
        b"HTTP/1.1 200 OK\r\n\
Connection: X-Internal, keep-alive\r\n\
X-Internal: 1\r\n\
Keep-Alive: timeout=5\r\n\
Proxy-Connection: keep-alive\r\n\
Upgrade: h2c\r\n\
Trailer: X-T\r\n\
TE: trailers\r\n\
Proxy-Authenticate: Basic\r\n\
X-Public: 1\r\n\
Via: 1.0 origin\r\n\
Content-Length: 2\r\n\r\nok"
            .to_vec()
    });
    let strait = Strait::start(&proxy_config(upstream.addr, ""));
    let mut client = Client::new(&strait);
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Request-Id: t-1\r\n\r\n");
    let want = "HTTP/1.1 200 OK\r\nX-Public: 1\r\nvia: 1.0 origin, 1.1 strait\r\nx-request-id: t-1\r\ncontent-length: 2\r\n\r\nok";
    let got = client.reader().read_exact_vec(want.len()).unwrap();
    assert_eq!(String::from_utf8_lossy(&got), want);
    // The upstream's `keep-alive` token described its own hop: both connections continue.
    let again = client.exchange(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(again.text(), "ok");
    assert_eq!(upstream.connections.load(Ordering::SeqCst), 1);
}

#[test]
fn http10_upstream_response_gets_via_1_0() {
    let (addr, _) = answer_once_and_close(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nold");
    let strait = Strait::start(&proxy_config(addr, ""));
    let mut client = Client::new(&strait);
    let r = client.exchange(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((r.status, r.text().as_str()), (200, "old"));
    assert_eq!(r.header("via"), Some("1.0 strait"));
    assert_eq!(r.header("connection"), None);
    // The client connection outlives the upstream one.
    let r = client.exchange(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.text(), "old");
}

#[test]
fn informational_responses_reach_http11_clients_only() {
    // 103 Early Hints is passed on to an HTTP/1.1 client; a stray 100 Continue is not (Strait
    // answers `Expect` itself and never forwards it).
    let upstream = Upstream::start(|_| {
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec()
    });
    let strait = Strait::start(&proxy_config(upstream.addr, ""));
    let mut client = Client::new(&strait);
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Request-Id: t-1\r\n\r\n");
    // The request ID goes on the interim 103 as on the final response.
    let want = "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\nvia: 1.1 strait\r\nx-request-id: t-1\r\n\r\nHTTP/1.1 200 OK\r\nvia: 1.1 strait\r\nx-request-id: t-1\r\ncontent-length: 2\r\n\r\nok";
    let got = client.reader().read_exact_vec(want.len()).unwrap();
    assert_eq!(String::from_utf8_lossy(&got), want);

    let mut stream = strait.connect();
    stream
        .write_all(b"GET / HTTP/1.0\r\nX-Request-Id: t-2\r\n\r\n")
        .unwrap();
    let all = String::from_utf8(Reader::new(&mut stream).read_to_end().unwrap()).unwrap();
    assert_eq!(
        all,
        "HTTP/1.1 200 OK\r\nvia: 1.1 strait\r\nx-request-id: t-2\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
    );
}

#[test]
fn non_chunked_transfer_coding_is_not_silently_dropped() {
    // `Transfer-Encoding: gzip` (no final chunked) makes the body run to the close
    // (RFC 9112 §6.3 rule 4). Strait decodes only chunked, so the gzip coding must stay on
    // the re-chunked body.
    let (addr, _) =
        answer_once_and_close(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n\x1f\x8bcoded");
    let strait = Strait::start(&proxy_config(addr, ""));
    let mut client = Client::new(&strait);
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let head = client.reader().read_head().unwrap();
    assert!(
        head.to_ascii_lowercase()
            .contains("transfer-encoding: gzip, chunked\r\n"),
        "{head}"
    );
}
