//! Live operations through the real binary: reloads under load (SIGHUP), an invalid reload,
//! warm upstream pools across a reload, the graceful drain on SIGTERM (requests in flight,
//! idle keep-alive connections, the drain timeout) and the binary upgrade on SIGUSR2 under
//! load (tests/drain.rs has the keep-alive side of the drain in detail).
//!
//! Nothing here sleeps to synchronise: every wait polls a condition with a deadline, and the
//! upstreams that hold a request are released by the test through a channel.

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

/// A config serving `/` from upstream `app` at `upstream`, listening on `listen`.
fn config(listen: &str, upstream: SocketAddr, extra: &str) -> String {
    format!(
        r#"[server]
listen = ["{listen}"]
{extra}
[upstreams.app]
endpoints = ["{upstream}"]

[[routes]]
path = "/"
upstream = "app"
"#
    )
}

// ---- A client that tells "closed before answering" apart from a failure ----------------

/// How one request/response exchange on a connection ended.
enum Outcome {
    Answered(Response),
    /// The server closed the connection before a single byte of the answer: the request
    /// was not served (a drain closed the connection between requests), and a client may
    /// send it again on a new connection.
    Unanswered(String),
    /// Anything else: an error, a timeout, a connection cut mid-answer.
    Failed(String),
}

/// Counts the bytes read through it, to know whether any of an answer arrived.
struct Counting<'a> {
    inner: &'a mut TcpStream,
    read: usize,
}

impl Read for Counting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n;
        Ok(n)
    }
}

fn is_close(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        kind,
        UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe
    )
}

/// Sends `request` and reads one response.
fn exchange(stream: &mut TcpStream, request: &[u8]) -> Outcome {
    if let Err(e) = stream.write_all(request) {
        return if is_close(e.kind()) {
            Outcome::Unanswered(format!("write: {e}"))
        } else {
            Outcome::Failed(format!("write: {e}"))
        };
    }
    let mut counting = Counting {
        inner: stream,
        read: 0,
    };
    let result = Reader::new(&mut counting).read_response("GET");
    match result {
        Ok(response) => Outcome::Answered(response),
        Err(e) if counting.read == 0 && is_close(e.kind()) => Outcome::Unanswered(e.to_string()),
        Err(e) => Outcome::Failed(format!("{e} after {} bytes of the answer", counting.read)),
    }
}

/// Starts each job on its own thread and hands back the join handles.
fn spawn_all(jobs: Vec<Box<dyn FnOnce() + Send>>) -> Vec<thread::JoinHandle<()>> {
    jobs.into_iter().map(thread::spawn).collect()
}

/// Upper bound on requests per load thread, in case a stop flag is never set.
const MAX_REQUESTS_PER_CLIENT: u64 = 200_000;

// ---- 1. Reload under load -----------------------------------------------------------------

/// The body config generation `k` answers with: 0 is the startup config (A), reload `k`
/// alternates B, A, B, …
fn body_of(k: u64) -> &'static str {
    if k.is_multiple_of(2) {
        "A"
    } else {
        "B"
    }
}

/// The reload protocol shared by the controller and the load threads. `state` is `2k` once
/// generation `k` is confirmed served and no reload is under way, `2k + 1` from the moment
/// reload `k + 1` begins (before its file is written and SIGHUP sent) until it is
/// confirmed. A request whose send and answer both saw the same even state must have been
/// answered by generation `k`: the reload before it was confirmed, the next one not begun.
struct Reloads {
    state: AtomicU64,
    /// Requests answered by the wrong config, or not answered.
    failures: Mutex<Vec<String>>,
}

