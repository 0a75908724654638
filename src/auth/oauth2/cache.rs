//! Per-worker cache of introspection results, so that a token is not sent to the
//! authorization server on every request.
//!
//! One table per provider, keyed by the SHA-256 digest of the token (never the token),
//! bounded to the provider's `cache_size`: when full, the oldest entry goes (first in,
//! first out). An active token stays until its `exp` or `cache_ttl`, whichever comes first;
//! an inactive one for `negative_cache_ttl`. Failures of the authorization server are never
//! cached. Time is an argument, so the tests need no clock.
//!
//! A reload keeps the table of every provider whose settings did not change, and drops
//! the others: an answer of another server, or for other credentials, is not reused.
//!
//! It also paces the warnings about a failing authorization server (one line a second per
//! worker and provider), since that per-worker, per-provider state lives here anyway.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::config::{OAuth2Provider, ProviderId};
use super::ActiveToken;
use crate::auth::AuthSections;

/// Failures of one authorization server are logged at most this often per worker.
pub const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// A cached verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cached {
    Active(Rc<ActiveToken>),
    Inactive,
}

/// The worker's cache, for every provider of the config snapshot `C` it was last synced
/// with.
pub struct TokenCache<C> {
    built_for: Option<Arc<C>>,
    providers: Vec<ProviderCache>,
}

impl<C> Default for TokenCache<C> {
    fn default() -> Self {
        TokenCache {
            built_for: None,
            providers: Vec::new(),
        }
    }
}

impl<C: AuthSections> TokenCache<C> {
    /// The unexpired verdict on the token with digest `key` at `provider` of `config`, if
    /// cached. A request on a new snapshot first brings the cache to it.
    pub fn get(
        &mut self,
        config: &Arc<C>,
        provider: ProviderId,
        key: &[u8; 32],
        now: Instant,
    ) -> Option<Cached> {
        self.sync(config);
        self.providers.get_mut(provider)?.get(key, now)
    }

    /// Caches `value` for `ttl` (nothing when `ttl` is zero, or when another request has
    /// brought the cache to a newer snapshot meanwhile: `provider` may mean another one).
    pub fn insert(
        &mut self,
        config: &Arc<C>,
        provider: ProviderId,
        key: [u8; 32],
        value: Cached,
        ttl: Duration,
        now: Instant,
    ) {
        if !self.is_built_for(config) {
            return;
        }
        if let Some(cache) = self.providers.get_mut(provider) {
            cache.insert(key, value, ttl, now);
        }
    }

    /// Whether a failure of `provider`'s server at `now` should be logged: at most one
    /// line per [`FAILURE_LOG_INTERVAL`] per worker, so that an outage under load does not
    /// flood the log. `Some(n)`: log, saying `n` failures went unlogged since the last line.
    pub fn failure_to_log(&mut self, provider: ProviderId, now: Instant) -> Option<u64> {
        let cache = self.providers.get_mut(provider)?;
        match cache.last_failure_log {
            Some(at) if now.saturating_duration_since(at) < FAILURE_LOG_INTERVAL => {
                cache.unlogged_failures += 1;
                None
            }
            _ => {
                cache.last_failure_log = Some(now);
                Some(std::mem::take(&mut cache.unlogged_failures))
            }
        }
    }

    fn is_built_for(&self, config: &Arc<C>) -> bool {
        self.built_for
            .as_ref()
            .is_some_and(|built| Arc::ptr_eq(built, config))
    }

    /// Follows a reload, keeping the entries of unchanged providers.
    fn sync(&mut self, config: &Arc<C>) {
        if self.is_built_for(config) {
            return;
        }
        let mut old = std::mem::take(&mut self.providers);
        self.providers = config
            .oauth2_providers()
            .iter()
            .map(
                |provider| match old.iter().position(|c| c.provider == *provider) {
                    Some(i) => old.swap_remove(i),
                    None => ProviderCache::new(provider.clone()),
                },
            )
            .collect();
        self.built_for = Some(config.clone());
    }
}

struct Entry {
    value: Cached,
    expires: Instant,
    /// Insertion number: tells whether a slot of `order` still stands for this entry.
    stamp: u64,
}

struct ProviderCache {
    provider: OAuth2Provider,
    entries: HashMap<[u8; 32], Entry, ahash::RandomState>,
    /// Keys in insertion order, with their stamp; a key inserted again leaves a stale slot
    /// behind, skipped on eviction.
    order: VecDeque<([u8; 32], u64)>,
    next_stamp: u64,
    last_failure_log: Option<Instant>,
    unlogged_failures: u64,
}

impl ProviderCache {
    fn new(provider: OAuth2Provider) -> Self {
        ProviderCache {
            provider,
            entries: HashMap::default(),
            order: VecDeque::new(),
            next_stamp: 0,
            last_failure_log: None,
            unlogged_failures: 0,
        }
    }

