//! OAuth2 bearer tokens checked by token introspection (RFC 7662): the pure parts.
//!
//! Where it sits: a route whose `auth` has `oauth2` takes the bearer token of the request
//! (RFC 6750 §2.1), looks it up in the worker's [`cache::TokenCache`], and on a miss asks
//! the provider's introspection endpoint ([`verdict`]; `proxy/introspect.rs` does the
//! exchange over the upstream pools). This module renders that request, parses the answer
//! into a [`TokenState`], and checks scopes; it does no I/O, so all of it is unit-tested
//! here.
//!
//! Invariants: a token is only ever sent to the authorization server when it is a valid
//! `b64token`; the cache never holds a token, only its SHA-256 digest; every value taken
//! from the answer and passed upstream in a header (consumer, scopes) is checked to be a
//! safe header value first.

pub mod cache;
pub mod config;
pub mod single_flight;
pub mod verdict;

use std::fmt;

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::http1::RequestHead;
use config::{ConsumerClaim, OAuth2Auth, OAuth2Provider, RequiredScopes};

/// Bytes that hold a credential: compared and cloned like `Bytes`, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub Bytes);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// What the request presents in its `Authorization` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented<'r> {
    /// No `Authorization` header, or another scheme than Bearer (say, Basic).
    Nothing,
    /// The Bearer scheme with no token, a token that is not a `b64token`, one longer
    /// than [`crate::auth::jwt::MAX_TOKEN_BYTES`], or several `Authorization` headers.
    Malformed,
    Token(&'r [u8]),
}

/// The bearer token of the request, as JWT authentication reads it (`jwt::bearer_token`):
/// only a well-formed one is ever sent to the authorization server.
pub fn bearer_token<'r>(raw: &'r [u8], head: &RequestHead) -> Presented<'r> {
    match crate::auth::jwt::bearer_token(raw, head) {
        None => Presented::Nothing,
        Some(Err(_)) => Presented::Malformed,
        Some(Ok(token)) => Presented::Token(token),
    }
}

/// The cache key of `token` at `provider`: a digest, so that the cache holds no token.
pub fn cache_key(provider: &str, token: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(provider.as_bytes());
    hasher.update([0]);
    hasher.update(token);
    hasher.finalize().into()
}

/// The fixed lines of every introspection request to `path` (RFC 7662 §2.1): client
/// authentication is HTTP Basic with the form-encoded id and secret (RFC 6749 §2.3.1).
pub fn render_request_head(path: &str, client_id: &str, client_secret: &str) -> Secret {
    let mut credentials = Vec::new();
    form_encode(&mut credentials, client_id.as_bytes());
    credentials.push(b':');
    form_encode(&mut credentials, client_secret.as_bytes());
    let mut head = format!("POST {path} HTTP/1.1\r\nauthorization: Basic ").into_bytes();
    base64_encode(&mut head, &credentials);
    head.extend_from_slice(
        b"\r\ncontent-type: application/x-www-form-urlencoded\r\naccept: application/json\r\n",
    );
    Secret(Bytes::from(head))
}

/// Appends one introspection request for `token` to `out`: the fixed head, `host`, the
/// request ID, then `token=...&token_type_hint=access_token`.
pub fn write_request(
    out: &mut BytesMut,
    provider: &OAuth2Provider,
    host: &[u8],
    request_id: (&[u8], &[u8]),
    token: &[u8],
) {
    const HINT: &[u8] = b"&token_type_hint=access_token";
    let mut body = Vec::with_capacity(token.len() + 64);
    body.extend_from_slice(b"token=");
    form_encode(&mut body, token);
    body.extend_from_slice(HINT);
    out.extend_from_slice(&provider.request_head.0);
    crate::http1::encode::write_header(out, b"host", host);
    crate::http1::encode::write_header(out, request_id.0, request_id.1);
    let mut len = itoa::Buffer::new();
    crate::http1::encode::write_header(out, b"content-length", len.format(body.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&body);
}

/// `application/x-www-form-urlencoded` (WHATWG URL §5.2): unreserved bytes as they are,
/// space as `+`, everything else `%XX`.
fn form_encode(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => out.push(b),
            b' ' => out.push(b'+'),
            _ => out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]),
        }
    }
}

/// Standard base64 with padding (RFC 4648 §4), for the Basic credentials.
fn base64_encode(out: &mut Vec<u8>, bytes: &[u8]) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]);
            } else {
                out.push(b'=');
            }
        }
    }
}

