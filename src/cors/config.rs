//! A route's `cors = { ... }`: the serde mirror and its validation into a [`CorsPolicy`](super::CorsPolicy)
//! (the runtime types live in `mod.rs`, where the policy renders its header lines).

use serde::Deserialize;
use toml::Spanned;

use super::{AllowHeaders, AllowOrigins, CorsPolicy, CorsSettings, OriginPattern, DEFAULT_METHODS};
use crate::settings::{is_token, parse_duration, Ctx, DurationValue};

/// A route's `cors = { ... }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCors {
    /// Required; optional here so that its absence is reported with the other errors.
    pub allow_origins: Option<Spanned<Vec<Spanned<String>>>>,
    pub allow_methods: Option<Spanned<Vec<Spanned<String>>>>,
    pub allow_headers: Option<Vec<Spanned<String>>>,
    pub expose_headers: Option<Vec<Spanned<String>>>,
    pub allow_credentials: Option<Spanned<bool>>,
    pub max_age: Option<Spanned<DurationValue>>,
    pub allow_private_network: Option<bool>,
}

/// A route's `cors`: valid origins (`*` alone, and never with credentials), method and
/// header tokens, a whole-second `max_age`. `methods` are the route's, the default for
/// `allow_methods`.
pub(crate) fn policy(
    ctx: &mut Ctx,
    cors: &Spanned<FileCors>,
    key: &str,
    methods: &[String],
) -> Option<CorsPolicy> {
    let file = cors.get_ref();
    let errors_before = ctx.error_count();
    let credentials = file
        .allow_credentials
        .as_ref()
        .is_some_and(|c| *c.get_ref());

    let origins = allow_origins(ctx, cors, key, credentials);
    let allow_methods = allow_methods(ctx, file, key, methods);

    let allow_headers = header_names(
        ctx,
        file.allow_headers.as_deref(),
        &format!("{key}.allow_headers"),
        false,
    );
    let headers = match allow_headers {
        Some(names) if names.iter().any(|n| n == "*") => {
            if names.len() > 1 {
                let span = file
                    .allow_headers
                    .iter()
                    .flatten()
                    .find(|n| n.get_ref() == "*")
                    .map_or(cors.span(), Spanned::span);
                ctx.error(
                    span,
                    format!("{key}.allow_headers"),
                    "\"*\" reflects any requested header: list it alone",
                );
            }
            AllowHeaders::Reflect
        }
        Some(names) => {
            AllowHeaders::List(names.into_iter().map(|n| n.into_bytes().into()).collect())
        }
        None => AllowHeaders::List(Vec::new()),
    };
    let expose_headers = header_names(
        ctx,
        file.expose_headers.as_deref(),
        &format!("{key}.expose_headers"),
        credentials,
    )
    .unwrap_or_default();

    let max_age = file.max_age.as_ref().and_then(|value| {
        let at = format!("{key}.max_age");
        match parse_duration(&value.get_ref().0) {
            Ok(d) if d.subsec_nanos() != 0 => {
                ctx.error(
                    value.span(),
                    at,
                    "must be whole seconds (Access-Control-Max-Age counts seconds)",
                );
                None
            }
            Ok(d) => Some(d.as_secs()),
            Err(why) => {
                ctx.error(value.span(), at, why);
                None
            }
        }
    });

    if ctx.error_count() != errors_before {
        return None;
    }
    Some(CorsPolicy::new(CorsSettings {
        origins,
        methods: allow_methods,
        headers,
        expose_headers,
        credentials,
        max_age,
        private_network: file.allow_private_network.unwrap_or(false),
    }))
}

/// `allow_origins`: required, `*` alone and never with credentials, else valid and
/// distinct origin patterns.
fn allow_origins(
    ctx: &mut Ctx,
    cors: &Spanned<FileCors>,
    key: &str,
    credentials: bool,
) -> AllowOrigins {
    let mut patterns = Vec::new();
    let mut any = false;
    match &cors.get_ref().allow_origins {
        None => ctx.error(
            cors.span(),
            key,
            "allow_origins is required: list the origins, such as [\"https://app.example\"], or [\"*\"]",
        ),
        Some(list) if list.get_ref().is_empty() => ctx.error(
            list.span(),
            format!("{key}.allow_origins"),
            "empty list: name at least one origin",
        ),
        Some(list) => {
            let entries = list.get_ref();
            for (i, entry) in entries.iter().enumerate() {
                let at = format!("{key}.allow_origins[{i}]");
                if entry.get_ref() == "*" {
                    any = true;
                    if entries.len() > 1 {
                        ctx.error(entry.span(), at, "\"*\" allows every origin: list it alone");
                    } else if credentials {
                        ctx.error(
                            entry.span(),
                            at,
                            "\"*\" cannot be combined with allow_credentials = true (browsers \
                             refuse credentialed responses for any origin): list the origins",
                        );
                    }
                    continue;
                }
                match OriginPattern::parse(entry.get_ref()) {
                    Ok(pattern) if patterns.contains(&pattern) => {
                        ctx.error(entry.span(), at, format!("duplicate origin \"{}\"", entry.get_ref()))
                    }
                    Ok(pattern) => patterns.push(pattern),
                    Err(why) => ctx.error(entry.span(), at, why),
                }
            }
        }
    }
    if any {
        AllowOrigins::Any
    } else {
        AllowOrigins::List(patterns)
    }
}

