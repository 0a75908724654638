//! Upstream resilience through the real binary, against origins the tests kill, restart,
//! slow down and make fail: failover by retry on another endpoint, what is (and is not)
//! retried, the retry budget under a full outage, per-try timeouts, the circuit breaker,
//! and where the balancing policies send traffic (hash stickiness across workers, reloads
//! and restarts; least-conn and P2C avoiding a slow endpoint).
//!
//! Active health checks and outlier ejection have their own tests in `tests/health.rs`.
//! Nothing here sleeps to synchronise: readiness and in-flight counts are polled with
//! `wait_until`.

mod common;
use common::*;

use std::collections::HashMap;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

// ---- A killable origin ------------------------------------------------------------------

/// What an [`Origin`] does with each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `200` with the origin's name as the body.
    Ok,
    /// This status, body `NAME:STATUS`.
    Status(u16),
    /// Accept the connection and close it before reading anything.
    CloseAtOnce,
    /// Read the request and never answer.
    Hang,
    /// Hold the request until [`Origin::release`], then answer like `Ok`.
    Hold,
}

/// A keep-alive origin on a loopback port that can be killed (listener and every
/// connection closed, as when the process dies) and started again on the same port.
struct Origin {
    addr: SocketAddr,
    /// Requests received (for `CloseAtOnce`: connections accepted).
    hits: Arc<AtomicUsize>,
    /// Requests being held (`Hold`).
    held: Arc<AtomicUsize>,
    /// `Hold`: set once released.
    gate: Arc<(Mutex<bool>, Condvar)>,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    accept: Option<JoinHandle<()>>,
}

impl Origin {
    fn start(name: &'static str, mode: Mode) -> Origin {
        Origin::start_at(name, "127.0.0.1:0".parse().unwrap(), mode)
    }

    /// Listens on `addr` (std sets `SO_REUSEADDR`, so a killed origin's port is free again).
    fn start_at(name: &'static str, addr: SocketAddr, mode: Mode) -> Origin {
        let listener = TcpListener::bind(addr).unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let held = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let accept = {
            let (hits, held, gate, stop, conns) = (
                hits.clone(),
                held.clone(),
                gate.clone(),
                stop.clone(),
                conns.clone(),
            );
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return; // drops the listener
                    }
                    let Ok(stream) = stream else { continue };
                    if mode == Mode::CloseAtOnce {
                        hits.fetch_add(1, Ordering::SeqCst);
                        drop(stream);
                        continue;
                    }
                    conns.lock().unwrap().push(stream.try_clone().unwrap());
                    let (hits, held, gate, stop) =
                        (hits.clone(), held.clone(), gate.clone(), stop.clone());
                    thread::spawn(move || serve(stream, name, mode, hits, held, gate, stop));
                }
            })
        };
        Origin {
            addr,
            hits,
            held,
            gate,
            stop,
            conns,
            accept: Some(accept),
        }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }

    /// Lets every held request (and every later one) through.
    fn release(&self) {
        *self.gate.0.lock().unwrap() = true;
        self.gate.1.notify_all();
    }

    /// Closes the listener (returns once it is closed) and every connection.
    fn kill(&mut self) {
        let Some(accept) = self.accept.take() else {
            return;
        };
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes the accept loop
        accept.join().unwrap();
        for conn in self.conns.lock().unwrap().drain(..) {
            let _ = conn.shutdown(std::net::Shutdown::Both);
        }
        self.gate.1.notify_all();
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.kill();
    }
}

