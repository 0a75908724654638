//! `[oauth2_providers.NAME]` and a route's `auth.oauth2`: the serde mirror, the runtime
//! types and the validation. The provider's request head (client credentials included)
//! and the routes' 403 challenges are rendered here, once. Reads `client_secret_file`, so
//! it runs where the rest of the config build runs: never on a worker.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use toml::Spanned;

use super::{is_scope_token, render_request_head, Secret};
use crate::settings::{is_host_header, is_name, is_token, strip_line_end, Ctx, DurationValue};
use crate::upstream::config::{UpstreamId, UpstreamIds};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(300);
const DEFAULT_NEGATIVE_CACHE_TTL: Duration = Duration::from_secs(10);
const DEFAULT_CACHE_SIZE: usize = 10_000;
const MAX_CACHE_SIZE: i64 = 10_000_000;

/// `[oauth2_providers.NAME]`: an RFC 7662 introspection endpoint behind `[upstreams.X]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileOAuth2Provider {
    /// Required; optional here so that its absence is reported with the other errors.
    pub upstream: Option<Spanned<String>>,
    pub path: Option<Spanned<String>>,
    pub host: Option<Spanned<String>>,
    pub client_id: Option<Spanned<String>>,
    pub client_secret: Option<Spanned<String>>,
    pub client_secret_file: Option<Spanned<String>>,
    pub timeout: Option<Spanned<DurationValue>>,
    pub cache_ttl: Option<Spanned<DurationValue>>,
    pub negative_cache_ttl: Option<Spanned<DurationValue>>,
    pub cache_size: Option<Spanned<i64>>,
    pub consumer_claim: Option<Spanned<String>>,
    pub audience: Option<Spanned<String>>,
    pub issuer: Option<Spanned<String>>,
    pub on_error: Option<Spanned<String>>,
}

/// A route's `auth.oauth2 = { provider = "NAME", scopes = [...], ... }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileOAuth2Auth {
    pub provider: Spanned<String>,
    pub scopes: Option<Vec<Spanned<String>>>,
    /// Method name → the scopes that method needs instead of `scopes`.
    pub method_scopes: Option<BTreeMap<Spanned<String>, Vec<Spanned<String>>>>,
    pub forward_token: Option<Spanned<bool>>,
    pub scope_header: Option<Spanned<String>>,
}

/// Index into the snapshot's `[oauth2_providers.NAME]`, sorted by name
/// ([`crate::auth::AuthSections::oauth2_providers`]).
pub type ProviderId = usize;

/// One `[oauth2_providers.NAME]`: where and how bearer tokens are introspected (RFC 7662).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuth2Provider {
    pub name: String,
    /// The upstream serving the introspection endpoint: its pools, balancing, health and
    /// circuit breaker carry the introspection requests.
    pub upstream: UpstreamId,
    /// The introspection endpoint's path (and query), and the client the gateway
    /// authenticates as; both are in `request_head` too, with the secret.
    pub path: String,
    pub client_id: String,
    /// The fixed part of every introspection request head: request line, client
    /// credentials (`authorization: Basic`), content type and accept lines.
    pub request_head: Secret,
    /// `Host` sent; the endpoint's `ip:port` when `None`.
    pub host: Option<String>,
    /// The whole exchange (connect, request, response) must finish within it.
    pub timeout: Duration,
    /// Active tokens are cached until their `exp`, but at most this long (0: not cached).
    pub cache_ttl: Duration,
    /// Inactive tokens are cached this long (0: not cached).
    pub negative_cache_ttl: Duration,
    /// Cached tokens per worker, at most.
    pub cache_size: usize,
    /// The response member naming the consumer; `client_id` when it is absent.
    pub consumer_claim: ConsumerClaim,
    /// When set, the token's `aud` (a string or an array) must contain it.
    pub audience: Option<String>,
    /// When set, the token's `iss` must equal it.
    pub issuer: Option<String>,
    /// What a request gets when the authorization server fails.
    pub on_error: OnIntrospectionError,
}

/// Which introspection response member becomes [`crate::auth::Identity::consumer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerClaim {
    Sub,
    Username,
    ClientId,
}

/// The answer when the authorization server is unreachable, slow or answers nonsense.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnIntrospectionError {
    /// 503 with a JSON error: the client may retry the same token later (default).
    Unavailable,
    /// 401 `invalid_token`, as if the token were refused.
    Unauthorized,
}

