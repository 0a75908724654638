use super::*;
use crate::auth::jwks::parse_jwks;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;

/// The claims of RFC 7515 Appendix A (and RFC 7519 §3.1): `exp` 1300819380.
const RFC_EXP: u64 = 1_300_819_380;

fn provider(keys: KeySet, algorithms: &[Algorithm]) -> JwtProvider {
    JwtProvider {
        name: "test".into(),
        id: JwtProvider::next_id(),
        issuer: None,
        audiences: Vec::new(),
        algorithms: JwtProvider::validations(algorithms),
        keys: KeySource::Static(Arc::new(keys)),
        leeway: 60,
        required_claims: Vec::new(),
        consumer_claim: "iss".into(),
        claims_to_headers: Vec::new(),
        forward_token: false,
    }
}

fn static_keys(p: &JwtProvider) -> &KeySet {
    match &p.keys {
        KeySource::Static(keys) => keys,
        KeySource::Jwks(_) => unreachable!(),
    }
}

/// `token` with its last signature character changed.
fn tampered(token: &str) -> String {
    let mut bytes = token.as_bytes().to_vec();
    let last = bytes.len() - 2;
    bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

#[test]
fn rfc_7515_vectors_verify_through_the_provider_path() {
    // (case, JWK, algorithm, token): RFC 7515 A.1 (HS256; the token is also RFC 7519
    // §3.1's), A.2 (RS256), A.3 (ES256).
    let cases = [
        (
            "A.1 HS256",
            json!({"kty":"oct","k":"AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"}),
            Algorithm::HS256,
            "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
        ),
        (
            "A.2 RS256",
            json!({"kty":"RSA","e":"AQAB","n":"ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ"}),
            Algorithm::RS256,
            "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw",
        ),
        (
            "A.3 ES256",
            json!({"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}),
            Algorithm::ES256,
            "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q",
        ),
    ];
    for (case, jwk, alg, token) in cases {
        let keys = parse_jwks(json!({ "keys": [jwk] }).to_string().as_bytes()).unwrap();
        let p = provider(keys, &[alg]);
        let keys = static_keys(&p);
        let before = RFC_EXP - 100;
        let verified = verify_with(&p, Some(keys), token.as_bytes(), before)
            .unwrap_or_else(|e| panic!("{case}: {e:?}"));
        assert_eq!(&verified.identity.consumer[..], b"joe", "{case}");
        assert_eq!(verified.expires, Some(RFC_EXP + 60), "{case}");
        // Within the leeway, then past it.
        assert!(verify_with(&p, Some(keys), token.as_bytes(), RFC_EXP + 59).is_ok());
        assert_eq!(
            verify_with(&p, Some(keys), token.as_bytes(), RFC_EXP + 60).unwrap_err(),
            Refusal::Expired,
            "{case}"
        );
        assert_eq!(
            verify_with(&p, Some(keys), tampered(token).as_bytes(), before).unwrap_err(),
            Refusal::Signature,
            "{case}"
        );
        // Another algorithm of the same family is not allowed by this provider.
        let other = provider(KeySet::default(), &[Algorithm::PS512]);
        assert_eq!(
            verify_with(&other, Some(keys), token.as_bytes(), before).unwrap_err(),
            Refusal::Algorithm,
            "{case}"
        );
    }
}

#[test]
fn rfc_7519_example_claims() {
    // RFC 7519 §3.1: the claims set, as the provider path decodes it.
    let token = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let keys = parse_jwks(br#"{"keys":[{"kty":"oct","k":"AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"}]}"#).unwrap();
    let mut p = provider(keys, &[Algorithm::HS256]);
    p.claims_to_headers = vec![
        (
            Bytes::from_static(b"x-root"),
            "http://example.com/is_root".into(),
        ),
        (Bytes::from_static(b"x-exp"), "exp".into()),
    ];
    p.issuer = Some("joe".into());
    let verified = verify_with(&p, Some(static_keys(&p)), token.as_bytes(), RFC_EXP - 1).unwrap();
    let headers: Vec<_> = verified
        .identity
        .headers
        .iter()
        .map(|(n, v)| (&n[..], &v[..]))
        .collect();
    assert_eq!(
        headers,
        [(&b"x-root"[..], &b"true"[..]), (b"x-exp", b"1300819380")]
    );
}

#[test]
fn rfc_8037_ed25519_vector() {
    // RFC 8037 A.4: the payload is text, not a claims set, so the provider path verifies
    // the signature and then refuses the claims (a bad signature is refused earlier).
    let jwks = br#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
    let token = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";
    let keys = parse_jwks(jwks).unwrap();
    let (message, signature) = token.rsplit_once('.').unwrap();
    assert!(jsonwebtoken::crypto::verify(
        signature,
        message.as_bytes(),
        &keys.keys[0].key,
        Algorithm::EdDSA
    )
    .unwrap());
    let p = provider(keys, &[Algorithm::EdDSA]);
    let keys = static_keys(&p);
    assert_eq!(
        verify_with(&p, Some(keys), token.as_bytes(), 0).unwrap_err(),
        Refusal::Malformed
    );
    assert_eq!(
        verify_with(&p, Some(keys), tampered(token).as_bytes(), 0).unwrap_err(),
        Refusal::Signature
    );
}

const SECRET: &[u8] = b"a-test-secret-of-at-least-32-bytes!!";

fn hs256(header: Header, claims: serde_json::Value) -> String {
    encode(&header, &claims, &EncodingKey::from_secret(SECRET)).unwrap()
}

fn secret_provider() -> JwtProvider {
    let keys = KeySet {
        keys: vec![crate::auth::jwks::Key {
            kid: None,
            alg: None,
            key: jsonwebtoken::DecodingKey::from_secret(SECRET),
        }],
    };
    let mut p = provider(keys, &[Algorithm::HS256]);
    p.consumer_claim = "sub".into();
    p
}

#[test]
fn claim_checks() {
    const NOW: u64 = 1_700_000_000;
    let mut p = secret_provider();
    p.issuer = Some("https://issuer.test".into());
    p.audiences = vec!["api".into(), "other".into()];
    p.required_claims = vec!["scope".into()];
    p.claims_to_headers = vec![
        (Bytes::from_static(b"x-email"), "email".into()),
        (Bytes::from_static(b"x-admin"), "admin".into()),
        (Bytes::from_static(b"x-groups"), "groups".into()),
    ];
    let base = json!({
        "sub": "user-1", "iss": "https://issuer.test", "aud": "api", "scope": "read",
        "exp": NOW + 600, "nbf": NOW - 10, "iat": NOW - 10,
        "email": "a@example.test", "admin": false, "groups": ["x"],
    });
    let with = |change: &dyn Fn(&mut Map<String, Value>)| {
        let mut claims = base.as_object().unwrap().clone();
        change(&mut claims);
        claims
    };
    type Case = (&'static str, Map<String, Value>, Result<(), Refusal>);
    let cases: Vec<Case> = vec![
        ("valid", with(&|_| {}), Ok(())),
        (
            "aud in a list",
            with(&|c| {
                c.insert("aud".into(), json!(["x", "other"]));
            }),
            Ok(()),
        ),
        (
            "fractional exp",
            with(&|c| {
                c.insert("exp".into(), json!(NOW as f64 + 0.5));
            }),
            Ok(()),
        ),
        (
            "expired",
            with(&|c| {
                c.insert("exp".into(), json!(NOW - 60));
            }),
            Err(Refusal::Expired),
        ),
        (
            "expired within leeway",
            with(&|c| {
                c.insert("exp".into(), json!(NOW - 59));
            }),
            Ok(()),
        ),
        (
            "exp as text",
            with(&|c| {
                c.insert("exp".into(), json!("soon"));
            }),
            Err(Refusal::Claim("exp")),
        ),
        (
            "not yet valid",
            with(&|c| {
                c.insert("nbf".into(), json!(NOW + 61));
            }),
            Err(Refusal::NotYetValid),
        ),
        (
            "nbf within leeway",
            with(&|c| {
                c.insert("nbf".into(), json!(NOW + 60));
            }),
            Ok(()),
        ),
        (
            "issued in the future",
            with(&|c| {
                c.insert("iat".into(), json!(NOW + 61));
            }),
            Err(Refusal::IssuedInFuture),
        ),
        (
            "iat as text",
            with(&|c| {
                c.insert("iat".into(), json!("x"));
            }),
            Err(Refusal::Claim("iat")),
        ),
        (
            "wrong issuer",
            with(&|c| {
                c.insert("iss".into(), json!("https://evil.test"));
            }),
            Err(Refusal::Issuer),
        ),
        (
            "no issuer",
            with(&|c| {
                c.remove("iss");
            }),
            Err(Refusal::Issuer),
        ),
        (
            "issuer as a list",
            with(&|c| {
                c.insert("iss".into(), json!(["https://issuer.test"]));
            }),
            Err(Refusal::Issuer),
        ),
        (
            "wrong audience",
            with(&|c| {
                c.insert("aud".into(), json!("web"));
            }),
            Err(Refusal::Audience),
        ),
        (
            "no audience",
            with(&|c| {
                c.remove("aud");
            }),
            Err(Refusal::Audience),
        ),
        (
            "empty audience list",
            with(&|c| {
                c.insert("aud".into(), json!([]));
            }),
            Err(Refusal::Audience),
        ),
        (
            "missing required",
            with(&|c| {
                c.remove("scope");
            }),
            Err(Refusal::Required("scope".into())),
        ),
        (
            "null required",
            with(&|c| {
                c.insert("scope".into(), Value::Null);
            }),
            Err(Refusal::Required("scope".into())),
        ),
        (
            "no subject",
            with(&|c| {
                c.remove("sub");
            }),
            Err(Refusal::Consumer),
        ),
        (
            "empty subject",
            with(&|c| {
                c.insert("sub".into(), json!(""));
            }),
            Err(Refusal::Consumer),
        ),
        (
            "subject with a newline",
            with(&|c| {
                c.insert("sub".into(), json!("a\nb"));
            }),
            Err(Refusal::Consumer),
        ),
        (
            "subject as an object",
            with(&|c| {
                c.insert("sub".into(), json!({}));
            }),
            Err(Refusal::Consumer),
        ),
    ];
    for (case, claims, want) in cases {
        assert_eq!(check_claims(&p, &claims, NOW).map(|_| ()), want, "{case}");
    }
    // The mapped headers: strings, numbers and booleans; nothing else, no control chars.
    let identity = check_claims(&p, &with(&|_| {}), NOW).unwrap().identity;
    assert_eq!(&identity.consumer[..], b"user-1");
    let headers: Vec<_> = identity
        .headers
        .iter()
        .map(|(n, v)| (&n[..], &v[..]))
        .collect();
    assert_eq!(
        headers,
        [
            (&b"x-email"[..], &b"a@example.test"[..]),
            (b"x-admin", b"false")
        ]
    );
    let evil = with(&|c| {
        c.insert("email".into(), json!("a@b\r\nx-admin: true"));
    });
    let identity = check_claims(&p, &evil, NOW).unwrap().identity;
    assert_eq!(identity.headers.len(), 1);
    // A numeric subject is a consumer too.
    let numeric = with(&|c| {
        c.insert("sub".into(), json!(42));
    });
    assert_eq!(
        &check_claims(&p, &numeric, NOW).unwrap().identity.consumer[..],
        b"42"
    );
}

#[test]
fn bearer_values() {
    let long = format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES + 1));
    let max = format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES));
    let cases: Vec<(&str, Option<Result<&str, Rejection>>)> = vec![
        ("Bearer abc.def.ghi", Some(Ok("abc.def.ghi"))),
        ("bearer   a-b_c.d~e+f/g==", Some(Ok("a-b_c.d~e+f/g=="))),
        ("BEARER x", Some(Ok("x"))),
        ("Basic dXNlcjpwYXNz", None),
        ("Bearerx abc", None),
        ("Bear", None),
        ("", None),
        ("Bearer", Some(Err(Rejection::Malformed))),
        ("Bearer ", Some(Err(Rejection::Malformed))),
        ("Bearer a b", Some(Err(Rejection::Malformed))),
        ("Bearer a=b", Some(Err(Rejection::Malformed))),
        ("Bearer a\"b", Some(Err(Rejection::Malformed))),
        ("Bearer =", Some(Err(Rejection::Malformed))), // b64token needs a character before "="
        (long.as_str(), Some(Err(Rejection::Malformed))),
        (max.as_str(), Some(Ok(&max[7..]))),
    ];
    for (value, want) in cases {
        let got =
            parse_bearer(value.as_bytes()).map(|r| r.map(|t| std::str::from_utf8(t).unwrap()));
        assert_eq!(got, want, "{value}");
    }
}

#[test]
fn algorithm_confusion_and_alg_none_are_refused() {
    // An RSA public key; a token "signed" with HS256 using the PEM text as the secret.
    let pem = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/jwt/rsa.pub"
    ))
    .unwrap();
    let keys = KeySet {
        keys: vec![crate::auth::jwks::Key {
            kid: None,
            alg: None,
            key: jsonwebtoken::DecodingKey::from_rsa_pem(&pem).unwrap(),
        }],
    };
    let claims = json!({"iss": "joe", "exp": RFC_EXP});
    let forged = encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(&pem),
    )
    .unwrap();
    let p = provider(keys, &[Algorithm::RS256]);
    assert_eq!(
        verify_with(&p, Some(static_keys(&p)), forged.as_bytes(), 0).unwrap_err(),
        Refusal::Algorithm
    );
    // Even a provider (wrongly) allowing HS256 never uses an RSA key as an HMAC secret.
    let lax = provider(KeySet::default(), &[Algorithm::RS256, Algorithm::HS256]);
    assert_eq!(
        verify_with(&lax, Some(static_keys(&p)), forged.as_bytes(), 0).unwrap_err(),
        Refusal::Signature
    );
    // alg none: not an algorithm at all.
    let none = "eyJhbGciOiJub25lIn0.eyJpc3MiOiJqb2UifQ.";
    let p = secret_provider();
    assert_eq!(
        verify_with(&p, Some(static_keys(&p)), none.as_bytes(), 0).unwrap_err(),
        Refusal::Malformed
    );
}

