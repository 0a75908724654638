//! JWT bearer tokens (RFC 7519, sent as RFC 6750 `Authorization: Bearer`): one method of a
//! route's `auth`, next to API keys.
//!
//! Where it sits: called by `auth::authenticate` (the route's `auth` filter). A token is
//! accepted when one of the route's providers verifies it: its algorithm is one the
//! provider allows and fits the key (so `alg: none` and an HMAC token "signed" with an RSA
//! public key never verify), its signature checks with a key (picked by `kid`), and its
//! claims pass (`exp`, `nbf`, `iat` with the leeway; `iss`; `aud`; required claims; the
//! consumer claim). The accepted token becomes an [`Identity`]: the consumer, and the
//! claims the provider maps to upstream headers.
//!
//! Signature checks cost tens of microseconds, so each worker keeps the tokens it accepted
//! in a small cache (thread-local: no lock, nothing shared), each until the token expires
//! and at most [`CACHE_TTL`]; a client repeating its token costs a hash lookup.
//!
//! Invariants: nothing here panics on a token's bytes; a rejection tells the client only
//! one of three short reasons ([`Rejection`]); only claims that are strings, numbers or
//! booleans without control characters reach upstream headers.

pub mod config;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ahash::AHashMap;
use bytes::Bytes;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use crate::auth::jwks::{JwksStore, KeySet};
use crate::auth::Identity;
use crate::http1::RequestHead;

/// Longest token considered; longer ones are rejected unparsed.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// How long a worker trusts a token it verified without verifying it again.
pub const CACHE_TTL: Duration = Duration::from_secs(60);
/// Tokens a worker keeps verified.
pub const CACHE_ENTRIES: usize = 1024;
/// Keys tried for a token without a `kid` (each try is a signature check).
const MAX_KEY_TRIES: usize = 4;

/// Why a token was refused; the client sees only this (as `error_description`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rejection {
    /// Signature, key, algorithm, issuer, audience or a claim: not told apart.
    Invalid = 0,
    Expired = 1,
    /// Not a JWS compact serialization we can read.
    Malformed = 2,
}

impl Rejection {
    pub const ALL: [Rejection; 3] = [Rejection::Invalid, Rejection::Expired, Rejection::Malformed];

    pub fn description(self) -> &'static str {
        match self {
            Rejection::Invalid => "the token is not valid",
            Rejection::Expired => "the token has expired",
            Rejection::Malformed => "the token is malformed",
        }
    }
}

/// Where a provider's keys come from.
#[derive(Debug)]
pub enum KeySource {
    /// `secret`, `secret_file`, `public_key_file` or `jwks_file`: loaded with the config.
    Static(Arc<KeySet>),
    /// `jwks_url`: refreshed in the background.
    Jwks(Arc<JwksStore>),
}

/// One `[jwt_providers.NAME]`, validated.
#[derive(Debug)]
pub struct JwtProvider {
    pub name: String,
    /// Unique in the process: keys the workers' caches, so a token verified by a provider
    /// of an older config is verified again.
    pub id: u64,
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// The token's `aud` must contain one of them, when not empty.
    pub audiences: Vec<String>,
    /// Allowed algorithms (never empty), each with its verification settings.
    pub algorithms: Vec<(Algorithm, Validation)>,
    pub keys: KeySource,
    /// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds.
    pub leeway: u64,
    /// Claims that must be present (not null).
    pub required_claims: Vec<String>,
    /// The claim naming the consumer (`sub` by default); it must be present.
    pub consumer_claim: String,
    /// (lower-case header name, claim) pairs set upstream.
    pub claims_to_headers: Vec<(Bytes, String)>,
    /// Send the client's `Authorization` upstream.
    pub forward_token: bool,
}

impl JwtProvider {
    /// A fresh process-unique provider id.
    pub fn next_id() -> u64 {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        NEXT.fetch_add(1, Ordering::Relaxed)
    }

    /// Verification settings for `algorithms`: only signature and algorithm are left to
    /// the crate; claims are checked in [`check_claims`], with `now` as an argument.
    pub fn validations(algorithms: &[Algorithm]) -> Vec<(Algorithm, Validation)> {
        algorithms
            .iter()
            .map(|alg| {
                let mut validation = Validation::new(*alg);
                validation.required_spec_claims.clear();
                validation.validate_exp = false;
                validation.validate_nbf = false;
                validation.validate_aud = false;
                (*alg, validation)
            })
            .collect()
    }
}

