//! Invariant: any bytes an authorization server sends as an introspection answer are
//! parsed without panicking, and an accepted token only ever yields a consumer and scopes
//! that are safe to send upstream in a header (printable ASCII; scopes are scope tokens
//! joined by single spaces).
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use strait::auth::oauth2::config::{ConsumerClaim, OAuth2Provider, OnIntrospectionError};
use strait::auth::oauth2::{is_scope_token, parse_answer, render_request_head, TokenState};

fuzz_target!(|data: &[u8]| {
    let provider = OAuth2Provider {
        name: "idp".into(),
        upstream: 0,
        request_head: render_request_head("/i", "id", "secret"),
        path: "/i".into(),
        client_id: "id".into(),
        host: None,
        timeout: Duration::from_secs(1),
        cache_ttl: Duration::from_secs(300),
        negative_cache_ttl: Duration::from_secs(10),
        cache_size: 1,
        consumer_claim: ConsumerClaim::Sub,
        audience: Some("api".into()),
        issuer: None,
        on_error: OnIntrospectionError::Unavailable,
    };
    if let Ok(TokenState::Active(token)) = parse_answer(data, &provider, 1_700_000_000) {
        assert!(!token.consumer.is_empty());
        assert!(token.consumer.iter().all(|b| (b' '..=b'~').contains(b)));
        let scopes = std::str::from_utf8(&token.scopes).unwrap();
        if !scopes.is_empty() {
            assert!(scopes.split(' ').all(is_scope_token), "{scopes:?}");
        }
    }
});
