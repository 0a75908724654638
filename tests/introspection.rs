//! OAuth2 bearer tokens checked by introspection (RFC 7662) through the real binary: a
//! small authorization server on a thread answers from a table of tokens and records what
//! it receives; the tests check the exact 401/403/503 answers, what reaches the upstream,
//! scopes per method, caching (positive, negative, until `exp`) and the behaviour while
//! the authorization server is down or answers nonsense.

mod common;
use common::*;

use std::collections::HashMap;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{SystemTime, UNIX_EPOCH};

const UNAUTHORIZED_BODY: &str = "{\"error\":\"missing or invalid credentials\",\"status\":401}\n";
const FORBIDDEN_BODY: &str = "{\"error\":\"insufficient scope\",\"status\":403}\n";
const UNAVAILABLE_BODY: &str = "{\"error\":\"authorization server unavailable\",\"status\":503}\n";
/// `gateway` : `s3cret!`, form-encoded then base64 (RFC 6749 §2.3.1).
const BASIC: &str = "Basic Z2F0ZXdheTpzM2NyZXQlMjE=";

/// How the authorization server answers.
#[derive(Clone)]
enum Mode {
    /// From the token table; unknown tokens are inactive.
    Table,
    /// The same, with a chunked body in two chunks.
    Chunked,
    /// A 200 whose body is larger than the gateway accepts.
    Huge,
    Status(u16),
    Garbage,
    /// Never answers (the connection stays open).
    Silent,
}

/// A token's answer: a JSON object, or one whose `exp` is `now + secs` when asked.
#[derive(Clone)]
enum Answer {
    Json(&'static str),
    ExpiresIn { sub: &'static str, secs: u64 },
}

#[derive(Default)]
struct Seen {
    /// (head, body) of every introspection request.
    requests: Vec<(String, String)>,
    /// Connections accepted.
    connections: usize,
    /// While set, answers wait (see [`AuthServer::hold`]).
    held: bool,
}

struct AuthServer {
    addr: SocketAddr,
    tokens: Arc<Mutex<HashMap<String, Answer>>>,
    mode: Arc<Mutex<Mode>>,
    seen: Arc<(Mutex<Seen>, Condvar)>,
    stopped: Arc<AtomicBool>,
}

impl AuthServer {
    fn start() -> AuthServer {
        AuthServer::start_on(
            "127.0.0.1:0".parse().unwrap(),
            Arc::default(),
            Arc::new(Mutex::new(Mode::Table)),
            Arc::default(),
        )
    }

    fn start_on(
        addr: SocketAddr,
        tokens: Arc<Mutex<HashMap<String, Answer>>>,
        mode: Arc<Mutex<Mode>>,
        seen: Arc<(Mutex<Seen>, Condvar)>,
    ) -> AuthServer {
        let listener = TcpListener::bind(addr).unwrap();
        let addr = listener.local_addr().unwrap();
        let stopped = Arc::new(AtomicBool::new(false));
        let server = AuthServer {
            addr,
            tokens,
            mode,
            seen,
            stopped,
        };
        let (tokens, mode, seen, stopped) = (
            server.tokens.clone(),
            server.mode.clone(),
            server.seen.clone(),
            server.stopped.clone(),
        );
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return; // drops the listener: connections are refused
                }
                let Ok(stream) = stream else { continue };
                seen.0.lock().unwrap().connections += 1;
                let (tokens, mode, seen, stopped) =
                    (tokens.clone(), mode.clone(), seen.clone(), stopped.clone());
                thread::spawn(move || serve(stream, &tokens, &mode, &seen, &stopped));
            }
        });
        server
    }

    /// Stops accepting and closes every connection at its next request.
    fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }

    /// A new server on the same address, table and record.
    fn restart(&self) -> AuthServer {
        AuthServer::start_on(
            self.addr,
            self.tokens.clone(),
            self.mode.clone(),
            self.seen.clone(),
        )
    }

    fn token(&self, token: &str, answer: Answer) {
        self.tokens.lock().unwrap().insert(token.into(), answer);
    }

    fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// Holds every answer until [`AuthServer::release`].
    fn hold(&self) {
        self.seen.0.lock().unwrap().held = true;
    }

    fn release(&self) {
        self.seen.0.lock().unwrap().held = false;
        self.seen.1.notify_all();
    }

    fn hits(&self) -> usize {
        self.seen.0.lock().unwrap().requests.len()
    }

    fn requests(&self) -> Vec<(String, String)> {
        self.seen.0.lock().unwrap().requests.clone()
    }
}

