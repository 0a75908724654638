//! `GET /metrics` through the real binary: the Prometheus text on the admin API, its
//! process metrics across a reload, and the request counters after known traffic (a mock
//! route and a proxied route). `src/observe/metrics.rs` checks the exact rendering.

mod common;
use common::*;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A config with a mock route `hello` and a route `api` proxied to upstream `app`.
fn config(upstream: SocketAddr) -> String {
    hello_api_config(upstream, "")
}

/// Scrapes `GET /metrics` at `addr`: the samples by series (`name{labels}`), after
/// checking the status, the content type, and that every sample has a TYPE line.
fn scrape(addr: SocketAddr) -> BTreeMap<String, f64> {
    let mut stream = connect(addr);
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: admin\r\n\r\n")
        .unwrap();
    let response = read_response(&mut stream).expect("metrics response");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("content-type"), Some(CONTENT_TYPE));
    let text = response.text();
    let mut samples = BTreeMap::new();
    let mut families = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            families.push(rest.split(' ').next().unwrap().to_string());
        } else if !line.starts_with('#') {
            let (series, value) = line.rsplit_once(' ').expect("name value");
            let name = series.split('{').next().unwrap();
            assert!(
                families.iter().any(|f| name.starts_with(f.as_str())),
                "{line}: no TYPE"
            );
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
            assert!(
                samples.insert(series.to_string(), value).is_none(),
                "{line} twice"
            );
        }
    }
    samples
}

fn get(samples: &BTreeMap<String, f64>, series: &str) -> Option<f64> {
    samples.get(series).copied()
}

/// The samples of metric `name` (any labels).
fn family<'a>(samples: &'a BTreeMap<String, f64>, name: &str) -> Vec<(&'a str, f64)> {
    samples
        .iter()
        .filter(|(series, _)| series.split('{').next() == Some(name))
        .map(|(series, value)| (series.as_str(), *value))
        .collect()
}

