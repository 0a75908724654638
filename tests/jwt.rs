//! JWT bearer tokens through the real binary: every algorithm accepted, every kind of bad
//! token refused with the exact 401 and nothing forwarded, claims mapped to upstream
//! headers, JWKS from a file and from a URL (rotation, failed refreshes, reloads), and
//! consumer rate limits per token subject.

mod common;
use common::*;

use std::sync::{Arc, Mutex};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt");
const SECRET: &str = "an-hmac-secret-for-the-tests-0123456789";
const ISSUER: &str = "https://issuer.test";
const UNAUTHORIZED_BODY: &str = "{\"error\":\"missing or invalid credentials\",\"status\":401}\n";
const CHALLENGE: &str = "Bearer realm=\"strait\"";

fn fixture(name: &str) -> String {
    format!("{FIXTURES}/{name}")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The signing key of `alg` from the fixtures (`rsa_file` for the RSA family).
fn signing_key(alg: Algorithm, rsa_file: &str) -> EncodingKey {
    let pem = |name: &str| std::fs::read(fixture(name)).unwrap();
    match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            EncodingKey::from_secret(SECRET.as_bytes())
        }
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem("ec256.key")).unwrap(),
        Algorithm::ES384 => EncodingKey::from_ec_pem(&pem("ec384.key")).unwrap(),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem("ed25519.key")).unwrap(),
        _ => EncodingKey::from_rsa_pem(&pem(rsa_file)).unwrap(),
    }
}

/// Good claims for `sub`: our issuer and audience, an hour to live, a scope.
fn claims(sub: &str) -> Value {
    json!({
        "sub": sub, "iss": ISSUER, "aud": ["other", "api"], "scope": "read",
        "iat": now(), "exp": now() + 3600, "email": format!("{sub}@example.test"),
    })
}

fn token_with(alg: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, key).unwrap()
}

fn token(alg: Algorithm, claims: &Value) -> String {
    token_with(alg, None, claims, &signing_key(alg, "rsa.key"))
}

/// `claims("alice")` with `change` applied.
fn alice_with(change: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    let mut claims = claims("alice");
    change(claims.as_object_mut().unwrap());
    claims
}

fn b64(bytes: &[u8]) -> String {
    use std::fmt::Write;
    // base64url without padding, written out to keep the test free of another crate.
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            let _ = write!(
                out,
                "{}",
                ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char
            );
        }
    }
    out
}

fn config(upstream: std::net::SocketAddr, extra: &str) -> String {
    let provider = |name: &str, key: &str| {
        format!(
            "[jwt_providers.{name}]\n{key}\nissuer = \"{ISSUER}\"\naudiences = [\"api\"]\n\
             claims_to_headers = {{ \"X-User-Email\" = \"email\", \"x-user-admin\" = \"admin\" }}\n"
        )
    };
    format!(
        r#"[server]
listen = ["127.0.0.1:0"]

[upstreams.app]
endpoints = ["{upstream}"]

{hs}required_claims = ["scope"]
{rsa}{ec256}{ec384}{ed}{jwks}
[jwt_providers.rs256]
public_key_file = "{rsa_pub}"
algorithms = ["RS256"]

[consumers.carol]
api_keys = ["carol-key"]

[[routes]]
path = "/api/{{*rest}}"
upstream = "app"
auth = {{ jwt = {{ providers = ["hs", "rsa", "ec256", "ec384", "ed"] }}, consumer_header = "x-consumer" }}

[[routes]]
path = "/jwks/{{*rest}}"
upstream = "app"
auth = {{ jwt = {{ providers = ["jwks"] }} }}

[[routes]]
path = "/rs256"
upstream = "app"
auth = {{ jwt = {{ providers = ["rs256"] }} }}

[[routes]]
path = "/both"
upstream = "app"
auth = {{ api_key = {{}}, jwt = {{ providers = ["hs"] }} }}

[[routes]]
path = "/forward"
upstream = "app"
auth = {{ jwt = {{ providers = ["hs"], forward_token = true }} }}

[[routes]]
path = "/limited"
upstream = "app"
auth = {{ jwt = {{ providers = ["hs"] }} }}
rate_limits = [{{ name = "per-subject", key = "consumer", limit = 2, period = "1h" }}]
{extra}"#,
        hs = provider("hs", &format!("secret = \"{SECRET}\"")),
        rsa = provider(
            "rsa",
            &format!("public_key_file = \"{}\"", fixture("rsa.pub"))
        ),
        ec256 = provider(
            "ec256",
            &format!("public_key_file = \"{}\"", fixture("ec256.pub"))
        ),
        ec384 = provider(
            "ec384",
            &format!("public_key_file = \"{}\"", fixture("ec384.pub"))
        ),
        ed = provider(
            "ed",
            &format!("public_key_file = \"{}\"", fixture("ed25519.pub"))
        ),
        jwks = provider("jwks", &format!("jwks_file = \"{}\"", fixture("jwks.json"))),
        rsa_pub = fixture("rsa.pub"),
    )
}

