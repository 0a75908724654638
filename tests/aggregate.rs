//! Fan-out aggregation through the binary, against several real upstreams: parts combined
//! as an object, a merge or an array; sequential steps; field filters; slow, failing,
//! non-JSON and oversized parts (required and optional); a reload while an aggregation is in
//! flight; the access log's parts; config errors with their position.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use common::{check, free_port, wait_until, Received, Strait, Upstream};
use serde_json::{json, Value};

/// A 200 JSON answer.
fn json_ok(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn config(upstreams: &[(&str, SocketAddr)], routes: &str) -> String {
    let mut text = String::from("[server]\nlisten = [\"127.0.0.1:0\"]\n");
    for (name, addr) in upstreams {
        text.push_str(&format!("\n[upstreams.{name}]\nendpoints = [\"{addr}\"]\n"));
    }
    text.push('\n');
    text.push_str(routes);
    text
}

fn body_json(response: &common::Response) -> Value {
    serde_json::from_slice(&response.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", response.head, response.text()))
}

fn get(strait: &Strait, target: &str) -> common::Response {
    strait.request(
        format!("GET {target} HTTP/1.1\r\nHost: example.com\r\nauthorization: Bearer t\r\n\r\n")
            .as_bytes(),
    )
}

/// An upstream's answer held until the test opens the gate (or the gate is dropped): a
/// part that is slow for as long as the test needs, with no timing guess.
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<bool>, Condvar)>, Arc<AtomicUsize>);

impl Gate {
    /// Requests held so far (or let through).
    fn arrived(&self) -> usize {
        self.1.load(Ordering::SeqCst)
    }

    fn wait(&self) {
        self.1.fetch_add(1, Ordering::SeqCst);
        let (open, changed) = &*self.0;
        let mut open = open.lock().unwrap();
        while !*open {
            let (next, timeout) = changed.wait_timeout(open, Duration::from_secs(20)).unwrap();
            open = next;
            if timeout.timed_out() {
                return;
            }
        }
    }

    fn open(&self) {
        *self.0 .0.lock().unwrap() = true;
        self.0 .1.notify_all();
    }
}

/// Opens the gate when the test ends, however it ends, so no upstream thread lingers.
struct OpenOnDrop(Gate);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

fn gated(answer: &'static str) -> (Upstream, Gate, OpenOnDrop) {
    let gate = Gate::default();
    let held = gate.clone();
    let upstream = Upstream::start(move |_: &Received| {
        held.wait();
        json_ok(answer)
    });
    let guard = OpenOnDrop(gate.clone());
    (upstream, gate, guard)
}

