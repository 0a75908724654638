//! The admin API through the real binary: every endpoint, the bearer token, bad input that
//! must change nothing, reload from the file on disk, and the service registry across a
//! reload and a restart. `docs/admin-openapi.json` must list exactly `admin::ROUTES`, and
//! every route it documents must answer with a status it documents.

mod common;
use common::*;

use std::collections::BTreeSet;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;

use serde_json::Value;

const TOKEN: &str = "test-token-0123456789";

/// An admin answer, its body parsed as JSON.
struct Answer {
    status: u16,
    response: Response,
    json: Value,
}

fn raw_admin_request(method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> String {
    let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: admin\r\n");
    if let Some(token) = token {
        raw.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if let Some(body) = body {
        raw.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    raw.push_str("\r\n");
    raw.push_str(body.unwrap_or(""));
    raw
}

fn send_raw(addr: SocketAddr, raw: &[u8]) -> Answer {
    let mut stream = connect(addr);
    stream.write_all(raw).unwrap();
    let response = read_response(&mut stream).expect("admin response");
    let json = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    // Everything is JSON but a successful `GET /metrics` (the Prometheus text format).
    let want = if raw.starts_with(b"GET /metrics ") && response.status == 200 {
        "text/plain; version=0.0.4; charset=utf-8"
    } else {
        "application/json"
    };
    assert_eq!(
        response.header("content-type"),
        Some(want),
        "{}",
        response.head
    );
    Answer {
        status: response.status,
        json,
        response,
    }
}

fn admin_with(
    strait: &Strait,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Answer {
    let raw = raw_admin_request(method, path, token, body);
    send_raw(strait.admin_addr(), raw.as_bytes())
}

fn admin(strait: &Strait, method: &str, path: &str, body: Option<&str>) -> Answer {
    admin_with(strait, method, path, None, body)
}

fn get_body(strait: &Strait, path: &str) -> (u16, String) {
    let r = strait.request(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    (r.status, r.text())
}

/// The endpoints of upstream `name` as `(addr, weight, source)`.
fn endpoints(strait: &Strait, name: &str) -> Vec<(String, u64, String)> {
    let a = admin(strait, "GET", &format!("/upstreams/{name}"), None);
    assert_eq!(a.status, 200, "{}", a.response.text());
    a.json["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["addr"].as_str().unwrap().to_string(),
                e["weight"].as_u64().unwrap(),
                e["source"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn openapi() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/admin-openapi.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).expect("valid JSON")
}

/// `(METHOD, path)` of every operation in the OpenAPI document.
fn documented_operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if ["get", "put", "post", "delete", "patch", "head", "options"]
                .contains(&method.as_str())
            {
                out.push((method.to_uppercase(), path.clone(), operation.clone()));
            }
        }
    }
    out
}

#[test]
fn openapi_document_lists_exactly_the_served_routes() {
    let doc = openapi();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let documented: BTreeSet<(String, String)> = documented_operations(&doc)
        .into_iter()
        .map(|(m, p, _)| (m, p))
        .collect();
    let served: BTreeSet<(String, String)> = strait::admin::ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(documented, served);
    assert_eq!(served.len(), strait::admin::ROUTES.len());
}

/// Walks `ROUTES` in order, filling path parameters and bodies from the document's examples:
/// each answers (not 404/405) with a status the document lists, and 401 without the token.
#[test]
fn every_documented_route_answers_as_documented() {
    let up = Upstream::fixed("a");
    let strait = Strait::start(&proxy_config(
        up.addr,
        // A cache, so that its purge has something to name.
        &format!("[admin]\ntoken = \"{TOKEN}\"\n[caches.main]\n"),
    ));
    wait_until("ready", || {
        admin_with(&strait, "GET", "/readyz", Some(TOKEN), None).status == 200
    });
    let doc = openapi();
    let operations = documented_operations(&doc);
    for (method, template) in strait::admin::ROUTES {
        let (_, _, operation) = operations
            .iter()
            .find(|(m, p, _)| m == method && p == template)
            .unwrap_or_else(|| panic!("{method} {template} is not documented"));
        let mut path = template.to_string();
        for param in operation["parameters"].as_array().into_iter().flatten() {
            let name = param["name"].as_str().unwrap();
            let example = param["example"].as_str().expect("parameter example");
            let encoded = example
                .replace('%', "%25")
                .replace(':', "%3A")
                .replace('[', "%5B")
                .replace(']', "%5D");
            path = path.replace(&format!("{{{name}}}"), &encoded);
        }
        let body = operation["requestBody"]["content"]["application/json"]["example"].clone();
        let body = (!body.is_null()).then(|| body.to_string());

        let a = admin_with(&strait, method, &path, Some(TOKEN), body.as_deref());
        assert!(
            a.status != 404 && a.status != 405,
            "{method} {path}: {} {}",
            a.status,
            a.response.text()
        );
        assert!(
            operation["responses"].get(a.status.to_string()).is_some(),
            "{method} {path}: status {} is not documented",
            a.status
        );
        let content_type = a.response.header("content-type").unwrap();
        assert!(
            operation["responses"][a.status.to_string()]["content"]
                .get(content_type)
                .is_some(),
            "{method} {path}: content type {content_type} is not documented"
        );
        if content_type == "application/json" {
            assert!(a.json.is_object(), "{method} {path}: not JSON");
        }

        let denied = admin_with(&strait, method, &path, None, body.as_deref());
        assert_eq!(denied.status, 401, "{method} {path}");
        assert!(operation["responses"].get("401").is_some());
    }
}

#[test]
fn token_is_required_on_every_request_and_checked() {
    let up = Upstream::fixed("a");
    let strait = Strait::start(&proxy_config(
        up.addr,
        &format!("[admin]\ntoken = \"{TOKEN}\"\n"),
    ));
    let addr = strait.admin_addr();
    let with_header = |header: &str, path: &str| {
        send_raw(
            addr,
            format!("GET {path} HTTP/1.1\r\nHost: admin\r\n{header}\r\n").as_bytes(),
        )
    };
    for header in [
        String::new(),
        "Authorization: Bearer wrong-token-0123456789\r\n".to_string(),
        format!("Authorization: Bearer {TOKEN}x\r\n"),
        format!("Authorization: Bearer {}\r\n", &TOKEN[..TOKEN.len() - 1]),
        format!("Authorization: Basic {TOKEN}\r\n"),
        format!("Authorization: {TOKEN}\r\n"),
    ] {
        for path in ["/healthz", "/config", "/no-such-path"] {
            let a = with_header(&header, path);
            assert_eq!(a.status, 401, "{header:?} {path}");
            assert_eq!(a.json["status"], 401);
            assert!(a
                .response
                .header("www-authenticate")
                .is_some_and(|v| v.starts_with("Bearer")));
        }
    }
    // A failed reload or registration attempt without the token did nothing.
    let denied = admin(&strait, "POST", "/reload", None);
    assert_eq!(denied.status, 401);
    let status = admin_with(&strait, "GET", "/status", Some(TOKEN), None);
    assert_eq!(status.json["generation"], 1);

    for header in [
        format!("Authorization: Bearer {TOKEN}\r\n"),
        format!("authorization: bearer {TOKEN}\r\n"),
    ] {
        assert_eq!(with_header(&header, "/healthz").status, 200);
        assert_eq!(with_header(&header, "/no-such-path").status, 404);
    }
    // The token itself is never shown.
    let config = admin_with(&strait, "GET", "/config", Some(TOKEN), None);
    assert_eq!(config.json["admin"]["token"], "***");
    assert!(!config.response.text().contains(TOKEN));
}

#[test]
fn read_endpoints_describe_the_running_config() {
    let up = Upstream::fixed("a");
    let config = proxy_config(
        up.addr,
        "[server.timeouts]\nheader_read = \"250ms\"\n[server.limits]\nmax_body_bytes = \"1KiB\"\n",
    )
    .replace(
        "[[routes]]\npath = \"/\"",
        "[[routes]]\nname = \"root\"\nmethods = [\"get\"]\npath = \"/\"",
    );
    let strait = Strait::start(&config);

    let health = admin(&strait, "GET", "/healthz", None);
    assert_eq!(
        (health.status, health.json.clone()),
        (200, serde_json::json!({"status": "ok"}))
    );
    wait_until("ready", || {
        admin(&strait, "GET", "/readyz", None).status == 200
    });
    assert_eq!(
        admin(&strait, "GET", "/readyz", None).json["status"],
        "ready"
    );

    let c = admin(&strait, "GET", "/config", None).json;
    assert_eq!(c["server"]["listen"][0], "127.0.0.1:0");
    assert_eq!(c["server"]["workers"], 0);
    assert_eq!(c["server"]["timeouts"]["header_read"], "250ms");
    assert_eq!(c["server"]["timeouts"]["keepalive_idle"], "60s");
    assert_eq!(c["server"]["limits"]["max_body_bytes"], 1024);
    assert_eq!(c["server"]["limits"]["max_header_bytes"], 16384);
    assert_eq!(c["upstreams"][0]["name"], "app");
    assert_eq!(
        c["upstreams"][0]["endpoints"][0]["addr"],
        up.addr.to_string()
    );
    assert_eq!(c["upstreams"][0]["endpoints"][0]["source"], "config");
    assert_eq!(c["admin"]["token"], Value::Null);
    assert_eq!(c["admin"]["state_file"], Value::Null);
    assert_eq!(c["generation"], 1);

    let routes = admin(&strait, "GET", "/routes", None).json;
    let routes = routes["routes"].as_array().unwrap();
    assert_eq!(routes.len(), 2);
    assert_eq!(routes[0]["name"], "routes[0]");
    assert_eq!(routes[0]["path"], "/{*rest}");
    assert_eq!(routes[0]["action"]["type"], "proxy");
    assert_eq!(routes[0]["action"]["upstream"], "app");
    assert_eq!(routes[1]["name"], "root");
    assert_eq!(routes[1]["methods"], serde_json::json!(["GET"]));

    let ups = admin(&strait, "GET", "/upstreams", None).json;
    assert_eq!(ups["upstreams"][0]["endpoints"][0]["weight"], 1);
    assert_eq!(
        endpoints(&strait, "app"),
        [(up.addr.to_string(), 1, "config".to_string())]
    );

    let status = admin(&strait, "GET", "/status", None).json;
    assert_eq!(status["generation"], 1);
    assert_eq!(status["ready"], true);
    assert_eq!(status["last_reload"]["ok"], true);
    assert!(status["last_reload"]["at"].as_u64().unwrap() > 1_600_000_000);
    let last = admin(&strait, "GET", "/reload/status", None).json;
    assert_eq!(last["ok"], true);
    assert_eq!(last["errors"], serde_json::json!([]));

    // Keep-alive: several requests on one connection, answered in order.
    let mut stream = connect(strait.admin_addr());
    let mut reader_stream = stream.try_clone().unwrap();
    let mut reader = Reader::new(&mut reader_stream);
    for path in ["/healthz", "/nope", "/status", "/healthz"] {
        stream
            .write_all(raw_admin_request("GET", path, None, None).as_bytes())
            .unwrap();
        let r = reader.read_response("GET").unwrap();
        assert_eq!(r.status, if path == "/nope" { 404 } else { 200 });
        assert!(r.header("connection").is_none());
    }
}

/// Every bad request gets a JSON error with its status, and leaves config and registry as
/// they were.
#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let up = Upstream::fixed("a");
    let dir = scratch_dir();
    let state = dir.join("state.json");
    let strait = Strait::start(&proxy_config(
        up.addr,
        &format!("[admin]\nstate_file = \"{}\"\n", state.display()),
    ));
    let before = admin(&strait, "GET", "/config", None).response.body;
    let app = up.addr.to_string().replace(':', "%3A");
    let big = format!(
        "{{\"endpoints\":[{{\"addr\":\"127.0.0.1:9003\",\"pad\":\"{}\"}}]}}",
        "x".repeat(70 * 1024)
    );
    let cases: Vec<(&str, String, Option<String>, u16, &str)> = vec![
        ("PUT", "/upstreams/app/endpoints".into(), Some("{not json".into()), 400, "invalid JSON"),
        ("PUT", "/upstreams/app/endpoints".into(), Some("".into()), 400, "invalid JSON"),
        ("PUT", "/upstreams/app/endpoints".into(), Some(r#"{"endpoints":[]}"#.into()), 400, "at least one"),
        ("PUT", "/upstreams/app/endpoints".into(), Some(r#"{"endpoints":[{"addr":"127.0.0.1:9003","wieght":2}]}"#.into()), 400, "unknown field"),
        ("PUT", "/upstreams/app/endpoints".into(), Some(r#"{"endpoints":[{"addr":"localhost:9003"}]}"#.into()), 400, "invalid address"),
        ("PUT", "/upstreams/app/endpoints".into(), Some(r#"{"endpoints":[{"addr":"127.0.0.1"}]}"#.into()), 400, "invalid address"),
        ("PUT", "/upstreams/app/endpoints".into(), Some(r#"{"endpoints":[{"addr":"127.0.0.1:0"}]}"#.into()), 400, "port 0"),
        ("PUT", "/upstreams/app/endpoints".into(), Some(r#"{"endpoints":[{"addr":"127.0.0.1:9003","weight":0}]}"#.into()), 400, "out of range"),
        ("PUT", "/upstreams/app/endpoints".into(), Some(r#"{"endpoints":[{"addr":"127.0.0.1:9003","weight":1001}]}"#.into()), 400, "out of range"),
        ("PUT", "/upstreams/app/endpoints".into(), Some(r#"{"endpoints":[{"addr":"127.0.0.1:9003","weight":1.5}]}"#.into()), 400, "invalid JSON"),
        // One good endpoint and one bad: neither is registered.
        ("PUT", "/upstreams/app/endpoints".into(), Some(r#"{"endpoints":[{"addr":"127.0.0.1:9003"},{"addr":"127.0.0.1:9004","weight":-1}]}"#.into()), 400, "out of range"),
        ("PUT", "/upstreams/app/endpoints".into(), Some(r#"{"endpoints":[{"addr":"127.0.0.1:9003"},{"addr":"127.0.0.1:9003"}]}"#.into()), 400, "twice"),
        ("PUT", "/upstreams/app/endpoints".into(), Some(format!(r#"{{"endpoints":[{{"addr":"{}","weight":5}}]}}"#, up.addr)), 409, "config file"),
        ("PUT", "/upstreams/nope/endpoints".into(), Some(r#"{"endpoints":[{"addr":"127.0.0.1:9003"}]}"#.into()), 404, "unknown upstream"),
        ("PUT", "/upstreams/app/endpoints".into(), Some(big), 413, "too large"),
        ("DELETE", format!("/upstreams/app/endpoints/{app}"), None, 409, "config file"),
        ("DELETE", "/upstreams/app/endpoints/127.0.0.1%3A9999".into(), None, 404, "not registered"),
        ("DELETE", "/upstreams/nope/endpoints/127.0.0.1%3A9999".into(), None, 404, "unknown upstream"),
        ("DELETE", "/upstreams/app/endpoints/not-an-addr".into(), None, 400, "invalid address"),
        ("DELETE", "/upstreams/app/endpoints/%zz".into(), None, 400, "percent-encoding"),
        ("GET", "/upstreams/nope".into(), None, 404, "unknown upstream"),
        ("GET", "/nope".into(), None, 404, "no admin route"),
        ("GET", "/config/".into(), None, 404, "no admin route"),
        ("DELETE", "/config".into(), None, 405, "not allowed"),
        ("GET", "/reload".into(), None, 405, "not allowed"),
        ("POST", "/upstreams/app/endpoints".into(), Some("{}".into()), 405, "not allowed"),
    ];
    for (method, path, body, status, message) in &cases {
        let a = admin(&strait, method, path, body.as_deref());
        assert_eq!(a.status, *status, "{method} {path}: {}", a.response.text());
        assert_eq!(a.json["status"], *status, "{method} {path}");
        let error = a.json["error"].as_str().unwrap_or_default();
        assert!(error.contains(message), "{method} {path}: {error}");
        if *status == 405 {
            assert!(a.response.header("allow").is_some(), "{method} {path}");
        }
        assert_eq!(
            admin(&strait, "GET", "/config", None).response.body,
            before,
            "{method} {path} changed the config"
        );
        assert!(!state.exists(), "{method} {path} wrote the state file");
    }
    let allow = admin(&strait, "DELETE", "/config", None);
    assert_eq!(allow.response.header("allow"), Some("GET"));
    let allow = admin(&strait, "GET", "/upstreams/app/endpoints", None);
    assert_eq!(allow.response.header("allow"), Some("PUT"));

    // Framing the admin api does not take: chunked (411), a head too large (431).
    let chunked = send_raw(
        strait.admin_addr(),
        b"PUT /upstreams/app/endpoints HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    );
    assert_eq!(chunked.status, 411);
    assert_eq!(chunked.response.header("connection"), Some("close"));
    let huge = format!(
        "GET /healthz HTTP/1.1\r\nHost: a\r\nX-Pad: {}\r\n\r\n",
        "p".repeat(20 * 1024)
    );
    assert_eq!(send_raw(strait.admin_addr(), huge.as_bytes()).status, 431);
    assert_eq!(admin(&strait, "GET", "/config", None).response.body, before);
    assert_eq!(get_body(&strait, "/x"), (200, "a".to_string()));
}

#[test]
fn reload_serves_the_file_on_disk_and_refuses_an_invalid_one() {
    let up = Upstream::fixed("a");
    let strait = Strait::start(&proxy_config(up.addr, ""));
    let path = strait.dir.join("strait.toml");
    assert_eq!(get_body(&strait, "/new"), (200, "a".to_string()));

    let edited = proxy_config(up.addr, "")
        + "\n[[routes]]\nname = \"new\"\npath = \"/new\"\nmock = { status = 200, body = \"new route\" }\n";
    std::fs::write(&path, edited).unwrap();
    let a = admin(&strait, "POST", "/reload", None);
    assert_eq!(a.status, 200, "{}", a.response.text());
    assert_eq!(a.json["generation"], 2);
    assert!(a.json["took_ms"].as_f64().unwrap() >= 0.0);
    wait_until("the new route serves", || {
        get_body(&strait, "/new") == (200, "new route".to_string())
    });
    let status = admin(&strait, "GET", "/status", None).json;
    assert_eq!(status["generation"], 2);
    assert_eq!(status["last_reload"]["ok"], true);
    let routes = admin(&strait, "GET", "/routes", None).json;
    assert_eq!(routes["routes"].as_array().unwrap().len(), 3);

    // Invalid: a route to an unknown upstream.
    let broken =
        proxy_config(up.addr, "") + "\n[[routes]]\npath = \"/broken\"\nupstream = \"nope\"\n";
    std::fs::write(&path, &broken).unwrap();
    let before = admin(&strait, "GET", "/config", None).response.body;
    let a = admin(&strait, "POST", "/reload", None);
    assert_eq!(a.status, 400, "{}", a.response.text());
    assert_eq!(a.json["error"], "invalid config");
    assert_eq!(a.json["status"], 400);
    let errors = a.json["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1);
    let line = errors[0].as_str().unwrap();
    let expected = format!("{}:", path.display());
    assert!(line.starts_with(&expected), "{line}");
    let position: Vec<&str> = line[expected.len()..].splitn(3, ':').collect();
    assert!(
        position[0].parse::<u32>().is_ok() && position[1].parse::<u32>().is_ok(),
        "{line}"
    );
    assert!(
        line.contains("routes[2].upstream") && line.contains("nope"),
        "{line}"
    );

    // The running config is unchanged and still serves.
    assert_eq!(admin(&strait, "GET", "/config", None).response.body, before);
    assert_eq!(get_body(&strait, "/new"), (200, "new route".to_string()));
    assert_eq!(get_body(&strait, "/broken"), (200, "a".to_string()));
    let status = admin(&strait, "GET", "/status", None).json;
    assert_eq!(status["generation"], 2);
    assert_eq!(status["last_reload"]["ok"], false);
    assert_eq!(status["last_reload"]["errors"][0], line);
    let last = admin(&strait, "GET", "/reload/status", None).json;
    assert_eq!(last["ok"], false);

    // A TOML syntax error also names its place.
    std::fs::write(&path, "[server\nlisten = 1\n").unwrap();
    let a = admin(&strait, "POST", "/reload", None);
    assert_eq!(a.status, 400);
    assert!(a.json["errors"][0]
        .as_str()
        .unwrap()
        .starts_with(&format!("{}:1:", path.display())));
    assert_eq!(get_body(&strait, "/new"), (200, "new route".to_string()));
}

/// Counts the bodies of `n` requests, each on its own connection.
fn spread(strait: &Strait, n: usize) -> (usize, usize) {
    let mut counts = (0, 0);
    for _ in 0..n {
        match get_body(strait, "/x") {
            (200, body) if body == "a" => counts.0 += 1,
            (200, body) if body == "b" => counts.1 += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    counts
}

#[test]
fn registered_endpoint_is_served_persisted_and_survives_reload_and_restart() {
    let a = Upstream::fixed("a");
    let b = Upstream::fixed("b");
    let dir = scratch_dir();
    let state = dir.join("state.json");
    let config = proxy_config(
        a.addr,
        &format!("[admin]\nstate_file = \"{}\"\n", state.display()),
    );
    let body = format!(r#"{{"endpoints":[{{"addr":"{}"}}]}}"#, b.addr);

    let strait = Strait::start(&config);
    assert_eq!(spread(&strait, 4), (4, 0));
    let put = admin(&strait, "PUT", "/upstreams/app/endpoints", Some(&body));
    assert_eq!(put.status, 200, "{}", put.response.text());
    assert_eq!(put.json["name"], "app");
    let expected = vec![
        (a.addr.to_string(), 1, "config".to_string()),
        (b.addr.to_string(), 1, "registered".to_string()),
    ];
    assert_eq!(endpoints(&strait, "app"), expected);
    // Idempotent: again, no duplicate; an address from the file with its own weight too.
    assert_eq!(
        admin(&strait, "PUT", "/upstreams/app/endpoints", Some(&body)).status,
        200
    );
    let same_as_file = format!(r#"{{"endpoints":[{{"addr":"{}","weight":1}}]}}"#, a.addr);
    assert_eq!(
        admin(
            &strait,
            "PUT",
            "/upstreams/app/endpoints",
            Some(&same_as_file)
        )
        .status,
        200
    );
    assert_eq!(endpoints(&strait, "app"), expected);

    // Weighted round-robin with equal weights alternates.
    wait_until("both endpoints serve", || {
        let (x, y) = spread(&strait, 4);
        x > 0 && y > 0
    });
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(
        saved,
        serde_json::json!({"version": 1, "upstreams": {"app": [{"addr": b.addr.to_string(), "weight": 1}]}})
    );
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "temporary files left: {names:?}");

    // A reload keeps it.
    assert_eq!(admin(&strait, "POST", "/reload", None).status, 200);
    assert_eq!(endpoints(&strait, "app"), expected);
    let (x, y) = spread(&strait, 6);
    assert!(x > 0 && y > 0, "after reload: {x} {y}");

    // A restart with the same config and state file keeps it.
    drop(strait);
    let strait = Strait::start(&config);
    assert_eq!(endpoints(&strait, "app"), expected);
    let (x, y) = spread(&strait, 6);
    assert!(x > 0 && y > 0, "after restart: {x} {y}");

    // Deregistered: gone from traffic, the listing and the file, and it stays gone.
    let encoded = b.addr.to_string().replace(':', "%3A");
    let del = admin(
        &strait,
        "DELETE",
        &format!("/upstreams/app/endpoints/{encoded}"),
        None,
    );
    assert_eq!(del.status, 200, "{}", del.response.text());
    assert_eq!(endpoints(&strait, "app"), expected[..1]);
    assert_eq!(spread(&strait, 4), (4, 0));
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(saved, serde_json::json!({"version": 1, "upstreams": {}}));
    assert_eq!(admin(&strait, "POST", "/reload", None).status, 200);
    assert_eq!(endpoints(&strait, "app"), expected[..1]);
}

#[test]
fn ipv6_endpoint_registers_and_deregisters_with_encoded_brackets_in_memory() {
    let up = Upstream::fixed("a");
    // No state file: registrations live in memory.
    let strait = Strait::start(&proxy_config(up.addr, ""));
    let put = admin(
        &strait,
        "PUT",
        "/upstreams/app/endpoints",
        Some(r#"{"endpoints":[{"addr":"[::1]:9003","weight":3}]}"#),
    );
    assert_eq!(put.status, 200, "{}", put.response.text());
    assert_eq!(put.json["endpoints"][1]["addr"], "[::1]:9003");
    assert_eq!(put.json["endpoints"][1]["weight"], 3);
    // Re-registering with a new weight updates it.
    let put = admin(
        &strait,
        "PUT",
        "/upstreams/app/endpoints",
        Some(r#"{"endpoints":[{"addr":"[::1]:9003","weight":2}]}"#),
    );
    assert_eq!(put.json["endpoints"][1]["weight"], 2);
    assert_eq!(put.json["endpoints"].as_array().unwrap().len(), 2);
    let del = admin(
        &strait,
        "DELETE",
        "/upstreams/app/endpoints/%5B%3A%3A1%5D%3A9003",
        None,
    );
    assert_eq!(del.status, 200, "{}", del.response.text());
    assert_eq!(del.json["endpoints"].as_array().unwrap().len(), 1);
    assert_eq!(
        admin(&strait, "GET", "/config", None).json["admin"]["state_file"],
        Value::Null
    );
}

/// A config using every section; `GET /config` shows each of them, values in config syntax,
/// and no secret: API keys, the OAuth2 client secret, the JWT HMAC secret, the Redis
/// password and the admin token are redacted or left out.
#[test]
fn config_shows_every_section_without_secrets() {
    const SECRETS: [&str; 6] = [
        "alice-plain-key-0001",
        "916b661453bfeff350a3cd8221085bd847fddd34229d95fd543fcae203e1fe1b",
        "jwt-hmac-secret-0123456789abcdef0123",
        "oauth2-client-secret-xyz",
        "redis-pass-xyz",
        "admin-token-0123456789abcdef",
    ];
    let app = Upstream::fixed("app");
    let idp = Upstream::fixed("{\"active\":false}");
    let files = scratch_dir();
    let log = files.join("access.log");
    let state = files.join("state.json");
    let (a, b, i) = (app.addr, free_port(), idp.addr);
    let config = format!(
        r#"[server]
listen = ["127.0.0.1:0"]
workers = 1
trusted_proxies = ["10.0.0.0/8"]
[server.limits]
max_body_bytes = "2KiB"
[server.timeouts]
header_read = "5s"
[server.access]
allow = ["127.0.0.0/8", "::1"]
deny = ["127.0.0.2"]

[upstreams.app]
endpoints = ["{a}", {{ addr = "127.0.0.1:{b}", weight = 2 }}]
balance = "hash"
hash_key = "header:X-User"
resolve_interval = "1m"
[upstreams.app.pool]
max_idle = 8
idle_timeout = "30s"
[upstreams.app.health]
path = "/health"
expect = ["200", "204-299"]
interval = "10s"
timeout = "500ms"
[upstreams.app.outlier]
consecutive_failures = 3
base_ejection = "10s"
max_ejection = "1m"
max_ejected_percent = 40
[upstreams.app.retry]
attempts = 3
on = ["reset", 503]
per_try_timeout = "2s"
timeout = "5s"
budget_percent = 10
buffer_body = "1KiB"
[upstreams.app.limits]
max_connections = 100
max_pending = 10
max_requests = 50

[upstreams.idp]
endpoints = ["{i}"]

[consumers.alice]
api_keys = ["{key}", "sha256:{digest}"]

[jwt_providers.corp]
issuer = "https://corp.example"
audiences = ["api"]
algorithms = ["HS256"]
secret = "{hmac}"
leeway = "30s"
required_claims = ["sub"]
claims_to_headers = {{ "X-User" = "sub" }}

[oauth2_providers.idp]
upstream = "idp"
path = "/introspect"
client_id = "gateway"
client_secret = "{client_secret}"
timeout = "1s"
cache_ttl = "1m"
on_error = "unauthorized"

[[routes]]
name = "api"
path = "/api/{{*rest}}"
hosts = ["API.example.com"]
methods = ["GET", "POST"]
upstream = "app"
strip_prefix = "/api"
preserve_host = false
host_rewrite = "app.internal"
retry_non_idempotent = true
rate_limits = [
  {{ name = "per-ip", key = "client_ip", limit = 100, period = "1m" }},
  {{ name = "fleet", key = "header:X-Key", limit = 1000, period = "1h", scope = "cluster" }},
]
auth = {{ api_key = {{ header = "X-Key", query = "key" }}, jwt = {{ providers = ["corp"] }}, oauth2 = {{ provider = "idp", scopes = ["read"], method_scopes = {{ post = ["write"] }} }}, consumer_header = "X-Consumer" }}
access = {{ deny = ["10.1.0.0/16"] }}
cors = {{ allow_origins = ["https://app.example", "https://*.example.org"], allow_headers = ["X-Key"], expose_headers = ["X-Trace"], allow_credentials = true, max_age = "10m" }}

[[routes]]
name = "hello"
path = "/hello"
mock = {{ status = 200, headers = {{ "X-Mock" = "yes" }}, body = "hi" }}

[admin]
token = "{token}"
state_file = "{state}"

[observability]
log_level = "info"
request_id_header = "X-Req"
[observability.access_log]
format = "combined"
destination = "{log}"
sample = 0.5
[observability.metrics]
listen = "127.0.0.1:0"
[observability.tracing]
otlp_endpoint = "http://127.0.0.1:4318/v1/traces"
sample_ratio = 0.25
service_name = "edge"
queue_size = 100
batch_size = 10
flush_interval = "2s"

[cluster]
redis = {{ url = "redis://u:{redis_password}@127.0.0.1:1/2", timeout = "100ms", key_prefix = "edge:rl" }}
sync_interval = "100ms"
on_redis_error = "closed"
"#,
        key = SECRETS[0],
        digest = SECRETS[1],
        hmac = SECRETS[2],
        client_secret = SECRETS[3],
        redis_password = SECRETS[4],
        token = SECRETS[5],
        log = log.display(),
        state = state.display(),
    );
    let strait = Strait::start(&config);
    let answer = admin_with(&strait, "GET", "/config", Some(SECRETS[5]), None);
    assert_eq!(answer.status, 200);
    let body = answer.response.text();
    for secret in SECRETS {
        assert!(!body.contains(secret), "{secret} shown in {body}");
    }
    let view = answer.json;
    let doc = openapi();
    let schema = &doc["components"]["schemas"]["Config"];
    if let Err(why) = conforms(&doc, schema, &view, "config") {
        panic!("GET /config does not match docs/admin-openapi.json: {why}");
    }
    let sections: BTreeSet<&str> = view
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        sections,
        BTreeSet::from([
            "generation",
            "server",
            "upstreams",
            "routes",
            "consumers",
            "jwt_providers",
            "oauth2_providers",
            "admin",
            "observability",
            "cluster",
        ])
    );
    assert_eq!(view["generation"], 1);
    assert_eq!(
        view["server"],
        serde_json::json!({
            "listen": ["127.0.0.1:0"],
            "workers": 1,
            "limits": {
                "max_header_bytes": 16384,
                "max_headers": 100,
                "max_body_bytes": 2048,
                "max_uri_bytes": 8192,
            },
            "timeouts": {
                "header_read": "5s",
                "keepalive_idle": "60s",
                "body_read": "30s",
                "upstream_connect": "2s",
                "upstream_response": "30s",
                "drain": "30s",
                "client_send": "60s",
            },
            "access": {"allow": ["127.0.0.0/8", "::1/128"], "deny": ["127.0.0.2/32"]},
            "trusted_proxies": ["10.0.0.0/8"],
        })
    );
    let upstream = &view["upstreams"][0];
    // The verdict of the active checks is the checker's business; the rest is config.
    assert_eq!(
        upstream["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (
                e["addr"].as_str().unwrap().to_string(),
                e["weight"].clone(),
                e["source"].clone()
            ))
            .collect::<Vec<_>>(),
        [
            (
                a.to_string(),
                serde_json::json!(1),
                serde_json::json!("config")
            ),
            (
                format!("127.0.0.1:{b}"),
                serde_json::json!(2),
                serde_json::json!("config")
            ),
        ]
    );
    let mut upstream = upstream.clone();
    upstream.as_object_mut().unwrap().remove("endpoints");
    assert_eq!(
        upstream,
        serde_json::json!({
            "name": "app",
            "balance": "hash",
            "hash_key": "header:x-user",
            "active_health_checks": true,
            "pool": {"max_idle": 8, "idle_timeout": "30s"},
            "resolve_interval": "60s",
            "health": {
                "method": "GET",
                "path": "/health",
                "host": null,
                "expect": ["200", "204-299"],
                "interval": "10s",
                "timeout": "500ms",
                "healthy_threshold": 2,
                "unhealthy_threshold": 3,
            },
            "outlier": {
                "consecutive_failures": 3,
                "base_ejection": "10s",
                "max_ejection": "60s",
                "max_ejected_percent": 40,
            },
            "retry": {
                "attempts": 3,
                "on": ["reset", 503],
                "per_try_timeout": "2s",
                "timeout": "5s",
                "budget_percent": 10,
                "buffer_body": 1024,
            },
            "limits": {"max_connections": 100, "max_pending": 10, "max_requests": 50},
        })
    );
    assert_eq!(view["upstreams"][1]["name"], "idp");
    assert_eq!(view["upstreams"][1]["health"], Value::Null);
    assert_eq!(
        view["routes"],
        serde_json::json!([
            {
                "name": "api",
                "path": "/api/{*rest}",
                "hosts": ["api.example.com"],
                "methods": ["GET", "POST"],
                "action": {
                    "type": "proxy",
                    "upstream": "app",
                    "strip_prefix": "/api",
                    "preserve_host": false,
                    "host_rewrite": "app.internal",
                    "retry_non_idempotent": true,
                },
                "rate_limits": [
                    {"name": "per-ip", "key": "client_ip", "limit": 100, "period": "60s", "scope": "local"},
                    {"name": "fleet", "key": "header:x-key", "limit": 1000, "period": "3600s", "scope": "cluster"},
                ],
                "auth": {
                    "api_key": {"header": "x-key", "query": "key"},
                    "jwt": {"providers": ["corp"], "forward_token": null},
                    "oauth2": {
                        "provider": "idp",
                        "scopes": ["read"],
                        "method_scopes": {"POST": ["write"]},
                        "forward_token": false,
                        "scope_header": null,
                    },
                    "consumer_header": "x-consumer",
                },
                "access": {"allow": [], "deny": ["10.1.0.0/16"]},
                "cors": {
                    "allow_origins": ["https://app.example", "https://*.example.org"],
                    // The route's methods, HEAD with GET: what preflights are answered with.
                    "allow_methods": ["GET", "POST", "HEAD"],
                    "allow_headers": ["x-key"],
                    "expose_headers": ["x-trace"],
                    "allow_credentials": true,
                    "max_age": "600s",
                    "allow_private_network": false,
                },
            },
            {
                "name": "hello",
                "path": "/hello",
                "hosts": [],
                "methods": [],
                "action": {"type": "mock", "status": 200, "headers": {"X-Mock": "yes"}, "body_bytes": 2},
                "rate_limits": [],
                "auth": null,
                "access": null,
                "cors": null,
            },
        ])
    );
    assert_eq!(
        view["consumers"],
        serde_json::json!([{"name": "alice", "api_keys": ["***", "sha256:***"]}])
    );
    assert_eq!(
        view["jwt_providers"],
        serde_json::json!([{
            "name": "corp",
            "issuer": "https://corp.example",
            "audiences": ["api"],
            "algorithms": ["HS256"],
            "keys": {"source": "static", "count": 1},
            "leeway": "30s",
            "required_claims": ["sub"],
            "consumer_claim": "sub",
            "claims_to_headers": {"x-user": "sub"},
            "forward_token": false,
        }])
    );
    assert_eq!(
        view["oauth2_providers"],
        serde_json::json!([{
            "name": "idp",
            "upstream": "idp",
            "path": "/introspect",
            "host": null,
            "client_id": "gateway",
            "client_secret": "***",
            "timeout": "1s",
            "cache_ttl": "60s",
            "negative_cache_ttl": "10s",
            "cache_size": 10000,
            "consumer_claim": "sub",
            "audience": null,
            "issuer": null,
            "on_error": "unauthorized",
        }])
    );
    assert_eq!(
        view["admin"],
        serde_json::json!({
            "enabled": true,
            "listen": "127.0.0.1:9901",
            "token": "***",
            "state_file": state.display().to_string(),
        })
    );
    assert_eq!(
        view["observability"],
        serde_json::json!({
            "log_level": "info",
            "access_log": {"format": "combined", "destination": log.display().to_string(), "sample": 0.5},
            "metrics": {"listen": "127.0.0.1:0"},
            "request_id_header": "x-req",
            "tracing": {
                "otlp_endpoint": "http://127.0.0.1:4318/v1/traces",
                "sample_ratio": 0.25,
                "service_name": "edge",
                "queue_size": 100,
                "batch_size": 10,
                "flush_interval": "2s",
            },
        })
    );
    assert_eq!(
        view["cluster"],
        serde_json::json!({
            "redis": {
                "url": "redis://127.0.0.1:1/2",
                "username": "u",
                "password": "***",
                "timeout": "100ms",
                "key_prefix": "edge:rl",
            },
            "sync_interval": "100ms",
            "on_redis_error": "closed",
        })
    );
}

/// Checks `value` against `schema`, the subset of JSON Schema the OpenAPI document uses
/// (`$ref`, `type`, `enum`, `properties` with `required`, `additionalProperties`, `items`,
/// `oneOf`); `at` names the place in the error. Properties the schema does not list are an
/// error too, so a field added to a view must be documented.
fn conforms(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.trim_start_matches("#/components/schemas/");
        return conforms(doc, &doc["components"]["schemas"][name], value, at);
    }
    if let Some(options) = schema["oneOf"].as_array() {
        let results: Vec<_> = options
            .iter()
            .map(|option| conforms(doc, option, value, at))
            .collect();
        return match results.iter().filter(|r| r.is_ok()).count() {
            1 => Ok(()),
            0 => Err(results
                .into_iter()
                .filter_map(Result::err)
                .collect::<Vec<_>>()
                .join("; or ")),
            _ => Err(format!("{at}: {value} fits more than one of {schema}")),
        };
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let type_of = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    if !(types.is_empty()
        || types.contains(&type_of)
        || (type_of == "integer" && types.contains(&"number")))
    {
        return Err(format!("{at}: {value} is not {types:?}"));
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(value) {
            return Err(format!("{at}: {value} is not one of {allowed:?}"));
        }
    }
    match value {
        Value::Object(members) => {
            for name in schema["required"].as_array().into_iter().flatten() {
                let name = name.as_str().unwrap_or_default();
                if !members.contains_key(name) {
                    return Err(format!("{at}: {name} is missing"));
                }
            }
            for (name, member) in members {
                let at = format!("{at}.{name}");
                match (
                    schema["properties"].get(name),
                    schema.get("additionalProperties"),
                ) {
                    (Some(property), _) => conforms(doc, property, member, &at)?,
                    (None, Some(extra)) if extra.is_object() => conforms(doc, extra, member, &at)?,
                    _ => return Err(format!("{at} is not documented")),
                }
            }
        }
        Value::Array(items) if schema.get("items").is_some() => {
            for (i, item) in items.iter().enumerate() {
                conforms(doc, &schema["items"], item, &format!("{at}[{i}]"))?;
            }
        }
        _ => {}
    }
    Ok(())
}
