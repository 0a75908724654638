//! `[jwt_providers.NAME]` and a route's `auth.jwt`: the serde mirror and the validation
//! into the `crate::auth::jwt` types.
//!
//! Key files are read here (off the workers); a `jwks_url` gets its store, which fetches
//! nothing until the config is served (see `crate::auth::jwks`): checking a config makes
//! no connection. Every problem is reported with its position, like the rest of the build.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use serde::Deserialize;
use toml::Spanned;

use super::{JwtAuth, JwtProvider, KeySource, Rejection};
use crate::auth::jwks::{parse_jwks, JwksStore, Key, KeySet};
use crate::settings::{is_name, is_token, strip_line_end, Ctx, DurationValue};

/// The providers of a config, by name; `None` for one whose errors are reported already.
pub type Providers = BTreeMap<String, Option<Arc<JwtProvider>>>;

/// The challenge line of a route accepting bearer tokens (RFC 6750 §3).
pub const BEARER_CHALLENGE: &str = "www-authenticate: Bearer realm=\"strait\"\r\n";

/// HMAC secrets shorter than this are refused (RFC 7518 §3.2 asks for at least the hash
/// size; 32 bytes is HS256's).
const MIN_SECRET_BYTES: usize = 32;
const DEFAULT_JWKS_REFRESH: Duration = Duration::from_secs(300);
const MIN_JWKS_REFRESH: Duration = Duration::from_secs(1);
const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);

/// Headers a claim may not be mapped to: the framing and routing of the request.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "authorization",
];

const ALGORITHM_NAMES: &str = "HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, \
                               ES256, ES384 or EdDSA";

/// A route's `auth.jwt = { providers = [...] }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileJwtAuth {
    pub providers: Spanned<Vec<Spanned<String>>>,
    pub forward_token: Option<bool>,
}

/// `[jwt_providers.NAME]`: who issues the bearer tokens a route accepts, and how to check
/// them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileJwtProvider {
    pub issuer: Option<Spanned<String>>,
    pub audiences: Option<Spanned<Vec<Spanned<String>>>>,
    pub algorithms: Option<Spanned<Vec<Spanned<String>>>>,
    pub secret: Option<Spanned<String>>,
    pub secret_file: Option<Spanned<String>>,
    pub public_key_file: Option<Spanned<String>>,
    pub jwks_file: Option<Spanned<String>>,
    pub jwks_url: Option<Spanned<String>>,
    pub jwks_refresh: Option<Spanned<DurationValue>>,
    pub leeway: Option<Spanned<DurationValue>>,
    pub required_claims: Option<Vec<Spanned<String>>>,
    pub consumer_claim: Option<Spanned<String>>,
    #[serde(default)]
    pub claims_to_headers: BTreeMap<Spanned<String>, Spanned<String>>,
    pub forward_token: Option<bool>,
}

/// What the key source gave: the keys, or a store.
enum Loaded {
    Keys(KeySet),
    Store(Arc<JwksStore>),
}

/// `[jwt_providers.NAME]`: exactly one key source each, algorithms that fit it, claims
/// mapped to headers the request path does not own.
pub(crate) fn providers(
    ctx: &mut Ctx,
    file: BTreeMap<Spanned<String>, FileJwtProvider>,
) -> Providers {
    let mut out = Providers::new();
    for (name, provider) in file {
        let prefix = format!("jwt_providers.{}", name.get_ref());
        if !is_name(name.get_ref()) {
            ctx.error(
                name.span(),
                &prefix,
                format!(
                    "invalid provider name \"{}\": use letters, digits, '-', '_' and '.'",
                    name.get_ref()
                ),
            );
            continue;
        }
        let built = build_provider(ctx, &name, &provider, &prefix);
        out.insert(name.into_inner(), built.map(Arc::new));
    }
    out
}