fn get(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{extra}\r\n")
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}\r\n")
}

const ALL: [Algorithm; 12] = [
    Algorithm::HS256,
    Algorithm::HS384,
    Algorithm::HS512,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

#[test]
fn tokens_of_every_algorithm_are_accepted() {
    let upstream = Upstream::fixed("ok");
    let strait = Strait::start(&config(upstream.addr, ""));
    for alg in ALL {
        let r = strait.request(get("/api/x", &bearer(&token(alg, &claims("alice")))).as_bytes());
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "ok"),
            "{alg:?}: {}",
            r.head
        );
    }
    // The same keys from a JWKS file, picked by kid.
    for alg in ALL
        .iter()
        .copied()
        .filter(|a| !matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512))
    {
        let kid = match alg {
            Algorithm::ES256 => "ec256",
            Algorithm::ES384 => "ec384",
            Algorithm::EdDSA => "ed25519",
            _ => "rsa",
        };
        let t = token_with(alg, Some(kid), &claims("bob"), &signing_key(alg, "rsa.key"));
        let r = strait.request(get("/jwks/x", &bearer(&t)).as_bytes());
        assert_eq!(r.status, 200, "jwks {alg:?}: {}", r.head);
    }
    assert_eq!(upstream.requests().len(), 12 + 9);
    assert_eq!(upstream.last().header("x-consumer").as_deref(), Some("bob"));
}

