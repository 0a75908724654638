//! Verification keys of JWT providers: a JSON Web Key Set (RFC 7517 §5) parsed into
//! [`KeySet`]s, and the [`JwksStore`] that keeps the set of a `jwks_url` fresh.
//!
//! Where it sits: off the request path. A config build only creates (or finds) the store
//! of each URL; once the config is served, [`start_refreshers`] gives each new store its
//! side thread, which fetches the URL then, every `jwks_refresh`, and soon after a worker
//! met a token whose `kid` it does not know. Workers only read the current set (one
//! `ArcSwap` load, and only when a token is not in their cache of validated tokens).
//!
//! Invariants: building a config fetches nothing and starts no thread (`strait --check`
//! and a refused reload make no connection); a failed fetch never replaces keys that
//! worked (it is logged and retried); a config reload that keeps a provider's URL keeps its
//! store, so its keys stay served without a gap; a store's thread ends once no config
//! refers to the store.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

/// Largest JWKS document read, file or URL.
pub const MAX_JWKS_BYTES: u64 = 1024 * 1024;
/// Keys kept from one JWKS; past it the rest are ignored (a real set holds a handful).
const MAX_KEYS: usize = 64;
/// One fetch of a JWKS URL, connect to last byte.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`start_refreshers`] waits for the first fetch of new stores before going on
/// without keys (the threads keep retrying).
const FIRST_FETCH_WAIT: Duration = Duration::from_secs(3);
/// First retry delay after a failed fetch; doubles up to the refresh interval.
const RETRY_MIN: Duration = Duration::from_millis(500);
/// Fetches asked for by workers (unknown `kid`) are at least this far apart.
const MIN_FORCED_INTERVAL: Duration = Duration::from_secs(5);
/// A worker asks for an early fetch at most this often.
const HINT_SPACING: Duration = Duration::from_secs(1);

/// One verification key.
pub struct Key {
    /// The JWK's `kid`; `None` for keys from a secret or PEM file, and JWKs without one:
    /// such a key is tried for any token whose algorithm fits it.
    pub kid: Option<String>,
    /// The JWK's `alg`, when it names one: only tokens of that algorithm use the key.
    pub alg: Option<Algorithm>,
    pub key: DecodingKey,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never prints the key material (an HMAC secret is one).
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("family", &self.key.family())
            .finish()
    }
}

/// The keys a provider verifies with.
#[derive(Debug, Default)]
pub struct KeySet {
    pub keys: Vec<Key>,
}

/// Parses a JWKS document. Keys for encryption (`use: "enc"`) or of an unsupported type or
/// algorithm are skipped; a set left without any key is an error.
pub fn parse_jwks(text: &[u8]) -> Result<KeySet, String> {
    #[derive(serde::Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let document: Document =
        serde_json::from_slice(text).map_err(|e| format!("not a JWKS document: {e}"))?;
    let mut keys = Vec::new();
    for value in document.keys.into_iter().take(MAX_KEYS) {
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
            continue;
        };
        if matches!(
            jwk.common.public_key_use,
            Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
        ) {
            continue;
        }
        // `alg` names a signature algorithm we know, or the key is not for us.
        let alg = match &jwk.common.key_algorithm {
            None => None,
            Some(alg) => match algorithm_name(alg).and_then(|n| n.parse::<Algorithm>().ok()) {
                Some(alg) => Some(alg),
                None => continue,
            },
        };
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        if alg.is_some_and(|a| a.family() != key.family()) {
            continue;
        }
        keys.push(Key {
            kid: jwk.common.key_id.clone(),
            alg,
            key,
        });
    }
    if keys.is_empty() {
        return Err("the JWKS has no usable signature key".into());
    }
    Ok(KeySet { keys })
}

/// The JWK `alg` as written (`"RS256"`), through its serde name.
fn algorithm_name(alg: &jsonwebtoken::jwk::KeyAlgorithm) -> Option<String> {
    match serde_json::to_value(alg) {
        Ok(serde_json::Value::String(name)) => Some(name),
        _ => None,
    }
}

