//! The verdict on an opaque bearer token: the worker's [`TokenCache`], else the
//! authorization server's answer (RFC 7662), asked once per token at a time on a worker
//! ([`SingleFlight`]), then cached.
//!
//! Where it sits: the `auth` request filter, when no in-memory method (API key, JWT)
//! accepted the request and the route has `oauth2` (`crate::auth::authenticate_request`).
//! The exchange itself is the caller's (`proxy/introspect.rs`, over the upstream pools),
//! passed in as a function: it is the only await of authentication.
//!
//! Invariants: a failing authorization server is never taken for a refused token (the
//! verdict is `None`) and its failure is never cached; failures are logged at most once a
//! second per worker and provider.

use std::cell::RefCell;
use std::fmt::Display;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::cache::{Cached, TokenCache};
use super::config::{OAuth2Auth, OAuth2Provider};
use super::single_flight::{Joined, SingleFlight};
use super::{cache_key, parse_answer, TokenState};
use crate::auth::AuthSections;

/// A worker's token state: its verdict cache and its introspections in flight.
pub struct Verdicts<'w, C> {
    pub cache: &'w RefCell<TokenCache<C>>,
    pub flights: &'w SingleFlight,
}

impl<C: AuthSections> Verdicts<'_, C> {
    /// The verdict on `token`: from the cache, else from the authorization server through
    /// `exchange` (then cached). Requests of this worker arriving meanwhile with the same
    /// token wait for this verdict. `None`: the server failed (logged).
    pub async fn check<E: Display>(
        &self,
        config: &Arc<C>,
        oauth2: &OAuth2Auth,
        token: &[u8],
        exchange: impl AsyncFnOnce(&OAuth2Provider, &[u8]) -> Result<Bytes, E>,
    ) -> Option<Cached> {
        let provider = &config.oauth2_providers()[oauth2.provider];
        let key = cache_key(&provider.name, token);
        let cached = self
            .cache
            .borrow_mut()
            .get(config, oauth2.provider, &key, Instant::now());
        if cached.is_some() {
            return cached;
        }
        let leader = match self.flights.join(key) {
            Joined::Lead(leader) => Some(leader),
            Joined::Follow(follower) => match follower.await {
                Some(verdict) => return verdict,
                // The leader's connection went away: ask on our own.
                None => None,
            },
        };
        let verdict = self.ask(config, oauth2, key, token, exchange).await;
        if let Some(leader) = leader {
            leader.finish(&verdict);
        }
        verdict
    }

    /// Introspects `token` and caches the verdict under `key`.
    async fn ask<E: Display>(
        &self,
        config: &Arc<C>,
        oauth2: &OAuth2Auth,
        key: [u8; 32],
        token: &[u8],
        exchange: impl AsyncFnOnce(&OAuth2Provider, &[u8]) -> Result<Bytes, E>,
    ) -> Option<Cached> {
        let provider = &config.oauth2_providers()[oauth2.provider];
        let answer = match exchange(provider, token).await {
            Ok(answer) => answer,
            Err(error) => {
                self.log_failure(config, oauth2, &error);
                return None;
            }
        };
        let (cached, ttl) = match parse_answer(&answer, provider, crate::auth::jwt::unix_now()) {
            Ok(TokenState::Active(active)) => {
                let until_exp = active.expires_in.map_or(Duration::MAX, Duration::from_secs);
                let ttl = provider.cache_ttl.min(until_exp);
                (Cached::Active(Rc::new(active)), ttl)
            }
            Ok(TokenState::Inactive(why)) => {
                tracing::debug!(provider = %provider.name, why, "token refused");
                (Cached::Inactive, provider.negative_cache_ttl)
            }
            Err(error) => {
                let why = format!("the answer is not RFC 7662 JSON: {error}");
                self.log_failure(config, oauth2, &why);
                return None;
            }
        };
        self.cache.borrow_mut().insert(
            config,
            oauth2.provider,
            key,
            cached.clone(),
            ttl,
            Instant::now(),
        );
        Some(cached)
    }

    /// Logs a failure of the authorization server, paced per worker (see
    /// `TokenCache::failure_to_log`).
    fn log_failure(&self, config: &Arc<C>, oauth2: &OAuth2Auth, error: &dyn Display) {
        let unlogged = self
            .cache
            .borrow_mut()
            .failure_to_log(oauth2.provider, Instant::now());
        if let Some(unlogged) = unlogged {
            let provider = &config.oauth2_providers()[oauth2.provider].name;
            tracing::warn!(%provider, %error, unlogged, "token introspection failed");
        }
    }
}