#[test]
fn bad_tokens_get_the_exact_401_and_nothing_is_forwarded() {
    let upstream = Upstream::fixed("ok");
    let strait = Strait::start(&config(upstream.addr, ""));
    let rsa2 = signing_key(Algorithm::RS256, "rsa2.key");
    let good = token(Algorithm::HS256, &claims("alice"));
    let (head, rest) = good.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();
    let other_payload = b64(claims("mallory").to_string().as_bytes());
    let rsa_pub = std::fs::read(fixture("rsa.pub")).unwrap();
    let none_header = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = b64(claims("alice").to_string().as_bytes());

    const INVALID: &str = "the token is not valid";
    const EXPIRED: &str = "the token has expired";
    const MALFORMED: &str = "the token is malformed";
    // (case, path, Authorization value(s), error_description)
    let cases: Vec<(&str, &str, String, &str)> = vec![
        (
            "signed by another key",
            "/api/x",
            bearer(&token_with(Algorithm::RS256, None, &claims("alice"), &rsa2)),
            INVALID,
        ),
        (
            "payload swapped",
            "/api/x",
            bearer(&format!("{head}.{other_payload}.{signature}")),
            INVALID,
        ),
        (
            "expired",
            "/api/x",
            bearer(&token(
                Algorithm::ES256,
                &alice_with(|c| {
                    c.insert("exp".into(), json!(now() - 3600));
                }),
            )),
            EXPIRED,
        ),
        (
            "not yet valid",
            "/api/x",
            bearer(&token(
                Algorithm::HS256,
                &alice_with(|c| {
                    c.insert("nbf".into(), json!(now() + 3600));
                }),
            )),
            INVALID,
        ),
        (
            "issued in the future",
            "/api/x",
            bearer(&token(
                Algorithm::EdDSA,
                &alice_with(|c| {
                    c.insert("iat".into(), json!(now() + 3600));
                }),
            )),
            INVALID,
        ),
        (
            "wrong issuer",
            "/api/x",
            bearer(&token(
                Algorithm::RS256,
                &alice_with(|c| {
                    c.insert("iss".into(), json!("https://evil.test"));
                }),
            )),
            INVALID,
        ),
        (
            "no issuer",
            "/api/x",
            bearer(&token(
                Algorithm::RS256,
                &alice_with(|c| {
                    c.remove("iss");
                }),
            )),
            INVALID,
        ),
        (
            "wrong audience",
            "/api/x",
            bearer(&token(
                Algorithm::PS256,
                &alice_with(|c| {
                    c.insert("aud".into(), json!("web"));
                }),
            )),
            INVALID,
        ),
        (
            "missing required claim",
            "/api/x",
            bearer(&token(
                Algorithm::HS256,
                &alice_with(|c| {
                    c.remove("scope");
                }),
            )),
            INVALID,
        ),
        (
            "no subject",
            "/api/x",
            bearer(&token(
                Algorithm::HS256,
                &alice_with(|c| {
                    c.remove("sub");
                }),
            )),
            INVALID,
        ),
        (
            "algorithm not allowed",
            "/rs256",
            bearer(&token(Algorithm::PS256, &claims("alice"))),
            INVALID,
        ),
        (
            "alg none",
            "/api/x",
            bearer(&format!("{none_header}.{payload}.")),
            MALFORMED,
        ),
        (
            "HS256 with the RSA public key as secret",
            "/rs256",
            bearer(&token_with(
                Algorithm::HS256,
                None,
                &claims("alice"),
                &EncodingKey::from_secret(&rsa_pub),
            )),
            INVALID,
        ),
        (
            "HS256 with the RSA public key, any provider",
            "/api/x",
            bearer(&token_with(
                Algorithm::HS256,
                None,
                &claims("alice"),
                &EncodingKey::from_secret(&rsa_pub),
            )),
            INVALID,
        ),
        (
            "unknown kid",
            "/jwks/x",
            bearer(&token_with(
                Algorithm::RS256,
                Some("nope"),
                &claims("alice"),
                &signing_key(Algorithm::RS256, "rsa.key"),
            )),
            INVALID,
        ),
        (
            "bad base64",
            "/api/x",
            bearer(&format!("{head}.!!!.{signature}")),
            MALFORMED,
        ),
        (
            "two segments",
            "/api/x",
            bearer(&format!("{head}.{payload}")),
            MALFORMED,
        ),
        (
            "garbage JSON header",
            "/api/x",
            bearer(&format!("{}.{payload}.{signature}", b64(b"{\"alg\":"))),
            MALFORMED,
        ),
        (
            "huge token",
            "/api/x",
            bearer(&format!("{head}.{}.{signature}", "A".repeat(10_000))),
            MALFORMED,
        ),
        (
            "empty token",
            "/api/x",
            "Authorization: Bearer \r\n".into(),
            MALFORMED,
        ),
        (
            "two Authorization headers",
            "/api/x",
            format!("{}{}", bearer(&good), bearer(&good)),
            MALFORMED,
        ),
    ];
    for (case, path, authorization, description) in &cases {
        let r = strait.request(get(path, authorization).as_bytes());
        assert!(
            r.head.starts_with("HTTP/1.1 401 Unauthorized\r\n"),
            "{case}: {}",
            r.head
        );
        assert_eq!(r.text(), UNAUTHORIZED_BODY, "{case}");
        assert_eq!(
            r.headers_named("www-authenticate"),
            [format!(
                "{CHALLENGE}, error=\"invalid_token\", error_description=\"{description}\""
            )],
            "{case}"
        );
    }
    // Without a bearer token: the plain challenge (RFC 6750 §3.1: no error code).
    for authorization in ["", "Authorization: Basic YTpi\r\n"] {
        let r = strait.request(get("/api/x", authorization).as_bytes());
        assert_eq!(r.status, 401, "{authorization}");
        assert_eq!(r.headers_named("www-authenticate"), [CHALLENGE]);
    }
    assert!(upstream.requests().is_empty(), "the upstream saw a request");
    // The good token passes where all those failed.
    assert_eq!(
        strait
            .request(get("/api/x", &bearer(&good)).as_bytes())
            .status,
        200
    );
}

