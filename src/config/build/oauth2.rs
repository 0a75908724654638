//! Validation of `[oauth2_providers.NAME]` and of a route's `auth.oauth2`: the provider's
//! request head (client credentials included) and the routes' 403 challenges are rendered
//! here, once. Reads `client_secret_file`, so it runs where the rest of `build.rs` runs:
//! never on a worker.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use toml::Spanned;

use super::super::file::{DurationValue, FileOAuth2Auth, FileOAuth2Provider};
use super::super::{
    ConsumerClaim, OAuth2Auth, OAuth2Provider, OnIntrospectionError, ProviderId, RequiredScopes,
    UpstreamId,
};
use super::{is_host_header, is_name, is_token, parse_duration, Ctx};
use crate::introspect::{is_scope_token, render_request_head};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(300);
const DEFAULT_NEGATIVE_CACHE_TTL: Duration = Duration::from_secs(10);
const DEFAULT_CACHE_SIZE: usize = 10_000;
const MAX_CACHE_SIZE: i64 = 10_000_000;

/// Provider names, each with its index when the provider is valid (a route naming an
/// invalid one then gets no second error).
pub(super) type ProviderIds = BTreeMap<String, Option<ProviderId>>;

impl Ctx<'_> {
    pub(super) fn oauth2_providers(
        &mut self,
        file: BTreeMap<Spanned<String>, FileOAuth2Provider>,
        upstreams: &BTreeMap<String, UpstreamId>,
    ) -> (Vec<OAuth2Provider>, ProviderIds) {
        let mut providers = Vec::new();
        let mut ids = ProviderIds::new();
        for (name, provider) in file {
            let built = self.oauth2_provider(&name, &provider, upstreams);
            let id = built.map(|built| {
                providers.push(built);
                providers.len() - 1
            });
            ids.insert(name.into_inner(), id);
        }
        (providers, ids)
    }

    fn oauth2_provider(
        &mut self,
        name: &Spanned<String>,
        file: &FileOAuth2Provider,
        upstreams: &BTreeMap<String, UpstreamId>,
    ) -> Option<OAuth2Provider> {
        let at = format!("oauth2_providers.{}", name.get_ref());
        let mut ok = true;
        if !is_name(name.get_ref()) {
            self.error(
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
                self.error(
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
                    self.error(
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
                self.error(
                    name.span(),
                    format!("{at}.path"),
                    "required: the introspection endpoint's path, such as \"/oauth2/introspect\"",
                );
                None
            }
            Some(path) if is_origin_form(path.get_ref()) => Some(path.get_ref().clone()),
            Some(path) => {
                self.error(
                    path.span(),
                    format!("{at}.path"),
                    format!("invalid path \"{}\": must start with '/' and be visible ASCII without spaces", path.get_ref()),
                );
                None
            }
        };
        let host = file.host.as_ref().and_then(|host| {
            if is_host_header(host.get_ref()) {
                Some(host.get_ref().clone())
            } else {
                self.error(
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
                self.error(
                    name.span(),
                    format!("{at}.client_id"),
                    "required: the client id the gateway authenticates with",
                );
                None
            }
            Some(id) => self.credential(id, id.get_ref(), &format!("{at}.client_id")),
        };
        let secret = self.client_secret(name, file, &at);
        let timeout = self.duration(&file.timeout, &format!("{at}.timeout"), DEFAULT_TIMEOUT);
        let cache_ttl = self.duration_or_zero(
            &file.cache_ttl,
            &format!("{at}.cache_ttl"),
            DEFAULT_CACHE_TTL,
        );
        let negative_cache_ttl = self.duration_or_zero(
            &file.negative_cache_ttl,
            &format!("{at}.negative_cache_ttl"),
            DEFAULT_NEGATIVE_CACHE_TTL,
        );
        let cache_size = match &file.cache_size {
            None => Some(DEFAULT_CACHE_SIZE),
            Some(size) => self.count(size, &format!("{at}.cache_size"), 0, MAX_CACHE_SIZE),
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
                self.error(
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
                self.error(
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
                self.error(value.span(), format!("{at}.{key}"), "must not be empty");
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
        &mut self,
        name: &Spanned<String>,
        file: &FileOAuth2Provider,
        at: &str,
    ) -> Option<String> {
        match (&file.client_secret, &file.client_secret_file) {
            (Some(_), Some(path)) => {
                self.error(
                    path.span(),
                    format!("{at}.client_secret_file"),
                    "set either client_secret or client_secret_file, not both",
                );
                None
            }
            (None, None) => {
                self.error(
                    name.span(),
                    format!("{at}.client_secret"),
                    "required: set client_secret or client_secret_file",
                );
                None
            }
            (Some(secret), None) => {
                self.credential(secret, secret.get_ref(), &format!("{at}.client_secret"))
            }
            (None, Some(path)) => {
                let key = format!("{at}.client_secret_file");
                let full = self.base_dir.join(path.get_ref());
                match std::fs::read_to_string(&full) {
                    Ok(text) => {
                        let secret = text.strip_suffix('\n').unwrap_or(&text);
                        let secret = secret.strip_suffix('\r').unwrap_or(secret);
                        self.credential(path, secret, &key)
                    }
                    Err(err) => {
                        self.error(
                            path.span(),
                            key,
                            format!("cannot read \"{}\": {err}", full.display()),
                        );
                        None
                    }
                }
            }
        }
    }

    /// A client id or secret: non-empty printable ASCII (RFC 6749 appendix A.1, `VSCHAR`).
    /// The message never shows the value.
    fn credential(&mut self, at: &Spanned<impl Sized>, value: &str, key: &str) -> Option<String> {
        if value.is_empty() {
            self.error(at.span(), key, "must not be empty");
            return None;
        }
        if !value.bytes().all(|b| (b' '..=b'~').contains(&b)) {
            self.error(at.span(), key, "must be printable ASCII");
            return None;
        }
        Some(value.to_owned())
    }

    /// A duration where zero is meaningful (it turns a cache off); `default` when absent.
    fn duration_or_zero(
        &mut self,
        value: &Option<Spanned<DurationValue>>,
        key: &str,
        default: Duration,
    ) -> Duration {
        let Some(value) = value else { return default };
        parse_duration(&value.get_ref().0).unwrap_or_else(|why| {
            self.error(value.span(), key, why);
            Duration::ZERO
        })
    }

    /// A route's `auth.oauth2`; `methods` are the route's (empty: any).
    pub(super) fn oauth2_auth(
        &mut self,
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
                self.error(
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
        let scopes = self.required_scopes(
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
                self.error(
                    method.span(),
                    key,
                    format!("invalid method \"{}\"", method.get_ref()),
                );
                ok = false;
            } else if !served {
                self.error(
                    method.span(),
                    key,
                    format!(
                        "the route does not serve {upper} (methods: {})",
                        methods.join(", ")
                    ),
                );
                ok = false;
            } else if method_scopes.iter().any(|(m, _)| *m == upper) {
                self.error(method.span(), key, format!("{upper} is listed twice"));
                ok = false;
            } else {
                match self.required_scopes(list, &key) {
                    Some(required) => method_scopes.push((upper, required)),
                    None => ok = false,
                }
            }
        }
        let scope_header = file.scope_header.as_ref().and_then(|header| {
            if is_token(header.get_ref()) {
                Some(header.get_ref().to_ascii_lowercase())
            } else {
                self.error(
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
    fn required_scopes(&mut self, list: &[Spanned<String>], key: &str) -> Option<RequiredScopes> {
        let mut scopes: Vec<String> = Vec::new();
        let mut ok = true;
        for (i, scope) in list.iter().enumerate() {
            if !is_scope_token(scope.get_ref()) {
                self.error(
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
}

/// An origin-form request target (RFC 9112 §3.2.1) we can send as it is.
fn is_origin_form(path: &str) -> bool {
    path.starts_with('/') && path.bytes().all(|b| b.is_ascii_graphic())
}
