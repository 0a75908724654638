//! Whole-file tests of the assembly: every shipped config loads, a full config builds into
//! what it says, every error of a bad file is reported with its position, and TOML syntax
//! or unknown keys are reported alone.

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::config::router::RouteMatch;

const MINIMAL: &str = "[server]\nlisten = [\"127.0.0.1:8080\"]\n";

use crate::config::load_errors as errors;

#[test]
fn shipped_configs_load() {
    let mut files = Vec::new();
    for dir in ["conf", "conf/examples"] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                files.push(path);
            }
        }
    }
    assert!(files.len() >= 2, "{files:?}");
    for path in files {
        if let Err(err) = load(&path) {
            panic!("{}:\n{err}", path.display());
        }
    }
    load_str(EMBEDDED_DEFAULT, "<embedded default>").unwrap();
}

#[test]
fn example_gateway_routes() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/examples/api-gateway.toml");
    let config = load(&path).unwrap();
    let table = &config.routes;
    let cases: &[(Option<&str>, &str, &str, &str)] = &[
        (Some("api.example.com"), "GET", "/users/1", "users-read"),
        (
            Some("API.example.com:8080"),
            "HEAD",
            "/users/1",
            "users-read",
        ),
        (Some("api.example.com"), "DELETE", "/users/1", "users-write"),
        (Some("api.example.com"), "GET", "/users/", "users-read"),
        (Some("api.example.com"), "GET", "/users", "fallback"),
        (
            Some("api.example.com"),
            "GET",
            "/billing/x",
            "billing-maintenance",
        ),
        (Some("api.example.com"), "GET", "/healthz", "health"),
        (Some("api.example.com"), "POST", "/healthz", "405 GET, HEAD"),
        (Some("a.tenants.example.com"), "GET", "/x", "tenants"),
        // A more specific pattern beats a host-specific catch-all.
        (Some("a.tenants.example.com"), "GET", "/healthz", "health"),
        (Some("tenants.example.com"), "GET", "/users/1", "fallback"),
        (None, "GET", "/orders/1", "fallback"),
    ];
    for (host, method, path, want) in cases {
        let got = match table.lookup(host.map(str::as_bytes), method.as_bytes(), path) {
            RouteMatch::Found(route) => route.name.clone(),
            RouteMatch::MethodNotAllowed { allow } => format!("405 {allow}"),
            RouteMatch::NotFound => "404".to_owned(),
        };
        assert_eq!(&got, want, "{host:?} {method} {path}");
    }
    // A preflight goes to the route serving the method it asks about; with none
    // there, to the first route with cors (which refuses it); else to normal routing.
    let host = Some(&b"api.example.com"[..]);
    let preflights: &[(&str, &str, Option<&str>)] = &[
        ("PUT", "/users/1", Some("users-write")),
        ("GET", "/users/1", Some("users-read")),
        ("HEAD", "/users/1", Some("users-read")),
        ("TRACE", "/users/1", Some("users-read")),
        ("GET", "/orders/1", None),
        ("PUT", "/healthz", None),
        ("GET", "/nowhere", None),
    ];
    for (method, path, want) in preflights {
        let got = table.lookup_preflight(host, method.as_bytes(), path);
        assert_eq!(got.map(|r| r.name.as_str()), *want, "{method} {path}");
    }
    assert_eq!(config.server.trusted_proxies.len(), 1);
}

