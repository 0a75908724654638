//! The authentication sections: `[consumers.NAME]` (API keys) and a route's `auth`, which
//! combines API keys with the bearer-token methods whose own sections live beside their
//! code: `[jwt_providers.NAME]` in `jwt/config.rs`, `[oauth2_providers.NAME]` in
//! `oauth2/config.rs`. The serde mirror, the runtime types and the validation; the
//! `www-authenticate` challenges of a route are rendered here, once.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use bytes::Bytes;
use serde::Deserialize;
use toml::Spanned;

use super::jwt;
use super::jwt::config::FileJwtAuth;
use super::oauth2;
use super::oauth2::config::{FileOAuth2Auth, OAuth2Auth, ProviderIds};
use crate::settings::{is_name, is_token, Ctx};

// ---- the file ----

/// `[consumers.NAME]`: who may call routes with `auth`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConsumer {
    /// `"sha256:<64 hex>"` (stored hashed) or the key itself.
    pub api_keys: Spanned<Vec<Spanned<String>>>,
}

/// A route's `auth = { api_key = { ... }, consumer_header = "..." }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAuth {
    /// At least one of `api_key`, `jwt` and `oauth2` (checked in [`route_auth`]).
    pub api_key: Option<Spanned<FileApiKeyAuth>>,
    pub jwt: Option<Spanned<FileJwtAuth>>,
    pub oauth2: Option<Spanned<FileOAuth2Auth>>,
    pub consumer_header: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileApiKeyAuth {
    pub header: Option<Spanned<String>>,
    pub query: Option<Spanned<String>>,
}

// ---- runtime types ----

/// One `[consumers.NAME]`: a caller identified by its API keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerConfig {
    /// Letters, digits, '-', '_' and '.': safe as a header value.
    pub name: String,
    /// At least one; no key belongs to two consumers.
    pub api_keys: Vec<ApiKey>,
}

/// A configured API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiKey {
    /// `sha256:<hex>`: the SHA-256 digest of the key; the key itself is not in the file.
    Sha256([u8; 32]),
    /// The key itself (visible ASCII).
    Plain(Box<[u8]>),
}

/// A route's `auth`: the methods a request may authenticate with (at least one).
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// API keys of `[consumers.NAME]`; `None`: not accepted on this route.
    pub api_key: Option<ApiKeyAuth>,
    /// Bearer tokens checked by introspection; `None`: not accepted on this route.
    pub oauth2: Option<OAuth2Auth>,
    /// Bearer tokens of `[jwt_providers.NAME]`; `None`: not accepted on this route.
    pub jwt: Option<jwt::JwtAuth>,
    /// Header that tells the upstream who called (default `x-consumer`); the client's
    /// copies are replaced.
    pub consumer_header: String,
    /// The `www-authenticate` lines of the 401 answer, one per method, each CRLF-terminated
    /// (a refused bearer token gets `JwtAuth::rejected` instead).
    pub challenge: Bytes,
    /// The same lines when a bearer token was presented and refused: the Bearer line then
    /// says `error="invalid_token"` (RFC 6750 §3.1). Equal to `challenge` without `oauth2`.
    pub challenge_invalid_token: Bytes,
}

/// Where a route looks for an API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyAuth {
    /// Header carrying the key, lower case (default `x-api-key`). Never forwarded.
    pub header: String,
    /// Query parameter carrying the key when the header is absent.
    pub query: Option<String>,
}

// ---- validation ----

/// `[consumers.NAME]`: valid names, at least one key each, every key well formed and
/// owned by one consumer only (a plain key and the `sha256:` of the same key count as
/// the same key).
pub(crate) fn consumers(
    ctx: &mut Ctx,
    file: BTreeMap<Spanned<String>, FileConsumer>,
) -> Vec<ConsumerConfig> {
    let mut out = Vec::new();
    // Digest of every key seen → where it was first configured.
    let mut seen: HashMap<[u8; 32], String> = HashMap::new();
    for (name, consumer) in file {
        let prefix = format!("consumers.{}", name.get_ref());
        if !is_name(name.get_ref()) {
            ctx.error(
                name.span(),
                prefix.clone(),
                format!(
                    "invalid consumer name \"{}\": use letters, digits, '-', '_' and '.'",
                    name.get_ref()
                ),
            );
        }
        if consumer.api_keys.get_ref().is_empty() {
            ctx.error(
                consumer.api_keys.span(),
                format!("{prefix}.api_keys"),
                "empty list: a consumer needs at least one key",
            );
        }
        let mut keys = Vec::new();
        for (i, key) in consumer.api_keys.get_ref().iter().enumerate() {
            let at = format!("{prefix}.api_keys[{i}]");
            let parsed = match super::parse_api_key(key.get_ref()) {
                Ok(parsed) => parsed,
                Err(why) => {
                    ctx.error(key.span(), at, why);
                    continue;
                }
            };
            let digest = super::digest_of(&parsed);
            if let Some(first) = seen.get(&digest) {
                let why = format!("duplicate API key (also {first})");
                ctx.error(key.span(), at, why);
                continue;
            }
            seen.insert(digest, at);
            keys.push(parsed);
        }
        out.push(ConsumerConfig {
            name: name.into_inner(),
            api_keys: keys,
        });
    }
    out
}