/// A route's `auth.jwt`.
#[derive(Debug, Clone)]
pub struct JwtAuth {
    pub providers: Vec<Arc<JwtProvider>>,
    /// The route's `forward_token`, overriding the providers' when set.
    pub forward_token: Option<bool>,
    /// Lower-case names of every header a provider of the route sets from claims: the
    /// client's copies never pass, whether or not the token carries the claim.
    pub claim_headers: Vec<Bytes>,
    /// The `www-authenticate` lines of a 401 for a rejected token, indexed by
    /// [`Rejection`] (every method's challenge, the Bearer one with its error).
    pub rejected: [Bytes; 3],
}

/// What a request's `Authorization` header gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// No bearer token: the route's other methods, or a plain challenge.
    NoToken,
    Accepted(Identity),
    Rejected(Rejection),
}

/// Authenticates the bearer token of a request on a route with `auth`.
pub fn authenticate(auth: &JwtAuth, raw: &[u8], head: &RequestHead) -> Outcome {
    let token = match bearer_token(raw, head) {
        None => return Outcome::NoToken,
        Some(Err(rejection)) => return Outcome::Rejected(rejection),
        Some(Ok(token)) => token,
    };
    match verify_cached(&auth.providers, token) {
        Ok(mut identity) => {
            if let Some(forward) = auth.forward_token {
                identity.forward_token = forward;
            }
            Outcome::Accepted(identity)
        }
        Err(rejection) => Outcome::Rejected(rejection),
    }
}

/// The bearer token of the request: `None` without an `Authorization: Bearer` header;
/// an error for a second `Authorization` header or a token that is not a `b64token`
/// (RFC 6750 §2.1) within [`MAX_TOKEN_BYTES`].
pub fn bearer_token<'r>(raw: &'r [u8], head: &RequestHead) -> Option<Result<&'r [u8], Rejection>> {
    let mut values = head
        .headers
        .iter()
        .filter(|h| h.name(raw).eq_ignore_ascii_case(b"authorization"))
        .map(|h| h.value(raw));
    let value = values.next()?;
    let token = parse_bearer(value)?;
    if values.next().is_some() {
        return Some(Err(Rejection::Malformed));
    }
    Some(token)
}

/// The token of one `Authorization` value, `None` when its scheme is not Bearer.
pub fn parse_bearer(value: &[u8]) -> Option<Result<&[u8], Rejection>> {
    const SCHEME: &[u8] = b"bearer";
    let scheme = value.get(..SCHEME.len())?;
    if !scheme.eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    let rest = &value[SCHEME.len()..];
    if !rest.is_empty() && rest[0] != b' ' {
        return None; // another scheme, such as "Bearerx"
    }
    let start = rest.iter().position(|b| *b != b' ').unwrap_or(rest.len());
    let token = &rest[start..];
    let end = token.iter().position(|b| *b == b'=').unwrap_or(token.len());
    // RFC 6750 §2.1 `b64token`: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
    let well_formed = end > 0
        && token.len() <= MAX_TOKEN_BYTES
        && token[..end]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(b))
        && token[end..].iter().all(|b| *b == b'=');
    Some(if well_formed {
        Ok(token)
    } else {
        Err(Rejection::Malformed)
    })
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A token a worker verified, and until when it trusts it.
struct Cached {
    provider: u64,
    identity: Identity,
    until: Instant,
}

/// The worker's verified tokens, by token bytes (compared whole, so a hash collision
/// cannot pass another token).
#[derive(Default)]
struct TokenCache {
    entries: AHashMap<Box<[u8]>, Cached>,
}

thread_local! {
    /// Per worker thread: the request path takes no lock for it.
    static CACHE: RefCell<TokenCache> = RefCell::new(TokenCache::default());
}

impl TokenCache {
    fn get(&self, providers: &[Arc<JwtProvider>], token: &[u8], now: Instant) -> Option<Identity> {
        let cached = self.entries.get(token)?;
        (now < cached.until && providers.iter().any(|p| p.id == cached.provider))
            .then(|| cached.identity.clone())
    }