/// The key set of one `jwks_url`, kept fresh by a side thread.
pub struct JwksStore {
    url: String,
    refresh: Duration,
    keys: Arc<ArcSwapOption<KeySet>>,
    /// Asks the thread for an early fetch; dropping the store disconnects it, which ends
    /// the thread.
    wake: Sender<()>,
    /// The refresher until [`start_refreshers`] runs it on its thread; `None` once started.
    idle: Mutex<Option<Refresher>>,
}

impl std::fmt::Debug for JwksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksStore")
            .field("url", &self.url)
            .field("refresh", &self.refresh)
            .finish()
    }
}

/// The stores of the configs alive, so that a rebuilt config finds the store of its URL.
static STORES: Mutex<Vec<Weak<JwksStore>>> = Mutex::new(Vec::new());

impl JwksStore {
    /// The store for `url`: the one a live config already uses when the URL and interval
    /// are the same; otherwise a new one, seeded with the keys of the same URL's store if
    /// any, that fetches nothing until [`start_refreshers`] starts it. Called while a
    /// config is built, never on the request path.
    pub fn shared(url: &str, refresh: Duration) -> Arc<JwksStore> {
        let mut stores = STORES.lock().unwrap_or_else(|p| p.into_inner());
        stores.retain(|weak| weak.strong_count() > 0);
        let same_url = stores
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|store| store.url == url)
            .collect::<Vec<_>>();
        if let Some(store) = same_url.iter().find(|s| s.refresh == refresh) {
            return store.clone();
        }
        let seed = same_url.first().and_then(|s| s.keys.load_full());
        let store = Self::new(url, refresh, seed);
        stores.push(Arc::downgrade(&store));
        store
    }

    fn new(url: &str, refresh: Duration, seed: Option<Arc<KeySet>>) -> Arc<JwksStore> {
        let keys = Arc::new(ArcSwapOption::new(seed));
        let (wake, wakes) = crossbeam_channel::bounded(1);
        let refresher = Refresher {
            url: url.to_owned(),
            refresh,
            keys: keys.clone(),
            wakes,
        };
        Arc::new(JwksStore {
            url: url.to_owned(),
            refresh,
            keys,
            wake,
            idle: Mutex::new(Some(refresher)),
        })
    }

    /// The current keys (`None` until a first fetch succeeded), through arc-swap's
    /// thread-local fast path: no shared reference count is touched.
    pub fn keys(&self) -> arc_swap::Guard<Option<Arc<KeySet>>> {
        self.keys.load()
    }

    /// Asks for an early fetch (a token named a `kid` the set lacks). Never blocks: when a
    /// request is pending already, this one is dropped; the thread spaces the fetches out,
    /// and each worker sends at most one request per [`HINT_SPACING`], so a flood of
    /// unknown `kid`s does not hammer the channel shared between threads.
    pub fn request_refresh(&self) {
        thread_local! {
            static LAST_HINT: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
        }
        let now = Instant::now();
        let due = LAST_HINT.with(|last| {
            let due = last
                .get()
                .is_none_or(|at| now.duration_since(at) >= HINT_SPACING);
            if due {
                last.set(Some(now));
            }
            due
        });
        if due {
            let _ = self.wake.try_send(());
        }
    }

    /// How often the key set is fetched again.
    pub fn refresh(&self) -> Duration {
        self.refresh
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

/// Starts the side thread of each store not running yet (a reload keeps the running stores
/// of unchanged URLs), then waits up to [`FIRST_FETCH_WAIT`] in all for the first fetch of
/// those without keys: at startup, or for a new URL, the config is served with keys from
/// the start when the URL answers quickly; otherwise the threads keep trying. Called when
/// a config is served, never while one is built.
pub fn start_refreshers<'a>(stores: impl IntoIterator<Item = &'a JwksStore>) {
    let mut first_fetches = Vec::new();
    for store in stores {
        let idle = store.idle.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(refresher) = idle else { continue };
        let (first_tx, first_rx) = crossbeam_channel::bounded(1);
        let spawned = std::thread::Builder::new()
            .name("strait-jwks".into())
            .spawn(move || refresher.run(first_tx));
        match spawned {
            Ok(_) if store.keys.load().is_none() => first_fetches.push(first_rx),
            Ok(_) => {}
            Err(err) => {
                tracing::error!(url = %store.url, %err, "cannot start the JWKS refresher thread")
            }
        }
    }
    let deadline = Instant::now() + FIRST_FETCH_WAIT;
    for first in first_fetches {
        let _ = first.recv_timeout(deadline.saturating_duration_since(Instant::now()));
    }
}

