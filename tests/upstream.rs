//! Upstream connections through the real binary: keep-alive pooling and its recovery from
//! connections the upstream closed, and every way an upstream can fail (down, silent,
//! malformed, cut off) or a client can leave mid-response.

mod common;
use common::*;

use std::collections::HashMap;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// Reads one request head and its Content-Length body; `None` at the end of the stream.
fn read_request(reader: &mut Reader<'_, TcpStream>) -> Option<String> {
    let head = reader.read_head().ok()?;
    let length = head
        .split("\r\n")
        .find_map(|l| l.strip_prefix("content-length: "))
        .map(|v| v.parse().unwrap())
        .unwrap_or(0);
    reader.read_exact_vec(length).ok()?;
    Some(head)
}

/// The exact JSON body of an error answer.
fn error_body(message: &str, status: u16) -> String {
    format!("{{\"error\":\"{message}\",\"status\":{status}}}\n")
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes()
}

// ---- Pooling ----------------------------------------------------------------------------

fn pool_reuse(args: &[&str]) {
    let upstream = Upstream::echo();
    let strait = Strait::start_with(&proxy_config(upstream.addr, ""), args);
    let mut stream = strait.connect();
    let mut reading = stream.try_clone().unwrap();
    let mut reader = Reader::new(&mut reading);
    for i in 0..10 {
        stream.write_all(&get(&format!("/{i}"))).unwrap();
        let r = reader.read_response("GET").unwrap();
        assert_eq!(r.text(), format!("GET /{i} HTTP/1.1\n"));
    }
    assert_eq!(upstream.connections.load(Ordering::SeqCst), 1);
    assert!(upstream.requests().iter().all(|r| r.conn == 0));
    // A new client connection on the same worker takes the same pooled connection.
    for i in 10..13 {
        let r = strait.request(&get(&format!("/{i}")));
        assert_eq!(r.text(), format!("GET /{i} HTTP/1.1\n"));
    }
    assert_eq!(upstream.connections.load(Ordering::SeqCst), 1);
}

#[test]
fn pool_reuses_one_upstream_connection() {
    pool_reuse(&["--workers", "1"]);
}

#[test]
fn pool_reuses_one_upstream_connection_epoll() {
    pool_reuse(&["--workers", "1", "--io-driver", "epoll"]);
}

#[test]
fn pool_max_idle_zero_means_no_reuse() {
    let upstream = Upstream::fixed("x");
    let config = proxy_config(upstream.addr, "").replacen(
        "[[routes]]",
        "[upstreams.app.pool]\nmax_idle = 0\n\n[[routes]]",
        1,
    );
    let strait = Strait::start(&config);
    let mut stream = strait.connect();
    let mut reading = stream.try_clone().unwrap();
    let mut reader = Reader::new(&mut reading);
    for _ in 0..3 {
        stream.write_all(&get("/")).unwrap();
        assert_eq!(reader.read_response("GET").unwrap().text(), "x");
    }
    assert_eq!(upstream.connections.load(Ordering::SeqCst), 3);
}

/// Holds each caller until `n` callers are waiting together (then lets them all go), or
/// until the deadline: proof that `n` requests were at the upstream at the same time.
struct Gather {
    n: usize,
    state: Mutex<(usize, u64)>, // (waiting, generation)
    all_in: std::sync::Condvar,
}