/// A token the authorization server vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveToken {
    /// The consumer it authenticates (a safe header value).
    pub consumer: Bytes,
    /// The granted scopes, valid scope tokens joined by single spaces (may be empty).
    pub scopes: Bytes,
    /// Seconds until `exp`, when the answer had one.
    pub expires_in: Option<u64>,
}

/// What the authorization server said about a token, after our own checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenState {
    Active(ActiveToken),
    /// `active: false`, or active but expired, not yet valid, for another audience or
    /// issuer, or without a usable consumer.
    Inactive(&'static str),
}

/// The members of an introspection answer we read (RFC 7662 §2.2); others are ignored.
#[derive(Deserialize)]
struct Answer {
    active: bool,
    scope: Option<String>,
    exp: Option<f64>,
    nbf: Option<f64>,
    client_id: Option<String>,
    sub: Option<String>,
    username: Option<String>,
    aud: Option<Audience>,
    iss: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

/// Consumer names longer than this are not used.
const MAX_CONSUMER_BYTES: usize = 256;

/// Parses an introspection answer `body` received at `unix_now` (seconds). `Err`: not the
/// JSON object RFC 7662 describes (the server is then treated as failing).
pub fn parse_answer(
    body: &[u8],
    provider: &OAuth2Provider,
    unix_now: u64,
) -> Result<TokenState, serde_json::Error> {
    let answer: Answer = serde_json::from_slice(body)?;
    if !answer.active {
        return Ok(TokenState::Inactive("inactive"));
    }
    let now = unix_now as f64;
    if answer.exp.is_some_and(|exp| exp <= now) {
        return Ok(TokenState::Inactive("expired"));
    }
    if answer.nbf.is_some_and(|nbf| nbf > now) {
        return Ok(TokenState::Inactive("not yet valid"));
    }
    if let Some(issuer) = &provider.issuer {
        if answer.iss.as_ref() != Some(issuer) {
            return Ok(TokenState::Inactive("issuer mismatch"));
        }
    }
    if let Some(audience) = &provider.audience {
        let matches = match &answer.aud {
            Some(Audience::One(aud)) => aud == audience,
            Some(Audience::Many(list)) => list.contains(audience),
            None => false,
        };
        if !matches {
            return Ok(TokenState::Inactive("audience mismatch"));
        }
    }
    let claim = match provider.consumer_claim {
        ConsumerClaim::Sub => answer.sub.as_deref(),
        ConsumerClaim::Username => answer.username.as_deref(),
        ConsumerClaim::ClientId => None,
    };
    let consumer = claim
        .filter(|c| is_consumer_name(c))
        .or(answer.client_id.as_deref().filter(|c| is_consumer_name(c)));
    let Some(consumer) = consumer else {
        return Ok(TokenState::Inactive("no usable consumer claim"));
    };
    let mut scopes = Vec::new();
    for scope in answer.scope.as_deref().unwrap_or("").split(' ') {
        if is_scope_token(scope) {
            if !scopes.is_empty() {
                scopes.push(b' ');
            }
            scopes.extend_from_slice(scope.as_bytes());
        }
    }
    Ok(TokenState::Active(ActiveToken {
        consumer: Bytes::copy_from_slice(consumer.as_bytes()),
        scopes: Bytes::from(scopes),
        expires_in: answer.exp.map(|exp| (exp - now) as u64),
    }))
}

/// Printable ASCII (spaces inside allowed), so that it can travel in a header.
fn is_consumer_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_CONSUMER_BYTES
        && name.bytes().all(|b| (b' '..=b'~').contains(&b))
        && !name.starts_with(' ')
        && !name.ends_with(' ')
}

/// RFC 6749 §3.3 `scope-token`: `1*( %x21 / %x23-5B / %x5D-7E )`.
pub fn is_scope_token(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

/// Whether `granted` (space-separated) holds every scope of `required`.
pub fn has_scopes(granted: &[u8], required: &[String]) -> bool {
    required
        .iter()
        .all(|scope| granted.split(|b| *b == b' ').any(|g| g == scope.as_bytes()))
}

impl OAuth2Auth {
    /// What a request with `method` (as sent) needs. `HEAD` without an entry of its own
    /// needs what `GET` needs, since a route's `GET` serves `HEAD` too.
    pub fn required_for(&self, method: &[u8]) -> &RequiredScopes {
        let find = |method: &[u8]| {
            self.method_scopes
                .iter()
                .find(|(m, _)| m.as_bytes() == method)
                .map(|(_, scopes)| scopes)
        };
        find(method)
            .or_else(|| (method == b"HEAD").then(|| find(b"GET")).flatten())
            .unwrap_or(&self.scopes)
    }
}

#[cfg(test)]
mod tests;
