//! Authentication on the request path: the route's `auth` methods tried in turn, and the
//! local answers that refuse a request (401, 403, 503).
//!
//! An API key and a JWT are checked in memory (`crate::auth`, `crate::auth::jwt`). A bearer
//! token no JWT provider accepts is, on a route with `oauth2`, looked up in the worker's
//! token cache and, on a miss, introspected (`introspect.rs`): the only await of
//! authentication. Requests with a token already being introspected wait for that
//! verdict. A request is accepted when one method accepts the credential it presents. A
//! failing authorization server is never taken for a refused token: the answer is the
//! provider's `on_error` (503 by default), and nothing is cached.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::io::{AsyncReadRent, AsyncWriteRent};

use super::ClientConn;
use crate::auth::oauth2::cache::Cached;
use crate::auth::oauth2::single_flight::Joined;
use crate::auth::oauth2::{
    bearer_token, cache_key, has_scopes, parse_answer, Presented, TokenState,
};
use crate::auth::Identity;
use crate::config::{AuthConfig, Config, OAuth2Auth, OnIntrospectionError};
use crate::error::ProxyError;
use crate::http1::RequestHead;

/// Why a request is refused, and the `www-authenticate` lines of the answer.
pub(super) struct Rejection<'c> {
    error: ProxyError,
    challenge: &'c [u8],
}

impl<S: AsyncReadRent + AsyncWriteRent> ClientConn<S> {
    /// Who the request is, or why it is refused.
    pub(super) async fn authenticate<'c>(
        &mut self,
        config: &'c Arc<Config>,
        auth: &'c AuthConfig,
        raw: &[u8],
        head: &RequestHead,
    ) -> Result<Identity, Rejection<'c>> {
        let refused = match crate::auth::authenticate(auth, &config.consumers, raw, head) {
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
        let Some(token) = self.check_token(config, oauth2, token).await else {
            let provider = &config.oauth2_providers[oauth2.provider];
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
            forward_token: oauth2.forward_token,
        })
    }

    /// The verdict on `token`: from the cache, else from the authorization server (and
    /// then cached). Requests of this worker arriving meanwhile with the same token wait
    /// for this verdict. `None`: the server failed (logged).
    async fn check_token(
        &mut self,
        config: &Arc<Config>,
        oauth2: &OAuth2Auth,
        token: &[u8],
    ) -> Option<Cached> {
        let provider = &config.oauth2_providers[oauth2.provider];
        let key = cache_key(&provider.name, token);
        let cached =
            self.worker
                .tokens
                .borrow_mut()
                .get(config, oauth2.provider, &key, Instant::now());
        if cached.is_some() {
            return cached;
        }
        let leader = match self.worker.flights.join(key) {
            Joined::Lead(leader) => Some(leader),
            Joined::Follow(follower) => match follower.await {
                Some(verdict) => return verdict,
                // The leader's connection went away: ask on our own.
                None => None,
            },
        };
        let verdict = self.ask(config, oauth2, key, token).await;
        if let Some(leader) = leader {
            leader.finish(&verdict);
        }
        verdict
    }

    /// Introspects `token` and caches the verdict under `key`.
    async fn ask(
        &mut self,
        config: &Arc<Config>,
        oauth2: &OAuth2Auth,
        key: [u8; 32],
        token: &[u8],
    ) -> Option<Cached> {
        let provider = &config.oauth2_providers[oauth2.provider];
        let answer = match self.introspect(config, provider, token).await {
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
        self.worker.tokens.borrow_mut().insert(
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
    fn log_failure(
        &self,
        config: &Arc<Config>,
        oauth2: &OAuth2Auth,
        error: &dyn std::fmt::Display,
    ) {
        let unlogged = self
            .worker
            .tokens
            .borrow_mut()
            .failure_to_log(oauth2.provider, Instant::now());
        if let Some(unlogged) = unlogged {
            let provider = &config.oauth2_providers[oauth2.provider].name;
            tracing::warn!(%provider, %error, unlogged, "token introspection failed");
        }
    }

    /// Answers a refused request: the error's JSON with the rejection's challenge lines.
    pub(super) async fn answer_rejection(
        &mut self,
        rejection: Rejection<'_>,
        head: &RequestHead,
    ) -> bool {
        self.answer_error_with(rejection.error, &[rejection.challenge], head)
            .await
    }
}
