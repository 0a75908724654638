use std::time::Duration;

use super::*;
use crate::auth::oauth2::config::OnIntrospectionError;
use crate::http1::parse_request_head;
use crate::http1::Limits;

fn provider() -> OAuth2Provider {
    OAuth2Provider {
        name: "idp".into(),
        upstream: 0,
        request_head: render_request_head("/introspect", "gateway", "s3cret"),
        path: "/introspect".into(),
        client_id: "gateway".into(),
        host: None,
        timeout: Duration::from_secs(2),
        cache_ttl: Duration::from_secs(300),
        negative_cache_ttl: Duration::from_secs(10),
        cache_size: 100,
        consumer_claim: ConsumerClaim::Sub,
        audience: None,
        issuer: None,
        on_error: OnIntrospectionError::Unavailable,
    }
}

#[test]
fn extracts_bearer_tokens() {
    let limits = Limits {
        max_header_bytes: 16 * 1024,
        max_headers: 32,
        max_body_bytes: 0,
        max_uri_bytes: 1024,
    };
    let long = format!(
        "Authorization: Bearer {}\r\n",
        "a".repeat(crate::auth::jwt::MAX_TOKEN_BYTES + 1)
    );
    let cases: &[(&str, Presented)] = &[
        (
            "Authorization: Bearer abc.DEF-_~+/9==\r\n",
            Presented::Token(b"abc.DEF-_~+/9=="),
        ),
        ("authorization: bearer   tok\r\n", Presented::Token(b"tok")),
        ("AUTHORIZATION: BEARER tok\r\n", Presented::Token(b"tok")),
        ("", Presented::Nothing),
        ("Authorization: Basic dXNlcjpwdw==\r\n", Presented::Nothing),
        ("Authorization: Bearertok\r\n", Presented::Nothing),
        ("Authorization: Bearer\r\n", Presented::Malformed),
        ("Authorization: Bearer \r\n", Presented::Malformed),
        ("Authorization: Bearer a b\r\n", Presented::Malformed),
        ("Authorization: Bearer a,b\r\n", Presented::Malformed),
        ("Authorization: Bearer ===\r\n", Presented::Malformed),
        ("Authorization: Bearer a=b\r\n", Presented::Malformed),
        (
            "Authorization: Bearer a\r\nAuthorization: Bearer b\r\n",
            Presented::Malformed,
        ),
        (&long, Presented::Malformed),
    ];
    for (headers, want) in cases {
        let request = format!("GET / HTTP/1.1\r\nHost: t\r\n{headers}\r\n");
        let raw = request.as_bytes();
        let head = parse_request_head(raw, &limits).unwrap();
        assert_eq!(bearer_token(raw, &head), *want, "{headers}");
    }
    let at_limit = format!(
        "Authorization: Bearer {}\r\n",
        "a".repeat(crate::auth::jwt::MAX_TOKEN_BYTES)
    );
    let request = format!("GET / HTTP/1.1\r\nHost: t\r\n{at_limit}\r\n");
    let head = parse_request_head(request.as_bytes(), &limits).unwrap();
    assert!(matches!(
        bearer_token(request.as_bytes(), &head),
        Presented::Token(_)
    ));
}

#[test]
fn base64_and_form_encoding() {
    let cases: &[(&str, &str)] = &[
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
        ("\u{ff}\u{fe}", "w7/Dvg=="),
    ];
    for (input, want) in cases {
        let mut out = Vec::new();
        base64_encode(&mut out, input.as_bytes());
        assert_eq!(std::str::from_utf8(&out).unwrap(), *want, "{input}");
    }
    let mut out = Vec::new();
    form_encode(&mut out, b"aZ09*-._ +/=:%&\xff");
    assert_eq!(&out[..], b"aZ09*-._+%2B%2F%3D%3A%25%26%FF");
}