impl Gather {
    fn wait(&self) -> bool {
        let mut state = self.state.lock().unwrap();
        let generation = state.1;
        state.0 += 1;
        if state.0 == self.n {
            *state = (0, generation + 1);
            self.all_in.notify_all();
            return true;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while state.1 == generation {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self.all_in.wait_timeout(state, left).unwrap().0;
        }
        true
    }
}

#[test]
fn default_pool_keeps_what_peak_concurrency_needs() {
    // 150 clients, each request held at the upstream until all 150 are there: every round
    // needs 150 upstream connections at once. The first round opens them; the default pool
    // must keep them all, so later rounds open none (a cap of 64 idle reopened 86 a round).
    const CLIENTS: usize = 150;
    const ROUNDS: usize = 4;
    let gather = Arc::new(Gather {
        n: CLIENTS,
        state: Mutex::new((0, 0)),
        all_in: std::sync::Condvar::new(),
    });
    let at_upstream = gather.clone();
    let upstream = Upstream::start(move |_| {
        if at_upstream.wait() {
            common::ok("together")
        } else {
            common::ok("alone")
        }
    });
    let strait = Strait::start(&proxy_config(upstream.addr, ""));
    let addr = strait.addr;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            std::thread::spawn(move || {
                let mut stream = connect(addr);
                let mut reading = stream.try_clone().unwrap();
                let mut reader = Reader::new(&mut reading);
                (0..ROUNDS)
                    .map(|_| {
                        stream.write_all(&get("/")).unwrap();
                        reader.read_response("GET").unwrap().text()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for client in clients {
        assert_eq!(client.join().unwrap(), vec!["together"; ROUNDS]);
    }
    assert_eq!(upstream.connections.load(Ordering::SeqCst), CLIENTS);
}

fn closes_after_each_answer(args: &[&str]) {
    // The origin closes every connection after one answer but never says so: Strait pools
    // a connection that is already dead. Idempotent requests must be retried on a fresh one.
    let (addr, connections) = raw_upstream(|mut stream, conn| {
        let mut reading = stream.try_clone().unwrap();
        if let Some(head) = read_request(&mut Reader::new(&mut reading)) {
            let line = head.split("\r\n").next().unwrap().to_string();
            let body = format!("{conn} {line}");
            let _ = stream.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        }
    });
    let strait = Strait::start_with(&proxy_config(addr, ""), args);
    let mut stream = strait.connect();
    let mut reading = stream.try_clone().unwrap();
    let mut reader = Reader::new(&mut reading);
    let requests: [(&str, &[u8]); 5] = [
        ("GET /1", b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("GET /2", b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("HEAD /3", b"HEAD /3 HTTP/1.1\r\nHost: x\r\n\r\n"),
        (
            "PUT /4",
            b"PUT /4 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
        ),
        ("GET /5", b"GET /5 HTTP/1.1\r\nHost: x\r\n\r\n"),
    ];
    for (i, (line, raw)) in requests.iter().enumerate() {
        stream.write_all(raw).unwrap();
        let method = line.split(' ').next().unwrap();
        let r = reader.read_response(method).unwrap();
        assert_eq!(r.status, 200, "{line}: {}", r.text());
        if method != "HEAD" {
            // Each request was answered on a connection of its own: the i-th.
            assert_eq!(r.text(), format!("{i} {line} HTTP/1.1"));
        }
    }
    // Retries reconnect; they never open more than one connection per request.
    assert_eq!(connections.load(Ordering::SeqCst), requests.len());
}

#[test]
fn pooled_connection_closed_right_after_answer_is_retried() {
    closes_after_each_answer(&["--workers", "1"]);
}

#[test]
fn pooled_connection_closed_right_after_answer_is_retried_epoll() {
    closes_after_each_answer(&["--workers", "1", "--io-driver", "epoll"]);
}

/// An origin that keeps connections alive until the test tells it to close the idle ones.
struct ClosingUpstream {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    /// Connections that answered, by index: each waits for its next request.
    idle: Arc<Mutex<HashMap<usize, TcpStream>>>,
    closed: Arc<AtomicUsize>,
}

impl ClosingUpstream {
    fn start() -> ClosingUpstream {
        let idle: Arc<Mutex<HashMap<usize, TcpStream>>> = Arc::new(Mutex::new(HashMap::new()));
        let closed = Arc::new(AtomicUsize::new(0));
        let (registry, closed_count) = (idle.clone(), closed.clone());
        let (addr, connections) = raw_upstream(move |mut stream, conn| {
            let mut reading = stream.try_clone().unwrap();
            let mut reader = Reader::new(&mut reading);
            while let Some(head) = read_request(&mut reader) {
                let line = head.split("\r\n").next().unwrap().to_string();
                let body = format!("{conn} {line}");
                // Registered before answering: once the client has the answer, the connection
                // is idle and `close_idle` will find it.
                registry
                    .lock()
                    .unwrap()
                    .insert(conn, stream.try_clone().unwrap());
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                if stream.write_all(answer.as_bytes()).is_err() {
                    break;
                }
            }
            closed_count.fetch_add(1, Ordering::SeqCst);
        });
        ClosingUpstream {
            addr,
            connections,
            idle,
            closed,
        }
    }

    /// Closes every connection that is waiting for a request, as an origin's keep-alive
    /// timeout would, and waits until their threads are done with them.
    fn close_idle(&self) {
        let streams: Vec<TcpStream> = self.idle.lock().unwrap().drain().map(|(_, s)| s).collect();
        let before = self.closed.load(Ordering::SeqCst);
        let expected = before + streams.len();
        for s in &streams {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        drop(streams);
        wait_until("the upstream to close its idle connections", || {
            self.closed.load(Ordering::SeqCst) >= expected
        });
    }
}

fn one_request(
    reader: &mut Reader<'_, TcpStream>,
    stream: &mut TcpStream,
    raw: &[u8],
    method: &str,
) -> Response {
    stream.write_all(raw).unwrap();
    reader.read_response(method).unwrap()
}

#[test]
fn pooled_connection_closed_later_by_upstream_is_replaced() {
    let upstream = ClosingUpstream::start();
    let strait = Strait::start(&proxy_config(upstream.addr, ""));
    let mut stream = strait.connect();
    let mut reading = stream.try_clone().unwrap();
    let mut reader = Reader::new(&mut reading);

    assert_eq!(
        one_request(&mut reader, &mut stream, &get("/a"), "GET").text(),
        "0 GET /a HTTP/1.1"
    );
    assert_eq!(
        one_request(&mut reader, &mut stream, &get("/b"), "GET").text(),
        "0 GET /b HTTP/1.1"
    );
    upstream.close_idle();
    // The pooled connection is dead; the GET goes out again on a new one.
    assert_eq!(
        one_request(&mut reader, &mut stream, &get("/c"), "GET").text(),
        "1 GET /c HTTP/1.1"
    );
    assert_eq!(
        one_request(&mut reader, &mut stream, &get("/d"), "GET").text(),
        "1 GET /d HTTP/1.1"
    );
    assert_eq!(upstream.connections.load(Ordering::SeqCst), 2);
}

#[test]
fn pooled_connection_closed_while_idle_is_probed_before_a_post() {
    // A POST is not retried, so it may not meet a dead connection: one that sat idle for a
    // while (1 s, `PROBE_AFTER_IDLE` in src/upstream/pool.rs) is probed before reuse.
    let upstream = ClosingUpstream::start();
    let strait = Strait::start(&proxy_config(upstream.addr, ""));
    let mut stream = strait.connect();
    let mut reading = stream.try_clone().unwrap();
    let mut reader = Reader::new(&mut reading);
    assert_eq!(
        one_request(&mut reader, &mut stream, &get("/a"), "GET").text(),
        "0 GET /a HTTP/1.1"
    );
    let idle_since = Instant::now();
    upstream.close_idle();
    // Not a synchronisation: the probe only runs for connections idle this long.
    wait_until(
        "the pooled connection to be idle past the probe threshold",
        || idle_since.elapsed() > Duration::from_millis(1100),
    );
    let post = b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi";
    let r = one_request(&mut reader, &mut stream, post, "POST");
    assert_eq!((r.status, r.text().as_str()), (200, "1 POST /p HTTP/1.1"));
}

// ---- Upstream failures ------------------------------------------------------------------

#[test]
fn upstream_down_is_502_json_quickly() {
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let strait = Strait::start(&proxy_config(addr, ""));
    let started = Instant::now();
    let r = strait.request(&get("/"));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(r.status, 502);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(r.text(), error_body("upstream connect failed", 502));
}

fn never_answers(args: &[&str]) {
    // The origin accepts and reads, then says nothing until the test ends.
    let (hold_tx, hold_rx) = mpsc::channel::<()>();
    let hold = Arc::new(Mutex::new(hold_rx));
    let (addr, _) = raw_upstream(move |stream, _| {
        let mut reading = stream.try_clone().unwrap();
        let _ = read_request(&mut Reader::new(&mut reading));
        let _ = hold.lock().unwrap().recv_timeout(DEADLINE);
        drop(stream);
    });
    let config = proxy_config(addr, "[server.timeouts]\nupstream_response = \"300ms\"\n");
    let strait = Strait::start_with(&config, args);
    let started = Instant::now();
    let r = strait.request(&get("/slow"));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "took {took:?}"
    );
    assert_eq!(r.status, 504);
    assert_eq!(r.text(), error_body("upstream response timed out", 504));
    drop(hold_tx);
}

#[test]
fn upstream_that_never_answers_is_504() {
    never_answers(&["--workers", "1"]);
}

#[test]
fn upstream_that_never_answers_is_504_epoll() {
    never_answers(&["--workers", "1", "--io-driver", "epoll"]);
}

#[test]
fn upstream_silent_mid_body_ends_the_client_connection() {
    // The head arrives, then the body stalls past `upstream_response`: the client cannot be
    // sent an error any more, so its connection is closed rather than left hanging.
    let (hold_tx, hold_rx) = mpsc::channel::<()>();
    let hold = Arc::new(Mutex::new(hold_rx));
    let (addr, _) = raw_upstream(move |mut stream, _| {
        let mut reading = stream.try_clone().unwrap();
        let _ = read_request(&mut Reader::new(&mut reading));
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nfirst");
        let _ = hold.lock().unwrap().recv_timeout(DEADLINE);
    });
    let config = proxy_config(addr, "[server.timeouts]\nupstream_response = \"300ms\"\n");
    let strait = Strait::start(&config);
    let mut stream = strait.connect();
    stream.write_all(&get("/")).unwrap();
    let all = Reader::new(&mut stream).read_to_end().unwrap();
    let text = String::from_utf8(all).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\nfirst"), "{text}");
    drop(hold_tx);
}

#[test]
fn malformed_upstream_responses_are_502() {
    let responses: &[&[u8]] = &[
        b"garbage\r\n\r\n",
        b"HTTP/1.1 abc OK\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 99 Low\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 600 High\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/2 200 OK\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!",
        b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nbad name: x\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n",
        // A head cut off by the close.
        b"HTTP/1.1 200 OK\r\ncontent-len",
    ];
    let next = Arc::new(AtomicUsize::new(0));
    let which = next.clone();
    let (addr, _) = raw_upstream(move |mut stream, _| {
        let mut reading = stream.try_clone().unwrap();
        if read_request(&mut Reader::new(&mut reading)).is_some() {
            let _ = stream.write_all(responses[which.load(Ordering::SeqCst)]);
        }
    });
    let strait = Strait::start(&proxy_config(addr, ""));
    for (i, response) in responses.iter().enumerate() {
        next.store(i, Ordering::SeqCst);
        let mut stream = strait.connect();
        stream.write_all(&get("/")).unwrap();
        let r = Reader::new(&mut stream).read_response("GET").unwrap();
        let shown = String::from_utf8_lossy(response);
        assert_eq!(r.status, 502, "{shown:?}");
        assert_eq!(
            r.text(),
            error_body("invalid upstream response", 502),
            "{shown:?}"
        );
        assert_eq!(r.header("connection"), Some("close"), "{shown:?}");
        assert!(is_closed(&mut stream), "{shown:?}");
    }
}

#[test]
fn oversized_upstream_head_is_502() {
    let mut response = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..2000 {
        response.extend_from_slice(format!("x-filler-{i:04}: {}\r\n", "v".repeat(30)).as_bytes());
    }
    response.extend_from_slice(b"content-length: 0\r\n\r\n");
    let response: &'static [u8] = response.leak();
    let (addr, _) = raw_upstream(move |mut stream, _| {
        let mut reading = stream.try_clone().unwrap();
        if read_request(&mut Reader::new(&mut reading)).is_some() {
            let _ = stream.write_all(response);
        }
    });
    let strait = Strait::start(&proxy_config(addr, ""));
    let r = strait.request(&get("/"));
    assert_eq!(r.status, 502);
    assert_eq!(r.text(), error_body("invalid upstream response", 502));
}

#[test]
fn upstream_closing_mid_body_closes_the_client_connection() {
    let responses: [&'static [u8]; 2] = [
        b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten b",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n10\r\nshort",
    ];
    let next = Arc::new(AtomicUsize::new(0));
    let which = next.clone();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    let (addr, _) = raw_upstream(move |mut stream, _| {
        let mut reading = stream.try_clone().unwrap();
        if let Some(head) = read_request(&mut Reader::new(&mut reading)) {
            seen.lock().unwrap().push(head);
            let _ = stream.write_all(responses[which.load(Ordering::SeqCst)]);
        }
    });
    let strait = Strait::start(&proxy_config(addr, ""));

    // No client ID: a generated one, the same upstream and back to the client.
    next.store(0, Ordering::SeqCst);
    let mut stream = strait.connect();
    stream.write_all(&get("/")).unwrap();
    let all = String::from_utf8(Reader::new(&mut stream).read_to_end().unwrap()).unwrap();
    let id = generated_request_id(&all);
    assert_eq!(
        all,
        format!("HTTP/1.1 200 OK\r\nvia: 1.1 strait\r\nx-request-id: {id}\r\ncontent-length: 100\r\n\r\nonly ten b")
    );
    let upstream_head = heads
        .lock()
        .unwrap()
        .pop()
        .expect("upstream saw the request");
    assert_eq!(
        upstream_head
            .split("\r\n")
            .filter_map(|l| l.strip_prefix("x-request-id: "))
            .collect::<Vec<_>>(),
        [id.as_str()],
        "{upstream_head}"
    );

    // Chunked: the client sees the chunks so far and then the close, never a last chunk.
    next.store(1, Ordering::SeqCst);
    let mut stream = strait.connect();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Request-Id: t-1\r\n\r\n")
        .unwrap();
    let all = String::from_utf8(Reader::new(&mut stream).read_to_end().unwrap()).unwrap();
    assert!(
        all.starts_with("HTTP/1.1 200 OK\r\nvia: 1.1 strait\r\nx-request-id: t-1\r\ntransfer-encoding: chunked\r\n\r\n"),
        "{all}"
    );
    assert!(all.contains("5\r\nhello\r\n"), "{all}");
    assert!(!all.contains("0\r\n\r\n"), "{all}");

    // Strait is still serving.
    next.store(0, Ordering::SeqCst);
    let mut stream = strait.connect();
    stream.write_all(&get("/")).unwrap();
    let head = Reader::new(&mut stream).read_head().unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
}

#[test]
fn client_leaving_mid_response_does_not_disturb_others() {
    // Connection 0 streams a large body after the test lets it; every later connection
    // answers at once.
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let go = Arc::new(Mutex::new(go_rx));
    let write_failed = Arc::new(AtomicBool::new(false));
    let failed = write_failed.clone();
    let (addr, connections) = raw_upstream(move |mut stream, conn| {
        let mut reading = stream.try_clone().unwrap();
        let mut reader = Reader::new(&mut reading);
        while read_request(&mut reader).is_some() {
            if conn > 0 {
                let _ = stream.write_all(&ok("other"));
                continue;
            }
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000000000\r\n\r\nstart");
            let _ = go.lock().unwrap().recv_timeout(DEADLINE);
            let piece = vec![b'x'; 64 * 1024];
            let mut written = 0u64;
            while written < 1_000_000_000 {
                if stream.write_all(&piece).is_err() {
                    failed.store(true, Ordering::SeqCst);
                    return;
                }
                written += piece.len() as u64;
            }
        }
    });
    let strait = Strait::start(&proxy_config(addr, ""));
    let mut leaving = strait.connect();
    leaving.write_all(&get("/big")).unwrap();
    let mut reader = Reader::new(&mut leaving);
    let head = reader.read_head().unwrap();
    assert!(head.contains("content-length: 1000000000\r\n"), "{head}");
    assert_eq!(reader.read_exact_vec(5).unwrap(), b"start");
    drop(reader);
    drop(leaving);
    go_tx.send(()).unwrap();
    // Strait notices the client is gone and drops the upstream connection with it.
    wait_until("the upstream's writes to fail", || {
        write_failed.load(Ordering::SeqCst)
    });
    // Others are served, on a fresh upstream connection: the broken one was not pooled.
    for i in 0..3 {
        let r = strait.request(&get(&format!("/{i}")));
        assert_eq!((r.status, r.text().as_str()), (200, "other"));
    }
    assert_eq!(connections.load(Ordering::SeqCst), 2);
}

#[test]
fn upstream_connection_close_or_trailing_bytes_are_not_pooled() {
    let upstream = Upstream::start(|r| {
        match r.request_line() {
        l if l.starts_with("GET /close") => b"HTTP/1.1 200 OK\r\nConnection: close\r\ncontent-length: 5\r\n\r\nclose".to_vec(),
        // Bytes after the body: the connection's framing can no longer be trusted.
        l if l.starts_with("GET /extra") => b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nextraHTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nbogus!".to_vec(),
        _ => ok("plain"),
    }
    });
    let strait = Strait::start(&proxy_config(upstream.addr, ""));
    let mut stream = strait.connect();
    let mut reading = stream.try_clone().unwrap();
    let mut reader = Reader::new(&mut reading);
    let steps = [
        ("/close", "close", 1),
        ("/p", "plain", 2),
        ("/extra", "extra", 2),
        ("/p", "plain", 3),
        ("/p", "plain", 3),
    ];
    for (path, body, connections) in steps {
        let r = one_request(&mut reader, &mut stream, &get(path), "GET");
        assert_eq!((r.status, r.text().as_str()), (200, body), "{path}");
        // The upstream's `Connection: close` is its own hop's business: the client stays.
        assert_eq!(r.header("connection"), None, "{path}");
        assert_eq!(
            upstream.connections.load(Ordering::SeqCst),
            connections,
            "after {path}"
        );
    }
}

#[test]
fn upstream_connect_timeout_is_504() {
    // A listener whose accept queue is full drops further SYNs (Linux), so a connect to it
    // neither succeeds nor fails until the client gives up.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    // Fill the queue (backlog 0 holds one connection) until a connect no longer completes.
    let mut fillers = Vec::new();
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(stream) => fillers.push(stream),
            Err(_) => break,
        }
        assert!(fillers.len() < 16, "the accept queue never filled");
    }
    let config = proxy_config(addr, "[server.timeouts]\nupstream_connect = \"300ms\"\n");
    let strait = Strait::start(&config);
    let started = Instant::now();
    let r = strait.request(&get("/"));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "took {took:?}"
    );
    assert_eq!(r.status, 504);
    assert_eq!(r.text(), error_body("upstream connect timed out", 504));
    drop(socket);
}
