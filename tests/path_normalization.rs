//! Path normalisation through the real binary: every other spelling of a guarded route's
//! path meets its API key, an ambiguous one is a 400, and the upstream receives exactly the
//! path Strait routed on (after `strip_prefix`), with the query byte for byte.

mod common;
use common::*;

const KEY: &str = "x-api-key: admin-secret-key-1\r\n";

/// `/admin/*` needs an API key; `/strip/*` loses its prefix; everything else is public.
fn config(upstream: std::net::SocketAddr, paths: &str) -> String {
    let extra = format!(
        r#"{paths}
[consumers.ops]
api_keys = ["admin-secret-key-1"]

[[routes]]
path = "/admin/{{*rest}}"
upstream = "app"
auth = {{ api_key = {{ header = "x-api-key" }} }}

[[routes]]
path = "/strip/{{*rest}}"
upstream = "app"
strip_prefix = "/strip"
"#
    );
    proxy_config(upstream, &extra)
}

/// Sends `GET target` (with `extra` header lines) and returns the status and the request
/// line the upstream received for it, if any.
fn exchange(
    strait: &Strait,
    upstream: &Upstream,
    target: &str,
    extra: &str,
) -> (u16, Option<String>) {
    let before = upstream.requests().len();
    let raw = format!("GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{extra}\r\n");
    let status = strait.request(raw.as_bytes()).status;
    let seen = upstream.requests();
    let forwarded = seen.get(before..).and_then(|new| match new {
        [] => None,
        [one] => Some(one.request_line().to_owned()),
        more => panic!("{target}: {} requests forwarded", more.len()),
    });
    (status, forwarded)
}