    fn get(&mut self, key: &[u8; 32], now: Instant) -> Option<Cached> {
        let entry = self.entries.get(key)?;
        if entry.expires <= now {
            self.entries.remove(key);
            return None;
        }
        Some(entry.value.clone())
    }

    fn insert(&mut self, key: [u8; 32], value: Cached, ttl: Duration, now: Instant) {
        let capacity = self.provider.cache_size;
        if ttl.is_zero() || capacity == 0 {
            return;
        }
        if !self.entries.contains_key(&key) {
            while self.entries.len() >= capacity {
                let Some((oldest, stamp)) = self.order.pop_front() else {
                    break;
                };
                if self.entries.get(&oldest).is_some_and(|e| e.stamp == stamp) {
                    self.entries.remove(&oldest);
                }
            }
        }
        let Some(expires) = now.checked_add(ttl) else {
            return;
        };
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        self.entries.insert(
            key,
            Entry {
                value,
                expires,
                stamp,
            },
        );
        self.order.push_back((key, stamp));
        // Stale slots (keys inserted again, or expired and removed) are dropped once they
        // outnumber the live ones, so `order` stays within twice the capacity.
        if self.order.len() > 2 * capacity {
            let entries = &self.entries;
            self.order
                .retain(|(key, stamp)| entries.get(key).is_some_and(|e| e.stamp == *stamp));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::oauth2::config::{ConsumerClaim, OnIntrospectionError};
    use bytes::Bytes;

    fn provider(cache_size: usize) -> OAuth2Provider {
        OAuth2Provider {
            name: "p".into(),
            upstream: 0,
            request_head: crate::auth::oauth2::Secret(Bytes::new()),
            path: "/i".into(),
            client_id: "c".into(),
            host: None,
            timeout: Duration::from_secs(1),
            cache_ttl: Duration::from_secs(300),
            negative_cache_ttl: Duration::from_secs(10),
            cache_size,
            consumer_claim: ConsumerClaim::Sub,
            audience: None,
            issuer: None,
            on_error: OnIntrospectionError::Unavailable,
        }
    }

    fn active(name: &str) -> Cached {
        Cached::Active(Rc::new(ActiveToken {
            consumer: Bytes::copy_from_slice(name.as_bytes()),
            scopes: Bytes::new(),
            expires_in: None,
        }))
    }

    #[test]
    fn entries_expire_and_zero_ttl_caches_nothing() {
        let mut cache = ProviderCache::new(provider(10));
        let t0 = Instant::now();
        cache.insert([1; 32], active("a"), Duration::from_secs(5), t0);
        cache.insert([2; 32], Cached::Inactive, Duration::ZERO, t0);
        assert_eq!(
            cache.get(&[1; 32], t0 + Duration::from_secs(4)),
            Some(active("a"))
        );
        assert_eq!(cache.get(&[2; 32], t0), None);
        assert_eq!(cache.get(&[1; 32], t0 + Duration::from_secs(5)), None);
        assert!(cache.entries.is_empty(), "an expired entry met is removed");
    }

    #[test]
    fn the_oldest_entry_goes_when_full() {
        let mut cache = ProviderCache::new(provider(3));
        let t0 = Instant::now();
        let ttl = Duration::from_secs(60);
        for i in 0..3u8 {
            cache.insert([i; 32], active("x"), ttl, t0);
        }
        // Re-inserting key 0 makes it the youngest; key 1 is now the oldest.
        cache.insert([0; 32], Cached::Inactive, ttl, t0);
        cache.insert([3; 32], active("y"), ttl, t0);
        assert_eq!(cache.entries.len(), 3);
        assert_eq!(cache.get(&[1; 32], t0), None);
        assert_eq!(cache.get(&[0; 32], t0), Some(Cached::Inactive));
        assert!(cache.get(&[2; 32], t0).is_some());
        assert!(cache.get(&[3; 32], t0).is_some());
    }

    #[test]
    fn failure_logs_are_rate_limited() {
        let mut cache: TokenCache<crate::config::Config> = TokenCache {
            built_for: None,
            providers: vec![ProviderCache::new(provider(1))],
        };
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(cache.failure_to_log(0, t0), Some(0));
        assert_eq!(cache.failure_to_log(0, t0 + ms(10)), None);
        assert_eq!(cache.failure_to_log(0, t0 + ms(999)), None);
        assert_eq!(cache.failure_to_log(0, t0 + ms(1000)), Some(2));
        assert_eq!(cache.failure_to_log(0, t0 + ms(2500)), Some(0));
        assert_eq!(cache.failure_to_log(1, t0), None, "no such provider");
    }

    #[test]
    fn memory_stays_bounded_under_churn() {
        let mut cache = ProviderCache::new(provider(4));
        let t0 = Instant::now();
        for i in 0..10_000u32 {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&(i % 7).to_le_bytes());
            cache.insert(key, Cached::Inactive, Duration::from_secs(1), t0);
            assert!(cache.entries.len() <= 4);
            assert!(cache.order.len() <= 2 * 4 + 1);
        }
    }
}