#[test]
fn keys_are_picked_by_kid() {
    let p = secret_provider();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("k1".into());
    let token = hs256(header.clone(), json!({"sub": "a"}));
    // A kid-less key is tried for any kid.
    assert!(verify_with(&p, Some(static_keys(&p)), token.as_bytes(), 0).is_ok());
    let named = |kid: &str| KeySet {
        keys: vec![crate::auth::jwks::Key {
            kid: Some(kid.into()),
            alg: None,
            key: jsonwebtoken::DecodingKey::from_secret(SECRET),
        }],
    };
    assert!(verify_with(&p, Some(&named("k1")), token.as_bytes(), 0).is_ok());
    assert_eq!(
        verify_with(&p, Some(&named("k2")), token.as_bytes(), 0).unwrap_err(),
        Refusal::UnknownKid
    );
    assert_eq!(
        verify_with(&p, None, token.as_bytes(), 0).unwrap_err(),
        Refusal::NoKeys
    );
    // A JWK whose alg is another algorithm is not used.
    let mut pinned = named("k1");
    pinned.keys[0].alg = Some(Algorithm::HS512);
    assert_eq!(
        verify_with(&p, Some(&pinned), token.as_bytes(), 0).unwrap_err(),
        Refusal::UnknownKid
    );
}

