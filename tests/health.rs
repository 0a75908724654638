//! Endpoint health through the real binary: active checks (the checker thread marks an
//! endpoint down and up again, and traffic follows), the quick 503 when nothing is usable,
//! panic mode when too much is down, and passive outlier ejection with its return.

mod common;
use common::*;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes()
}

fn status(code: u16, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {code} X\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// An origin whose `/health` answers 500 while `sick` is set (200 otherwise) and whose
/// other paths answer `answer`.
fn checked_upstream(
    sick: Arc<AtomicBool>,
    answer: impl Fn() -> Vec<u8> + Send + Sync + 'static,
) -> Upstream {
    Upstream::start(move |r| {
        if r.request_line().starts_with("GET /health ") {
            if sick.load(Ordering::SeqCst) {
                status(500, "sick")
            } else {
                status(200, "fine")
            }
        } else {
            answer()
        }
    })
}

/// Requests the upstream received that were not health checks.
fn traffic(upstream: &Upstream) -> usize {
    upstream
        .requests()
        .iter()
        .filter(|r| !r.request_line().starts_with("GET /health "))
        .count()
}

/// Two endpoints behind upstream `app` and a catch-all route, plus `upstream_extra` in the
/// upstream's sections (`[upstreams.app.health]` and the like).
fn two_endpoint_config(
    a: SocketAddr,
    b: SocketAddr,
    server_extra: &str,
    upstream_extra: &str,
) -> String {
    format!(
        r#"[server]
listen = ["127.0.0.1:0"]
{server_extra}

[upstreams.app]
endpoints = ["{a}", "{b}"]

{upstream_extra}

[[routes]]
path = "/{{*rest}}"
upstream = "app"
"#
    )
}

const ACTIVE_CHECKS: &str = r#"[upstreams.app.health]
path = "/health"
interval = "100ms"
timeout = "50ms"
unhealthy_threshold = 2
healthy_threshold = 1
"#;

/// Waits until the log says the checker marked `addr` unhealthy.
fn wait_marked_unhealthy(strait: &Strait, addr: SocketAddr) {
    let addr = addr.to_string();
    wait_until(&format!("{addr} marked unhealthy"), || {
        strait
            .log
            .lock()
            .unwrap()
            .lines()
            .any(|l| l.contains("now unhealthy") && l.contains(&addr))
    });
}

// ---- Active checks --------------------------------------------------------------------

fn active_checks_steer_traffic(args: &[&str]) {
    let a = checked_upstream(Arc::new(AtomicBool::new(false)), || status(200, "A"));
    let b_sick = Arc::new(AtomicBool::new(false));
    let b = checked_upstream(b_sick.clone(), || status(200, "B"));
    let strait = Strait::start_with(
        &two_endpoint_config(a.addr, b.addr, "", ACTIVE_CHECKS),
        args,
    );

    // Both take traffic while healthy.
    let mut seen = (false, false);
    wait_until("both endpoints serving", || {
        match strait.request(&get("/x")).text().as_str() {
            "A" => seen.0 = true,
            "B" => seen.1 = true,
            other => panic!("unexpected answer {other:?}"),
        }
        seen == (true, true)
    });

    // The checks reach B with the configured request.
    wait_until("a health check on B", || b.requests().len() > traffic(&b));
    let check = b
        .requests()
        .into_iter()
        .find(|r| r.request_line().starts_with("GET /health "))
        .unwrap();
    assert_eq!(check.request_line(), "GET /health HTTP/1.1");
    assert_eq!(check.header("host"), Some(b.addr.to_string()));
    assert_eq!(check.header("connection").as_deref(), Some("close"));
    assert_eq!(
        check.header("user-agent").as_deref(),
        Some("strait-health-check")
    );

    // B fails its checks: soon every request goes to A.
    b_sick.store(true, Ordering::SeqCst);
    let mut in_a_row = 0;
    wait_until("20 requests in a row on A", || {
        let r = strait.request(&get("/x"));
        assert_eq!(r.status, 200);
        in_a_row = if r.text() == "A" { in_a_row + 1 } else { 0 };
        in_a_row >= 20
    });
    wait_marked_unhealthy(&strait, b.addr);

    // B passes again: it takes traffic again.
    b_sick.store(false, Ordering::SeqCst);
    let before = traffic(&b);
    wait_until("B serving again", || {
        strait.request(&get("/x"));
        traffic(&b) > before
    });
    let b_addr = b.addr.to_string();
    assert!(strait
        .log
        .lock()
        .unwrap()
        .lines()
        .any(|l| l.contains("now healthy") && l.contains(&b_addr)));
}

#[test]
fn active_checks_steer_traffic_away_and_back() {
    active_checks_steer_traffic(&["--workers", "1"]);
}

#[test]
fn active_checks_steer_traffic_away_and_back_epoll() {
    active_checks_steer_traffic(&["--workers", "1", "--io-driver", "epoll"]);
}

/// Active checks run once per process, not once per worker.
#[test]
fn one_checker_for_all_workers() {
    let a = checked_upstream(Arc::new(AtomicBool::new(false)), || status(200, "A"));
    let b = checked_upstream(Arc::new(AtomicBool::new(false)), || status(200, "B"));
    let strait = Strait::start_with(
        &two_endpoint_config(a.addr, b.addr, "", ACTIVE_CHECKS),
        // Two: more workers than CPUs is refused at start, and test machines have two.
        &["--workers", "2"],
    );
    let started = Instant::now();
    wait_until("a few check rounds", || a.requests().len() >= 5);
    thread::sleep(Duration::from_millis(500));
    let checks = a.requests().len();
    let rounds = started.elapsed().as_millis() as usize / 100;
    // One probe per 100 ms interval (plus a little slack), not one per worker.
    assert!(
        checks <= rounds + 3,
        "{checks} checks in {rounds} intervals"
    );
    drop(strait);
}

// ---- Nothing usable ---------------------------------------------------------------------

/// Both endpoints fail their checks and would hang real requests; the answer is an
/// immediate 503, not an upstream timeout.
#[test]
fn all_endpoints_down_answers_503_at_once() {
    let hang = || {
        thread::sleep(Duration::from_secs(5));
        status(200, "late")
    };
    let a = checked_upstream(Arc::new(AtomicBool::new(true)), hang);
    let b = checked_upstream(Arc::new(AtomicBool::new(true)), hang);
    let strait = Strait::start(&two_endpoint_config(
        a.addr,
        b.addr,
        "[server.timeouts]\nupstream_connect = \"3s\"\nupstream_response = \"3s\"\n",
        &format!("{ACTIVE_CHECKS}\n[upstreams.app.outlier]\nmax_ejected_percent = 100\n"),
    ));
    wait_marked_unhealthy(&strait, a.addr);
    wait_marked_unhealthy(&strait, b.addr);

    let started = Instant::now();
    let r = strait.request(&get("/x"));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(r.status, 503);
    assert_eq!(
        r.text(),
        "{\"error\":\"no upstream endpoint available\",\"status\":503}\n"
    );
    assert_eq!(traffic(&a) + traffic(&b), 0);
}

/// With the default panic threshold, endpoints that are all down still get traffic.
#[test]
fn panic_mode_uses_every_endpoint_when_too_many_are_down() {
    let a = checked_upstream(Arc::new(AtomicBool::new(true)), || status(200, "A"));
    let b = checked_upstream(Arc::new(AtomicBool::new(true)), || status(200, "B"));
    let strait = Strait::start(&two_endpoint_config(
        a.addr,
        b.addr,
        "",
        &format!("{ACTIVE_CHECKS}\n[upstreams.app.outlier]\nmax_ejected_percent = 50\n"),
    ));
    wait_marked_unhealthy(&strait, a.addr);
    wait_marked_unhealthy(&strait, b.addr);
    let mut seen = (false, false);
    for _ in 0..10 {
        let r = strait.request(&get("/x"));
        assert_eq!(r.status, 200);
        match r.text().as_str() {
            "A" => seen.0 = true,
            "B" => seen.1 = true,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(seen, (true, true));
}

// ---- Passive (outlier) ejection ---------------------------------------------------------

fn outlier_ejection(args: &[&str]) {
    let a = Upstream::start(|_| status(200, "A"));
    let b = Upstream::start(|_| status(503, "B"));
    let strait = Strait::start_with(
        &two_endpoint_config(
            a.addr,
            b.addr,
            "",
            "[upstreams.app.outlier]\nconsecutive_failures = 3\nbase_ejection = \"1s\"\n\
             max_ejected_percent = 50\n\n[upstreams.app.retry]\nattempts = 1\n",
        ),
        args,
    );

    // Round-robin sends every other request to B until its third 503 ejects it.
    eject_b(&strait, "B");
    let ejected_at = Instant::now();
    assert_eq!(b.requests().len(), 3);

    // Ejected: everything goes to A.
    for i in 0..20 {
        let r = strait.request(&get("/x"));
        assert_eq!((r.status, r.text().as_str()), (200, "A"), "request {i}");
    }
    assert_eq!(b.requests().len(), 3);

    // After the ejection period, B is tried again.
    wait_until("B tried again", || {
        strait.request(&get("/x"));
        b.requests().len() > 3
    });
    let back_after = ejected_at.elapsed();
    assert!(
        back_after >= Duration::from_millis(900),
        "B came back after {back_after:?}, before its 1s ejection ended"
    );
}

#[test]
fn consecutive_5xx_eject_an_endpoint_until_the_period_ends() {
    outlier_ejection(&["--workers", "1"]);
}

#[test]
fn consecutive_5xx_eject_an_endpoint_until_the_period_ends_epoll() {
    outlier_ejection(&["--workers", "1", "--io-driver", "epoll"]);
}

// ---- Active checks end passive ejections ------------------------------------------------

/// B fails real requests and its checks, is ejected for 30 s by outlier detection, then
/// recovers: its next passing check ends the ejection at once (Envoy's
/// `successful_active_health_check_uneject_host`), far before the 30 s are over.
#[test]
fn a_passing_active_check_ends_an_ejection_early() {
    let a = checked_upstream(Arc::new(AtomicBool::new(false)), || status(200, "A"));
    let sick = Arc::new(AtomicBool::new(false));
    let answer_sick = sick.clone();
    let b = checked_upstream(sick.clone(), move || {
        if answer_sick.load(Ordering::SeqCst) {
            status(503, "B down")
        } else {
            status(200, "B")
        }
    });
    // The checks take 100 failures (10 s) to mark B unhealthy: it is outlier detection that
    // keeps it out here.
    let strait = Strait::start(&two_endpoint_config(
        a.addr,
        b.addr,
        "",
        "[upstreams.app.health]\npath = \"/health\"\ninterval = \"100ms\"\ntimeout = \"50ms\"\n\
         unhealthy_threshold = 100\nhealthy_threshold = 1\n\n\
         [upstreams.app.outlier]\nconsecutive_failures = 3\nbase_ejection = \"30s\"\n\
         max_ejected_percent = 50\n\n[upstreams.app.retry]\nattempts = 1\n",
    ));
    wait_until("B serving", || strait.request(&get("/x")).text() == "B");

    // B fails: its third 503 in a row ejects it.
    sick.store(true, Ordering::SeqCst);
    eject_b(&strait, "B down");
    // Ejected, and its failing checks change nothing.
    let before = traffic(&b);
    let checks = b.requests().len() - before;
    wait_until("two more failed checks on B", || {
        b.requests().len() - traffic(&b) >= checks + 2
    });
    for i in 0..20 {
        let r = strait.request(&get("/x"));
        assert_eq!((r.status, r.text().as_str()), (200, "A"), "request {i}");
    }
    assert_eq!(traffic(&b), before);
    assert!(!strait.log_text().contains("ejection ended"));

    // B recovers: the next passing check brings it back, within the test's deadline
    // (10 s), not after its 30 s ejection.
    sick.store(false, Ordering::SeqCst);
    wait_until("B serving again", || {
        strait.request(&get("/x"));
        traffic(&b) > before
    });
    assert_eq!(b.last().request_line(), "GET /x HTTP/1.1");
    let b_addr = b.addr.to_string();
    assert!(strait
        .log_text()
        .lines()
        .any(|l| l.contains("ejection ended: active health check passed") && l.contains(&b_addr)));
}

/// Sends requests until B (answering 503 with `b_text`) has failed three times, which
/// ejects it; A answers 200 "A" meanwhile. Round robin picks B every other request.
fn eject_b(strait: &Strait, b_text: &str) {
    let mut b_failures = 0;
    let mut sent = 0;
    while b_failures < 3 {
        let r = strait.request(&get("/x"));
        sent += 1;
        assert!(
            sent <= 20,
            "B was not picked three times in {sent} requests"
        );
        match (r.status, r.text().as_str()) {
            (200, "A") => {}
            (503, text) if text == b_text => b_failures += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
}