#[test]
fn claims_reach_the_upstream_as_headers_and_client_copies_are_replaced() {
    let upstream = Upstream::fixed("ok");
    let strait = Strait::start(&config(upstream.addr, ""));
    let forged = "x-user-email: mallory@evil.test\r\nX-User-Admin: true\r\nx-consumer: mallory\r\n";
    let t = token(
        Algorithm::ES384,
        &alice_with(|c| {
            c.insert("admin".into(), json!(false));
        }),
    );
    let r = strait.request(get("/api/x", &format!("{}{forged}", bearer(&t))).as_bytes());
    assert_eq!(r.status, 200, "{}", r.head);
    let seen = upstream.last();
    assert_eq!(
        seen.header("x-user-email").as_deref(),
        Some("alice@example.test"),
        "{}",
        seen.head
    );
    assert_eq!(
        seen.header("x-user-admin").as_deref(),
        Some("false"),
        "{}",
        seen.head
    );
    assert_eq!(
        seen.header("x-consumer").as_deref(),
        Some("alice"),
        "{}",
        seen.head
    );
    assert_eq!(
        seen.header("authorization"),
        None,
        "the token was forwarded: {}",
        seen.head
    );
    let lower = seen.head.to_ascii_lowercase();
    for name in ["x-user-email:", "x-user-admin:", "x-consumer:"] {
        assert_eq!(lower.matches(name).count(), 1, "{name} {}", seen.head);
    }

    // A token without the claims (or with a control character in one): the client's
    // copies are dropped all the same.
    let t = token(
        Algorithm::HS256,
        &alice_with(|c| {
            c.insert("email".into(), json!("a@b\u{1}x"));
        }),
    );
    let r = strait.request(get("/api/x", &format!("{}{forged}", bearer(&t))).as_bytes());
    assert_eq!(r.status, 200, "{}", r.head);
    let seen = upstream.last();
    assert_eq!(seen.header("x-user-email"), None, "{}", seen.head);
    assert_eq!(seen.header("x-user-admin"), None, "{}", seen.head);

    // forward_token = true sends the Authorization header on.
    let r = strait.request(get("/forward", &bearer(&t)).as_bytes());
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(
        upstream.last().header("authorization"),
        Some(format!("Bearer {t}"))
    );

    // The cached token (second use) yields the same headers.
    let t = token(Algorithm::EdDSA, &claims("dave"));
    for _ in 0..2 {
        assert_eq!(
            strait.request(get("/api/x", &bearer(&t)).as_bytes()).status,
            200
        );
        assert_eq!(
            upstream.last().header("x-user-email").as_deref(),
            Some("dave@example.test")
        );
        assert_eq!(
            upstream.last().header("x-consumer").as_deref(),
            Some("dave")
        );
    }
}

#[test]
fn a_route_with_api_keys_and_jwt_accepts_either() {
    let upstream = Upstream::fixed("ok");
    let strait = Strait::start(&config(upstream.addr, ""));
    let good = token(Algorithm::HS512, &claims("alice"));
    let cases = [
        ("x-api-key: carol-key\r\n".to_owned(), 200, Some("carol")),
        (bearer(&good), 200, Some("alice")),
        (
            format!("x-api-key: wrong\r\n{}", bearer(&good)),
            200,
            Some("alice"),
        ),
        (
            format!("x-api-key: carol-key\r\n{}", bearer("not.a.token")),
            200,
            Some("carol"),
        ),
        ("x-api-key: wrong\r\n".to_owned(), 401, None),
        (String::new(), 401, None),
    ];
    for (headers, status, consumer) in &cases {
        let r = strait.request(get("/both", headers).as_bytes());
        assert_eq!(r.status, *status, "{headers}: {}", r.head);
        if let Some(consumer) = consumer {
            assert_eq!(
                upstream.last().header("x-consumer").as_deref(),
                Some(*consumer)
            );
            assert_eq!(upstream.last().header("x-api-key"), None);
        } else {
            // Both challenges.
            assert_eq!(
                r.headers_named("www-authenticate"),
                ["ApiKey header=\"x-api-key\"", CHALLENGE]
            );
        }
    }
    let r = strait.request(get("/both", &bearer("a.b.c")).as_bytes());
    assert_eq!(
        r.headers_named("www-authenticate"),
        [
            "ApiKey header=\"x-api-key\"".to_owned(),
            format!("{CHALLENGE}, error=\"invalid_token\", error_description=\"the token is malformed\"")
        ]
    );
    assert_eq!(upstream.requests().len(), 4);
}

