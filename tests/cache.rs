//! The response cache (RFC 9111) through the binary, against a real origin on loopback.
//! Staleness is made by the origin's own headers (an `Age` past `max-age`, a `Date` in
//! the past), never by waiting; the freshness arithmetic itself is unit-tested with the
//! time passed in (`src/cache/policy.rs`).

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::{
    check, connect, metric_value, read_response, wait_until, Reader, Received, Response, Strait,
    Upstream,
};

/// A config with upstream `app` at `upstream`, cache `main` and a caching catch-all route;
/// `cache` is the route's `cache` table's extra keys, `extra` goes after the route.
fn config(upstream: SocketAddr, cache: &str, extra: &str) -> String {
    format!(
        r#"[server]
listen = ["127.0.0.1:0"]

[upstreams.app]
endpoints = ["{upstream}"]

[caches.main]
memory = "16MiB"
max_object = "64KiB"

[[routes]]
name = "cached"
path = "/{{*rest}}"
upstream = "app"
cache = {{ name = "main"{cache} }}
{extra}"#
    )
}

fn get(strait: &Strait, path: &str, headers: &str) -> Response {
    strait.request(format!("GET {path} HTTP/1.1\r\nHost: example.com\r\n{headers}\r\n").as_bytes())
}

/// An origin answering every request with `status`, `headers` and a body naming how
/// many requests it has seen (so that a stored answer is told from a fresh one).
fn counting_origin(headers: &'static str) -> (Upstream, Arc<AtomicUsize>) {
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    let origin = Upstream::start(move |_| {
        let n = count.fetch_add(1, Ordering::SeqCst) + 1;
        let body = format!("answer {n}");
        format!(
            "HTTP/1.1 200 OK\r\n{headers}content-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    });
    (origin, seen)
}

fn cache_status(response: &Response) -> &str {
    response.header("cache-status").unwrap_or("")
}

#[test]
fn a_fresh_answer_is_served_from_the_store() {
    let (origin, seen) = counting_origin("cache-control: max-age=60\r\netag: \"v1\"\r\n");
    let strait = Strait::start(&config(origin.addr, "", ""));

    let first = get(&strait, "/a", "");
    assert_eq!((first.status, first.text().as_str()), (200, "answer 1"));
    assert_eq!(
        cache_status(&first),
        "strait; fwd=uri-miss; fwd-status=200; stored"
    );

    let second = get(&strait, "/a", "");
    assert_eq!((second.status, second.text().as_str()), (200, "answer 1"));
    assert!(
        cache_status(&second).starts_with("strait; hit; ttl="),
        "{}",
        second.head
    );
    assert!(second.header("age").is_some(), "{}", second.head);
    assert_eq!(second.header("etag"), Some("\"v1\""));
    assert_eq!(second.header("content-length"), Some("8"));
    // Each answer has its own request ID.
    assert_ne!(first.header("x-request-id"), second.header("x-request-id"));

    // HEAD is answered from the stored GET: its length, no body.
    let mut stream = strait.connect();
    stream
        .write_all(b"HEAD /a HTTP/1.1\r\nHost: example.com\r\n\r\n")
        .unwrap();
    let head = Reader::new(&mut stream).read_response("HEAD").unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("8"));
    assert!(head.body.is_empty());

    // Another URL, another host, another query are other keys.
    assert_eq!(get(&strait, "/a?x=1", "").text(), "answer 2");
    let other_host = strait.request(b"GET /a HTTP/1.1\r\nHost: other.example\r\n\r\n");
    assert_eq!(other_host.text(), "answer 3");
    assert_eq!(seen.load(Ordering::SeqCst), 3);

    let metrics = strait.metrics();
    let hits = metric_value(
        &metrics,
        "strait_cache_answers_total{cache=\"main\",result=\"hit\"}",
    );
    assert_eq!(hits, Some(2.0), "{metrics}");
    let misses = metric_value(
        &metrics,
        "strait_cache_answers_total{cache=\"main\",result=\"miss\"}",
    );
    assert_eq!(misses, Some(3.0));
    assert_eq!(
        metric_value(&metrics, "strait_cache_objects{cache=\"main\"}"),
        Some(3.0)
    );
}

#[test]
fn what_must_not_be_shared_is_not_stored() {
    let cases: &[(&str, &str, &str)] = &[
        ("cache-control: no-store\r\n", "", "no-store"),
        ("cache-control: private, max-age=60\r\n", "", "private"),
        (
            "cache-control: max-age=60\r\nset-cookie: s=1\r\n",
            "",
            "set-cookie",
        ),
        (
            "cache-control: max-age=60\r\n",
            "authorization: Bearer x\r\n",
            "authorization",
        ),
        ("cache-control: max-age=60\r\nvary: *\r\n", "", "vary"),
    ];
    for (response_headers, request_headers, detail) in cases {
        let (origin, seen) = counting_origin(response_headers);
        let strait = Strait::start(&config(origin.addr, "", ""));
        let first = get(&strait, "/p", request_headers);
        assert!(
            cache_status(&first).contains(&format!("detail={detail}")),
            "{detail}: {}",
            first.head
        );
        assert_eq!(
            get(&strait, "/p", request_headers).text(),
            "answer 2",
            "{detail}"
        );
        assert_eq!(seen.load(Ordering::SeqCst), 2, "{detail}");
    }
}

#[test]
fn variants_follow_vary_with_normalised_values() {
    let origin = Upstream::start(|r: &Received| {
        let coding = r.header("accept-encoding").unwrap_or_default();
        let body = format!("for [{coding}]");
        format!(
            "HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\nvary: Accept-Encoding\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    });
    let strait = Strait::start(&config(origin.addr, "", ""));
    let gzip = get(&strait, "/v", "accept-encoding: gzip, br\r\n");
    assert_eq!(gzip.text(), "for [gzip, br]");
    // The same set of codings in another order and spacing is the same variant.
    let same = get(&strait, "/v", "accept-encoding: br,gzip\r\n");
    assert_eq!(same.text(), "for [gzip, br]");
    assert!(
        cache_status(&same).starts_with("strait; hit"),
        "{}",
        same.head
    );
    let identity = get(&strait, "/v", "");
    assert_eq!(identity.text(), "for []");
    assert!(
        cache_status(&identity).contains("fwd=vary-miss"),
        "{}",
        identity.head
    );
    assert_eq!(origin.requests().len(), 2);
}

/// An origin whose answers are stale on arrival (`Age` past `max-age`) and that answers a
/// revalidation carrying its ETag with 304.
fn revalidating_origin(extra: &'static str) -> Upstream {
    Upstream::start(move |r: &Received| {
        if r.header("if-none-match").as_deref() == Some("\"v1\"") {
            return b"HTTP/1.1 304 Not Modified\r\netag: \"v1\"\r\ncache-control: max-age=60\r\nx-refreshed: yes\r\n\r\n".to_vec();
        }
        format!(
            "HTTP/1.1 200 OK\r\netag: \"v1\"\r\ncache-control: max-age=10{extra}\r\nage: 20\r\ncontent-length: 5\r\n\r\nhello"
        )
        .into_bytes()
    })
}

#[test]
fn a_stale_answer_is_revalidated_and_a_304_refreshes_it() {
    let origin = revalidating_origin("");
    let strait = Strait::start(&config(origin.addr, "", ""));
    let first = get(&strait, "/r", "");
    assert_eq!(first.text(), "hello");
    assert!(cache_status(&first).contains("stored"), "{}", first.head);

    let second = get(&strait, "/r", "");
    assert_eq!((second.status, second.text().as_str()), (200, "hello"));
    assert_eq!(
        cache_status(&second),
        "strait; fwd=stale; fwd-status=304",
        "{}",
        second.head
    );
    // The 304's fields update the stored head.
    assert_eq!(second.header("x-refreshed"), Some("yes"));
    let revalidation = origin.last();
    assert_eq!(
        revalidation.header("if-none-match").as_deref(),
        Some("\"v1\"")
    );

    let third = get(&strait, "/r", "");
    assert!(
        cache_status(&third).starts_with("strait; hit"),
        "{}",
        third.head
    );
    assert_eq!(third.text(), "hello");
    assert_eq!(origin.requests().len(), 2);

    // A client's own no-cache revalidates too.
    let forced = get(&strait, "/r", "cache-control: no-cache\r\n");
    assert_eq!(cache_status(&forced), "strait; fwd=request; fwd-status=304");
    assert_eq!(origin.requests().len(), 3);
}

#[test]
fn conditional_and_range_requests_are_answered_from_the_store() {
    let (origin, _) = counting_origin("cache-control: max-age=60\r\netag: \"v1\"\r\nlast-modified: Tue, 01 Dec 2026 10:00:00 GMT\r\n");
    let strait = Strait::start(&config(origin.addr, "", ""));
    assert_eq!(get(&strait, "/c", "").text(), "answer 1");

    let not_modified = get(&strait, "/c", "if-none-match: \"v0\", W/\"v1\"\r\n");
    assert_eq!(not_modified.status, 304, "{}", not_modified.head);
    assert!(not_modified.body.is_empty());
    assert_eq!(not_modified.header("etag"), Some("\"v1\""));
    let since = get(
        &strait,
        "/c",
        "if-modified-since: Wed, 02 Dec 2026 10:00:00 GMT\r\n",
    );
    assert_eq!(since.status, 304);
    let changed = get(&strait, "/c", "if-none-match: \"v2\"\r\n");
    assert_eq!((changed.status, changed.text().as_str()), (200, "answer 1"));

    let part = get(&strait, "/c", "range: bytes=2-4\r\n");
    assert_eq!(
        (part.status, part.text().as_str()),
        (206, "swe"),
        "{}",
        part.head
    );
    assert_eq!(part.header("content-range"), Some("bytes 2-4/8"));
    let suffix = get(&strait, "/c", "range: bytes=-2\r\n");
    assert_eq!((suffix.status, suffix.text().as_str()), (206, " 1"));
    let outside = get(&strait, "/c", "range: bytes=100-200\r\n");
    assert_eq!(outside.status, 416);
    assert_eq!(outside.header("content-range"), Some("bytes */8"));
    // If-Range with another validator: the whole answer.
    let whole = get(&strait, "/c", "range: bytes=0-1\r\nif-range: \"v0\"\r\n");
    assert_eq!((whole.status, whole.text().as_str()), (200, "answer 1"));
    assert_eq!(origin.requests().len(), 1);

    // A conditional or ranged miss is passed on as it is, and not stored.
    let miss = get(&strait, "/d", "range: bytes=0-1\r\n");
    assert!(
        cache_status(&miss).starts_with("strait; fwd=uri-miss"),
        "{}",
        miss.head
    );
    assert!(!cache_status(&miss).contains("stored"));
    assert_eq!(origin.last().header("range").as_deref(), Some("bytes=0-1"));
}

#[test]
fn a_stale_answer_stands_in_for_an_error_within_stale_if_error() {
    let failing = Arc::new(Mutex::new(false));
    let fail = failing.clone();
    let origin = Upstream::start(move |_| {
        if *fail.lock().unwrap() {
            return b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\n\r\ndown".to_vec();
        }
        b"HTTP/1.1 200 OK\r\ncache-control: max-age=1, stale-if-error=600\r\nage: 5\r\ncontent-length: 4\r\n\r\ngood".to_vec()
    });
    let strait = Strait::start(&config(origin.addr, "", ""));
    assert_eq!(get(&strait, "/e", "").text(), "good");
    *failing.lock().unwrap() = true;
    let stale = get(&strait, "/e", "");
    assert_eq!(
        (stale.status, stale.text().as_str()),
        (200, "good"),
        "{}",
        stale.head
    );
    assert_eq!(
        cache_status(&stale),
        "strait; fwd=stale; fwd-status=503; detail=stale-if-error"
    );

    // No answer at all (the origin gone) is an error too.
    let addr = origin.addr;
    drop(origin);
    wait_until("the origin to refuse connections", || {
        std::net::TcpStream::connect(addr).is_err()
    });
    let stale = get(&strait, "/e", "");
    assert_eq!(
        (stale.status, stale.text().as_str()),
        (200, "good"),
        "{}",
        stale.head
    );
    assert!(
        cache_status(&stale).contains("detail=stale-if-error"),
        "{}",
        stale.head
    );
    // Without stale-if-error, the error goes out.
    let fresh_error = get(&strait, "/never-stored", "");
    assert_eq!(fresh_error.status, 502);
}

#[test]
fn a_burst_of_misses_makes_one_upstream_request() {
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    // A slow origin: the burst arrives while the first fill is under way.
    let origin = Upstream::start(move |_| {
        count.fetch_add(1, Ordering::SeqCst);
        thread::sleep(Duration::from_millis(300));
        b"HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\ncontent-length: 4\r\n\r\nslow".to_vec()
    });
    let strait = Strait::start_with(&config(origin.addr, "", ""), &["--workers", "2"]);
    let addr = strait.addr;
    let clients: Vec<_> = (0..8)
        .map(|_| {
            thread::spawn(move || {
                let mut stream = connect(addr);
                stream
                    .write_all(b"GET /burst HTTP/1.1\r\nHost: example.com\r\n\r\n")
                    .unwrap();
                read_response(&mut stream).unwrap()
            })
        })
        .collect();
    for client in clients {
        let response = client.join().unwrap();
        assert_eq!((response.status, response.text().as_str()), (200, "slow"));
    }
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    let metrics = strait.metrics();
    let coalesced = metric_value(&metrics, "strait_cache_coalesced_total{cache=\"main\"}");
    assert!(coalesced.is_some_and(|n| n >= 1.0), "{metrics}");
}

#[test]
fn purges_reach_the_store_before_they_are_acknowledged() {
    let (origin, seen) = counting_origin(
        "cache-control: max-age=60\r\netag: \"e\"\r\nsurrogate-key: product-1 list\r\n",
    );
    let strait = Strait::start(&config(origin.addr, ", purge_from = [\"127.0.0.1\"]", ""));
    let admin = strait.admin_addr();
    let purge = |body: &str| -> Response {
        let mut stream = connect(admin);
        let request = format!(
            "POST /caches/main/purge HTTP/1.1\r\nHost: admin\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).unwrap();
        read_response(&mut stream).unwrap()
    };
    let fill = |path: &str| get(&strait, path, "").text();

    fill("/products/1");
    fill("/products/2");
    assert_eq!(seen.load(Ordering::SeqCst), 2);

    // One URL.
    let answer = purge(r#"{"url": "http://example.com/products/1"}"#);
    assert_eq!(
        (answer.status, answer.text().trim()),
        (200, r#"{"purged":1,"soft":false}"#)
    );
    assert_eq!(fill("/products/1"), "answer 3");
    assert_eq!(fill("/products/2"), "answer 2");

    // A prefix.
    let answer = purge(r#"{"prefix": "http://example.com/products/"}"#);
    assert_eq!(answer.text().trim(), r#"{"purged":2,"soft":false}"#);
    assert_eq!(fill("/products/2"), "answer 4");

    // Tags the origin attached.
    let answer = purge(r#"{"tags": ["product-1"]}"#);
    assert_eq!(answer.text().trim(), r#"{"purged":1,"soft":false}"#);

    // Soft: kept, but revalidated before use.
    assert_eq!(fill("/products/2"), "answer 5");
    let answer = purge(r#"{"url": "http://example.com/products/2", "soft": true}"#);
    assert_eq!(answer.text().trim(), r#"{"purged":1,"soft":true}"#);
    let revalidated = get(&strait, "/products/2", "");
    assert!(
        cache_status(&revalidated).starts_with("strait; fwd=stale"),
        "{}",
        revalidated.head
    );
    assert_eq!(
        origin.last().header("if-none-match").as_deref(),
        Some("\"e\"")
    );

    // Bad bodies and names.
    assert_eq!(purge(r#"{"url": "x", "prefix": "y"}"#).status, 400);
    assert_eq!(purge("{").status, 400);
    let mut stream = connect(admin);
    stream
        .write_all(
            b"POST /caches/nope/purge HTTP/1.1\r\nHost: admin\r\ncontent-length: 2\r\n\r\n{}",
        )
        .unwrap();
    assert_eq!(read_response(&mut stream).unwrap().status, 404);

    // PURGE from a listed address.
    fill("/products/3");
    let purged = strait.request(b"PURGE /products/3 HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_eq!(
        (purged.status, purged.text().trim()),
        (200, r#"{"purged":1}"#)
    );
    let before = seen.load(Ordering::SeqCst);
    fill("/products/3");
    assert_eq!(seen.load(Ordering::SeqCst), before + 1);
}

#[test]
fn purge_is_refused_to_unlisted_addresses() {
    let (origin, _) = counting_origin("cache-control: max-age=60\r\n");
    let strait = Strait::start(&config(origin.addr, ", purge_from = [\"10.0.0.0/8\"]", ""));
    let refused = strait.request(b"PURGE /x HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_eq!(refused.status, 403);
}

#[test]
fn unsafe_methods_invalidate_the_url_when_they_succeed() {
    let (origin, seen) = counting_origin("cache-control: max-age=60\r\n");
    let strait = Strait::start(&config(origin.addr, "", ""));
    assert_eq!(get(&strait, "/u", "").text(), "answer 1");
    assert_eq!(get(&strait, "/u", "").text(), "answer 1");
    let post =
        strait.request(b"POST /u HTTP/1.1\r\nHost: example.com\r\ncontent-length: 2\r\n\r\nhi");
    assert_eq!(post.status, 200);
    assert_eq!(get(&strait, "/u", "").text(), "answer 3");
    assert_eq!(seen.load(Ordering::SeqCst), 3);
}

#[test]
fn large_answers_stream_through_and_are_not_stored() {
    let big = "x".repeat(100 * 1024);
    let chunked_body = big.clone();
    let origin = Upstream::start(move |r: &Received| {
        if r.request_line().contains("/chunked") {
            let mut out = b"HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
            for piece in chunked_body.as_bytes().chunks(16 * 1024) {
                out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                out.extend_from_slice(piece);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
            return out;
        }
        format!(
            "HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\ncontent-length: {}\r\n\r\n{}",
            big.len(),
            big
        )
        .into_bytes()
    });
    let strait = Strait::start(&config(origin.addr, "", ""));
    for path in ["/length", "/chunked"] {
        let first = get(&strait, path, "");
        assert_eq!(first.body.len(), 100 * 1024, "{path}");
        let second = get(&strait, path, "");
        assert_eq!(second.body.len(), 100 * 1024, "{path}");
        assert!(
            !cache_status(&second).contains("hit"),
            "{path}: {}",
            second.head
        );
    }
    assert!(cache_status(&get(&strait, "/length", "")).contains("detail=too-large"));
    assert_eq!(origin.requests().len(), 5);
}

#[test]
fn only_if_cached_gets_504_on_a_miss() {
    let (origin, seen) = counting_origin("cache-control: max-age=60\r\n");
    let strait = Strait::start(&config(origin.addr, "", ""));
    let miss = get(&strait, "/o", "cache-control: only-if-cached\r\n");
    assert_eq!(miss.status, 504);
    assert_eq!(seen.load(Ordering::SeqCst), 0);
    get(&strait, "/o", "");
    let hit = get(&strait, "/o", "cache-control: only-if-cached\r\n");
    assert_eq!(hit.status, 200);
}

#[test]
fn the_key_can_sort_the_query_and_includes_the_consumer_on_authenticated_routes() {
    let (origin, seen) = counting_origin("cache-control: public, max-age=60\r\n");
    let extra = r#"
[consumers.alice]
api_keys = ["alice-key"]
[consumers.bob]
api_keys = ["bob-key"]
"#;
    let cfg = config(
        origin.addr,
        ", key = { query = \"sorted\", ignore_params = [\"utm_source\"] }",
        extra,
    )
    .replace(
        "upstream = \"app\"\ncache",
        "upstream = \"app\"\nauth = { api_key = {} }\ncache",
    );
    let strait = Strait::start(&cfg);
    let as_alice = |path: &str| get(&strait, path, "x-api-key: alice-key\r\n").text();
    assert_eq!(as_alice("/k?b=2&a=1"), "answer 1");
    assert_eq!(as_alice("/k?a=1&b=2&utm_source=mail"), "answer 1");
    // Another consumer never gets alice's answer.
    assert_eq!(
        get(&strait, "/k?a=1&b=2", "x-api-key: bob-key\r\n").text(),
        "answer 2"
    );
    assert_eq!(get(&strait, "/k?a=1&b=2", "").status, 401);
    assert_eq!(seen.load(Ordering::SeqCst), 2);
}

#[test]
fn the_store_survives_a_reload_and_the_access_log_says_how_the_cache_took_part() {
    let (origin, seen) = counting_origin("cache-control: max-age=60\r\n");
    let log_config = "\n[observability.access_log]\nformat = \"json\"\ndestination = \"stderr\"\n";
    let cfg = config(origin.addr, "", log_config);
    let strait = Strait::start(&cfg);
    get(&strait, "/s", "");
    strait.write_config(&format!("{cfg}\n# edited\n"));
    strait.signal(libc::SIGHUP);
    wait_until("the reload", || {
        strait.log_text().contains("config reloaded")
    });
    let after = get(&strait, "/s", "");
    assert!(
        cache_status(&after).starts_with("strait; hit"),
        "{}",
        after.head
    );
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    wait_until("the access log lines", || {
        strait.log_text().contains("\"cache\":\"hit\"")
    });
    assert!(strait.log_text().contains("\"cache\":\"miss\""));
}

#[test]
fn bad_cache_config_names_the_key() {
    let (origin, _) = counting_origin("");
    let renamed = config(origin.addr, "", "").replace("name = \"main\"", "name = \"other\"");
    let cases: &[(String, &str)] = &[
        (
            config(origin.addr, ", key = { query = \"shuffled\" }", ""),
            "routes[0].cache.key.query: \"shuffled\"",
        ),
        (
            config(origin.addr, ", purge_from = [\"nope\"]", ""),
            "routes[0].cache.purge_from[0]",
        ),
        (
            renamed,
            "routes[0].cache.name: unknown cache \"other\" (known: main)",
        ),
    ];
    for (config, want) in cases {
        let (accepted, text) = check(config);
        assert!(!accepted && text.contains(want), "{want}: {text}");
    }
    assert!(check(&config(origin.addr, "", "")).0);
}

#[test]
fn stale_while_revalidate_answers_at_once_and_refreshes_in_the_background() {
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    let origin = Upstream::start(move |r: &Received| {
        let n = count.fetch_add(1, Ordering::SeqCst) + 1;
        if n == 1 {
            // Stale on arrival, within stale-while-revalidate.
            return b"HTTP/1.1 200 OK\r\ncache-control: max-age=1, stale-while-revalidate=600\r\nage: 5\r\netag: \"v1\"\r\ncontent-length: 2\r\n\r\nv1".to_vec();
        }
        assert_eq!(r.header("if-none-match").as_deref(), Some("\"v1\""));
        b"HTTP/1.1 200 OK\r\ncache-control: max-age=600\r\netag: \"v2\"\r\ncontent-length: 2\r\n\r\nv2".to_vec()
    });
    let strait = Strait::start(&config(origin.addr, "", ""));
    assert_eq!(get(&strait, "/w", "").text(), "v1");
    let stale = get(&strait, "/w", "");
    assert_eq!(stale.text(), "v1");
    assert!(
        cache_status(&stale).contains("detail=stale-while-revalidate"),
        "{}",
        stale.head
    );
    wait_until("the background revalidation", || {
        seen.load(Ordering::SeqCst) == 2 && get(&strait, "/w", "").text() == "v2"
    });
    let fresh = get(&strait, "/w", "");
    assert!(
        cache_status(&fresh).starts_with("strait; hit"),
        "{}",
        fresh.head
    );
    assert_eq!(seen.load(Ordering::SeqCst), 2);
}