fn build_provider(
    ctx: &mut Ctx,
    name: &Spanned<String>,
    file: &FileJwtProvider,
    prefix: &str,
) -> Option<JwtProvider> {
    let mut ok = true;
    let sources = [
        ("secret", &file.secret),
        ("secret_file", &file.secret_file),
        ("public_key_file", &file.public_key_file),
        ("jwks_file", &file.jwks_file),
        ("jwks_url", &file.jwks_url),
    ];
    let set: Vec<_> = sources
        .iter()
        .filter_map(|(key, value)| Some((*key, value.as_ref()?)))
        .collect();
    let (source, value) = match set.as_slice() {
        [] => {
            ctx.error(
                name.span(),
                prefix,
                "no key: set one of secret, secret_file, public_key_file, jwks_file or \
                 jwks_url",
            );
            return None;
        }
        [one] => *one,
        [first, second, ..] => {
            ctx.error(
                second.1.span(),
                format!("{prefix}.{}", second.0),
                format!("set only one key source (also {})", first.0),
            );
            return None;
        }
    };
    if file.jwks_refresh.is_some() && file.jwks_url.is_none() {
        let span = file
            .jwks_refresh
            .as_ref()
            .map(Spanned::span)
            .unwrap_or_default();
        ctx.error(
            span,
            format!("{prefix}.jwks_refresh"),
            "only for jwks_url (a jwks_file is read again on reload)",
        );
        ok = false;
    }
    let refresh = ctx.duration(
        &file.jwks_refresh,
        &format!("{prefix}.jwks_refresh"),
        DEFAULT_JWKS_REFRESH,
    );
    let too_short = !refresh.is_zero() && refresh < MIN_JWKS_REFRESH;
    if let Some(value) = file.jwks_refresh.as_ref().filter(|_| too_short) {
        ctx.error(
            value.span(),
            format!("{prefix}.jwks_refresh"),
            "must be at least 1s",
        );
        ok = false;
    }
    let key = format!("{prefix}.{source}");
    let loaded = load_keys(ctx, source, value, &key, refresh);

    // The algorithms: listed, or those the key type allows.
    let family = match &loaded {
        Some(Loaded::Keys(set)) if source != "jwks_file" => {
            set.keys.first().map(|k| k.key.family())
        }
        _ => None,
    };
    let algorithms = match &file.algorithms {
        None => match family {
            Some(family) => family.algorithms().to_vec(),
            None => [
                AlgorithmFamily::Rsa,
                AlgorithmFamily::Ec,
                AlgorithmFamily::Ed,
            ]
            .iter()
            .flat_map(|f| f.algorithms().iter().copied())
            .collect(),
        },
        Some(list) => {
            if list.get_ref().is_empty() {
                ctx.error(
                    list.span(),
                    format!("{prefix}.algorithms"),
                    "empty list: omit it to allow every algorithm of the key type",
                );
                ok = false;
            }
            let mut out = Vec::new();
            for (i, text) in list.get_ref().iter().enumerate() {
                let at = format!("{prefix}.algorithms[{i}]");
                let alg = match text.get_ref().as_str() {
                    none if none.eq_ignore_ascii_case("none") => {
                        Err("\"none\" is never accepted: tokens must be signed".to_owned())
                    }
                    other => other.parse::<Algorithm>().map_err(|_| {
                        format!("unknown algorithm \"{other}\": expected {ALGORITHM_NAMES}")
                    }),
                };
                match (alg, family) {
                    (Err(why), _) => {
                        ctx.error(text.span(), at, why);
                        ok = false;
                    }
                    (Ok(alg), Some(family)) if alg.family() != family => {
                        ctx.error(
                            text.span(),
                            at,
                            format!(
                                "{alg:?} does not fit the key of {source} ({} key)",
                                family_name(family)
                            ),
                        );
                        ok = false;
                    }
                    (Ok(alg), _) if !out.contains(&alg) => out.push(alg),
                    (Ok(_), _) => {}
                }
            }
            out
        }
    };
    if let Some(Loaded::Keys(set)) = &loaded {
        let usable = set.keys.iter().any(|k| {
            algorithms
                .iter()
                .any(|a| a.family() == k.key.family() && k.alg.is_none_or(|ka| ka == *a))
        });
        if ok && !usable {
            ctx.error(value.span(), &key, "no key fits the provider's algorithms");
            ok = false;
        }
    }

    let text = |this: &mut Ctx, value: &Spanned<String>, key: String| {
        if value.get_ref().is_empty() {
            this.error(value.span(), key, "must not be empty");
            None
        } else {
            Some(value.get_ref().clone())
        }
    };
    let issuer = match &file.issuer {
        Some(issuer) => {
            let issuer = text(ctx, issuer, format!("{prefix}.issuer"));
            ok &= issuer.is_some();
            issuer
        }
        None => None,
    };
    let mut audiences = Vec::new();
    if let Some(list) = &file.audiences {
        if list.get_ref().is_empty() {
            ctx.error(
                list.span(),
                format!("{prefix}.audiences"),
                "empty list: omit it to accept any audience",
            );
            ok = false;
        }
        for (i, aud) in list.get_ref().iter().enumerate() {
            match text(ctx, aud, format!("{prefix}.audiences[{i}]")) {
                Some(aud) => audiences.push(aud),
                None => ok = false,
            }
        }
    }
    let mut required_claims = Vec::new();
    for (i, claim) in file.required_claims.iter().flatten().enumerate() {
        match text(ctx, claim, format!("{prefix}.required_claims[{i}]")) {
            Some(claim) => required_claims.push(claim),
            None => ok = false,
        }
    }
    let consumer_claim = match &file.consumer_claim {
        Some(claim) => text(ctx, claim, format!("{prefix}.consumer_claim")),
        None => Some("sub".to_owned()),
    };
    let errors_before = ctx.error_count();
    let leeway = ctx.duration_or_zero(&file.leeway, &format!("{prefix}.leeway"), DEFAULT_LEEWAY);
    ok &= ctx.error_count() == errors_before;
    let mut claims_to_headers = Vec::new();
    for (header, claim) in &file.claims_to_headers {
        let at = format!("{prefix}.claims_to_headers.{}", header.get_ref());
        let lower = header.get_ref().to_ascii_lowercase();
        if !is_token(&lower) {
            ctx.error(
                header.span(),
                at,
                format!("invalid header name \"{lower}\": must be a non-empty token"),
            );
            ok = false;
        } else if RESERVED_HEADERS.contains(&lower.as_str()) {
            ctx.error(
                header.span(),
                at,
                format!("\"{lower}\" cannot be set from a claim"),
            );
            ok = false;
        } else if let Some(claim) = text(ctx, claim, at) {
            claims_to_headers.push((Bytes::from(lower), claim));
        } else {
            ok = false;
        }
    }

    let keys = match loaded? {
        Loaded::Keys(set) => KeySource::Static(Arc::new(set)),
        Loaded::Store(store) => KeySource::Jwks(store),
    };
    (ok && !algorithms.is_empty()).then(|| JwtProvider {
        name: name.get_ref().clone(),
        id: JwtProvider::next_id(),
        issuer,
        audiences,
        algorithms: JwtProvider::validations(&algorithms),
        keys,
        leeway: leeway.as_secs(),
        required_claims,
        consumer_claim: consumer_claim.unwrap_or_default(),
        claims_to_headers,
        forward_token: file.forward_token.unwrap_or(false),
    })
}