#[test]
fn consumer_rate_limits_count_per_token_subject() {
    let upstream = Upstream::fixed("ok");
    let strait = Strait::start(&config(upstream.addr, ""));
    // Different tokens of one subject share its bucket.
    let alice = [
        token(Algorithm::HS256, &claims("alice")),
        token(Algorithm::HS384, &claims("alice")),
        token(Algorithm::HS512, &claims("alice")),
    ];
    let bob = token(Algorithm::HS256, &claims("bob"));
    let cases = [
        (&alice[0], 200),
        (&alice[1], 200),
        (&alice[2], 429),
        (&bob, 200),
        (&bob, 200),
        (&bob, 429),
    ];
    for (i, (t, status)) in cases.into_iter().enumerate() {
        let r = strait.request(get("/limited", &bearer(t)).as_bytes());
        assert_eq!(r.status, status, "case {i}: {}", r.head);
    }
    assert_eq!(upstream.requests().len(), 4);
}

/// A JWKS origin whose answer the test changes: (status, body).
struct JwksServer {
    upstream: Upstream,
    answer: Arc<Mutex<(u16, String)>>,
}

impl JwksServer {
    fn start(status: u16, body: String) -> JwksServer {
        let answer = Arc::new(Mutex::new((status, body)));
        let shared = answer.clone();
        let upstream = Upstream::start(move |_| {
            let (status, body) = shared.lock().unwrap().clone();
            format!(
                "HTTP/1.1 {status} X\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        });
        JwksServer { upstream, answer }
    }

    fn set(&self, status: u16, body: String) {
        *self.answer.lock().unwrap() = (status, body);
    }

    fn fetches(&self) -> usize {
        self.upstream.requests().len()
    }

    fn url(&self) -> String {
        format!("http://{}/.well-known/jwks.json", self.upstream.addr)
    }
}

fn jwks_text(files: &[&str]) -> String {
    let mut keys = Vec::new();
    for file in files {
        let set: Value =
            serde_json::from_str(&std::fs::read_to_string(fixture(file)).unwrap()).unwrap();
        keys.extend(set["keys"].as_array().unwrap().iter().cloned());
    }
    json!({ "keys": keys }).to_string()
}

fn url_config(upstream: std::net::SocketAddr, url: &str, extra: &str) -> String {
    url_config_every(upstream, url, "1s", extra)
}

fn url_config_every(
    upstream: std::net::SocketAddr,
    url: &str,
    refresh: &str,
    extra: &str,
) -> String {
    format!(
        r#"[server]
listen = ["127.0.0.1:0"]

[upstreams.app]
endpoints = ["{upstream}"]

[jwt_providers.idp]
jwks_url = "{url}"
jwks_refresh = "{refresh}"

[[routes]]
path = "/api"
upstream = "app"
auth = {{ jwt = {{ providers = ["idp"] }} }}
{extra}"#
    )
}

#[test]
fn check_with_a_jwks_url_makes_no_connection() {
    // A listener nobody accepts on: any connection attempt would wait in its backlog.
    let jwks = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    jwks.set_nonblocking(true).unwrap();
    let config = url_config_every(
        "127.0.0.1:1".parse().unwrap(),
        &format!("http://{}/jwks", jwks.local_addr().unwrap()),
        "1h",
        "",
    );
    let dir = scratch_dir();
    let path = dir.join("check.toml");
    std::fs::write(&path, config).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strait"))
        .arg("--check")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{}: configuration is valid\n", path.display())
    );
    // The process is gone: a connection it made would be in the backlog now.
    match jwks.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("--check connected to the JWKS URL: {other:?}"),
    }
}

/// A fresh RS256 token (a new `jti` each time, so no worker cache answers for it).
fn rsa_token(kid: &str, file: &str) -> String {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let claims = alice_with(|c| {
        c.insert("jti".into(), json!(n));
    });
    token_with(
        Algorithm::RS256,
        Some(kid),
        &claims,
        &signing_key(Algorithm::RS256, file),
    )
}

#[test]
fn jwks_url_rotation_failed_refreshes_and_reloads_keep_keys() {
    let upstream = Upstream::fixed("ok");
    let jwks = JwksServer::start(200, jwks_text(&["jwks.json"]));
    let strait = Strait::start(&url_config(upstream.addr, &jwks.url(), ""));
    let status = |t: &str| strait.request(get("/api", &bearer(t)).as_bytes()).status;

    // The first fetch happened at startup: keys from the first request on.
    assert_eq!(status(&rsa_token("rsa", "rsa.key")), 200);
    // A kid the set lacks is refused until the set has it.
    let rotated = rsa_token("rsa2", "rsa2.key");
    assert_eq!(status(&rotated), 401);
    jwks.set(200, jwks_text(&["jwks.json", "jwks-rsa2.json"]));
    wait_until("the background refresh picks up the new kid", || {
        status(&rotated) == 200
    });
    assert_eq!(status(&rsa_token("rsa", "rsa.key")), 200);

    // A failing JWKS origin: the last good keys stay.
    jwks.set(500, "oops".into());
    let before = jwks.fetches();
    wait_until("two failed refreshes", || jwks.fetches() >= before + 2);
    assert_eq!(status(&rsa_token("rsa2", "rsa2.key")), 200);
    wait_until("the failure is logged", || {
        strait
            .log_text()
            .contains("JWKS refresh failed; keeping the last good keys")
    });

    // A reload with the same URL keeps the store and its keys, the origin still failing.
    strait.write_config(&url_config(
        upstream.addr,
        &jwks.url(),
        "[[routes]]\npath = \"/marker\"\nmock = { status = 204 }\n",
    ));
    strait.signal(libc::SIGHUP);
    wait_until("the reload", || {
        strait.request(get("/marker", "").as_bytes()).status == 204
    });
    assert_eq!(status(&rsa_token("rsa", "rsa.key")), 200);
    assert_eq!(status(&rsa_token("rsa2", "rsa2.key")), 200);
    assert_eq!(upstream.requests().len(), 6);
}

#[test]
fn without_a_first_jwks_tokens_are_refused_until_a_fetch_succeeds() {
    let upstream = Upstream::fixed("ok");
    let jwks = JwksServer::start(503, "down".into());
    let strait = Strait::start(&url_config(upstream.addr, &jwks.url(), ""));
    let t = rsa_token("rsa", "rsa.key");
    let r = strait.request(get("/api", &bearer(&t)).as_bytes());
    assert_eq!(r.status, 401, "{}", r.head);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"strait\", error=\"invalid_token\", error_description=\"the token is not valid\"")
    );
    assert!(upstream.requests().is_empty());
    // Retries go on in the background, each failure logged.
    wait_until("a failed retry in the log", || {
        strait
            .log_text()
            .contains("JWKS fetch failed; tokens of this provider are rejected until one succeeds")
    });
    jwks.set(200, jwks_text(&["jwks.json"]));
    wait_until("the retried fetch", || {
        strait.request(get("/api", &bearer(&t)).as_bytes()).status == 200
    });
}