/// `allow_methods`: method tokens; by default the route's `methods` (with `HEAD` when
/// they have `GET`), or the common methods for a route accepting any.
fn allow_methods(ctx: &mut Ctx, file: &FileCors, key: &str, methods: &[String]) -> Vec<String> {
    match &file.allow_methods {
        Some(list) => {
            if list.get_ref().is_empty() {
                ctx.error(
                    list.span(),
                    format!("{key}.allow_methods"),
                    "empty list: omit it to allow the route's methods",
                );
            }
            let mut out: Vec<String> = Vec::new();
            for (i, method) in list.get_ref().iter().enumerate() {
                let text = method.get_ref();
                if text == "*" || !is_token(text) {
                    ctx.error(
                        method.span(),
                        format!("{key}.allow_methods[{i}]"),
                        format!("invalid method \"{text}\": list method tokens such as GET or PUT"),
                    );
                } else if !out.contains(text) {
                    out.push(text.clone());
                }
            }
            out
        }
        None if methods.is_empty() => DEFAULT_METHODS.iter().map(|m| m.to_string()).collect(),
        None => {
            let mut out = methods.to_vec();
            // The router serves HEAD on a GET route.
            if out.iter().any(|m| m == "GET") && !out.iter().any(|m| m == "HEAD") {
                out.push("HEAD".to_owned());
            }
            out
        }
    }
}