/// Reads the key source `source` (its value at `key`).
fn load_keys(
    ctx: &mut Ctx,
    source: &str,
    value: &Spanned<String>,
    key: &str,
    refresh: Duration,
) -> Option<Loaded> {
    let text = value.get_ref();
    let single = |key: DecodingKey| KeySet {
        keys: vec![Key {
            kid: None,
            alg: None,
            key,
        }],
    };
    let result = match source {
        "secret" | "secret_file" => {
            let bytes = if source == "secret" {
                text.as_bytes().to_vec()
            } else {
                strip_line_end(&ctx.read_relative(value, key)?).to_vec()
            };
            if bytes.len() < MIN_SECRET_BYTES {
                Err(format!(
                    "an HMAC secret must be at least {MIN_SECRET_BYTES} bytes, found {}",
                    bytes.len()
                ))
            } else {
                Ok(Loaded::Keys(single(DecodingKey::from_secret(&bytes))))
            }
        }
        "public_key_file" => {
            let pem = ctx.read_relative(value, key)?;
            DecodingKey::from_rsa_pem(&pem)
                .or_else(|_| DecodingKey::from_ec_pem(&pem))
                .or_else(|_| DecodingKey::from_ed_pem(&pem))
                .map(|key| Loaded::Keys(single(key)))
                .map_err(|_| "not a PEM public key (RSA, EC or Ed25519)".to_owned())
        }
        "jwks_file" => parse_jwks(&ctx.read_relative(value, key)?).map(Loaded::Keys),
        _ => {
            if text.starts_with("http://") || text.starts_with("https://") {
                Ok(Loaded::Store(JwksStore::shared(text, refresh)))
            } else {
                Err("must be an http:// or https:// URL".to_owned())
            }
        }
    };
    result.map_err(|why| ctx.error(value.span(), key, why)).ok()
}

