//! Authentication of a route's callers: the `auth` request filter's logic. API keys of
//! consumers live here, JWT bearer tokens in `jwt.rs`, opaque bearer tokens checked by
//! introspection in `oauth2/`.
//!
//! Where it sits: the `auth` filter of a route (`proxy/pipeline.rs`), after its access list
//! and CORS, before its rate limits (which may count by consumer) and the mock or forward.
//! A request without a valid credential is answered 401 locally (403 for missing scopes,
//! 503 when the authorization server fails) and nothing is forwarded; an accepted one
//! yields an [`Identity`], which the upstream learns through [`upstream_headers`]. On a
//! route with several methods, a request is accepted when one of them accepts the
//! credential it presents: an API key, then a JWT, then (with `oauth2`) a bearer token no
//! JWT provider accepts, by introspection.
//!
//! Invariants: a presented key is compared with every configured key, each comparison in
//! time independent of where the bytes differ (no early exit), so neither the position of a
//! mismatch nor which consumer matched shows in the timing; `sha256:` keys are compared as
//! digests, so the file never holds them in clear. A failing authorization server is never
//! taken for a refused token: the answer is the provider's `on_error` (503 by default).

pub mod config;
pub mod jwks;
pub mod jwt;
pub mod oauth2;

use std::fmt::Display;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::auth::config::{ApiKey, ApiKeyAuth, AuthConfig, ConsumerConfig};
use crate::auth::oauth2::config::{OAuth2Provider, OnIntrospectionError};
use crate::error::ProxyError;
use crate::http1::encode::HeaderPair;
use crate::http1::headers::header_value;
use crate::http1::RequestHead;
use oauth2::cache::Cached;
use oauth2::verdict::Verdicts;
use oauth2::{bearer_token, has_scopes, Presented};

/// What authentication reads of the served config snapshot. Implemented by the snapshot
/// (in the config assembly, which sits above auth); the worker's token cache keeps the
/// `Arc` of the snapshot it was built for, to notice a reload.
pub trait AuthSections {
    /// `[consumers.NAME]`, sorted by name.
    fn consumers(&self) -> &[ConsumerConfig];
    /// `[oauth2_providers.NAME]`, indexed by [`oauth2::config::ProviderId`].
    fn oauth2_providers(&self) -> &[OAuth2Provider];
}

/// Who an authenticated request is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The consumer's name: the key of `key = "consumer"` rate limits, and the value of the
    /// route's `consumer_header` upstream.
    pub consumer: Bytes,
    /// The scopes granted to an OAuth2 token (space-separated); `None` otherwise.
    pub scopes: Option<Bytes>,
    /// Headers (lower-case name, value) set upstream, the client's copies replaced: the
    /// claims a JWT provider maps (`claims_to_headers`).
    pub headers: Rc<[(Bytes, Bytes)]>,
    /// The verified JWT's top-level scalar claims (name, value as text), which transform
    /// templates name (`{claim.sub}`); empty for other methods.
    pub claims: Rc<[(Box<str>, Bytes)]>,
    /// Send the client's `Authorization` upstream (`forward_token` of the JWT provider or
    /// of the route's `oauth2`).
    pub forward_token: bool,
}

/// Why a request was not authenticated by the in-memory methods (API key, JWT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// No credential any method accepts, and no bearer token: the plain challenge.
    Missing,
    /// A bearer token was presented and refused (RFC 6750 §3.1 `invalid_token`).
    InvalidToken(crate::auth::jwt::Rejection),
}

impl Refused {
    /// The `www-authenticate` lines of the 401 on a route with `auth`.
    pub fn challenge(self, auth: &AuthConfig) -> &[u8] {
        match (self, &auth.jwt) {
            (Refused::InvalidToken(rejection), Some(jwt)) => &jwt.rejected[rejection as usize],
            _ => &auth.challenge,
        }
    }
}

