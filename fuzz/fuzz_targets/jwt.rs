//! Invariant: whatever bytes a client puts in `Authorization`, bearer-token authentication
//! never panics, answers one of its three short rejections or an identity, and an identity
//! (from a token, or from any claims set the claim checks accept) never carries a control
//! character into the consumer or an upstream header value.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use strait::config::{load_str, Config, Limits};
use strait::http1::parse_request_head;
use strait::auth::jwt::{authenticate, check_claims, Outcome};

/// A route accepting HS256 (known secret) and RSA (fixture key) tokens, with claim headers.
fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let text = r#"
[server]
listen = ["127.0.0.1:1"]
[jwt_providers.hs]
secret = "fuzz-secret-fuzz-secret-fuzz-secret!"
audiences = ["api"]
required_claims = ["scope"]
claims_to_headers = { "x-email" = "email", "x-admin" = "admin" }
[jwt_providers.rsa]
public_key_file = "rsa.pub"
[[routes]]
path = "/"
mock = { status = 200 }
auth = { jwt = { providers = ["hs", "rsa"] } }
"#;
        let origin = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/jwt/fuzz.toml");
        load_str(text, origin).expect("the fuzz config builds")
    })
}

fn clean(value: &[u8]) -> bool {
    value.iter().all(|b| *b >= 0x20 && *b != 0x7f)
}

fuzz_target!(|data: &[u8]| {
    let config = config();
    let Some(jwt) = config.routes.routes()[0].auth.as_ref().and_then(|a| a.jwt.as_ref()) else {
        return;
    };
    let limits = Limits {
        max_header_bytes: 64 * 1024,
        max_headers: 8,
        max_body_bytes: 0,
        max_uri_bytes: 64,
    };
    let mut raw = b"GET / HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer ".to_vec();
    raw.extend_from_slice(data);
    raw.extend_from_slice(b"\r\n\r\n");
    if let Ok(head) = parse_request_head(&raw, &limits) {
        if let Outcome::Accepted(identity) = authenticate(jwt, &raw, &head) {
            assert!(clean(&identity.consumer));
            assert!(identity.headers.iter().all(|(_, v)| clean(v)));
        }
    }
    // Any claims set, straight into the claim checks.
    if let Ok(claims) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(data) {
        for provider in &jwt.providers {
            if let Ok(verified) = check_claims(provider, &claims, 1_700_000_000) {
                assert!(clean(&verified.identity.consumer) && !verified.identity.consumer.is_empty());
                assert!(verified.identity.headers.iter().all(|(_, v)| clean(v)));
            }
        }
    }
});
