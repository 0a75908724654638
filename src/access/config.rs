//! `[server.access]` and a route's `access = { allow = [...], deny = [...] }`: the serde
//! mirror and its validation into [`AccessList`]s (the runtime types live in `mod.rs`).

use serde::Deserialize;
use toml::Spanned;

use super::{AccessList, Cidr};
use crate::settings::Ctx;

/// `[server.access]` or a route's `access = { ... }`: CIDR lists.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAccess {
    pub allow: Option<Vec<Spanned<String>>>,
    pub deny: Option<Vec<Spanned<String>>>,
}

/// An `access` table: every entry a CIDR (or a bare address) with no host bits set.
pub(crate) fn access_list(ctx: &mut Ctx, file: &FileAccess, key: &str) -> AccessList {
    AccessList {
        allow: cidrs(ctx, file.allow.as_deref(), &format!("{key}.allow")),
        deny: cidrs(ctx, file.deny.as_deref(), &format!("{key}.deny")),
    }
}

/// A list of CIDRs (or bare addresses) with no host bits set.
pub(crate) fn cidrs(ctx: &mut Ctx, entries: Option<&[Spanned<String>]>, key: &str) -> Vec<Cidr> {
    let mut out = Vec::new();
    for (i, entry) in entries.unwrap_or_default().iter().enumerate() {
        match Cidr::parse(entry.get_ref()) {
            Ok(cidr) => out.push(cidr),
            Err(why) => ctx.error(entry.span(), format!("{key}[{i}]"), why),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::config::load_str;

    use crate::config::load_errors as errors;

    #[test]
    fn access_lists() {
        let config = |server: &str, route: &str| {
            format!(
                "[server]\nlisten = [\"127.0.0.1:1\"]\n[server.access]\n{server}\n\
                 [[routes]]\npath = \"/\"\nmock = {{ status = 200 }}\naccess = {route}\n"
            )
        };
        let cases: &[(&str, &str, &[&str])] = &[
            ("allow = [\"10.0.0.0/8\", \"::1/128\"]", "{ deny = [\"10.0.0.5\"] }", &[]),
            ("deny = [\"10.0.0.1/8\"]", "{}", &["t.toml:4:9: server.access.deny[0]: host bits set in \"10.0.0.1/8\": the network is 10.0.0.0/8"]),
            ("allow = [\"::1/128\", \"x\"]", "{}", &["t.toml:4:21: server.access.allow[1]: invalid IP address \"x\" in \"x\""]),
            ("", "{ allow = [\"10.0.0.0/40\"] }", &["t.toml:8:21: routes[0].access.allow[0]: invalid prefix length \"40\": must be 0..=32"]),
        ];
        for (server, route, want) in cases {
            assert_eq!(errors(&config(server, route)), *want, "{server} {route}");
        }
        assert!(errors(&config("", "{ alow = [] }"))[0].contains("unknown field `alow`"));
        let built = load_str(&config("deny = [\"10.0.0.0/8\"]", "{}"), "t.toml").unwrap();
        assert!(!built.server.access.permits("10.1.1.1".parse().unwrap()));
        assert!(built.server.access.permits("127.0.0.1".parse().unwrap()));
        // An empty route table is no list at all.
        assert!(built.routes.routes()[0].access.is_none());
    }
}