#[test]
fn an_unknown_kid_asks_for_an_early_rate_limited_refresh() {
    let upstream = Upstream::fixed("ok");
    let jwks = JwksServer::start(200, jwks_text(&["jwks.json"]));
    // Refreshed hourly: only the unknown kid can bring the new key in time.
    let strait = Strait::start(&url_config_every(upstream.addr, &jwks.url(), "1h", ""));
    assert_eq!(jwks.fetches(), 1);
    jwks.set(200, jwks_text(&["jwks.json", "jwks-rsa2.json"]));
    let rotated = rsa_token("rsa2", "rsa2.key");
    // Many refused requests, but fetches are spaced (at least 5 s apart).
    wait_until("the early refresh", || {
        strait
            .request(get("/api", &bearer(&rotated)).as_bytes())
            .status
            == 200
    });
    assert_eq!(jwks.fetches(), 2);
}

#[test]
fn transform_templates_name_the_tokens_claims() {
    let upstream = Upstream::start(|r| common::ok(r.request_line()));
    let route = r#"
[[routes]]
path = "/claims/{id}"
upstream = "app"
auth = { jwt = { providers = ["hs"] } }
transform.request = { path = "/by/{claim.sub}/{id}", headers.set = { x-mail = "{claim.email}", x-admin = "{claim.admin}", x-missing = "{claim.nope}" } }
"#;
    let strait = Strait::start(&config(upstream.addr, route));
    let t = token(
        Algorithm::HS256,
        &alice_with(|c| {
            c.insert("admin".into(), json!(true));
        }),
    );
    // Twice: the second token comes from the verified-token cache with its claims.
    for _ in 0..2 {
        let r = strait.request(get("/claims/7", &bearer(&t)).as_bytes());
        assert_eq!(r.status, 200, "{}", r.head);
        let seen = upstream.last();
        assert_eq!(seen.request_line(), "GET /by/alice/7 HTTP/1.1");
        assert_eq!(seen.header("x-mail").as_deref(), Some("alice@example.test"));
        assert_eq!(seen.header("x-admin").as_deref(), Some("true"));
        assert_eq!(seen.header("x-missing"), None, "{}", seen.head);
    }
}