    fn insert(&mut self, token: &[u8], cached: Cached, now: Instant) {
        if self.entries.len() >= CACHE_ENTRIES {
            self.entries.retain(|_, c| c.until > now);
            if self.entries.len() >= CACHE_ENTRIES {
                self.entries.clear();
            }
        }
        self.entries.insert(token.into(), cached);
    }
}

/// Verifies `token` with the first of `providers` that accepts it, through the worker's
/// cache. With several refusals, the most telling one is returned.
fn verify_cached(providers: &[Arc<JwtProvider>], token: &[u8]) -> Result<Identity, Rejection> {
    let now = Instant::now();
    if let Some(identity) = CACHE.with(|c| c.borrow().get(providers, token, now)) {
        return Ok(identity);
    }
    let unix = unix_now();
    let mut refused = Rejection::Invalid;
    for provider in providers {
        match verify(provider, token, unix) {
            Ok(verified) => {
                let ttl = verified
                    .expires
                    .map_or(CACHE_TTL, |exp| {
                        Duration::from_secs(exp.saturating_sub(unix))
                    })
                    .min(CACHE_TTL);
                let cached = Cached {
                    provider: provider.id,
                    identity: verified.identity.clone(),
                    until: now + ttl,
                };
                CACHE.with(|c| c.borrow_mut().insert(token, cached, now));
                return Ok(verified.identity);
            }
            Err(rejection) => refused = refused.max(rejection),
        }
    }
    Err(refused)
}

/// An accepted token.
#[derive(Debug)]
pub struct Verified {
    pub identity: Identity,
    /// Unix second from which the token is refused (`exp` plus leeway), if it expires.
    pub expires: Option<u64>,
}

/// Verifies `token` with `provider`'s current keys at Unix time `now`.
pub fn verify(provider: &JwtProvider, token: &[u8], now: u64) -> Result<Verified, Rejection> {
    // Borrowed, not cloned: no reference count shared with other workers is touched.
    let guard;
    let keys = match &provider.keys {
        KeySource::Static(keys) => Some(&**keys),
        KeySource::Jwks(store) => {
            guard = store.keys();
            guard.as_deref()
        }
    };
    let result = verify_with(provider, keys, token, now);
    if let (Err(Refusal::UnknownKid), KeySource::Jwks(store)) = (&result, &provider.keys) {
        store.request_refresh();
    }
    result.map_err(|refusal| {
        tracing::debug!(provider = %provider.name, ?refusal, "bearer token refused");
        refusal.rejection()
    })
}

/// Why a token was refused, in detail: logged at debug level, never sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Malformed,
    Algorithm,
    NoKeys,
    UnknownKid,
    Signature,
    Expired,
    NotYetValid,
    IssuedInFuture,
    Claim(&'static str),
    Issuer,
    Audience,
    Required(String),
    Consumer,
}

impl Refusal {
    fn rejection(&self) -> Rejection {
        match self {
            Refusal::Malformed => Rejection::Malformed,
            Refusal::Expired => Rejection::Expired,
            _ => Rejection::Invalid,
        }
    }
}

/// Signature and claims of `token` against `keys` (`None`: not fetched yet).
pub fn verify_with(
    provider: &JwtProvider,
    keys: Option<&KeySet>,
    token: &[u8],
    now: u64,
) -> Result<Verified, Refusal> {
    if token.len() > MAX_TOKEN_BYTES || token.iter().filter(|b| **b == b'.').count() != 2 {
        return Err(Refusal::Malformed);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| Refusal::Malformed)?;
    let (alg, validation) = provider
        .algorithms
        .iter()
        .find(|(alg, _)| *alg == header.alg)
        .ok_or(Refusal::Algorithm)?;
    let keys = keys.ok_or(Refusal::NoKeys)?;
    let kid = header.kid.as_deref();
    let mut candidates = keys
        .keys
        .iter()
        .filter(|k| k.key.family() == alg.family() && k.alg.is_none_or(|a| a == *alg))
        .filter(|k| match (kid, k.kid.as_deref()) {
            (Some(want), Some(have)) => want == have,
            _ => true,
        })
        .peekable();
    if candidates.peek().is_none() {
        return Err(if kid.is_some() {
            Refusal::UnknownKid
        } else {
            Refusal::Signature
        });
    }
    let mut claims = None;
    for key in candidates.take(MAX_KEY_TRIES) {
        match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, validation) {
            Ok(data) => {
                claims = Some(data.claims);
                break;
            }
            Err(err) => match err.kind() {
                ErrorKind::InvalidSignature => continue,
                ErrorKind::Base64(_)
                | ErrorKind::Json(_)
                | ErrorKind::Utf8(_)
                | ErrorKind::InvalidToken => return Err(Refusal::Malformed),
                _ => return Err(Refusal::Signature),
            },
        }
    }
    let claims = claims.ok_or(Refusal::Signature)?;
    check_claims(provider, &claims, now)
}