fn serve(
    mut stream: TcpStream,
    name: &'static str,
    mode: Mode,
    hits: Arc<AtomicUsize>,
    held: Arc<AtomicUsize>,
    gate: Arc<(Mutex<bool>, Condvar)>,
    stop: Arc<AtomicBool>,
) {
    let mut read_side = stream.try_clone().unwrap();
    let mut reader = Reader::new(&mut read_side);
    loop {
        let Ok(head) = reader.read_head() else { return };
        let length = head
            .lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        if reader.read_exact_vec(length).is_err() {
            return;
        }
        hits.fetch_add(1, Ordering::SeqCst);
        let (status, body) = match mode {
            Mode::Ok | Mode::CloseAtOnce => (200, name.to_string()),
            Mode::Status(code) => (code, format!("{name}:{code}")),
            Mode::Hang => {
                // Until the peer or `kill` closes the connection.
                let _ = reader.read_to_end();
                return;
            }
            Mode::Hold => {
                held.fetch_add(1, Ordering::SeqCst);
                let (lock, cvar) = &*gate;
                let mut released = lock.lock().unwrap();
                while !*released && !stop.load(Ordering::SeqCst) {
                    released = cvar.wait(released).unwrap();
                }
                drop(released);
                held.fetch_sub(1, Ordering::SeqCst);
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                (200, name.to_string())
            }
        };
        let response = format!(
            "HTTP/1.1 {status} X\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// An address nothing listens on.
fn dead_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

// ---- Client side ------------------------------------------------------------------------

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes()
}

fn get_as(user: &str) -> Vec<u8> {
    format!("GET /u HTTP/1.1\r\nHost: x\r\nX-User: {user}\r\n\r\n").into_bytes()
}

fn post(path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// One request on a new connection (so that, with several workers, `SO_REUSEPORT` spreads
/// the requests over them).
fn send(addr: SocketAddr, raw: &[u8]) -> Response {
    let mut stream = connect(addr);
    stream.write_all(raw).unwrap();
    read_response(&mut stream).unwrap_or_else(|e| panic!("no response: {e}"))
}

fn send_in_background(addr: SocketAddr, raw: Vec<u8>) -> JoinHandle<Response> {
    thread::spawn(move || send(addr, &raw))
}

/// Upstream `app` with `endpoints`, `upstream_extra` right after its `endpoints` line (keys
/// first, then `[upstreams.app.*]` tables), a catch-all route, and a `/safe/` route with
/// `retry_non_idempotent = true`.
fn config(endpoints: &[SocketAddr], upstream_extra: &str) -> String {
    config_with(endpoints, "", upstream_extra)
}

fn config_with(endpoints: &[SocketAddr], server_extra: &str, upstream_extra: &str) -> String {
    let list = endpoints
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"[server]
listen = ["127.0.0.1:0"]
{server_extra}

[upstreams.app]
endpoints = [{list}]
{upstream_extra}

[[routes]]
path = "/safe/{{*rest}}"
upstream = "app"
retry_non_idempotent = true

[[routes]]
path = "/{{*rest}}"
upstream = "app"
"#
    )
}

/// Statuses and bodies of `n` sequential GETs, each on a new connection.
fn get_n(strait: &Strait, n: usize) -> Vec<(u16, String)> {
    (0..n)
        .map(|_| {
            let r = send(strait.addr, &get("/x"));
            (r.status, r.text())
        })
        .collect()
}

fn count(answers: &[(u16, String)], status: u16) -> usize {
    answers.iter().filter(|(s, _)| *s == status).count()
}

// ---- Failover ---------------------------------------------------------------------------

/// Outlier detection ejects a dead endpoint only after `consecutive_failures` (5) failures;
/// the retry budget's floor (3 retries per 10 s window per worker) runs out before that at
/// a few requests per second, so these tests, which are about *where* a retry goes, give
/// the budget room. `retry_budget_caps_retries_in_a_full_outage` tests the budget itself.
const ROOMY_BUDGET: &str = "[upstreams.app.retry]\nbudget_percent = 100\n";

/// One endpoint with nothing listening, from the start: every GET still gets a 200, from
/// the other two; with `attempts = 1` the requests that meet the dead endpoint fail.
#[test]
fn connect_failures_fail_over_to_another_endpoint() {
    let a = Origin::start("A", Mode::Ok);
    let b = Origin::start("B", Mode::Ok);
    let dead = dead_addr();

    let strait = Strait::start(&config(&[a.addr, dead, b.addr], ROOMY_BUDGET));
    let answers = get_n(&strait, 100);
    assert_eq!(count(&answers, 200), 100, "{answers:?}");
    assert_eq!(a.hits() + b.hits(), 100);
    drop(strait);

    // Without retries the same setup shows errors: the retry is what saved them.
    let strait = Strait::start(&config(
        &[a.addr, dead, b.addr],
        "[upstreams.app.retry]\nattempts = 1\n",
    ));
    let answers = get_n(&strait, 100);
    let failed = count(&answers, 502);
    assert!(failed > 0, "no 502 without retries: {answers:?}");
    assert_eq!(failed + count(&answers, 200), 100, "{answers:?}");
    let body = &answers.iter().find(|(s, _)| *s == 502).unwrap().1;
    assert_eq!(
        body,
        "{\"error\":\"upstream connect failed\",\"status\":502}\n"
    );
}

/// An endpoint killed while serving (its pooled keep-alive connections die with it): the
/// requests that meet it are retried elsewhere; once it is back on the same port it takes
/// traffic again.
fn endpoint_killed_mid_traffic(args: &[&str]) {
    let a = Origin::start("A", Mode::Ok);
    let b = Origin::start("B", Mode::Ok);
    let mut c = Origin::start("C", Mode::Ok);
    let strait = Strait::start_with(
        &config(
            &[a.addr, b.addr, c.addr],
            "[upstreams.app.retry]\nbudget_percent = 100\n\
             [upstreams.app.outlier]\nbase_ejection = \"300ms\"\n",
        ),
        args,
    );
    let warm = get_n(&strait, 30);
    assert_eq!(count(&warm, 200), 30);
    assert!(c.hits() >= 9, "C took {} of 30", c.hits());

    c.kill();
    let answers = get_n(&strait, 100);
    assert_eq!(count(&answers, 200), 100, "{answers:?}");
    assert!(answers.iter().all(|(_, body)| body == "A" || body == "B"));

    let c_addr = c.addr;
    drop(c);
    let c = Origin::start_at("C", c_addr, Mode::Ok);
    wait_until("C serving again after its ejection", || {
        let r = send(strait.addr, &get("/x"));
        assert_eq!(r.status, 200);
        c.hits() > 0
    });
}

#[test]
fn endpoint_killed_mid_traffic_costs_no_errors() {
    endpoint_killed_mid_traffic(&["--workers", "1"]);
}

#[test]
fn endpoint_killed_mid_traffic_costs_no_errors_epoll() {
    endpoint_killed_mid_traffic(&["--workers", "1", "--io-driver", "epoll"]);
}

// ---- What is retried ---------------------------------------------------------------------

/// A request that never reached the upstream (its connection was refused) is safe to send
/// to another endpoint whatever its method: a POST is retried there without
/// `retry_non_idempotent`, as nginx does.
#[test]
fn a_refused_connect_is_retried_for_any_method() {
    let a = Origin::start("A", Mode::Ok);
    let dead = dead_addr();
    // Outlier detection off, so that the dead endpoint stays in rotation.
    let strait = Strait::start(&config(
        &[a.addr, dead],
        "[upstreams.app.outlier]\nconsecutive_failures = 0\n\
         [upstreams.app.retry]\nbudget_percent = 100\n",
    ));
    for i in 0..10 {
        let r = send(strait.addr, &post("/x", "order=1"));
        assert_eq!((r.status, r.text().as_str()), (200, "A"), "POST {i}");
    }
    // Round robin over two endpoints: about half the POSTs met the dead one first.
    assert_eq!(a.hits(), 10);
}

/// An endpoint that accepts and closes before any response byte: GETs are retried on
/// another endpoint; a POST is not (it may have run), unless the route allows it.
#[test]
fn reset_before_any_byte_is_retried_for_idempotent_requests_only() {
    let a = Origin::start("A", Mode::Ok);
    let b = Origin::start("B", Mode::CloseAtOnce);
    // Outlier detection off, so that B stays in rotation.
    let strait = Strait::start(&config(
        &[a.addr, b.addr],
        "[upstreams.app.outlier]\nconsecutive_failures = 0\n\
         [upstreams.app.retry]\nbudget_percent = 100\n",
    ));

    let answers = get_n(&strait, 20);
    assert_eq!(count(&answers, 200), 20, "{answers:?}");
    assert!(b.hits() >= 5, "B was tried {} times", b.hits());

    let before = b.hits();
    let posts: Vec<u16> = (0..10)
        .map(|_| send(strait.addr, &post("/x", "order=1")).status)
        .collect();
    let failed = posts.iter().filter(|&&s| s == 502).count();
    assert!(failed > 0, "{posts:?}");
    assert_eq!(failed + posts.iter().filter(|&&s| s == 200).count(), 10);
    // Every POST that met B failed: none was sent again elsewhere.
    assert_eq!(b.hits() - before, failed, "{posts:?}");

    // The route with `retry_non_idempotent = true`: the POSTs that meet B go to A.
    let before = b.hits();
    for i in 0..10 {
        let r = send(strait.addr, &post("/safe/x", "order=1"));
        assert_eq!((r.status, r.text().as_str()), (200, "A"), "POST {i}");
    }
    assert!(b.hits() > before, "B was not tried");
}

/// A 503 is retried on another endpoint only when `retry.on` lists it; otherwise it is
/// relayed as the upstream sent it.
#[test]
fn retry_on_status_only_when_configured() {
    let a = Origin::start("A", Mode::Ok);
    let b = Origin::start("B", Mode::Ok);
    let c = Origin::start("C", Mode::Status(503));
    let eps = [a.addr, b.addr, c.addr];
    let outlier_off = "[upstreams.app.outlier]\nconsecutive_failures = 0\n";

    let strait = Strait::start(&config(
        &eps,
        &format!(
            "{outlier_off}[upstreams.app.retry]\non = [\"connect_failure\", \"503\"]\n\
             budget_percent = 100\n"
        ),
    ));
    let answers = get_n(&strait, 30);
    assert_eq!(count(&answers, 200), 30, "{answers:?}");
    assert!(c.hits() >= 8, "C was tried {} times", c.hits());
    drop(strait);

    let strait = Strait::start(&config(&eps, outlier_off));
    let answers = get_n(&strait, 30);
    let relayed: Vec<_> = answers.iter().filter(|(s, _)| *s == 503).collect();
    assert!(!relayed.is_empty(), "{answers:?}");
    assert!(
        relayed.iter().all(|(_, body)| body == "C:503"),
        "{answers:?}"
    );
    assert_eq!(relayed.len() + count(&answers, 200), 30);
}

/// Every endpoint answers 503 and 503 is retried up to 3 tries: the budget (20 %) keeps the
/// load on the upstream near the request count instead of tripling it.
#[test]
fn retry_budget_caps_retries_in_a_full_outage() {
    const N: usize = 100;
    let run = |budget: u32| {
        let origins = [
            Origin::start("A", Mode::Status(503)),
            Origin::start("B", Mode::Status(503)),
            Origin::start("C", Mode::Status(503)),
        ];
        let eps: Vec<SocketAddr> = origins.iter().map(|o| o.addr).collect();
        let strait = Strait::start(&config(
            &eps,
            &format!(
                "[upstreams.app.outlier]\nconsecutive_failures = 0\n\
                 [upstreams.app.retry]\non = [\"503\"]\nattempts = 3\nbudget_percent = {budget}\n"
            ),
        ));
        let answers = get_n(&strait, N);
        assert_eq!(count(&answers, 503), N);
        origins.iter().map(Origin::hits).sum::<usize>()
    };
    let capped = run(20);
    // The floor: 3 retries per window are allowed whatever the percentage.
    assert!(
        capped <= N + N * 20 / 100 + 3,
        "{capped} upstream requests for {N} client requests"
    );
    assert!(capped > N, "no retry at all: {capped}");
    // A budget of 100 % allows one retry per request on average: about twice the load
    // (the third try of each request is what the budget refuses).
    let loose = run(100);
    assert!(
        (2 * N - 5..=2 * N + 3).contains(&loose),
        "{loose} upstream requests for {N} client requests with budget 100"
    );
}

/// An endpoint that never answers costs one `per_try_timeout`, then the request moves on.
#[test]
fn per_try_timeout_moves_on_to_another_endpoint() {
    let a = Origin::start("A", Mode::Hang);
    let b = Origin::start("B", Mode::Ok);
    let strait = Strait::start(&config(
        &[a.addr, b.addr],
        "[upstreams.app.retry]\nper_try_timeout = \"200ms\"\n\
         on = [\"connect_failure\", \"reset\", \"504\"]\n",
    ));
    for i in 0..4 {
        let started = Instant::now();
        let r = send(strait.addr, &get("/x"));
        let took = started.elapsed();
        assert_eq!((r.status, r.text().as_str()), (200, "B"), "request {i}");
        assert!(took < Duration::from_secs(1), "request {i} took {took:?}");
    }
    assert!(a.hits() >= 1, "A was never tried");
}

// ---- Circuit breaker --------------------------------------------------------------------

const OVERLOADED: &str = "{\"error\":\"upstream overloaded\",\"status\":503}\n";

/// Two requests held at the upstream fill the limit; the third gets 503 at once; after the
/// release everything flows again.
fn breaker_trips_at(limit: &str) {
    let slow = Origin::start("S", Mode::Hold);
    let strait = Strait::start(&config(
        &[slow.addr],
        &format!("[upstreams.app.limits]\n{limit} = 2\n"),
    ));
    let first = send_in_background(strait.addr, get("/1"));
    let second = send_in_background(strait.addr, get("/2"));
    wait_until("two requests held upstream", || slow.held() == 2);

    let started = Instant::now();
    let third = send(strait.addr, &get("/3"));
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{limit}: took {:?}",
        started.elapsed()
    );
    assert_eq!(
        (third.status, third.text().as_str()),
        (503, OVERLOADED),
        "{limit}"
    );
    assert_eq!(slow.hits(), 2, "{limit}: the third reached the upstream");

    slow.release();
    for held in [first, second] {
        let r = held.join().unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "S"), "{limit}");
    }
    for i in 0..5 {
        assert_eq!(
            send(strait.addr, &get("/x")).status,
            200,
            "{limit}: after release {i}"
        );
    }
}