#[test]
fn renders_the_introspection_request() {
    // RFC 6749 §2.3.1: id and secret are form-encoded before the Basic encoding.
    let head = render_request_head("/oauth2/introspect", "my client", "p@ss:word");
    let mut want = b"POST /oauth2/introspect HTTP/1.1\r\nauthorization: Basic ".to_vec();
    base64_encode(&mut want, b"my+client:p%40ss%3Aword");
    want.extend_from_slice(
        b"\r\ncontent-type: application/x-www-form-urlencoded\r\naccept: application/json\r\n",
    );
    assert_eq!(&head.0[..], &want[..]);
    assert_eq!(format!("{head:?}"), "Secret(<redacted>)");

    let mut out = BytesMut::new();
    write_request(
        &mut out,
        &provider(),
        b"auth.internal",
        (b"x-request-id", b"r1"),
        b"ab+c/d==",
    );
    let text = String::from_utf8(out.to_vec()).unwrap();
    let body = "token=ab%2Bc%2Fd%3D%3D&token_type_hint=access_token";
    assert!(
        text.starts_with("POST /introspect HTTP/1.1\r\nauthorization: Basic "),
        "{text}"
    );
    assert!(
        text.ends_with(&format!(
            "accept: application/json\r\nhost: auth.internal\r\nx-request-id: r1\r\n\
             content-length: {}\r\n\r\n{body}",
            body.len()
        )),
        "{text}"
    );
}

#[test]
fn cache_keys_depend_on_provider_and_token() {
    assert_eq!(cache_key("a", b"t"), cache_key("a", b"t"));
    assert_ne!(cache_key("a", b"t"), cache_key("b", b"t"));
    assert_ne!(cache_key("a", b"t"), cache_key("a", b"u"));
    // The separator keeps ("ab", "c") and ("a", "bc") apart.
    assert_ne!(cache_key("ab", b"c"), cache_key("a", b"bc"));
}

fn active(consumer: &str, scopes: &str, expires_in: Option<u64>) -> TokenState {
    TokenState::Active(ActiveToken {
        consumer: Bytes::copy_from_slice(consumer.as_bytes()),
        scopes: Bytes::copy_from_slice(scopes.as_bytes()),
        expires_in,
    })
}