/// A route's `auth.oauth2`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuth2Auth {
    pub provider: ProviderId,
    /// What methods without an entry in `method_scopes` need.
    pub scopes: RequiredScopes,
    /// (upper-case method, what it needs instead of `scopes`).
    pub method_scopes: Vec<(String, RequiredScopes)>,
    /// Send the `Authorization` header upstream (default: removed).
    pub forward_token: bool,
    /// Header carrying the granted scopes upstream (lower case); the client's copies are
    /// always removed.
    pub scope_header: Option<String>,
}

/// Scopes a request must all have been granted, and the 403 challenge naming them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequiredScopes {
    pub scopes: Vec<String>,
    /// `www-authenticate: Bearer error="insufficient_scope", scope="..."` and CRLF.
    pub challenge: Bytes,
}

/// Provider names, each with its index when the provider is valid (a route naming an
/// invalid one then gets no second error).
pub type ProviderIds = BTreeMap<String, Option<ProviderId>>;

/// `[oauth2_providers.NAME]`, in name order: the valid providers and every name's id.
pub(crate) fn providers(
    ctx: &mut Ctx,
    file: BTreeMap<Spanned<String>, FileOAuth2Provider>,
    upstreams: &UpstreamIds,
) -> (Vec<OAuth2Provider>, ProviderIds) {
    let mut providers = Vec::new();
    let mut ids = ProviderIds::new();
    for (name, provider) in file {
        let built = build_provider(ctx, &name, &provider, upstreams);
        let id = built.map(|built| {
            providers.push(built);
            providers.len() - 1
        });
        ids.insert(name.into_inner(), id);
    }
    (providers, ids)
}