#[test]
fn breaker_max_requests_answers_503_at_once() {
    breaker_trips_at("max_requests");
}

#[test]
fn breaker_max_connections_answers_503_at_once() {
    breaker_trips_at("max_connections");
}

// ---- Where the policies send traffic ----------------------------------------------------

/// Which endpoint (by body) answers each of `users`.
fn placement(strait: &Strait, users: &[String]) -> HashMap<String, String> {
    users
        .iter()
        .map(|u| {
            let r = send(strait.addr, &get_as(u));
            assert_eq!(r.status, 200, "{u}");
            (u.clone(), r.text())
        })
        .collect()
}

/// `balance = "hash"` on a header: a user keeps its endpoint across connections (hence
/// across the two workers), a reload and a restart; 300 users spread evenly.
#[test]
fn hash_keeps_each_user_on_one_endpoint() {
    let origins = [
        Origin::start("A", Mode::Ok),
        Origin::start("B", Mode::Ok),
        Origin::start("C", Mode::Ok),
    ];
    let eps: Vec<SocketAddr> = origins.iter().map(|o| o.addr).collect();
    let hashed = "balance = \"hash\"\nhash_key = \"header:x-user\"\n";
    let args = ["--workers", "2"];
    let strait = Strait::start_with(&config(&eps, hashed), &args);
    let users: Vec<String> = (0..300).map(|i| format!("user-{i}")).collect();

    let first = placement(&strait, &users);
    let mut per_endpoint: HashMap<&str, usize> = HashMap::new();
    for endpoint in first.values() {
        *per_endpoint.entry(endpoint).or_default() += 1;
    }
    assert_eq!(per_endpoint.len(), 3, "{per_endpoint:?}");
    for (endpoint, n) in &per_endpoint {
        assert!((70..=130).contains(n), "{endpoint}: {n} of 300 users");
    }
    // Each request on its own connection, which SO_REUSEPORT hands to either worker.
    assert_eq!(placement(&strait, &users), first, "second pass");

    // A reload with an unrelated change (a new timeout) keeps every user in place.
    std::fs::write(
        strait.dir.join("strait.toml"),
        config_with(&eps, "[server.timeouts]\nheader_read = \"9s\"\n", hashed),
    )
    .unwrap();
    strait.signal(libc::SIGHUP);
    wait_until("config reloaded", || {
        strait.log.lock().unwrap().contains("config reloaded")
    });
    assert_eq!(placement(&strait, &users), first, "after reload");
    drop(strait);

    // A new process computes the same table.
    let strait = Strait::start_with(&config(&eps, hashed), &args);
    assert_eq!(placement(&strait, &users), first, "after restart");
}