fn users() -> Upstream {
    Upstream::start(|r: &Received| {
        if r.request_line().starts_with("GET /users/7") {
            json_ok(r#"{"id":7,"name":"Ada","secret":"s"}"#)
        } else {
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".to_vec()
        }
    })
}

fn orders() -> Upstream {
    Upstream::start(|r: &Received| {
        if r.request_line().starts_with("GET /orders?user=7 ") {
            json_ok(r#"[{"order":1},{"order":2}]"#)
        } else {
            json_ok("[]")
        }
    })
}

const DASHBOARD: &str = r#"
[[routes]]
name = "dashboard"
path = "/dashboard/{user}"
[routes.aggregate]
deadline = "5s"
[[routes.aggregate.parts]]
name = "user"
upstream = "users"
path = "/users/{user}?fields=all"
pass_headers = ["authorization"]
pass_query = true
allow = ["id", "name"]
[[routes.aggregate.parts]]
name = "orders"
upstream = "orders"
path = "/orders?user={steps.user.id}"
[[routes.aggregate.parts]]
name = "prefs"
upstream = "prefs"
path = "/prefs/{user}"
deny = ["internal"]
"#;

#[test]
fn three_parts_combine_with_a_step_and_field_filters() {
    let (users, orders) = (users(), orders());
    let prefs = Upstream::start(|_| json_ok(r#"{"theme":"dark","internal":1}"#));
    let dir = common::scratch_dir();
    let log = dir.join("access.log");
    let routes = format!(
        "{DASHBOARD}\n[observability.access_log]\ndestination = \"{}\"\n",
        log.display()
    );
    let strait = Strait::start(&config(
        &[
            ("users", users.addr),
            ("orders", orders.addr),
            ("prefs", prefs.addr),
        ],
        &routes,
    ));
    let response = get(&strait, "/dashboard/7?lang=en");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(response.header("x-strait-partial"), None);
    assert_eq!(
        body_json(&response),
        json!({
            "user": {"id": 7, "name": "Ada"},
            "orders": [{"order": 1}, {"order": 2}],
            "prefs": {"theme": "dark"},
        })
    );
    let user_call = users.last();
    assert_eq!(
        user_call.request_line(),
        "GET /users/7?fields=all&lang=en HTTP/1.1"
    );
    assert_eq!(
        user_call.header("authorization").as_deref(),
        Some("Bearer t")
    );
    // Only the headers a part names are passed.
    assert_eq!(prefs.last().header("authorization"), None);
    assert_eq!(orders.last().request_line(), "GET /orders?user=7 HTTP/1.1");

    wait_until("the access log line", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.lines().count() >= 1)
    });
    let line: Value = serde_json::from_str(
        std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let parts = line["parts"].as_array().expect("parts listed");
    let names: Vec<&str> = parts.iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(names, ["user", "orders", "prefs"], "{line}");
    assert!(
        parts
            .iter()
            .all(|p| p["status"] == 200 && p["result"] == "ok"),
        "{line}"
    );
    assert!(parts.iter().all(|p| p["duration_ms"].is_number()), "{line}");
}

#[test]
fn a_slow_optional_part_is_null_and_the_answer_says_partial() {
    let users = users();
    let (slow, _gate, _open) = gated(r#"{"late":true}"#);
    let strait = Strait::start(&config(
        &[("users", users.addr), ("slow", slow.addr)],
        r#"
[[routes]]
path = "/d/{user}"
[routes.aggregate]
partial_header = "x-partial"
[[routes.aggregate.parts]]
name = "user"
upstream = "users"
path = "/users/{user}"
[[routes.aggregate.parts]]
name = "recs"
upstream = "slow"
path = "/recs"
timeout = "200ms"
required = false
"#,
    ));
    let response = get(&strait, "/d/7");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("x-partial"), Some("recs"));
    let body = body_json(&response);
    assert_eq!(body["recs"], Value::Null);
    assert_eq!(body["user"]["id"], 7);
    let series = |part: &str, result: &str| {
        format!("strait_aggregate_parts_total{{route=\"routes[0]\",part=\"{part}\",result=\"{result}\"}}")
    };
    wait_until("the parts to be counted", || {
        let metrics = strait.metrics();
        common::metric_value(&metrics, &series("user", "ok")) == Some(1.0)
            && common::metric_value(&metrics, &series("recs", "timeout")) == Some(1.0)
    });
}

/// One required part against `bad`, another fine: the status and body of the answer.
fn one_bad_required_part(bad: SocketAddr, part_extra: &str) -> common::Response {
    let users = users();
    let strait = Strait::start(&config(
        &[("users", users.addr), ("bad", bad)],
        &format!(
            r#"
[[routes]]
path = "/d/{{user}}"
[[routes.aggregate.parts]]
name = "user"
upstream = "users"
path = "/users/{{user}}"
[[routes.aggregate.parts]]
name = "billing"
upstream = "bad"
path = "/billing/{{user}}"
{part_extra}
"#
        ),
    ));
    get(&strait, "/d/7")
}

fn assert_part_failed(response: &common::Response, status: u16, reason: &str) {
    assert_eq!(response.status, status, "{}", response.text());
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(
        body_json(response),
        json!({"error": "aggregate part failed", "part": "billing", "reason": reason, "status": status})
    );
}

#[test]
fn a_failing_required_part_is_a_502_naming_it() {
    let failing = Upstream::start(|_| {
        b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 2\r\n\r\n{}".to_vec()
    });
    assert_part_failed(&one_bad_required_part(failing.addr, ""), 502, "bad_status");
    // Nothing listens there.
    let nowhere: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    assert_part_failed(&one_bad_required_part(nowhere, ""), 502, "connect_error");
}

#[test]
fn a_timed_out_required_part_is_a_504_naming_it() {
    let (slow, _gate, _open) = gated("{}");
    let response = one_bad_required_part(slow.addr, "timeout = \"200ms\"");
    assert_part_failed(&response, 504, "timeout");
}

#[test]
fn the_route_deadline_bounds_every_part() {
    let (slow, _gate, _open) = gated("{}");
    let users = users();
    let strait = Strait::start(&config(
        &[("users", users.addr), ("slow", slow.addr)],
        r#"
[[routes]]
path = "/d/{user}"
[routes.aggregate]
deadline = "300ms"
[[routes.aggregate.parts]]
name = "user"
upstream = "users"
path = "/users/{user}"
[[routes.aggregate.parts]]
name = "billing"
upstream = "slow"
path = "/billing"
timeout = "30s"
"#,
    ));
    let started = std::time::Instant::now();
    let response = get(&strait, "/d/7");
    assert_part_failed(&response, 504, "timeout");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn non_json_and_oversized_answers_fail_their_part() {
    let text = Upstream::start(|_| common::ok("plain text"));
    assert_part_failed(&one_bad_required_part(text.addr, ""), 502, "not_json");
    let big = Upstream::start(|_| json_ok(&format!("{{\"pad\":\"{}\"}}", "x".repeat(100))));
    let response = one_bad_required_part(big.addr, "max_bytes = 64");
    assert_part_failed(&response, 502, "too_large");
    // The same answer under the limit passes.
    let response = one_bad_required_part(big.addr, "max_bytes = 4096");
    assert_eq!(response.status, 200, "{}", response.text());
}

fn merge_route(conflict: &str) -> String {
    format!(
        r#"
[[routes]]
path = "/m"
aggregate = {{ combine = "merge", conflict = "{conflict}", parts = [
  {{ name = "a", upstream = "a", path = "/a" }},
  {{ name = "b", upstream = "b", path = "/b" }},
] }}
"#
    )
}

#[test]
fn merges_follow_their_conflict_rule() {
    let a = Upstream::start(|_| json_ok(r#"{"id":1,"from_a":true}"#));
    let b = Upstream::start(|_| json_ok(r#"{"id":2,"from_b":true}"#));
    let ups = [("a", a.addr), ("b", b.addr)];
    let cases = [
        (
            "first",
            200,
            json!({"id": 1, "from_a": true, "from_b": true}),
        ),
        (
            "last",
            200,
            json!({"id": 2, "from_a": true, "from_b": true}),
        ),
        (
            "error",
            502,
            json!({"error": "aggregate merge conflict", "part": "b", "field": "id", "status": 502}),
        ),
    ];
    for (conflict, status, want) in cases {
        let strait = Strait::start(&config(&ups, &merge_route(conflict)));
        let response = get(&strait, "/m");
        assert_eq!(response.status, status, "{conflict}: {}", response.text());
        assert_eq!(body_json(&response), want, "{conflict}");
    }
}

#[test]
fn array_combines_keep_part_order() {
    let a = Upstream::start(|_| json_ok(r#"{"n":1}"#));
    let b = Upstream::start(|_| json_ok(r#"[2]"#));
    let strait = Strait::start(&config(
        &[("a", a.addr), ("b", b.addr)],
        r#"
[[routes]]
path = "/arr"
aggregate = { combine = "array", parts = [
  { name = "b", upstream = "b", path = "/b" },
  { name = "a", upstream = "a", path = "/a" },
] }
"#,
    ));
    let response = get(&strait, "/arr");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(body_json(&response), json!([[2], {"n": 1}]));

    // The admin API lists the route's parts.
    use std::io::Write;
    let mut admin = common::connect(strait.admin_addr());
    admin
        .write_all(b"GET /routes HTTP/1.1\r\nHost: admin\r\n\r\n")
        .unwrap();
    let routes = body_json(&common::read_response(&mut admin).unwrap());
    assert_eq!(
        routes["routes"][0]["action"],
        json!({"type": "aggregate", "parts": [
            {"name": "b", "upstream": "b", "required": true},
            {"name": "a", "upstream": "a", "required": true},
        ]})
    );
}

#[test]
fn a_reload_does_not_break_an_aggregation_in_flight() {
    let users = users();
    let (slow, gate, _open) = gated(r#"{"ok":true}"#);
    let ups = [("users", users.addr), ("slow", slow.addr)];
    let route = |version: &str| {
        format!(
            r#"
[[routes]]
path = "/version"
mock = {{ status = 200, body = "{version}" }}

[[routes]]
path = "/d/{{user}}"
[[routes.aggregate.parts]]
name = "user"
upstream = "users"
path = "/users/{{user}}"
[[routes.aggregate.parts]]
name = "slow"
upstream = "slow"
path = "/slow"
"#
        )
    };
    let mut strait = Strait::start(&config(&ups, &route("1")));
    let addr = strait.addr;
    let in_flight = std::thread::spawn(move || {
        let mut stream = common::connect(addr);
        use std::io::Write;
        stream
            .write_all(b"GET /d/7 HTTP/1.1\r\nHost: example.com\r\n\r\n")
            .unwrap();
        common::read_response(&mut stream).unwrap()
    });
    wait_until("the slow part to be called", || gate.arrived() == 1);
    // The new config drops the aggregate route altogether.
    let new_config = config(&ups, &route("2").replace("/d/{user}", "/gone/{user}"));
    strait.write_config(&new_config);
    strait.signal(libc::SIGHUP);
    wait_until("the new config to be served", || {
        strait
            .request(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
            .text()
            == "2"
    });
    gate.open();
    let response = in_flight.join().unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        body_json(&response),
        json!({"user": {"id": 7, "name": "Ada", "secret": "s"}, "slow": {"ok": true}})
    );
    assert!(strait.is_running());
    assert_eq!(get(&strait, "/d/7").status, 404);
}

#[test]
fn bad_aggregations_are_config_errors_with_their_position() {
    let upstream = "[upstreams.users]\nendpoints = [\"127.0.0.1:9\"]\n";
    let cases = [
        (
            "[[routes]]\npath = \"/a\"\n[[routes.aggregate.parts]]\nname = \"x\"\nupstream = \"users\"\n\
             path = \"/x?y={steps.y.id}\"\n[[routes.aggregate.parts]]\nname = \"y\"\nupstream = \"users\"\n\
             path = \"/y?x={steps.x.id}\"\n",
            ":10:8: routes[0].aggregate.parts[0].path: the parts' steps form a cycle: x, y",
        ),
        (
            "[[routes]]\npath = \"/a\"\n[[routes.aggregate.parts]]\nname = \"x\"\nupstream = \"users\"\n\
             path = \"/x/{steps.nope.id}\"\n",
            ":10:8: routes[0].aggregate.parts[0].path:",
        ),
        (
            "[[routes]]\npath = \"/a\"\n[[routes.aggregate.parts]]\nname = \"x\"\nupstream = \"orders\"\n\
             path = \"/x\"\n",
            ":9:12: routes[0].aggregate.parts[0].upstream: unknown upstream \"orders\"",
        ),
        (
            "[[routes]]\npath = \"/a\"\nstrip_prefix = \"/a\"\n[[routes.aggregate.parts]]\nname = \"x\"\n\
             upstream = \"users\"\npath = \"/x\"\n",
            ":7:16: routes[0].strip_prefix: only applies to routes with an `upstream`",
        ),
        (
            "[[routes]]\npath = \"/a\"\nupstream = \"users\"\n[[routes.aggregate.parts]]\nname = \"x\"\n\
             upstream = \"users\"\npath = \"/x\"\n",
            "routes[0].aggregate: set one of `upstream`, `mock` or `aggregate`",
        ),
    ];
    for (routes, want) in cases {
        let text = format!("[server]\nlisten = [\"127.0.0.1:0\"]\n{upstream}{routes}");
        let (ok, out) = check(&text);
        assert!(!ok, "{text}");
        assert!(out.contains(want), "want {want}\ngot {out}");
    }
}

#[test]
fn every_part_carries_the_request_span_as_its_parent() {
    let (a, b) = (
        Upstream::start(|_| json_ok("{}")),
        Upstream::start(|_| json_ok("{}")),
    );
    let strait = Strait::start(&config(
        &[("a", a.addr), ("b", b.addr)],
        r#"
[[routes]]
path = "/t"
aggregate = { parts = [
  { name = "a", upstream = "a", path = "/a", pass_headers = ["traceparent"] },
  { name = "b", upstream = "b", path = "/b" },
] }

[observability.tracing]
otlp_endpoint = "http://127.0.0.1:9/v1/traces"
sample_ratio = 1.0
"#,
    ));
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let response = strait.request(
        format!("GET /t HTTP/1.1\r\nHost: x\r\ntraceparent: 00-{trace}-{client_span}-01\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(response.status, 200, "{}", response.text());
    let parents: Vec<Vec<String>> = [&a, &b]
        .iter()
        .map(|u| {
            let got = u.last();
            got.head
                .split("\r\n")
                .filter_map(|l| l.split_once(": "))
                .filter(|(n, _)| n.eq_ignore_ascii_case("traceparent"))
                .map(|(_, v)| v.to_owned())
                .collect()
        })
        .collect();
    assert_eq!(parents[0].len(), 1, "{parents:?}");
    assert_eq!(parents[0], parents[1]);
    let value = &parents[0][0];
    assert!(value.starts_with(&format!("00-{trace}-")), "{value}");
    assert!(!value.contains(client_span), "{value}");
}

#[test]
fn the_route_filters_run_before_any_part_is_called() {
    let users = users();
    let strait = Strait::start(&config(
        &[("users", users.addr)],
        r#"
[consumers.web]
api_keys = ["web-key"]

[[routes]]
path = "/d/{user}"
auth = { api_key = {} }
aggregate = { parts = [{ name = "user", upstream = "users", path = "/users/{user}" }] }
"#,
    ));
    let refused = strait.request(b"GET /d/7 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(refused.status, 401, "{}", refused.text());
    assert!(users.requests().is_empty());
    let served = strait.request(b"GET /d/7 HTTP/1.1\r\nHost: x\r\nx-api-key: web-key\r\n\r\n");
    assert_eq!(served.status, 200, "{}", served.text());
    assert_eq!(body_json(&served)["user"]["name"], "Ada");
}

#[test]
fn a_step_starts_as_soon_as_the_part_it_reads_has_answered() {
    let (users, orders) = (users(), orders());
    let (slow, gate, _open) = gated(r#"{"late":true}"#);
    let strait = Strait::start(&config(
        &[
            ("users", users.addr),
            ("orders", orders.addr),
            ("slow", slow.addr),
        ],
        r#"
[[routes]]
path = "/d/{user}"
[[routes.aggregate.parts]]
name = "slow"
upstream = "slow"
path = "/slow"
[[routes.aggregate.parts]]
name = "user"
upstream = "users"
path = "/users/{user}"
[[routes.aggregate.parts]]
name = "orders"
upstream = "orders"
path = "/orders?user={steps.user.id}"
"#,
    ));
    let addr = strait.addr;
    let in_flight = std::thread::spawn(move || {
        use std::io::Write;
        let mut stream = common::connect(addr);
        stream
            .write_all(b"GET /d/7 HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        common::read_response(&mut stream).unwrap()
    });
    // `orders` is called while `slow` is still held.
    wait_until("the step to be called", || !orders.requests().is_empty());
    assert_eq!(gate.arrived(), 1);
    gate.open();
    let response = in_flight.join().unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        body_json(&response)["orders"],
        json!([{"order": 1}, {"order": 2}])
    );
    assert_eq!(body_json(&response)["slow"], json!({"late": true}));
}

#[test]
fn a_failed_required_part_answers_without_waiting_for_the_others() {
    let failing = Upstream::start(|_| {
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n".to_vec()
    });
    // Held until the test ends: an answer that waited for it would be a 504.
    let (slow, _gate, _open) = gated("{}");
    let strait = Strait::start(&config(
        &[("bad", failing.addr), ("slow", slow.addr)],
        r#"
[[routes]]
path = "/d"
aggregate = { parts = [
  { name = "slow", upstream = "slow", path = "/slow" },
  { name = "billing", upstream = "bad", path = "/billing" },
] }
"#,
    ));
    assert_part_failed(&get(&strait, "/d"), 502, "bad_status");
}