fn serve(
    mut stream: TcpStream,
    tokens: &Mutex<HashMap<String, Answer>>,
    mode: &Mutex<Mode>,
    seen: &(Mutex<Seen>, Condvar),
    stopped: &AtomicBool,
) {
    let mut reader_stream = stream.try_clone().unwrap();
    let mut reader = Reader::new(&mut reader_stream);
    loop {
        let Ok(head) = reader.read_head() else { return };
        if stopped.load(Ordering::SeqCst) {
            return;
        }
        let len = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse::<usize>().unwrap())
            })
            .unwrap_or(0);
        let Ok(body) = reader.read_exact_vec(len) else {
            return;
        };
        let body = String::from_utf8(body).unwrap();
        seen.0.lock().unwrap().requests.push((head, body.clone()));
        let token = body
            .split('&')
            .find_map(|pair| pair.strip_prefix("token="))
            .unwrap_or("")
            .to_owned();
        let (lock, released) = seen;
        drop(
            released
                .wait_while(lock.lock().unwrap(), |seen| seen.held)
                .unwrap(),
        );
        let mode = mode.lock().unwrap().clone();
        let (status, json) = match mode {
            Mode::Silent => continue,
            Mode::Status(status) => (status, "{\"error\":\"server_error\"}".to_owned()),
            Mode::Garbage => (200, "<html>not json</html>".to_owned()),
            Mode::Huge => (
                200,
                format!("{{\"active\":true,\"sub\":\"{}\"}}", "a".repeat(70_000)),
            ),
            Mode::Table | Mode::Chunked => {
                let answer = tokens.lock().unwrap().get(&token).cloned();
                let json = match answer {
                    None => "{\"active\":false}".to_owned(),
                    Some(Answer::Json(json)) => json.to_owned(),
                    Some(Answer::ExpiresIn { sub, secs }) => format!(
                        "{{\"active\":true,\"sub\":\"{sub}\",\"scope\":\"read\",\"exp\":{}}}",
                        unix_now() + secs
                    ),
                };
                (200, json)
            }
        };
        let response = if matches!(mode, Mode::Chunked) {
            let (a, b) = json.split_at(json.len() / 2);
            format!(
                "HTTP/1.1 {status} X\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
                a.len(),
                b.len()
            )
        } else {
            format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{json}",
                json.len()
            )
        };
        if stream.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A gateway with routes `/api/*` (scope `read`), `/items` (per-method scopes), `/both`
/// (API key or token), `/fwd` (token forwarded), `/limited` (consumer rate limit), `/mixed`
/// (a JWT of [`JWT_SECRET`], else introspection).
fn config(app: SocketAddr, authz: SocketAddr, secret_file: &str, provider_extra: &str) -> String {
    format!(
        r#"[server]
listen = ["127.0.0.1:0"]

[upstreams.app]
endpoints = ["{app}"]

[upstreams.authz]
endpoints = ["{authz}"]

[oauth2_providers.idp]
upstream = "authz"
path = "/oauth2/introspect"
client_id = "gateway"
client_secret_file = "{secret_file}"
{provider_extra}

[jwt_providers.local]
secret = "{JWT_SECRET}"

[consumers.carol]
api_keys = ["carol-key"]

[[routes]]
path = "/api/{{*rest}}"
upstream = "app"
auth = {{ oauth2 = {{ provider = "idp", scopes = ["read"], scope_header = "x-scopes" }}, consumer_header = "x-consumer" }}

[[routes]]
path = "/items"
upstream = "app"
auth = {{ oauth2 = {{ provider = "idp", scopes = ["admin"], method_scopes = {{ GET = ["read"], POST = ["write", "read"] }} }} }}

[[routes]]
path = "/both"
upstream = "app"
auth = {{ api_key = {{}}, oauth2 = {{ provider = "idp" }} }}

[[routes]]
path = "/fwd"
upstream = "app"
auth = {{ oauth2 = {{ provider = "idp", forward_token = true }} }}

[[routes]]
path = "/limited"
upstream = "app"
auth = {{ oauth2 = {{ provider = "idp" }} }}
rate_limits = [{{ name = "per-consumer", key = "consumer", limit = 1, period = "1h" }}]

[[routes]]
path = "/mixed"
upstream = "app"
auth = {{ jwt = {{ providers = ["local"] }}, oauth2 = {{ provider = "idp" }} }}
"#
    )
}