/// Adds what an authenticated request's upstream copy loses to `drop` (credentials, and
/// client copies of the headers Strait sets) and what it gains to `set` (the consumer, the
/// granted scopes, mapped claims).
pub fn upstream_headers<'a>(
    auth: &'a AuthConfig,
    identity: &'a Identity,
    drop: &mut Vec<&'a [u8]>,
    set: &mut Vec<HeaderPair<'a>>,
) {
    set.push((auth.consumer_header.as_bytes(), &identity.consumer[..]));
    if let Some(api_key) = &auth.api_key {
        drop.push(api_key.header.as_bytes());
    }
    let bearer = auth.jwt.is_some() || auth.oauth2.is_some();
    if bearer && !identity.forward_token {
        drop.push(b"authorization");
    }
    if let Some(jwt) = &auth.jwt {
        drop.extend(jwt.claim_headers.iter().map(|h| &h[..]));
        set.extend(identity.headers.iter().map(|(n, v)| (&n[..], &v[..])));
    }
    if let Some(name) = auth.oauth2.as_ref().and_then(|o| o.scope_header.as_ref()) {
        drop.push(name.as_bytes());
        if let Some(scopes) = &identity.scopes {
            set.push((name.as_bytes(), &scopes[..]));
        }
    }
}

/// Digest length of `sha256:` keys, in hex characters.
const SHA256_HEX_CHARS: usize = 64;

/// Parses one configured key: `sha256:<64 hex>` or the key itself (visible ASCII, no
/// spaces, so that a client can send it in a header). The error says why, for the config
/// build (`config.rs`).
pub fn parse_api_key(text: &str) -> Result<ApiKey, String> {
    if let Some(hex) = text.strip_prefix("sha256:") {
        if hex.len() != SHA256_HEX_CHARS {
            return Err(format!(
                "sha256 key must be {SHA256_HEX_CHARS} hex characters, found {}",
                hex.len()
            ));
        }
        let mut digest = [0u8; 32];
        for (i, byte) in digest.iter_mut().enumerate() {
            let pair = hex.get(i * 2..i * 2 + 2).unwrap_or("");
            *byte = u8::from_str_radix(pair, 16)
                .ok()
                .filter(|_| pair.bytes().all(|b| b.is_ascii_hexdigit()))
                .ok_or_else(|| format!("sha256 key has a non-hex character in \"{pair}\""))?;
        }
        return Ok(ApiKey::Sha256(digest));
    }
    if text.is_empty() {
        return Err("must not be empty".into());
    }
    if !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be visible ASCII without spaces (or sha256:<64 hex>)".into());
    }
    Ok(ApiKey::Plain(text.as_bytes().into()))
}

/// The SHA-256 digest a key stands for (to find duplicates across both forms).
pub fn digest_of(key: &ApiKey) -> [u8; 32] {
    match key {
        ApiKey::Sha256(digest) => *digest,
        ApiKey::Plain(plain) => Sha256::digest(plain).into(),
    }
}

/// Whether `presented` equals `stored`, in time that depends only on `stored`'s length:
/// every byte is compared, differences are OR-ed together and only the total is tested.
pub fn ct_eq(presented: &[u8], stored: &[u8]) -> bool {
    let mut diff = u8::from(presented.len() != stored.len());
    for (i, s) in stored.iter().enumerate() {
        diff |= presented.get(i).copied().unwrap_or(0) ^ s;
    }
    std::hint::black_box(diff) == 0
}

/// The key the request presents: the `header` header (first copy) when present and
/// non-empty, else the `query` parameter of the target. Query values are compared as sent
/// (no percent-decoding).
pub fn presented_key<'r>(auth: &ApiKeyAuth, raw: &'r [u8], head: &RequestHead) -> Option<&'r [u8]> {
    let header = header_value(raw, head, auth.header.as_bytes()).filter(|v| !v.is_empty());
    if header.is_some() {
        return header;
    }
    query_param(head.target(raw), auth.query.as_deref()?.as_bytes())
}

/// The value of the first `name=value` pair of `target`'s query (before any fragment).
pub fn query_param<'t>(target: &'t [u8], name: &[u8]) -> Option<&'t [u8]> {
    let start = memchr::memchr(b'?', target)? + 1;
    let query = target.get(start..)?;
    let query = match memchr::memchr(b'#', query) {
        Some(end) => &query[..end],
        None => query,
    };
    query
        .split(|b| *b == b'&')
        .find_map(|pair| match memchr::memchr(b'=', pair) {
            Some(eq) if &pair[..eq] == name => Some(&pair[eq + 1..]),
            _ => None,
        })
        .filter(|v| !v.is_empty())
}