#[test]
fn parses_answers() {
    const NOW: u64 = 1_700_000_000;
    let mut with_claims = provider();
    with_claims.audience = Some("api".into());
    with_claims.issuer = Some("https://idp".into());
    let mut by_username = provider();
    by_username.consumer_claim = ConsumerClaim::Username;
    let mut by_client = provider();
    by_client.consumer_claim = ConsumerClaim::ClientId;
    let p = provider();
    let cases: Vec<(&OAuth2Provider, String, Result<TokenState, ()>)> = vec![
        (
            &p,
            r#"{"active":false}"#.into(),
            Ok(TokenState::Inactive("inactive")),
        ),
        (
            &p,
            format!(
                r#"{{"active":true,"sub":"alice","client_id":"app","scope":"read write","exp":{}}}"#,
                NOW + 60
            ),
            Ok(active("alice", "read write", Some(60))),
        ),
        (
            &p,
            r#"{"active":true,"client_id":"app"}"#.into(),
            Ok(active("app", "", None)),
        ),
        // Extra members, and a fractional exp.
        (
            &p,
            format!(
                r#"{{"active":true,"sub":"a","token_type":"Bearer","ext":{{"x":[1]}},"exp":{}.5}}"#,
                NOW + 10
            ),
            Ok(active("a", "", Some(10))),
        ),
        (
            &p,
            format!(r#"{{"active":true,"sub":"a","exp":{NOW}}}"#),
            Ok(TokenState::Inactive("expired")),
        ),
        (
            &p,
            format!(r#"{{"active":true,"sub":"a","exp":{}}}"#, NOW - 1),
            Ok(TokenState::Inactive("expired")),
        ),
        (
            &p,
            format!(r#"{{"active":true,"sub":"a","nbf":{}}}"#, NOW + 5),
            Ok(TokenState::Inactive("not yet valid")),
        ),
        (
            &p,
            r#"{"active":true}"#.into(),
            Ok(TokenState::Inactive("no usable consumer claim")),
        ),
        // A consumer that cannot travel in a header falls back to client_id.
        (
            &p,
            r#"{"active":true,"sub":"a\r\nx: y","client_id":"app"}"#.into(),
            Ok(active("app", "", None)),
        ),
        (
            &p,
            r#"{"active":true,"sub":"José","client_id":"app"}"#.into(),
            Ok(active("app", "", None)),
        ),
        (
            &p,
            r#"{"active":true,"sub":" a"}"#.into(),
            Ok(TokenState::Inactive("no usable consumer claim")),
        ),
        (
            &by_username,
            r#"{"active":true,"sub":"s","username":"bob","client_id":"c"}"#.into(),
            Ok(active("bob", "", None)),
        ),
        (
            &by_username,
            r#"{"active":true,"sub":"s","client_id":"c"}"#.into(),
            Ok(active("c", "", None)),
        ),
        (
            &by_client,
            r#"{"active":true,"sub":"s","client_id":"c"}"#.into(),
            Ok(active("c", "", None)),
        ),
        // Scopes: runs of spaces collapse, invalid tokens are dropped.
        (
            &p,
            r#"{"active":true,"sub":"a","scope":"  read  \"x\" wr\\ite write\t "}"#.into(),
            Ok(active("a", "read", None)),
        ),
        // Audience and issuer.
        (
            &with_claims,
            r#"{"active":true,"sub":"a","aud":"api","iss":"https://idp"}"#.into(),
            Ok(active("a", "", None)),
        ),
        (
            &with_claims,
            r#"{"active":true,"sub":"a","aud":["x","api"],"iss":"https://idp"}"#.into(),
            Ok(active("a", "", None)),
        ),
        (
            &with_claims,
            r#"{"active":true,"sub":"a","aud":["x"],"iss":"https://idp"}"#.into(),
            Ok(TokenState::Inactive("audience mismatch")),
        ),
        (
            &with_claims,
            r#"{"active":true,"sub":"a","iss":"https://idp"}"#.into(),
            Ok(TokenState::Inactive("audience mismatch")),
        ),
        (
            &with_claims,
            r#"{"active":true,"sub":"a","aud":"api","iss":"https://other"}"#.into(),
            Ok(TokenState::Inactive("issuer mismatch")),
        ),
        (
            &with_claims,
            r#"{"active":true,"sub":"a","aud":"api"}"#.into(),
            Ok(TokenState::Inactive("issuer mismatch")),
        ),
        // Not an RFC 7662 answer.
        (&p, "".into(), Err(())),
        (&p, "not json".into(), Err(())),
        (&p, "{}".into(), Err(())),
        (&p, r#"{"active":"true"}"#.into(), Err(())),
        (
            &p,
            r#"{"active":true,"exp":"soon","sub":"a"}"#.into(),
            Err(()),
        ),
        (&p, r#"[{"active":true}]"#.into(), Err(())),
        (&p, r#"{"active":true,"sub":"a"} trailing"#.into(), Err(())),
    ];
    for (provider, body, want) in cases {
        let got = parse_answer(body.as_bytes(), provider, NOW).map_err(|_| ());
        assert_eq!(got, want, "{body}");
    }
}

#[test]
fn scope_checks() {
    let cases: &[(&str, &[&str], bool)] = &[
        ("read write", &["read"], true),
        ("read write", &["write", "read"], true),
        ("read write", &[], true),
        ("", &[], true),
        ("", &["read"], false),
        ("read", &["read", "write"], false),
        ("reader", &["read"], false),
        ("read:all", &["read"], false),
        ("admin read", &["Read"], false),
    ];
    for (granted, required, want) in cases {
        let required: Vec<String> = required.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            has_scopes(granted.as_bytes(), &required),
            *want,
            "{granted} {required:?}"
        );
    }
    let tokens: &[(&str, bool)] = &[
        ("read", true),
        ("api:read/all!", true),
        ("", false),
        ("a b", false),
        ("a\"b", false),
        ("a\\b", false),
        ("é", false),
    ];
    for (scope, want) in tokens {
        assert_eq!(is_scope_token(scope), *want, "{scope}");
    }
}

#[test]
fn method_scopes_override_route_scopes() {
    let required = |scopes: &[&str]| RequiredScopes {
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        challenge: Bytes::new(),
    };
    let auth = OAuth2Auth {
        provider: 0,
        scopes: required(&["base"]),
        method_scopes: vec![
            ("GET".into(), required(&["read"])),
            ("POST".into(), required(&["write"])),
        ],
        forward_token: false,
        scope_header: None,
    };
    let cases: &[(&str, &[&str])] = &[
        ("GET", &["read"]),
        ("HEAD", &["read"]),
        ("POST", &["write"]),
        ("DELETE", &["base"]),
        ("get", &["base"]),
    ];
    for (method, want) in cases {
        assert_eq!(
            auth.required_for(method.as_bytes()).scopes,
            *want,
            "{method}"
        );
    }
    let mut with_head = auth.clone();
    with_head.method_scopes.push(("HEAD".into(), required(&[])));
    assert!(with_head.required_for(b"HEAD").scopes.is_empty());
}