/// Header names of `allow_headers` / `expose_headers`, lower-cased and de-duplicated;
/// `*` is kept for the caller. With credentials, `*` means a header literally named `*`
/// to browsers, so it is refused.
fn header_names(
    ctx: &mut Ctx,
    list: Option<&[Spanned<String>]>,
    key: &str,
    credentials: bool,
) -> Option<Vec<String>> {
    let list = list?;
    let mut out: Vec<String> = Vec::new();
    for (i, name) in list.iter().enumerate() {
        let text = name.get_ref();
        if !is_token(text) {
            ctx.error(
                name.span(),
                format!("{key}[{i}]"),
                format!("invalid header name \"{text}\": must be a non-empty token"),
            );
        } else if text == "*" && credentials {
            ctx.error(
                name.span(),
                format!("{key}[{i}]"),
                "\"*\" is not a wildcard with allow_credentials = true: list the headers",
            );
        } else {
            let lower = text.to_ascii_lowercase();
            if !out.contains(&lower) {
                out.push(lower);
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    use crate::config::load_errors as errors;

    #[test]
    fn cors() {
        let config = |methods: &str, cors: &str| {
            format!(
                "[server]\nlisten = [\"127.0.0.1:1\"]\n[[routes]]\npath = \"/\"\n\
                 mock = {{ status = 200 }}\nmethods = [{methods}]\ncors = {cors}\n"
            )
        };
        let origins = "allow_origins = [\"https://app.example\"]";
        let cases: Vec<(String, Vec<&str>)> = vec![
            (format!("{{ {origins} }}"), vec![]),
            ("{ allow_origins = [\"*\"], allow_headers = [\"*\"] }".into(), vec![]),
            ("{}".into(), vec!["t.toml:7:8: routes[0].cors: allow_origins is required: list the origins, such as [\"https://app.example\"], or [\"*\"]"]),
            ("{ allow_origins = [] }".into(), vec!["t.toml:7:26: routes[0].cors.allow_origins: empty list: name at least one origin"]),
            ("{ allow_origins = [\"*\"], allow_credentials = true }".into(), vec!["t.toml:7:27: routes[0].cors.allow_origins[0]: \"*\" cannot be combined with allow_credentials = true (browsers refuse credentialed responses for any origin): list the origins"]),
            ("{ allow_origins = [\"*\", \"https://a.example\"] }".into(), vec!["t.toml:7:27: routes[0].cors.allow_origins[0]: \"*\" allows every origin: list it alone"]),
            ("{ allow_origins = [\"https://a.example/\", \"https://x.*.example\", \"a.example\"] }".into(), vec![
                "t.toml:7:27: routes[0].cors.allow_origins[0]: invalid origin \"https://a.example/\": an origin has no path, query, user or trailing slash (expected scheme://host[:port], such as \"https://app.example\")",
                "t.toml:7:49: routes[0].cors.allow_origins[1]: invalid origin \"https://x.*.example\": `*` is only allowed as a leading `*.` label (expected scheme://host[:port], such as \"https://app.example\")",
                "t.toml:7:72: routes[0].cors.allow_origins[2]: invalid origin \"a.example\": no scheme (expected scheme://host[:port], such as \"https://app.example\")",
            ]),
            ("{ allow_origins = [\"https://a.example\", \"HTTPS://A.example:443\"] }".into(), vec!["t.toml:7:48: routes[0].cors.allow_origins[1]: duplicate origin \"HTTPS://A.example:443\""]),
            (format!("{{ {origins}, allow_methods = [\"*\", \"GET POST\"] }}"), vec![
                "t.toml:7:68: routes[0].cors.allow_methods[0]: invalid method \"*\": list method tokens such as GET or PUT",
                "t.toml:7:73: routes[0].cors.allow_methods[1]: invalid method \"GET POST\": list method tokens such as GET or PUT",
            ]),
            (format!("{{ {origins}, allow_methods = [] }}"), vec!["t.toml:7:67: routes[0].cors.allow_methods: empty list: omit it to allow the route's methods"]),
            (format!("{{ {origins}, allow_headers = [\"x-a\", \"*\", \"a b\"] }}"), vec![
                "t.toml:7:75: routes[0].cors.allow_headers: \"*\" reflects any requested header: list it alone",
                "t.toml:7:80: routes[0].cors.allow_headers[2]: invalid header name \"a b\": must be a non-empty token",
            ]),
            (format!("{{ {origins}, allow_credentials = true, expose_headers = [\"*\"] }}"), vec!["t.toml:7:95: routes[0].cors.expose_headers[0]: \"*\" is not a wildcard with allow_credentials = true: list the headers"]),
            (format!("{{ {origins}, max_age = \"1500ms\" }}"), vec!["t.toml:7:61: routes[0].cors.max_age: must be whole seconds (Access-Control-Max-Age counts seconds)"]),
            (format!("{{ {origins}, max_age = \"soon\" }}"), vec!["t.toml:7:61: routes[0].cors.max_age: invalid duration \"soon\": must start with a non-negative integer, e.g. \"5s\""]),
        ];
        for (cors, want) in &cases {
            assert_eq!(errors(&config("", cors)), *want, "{cors}");
        }
        assert!(errors(&config("", "{ allow_origin = [] }"))[0]
            .contains("unknown field `allow_origin`"));

        let policy = |methods: &str, cors: &str| {
            let built = load_str(&config(methods, cors), "t.toml").unwrap();
            built.routes.routes()[0].cors.clone().unwrap()
        };
        let settings = |methods: &[&str]| CorsSettings {
            origins: AllowOrigins::List(vec![OriginPattern::parse("https://app.example").unwrap()]),
            methods: methods.iter().map(|m| m.to_string()).collect(),
            headers: AllowHeaders::List(Vec::new()),
            expose_headers: Vec::new(),
            credentials: false,
            max_age: None,
            private_network: false,
        };
        // allow_methods defaults to the route's methods (HEAD with GET), else the common ones.
        assert_eq!(
            policy("\"get\", \"POST\"", &format!("{{ {origins} }}")),
            CorsPolicy::new(settings(&["GET", "POST", "HEAD"]))
        );
        assert_eq!(
            policy("", &format!("{{ {origins} }}")),
            CorsPolicy::new(settings(&DEFAULT_METHODS))
        );
        let full = format!(
            "{{ {origins}, allow_methods = [\"PUT\", \"PUT\"], allow_headers = [\"X-A\", \"x-a\"], \
             expose_headers = [\"X-Total\"], allow_credentials = true, max_age = \"10m\", \
             allow_private_network = true }}"
        );
        assert_eq!(
            policy("", &full),
            CorsPolicy::new(CorsSettings {
                headers: AllowHeaders::List(vec![b"x-a"[..].into()]),
                expose_headers: vec!["x-total".into()],
                credentials: true,
                max_age: Some(600),
                private_network: true,
                ..settings(&["PUT"])
            })
        );
    }
}