/// One load thread: sequential GETs on one keep-alive connection (`fresh`: a new connection
/// per request), checking every answer against the reload state. `checked` is the last
/// even state a request was checked against.
fn reload_client(
    name: String,
    addr: SocketAddr,
    fresh: bool,
    reloads: Arc<Reloads>,
    checked: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    let fail = |what: String| {
        reloads
            .failures
            .lock()
            .unwrap()
            .push(format!("{name}: {what}"))
    };
    let mut stream = connect(addr);
    for _ in 0..MAX_REQUESTS_PER_CLIENT {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        if fresh {
            stream = connect(addr);
        }
        let before = reloads.state.load(Ordering::SeqCst);
        let outcome = exchange(&mut stream, GET);
        let after = reloads.state.load(Ordering::SeqCst);
        match outcome {
            Outcome::Answered(r) => {
                if r.status != 200 || !(r.body == b"A" || r.body == b"B") {
                    fail(format!("unexpected answer {} {:?}", r.status, r.text()));
                } else if before == after && before.is_multiple_of(2) {
                    let want = body_of(before / 2);
                    if r.text() != want {
                        fail(format!(
                            "generation {} confirmed, but the answer came from the old config ({:?})",
                            before / 2,
                            r.text()
                        ));
                    }
                    checked.store(before, Ordering::SeqCst);
                }
                if r.header("connection") == Some("close") {
                    fail("connection: close without a drain".into());
                    stream = connect(addr);
                }
            }
            Outcome::Unanswered(e) | Outcome::Failed(e) => {
                fail(format!("request failed: {e}"));
                stream = connect(addr);
            }
        }
        if reloads.failures.lock().unwrap().len() > 20 {
            return;
        }
    }
}

#[test]
fn reloads_under_load_lose_nothing_and_apply_to_the_next_request() {
    const RELOADS: u64 = 20;
    let (a, b) = (Upstream::fixed("A"), Upstream::fixed("B"));
    let config_of = |k: u64| {
        let upstream = if k.is_multiple_of(2) { a.addr } else { b.addr };
        config("127.0.0.1:0", upstream, "")
    };
    let s = Strait::start(&config_of(0));
    let reloads = Arc::new(Reloads {
        state: AtomicU64::new(0),
        failures: Mutex::new(Vec::new()),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_guard = StopOnDrop(stop.clone());
    // Four keep-alive connections and one client opening a connection per request.
    let mut checked = Vec::new();
    let mut jobs: Vec<Box<dyn FnOnce() + Send>> = Vec::new();
    for i in 0..5 {
        let fresh = i == 4;
        let c = Arc::new(AtomicU64::new(0));
        checked.push(c.clone());
        let (addr, reloads, stop) = (s.addr, reloads.clone(), stop.clone());
        let name = if fresh {
            "new-conn client".to_string()
        } else {
            format!("keep-alive client {i}")
        };
        jobs.push(Box::new(move || {
            reload_client(name, addr, fresh, reloads, c, stop)
        }));
    }
    let clients = spawn_all(jobs);

    for k in 1..=RELOADS {
        reloads.state.store(2 * k - 1, Ordering::SeqCst);
        s.write_config(&config_of(k));
        s.signal(libc::SIGHUP);
        // Readiness: a request on a new connection is answered by the new config.
        wait_until(&format!("reload {k} to be served"), || {
            s.request(GET).text() == body_of(k)
        });
        reloads.state.store(2 * k, Ordering::SeqCst);
        // From now on, every request sees generation k: on a new connection…
        let fresh = s.request(GET);
        assert_eq!((fresh.status, fresh.text().as_str()), (200, body_of(k)));
        // …and the next request on every existing keep-alive connection (checked by the
        // clients, which must each get one request in before the next reload).
        wait_until(
            &format!("every client to send a request after reload {k}"),
            || {
                checked.iter().all(|c| c.load(Ordering::SeqCst) >= 2 * k)
                    || !reloads.failures.lock().unwrap().is_empty()
            },
        );
        let failures = reloads.failures.lock().unwrap().clone();
        assert!(failures.is_empty(), "after reload {k}: {failures:#?}");
    }
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.join().unwrap();
    }
    let failures = reloads.failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "{failures:#?}");
    let log = s.log_text();
    assert_eq!(
        log.matches("config reloaded").count(),
        RELOADS as usize,
        "{log}"
    );
    assert!(
        !a.requests().is_empty() && !b.requests().is_empty(),
        "both configs served"
    );
}