/// A route's `auth`: at least one method. `api_key` needs some consumer with a key;
/// header names are tokens (lower-cased), the query name a plain word, and no header
/// plays two parts (a credential is never mistaken for what Strait sets upstream).
pub(crate) fn route_auth(
    ctx: &mut Ctx,
    auth: &Spanned<FileAuth>,
    prefix: &str,
    has_keys: bool,
    providers: &ProviderIds,
    jwt_providers: &jwt::config::Providers,
    methods: &[String],
) -> Option<AuthConfig> {
    let at = format!("{prefix}.auth");
    let file = auth.get_ref();
    if file.api_key.is_none() && file.jwt.is_none() && file.oauth2.is_none() {
        ctx.error(
            auth.span(),
            at,
            "no authentication method: set api_key = { header = \"x-api-key\" } or \
             jwt = { providers = [\"NAME\"] } or oauth2 = { provider = \"NAME\" }",
        );
        return None;
    }
    let mut ok = true;
    let header_name =
        |this: &mut Ctx, value: Option<&Spanned<String>>, key: String, default: &str| {
            let Some(value) = value else {
                return Some(String::from(default));
            };
            let text = value.get_ref();
            if is_token(text) {
                Some(text.to_ascii_lowercase())
            } else {
                this.error(
                    value.span(),
                    key,
                    format!("invalid header name \"{text}\": must be a non-empty token"),
                );
                None
            }
        };
    let consumer_header = header_name(
        ctx,
        file.consumer_header.as_ref(),
        format!("{at}.consumer_header"),
        "x-consumer",
    )?;
    let oauth2 = match &file.oauth2 {
        None => None,
        Some(oauth2) => {
            let built = oauth2::config::route_auth(ctx, oauth2, &at, providers, methods);
            ok &= built.is_some();
            built
        }
    };
    let mut api_key = None;
    if let Some(file_key) = &file.api_key {
        if !has_keys {
            ctx.error(
                file_key.span(),
                format!("{at}.api_key"),
                "no consumer has an API key: add [consumers.NAME] with api_keys = [...]",
            );
            ok = false;
        }
        let header = header_name(
            ctx,
            file_key.get_ref().header.as_ref(),
            format!("{at}.api_key.header"),
            "x-api-key",
        );
        let query = match &file_key.get_ref().query {
            None => None,
            Some(q) if is_name(q.get_ref()) => Some(q.get_ref().clone()),
            Some(q) => {
                ctx.error(
                    q.span(),
                    format!("{at}.api_key.query"),
                    format!(
                        "invalid query parameter name \"{}\": use letters, digits, '-', '_' \
                         and '.'",
                        q.get_ref()
                    ),
                );
                ok = false;
                None
            }
        };
        let header = header?;
        if header == consumer_header {
            let span = file
                .consumer_header
                .as_ref()
                .map_or(auth.span(), Spanned::span);
            ctx.error(
                span,
                format!("{at}.consumer_header"),
                format!("\"{header}\" is also the API key header"),
            );
            ok = false;
        }
        if header == "authorization" && oauth2.is_some() {
            let span = file_key
                .get_ref()
                .header
                .as_ref()
                .map_or(auth.span(), Spanned::span);
            ctx.error(
                span,
                format!("{at}.api_key.header"),
                "\"authorization\" carries the OAuth2 bearer token on this route",
            );
            ok = false;
        }
        api_key = Some(ApiKeyAuth { header, query });
    }
    if let Some(scope_header) = oauth2.as_ref().and_then(|o| o.scope_header.as_deref()) {
        let api_key_header = api_key.as_ref().map(|k| k.header.as_str());
        if scope_header == consumer_header
            || scope_header == "authorization"
            || Some(scope_header) == api_key_header
        {
            let span = file
                .oauth2
                .as_ref()
                .and_then(|o| o.get_ref().scope_header.as_ref())
                .map_or(auth.span(), Spanned::span);
            ctx.error(
                span,
                format!("{at}.oauth2.scope_header"),
                format!("\"{scope_header}\" is already the consumer or a credential header"),
            );
            ok = false;
        }
    }
    let mut challenge = String::new();
    if let Some(api_key) = &api_key {
        let _ = write!(
            challenge,
            "www-authenticate: ApiKey header=\"{}\"\r\n",
            api_key.header
        );
    }
    let jwt = match &file.jwt {
        None => None,
        Some(jwt) => {
            let built = jwt::config::route_auth(
                ctx,
                jwt,
                &format!("{at}.jwt"),
                jwt_providers,
                &challenge,
                &consumer_header,
                api_key.as_ref().map(|k| k.header.as_str()),
            );
            ok &= built.is_some();
            built
        }
    };
    let mut challenge_invalid_token = challenge.clone();
    if oauth2.is_some() || jwt.is_some() {
        challenge.push_str(jwt::config::BEARER_CHALLENGE);
        challenge_invalid_token
            .push_str("www-authenticate: Bearer realm=\"strait\", error=\"invalid_token\"\r\n");
    }
    ok.then(|| AuthConfig {
        api_key,
        jwt,
        oauth2,
        consumer_header,
        challenge: Bytes::from(challenge),
        challenge_invalid_token: Bytes::from(challenge_invalid_token),
    })
}

