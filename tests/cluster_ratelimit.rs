//! Cluster-wide rate limits through the real binary: strait processes sharing a real
//! `redis-server` of the test's own (on a free loopback port, killed on drop). Accuracy of
//! the shared count, exact headers, the Redis keys and their TTL, independent keys, both
//! failure behaviours while Redis is down (killed, silent, refusing our password),
//! recovery, and a reload to another Redis.

mod common;
use common::*;

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use strait::ratelimit::redis_sync::resp::{encode, read_reply, Reply};

const LIMITED_BODY: &str = "{\"error\":\"rate limit exceeded\",\"status\":429}\n";
const UNAVAILABLE_BODY: &str = "{\"error\":\"rate limit unavailable\",\"status\":503}\n";
/// The sync interval of these tests, and the workers' tick.
const SYNC_MS: u64 = 50;
const TICK_MS: u64 = 20;

/// A `redis-server` of the test's own; killed (and its directory removed) on drop.
struct RedisServer {
    child: Child,
    port: u16,
    /// Its working directory, removed after the process is gone.
    _dir: ScratchDir,
}

impl RedisServer {
    /// Starts on a free port (another one if that port was taken meanwhile).
    fn start() -> RedisServer {
        let start = Instant::now();
        loop {
            if let Some(server) = RedisServer::try_start(free_port()) {
                return server;
            }
            assert!(start.elapsed() < DEADLINE, "no redis-server could start");
        }
    }