/// With one endpoint holding requests, `least_conn` and `p2c` send new requests to the
/// idle ones.
fn busy_endpoint_is_avoided(balance: &str) {
    let slow = Origin::start("S", Mode::Hold);
    let b = Origin::start("B", Mode::Ok);
    let c = Origin::start("C", Mode::Ok);
    let strait = Strait::start(&config(
        &[slow.addr, b.addr, c.addr],
        &format!("balance = \"{balance}\"\n"),
    ));

    // Park a request on S: send one at a time until S holds one. (A second one would never
    // come: S is then the busiest endpoint, which is the point.)
    let mut parked = Vec::new();
    while slow.held() < 1 {
        let before = slow.held();
        let request = send_in_background(strait.addr, get("/park"));
        wait_until("the request answered or held", || {
            request.is_finished() || slow.held() > before
        });
        if request.is_finished() {
            assert_eq!(request.join().unwrap().status, 200);
        } else {
            parked.push(request);
        }
        assert!(b.hits() + c.hits() < 50, "{balance}: S never picked");
    }

    let before = slow.hits();
    for i in 0..30 {
        let r = send(strait.addr, &get("/x"));
        assert_eq!(r.status, 200, "{balance}: request {i}");
        assert!(
            r.text() == "B" || r.text() == "C",
            "{balance}: request {i} went to S"
        );
    }
    assert_eq!(slow.hits(), before, "{balance}");

    slow.release();
    for request in parked {
        let r = request.join().unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "S"), "{balance}");
    }
}