// ---- 2. Invalid reload -------------------------------------------------------------------

#[test]
fn an_invalid_reload_is_logged_with_its_position_and_changes_nothing() {
    let (a, b) = (Upstream::fixed("A"), Upstream::fixed("B"));
    let mut s = Strait::start(&config("127.0.0.1:0", a.addr, ""));
    let mut kept = s.connect();
    assert_eq!(exchange_ok(&mut kept).text(), "A");

    s.write_config("[server]\nlisten = [\"127.0.0.1:0\"]\nbogus = 1\n");
    s.signal(libc::SIGHUP);
    let path = s.config_path().display().to_string();
    let expected = format!("{path}:3:1: server.bogus: unknown field `bogus`");
    wait_until("the failed reload to be logged", || {
        s.log_text().contains(&expected)
    });
    let log = s.log_text();
    assert!(
        log.contains("config reload failed, still serving the previous config"),
        "{log}"
    );
    assert!(s.is_running());
    // The old config still answers, on the kept connection and on new ones.
    assert_eq!(exchange_ok(&mut kept).text(), "A");
    assert_eq!(s.request(GET).text(), "A");

    // A valid file afterwards reloads as usual.
    s.write_config(&config("127.0.0.1:0", b.addr, ""));
    s.signal(libc::SIGHUP);
    wait_until("the fixed config to be served", || {
        s.request(GET).text() == "B"
    });
    assert_eq!(exchange_ok(&mut kept).text(), "B");
}

/// One GET on `stream` that must be answered 200.
fn exchange_ok(stream: &mut TcpStream) -> Response {
    match exchange(stream, GET) {
        Outcome::Answered(r) if r.status == 200 => r,
        Outcome::Answered(r) => panic!("status {}: {}", r.status, r.text()),
        Outcome::Unanswered(e) | Outcome::Failed(e) => panic!("no answer: {e}"),
    }
}

// ---- 3. Warm pools survive a reload --------------------------------------------------------

#[test]
fn a_reload_keeps_the_warm_pool_of_an_unchanged_upstream() {
    let app = Upstream::fixed("A");
    let before = config("127.0.0.1:0", app.addr, "");
    let after = format!(
        "{before}\n[[routes]]\npath = \"/probe\"\nmock = {{ status = 200, body = \"v2\" }}\n"
    );
    let s = Strait::start(&before);
    let mut client = s.connect();
    assert_eq!(exchange_ok(&mut client).text(), "A");
    assert_eq!(app.connections.load(Ordering::SeqCst), 1);

    s.write_config(&after);
    s.signal(libc::SIGHUP);
    wait_until("the new config to be served", || {
        let r = s.request(b"GET /probe HTTP/1.1\r\nHost: x\r\n\r\n");
        r.status == 200 && r.text() == "v2"
    });
    for _ in 0..3 {
        assert_eq!(exchange_ok(&mut client).text(), "A");
    }
    assert_eq!(s.request(GET).text(), "A");
    assert_eq!(
        app.connections.load(Ordering::SeqCst),
        1,
        "the reload opened a new upstream connection"
    );
    assert!(app.requests().iter().all(|r| r.conn == 0));
}

// ---- 4. SIGTERM: requests in flight finish, idle connections close -------------------------