/// The index (into `consumers`) of the consumer owning `presented`, comparing against every
/// key of every consumer without stopping at a match.
pub fn find_consumer(consumers: &[ConsumerConfig], presented: &[u8]) -> Option<usize> {
    let digest: [u8; 32] = Sha256::digest(presented).into();
    let mut found = None;
    for (index, consumer) in consumers.iter().enumerate() {
        for key in &consumer.api_keys {
            let matches = match key {
                ApiKey::Sha256(stored) => ct_eq(&digest, stored),
                ApiKey::Plain(stored) => ct_eq(presented, stored),
            };
            if matches {
                found = Some(index);
            }
        }
    }
    found
}

/// Authenticates a request on a route with `auth` in memory: an API key first, then a
/// JWT bearer token.
pub fn authenticate(
    auth: &AuthConfig,
    consumers: &[ConsumerConfig],
    raw: &[u8],
    head: &RequestHead,
) -> Result<Identity, Refused> {
    let by_key = auth
        .api_key
        .as_ref()
        .and_then(|api_key| find_consumer(consumers, presented_key(api_key, raw, head)?))
        .and_then(|index| consumers.get(index));
    if let Some(consumer) = by_key {
        return Ok(Identity {
            consumer: Bytes::copy_from_slice(consumer.name.as_bytes()),
            scopes: None,
            headers: Rc::from([]),
            claims: Rc::from([]),
            forward_token: false,
        });
    }
    match auth
        .jwt
        .as_ref()
        .map(|jwt| crate::auth::jwt::authenticate(jwt, raw, head))
    {
        Some(crate::auth::jwt::Outcome::Accepted(identity)) => Ok(identity),
        Some(crate::auth::jwt::Outcome::Rejected(rejection)) => {
            Err(Refused::InvalidToken(rejection))
        }
        Some(crate::auth::jwt::Outcome::NoToken) | None => Err(Refused::Missing),
    }
}

/// Why a request is refused, and the `www-authenticate` lines of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection<'c> {
    pub error: ProxyError,
    pub challenge: &'c [u8],
}

