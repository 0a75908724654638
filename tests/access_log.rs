//! The access log through the real binary: one JSON line per request in a file, request
//! IDs kept or generated and carried upstream and back, and SIGUSR1 reopening the file
//! after a rename (logrotate).

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use common::{
    hello_api_config, is_generated_request_id, ok, scratch_dir, wait_until, ScratchDir, Strait,
    Upstream,
};
use serde_json::Value;

/// A config with a mock route, a proxied route and no catch-all (so `/nowhere` is a 404),
/// logging JSON to `log`.
fn config(upstream: std::net::SocketAddr, log: &Path) -> String {
    let extra = format!(
        "\n[observability.access_log]\ndestination = \"{}\"\n",
        log.display()
    );
    hello_api_config(upstream, &extra)
}

fn read_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
        })
        .collect()
}

/// Waits until `path` holds `n` lines (and no more), then parses every one.
fn wait_for_lines(path: &Path, n: usize) -> Vec<Value> {
    wait_until(&format!("{n} lines in {}", path.display()), || {
        std::fs::read_to_string(path).is_ok_and(|t| t.lines().count() >= n)
    });
    let lines = read_lines(path);
    assert_eq!(lines.len(), n, "{lines:#?}");
    lines
}

struct Setup {
    strait: Strait,
    upstream: Upstream,
    log: PathBuf,
    dir: ScratchDir,
}

fn setup() -> Setup {
    let upstream = Upstream::start(|_| ok("from-upstream"));
    let dir = scratch_dir();
    let log = dir.join("access.log");
    let strait = Strait::start(&config(upstream.addr, &log));
    Setup {
        strait,
        upstream,
        log,
        dir,
    }
}

#[test]
fn every_request_is_one_json_line_with_its_request_id() {
    let s = setup();
    let get = |path: &str, extra: &str| {
        s.strait.request(
            format!("GET {path} HTTP/1.1\r\nHost: t\r\nUser-Agent: it/1\r\n{extra}\r\n").as_bytes(),
        )
    };
    let mut expected = Vec::new(); // (path, status, response x-request-id)
    for i in 0..3 {
        let r = get("/hello", "");
        assert_eq!((r.status, r.text().as_str()), (200, "hi"));
        expected.push((
            "/hello".to_owned(),
            200,
            r.header("x-request-id").map(str::to_owned),
        ));
        let path = format!("/api/items/{i}?q={i}");
        let r = get(&path, "");
        assert_eq!((r.status, r.text().as_str()), (200, "from-upstream"));
        expected.push((path, 200, r.header("x-request-id").map(str::to_owned)));
    }
    let r = get("/nowhere", "");
    assert_eq!(r.status, 404);
    expected.push((
        "/nowhere".into(),
        404,
        r.header("x-request-id").map(str::to_owned),
    ));
    let r = get("/api/with-id", "X-Request-Id: abc-123\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-request-id"), Some("abc-123"));
    assert_eq!(
        s.upstream.last().header("x-request-id").as_deref(),
        Some("abc-123")
    );
    expected.push(("/api/with-id".into(), 200, Some("abc-123".into())));
    // An unacceptable client ID is replaced, not passed on.
    let r = get("/api/bad-id", "X-Request-Id: has\"quote\r\n");
    assert_eq!(r.status, 200);
    let replaced = r.header("x-request-id").unwrap_or_default().to_owned();
    assert!(is_generated_request_id(&replaced), "{replaced:?}");
    assert_eq!(
        s.upstream.last().header("x-request-id"),
        Some(replaced.clone())
    );
    expected.push(("/api/bad-id".into(), 200, Some(replaced)));

    let lines = wait_for_lines(&s.log, expected.len());
    // Requests ran one after another on one worker, so lines are in request order.
    let mut ids = HashSet::new();
    let upstream_ids: Vec<String> = s
        .upstream
        .requests()
        .iter()
        .map(|r| r.header("x-request-id").expect("upstream got a request id"))
        .collect();
    for (line, (path, status, response_id)) in lines.iter().zip(&expected) {
        assert_eq!(line["method"], "GET", "{line}");
        assert_eq!(line["path"], path.as_str(), "{line}");
        assert_eq!(line["status"], *status, "{line}");
        assert_eq!(line["protocol"], "HTTP/1.1");
        assert_eq!(line["client"], "127.0.0.1");
        assert_eq!(line["host"], "t");
        assert_eq!(line["user_agent"], "it/1");
        assert!(line["referer"].is_null());
        assert_eq!(line["outcome"], "answered");
        assert!(line["bytes_in"].as_u64().unwrap() > 0, "{line}");
        assert!(line["bytes_out"].as_u64().unwrap() > 0, "{line}");
        assert!(line["duration_ms"].as_f64().unwrap() >= 0.0, "{line}");
        let time = line["time"].as_str().unwrap();
        assert!(time.len() == 24 && time.ends_with('Z'), "{time}");
        let id = line["request_id"].as_str().unwrap();
        assert!(ids.insert(id.to_owned()), "duplicate id {id}");
        if id != "abc-123" {
            assert!(is_generated_request_id(id), "{id}");
        }
        assert_eq!(response_id.as_deref(), Some(id), "{line}");
        if path.starts_with("/api/") {
            assert_eq!(line["route"], "api");
            assert_eq!(line["upstream"], "app");
            assert_eq!(line["endpoint"], s.upstream.addr.to_string());
            assert!(line["upstream_ms"].as_f64().is_some(), "{line}");
            assert!(
                upstream_ids.iter().any(|u| u == id),
                "{id} not seen upstream"
            );
        } else {
            assert!(line["upstream"].is_null() && line["upstream_ms"].is_null());
            assert!(line["endpoint"].is_null());
            if path == "/hello" {
                assert_eq!(line["route"], "hello");
            } else {
                assert!(line["route"].is_null());
            }
        }
    }
}

#[test]
fn sigusr1_reopens_the_file_after_a_rename() {
    let s = setup();
    let get = |path: &str| {
        s.strait
            .request(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
    };
    assert_eq!(get("/hello").status, 200);
    wait_for_lines(&s.log, 1);

    let rotated = s.dir.join("access.log.1");
    std::fs::rename(&s.log, &rotated).unwrap();
    s.strait.signal(libc::SIGUSR1);
    // The reopen happens before the next write; a request sent before the signal is
    // handled could still land in the old file, so send until the new file appears.
    let mut sent = 0;
    wait_until("a new access.log", || {
        if !s.log.exists() {
            assert_eq!(get("/api/after").status, 200);
            sent += 1;
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        s.log.exists() && !read_lines(&s.log).is_empty()
    });
    // Nothing lost, nothing doubled: every request is in one file or the other.
    wait_until("every line written", || {
        let total = read_lines(&rotated).len() + read_lines(&s.log).len();
        let expected = 1 + sent; // the line before the rename, then the ones after
        total >= expected
    });
    let new = read_lines(&s.log);
    let old = read_lines(&rotated);
    assert_eq!(old.len() + new.len(), 1 + sent, "{old:#?}\n{new:#?}");
    assert!(!new.is_empty());
    assert!(new.iter().all(|l| l["path"] == "/api/after"), "{new:#?}");
    assert_eq!(old[0]["path"], "/hello");
}