#[test]
fn process_metrics_follow_reloads() {
    let up = Upstream::fixed("a");
    let strait = Strait::start(&config(up.addr));
    let admin = strait.admin_addr();
    let samples = scrape(admin);
    assert_eq!(get(&samples, "strait_config_generation"), Some(1.0));
    assert_eq!(
        get(&samples, "strait_config_last_reload_success"),
        Some(1.0)
    );
    let version = format!(
        "strait_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(get(&samples, &version), Some(1.0));
    let started = get(&samples, "strait_process_start_time_seconds").unwrap();
    let loaded = get(&samples, "strait_config_last_reload_timestamp_seconds").unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(started > now - 60.0 && started <= now, "{started} vs {now}");
    assert!(
        loaded >= started - 1.0 && loaded <= now,
        "{loaded} vs {now}"
    );

    // A good reload, then a bad one (the file no longer parses).
    let reload = |strait: &Strait| {
        let mut stream = connect(strait.admin_addr());
        stream
            .write_all(b"POST /reload HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
        read_response(&mut stream).unwrap().status
    };
    assert_eq!(reload(&strait), 200);
    let samples = scrape(admin);
    assert_eq!(get(&samples, "strait_config_generation"), Some(2.0));
    assert_eq!(
        get(&samples, "strait_config_last_reload_success"),
        Some(1.0)
    );
    std::fs::write(strait.dir.join("strait.toml"), "[server\n").unwrap();
    assert_eq!(reload(&strait), 400);
    let samples = scrape(admin);
    assert_eq!(get(&samples, "strait_config_generation"), Some(2.0));
    assert_eq!(
        get(&samples, "strait_config_last_reload_success"),
        Some(0.0)
    );
    assert!(get(&samples, "strait_config_last_reload_timestamp_seconds").unwrap() >= loaded);
}

#[test]
fn request_counters_after_known_traffic() {
    let up = Upstream::fixed("from upstream");
    let strait = Strait::start(&config(up.addr));
    for _ in 0..7 {
        let r = strait.request(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(r.status, 200);
    }
    for _ in 0..3 {
        let r =
            strait.request(b"POST /api/items HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
        assert_eq!(r.status, 200);
    }
    // A request is counted once its response is written, and a scrape sees it from the
    // worker's next tick: wait for all ten, then check exact values.
    let admin = strait.admin_addr();
    let count = |samples: &BTreeMap<String, f64>| {
        family(samples, "strait_request_duration_seconds_count")
            .iter()
            .map(|(_, v)| v)
            .sum::<f64>()
    };
    wait_until("ten requests counted", || count(&scrape(admin)) >= 10.0);
    let samples = scrape(admin);
    assert_eq!(count(&samples), 10.0);
    assert_eq!(
        family(&samples, "strait_requests_total"),
        [
            (
                r#"strait_requests_total{route="api",upstream="app",method="POST",code_class="2xx"}"#,
                3.0
            ),
            (
                r#"strait_requests_total{route="hello",upstream="",method="GET",code_class="2xx"}"#,
                7.0
            ),
        ]
    );
    assert_eq!(
        family(&samples, "strait_request_duration_seconds_count"),
        [
            (r#"strait_request_duration_seconds_count{route="api"}"#, 3.0),
            (
                r#"strait_request_duration_seconds_count{route="hello"}"#,
                7.0
            ),
        ]
    );
    assert_eq!(
        get(
            &samples,
            r#"strait_request_duration_seconds_bucket{route="hello",le="+Inf"}"#
        ),
        Some(7.0)
    );
    assert_eq!(
        get(
            &samples,
            r#"strait_upstream_duration_seconds_count{upstream="app"}"#
        ),
        Some(3.0)
    );
    assert_eq!(
        get(
            &samples,
            r#"strait_upstream_errors_total{upstream="app",kind="connect"}"#
        ),
        Some(0.0)
    );
    // One worker (the harness starts one): ten connections, all closed by now or soon.
    assert_eq!(
        get(
            &samples,
            r#"strait_worker_connections_accepted_total{worker="0"}"#
        ),
        Some(10.0)
    );
    let pool: f64 = family(&samples, "strait_upstream_pool_total")
        .iter()
        .map(|(_, v)| v)
        .sum();
    assert_eq!(pool, 3.0, "one pool take per proxied request");
    assert_eq!(get(&samples, "strait_config_generation"), Some(1.0));
}

/// The metric names (`strait_…`, up to the first character that cannot be in a name) in
/// `text`, histogram suffixes removed.
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("strait_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        names.insert(family.to_string());
        rest = &tail[end..];
    }
    names
}

/// docs/metrics.md lists every metric rendered, and the Grafana dashboard queries only
/// metrics that exist.
#[test]
fn docs_and_dashboard_name_the_served_metrics() {
    use strait::observe::metrics::{render, ProcessInfo, WorkerMetrics};
    let text = render(
        &[WorkerMetrics::new().snapshot()],
        &ProcessInfo {
            generation: 1,
            last_reload_ok: true,
            last_reload_unix: 0.0,
            start_unix: 0.0,
            version: "0",
            // Rendered only with [cluster]: here, so that their docs are checked too.
            redis: Some(strait::ratelimit::redis_sync::SyncStats {
                up: true,
                errors: 0,
                rounds: 0,
                dropped: 0,
            }),
            // Rendered only with TLS listeners: one, for the same reason.
            certificates: vec![strait::observe::metrics::CertificateExpiry {
                listener: "127.0.0.1:443".parse().unwrap(),
                file: "cert.pem".into(),
                name: "localhost".into(),
                not_after: 0,
            }],
            // Rendered only with [caches]: one, for the same reason.
            caches: vec![strait::observe::cache::StoreSize {
                cache: "main".into(),
                objects: 0,
                bytes: 0,
                capacity: 1,
                evictions: 0,
            }],
        },
    );
    let served: std::collections::BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect();
    assert_eq!(served.len(), 36);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let docs = std::fs::read_to_string(root.join("docs/metrics.md")).unwrap();
    let documented: std::collections::BTreeSet<String> = docs
        .lines()
        .filter(|l| l.starts_with("| `strait_"))
        .flat_map(metric_names)
        .collect();
    assert_eq!(documented, served, "the tables of docs/metrics.md");
    assert!(
        metric_names(&docs).is_subset(&served),
        "docs name a metric that does not exist"
    );

    let dashboard = std::fs::read_to_string(root.join("conf/grafana-dashboard.json")).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&dashboard).expect("valid JSON");
    assert!(parsed["panels"].as_array().is_some_and(|p| !p.is_empty()));
    let queried = metric_names(&dashboard);
    assert!(
        queried.is_subset(&served),
        "the dashboard queries unknown metrics: {:?}",
        queried.difference(&served).collect::<Vec<_>>()
    );
}

/// `observability.metrics.listen`: a listener of its own serving only `GET /metrics`,
/// without the admin token.
#[test]
fn metrics_only_listener_needs_no_token_and_serves_nothing_else() {
    let up = Upstream::fixed("a");
    let port = free_port();
    let strait = Strait::start(&config(up.addr).replace(
        "[upstreams.app]",
        &format!(
            "[admin]\ntoken = \"test-token-0123456789\"\n\
             [observability.metrics]\nlisten = \"127.0.0.1:{port}\"\n\n[upstreams.app]"
        ),
    ));
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_until("the metrics listener", || {
        std::net::TcpStream::connect(addr).is_ok()
    });
    let samples = scrape(addr);
    assert_eq!(get(&samples, "strait_config_generation"), Some(1.0));
    for (method, path, status) in [
        ("GET", "/healthz", 404),
        ("GET", "/config", 404),
        ("POST", "/metrics", 405),
    ] {
        let mut stream = connect(addr);
        stream
            .write_all(
                format!("{method} {path} HTTP/1.1\r\nHost: m\r\nContent-Length: 0\r\n\r\n")
                    .as_bytes(),
            )
            .unwrap();
        assert_eq!(
            read_response(&mut stream).unwrap().status,
            status,
            "{method} {path}"
        );
    }
    // The admin API still wants its token for the same route.
    let mut stream = connect(strait.admin_addr());
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: admin\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut stream).unwrap().status, 401);
}