#[test]
fn least_conn_avoids_a_busy_endpoint() {
    busy_endpoint_is_avoided("least_conn");
}

#[test]
fn p2c_avoids_a_busy_endpoint() {
    busy_endpoint_is_avoided("p2c");
}

// ---- What the admin API shows -----------------------------------------------------------

/// `GET /upstreams/{name}`: the policy, each endpoint's host name, and the active-check
/// verdict, which follows the checker (a dead endpoint turns `healthy: false`).
#[test]
fn admin_shows_balance_hostname_and_active_health() {
    let a = Origin::start("A", Mode::Ok);
    let dead = dead_addr();
    let strait = Strait::start(&format!(
        r#"[server]
listen = ["127.0.0.1:0"]

[upstreams.app]
endpoints = ["{}", "{dead}"]
balance = "hash"
hash_key = "header:X-User"

[upstreams.app.health]
path = "/"
interval = "100ms"
timeout = "50ms"
unhealthy_threshold = 1

[upstreams.named]
endpoints = ["localhost:{}"]

[[routes]]
path = "/{{*rest}}"
upstream = "app"
"#,
        a.addr,
        a.addr.port()
    ));
    let admin = strait.admin_addr();
    let view = |name: &str| -> serde_json::Value {
        let r = send(admin, &get(&format!("/upstreams/{name}")));
        assert_eq!(r.status, 200, "{}", r.text());
        serde_json::from_slice(&r.body).unwrap()
    };
    wait_until("the dead endpoint marked unhealthy", || {
        view("app")["endpoints"][1]["healthy"] == false
    });
    let app = view("app");
    assert_eq!(app["balance"], "hash");
    assert_eq!(app["hash_key"], "header:x-user");
    assert_eq!(app["active_health_checks"], true);
    assert_eq!(app["endpoints"][0]["addr"], a.addr.to_string());
    assert_eq!(app["endpoints"][0]["healthy"], true);
    assert_eq!(app["endpoints"][1]["addr"], dead.to_string());
    assert!(app["endpoints"][0].get("hostname").is_none());

    let named = view("named");
    assert_eq!(named["balance"], "round_robin");
    assert!(named.get("hash_key").is_none());
    assert_eq!(named["active_health_checks"], false);
    let endpoints = named["endpoints"].as_array().unwrap();
    assert!(!endpoints.is_empty());
    for e in endpoints {
        assert_eq!(e["hostname"], format!("localhost:{}", a.addr.port()), "{e}");
        assert_eq!(e["healthy"], true, "{e}");
    }
    // The list view carries the same fields.
    let all = send(admin, &get("/upstreams"));
    let all: serde_json::Value = serde_json::from_slice(&all.body).unwrap();
    assert_eq!(all["upstreams"][0]["balance"], "hash");
    assert_eq!(all["upstreams"][0]["endpoints"][1]["healthy"], false);
}