#[cfg(test)]
mod tests {
    use crate::config::load_str;

    use crate::config::load_errors as errors;

    #[test]
    fn consumers_and_auth() {
        let config = |keys: &str, auth: &str| {
            format!(
                "[server]\nlisten = [\"127.0.0.1:1\"]\n[consumers.alice]\napi_keys = [{keys}]\n\
                 [[routes]]\npath = \"/\"\nmock = {{ status = 200 }}\nauth = {auth}\n"
            )
        };
        let sha_test = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let ok_auth = "{ api_key = {} }";
        let cases: &[(String, &str, &[&str])] = &[
            ("\"k1\"".into(), ok_auth, &[]),
            ("\"\", \"k9\"".into(), ok_auth, &["t.toml:4:13: consumers.alice.api_keys[0]: must not be empty"]),
            ("\"a b\", \"k9\"".into(), ok_auth, &["t.toml:4:13: consumers.alice.api_keys[0]: must be visible ASCII without spaces (or sha256:<64 hex>)"]),
            ("\"sha256:abc\", \"k9\"".into(), ok_auth, &["t.toml:4:13: consumers.alice.api_keys[0]: sha256 key must be 64 hex characters, found 3"]),
            ("\"k1\", \"k1\"".into(), ok_auth, &["t.toml:4:19: consumers.alice.api_keys[1]: duplicate API key (also consumers.alice.api_keys[0])"]),
            (format!("\"test\", \"{sha_test}\""), ok_auth, &["t.toml:4:21: consumers.alice.api_keys[1]: duplicate API key (also consumers.alice.api_keys[0])"]),
            ("".into(), ok_auth, &[
                "t.toml:4:12: consumers.alice.api_keys: empty list: a consumer needs at least one key",
                "t.toml:8:20: routes[0].auth.api_key: no consumer has an API key: add [consumers.NAME] with api_keys = [...]",
            ]),
            ("\"k1\"".into(), "{}", &["t.toml:8:8: routes[0].auth: no authentication method: set api_key = { header = \"x-api-key\" } or jwt = { providers = [\"NAME\"] } or oauth2 = { provider = \"NAME\" }"]),
            ("\"k1\"".into(), "{ api_key = { header = \"a b\" } }", &["t.toml:8:31: routes[0].auth.api_key.header: invalid header name \"a b\": must be a non-empty token"]),
            ("\"k1\"".into(), "{ api_key = { query = \"a&b\" } }", &["t.toml:8:30: routes[0].auth.api_key.query: invalid query parameter name \"a&b\": use letters, digits, '-', '_' and '.'"]),
            ("\"k1\"".into(), "{ api_key = {}, consumer_header = \"X-Api-Key\" }", &["t.toml:8:42: routes[0].auth.consumer_header: \"x-api-key\" is also the API key header"]),
        ];
        for (keys, auth, want) in cases {
            assert_eq!(errors(&config(keys, auth)), *want, "{keys} {auth}");
        }
        // A key shared by two consumers.
        let text = format!(
            "{}[consumers.bob]\napi_keys = [\"k1\"]\n",
            config("\"k1\"", ok_auth)
        );
        assert_eq!(
            errors(&text),
            ["t.toml:10:13: consumers.bob.api_keys[0]: duplicate API key (also consumers.alice.api_keys[0])"]
        );
        // deny_unknown_fields on the new tables.
        assert!(
            errors(&config("\"k1\"", "{ api_key = {}, realm = \"x\" }"))[0]
                .contains("unknown field `realm`")
        );
        assert!(errors(&format!(
            "{}[consumers.bob]\nkeys = []\n",
            config("\"k1\"", ok_auth)
        ))[0]
            .contains("unknown field `keys`"));

        let config = load_str(
            &config(
                &format!("\"k1\", \"{sha_test}\""),
                "{ api_key = { header = \"X-Key\", query = \"api_key\" }, consumer_header = \"X-Who\" }",
            ),
            "t.toml",
        )
        .unwrap();
        assert_eq!(config.consumers.len(), 1);
        assert_eq!(config.consumers[0].name, "alice");
        assert_eq!(config.consumers[0].api_keys.len(), 2);
        let auth = config.routes.routes()[0].auth.clone().unwrap();
        let api_key = auth.api_key.clone().unwrap();
        assert_eq!(
            (
                api_key.header.as_str(),
                api_key.query.as_deref(),
                auth.consumer_header.as_str()
            ),
            ("x-key", Some("api_key"), "x-who")
        );
        assert_eq!(
            &auth.challenge[..],
            b"www-authenticate: ApiKey header=\"x-key\"\r\n"
        );
    }
}