/// An origin that, for each request, reports its arrival on the returned receiver and then
/// holds it until the test sends on the returned sender (or drops it), then answers "slow".
fn held_upstream() -> (Upstream, mpsc::Receiver<()>, mpsc::Sender<()>) {
    let (arrived_tx, arrived_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (arrived_tx, release_rx) = (Mutex::new(arrived_tx), Mutex::new(release_rx));
    let upstream = Upstream::start(move |_| {
        let _ = arrived_tx.lock().unwrap().send(());
        let _ = release_rx.lock().unwrap().recv();
        ok("slow")
    });
    (upstream, arrived_rx, release_tx)
}

#[test]
fn sigterm_finishes_requests_in_flight_with_connection_close_and_exits_0() {
    let (upstream, arrived, release) = held_upstream();
    let mut s = Strait::start(&config(
        "127.0.0.1:0",
        upstream.addr,
        "[server.timeouts]\ndrain = \"20s\"\n",
    ));
    let mut client = s.connect();
    client.write_all(GET).unwrap();
    arrived
        .recv_timeout(DEADLINE)
        .expect("the request did not reach the upstream");

    s.signal(libc::SIGTERM);
    wait_refused(s.addr);
    assert!(s.is_running(), "exited with a request in flight");

    release.send(()).unwrap();
    let response = read_response(&mut client).expect("the request in flight was cut");
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "slow");
    assert_eq!(response.header("connection"), Some("close"));
    assert!(is_closed(&mut client));
    let status = s.wait_exit(DEADLINE);
    assert!(status.success(), "exit status {status}");
    let log = s.log_text();
    assert!(log.contains("draining") && log.contains("stopped"), "{log}");
}

#[test]
fn sigterm_closes_idle_keep_alive_connections_after_the_grace() {
    let app = Upstream::fixed("A");
    // Neither the keep-alive timeout nor the drain timeout may be what closes it: the
    // drain's grace for idle connections (1 s) does, cleanly (see tests/drain.rs).
    let mut s = Strait::start(&config(
        "127.0.0.1:0",
        app.addr,
        "[server.timeouts]\ndrain = \"20s\"\nkeepalive_idle = \"20s\"\n",
    ));
    let mut idle = s.connect();
    assert_eq!(exchange_ok(&mut idle).text(), "A");
    s.signal(libc::SIGTERM);
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut byte = [0u8; 1];
    assert_eq!(
        idle.read(&mut byte)
            .expect("the idle connection was not closed cleanly"),
        0
    );
    drop(idle);
    let status = s.wait_exit(DEADLINE);
    assert!(status.success(), "exit status {status}");
}

// ---- 6. The drain timeout cuts what never finishes ---------------------------------------

#[test]
fn the_drain_timeout_cuts_a_request_that_never_finishes_and_exits_0() {
    let (upstream, arrived, release) = held_upstream();
    let mut s = Strait::start(&config(
        "127.0.0.1:0",
        upstream.addr,
        "[server.timeouts]\ndrain = \"500ms\"\n",
    ));
    let mut client = s.connect();
    client.write_all(GET).unwrap();
    arrived
        .recv_timeout(DEADLINE)
        .expect("the request did not reach the upstream");
    let start = Instant::now();
    s.signal(libc::SIGTERM);
    let status = s.wait_exit(DEADLINE);
    let took = start.elapsed();
    assert!(status.success(), "exit status {status}");
    assert!(
        took >= Duration::from_millis(450),
        "exited after {took:?}, before the drain timeout"
    );
    // The cut request gets no answer: its connection is closed.
    let mut rest = Vec::new();
    let read = client.read_to_end(&mut rest);
    assert!(
        match &read {
            Ok(_) => rest.is_empty(),
            Err(e) => is_close(e.kind()),
        },
        "{:?}",
        String::from_utf8_lossy(&rest)
    );
    assert!(s.log_text().contains("drain timeout"));
    drop(release);
}

// ---- 5. Binary upgrade under load ----------------------------------------------------------

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

/// The pid in the "upgrade: successor started pid=N" log line.
fn successor_pid(log: &str) -> Option<u32> {
    let line = log
        .lines()
        .find(|l| l.contains("upgrade: successor started"))?;
    let start = line.find("pid=")? + 4;
    line[start..].split_whitespace().next()?.parse().ok()
}