/// The claim checks (RFC 7519 §4.1) and the identity they yield.
pub fn check_claims(
    provider: &JwtProvider,
    claims: &Map<String, Value>,
    now: u64,
) -> Result<Verified, Refusal> {
    let leeway = provider.leeway as f64;
    let now = now as f64;
    let exp = numeric_date(claims, "exp")?;
    if exp.is_some_and(|exp| now >= exp + leeway) {
        return Err(Refusal::Expired);
    }
    if numeric_date(claims, "nbf")?.is_some_and(|nbf| now + leeway < nbf) {
        return Err(Refusal::NotYetValid);
    }
    if numeric_date(claims, "iat")?.is_some_and(|iat| now + leeway < iat) {
        return Err(Refusal::IssuedInFuture);
    }
    if let Some(issuer) = &provider.issuer {
        if claims.get("iss").and_then(Value::as_str) != Some(issuer) {
            return Err(Refusal::Issuer);
        }
    }
    if !provider.audiences.is_empty() {
        let fits = |v: &Value| {
            v.as_str()
                .is_some_and(|a| provider.audiences.iter().any(|w| w == a))
        };
        let ok = match claims.get("aud") {
            Some(Value::Array(list)) => list.iter().any(fits),
            Some(one) => fits(one),
            None => false,
        };
        if !ok {
            return Err(Refusal::Audience);
        }
    }
    if let Some(missing) = provider
        .required_claims
        .iter()
        .find(|name| claims.get(name.as_str()).is_none_or(Value::is_null))
    {
        return Err(Refusal::Required(missing.clone()));
    }
    let consumer = claims
        .get(&provider.consumer_claim)
        .and_then(header_value)
        .filter(|v| !v.is_empty())
        .ok_or(Refusal::Consumer)?;
    let headers: Vec<(Bytes, Bytes)> = provider
        .claims_to_headers
        .iter()
        .filter_map(|(name, claim)| Some((name.clone(), header_value(claims.get(claim)?)?)))
        .collect();
    Ok(Verified {
        identity: Identity {
            consumer,
            scopes: None,
            headers: Rc::from(headers),
            claims: claims
                .iter()
                .filter_map(|(name, value)| Some((name.as_str().into(), header_value(value)?)))
                .collect(),
            forward_token: provider.forward_token,
        },
        // A NaN or huge `exp` saturates; the cache caps the lifetime anyway.
        expires: exp.map(|exp| (exp + leeway).max(0.0) as u64),
    })
}

/// A NumericDate claim (RFC 7519 §2: seconds, possibly fractional); an error when present
/// with another type.
fn numeric_date(claims: &Map<String, Value>, name: &'static str) -> Result<Option<f64>, Refusal> {
    match claims.get(name) {
        None => Ok(None),
        Some(value) => value.as_f64().map(Some).ok_or(Refusal::Claim(name)),
    }
}

/// A claim as a header value: strings without control characters, numbers, booleans.
fn header_value(value: &Value) -> Option<Bytes> {
    match value {
        Value::String(text) => text
            .bytes()
            .all(|b| b >= 0x20 && b != 0x7f)
            .then(|| Bytes::copy_from_slice(text.as_bytes())),
        Value::Number(n) => Some(Bytes::from(n.to_string())),
        Value::Bool(b) => Some(Bytes::from_static(if *b { b"true" } else { b"false" })),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