/// Who a request on a route with `auth` is, or why it is refused: the in-memory methods
/// ([`authenticate`]), then, on a route with `oauth2`, the verdict on the bearer token none
/// of them accepted, from `verdicts` or else through `exchange` (the introspection).
pub async fn authenticate_request<'c, C: AuthSections, E: Display>(
    auth: &'c AuthConfig,
    config: &Arc<C>,
    raw: &[u8],
    head: &RequestHead,
    verdicts: &Verdicts<'_, C>,
    exchange: impl AsyncFnOnce(&OAuth2Provider, &[u8]) -> Result<Bytes, E>,
) -> Result<Identity, Rejection<'c>> {
    let refused = match authenticate(auth, config.consumers(), raw, head) {
        Ok(identity) => return Ok(identity),
        Err(refused) => refused,
    };
    let unauthorized = Rejection {
        error: ProxyError::Unauthorized,
        challenge: &auth.challenge,
    };
    let invalid_token = Rejection {
        error: ProxyError::Unauthorized,
        challenge: &auth.challenge_invalid_token,
    };
    // A bearer token no JWT provider accepts may still be an opaque token for the
    // authorization server.
    let Some(oauth2) = &auth.oauth2 else {
        return Err(Rejection {
            error: ProxyError::Unauthorized,
            challenge: refused.challenge(auth),
        });
    };
    let token = match bearer_token(raw, head) {
        Presented::Nothing => return Err(unauthorized),
        Presented::Malformed => return Err(invalid_token),
        Presented::Token(token) => token,
    };
    let Some(token) = verdicts.check(config, oauth2, token, exchange).await else {
        let provider = &config.oauth2_providers()[oauth2.provider];
        return Err(match provider.on_error {
            OnIntrospectionError::Unavailable => Rejection {
                error: ProxyError::AuthUnavailable,
                challenge: b"",
            },
            OnIntrospectionError::Unauthorized => invalid_token,
        });
    };
    let Cached::Active(token) = token else {
        return Err(invalid_token);
    };
    let required = oauth2.required_for(head.method(raw));
    if !has_scopes(&token.scopes, &required.scopes) {
        return Err(Rejection {
            error: ProxyError::InsufficientScope,
            challenge: &required.challenge,
        });
    }
    Ok(Identity {
        consumer: token.consumer.clone(),
        scopes: Some(token.scopes.clone()),
        headers: Rc::from([]),
        claims: Rc::from([]),
        forward_token: oauth2.forward_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::parse_request_head;
    use crate::http1::Limits;

    #[test]
    fn parses_keys() {
        let hex = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let cases: &[(&str, Result<ApiKey, &str>)] = &[
            (
                "plain-secret-key-123",
                Ok(ApiKey::Plain(b"plain-secret-key-123"[..].into())),
            ),
            ("", Err("must not be empty")),
            (
                "has space",
                Err("must be visible ASCII without spaces (or sha256:<64 hex>)"),
            ),
            (
                "sha256:abc",
                Err("sha256 key must be 64 hex characters, found 3"),
            ),
            (
                "sha256:zz86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                Err("sha256 key has a non-hex character in \"zz\""),
            ),
            (
                "sha256:+f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                Err("sha256 key has a non-hex character in \"+f\""),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(
                parse_api_key(text),
                want.clone().map_err(String::from),
                "{text}"
            );
        }
        // sha256("test"), upper or lower case hex.
        let key = parse_api_key(&format!("sha256:{hex}")).unwrap();
        assert_eq!(
            key,
            parse_api_key(&format!("sha256:{}", hex.to_uppercase())).unwrap()
        );
        assert_eq!(
            digest_of(&key),
            digest_of(&ApiKey::Plain(b"test"[..].into()))
        );
    }

    #[test]
    fn constant_time_compare() {
        let cases: &[(&[u8], &[u8], bool)] = &[
            (b"abc", b"abc", true),
            (b"abd", b"abc", false),
            (b"ab", b"abc", false),
            (b"abc\0", b"abc", false),
            (b"abc", b"ab", false),
            (b"", b"", true),
            (b"", b"a", false),
            (b"\0", b"", false),
        ];
        for (a, b, want) in cases {
            assert_eq!(ct_eq(a, b), *want, "{a:?} {b:?}");
        }
    }

    fn auth(query: Option<&str>) -> ApiKeyAuth {
        ApiKeyAuth {
            header: "x-api-key".into(),
            query: query.map(Into::into),
        }
    }

    #[test]
    fn extracts_keys() {
        let limits = Limits {
            max_header_bytes: 4096,
            max_headers: 32,
            max_body_bytes: 0,
            max_uri_bytes: 1024,
        };
        // (request, query parameter configured, key found)
        let cases: &[(&str, Option<&str>, Option<&str>)] = &[
            ("GET / HTTP/1.1\r\nX-Api-Key: k1\r\n\r\n", None, Some("k1")),
            (
                "GET /?api_key=q HTTP/1.1\r\nx-api-key: h\r\n\r\n",
                Some("api_key"),
                Some("h"),
            ),
            (
                "GET /?api_key=q HTTP/1.1\r\n\r\n",
                Some("api_key"),
                Some("q"),
            ),
            ("GET /?api_key=q HTTP/1.1\r\n\r\n", None, None),
            (
                "GET /?a=1&api_key=q2&api_key=x HTTP/1.1\r\n\r\n",
                Some("api_key"),
                Some("q2"),
            ),
            ("GET /?xapi_key=q HTTP/1.1\r\n\r\n", Some("api_key"), None),
            (
                "GET /?api_key= HTTP/1.1\r\nx-api-key:\r\n\r\n",
                Some("api_key"),
                None,
            ),
            ("GET /p?api_key HTTP/1.1\r\n\r\n", Some("api_key"), None),
            ("GET / HTTP/1.1\r\nx-api-key: \r\n\r\n", None, None),
            ("GET / HTTP/1.1\r\n\r\n", Some("api_key"), None),
        ];
        for (request, query, want) in cases {
            let request = request.replacen("HTTP/1.1\r\n", "HTTP/1.1\r\nHost: t\r\n", 1);
            let raw = request.as_bytes();
            let head = parse_request_head(raw, &limits).unwrap();
            assert_eq!(
                presented_key(&auth(*query), raw, &head),
                want.map(str::as_bytes),
                "{request}"
            );
        }
    }

    #[test]
    fn finds_consumers() {
        let consumers = [
            ConsumerConfig {
                name: "alice".into(),
                api_keys: vec![parse_api_key("a-key").unwrap()],
            },
            ConsumerConfig {
                name: "bob".into(),
                api_keys: vec![parse_api_key(
                    "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                )
                .unwrap()],
            },
        ];
        assert_eq!(find_consumer(&consumers, b"a-key"), Some(0));
        assert_eq!(find_consumer(&consumers, b"test"), Some(1));
        assert_eq!(find_consumer(&consumers, b"a-ke"), None);
        assert_eq!(find_consumer(&consumers, b""), None);
    }

    /// `authenticate_request` on `/both` (API key, or an OAuth2 token with scope `read`)
    /// against a stub authorization server: the answer `answer` gives, and how many times
    /// it was asked.
    #[test]
    fn methods_are_tried_in_turn_and_token_verdicts_cached() {
        use std::cell::{Cell, RefCell};
        let config = Arc::new(
            crate::config::load_str(
                r#"[server]
listen = ["127.0.0.1:1"]

[upstreams.authz]
endpoints = ["127.0.0.1:9"]

[oauth2_providers.idp]
upstream = "authz"
path = "/introspect"
client_id = "gw"
client_secret = "s"

[consumers.carol]
api_keys = ["carol-key"]

[[routes]]
path = "/both"
mock = { status = 200 }
auth = { api_key = {}, oauth2 = { provider = "idp", scopes = ["read"] } }
"#,
                "t.toml",
            )
            .unwrap(),
        );
        let auth = config.routes.routes()[0].auth.as_ref().unwrap();
        let limits = Limits {
            max_header_bytes: 4096,
            max_headers: 32,
            max_body_bytes: 0,
            max_uri_bytes: 1024,
        };
        let cache = RefCell::default();
        let flights = Default::default();
        let verdicts = Verdicts {
            cache: &cache,
            flights: &flights,
        };
        let asked = Cell::new(0);
        let answer = |token: &[u8]| match token {
            b"reader" => Ok(Bytes::from_static(
                br#"{"active":true,"sub":"alice","scope":"read"}"#,
            )),
            b"writer" => Ok(Bytes::from_static(
                br#"{"active":true,"sub":"bob","scope":"write"}"#,
            )),
            b"revoked" => Ok(Bytes::from_static(br#"{"active":false}"#)),
            _ => Err("connection refused"),
        };
        let run = |credential: &str| {
            let request = format!("GET /both HTTP/1.1\r\nHost: t\r\n{credential}\r\n\r\n");
            let raw = request.as_bytes();
            let head = parse_request_head(raw, &limits).unwrap();
            let exchange = async |_: &OAuth2Provider, token: &[u8]| {
                asked.set(asked.get() + 1);
                answer(token)
            };
            let outcome = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                .build()
                .unwrap()
                .block_on(authenticate_request(
                    auth, &config, raw, &head, &verdicts, exchange,
                ));
            outcome.map(|identity| (identity.consumer, identity.scopes))
        };
        type Outcome<'c> = Result<(Bytes, Option<Bytes>), Rejection<'c>>;
        fn refused(error: ProxyError, challenge: &[u8]) -> Outcome<'_> {
            Err(Rejection { error, challenge })
        }
        fn identity(consumer: &'static str, scopes: Option<&'static str>) -> Outcome<'static> {
            Ok((
                Bytes::from_static(consumer.as_bytes()),
                scopes.map(|s| Bytes::from_static(s.as_bytes())),
            ))
        }
        let unavailable = refused(ProxyError::AuthUnavailable, b"");
        // (credential header, outcome, introspections so far)
        let cases = [
            ("x-api-key: carol-key", identity("carol", None), 0),
            (
                "x-other: 1",
                refused(ProxyError::Unauthorized, &auth.challenge),
                0,
            ),
            (
                "authorization: Bearer reader",
                identity("alice", Some("read")),
                1,
            ),
            // Cached: the server is not asked again.
            (
                "authorization: Bearer reader",
                identity("alice", Some("read")),
                1,
            ),
            (
                "authorization: Bearer writer",
                refused(
                    ProxyError::InsufficientScope,
                    &auth.oauth2.as_ref().unwrap().scopes.challenge,
                ),
                2,
            ),
            (
                "authorization: Bearer revoked",
                refused(ProxyError::Unauthorized, &auth.challenge_invalid_token),
                3,
            ),
            // A failing server is not a refused token, and is asked again next time.
            ("authorization: Bearer other", unavailable.clone(), 4),
            ("authorization: Bearer other", unavailable, 5),
        ];
        for (credential, want, asked_so_far) in cases {
            assert_eq!(run(credential), want, "{credential}");
            assert_eq!(asked.get(), asked_so_far, "{credential}");
        }
    }
}