/// The HMAC secret of the `local` JWT provider.
const JWT_SECRET: &str = "a-local-jwt-secret-of-32-bytes-or-more";

fn hs256(secret: &str, sub: &str) -> String {
    let claims = serde_json::json!({ "sub": sub, "exp": unix_now() + 600 });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

struct Setup {
    app: Upstream,
    authz: AuthServer,
    strait: Strait,
    secrets: ScratchDir,
}

/// Long caches, so that a test sees every introspection it causes.
const CACHED: &str = "cache_ttl = \"1h\"\nnegative_cache_ttl = \"1h\"";

fn setup(provider_extra: &str) -> Setup {
    let app = Upstream::fixed("ok");
    let authz = AuthServer::start();
    authz.token(
        "tok-alice",
        Answer::Json(r#"{"active":true,"sub":"alice","client_id":"web","scope":"read profile","aud":"api","iss":"https://idp.example"}"#),
    );
    authz.token(
        "tok-writer",
        Answer::Json(r#"{"active":true,"client_id":"batch-job","scope":"write"}"#),
    );
    authz.token(
        "tok-rw",
        Answer::Json(r#"{"active":true,"sub":"dave","scope":"read write"}"#),
    );
    authz.token(
        "tok-expired",
        Answer::Json(r#"{"active":true,"sub":"eve","scope":"read","exp":1000000000}"#),
    );
    let secrets = scratch_dir();
    let secret_file = secrets.join("client-secret");
    std::fs::write(&secret_file, "s3cret!\n").unwrap();
    let strait = Strait::start(&config(
        app.addr,
        authz.addr,
        secret_file.to_str().unwrap(),
        provider_extra,
    ));
    Setup {
        app,
        authz,
        strait,
        secrets,
    }
}

fn request(method: &str, path: &str, extra: &str) -> String {
    let body = if method == "POST" {
        "content-length: 0\r\n"
    } else {
        ""
    };
    format!("{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{body}{extra}\r\n")
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}\r\n")
}

#[test]
fn an_active_token_with_the_scope_reaches_the_upstream_as_its_consumer() {
    let s = setup(CACHED);
    let r = s.strait.request(
        request(
            "GET",
            "/api/orders",
            &format!(
                "{}x-consumer: mallory\r\nx-scopes: admin\r\n",
                bearer("tok-alice")
            ),
        )
        .as_bytes(),
    );
    assert_eq!((r.status, r.text().as_str()), (200, "ok"), "{}", r.head);
    let seen = s.app.last();
    assert_eq!(
        seen.header("x-consumer").as_deref(),
        Some("alice"),
        "{}",
        seen.head
    );
    assert_eq!(
        seen.header("x-scopes").as_deref(),
        Some("read profile"),
        "{}",
        seen.head
    );
    assert_eq!(seen.header("authorization"), None, "{}", seen.head);
    assert_eq!(seen.head.matches("x-consumer").count(), 1, "{}", seen.head);
    assert_eq!(seen.head.matches("x-scopes").count(), 1, "{}", seen.head);

    // What the authorization server received: a form POST with Basic client credentials.
    let requests = s.authz.requests();
    assert_eq!(requests.len(), 1);
    let (head, body) = &requests[0];
    assert!(
        head.starts_with("POST /oauth2/introspect HTTP/1.1\r\n"),
        "{head}"
    );
    let lower = head.to_ascii_lowercase();
    assert!(
        lower.contains(&format!(
            "\r\nauthorization: {}\r\n",
            BASIC.to_ascii_lowercase()
        )),
        "{head}"
    );
    assert!(
        lower.contains("\r\ncontent-type: application/x-www-form-urlencoded\r\n"),
        "{head}"
    );
    assert!(
        lower.contains(&format!("\r\nhost: {}\r\n", s.authz.addr)),
        "{head}"
    );
    assert!(lower.contains("\r\nx-request-id: "), "{head}");
    assert_eq!(body, "token=tok-alice&token_type_hint=access_token");

    // A token without `sub` is its client_id; a forwarded token keeps its header.
    let r = s
        .strait
        .request(request("GET", "/fwd", &bearer("tok-writer")).as_bytes());
    assert_eq!(r.status, 200, "{}", r.head);
    let seen = s.app.last();
    assert_eq!(seen.header("x-consumer").as_deref(), Some("batch-job"));
    assert_eq!(
        seen.header("authorization").as_deref(),
        Some("Bearer tok-writer")
    );
}

#[test]
fn refused_tokens_get_exact_401s_and_nothing_is_forwarded() {
    let s = setup(CACHED);
    let realm = "Bearer realm=\"strait\"";
    let invalid = "Bearer realm=\"strait\", error=\"invalid_token\"";
    let cases: &[(String, &str, bool)] = &[
        // (extra headers, challenge, asks the authorization server)
        (String::new(), realm, false),
        ("Authorization: Basic Z2F0ZXdheTp4\r\n".into(), realm, false),
        ("Authorization: Token tok-alice\r\n".into(), realm, false),
        ("Authorization: Bearer\r\n".into(), invalid, false),
        ("Authorization: Bearer two words\r\n".into(), invalid, false),
        (
            "Authorization: Bearer tok\"quote\r\n".into(),
            invalid,
            false,
        ),
        (
            format!("{}{}", bearer("tok-alice"), bearer("tok-alice")),
            invalid,
            false,
        ),
        (bearer("tok-unknown"), invalid, true),
        (bearer("tok-expired"), invalid, true),
    ];
    for (extra, challenge, asks) in cases {
        let before = s.authz.hits();
        let r = s.strait.request(request("GET", "/api/x", extra).as_bytes());
        assert_eq!(r.status, 401, "{extra}: {}", r.head);
        assert!(
            r.head.starts_with("HTTP/1.1 401 Unauthorized\r\n"),
            "{}",
            r.head
        );
        assert_eq!(r.headers_named("www-authenticate"), [*challenge], "{extra}");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.text(), UNAUTHORIZED_BODY);
        assert_eq!(s.authz.hits() - before, usize::from(*asks), "{extra}");
    }
    // Inactive: the server said so.
    s.authz
        .token("tok-off", Answer::Json(r#"{"active":false,"sub":"x"}"#));
    let r = s
        .strait
        .request(request("GET", "/api/x", &bearer("tok-off")).as_bytes());
    assert_eq!(
        (r.status, r.headers_named("www-authenticate")),
        (401, vec![invalid])
    );
    assert!(
        s.app.requests().is_empty(),
        "a refused request was forwarded"
    );
}

#[test]
fn scopes_are_checked_per_method() {
    let s = setup(CACHED);
    let forbidden = |r: &Response, scope: &str| {
        assert_eq!(r.status, 403, "{}", r.head);
        assert!(
            r.head.starts_with("HTTP/1.1 403 Forbidden\r\n"),
            "{}",
            r.head
        );
        assert_eq!(
            r.headers_named("www-authenticate"),
            [format!(
                "Bearer error=\"insufficient_scope\", scope=\"{scope}\""
            )]
        );
        assert_eq!(r.text(), FORBIDDEN_BODY);
    };
    // /api needs `read`: the writer has only `write`.
    forbidden(
        &s.strait
            .request(request("GET", "/api/x", &bearer("tok-writer")).as_bytes()),
        "read",
    );
    // /items: GET needs read, POST read and write, other methods admin.
    forbidden(
        &s.strait
            .request(request("POST", "/items", &bearer("tok-alice")).as_bytes()),
        "write read",
    );
    forbidden(
        &s.strait
            .request(request("GET", "/items", &bearer("tok-writer")).as_bytes()),
        "read",
    );
    forbidden(
        &s.strait
            .request(request("DELETE", "/items", &bearer("tok-rw")).as_bytes()),
        "admin",
    );
    assert!(
        s.app.requests().is_empty(),
        "a refused request was forwarded"
    );

    for (method, token) in [
        ("GET", "tok-alice"),
        ("HEAD", "tok-alice"),
        ("POST", "tok-rw"),
    ] {
        let mut stream = s.strait.connect();
        stream
            .write_all(request(method, "/items", &bearer(token)).as_bytes())
            .unwrap();
        let r = Reader::new(&mut stream).read_response(method).unwrap();
        assert_eq!(r.status, 200, "{method}: {}", r.head);
    }
    assert_eq!(s.app.requests().len(), 3);
}

#[test]
fn an_api_key_or_a_token_is_accepted_where_both_are_configured() {
    let s = setup(CACHED);
    let r = s
        .strait
        .request(request("GET", "/both", "x-api-key: carol-key\r\n").as_bytes());
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(s.app.last().header("x-consumer").as_deref(), Some("carol"));
    assert_eq!(s.authz.hits(), 0);
    let r = s
        .strait
        .request(request("GET", "/both", &bearer("tok-alice")).as_bytes());
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(s.app.last().header("x-consumer").as_deref(), Some("alice"));

    let r = s
        .strait
        .request(request("GET", "/both", "x-api-key: wrong\r\n").as_bytes());
    assert_eq!(
        (r.status, r.headers_named("www-authenticate")),
        (
            401,
            vec!["ApiKey header=\"x-api-key\"", "Bearer realm=\"strait\""]
        )
    );
    let r = s
        .strait
        .request(request("GET", "/both", &bearer("tok-nobody")).as_bytes());
    assert_eq!(
        (r.status, r.headers_named("www-authenticate")),
        (
            401,
            vec![
                "ApiKey header=\"x-api-key\"",
                "Bearer realm=\"strait\", error=\"invalid_token\""
            ]
        )
    );
    assert_eq!(s.app.requests().len(), 2);
}

#[test]
fn consumer_rate_limits_count_per_token_subject() {
    let s = setup(CACHED);
    let get = |token: &str| {
        s.strait
            .request(request("GET", "/limited", &bearer(token)).as_bytes())
    };
    assert_eq!(get("tok-alice").status, 200);
    assert_eq!(get("tok-alice").status, 429);
    assert_eq!(get("tok-rw").status, 200);
}

#[test]
fn answers_are_cached_until_exp_and_refusals_for_the_negative_ttl() {
    let s = setup(CACHED);
    let get = |token: &str| {
        s.strait
            .request(request("GET", "/api/x", &bearer(token)).as_bytes())
    };
    assert_eq!(get("tok-alice").status, 200);
    assert_eq!(get("tok-alice").status, 200);
    assert_eq!(
        s.authz.hits(),
        1,
        "the second request was not served from the cache"
    );

    // Negative cache: a refused token is not asked about again, even once it is valid.
    assert_eq!(get("tok-later").status, 401);
    s.authz.token(
        "tok-later",
        Answer::Json(r#"{"active":true,"sub":"x","scope":"read"}"#),
    );
    assert_eq!(get("tok-later").status, 401);
    assert_eq!(s.authz.hits(), 2);

    // A token expiring in 2-3 s is cached until then, and asked about again after.
    s.authz.token(
        "tok-short",
        Answer::ExpiresIn {
            sub: "fay",
            secs: 3,
        },
    );
    assert_eq!(get("tok-short").status, 200);
    assert_eq!(get("tok-short").status, 200);
    assert_eq!(s.authz.hits(), 3);
    wait_until("the token is introspected again after its exp", || {
        assert_eq!(get("tok-short").status, 200);
        s.authz.hits() == 4
    });
}

#[test]
fn cache_ttl_caps_tokens_without_exp_and_zero_disables_caching() {
    let app = Upstream::fixed("ok");
    let authz = AuthServer::start();
    authz.token("t", Answer::Json(r#"{"active":true,"sub":"a"}"#));
    let strait = Strait::start(&format!(
        r#"[server]
listen = ["127.0.0.1:0"]
[upstreams.app]
endpoints = ["{}"]
[upstreams.authz]
endpoints = ["{}"]
[oauth2_providers.capped]
upstream = "authz"
path = "/i"
client_id = "gateway"
client_secret = "s3cret!"
cache_ttl = "1s"
[oauth2_providers.uncached]
upstream = "authz"
path = "/i"
client_id = "gateway"
client_secret = "s3cret!"
cache_ttl = "0s"
negative_cache_ttl = "0s"
[[routes]]
path = "/capped"
upstream = "app"
auth = {{ oauth2 = {{ provider = "capped" }} }}
[[routes]]
path = "/uncached"
upstream = "app"
auth = {{ oauth2 = {{ provider = "uncached" }} }}
"#,
        app.addr, authz.addr
    ));
    let get =
        |path: &str, token: &str| strait.request(request("GET", path, &bearer(token)).as_bytes());
    assert_eq!(get("/uncached", "t").status, 200);
    assert_eq!(get("/uncached", "t").status, 200);
    assert_eq!(get("/uncached", "nope").status, 401);
    assert_eq!(get("/uncached", "nope").status, 401);
    assert_eq!(authz.hits(), 4);
    assert_eq!(get("/capped", "t").status, 200);
    assert_eq!(authz.hits(), 5);
    wait_until(
        "a token without exp is introspected again after cache_ttl",
        || {
            assert_eq!(get("/capped", "t").status, 200);
            authz.hits() == 6
        },
    );
}

#[test]
fn a_failing_authorization_server_gives_503_never_cached() {
    let s = setup(&format!("{CACHED}\ntimeout = \"300ms\""));
    let get = |token: &str| {
        s.strait
            .request(request("GET", "/api/x", &bearer(token)).as_bytes())
    };
    let unavailable = |r: &Response| {
        assert_eq!(r.status, 503, "{}", r.head);
        assert!(
            r.head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{}",
            r.head
        );
        assert_eq!(r.header("www-authenticate"), None);
        assert_eq!(r.text(), UNAVAILABLE_BODY);
    };
    for mode in [
        Mode::Status(500),
        Mode::Status(401),
        Mode::Garbage,
        Mode::Huge,
        Mode::Silent,
    ] {
        s.authz.set_mode(mode);
        unavailable(&get("tok-alice"));
    }
    // Nothing was cached: the next answer counts.
    s.authz.set_mode(Mode::Table);
    assert_eq!(get("tok-alice").status, 200);

    // Down (connections refused), then back on the same address.
    s.authz.stop();
    unavailable(&get("tok-rw"));
    unavailable(&get("tok-rw"));
    let _back = s.authz.restart();
    wait_until("introspection works again", || get("tok-rw").status == 200);
    assert_eq!(
        s.app.requests().len(),
        2,
        "a request was forwarded without a verdict"
    );
    assert!(
        s.strait.log_text().contains("token introspection failed"),
        "{}",
        s.strait.log_text()
    );
}

#[test]
fn on_error_unauthorized_answers_401_instead() {
    let s = setup("on_error = \"unauthorized\"");
    s.authz.set_mode(Mode::Status(503));
    let r = s
        .strait
        .request(request("GET", "/api/x", &bearer("tok-alice")).as_bytes());
    assert_eq!(
        (r.status, r.headers_named("www-authenticate")),
        (
            401,
            vec!["Bearer realm=\"strait\", error=\"invalid_token\""]
        )
    );
    assert!(s.app.requests().is_empty());
}

#[test]
fn introspection_connections_are_kept_alive() {
    let s = setup("cache_ttl = \"0s\"");
    for i in 0..6 {
        // Content-Length and chunked answers alike leave the connection reusable.
        s.authz.set_mode(if i % 2 == 0 {
            Mode::Table
        } else {
            Mode::Chunked
        });
        let r = s
            .strait
            .request(request("GET", "/api/x", &bearer("tok-alice")).as_bytes());
        assert_eq!(r.status, 200, "{}", r.head);
    }
    assert_eq!(s.authz.hits(), 6);
    assert_eq!(s.authz.seen.0.lock().unwrap().connections, 1);
}

#[test]
fn a_dead_introspection_endpoint_is_skipped_by_the_upstream_retry_policy() {
    let app = Upstream::fixed("ok");
    let authz = AuthServer::start();
    authz.token("t", Answer::Json(r#"{"active":true,"sub":"a"}"#));
    let dead = format!("127.0.0.1:{}", free_port());
    let strait = Strait::start(&authz_config(
        app.addr,
        &format!("[\"{dead}\", \"{}\"]", authz.addr),
        "",
    ));
    // Round-robin sends every other first try to the dead endpoint; the retry saves it.
    for _ in 0..4 {
        let r = strait.request(request("GET", "/", &bearer("t")).as_bytes());
        assert_eq!(r.status, 200, "{}", r.head);
    }
    assert_eq!(authz.hits(), 4);
}

/// A gateway whose one route `/` (upstream `app`) takes tokens introspected by `idp` over
/// upstream `authz`, whose `endpoints` value and extra lines are given; nothing cached.
fn authz_config(app: SocketAddr, endpoints: &str, authz_extra: &str) -> String {
    format!(
        r#"[server]
listen = ["127.0.0.1:0"]
[upstreams.app]
endpoints = ["{app}"]
[upstreams.authz]
endpoints = {endpoints}
{authz_extra}
[oauth2_providers.idp]
upstream = "authz"
path = "/i"
client_id = "gateway"
client_secret = "s3cret!"
cache_ttl = "0s"
negative_cache_ttl = "0s"
timeout = "10s"
[[routes]]
path = "/"
upstream = "app"
auth = {{ oauth2 = {{ provider = "idp" }} }}
"#
    )
}

/// The introspection upstream's whole retry policy applies, as to forwarded requests: an
/// endpoint that never answers costs one `per_try_timeout` (not the provider's `timeout`),
/// and the timeout is retried like the 504 it stands for.
#[test]
fn a_silent_introspection_endpoint_costs_one_per_try_timeout() {
    let app = Upstream::fixed("ok");
    let silent = AuthServer::start();
    silent.set_mode(Mode::Silent);
    let authz = AuthServer::start();
    authz.token("t", Answer::Json(r#"{"active":true,"sub":"a"}"#));
    let strait = Strait::start(&authz_config(
        app.addr,
        &format!("[\"{}\", \"{}\"]", silent.addr, authz.addr),
        "[upstreams.authz.retry]\non = [\"reset\", \"504\"]\nper_try_timeout = \"300ms\"",
    ));
    // Round-robin sends every other first try to the silent endpoint.
    for i in 0..4 {
        let r = strait.request(request("GET", "/", &bearer("t")).as_bytes());
        assert_eq!(r.status, 200, "request {i}: {}", r.head);
    }
    assert_eq!(authz.hits(), 4);
    assert!(silent.hits() >= 1, "the silent endpoint was never tried");
}

/// A retry comes out of the upstream's budget only when an endpoint is left to take it:
/// introspections that tried every endpoint leave the budget to forwarded requests.
#[test]
fn introspection_spends_no_retry_budget_without_an_endpoint_left() {
    let app = Upstream::fixed("ok");
    // `a` fails everything; `b` fails introspections only.
    let a = Upstream::start(|_| b"HTTP/1.1 503 X\r\ncontent-length: 1\r\n\r\na".to_vec());
    let b = Upstream::start(|r| {
        if r.request_line().starts_with("POST /i ") {
            b"HTTP/1.1 503 X\r\ncontent-length: 1\r\n\r\nb".to_vec()
        } else {
            ok("b")
        }
    });
    // `a` weighs so much that every first try goes to it.
    let mut config = authz_config(
        app.addr,
        &format!(
            "[{{ addr = \"{}\", weight = 100 }}, \"{}\"]",
            a.addr, b.addr
        ),
        "[upstreams.authz.outlier]\nconsecutive_failures = 0\n\
         [upstreams.authz.retry]\non = [\"503\"]\nattempts = 3\nbudget_percent = 0",
    );
    config.push_str("[[routes]]\npath = \"/direct\"\nupstream = \"authz\"\n");
    let strait = Strait::start(&config);
    // Each introspection tries `a`, retries on `b` (one retry from the budget's floor of
    // 10 per window), and stops there: no endpoint is left for a third try.
    for i in 0..6 {
        let r = strait.request(request("GET", "/", &bearer("t")).as_bytes());
        assert_eq!(r.status, 503, "request {i}: {}", r.head);
    }
    assert_eq!((a.requests().len(), b.requests().len()), (6, 6));
    // Four retries are left: a forwarded request failing on `a` is retried on `b`.
    let r = strait.request(request("GET", "/direct", "").as_bytes());
    assert_eq!((r.status, r.text().as_str()), (200, "b"), "{}", r.head);
}

/// Passive health counts an answer as a success, whatever its body: an endpoint whose
/// answers are too large is refused per answer, but not ejected (as for forwarded
/// requests, only connect failures, resets, timeouts and 5xx count against it).
#[test]
fn an_unusable_introspection_answer_does_not_eject_its_endpoint() {
    let app = Upstream::fixed("ok");
    let huge = AuthServer::start();
    huge.set_mode(Mode::Huge);
    let authz = AuthServer::start();
    authz.token("t", Answer::Json(r#"{"active":true,"sub":"a"}"#));
    let strait = Strait::start(&authz_config(
        app.addr,
        &format!("[\"{}\", \"{}\"]", huge.addr, authz.addr),
        "[upstreams.authz.outlier]\nconsecutive_failures = 1",
    ));
    let statuses: Vec<u16> = (0..4)
        .map(|_| {
            strait
                .request(request("GET", "/", &bearer("t")).as_bytes())
                .status
        })
        .collect();
    assert_eq!(statuses, [503, 200, 503, 200]);
    assert_eq!((huge.hits(), authz.hits()), (2, 2));
}

#[test]
fn a_reload_drops_the_cache_of_a_changed_provider_only() {
    let s = setup(CACHED);
    let get = || {
        s.strait
            .request(request("GET", "/api/x", &bearer("tok-alice")).as_bytes())
    };
    assert_eq!(get().status, 200);
    assert_eq!(s.authz.hits(), 1);
    let secret_file = s.secrets.join("client-secret");
    let text = |extra: &str| {
        config(
            s.app.addr,
            s.authz.addr,
            secret_file.to_str().unwrap(),
            &format!("{CACHED}\n{extra}"),
        )
    };
    let reload = |config: String, count: usize| {
        s.strait.write_config(&config);
        s.strait.signal(libc::SIGHUP);
        wait_until("the reload", || {
            s.strait.log_text().matches("config reloaded").count() == count
        });
    };
    // An unchanged provider keeps its cache across a reload.
    reload(text("").replace("\"/limited\"", "\"/limited2\""), 1);
    assert_eq!(get().status, 200);
    assert_eq!(s.authz.hits(), 1);
    // New settings: cached answers are not reused.
    reload(text("timeout = \"3s\""), 2);
    assert_eq!(get().status, 200);
    assert_eq!(s.authz.hits(), 2);
}

/// Client connections open on worker 0, from the admin API's metrics.
fn open_connections(admin: SocketAddr) -> usize {
    let mut stream = connect(admin);
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        .unwrap();
    let text = read_response(&mut stream).unwrap().text();
    text.lines()
        .find_map(|l| l.strip_prefix("strait_worker_connections{worker=\"0\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn concurrent_requests_with_one_uncached_token_share_one_introspection() {
    // No cache: only the sharing of one introspection can keep the count at one.
    let s = setup("cache_ttl = \"0s\"");
    let admin = s.strait.admin_addr();
    s.authz.hold();
    thread::scope(|scope| {
        let clients: Vec<_> = (0..3)
            .map(|_| {
                scope.spawn(|| {
                    let raw = request("GET", "/api/x", &bearer("tok-alice"));
                    s.strait.request(raw.as_bytes()).status
                })
            })
            .collect();
        wait_until("the first introspection", || s.authz.hits() >= 1);
        wait_until("all three clients connected", || {
            open_connections(admin) == 3
        });
        s.authz.release();
        for client in clients {
            assert_eq!(client.join().unwrap(), 200);
        }
    });
    assert_eq!(s.authz.hits(), 1, "the waiting requests introspected too");
    assert_eq!(s.app.requests().len(), 3);
}

#[test]
fn a_refused_request_leaves_the_connection_open() {
    let s = setup(CACHED);
    let mut stream = s.strait.connect();
    let keep_alive = |method: &str, extra: &str| {
        request(method, "/items", extra).replace("Connection: close\r\n", "")
    };
    let mut pipeline = String::new();
    pipeline.push_str(&keep_alive("GET", ""));
    pipeline.push_str(&keep_alive("POST", &bearer("tok-alice")));
    pipeline.push_str(&keep_alive("GET", &bearer("tok-alice")));
    stream.write_all(pipeline.as_bytes()).unwrap();
    let mut reader = Reader::new(&mut stream);
    let statuses: Vec<u16> = (0..3)
        .map(|_| reader.read_response("GET").unwrap().status)
        .collect();
    assert_eq!(statuses, [401, 403, 200]);
}

#[test]
fn a_route_with_jwt_and_oauth2_checks_jwts_locally_and_introspects_other_tokens() {
    let s = setup(CACHED);
    s.authz.token(
        "opaque-olga",
        Answer::Json(r#"{"active":true,"sub":"olga","scope":"read"}"#),
    );
    // A JWT the provider verifies: accepted without asking the authorization server.
    let r = s
        .strait
        .request(request("GET", "/mixed", &bearer(&hs256(JWT_SECRET, "jay"))).as_bytes());
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(s.app.last().header("x-consumer").as_deref(), Some("jay"));
    assert_eq!(s.authz.hits(), 0);

    // An opaque token: introspected and accepted.
    let r = s
        .strait
        .request(request("GET", "/mixed", &bearer("opaque-olga")).as_bytes());
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(s.app.last().header("x-consumer").as_deref(), Some("olga"));
    assert_eq!(s.authz.hits(), 1);

    // A JWT of another key, unknown to the authorization server: refused by both.
    let forged = hs256("another-secret-of-32-bytes-or-more!!", "jay");
    let r = s
        .strait
        .request(request("GET", "/mixed", &bearer(&forged)).as_bytes());
    assert_eq!(r.status, 401, "{}", r.head);
    assert_eq!(
        r.headers_named("www-authenticate"),
        ["Bearer realm=\"strait\", error=\"invalid_token\""]
    );
    assert_eq!(r.text(), UNAUTHORIZED_BODY);
    assert_eq!(s.authz.hits(), 2);
    assert_eq!(
        s.app.requests().len(),
        2,
        "nothing more reached the upstream"
    );
}