/// A route's `auth.jwt` (at `at`): known providers, and no claim header that is also
/// the consumer or API key header. `api_challenge` is the API key's challenge line,
/// if the route has one, for the 401 answers to refused tokens.
pub(crate) fn route_auth(
    ctx: &mut Ctx,
    jwt: &Spanned<FileJwtAuth>,
    at: &str,
    providers: &Providers,
    api_challenge: &str,
    consumer_header: &str,
    api_key_header: Option<&str>,
) -> Option<JwtAuth> {
    let file = jwt.get_ref();
    let mut ok = true;
    if file.providers.get_ref().is_empty() {
        ctx.error(
            file.providers.span(),
            format!("{at}.providers"),
            "empty list: name at least one [jwt_providers.NAME]",
        );
        ok = false;
    }
    if api_key_header == Some("authorization") {
        ctx.error(
            jwt.span(),
            at,
            "the API key header is Authorization, which carries the bearer token",
        );
        ok = false;
    }
    let mut chosen: Vec<Arc<JwtProvider>> = Vec::new();
    let mut claim_headers: Vec<Bytes> = Vec::new();
    for (i, name) in file.providers.get_ref().iter().enumerate() {
        let key = format!("{at}.providers[{i}]");
        let provider = match providers.get(name.get_ref()) {
            Some(Some(provider)) => provider,
            // Its own errors are reported.
            Some(None) => {
                ok = false;
                continue;
            }
            None => {
                ctx.error(
                    name.span(),
                    key,
                    format!("unknown JWT provider \"{}\"", name.get_ref()),
                );
                ok = false;
                continue;
            }
        };
        if chosen.iter().any(|p| Arc::ptr_eq(p, provider)) {
            continue;
        }
        for (header, _) in &provider.claims_to_headers {
            let clash = if header == consumer_header.as_bytes() {
                Some("the consumer header")
            } else if api_key_header.is_some_and(|h| header == h.as_bytes()) {
                Some("the API key header")
            } else {
                None
            };
            if let Some(what) = clash {
                ctx.error(
                    name.span(),
                    key.clone(),
                    format!(
                        "provider \"{}\" maps a claim to \"{}\", {what}",
                        provider.name,
                        String::from_utf8_lossy(header)
                    ),
                );
                ok = false;
            }
            if !claim_headers.contains(header) {
                claim_headers.push(header.clone());
            }
        }
        chosen.push(provider.clone());
    }
    let rejected = Rejection::ALL.map(|rejection| {
        Bytes::from(format!(
            "{api_challenge}www-authenticate: Bearer realm=\"strait\", \
             error=\"invalid_token\", error_description=\"{}\"\r\n",
            rejection.description()
        ))
    });
    ok.then_some(JwtAuth {
        providers: chosen,
        forward_token: file.forward_token,
        claim_headers,
        rejected,
    })
}

