//! The graceful drain of keep-alive connections, through the real binary: a connection idle
//! between two requests when a drain starts gets a short grace for its next request, which
//! is answered with `Connection: close`; one still idle past the grace is closed with a
//! lingering close (our FIN first, whatever the client still sends read and discarded), so
//! that no client ever sees a reset or loses a request it sent.
//!
//! The clients here never retry: every request must get its answer.

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

/// A config serving `/` from upstream `app`, listening on `listen`.
fn config(listen: &str, upstream: SocketAddr, extra: &str) -> String {
    format!(
        "[server]\nlisten = [\"{listen}\"]\n{extra}\n[upstreams.app]\nendpoints = [\"{upstream}\"]\n\n[[routes]]\npath = \"/\"\nupstream = \"app\"\n"
    )
}

/// Reads until the peer closes; Ok(0) only for a clean end of stream with nothing before it.
fn read_eof(stream: &mut TcpStream) -> Result<(), String> {
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) if rest.is_empty() => Ok(()),
        Ok(_) => Err(format!(
            "bytes after the last answer: {:?}",
            String::from_utf8_lossy(&rest)
        )),
        Err(e) => Err(format!("not a clean close: {e}")),
    }
}

/// The pid in the "upgrade: successor started pid=N" log line.
fn successor_pid(log: &str) -> Option<u32> {
    let line = log
        .lines()
        .find(|l| l.contains("upgrade: successor started"))?;
    let start = line.find("pid=")? + 4;
    line[start..].split_whitespace().next()?.parse().ok()
}

/// Kills the successor process (a grandchild of the test, not reaped by the harness).
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe {
            libc::kill(self.0 as libc::pid_t, libc::SIGKILL);
        }
    }
}

#[derive(Default)]
struct Load {
    answered: AtomicUsize,
    /// Answers with `Connection: close` (the draining process), each followed by a clean
    /// end of stream.
    closed: AtomicUsize,
    failures: Mutex<Vec<String>>,
}

/// Upper bound on requests per client, in case the stop flag is never set.
const MAX_REQUESTS_PER_CLIENT: usize = 200_000;
/// Upper bound on how long a client runs, likewise.
const MAX_CLIENT_TIME: Duration = Duration::from_secs(60);

/// One closed-loop client: sequential GETs on a keep-alive connection, never retried. Each
/// must be answered 200 "ok" in full; a connection may only end after an answer with
/// `Connection: close`, and then with a clean end of stream. A new connection follows.
fn client(name: String, addr: SocketAddr, load: Arc<Load>, stop: Arc<AtomicBool>) {
    let fail = |what: String| {
        load.failures
            .lock()
            .unwrap()
            .push(format!("{name}: {what}"))
    };
    let started = Instant::now();
    let mut sent = 0;
    'connections: while sent < MAX_REQUESTS_PER_CLIENT && started.elapsed() < MAX_CLIENT_TIME {
        let mut stream = match TcpStream::connect(addr) {
            Ok(stream) => stream,
            Err(e) => {
                fail(format!("connect: {e}"));
                return;
            }
        };
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        stream.set_write_timeout(Some(DEADLINE)).unwrap();
        stream.set_nodelay(true).unwrap();
        loop {
            if stop.load(Ordering::SeqCst) || !load.failures.lock().unwrap().is_empty() {
                return;
            }
            sent += 1;
            if let Err(e) = stream.write_all(GET) {
                fail(format!("request {sent}: write: {e}"));
                continue 'connections;
            }
            let mut reader_stream = stream.try_clone().unwrap();
            let mut reader = Reader::new(&mut reader_stream);
            let response = match reader.read_response("GET") {
                Ok(response) => response,
                Err(e) => {
                    fail(format!("request {sent}: no complete answer: {e}"));
                    continue 'connections;
                }
            };
            if !reader.buffered().is_empty() {
                fail(format!("request {sent}: bytes past the answer"));
                continue 'connections;
            }
            if response.status != 200 || response.body != b"ok" {
                fail(format!(
                    "request {sent}: answer {} {:?}",
                    response.status,
                    response.text()
                ));
                continue 'connections;
            }
            load.answered.fetch_add(1, Ordering::SeqCst);
            if response.header("connection") == Some("close") {
                if let Err(e) = read_eof(&mut stream) {
                    fail(format!("request {sent}: after connection: close, {e}"));
                }
                load.closed.fetch_add(1, Ordering::SeqCst);
                continue 'connections;
            }
        }
    }
}