#[derive(Default)]
struct UpgradeStats {
    answered: AtomicUsize,
    /// Requests sent again on a new connection because a drain closed theirs first.
    retried: AtomicUsize,
    /// Answers carrying `Connection: close` (the old process draining).
    closed_by_drain: AtomicUsize,
    failures: Mutex<Vec<String>>,
}

/// One load thread for the upgrade: sequential GETs on a keep-alive connection, or on a new
/// connection per request (`fresh`).
///
/// The rule for counting: every request must be answered 200 "ok". The one exception is a
/// keep-alive connection that the draining old process closes between two requests (idle
/// past the drain's grace, which a closed-loop client never is; tests/drain.rs has the
/// same load without retries): if it
/// is closed before any byte of the answer to the request just sent arrived, that request
/// was never served and is sent again on a new connection (what an HTTP client does for an
/// idempotent request on a reused connection, RFC 9112 §9.3.1); it counts as retried, not
/// failed. A request on a new connection must always be answered, as must any retry.
/// Anything else — a refused connect, a reset mid-answer, a timeout, a wrong answer — is a
/// failure.
fn upgrade_client(
    name: String,
    addr: SocketAddr,
    fresh: bool,
    stats: Arc<UpgradeStats>,
    stop: Arc<AtomicBool>,
) {
    let fail = |what: String| {
        stats
            .failures
            .lock()
            .unwrap()
            .push(format!("{name}: {what}"))
    };
    let open = || {
        TcpStream::connect(addr).inspect(|s| {
            s.set_read_timeout(Some(DEADLINE)).unwrap();
            s.set_write_timeout(Some(DEADLINE)).unwrap();
            s.set_nodelay(true).unwrap();
        })
    };
    let mut stream: Option<TcpStream> = None;
    for _ in 0..MAX_REQUESTS_PER_CLIENT {
        if stop.load(Ordering::SeqCst) || stats.failures.lock().unwrap().len() > 20 {
            return;
        }
        // `reused`: the request goes on a connection that already carried one.
        let reused = !fresh && stream.is_some();
        if fresh || stream.is_none() {
            match open() {
                Ok(s) => stream = Some(s),
                Err(e) => {
                    fail(format!("connect: {e}"));
                    continue;
                }
            }
        }
        let Some(conn) = stream.as_mut() else {
            continue;
        };
        let mut outcome = exchange(conn, GET);
        if reused {
            if let Outcome::Unanswered(_) = outcome {
                stats.retried.fetch_add(1, Ordering::SeqCst);
                match open() {
                    Ok(s) => {
                        stream = Some(s);
                        outcome = exchange(stream.as_mut().unwrap(), GET);
                    }
                    Err(e) => outcome = Outcome::Failed(format!("reconnect: {e}")),
                }
            }
        }
        match outcome {
            Outcome::Answered(r) if r.status == 200 && r.body == b"ok" => {
                stats.answered.fetch_add(1, Ordering::SeqCst);
                if r.header("connection") == Some("close") {
                    stats.closed_by_drain.fetch_add(1, Ordering::SeqCst);
                    stream = None;
                }
            }
            Outcome::Answered(r) => {
                fail(format!("answer {} {:?}", r.status, r.text()));
                stream = None;
            }
            Outcome::Unanswered(e) => {
                fail(format!("new connection closed unanswered: {e}"));
                stream = None;
            }
            Outcome::Failed(e) => {
                fail(e);
                stream = None;
            }
        }
        if fresh {
            stream = None;
        }
    }
}

#[test]
fn a_binary_upgrade_under_load_loses_no_request() {
    upgrade_under_load("auto");
}

#[test]
fn a_binary_upgrade_under_load_loses_no_request_on_epoll() {
    upgrade_under_load("epoll");
}