fn family_name(family: AlgorithmFamily) -> &'static str {
    match family {
        AlgorithmFamily::Hmac => "HMAC",
        AlgorithmFamily::Rsa => "RSA",
        AlgorithmFamily::Ec => "EC",
        AlgorithmFamily::Ed => "Ed25519",
    }
}

#[cfg(test)]
mod tests {
    use crate::config::load_str;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt");

    fn errors(text: &str) -> Vec<String> {
        match load_str(text, &format!("{FIXTURES}/t.toml")) {
            Ok(_) => Vec::new(),
            Err(errors) => errors
                .errors
                .iter()
                .map(|e| e.to_string().replace(&format!("{FIXTURES}/"), ""))
                .collect(),
        }
    }

    fn config(provider: &str, auth: &str) -> String {
        format!(
            "[server]\nlisten = [\"127.0.0.1:1\"]\n[jwt_providers.p]\n{provider}\n\
             [[routes]]\npath = \"/\"\nmock = {{ status = 200 }}\nauth = {auth}\n"
        )
    }

    const SECRET: &str = "secret = \"0123456789abcdef0123456789abcdef\"";
    const ROUTE: &str = "{ jwt = { providers = [\"p\"] } }";

    #[test]
    fn providers_and_routes() {
        let cases: &[(String, &str, &[&str])] = &[
            (SECRET.into(), ROUTE, &[]),
            ("public_key_file = \"rsa.pub\"\nalgorithms = [\"RS256\", \"PS512\"]".into(), ROUTE, &[]),
            ("public_key_file = \"ec256.pub\"".into(), ROUTE, &[]),
            ("public_key_file = \"ed25519.pub\"\nissuer = \"i\"\naudiences = [\"a\"]\nleeway = \"0s\"".into(), ROUTE, &[]),
            ("".into(), ROUTE, &[
                "t.toml:3:16: jwt_providers.p: no key: set one of secret, secret_file, public_key_file, jwks_file or jwks_url",
            ]),
            (format!("{SECRET}\njwks_file = \"x\""), ROUTE, &[
                "t.toml:5:13: jwt_providers.p.jwks_file: set only one key source (also secret)",
            ]),
            ("secret = \"short\"".into(), "{ jwt = { providers = [] } }", &[
                "t.toml:4:10: jwt_providers.p.secret: an HMAC secret must be at least 32 bytes, found 5",
                "t.toml:8:30: routes[0].auth.jwt.providers: empty list: name at least one [jwt_providers.NAME]",
            ]),
            (format!("{SECRET}\nalgorithms = [\"none\", \"RS256\", \"XX1\"]"), ROUTE, &[
                "t.toml:5:15: jwt_providers.p.algorithms[0]: \"none\" is never accepted: tokens must be signed",
                "t.toml:5:23: jwt_providers.p.algorithms[1]: RS256 does not fit the key of secret (HMAC key)",
                "t.toml:5:32: jwt_providers.p.algorithms[2]: unknown algorithm \"XX1\": expected HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or EdDSA",
            ]),
            ("public_key_file = \"rsa.pub\"\nalgorithms = [\"HS256\"]".into(), ROUTE, &[
                "t.toml:5:15: jwt_providers.p.algorithms[0]: HS256 does not fit the key of public_key_file (RSA key)",
            ]),
            ("public_key_file = \"missing.pub\"".into(), ROUTE, &[
                "t.toml:4:19: jwt_providers.p.public_key_file: cannot read",
            ]),
            ("public_key_file = \"README.md\"".into(), ROUTE, &[
                "t.toml:4:19: jwt_providers.p.public_key_file: not a PEM public key (RSA, EC or Ed25519)",
            ]),
            ("jwks_file = \"rsa.pub\"".into(), ROUTE, &[
                "t.toml:4:13: jwt_providers.p.jwks_file: not a JWKS document",
            ]),
            ("jwks_file = \"jwks-rsa2.json\"\nalgorithms = [\"ES256\"]".into(), ROUTE, &[
                "t.toml:4:13: jwt_providers.p.jwks_file: no key fits the provider's algorithms",
            ]),
            ("jwks_url = \"http://127.0.0.1:1/jwks\"\njwks_refresh = \"500ms\"".into(), ROUTE, &[
                "t.toml:5:16: jwt_providers.p.jwks_refresh: must be at least 1s",
            ]),
            ("public_key_file = \"rsa.pub\"".into(), "{ api_key = { header = \"Authorization\" }, jwt = { providers = [\"p\", \"q\"] } }\n[consumers.c]\napi_keys = [\"k\"]", &[
                "t.toml:8:56: routes[0].auth.jwt: the API key header is Authorization",
                "t.toml:8:76: routes[0].auth.jwt.providers[1]: unknown JWT provider \"q\"",
            ]),
            ("jwks_url = \"ftp://x\"\njwks_refresh = \"0s\"".into(), ROUTE, &[
                "t.toml:4:12: jwt_providers.p.jwks_url: must be an http:// or https:// URL",
                "t.toml:5:16: jwt_providers.p.jwks_refresh: must be greater than zero",
            ]),
            (format!("{SECRET}\njwks_refresh = \"5m\"\nissuer = \"\"\naudiences = []\nleeway = \"x\""), ROUTE, &[
                "t.toml:5:16: jwt_providers.p.jwks_refresh: only for jwks_url (a jwks_file is read again on reload)",
                "t.toml:6:10: jwt_providers.p.issuer: must not be empty",
                "t.toml:7:13: jwt_providers.p.audiences: empty list: omit it to accept any audience",
                "t.toml:8:10: jwt_providers.p.leeway: invalid duration \"x\"",
            ]),
            (format!("{SECRET}\nclaims_to_headers = {{ \"X-Email\" = \"email\", \"Host\" = \"h\", \"a b\" = \"c\" }}"), ROUTE, &[
                "t.toml:5:44: jwt_providers.p.claims_to_headers.Host: \"host\" cannot be set from a claim",
                "t.toml:5:58: jwt_providers.p.claims_to_headers.a b: invalid header name \"a b\": must be a non-empty token",
            ]),
            (format!("{SECRET}\nclaims_to_headers = {{ \"x-consumer\" = \"email\" }}"), ROUTE, &[
                "t.toml:9:31: routes[0].auth.jwt.providers[0]: provider \"p\" maps a claim to \"x-consumer\", the consumer header",
            ]),
            (SECRET.into(), "{ jwt = { providers = [\"p\"], forward = true } }", &[
                "t.toml:8:",
            ]),
            (format!("{SECRET}\nsecrets = \"x\""), ROUTE, &["t.toml:5:1: jwt_providers.p"]),
        ];
        let mut wrong = Vec::new();
        for (provider, auth, want) in cases {
            let got = errors(&config(provider, auth));
            let fits = got.len() == want.len()
                && got.iter().zip(want.iter()).all(|(g, w)| g.starts_with(w));
            if !fits {
                wrong.push(format!(
                    "{provider} {auth}:\n  got {got:#?}\n  want {want:#?}"
                ));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn built_routes_carry_challenges_and_claim_headers() {
        let text = config(
            &format!("{SECRET}\nclaims_to_headers = {{ \"X-Email\" = \"email\" }}\nforward_token = true"),
            "{ api_key = {}, jwt = { providers = [\"p\", \"p\"] } }\n[consumers.c]\napi_keys = [\"k\"]",
        );
        let built = load_str(&text, "t.toml").unwrap();
        let auth = built.routes.routes()[0].auth.clone().unwrap();
        assert_eq!(
            &auth.challenge[..],
            b"www-authenticate: ApiKey header=\"x-api-key\"\r\nwww-authenticate: Bearer realm=\"strait\"\r\n"
        );
        let jwt = auth.jwt.unwrap();
        assert_eq!(jwt.providers.len(), 1);
        assert!(jwt.providers[0].forward_token);
        assert_eq!(jwt.claim_headers, [&b"x-email"[..]]);
        assert_eq!(
            &jwt.rejected[crate::auth::jwt::Rejection::Expired as usize][..],
            &b"www-authenticate: ApiKey header=\"x-api-key\"\r\nwww-authenticate: Bearer realm=\"strait\", error=\"invalid_token\", error_description=\"the token has expired\"\r\n"[..]
        );
        // Default algorithms follow the key type.
        let algs = |provider: &str| {
            let text = format!("{}\n", config(provider, ROUTE));
            let built = load_str(&text, &format!("{FIXTURES}/t.toml")).unwrap();
            let jwt = built.routes.routes()[0].auth.clone().unwrap().jwt.unwrap();
            jwt.providers[0]
                .algorithms
                .iter()
                .map(|(a, _)| format!("{a:?}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        assert_eq!(algs(SECRET), "HS256,HS384,HS512");
        assert_eq!(
            algs("public_key_file = \"rsa.pub\""),
            "RS256,RS384,RS512,PS256,PS384,PS512"
        );
        assert_eq!(algs("public_key_file = \"ec384.pub\""), "ES256,ES384");
        assert_eq!(algs("public_key_file = \"ed25519.pub\""), "EdDSA");
        assert_eq!(
            algs("jwks_file = \"jwks.json\""),
            "RS256,RS384,RS512,PS256,PS384,PS512,ES256,ES384,EdDSA"
        );
    }

    #[test]
    fn a_rebuilt_config_keeps_the_store_of_its_jwks_url() {
        use crate::auth::jwt::KeySource;
        // A port nobody listens on (and a built config's stores fetch nothing anyway).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let store_of = |refresh: &str| {
            let provider = format!(
                "jwks_url = \"http://127.0.0.1:{port}/jwks\"\njwks_refresh = \"{refresh}\""
            );
            let built = load_str(&config(&provider, ROUTE), "t.toml").unwrap();
            let jwt = built.routes.routes()[0].auth.clone().unwrap().jwt.unwrap();
            match &jwt.providers[0].keys {
                KeySource::Jwks(store) => (built, store.clone()),
                KeySource::Static(_) => unreachable!(),
            }
        };
        let (_live, first) = store_of("1h");
        let (_rebuilt, second) = store_of("1h");
        assert!(std::sync::Arc::ptr_eq(&first, &second));
        // Another interval: another store (seeded with the keys of the first).
        let (_other, third) = store_of("2h");
        assert!(!std::sync::Arc::ptr_eq(&first, &third));
        assert!(first.keys().is_none() && third.keys().is_none());
    }

    #[test]
    fn secret_files_lose_their_trailing_newline() {
        use jsonwebtoken::{encode, EncodingKey, Header};
        let dir = crate::scratch::ScratchDir::new("jwt-secret");
        let secret = "0123456789abcdef0123456789abcdef-file";
        std::fs::write(dir.join("secret"), format!("{secret}\r\n")).unwrap();
        std::fs::write(dir.join("short"), "short\n").unwrap();
        let origin = dir.join("t.toml").display().to_string();
        let built = load_str(&config("secret_file = \"secret\"", ROUTE), &origin).unwrap();
        let jwt = built.routes.routes()[0].auth.clone().unwrap().jwt.unwrap();
        let token = encode(
            &Header::default(),
            &serde_json::json!({ "sub": "a" }),
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap();
        assert!(crate::auth::jwt::verify(&jwt.providers[0], token.as_bytes(), 0).is_ok());
        let errors = match load_str(&config("secret_file = \"short\"", ROUTE), &origin) {
            Err(errors) => errors
                .errors
                .iter()
                .map(|e| e.message.clone())
                .collect::<Vec<_>>(),
            Ok(_) => Vec::new(),
        };
        assert_eq!(
            errors,
            ["an HMAC secret must be at least 32 bytes, found 5"]
        );
    }
}