/// Four closed-loop keep-alive clients that never retry; a binary upgrade in the middle.
fn upgrade_under_keep_alive_load(driver: &str) {
    const CLIENTS: usize = 4;
    let app = Upstream::fixed("ok");
    // A fixed port: the successor re-reads the config, and port 0 would be a new port.
    let listen = format!("127.0.0.1:{}", free_port());
    let mut s = Strait::start_with(
        &config(&listen, app.addr, ""),
        &["--workers", "1", "--io-driver", driver],
    );
    let load = Arc::new(Load::default());
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_guard = StopOnDrop(stop.clone());
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (addr, load, stop) = (s.addr, load.clone(), stop.clone());
            thread::spawn(move || client(format!("client {i}"), addr, load, stop))
        })
        .collect();
    let answered_at_least = |n: usize| {
        wait_until(&format!("{n} requests answered"), || {
            load.answered.load(Ordering::SeqCst) >= n || !load.failures.lock().unwrap().is_empty()
        })
    };
    answered_at_least(500);

    s.signal(libc::SIGUSR2);
    let mut successor = None;
    wait_until("the successor to start", || {
        successor = successor_pid(&s.log_text());
        successor.is_some()
    });
    let _kill_successor = KillOnDrop(successor.unwrap());
    let status = s.wait_exit(DEADLINE);
    assert!(status.success(), "the old process exited with {status}");
    // The successor carries the load on its own now.
    answered_at_least(load.answered.load(Ordering::SeqCst) + 500);
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.join().unwrap();
    }
    let failures = load.failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "{failures:#?}\nlog:\n{}", s.log_text());
    // Every client's connection to the old process ended the one allowed way.
    let closed = load.closed.load(Ordering::SeqCst);
    assert!(closed >= CLIENTS, "{closed} connection: close answers");
    eprintln!(
        "upgrade ({driver}): {} answered, {closed} closed by the drain, none failed",
        load.answered.load(Ordering::SeqCst)
    );
}

#[test]
fn an_upgrade_under_closed_loop_keep_alive_load_fails_no_request() {
    upgrade_under_keep_alive_load("auto");
}

#[test]
fn an_upgrade_under_closed_loop_keep_alive_load_fails_no_request_on_epoll() {
    upgrade_under_keep_alive_load("epoll");
}

#[test]
fn a_request_on_an_idle_connection_once_the_drain_began_is_answered_with_close() {
    let app = Upstream::fixed("ok");
    let mut s = Strait::start(&config(
        "127.0.0.1:0",
        app.addr,
        "[server.timeouts]\ndrain = \"20s\"\nkeepalive_idle = \"20s\"\n",
    ));
    let mut idle = s.connect();
    idle.write_all(GET).unwrap();
    let first = read_response(&mut idle).unwrap();
    assert_eq!((first.status, first.header("connection")), (200, None));

    s.signal(libc::SIGTERM);
    wait_refused(s.addr);
    idle.write_all(GET).unwrap();
    let next = read_response(&mut idle).expect("the request in the grace was not answered");
    assert_eq!((next.status, next.text().as_str()), (200, "ok"));
    assert_eq!(next.header("connection"), Some("close"));
    read_eof(&mut idle).unwrap();
    let status = s.wait_exit(DEADLINE);
    assert!(status.success(), "exit status {status}");
}

#[test]
fn an_idle_connection_past_the_grace_is_closed_without_a_reset() {
    let app = Upstream::fixed("ok");
    // Neither the keep-alive timeout nor the drain timeout may be what closes it.
    let mut s = Strait::start(&config(
        "127.0.0.1:0",
        app.addr,
        "[server.timeouts]\ndrain = \"20s\"\nkeepalive_idle = \"20s\"\n",
    ));
    let mut idle = s.connect();
    idle.write_all(GET).unwrap();
    assert_eq!(read_response(&mut idle).unwrap().status, 200);

    s.signal(libc::SIGTERM);
    // The server ends its side first: a clean end of stream, no answer, no reset.
    read_eof(&mut idle).unwrap();
    // A request that crosses that end is read and discarded, not answered with a reset:
    // the connection was closed, for the client, before the request was sent.
    idle.write_all(GET).unwrap();
    let status = s.wait_exit(DEADLINE);
    assert!(status.success(), "exit status {status}");
    assert!(
        idle.take_error().unwrap().is_none(),
        "the connection was reset"
    );
    read_eof(&mut idle).unwrap();
    assert!(s.log_text().contains("stopped"));
}