/// The side thread of one store.
struct Refresher {
    url: String,
    refresh: Duration,
    keys: Arc<ArcSwapOption<KeySet>>,
    wakes: Receiver<()>,
}

impl Refresher {
    fn run(self, first: Sender<()>) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(FETCH_TIMEOUT))
            .tls_config(crate::tls::ureq_tls())
            .build()
            .into();
        let mut retry = RETRY_MIN;
        let mut first = Some(first);
        loop {
            let fetched_at = Instant::now();
            let next = match fetch(&agent, &self.url) {
                Ok(set) => {
                    tracing::info!(url = %self.url, keys = set.keys.len(), "JWKS loaded");
                    self.keys.store(Some(Arc::new(set)));
                    retry = RETRY_MIN;
                    self.refresh
                }
                Err(err) => {
                    if self.keys.load().is_some() {
                        tracing::warn!(url = %self.url, %err, "JWKS refresh failed; keeping the last good keys");
                    } else {
                        tracing::warn!(url = %self.url, %err, "JWKS fetch failed; tokens of this provider are rejected until one succeeds");
                    }
                    let delay = retry;
                    retry = (retry * 2).min(self.refresh);
                    delay
                }
            };
            if let Some(first) = first.take() {
                let _ = first.send(());
            }
            match self.wakes.recv_timeout(next) {
                Ok(()) => {
                    // An early fetch, but not more often than MIN_FORCED_INTERVAL.
                    let earliest = fetched_at + MIN_FORCED_INTERVAL;
                    let wait = earliest.saturating_duration_since(Instant::now());
                    if let Err(RecvTimeoutError::Disconnected) = self.wakes.recv_timeout(wait) {
                        return;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }
}

/// One GET of a JWKS URL.
fn fetch(agent: &ureq::Agent, url: &str) -> Result<KeySet, String> {
    let mut response = agent
        .get(url)
        .header("accept", "application/jwk-set+json, application/json")
        .call()
        .map_err(|e| e.to_string())?;
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_JWKS_BYTES)
        .read_to_vec()
        .map_err(|e| e.to_string())?;
    parse_jwks(&body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::AlgorithmFamily;

    #[test]
    fn parses_and_filters_jwks() {
        // RFC 7517 A.1 (public keys), plus keys we must skip.
        let text = br#"{"keys":[
            {"kty":"EC","crv":"P-256","x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4",
             "y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM","use":"enc","kid":"1"},
            {"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
             "e":"AQAB","alg":"RS256","kid":"2011-04-29"},
            {"kty":"RSA","n":"AQAB","e":"AQAB","alg":"RSA-OAEP","kid":"enc-alg"},
            {"kty":"XYZ","kid":"unknown-type"},
            {"kty":"oct","k":"AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow","kid":"hmac"}
        ]}"#;
        let set = parse_jwks(text).unwrap();
        let seen: Vec<_> = set
            .keys
            .iter()
            .map(|k| (k.kid.as_deref(), k.alg, k.key.family()))
            .collect();
        assert_eq!(
            seen,
            [
                (
                    Some("2011-04-29"),
                    Some(Algorithm::RS256),
                    AlgorithmFamily::Rsa
                ),
                (Some("hmac"), None, AlgorithmFamily::Hmac),
            ]
        );
        let bad: &[(&[u8], &str)] = &[
            (b"", "not a JWKS document"),
            (b"{\"keys\": 3}", "not a JWKS document"),
            (b"{\"keys\": []}", "the JWKS has no usable signature key"),
            (
                b"{\"keys\": [{\"kty\":\"RSA\"}]}",
                "the JWKS has no usable signature key",
            ),
        ];
        for (text, want) in bad {
            let err = parse_jwks(text).unwrap_err();
            assert!(err.starts_with(want), "{err}");
        }
    }
}