fn build_provider(
    ctx: &mut Ctx,
    name: &Spanned<String>,
    file: &FileOAuth2Provider,
    upstreams: &UpstreamIds,
) -> Option<OAuth2Provider> {
    let at = format!("oauth2_providers.{}", name.get_ref());
    let mut ok = true;
    if !is_name(name.get_ref()) {
        ctx.error(
            name.span(),
            &at,
            format!(
                "invalid provider name \"{}\": use letters, digits, '-', '_' and '.'",
                name.get_ref()
            ),
        );
        ok = false;
    }
    let upstream = match &file.upstream {
        None => {
            ctx.error(
                name.span(),
                format!("{at}.upstream"),
                "required: the upstream serving the introspection endpoint",
            );
            None
        }
        Some(upstream) => {
            let id = upstreams.get(upstream.get_ref()).copied();
            if id.is_none() {
                let known = upstreams.keys().map(String::as_str).collect::<Vec<_>>();
                ctx.error(
                    upstream.span(),
                    format!("{at}.upstream"),
                    format!(
                        "unknown upstream \"{}\" (known: {})",
                        upstream.get_ref(),
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
            }
            id
        }
    };
    let path = match &file.path {
        None => {
            ctx.error(
                name.span(),
                format!("{at}.path"),
                "required: the introspection endpoint's path, such as \"/oauth2/introspect\"",
            );
            None
        }
        Some(path) if is_origin_form(path.get_ref()) => Some(path.get_ref().clone()),
        Some(path) => {
            ctx.error(
                path.span(),
                format!("{at}.path"),
                format!(
                    "invalid path \"{}\": must start with '/' and be visible ASCII without spaces",
                    path.get_ref()
                ),
            );
            None
        }
    };
    let host = file.host.as_ref().and_then(|host| {
        if is_host_header(host.get_ref()) {
            Some(host.get_ref().clone())
        } else {
            ctx.error(
                host.span(),
                format!("{at}.host"),
                format!(
                    "invalid host \"{}\": expected host or host:port",
                    host.get_ref()
                ),
            );
            ok = false;
            None
        }
    });
    let client_id = match &file.client_id {
        None => {
            ctx.error(
                name.span(),
                format!("{at}.client_id"),
                "required: the client id the gateway authenticates with",
            );
            None
        }
        Some(id) => credential(ctx, id, id.get_ref(), &format!("{at}.client_id")),
    };
    let secret = client_secret(ctx, name, file, &at);
    let timeout = ctx.duration(&file.timeout, &format!("{at}.timeout"), DEFAULT_TIMEOUT);
    let cache_ttl = ctx.duration_or_zero(
        &file.cache_ttl,
        &format!("{at}.cache_ttl"),
        DEFAULT_CACHE_TTL,
    );
    let negative_cache_ttl = ctx.duration_or_zero(
        &file.negative_cache_ttl,
        &format!("{at}.negative_cache_ttl"),
        DEFAULT_NEGATIVE_CACHE_TTL,
    );
    let cache_size = match &file.cache_size {
        None => Some(DEFAULT_CACHE_SIZE),
        Some(size) => ctx.count(size, &format!("{at}.cache_size"), 0, MAX_CACHE_SIZE),
    };
    let consumer_claim = match file
        .consumer_claim
        .as_ref()
        .map(|c| (c, c.get_ref().as_str()))
    {
        None | Some((_, "sub")) => Some(ConsumerClaim::Sub),
        Some((_, "username")) => Some(ConsumerClaim::Username),
        Some((_, "client_id")) => Some(ConsumerClaim::ClientId),
        Some((claim, other)) => {
            ctx.error(
                claim.span(),
                format!("{at}.consumer_claim"),
                format!("unknown claim \"{other}\": expected sub, username or client_id"),
            );
            None
        }
    };
    let on_error = match file.on_error.as_ref().map(|c| (c, c.get_ref().as_str())) {
        None | Some((_, "unavailable")) => Some(OnIntrospectionError::Unavailable),
        Some((_, "unauthorized")) => Some(OnIntrospectionError::Unauthorized),
        Some((value, other)) => {
            ctx.error(
                value.span(),
                format!("{at}.on_error"),
                format!("unknown behaviour \"{other}\": expected unavailable (503) or unauthorized (401)"),
            );
            None
        }
    };
    let mut non_empty = |value: &Option<Spanned<String>>, key: &str| {
        let value = value.as_ref()?;
        if value.get_ref().is_empty() {
            ctx.error(value.span(), format!("{at}.{key}"), "must not be empty");
            ok = false;
        }
        Some(value.get_ref().clone())
    };
    let audience = non_empty(&file.audience, "audience");
    let issuer = non_empty(&file.issuer, "issuer");
    let (path, client_id, secret) = (path?, client_id?, secret?);
    Some(OAuth2Provider {
        name: name.get_ref().clone(),
        upstream: upstream?,
        request_head: render_request_head(&path, &client_id, &secret),
        path,
        client_id,
        host,
        timeout,
        cache_ttl,
        negative_cache_ttl,
        cache_size: cache_size?,
        consumer_claim: consumer_claim?,
        audience,
        issuer,
        on_error: on_error?,
    })
    .filter(|_| ok)
}

/// Exactly one of `client_secret` and `client_secret_file` (read now; one trailing
/// line break is not part of the secret).
fn client_secret(
    ctx: &mut Ctx,
    name: &Spanned<String>,
    file: &FileOAuth2Provider,
    at: &str,
) -> Option<String> {
    match (&file.client_secret, &file.client_secret_file) {
        (Some(_), Some(path)) => {
            ctx.error(
                path.span(),
                format!("{at}.client_secret_file"),
                "set either client_secret or client_secret_file, not both",
            );
            None
        }
        (None, None) => {
            ctx.error(
                name.span(),
                format!("{at}.client_secret"),
                "required: set client_secret or client_secret_file",
            );
            None
        }
        (Some(secret), None) => credential(
            ctx,
            secret,
            secret.get_ref(),
            &format!("{at}.client_secret"),
        ),
        (None, Some(path)) => {
            let key = format!("{at}.client_secret_file");
            let bytes = ctx.read_relative(path, &key)?;
            match std::str::from_utf8(strip_line_end(&bytes)) {
                Ok(secret) => credential(ctx, path, secret, &key),
                Err(_) => {
                    ctx.error(path.span(), key, "the file must hold UTF-8 text");
                    None
                }
            }
        }
    }
}

/// A client id or secret: non-empty printable ASCII (RFC 6749 appendix A.1, `VSCHAR`).
/// The message never shows the value.
fn credential(ctx: &mut Ctx, at: &Spanned<impl Sized>, value: &str, key: &str) -> Option<String> {
    if value.is_empty() {
        ctx.error(at.span(), key, "must not be empty");
        return None;
    }
    if !value.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        ctx.error(at.span(), key, "must be printable ASCII");
        return None;
    }
    Some(value.to_owned())
}

/// A route's `auth.oauth2`; `methods` are the route's (empty: any).
pub(crate) fn route_auth(
    ctx: &mut Ctx,
    file: &Spanned<FileOAuth2Auth>,
    at: &str,
    providers: &ProviderIds,
    methods: &[String],
) -> Option<OAuth2Auth> {
    let at = format!("{at}.oauth2");
    let file = file.get_ref();
    let mut ok = true;
    let provider = match providers.get(file.provider.get_ref()) {
        Some(id) => *id,
        None => {
            let known = providers.keys().map(String::as_str).collect::<Vec<_>>();
            ctx.error(
                file.provider.span(),
                format!("{at}.provider"),
                format!(
                    "unknown provider \"{}\" ({})",
                    file.provider.get_ref(),
                    if known.is_empty() {
                        "add [oauth2_providers.NAME]".to_owned()
                    } else {
                        format!("known: {}", known.join(", "))
                    }
                ),
            );
            None
        }
    };
    let scopes = required_scopes(
        ctx,
        file.scopes.as_deref().unwrap_or(&[]),
        &format!("{at}.scopes"),
    );
    let mut method_scopes = Vec::new();
    for (method, list) in file.method_scopes.iter().flatten() {
        let key = format!("{at}.method_scopes.{}", method.get_ref());
        let upper = method.get_ref().to_ascii_uppercase();
        let served = methods.is_empty()
            || methods.contains(&upper)
            || (upper == "HEAD" && methods.iter().any(|m| m == "GET"));
        if !is_token(method.get_ref()) {
            ctx.error(
                method.span(),
                key,
                format!("invalid method \"{}\"", method.get_ref()),
            );
            ok = false;
        } else if !served {
            ctx.error(
                method.span(),
                key,
                format!(
                    "the route does not serve {upper} (methods: {})",
                    methods.join(", ")
                ),
            );
            ok = false;
        } else if method_scopes.iter().any(|(m, _)| *m == upper) {
            ctx.error(method.span(), key, format!("{upper} is listed twice"));
            ok = false;
        } else {
            match required_scopes(ctx, list, &key) {
                Some(required) => method_scopes.push((upper, required)),
                None => ok = false,
            }
        }
    }
    let scope_header = file.scope_header.as_ref().and_then(|header| {
        if is_token(header.get_ref()) {
            Some(header.get_ref().to_ascii_lowercase())
        } else {
            ctx.error(
                header.span(),
                format!("{at}.scope_header"),
                format!(
                    "invalid header name \"{}\": must be a non-empty token",
                    header.get_ref()
                ),
            );
            ok = false;
            None
        }
    });
    Some(OAuth2Auth {
        provider: provider?,
        scopes: scopes?,
        method_scopes,
        forward_token: file.forward_token.as_ref().is_some_and(|f| *f.get_ref()),
        scope_header,
    })
    .filter(|_| ok)
}

/// Scope tokens (RFC 6749 §3.3), duplicates dropped, and their 403 challenge.
fn required_scopes(ctx: &mut Ctx, list: &[Spanned<String>], key: &str) -> Option<RequiredScopes> {
    let mut scopes: Vec<String> = Vec::new();
    let mut ok = true;
    for (i, scope) in list.iter().enumerate() {
        if !is_scope_token(scope.get_ref()) {
            ctx.error(
                scope.span(),
                format!("{key}[{i}]"),
                format!(
                    "invalid scope \"{}\": printable ASCII without spaces, '\"' or '\\'",
                    scope.get_ref()
                ),
            );
            ok = false;
        } else if !scopes.contains(scope.get_ref()) {
            scopes.push(scope.get_ref().clone());
        }
    }
    let challenge = format!(
        "www-authenticate: Bearer error=\"insufficient_scope\", scope=\"{}\"\r\n",
        scopes.join(" ")
    );
    ok.then(|| RequiredScopes {
        scopes,
        challenge: Bytes::from(challenge),
    })
}

/// An origin-form request target (RFC 9112 §3.2.1) we can send as it is.
fn is_origin_form(path: &str) -> bool {
    path.starts_with('/') && path.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::{ConsumerClaim, OnIntrospectionError};
    use crate::config::load_str;
    use std::time::Duration;

    const BASE: &str =
        "[server]\nlisten = [\"127.0.0.1:1\"]\n[upstreams.authz]\nendpoints = [\"127.0.0.1:2\"]\n";

    fn errors(text: &str) -> Vec<String> {
        match load_str(text, "t.toml") {
            Ok(_) => Vec::new(),
            Err(errors) => errors.to_string().lines().map(String::from).collect(),
        }
    }

    fn with_provider(provider: &str, auth: &str) -> String {
        format!(
            "{BASE}[oauth2_providers.idp]\n{provider}\n[[routes]]\npath = \"/\"\nmethods = [\"GET\", \"POST\"]\n\
             mock = {{ status = 200 }}\nauth = {auth}\n"
        )
    }

    const OK_PROVIDER: &str =
        "upstream = \"authz\"\npath = \"/introspect\"\nclient_id = \"gw\"\nclient_secret = \"s\"";
    const OK_AUTH: &str = "{ oauth2 = { provider = \"idp\" } }";

    #[test]
    fn providers_are_validated() {
        #[rustfmt::skip]
        let cases: &[(&str, &[&str])] = &[
            (OK_PROVIDER, &[]),
            ("client_id = \"gw\"\nclient_secret = \"s\"", &[
                "t.toml:5:19: oauth2_providers.idp.upstream: required: the upstream serving the introspection endpoint",
                "t.toml:5:19: oauth2_providers.idp.path: required: the introspection endpoint's path, such as \"/oauth2/introspect\"",
            ]),
            ("upstream = \"nope\"\npath = \"x y\"\nclient_id = \"\"\nclient_secret = \"s\"", &[
                "t.toml:6:12: oauth2_providers.idp.upstream: unknown upstream \"nope\" (known: authz)",
                "t.toml:7:8: oauth2_providers.idp.path: invalid path \"x y\": must start with '/' and be visible ASCII without spaces",
                "t.toml:8:13: oauth2_providers.idp.client_id: must not be empty",
            ]),
            ("upstream = \"authz\"\npath = \"/i\"\nclient_id = \"gw\"", &[
                "t.toml:5:19: oauth2_providers.idp.client_secret: required: set client_secret or client_secret_file",
            ]),
            ("upstream = \"authz\"\npath = \"/i\"\nclient_id = \"gw\"\nclient_secret = \"s\"\nclient_secret_file = \"f\"", &[
                "t.toml:10:22: oauth2_providers.idp.client_secret_file: set either client_secret or client_secret_file, not both",
            ]),
            ("upstream = \"authz\"\npath = \"/i\"\nclient_id = \"gw\"\nclient_secret_file = \"/nonexistent/secret\"", &[
                "t.toml:9:22: oauth2_providers.idp.client_secret_file: cannot read \"/nonexistent/secret\": No such file or directory (os error 2)",
            ]),
            ("upstream = \"authz\"\npath = \"/i\"\nclient_id = \"gw\"\nclient_secret = \"tab\\there\"", &[
                "t.toml:9:17: oauth2_providers.idp.client_secret: must be printable ASCII",
            ]),
            (&format!("{OK_PROVIDER}\ntimeout = \"0s\"\ncache_ttl = \"5\"\ncache_size = -1\nconsumer_claim = \"email\"\non_error = \"ignore\"\naudience = \"\""), &[
                "t.toml:10:11: oauth2_providers.idp.timeout: must be greater than zero",
                "t.toml:11:13: oauth2_providers.idp.cache_ttl: invalid duration \"5\": missing unit (use ns, us, ms, s, m or h, e.g. \"5s\")",
                "t.toml:12:14: oauth2_providers.idp.cache_size: -1 is out of range: must be 0..=10000000",
                "t.toml:13:18: oauth2_providers.idp.consumer_claim: unknown claim \"email\": expected sub, username or client_id",
                "t.toml:14:12: oauth2_providers.idp.on_error: unknown behaviour \"ignore\": expected unavailable (503) or unauthorized (401)",
                "t.toml:15:12: oauth2_providers.idp.audience: must not be empty",
            ]),
        ];
        for (provider, want) in cases {
            assert_eq!(
                errors(&with_provider(provider, OK_AUTH)),
                *want,
                "{provider}"
            );
        }
        let unknown = with_provider(&format!("{OK_PROVIDER}\nsecret = \"x\""), OK_AUTH);
        assert_eq!(errors(&unknown).len(), 1);
        assert!(
            errors(&unknown)[0].contains("unknown field `secret`"),
            "{:?}",
            errors(&unknown)
        );
    }

    #[test]
    fn routes_are_validated() {
        #[rustfmt::skip]
        let cases: &[(&str, &[&str])] = &[
            ("{ oauth2 = { provider = \"other\" } }", &[
                "t.toml:16:32: routes[0].auth.oauth2.provider: unknown provider \"other\" (known: idp)",
            ]),
            ("{ oauth2 = { provider = \"idp\", scopes = [\"a b\", \"ok\"], method_scopes = { DELETE = [\"x\"], GET = [\"\\\"\"] } } }", &[
                "t.toml:16:49: routes[0].auth.oauth2.scopes[0]: invalid scope \"a b\": printable ASCII without spaces, '\"' or '\\'",
                "t.toml:16:81: routes[0].auth.oauth2.method_scopes.DELETE: the route does not serve DELETE (methods: GET, POST)",
                "t.toml:16:104: routes[0].auth.oauth2.method_scopes.GET[0]: invalid scope \"\"\": printable ASCII without spaces, '\"' or '\\'",
            ]),
            ("{ oauth2 = { provider = \"idp\", method_scopes = { get = [\"r\"], GET = [\"r\"] } } }", &[
                "t.toml:16:57: routes[0].auth.oauth2.method_scopes.get: GET is listed twice",
            ]),
            ("{ oauth2 = { provider = \"idp\", scope_header = \"X-Consumer\" } }", &[
                "t.toml:16:54: routes[0].auth.oauth2.scope_header: \"x-consumer\" is already the consumer or a credential header",
            ]),
            ("{ api_key = { header = \"Authorization\" }, oauth2 = { provider = \"idp\" } }", &[
                "t.toml:16:31: routes[0].auth.api_key.header: \"authorization\" carries the OAuth2 bearer token on this route",
            ]),
        ];
        for (auth, want) in cases {
            let text = with_provider(OK_PROVIDER, auth).replace(
                "[oauth2_providers.idp]",
                "[consumers.c]\napi_keys = [\"k\"]\n[oauth2_providers.idp]",
            );
            assert_eq!(errors(&text), *want, "{auth}");
        }
    }

    #[test]
    fn builds_providers_and_routes() {
        let dir = crate::scratch::ScratchDir::new("oauth2");
        std::fs::write(dir.join("secret"), "from-file\r\n").unwrap();
        let text = with_provider(
            "upstream = \"authz\"\npath = \"/i\"\nhost = \"idp.internal\"\nclient_id = \"gw\"\n\
             client_secret_file = \"secret\"\ntimeout = \"500ms\"\ncache_ttl = \"0s\"\n\
             consumer_claim = \"username\"\non_error = \"unauthorized\"\nissuer = \"https://idp\"",
            "{ oauth2 = { provider = \"idp\", scopes = [\"a\", \"b\", \"a\"], method_scopes = { post = [\"w\"] }, forward_token = true, scope_header = \"X-Scopes\" } }",
        );
        let config = load_str(&text, dir.join("t.toml").to_str().unwrap()).unwrap();
        let provider = &config.oauth2_providers[0];
        assert_eq!(provider.name, "idp");
        assert_eq!(provider.host.as_deref(), Some("idp.internal"));
        assert_eq!(provider.timeout, Duration::from_millis(500));
        assert_eq!(provider.cache_ttl, Duration::ZERO);
        assert_eq!(provider.negative_cache_ttl, Duration::from_secs(10));
        assert_eq!(provider.cache_size, 10_000);
        assert_eq!(provider.consumer_claim, ConsumerClaim::Username);
        assert_eq!(provider.on_error, OnIntrospectionError::Unauthorized);
        assert_eq!(provider.issuer.as_deref(), Some("https://idp"));
        // The secret from the file, without its line break: base64("gw:from-file").
        assert_eq!(
            provider.request_head,
            crate::auth::oauth2::render_request_head("/i", "gw", "from-file")
        );
        let auth = config.routes.routes()[0].auth.clone().unwrap();
        let oauth2 = auth.oauth2.clone().unwrap();
        assert_eq!(oauth2.scopes.scopes, ["a", "b"]);
        assert_eq!(
            &oauth2.scopes.challenge[..],
            b"www-authenticate: Bearer error=\"insufficient_scope\", scope=\"a b\"\r\n"
        );
        assert_eq!(oauth2.method_scopes[0].0, "POST");
        assert!(oauth2.forward_token);
        assert_eq!(oauth2.scope_header.as_deref(), Some("x-scopes"));
        assert_eq!(
            &auth.challenge[..],
            b"www-authenticate: Bearer realm=\"strait\"\r\n"
        );
        assert_eq!(
            &auth.challenge_invalid_token[..],
            b"www-authenticate: Bearer realm=\"strait\", error=\"invalid_token\"\r\n"
        );
    }
}