#[test]
fn full_config() {
    let text = r#"
[server]
listen = ["127.0.0.1:8080", "[::1]:8080"]
workers = 4
[server.limits]
max_body_bytes = 1024
max_header_bytes = "32KiB"
[server.timeouts]
header_read = "250ms"

[upstreams.users]
endpoints = ["127.0.0.1:9001", { addr = "127.0.0.1:9002", weight = 2 }]
[upstreams.users.pool]
max_idle = 8

[[routes]]
name = "users"
path = "/users/{*rest}"
methods = ["get", "post"]
hosts = ["API.example.com"]
upstream = "users"
strip_prefix = "/users"
host_rewrite = "users.internal"

[[routes]]
path = "/"
mock = { status = 200, headers = { content-type = "application/json" }, body = '{"a":1}' }

[[routes]]
path = "/empty"
mock = { status = 204, headers = { x-a = "b" } }
"#;
    let config = load_str(text, "t.toml").unwrap();
    assert_eq!(config.server.listen.len(), 2);
    assert_eq!(config.server.workers, 4);
    assert_eq!(config.server.limits.max_body_bytes, 1024);
    assert_eq!(config.server.limits.max_header_bytes, 32 * 1024);
    assert_eq!(
        config.server.timeouts.header_read,
        Duration::from_millis(250)
    );
    let users = &config.upstreams[0];
    assert_eq!(users.endpoints[1].weight, 2);
    assert_eq!(users.endpoints[0].weight, 1);
    assert_eq!(users.pool.max_idle, 8);
    assert_eq!(users.pool.idle_timeout, Duration::from_secs(60));

    let routes = config.routes.routes();
    assert_eq!(routes[0].name, "users");
    assert_eq!(routes[0].methods, vec!["GET", "POST"]);
    match &routes[0].action {
        Action::Proxy(p) => {
            assert_eq!(p.upstream, 0);
            assert_eq!(p.strip_prefix.as_deref(), Some("/users"));
            assert!(!p.preserve_host);
            assert_eq!(p.host_rewrite.as_deref(), Some("users.internal"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(routes[1].name, "routes[1]");
    match &routes[1].action {
        Action::Mock(m) => {
            assert_eq!(
                &m.head[..],
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 7\r\n"
            );
            assert_eq!(&m.body[..], br#"{"a":1}"#);
        }
        other => panic!("{other:?}"),
    }
    match &routes[2].action {
        Action::Mock(m) => assert_eq!(&m.head[..], b"HTTP/1.1 204 No Content\r\nx-a: b\r\n"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        config.routes.lookup(Some(b"api.example.com"), b"GET", "/users/1"),
        RouteMatch::Found(r) if r.name == "users"
    ));
}

#[test]
fn reports_every_error_with_position() {
    let text = r#"[server]
listen = ["127.0.0.1:8080", "nope", "127.0.0.1:8080"]
workers = -1
[server.limits]
max_body_bytes = "10 MiB"
max_headers = 0
[server.timeouts]
header_read = "0s"
body_read = "5"

[upstreams.users]
endpoints = ["127.0.0.1:9001", { addr = "127.0.0.1:9001" }, { addr = "1.2.3.4:1", weight = 0 }]
[upstreams.empty]
endpoints = []

[[routes]]
path = "/x"
upstream = "userz"

[[routes]]
path = "x"
mock = { status = 101, headers = { Content-Length = "1", "bad name" = "v", x-ok = "a\nb" } }

[[routes]]
path = "/y"
upstream = "users"
mock = { status = 200 }

[[routes]]
path = "/z"

[[routes]]
path = "/no-content"
methods = ["GET", "BAD METHOD"]
mock = { status = 204, body = "x", body_file = "f" }

[[routes]]
path = "/users/{*rest}"
upstream = "users"
strip_prefix = "/user"
preserve_host = true
host_rewrite = "a"

[[routes]]
path = "/a/{id}"
hosts = []
mock = { status = 200 }

[[routes]]
path = "/a/{name}"
hosts = ["a.com:80"]
mock = { status = 200 }

[[routes]]
path = "/dup"
mock = { status = 200 }

[[routes]]
path = "/dup"
mock = { status = 404, body_file = "does-not-exist.html" }
"#;
    let got = errors(text);
    let want = [
        "t.toml:2:29: server.listen[1]: invalid address \"nope\"",
        "t.toml:2:37: server.listen[2]: duplicate address \"127.0.0.1:8080\"",
        "t.toml:3:11: server.workers: -1 is out of range: must be at least 0",
        "t.toml:5:18: server.limits.max_body_bytes: invalid size \"10 MiB\"",
        "t.toml:6:15: server.limits.max_headers: 0 is out of range: must be 1..=256",
        "t.toml:8:15: server.timeouts.header_read: must be greater than zero",
        "t.toml:9:13: server.timeouts.body_read: invalid duration \"5\": missing unit",
        "t.toml:12:32: upstreams.users.endpoints[1]: duplicate endpoint \"127.0.0.1:9001\"",
        "t.toml:12:92: upstreams.users.endpoints[2].weight: 0 is out of range: must be 1..=1000",
        "t.toml:14:13: upstreams.empty.endpoints: at least one endpoint is required",
        "t.toml:18:12: routes[0].upstream: unknown upstream \"userz\" (known: empty, users)",
        "t.toml:21:8: routes[1].path: path \"x\" must start with '/'",
        "t.toml:22:19: routes[1].mock.status: 101 is not a final status",
        "t.toml:22:36: routes[1].mock.headers.Content-Length: \"Content-Length\" is set by strait",
        "t.toml:22:58: routes[1].mock.headers.bad name: invalid header name",
        "t.toml:22:83: routes[1].mock.headers.x-ok: invalid header value",
        "t.toml:27:8: routes[2].mock: set either `upstream` or `mock`, not both",
        "t.toml:29:1: routes[3]: no action",
        "t.toml:34:19: routes[4].methods[1]: invalid method \"BAD METHOD\"",
        "t.toml:35:48: routes[4].mock.body_file: set either `body` or `body_file`",
        "t.toml:40:16: routes[5].strip_prefix: \"/user\" must end at a '/' boundary",
        "t.toml:41:17: routes[5].preserve_host: `preserve_host = true` contradicts `host_rewrite`",
        "t.toml:46:9: routes[6].hosts: empty list",
        "t.toml:51:10: routes[7].hosts[0]: invalid host \"a.com:80\": must not include a port",
        "t.toml:59:8: routes[9].path: path \"/dup\" with any method conflicts with routes[8]: same hosts",
        "t.toml:60:36: routes[9].mock.body_file: cannot read \"does-not-exist.html\"",
    ];
    for (one, want) in got.iter().zip(want.iter()) {
        assert!(
            one.starts_with(want),
            "\n got: {one}\nwant: {want}\n all: {got:#?}"
        );
    }
    assert_eq!(got.len(), want.len(), "{got:#?}");
}

#[test]
fn syntax_and_unknown_keys() {
    let cases: &[(&str, &str)] = &[
        ("[server]\nlisten = [\"127.0.0.1:1\"]\nworkerz = 1\n", "t.toml:3:1: server.workerz: unknown field `workerz`"),
        ("[server]\nlisten = [\"127.0.0.1:1\"]\n[server.timeouts]\nheader_read = 5\n", "t.toml:4:15: server.timeouts.header_read: invalid type: integer `5`, expected a duration with a unit"),
        ("[server]\nlisten = [\"127.0.0.1:1\"]\n[[routes]]\npath = \"/\"\nmock = { status = 200, bdy = \"x\" }\n", "t.toml:5:24: routes[0].mock.bdy: unknown field `bdy`"),
        ("[server]\nlisten = [\"127.0.0.1:1\"]\n[upstreams.u]\nendpoints = [{ adr = \"1.2.3.4:5\" }]\n", "t.toml:4:16: upstreams.u.endpoints[0].adr: unknown field `adr`"),
        ("[server]\nlisten = [\"127.0.0.1:1\"]\n[upstreams.u]\nendpoints = [\"1.2.3.4:5\"]\n[upstreams.u.retry]\nattempt = 3\n", "t.toml:6:1: upstreams.u.retry.attempt: unknown field `attempt`"),
        ("[server]\nlisten = [\"127.0.0.1:1\"]\n[upstreams.u]\nendpoints = [\"1.2.3.4:5\"]\nhealth = { path = \"/\", intervall = \"1s\" }\n", "t.toml:5:24: upstreams.u.health.intervall: unknown field `intervall`"),
        ("[server]\nlisten = [\"127.0.0.1:1\"]\n[upstreams.u]\nendpoints = [\"1.2.3.4:5\"]\n[upstreams.u.retry]\non = \"reset\"\n", "t.toml:6:6: upstreams.u.retry.on: invalid type: string \"reset\", expected a sequence"),
        ("[server]\nlisten = [\"127.0.0.1:1\"\n", "t.toml:2:24: server.listen: unclosed array, expected `]`"),
        ("", "t.toml:1:1: missing field `server`"),
    ];
    for (text, want) in cases {
        let got = errors(text);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].starts_with(want), "\n got: {}\nwant: {want}", got[0]);
    }
}

#[test]
fn size_forms_and_body_file() {
    let dir = crate::scratch::ScratchDir::new("cfg");
    std::fs::write(dir.join("page.html"), "<p>hi</p>").unwrap();
    let text = format!(
        "{MINIMAL}[server.limits]\nmax_body_bytes = 1024\nmax_uri_bytes = \"1KB\"\n\
         [[routes]]\npath = \"/\"\nmock = {{ status = 503, body_file = \"page.html\" }}\n"
    );
    let origin = dir.join("strait.toml").display().to_string();
    let config = load_str(&text, &origin).unwrap();
    assert_eq!(config.server.limits.max_body_bytes, 1024);
    assert_eq!(config.server.limits.max_uri_bytes, 1000);
    match &config.routes.routes()[0].action {
        Action::Mock(m) => {
            assert_eq!(&m.body[..], b"<p>hi</p>");
            assert_eq!(
                &m.head[..],
                b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 9\r\n"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn missing_file_names_it() {
    let err = load(Path::new("/nonexistent/strait.toml")).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("/nonexistent/strait.toml: cannot read config file"),
        "{err}"
    );
}

#[test]
fn route_upgrades_and_tunnel_timeouts() {
    let route = |upgrades: &str| {
        format!(
            "{MINIMAL}[upstreams.u]\nendpoints = [\"1.2.3.4:5\"]\n\
             [[routes]]\npath = \"/ws\"\nupstream = \"u\"\nupgrades = {upgrades}\n"
        )
    };
    let config = load_str(&route("[\"websocket\"]"), "t.toml").unwrap();
    let websocket = |config: &Config| match &config.routes.routes()[0].action {
        Action::Proxy(p) => p.websocket,
        Action::Mock(_) | Action::Aggregate(_) => unreachable!("a proxy route"),
    };
    assert!(websocket(&config));
    assert_eq!(config.server.timeouts.tunnel_idle, Duration::from_secs(60));
    assert_eq!(config.server.timeouts.tunnel_lifetime, None);
    assert!(!websocket(&load_str(&route("[]"), "t.toml").unwrap()));

    let cases: &[(String, &str)] = &[
        (route("[\"h2c\"]"), "t.toml:8:13: routes[0].upgrades: \"h2c\" cannot be tunnelled"),
        (route("[\"websocket\", \"spdy\"]"), "t.toml:8:26: routes[0].upgrades: unknown upgrade \"spdy\" (known: websocket)"),
        (
            format!("{MINIMAL}[[routes]]\npath = \"/\"\nmock = {{ status = 200 }}\nupgrades = [\"websocket\"]\n"),
            "t.toml:6:12: routes[0].upgrades: only applies to routes with an `upstream`",
        ),
        (
            format!("{MINIMAL}[server.timeouts]\ntunnel_idle = \"0s\"\n"),
            "t.toml:4:15: server.timeouts.tunnel_idle: must be greater than zero",
        ),
        (
            format!("{MINIMAL}[server.timeouts]\ntunnel_lifetime = \"1\"\n"),
            "t.toml:4:19: server.timeouts.tunnel_lifetime: invalid duration \"1\": missing unit",
        ),
    ];
    for (text, want) in cases {
        let got = errors(text);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].starts_with(want), "\n got: {}\nwant: {want}", got[0]);
    }
    let config = load_str(
        &format!("{MINIMAL}[server.timeouts]\ntunnel_idle = \"5m\"\ntunnel_lifetime = \"1h\"\n"),
        "t.toml",
    )
    .unwrap();
    assert_eq!(config.server.timeouts.tunnel_idle, Duration::from_secs(300));
    assert_eq!(
        config.server.timeouts.tunnel_lifetime,
        Some(Duration::from_secs(3600))
    );
}