fn check(strait: &Strait, upstream: &Upstream, rows: &[(&str, bool, u16, Option<&str>)]) {
    let mut failures = Vec::new();
    for &(target, with_key, status, path) in rows {
        let got = exchange(strait, upstream, target, if with_key { KEY } else { "" });
        let want = (status, path.map(|p| format!("GET {p} HTTP/1.1")));
        if got != want {
            failures.push(format!(
                "{target} (key: {with_key}): got {got:?}, want {want:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_spelling_of_a_guarded_path_meets_its_key() {
    let upstream = Upstream::fixed("ok");
    let strait = Strait::start(&config(upstream.addr, ""));
    // (target, API key sent, status, path the upstream receives)
    let rows: &[(&str, bool, u16, Option<&str>)] = &[
        ("/public/x", false, 200, Some("/public/x")),
        ("/admin/x", false, 401, None),
        ("/admin/x", true, 200, Some("/admin/x")),
        // Dot-segments, plain and percent-encoded in any case.
        ("/public/../admin/x", false, 401, None),
        ("/public/../admin/x", true, 200, Some("/admin/x")),
        ("/public/%2e%2e/admin/x", false, 401, None),
        ("/public/%2E%2E/admin/x", false, 401, None),
        ("/public/.%2e/admin/x", false, 401, None),
        ("/public/%2e%2E/admin/x", true, 200, Some("/admin/x")),
        ("/admin/%2e/x", false, 401, None),
        ("/admin/%2e/x", true, 200, Some("/admin/x")),
        ("/./admin/x", false, 401, None),
        ("/admin/./x", true, 200, Some("/admin/x")),
        ("/public/./x/", false, 200, Some("/public/x/")),
        ("/a/b/..", false, 200, Some("/a/")),
        ("/a/b/../../x", false, 200, Some("/x")),
        ("/.well-known/x", false, 200, Some("/.well-known/x")),
        ("/...", false, 200, Some("/...")),
        // Above the root.
        ("/a/b/../../../x", false, 400, None),
        ("/..", false, 400, None),
        ("/%2e%2e/x", false, 400, None),
        // Encoded unreserved characters, and other escapes' case.
        ("/%61dmin/x", false, 401, None),
        ("/%61dmin/x", true, 200, Some("/admin/x")),
        ("/%61%64%6D%69%6E/x", false, 401, None),
        ("/%7euser/%2d_%2E", false, 200, Some("/~user/-_.")),
        ("/a%3fb", false, 200, Some("/a%3Fb")),
        ("/a%3Fb", false, 200, Some("/a%3Fb")),
        ("/caf%c3%a9", false, 200, Some("/caf%C3%A9")),
        ("/x%20y", false, 200, Some("/x%20y")),
        // Repeated slashes.
        ("//admin/x", false, 401, None),
        ("//admin/x", true, 200, Some("/admin/x")),
        ("/admin//x", true, 200, Some("/admin/x")),
        ("/public//x///y", false, 200, Some("/public/x/y")),
        // Escaped slashes are refused by default.
        ("/x%2Fy", false, 400, None),
        ("/x%2fy", false, 400, None),
        ("/x%5Cy", false, 400, None),
        ("/admin%2Fx", false, 400, None),
        // Control bytes and broken escapes.
        ("/x%00", false, 400, None),
        ("/x%0a", false, 400, None),
        ("/x%7f", false, 400, None),
        ("/%zz", false, 400, None),
        ("/x%", false, 400, None),
        ("/x%4", false, 400, None),
        // The query is never touched, and routing ignores it.
        ("/x?q=/../a", false, 200, Some("/x?q=/../a")),
        (
            "/x?q=%2e%2e//%2f%zz",
            false,
            200,
            Some("/x?q=%2e%2e//%2f%zz"),
        ),
        ("/a/../x?q=1", false, 200, Some("/x?q=1")),
        ("/public/../admin/x?k=v", false, 401, None),
        // Routes are case-sensitive: these are not the admin route.
        ("/ADMIN/x", false, 200, Some("/ADMIN/x")),
        ("/%41DMIN/x", false, 200, Some("/ADMIN/x")),
        // strip_prefix applies to the normal path.
        ("/strip/y", false, 200, Some("/y")),
        ("/public/../strip/./y", false, 200, Some("/y")),
        ("/strip//%79", false, 200, Some("/y")),
        // Absolute form: the path after the authority is normalised.
        ("http://t/public/../admin/x", false, 401, None),
        ("http://t/public/../admin/x", true, 200, Some("/admin/x")),
        ("http://t", false, 200, Some("/")),
    ];
    assert!(rows.len() >= 40);
    check(&strait, &upstream, rows);

    // `OPTIONS *` is left as it is: no route serves it, as before normalisation.
    let before = upstream.requests().len();
    let r = strait.request(b"OPTIONS * HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 404, "{}", r.head);
    assert_eq!(upstream.requests().len(), before);
}

#[test]
fn a_bad_path_is_an_ordinary_400_on_a_kept_connection() {
    let upstream = Upstream::fixed("ok");
    let strait = Strait::start(&config(upstream.addr, ""));
    let mut stream = strait.connect();
    use std::io::Write;
    stream
        .write_all(b"GET /x%2Fy HTTP/1.1\r\nHost: t\r\n\r\nGET /a/./b HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut reader = Reader::new(&mut stream);
    let bad = reader.read_response("GET").unwrap();
    assert_eq!(bad.status, 400, "{}", bad.head);
    assert_eq!(
        bad.text(),
        "{\"error\":\"invalid request path\",\"status\":400}\n"
    );
    assert_eq!(reader.read_response("GET").unwrap().status, 200);
    assert_eq!(upstream.last().request_line(), "GET /a/b HTTP/1.1");
    assert_eq!(upstream.requests().len(), 1);
}

#[test]
fn merge_slashes_off_forwards_empty_segments() {
    let upstream = Upstream::fixed("ok");
    let strait = Strait::start(&config(
        upstream.addr,
        "[server.paths]\nmerge_slashes = false\n",
    ));
    check(
        &strait,
        &upstream,
        &[
            // Not the admin route any more: routed, and forwarded, as spelt.
            ("//admin/x", false, 200, Some("//admin/x")),
            ("/public//x", false, 200, Some("/public//x")),
            ("/a//../b", false, 200, Some("/a/b")),
            ("/public/../admin/x", false, 401, None),
        ],
    );
}

#[test]
fn escaped_slash_actions_apply_on_reload() {
    let upstream = Upstream::fixed("ok");
    let strait = Strait::start(&config(upstream.addr, ""));
    assert_eq!(exchange(&strait, &upstream, "/x%2Fy", ""), (400, None));

    let reload = |action: &str| {
        strait.write_config(&config(
            upstream.addr,
            &format!("[server.paths]\nescaped_slashes = \"{action}\"\n"),
        ));
        strait.signal(libc::SIGHUP);
    };
    reload("keep");
    wait_until("escaped_slashes = \"keep\" to be served", || {
        exchange(&strait, &upstream, "/x%2fy", "").0 == 200
    });
    check(
        &strait,
        &upstream,
        &[
            ("/x%2fy", false, 200, Some("/x%2Fy")),
            ("/x%5cy", false, 200, Some("/x%5Cy")),
            // Data inside a segment: not the admin route's separator.
            ("/admin%2Fx", false, 200, Some("/admin%2Fx")),
        ],
    );

    reload("decode");
    wait_until("escaped_slashes = \"decode\" to be served", || {
        exchange(&strait, &upstream, "/x%2Fy", "").1.as_deref() == Some("GET /x/y HTTP/1.1")
    });
    check(
        &strait,
        &upstream,
        &[
            ("/x%2Fy", false, 200, Some("/x/y")),
            // A separator once decoded: the admin route, and its key.
            ("/admin%2Fx", false, 401, None),
            ("/public%2F..%2Fadmin/x", false, 401, None),
            ("/public%2F..%2Fadmin/x", true, 200, Some("/admin/x")),
            ("/a%2F..%2F..%2Fx", false, 400, None),
        ],
    );
}

#[test]
fn a_bad_action_is_a_config_error_naming_the_key() {
    let dir = scratch_dir();
    let path = dir.join("strait.toml");
    let text =
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[server.paths]\nescaped_slashes = \"allow\"\n";
    std::fs::write(&path, text).unwrap();
    let (status, text) = run_file_to_exit(&path, &["--check"]);
    assert!(!status.success(), "{text}");
    let want = format!(
        "{}:4:19: server.paths.escaped_slashes: unknown value \"allow\"",
        path.display()
    );
    assert!(text.contains(&want), "{text}");
}