    /// Starts again on `port` (after a kill), waiting while something else holds it.
    fn start_on(port: u16) -> RedisServer {
        let start = Instant::now();
        loop {
            if let Some(server) = RedisServer::try_start(port) {
                return server;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "redis-server could not take port {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts without persistence and waits until it answers as itself (its `INFO` names
    /// its pid: the port may belong to another test's server); `None` if it exited.
    fn try_start(port: u16) -> Option<RedisServer> {
        let dir = scratch_dir();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        let mut server = RedisServer {
            child,
            port,
            _dir: dir,
        };
        let me = format!("process_id:{}\r\n", server.child.id());
        let mut exited = false;
        wait_until("redis-server to answer", || {
            exited = !matches!(server.child.try_wait(), Ok(None));
            exited
                || matches!(server.command(&["INFO", "server"]),
                    Ok(Reply::Bulk(Some(info))) if String::from_utf8_lossy(&info).contains(&me))
        });
        (!exited).then_some(server)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn command(&self, args: &[&str]) -> std::io::Result<Reply> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(DEADLINE))?;
        let mut out = Vec::new();
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        encode(&mut out, &args);
        stream.write_all(&out)?;
        read_reply(&mut BufReader::new(stream))
    }

    /// The names of the keys matching `pattern`.
    fn keys(&self, pattern: &str) -> Vec<String> {
        match self.command(&["KEYS", pattern]).unwrap() {
            Reply::Array(Some(keys)) => keys
                .into_iter()
                .map(|k| match k {
                    Reply::Bulk(Some(k)) => String::from_utf8(k).unwrap(),
                    other => panic!("{other:?}"),
                })
                .collect(),
            other => panic!("KEYS: {other:?}"),
        }
    }

    fn int(&self, args: &[&str]) -> i64 {
        match self.command(args).unwrap() {
            Reply::Int(n) => n,
            Reply::Bulk(Some(v)) => String::from_utf8(v).unwrap().parse().unwrap(),
            other => panic!("{args:?}: {other:?}"),
        }
    }

    /// Sum of the counters under `pattern`.
    fn total(&self, pattern: &str) -> i64 {
        self.keys(pattern)
            .iter()
            .map(|k| self.int(&["GET", k]))
            .sum()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(upstream: std::net::SocketAddr, redis: &str, on_error: &str, limit: &str) -> String {
    format!(
        r#"[server]
listen = ["127.0.0.1:0"]

[cluster]
redis = {{ url = "{redis}", timeout = "200ms" }}
sync_interval = "{SYNC_MS}ms"
on_redis_error = "{on_error}"

[upstreams.app]
endpoints = ["{upstream}"]

[[routes]]
name = "api"
path = "/api/{{*rest}}"
upstream = "app"
rate_limits = [{limit}]

[[routes]]
name = "free"
path = "/free"
upstream = "app"
"#
    )
}

fn get(path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{extra}\r\n").into_bytes()
}

fn scrape_value(strait: &Strait, name: &str) -> Option<f64> {
    metric_value(&strait.metrics(), name)
}

#[test]
fn two_nodes_share_one_limit() {
    let redis = RedisServer::start();
    let upstream = Upstream::fixed("ok");
    let limit = 60;
    let text = config(
        upstream.addr,
        &redis.url(),
        "open",
        &format!(
            r#"{{ name = "fleet", key = "header:x-tenant", limit = {limit}, period = "1m", scope = "cluster" }}"#
        ),
    );
    let nodes = [Strait::start(&text), Strait::start(&text)];
    // Requests alternate between the nodes at a steady pace (the load's shape, not a
    // synchronisation): about 200 per second, three times the limit in all.
    let pace = Duration::from_millis(5);
    let started = Instant::now();
    let (mut admitted, mut limited) = (0u64, 0u64);
    let sent = 3 * limit;
    for i in 0..sent {
        let r = nodes[i as usize % 2].request(&get("/api/x", "x-tenant: t1\r\n"));
        assert_eq!(r.header("x-ratelimit-limit"), Some("60"), "{}", r.head);
        assert_eq!(
            r.header("ratelimit-policy"),
            Some("\"fleet\";q=60;w=60"),
            "{}",
            r.head
        );
        let reset: u64 = r.header("x-ratelimit-reset").unwrap().parse().unwrap();
        assert!((1..=120).contains(&reset), "reset {reset}");
        match r.status {
            200 => {
                admitted += 1;
                assert_eq!(r.header("retry-after"), None);
            }
            429 => {
                limited += 1;
                assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
                assert_eq!(
                    r.header("ratelimit"),
                    Some(&*format!("\"fleet\";r=0;t={reset}"))
                );
                let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
                assert!((1..=120).contains(&retry), "retry-after {retry}");
                assert_eq!(r.header("content-type"), Some("application/json"));
                assert_eq!(r.text(), LIMITED_BODY);
            }
            other => panic!("status {other}: {}", r.head),
        }
        let due = started + pace * (i as u32 + 1);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let rate = sent as f64 / started.elapsed().as_secs_f64();
    // The documented bound: what the fleet serves while a count travels to the other node
    // (one sync interval, a tick on each side, and a round trip, taken as 10 ms here).
    let staleness = (SYNC_MS + 2 * TICK_MS + 10) as f64 / 1000.0;
    let bound = (rate * staleness).ceil() as u64;
    eprintln!(
        "two nodes, limit {limit}/min, {rate:.0} req/s: admitted {admitted} \
         (over-admission {}, bound {bound})",
        admitted.saturating_sub(limit)
    );
    assert!(
        (limit..=limit + bound).contains(&admitted),
        "admitted {admitted} of {limit} (bound +{bound}); logs:\n{}\n{}",
        nodes[0].log_text(),
        nodes[1].log_text()
    );
    assert_eq!(admitted + limited, sent);
    assert_eq!(upstream.requests().len() as u64, admitted);

    // Redis holds exactly the admitted requests, under keys that expire.
    let pattern = "strait:rl:api:fleet:t1:*";
    wait_until("every admitted request applied in redis", || {
        redis.total(pattern) == admitted as i64
    });
    for key in redis.keys(pattern) {
        let window: u64 = key.rsplit(':').next().unwrap().parse().unwrap();
        let now_window =
            strait::ratelimit::redis_sync::unix_ms(std::time::SystemTime::now()) / 60_000;
        assert!(now_window - window <= 1, "{key}");
        let ttl = redis.int(&["PTTL", &key]);
        assert!((1..=121_000).contains(&ttl), "{key}: ttl {ttl}");
    }

    // Another key is independent, on both nodes.
    for node in &nodes {
        let r = node.request(&get("/api/x", "x-tenant: t2\r\n"));
        assert_eq!(r.status, 200, "{}", r.head);
        let remaining: u64 = r.header("x-ratelimit-remaining").unwrap().parse().unwrap();
        assert!(remaining >= limit - 2, "remaining {remaining}");
    }
    // And a route without limits carries no rate-limit headers.
    let r = nodes[0].request(&get("/free", ""));
    assert_eq!((r.status, r.header("ratelimit")), (200, None));
}

#[test]
fn redis_down_open_falls_back_to_local_limits_then_resumes() {
    let redis = RedisServer::start();
    let port = redis.port;
    let upstream = Upstream::fixed("ok");
    let text = config(
        upstream.addr,
        &redis.url(),
        "open",
        r#"{ name = "fleet", key = "route", limit = 10, period = "1h", scope = "cluster" }"#,
    );
    let strait = Strait::start_with(&text, &["--workers", "2"]);
    let request = || strait.request(&get("/api/o", ""));
    // Cluster mode: one count for both workers. Back-to-back requests outrun a sync round,
    // so the bound here is the hard one: each worker alone never admits more than 10.
    let mut admitted = 0;
    wait_until("the cluster limit to deny", || {
        let r = request();
        assert_eq!(r.header("x-ratelimit-limit"), Some("10"), "{}", r.head);
        admitted += u32::from(r.status == 200);
        r.status == 429
    });
    assert!((10..=20).contains(&admitted), "admitted {admitted}");
    assert_eq!(scrape_value(&strait, "strait_cluster_redis_up"), Some(1.0));

    // Redis goes away: each worker falls back to ceil(10 / 2) = 5, with fresh buckets.
    drop(redis);
    // (Each worker notices at its own tick: a request may still meet one that has not.)
    let mut fallback = None;
    wait_until("the local fallback", || {
        let r = request();
        let found = r.status == 200 && r.header("x-ratelimit-limit") == Some("5");
        fallback = Some(r);
        found
    });
    let r = fallback.unwrap();
    assert_eq!(r.header("ratelimit-policy"), Some("\"fleet\";q=5;w=3600"));
    assert_eq!(r.header("ratelimit"), Some("\"fleet\";r=4;t=720"));
    assert_eq!(scrape_value(&strait, "strait_cluster_redis_up"), Some(0.0));
    assert!(scrape_value(&strait, "strait_cluster_redis_errors_total").unwrap() >= 1.0);
    // Each worker stops at its share: at most 2 x 5 admitted during the outage (the
    // request found above included), then a local 429.
    let mut admitted_in_outage = 1;
    wait_until("the fallback to deny", || {
        let r = request();
        if r.status == 200 {
            admitted_in_outage += 1;
        }
        r.status == 429 && r.header("x-ratelimit-limit") == Some("5")
    });
    assert!(admitted_in_outage <= 10, "admitted {admitted_in_outage}");

    // Redis is back (empty): cluster limiting resumes, and the outage's counts reach it.
    let redis = RedisServer::start_on(port);
    wait_until("cluster mode again", || {
        request().header("x-ratelimit-limit") == Some("10")
    });
    assert_eq!(scrape_value(&strait, "strait_cluster_redis_up"), Some(1.0));
    wait_until("counts in the new redis", || {
        redis.total("strait:rl:api:fleet:*") > 0
    });
    // The hour's requests (before and during the outage) still count: the cluster limit
    // denies again, with its cluster-wide headers.
    wait_until("the cluster limit to deny again", || {
        let r = request();
        r.status == 429 && r.header("ratelimit-policy") == Some("\"fleet\";q=10;w=3600")
    });
    let log = strait.log_text();
    assert_eq!(log.matches("redis unreachable").count(), 1, "{log}");
    assert_eq!(log.matches("redis reachable again").count(), 1, "{log}");
    assert!(
        log.contains("falling back to local per-worker limits"),
        "{log}"
    );
}

#[test]
fn redis_down_closed_answers_503() {
    let redis = RedisServer::start();
    let port = redis.port;
    let upstream = Upstream::fixed("ok");
    let text = config(
        upstream.addr,
        &redis.url(),
        "closed",
        r#"{ name = "fleet", key = "client_ip", limit = 1000, period = "1m", scope = "cluster" }"#,
    );
    let strait = Strait::start(&text);
    assert_eq!(strait.request(&get("/api/c", "")).status, 200);
    drop(redis);
    wait_until("503 while redis is down", || {
        strait.request(&get("/api/c", "")).status == 503
    });
    let r = strait.request(&get("/api/c", ""));
    assert_eq!(r.status, 503);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.text(), UNAVAILABLE_BODY);
    assert_eq!(r.header("x-ratelimit-limit"), None, "{}", r.head);
    // Routes without cluster limits are not affected.
    assert_eq!(strait.request(&get("/free", "")).status, 200);

    let _redis = RedisServer::start_on(port);
    wait_until("200 once redis is back", || {
        strait.request(&get("/api/c", "")).status == 200
    });
    let log = strait.log_text();
    assert!(
        log.contains("answering 503 on cluster-limited routes"),
        "{log}"
    );
}

#[test]
fn reload_follows_a_new_redis_url() {
    let first = RedisServer::start();
    let second = RedisServer::start();
    let upstream = Upstream::fixed("ok");
    let limit =
        r#"{ name = "fleet", key = "route", limit = 1000, period = "1m", scope = "cluster" }"#;
    let strait = Strait::start(&config(upstream.addr, &first.url(), "open", limit));
    assert_eq!(strait.request(&get("/api/r", "")).status, 200);
    wait_until("a count in the first redis", || {
        first.total("strait:rl:*") == 1
    });
    strait.write_config(&config(upstream.addr, &second.url(), "open", limit));
    strait.signal(libc::SIGHUP);
    let mut sent = 1;
    wait_until("counts in the second redis after the reload", || {
        assert_eq!(strait.request(&get("/api/r", "")).status, 200);
        sent += 1;
        second.total("strait:rl:*") > 0
    });
    // From then on, every count goes to the second one only, and none is lost.
    let before = first.total("strait:rl:*");
    for _ in 0..5 {
        assert_eq!(strait.request(&get("/api/r", "")).status, 200);
        sent += 1;
    }
    wait_until("every count in one redis or the other", || {
        first.total("strait:rl:*") + second.total("strait:rl:*") == sent
    });
    assert_eq!(
        first.total("strait:rl:*"),
        before,
        "the first redis is left alone"
    );
}

#[test]
fn timeouts_and_error_replies_count_as_unreachable() {
    let upstream = Upstream::fixed("ok");
    let limit =
        r#"{ name = "fleet", key = "route", limit = 1000, period = "1m", scope = "cluster" }"#;
    let request = |strait: &Strait| strait.request(&get("/api/e", "")).status;

    // A server that accepts and never answers: each round times out (200 ms).
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("redis://{}/0", silent.local_addr().unwrap());
    let strait = Strait::start(&config(upstream.addr, &silent_url, "closed", limit));
    wait_until("503 after a timeout", || request(&strait) == 503);
    assert_eq!(scrape_value(&strait, "strait_cluster_redis_up"), Some(0.0));
    drop(strait);

    // A Redis that wants a password: the wrong one is an error reply.
    let redis = RedisServer::start();
    assert_eq!(
        redis
            .command(&["CONFIG", "SET", "requirepass", "s3cret"])
            .unwrap(),
        Reply::Status("OK".into())
    );
    let wrong = format!("redis://:nope@127.0.0.1:{}/0", redis.port);
    let strait = Strait::start(&config(upstream.addr, &wrong, "closed", limit));
    wait_until("503 after an error reply", || request(&strait) == 503);
    let log = strait.log_text();
    assert!(log.contains("redis unreachable"), "{log}");
    assert!(!log.contains("nope"), "the password is never logged: {log}");
    drop(strait);

    // The right one, and another database: served, and the sync rounds succeed.
    let right = format!("redis://:s3cret@127.0.0.1:{}/2", redis.port);
    let strait = Strait::start(&config(upstream.addr, &right, "closed", limit));
    assert_eq!(request(&strait), 200);
    wait_until("successful sync rounds", || {
        scrape_value(&strait, "strait_cluster_redis_syncs_total").is_some_and(|n| n >= 2.0)
    });
    assert_eq!(request(&strait), 200);
    assert_eq!(scrape_value(&strait, "strait_cluster_redis_up"), Some(1.0));
    assert_eq!(
        scrape_value(&strait, "strait_cluster_redis_errors_total"),
        Some(0.0)
    );
}