#[test]
fn malformed_tokens() {
    let p = secret_provider();
    let keys = static_keys(&p);
    let good = hs256(Header::new(Algorithm::HS256), json!({"sub": "a"}));
    let (head, rest) = good.split_once('.').unwrap();
    let (payload, sig) = rest.split_once('.').unwrap();
    let garbage_json = format!("{head}.{}.{sig}", "e30x");
    let cases: Vec<(&str, String)> = vec![
        ("two segments", format!("{head}.{payload}")),
        ("four segments", format!("{good}.x")),
        ("bad base64 header", format!("!!!.{payload}.{sig}")),
        ("header not JSON", format!("bm90anNvbg.{payload}.{sig}")),
        ("payload not JSON", garbage_json),
        ("empty", String::new()),
        (
            "huge",
            format!("{head}.{}.{sig}", "A".repeat(MAX_TOKEN_BYTES)),
        ),
    ];
    for (case, token) in cases {
        let got = verify_with(&p, Some(keys), token.as_bytes(), 0).unwrap_err();
        // A payload that is not JSON under a signature that does not fit is refused at
        // the signature: either way, never accepted.
        assert!(
            matches!(got, Refusal::Malformed | Refusal::Signature),
            "{case}: {got:?}"
        );
    }
}

#[test]
fn the_worker_cache_trusts_a_token_per_provider_until_it_expires() {
    let now = unix_now();
    let p = [Arc::new(secret_provider())];
    let other = [Arc::new(secret_provider())];
    let token = hs256(
        Header::new(Algorithm::HS256),
        json!({"sub": "a", "exp": now + 3600}),
    );
    assert_eq!(
        &verify_cached(&p, token.as_bytes()).unwrap().consumer[..],
        b"a"
    );
    let cached = CACHE.with(|c| c.borrow().get(&p, token.as_bytes(), Instant::now()));
    assert!(cached.is_some());
    // Another provider (another config) does not share the entry.
    let cached = CACHE.with(|c| c.borrow().get(&other, token.as_bytes(), Instant::now()));
    assert!(cached.is_none());
    // Past its trust period (at most CACHE_TTL), the entry is not used.
    let later = Instant::now() + CACHE_TTL + Duration::from_secs(1);
    assert!(CACHE
        .with(|c| c.borrow().get(&p, token.as_bytes(), later))
        .is_none());
    // A token expiring sooner than CACHE_TTL is trusted only until then (exp + leeway).
    let short = hs256(
        Header::new(Algorithm::HS256),
        json!({"sub": "b", "exp": now - 50}),
    );
    assert!(verify_cached(&p, short.as_bytes()).is_ok());
    let in_15s = Instant::now() + Duration::from_secs(15);
    assert!(CACHE
        .with(|c| c.borrow().get(&p, short.as_bytes(), in_15s))
        .is_none());

    // Bounded.
    let mut cache = TokenCache::default();
    let start = Instant::now();
    for i in 0..CACHE_ENTRIES + 10 {
        let entry = Cached {
            provider: 1,
            identity: Identity {
                scopes: None,
                consumer: Bytes::new(),
                headers: Rc::from([]),
                claims: Rc::from([]),
                forward_token: false,
            },
            until: start + CACHE_TTL,
        };
        cache.insert(i.to_string().as_bytes(), entry, start);
        assert!(cache.entries.len() <= CACHE_ENTRIES);
    }
}