fn upgrade_under_load(driver: &str) {
    let app = Upstream::fixed("ok");
    // A fixed port: the successor re-reads the config, and port 0 would be a new port.
    let listen = format!("127.0.0.1:{}", free_port());
    let mut s = Strait::start_with(
        &config(&listen, app.addr, ""),
        &["--workers", "1", "--io-driver", driver],
    );
    let stats = Arc::new(UpgradeStats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_guard = StopOnDrop(stop.clone());
    let mut jobs: Vec<Box<dyn FnOnce() + Send>> = Vec::new();
    for i in 0..6 {
        let fresh = i >= 4;
        let (addr, stats, stop) = (s.addr, stats.clone(), stop.clone());
        let name = if fresh {
            format!("new-conn client {i}")
        } else {
            format!("keep-alive client {i}")
        };
        jobs.push(Box::new(move || {
            upgrade_client(name, addr, fresh, stats, stop)
        }));
    }
    let clients = spawn_all(jobs);
    let answered_at_least = |n: usize| {
        wait_until(&format!("{n} requests answered"), || {
            stats.answered.load(Ordering::SeqCst) >= n || !stats.failures.lock().unwrap().is_empty()
        })
    };
    answered_at_least(200);

    let old_pid = s.pid();
    s.signal(libc::SIGUSR2);
    let mut successor = None;
    wait_until("the successor to start", || {
        successor = successor_pid(&s.log_text());
        successor.is_some()
    });
    let successor = successor.unwrap();
    let _kill_successor = KillOnDrop(successor);
    assert_ne!(successor, old_pid);
    // The old process drains and exits 0 once the successor serves.
    let status = s.wait_exit(DEADLINE);
    assert!(status.success(), "the old process exited with {status}");
    // The successor carries the load on its own now.
    let served = stats.answered.load(Ordering::SeqCst);
    answered_at_least(served + 200);
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.join().unwrap();
    }
    let failures = stats.failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "{failures:#?}\nlog:\n{}", s.log_text());
    eprintln!(
        "upgrade ({driver}): {} answered, {} answers with connection: close, {} retried after a drain closed an idle connection",
        stats.answered.load(Ordering::SeqCst),
        stats.closed_by_drain.load(Ordering::SeqCst),
        stats.retried.load(Ordering::SeqCst),
    );
    assert!(s.log_text().contains("stopped"));
    // The successor is alive and serves new connections.
    send_signal(successor, 0);
    let mut last = connect(s.addr);
    assert_eq!(exchange_ok(&mut last).text(), "ok");
}

#[test]
fn a_binary_upgrade_hands_over_the_metrics_listener() {
    let app = Upstream::fixed("ok");
    let listen = format!("127.0.0.1:{}", free_port());
    // A fixed metrics port: its socket has no SO_REUSEPORT, so the successor can only serve
    // it by inheriting it (a bind would fail while the old process holds it).
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let extra = format!("[observability.metrics]\nlisten = \"{metrics}\"\n");
    let mut s = Strait::start(&config(&listen, app.addr, &extra));
    let scrape = || {
        let mut stream = connect(metrics);
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: m\r\n\r\n")
            .unwrap();
        read_response(&mut stream).unwrap().status
    };
    assert_eq!(scrape(), 200);

    s.signal(libc::SIGUSR2);
    let mut successor = None;
    wait_until("the successor to start", || {
        successor = successor_pid(&s.log_text());
        successor.is_some()
    });
    let _kill_successor = KillOnDrop(successor.unwrap());
    // The old process exits only once the successor is ready, with every listener.
    let status = s.wait_exit(DEADLINE);
    assert!(status.success(), "the old process exited with {status}");
    let log = s.log_text();
    assert!(!log.contains("the successor exited"), "{log}");
    assert_eq!(scrape(), 200);
    // (`s.addr` is the metrics listener here: the harness takes the first "listening" line.)
    let mut client = connect(listen.parse().unwrap());
    assert_eq!(exchange_ok(&mut client).text(), "ok");
}
